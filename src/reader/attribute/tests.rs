use super::*;
use crate::reader::access_log::{JsonFields, LogFormat};
use crate::reader::model::{Candidate, ClockNote};
use std::net::SocketAddrV4;

const S: u64 = 1_000_000_000;
/// 25/Nov/2026:10:11:12 +0000
const T: u64 = 1_795_601_472 * S;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn candidate(subscriber: &str, port: u16, public: &str, evidence: Evidence) -> Candidate {
    Candidate {
        box_name: None,
        subscriber: SocketAddrV4::new(ip(subscriber), port),
        public: SocketAddrV4::new(ip(public), 40213),
        ports: None,
        dest: Some(SocketAddrV4::new(ip("192.0.2.80"), 443)),
        protocol: 6,
        start_ns: Some(T - 10 * S),
        end_ns: None,
        last_active_ns: None,
        evidence,
        holders: Default::default(),
    }
}

/// (public ip, public port or any, window from, window to) → candidates.
type Entry = (Ipv4Addr, Option<u16>, u64, u64, Vec<Candidate>);

/// Answers from a fixed table of entries.
struct Fake {
    table: Vec<Entry>,
    clock: ClockNote,
    asked: Vec<Question>,
}

impl MappingSource for Fake {
    fn answer(&mut self, question: &Question) -> Result<Answer, ReaderError> {
        self.asked.push(question.clone());
        let candidates = self
            .table
            .iter()
            .filter(|(ip, port, from, to, _)| {
                *ip == question.public_ip
                    && (port.is_none() || *port == question.public_port)
                    && *from <= question.to_ns
                    && question.from_ns <= *to
            })
            .flat_map(|(.., candidates)| candidates.iter().cloned())
            .collect();
        Ok(Answer::new(candidates, self.clock))
    }
}

fn fake() -> Fake {
    Fake {
        table: vec![
            (
                ip("203.0.113.7"),
                Some(40213),
                T - 5 * S,
                T + 5 * S,
                vec![candidate(
                    "100.64.0.23",
                    51000,
                    "203.0.113.7",
                    Evidence::Session,
                )],
            ),
            (
                ip("203.0.113.8"),
                None,
                T,
                T + 60 * S,
                vec![
                    candidate("100.64.0.40", 0, "203.0.113.8", Evidence::Block),
                    candidate("100.64.0.23", 0, "203.0.113.8", Evidence::Block),
                    candidate("100.64.1.2", 0, "203.0.113.8", Evidence::Deterministic),
                ],
            ),
        ],
        clock: ClockNote::default(),
        asked: Vec::new(),
    }
}

const LOG: &str = concat!(
    "203.0.113.7:40213 - - [25/Nov/2026:10:11:12 +0000] \"GET /index.html HTTP/1.1\" 200 5 \"-\" \"curl\"\n",
    "\n",
    "203.0.113.8 - - [25/Nov/2026:10:11:13 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"\n",
    "2001:db8::1 - - [25/Nov/2026:10:11:13 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"\n",
    "203.0.113.7 - - [25/Nov/2026:10:11:42 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\" 40213\n",
    "203.0.113.9 - - [25/Nov/2026:10:11:14 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\" 40213\n",
);

fn run(log: &str, options: &AttributeOptions, source: &mut Fake) -> (Summary, String) {
    let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
    let mut out = Vec::new();
    let summary = attribute(log.as_bytes(), &mut parser, source, options, &mut out).unwrap();
    (summary, String::from_utf8(out).unwrap())
}

#[test]
fn counts_and_text() {
    let mut source = fake();
    let options = AttributeOptions {
        skew_ns: 2 * S,
        ..AttributeOptions::default()
    };
    let (summary, text) = run(LOG, &options, &mut source);
    assert_eq!(
        summary,
        Summary {
            lines: 5,
            unique: 1,
            ambiguous: 1,
            none: 2,
            unparsed: 1,
        }
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(
        lines[0],
        "line 1  203.0.113.7:40213      2026-11-25T10:11:12.000Z  GET /index.html  \
         unique 100.64.0.23:51000 (session)"
    );
    assert_eq!(
        lines[1],
        "line 3  203.0.113.8            2026-11-25T10:11:13.000Z  GET /  \
         ambiguous (3): 100.64.0.23, 100.64.0.40, 100.64.1.2"
    );
    assert_eq!(
        lines[2],
        "line 4: unparsed: client is not an IPv4 address (IPv6 or a host name)"
    );
    assert!(lines[3].starts_with("line 5  203.0.113.7:40213 "), "{text}");
    assert!(lines[3].ends_with("  none"), "{text}");
    assert!(lines[4].ends_with("  none"), "{text}");
    assert_eq!(
        lines[5],
        "4 requests: 1 unique, 1 ambiguous, 2 none, 1 unparsed (5 lines, combined format)"
    );
}

#[test]
fn questions_asked() {
    let mut source = fake();
    let options = AttributeOptions {
        skew_ns: 2 * S,
        server: Some((ip("192.0.2.80"), Some(443))),
        ..AttributeOptions::default()
    };
    run(LOG, &options, &mut source);
    assert_eq!(source.asked.len(), 4);
    assert_eq!(
        source.asked[0],
        Question {
            public_ip: ip("203.0.113.7"),
            public_port: Some(40213),
            from_ns: T - 2 * S,
            to_ns: T + 2 * S,
            dest_ip: Some(ip("192.0.2.80")),
            dest_port: Some(443),
            protocol: Some(6),
        }
    );
    assert_eq!(source.asked[1].public_port, None);
    assert_eq!(source.asked[1].from_ns, T + S - 2 * S);
    assert_eq!(source.asked[2].public_port, Some(40213));
    assert_eq!(source.asked[2].to_ns, T + 32 * S);

    // Without an override, the line's own server fields are the destination; the
    // window saturates at the epoch.
    let mut source = fake();
    let log =
        r#"{"remote_addr":"203.0.113.7","remote_port":40213,"time":1,"server_addr":"192.0.2.81"}"#;
    let options = AttributeOptions {
        skew_ns: 5 * S,
        ..AttributeOptions::default()
    };
    run(log, &options, &mut source);
    let asked = &source.asked[0];
    assert_eq!((asked.from_ns, asked.to_ns), (0, 6 * S));
    assert_eq!(
        (asked.dest_ip, asked.dest_port),
        (Some(ip("192.0.2.81")), None)
    );
    assert_eq!(asked.protocol, Some(6));

    // A given server offset moves the window: a server 160 s slow logged T for T + 160.
    let mut source = fake();
    let options = AttributeOptions {
        skew_ns: 2 * S,
        server_clock: ServerClock::Fixed(-160 * S as i64),
        ..AttributeOptions::default()
    };
    run(LOG, &options, &mut source);
    let asked = &source.asked[0];
    assert_eq!((asked.from_ns, asked.to_ns), (T + 158 * S, T + 162 * S));
}

#[test]
fn json_output() {
    let mut source = fake();
    let options = AttributeOptions {
        skew_ns: 2 * S,
        server: Some((ip("192.0.2.80"), Some(443))),
        json: true,
        ..AttributeOptions::default()
    };
    let (summary, text) = run(LOG, &options, &mut source);
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(objects.len(), 6);
    let first = &objects[0];
    assert_eq!(first["line"], 1);
    assert_eq!(first["client"], "203.0.113.7:40213");
    assert_eq!(first["time"], "2026-11-25T10:11:12.000000000Z");
    assert_eq!(first["request"], "GET /index.html HTTP/1.1");
    assert_eq!(first["dest"], "192.0.2.80:443");
    assert_eq!(first["verdict"], "unique");
    assert_eq!(first["subscribers"], serde_json::json!(["100.64.0.23"]));
    let c = &first["candidates"][0];
    assert_eq!(c["subscriber"], "100.64.0.23:51000");
    assert_eq!(c["public"], "203.0.113.7:40213");
    assert_eq!(c["ports"], serde_json::Value::Null);
    assert_eq!(c["dest"], "192.0.2.80:443");
    assert_eq!(c["protocol"], 6);
    assert_eq!(c["start"], "2026-11-25T10:11:02.000000000Z");
    assert_eq!(c["end"], serde_json::Value::Null);
    assert_eq!(c["evidence"], "session");
    assert_eq!(first["clock"]["unsynchronised"], false);
    let second = &objects[1];
    assert_eq!(second["verdict"], "ambiguous");
    assert_eq!(second["candidates"].as_array().unwrap().len(), 3);
    assert_eq!(second["candidates"][0]["subscriber"], "100.64.0.40");
    assert_eq!(objects[2]["line"], 4);
    assert!(objects[2]["unparsed"].as_str().unwrap().contains("IPv4"));
    let s = &objects[5]["summary"];
    assert_eq!(s["lines"], summary.lines);
    assert_eq!(s["requests"], 4);
    assert_eq!(s["unparsed"], 1);
    assert_eq!(s["format"], "combined");
}

#[test]
fn unparsed_lines_are_bounded_and_odd_bytes_survive() {
    let mut log = Vec::new();
    for _ in 0..25 {
        log.extend_from_slice(b"not a log line\n");
    }
    log.extend_from_slice(
        b"203.0.113.7:40213 - - [25/Nov/2026:10:11:12 +0000] \"GET /\xff\x1b[31m HTTP/1.1\" 200 5\n",
    );
    let mut parser = AccessLogParser::new(LogFormat::Common, JsonFields::default());
    let mut source = fake();
    let mut out = Vec::new();
    let summary = attribute(
        &log[..],
        &mut parser,
        &mut source,
        &AttributeOptions::default(),
        &mut out,
    )
    .unwrap();
    assert_eq!(summary.unparsed, 25);
    assert_eq!(summary.unique, 1);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text.matches("unparsed:").count(),
        MAX_UNPARSED_SHOWN as usize
    );
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("GET /\u{fffd}?[31m  unique"), "{text}");
}

#[test]
fn clock_warnings() {
    let mut source = fake();
    source.clock = ClockNote {
        unsynchronised: true,
        max_error_us: 250_000,
        stepped_ns: 0,
    };
    let (_, text) = run(LOG, &AttributeOptions::default(), &mut source);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("[NAT clock unsynchronised, max error 250 ms]")
    );
    source.clock.unsynchronised = false;
    let options = AttributeOptions {
        skew_ns: S / 10,
        ..AttributeOptions::default()
    };
    let (_, text) = run(LOG, &options, &mut source);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("exceeds the skew allowed")
    );
}

/// Not a test of speed (tests never assert on time): prints lines/s for 1 M
/// synthetic combined lines through `attribute` with a trivial source. Run with
/// `cargo test --release --lib attribute::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    struct Trivial;
    impl MappingSource for Trivial {
        fn answer(&mut self, question: &Question) -> Result<Answer, ReaderError> {
            let candidates = vec![Candidate {
                box_name: None,
                subscriber: SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 23), 51000),
                public: SocketAddrV4::new(question.public_ip, question.public_port.unwrap_or(0)),
                ports: None,
                dest: None,
                protocol: 6,
                start_ns: Some(question.from_ns),
                end_ns: None,
                last_active_ns: None,
                evidence: Evidence::Session,
                holders: Default::default(),
            }];
            Ok(Answer::new(candidates, ClockNote::default()))
        }
    }
    const N: u64 = 1_000_000;
    let mut log = Vec::with_capacity(N as usize * 160);
    for i in 0..N {
        let second = i / 20; // twenty requests a second
        writeln!(
            log,
            "203.0.113.{}:{} - - [25/Nov/2026:{:02}:{:02}:{:02} +0000] \"GET /item/{i} HTTP/1.1\" 200 {} \"https://example.com/\" \"Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0\"",
            i % 250,
            1024 + i % 60000,
            10 + second / 3600,
            second / 60 % 60,
            second % 60,
            i % 9000
        )
        .unwrap();
    }
    for json in [false, true] {
        let options = AttributeOptions {
            skew_ns: 2 * S,
            json,
            ..AttributeOptions::default()
        };
        let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
        let started = std::time::Instant::now();
        let summary = attribute(
            &log[..],
            &mut parser,
            &mut Trivial,
            &options,
            &mut io::sink(),
        )
        .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(summary.unique, N);
        println!(
            "{} lines ({} MB) in {elapsed:.3} s: {:.0} lines/s ({} output)",
            N,
            log.len() / 1_000_000,
            N as f64 / elapsed,
            if json { "json" } else { "text" }
        );
    }
}
