//! The mapping log end to end, through its public API: producers → `MapLog` → segment files
//! → `LogDir` (reading, `verify`, queries). Covers round trips in every logging volume,
//! detection of damage (flipped bytes, torn tails, removed or reordered blocks), torn-tail
//! recovery, point-in-time queries across segment checkpoints, back-pressure on a full disk
//! and recovery after SIGKILL of a writing process.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracenat::config::Config;
use tracenat::engine::event::{Event, EventKind, EventSink};
use tracenat::maplog::block::Codec;
use tracenat::maplog::record::{Record, RecordKind};
use tracenat::maplog::segment::{Segment, Tail};
use tracenat::maplog::writer::{LogSettings, LogStats, MapLog, Producer};
use tracenat::reader::logdir::{self, LogDir, Problem};
use tracenat::reader::model::{Answer, Evidence, MappingSource, Question, Verdict};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// 2023-11-14, so timestamps look like real ones.
const T0: u64 = 1_700_000_000 * SEC;

// ---------------------------------------------------------------------------
// Helpers

fn config(logging: &str) -> Config {
    // Logging only port blocks needs port-block allocation.
    let mode = if logging.contains("port-blocks") {
        "port-block"
    } else {
        "dynamic"
    };
    let text = format!(
        "[interfaces]\ninside = \"tn-in\"\noutside = \"tn-out\"\n\
         [pool]\npublic = [\"203.0.113.0/28\"]\nsubscribers = [\"100.64.0.0/16\"]\n\
         [allocation]\nmode = \"{mode}\"\n\
         [logging]\n{logging}\n"
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("config rejected: {e}\n{text}"))
}

fn settings(dir: &Path, logging: &str) -> LogSettings {
    LogSettings::from_config(&config(logging), dir)
}

fn ip(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap())
}

#[allow(clippy::too_many_arguments)]
fn event(
    kind: EventKind,
    ts_ns: u64,
    worker: u16,
    protocol: u8,
    inside: (u32, u16),
    public: (u32, u16),
    dest: (u32, u16),
    block: (u16, u16),
) -> Event {
    Event {
        kind,
        ts_ns,
        worker,
        protocol,
        inside_ip: inside.0,
        inside_port: inside.1,
        public_ip: public.0,
        public_port: public.1,
        dest_ip: dest.0,
        dest_port: dest.1,
        block_first: block.0,
        block_last: block.1,
        last_active_ns: 0,
        refused: 0,
    }
}

/// Small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A plausible stream of `n` events for one worker: sessions created and ended (with
/// destinations), port blocks allocated and released, refusals; timestamps increasing,
/// starting at `start_ns`, 1–40 ms apart.
fn synthetic_events(worker: u16, n: usize, start_ns: u64, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(n);
    let mut ts = start_ns;
    let mut open_sessions: Vec<Event> = Vec::new();
    let mut open_blocks: Vec<Event> = Vec::new();
    let public_base = ip("203.0.113.0");
    let sub_base = ip("100.64.0.0");
    while out.len() < n {
        ts += (1 + rng.below(40)) * MS;
        let roll = rng.below(100);
        let e = if roll < 40 || (roll < 75 && open_sessions.is_empty()) {
            let protocol = [6u8, 17, 1][rng.below(3) as usize];
            let e = event(
                EventKind::SessionCreated,
                ts,
                worker,
                protocol,
                (
                    sub_base + 2 + rng.below(4000) as u32,
                    1024 + rng.below(60000) as u16,
                ),
                (
                    public_base + rng.below(16) as u32,
                    1024 + rng.below(64000) as u16,
                ),
                (
                    ip("198.51.100.0") + rng.below(256) as u32,
                    [53u16, 80, 443, 123][rng.below(4) as usize],
                ),
                (0, 0),
            );
            open_sessions.push(e);
            e
        } else if roll < 75 {
            let i = rng.below(open_sessions.len() as u64) as usize;
            let created = open_sessions.swap_remove(i);
            Event {
                kind: EventKind::SessionEnded,
                ts_ns: ts,
                // The engine writes whole milliseconds before the end.
                last_active_ns: ts.saturating_sub(rng.below(300_000) * 1_000_000),
                ..created
            }
        } else if roll < 85 || (roll < 92 && open_blocks.is_empty()) {
            let first = 1024 + 256 * rng.below(250) as u16;
            let e = event(
                EventKind::BlockAllocated,
                ts,
                worker,
                0,
                (sub_base + 2 + rng.below(4000) as u32, 0),
                (public_base + rng.below(16) as u32, 0),
                (0, 0),
                (first, first + 255),
            );
            open_blocks.push(e);
            e
        } else if roll < 92 {
            let i = rng.below(open_blocks.len() as u64) as usize;
            let allocated = open_blocks.swap_remove(i);
            Event {
                kind: EventKind::BlockReleased,
                ts_ns: ts,
                ..allocated
            }
        } else {
            // Refusals carry the flow that was refused, destination included.
            let kind = if roll < 96 {
                EventKind::RefusedPortsExhausted
            } else {
                EventKind::RefusedSubscriberLimit
            };
            event(
                kind,
                ts,
                worker,
                17,
                (
                    sub_base + 2 + rng.below(4000) as u32,
                    1024 + rng.below(60000) as u16,
                ),
                (public_base + rng.below(16) as u32, 0),
                (ip("198.51.100.0") + rng.below(256) as u32, 53),
                (0, 0),
            )
        };
        out.push(e);
    }
    out
}

/// Runs a log over `per_worker` events: interleaves the workers by timestamp, polls each
/// producer with the record time, then finishes and closes. Returns the counters.
fn write_log(settings: LogSettings, per_worker: &[Vec<Event>]) -> Counters {
    let start = per_worker
        .iter()
        .filter_map(|v| v.first().map(|e| e.ts_ns))
        .min()
        .unwrap_or(T0);
    let (log, mut producers) = MapLog::start(settings, per_worker.len() as u16, start).unwrap();
    let mut merged: Vec<&Event> = per_worker.iter().flatten().collect();
    merged.sort_by_key(|e| (e.ts_ns, e.worker));
    for e in merged {
        let p = &mut producers[e.worker as usize];
        p.poll(e.ts_ns);
        p.emit(e);
    }
    for p in &mut producers {
        p.finish();
    }
    let counters = Counters::of(log.stats());
    let report = log.close().unwrap();
    assert!(
        report.recovered.is_empty(),
        "a fresh log needed no recovery: {:?}",
        report.recovered
    );
    Counters {
        records_written: report.records,
        ..counters
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    records_written: u64,
    records_lost: u64,
    records_overflowed: u64,
    write_errors: u64,
}

impl Counters {
    fn of(s: &LogStats) -> Counters {
        Counters {
            records_written: LogStats::get(&s.records_written),
            records_lost: LogStats::get(&s.records_lost),
            records_overflowed: LogStats::get(&s.records_overflowed),
            write_errors: LogStats::get(&s.write_errors),
        }
    }
}

/// Every event in the log, per worker, in write order.
fn read_events(log: &LogDir, workers: u16) -> Vec<Vec<Event>> {
    let mut out = vec![Vec::new(); workers as usize];
    logdir::for_each_record(
        log,
        0,
        u64::MAX,
        |w, r| out[w as usize].push(r.to_event(w).expect("only event records are visited")),
        |seg, b, e| {
            panic!(
                "{}: block {} at {}: {e}",
                seg.path.display(),
                b.header.sequence,
                b.offset
            )
        },
    );
    out
}

/// The segment files of one worker, in order.
fn segment_paths(root: &Path, worker: u16) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(root.join(format!("worker-{worker:03}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tnseg"))
        .collect();
    paths.sort();
    paths
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn show(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}\n"))
        .collect::<String>()
}

fn verify_dir(root: &Path) -> Vec<Problem> {
    logdir::verify(&LogDir::open(root).unwrap())
}

/// Settings that cut blocks by record time only, with segments of `segment_age` seconds.
fn replay_settings(dir: &Path, volume: &str, segment_age_s: u64) -> LogSettings {
    let mut s = settings(dir, &format!("volume = \"{volume}\""));
    s.record_time_only = true;
    s.segment_age_ns = segment_age_s * SEC;
    s.block_records = 300;
    s.batch_records = 128;
    s
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop; `None` (with a note)
/// where mounting is not allowed.
struct Tmpfs {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let tmp = tempfile::tempdir().ok()?;
        let path = tmp.path().join("fs");
        fs::create_dir(&path).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "none"])
            .arg(&path)
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("note: cannot mount a tmpfs (not root?); back-pressure test skipped");
            return None;
        }
        Some(Tmpfs { _tmp: tmp, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Emits numbered events (asking `has_room(2)` first, as the engine does, and at a pace a
/// writer can follow) until the log refuses. Returns true if it refused because writes
/// fail; false if it refused for 5 s without any write error (the writer stopped taking
/// batches) or never refused within a minute.
fn fill_until_refused(p: &mut Producer, log: &MapLog, emitted: &mut Vec<Event>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused_since: Option<Instant> = None;
    while Instant::now() < deadline {
        p.poll(wall_ns());
        if p.has_room(2) {
            refused_since = None;
            let e = numbered(emitted.len() as u64, wall_ns());
            p.emit(&e);
            emitted.push(e);
            if emitted.len().is_multiple_of(64) {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else if LogStats::get(&log.stats().write_errors) > 0 {
            return true;
        } else if refused_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(5)
        {
            return false;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    false
}

fn last_error(log: &MapLog) -> Option<String> {
    log.stats().last_error.lock().unwrap().clone()
}

fn pressure_settings(dir: &Path, policy: &str) -> LogSettings {
    let mut s = settings(
        dir,
        &format!("on-backpressure = \"{policy}\"\nflush-interval = \"10ms\"\ndirect-io = false"),
    );
    s.codec = Codec::None; // fill the disk quickly
    s.segment_size = u64::MAX;
    s.segment_age_ns = u64::MAX / 4;
    s.block_records = 256;
    s.batch_records = 256;
    s.batches_per_worker = 4;
    s
}

/// Event number `i`: recognisable by its inside address and port.
fn numbered(i: u64, ts_ns: u64) -> Event {
    // Pairs: event 2k creates a session, 2k + 1 ends it, so few mappings stay live and
    // checkpoints stay small.
    let kind = if i.is_multiple_of(2) {
        EventKind::SessionCreated
    } else {
        EventKind::SessionEnded
    };
    let k = i / 2;
    event(
        kind,
        ts_ns,
        0,
        17,
        (ip("100.64.0.0") + i as u32, (i % 50000) as u16 + 1024),
        (
            ip("203.0.113.1") + (k % 13) as u32,
            (k * 7 % 60000) as u16 + 1024,
        ),
        (ip("198.51.100.1") + (k % 200) as u32, 53),
        (0, 0),
    )
}

fn number_of(e: &Event) -> u64 {
    (e.inside_ip - ip("100.64.0.0")) as u64
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[path = "maplog/crash.rs"]
mod crash;
#[path = "maplog/damage.rs"]
mod damage;
#[path = "maplog/full_disk.rs"]
mod full_disk;
#[path = "maplog/queries.rs"]
mod queries;
#[path = "maplog/regressions.rs"]
mod regressions;
#[path = "maplog/rotation.rs"]
mod rotation;
#[path = "maplog/round_trips.rs"]
mod round_trips;
