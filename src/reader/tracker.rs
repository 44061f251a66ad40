//! Follows public endpoints through the log's records: who held each (protocol, public
//! address, port) or port block when, with the sessions seen on it, their destinations and
//! their last activity — and which of those holdings can answer a question.
//!
//! A holding can answer a question with a port for its whole lifetime; a port-less question
//! only while one of its sessions was active (issue 8: activity windows).

use std::net::{Ipv4Addr, SocketAddrV4};

use hashbrown::{HashMap, HashSet};

use crate::maplog::record::{Record, RecordKind};
use crate::reader::dest_index::{DestIndex, DestSession, SHORT_NS};
use crate::reader::model::{Candidate, Evidence, Question};

/// The IP protocols a mapping can have.
const PROTOCOLS: [u8; 3] = [1, 6, 17];

/// A session seen on a mapping, with its destination.
#[derive(Debug, Clone)]
struct SessionSeen {
    dest: SocketAddrV4,
    start: u64,
    end: Option<u64>,
    /// Its last packet, when its end was logged with it.
    last_active: Option<u64>,
}

impl SessionSeen {
    /// When it could last have carried a request: its last packet, else its end.
    fn active_until(&self) -> Option<u64> {
        self.last_active.or(self.end)
    }
}

/// One subscriber's hold on a public port (or port block), as far as the log shows it.
#[derive(Debug, Clone)]
struct Holding {
    protocol: u8,
    subscriber: SocketAddrV4,
    public: SocketAddrV4,
    ports: Option<(u16, u16)>,
    start: Option<u64>,
    end: Option<u64>,
    active: bool,
    open: u32,
    sessions: Vec<SessionSeen>,
    /// Held before the records read: its earlier sessions' destinations are unknown.
    earlier_unknown: bool,
    /// Latest activity among its ended sessions (an end logged without it counts as
    /// active until the end).
    latest_activity: u64,
    /// Set when its last session's end closed it: nothing on it was active after
    /// `latest_activity`. A holding closed any other way (a missed end, a restart) was
    /// possibly active until its end.
    activity_end: Option<u64>,
}

impl Holding {
    fn new(r: &Record, start: Option<u64>, earlier_unknown: bool) -> Holding {
        let block = r.kind.has_block();
        Holding {
            protocol: if block { 0 } else { r.protocol },
            subscriber: r.inside(),
            public: SocketAddrV4::new(
                Ipv4Addr::from(r.public_ip),
                if block { 0 } else { r.public_port },
            ),
            ports: block.then_some((r.block_first, r.block_last)),
            start,
            end: None,
            active: true,
            open: 0,
            sessions: Vec::new(),
            earlier_unknown,
            latest_activity: 0,
            activity_end: None,
        }
    }

    fn overlaps(&self, from: u64, to: u64) -> bool {
        self.start.is_none_or(|s| s <= to) && self.end.is_none_or(|e| e >= from)
    }

    /// Every session on it is known, with its destination: it was seen from its start and
    /// its sessions were logged with destinations.
    fn sessions_known(&self) -> bool {
        !self.earlier_unknown && !self.sessions.is_empty()
    }

    /// Whether it could have carried traffic in `[from, to]`: held then, and not known to
    /// have been idle since its sessions' last packets.
    fn may_be_active(&self, from: u64, to: u64) -> bool {
        let until = self.activity_end.or(self.end);
        self.start.is_none_or(|s| s <= to) && until.is_none_or(|e| e >= from)
    }
}

/// (public address, protocol, port): mappings by protocol and port; blocks have protocol
/// 0 and their first port.
pub(super) type Key = (u32, u8, u16);

pub(super) fn key_of(r: &Record) -> Key {
    if r.kind.has_block() {
        (r.public_ip, 0, r.block_first)
    } else {
        (r.public_ip, r.protocol, r.public_port)
    }
}

/// Follows every endpoint of interest through the records, in time order.
#[derive(Default)]
pub(super) struct Tracker {
    /// Every holding of each key, oldest first; the last may still be active.
    holdings: HashMap<Key, Vec<Holding>>,
    keys_by_address: HashMap<u32, Vec<Key>>,
    /// Port-block keys by address: a question's port may lie in any of them.
    block_keys_by_address: HashMap<u32, Vec<Key>>,
    /// Sessions by (public address, destination address) and time: a port-less question
    /// naming its server need not look at the rest of a busy address's mappings.
    destinations: DestIndex,
    /// Mapping keys by address with a holding whose sessions are not all known: they can
    /// answer a question towards any destination.
    unknown_dest_keys_by_address: HashMap<u32, Vec<Key>>,
    /// Whether the two destination indexes above are kept: only once a port-less question
    /// naming a destination is asked, so a sweep answering requests with ports pays nothing.
    destinations_kept: bool,
}

/// The active (last) holding of a key's list, if it is still active.
fn active(list: &mut [Holding]) -> Option<&mut Holding> {
    list.last_mut().filter(|h| h.active)
}

fn finish(list: &mut [Holding], end: u64) {
    if let Some(h) = active(list) {
        h.active = false;
        h.end = Some(end);
    }
}

/// Applies one record to the holdings of its key.
fn update(list: &mut Vec<Holding>, r: &Record) {
    let ts = r.ts_ns;
    match r.kind {
        RecordKind::LiveMapping | RecordKind::LiveBlock => {
            if active(list).is_none() {
                let mut h = Holding::new(r, Some(ts), true);
                h.open = r.open_sessions;
                list.push(h);
            }
        }
        RecordKind::SessionCreated => {
            let same = active(list).is_some_and(|h| h.subscriber == r.inside());
            if !same {
                finish(list, ts); // a missed end: never merge two subscribers
                list.push(Holding::new(r, Some(ts), false));
            }
            let h = list.last_mut().expect("an active holding");
            h.open += 1;
            if r.dest_ip != 0 {
                h.sessions.push(SessionSeen {
                    dest: r.dest(),
                    start: ts,
                    end: None,
                    last_active: None,
                });
            }
        }
        // An elided end's inside endpoint is the active holder's: the same handling.
        RecordKind::SessionEnded | RecordKind::SessionEndedElided => {
            if active(list).is_none() {
                // Began before anything read: its start is unknown.
                let mut h = Holding::new(r, None, true);
                h.open = 1;
                list.push(h);
            }
            let h = list.last_mut().expect("an active holding");
            let dest = r.dest();
            let last_active = (r.last_active_ns != 0).then_some(r.last_active_ns);
            if let Some(s) = h
                .sessions
                .iter_mut()
                .find(|s| s.end.is_none() && s.dest == dest)
            {
                s.end = Some(ts);
                s.last_active = last_active;
            }
            h.latest_activity = h.latest_activity.max(last_active.unwrap_or(ts));
            h.open = h.open.saturating_sub(1);
            if h.open == 0 {
                h.activity_end = Some(h.latest_activity);
                finish(list, ts);
            }
        }
        RecordKind::BlockAllocated => {
            finish(list, ts);
            list.push(Holding::new(r, Some(ts), false));
        }
        RecordKind::BlockReleased => {
            if active(list).is_none() {
                list.push(Holding::new(r, None, true));
            }
            finish(list, ts);
        }
        RecordKind::RefusedPortsExhausted
        | RecordKind::RefusedSubscriberLimit
        | RecordKind::ClockStep => {}
    }
}

impl Tracker {
    /// `activity_lookahead_ns`: how far past a port-less question's window the reader
    /// reads (see `dest_index`).
    pub(super) fn new(activity_lookahead_ns: u64) -> Tracker {
        Tracker {
            destinations: DestIndex::new(activity_lookahead_ns),
            ..Tracker::default()
        }
    }

    /// The holdings of `key`, created (and indexed) on first use: one hash lookup.
    fn list(&mut self, key: Key) -> &mut Vec<Holding> {
        self.holdings.entry(key).or_insert_with(|| {
            self.keys_by_address.entry(key.0).or_default().push(key);
            if key.1 == 0 {
                self.block_keys_by_address
                    .entry(key.0)
                    .or_default()
                    .push(key);
            }
            Vec::new()
        })
    }

    pub(super) fn apply(&mut self, r: &Record) {
        let key = key_of(r);
        let kept = self.destinations_kept;
        let list = self.list(key);
        if !kept {
            update(list, r);
            return;
        }
        let unknown_before = key.1 != 0 && list.iter().any(|h| !h.sessions_known());
        update(list, r);
        let unknown_now = key.1 != 0 && list.iter().any(|h| !h.sessions_known());
        if r.kind == RecordKind::SessionCreated && r.dest_ip != 0 {
            self.destinations.started(DestSession {
                key,
                dest_ip: r.dest_ip,
                start: r.ts_ns,
            });
        }
        self.settle(r.ts_ns);
        if unknown_now && !unknown_before {
            self.unknown_dest_keys_by_address
                .entry(key.0)
                .or_default()
                .push(key);
        }
    }

    /// From now on, keeps the destination indexes (built from what is held), for
    /// questions from `cutoff` on.
    pub(super) fn keep_destinations(&mut self, cutoff: u64) {
        if !self.destinations_kept {
            self.destinations_kept = true;
            self.index_destinations(cutoff);
        }
    }

    /// Everything up to `now` is read: sessions old enough are examined for length.
    pub(super) fn settle(&mut self, now: u64) {
        let holdings = &self.holdings;
        self.destinations.advance(now, |s| lasted_long(holdings, s));
    }

    /// The keys whose holdings can answer `q`, each once: its endpoint's under each
    /// protocol and the port blocks on its address; without a port, the mappings on the
    /// address with a session towards the question's destination around its window, or
    /// whose sessions are not all known (everything on the address if it names none).
    fn keys_for(&self, q: &Question, window: &Window, keys: &mut Vec<Key>) {
        let ip = u32::from(q.public_ip);
        fn on<'a>(index: &'a HashMap<u32, Vec<Key>>, ip: u32) -> impl Iterator<Item = Key> + 'a {
            index
                .get(&ip)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .copied()
        }
        let on_address = |index| on(index, ip);
        match (q.public_port, q.dest_ip) {
            (Some(port), _) => {
                keys.extend(PROTOCOLS.map(|p| (ip, p, port)));
                keys.extend(on_address(&self.block_keys_by_address));
            }
            (None, Some(dest)) => {
                debug_assert!(self.destinations_kept, "keep_destinations first");
                let (from, to) = (window.from, window.to);
                self.destinations.keys(ip, u32::from(dest), from, to, keys);
                // Listed once each: a mapping may be both towards the destination and of
                // unknown destinations; blocks are neither.
                keys.sort_unstable();
                keys.dedup();
                let towards_dest = keys.len();
                let unknown = on_address(&self.unknown_dest_keys_by_address);
                let unknown = unknown.filter(|k| keys[..towards_dest].binary_search(k).is_err());
                keys.extend(unknown.collect::<Vec<_>>());
                keys.extend(on_address(&self.block_keys_by_address));
            }
            (None, None) => keys.extend(on_address(&self.keys_by_address)),
        }
        keys.retain(|k| k.1 == 0 || q.protocol.is_none_or(|p| p == k.1));
    }

    /// `clock_error_ns` widens a port-less question's activity window: the NAT's clock may
    /// have been that far off when the records were written.
    pub(super) fn candidates(&self, q: &Question, clock_error_ns: u64, out: &mut Vec<Candidate>) {
        let window = Window::of(q, clock_error_ns);
        let mut keys = Vec::new();
        self.keys_for(q, &window, &mut keys);
        for h in keys.iter().filter_map(|k| self.holdings.get(k)).flatten() {
            let in_block = h
                .ports
                .is_none_or(|(lo, hi)| q.public_port.is_none_or(|p| lo <= p && p <= hi));
            let held = match window.activity {
                true => h.may_be_active(window.from, window.to),
                false => h.overlaps(window.from, window.to),
            };
            if in_block && held {
                holding_candidates(h, q, &window, out);
            }
        }
    }
}

/// Whether a session is still open, or was active for longer than the index's `SHORT_NS`
/// (false if it is no longer remembered).
fn lasted_long(holdings: &HashMap<Key, Vec<Holding>>, s: &DestSession) -> bool {
    let Some(list) = holdings.get(&s.key) else {
        return false;
    };
    list.iter()
        .flat_map(|h| &h.sessions)
        .filter(|seen| seen.start == s.start && u32::from(*seen.dest.ip()) == s.dest_ip)
        .any(|seen| {
            seen.active_until()
                .is_none_or(|until| until.saturating_sub(seen.start) > SHORT_NS)
        })
}

/// What a question's evidence must overlap. A request with a port names its mapping, which
/// is that subscriber's for its whole lifetime; a port-less request can only have travelled
/// on a session active at that moment, so it is matched against activity, widened by the
/// NAT clock's error bound.
struct Window {
    from: u64,
    to: u64,
    activity: bool,
}

impl Window {
    fn of(q: &Question, clock_error_ns: u64) -> Window {
        match q.public_port {
            Some(_) => Window {
                from: q.from_ns,
                to: q.to_ns,
                activity: false,
            },
            None => Window {
                from: q.from_ns.saturating_sub(clock_error_ns),
                to: q.to_ns.saturating_add(clock_error_ns),
                activity: true,
            },
        }
    }
}

/// The evidence one holding gives about `q`: its matching sessions, else the holding.
fn holding_candidates(h: &Holding, q: &Question, window: &Window, out: &mut Vec<Candidate>) {
    let as_candidate = |dest, start, end, last_active, evidence| Candidate {
        box_name: None,
        subscriber: h.subscriber,
        public: h.public,
        ports: h.ports,
        dest,
        protocol: h.protocol,
        start_ns: start,
        end_ns: end,
        last_active_ns: last_active,
        evidence,
        holders: Default::default(),
    };
    let before = out.len();
    for s in &h.sessions {
        let until = if window.activity {
            s.active_until()
        } else {
            s.end
        };
        let in_window = s.start <= window.to && until.is_none_or(|e| e >= window.from);
        let to_dest = q.dest_ip.is_none_or(|ip| *s.dest.ip() == ip)
            && q.dest_port.is_none_or(|p| s.dest.port() == p);
        if in_window && to_dest {
            out.push(as_candidate(
                Some(s.dest),
                Some(s.start),
                s.end,
                s.last_active,
                Evidence::Session,
            ));
        }
    }
    // Without a session to show, the holding itself is the evidence — unless every session
    // on it is known and none matches: none went to the question's destination, or, for a
    // port-less question, none was active in its window.
    let excluded = h.sessions_known() && (q.dest_ip.is_some() || window.activity);
    if out.len() == before && !excluded {
        let evidence = if h.ports.is_some() {
            Evidence::Block
        } else {
            Evidence::Mapping
        };
        out.push(as_candidate(None, h.start, h.end, h.activity_end, evidence));
    }
}

impl Tracker {
    /// Drops holdings and sessions that ended before `cutoff`.
    pub(super) fn forget_before(&mut self, cutoff: u64) {
        let ended_before = |end: Option<u64>| end.is_some_and(|e| e < cutoff);
        self.holdings.retain(|_, list| {
            list.retain(|h| h.active || !ended_before(h.end));
            for h in list.iter_mut() {
                h.sessions.retain(|s| !ended_before(s.end));
            }
            !list.is_empty()
        });
        let holdings = &self.holdings;
        for index in [&mut self.keys_by_address, &mut self.block_keys_by_address] {
            index.retain(|_, keys| {
                keys.retain(|k| holdings.contains_key(k));
                !keys.is_empty()
            });
        }
        if self.destinations_kept {
            self.index_destinations(cutoff);
        }
    }

    /// Rebuilds the destination indexes from the holdings left after forgetting what
    /// ended before `cutoff`: forgetting sessions can make a holding's sessions unknown,
    /// and each key must be listed once.
    fn index_destinations(&mut self, cutoff: u64) {
        let holdings = &self.holdings;
        let sessions = holdings.iter().flat_map(|(&key, list)| {
            list.iter()
                .flat_map(|h| &h.sessions)
                .map(move |s| DestSession {
                    key,
                    dest_ip: u32::from(*s.dest.ip()),
                    start: s.start,
                })
        });
        self.destinations
            .rebuild(sessions, cutoff, |s| lasted_long(holdings, s));
        self.unknown_dest_keys_by_address.clear();
        for (&key, list) in self.holdings.iter().filter(|(k, _)| k.1 != 0) {
            if list.iter().any(|h| !h.sessions_known()) {
                self.unknown_dest_keys_by_address
                    .entry(key.0)
                    .or_default()
                    .push(key);
            }
        }
    }

    /// A run of the NAT ended at `at_ns`: whatever it held and its open sessions end then.
    /// A holding begun later belongs to a later run and stays.
    pub(super) fn end_run(&mut self, at_ns: u64) {
        for list in self.holdings.values_mut() {
            let Some(h) = active(list).filter(|h| h.start.is_none_or(|s| s <= at_ns)) else {
                continue;
            };
            for s in h.sessions.iter_mut().filter(|s| s.end.is_none()) {
                s.end = Some(at_ns.max(s.start));
            }
            finish(list, at_ns);
        }
    }

    /// A later segment's checkpoint says what was live when it opened: anything still
    /// held here that is not in it ended by then (e.g. the NAT restarted).
    pub(super) fn reconcile(&mut self, live: &HashSet<Key>, at_ns: u64) {
        for (key, list) in self.holdings.iter_mut() {
            if !live.contains(key) {
                finish(list, at_ns);
            }
        }
    }
}
