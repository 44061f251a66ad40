//! IPFIX messages (RFC 7011) carrying NAT events in RFC 8158's information elements.
//!
//! One [`IpfixStream`] per observation domain: it numbers data records (the header's
//! sequence number counts the data records sent before the message), packs events into
//! messages no larger than the transport allows, and writes the template set that tells a
//! collector how to read them. The templates and their fields are in docs/export.md.

use super::event::{ExportEvent, NatEvent};

pub const VERSION: u16 = 10;
const MESSAGE_HEADER: usize = 16;
const SET_HEADER: usize = 4;
const TEMPLATE_SET_ID: u16 = 2;
/// RFC 7011: an IPFIX message is at most 65,535 bytes (its length field).
pub const MAX_MESSAGE: usize = 65_535;

/// The information elements used (IANA "IPFIX Information Elements"), each with the
/// length tracenat encodes it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ObservationTimeMilliseconds,
    NatEvent,
    ProtocolIdentifier,
    SourceIpv4Address,
    SourceTransportPort,
    PostNatSourceIpv4Address,
    PostNaptSourceTransportPort,
    DestinationIpv4Address,
    DestinationTransportPort,
    PortRangeStart,
    PortRangeEnd,
    PortRangeStepSize,
    PortRangeNumPorts,
    NatPoolId,
    NatQuotaExceededEvent,
}

impl Field {
    /// (element id, length in bytes).
    fn spec(self) -> (u16, u16) {
        match self {
            Field::ObservationTimeMilliseconds => (323, 8),
            Field::NatEvent => (230, 1),
            Field::ProtocolIdentifier => (4, 1),
            Field::SourceIpv4Address => (8, 4),
            Field::SourceTransportPort => (7, 2),
            Field::PostNatSourceIpv4Address => (225, 4),
            Field::PostNaptSourceTransportPort => (227, 2),
            Field::DestinationIpv4Address => (12, 4),
            Field::DestinationTransportPort => (11, 2),
            Field::PortRangeStart => (361, 2),
            Field::PortRangeEnd => (362, 2),
            Field::PortRangeStepSize => (363, 2),
            Field::PortRangeNumPorts => (364, 2),
            Field::NatPoolId => (283, 4),
            Field::NatQuotaExceededEvent => (466, 4),
        }
    }

    fn write(self, e: &ExportEvent, out: &mut Vec<u8>) {
        match self {
            Field::ObservationTimeMilliseconds => out.extend_from_slice(&e.ts_ms().to_be_bytes()),
            Field::NatEvent => out.push(e.event.code()),
            Field::ProtocolIdentifier => out.push(e.record.protocol),
            Field::SourceIpv4Address => out.extend_from_slice(&e.record.inside_ip.to_be_bytes()),
            Field::SourceTransportPort => {
                out.extend_from_slice(&e.record.inside_port.to_be_bytes())
            }
            Field::PostNatSourceIpv4Address => {
                out.extend_from_slice(&e.record.public_ip.to_be_bytes())
            }
            Field::PostNaptSourceTransportPort => {
                out.extend_from_slice(&e.record.public_port.to_be_bytes())
            }
            Field::DestinationIpv4Address => out.extend_from_slice(&e.record.dest_ip.to_be_bytes()),
            Field::DestinationTransportPort => {
                out.extend_from_slice(&e.record.dest_port.to_be_bytes())
            }
            Field::PortRangeStart => out.extend_from_slice(&e.record.block_first.to_be_bytes()),
            Field::PortRangeEnd => out.extend_from_slice(&e.record.block_last.to_be_bytes()),
            Field::PortRangeStepSize => out.extend_from_slice(&1u16.to_be_bytes()),
            Field::PortRangeNumPorts => {
                let ports = e
                    .record
                    .block_last
                    .wrapping_sub(e.record.block_first)
                    .wrapping_add(1);
                out.extend_from_slice(&ports.to_be_bytes())
            }
            // One pool per box: its id is 0 (RFC 8158 leaves the numbering to the NAT).
            Field::NatPoolId => out.extend_from_slice(&0u32.to_be_bytes()),
            // 3: "maximum entries per user" (RFC 8158, natQuotaExceededEvent).
            Field::NatQuotaExceededEvent => out.extend_from_slice(&3u32.to_be_bytes()),
        }
    }
}

/// A template: its id (256 and up) and fields, in the order a record carries them.
#[derive(Debug)]
pub struct Template {
    pub id: u16,
    pub name: &'static str,
    fields: &'static [Field],
}

impl Template {
    pub fn record_len(&self) -> usize {
        self.fields.iter().map(|f| f.spec().1 as usize).sum()
    }

    /// (element id, length) of every field, in order.
    pub fn field_specs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.fields.iter().map(|f| f.spec())
    }

    fn write_definition(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.fields.len() as u16).to_be_bytes());
        for (id, len) in self.field_specs() {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
    }

    fn definition_len(&self) -> usize {
        4 + 4 * self.fields.len()
    }
}

use Field::*;

const SESSION_FIELDS: &[Field] = &[
    ObservationTimeMilliseconds,
    NatEvent,
    ProtocolIdentifier,
    SourceIpv4Address,
    SourceTransportPort,
    PostNatSourceIpv4Address,
    PostNaptSourceTransportPort,
    DestinationIpv4Address,
    DestinationTransportPort,
];

/// Every template tracenat sends, with the events each carries.
pub const TEMPLATES: [Template; 6] = [
    Template {
        id: 256,
        name: "NAT44 session create/delete, with destination",
        fields: SESSION_FIELDS,
    },
    Template {
        id: 257,
        name: "NAT44 session create/delete, without destination",
        fields: SESSION_FIELDS.split_at(SESSION_FIELDS.len() - 2).0,
    },
    Template {
        id: 258,
        name: "port block allocation/de-allocation",
        fields: &[
            ObservationTimeMilliseconds,
            NatEvent,
            SourceIpv4Address,
            PostNatSourceIpv4Address,
            PortRangeStart,
            PortRangeEnd,
            PortRangeStepSize,
            PortRangeNumPorts,
        ],
    },
    Template {
        id: 259,
        name: "NAT addresses exhausted",
        fields: &[
            ObservationTimeMilliseconds,
            NatEvent,
            NatPoolId,
            SourceIpv4Address,
            ProtocolIdentifier,
        ],
    },
    Template {
        id: 260,
        name: "NAT ports exhausted",
        fields: &[
            ObservationTimeMilliseconds,
            NatEvent,
            PostNatSourceIpv4Address,
            SourceIpv4Address,
            ProtocolIdentifier,
        ],
    },
    Template {
        id: 261,
        name: "quota exceeded (per subscriber)",
        fields: &[
            ObservationTimeMilliseconds,
            NatEvent,
            NatQuotaExceededEvent,
            SourceIpv4Address,
            ProtocolIdentifier,
        ],
    },
];

/// The template an event is sent with.
pub fn template_for(e: &ExportEvent) -> &'static Template {
    let index = match e.event {
        NatEvent::SessionCreate | NatEvent::SessionDelete if e.has_dest() => 0,
        NatEvent::SessionCreate | NatEvent::SessionDelete => 1,
        NatEvent::PortBlockAllocation | NatEvent::PortBlockDeallocation => 2,
        NatEvent::AddressesExhausted => 3,
        NatEvent::PortsExhausted => 4,
        NatEvent::QuotaExceeded => 5,
    };
    &TEMPLATES[index]
}

/// A finished message and the data records it carries.
#[derive(Debug)]
pub struct Finished {
    pub bytes: Vec<u8>,
    pub records: u32,
}

/// One observation domain's stream of IPFIX messages.
#[derive(Debug)]
pub struct IpfixStream {
    domain: u32,
    /// Data records sent before the message being built (modulo 2^32).
    sequence: u32,
    max_message: usize,
    message: Vec<u8>,
    /// The data set being filled: its template id and where its header starts.
    open_set: Option<(u16, usize)>,
    records_in_message: u32,
}

impl IpfixStream {
    /// `max_message`: the largest message to build (a UDP collector's path MTU less the
    /// IP and UDP headers, or up to [`MAX_MESSAGE`] for files and TCP).
    pub fn new(domain: u32, max_message: usize) -> IpfixStream {
        // The template message must fit, whatever the limit.
        let smallest = MESSAGE_HEADER + SET_HEADER + template_set_len();
        IpfixStream {
            domain,
            sequence: 0,
            max_message: max_message.clamp(smallest, MAX_MESSAGE),
            message: Vec::new(),
            open_set: None,
            records_in_message: 0,
        }
    }

    pub fn domain(&self) -> u32 {
        self.domain
    }

    /// Data records sent so far (the next message's sequence number).
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// A message holding the template set: sent first, and again on a timer over UDP.
    pub fn templates(&self, export_secs: u32) -> Vec<u8> {
        let mut message = vec![0; MESSAGE_HEADER];
        let set_start = message.len();
        message.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
        message.extend_from_slice(&[0, 0]);
        for t in &TEMPLATES {
            t.write_definition(&mut message);
        }
        close_set(&mut message, set_start);
        self.write_header(&mut message, export_secs);
        message
    }

    /// Adds an event. When the message being built had no room for it, that message is
    /// finished first and returned.
    pub fn push(&mut self, e: &ExportEvent, export_secs: u32) -> Option<Finished> {
        let template = template_for(e);
        let continues_set = matches!(self.open_set, Some((id, _)) if id == template.id);
        let needed = template.record_len() + if continues_set { 0 } else { SET_HEADER };
        let full = !self.message.is_empty() && self.message.len() + needed > self.max_message;
        let finished = if full { self.finish(export_secs) } else { None };
        if self.message.is_empty() {
            self.message.resize(MESSAGE_HEADER, 0);
        }
        if !continues_set || self.open_set.is_none() {
            self.close_open_set();
            self.open_set = Some((template.id, self.message.len()));
            self.message.extend_from_slice(&template.id.to_be_bytes());
            self.message.extend_from_slice(&[0, 0]);
        }
        for field in template.fields {
            field.write(e, &mut self.message);
        }
        self.records_in_message += 1;
        finished
    }

    /// The message being built, finished; `None` if it holds nothing.
    pub fn finish(&mut self, export_secs: u32) -> Option<Finished> {
        if self.records_in_message == 0 {
            return None;
        }
        self.close_open_set();
        let mut bytes = std::mem::take(&mut self.message);
        self.write_header(&mut bytes, export_secs);
        let records = self.records_in_message;
        self.sequence = self.sequence.wrapping_add(records);
        self.records_in_message = 0;
        Some(Finished { bytes, records })
    }

    fn close_open_set(&mut self) {
        if let Some((_, start)) = self.open_set.take() {
            close_set(&mut self.message, start);
        }
    }

    fn write_header(&self, message: &mut [u8], export_secs: u32) {
        let len = message.len() as u16;
        message[0..2].copy_from_slice(&VERSION.to_be_bytes());
        message[2..4].copy_from_slice(&len.to_be_bytes());
        message[4..8].copy_from_slice(&export_secs.to_be_bytes());
        message[8..12].copy_from_slice(&self.sequence.to_be_bytes());
        message[12..16].copy_from_slice(&self.domain.to_be_bytes());
    }
}

fn close_set(message: &mut [u8], start: usize) {
    let len = (message.len() - start) as u16;
    message[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn template_set_len() -> usize {
    TEMPLATES.iter().map(Template::definition_len).sum()
}

#[cfg(test)]
mod tests;
