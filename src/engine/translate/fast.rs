//! The fast path: a frame classified as an ordinary packet of a flow goes through one flow
//! table probe to its session, whose record holds the rewrite.

use std::net::Ipv4Addr;

use super::parse::{Flow, IpInfo, Transport, flow_key, in_prefixes, parse_ip, parse_transport};
use crate::engine::event::EventSink;
use crate::engine::rewrite::{
    Endpoint, Rewrite, decrement_ttl, rewrite_endpoint, rewrite_endpoint_with,
};
use crate::engine::state::{FlowKey, Session};
use crate::engine::table::Slot;
use crate::engine::{Engine, Lookup, Side, Verdict};
use crate::wire::checksum::Delta;
use crate::wire::{ethernet, ipv4};

/// What the fast path knows of a frame before it looks anything up.
#[derive(Debug, Clone, Copy)]
pub(in crate::engine) struct Established {
    ip: IpInfo,
    flow: Flow,
    key: FlowKey,
    slot: Slot,
}

impl Established {
    pub(in crate::engine) fn slot(&self) -> Slot {
        self.slot
    }
}

impl<S: EventSink> Engine<S> {
    /// Whether a frame may take the fast path: a well-formed, unfragmented TCP or UDP
    /// packet, not to the NAT itself, not hairpinned, not about to expire its TTL — nearly
    /// all traffic. What it reads is kept for [`Engine::established`] (and lets a batch
    /// prefetch the flow table bucket). It reads only the frame, never the state.
    #[inline(always)]
    pub(in crate::engine) fn classify(
        &self,
        buf: &[u8],
        len: usize,
        from: Side,
    ) -> Option<Established> {
        if self.lookup != Lookup::OneProbe {
            return None;
        }
        let frame = &buf[..len];
        let l2 = ethernet::parse_l2(frame).ok()?;
        if l2.ethertype != ethernet::EtherType::IPV4 {
            return None;
        }
        let ip = parse_ip(frame, l2.l3_offset).ok()?;
        if ip.ttl <= 1 || ip.frag_offset > 0 || ip.more_frags || ip.protocol == ipv4::protocol::ICMP
        {
            return None;
        }
        let dst = Ipv4Addr::from(ip.dst);
        if self.is_own_address(dst) || dst.is_broadcast() || dst.is_multicast() {
            return None;
        }
        if from == Side::Inside && in_prefixes(&self.settings.public, dst) {
            return None; // hairpinned: translated twice, by the general path
        }
        let Ok(Transport::Flow(flow)) = parse_transport(frame, &ip, from) else {
            return None;
        };
        let (local, remote) = match from {
            Side::Inside => ((ip.src, flow.src_port), (ip.dst, flow.dst_port)),
            Side::Outside => ((ip.dst, flow.dst_port), (ip.src, flow.src_port)),
        };
        let key = flow_key(flow.proto, from, local, remote);
        Some(Established {
            ip,
            flow,
            slot: self.state.flow_slot(&key),
            key,
        })
    }

    /// The fast path: one flow table probe finds the session, whose record holds the
    /// rewrite. `None` (no live session) sends the frame down the general path, which
    /// decides exactly as it would have had this one not existed: the conditions it checks
    /// either hold for every packet of a live session or were checked by `classify`.
    /// `tests/fast_path.rs` holds the two paths to the same bytes.
    #[inline]
    pub(super) fn established(
        &mut self,
        buf: &mut [u8],
        e: &Established,
        now: u64,
    ) -> Option<Verdict> {
        let session = self.state.find_flow_at(e.slot, &e.key)?;
        self.touch(session, e.flow, e.key.from, now);
        let s = *self.state.session(session);
        let pkt = &mut buf[e.ip.l3..e.ip.packet_end()];
        self.rewrite(pkt, e.ip.ihl, &s, e.key.from);
        decrement_ttl(pkt);
        Some(Verdict::Forward(match e.key.from {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }))
    }

    /// Rewrites the subscriber-side endpoint of a packet of session `s` received from
    /// `from`: the precomputed rewrite on the fast path, the reference's from the mapping.
    #[inline]
    pub(super) fn rewrite(&self, pkt: &mut [u8], ihl: usize, s: &Session, from: Side) {
        let (which, r) = match from {
            Side::Inside => (
                Endpoint::Source,
                Rewrite {
                    addr: s.public_ip,
                    port: s.public_port,
                    ip_delta: s.ip_delta,
                    l4_delta: s.l4_delta,
                },
            ),
            Side::Outside => (
                Endpoint::Destination,
                Rewrite {
                    addr: s.inside_ip,
                    port: s.inside_port,
                    ip_delta: Delta::undo_folded(s.ip_delta),
                    l4_delta: Delta::undo_folded(s.l4_delta),
                },
            ),
        };
        match self.lookup {
            Lookup::OneProbe => rewrite_endpoint_with(pkt, ihl, s.proto, which, r),
            Lookup::MappingThenSession => {
                // From the mapping record, as before the session carried a copy (a live
                // session always has its mapping; the copy stands in should it not).
                let (addr, port) = match self
                    .state
                    .find_by_inside(s.proto, s.inside_ip, s.inside_port)
                    .map(|m| *self.state.mapping(m))
                {
                    Some(m) if from == Side::Inside => (m.public_ip, m.public_port),
                    Some(m) => (m.inside_ip, m.inside_port),
                    None => (r.addr, r.port),
                };
                rewrite_endpoint(pkt, ihl, s.proto, which, addr, port);
            }
        }
    }
}
