//! From lease states to identity records: a lease file repeats a lease's whole state on
//! every change, and is read again after every rewrite, so the tracker remembers the last
//! state of each address and says only what changed.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{Counts, LeaseState};
use crate::identity::{Change, Identity, IdentityRecord, Source};

/// The last state said for each address.
#[derive(Debug)]
pub struct LeaseTracker {
    source: Source,
    last: HashMap<Ipv4Addr, LeaseState>,
}

/// The same customer: by hardware address and client id, the keys DHCP servers use.
fn same_holder(a: &Identity, b: &Identity) -> bool {
    a.hw_addr == b.hw_addr && a.client_id == b.client_id
}

impl LeaseTracker {
    pub fn new(source: Source) -> LeaseTracker {
        LeaseTracker {
            source,
            last: HashMap::new(),
        }
    }

    /// The record `state` makes, if it changes anything. `live_now` is the clock of a
    /// follower reading the file as it is written (`None` for an import); it bounds the
    /// time of a release that the file does not date.
    pub fn observe(
        &mut self,
        state: LeaseState,
        live_now: Option<u64>,
        counts: &mut Counts,
    ) -> Option<IdentityRecord> {
        let previous = self.last.get(&state.inside_ip);
        if previous == Some(&state) {
            counts.unchanged += 1;
            return None;
        }
        let record = if state.held {
            Some(self.holding(&state, previous))
        } else {
            self.ending(&state, previous, live_now, counts)
        };
        self.last.insert(state.inside_ip, state);
        record
    }

    fn holding(&self, state: &LeaseState, previous: Option<&LeaseState>) -> IdentityRecord {
        let renewed = previous.is_some_and(|p| p.held && same_holder(&p.identity, &state.identity));
        IdentityRecord {
            change: if renewed {
                Change::Update
            } else {
                Change::Start
            },
            source: self.source,
            inside_ip: state.inside_ip,
            at_ns: state.cltt_ns,
            learned_ns: 0,
            source_ns: state.cltt_ns,
            expires_ns: state.expires_ns,
            identity: state.identity.clone(),
        }
    }

    fn ending(
        &self,
        state: &LeaseState,
        previous: Option<&LeaseState>,
        live_now: Option<u64>,
        counts: &mut Counts,
    ) -> Option<IdentityRecord> {
        // The holding this ends, if we saw it: its identity is the fuller one (Kea clears
        // the hostname when it reclaims a lease).
        let ended = previous.filter(|p| p.held && same_holder(&p.identity, &state.identity));
        if previous.is_some_and(|p| !p.held && same_holder(&p.identity, &state.identity)) {
            // Already ended (Kea flushing a reclaimed lease, dhcpd rewriting a free one).
            counts.unchanged += 1;
            return None;
        }
        let identity = ended.map_or(&state.identity, |p| &p.identity);
        if identity.is_empty() {
            counts.ignored += 1;
            return None;
        }
        let at_ns = state
            .ended_ns
            .unwrap_or_else(|| undated_end(state, ended, live_now));
        Some(IdentityRecord {
            change: Change::Stop,
            source: self.source,
            inside_ip: state.inside_ip,
            at_ns,
            learned_ns: 0,
            source_ns: state.cltt_ns,
            // Nothing lapses after an end.
            expires_ns: 0,
            identity: identity.clone(),
        })
    }
}

/// A removal the file does not date (Kea's release): it happened after the lease's last
/// renewal and no later than its expiry; a follower reading the file as it is written also
/// knows it happened no later than now.
fn undated_end(state: &LeaseState, ended: Option<&LeaseState>, live_now: Option<u64>) -> u64 {
    let latest = ended
        .map(|p| p.expires_ns)
        .filter(|&e| e != 0)
        .unwrap_or(state.expires_ns);
    let latest = live_now.map_or(latest, |now| latest.min(now));
    latest.max(state.cltt_ns)
}
