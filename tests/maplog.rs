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

// ---------------------------------------------------------------------------
// 1–2. Round trips and a clean verify

/// Settings that cut blocks by record time only, with segments of `segment_age` seconds.
fn replay_settings(dir: &Path, volume: &str, segment_age_s: u64) -> LogSettings {
    let mut s = settings(dir, &format!("volume = \"{volume}\""));
    s.record_time_only = true;
    s.segment_age_ns = segment_age_s * SEC;
    s.block_records = 300;
    s.batch_records = 128;
    s
}

fn round_trip(volume: &str, expected: impl Fn(&Event) -> Option<Event>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let events = vec![
        synthetic_events(0, 3000, T0, 11),
        synthetic_events(1, 2500, T0 + 7 * MS, 12),
    ];
    let counters = write_log(replay_settings(&dir, volume, 10), &events);
    let want: Vec<Vec<Event>> = events
        .iter()
        .map(|v| v.iter().filter_map(&expected).collect())
        .collect();
    let total: usize = want.iter().map(Vec::len).sum();
    assert_eq!(
        counters,
        Counters {
            records_written: total as u64,
            records_lost: 0,
            records_overflowed: 0,
            write_errors: 0,
        }
    );

    let log = LogDir::open(&dir).unwrap();
    for w in 0..2 {
        assert!(
            segment_paths(&dir, w).len() >= 4,
            "worker {w}: the events span several segments"
        );
    }
    let got = read_events(&log, 2);
    for w in 0..2 {
        assert_eq!(got[w].len(), want[w].len(), "worker {w}: record count");
        for (i, (g, e)) in got[w].iter().zip(&want[w]).enumerate() {
            assert_eq!(g, e, "worker {w}, record {i}");
        }
    }
    let problems = logdir::verify(&log);
    assert!(problems.is_empty(), "fresh log:\n{}", show(&problems));
    assert!(log.damage().is_empty(), "{:?}", log.damage());
    let stats = logdir::stats(&log);
    for (w, s) in stats.iter().enumerate() {
        assert_eq!(s.records, want[w].len() as u64);
        if let (Some(first), Some(last)) = (want[w].first(), want[w].last()) {
            assert_eq!(s.first_ts_ns, Some(first.ts_ns));
            assert_eq!(s.last_ts_ns, Some(last.ts_ns));
        }
    }

    // A window returns exactly the records inside it.
    let (from, to) = (T0 + 20 * SEC, T0 + 35 * SEC);
    let mut windowed = vec![Vec::new(); 2];
    logdir::for_each_record(
        &log,
        from,
        to,
        |w, r| windowed[w as usize].push(r.to_event(w).unwrap()),
        |_, _, e| panic!("{e}"),
    );
    for w in 0..2 {
        let want_w: Vec<Event> = want[w]
            .iter()
            .filter(|e| (from..=to).contains(&e.ts_ns))
            .copied()
            .collect();
        assert_eq!(windowed[w], want_w, "worker {w}: window");
    }
}

#[test]
fn round_trip_sessions_with_destination() {
    round_trip("sessions-with-destination", |e| Some(*e));
}

#[test]
fn round_trip_sessions_without_destination() {
    round_trip("sessions-without-destination", |e| {
        Some(Event {
            dest_ip: 0,
            dest_port: 0,
            ..*e
        })
    });
}

#[test]
fn round_trip_port_blocks() {
    round_trip("port-blocks", |e| match e.kind {
        EventKind::SessionCreated | EventKind::SessionEnded => None,
        _ => Some(Event {
            dest_ip: 0,
            dest_port: 0,
            ..*e
        }),
    });
}

#[test]
fn round_trip_every_codec() {
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let events = vec![synthetic_events(0, 1500, T0, 99)];
        let mut s = replay_settings(&dir, "sessions-with-destination", 5);
        s.codec = codec;
        write_log(s, &events);
        let log = LogDir::open(&dir).unwrap();
        assert_eq!(read_events(&log, 1), events, "{}", codec.name());
        assert!(logdir::verify(&log).is_empty(), "{}", codec.name());
    }
}

#[test]
fn verify_is_clean_on_a_fresh_log_and_after_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let first = vec![
        synthetic_events(0, 800, T0, 1),
        synthetic_events(1, 800, T0, 2),
    ];
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &first,
    );
    let problems = verify_dir(&dir);
    assert_eq!(problems, Vec::<Problem>::new(), "\n{}", show(&problems));

    // A second run appends new segments that continue both hash chains.
    let later = T0 + 3600 * SEC;
    let second = vec![
        synthetic_events(0, 500, later, 3),
        synthetic_events(1, 500, later, 4),
    ];
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &second,
    );
    let problems = verify_dir(&dir);
    assert_eq!(problems, Vec::<Problem>::new(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 2);
    for w in 0..2 {
        let want: Vec<Event> = first[w].iter().chain(&second[w]).copied().collect();
        assert_eq!(got[w], want, "worker {w}");
    }
}

// ---------------------------------------------------------------------------
// 3. Damage

/// A closed two-worker log with several segments of several blocks each.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    events: Vec<Vec<Event>>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pristine");
    let events = vec![
        synthetic_events(0, 2000, T0, 21),
        synthetic_events(1, 2000, T0, 22),
    ];
    let mut s = replay_settings(&dir, "sessions-with-destination", 15);
    s.block_records = 100;
    write_log(s, &events);
    assert!(verify_dir(&dir).is_empty());
    Fixture {
        _tmp: tmp,
        dir,
        events,
    }
}

impl Fixture {
    /// A fresh copy of the pristine log, to damage.
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.dir.parent().unwrap().join(name);
        copy_dir(&self.dir, &to);
        to
    }
}

/// A closed segment in the middle of worker 0's chain, and the index of a non-checkpoint
/// block with another non-checkpoint block after it in the same segment.
fn middle_block(root: &Path) -> (PathBuf, Segment, usize) {
    let paths = segment_paths(root, 0);
    assert!(paths.len() >= 3);
    let path = paths[paths.len() / 2].clone();
    let seg = Segment::open(&path).unwrap();
    assert_eq!(seg.tail, Tail::Closed);
    let data: Vec<usize> = (0..seg.blocks.len())
        .filter(|&i| !seg.blocks[i].header.is_checkpoint())
        .collect();
    assert!(data.len() >= 3, "{} data blocks", data.len());
    (path, seg, data[data.len() / 2])
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_payload_byte_is_named_and_everything_else_still_read() {
    let f = fixture();
    let root = f.copy("flipped-payload");
    let (path, seg, i) = middle_block(&root);
    let block = seg.blocks[i];
    let offset = block.offset + 144 + block.header.payload_len as usize / 2;
    // Records of every other block, in log order, from the intact copy (complete: end
    // records get their inside endpoint back, as for_each_record gives them).
    let pristine = LogDir::open(&f.dir).unwrap();
    let mut others = Vec::new();
    let mut lost = Vec::new();
    for w in &pristine.workers {
        for s in &w.segments {
            let mut resolver = tracenat::maplog::record::EndpointResolver::default();
            for b in &s.blocks {
                let mut records = Vec::new();
                s.read_block(b, &mut records).unwrap();
                records.iter_mut().for_each(|r| {
                    resolver.resolve(r);
                });
                if b.header.is_checkpoint() {
                    continue;
                }
                let this = w.worker == 0
                    && s.path.file_name() == path.file_name()
                    && b.offset == block.offset;
                let target = if this { &mut lost } else { &mut others };
                target.extend(records.iter().map(|r| (w.worker, *r)));
            }
        }
    }
    assert!(!lost.is_empty());
    drop(seg);
    flip(&path, offset);

    let problems = verify_dir(&root);
    let first = problems
        .first()
        .unwrap_or_else(|| panic!("flip at {offset} went unnoticed"));
    assert_eq!(first.path, path, "\n{}", show(&problems));
    assert_eq!(first.offset, block.offset, "\n{}", show(&problems));
    assert_eq!(first.block_sequence, Some(block.header.sequence));
    assert!(first.what.contains("CRC"), "{first}");
    // Only that segment is named (the chain breaks at the next block of the same file).
    assert!(
        problems.iter().all(|p| p.path == path),
        "\n{}",
        show(&problems)
    );

    let log = LogDir::open(&root).unwrap();
    let mut visited = Vec::new();
    let mut bad = Vec::new();
    logdir::for_each_record(
        &log,
        0,
        u64::MAX,
        |w, r| visited.push((w, *r)),
        |s, b, e| bad.push((s.path.clone(), b.offset, e)),
    );
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((&bad[0].0, bad[0].1), (&path, block.offset));
    assert_eq!(visited.len(), others.len());
    // An end whose holder was created in the lost block cannot get its inside endpoint
    // back; everything else is read whole, in order.
    let same = |(vw, v): &(u16, Record), (ow, o): &(u16, Record)| {
        vw == ow
            && (v == o
                || (v.kind == RecordKind::SessionEndedElided
                    && o.kind == RecordKind::SessionEnded
                    && Record {
                        kind: RecordKind::SessionEnded,
                        inside_ip: o.inside_ip,
                        inside_port: o.inside_port,
                        ..*v
                    } == *o))
    };
    assert!(
        visited.iter().zip(&others).all(|(v, o)| same(v, o)),
        "every other block is read, in order"
    );
    let total: usize = f.events.iter().map(Vec::len).sum();
    assert_eq!(visited.len() + lost.len(), total);
}

#[test]
fn flipped_header_byte_is_named() {
    let f = fixture();
    for at in [0usize, 20, 60, 120, 143] {
        let root = f.copy(&format!("flipped-header-{at}"));
        let (path, seg, i) = middle_block(&root);
        let block = seg.blocks[i];
        let next = seg.blocks[i + 1];
        drop(seg);
        flip(&path, block.offset + at);
        let problems = verify_dir(&root);
        let first = problems
            .first()
            .unwrap_or_else(|| panic!("header byte {at} flipped unnoticed"));
        assert_eq!(first.path, path, "byte {at}:\n{}", show(&problems));
        assert_eq!(
            first.offset,
            block.offset,
            "byte {at}:\n{}",
            show(&problems)
        );
        // The blocks after the damaged one are still found and read.
        let reopened = Segment::open(&path).unwrap();
        assert!(
            reopened.blocks.iter().any(|b| b.offset == next.offset),
            "byte {at}: the next block is found again"
        );
        let mut seen = 0;
        logdir::for_each_record(
            &LogDir::open(&root).unwrap(),
            0,
            u64::MAX,
            |_, _| seen += 1,
            |_, _, e| panic!("byte {at}: {e}"),
        );
        // The segment index keeps a copy of every header: the damaged block's payload,
        // whose CRC still holds, is read through it.
        let total: usize = f.events.iter().map(Vec::len).sum();
        assert_eq!(
            seen, total,
            "byte {at}: the index's copy of the header serves"
        );
    }
}

#[test]
fn torn_tail_is_reported_then_recovered_on_start() {
    let f = fixture();
    let root = f.copy("torn");
    let last = segment_paths(&root, 0).pop().unwrap();
    let seg = Segment::open(&last).unwrap();
    let data: Vec<_> = seg
        .blocks
        .iter()
        .filter(|b| !b.header.is_checkpoint())
        .copied()
        .collect();
    assert!(data.len() >= 2, "the last segment holds a few blocks");
    let victim = data[data.len() - 1];
    let kept_records: usize = seg
        .blocks
        .iter()
        .filter(|b| b.offset < victim.offset && !b.header.is_checkpoint())
        .map(|b| b.header.count as usize)
        .sum();
    let cut_at = victim.offset + victim.header.total_len() / 2;
    drop(seg);
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes[..cut_at]).unwrap();

    let torn = Segment::open(&last).unwrap();
    assert_eq!(
        torn.tail,
        Tail::Open {
            valid_len: victim.offset as u64
        }
    );
    let problems = verify_dir(&root);
    assert_eq!(problems.len(), 1, "\n{}", show(&problems));
    assert_eq!(problems[0].path, last);
    assert_eq!(problems[0].offset, victim.offset);
    let damage = LogDir::open(&root).unwrap().damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].contains(&format!(
            "{} bytes at offset {}",
            cut_at - victim.offset,
            victim.offset
        )),
        "{damage:?}"
    );

    // Starting the writer cuts the torn bytes and closes the segment.
    let s = replay_settings(&root, "sessions-with-destination", 15);
    let (log, mut producers) = MapLog::start(s, 2, T0).unwrap();
    producers.iter_mut().for_each(Producer::finish);
    let report = log.close().unwrap();
    assert_eq!(report.recovered.len(), 1, "{:?}", report.recovered);
    assert!(report.recovered[0].contains(&last.display().to_string()));

    let problems = verify_dir(&root);
    assert!(problems.is_empty(), "after recovery:\n{}", show(&problems));
    let closed = Segment::open(&last).unwrap();
    assert_eq!(closed.tail, Tail::Closed);
    assert!(closed.bytes().len() > victim.offset);
    let got = read_events(&LogDir::open(&root).unwrap(), 2);
    let before_last: usize = {
        let log = LogDir::open(&root).unwrap();
        log.workers[0].segments[..log.workers[0].segments.len() - 1]
            .iter()
            .flat_map(|s| &s.blocks)
            .filter(|b| !b.header.is_checkpoint())
            .map(|b| b.header.count as usize)
            .sum()
    };
    let n = before_last + kept_records;
    assert_eq!(
        got[0],
        f.events[0][..n],
        "worker 0 keeps everything before the cut"
    );
    assert_eq!(got[1], f.events[1], "worker 1 is untouched");

    // And the log carries on: a later run appends and verifies clean.
    let more = vec![
        synthetic_events(0, 300, T0 + 7200 * SEC, 5),
        synthetic_events(1, 300, T0 + 7200 * SEC, 6),
    ];
    write_log(
        replay_settings(&root, "sessions-with-destination", 15),
        &more,
    );
    let problems = verify_dir(&root);
    assert!(problems.is_empty(), "after appending:\n{}", show(&problems));
}

fn splice_out(path: &Path, range: std::ops::Range<usize>) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    bytes.drain(range);
    bytes
}

#[test]
fn removed_block_is_detected_with_and_without_index() {
    let f = fixture();
    for keep_trailer in [true, false] {
        let root = f.copy(&format!("removed-{keep_trailer}"));
        let (path, seg, i) = middle_block(&root);
        let victim = seg.blocks[i];
        let next = seg.blocks[i + 1];
        let end_of_blocks = seg
            .blocks
            .last()
            .map(|b| b.offset + b.header.total_len())
            .unwrap();
        drop(seg);
        let mut bytes = splice_out(
            &path,
            victim.offset..victim.offset + victim.header.total_len(),
        );
        if !keep_trailer {
            bytes.truncate(end_of_blocks - victim.header.total_len());
        }
        fs::write(&path, bytes).unwrap();

        let problems = verify_dir(&root);
        assert!(
            !problems.is_empty(),
            "removed block unnoticed (trailer kept: {keep_trailer})"
        );
        assert_eq!(problems[0].path, path, "\n{}", show(&problems));
        // The block that followed now sits where the removed one was; its chain is broken.
        let at_gap: Vec<&Problem> = problems
            .iter()
            .filter(|p| p.path == path && p.offset == victim.offset)
            .collect();
        assert!(
            at_gap
                .iter()
                .any(|p| p.block_sequence == Some(next.header.sequence)
                    && p.what.contains("hash chain")),
            "trailer kept: {keep_trailer}\n{}",
            show(&problems)
        );
        assert!(
            at_gap.iter().any(|p| p.what.contains("sequence")),
            "trailer kept: {keep_trailer}\n{}",
            show(&problems)
        );
        // Nothing else is lost.
        let mut seen = 0;
        logdir::for_each_record(
            &LogDir::open(&root).unwrap(),
            0,
            u64::MAX,
            |_, _| seen += 1,
            |_, _, e| panic!("{e}"),
        );
        let total: usize = f.events.iter().map(Vec::len).sum();
        assert_eq!(seen, total - victim.header.count as usize);
    }
}

#[test]
fn swapped_blocks_are_detected() {
    let f = fixture();
    let root = f.copy("swapped");
    let (path, seg, i) = middle_block(&root);
    let a = seg.blocks[i];
    let b = seg.blocks[i + 1];
    drop(seg);
    let bytes = fs::read(&path).unwrap();
    let (a_range, b_range) = (
        a.offset..a.offset + a.header.total_len(),
        b.offset..b.offset + b.header.total_len(),
    );
    assert_eq!(a_range.end, b_range.start);
    let mut swapped = bytes[..a.offset].to_vec();
    swapped.extend_from_slice(&bytes[b_range.clone()]);
    swapped.extend_from_slice(&bytes[a_range.clone()]);
    swapped.extend_from_slice(&bytes[b_range.end..]);
    assert_eq!(swapped.len(), bytes.len());
    fs::write(&path, swapped).unwrap();

    let problems = verify_dir(&root);
    assert!(!problems.is_empty(), "swapped blocks unnoticed");
    assert_eq!(problems[0].path, path, "\n{}", show(&problems));
    assert_eq!(problems[0].offset, a.offset, "\n{}", show(&problems));
    assert_eq!(problems[0].block_sequence, Some(b.header.sequence));
    let here: Vec<&Problem> = problems.iter().filter(|p| p.offset == a.offset).collect();
    assert!(
        here.iter().any(|p| p.what.contains("hash chain")),
        "\n{}",
        show(&problems)
    );
    assert!(
        here.iter().any(|p| p.what.contains("sequence")),
        "\n{}",
        show(&problems)
    );
}

#[test]
fn removed_segment_is_detected() {
    let f = fixture();
    let root = f.copy("segment-removed");
    let paths = segment_paths(&root, 1);
    let gone = &paths[paths.len() / 2];
    let after = &paths[paths.len() / 2 + 1];
    fs::remove_file(gone).unwrap();
    let problems = verify_dir(&root);
    assert!(!problems.is_empty());
    assert_eq!(&problems[0].path, after, "\n{}", show(&problems));
    assert_eq!(problems[0].offset, 0);
}

#[test]
fn a_segment_with_a_destroyed_header_is_named_and_the_rest_still_read_and_written() {
    let f = fixture();
    let root = f.copy("segment-header-destroyed");
    let paths = segment_paths(&root, 1);
    let victim = &paths[paths.len() / 2];
    let mut bytes = fs::read(victim).unwrap();
    bytes[..16].fill(0xAA);
    fs::write(victim, &bytes).unwrap();
    let log = LogDir::open(&root).expect("the directory still opens");
    assert!(
        log.damage()
            .iter()
            .any(|d| d.contains(victim.to_str().unwrap()))
    );
    let problems = logdir::verify(&log);
    assert!(
        problems
            .iter()
            .any(|p| &p.path == victim && p.what.contains("unreadable")),
        "{}",
        show(&problems)
    );
    // Worker 0 is whole; worker 1 lost only the destroyed segment's records.
    let read = read_events(&log, 2);
    assert_eq!(read[0], f.events[0]);
    assert!(!read[1].is_empty() && read[1].len() < f.events[1].len());
    // The writer starts on such a directory, names the damage, and keeps logging.
    let more = [Vec::new(), synthetic_events(1, 50, T0 + 3_600 * SEC, 99)];
    let (maplog, mut producers) = MapLog::start(
        replay_settings(&root, "sessions-with-destination", 15),
        2,
        T0,
    )
    .unwrap();
    for e in &more[1] {
        producers[1].emit(e);
    }
    producers.iter_mut().for_each(|p| p.finish());
    let report = maplog.close().unwrap();
    assert!(
        report.recovered.iter().any(|r| r.contains("unreadable")),
        "{:?}",
        report.recovered
    );
    let after = read_events(&LogDir::open(&root).unwrap(), 2);
    assert!(after[1].ends_with(&more[1]));
}

// ---------------------------------------------------------------------------
// 4. Queries

const A: (&str, u16) = ("100.64.0.10", 5000);
const B: (&str, u16) = ("100.64.0.11", 6000);
const C: (&str, u16) = ("100.64.0.12", 7000);
const PUBLIC: &str = "203.0.113.1";

fn session(
    kind: EventKind,
    secs: u64,
    worker: u16,
    inside: (&str, u16),
    port: u16,
    dest: (&str, u16),
) -> Event {
    event(
        kind,
        T0 + secs * SEC,
        worker,
        17,
        (ip(inside.0), inside.1),
        (ip(PUBLIC), port),
        (ip(dest.0), dest.1),
        (0, 0),
    )
}

/// A holds 203.0.113.1:40000/UDP from 10 s to 100 s (towards 198.51.100.10:53), B holds it
/// from 400 s to 900 s (towards 198.51.100.20:443), C holds 203.0.113.1:40001 from 30 s to
/// 60 s. Filler traffic on another address every 5 s on both workers makes the 100 s
/// segments rotate, so B's mapping is carried by checkpoints from 500 s on.
fn query_log(dir: &Path, b_worker: u16) {
    let mut events = vec![Vec::new(), Vec::new()];
    for secs in (0..1000).step_by(5) {
        for w in 0..2u16 {
            let filler = event(
                EventKind::SessionCreated,
                T0 + secs * SEC,
                w,
                6,
                (ip("100.64.1.1"), 1000 + secs as u16),
                (ip("203.0.113.2"), 2000 + secs as u16),
                (ip("198.51.100.99"), 80),
                (0, 0),
            );
            events[w as usize].push(filler);
            events[w as usize].push(Event {
                kind: EventKind::SessionEnded,
                ts_ns: filler.ts_ns + 2 * SEC,
                ..filler
            });
        }
    }
    let dns = ("198.51.100.10", 53);
    let https = ("198.51.100.20", 443);
    events[0].push(session(EventKind::SessionCreated, 10, 0, A, 40000, dns));
    events[0].push(session(EventKind::SessionEnded, 100, 0, A, 40000, dns));
    events[0].push(session(EventKind::SessionCreated, 30, 0, C, 40001, dns));
    events[0].push(session(EventKind::SessionEnded, 60, 0, C, 40001, dns));
    let bw = b_worker as usize;
    events[bw].push(session(
        EventKind::SessionCreated,
        400,
        b_worker,
        B,
        40000,
        https,
    ));
    events[bw].push(session(
        EventKind::SessionEnded,
        900,
        b_worker,
        B,
        40000,
        https,
    ));
    for v in &mut events {
        v.sort_by_key(|e| e.ts_ns);
    }
    write_log(
        replay_settings(dir, "sessions-with-destination", 100),
        &events,
    );
    for w in 0..2 {
        assert!(
            segment_paths(dir, w).len() >= 9,
            "worker {w}: segments rotate"
        );
    }
}

fn question(port: Option<u16>, from_s: u64, to_s: u64) -> Question {
    Question {
        public_ip: PUBLIC.parse().unwrap(),
        public_port: port,
        from_ns: T0 + from_s * SEC,
        to_ns: T0 + to_s * SEC,
        dest_ip: None,
        dest_port: None,
        protocol: None,
    }
}

fn subscribers(a: &Answer) -> Vec<(Ipv4Addr, u16)> {
    let mut s: Vec<(Ipv4Addr, u16)> = a
        .candidates
        .iter()
        .map(|c| (*c.subscriber.ip(), c.subscriber.port()))
        .collect();
    s.sort();
    s.dedup();
    s
}

fn sub(s: (&str, u16)) -> (Ipv4Addr, u16) {
    (s.0.parse().unwrap(), s.1)
}

fn check_queries(log: &mut LogDir) {
    let at = |log: &mut LogDir, q: Question| log.answer(&q).unwrap();

    let a50 = at(log, question(Some(40000), 49, 51));
    assert_eq!(a50.verdict, Verdict::Unique, "{a50:?}");
    assert_eq!(subscribers(&a50), vec![sub(A)]);
    let c = &a50.candidates[0];
    assert_eq!(c.start_ns, Some(T0 + 10 * SEC));
    // The reader reads up to the window's end: A's end at 100 s is not seen from 51 s.
    assert!(c.end_ns.is_none_or(|e| e == T0 + 100 * SEC), "{c:?}");
    assert_eq!(c.dest, Some("198.51.100.10:53".parse().unwrap()));

    let b450 = at(log, question(Some(40000), 449, 451));
    assert_eq!(b450.verdict, Verdict::Unique, "{b450:?}");
    assert_eq!(subscribers(&b450), vec![sub(B)]);

    let none250 = at(log, question(Some(40000), 249, 251));
    assert_eq!(none250.verdict, Verdict::None, "{none250:?}");

    let window = at(log, question(Some(40000), 90, 410));
    assert_eq!(window.verdict, Verdict::Ambiguous, "{window:?}");
    assert_eq!(subscribers(&window), vec![sub(A), sub(B)]);
    for c in &window.candidates {
        if c.subscriber.port() == A.1 {
            assert_eq!(
                (c.start_ns, c.end_ns),
                (Some(T0 + 10 * SEC), Some(T0 + 100 * SEC))
            );
        } else {
            assert_eq!(c.start_ns, Some(T0 + 400 * SEC));
        }
    }

    // B's mapping began in the segment created at 400 s; at 850 s the segment open is the
    // one created at 800 s, whose checkpoint must carry it.
    for w in &log.workers {
        let open_at_849 = w
            .segments
            .iter()
            .rev()
            .find(|s| s.header.created_ns <= T0 + 849 * SEC)
            .unwrap();
        assert!(open_at_849.header.created_ns >= T0 + 800 * SEC);
        assert!(open_at_849.blocks[0].header.is_checkpoint());
    }
    let b850 = at(log, question(Some(40000), 849, 851));
    assert_eq!(b850.verdict, Verdict::Unique, "{b850:?}");
    assert_eq!(subscribers(&b850), vec![sub(B)]);
    assert_eq!(b850.candidates[0].start_ns, Some(T0 + 400 * SEC));

    let none950 = at(log, question(Some(40000), 949, 951));
    assert_eq!(none950.verdict, Verdict::None, "{none950:?}");

    // Without a port: everyone on the address.
    let any50 = at(log, question(None, 49, 51));
    assert_eq!(any50.verdict, Verdict::Ambiguous, "{any50:?}");
    assert!(subscribers(&any50).contains(&sub(A)), "{any50:?}");
    assert!(subscribers(&any50).contains(&sub(C)), "{any50:?}");
    assert!(!subscribers(&any50).contains(&sub(B)), "{any50:?}");

    // A destination that matches narrows to the session; one that does not, when every
    // session on the mapping is known, excludes it.
    let mut q = question(Some(40000), 49, 51);
    q.dest_ip = Some("198.51.100.10".parse().unwrap());
    q.dest_port = Some(53);
    let matched = at(log, q.clone());
    assert_eq!(matched.verdict, Verdict::Unique, "{matched:?}");
    assert_eq!(matched.candidates[0].evidence, Evidence::Session);
    q.dest_ip = Some("192.0.2.99".parse().unwrap());
    let excluded = at(log, q);
    assert_eq!(excluded.verdict, Verdict::None, "{excluded:?}");

    // At 850 s B's sessions before the checkpoint are unknown: a non-matching destination
    // cannot exclude it.
    let mut q = question(Some(40000), 849, 851);
    q.dest_ip = Some("192.0.2.99".parse().unwrap());
    let honest = at(log, q);
    assert_eq!(honest.verdict, Verdict::Unique, "{honest:?}");
    assert_eq!(honest.candidates[0].evidence, Evidence::Mapping);

    // The protocol filter.
    let mut q = question(Some(40000), 49, 51);
    q.protocol = Some(6);
    assert_eq!(at(log, q).verdict, Verdict::None);
}

#[test]
fn queries_across_segments_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    query_log(&dir, 0);
    let mut log = LogDir::open(&dir).unwrap();
    check_queries(&mut log);
}

#[test]
fn queries_when_the_mapping_moves_to_another_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    query_log(&dir, 1);
    let mut log = LogDir::open(&dir).unwrap();
    check_queries(&mut log);
}

// ---------------------------------------------------------------------------
// 5. Back-pressure on a full disk

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

/// Problems allowed on a log whose writer could not finish: a torn or open tail at the end
/// of each worker's last segment, nothing else.
fn assert_only_torn_tail(root: &Path) {
    let log = LogDir::open(root).unwrap();
    let problems = logdir::verify(&log);
    for p in &problems {
        let w = log
            .workers
            .iter()
            .find(|w| w.segments.iter().any(|s| s.path == p.path))
            .unwrap();
        let last = w.segments.last().unwrap();
        assert_eq!(
            p.path,
            last.path,
            "only the last segment may be torn:\n{}",
            show(&problems)
        );
        let Tail::Open { valid_len } = last.tail else {
            panic!("a closed segment with problems:\n{}", show(&problems));
        };
        assert!(
            p.block_sequence.is_none() && p.offset as u64 >= valid_len,
            "only the tail past {valid_len} may be damaged:\n{}",
            show(&problems)
        );
    }
}

#[test]
fn full_disk_refuses_sessions_then_recovers() {
    let Some(fs_) = Tmpfs::mount("512k") else {
        return;
    };
    // Ballast to free later, so the writer can recover.
    let ballast = fs_.path.join("ballast");
    fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let dir = fs_.path.join("log");
    let s = pressure_settings(&dir, "refuse-sessions");
    let batch = s.batch_records;
    let (log, mut producers) = MapLog::start(s, 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut emitted = Vec::new();
    let refused = fill_until_refused(p, &log, &mut emitted);
    assert!(
        refused,
        "has_room(2) never said no on a full disk ({} emitted)",
        emitted.len()
    );
    let c = Counters::of(log.stats());
    assert!(c.write_errors > 0, "{c:?}");
    assert_eq!(c.records_lost, 0, "{c:?}");
    // End-of-session records still fit: the batch grows past its size (overflow).
    for _ in 0..batch + 10 {
        let e = numbered(emitted.len() as u64, wall_ns());
        p.emit(&e);
        emitted.push(e);
    }
    let c = Counters::of(log.stats());
    assert!(c.records_overflowed > 0, "{c:?}");
    assert_eq!(c.records_lost, 0, "{c:?}");
    assert_only_torn_tail(&dir);

    // Room again: the writer catches up, batches come back, sessions are accepted.
    fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.has_room(2) && Instant::now() < deadline {
        p.poll(wall_ns());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        p.has_room(2),
        "the writer recovers once the disk has room: {:?} {:?}",
        Counters::of(log.stats()),
        last_error(&log)
    );
    for _ in 0..100 {
        let e = numbered(emitted.len() as u64, wall_ns());
        p.emit(&e);
        emitted.push(e);
    }
    p.finish();
    let report = log.close().expect("close after recovery");
    assert_eq!(report.records, emitted.len() as u64);
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1);
    assert_eq!(got[0].len(), emitted.len());
    assert!(
        got[0] == emitted,
        "every emitted record is in the log, in order"
    );
}

#[test]
fn full_disk_drops_records_under_drop_records_policy() {
    let Some(fs_) = Tmpfs::mount("512k") else {
        return;
    };
    let ballast = fs_.path.join("ballast");
    fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let dir = fs_.path.join("log");
    let (log, mut producers) =
        MapLog::start(pressure_settings(&dir, "drop-records"), 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut emitted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (LogStats::get(&log.stats().records_lost) < 1000
        || LogStats::get(&log.stats().write_errors) == 0)
        && Instant::now() < deadline
    {
        p.poll(wall_ns());
        if LogStats::get(&log.stats().write_errors) == 0 && emitted.len().is_multiple_of(64) {
            // Until the disk is full, let the writer keep up.
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(p.has_room(2), "drop-records never refuses");
        let e = numbered(emitted.len() as u64, wall_ns());
        p.emit(&e);
        emitted.push(e);
    }
    let c = Counters::of(log.stats());
    assert!(c.records_lost >= 1000, "{c:?}");
    assert!(c.write_errors > 0, "{c:?}");
    assert_eq!(c.records_overflowed, 0, "{c:?}");
    assert_only_torn_tail(&dir);

    fs::remove_file(&ballast).unwrap();
    p.finish();
    let report = log.close().expect("close after the disk has room");
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    assert_eq!(got.len() as u64 + c.records_lost, emitted.len() as u64);
    assert_eq!(report.records, got.len() as u64);
    // What was kept is a subsequence of what was emitted, in order.
    let mut it = emitted.iter();
    for g in &got {
        assert!(
            it.any(|e| e == g),
            "record {} out of order or unknown",
            number_of(g)
        );
    }
}

// ---------------------------------------------------------------------------
// 6. Crash: SIGKILL of a writing process

const CHILD_ENV: &str = "TRACENAT_MAPLOG_CRASH_CHILD";

/// In the child: writes numbered events with wall-clock timestamps until killed, printing
/// `durable <ns>` whenever `durable_through_ns` moves.
fn crash_child(dir: &Path) -> ! {
    let s = settings(dir, "flush-interval = \"100ms\"");
    let (log, mut producers) = MapLog::start(s, 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut out = std::io::stdout().lock();
    writeln!(out, "started").unwrap();
    out.flush().unwrap();
    let mut durable = 0;
    let mut i = 0u64;
    let mut next = Instant::now();
    loop {
        let now = wall_ns();
        p.poll(now);
        if p.has_room(2) {
            p.emit(&numbered(i, now));
            i += 1;
        }
        let d = log.stats().durable_through_ns.load(Ordering::Relaxed);
        if d != durable {
            durable = d;
            writeln!(out, "durable {d}").unwrap();
            out.flush().unwrap();
        }
        next += Duration::from_micros(20);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
}

#[test]
fn sigkill_loses_nothing_durable() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        crash_child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_loses_nothing_durable",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut durable = None;
    let mut started = false;
    let mut deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(line) if line.ends_with("started") => {
                started = true;
                deadline = Instant::now() + Duration::from_millis(1500);
            }
            Ok(line) => {
                if let Some(d) = line.strip_prefix("durable ") {
                    durable = Some(d.parse::<u64>().unwrap());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let status = child.wait().unwrap();
    // Anything printed before the kill counts.
    while let Ok(line) = rx.try_recv() {
        if let Some(d) = line.strip_prefix("durable ") {
            durable = Some(d.parse::<u64>().unwrap());
        }
    }
    let _ = reader.join();
    assert!(started, "the child never started (status {status})");
    let durable = durable.expect("the child reported a durable time");

    // Reopening repairs the torn tail.
    let (log, mut producers) = MapLog::start(settings(&dir, ""), 1, wall_ns()).unwrap();
    producers.iter_mut().for_each(Producer::finish);
    let report = log.close().unwrap();
    eprintln!("recovered: {:?}", report.recovered);

    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "after recovery:\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    assert!(!got.is_empty());
    for (i, e) in got.iter().enumerate() {
        assert_eq!(number_of(e), i as u64, "gap-free prefix");
        assert_eq!(*e, numbered(i as u64, e.ts_ns), "record {i} intact");
    }
    let last_ts = got.last().unwrap().ts_ns;
    assert!(
        last_ts >= durable,
        "records up to {durable} were durable but the log ends at {last_ts} ({} records)",
        got.len()
    );
    eprintln!(
        "{} records survived, durable through {durable}, log ends at {last_ts}",
        got.len()
    );
}

// ---------------------------------------------------------------------------
// Bugs found while writing these tests

/// `durable_through_ns` is the max over workers of what each has written, but a slow
/// worker can still hold older records in its batch or ring.
#[test]
fn durable_through_covers_every_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut s = settings(&dir, "flush-interval = \"20ms\"");
    s.batch_records = 4;
    let (log, mut producers) = MapLog::start(s, 2, T0).unwrap();
    // Worker 1 saw one event early and nothing since: it sits in its batch.
    let slow = Event {
        worker: 1,
        ..numbered(0, T0 + SEC)
    };
    producers[1].emit(&slow);
    // Worker 0 is busy: full batches are handed over at once.
    let busy: Vec<Event> = (1..=9)
        .map(|i| Event {
            worker: 0,
            ..numbered(i, T0 + 2 * SEC + i * MS)
        })
        .collect();
    for e in &busy {
        producers[0].emit(e);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut d = 0;
    while d == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        d = log.stats().durable_through_ns.load(Ordering::Relaxed);
    }
    assert!(d > 0, "a sync happened");
    // What is on disk now is what a crash would leave.
    let on_disk = read_events(&LogDir::open(&dir).unwrap(), 2);
    let all: Vec<Event> = std::iter::once(slow).chain(busy.iter().copied()).collect();
    let claimed: Vec<&Event> = all.iter().filter(|e| e.ts_ns <= d).collect();
    for e in claimed {
        let w = e.worker as usize;
        assert!(
            on_disk[w].contains(e),
            "durable_through_ns = {d} but worker {w}'s record at {} is not on disk",
            e.ts_ns
        );
    }
    producers.iter_mut().for_each(Producer::finish);
    log.close().unwrap();
}

/// A rotation that fails on a full disk must be retried like any other write, not stop
/// the writer or lose the closing segment.
#[test]
fn full_disk_during_rotation_is_retried() {
    let Some(fs_) = Tmpfs::mount("512k") else {
        return;
    };
    let ballast = fs_.path.join("ballast");
    fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let dir = fs_.path.join("log");
    let mut s = pressure_settings(&dir, "refuse-sessions");
    s.segment_size = 1; // rotates before every block
    let (log, mut producers) = MapLog::start(s, 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut emitted = Vec::new();
    assert!(
        fill_until_refused(p, &log, &mut emitted),
        "the disk filled up"
    );
    fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.has_room(2) && Instant::now() < deadline {
        p.poll(wall_ns());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        p.has_room(2),
        "the writer recovers once the disk has room: {:?} {:?}",
        Counters::of(log.stats()),
        last_error(&log)
    );
    p.finish();
    let report = log.close().expect("close after recovery");
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    assert_eq!(report.records, emitted.len() as u64);
    assert!(got == emitted, "every emitted record is in the log");
}

/// A crash right after a rotation created the next segment file, before the first flush
/// (up to a flush interval later), leaves that file empty. The log must still open, for
/// reading and for writing.
#[test]
fn empty_segment_left_by_a_crash_at_rotation_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let events = vec![synthetic_events(0, 600, T0, 31)];
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &events,
    );
    let paths = segment_paths(&dir, 0);
    let next = paths.len();
    let empty = dir
        .join("worker-000")
        .join(format!("{next:010}-{}.tnseg", T0 + 3600 * SEC));
    fs::write(&empty, b"").unwrap();

    let log = LogDir::open(&dir);
    assert!(log.is_ok(), "reading: {:?}", log.err());
    let log = log.unwrap();
    let damage = log.damage();
    assert_eq!(damage.len(), 1, "the empty file is listed: {damage:?}");
    assert!(
        damage[0].contains(&empty.display().to_string()),
        "{damage:?}"
    );
    let got = read_events(&log, 1);
    assert_eq!(got, events);

    let more = vec![synthetic_events(0, 200, T0 + 7200 * SEC, 32)];
    let started = MapLog::start(
        replay_settings(&dir, "sessions-with-destination", 10),
        1,
        T0 + 7200 * SEC,
    );
    assert!(
        started.is_ok(),
        "restarting: {:?}",
        started.err().map(|e| e.to_string())
    );
    let (log, producers) = started.unwrap();
    producers.into_iter().for_each(|mut p| p.finish());
    let report = log.close().unwrap();
    assert_eq!(report.recovered.len(), 1, "{:?}", report.recovered);
    assert!(
        report.recovered[0].contains(&empty.display().to_string()),
        "{:?}",
        report.recovered
    );
    assert!(!empty.exists(), "the empty segment is removed");
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &more,
    );
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    let want: Vec<Event> = events[0].iter().chain(&more[0]).copied().collect();
    assert!(got == want);
}

// ---------------------------------------------------------------------------
// Rotation and retention

#[test]
fn rotation_by_size_and_age_and_retention_keep_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("log");
    // A minute of events; segments of 5 s; keep 20 s.
    let mut s = replay_settings(&root, "sessions-with-destination", 5);
    s.retention_ns = Some(20 * SEC);
    let events = synthetic_events(0, 3000, T0, 11);
    let span = events.last().unwrap().ts_ns - events[0].ts_ns;
    assert!(span > 50 * SEC, "the events span {} s", span / SEC);
    write_log(s, std::slice::from_ref(&events));

    let kept = segment_paths(&root, 0);
    let retired = fs::read_to_string(root.join("retired.jsonl")).unwrap();
    let retired: Vec<serde_json::Value> = retired
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!retired.is_empty(), "old segments were retired");
    let newest = events.iter().map(|e| e.ts_ns).max().unwrap();
    for r in &retired {
        assert!(r["last_ts_ns"].as_u64().unwrap() < newest - 20 * SEC + 5 * SEC);
    }
    // What remains starts where retention cut, continues the chain, and verifies.
    let log = LogDir::open(&root).unwrap();
    let problems = logdir::verify(&log);
    assert!(problems.is_empty(), "{}", show(&problems));
    let first_kept = log.workers[0].segments[0].header.sequence;
    assert_eq!(first_kept, retired.len() as u64);
    assert!(kept.len() >= 3);
    let oldest_kept = read_events(&log, 1)[0][0].ts_ns;
    assert!(
        oldest_kept >= newest - 30 * SEC,
        "records older than retention remain"
    );

    // A segment removed by hand (not by retention) is still caught.
    fs::remove_file(&kept[0]).unwrap();
    let problems = verify_dir(&root);
    assert!(
        problems.iter().any(|p| p.what.contains("hash chain")),
        "{}",
        show(&problems)
    );
}

#[test]
fn rotation_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("log");
    let mut s = replay_settings(&root, "sessions-with-destination", 3600);
    s.segment_size = 4096;
    let events = synthetic_events(0, 2000, T0, 5);
    write_log(s, std::slice::from_ref(&events));
    let log = LogDir::open(&root).unwrap();
    assert!(log.workers[0].segments.len() > 3, "segments rotate by size");
    assert_eq!(read_events(&log, 1)[0], events);
    assert!(logdir::verify(&log).is_empty());
}
