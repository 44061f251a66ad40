//! What a log block stores: the engine's events, plus the checkpoint kinds that let a reader
//! start in the middle of the log (mappings and blocks already live when a segment opened).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::LogVolume;
use crate::engine::event::{Event, EventKind};

/// Record kinds, with their stable on-disk codes (docs/mapping-log.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    SessionCreated = 1,
    SessionEnded = 2,
    BlockAllocated = 3,
    BlockReleased = 4,
    RefusedPortsExhausted = 5,
    RefusedSubscriberLimit = 6,
    /// Checkpoint: a mapping live when the segment opened; `ts_ns` is when it began and
    /// `open_sessions` how many sessions it held.
    LiveMapping = 7,
    /// Checkpoint: a port block held when the segment opened; `ts_ns` is when it was granted.
    LiveBlock = 8,
    /// A session ended, stored without its inside endpoint: that is the endpoint of whoever
    /// holds the public endpoint (the latest creation or checkpoint entry for it in the same
    /// segment). Readers get a [`RecordKind::SessionEnded`] with the endpoint filled in.
    SessionEndedElided = 9,
    /// The wall clock stepped (docs/mapping-log.md §5.1.2): `ts_ns` is its reading just
    /// after, `last_active_ns` just before. Written by each worker that saw it.
    ClockStep = 10,
}

impl RecordKind {
    pub fn from_code(code: u8) -> Option<RecordKind> {
        Some(match code {
            1 => RecordKind::SessionCreated,
            2 => RecordKind::SessionEnded,
            3 => RecordKind::BlockAllocated,
            4 => RecordKind::BlockReleased,
            5 => RecordKind::RefusedPortsExhausted,
            6 => RecordKind::RefusedSubscriberLimit,
            7 => RecordKind::LiveMapping,
            8 => RecordKind::LiveBlock,
            9 => RecordKind::SessionEndedElided,
            10 => RecordKind::ClockStep,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordKind::LiveMapping => "live_mapping",
            RecordKind::LiveBlock => "live_block",
            RecordKind::SessionEndedElided => "session_ended",
            RecordKind::ClockStep => "clock_step",
            other => other.event_kind().map_or("", EventKind::name),
        }
    }

    /// Session ends: the kinds that carry the session's last activity.
    pub fn is_session_end(self) -> bool {
        matches!(
            self,
            RecordKind::SessionEnded | RecordKind::SessionEndedElided
        )
    }

    /// Refused new sessions: the kinds that carry a refusal count.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            RecordKind::RefusedPortsExhausted | RecordKind::RefusedSubscriberLimit
        )
    }

    /// Kinds that carry a port range.
    pub fn has_block(self) -> bool {
        matches!(
            self,
            RecordKind::BlockAllocated | RecordKind::BlockReleased | RecordKind::LiveBlock
        )
    }

    fn event_kind(self) -> Option<EventKind> {
        Some(match self {
            RecordKind::SessionCreated => EventKind::SessionCreated,
            RecordKind::SessionEnded => EventKind::SessionEnded,
            RecordKind::BlockAllocated => EventKind::BlockAllocated,
            RecordKind::BlockReleased => EventKind::BlockReleased,
            RecordKind::RefusedPortsExhausted => EventKind::RefusedPortsExhausted,
            RecordKind::RefusedSubscriberLimit => EventKind::RefusedSubscriberLimit,
            RecordKind::LiveMapping
            | RecordKind::LiveBlock
            | RecordKind::SessionEndedElided
            | RecordKind::ClockStep => {
                return None;
            }
        })
    }
}

/// (protocol, public address, public port): what a mapping is known by.
pub type MappingKey = (u8, u32, u16);

impl Record {
    pub fn mapping_key(&self) -> MappingKey {
        (self.protocol, self.public_ip, self.public_port)
    }
}

/// Fills in the inside endpoint of elided end records, from the creations (and checkpoint
/// entries) read before them in the same segment, in order.
#[derive(Debug, Default)]
pub struct EndpointResolver {
    holders: hashbrown::HashMap<MappingKey, (u32, u16)>,
}

impl EndpointResolver {
    /// Call with every record of a segment in order, checkpoint first. An elided end
    /// becomes a complete [`RecordKind::SessionEnded`]; false if its holder is unknown.
    pub fn resolve(&mut self, r: &mut Record) -> bool {
        match r.kind {
            RecordKind::SessionCreated | RecordKind::LiveMapping => {
                self.holders
                    .insert(r.mapping_key(), (r.inside_ip, r.inside_port));
            }
            RecordKind::SessionEndedElided => {
                let Some(&(ip, port)) = self.holders.get(&r.mapping_key()) else {
                    return false;
                };
                r.kind = RecordKind::SessionEnded;
                r.inside_ip = ip;
                r.inside_port = port;
            }
            _ => {}
        }
        true
    }
}

impl From<EventKind> for RecordKind {
    fn from(kind: EventKind) -> RecordKind {
        match kind {
            EventKind::SessionCreated => RecordKind::SessionCreated,
            EventKind::SessionEnded => RecordKind::SessionEnded,
            EventKind::BlockAllocated => RecordKind::BlockAllocated,
            EventKind::BlockReleased => RecordKind::BlockReleased,
            EventKind::RefusedPortsExhausted => RecordKind::RefusedPortsExhausted,
            EventKind::RefusedSubscriberLimit => RecordKind::RefusedSubscriberLimit,
        }
    }
}

/// One log record. Addresses are host-order `u32`; fields that do not apply are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub kind: RecordKind,
    pub ts_ns: u64,
    pub protocol: u8,
    pub inside_ip: u32,
    pub inside_port: u16,
    pub public_ip: u32,
    pub public_port: u16,
    pub dest_ip: u32,
    pub dest_port: u16,
    pub block_first: u16,
    pub block_last: u16,
    /// `LiveMapping`: sessions open on the mapping; zero otherwise.
    pub open_sessions: u32,
    /// Session ends (kinds 2 and 9): the session's last packet, whole milliseconds before
    /// `ts_ns`; 0 where unknown (written before the log kept it) and for other kinds.
    pub last_active_ns: u64,
    /// Refusal kinds: how many refused new sessions the record stands for (docs/
    /// mapping-log.md §5.1.1); records written before the log counted them stand for one.
    /// 0 for other kinds.
    pub refused: u32,
}

impl Record {
    /// A record of `kind` at `ts_ns` with every other field zero (to be filled in).
    pub fn new(kind: RecordKind, ts_ns: u64) -> Record {
        Record {
            kind,
            ts_ns,
            protocol: 0,
            inside_ip: 0,
            inside_port: 0,
            public_ip: 0,
            public_port: 0,
            dest_ip: 0,
            dest_port: 0,
            block_first: 0,
            block_last: 0,
            open_sessions: 0,
            last_active_ns: 0,
            refused: 0,
        }
    }

    pub fn from_event(e: &Event) -> Record {
        Record {
            kind: e.kind.into(),
            ts_ns: e.ts_ns,
            protocol: e.protocol,
            inside_ip: e.inside_ip,
            inside_port: e.inside_port,
            public_ip: e.public_ip,
            public_port: e.public_port,
            dest_ip: e.dest_ip,
            dest_port: e.dest_port,
            block_first: e.block_first,
            block_last: e.block_last,
            open_sessions: 0,
            last_active_ns: e.last_active_ns,
            refused: e.refused,
        }
    }

    /// The engine event this record stores, for a given worker (`None` for checkpoints).
    pub fn to_event(&self, worker: u16) -> Option<Event> {
        Some(Event {
            kind: self.kind.event_kind()?,
            ts_ns: self.ts_ns,
            worker,
            protocol: self.protocol,
            inside_ip: self.inside_ip,
            inside_port: self.inside_port,
            public_ip: self.public_ip,
            public_port: self.public_port,
            dest_ip: self.dest_ip,
            dest_port: self.dest_port,
            block_first: self.block_first,
            block_last: self.block_last,
            last_active_ns: self.last_active_ns,
            refused: self.refused,
        })
    }

    pub fn inside(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.inside_ip), self.inside_port)
    }
    pub fn public(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.public_ip), self.public_port)
    }
    pub fn dest(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.dest_ip), self.dest_port)
    }

    /// One JSON object on one line: for event records exactly replay's `events.jsonl`
    /// line; checkpoint records in the same shape, with their block or session count.
    pub fn to_json(&self, worker: u16) -> String {
        if let Some(event) = self.to_event(worker) {
            return event.to_json();
        }
        let extra = match self.kind {
            RecordKind::LiveBlock => {
                format!(",\"block\":[{},{}]", self.block_first, self.block_last)
            }
            RecordKind::LiveMapping => format!(",\"open_sessions\":{}", self.open_sessions),
            RecordKind::ClockStep => format!(
                ",\"step_ns\":{},\"before_ns\":{}",
                self.ts_ns.wrapping_sub(self.last_active_ns) as i64,
                self.last_active_ns
            ),
            // An end whose holder could not be found (damage before it in its segment).
            _ => ",\"inside_unknown\":true".to_owned(),
        };
        format!(
            "{{\"kind\":\"{}\",\"ts_ns\":{},\"worker\":{worker},\"protocol\":{},\"inside\":\"{}\",\"public\":\"{}\"{extra}}}",
            self.kind.name(),
            self.ts_ns,
            self.protocol,
            self.inside(),
            self.public()
        )
    }
}

/// What a volume mode keeps of an event: the operator's precision/privacy trade-off.
pub fn keep(volume: LogVolume, event: &Event) -> Option<Record> {
    let mut record = Record::from_event(event);
    let is_session = matches!(
        event.kind,
        EventKind::SessionCreated | EventKind::SessionEnded
    );
    let is_block = matches!(
        event.kind,
        EventKind::BlockAllocated | EventKind::BlockReleased
    );
    match volume {
        LogVolume::SessionsWithDestination => {}
        LogVolume::SessionsWithoutDestination => {
            record.dest_ip = 0;
            record.dest_port = 0;
        }
        LogVolume::PortBlocks if is_session => return None,
        LogVolume::PortBlocks => {
            record.dest_ip = 0;
            record.dest_port = 0;
        }
        // Mappings follow from the stored configuration; refusals are still worth keeping.
        LogVolume::Deterministic if is_session || is_block => return None,
        LogVolume::Deterministic => {
            record.dest_ip = 0;
            record.dest_port = 0;
        }
    }
    Some(record)
}
