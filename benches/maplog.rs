//! Mapping-log benchmarks: bytes per session (zstd, lz4, none; with and without
//! destination) beside RFC 8158 IPFIX and syslog encodings of the same sessions;
//! encode+compress+write rate; point-query latency; `attribute` lines per second.
//! `cargo bench --bench maplog` (TRACENAT_BENCH_SESSIONS=N to size the log; default 2 M).
//! TRACENAT_BENCH_BIG=N: point queries on an N-session log instead; with
//! TRACENAT_BENCH_LAKE=1 also on its Parquet export through DuckDB (scripts/lake/lake.py,
//! run by /opt/tracenat-lake/bin/python or TRACENAT_LAKE_PYTHON).

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Instant;

use std::net::SocketAddrV4;

use tracenat::config::{Config, LogVolume};
use tracenat::engine::counters::Activity;
use tracenat::engine::event::{Event, EventKind, EventSink, VecSink};
use tracenat::engine::{Engine, Side};
use tracenat::export::ExportEvent;
use tracenat::export::ipfix::IpfixStream;
use tracenat::export::lake;
use tracenat::export::syslog::SyslogFormat;
use tracenat::maplog::block::{self, BlockContext, Codec};
use tracenat::maplog::clock::ClockState;
use tracenat::maplog::live::LiveSet;
use tracenat::maplog::record::{self, Record};
use tracenat::maplog::writer::{LogSettings, MapLog};
use tracenat::reader::access_log::{AccessLogParser, JsonFields, LogFormat};
use tracenat::reader::attribute::{self, AttributeOptions};
use tracenat::reader::logdir::LogDir;
use tracenat::reader::model::{MappingSource, Question};
use tracenat::rng::SplitMix64;
use tracenat::wire::build::{FrameSpec, build};
use tracenat::workload::Zipf;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_764_000_000 * SEC;
const SUBSCRIBERS: u32 = 20_000;

/// Realistic synthetic sessions, made by the engine itself: 20 000 subscribers sharing
/// 64 public addresses with dynamic (random) port allocation; TCP and UDP flows to 768
/// servers with Zipf(1.0) popularity, mostly on 443/80; bursty starts (about 1000 bursts
/// a second of 1–20 flows from one subscriber); each flow sends one packet, so it ends at
/// its idle timeout (TCP transitory 4 min, UDP 5 min).
struct Traffic {
    engine: Engine<VecSink>,
    rng: SplitMix64,
    servers: Zipf,
    now: u64,
}

impl Traffic {
    fn new(live_sessions: u32) -> Traffic {
        let cfg = Config::from_toml_str(&format!(
            r#"
[interfaces]
inside = "in0"
outside = "out0"
[pool]
public = ["203.0.113.0/26"]
subscribers = ["100.64.0.0/16"]
[limits]
max-sessions = {live_sessions}
sessions-per-subscriber = 100000
ports-per-subscriber = 60000
"#
        ))
        .expect("bench config");
        Traffic {
            engine: Engine::for_all_workers(&cfg, T0, |_| VecSink::default())
                .pop()
                .expect("one worker"),
            rng: SplitMix64::new(42),
            servers: Zipf::new(768, 1.0),
            now: T0,
        }
    }

    fn sessions_created(&self) -> usize {
        self.engine.counters().get(Activity::SessionsCreated) as usize
    }

    /// One burst of new flows; the engine's events go to `out`.
    fn burst(&mut self, out: &mut Vec<Event>) {
        let rng = &mut self.rng;
        self.now += rng.next_u64() % (2 * SEC / 1000);
        self.engine.advance(self.now);
        let subscriber = Ipv4Addr::from(
            u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (rng.next_u64() % SUBSCRIBERS as u64) as u32,
        );
        for _ in 0..1 + rng.next_u64() % 20 {
            let s = self.servers.sample(rng) as u32;
            let server = Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 51, 100, 0)) + (s % 256) + (s / 256) * 65536,
            );
            let port = match rng.next_u64() % 10 {
                0..=6 => 443,
                7 | 8 => 80,
                _ => 1024 + (rng.next_u64() % 60000) as u16,
            };
            let src = SocketAddrV4::new(subscriber, 32768 + (rng.next_u64() % 28000) as u16);
            let dst = SocketAddrV4::new(server, port);
            let spec = if rng.next_u64().is_multiple_of(5) {
                FrameSpec::udp(src, dst)
            } else {
                FrameSpec::tcp(src, dst, tracenat::wire::tcp::SYN)
            };
            let mut frame = build(&spec);
            let len = frame.len();
            frame.resize(2048, 0);
            self.engine.process(&mut frame, len, Side::Inside, self.now);
        }
        out.append(&mut self.engine.sink_mut().events);
    }

    /// Lets every open session time out.
    fn drain(&mut self, out: &mut Vec<Event>) {
        self.engine.advance(self.now + 600 * SEC);
        out.append(&mut self.engine.sink_mut().events);
    }
}

fn synthetic_events(sessions: usize) -> Vec<Event> {
    let mut traffic = Traffic::new((sessions as u32).clamp(1 << 16, 4_000_000));
    let mut events = Vec::with_capacity(sessions * 2);
    while traffic.sessions_created() < sessions {
        traffic.burst(&mut events);
    }
    traffic.drain(&mut events);
    events
}

fn encoded_bytes(records: &[Record], codec: Codec) -> usize {
    let mut scratch = Vec::new();
    let ctx = BlockContext {
        worker: 0,
        sequence: 0,
        prev_hash: [0; 32],
        checkpoint: false,
        clock: ClockState::default(),
    };
    // As the writer stores them: ends of known holders without their inside endpoint.
    let mut live = LiveSet::default();
    records
        .chunks(8192)
        .map(|c| {
            let stored = live.store(c, &mut Vec::new());
            block::encode(&stored, &ctx, codec, &mut scratch)
                .bytes
                .len()
        })
        .sum()
}

/// RFC 8158 NAT44 session create/delete records (timeStamp, ingressVRFID, source and
/// post-NAT source address and port, protocol, destination and post-NAT destination
/// address and port, natEvent): 38 bytes each, in 1400-byte messages with their headers.
/// Bytes of the real IPFIX export of `events` (one observation domain, UDP-sized
/// messages, the template message once), and the events encoded per second on one core.
fn ipfix_export(events: &[Event]) -> (usize, f64) {
    let records: Vec<ExportEvent> = events
        .iter()
        .filter_map(|e| ExportEvent::from_record(0, &Record::from_event(e)))
        .collect();
    let t = Instant::now();
    let mut stream = IpfixStream::new(1, 1400);
    let mut total = stream.templates(0).len();
    for e in &records {
        total += stream.push(e, 0).map_or(0, |m| m.bytes.len());
    }
    total += stream.finish(0).map_or(0, |m| m.bytes.len());
    (total, records.len() as f64 / t.elapsed().as_secs_f64())
}

/// Bytes of the real syslog export of `events` (one line each, newline included), and the
/// events formatted per second on one core.
fn syslog_export(events: &[Event]) -> (usize, f64) {
    let records: Vec<ExportEvent> = events
        .iter()
        .filter_map(|e| ExportEvent::from_record(0, &Record::from_event(e)))
        .collect();
    let format = SyslogFormat {
        hostname: "cgn-01".into(),
        facility: 16,
    };
    let t = Instant::now();
    let total = records.iter().map(|e| format.message(e).len() + 1).sum();
    (total, records.len() as f64 / t.elapsed().as_secs_f64())
}

fn bench_settings(dir: &std::path::Path) -> LogSettings {
    LogSettings {
        flush_interval_ns: SEC,
        segment_size: 256 << 20,
        segment_age_ns: 15 * 60 * SEC,
        record_time_only: true,
        ..LogSettings::defaults(dir)
    }
}

/// Point queries on a log of `sessions` sessions (TRACENAT_BENCH_BIG=N), generated and
/// written in a stream: warm (page cache full) and cold (log files evicted from it).
fn big_log(sessions: usize) {
    println!("\n== point query on a {sessions}-session log ==");
    let dir = std::env::temp_dir().join(format!("tracenat-bench-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let (log, mut producers) = MapLog::start(bench_settings(&dir), 1, T0).expect("start log");
    let p = &mut producers[0];
    let mut traffic = Traffic::new(4_000_000);
    let mut events = Vec::new();
    let mut picks = Vec::new();
    let mut rng = SplitMix64::new(77);
    let mut feed = |events: &mut Vec<Event>, picks: &mut Vec<Event>| {
        for e in events.drain(..) {
            if e.kind == EventKind::SessionCreated
                && rng.next_u64().is_multiple_of((sessions as u64 / 40).max(1))
            {
                picks.push(e);
            }
            while !p.has_room(1) {
                std::thread::yield_now();
            }
            p.emit(&e);
        }
    };
    while traffic.sessions_created() < sessions {
        traffic.burst(&mut events);
        if events.len() >= 1 << 16 {
            feed(&mut events, &mut picks);
        }
    }
    traffic.drain(&mut events);
    feed(&mut events, &mut picks);
    p.finish();
    let report = log.close().expect("close log");
    println!(
        "written in {:.0} s: {} records, {:.2} GB, {:.2} B/session",
        t.elapsed().as_secs_f64(),
        report.records,
        report.bytes as f64 / 1e9,
        report.bytes as f64 / sessions as f64
    );
    for pass in ["cold", "warm"] {
        if pass == "cold" {
            evict_from_page_cache(&dir);
        }
        let t = Instant::now();
        let mut logdir = LogDir::open(&dir).expect("open log");
        let open_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut times: Vec<f64> = picks
            .iter()
            .map(|e| {
                let t = Instant::now();
                let answer = logdir.answer(&point_question(e)).expect("query");
                assert!(
                    answer
                        .candidates
                        .iter()
                        .any(|c| u32::from(*c.subscriber.ip()) == e.inside_ip)
                );
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{pass}: open {open_ms:.0} ms; query median {:.2} ms, p90 {:.2} ms, max {:.2} ms ({} queries)",
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            times[times.len() - 1],
            times.len()
        );
    }
    if std::env::var_os("TRACENAT_BENCH_LAKE").is_some() {
        duckdb_point_queries(&dir, &picks);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same point questions through DuckDB on the log's Parquet export, cold (files
/// evicted from the page cache, a fresh DuckDB) and warm.
fn duckdb_point_queries(dir: &std::path::Path, picks: &[Event]) {
    let lake = dir.with_extension("lake");
    let _ = std::fs::remove_dir_all(&lake);
    let t = Instant::now();
    let log = LogDir::open(dir).expect("open log");
    let report = lake::export(&log, &lake, "cgn-01", 0, u64::MAX).expect("parquet export");
    let bytes: u64 = walk(&lake)
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    println!(
        "parquet export in {:.0} s ({:.2} M events/s): {:.2} GB",
        t.elapsed().as_secs_f64(),
        report.events as f64 / t.elapsed().as_secs_f64() / 1e6,
        bytes as f64 / 1e9
    );
    let questions = lake.with_extension("questions.jsonl");
    let mut file = std::fs::File::create(&questions).expect("questions file");
    for e in picks {
        let q = point_question(e);
        let line = serde_json::json!({
            "public": format!("{}:{}", q.public_ip, e.public_port),
            "at": (q.from_ns + q.to_ns) / 2,
            "tolerance": (q.to_ns - q.from_ns) / 2,
            "expect": Ipv4Addr::from(e.inside_ip).to_string(),
        });
        writeln!(file, "{line}").expect("write question");
    }
    let python = std::env::var("TRACENAT_LAKE_PYTHON")
        .unwrap_or_else(|_| "/opt/tracenat-lake/bin/python".into());
    for pass in ["cold", "warm"] {
        if pass == "cold" {
            evict_from_page_cache(&lake);
        }
        let out = std::process::Command::new(&python)
            .args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lake/lake.py"),
                "points",
            ])
            .args(["--engine", "duckdb", "--lake"])
            .arg(&lake)
            .arg("--questions")
            .arg(&questions)
            .output()
            .expect("run lake.py");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lake.py JSON");
        let mut times: Vec<f64> = result["query_ms"]
            .as_array()
            .expect("query_ms")
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        assert_eq!(result["found"].as_u64(), Some(times.len() as u64));
        times.sort_by(f64::total_cmp);
        println!(
            "duckdb {pass}: set-up {:.0} ms; query median {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} queries)",
            result["setup_ms"].as_f64().unwrap_or(0.0),
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            times[times.len() - 1],
            times.len()
        );
    }
    let _ = std::fs::remove_dir_all(&lake);
    let _ = std::fs::remove_file(&questions);
}

/// Drops the log's files from the page cache, so the next reads come from the disk.
fn evict_from_page_cache(dir: &std::path::Path) {
    for entry in walk(dir) {
        if let Ok(f) = std::fs::File::open(&entry) {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain advisory call on an open descriptor.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// "Who had this public IP:port half a second after the session began, ± 1 s?"
fn point_question(e: &Event) -> Question {
    Question {
        public_ip: Ipv4Addr::from(e.public_ip),
        public_port: Some(e.public_port),
        from_ns: e.ts_ns + 500_000_000 - SEC,
        to_ns: e.ts_ns + 500_000_000 + SEC,
        dest_ip: None,
        dest_port: None,
        protocol: None,
    }
}

fn main() {
    if let Some(n) = std::env::var("TRACENAT_BENCH_BIG")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        big_log(n);
        return;
    }
    let sessions: usize = std::env::var("TRACENAT_BENCH_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    println!(
        "machine: {} cores; {sessions} synthetic sessions",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let events = synthetic_events(sessions);
    let sessions = events
        .iter()
        .filter(|e| e.kind == EventKind::SessionCreated)
        .count();
    let per_session = |bytes: usize| bytes as f64 / sessions as f64;

    println!("\n== bytes per session (created + ended events) ==");
    for (name, volume) in [
        ("with destination", LogVolume::SessionsWithDestination),
        ("without destination", LogVolume::SessionsWithoutDestination),
    ] {
        let records: Vec<Record> = events
            .iter()
            .filter_map(|e| record::keep(volume, e))
            .collect();
        for codec in [Codec::Zstd, Codec::Lz4, Codec::None] {
            let t = Instant::now();
            let bytes = encoded_bytes(&records, codec);
            let rate = records.len() as f64 / t.elapsed().as_secs_f64() / 1e6;
            println!(
                "{name:<20} {:<5} {:>7.2} B/session  (encode+compress {rate:.2} M events/s, one core)",
                codec.name(),
                per_session(bytes)
            );
        }
    }
    let (ipfix, ipfix_rate) = ipfix_export(&events);
    println!(
        "{:<26} {:>7.2} B/session  (encode {:.2} M events/s, one core)",
        "IPFIX (RFC 8158), UDP",
        per_session(ipfix),
        ipfix_rate / 1e6
    );
    let (syslog, syslog_rate) = syslog_export(&events);
    println!(
        "{:<26} {:>7.2} B/session  (format {:.2} M events/s, one core)",
        "syslog (RFC 5424) lines",
        per_session(syslog),
        syslog_rate / 1e6
    );

    println!("\n== writer pipeline: producer -> ring -> encode+compress -> io_uring -> disk ==");
    let dir = std::env::temp_dir().join(format!("tracenat-bench-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = bench_settings(&dir);
    let t = Instant::now();
    let (log, mut producers) = MapLog::start(settings, 1, T0).expect("start log");
    let p = &mut producers[0];
    for e in &events {
        while !p.has_room(1) {
            std::thread::yield_now();
        }
        p.emit(e);
    }
    p.finish();
    let report = log.close().expect("close log");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} events in {secs:.2} s: {:.2} M events/s ({}), {:.2} B/session on disk incl. checkpoints and index ({} blocks)",
        events.len(),
        events.len() as f64 / secs / 1e6,
        report.io,
        per_session(report.bytes as usize),
        report.blocks
    );

    let lake = dir.with_extension("lake");
    let _ = std::fs::remove_dir_all(&lake);
    let t = Instant::now();
    let report = lake::export(
        &LogDir::open(&dir).expect("open log"),
        &lake,
        "cgn-01",
        0,
        u64::MAX,
    )
    .expect("parquet export");
    let secs = t.elapsed().as_secs_f64();
    let bytes: u64 = report
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    println!(
        "parquet (events, sessions and blocks tables): {:.2} B/session, written at {:.2} M events/s (one core)",
        per_session(bytes as usize),
        report.events as f64 / secs / 1e6
    );
    let _ = std::fs::remove_dir_all(&lake);

    println!("\n== point query (public IP:port at T ± 1 s) ==");
    let mut rng = SplitMix64::new(5);
    let picks: Vec<&Event> = (0..50)
        .map(|_| &events[(rng.next_u64() % events.len() as u64) as usize])
        .filter(|e| e.kind == EventKind::SessionCreated)
        .collect();
    let t = Instant::now();
    let mut logdir = LogDir::open(&dir).expect("open log");
    let checkpointed: u64 = tracenat::reader::logdir::stats(&logdir)
        .iter()
        .map(|w| w.checkpoint_records)
        .sum();
    println!("(log holds {checkpointed} checkpoint records)");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut worst = 0f64;
    let mut total = 0f64;
    for e in &picks {
        let t = Instant::now();
        let answer = logdir.answer(&point_question(e)).expect("query");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(
            answer
                .candidates
                .iter()
                .any(|c| u32::from(*c.subscriber.ip()) == e.inside_ip)
        );
        worst = worst.max(ms);
        total += ms;
    }
    println!(
        "open: {open_ms:.1} ms; warm query: mean {:.2} ms, worst {worst:.2} ms over {} queries",
        total / picks.len() as f64,
        picks.len()
    );

    println!("\n== attribute ==");
    let mut access = Vec::new();
    let created: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::SessionCreated)
        .take(1_000_000)
        .collect();
    for e in &created {
        let s = e.ts_ns / SEC;
        writeln!(
            access,
            "{} - - [24/Nov/2025:16:{:02}:{:02} +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"bench\"",
            e.public(),
            s / 60 % 60,
            s % 60
        )
        .unwrap();
    }
    let _ = access.len();
    let mut parser = AccessLogParser::new(LogFormat::Combined, JsonFields::default());
    let options = AttributeOptions {
        skew_ns: SEC,
        ..AttributeOptions::default()
    };
    let t = Instant::now();
    let summary = attribute::attribute(
        &access[..],
        &mut parser,
        &mut logdir,
        &options,
        &mut std::io::sink(),
    )
    .expect("attribute");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} lines in {secs:.2} s: {:.0} lines/s ({} unique)",
        summary.lines,
        summary.lines as f64 / secs,
        summary.unique
    );
    let _ = std::fs::remove_dir_all(&dir);
}
