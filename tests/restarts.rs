//! Restarts of the NAT on one log directory (docs/mapping-log.md §2.1, §8): each start
//! records a run in `runs.jsonl`; the reader closes every holding of a run at its end, on
//! every worker, also one the next run does not have; a start reads the log's tail and
//! lets the previous run's ports rest; a damaged runs file is reported, never fatal.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use tracenat::config::Config;
use tracenat::engine::event::{Event, EventKind, EventSink};
use tracenat::engine::ports::{REUSE_HOLD_NS, RestingRange};
use tracenat::maplog::dir;
use tracenat::maplog::runs::{self, RunLine};
use tracenat::maplog::writer::{LogSettings, MapLog};
use tracenat::reader::logdir::{self, LogDir};
use tracenat::reader::model::{MappingSource, Question, Verdict};

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_795_601_472 * SEC;
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

fn settings(dir: &Path) -> LogSettings {
    let cfg = Config::from_toml_str(
        "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
         [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n\
         [logging]\ndirect-io = false\n",
    )
    .unwrap();
    let mut s = LogSettings::from_config(&cfg, dir);
    s.record_time_only = true;
    s
}

/// A TCP session of subscriber `sub` on public port `port`, to the server.
fn session(kind: EventKind, ts_ns: u64, worker: u16, sub: u8, port: u16) -> Event {
    Event {
        kind,
        ts_ns,
        worker,
        protocol: 6,
        inside_ip: u32::from(Ipv4Addr::new(100, 64, 1, sub)),
        inside_port: 40000 + sub as u16,
        public_ip: u32::from(PUBLIC),
        public_port: port,
        dest_ip: u32::from(SERVER),
        dest_port: 80,
        block_first: 0,
        block_last: 0,
        last_active_ns: 0,
        refused: 0,
    }
}

/// One run of the writer: `events` per worker, then a clean stop at `stop` or, without
/// one, a close that leaves no stop line (what the next start sees after a crash).
fn run(dir: &Path, start: u64, workers: u16, events: &[Event], stop: Option<u64>) -> MapLogRun {
    let (log, mut producers) = MapLog::start(settings(dir), workers, start).unwrap();
    let previous = log.previous_run().cloned();
    for e in events {
        producers[e.worker as usize].emit(e);
    }
    producers.iter_mut().for_each(|p| p.finish());
    let recovered = match stop {
        Some(stop) => log.close_stopped(stop),
        None => log.close(),
    }
    .unwrap()
    .recovered;
    MapLogRun {
        previous,
        recovered,
    }
}

struct MapLogRun {
    previous: Option<tracenat::maplog::runs::PreviousRun>,
    recovered: Vec<String>,
}

fn ask(log: &mut LogDir, port: u16, at: u64, tolerance: u64) -> (Verdict, Vec<String>) {
    let q = Question {
        public_ip: PUBLIC,
        public_port: Some(port),
        from_ns: at - tolerance,
        to_ns: at + tolerance,
        dest_ip: None,
        dest_port: None,
        protocol: Some(6),
    };
    let a = log.answer(&q).unwrap();
    let subs = a
        .candidates
        .iter()
        .map(|c| c.subscriber.ip().to_string())
        .collect();
    (a.verdict, subs)
}

#[test]
fn holdings_end_with_their_run_on_every_worker_even_one_the_next_run_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    // Run 1, two workers: subscriber 1 on port 5000 (worker 0), subscriber 2 on 6000
    // (worker 1); neither session ends before the run does (a crash: no stop line).
    let first = run(
        &dir,
        T0,
        2,
        &[
            session(EventKind::SessionCreated, T0 + SEC, 0, 1, 5000),
            session(EventKind::SessionCreated, T0 + SEC, 1, 2, 6000),
        ],
        None,
    );
    assert!(first.previous.is_none(), "the first run has none before it");
    // Run 2, one worker, starts at S; subscriber 3 gets port 5000 four seconds later.
    let s = T0 + 60 * SEC;
    let second = run(
        &dir,
        s,
        1,
        &[session(EventKind::SessionCreated, s + 4 * SEC, 0, 3, 5000)],
        Some(s + 10 * SEC),
    );
    let previous = second.previous.expect("a previous run");
    assert!(!previous.previous.clean);
    assert_eq!(
        previous.previous.end_ns, s,
        "a crash ends at the next start"
    );
    assert_eq!(previous.previous.last_record_ns, Some(T0 + SEC));

    let mut log = LogDir::open(&dir).unwrap();
    assert!(
        logdir::verify(&log).is_empty(),
        "{:?}",
        logdir::verify(&log)
    );
    // During run 1: its subscribers, held until run 2 started.
    assert_eq!(ask(&mut log, 5000, T0 + 30 * SEC, 0).1, ["100.64.1.1"]);
    assert_eq!(ask(&mut log, 6000, T0 + 30 * SEC, 0).1, ["100.64.1.2"]);
    // After S: worker 1 has no segment in run 2, yet its holding ended at S.
    assert_eq!(ask(&mut log, 6000, s + 2 * SEC, SEC).0, Verdict::None);
    // Port 5000 four seconds after S, ±2 s: only subscriber 3 (run 1's holder ended at S,
    // not when worker 0's next segment began at S + 4 s).
    assert_eq!(
        ask(&mut log, 5000, s + 4 * SEC, 2 * SEC),
        (Verdict::Unique, vec!["100.64.1.3".to_owned()])
    );
    // Run 2 stopped cleanly at S + 10 s: its open session ends there too.
    assert_eq!(ask(&mut log, 5000, s + 11 * SEC, 0).0, Verdict::None);
    assert_eq!(ask(&mut log, 5000, s + 9 * SEC, 0).1, ["100.64.1.3"]);

    // The same through the streaming sweep `attribute` uses for long access logs.
    let q = |port, at| Question {
        public_ip: PUBLIC,
        public_port: Some(port),
        from_ns: at - SEC,
        to_ns: at + SEC,
        dest_ip: None,
        dest_port: None,
        protocol: Some(6),
    };
    let mut many: Vec<Question> = (0..1024).map(|_| q(6000, s + 2 * SEC)).collect();
    many.push(q(5000, s + 4 * SEC));
    let answers = log.answer_all(&many).unwrap();
    assert!(answers[..1024].iter().all(|a| a.verdict == Verdict::None));
    assert_eq!(answers[1024].verdict, Verdict::Unique);
}

#[test]
fn a_start_lets_the_ports_of_the_previous_run_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let stop = T0 + 300 * SEC;
    run(
        &dir,
        T0,
        2,
        &[
            // Ended long before the stop: free again by then.
            session(EventKind::SessionCreated, T0 + SEC, 0, 1, 5000),
            session(EventKind::SessionEnded, T0 + 2 * SEC, 0, 1, 5000),
            // Ended 100 s before the stop: still resting then.
            session(EventKind::SessionCreated, T0 + SEC, 1, 2, 6000),
            session(EventKind::SessionEnded, stop - 100 * SEC, 1, 2, 6000),
            // Held at the stop (ended by it, as a clean stop does).
            session(EventKind::SessionCreated, T0 + 200 * SEC, 0, 3, 7000),
            session(EventKind::SessionEnded, stop, 0, 3, 7000),
        ],
        Some(stop),
    );
    let second = run(&dir, stop + 5 * SEC, 1, &[], None);
    let previous = second.previous.unwrap();
    assert!(previous.previous.clean);
    assert_eq!(previous.previous.end_ns, stop);
    let ports: Vec<u16> = previous.resting.iter().map(|r| r.first).collect();
    assert_eq!(ports, [6000, 7000]);
    assert_eq!(previous.rest_until_ns, stop + REUSE_HOLD_NS);

    // After a crash (no stop line) mappings still open rest until 120 s after the start.
    let third_start = stop + 300 * SEC;
    run(
        &dir,
        third_start,
        1,
        &[session(
            EventKind::SessionCreated,
            third_start + SEC,
            0,
            4,
            8000,
        )],
        None,
    );
    let fourth_start = third_start + 3600 * SEC;
    let fourth = run(&dir, fourth_start, 1, &[], None).previous.unwrap();
    assert!(!fourth.previous.clean);
    assert_eq!(
        fourth.resting,
        [RestingRange {
            ip: PUBLIC,
            first: 8000,
            last: 8000
        }]
    );
    assert_eq!(fourth.rest_until_ns, fourth_start + REUSE_HOLD_NS);
}

#[test]
fn a_damaged_runs_file_is_reported_and_never_stops_a_start_or_a_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    run(
        &dir,
        T0,
        1,
        &[session(EventKind::SessionCreated, T0 + SEC, 0, 1, 5000)],
        Some(T0 + 2 * SEC),
    );
    let path = dir.join(dir::RUNS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\x00\xffnot json\n{\"stop_ns\":"); // junk and a torn line
    std::fs::write(&path, &bytes).unwrap();

    let log = LogDir::open(&dir).expect("a reader still opens the log");
    let problems = logdir::verify(&log);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.to_string().contains("runs.jsonl line"))
    );

    let next = run(&dir, T0 + 10 * SEC, 1, &[], None);
    assert_eq!(next.recovered.len(), 2, "{:?}", next.recovered);
    // A torn last line could have been a stop that never completed: not taken as clean.
    let previous = next.previous.unwrap().previous;
    assert_eq!((previous.clean, previous.end_ns), (false, T0 + 10 * SEC));
    let file = runs::read(&dir).unwrap();
    assert_eq!(file.problems.len(), 2);
    assert!(
        !file.last_damaged,
        "the new line was written whole after the torn one"
    );
    assert!(matches!(file.lines.last(), Some(RunLine::Start(s)) if s.start_ns == T0 + 10 * SEC));
    // A runs file that is a directory: a clear error, not a panic.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join(dir::RUNS)).unwrap();
    std::fs::write(other.join(dir::MARKER), "{}\n").unwrap();
    assert!(LogDir::open(&other).is_err());
}

/// `replay --log-dir` onto a log a run already wrote lets that run's ports rest too, and
/// stays deterministic: the same capture onto a fresh log takes the port the first run
/// had (same seed), onto the used log another one.
#[test]
fn replay_appending_to_a_log_lets_the_previous_run_ports_rest() {
    use tracenat::replay::{self, ReplayArgs};
    use tracenat::wire::build::{FrameSpec, build};

    let tmp = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(
        "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
         [pool]\npublic = [\"203.0.113.1/32\"]\nsubscribers = [\"100.64.0.0/16\"]\n\
         [allocation]\nseed = 7\n[logging]\ndirect-io = false\n",
    )
    .unwrap();
    let server = SocketAddrV4::new(SERVER, 53);
    // One UDP datagram from `sub` at `ts`, replayed onto `log`; the public endpoint taken.
    let replay_one = |name: &str, sub: SocketAddrV4, ts: u64, log: &Path| -> String {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let inside = dir.join("inside.pcap");
        let frame = build(&FrameSpec::udp(sub, server).with_payload(vec![0; 18]));
        tracenat::pcap::write_all(&inside, &[(ts, frame)]).unwrap();
        let args = ReplayArgs {
            config: config.clone(),
            inside,
            outside: None,
            out_dir: dir.join("out"),
            log_dir: Some(log.to_owned()),
            config_text: None,
        };
        replay::run(&args).unwrap();
        let events = std::fs::read_to_string(dir.join("out/events.jsonl")).unwrap();
        let created: serde_json::Value =
            serde_json::from_str(events.lines().next().unwrap()).unwrap();
        created["public"].as_str().unwrap().to_owned()
    };
    let first = SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 1), 5000);
    let second = SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 2), 6000);
    let used = tmp.path().join("log");
    let taken = replay_one("a", first, T0, &used);
    let fresh = replay_one("b", second, T0 + 10 * SEC, &tmp.path().join("fresh"));
    assert_eq!(fresh, taken, "same seed, fresh log: the same first port");
    let appended = replay_one("c", second, T0 + 10 * SEC, &used);
    assert_ne!(appended, taken, "the first run's port rests");
    // Both sessions trace back to their own subscriber.
    let mut log = LogDir::open(&used).unwrap();
    for (public, sub, at) in [(&taken, first, T0), (&appended, second, T0 + 10 * SEC)] {
        let public: SocketAddrV4 = public.parse().unwrap();
        let q = Question {
            public_ip: *public.ip(),
            public_port: Some(public.port()),
            from_ns: at - SEC,
            to_ns: at + SEC,
            dest_ip: None,
            dest_port: None,
            protocol: Some(17),
        };
        let a = log.answer(&q).unwrap();
        assert_eq!(a.verdict, Verdict::Unique, "{a:?}");
        assert_eq!(a.candidates[0].subscriber, sub);
    }
}
