//! The entry point shared by the access-log fuzz target (`fuzz/fuzz_targets/access_log.rs`)
//! and the property tests: arbitrary bytes as a server's access log, through the clock
//! measurement, attribution and grouping by actor. It panics only when an invariant breaks.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::reader::ReaderError;
use crate::reader::access_log::{AccessLogParser, JsonFields, LogFormat};
use crate::reader::actor::ActorField;
use crate::reader::attribute::{AttributeOptions, attribute};
use crate::reader::model::{Answer, Candidate, ClockNote, Evidence, MappingSource, Question};
use crate::reader::server_clock::{ServerClock, measure};

/// Answers every question with sessions derived from it: two subscribers for even
/// ports, one for odd ones and none without a port, active around the window's middle.
struct Invented;

impl MappingSource for Invented {
    fn answer(&mut self, q: &Question) -> Result<Answer, ReaderError> {
        let middle = q.from_ns / 2 + q.to_ns / 2;
        let port = q.public_port.unwrap_or(0);
        let count = match q.public_port {
            None => 0,
            Some(p) if p.is_multiple_of(2) => 2,
            Some(_) => 1,
        };
        let candidates = (0..count)
            .map(|n| Candidate {
                box_name: None,
                subscriber: SocketAddrV4::new(Ipv4Addr::new(100, 64, (port >> 8) as u8, n), port),
                public: SocketAddrV4::new(q.public_ip, port),
                ports: None,
                dest: None,
                protocol: 6,
                start_ns: Some(middle.saturating_sub(u64::from(port) * 1_000_000)),
                end_ns: (n == 0).then_some(middle.saturating_add(u64::from(port))),
                last_active_ns: port.is_multiple_of(3).then_some(middle),
                evidence: Evidence::Session,
                holders: Default::default(),
            })
            .collect();
        Ok(Answer::new(candidates, ClockNote::default()))
    }
}

/// The first byte chooses the format, the field grouped by, the output and the clock; the
/// rest is the log.
pub fn attribute_bytes(data: &[u8]) {
    let Some((&choice, log)) = data.split_first() else {
        return;
    };
    let format = [
        LogFormat::Auto,
        LogFormat::Common,
        LogFormat::Combined,
        LogFormat::Json,
    ][usize::from(choice & 3)];
    let field = ["user", "user-agent", "path", "remote_user"][usize::from(choice >> 2 & 3)];
    let mut options = AttributeOptions {
        skew_ns: u64::from(choice >> 4) * 1_000_000_000,
        server: Some((Ipv4Addr::new(198, 51, 100, 80), Some(80))),
        json: choice & 0x40 != 0,
        correlate: Some(ActorField::new(field)),
        ..AttributeOptions::default()
    };
    if choice & 0x80 != 0 {
        let mut parser = AccessLogParser::new(format, JsonFields::default());
        // Reading memory and this source cannot fail; if it did, attribute as logged.
        if let Ok(measured) = measure(log, &mut parser, &mut Invented, &options, 600_000_000_000) {
            options.server_clock = ServerClock::Measured(measured);
        }
    }
    let mut parser = AccessLogParser::new(format, JsonFields::default());
    let mut out = Vec::new();
    // A field the detected format lacks is the one error a log can cause.
    let Ok(summary) = attribute(log, &mut parser, &mut Invented, &options, &mut out) else {
        return;
    };
    let lines = log.split(|&b| b == b'\n').count() as u64;
    assert!(summary.lines <= lines, "{summary:?} from {lines} lines");
    assert_eq!(summary.lines, summary.requests() + summary.unparsed);
    let _ = out.flush();
}
