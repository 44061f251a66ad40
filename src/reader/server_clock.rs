//! The server's clock as `attribute` applies it: trusted, a given offset
//! (`--server-offset`), or measured from the access log itself (`--skew auto`), one
//! estimate per server (destination), by [`crate::reader::offset`].
//!
//! Measuring is a first pass over the access log: every request with a client port and a
//! known destination asks the log for the sessions of that public endpoint toward that
//! destination within `± max offset`, and each answer is a [`Sample`]. Per server at most
//! [`MAX_SAMPLES`] samples are kept — a uniform random choice (reservoir sampling, fixed
//! seed) among all of them beyond that, so the estimate covers the whole log; agreement is
//! then checked on those kept — and at most [`MAX_SERVERS`] servers are measured (requests
//! of further servers are counted and keep their uncorrected time). Requests of a server
//! with no sample keep their uncorrected time too.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::net::Ipv4Addr;

use crate::reader::ReaderError;
use crate::reader::access_log::AccessLogParser;
use crate::reader::attribute::{AttributeOptions, TCP, parse_lines};
use crate::reader::input::Chunk;
use crate::reader::model::{MappingSource, Question};
use crate::reader::offset::{OffsetEstimate, Sample, estimate, nat_window};
use crate::reader::time::format_time;
use crate::rng::SplitMix64;

/// A server: its address and, when known, its port.
pub type Server = (Ipv4Addr, Option<u16>);

/// Servers measured; requests of further servers keep their uncorrected time.
pub const MAX_SERVERS: usize = 64;
/// Samples kept per server.
pub const MAX_SAMPLES: usize = 1 << 15;

/// How `attribute` maps a request's logged time to the NAT's clock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerClock {
    /// As logged: the window is `T ± skew`.
    #[default]
    Trusted,
    /// A given offset (server minus NAT, ns) for every server.
    Fixed(i64),
    /// Measured per server.
    Measured(Measured),
}

/// What the first pass measured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Measured {
    pub by_server: BTreeMap<Server, OffsetEstimate>,
    /// Requests with a port and a destination (the candidates for samples).
    pub requests_with_port: u64,
    /// Of those, requests with no session in `± max offset`: not samples.
    pub without_session: u64,
    /// Samples not kept (over [`MAX_SAMPLES`] for their server).
    pub samples_not_kept: u64,
    /// Requests of servers over [`MAX_SERVERS`].
    pub over_server_cap: u64,
    pub max_offset_ns: u64,
}

impl ServerClock {
    /// The NAT-time window for a request logged at `time_ns` by `server`.
    pub fn window(&self, time_ns: u64, server: Option<Server>, skew_ns: u64) -> (u64, u64) {
        match self {
            ServerClock::Trusted => nat_window(time_ns, 0, 0, skew_ns),
            ServerClock::Fixed(offset) => nat_window(time_ns, *offset, *offset, skew_ns),
            ServerClock::Measured(measured) => {
                match server.and_then(|s| measured.by_server.get(&s)) {
                    Some(estimate) => estimate.window(time_ns, skew_ns),
                    None => nat_window(time_ns, 0, 0, skew_ns),
                }
            }
        }
    }
}

/// A server's samples: all of them up to [`MAX_SAMPLES`], then a uniform choice.
struct Reservoir {
    seen: u64,
    kept: Vec<Sample>,
}

impl Reservoir {
    fn offer(&mut self, sample: Sample, rng: &mut SplitMix64) {
        self.seen += 1;
        if self.kept.len() < MAX_SAMPLES {
            self.kept.push(sample);
            return;
        }
        let slot = rng.next_u64() % self.seen;
        if let Some(old) = self.kept.get_mut(slot as usize) {
            *old = sample;
        }
    }
}

/// The first pass: samples of every server's clock from `input`, then one estimate per
/// server, with the skew of `options` as the disagreement tolerated.
pub fn measure<R: BufRead>(
    mut input: R,
    parser: &mut AccessLogParser,
    source: &mut impl MappingSource,
    options: &AttributeOptions,
    max_offset_ns: u64,
) -> Result<Measured, ReaderError> {
    let mut measured = Measured {
        max_offset_ns,
        ..Measured::default()
    };
    let mut servers: HashMap<Server, Reservoir> = HashMap::new();
    let mut rng = SplitMix64::new(0);
    let (mut chunk, mut line_no) = (Chunk::default(), 0u64);
    while chunk.read(&mut input, &mut line_no)? {
        let mut asked: Vec<(Server, u64)> = Vec::new();
        let mut questions = Vec::new();
        for (_, _, parsed) in parse_lines(&chunk, parser) {
            let Ok(record) = parsed else { continue };
            let (Some(port), Some(server)) = (record.client_port, options.server.or(record.server))
            else {
                continue;
            };
            measured.requests_with_port += 1;
            if !servers.contains_key(&server) && servers.len() >= MAX_SERVERS {
                measured.over_server_cap += 1;
                continue;
            }
            let (from_ns, to_ns) = nat_window(record.time_ns, 0, 0, max_offset_ns);
            questions.push(Question {
                public_ip: record.client_ip,
                public_port: Some(port),
                from_ns,
                to_ns,
                dest_ip: Some(server.0),
                dest_port: server.1,
                protocol: Some(TCP),
            });
            asked.push((server, record.time_ns));
        }
        let answers = source.answer_all(&questions)?;
        for ((server, time_ns), answer) in asked.into_iter().zip(answers) {
            match Sample::from_candidates(time_ns, &answer.candidates, max_offset_ns) {
                None => measured.without_session += 1,
                Some(sample) => servers
                    .entry(server)
                    .or_insert_with(|| Reservoir {
                        seen: 0,
                        kept: Vec::new(),
                    })
                    .offer(sample, &mut rng),
            }
        }
    }
    for (server, reservoir) in servers {
        measured.samples_not_kept += reservoir.seen - reservoir.kept.len() as u64;
        if let Some(e) = estimate(&reservoir.kept, options.skew_ns) {
            measured.by_server.insert(server, e);
        }
    }
    Ok(measured)
}

fn server_text((ip, port): Server) -> String {
    match port {
        Some(port) => format!("{ip}:{port}"),
        None => ip.to_string(),
    }
}

/// Seconds with millisecond precision, signed.
fn secs(ns: i64) -> String {
    format!("{:+.3} s", ns as f64 / 1e9)
}

fn estimate_json(server: Server, e: &OffsetEstimate) -> serde_json::Value {
    serde_json::json!({
        "server": server_text(server),
        "samples": e.samples,
        "agreeing": e.agreeing,
        "consistent": e.consistent(),
        "band_ns": [e.band.0, e.band.1],
        "allowed_ns": [e.allowed.0, e.allowed.1],
        "at": format_time(e.reference_ns),
        "drift_ppm": e.drift_ppb as f64 / 1000.0,
        "first": format_time(e.first_ns),
        "last": format_time(e.last_ns),
    })
}

/// The clock report: one line (text) or `{"server_clock": {...}}`; nothing when trusted.
pub fn write_report(out: &mut impl Write, clock: &ServerClock, json: bool) -> io::Result<()> {
    match clock {
        ServerClock::Trusted => Ok(()),
        ServerClock::Fixed(offset) if json => {
            let object =
                serde_json::json!({"server_clock": {"mode": "given", "offset_ns": offset}});
            serde_json::to_writer(&mut *out, &object)?;
            out.write_all(b"\n")
        }
        ServerClock::Fixed(offset) => writeln!(
            out,
            "server clock: offset {} given: windows are request time − offset ± skew",
            secs(*offset)
        ),
        ServerClock::Measured(m) if json => {
            let servers: Vec<_> = m
                .by_server
                .iter()
                .map(|(s, e)| estimate_json(*s, e))
                .collect();
            let object = serde_json::json!({"server_clock": {
                "mode": "measured",
                "max_offset_ns": m.max_offset_ns,
                "requests_with_port": m.requests_with_port,
                "without_session": m.without_session,
                "samples_not_kept": m.samples_not_kept,
                "over_server_cap": m.over_server_cap,
                "servers": servers,
            }});
            serde_json::to_writer(&mut *out, &object)?;
            out.write_all(b"\n")
        }
        ServerClock::Measured(m) => write_measured_text(out, m),
    }
}

fn write_measured_text(out: &mut impl Write, m: &Measured) -> io::Result<()> {
    writeln!(
        out,
        "server clock measured from {} requests with a port ({} without a session within ±{} s{}):",
        m.requests_with_port,
        m.without_session,
        m.max_offset_ns / 1_000_000_000,
        if m.over_server_cap > 0 {
            format!(
                "; {} requests of servers over the cap of {MAX_SERVERS}, not corrected",
                m.over_server_cap
            )
        } else {
            String::new()
        }
    )?;
    if m.by_server.is_empty() {
        return writeln!(out, "  no samples: request times used as logged");
    }
    for (server, e) in &m.by_server {
        write!(
            out,
            "  {}: offset {} to {} at {}, drift {:+.1} ppm, {} samples: ",
            server_text(*server),
            secs(e.band.0),
            secs(e.band.1),
            format_time(e.reference_ns),
            e.drift_ppb as f64 / 1000.0,
            e.samples
        )?;
        if e.consistent() {
            writeln!(out, "all agree within the skew")?;
        } else {
            writeln!(
                out,
                "{} disagree by more than the skew: windows widened to offsets {} to {}",
                e.samples - e.agreeing,
                secs(e.allowed.0),
                secs(e.allowed.1)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::access_log::{JsonFields, LogFormat};
    use crate::reader::model::{Answer, Candidate, ClockNote, Evidence};
    use std::net::SocketAddrV4;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_795_601_472 * S;

    /// A log whose every session of port p starts at `T0 + p s` and is active 2 s; the
    /// server's clock is 160 s slow for the server at .80 and right for .81.
    struct Sessions;

    impl MappingSource for Sessions {
        fn answer(&mut self, q: &Question) -> Result<Answer, ReaderError> {
            let port = q.public_port.unwrap_or(0);
            let start = T0 + u64::from(port) * S;
            let candidates = (q.from_ns <= start + 2 * S && start <= q.to_ns)
                .then(|| Candidate {
                    box_name: None,
                    subscriber: SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 1), 1),
                    public: SocketAddrV4::new(q.public_ip, port),
                    ports: None,
                    dest: q
                        .dest_ip
                        .map(|ip| SocketAddrV4::new(ip, q.dest_port.unwrap_or(0))),
                    protocol: 6,
                    start_ns: Some(start),
                    end_ns: Some(start + 240 * S),
                    last_active_ns: Some(start + 2 * S),
                    evidence: Evidence::Session,
                    holders: Default::default(),
                })
                .into_iter()
                .collect();
            Ok(Answer::new(candidates, ClockNote::default()))
        }
    }

    #[test]
    fn measured_per_server() {
        let mut log = String::new();
        for port in 1000..1040u64 {
            for (server, offset) in [("198.51.100.80", -160i64), ("198.51.100.81", 0)] {
                let logged = (T0 + port * S + S) as i64 / 1_000_000_000 + offset;
                log.push_str(&format!(
                    "{{\"remote_addr\":\"203.0.113.1:{port}\",\"time\":{logged},\"server_addr\":\"{server}\"}}\n"
                ));
            }
        }
        log.push_str(
            "{\"remote_addr\":\"203.0.113.1\",\"time\":1,\"server_addr\":\"198.51.100.80\"}\n",
        );
        log.push_str("{\"remote_addr\":\"203.0.113.1:9\",\"time\":1}\n");
        let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
        let options = AttributeOptions {
            skew_ns: S,
            ..AttributeOptions::default()
        };
        let m = measure(
            log.as_bytes(),
            &mut parser,
            &mut Sessions,
            &options,
            600 * S,
        )
        .unwrap();
        assert_eq!(
            m.requests_with_port, 80,
            "port-less and server-less lines are no samples"
        );
        assert_eq!(m.without_session, 0);
        let slow = m.by_server[&(Ipv4Addr::new(198, 51, 100, 80), None)];
        let right = m.by_server[&(Ipv4Addr::new(198, 51, 100, 81), None)];
        assert!(slow.consistent() && right.consistent());
        let secs = |(lo, hi): (i64, i64)| (lo / S as i64, hi / S as i64);
        // Active 2 s, logged in whole seconds: 3 s of offsets.
        assert_eq!(secs(slow.allowed), (-161, -158));
        assert_eq!(secs(right.allowed), (-1, 2));

        let clock = ServerClock::Measured(m);
        let t = T0 + 500 * S;
        let (from, to) = clock.window(t, Some((Ipv4Addr::new(198, 51, 100, 80), None)), S);
        assert!(from <= t + 160 * S && t + 160 * S <= to && to - from <= 5 * S);
        // A server without samples: as logged.
        let other = Some((Ipv4Addr::new(192, 0, 2, 1), None));
        assert_eq!(clock.window(t, other, S), (t - S, t + S));
        assert_eq!(
            ServerClock::Fixed(-160 * S as i64).window(t, None, S),
            (t + 159 * S, t + 161 * S)
        );
        assert_eq!(ServerClock::Trusted.window(t, None, 0), (t, t));

        let mut text = Vec::new();
        write_report(&mut text, &clock, false).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("198.51.100.80: offset -16"), "{text}");
        assert!(text.contains("all agree within the skew"), "{text}");
        let mut json = Vec::new();
        write_report(&mut json, &clock, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["server_clock"]["servers"][0]["samples"], 40);
    }
}
