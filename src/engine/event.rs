//! Events: what the mapping log records. The engine emits one for every session created or
//! ended, every port block allocated or released, and every refusal.

use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    SessionCreated,
    SessionEnded,
    BlockAllocated,
    BlockReleased,
    /// A new session was refused: no public port left for the subscriber.
    RefusedPortsExhausted,
    /// A new session was refused: the subscriber reached its session or port limit.
    RefusedSubscriberLimit,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::SessionCreated,
        EventKind::SessionEnded,
        EventKind::BlockAllocated,
        EventKind::BlockReleased,
        EventKind::RefusedPortsExhausted,
        EventKind::RefusedSubscriberLimit,
    ];

    /// Stable snake_case name, used in JSON and counters.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::SessionCreated => "session_created",
            EventKind::SessionEnded => "session_ended",
            EventKind::BlockAllocated => "block_allocated",
            EventKind::BlockReleased => "block_released",
            EventKind::RefusedPortsExhausted => "refused_ports_exhausted",
            EventKind::RefusedSubscriberLimit => "refused_subscriber_limit",
        }
    }
}

/// One record for the mapping log. Plain data, `Copy`, no heap: emitting costs a struct copy.
///
/// Addresses are host-order `u32` so the log encoder can delta-encode them directly.
/// Fields that do not apply to a kind are zero (e.g. `dest` for block events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// Nanoseconds, in the clock the engine was driven with (wall clock or packet timestamps).
    pub ts_ns: u64,
    pub worker: u16,
    /// IP protocol number (6, 17, 1); 0 for block events, which cover all protocols.
    pub protocol: u8,
    pub inside_ip: u32,
    pub inside_port: u16,
    pub public_ip: u32,
    pub public_port: u16,
    pub dest_ip: u32,
    pub dest_port: u16,
    /// Port range of a block event, inclusive.
    pub block_first: u16,
    pub block_last: u16,
    /// `SessionEnded`: the session's last activity (its last packet), in the same clock,
    /// whole milliseconds before `ts_ns`. An end is emitted when the idle timer fires —
    /// minutes after the traffic stopped — so this is what says when the session could
    /// have carried a request. 0 for every other kind (and for ends where it is unknown).
    pub last_active_ns: u64,
    /// Refusals: how many refused new sessions this event stands for — 1 for the first
    /// refusal of a subscriber and reason in an interval, logged at once; the count of the
    /// rest when the interval closes (docs/mapping-log.md §5.1.1). 0 for other kinds.
    pub refused: u32,
}

impl Event {
    pub fn inside(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.inside_ip), self.inside_port)
    }
    pub fn public(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.public_ip), self.public_port)
    }
    pub fn dest(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.dest_ip), self.dest_port)
    }

    /// One JSON object on one line (for `events.jsonl`).
    pub fn to_json(&self) -> String {
        let mut s = format!(
            "{{\"kind\":\"{}\",\"ts_ns\":{},\"worker\":{},\"protocol\":{},\"inside\":\"{}\",\"public\":\"{}\"",
            self.kind.name(),
            self.ts_ns,
            self.worker,
            self.protocol,
            self.inside(),
            self.public()
        );
        if self.dest_ip != 0 {
            s.push_str(&format!(",\"dest\":\"{}\"", self.dest()));
        }
        if self.last_active_ns != 0 {
            s.push_str(&format!(",\"last_active_ns\":{}", self.last_active_ns));
        }
        if self.refused != 0 {
            s.push_str(&format!(",\"refused\":{}", self.refused));
        }
        if matches!(
            self.kind,
            EventKind::BlockAllocated | EventKind::BlockReleased
        ) {
            s.push_str(&format!(
                ",\"block\":[{},{}]",
                self.block_first, self.block_last
            ));
        }
        s.push('}');
        s
    }
}

/// Where events go. The mapping-log writer implements this; tests use [`VecSink`].
///
/// Contract: before creating a session the engine asks `has_room(n)` for the events it is
/// about to emit; if the answer is no, the session is refused (counted) — a session is never
/// translated unless its creation event is in the log pipeline. `emit` itself cannot fail:
/// end-of-session events must be absorbed (a sink keeps a reserve for them) or counted by
/// the sink as lost under an explicit operator policy.
pub trait EventSink {
    fn has_room(&self, events: usize) -> bool;
    fn emit(&mut self, event: &Event);
}

/// Keeps every event in memory (tests, replay).
#[derive(Debug, Default)]
pub struct VecSink {
    pub events: Vec<Event>,
    /// When set, `has_room` answers no once this many events are held (to test back-pressure).
    pub capacity: Option<usize>,
}

impl EventSink for VecSink {
    fn has_room(&self, events: usize) -> bool {
        self.capacity
            .is_none_or(|cap| self.events.len() + events <= cap)
    }
    fn emit(&mut self, event: &Event) {
        self.events.push(*event);
    }
}

/// Discards events (benchmarks of the pure translation path).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn has_room(&self, _: usize) -> bool {
        true
    }
    fn emit(&mut self, _: &Event) {}
}
