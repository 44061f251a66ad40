//! A mapping-log record as the NAT event an exporter reports (RFC 8158's natEvent).

use crate::maplog::record::{Record, RecordKind};

/// The IANA natEvent values tracenat reports (IPFIX element 230, RFC 8158 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatEvent {
    /// No public address could be paired with the subscriber (the pool is used up).
    AddressesExhausted,
    SessionCreate,
    SessionDelete,
    /// The subscriber's public address has no free port left.
    PortsExhausted,
    /// A per-subscriber limit (sessions or ports) refused a new session.
    QuotaExceeded,
    PortBlockAllocation,
    PortBlockDeallocation,
}

impl NatEvent {
    pub const ALL: [NatEvent; 7] = [
        NatEvent::AddressesExhausted,
        NatEvent::SessionCreate,
        NatEvent::SessionDelete,
        NatEvent::PortsExhausted,
        NatEvent::QuotaExceeded,
        NatEvent::PortBlockAllocation,
        NatEvent::PortBlockDeallocation,
    ];

    /// The registry's value.
    pub fn code(self) -> u8 {
        match self {
            NatEvent::AddressesExhausted => 3,
            NatEvent::SessionCreate => 4,
            NatEvent::SessionDelete => 5,
            NatEvent::PortsExhausted => 12,
            NatEvent::QuotaExceeded => 13,
            NatEvent::PortBlockAllocation => 16,
            NatEvent::PortBlockDeallocation => 17,
        }
    }

    /// A short upper-case name, as syslog's MSGID carries it.
    pub fn msgid(self) -> &'static str {
        match self {
            NatEvent::AddressesExhausted => "NAT_ADDR_EXHAUSTED",
            NatEvent::SessionCreate => "SESSION_CREATE",
            NatEvent::SessionDelete => "SESSION_DELETE",
            NatEvent::PortsExhausted => "NAT_PORTS_EXHAUSTED",
            NatEvent::QuotaExceeded => "QUOTA_EXCEEDED",
            NatEvent::PortBlockAllocation => "PORT_BLOCK_ALLOC",
            NatEvent::PortBlockDeallocation => "PORT_BLOCK_RELEASE",
        }
    }

    pub fn is_session(self) -> bool {
        matches!(self, NatEvent::SessionCreate | NatEvent::SessionDelete)
    }

    pub fn is_block(self) -> bool {
        matches!(
            self,
            NatEvent::PortBlockAllocation | NatEvent::PortBlockDeallocation
        )
    }
}

/// One event as exported: the log's record, with the natEvent it reports and the worker
/// (observation domain) it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportEvent {
    pub event: NatEvent,
    pub worker: u16,
    pub record: Record,
}

impl ExportEvent {
    /// The event a record reports; `None` for checkpoint records (restatements of what
    /// was live when a segment opened, not events) and ends whose holder is unknown.
    pub fn from_record(worker: u16, r: &Record) -> Option<ExportEvent> {
        let event = match r.kind {
            RecordKind::SessionCreated => NatEvent::SessionCreate,
            RecordKind::SessionEnded => NatEvent::SessionDelete,
            RecordKind::BlockAllocated => NatEvent::PortBlockAllocation,
            RecordKind::BlockReleased => NatEvent::PortBlockDeallocation,
            // The engine names the exhausted address when the subscriber had one; without
            // one, it was the pairing with an address that failed.
            RecordKind::RefusedPortsExhausted if r.public_ip == 0 => NatEvent::AddressesExhausted,
            RecordKind::RefusedPortsExhausted => NatEvent::PortsExhausted,
            RecordKind::RefusedSubscriberLimit => NatEvent::QuotaExceeded,
            RecordKind::LiveMapping
            | RecordKind::LiveBlock
            | RecordKind::SessionEndedElided
            | RecordKind::ClockStep => {
                return None;
            }
        };
        Some(ExportEvent {
            event,
            worker,
            record: *r,
        })
    }

    pub fn has_dest(&self) -> bool {
        self.record.dest_ip != 0
    }
    pub fn ts_ms(&self) -> u64 {
        self.record.ts_ns / 1_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: RecordKind, public_ip: u32) -> Record {
        Record {
            protocol: 17,
            inside_ip: 0x6440_0001,
            inside_port: 1000,
            public_ip,
            ..Record::new(kind, 5_000_000_123)
        }
    }

    #[test]
    fn refusals_name_what_ran_out() {
        let e = |kind, ip| ExportEvent::from_record(0, &record(kind, ip)).map(|e| e.event);
        assert_eq!(
            e(RecordKind::RefusedPortsExhausted, 0),
            Some(NatEvent::AddressesExhausted)
        );
        assert_eq!(
            e(RecordKind::RefusedPortsExhausted, 0xCB00_7107),
            Some(NatEvent::PortsExhausted)
        );
        assert_eq!(
            e(RecordKind::RefusedSubscriberLimit, 0),
            Some(NatEvent::QuotaExceeded)
        );
        assert_eq!(e(RecordKind::LiveMapping, 1), None);
        assert_eq!(e(RecordKind::LiveBlock, 1), None);
    }

    #[test]
    fn codes_follow_the_iana_registry() {
        let codes: Vec<u8> = NatEvent::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [3, 4, 5, 12, 13, 16, 17]);
    }
}
