//! NAT events as syslog messages (RFC 5424), one per event, with the event's fields as
//! structured data so a SIEM can match on them and a person can grep the text.
//!
//! ```text
//! <134>1 2026-11-30T10:11:12.345Z nat-1 tracenat - SESSION_CREATE [nat@32473 event="4" worker="0" proto="17" src="100.64.0.2" sport="40000" xsrc="203.0.113.7" xsport="1026" dst="198.51.100.1" dport="443"] NAT44 session create udp 100.64.0.2:40000 -> 203.0.113.7:1026 to 198.51.100.1:443
//! ```
//!
//! The structured-data id uses enterprise number 32473, the one RFC 5612 reserves for
//! documentation: tracenat has none of its own, and a made-up number could be someone's.

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::event::{ExportEvent, NatEvent};
use crate::reader::time::TimeDisplay;

pub const SD_ID: &str = "nat@32473";
const APP_NAME: &str = "tracenat";
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_INFORMATIONAL: u8 = 6;

/// How messages are written: the box's name and the facility.
#[derive(Debug, Clone)]
pub struct SyslogFormat {
    pub hostname: String,
    pub facility: u8,
}

impl SyslogFormat {
    /// One message, without framing.
    pub fn message(&self, e: &ExportEvent) -> String {
        let severity = match e.event {
            NatEvent::AddressesExhausted | NatEvent::PortsExhausted | NatEvent::QuotaExceeded => {
                SEVERITY_WARNING
            }
            _ => SEVERITY_INFORMATIONAL,
        };
        let mut m = format!(
            "<{}>1 {} {} {APP_NAME} - {} [{SD_ID} event=\"{}\" worker=\"{}\" proto=\"{}\"",
            self.facility * 8 + severity,
            TimeDisplay::millis(e.record.ts_ns),
            self.hostname,
            e.event.msgid(),
            e.event.code(),
            e.worker,
            e.record.protocol,
        );
        let ip = Ipv4Addr::from;
        // Writing to a String cannot fail.
        let _ = write!(m, " src=\"{}\"", ip(e.record.inside_ip));
        if e.event.is_session() {
            let _ = write!(m, " sport=\"{}\"", e.record.inside_port);
        }
        if e.record.public_ip != 0 {
            let _ = write!(m, " xsrc=\"{}\"", ip(e.record.public_ip));
        }
        if e.event.is_session() {
            let _ = write!(m, " xsport=\"{}\"", e.record.public_port);
        }
        if e.event.is_session() && e.has_dest() {
            let _ = write!(
                m,
                " dst=\"{}\" dport=\"{}\"",
                ip(e.record.dest_ip),
                e.record.dest_port
            );
        }
        if e.event.is_block() {
            let _ = write!(
                m,
                " first=\"{}\" last=\"{}\"",
                e.record.block_first, e.record.block_last
            );
        }
        if e.record.kind.is_refusal() {
            let _ = write!(m, " count=\"{}\"", e.record.refused);
        }
        m.push_str("] ");
        m.push_str(&text(e));
        m
    }
}

/// The human part: what happened, in words an operator greps for.
fn text(e: &ExportEvent) -> String {
    let proto = match e.record.protocol {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        _ => "ip",
    };
    match e.event {
        NatEvent::SessionCreate | NatEvent::SessionDelete => {
            let what = if e.event == NatEvent::SessionCreate {
                "create"
            } else {
                "delete"
            };
            let mut t = format!(
                "NAT44 session {what} {proto} {} -> {}",
                e.record.inside(),
                e.record.public()
            );
            if e.has_dest() {
                let _ = write!(t, " to {}", e.record.dest());
            }
            t
        }
        NatEvent::PortBlockAllocation | NatEvent::PortBlockDeallocation => format!(
            "port block {} {} -> {} ports {}-{}",
            if e.event == NatEvent::PortBlockAllocation {
                "allocated"
            } else {
                "released"
            },
            Ipv4Addr::from(e.record.inside_ip),
            Ipv4Addr::from(e.record.public_ip),
            e.record.block_first,
            e.record.block_last
        ),
        NatEvent::AddressesExhausted => format!(
            "NAT addresses exhausted: no public address for {} ({proto})",
            Ipv4Addr::from(e.record.inside_ip)
        ),
        NatEvent::PortsExhausted => format!(
            "NAT ports exhausted on {} ({proto}), refused {}",
            Ipv4Addr::from(e.record.public_ip),
            Ipv4Addr::from(e.record.inside_ip)
        ),
        NatEvent::QuotaExceeded => format!(
            "quota exceeded: subscriber {} at its limit ({proto})",
            Ipv4Addr::from(e.record.inside_ip)
        ),
    }
}

/// RFC 6587 octet counting: `LEN SP MSG`, for syslog over TCP.
pub fn octet_counted(message: &str) -> Vec<u8> {
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message.as_bytes());
    framed
}

pub use crate::maplog::runs::system_hostname;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maplog::record::{Record, RecordKind};

    fn format() -> SyslogFormat {
        SyslogFormat {
            hostname: "nat-1".into(),
            facility: 16,
        }
    }

    fn record(kind: RecordKind) -> Record {
        Record {
            kind,
            ts_ns: 1_764_497_472_345_678_901,
            protocol: 17,
            inside_ip: u32::from(Ipv4Addr::new(100, 64, 0, 2)),
            inside_port: 40000,
            public_ip: u32::from(Ipv4Addr::new(203, 0, 113, 7)),
            public_port: 1026,
            dest_ip: u32::from(Ipv4Addr::new(198, 51, 100, 1)),
            dest_port: 443,
            block_first: 0,
            block_last: 0,
            open_sessions: 0,
            last_active_ns: 0,
            refused: 0,
        }
    }

    fn event(r: Record) -> ExportEvent {
        ExportEvent::from_record(1, &r).unwrap()
    }

    #[test]
    fn a_session_line_has_header_structured_data_and_text() {
        let line = format().message(&event(record(RecordKind::SessionCreated)));
        assert_eq!(
            line,
            "<134>1 2025-11-30T10:11:12.345Z nat-1 tracenat - SESSION_CREATE \
             [nat@32473 event=\"4\" worker=\"1\" proto=\"17\" src=\"100.64.0.2\" sport=\"40000\" \
             xsrc=\"203.0.113.7\" xsport=\"1026\" dst=\"198.51.100.1\" dport=\"443\"] \
             NAT44 session create udp 100.64.0.2:40000 -> 203.0.113.7:1026 to 198.51.100.1:443"
        );
    }

    #[test]
    fn refusals_are_warnings_and_blocks_carry_their_range() {
        let refused = event(Record {
            public_port: 0,
            dest_ip: 0,
            ..record(RecordKind::RefusedPortsExhausted)
        });
        assert_eq!(refused.event, NatEvent::PortsExhausted);
        assert!(format().message(&refused).starts_with("<132>1 "));
        let block = event(Record {
            block_first: 2048,
            block_last: 2111,
            ..record(RecordKind::BlockAllocated)
        });
        let line = format().message(&block);
        assert!(line.contains(" first=\"2048\" last=\"2111\"]"), "{line}");
        assert!(!line.contains("sport"), "{line}");
    }

    #[test]
    fn octet_counting_prefixes_the_length_in_bytes() {
        assert_eq!(octet_counted("<134>1 x"), b"8 <134>1 x");
    }
}
