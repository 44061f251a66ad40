//! Who held an inside address when: the identity chain (`identity/`) read back into
//! holdings — intervals during which one identity held one address, by one source — and
//! the lookup that names the customer behind each candidate (docs/mapping-log.md §8.1).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use crate::identity::{Change, Identity, IdentityRecord, Source};
use crate::maplog::dir;
use crate::maplog::identity_block;
use crate::maplog::identity_log::identity_dir;
use crate::maplog::segment::{Segment, SegmentError};
use crate::reader::ReaderError;
use crate::reader::time::format_time;

/// How a holding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The source said so (RADIUS Stop, a lease released or expired in the file).
    Stopped,
    /// Its lease lapsed without renewal.
    Expired,
    /// The same source gave the address to another holder.
    Superseded,
    /// The NAS restarted or went down (RADIUS Accounting-On/Off).
    NasReset,
}

impl Ended {
    pub fn name(self) -> &'static str {
        match self {
            Ended::Stopped => "stopped",
            Ended::Expired => "expired",
            Ended::Superseded => "superseded",
            Ended::NasReset => "nas-reset",
        }
    }
}

/// One identity holding one inside address, by the word of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub inside_ip: Ipv4Addr,
    pub source: Source,
    /// Shared: a holding is named under every candidate of its address.
    pub identity: Arc<Identity>,
    /// When it began (the source's time, §5.2 `at`).
    pub from_ns: u64,
    /// When it ended; `None` while still held at the end of what was read.
    pub to_ns: Option<u64>,
    pub ended: Option<Ended>,
    /// When tracenat learned of its start, and the source's own stamp of it (0: none).
    pub learned_ns: u64,
    pub source_ns: u64,
    /// Its lease ran until then unless renewed (0: no lease time).
    pub expires_ns: u64,
}

impl Holding {
    fn overlaps(&self, from_ns: u64, to_ns: u64) -> bool {
        self.from_ns <= to_ns && self.to_ns.is_none_or(|end| end >= from_ns)
    }
}

/// What is known of who held an address during a window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Holders {
    /// The log has no identity records at all (no `[identity]` source ever ran).
    #[default]
    NotTracked,
    /// Identity records exist, but none says who held this address then: a finding.
    Unknown,
    /// One holding, or several that overlap (each is shown; none is chosen).
    Known(Vec<Holding>),
}

impl Holders {
    pub fn verdict(&self) -> &'static str {
        match self {
            Holders::NotTracked => "not_tracked",
            Holders::Unknown => "unknown",
            Holders::Known(h) if distinct_holders(h) == 1 => "known",
            Holders::Known(_) => "overlap",
        }
    }
}

impl Holders {
    /// A few words naming the customer, for one-line answers: the user name, else the
    /// host name, else the CPE's hardware address; "unknown holder" or "overlap: a / b".
    pub fn short_name(&self) -> Option<String> {
        match self {
            Holders::NotTracked => None,
            Holders::Unknown => Some("unknown holder".to_owned()),
            Holders::Known(h) if distinct_holders(h) == 1 => Some(short(&h[0].identity)),
            Holders::Known(h) => {
                let names: Vec<String> = h.iter().map(|h| short(&h.identity)).collect();
                Some(format!("overlap: {}", names.join(" / ")))
            }
        }
    }

    /// The line under a candidate in `log query` and `identity query`; `None` when the
    /// log keeps no identities (said once, not under every candidate).
    pub fn describe(&self, subscriber: Ipv4Addr) -> Option<String> {
        match self {
            Holders::NotTracked => None,
            Holders::Unknown => Some(format!(
                "customer: UNKNOWN — no identity record says who held {subscriber} then"
            )),
            Holders::Known(h) if distinct_holders(h) == 1 => Some(format!(
                "customer: {}  [{}]",
                h[0].identity,
                evidence(&h[0])
            )),
            Holders::Known(h) => {
                let each: Vec<String> = h
                    .iter()
                    .map(|h| format!("{}  [{}]", h.identity, evidence(h)))
                    .collect();
                Some(format!(
                    "customer: OVERLAP — {} identities held {subscriber} then: {}",
                    h.len(),
                    each.join("; ")
                ))
            }
        }
    }

    /// `{"verdict": …, "holders": [...]}` for JSON answers.
    pub fn to_json(&self) -> serde_json::Value {
        let holders: &[Holding] = match self {
            Holders::Known(h) => h,
            _ => &[],
        };
        serde_json::json!({
            "verdict": self.verdict(),
            "holders": holders.iter().map(Holding::to_json).collect::<Vec<_>>(),
        })
    }
}

fn short(identity: &Identity) -> String {
    [
        &identity.user,
        &identity.hostname,
        &identity.hw_addr,
        &identity.client_id,
        &identity.calling_station_id,
    ]
    .into_iter()
    .flatten()
    .next()
    .cloned()
    .unwrap_or_else(|| identity.to_string())
}

/// Where the naming comes from: source, the holding's span, how it ended.
fn evidence(h: &Holding) -> String {
    let end = match (h.to_ns, h.ended) {
        (Some(t), Some(why)) => format!("{} ({})", format_time(t), why.name()),
        _ if h.expires_ns != 0 => {
            format!("(still held; lease until {})", format_time(h.expires_ns))
        }
        _ => "(still held)".to_owned(),
    };
    format!(
        "{}, held {} .. {end}",
        h.source.name(),
        format_time(h.from_ns)
    )
}

impl Holding {
    pub fn to_json(&self) -> serde_json::Value {
        let time = |ns: u64| (ns != 0).then(|| format_time(ns));
        serde_json::json!({
            "customer": self.identity.to_string(),
            "name": short(&self.identity),
            "inside": self.inside_ip.to_string(),
            "source": self.source.name(),
            "identity": self.identity.to_json(),
            "from": format_time(self.from_ns),
            "to": self.to_ns.map(format_time),
            "from_ns": self.from_ns,
            "to_ns": self.to_ns,
            "ended": self.ended.map(Ended::name),
            "learned": time(self.learned_ns),
            "source_time": time(self.source_ns),
            "lease_expires": time(self.expires_ns),
        })
    }
}

/// Holdings by different holders (the same holder seen twice — renewed after a gap,
/// reported by two sources with the same fields — counts once).
fn distinct_holders(holdings: &[Holding]) -> usize {
    let mut seen: Vec<&Identity> = Vec::new();
    for h in holdings {
        if !seen.iter().any(|s| s.same_holder(&h.identity)) {
            seen.push(&h.identity);
        }
    }
    seen.len()
}

/// Holdings that overlap a span of time, by inside address.
#[derive(Debug, Default)]
pub struct IdentityBook {
    by_address: HashMap<Ipv4Addr, Vec<Holding>>,
    /// The span the book was read for.
    pub from_ns: u64,
    pub to_ns: u64,
    /// The log has an identity chain.
    pub tracked: bool,
    /// Blocks that could not be read (their changes are missing from the holdings).
    pub damaged: Vec<String>,
    /// The addresses it was read for (`None`: all).
    only: Option<HashSet<Ipv4Addr>>,
}

impl IdentityBook {
    /// Reads the holdings that overlap `[from_ns, to_ns]`: from the checkpoint of the
    /// newest identity segment created at or before `from_ns` (or the first segment),
    /// forward, skipping blocks whose every change lies after `to_ns`.
    pub fn load(root: &Path, from_ns: u64, to_ns: u64) -> Result<IdentityBook, ReaderError> {
        Ok(IdentityBook::from_segments(
            &open_segments(root)?,
            from_ns,
            to_ns,
        ))
    }

    /// [`IdentityBook::load`] from the identity chain's segments already open (a
    /// [`LogDir`](crate::reader::logdir::LogDir)'s), in chain order.
    pub fn from_segments(segments: &[Segment], from_ns: u64, to_ns: u64) -> IdentityBook {
        IdentityBook::of_addresses(segments, from_ns, to_ns, None)
    }

    /// [`IdentityBook::from_segments`] for some addresses only (`None`: all): blocks whose
    /// address filter rules them all out are not decoded, which makes a single query's
    /// lookup cheap. NAS resets (address 0.0.0.0) are always read.
    pub fn of_addresses(
        segments: &[Segment],
        from_ns: u64,
        to_ns: u64,
        only: Option<HashSet<Ipv4Addr>>,
    ) -> IdentityBook {
        let mut book = IdentityBook {
            from_ns,
            to_ns,
            tracked: !segments.is_empty(),
            ..IdentityBook::default()
        };
        let wanted = |ip: Ipv4Addr| {
            only.as_ref()
                .is_none_or(|set| ip.is_unspecified() || set.contains(&ip))
        };
        let may_hold = |h: &crate::maplog::block::BlockHeader| {
            only.as_ref().is_none_or(|set| {
                h.may_hold_address(0) || set.iter().any(|ip| h.may_hold_address(u32::from(*ip)))
            })
        };
        let start = segments
            .iter()
            .rposition(|s| s.header.created_ns <= from_ns)
            .unwrap_or(0);
        let mut records = Vec::new();
        for (i, seg) in segments.iter().enumerate().skip(start) {
            for b in &seg.blocks {
                let checkpoint = b.header.is_checkpoint();
                // Only the first segment's checkpoint is needed; later ones repeat state.
                if (checkpoint && i != start)
                    || (!checkpoint && b.header.first_ts_ns > to_ns)
                    || !may_hold(&b.header)
                {
                    continue;
                }
                if let Err(e) = identity_block::decode_where(
                    &b.header,
                    seg.block_bytes(b),
                    wanted,
                    &mut records,
                ) {
                    book.damaged.push(format!(
                        "{}: block at offset {}: {e}",
                        seg.path.display(),
                        b.offset
                    ));
                }
            }
        }
        book.only = only;
        // A lease lapses only where the log has seen past its expiry: beyond the newest
        // record, a renewal may simply not have been logged yet.
        let seen_until = records.iter().map(|r| r.learned_ns.max(r.at_ns)).max();
        for h in timeline(records, to_ns.min(seen_until.unwrap_or(0))) {
            if h.overlaps(from_ns, to_ns) {
                book.by_address.entry(h.inside_ip).or_default().push(h);
            }
        }
        book
    }

    /// Whether the book was read for a span holding `[from_ns, to_ns]` and, if it was read
    /// for some addresses only, for all of `addresses`.
    pub fn covers(&self, from_ns: u64, to_ns: u64, addresses: &HashSet<Ipv4Addr>) -> bool {
        let has_addresses = self
            .only
            .as_ref()
            .is_none_or(|only| addresses.is_subset(only));
        self.from_ns <= from_ns && to_ns <= self.to_ns && has_addresses
    }

    /// Who held `ip` at some moment in `[from_ns, to_ns]`.
    pub fn holders(&self, ip: Ipv4Addr, from_ns: u64, to_ns: u64) -> Holders {
        if !self.tracked {
            return Holders::NotTracked;
        }
        let found: Vec<Holding> = self
            .by_address
            .get(&ip)
            .into_iter()
            .flatten()
            .filter(|h| h.overlaps(from_ns, to_ns))
            .cloned()
            .collect();
        if found.is_empty() {
            Holders::Unknown
        } else {
            Holders::Known(found)
        }
    }
}

fn open_segments(root: &Path) -> Result<Vec<Segment>, ReaderError> {
    let folder = identity_dir(root);
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReaderError::Io { path, source }
    };
    let mut segments = Vec::new();
    for path in dir::segments(&folder).map_err(io(&folder))? {
        match Segment::open(&path) {
            Ok(seg) => segments.push(seg),
            Err(SegmentError::Io(e)) => return Err(ReaderError::Io { path, source: e }),
            // Unreadable header: `verify` reports it; the other segments are still read.
            Err(_) => {}
        }
    }
    Ok(segments)
}

/// Replays identity records in time order into holdings (§8.1): a start or update opens a
/// holding (or renews the holder's own), a different holder from the same source
/// supersedes it, a stop ends the stopping holder's own, a NAS reset ends every holding
/// that NAS reported, and a lease lapses at its expiry unless renewed before. Holdings
/// still open at the end run on (`to_ns` None), except leases that lapsed by `horizon_ns`.
pub fn timeline(mut records: Vec<IdentityRecord>, horizon_ns: u64) -> Vec<Holding> {
    // Stable: changes at the same moment keep the order they were stored in.
    records.sort_by_key(|r| r.at_ns);
    let mut open: HashMap<(Source, Ipv4Addr), Holding> = HashMap::new();
    let mut expiries = Expiries::default();
    let mut done = Vec::new();
    for r in &records {
        lapse_leases(&mut open, &mut expiries, r.at_ns, &mut done);
        match r.change {
            Change::Start | Change::Update | Change::Live => {
                open_or_renew(&mut open, r, &mut done);
                expiries.note(r);
            }
            Change::Stop => {
                let key = (r.source, r.inside_ip);
                if open
                    .get(&key)
                    .is_some_and(|h| h.identity.same_holder(&r.identity))
                {
                    let h = open.remove(&key).expect("present");
                    done.push(end(h, r.at_ns, Ended::Stopped));
                }
            }
            Change::NasReset => {
                let ended: Vec<_> = open
                    .iter()
                    .filter(|(_, h)| h.source == r.source && h.identity.nas_ip == r.identity.nas_ip)
                    .map(|(k, _)| *k)
                    .collect();
                for key in ended {
                    let h = open.remove(&key).expect("present");
                    done.push(end(h, r.at_ns, Ended::NasReset));
                }
            }
        }
    }
    lapse_leases(&mut open, &mut expiries, horizon_ns, &mut done);
    done.extend(open.into_values());
    done.sort_by_key(|h| (h.inside_ip, h.from_ns));
    done
}

fn open_or_renew(
    open: &mut HashMap<(Source, Ipv4Addr), Holding>,
    r: &IdentityRecord,
    done: &mut Vec<Holding>,
) {
    let key = (r.source, r.inside_ip);
    if let Some(h) = open.get_mut(&key) {
        if h.identity.same_holder(&r.identity) {
            h.expires_ns = r.expires_ns;
            fill_missing(Arc::make_mut(&mut h.identity), &r.identity);
            return;
        }
        let previous = open.remove(&key).expect("present");
        done.push(end(previous, r.at_ns, Ended::Superseded));
    }
    open.insert(
        key,
        Holding {
            inside_ip: r.inside_ip,
            source: r.source,
            identity: Arc::new(r.identity.clone()),
            from_ns: r.at_ns,
            to_ns: None,
            ended: None,
            learned_ns: r.learned_ns,
            source_ns: r.source_ns,
            expires_ns: r.expires_ns,
        },
    );
}

/// A renewal may carry fields the start lacked (an interim with the Class, a lease with a
/// hostname): they are kept; fields already known are not replaced.
fn fill_missing(known: &mut Identity, newer: &Identity) {
    let pairs = [
        (&mut known.calling_station_id, &newer.calling_station_id),
        (&mut known.nas_port_id, &newer.nas_port_id),
        (&mut known.class, &newer.class),
        (&mut known.hostname, &newer.hostname),
        (&mut known.circuit_id, &newer.circuit_id),
        (&mut known.remote_id, &newer.remote_id),
    ];
    for (slot, value) in pairs {
        if slot.is_none() {
            slot.clone_from(value);
        }
    }
    if known.nas_ip.is_none() {
        known.nas_ip = newer.nas_ip;
    }
}

/// The lease expiries of the open holdings, earliest first, so that lapsing leases costs
/// a look at the earliest rather than a walk over every open holding at every record.
/// Entries go stale when a holding is renewed, stopped or superseded; they are skipped
/// when they come up (the holding open under the key no longer expires then).
#[derive(Default)]
struct Expiries(BinaryHeap<Reverse<(u64, Source, Ipv4Addr)>>);

impl Expiries {
    /// After `r` opened or renewed its holding: that holding now expires at `r.expires_ns`.
    fn note(&mut self, r: &IdentityRecord) {
        if r.expires_ns != 0 {
            self.0.push(Reverse((r.expires_ns, r.source, r.inside_ip)));
        }
    }
}

/// Ends every open lease whose expiry is at or before `now_ns`.
fn lapse_leases(
    open: &mut HashMap<(Source, Ipv4Addr), Holding>,
    expiries: &mut Expiries,
    now_ns: u64,
    done: &mut Vec<Holding>,
) {
    while let Some(&Reverse((expiry, source, ip))) = expiries.0.peek() {
        if expiry > now_ns {
            break;
        }
        expiries.0.pop();
        let key = (source, ip);
        if open.get(&key).is_some_and(|h| h.expires_ns == expiry) {
            let h = open.remove(&key).expect("present");
            done.push(end(h, expiry, Ended::Expired));
        }
    }
}

fn end(mut h: Holding, at_ns: u64, why: Ended) -> Holding {
    h.to_ns = Some(at_ns.max(h.from_ns));
    h.ended = Some(why);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn record(change: Change, ip: u8, at_s: u64, who: &str) -> IdentityRecord {
        IdentityRecord {
            change,
            source: Source::Radius,
            inside_ip: Ipv4Addr::new(100, 64, 1, ip),
            at_ns: at_s * S,
            learned_ns: at_s * S,
            source_ns: 0,
            expires_ns: 0,
            identity: Identity {
                user: Some(who.into()),
                session_id: Some(format!("{who}-1")),
                nas_ip: Some(Ipv4Addr::new(100, 64, 0, 2)),
                ..Identity::default()
            },
        }
    }

    fn spans(holdings: &[Holding]) -> Vec<(String, u64, Option<u64>)> {
        holdings
            .iter()
            .map(|h| {
                (
                    h.identity.user.clone().unwrap(),
                    h.from_ns / S,
                    h.to_ns.map(|t| t / S),
                )
            })
            .collect()
    }

    #[test]
    fn an_address_handed_from_one_customer_to_the_next() {
        let records = vec![
            record(Change::Start, 1, 100, "alice"),
            record(Change::Update, 1, 400, "alice"),
            record(Change::Stop, 1, 500, "alice"),
            record(Change::Start, 1, 600, "bob"),
        ];
        let h = timeline(records, 1000 * S);
        assert_eq!(
            spans(&h),
            vec![("alice".into(), 100, Some(500)), ("bob".into(), 600, None)]
        );
    }

    #[test]
    fn a_late_stop_of_the_previous_holder_does_not_end_the_next() {
        let records = vec![
            record(Change::Start, 1, 100, "alice"),
            record(Change::Start, 1, 600, "bob"),
            record(Change::Stop, 1, 650, "alice"),
        ];
        let h = timeline(records, 1000 * S);
        assert_eq!(
            spans(&h),
            vec![("alice".into(), 100, Some(600)), ("bob".into(), 600, None)]
        );
        assert_eq!(h[0].ended, Some(Ended::Superseded));
    }

    #[test]
    fn leases_lapse_unless_renewed_and_nas_resets_end_everything_of_that_nas() {
        let mut lease = record(Change::Start, 2, 100, "carol");
        lease.expires_ns = 200 * S;
        let mut renewal = record(Change::Update, 2, 150, "carol");
        renewal.expires_ns = 300 * S;
        let mut reset = record(Change::NasReset, 0, 250, "");
        reset.identity.user = None;
        let records = vec![lease, renewal, record(Change::Start, 3, 120, "dave"), reset];
        let h = timeline(records, 1000 * S);
        assert_eq!(
            spans(&h),
            vec![
                ("carol".into(), 100, Some(250)),
                ("dave".into(), 120, Some(250))
            ]
        );
        let mut lease = record(Change::Start, 4, 100, "erin");
        lease.expires_ns = 200 * S;
        let h = timeline(vec![lease], 1000 * S);
        assert_eq!(
            (h[0].to_ns, h[0].ended),
            (Some(200 * S), Some(Ended::Expired))
        );
    }

    #[test]
    fn verdicts() {
        let alice = timeline(vec![record(Change::Start, 1, 100, "alice")], 1000 * S);
        let mut both = alice.clone();
        both.extend(timeline(
            vec![record(Change::Start, 1, 100, "bob")],
            1000 * S,
        ));
        assert_eq!(Holders::Known(alice).verdict(), "known");
        assert_eq!(Holders::Known(both).verdict(), "overlap");
        assert_eq!(Holders::Unknown.verdict(), "unknown");
    }
}
