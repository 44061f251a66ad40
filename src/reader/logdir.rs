//! A log directory opened for reading: every worker's segments, mapped, with their block
//! lists. Damaged regions are reported and skipped; everything intact is still read.

use std::path::{Path, PathBuf};

use crate::config::{Config, LogVolume};
use crate::engine::ports::Deterministic;
use crate::identity::IdentityRecord;
use crate::maplog::block::{self, BlockError, Hash};
use crate::maplog::dir;
use crate::maplog::identity_block;
use crate::maplog::identity_log::{IDENTITY_CHAIN, identity_dir};
use crate::maplog::record::{EndpointResolver, Record};
use crate::maplog::runs::{self, RunEnd};
use crate::maplog::segment::{self, BlockRef, Segment, SegmentError, Tail};
use crate::reader::ReaderError;

pub struct WorkerSegments {
    pub worker: u16,
    pub segments: Vec<Segment>,
    /// When each run of the NAT that this worker may have been part of ended, in time
    /// order (`runs.jsonl`): no holding outlives its run.
    pub run_ends: Vec<RunEnd>,
}

pub struct LogDir {
    pub root: PathBuf,
    /// The box that wrote this log (`runs.jsonl`), named in answers across several logs.
    pub box_name: String,
    pub workers: Vec<WorkerSegments>,
    /// The reader's position when answering an access log chunk by chunk.
    pub(crate) sweep: Option<Vec<crate::reader::query::Cursor>>,
    /// Files that could not be read at all (a segment without a readable header, a stored
    /// configuration that does not parse), with why; everything else is still read.
    pub skipped: Vec<(PathBuf, String)>,
    /// The configurations stored with the log, by activation time, oldest first.
    pub configs: Vec<StoredConfig>,
    /// The holdings of inside addresses read for the last answers, kept while they cover
    /// the next ones.
    pub(crate) identity: Option<crate::reader::identity::IdentityBook>,
    /// The identity chain's segments (`identity/`), for `verify`, `stats` and `decode`.
    pub identity_segments: Vec<Segment>,
    /// Runs during which the wall clock stepped (docs/mapping-log.md §5.1.2).
    pub stepped_runs: Vec<runs::SteppedRun>,
}

/// A configuration the NAT ran with, from its activation time on.
pub struct StoredConfig {
    pub activated_ns: u64,
    pub config: Config,
    /// Its RFC 7422 mapping, when it logged in deterministic mode.
    pub deterministic: Option<Deterministic>,
}

impl LogDir {
    pub fn open(root: &Path) -> Result<LogDir, ReaderError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ReaderError::Io { path, source }
        };
        dir::check(root).map_err(io(root))?;
        let mut workers = Vec::new();
        let mut skipped = Vec::new();
        // A damaged line is reported (and fails `verify`); the runs it described are then
        // not closed at their end, which only widens answers.
        let runs = runs::read(root).map_err(io(&root.join(dir::RUNS)))?;
        skipped.extend(
            runs.problems
                .iter()
                .map(|why| (root.join(dir::RUNS), why.clone())),
        );
        for w in dir::workers(root).map_err(io(root))? {
            let wdir = dir::worker_dir(root, w);
            let mut segments = Vec::new();
            for path in dir::segments(&wdir).map_err(io(&wdir))? {
                match Segment::open(&path) {
                    Ok(seg) => segments.push(seg),
                    Err(SegmentError::Io(e)) => {
                        return Err(ReaderError::Io { path, source: e });
                    }
                    // A header too damaged to read: that file is reported, the rest is read.
                    Err(e) => skipped.push((path, e.to_string())),
                }
            }
            workers.push(WorkerSegments {
                worker: w,
                segments,
                run_ends: runs::ends_for(&runs.lines, w),
            });
        }
        let identity_segments = open_chain(&identity_dir(root), &mut skipped)?;
        let mut configs = Vec::new();
        for (activated, text) in dir::configs(root).map_err(io(root))? {
            match Config::from_toml_str(&text) {
                Ok(config) => configs.push(StoredConfig {
                    activated_ns: activated,
                    deterministic: (config.logging.volume == LogVolume::Deterministic)
                        .then(|| Deterministic::from_config(&config))
                        .flatten(),
                    config,
                }),
                Err(e) => skipped.push((
                    root.join(dir::CONFIGS),
                    format!("stored configuration {activated}: {e}"),
                )),
            }
        }
        // The box that wrote the log: as its latest run recorded it, else the directory's
        // own name (logs written before boxes were named).
        let box_name = runs
            .lines
            .iter()
            .rev()
            .find_map(|line| match line {
                runs::RunLine::Start(start) => start.box_name.clone(),
                runs::RunLine::Stop(_) | runs::RunLine::ClockStep(_) => None,
            })
            .unwrap_or_else(|| {
                root.file_name()
                    .map_or_else(|| "-".into(), |n| n.to_string_lossy().into_owned())
            });
        Ok(LogDir {
            root: root.to_owned(),
            box_name,
            workers,
            sweep: None,
            skipped,
            configs,
            identity: None,
            identity_segments,
            stepped_runs: runs::stepped_runs(&runs.lines),
        })
    }

    /// How far the times of the log's records in `[from_ns, to_ns]` may be off because the
    /// wall clock stepped in the runs that wrote them (0 when it never did).
    pub fn clock_step_uncertainty_ns(&self, from_ns: u64, to_ns: u64) -> u64 {
        self.stepped_runs
            .iter()
            .filter(|run| {
                from_ns <= run.to_ns.saturating_add(run.uncertainty_ns)
                    && run.from_ns.saturating_sub(run.uncertainty_ns) <= to_ns
            })
            .map(|run| run.uncertainty_ns)
            .max()
            .unwrap_or(0)
    }

    /// How long after a session's last packet its end can be logged: the longest idle
    /// timeout that ends a session which stopped its traffic (UDP, ICMP, TCP after FIN or
    /// RST) among the stored configurations, plus a margin for the timer's tick. TCP
    /// sessions idle in the established state end later; a reader that has not seen their
    /// end counts them as possibly active.
    pub fn activity_lookahead_ns(&self) -> u64 {
        const MARGIN_NS: u64 = 2_000_000_000;
        use crate::config::defaults;
        let stored = self.configs.iter().map(|c| {
            let t = &c.config.timeouts;
            t.udp.max(t.icmp).max(t.tcp_transitory)
        });
        let fallback = defaults::UDP
            .max(defaults::ICMP)
            .max(defaults::TCP_TRANSITORY);
        stored.max().unwrap_or(fallback).as_nanos() as u64 + MARGIN_NS
    }

    /// Every damaged region in the directory, as "file: offset: reason" lines.
    pub fn damage(&self) -> Vec<String> {
        self.workers
            .iter()
            .flat_map(|w| &w.segments)
            .flat_map(|s| {
                s.damage.iter().map(move |d| {
                    format!(
                        "{}: {} bytes at offset {} skipped: {}",
                        s.path.display(),
                        d.len,
                        d.offset,
                        d.reason
                    )
                })
            })
            .chain(
                self.skipped
                    .iter()
                    .map(|(path, why)| format!("{}: {why}", path.display())),
            )
            .collect()
    }
}

/// How a block that failed its check is named to the operator: file, sequence, offset, why.
pub fn describe_bad_block(seg: &Segment, b: &BlockRef, e: &dyn std::fmt::Display) -> String {
    format!(
        "{}: block {} at offset {}: {e}",
        seg.path.display(),
        b.header.sequence,
        b.offset
    )
}

/// Calls `visit(worker, record)` for every record in `[from, to]` of every non-checkpoint
/// block, worker by worker in write order, complete: end records stored without their
/// inside endpoint get it back from the segment's checkpoint and earlier creations (so a
/// segment is read from its start whenever any of it is in range). Blocks that fail their
/// CRC are reported through `bad` and skipped.
pub fn for_each_record(
    log: &LogDir,
    from_ns: u64,
    to_ns: u64,
    mut visit: impl FnMut(u16, &Record),
    mut bad: impl FnMut(&Segment, &BlockRef, BlockError),
) {
    let mut records = Vec::new();
    for w in &log.workers {
        for seg in &w.segments {
            let in_range =
                |b: &BlockRef| !b.header.is_checkpoint() && b.header.may_overlap(from_ns, to_ns);
            if !seg.blocks.iter().any(in_range) {
                continue;
            }
            let mut resolver = EndpointResolver::default();
            for b in &seg.blocks {
                let h = &b.header;
                if !h.is_checkpoint() && h.first_ts_ns > to_ns {
                    break;
                }
                records.clear();
                if let Err(e) = seg.read_block(b, &mut records) {
                    bad(seg, b, e);
                    continue;
                }
                for r in records.iter_mut() {
                    // An end whose holder is unknown (damage before it) keeps 0.0.0.0:0.
                    resolver.resolve(r);
                    if !h.is_checkpoint() && r.ts_ns >= from_ns && r.ts_ns <= to_ns {
                        visit(w.worker, r);
                    }
                }
            }
        }
    }
}

/// Per-worker figures for `tracenat log stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStats {
    pub worker: u16,
    pub segments: u64,
    pub blocks: u64,
    pub records: u64,
    pub checkpoint_records: u64,
    /// Bytes of the segment files.
    pub bytes: u64,
    /// Bytes the payloads would take uncompressed.
    pub raw_payload_bytes: u64,
    pub compressed_payload_bytes: u64,
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
}

pub fn stats(log: &LogDir) -> Vec<WorkerStats> {
    log.workers
        .iter()
        .map(|w| chain_stats(w.worker, &w.segments))
        .collect()
}

/// The identity chain's figures, if the log has one.
pub fn identity_stats(log: &LogDir) -> Option<WorkerStats> {
    (!log.identity_segments.is_empty()).then(|| chain_stats(IDENTITY_CHAIN, &log.identity_segments))
}

fn chain_stats(worker: u16, segments: &[Segment]) -> WorkerStats {
    let mut s = WorkerStats {
        worker,
        segments: segments.len() as u64,
        ..WorkerStats::default()
    };
    for seg in segments {
        s.bytes += seg.bytes().len() as u64;
        for b in &seg.blocks {
            let h = &b.header;
            s.blocks += 1;
            s.raw_payload_bytes += h.raw_len as u64;
            s.compressed_payload_bytes += h.payload_len as u64;
            if h.is_checkpoint() {
                s.checkpoint_records += h.count as u64;
                continue;
            }
            s.records += h.count as u64;
            if h.count > 0 {
                s.first_ts_ns = Some(
                    s.first_ts_ns
                        .map_or(h.first_ts_ns, |t| t.min(h.first_ts_ns)),
                );
                s.last_ts_ns = Some(s.last_ts_ns.map_or(h.last_ts_ns, |t| t.max(h.last_ts_ns)));
            }
        }
    }
    s
}

/// Every identity record (checkpoints excluded) whose time lies in `[from_ns, to_ns]`, in
/// chain order; damaged blocks are passed to `bad` and skipped.
pub fn for_each_identity(
    log: &LogDir,
    from_ns: u64,
    to_ns: u64,
    mut visit: impl FnMut(&IdentityRecord),
    mut bad: impl FnMut(&Segment, &BlockRef, BlockError),
) {
    let mut records = Vec::new();
    for seg in &log.identity_segments {
        for b in seg.blocks.iter().filter(|b| !b.header.is_checkpoint()) {
            records.clear();
            if let Err(e) = identity_block::decode(&b.header, seg.block_bytes(b), &mut records) {
                bad(seg, b, e);
                continue;
            }
            for r in records
                .iter()
                .filter(|r| (from_ns..=to_ns).contains(&r.at_ns))
            {
                visit(r);
            }
        }
    }
}

/// One problem `verify` found; the first one is the answer an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub offset: usize,
    pub block_sequence: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: offset {}", self.path.display(), self.offset)?;
        if let Some(seq) = self.block_sequence {
            write!(f, " (block {seq})")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// Checks everything: each block's header and payload CRC, that each block's
/// `prev_hash` is the hash of the block before it (across segments, and across segments
/// retention deleted, through `retired.jsonl`), that block and segment numbers have no
/// gaps, and that segments are properly closed. Returns problems in log order.
pub fn verify(log: &LogDir) -> Vec<Problem> {
    verify_with_progress(log, |_| {})
}

/// [`verify`], calling `progress(1)` after each block (for a progress bar).
pub fn verify_with_progress(log: &LogDir, mut progress: impl FnMut(u64)) -> Vec<Problem> {
    let retired = retired_anchors(&log.root);
    let mut problems = newest_segments_missing(log);
    let mut scratch = Vec::new();
    for w in &log.workers {
        let decode = |seg: &Segment, b: &BlockRef| {
            scratch.clear();
            seg.read_block(b, &mut scratch)
        };
        verify_chain(
            w.worker,
            &w.segments,
            &retired,
            decode,
            &mut problems,
            &mut progress,
        );
    }
    let mut identities = Vec::new();
    let decode = |seg: &Segment, b: &BlockRef| {
        identities.clear();
        identity_block::decode(&b.header, seg.block_bytes(b), &mut identities)
    };
    verify_chain(
        IDENTITY_CHAIN,
        &log.identity_segments,
        &retired,
        decode,
        &mut problems,
        &mut progress,
    );
    for (path, why) in &log.skipped {
        problems.push(Problem {
            path: path.clone(),
            offset: 0,
            block_sequence: None,
            what: format!("unreadable: {why}"),
        });
    }
    problems.sort_by(|a, b| (&a.path, a.offset).cmp(&(&b.path, b.offset)));
    problems
}

/// Each worker's newest segments against `runs.jsonl`: a start records how many segments
/// each worker had written, so a newest segment deleted since (which leaves no gap in the
/// chain of those that remain) is found. An unreadable `runs.jsonl` is reported elsewhere.
fn newest_segments_missing(log: &LogDir) -> Vec<Problem> {
    let lines = runs::read(&log.root).map(|r| r.lines).unwrap_or_default();
    let written = runs::segments_written_before_last_start(&lines);
    let mut problems = Vec::new();
    for (worker, &count) in (0u16..).zip(&written) {
        let Some(last_written) = count.checked_sub(1) else {
            continue;
        };
        // A segment whose header is unreadable is there (and reported as unreadable).
        let wdir = dir::worker_dir(&log.root, worker);
        let unreadable = log
            .skipped
            .iter()
            .filter(|(path, _)| path.parent() == Some(wdir.as_path()))
            .filter_map(|(path, _)| segment::parse_file_name(path.file_name()?.to_str()?));
        let newest = log
            .workers
            .iter()
            .filter(|w| w.worker == worker)
            .flat_map(|w| w.segments.iter().map(|s| s.header.sequence))
            .chain(unreadable)
            .max();
        if newest.is_none_or(|n| n < last_written) {
            let found = newest.map_or("none".to_owned(), |n| n.to_string());
            problems.push(Problem {
                path: wdir,
                offset: 0,
                block_sequence: None,
                what: format!(
                    "segment {last_written} missing: runs.jsonl records it written before \
                     the last start, and the newest segment here is {found}"
                ),
            });
        }
    }
    problems
}

/// Checks one chain of segments (a worker's, or the identity chain), decoding each block
/// with `decode`.
fn verify_chain(
    worker: u16,
    segments: &[Segment],
    retired: &[(u16, Hash)],
    mut decode: impl FnMut(&Segment, &BlockRef) -> Result<(), BlockError>,
    problems: &mut Vec<Problem>,
    progress: &mut impl FnMut(u64),
) {
    let mut expected: Option<(Hash, u64)> = None; // (prev hash, next block sequence)
    let mut expected_segment: Option<u64> = None;
    for (i, seg) in segments.iter().enumerate() {
        let at = |offset: usize, seq: Option<u64>, what: String| Problem {
            path: seg.path.clone(),
            offset,
            block_sequence: seq,
            what,
        };
        if let Some(want) = expected_segment
            && seg.header.sequence != want
        {
            problems.push(at(
                0,
                None,
                format!(
                    "segment {} missing (found {} next)",
                    want, seg.header.sequence
                ),
            ));
        }
        expected_segment = Some(seg.header.sequence + 1);
        let anchor_ok = match expected {
            Some((hash, _)) => seg.header.prev_hash == hash,
            None => {
                seg.header.prev_hash == [0; 32] || retired.contains(&(worker, seg.header.prev_hash))
            }
        };
        if !anchor_ok {
            problems.push(at(
                0,
                None,
                "segment does not continue the hash chain of the one before it (segment removed or replaced)".into(),
            ));
        }
        let mut prev = seg.header.prev_hash;
        let mut next_seq = expected.map(|(_, s)| s);
        for b in &seg.blocks {
            // Check the block as it is in the file; its index copy must agree with it.
            let stored = seg.stored_header(b);
            match &stored {
                Err(e) => problems.push(at(
                    b.offset,
                    Some(b.header.sequence),
                    format!("block header unreadable: {e}"),
                )),
                Ok(s) if *s != b.header => problems.push(at(
                    b.offset,
                    Some(s.sequence),
                    "block header differs from the segment index's copy".into(),
                )),
                Ok(_) => {}
            }
            let h = &stored.unwrap_or(b.header);
            if h.prev_hash != prev {
                problems.push(at(
                    b.offset,
                    Some(h.sequence),
                    "hash chain broken: the block before it was altered, removed or reordered"
                        .into(),
                ));
            }
            if let Some(want) = next_seq
                && h.sequence != want
            {
                problems.push(at(
                    b.offset,
                    Some(h.sequence),
                    format!("block sequence {} where {} was expected", h.sequence, want),
                ));
            }
            if let Err(e) = decode(seg, b) {
                problems.push(at(b.offset, Some(h.sequence), e.to_string()));
            }
            prev = block::block_hash(seg.block_bytes(b));
            next_seq = Some(h.sequence + 1);
            progress(1);
        }
        for d in &seg.damage {
            problems.push(at(
                d.offset,
                None,
                format!("{} bytes unreadable: {}", d.len, d.reason),
            ));
        }
        let last = i + 1 == segments.len();
        if let Tail::Open { .. } = seg.tail
            && !last
        {
            problems.push(at(
                seg.bytes().len(),
                None,
                "segment was never closed".into(),
            ));
        }
        expected = Some((prev, next_seq.unwrap_or(0)));
    }
}

/// (worker, last hash) of segments retention deleted: a worker's chain may legitimately
/// start at one of its own.
fn retired_anchors(root: &Path) -> Vec<(u16, Hash)> {
    let Ok(text) = std::fs::read_to_string(root.join(dir::RETIRED)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let worker = u16::try_from(v["worker"].as_u64()?).ok()?;
            let h = v["last_hash"].as_str()?;
            let bytes: Vec<u8> = (0..h.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
                .collect();
            Some((worker, bytes.try_into().ok()?))
        })
        .collect()
}

/// The segments of the chain in `folder` (none if it does not exist); a segment whose header
/// cannot be read is noted in `skipped` and the rest are read.
fn open_chain(
    folder: &Path,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<Vec<Segment>, ReaderError> {
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let paths = dir::segments(folder).map_err(|source| ReaderError::Io {
        path: folder.to_owned(),
        source,
    })?;
    let mut segments = Vec::new();
    for path in paths {
        match Segment::open(&path) {
            Ok(seg) => segments.push(seg),
            Err(SegmentError::Io(e)) => return Err(ReaderError::Io { path, source: e }),
            Err(e) => skipped.push((path, e.to_string())),
        }
    }
    Ok(segments)
}
