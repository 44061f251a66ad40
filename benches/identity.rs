//! Subscriber identity (issue 9): what the identity chain costs.
//!
//! 1. RADIUS accounting requests per second one listener thread answers with the log
//!    durable: a real `RadiusListener` on 127.0.0.1 storing through an `IdentityLog` on the
//!    machine's disk (one block + one fdatasync per commit), fed by a sender that keeps a
//!    window of requests outstanding; side by side with the log on tmpfs (no device
//!    flush) and with an in-memory sink (no log at all).
//! 2. Bytes per identity record in the identity chain's segment files, for a RADIUS mix
//!    and a Kea lease mix, in commits of 1 record (a lone request: one block each) and of
//!    256 (a busy listener).
//! 3. What naming the customer adds to `log query` and `log attribute`: the same mapping
//!    log and questions answered from a copy without and a copy with an identity chain
//!    (a RADIUS holding for every subscriber address), alternated in one run.
//!
//! `cargo bench --bench identity` (TRACENAT_BENCH_SCALE=0.25 for a quick run).
//! Method: docs/performance.md, "Subscriber identity (issue 9)".

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracenat::config::{Config, RadiusClient, RadiusConfig};
use tracenat::engine::Engine;
use tracenat::engine::event::{Event, EventKind, EventSink, VecSink};
use tracenat::identity::radius::wire::{self, attr};
use tracenat::identity::radius::{RadiusListener, RadiusStats, RequestResult};
use tracenat::identity::{Change, Identity, IdentityRecord, IdentitySink, Source};
use tracenat::maplog::identity_log::{IdentityLog, IdentityStats};
use tracenat::maplog::writer::{LogSettings, MapLog};
use tracenat::reader::access_log::{AccessLogParser, JsonFields, LogFormat};
use tracenat::reader::attribute::{self, AttributeOptions};
use tracenat::reader::identity::Holders;
use tracenat::reader::logdir::{self, LogDir};
use tracenat::reader::model::{MappingSource, Question};
use tracenat::workload::web::{self, LoggedRequest, WebSpec};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_764_000_000 * SEC;
const SECRET: &[u8] = b"bench-secret";

fn scale() -> f64 {
    std::env::var("TRACENAT_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(10)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .map(|p| match p.is_dir() {
            true => bytes_under(&p),
            false => p.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for e in std::fs::read_dir(from).expect("read dir") {
        let p = e.expect("entry").path();
        let dest = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).expect("copy file");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Identities as the sources give them
// ---------------------------------------------------------------------------------------

/// Subscriber `i`'s RADIUS identity (what `radius::accounting` makes of a BNG's request).
fn radius_identity(i: u32) -> Identity {
    Identity {
        user: Some(format!("u{:07}@broadband.isp.example", i)),
        calling_station_id: Some(format!(
            "02-00-5E-{:02X}-{:02X}-{:02X}",
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8
        )),
        nas_ip: Some(Ipv4Addr::new(10, 255, 0, 1 + (i % 4) as u8)),
        nas_port_id: Some(format!(
            "eth 0/{}/{}:{}",
            i % 8,
            (i / 8) % 48,
            100 + i % 3000
        )),
        session_id: Some(format!("{:08X}{:08X}", i.wrapping_mul(2_654_435_761), i)),
        class: Some(format!("SUB=res-100M;POOL=cgn{}", i % 4)),
        ..Identity::default()
    }
}

/// Subscriber `i`'s Kea lease identity.
fn kea_identity(i: u32) -> Identity {
    Identity {
        hw_addr: Some(format!(
            "02:00:5e:{:02x}:{:02x}:{:02x}",
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8
        )),
        hostname: Some(match i % 3 {
            0 => format!(
                "android-{:016x}",
                u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ),
            1 => format!("DESKTOP-{:07X}", i.wrapping_mul(2_654_435_761) >> 4),
            _ => format!("cpe-{i}"),
        }),
        ..Identity::default()
    }
}

fn subscriber_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i)
}

fn record(
    change: Change,
    source: Source,
    i: u32,
    at_ns: u64,
    identity: Identity,
) -> IdentityRecord {
    IdentityRecord {
        change,
        source,
        inside_ip: subscriber_ip(i),
        at_ns,
        learned_ns: at_ns + 3 * MS,
        source_ns: if source == Source::Radius {
            at_ns / SEC * SEC
        } else {
            at_ns
        },
        expires_ns: if source == Source::KeaLease {
            at_ns + 3600 * SEC
        } else {
            0
        },
        identity,
    }
}

/// RADIUS sessions of `n` subscribers: Start, one Interim-Update an hour later (with the
/// same attributes, as BNGs send them), Stop; starts spread over an hour; in time order.
fn radius_mix(n: u32) -> Vec<IdentityRecord> {
    let mut out = Vec::new();
    for i in 0..n {
        let start = T0 + u64::from(i) * 3600 * SEC / u64::from(n);
        let id = radius_identity(i);
        out.push(record(Change::Start, Source::Radius, i, start, id.clone()));
        out.push(record(
            Change::Update,
            Source::Radius,
            i,
            start + 3600 * SEC,
            id.clone(),
        ));
        out.push(record(
            Change::Stop,
            Source::Radius,
            i,
            start + 5400 * SEC,
            id,
        ));
    }
    out.sort_by_key(|r| r.learned_ns);
    out
}

/// Kea leases of `n` subscribers: granted, renewed at half the lease time, released.
fn kea_mix(n: u32) -> Vec<IdentityRecord> {
    let mut out = Vec::new();
    for i in 0..n {
        let start = T0 + u64::from(i) * 3600 * SEC / u64::from(n);
        let id = kea_identity(i);
        out.push(record(
            Change::Start,
            Source::KeaLease,
            i,
            start,
            id.clone(),
        ));
        out.push(record(
            Change::Update,
            Source::KeaLease,
            i,
            start + 1800 * SEC,
            id.clone(),
        ));
        let mut stop = record(Change::Stop, Source::KeaLease, i, start + 2700 * SEC, id);
        stop.expires_ns = 0;
        out.push(stop);
    }
    out.sort_by_key(|r| r.learned_ns);
    out
}

// ---------------------------------------------------------------------------------------
// 1. RADIUS accounting throughput
// ---------------------------------------------------------------------------------------

/// Keeps what it is given, without looking for repeats (`MemorySink` compares every record
/// with every record stored: quadratic, fine for tests, not for 300 k requests).
#[derive(Default)]
struct VecIdentitySink(Vec<IdentityRecord>);

impl IdentitySink for VecIdentitySink {
    fn commit(&mut self, records: &[IdentityRecord]) -> std::io::Result<usize> {
        self.0.extend_from_slice(records);
        Ok(records.len())
    }
}

/// Accounting-Requests for `sessions` sessions: Start, Interim-Update, Stop of each, in
/// rounds of 1000 sessions (their starts, then their interims, then their stops).
fn accounting_requests(sessions: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(sessions as usize * 3);
    let round = 1000;
    for first in (0..sessions).step_by(round) {
        let last = (first + round as u32).min(sessions);
        for (status, offset) in [(1u32, 0u32), (3, 3600), (2, 5400)] {
            for i in first..last {
                let id = radius_identity(i);
                let text = |v: &Option<String>| v.clone().expect("set").into_bytes();
                let (user, station, line, session, class) = (
                    text(&id.user),
                    text(&id.calling_station_id),
                    text(&id.nas_port_id),
                    text(&id.session_id),
                    text(&id.class),
                );
                let status = status.to_be_bytes();
                let framed = subscriber_ip(i).octets();
                let nas = id.nas_ip.expect("set").octets();
                let ts = (1_764_000_000 + i + offset).to_be_bytes();
                let attrs: Vec<(u8, &[u8])> = vec![
                    (attr::ACCT_STATUS_TYPE, &status),
                    (attr::USER_NAME, &user),
                    (attr::FRAMED_IP_ADDRESS, &framed),
                    (attr::NAS_IP_ADDRESS, &nas),
                    (attr::NAS_PORT_ID, &line),
                    (attr::ACCT_SESSION_ID, &session),
                    (attr::CALLING_STATION_ID, &station),
                    (attr::CLASS, &class),
                    (attr::EVENT_TIMESTAMP, &ts),
                ];
                out.push(wire::accounting_request(i as u8, &attrs, SECRET).expect("request"));
            }
        }
    }
    out
}

/// Room for a whole window of answers (the default buffer holds about 200 datagrams).
fn set_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}

struct RadiusRun {
    sent: usize,
    answered: usize,
    lost: usize,
    seconds: f64,
    commits: u64,
    syncs: u64,
    stored: u64,
}

/// Sends `requests` to a listener storing into `sink`, keeping `window` outstanding, until
/// all are answered or `budget` has passed (then stops sending and waits for the rest).
fn radius_run(
    mut sink: Box<dyn IdentitySink + Send>,
    identity_stats: Option<Arc<IdentityStats>>,
    requests: &[Vec<u8>],
    window: usize,
    budget: Duration,
) -> RadiusRun {
    let config = RadiusConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        clients: vec![RadiusClient {
            address: "127.0.0.1/32".parse().expect("prefix"),
            secret: SECRET.to_vec(),
            name: "bng-1".into(),
        }],
    };
    let stats = Arc::new(RadiusStats::default());
    let mut listener = RadiusListener::bind(config, stats.clone()).expect("bind listener");
    let addr: SocketAddr = listener.local_addr().expect("address");
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            listener
                .run(sink.as_mut(), &now_ns, &stop)
                .expect("listener runs");
            drop(sink);
        })
    };
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    socket.connect(addr).expect("connect");
    set_receive_buffer(&socket, 8 << 20);
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let (mut next, mut outstanding, mut answered, mut lost) = (0, 0, 0, 0);
    let mut end = requests.len();
    let t = Instant::now();
    while next < end || outstanding > 0 {
        while outstanding < window && next < end {
            socket.send(&requests[next]).expect("send");
            next += 1;
            outstanding += 1;
        }
        match socket.recv(&mut buf) {
            Ok(_) => {
                answered += 1;
                outstanding -= 1;
            }
            Err(_) => {
                // A datagram dropped on a full socket buffer: its answer never comes.
                lost += outstanding;
                outstanding = 0;
            }
        }
        if end == requests.len() && t.elapsed() > budget {
            end = next;
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    thread.join().expect("listener thread");
    RadiusRun {
        sent: next,
        answered,
        lost,
        seconds,
        commits: stats.commits.load(Ordering::Relaxed),
        syncs: identity_stats
            .as_ref()
            .map_or(0, |s| s.log.syncs.load(Ordering::Relaxed)),
        stored: stats.requests(RequestResult::Stored),
    }
}

fn radius_throughput(disk: &Path, tmpfs: Option<&Path>) {
    let sessions = scaled(100_000) as u32;
    let t = Instant::now();
    let requests = accounting_requests(sessions);
    println!(
        "\n== 1. RADIUS accounting through one listener thread ==\n\
         {} Accounting-Requests ({} sessions: Start, Interim-Update, Stop; {} B each on average); \
         built in {:.1} s",
        requests.len(),
        sessions,
        requests.iter().map(Vec::len).sum::<usize>() / requests.len(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "{:<34} {:>6} {:>10} {:>10} {:>11} {:>10} {:>7} {:>8}",
        "sink", "window", "answered", "req/s", "commits/s", "rec/commit", "syncs", "lost"
    );
    let mut run = 0;
    for window in [1usize, 16, 256] {
        let budget = Duration::from_secs(if window == 1 { 3 } else { 5 });
        let mut sinks: Vec<(String, Option<PathBuf>)> = vec![(
            "IdentityLog on disk (fdatasync)".into(),
            Some(disk.to_owned()),
        )];
        if let Some(tmpfs) = tmpfs {
            sinks.push(("IdentityLog on tmpfs".into(), Some(tmpfs.to_owned())));
        }
        sinks.push(("in memory (no log)".into(), None));
        for (name, dir) in sinks {
            run += 1;
            let (sink, stats): (Box<dyn IdentitySink + Send>, _) = match &dir {
                Some(root) => {
                    let log =
                        IdentityLog::open(&LogSettings::defaults(&root.join(format!("r{run}"))))
                            .expect("open identity log");
                    let stats = log.stats();
                    (Box::new(log), Some(stats))
                }
                None => (Box::new(VecIdentitySink::default()), None),
            };
            let r = radius_run(sink, stats, &requests, window, budget);
            // Every answer follows its commit (an answer may be lost on the way back).
            assert!(
                r.stored as usize >= r.answered,
                "an answer without its record"
            );
            println!(
                "{name:<34} {window:>6} {:>10} {:>10.0} {:>11.0} {:>10.1} {:>7} {:>8}",
                r.answered,
                r.answered as f64 / r.seconds,
                r.commits as f64 / r.seconds,
                r.stored as f64 / r.commits.max(1) as f64,
                r.syncs,
                if r.lost > 0 {
                    format!("{} of {}", r.lost, r.sent)
                } else {
                    "0".into()
                }
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Bytes per record
// ---------------------------------------------------------------------------------------

fn bytes_per_record(root: &Path) {
    let n = scaled(10_000) as u32;
    println!(
        "\n== 2. Identity chain bytes per record ({n} subscribers: 3 records each; \
         segment files incl. headers, 15-min checkpoints and indexes) =="
    );
    println!(
        "{:<10} {:>7} {:>9} {:>8} {:>8} {:>11} {:>11} {:>14} {:>11}",
        "mix",
        "commit",
        "records",
        "blocks",
        "ckpt rec",
        "bytes",
        "B/record",
        "B/rec w/o ckpt",
        "raw B/rec"
    );
    for (name, records) in [("radius", radius_mix(n)), ("kea", kea_mix(n))] {
        for commit in [1usize, 256] {
            let dir = root.join(format!("{name}-{commit}"));
            let mut settings = LogSettings::defaults(&dir);
            settings.direct_io = false;
            let mut log = IdentityLog::open(&settings).expect("open identity log");
            for chunk in records.chunks(commit) {
                log.store(chunk).expect("store");
            }
            log.close().expect("close");
            drop(log);
            let opened = LogDir::open(&dir).expect("open log dir");
            let s = logdir::identity_stats(&opened).expect("identity chain");
            // The records' own blocks, without the checkpoints each 15-min segment opens with.
            let record_blocks: u64 = opened
                .identity_segments
                .iter()
                .flat_map(|seg| &seg.blocks)
                .filter(|b| !b.header.is_checkpoint())
                .map(|b| b.header.total_len() as u64)
                .sum();
            assert_eq!(s.records as usize, records.len());
            let on_disk = bytes_under(&dir.join("identity"));
            println!(
                "{name:<10} {commit:>7} {:>9} {:>8} {:>8} {:>11} {:>11.1} {:>14.1} {:>11.1}",
                s.records,
                s.blocks,
                s.checkpoint_records,
                on_disk,
                on_disk as f64 / s.records as f64,
                record_blocks as f64 / s.records as f64,
                s.raw_payload_bytes as f64 / (s.records + s.checkpoint_records) as f64,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Lookup overhead on `log query` and `log attribute`
// ---------------------------------------------------------------------------------------

const OFFSET_MAX: u64 = 3 * SEC;
const SKEW: u64 = 4 * SEC;

fn web_spec(subscribers: u32) -> WebSpec {
    WebSpec {
        subscribers,
        first_subscriber: Ipv4Addr::new(100, 64, 0, 1),
        servers: subscribers / 2,
        zipf: 1.0,
        start_ns: T0,
        duration_ns: 30 * 60 * SEC,
        mean_think_ns: 60 * SEC,
        burst_max: 4,
        busy_ns: (200 * MS, 5 * SEC),
        requests_max: 3,
        server_offset_max_ns: OFFSET_MAX,
        seed: 2026,
    }
}

fn web_config() -> Config {
    Config::from_toml_str(
        "[interfaces]\ninside = \"in0\"\noutside = \"out0\"\n\
         [pool]\npublic = [\"203.0.113.1/32\"]\nsubscribers = [\"100.64.0.0/14\"]\n\
         [limits]\nmax-sessions = 4000000\n",
    )
    .expect("bench config")
}

fn write_log(dir: &Path, events: &[Event]) {
    let mut settings = LogSettings::from_config(&web_config(), dir);
    settings.record_time_only = true;
    let (log, mut producers) = MapLog::start(settings, 1, T0).expect("start log");
    let p = &mut producers[0];
    for e in events {
        p.poll(e.ts_ns);
        p.emit(e);
    }
    p.finish();
    log.close().expect("close log");
}

/// A RADIUS holding for every subscriber: Start some time in the hour before the traffic,
/// Interim-Update hourly, learned as they happen; committed in groups of 256 as a busy
/// listener does.
fn add_identity_chain(dir: &Path, spec: &WebSpec) -> usize {
    let n = spec.subscribers;
    let mut records = Vec::new();
    for i in 0..n {
        let ip = web::subscriber_ip(spec, i);
        let start = T0 - 3600 * SEC + u64::from(i) * 3600 * SEC / u64::from(n);
        let mut t = start;
        let mut change = Change::Start;
        while t < T0 + 3 * 3600 * SEC {
            let mut r = record(change, Source::Radius, i, t, radius_identity(i));
            r.inside_ip = ip;
            records.push(r);
            change = Change::Update;
            t += 3600 * SEC;
        }
    }
    records.sort_by_key(|r| r.learned_ns);
    let mut log = IdentityLog::open(&LogSettings::defaults(dir)).expect("open identity log");
    for chunk in records.chunks(256) {
        log.store(chunk).expect("store");
    }
    log.close().expect("close");
    records.len()
}

fn question(r: &LoggedRequest, with_port: bool) -> Question {
    Question {
        public_ip: *r.public.ip(),
        public_port: with_port.then(|| r.public.port()),
        from_ns: r.logged_ns.saturating_sub(SKEW),
        to_ns: r.logged_ns + SKEW,
        dest_ip: Some(*r.server.ip()),
        dest_port: Some(r.server.port()),
        protocol: Some(6),
    }
}

fn spread_sample(requests: &[LoggedRequest], n: usize) -> Vec<LoggedRequest> {
    let step = (requests.len() / n).max(1);
    requests.iter().step_by(step).copied().take(n).collect()
}

/// `log query`: each question from a freshly opened directory, as each command does.
/// Returns questions/s and how many candidates were named.
fn query_fresh(dir: &Path, questions: &[Question]) -> (f64, usize) {
    let t = Instant::now();
    let mut named = 0;
    for q in questions {
        let mut log = LogDir::open(dir).expect("open");
        let a = log.answer(q).expect("answer");
        named += a
            .candidates
            .iter()
            .filter(|c| matches!(c.holders, Holders::Known(_)))
            .count();
    }
    (questions.len() as f64 / t.elapsed().as_secs_f64(), named)
}

/// Single questions, one after another, from one open directory (what a long-lived
/// caller of `LogDir::answer` does).
fn query_kept(dir: &Path, questions: &[Question]) -> (f64, usize) {
    let mut log = LogDir::open(dir).expect("open");
    let t = Instant::now();
    let mut named = 0;
    for q in questions {
        let a = log.answer(q).expect("answer");
        named += a
            .candidates
            .iter()
            .filter(|c| matches!(c.holders, Holders::Known(_)))
            .count();
    }
    (questions.len() as f64 / t.elapsed().as_secs_f64(), named)
}

fn attribute_rate(dir: &Path, access_log: &str) -> (f64, usize) {
    let mut log = LogDir::open(dir).expect("open");
    let mut parser = AccessLogParser::new(LogFormat::Json, JsonFields::default());
    let options = AttributeOptions {
        skew_ns: SKEW,
        ..AttributeOptions::default()
    };
    let mut out = Vec::new();
    let t = Instant::now();
    let summary = attribute::attribute(
        access_log.as_bytes(),
        &mut parser,
        &mut log,
        &options,
        &mut out,
    )
    .expect("attribute");
    let rate = summary.lines as f64 / t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out);
    (rate, text.matches("@broadband.isp.example").count())
}

/// Runs `f` on both directories alternately, `rounds` times; the median rate of each.
fn side_by_side(
    rounds: usize,
    plain: &Path,
    with_identity: &Path,
    f: impl Fn(&Path) -> (f64, usize),
) -> (f64, f64, usize, usize) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut named_a, mut named_b) = (0, 0);
    for _ in 0..rounds {
        let (r, n) = f(plain);
        a.push(r);
        named_a = n;
        let (r, n) = f(with_identity);
        b.push(r);
        named_b = n;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b), named_a, named_b)
}

fn lookup_overhead(root: &Path, subscribers: u32) {
    let spec = web_spec(((subscribers as f64 * scale()) as u32).max(10));
    let t = Instant::now();
    let mut web_traffic = spec.generate();
    let mut engine = Engine::for_all_workers(&web_config(), T0, |_| VecSink::default())
        .pop()
        .expect("one engine");
    let mut events = Vec::new();
    web::drive(
        &mut web_traffic.connections,
        &mut engine,
        T0 + 40 * 60 * SEC,
        |sink| events.append(&mut sink.events),
    );
    let sessions = events
        .iter()
        .filter(|e| e.kind == EventKind::SessionCreated)
        .count();
    let requests = web::logged_requests(&web_traffic);
    let plain = root.join(format!("plain-{}", spec.subscribers));
    let with_identity = root.join(format!("identity-{}", spec.subscribers));
    write_log(&plain, &events);
    copy_dir(&plain, &with_identity);
    let identity_records = add_identity_chain(&with_identity, &spec);
    println!(
        "\n== 3. Identity lookup: {} subscribers on one public address, 30 min, {} sessions, \
         {} requests logged; identity chain of {} records ({} B) added to a copy; made in {:.1} s ==",
        spec.subscribers,
        sessions,
        requests.len(),
        identity_records,
        bytes_under(&with_identity.join("identity")),
        t.elapsed().as_secs_f64()
    );
    // Port-less single questions are slow (each reads the sessions of its window from a
    // checkpoint on): fewer of them.
    let single = spread_sample(&requests, 1_000);
    let single_portless = spread_sample(&requests, 100);
    let many = spread_sample(&requests, 20_000);
    if let Ok(what) = std::env::var("TRACENAT_BENCH_PROFILE") {
        // Only the copy with identities, for a profiler.
        let qs: Vec<Question> = single.iter().map(|r| question(r, true)).collect();
        let text = web::access_log(&many, !what.ends_with("portless"));
        for _ in 0..5 {
            match what.as_str() {
                "query" => println!("{:?}", query_fresh(&with_identity, &qs)),
                _ => println!("{:?}", attribute_rate(&with_identity, &text)),
            }
        }
        return;
    }
    let rounds = 3;
    println!(
        "{:<44} {:>12} {:>14} {:>9} {:>16}",
        "figure", "no identity", "with identity", "added", "named (with id)"
    );
    let show = |name: &str, (a, b, _, named): (f64, f64, usize, usize)| {
        println!(
            "{name:<44} {a:>12.0} {b:>14.0} {:>8.1}% {named:>16}",
            (a / b - 1.0) * 100.0
        );
    };
    for with_port in [true, false] {
        let sample = if with_port { &single } else { &single_portless };
        let qs: Vec<Question> = sample.iter().map(|r| question(r, with_port)).collect();
        let kind = if with_port { "with port" } else { "port-less" };
        show(
            &format!("log query (open + answer), {kind}, q/s"),
            side_by_side(rounds, &plain, &with_identity, |d| query_fresh(d, &qs)),
        );
        show(
            &format!("LogDir::answer, kept open, {kind}, q/s"),
            side_by_side(rounds, &plain, &with_identity, |d| query_kept(d, &qs)),
        );
    }
    for with_port in [true, false] {
        let text = web::access_log(&many, with_port);
        let kind = if with_port { "with port" } else { "port-less" };
        show(
            &format!("attribute, {} lines {kind}, lines/s", many.len()),
            side_by_side(rounds, &plain, &with_identity, |d| attribute_rate(d, &text)),
        );
    }
}

fn main() {
    println!(
        "machine: {} cores; scale {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        scale()
    );
    // On the machine's disk (not a tmpfs /tmp), so fdatasync reaches the device.
    let disk = tempfile::Builder::new()
        .prefix("tracenat-identity-bench")
        .tempdir_in(
            std::env::var_os("TRACENAT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
        )
        .expect("temp dir");
    let tmpfs = Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").expect("tmpfs dir"));
    let only = std::env::var("TRACENAT_BENCH_ONLY").unwrap_or_default();
    let want = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if want("radius") {
        radius_throughput(disk.path(), tmpfs.as_ref().map(|t| t.path()));
    }
    if want("bytes") {
        bytes_per_record(tmpfs.as_ref().map_or(disk.path(), |t| t.path()));
    }
    if want("lookup") {
        lookup_overhead(disk.path(), 400);
        if std::env::var_os("TRACENAT_BENCH_BIG").is_some() {
            lookup_overhead(disk.path(), 4000);
        }
    }
}
