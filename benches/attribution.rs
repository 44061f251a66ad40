//! Attribution benchmark (issue 8): how narrow are answers to server logs WITHOUT client
//! ports, on a carrier-grade NAT's web traffic (`src/workload/web.rs`)?
//!
//! For each scenario the same traffic is pushed through the engine once and its events are
//! logged twice: as written now (each session end with its last packet) and with the last
//! packet removed (what the log held before activity windows: a port-less request then
//! matches every mapping that merely existed). Every request the servers logged is asked
//! about without its port, with the server as destination and a skew covering the servers'
//! clock errors; the true subscriber must be among the candidates of every answer.
//!
//! `cargo bench --bench attribution` (TRACENAT_BENCH_SCALE=0.25 for a quick run).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use tracenat::config::Config;
use tracenat::engine::Engine;
use tracenat::engine::event::{Event, EventKind, EventSink, VecSink};
use tracenat::maplog::writer::{LogSettings, MapLog};
use tracenat::reader::access_log::{AccessLogParser, JsonFields, LogFormat};
use tracenat::reader::attribute::{self, AttributeOptions};
use tracenat::reader::correlate::{Fit, GroupResult, GroupVerdict, Groups};
use tracenat::reader::logdir::LogDir;
use tracenat::reader::model::{Answer, MappingSource, Question};
use tracenat::workload::web::{self, LoggedRequest, WebSpec};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_764_000_000 * SEC;
/// The servers' clocks are off by up to 3 s; the reader is told 4 s.
const OFFSET_MAX: u64 = 3 * SEC;
const SKEW: u64 = 4 * SEC;
/// Port-less requests asked about per scenario (a sample: each port-less question looks at
/// every holding on its address).
const SAMPLE: usize = 20_000;

struct Scenario {
    name: &'static str,
    subscribers: u32,
    minutes: u64,
    servers: u32,
}

fn spec(s: &Scenario, scale: f64) -> WebSpec {
    WebSpec {
        subscribers: ((s.subscribers as f64 * scale) as u32).max(10),
        first_subscriber: Ipv4Addr::new(100, 64, 0, 1),
        servers: s.servers,
        zipf: 1.0,
        start_ns: T0,
        duration_ns: s.minutes * 60 * SEC,
        mean_think_ns: 60 * SEC,
        burst_max: 4,
        busy_ns: (200 * MS, 5 * SEC),
        requests_max: 3,
        server_offset_max_ns: OFFSET_MAX,
        seed: 2026,
    }
}

/// Everyone on one public address, as a CGN packs them.
fn config() -> Config {
    Config::from_toml_str(
        "[interfaces]\ninside = \"in0\"\noutside = \"out0\"\n\
         [pool]\npublic = [\"203.0.113.1/32\"]\nsubscribers = [\"100.64.0.0/14\"]\n\
         [limits]\nmax-sessions = 4000000\n",
    )
    .expect("bench config")
}

fn write_log(dir: &Path, events: &[Event]) -> u64 {
    let mut settings = LogSettings::from_config(&config(), dir);
    settings.record_time_only = true;
    let (log, mut producers) = MapLog::start(settings, 1, T0).expect("start log");
    let p = &mut producers[0];
    for e in events {
        p.poll(e.ts_ns);
        p.emit(e);
    }
    p.finish();
    log.close().expect("close log");
    bytes_under(dir)
}

fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read log dir")
        .map(|e| e.expect("entry").path())
        .map(|p| match p.is_dir() {
            true => bytes_under(&p),
            false => p.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn question(r: &LoggedRequest) -> Question {
    Question {
        public_ip: *r.public.ip(),
        public_port: None,
        from_ns: r.logged_ns.saturating_sub(SKEW),
        to_ns: r.logged_ns + SKEW,
        dest_ip: Some(*r.server.ip()),
        dest_port: Some(r.server.port()),
        protocol: Some(6),
    }
}

/// The distinct subscriber addresses of an answer.
fn subscribers(a: &Answer) -> Vec<Ipv4Addr> {
    let mut s: Vec<Ipv4Addr> = a.candidates.iter().map(|c| *c.subscriber.ip()).collect();
    s.sort_unstable();
    s.dedup();
    s
}

struct Narrowness {
    mean_candidates: f64,
    unique: f64,
    truth_missing: usize,
    answers: Vec<Vec<Ipv4Addr>>,
}

fn answer_sample(log: &mut LogDir, sample: &[LoggedRequest]) -> Narrowness {
    let questions: Vec<Question> = sample.iter().map(question).collect();
    let mut answers = Vec::new();
    for chunk in questions.chunks(1 << 16) {
        let batch = log.answer_all(chunk).expect("answers");
        answers.extend(batch.iter().map(subscribers));
    }
    let truth_missing = sample
        .iter()
        .zip(&answers)
        .filter(|(r, a)| !a.contains(r.inside.ip()))
        .count();
    let n = answers.len().max(1) as f64;
    Narrowness {
        mean_candidates: answers.iter().map(Vec::len).sum::<usize>() as f64 / n,
        unique: answers.iter().filter(|a| a.len() == 1).count() as f64 / n,
        truth_missing,
        answers,
    }
}

/// Every `step`-th request, so the sample spans the whole run.
fn spread_sample(requests: &[LoggedRequest], n: usize) -> Vec<LoggedRequest> {
    let step = (requests.len() / n).max(1);
    requests.iter().step_by(step).copied().take(n).collect()
}

/// For each actor with at least `size` requests in the sample: `size` of them, spread over
/// its requests. Returns (actor, indices into the sample).
fn groups(sample: &[LoggedRequest], size: usize) -> Vec<(u32, Vec<usize>)> {
    let mut by_actor: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, r) in sample.iter().enumerate() {
        by_actor.entry(r.subscriber).or_default().push(i);
    }
    let mut out: Vec<(u32, Vec<usize>)> = by_actor
        .into_iter()
        .filter(|(_, v)| v.len() >= size)
        .map(|(actor, v)| {
            let step = v.len() / size;
            (actor, (0..size).map(|k| v[k * step]).collect())
        })
        .collect();
    out.sort_unstable();
    out
}

/// Each group's verdict as `attribute --correlate` gives it: the product's own grouping.
/// Returns (groups, unique groups, groups whose answer leaves out the true subscriber).
fn group_verdicts(
    spec: &WebSpec,
    answers: &[Vec<Ipv4Addr>],
    groups: &[(u32, Vec<usize>)],
) -> (usize, usize, usize) {
    let mut grouping = Groups::default();
    for (actor, members) in groups {
        let value = format!("actor-{actor}");
        for &m in members {
            grouping.add_subscribers(Some(&value), m as u64, &answers[m]);
        }
    }
    let results = grouping.results();
    let truth = |r: &GroupResult| {
        let actor: u32 = r.value["actor-".len()..].parse().expect("actor value");
        web::subscriber_ip(spec, actor)
    };
    let unique = results
        .iter()
        .filter(|r| r.verdict == GroupVerdict::Unique)
        .count();
    let wrong = results
        .iter()
        .filter(|r| {
            // The true subscriber made every request: it must fit them all.
            !r.fit_all.iter().any(|f: &Fit| f.subscriber == truth(r))
        })
        .count();
    (results.len(), unique, wrong)
}

fn attribute_rate(log: &mut LogDir, access_log: &str) -> f64 {
    let mut parser = AccessLogParser::new(LogFormat::Json, JsonFields::default());
    let options = AttributeOptions {
        skew_ns: SKEW,
        ..AttributeOptions::default()
    };
    let t = Instant::now();
    let summary = attribute::attribute(
        access_log.as_bytes(),
        &mut parser,
        log,
        &options,
        &mut std::io::sink(),
    )
    .expect("attribute");
    summary.lines as f64 / t.elapsed().as_secs_f64()
}

fn run(s: &Scenario, scale: f64) {
    let spec = spec(s, scale);
    let t = Instant::now();
    let mut web = spec.generate();
    let mut engine = Engine::for_all_workers(&config(), T0, |_| VecSink::default())
        .pop()
        .expect("one engine");
    let mut events = Vec::new();
    let end = T0 + (s.minutes + 10) * 60 * SEC;
    web::drive(&mut web.connections, &mut engine, end, |sink| {
        events.append(&mut sink.events)
    });
    let sessions = events
        .iter()
        .filter(|e| e.kind == EventKind::SessionCreated)
        .count();
    let requests = web::logged_requests(&web);
    println!(
        "\n== {}: {} subscribers on one public address, {} min, {} servers (Zipf 1.0) ==\n\
         {} connections ({} translated), {} requests logged; made in {:.1} s",
        s.name,
        spec.subscribers,
        s.minutes,
        s.servers,
        web.connections.len(),
        sessions,
        requests.len(),
        t.elapsed().as_secs_f64()
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let without_activity: Vec<Event> = events
        .iter()
        .map(|e| Event {
            last_active_ns: 0,
            ..*e
        })
        .collect();
    let after_dir = tmp.path().join("after");
    let before_dir = tmp.path().join("before");
    let after_bytes = write_log(&after_dir, &events);
    let before_bytes = write_log(&before_dir, &without_activity);
    let per = |b: u64| b as f64 / sessions.max(1) as f64;
    println!(
        "log: {:.2} B/session with activity, {:.2} B/session without (+{:.2} B)",
        per(after_bytes),
        per(before_bytes),
        per(after_bytes) - per(before_bytes)
    );
    let sample = spread_sample(&requests, SAMPLE);
    let mut before_log = LogDir::open(&before_dir).expect("open");
    let mut after_log = LogDir::open(&after_dir).expect("open");
    let before = answer_sample(&mut before_log, &sample);
    let after = answer_sample(&mut after_log, &sample);
    for (name, n) in [("before (lifetime)", &before), ("after (activity)", &after)] {
        println!(
            "{name:<18} candidates per port-less request: mean {:.1}; unique {:.1} %; truth missing in {} of {}",
            n.mean_candidates,
            n.unique * 100.0,
            n.truth_missing,
            sample.len()
        );
    }
    println!("actor groups (requests with the same user agent, intersected):");
    for size in [1, 2, 5, 10] {
        let groups = groups(&sample, size);
        let (n, unique_before, wrong_before) = group_verdicts(&spec, &before.answers, &groups);
        let (_, unique_after, wrong_after) = group_verdicts(&spec, &after.answers, &groups);
        let pct = |u: usize| 100.0 * u as f64 / n.max(1) as f64;
        println!(
            "  groups of {size:>2}: {n:>6} groups; unique {:5.1} % before, {:5.1} % after{}",
            pct(unique_before),
            pct(unique_after),
            if wrong_before + wrong_after > 0 {
                " — TRUTH MISSING"
            } else {
                ""
            }
        );
    }
    let portless = web::access_log(&sample, false);
    println!(
        "attribute, {} port-less lines: {:.0} lines/s before, {:.0} lines/s after",
        sample.len(),
        attribute_rate(&mut before_log, &portless),
        attribute_rate(&mut after_log, &portless)
    );
}

fn main() {
    let scale: f64 = std::env::var("TRACENAT_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    println!(
        "machine: {} cores; scale {scale}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let scenarios = [
        Scenario {
            name: "issue 8's case",
            subscribers: 400,
            minutes: 30,
            servers: 200,
        },
        Scenario {
            name: "CGN scale",
            subscribers: 4000,
            minutes: 30,
            servers: 2000,
        },
    ];
    for s in &scenarios {
        run(s, scale);
    }
}
