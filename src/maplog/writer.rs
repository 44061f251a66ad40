//! Writing the log: each worker's [`Producer`] (the engine's event sink) fills batches of
//! records and hands them to one writer thread over lock-free rings; the writer encodes
//! blocks, appends them through io_uring, syncs on the flush interval, rotates segments and
//! applies retention.
//!
//! No silent loss: a worker has a fixed number of batches. When the writer falls behind or
//! the disk is full, batches stop coming back, `has_room` says no and the engine refuses new
//! sessions (counted as `drop_log_backpressure`); end-of-session records still fit (a batch
//! grows past its size rather than lose one, counted as overflow). Under the operator's
//! opposite policy, `drop-records`, sessions are translated anyway and the records that do
//! not fit are counted as lost.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crossbeam_queue::ArrayQueue;

use super::block;
use super::chain::SegmentChain;
use super::clock;
use super::dir;
use super::live::{LiveSet, Undo};
use super::record::{self, Record};
use super::runs::{self, PreviousRun, RunClockStep, RunLine, RunStop};
pub use super::settings::LogSettings;
use crate::config::{BackpressurePolicy, LogVolume};
use crate::engine::event::{Event, EventSink};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("mapping log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("mapping log {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("mapping log writer stopped unexpectedly")]
    WriterGone,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Counters the writer and producers keep, readable while running.
#[derive(Debug, Default)]
pub struct LogStats {
    pub records_written: AtomicU64,
    pub blocks_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub syncs: AtomicU64,
    pub write_errors: AtomicU64,
    pub segments_opened: AtomicU64,
    pub segments_retired: AtomicU64,
    /// Records dropped under the `drop-records` policy.
    pub records_lost: AtomicU64,
    /// Records kept by growing a batch past its size (`refuse-sessions`, writer behind).
    pub records_overflowed: AtomicU64,
    /// Every record with a timestamp up to this that was emitted before the writer began
    /// the sync that published it is on disk and synced (ns; 0 before the first sync; never
    /// decreases). What a crash can lose is only what came after. A record emitted later
    /// with an older timestamp (a worker whose clock lags) is covered once it is synced.
    pub durable_through_ns: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// How the open segment files are written, e.g. "io_uring, O_DIRECT".
    pub io_mode: Mutex<String>,
}

impl LogStats {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a failed write and keeps its message for the operator.
    pub(super) fn note_error(&self, path: &Path, e: &io::Error) {
        Self::add(&self.write_errors, 1);
        *self.last_error.lock().unwrap() = Some(format!("{}: {e}", path.display()));
    }
}

struct Shared {
    stats: Arc<LogStats>,
    shutdown: AtomicBool,
    writer: Mutex<Option<thread::Thread>>,
}

impl Shared {
    fn wake_writer(&self) {
        if let Some(t) = self.writer.lock().ok().and_then(|w| w.clone()) {
            t.unpark();
        }
    }
}

/// One worker's side of the pipeline: the engine's [`EventSink`].
pub struct Producer {
    volume: LogVolume,
    policy: BackpressurePolicy,
    current: Vec<Record>,
    batch_records: usize,
    to_writer: Arc<ArrayQueue<Vec<Record>>>,
    free: Arc<ArrayQueue<Vec<Record>>>,
    /// Oldest timestamp in `current` (`u64::MAX` when empty), and where it is published for
    /// the writer, which must not claim it durable.
    oldest: u64,
    oldest_held: Arc<AtomicU64>,
    flush_interval_ns: u64,
    last_handoff_ns: u64,
    /// wall − engine time (docs/mapping-log.md §5.1.2): events come stamped with engine
    /// time and are stored on the wall clock. 0 when the driver's clock is the wall clock.
    skew_ns: i64,
    shared: Arc<Shared>,
}

/// Room kept in a batch for end-of-session records, which cannot be refused.
const RESERVE: usize = 16;

impl Producer {
    /// Hands the current batch to the writer if one is free to take its place.
    fn hand_off(&mut self) -> bool {
        let Some(fresh) = self.free.pop() else {
            return false;
        };
        let full = std::mem::replace(&mut self.current, fresh);
        // The ring holds every batch a worker has, so it always has room.
        let pushed = self.to_writer.push(full);
        debug_assert!(pushed.is_ok());
        self.holds_nothing();
        self.shared.wake_writer();
        true
    }

    /// After a hand-off. Release, after the push: a writer that reads this finds the batch
    /// in the ring.
    fn holds_nothing(&mut self) {
        self.oldest = u64::MAX;
        self.oldest_held.store(u64::MAX, Ordering::Release);
    }

    /// Keeps a record in the current batch, publishing its timestamp if it is the oldest
    /// there: once per batch when timestamps rise, so the hot path stays store-free.
    /// Release, so that a writer reading it also sees the batches handed off before.
    fn hold(&mut self, record: Record) {
        if record.ts_ns < self.oldest {
            self.oldest = record.ts_ns;
            self.oldest_held.store(record.ts_ns, Ordering::Release);
        }
        self.current.push(record);
    }

    /// Called by the driver every loop: hands a partial batch over once `flush_interval`
    /// has passed, so records reach the disk on time even when traffic is light.
    pub fn poll(&mut self, now_ns: u64) {
        // `last_handoff_ns > now_ns`: the first hand-off, dated by the writer's start on
        // the wall clock, while `now_ns` is the driver's clock.
        if !self.current.is_empty()
            && (now_ns.saturating_sub(self.last_handoff_ns) >= self.flush_interval_ns
                || self.last_handoff_ns > now_ns)
            && self.hand_off()
        {
            self.last_handoff_ns = now_ns;
        }
    }

    /// From now on, events are stored at their engine time plus `skew_ns` (the worker's
    /// latest reading of wall − engine time).
    pub fn set_clock_skew(&mut self, skew_ns: i64) {
        self.skew_ns = skew_ns;
    }

    /// The skew events are stamped with now.
    pub fn clock_skew(&self) -> i64 {
        self.skew_ns
    }

    /// Records a step of the wall clock. Never refused: it is what makes the times around
    /// it readable.
    pub fn clock_step(&mut self, step: clock::ClockStep) {
        self.hold(Record {
            last_active_ns: step
                .at_ns
                .saturating_add_signed(step.by_ns.saturating_neg()),
            ..Record::new(record::RecordKind::ClockStep, step.at_ns)
        });
    }

    /// Hands over whatever is left, free batch or not (at shutdown).
    pub fn finish(&mut self) {
        if !self.current.is_empty() {
            let full = std::mem::take(&mut self.current);
            let _ = self.to_writer.push(full);
            self.holds_nothing();
            self.shared.wake_writer();
        }
    }
}

impl EventSink for Producer {
    fn has_room(&self, events: usize) -> bool {
        self.policy == BackpressurePolicy::DropRecords
            || self.current.len() + events + RESERVE <= self.batch_records
            || !self.free.is_empty()
    }

    fn emit(&mut self, event: &Event) {
        let Some(mut record) = record::keep(self.volume, event) else {
            return;
        };
        record.ts_ns = clock::on_wall_clock(record.ts_ns, self.skew_ns);
        if record.last_active_ns != 0 {
            record.last_active_ns = clock::on_wall_clock(record.last_active_ns, self.skew_ns);
        }
        if self.current.len() >= self.batch_records && !self.hand_off() {
            match self.policy {
                BackpressurePolicy::DropRecords => {
                    LogStats::add(&self.shared.stats.records_lost, 1);
                    return;
                }
                BackpressurePolicy::RefuseSessions => {
                    LogStats::add(&self.shared.stats.records_overflowed, 1);
                }
            }
        }
        self.hold(record);
    }
}

/// A second consumer of the log's records (live export): called on the writer thread with
/// every block's event records, in order, right after the block is written. It must not
/// block: the log waits for it.
pub trait RecordTap: Send + Sync {
    fn written(&self, worker: u16, records: &[Record]);
}

/// The running log: its writer thread and counters.
pub struct MapLog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<WriterReport, LogError>>>,
    dir: PathBuf,
    previous: Option<PreviousRun>,
}

/// What the writer did, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterReport {
    pub records: u64,
    pub blocks: u64,
    pub bytes: u64,
    /// How writes reached the disk, e.g. "io_uring, O_DIRECT".
    pub io: String,
    /// What was found and repaired when the log was opened (torn tails cut).
    pub recovered: Vec<String>,
}

impl MapLog {
    /// Opens (or creates) the log directory, repairs torn tails, starts the writer thread
    /// and returns one producer per worker. `now_ns` dates the stored configuration.
    pub fn start(
        settings: LogSettings,
        workers: u16,
        now_ns: u64,
    ) -> Result<(MapLog, Vec<Producer>), LogError> {
        MapLog::start_tapped(settings, workers, now_ns, None)
    }

    /// [`MapLog::start`], with `tap` given every block's records once written.
    pub fn start_tapped(
        settings: LogSettings,
        workers: u16,
        now_ns: u64,
        tap: Option<Arc<dyn RecordTap>>,
    ) -> Result<(MapLog, Vec<Producer>), LogError> {
        dir::prepare(&settings.dir).map_err(io_err(&settings.dir))?;
        if let Some(text) = &settings.config_text {
            dir::store_config(&settings.dir, now_ns, text).map_err(io_err(&settings.dir))?;
        }
        let shared = Arc::new(Shared {
            stats: Arc::new(LogStats::default()),
            shutdown: AtomicBool::new(false),
            writer: Mutex::new(None),
        });
        let mut logs = Vec::new();
        let mut producers = Vec::new();
        let mut recovered = Vec::new();
        for w in 0..workers {
            let to_writer = Arc::new(ArrayQueue::new(settings.batches_per_worker));
            let free = Arc::new(ArrayQueue::new(settings.batches_per_worker));
            for _ in 1..settings.batches_per_worker {
                let _ = free.push(Vec::with_capacity(settings.batch_records));
            }
            let oldest_held = Arc::new(AtomicU64::new(u64::MAX));
            logs.push(WorkerLog::open(
                &settings,
                w,
                to_writer.clone(),
                free.clone(),
                oldest_held.clone(),
                tap.clone(),
                &mut recovered,
            )?);
            producers.push(Producer {
                volume: settings.volume,
                policy: settings.policy,
                current: Vec::with_capacity(settings.batch_records),
                batch_records: settings.batch_records,
                to_writer,
                free,
                oldest: u64::MAX,
                oldest_held,
                flush_interval_ns: settings.flush_interval_ns,
                last_handoff_ns: now_ns,
                skew_ns: 0,
                shared: shared.clone(),
            });
        }
        keep_removed_segments_visible(&settings.dir, &mut logs, &mut recovered);
        let next_segments = logs.iter().map(|l| l.chain.segment_sequence).collect();
        let previous = runs::begin(
            &settings.dir,
            now_ns,
            next_segments,
            settings.seed,
            settings.box_name.as_deref(),
            &mut recovered,
        )
        .map_err(io_err(&settings.dir))?;
        let dir = settings.dir.clone();
        // The writer thread says what the first segment file really uses once it opens it.
        *shared.stats.io_mode.lock().unwrap() = String::from("(no segment open yet)");
        let writer = Writer {
            settings,
            logs,
            shared: shared.clone(),
            report: WriterReport {
                recovered,
                ..WriterReport::default()
            },
        };
        let thread = thread::Builder::new()
            .name("maplog-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| LogError::Io {
                path: PathBuf::from("writer thread"),
                source: e,
            })?;
        *shared.writer.lock().unwrap() = Some(thread.thread().clone());
        Ok((
            MapLog {
                shared,
                thread: Some(thread),
                dir,
                previous,
            },
            producers,
        ))
    }

    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }

    /// The counters, for a thread that outlives this borrow (the metrics endpoint).
    pub fn stats_handle(&self) -> Arc<LogStats> {
        self.shared.stats.clone()
    }

    /// Drains every ring, writes and syncs everything, closes the segments. Call after
    /// each producer's [`Producer::finish`]. The next start takes this run for one that
    /// crashed (its sessions may have lived until then): see [`MapLog::close_stopped`].
    pub fn close(mut self) -> Result<WriterReport, LogError> {
        self.stop()
    }

    /// Notes a step of the wall clock in `runs.jsonl` (the workers record it in their
    /// chains too), so readers find it without reading every block.
    pub fn note_clock_step(&self, step: clock::ClockStep) -> Result<(), LogError> {
        let line = RunLine::ClockStep(RunClockStep {
            event: runs::RunEvent::ClockStep,
            clock_step_at_ns: step.at_ns,
            clock_step_ns: step.by_ns,
        });
        runs::append(&self.dir, &line).map_err(io_err(&self.dir))
    }

    /// [`MapLog::close`] for a NAT that ended every session at `stop_ns` (a clean stop):
    /// once everything is on disk, says so in `runs.jsonl`, so readers close whatever is
    /// still open there and the next start knows when this run ended.
    pub fn close_stopped(mut self, stop_ns: u64) -> Result<WriterReport, LogError> {
        let report = self.stop()?;
        runs::append(&self.dir, &RunLine::Stop(RunStop { stop_ns })).map_err(io_err(&self.dir))?;
        Ok(report)
    }

    /// The run before this one on the directory, if any: how it ended, and the ports that
    /// must rest before this run hands them out.
    pub fn previous_run(&self) -> Option<&PreviousRun> {
        self.previous.as_ref()
    }

    fn stop(&mut self) -> Result<WriterReport, LogError> {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_writer();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| LogError::WriterGone)?,
            None => Err(LogError::WriterGone),
        }
    }
}

impl Drop for MapLog {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

struct Writer {
    settings: LogSettings,
    logs: Vec<WorkerLog>,
    shared: Arc<Shared>,
    report: WriterReport,
}

/// What one pass over the rings did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Not tried: the disk is failing, batches wait in the rings.
    Skipped,
    /// A write failed (recorded); what was not written waits for a retry.
    Failed,
    /// Every ring was emptied; `busy` if there was anything.
    Done { busy: bool },
}

/// How long a writer whose disk fails keeps retrying once asked to stop, before it gives up
/// and reports the error (about ten retries).
const SHUTDOWN_RETRY_NS: u64 = 1_000_000_000;

impl Writer {
    fn run(mut self) -> Result<WriterReport, LogError> {
        let mut last_sync = clock::wall_clock_ns();
        let mut failing = false;
        let mut give_up_at = None;
        loop {
            let shutting_down = self.shared.shutdown.load(Ordering::Acquire);
            // Before draining: see `publish_durable`.
            self.look_at_producers();
            // While the disk fails, batches stay in the rings: that is the back-pressure.
            let drain = if failing {
                Drain::Skipped
            } else {
                self.drain_all()
            };
            let drained = matches!(drain, Drain::Done { .. });
            failing |= drain == Drain::Failed;
            let now = clock::wall_clock_ns();
            let due = now.saturating_sub(last_sync) >= self.settings.flush_interval_ns;
            if due || shutting_down || failing {
                let synced = self.sync_all(shutting_down);
                if synced && drained {
                    self.publish_durable();
                }
                // A failed drain is retried after a pause even if the sync went well.
                failing = !synced || drain == Drain::Failed;
                last_sync = now;
            }
            if shutting_down && !failing && drained && self.nothing_queued() {
                if self.close_all() {
                    break;
                }
                failing = true;
            }
            if shutting_down && failing {
                // The disk stays unwritable: report rather than retry forever at shutdown,
                // counting and naming the records that never reached it.
                if now >= *give_up_at.get_or_insert(now + SHUTDOWN_RETRY_NS) {
                    let lost = self.give_up_records();
                    return Err(self.last_error_losing(lost));
                }
            } else {
                give_up_at = None;
            }
            if drain != (Drain::Done { busy: true }) {
                thread::park_timeout(std::time::Duration::from_millis(if failing {
                    100
                } else {
                    5
                }));
            }
        }
        let s = &self.shared.stats;
        self.report.records = LogStats::get(&s.records_written);
        self.report.blocks = LogStats::get(&s.blocks_written);
        self.report.bytes = LogStats::get(&s.bytes_written);
        self.report.io = s.io_mode.lock().unwrap().clone();
        Ok(self.report)
    }

    /// The last I/O error, saying how many records were given up because of it.
    fn last_error_losing(&self, lost: u64) -> LogError {
        let message = self.shared.stats.last_error.lock().unwrap().clone();
        LogError::Io {
            path: self.settings.dir.clone(),
            source: io::Error::other(format!(
                "{}; {lost} records could not be written and are lost (records_lost)",
                message.unwrap_or_default()
            )),
        }
    }

    /// Gives up every record still held (pending, unfinished, in the rings) at a shutdown
    /// the disk will not let finish, counting them lost; returns how many.
    fn give_up_records(&mut self) -> u64 {
        let lost: u64 = self.logs.iter_mut().map(WorkerLog::give_up).sum();
        LogStats::add(&self.shared.stats.records_lost, lost);
        lost
    }

    fn look_at_producers(&mut self) {
        for log in &mut self.logs {
            log.producer_oldest_seen = log.producer_oldest.load(Ordering::Acquire);
        }
    }

    /// Moves every ring's batches into blocks. Stops at the first I/O error (recorded).
    fn drain_all(&mut self) -> Drain {
        let stats = &self.shared.stats;
        let mut busy = false;
        for log in &mut self.logs {
            match log.drain(&self.settings, stats) {
                Ok(any) => busy |= any,
                Err(e) => {
                    stats.note_error(&log.chain.path, &e);
                    return Drain::Failed;
                }
            }
        }
        Drain::Done { busy }
    }

    fn nothing_queued(&self) -> bool {
        self.logs.iter().all(|l| l.nothing_queued())
    }

    /// Cuts pending blocks (unless blocks follow record time only) and syncs every file.
    /// False if a write failed (disk full…): the caller retries later.
    fn sync_all(&mut self, final_sync: bool) -> bool {
        let stats = &self.shared.stats;
        let cut = final_sync || !self.settings.record_time_only;
        let mut ok = true;
        for log in &mut self.logs {
            match log.sync(cut, &self.settings, stats) {
                Ok(()) => LogStats::add(&stats.syncs, 1),
                Err(e) => {
                    stats.note_error(&log.chain.path, &e);
                    ok = false;
                }
            }
        }
        ok
    }

    /// After a sync of every file that followed a full drain of every ring. Each record a
    /// worker emitted before `look_at_producers` is, by then: in its producer's batch (no
    /// older than what was seen there), waiting in the writer (pending, or a batch cut
    /// short by an error), or written, hence synced now. So everything older than all of
    /// those is durable. Capped by the newest record written: nothing beyond is claimed.
    fn publish_durable(&self) {
        let not_durable = self
            .logs
            .iter()
            .map(WorkerLog::oldest_not_written)
            .min()
            .unwrap_or(u64::MAX);
        let written = self
            .logs
            .iter()
            .map(|l| l.written_through_ns)
            .max()
            .unwrap_or(0);
        let durable = written.min(not_durable.saturating_sub(1));
        self.shared
            .stats
            .durable_through_ns
            .fetch_max(durable, Ordering::Relaxed);
    }

    /// Writes what is left and closes every segment. False after an I/O error (recorded);
    /// calling it again continues where it stopped.
    fn close_all(&mut self) -> bool {
        let stats = &self.shared.stats;
        let mut ok = true;
        for log in &mut self.logs {
            if let Err(e) = log.close(&self.settings, stats) {
                stats.note_error(&log.chain.path, &e);
                ok = false;
            }
        }
        ok
    }
}

/// One worker's chain of segments, as the writer keeps it: the records its producer hands
/// over, cut into blocks and appended to the worker's [`SegmentChain`].
///
/// Every step that does I/O can fail (disk full) and be called again: records stay in
/// `pending` or `unfinished` until their block is appended.
struct WorkerLog {
    chain: SegmentChain,
    to_writer: Arc<ArrayQueue<Vec<Record>>>,
    free: Arc<ArrayQueue<Vec<Record>>>,
    /// The producer's oldest held timestamp, and what it was before the last drain.
    producer_oldest: Arc<AtomicU64>,
    producer_oldest_seen: u64,
    /// A batch taken from the ring whose remaining records could not be moved to `pending`
    /// because cutting a block failed; it is finished before the ring is read again.
    unfinished: Option<Vec<Record>>,
    pending: Vec<Record>,
    /// Newest timestamp among records already appended to the file.
    written_through_ns: u64,
    live: LiveSet,
    /// Re-used record of the live-set changes of the block being written.
    journal: Vec<Undo>,
    worker: u16,
    tap: Option<Arc<dyn RecordTap>>,
}

impl WorkerLog {
    fn open(
        settings: &LogSettings,
        worker: u16,
        to_writer: Arc<ArrayQueue<Vec<Record>>>,
        free: Arc<ArrayQueue<Vec<Record>>>,
        producer_oldest: Arc<AtomicU64>,
        tap: Option<Arc<dyn RecordTap>>,
        recovered: &mut Vec<String>,
    ) -> Result<WorkerLog, LogError> {
        let dir = dir::worker_dir(&settings.dir, worker);
        Ok(WorkerLog {
            chain: SegmentChain::open(settings, worker, dir, recovered)?,
            to_writer,
            free,
            producer_oldest,
            producer_oldest_seen: u64::MAX,
            unfinished: None,
            pending: Vec::new(),
            written_through_ns: 0,
            live: LiveSet::default(),
            journal: Vec::new(),
            worker,
            tap,
        })
    }

    fn nothing_queued(&self) -> bool {
        self.unfinished.is_none() && self.to_writer.is_empty()
    }

    /// Drops every record this worker's log still holds; returns how many.
    fn give_up(&mut self) -> u64 {
        let mut held = self.pending.len() + self.unfinished.take().map_or(0, |b| b.len());
        self.pending.clear();
        while let Some(batch) = self.to_writer.pop() {
            held += batch.len();
        }
        held as u64
    }

    /// Oldest timestamp of this worker that may not be on disk: records the writer holds
    /// unwritten, and those its producer held when last looked at.
    fn oldest_not_written(&self) -> u64 {
        let waiting = self.pending.iter().chain(self.unfinished.iter().flatten());
        waiting
            .map(|r| r.ts_ns)
            .min()
            .unwrap_or(u64::MAX)
            .min(self.producer_oldest_seen)
    }

    /// Moves the batches waiting in the ring (after any batch left unfinished by an error)
    /// into pending records, cutting blocks as they fill or span the flush interval of
    /// record time. True if there was anything. On error the records not yet moved are kept
    /// in `unfinished` and their batch is not given back, so back-pressure holds.
    fn drain(&mut self, settings: &LogSettings, stats: &LogStats) -> io::Result<bool> {
        let mut any = false;
        while let Some(mut batch) = self.unfinished.take().or_else(|| self.to_writer.pop()) {
            any = true;
            if let Err(e) = self.take_records(&mut batch, settings, stats) {
                self.unfinished = Some(batch);
                return Err(e);
            }
            // A batch grown by overflow is shrunk back so memory returns to normal.
            batch.shrink_to(settings.batch_records);
            let _ = self.free.push(batch);
        }
        Ok(any)
    }

    /// Moves `batch`'s records into pending; on error the ones not moved stay in `batch`.
    fn take_records(
        &mut self,
        batch: &mut Vec<Record>,
        settings: &LogSettings,
        stats: &LogStats,
    ) -> io::Result<()> {
        let mut moved = 0;
        let mut result = Ok(());
        for r in batch.iter() {
            if self.block_full_before(r, settings) {
                result = self.cut_block(settings, stats);
                if result.is_err() {
                    break;
                }
            }
            self.pending.push(*r);
            moved += 1;
        }
        batch.drain(..moved);
        result
    }

    /// Pending records make a block before `next` joins them.
    fn block_full_before(&self, next: &Record, settings: &LogSettings) -> bool {
        let spans_interval = self.pending.first().is_some_and(|first| {
            next.ts_ns.saturating_sub(first.ts_ns) >= settings.flush_interval_ns
        });
        spans_interval || self.pending.len() >= settings.block_records
    }

    /// Writes the pending records as one block, rotating the segment first if it is due.
    /// On error the records stay pending.
    fn cut_block(&mut self, settings: &LogSettings, stats: &LogStats) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let first_ts = self.pending.iter().map(|r| r.ts_ns).min().unwrap_or(0);
        let rotate = self.chain.rotation_due(settings, first_ts);
        if rotate {
            self.rotate(settings, stats, first_ts)?;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut journal = std::mem::take(&mut self.journal);
        journal.clear();
        let stored = self.live.store(&pending, &mut journal);
        if let Err(e) = append_records(&mut self.chain, &stored, false, settings, stats) {
            self.live.undo(journal);
            self.pending = pending;
            return Err(e);
        }
        self.journal = journal;
        let newest = pending.iter().map(|r| r.ts_ns).max().unwrap_or(0);
        self.written_through_ns = self.written_through_ns.max(newest);
        LogStats::add(&stats.records_written, pending.len() as u64);
        if let Some(tap) = &self.tap {
            tap.written(self.worker, &pending);
        }
        self.pending = pending;
        self.pending.clear();
        if rotate {
            // After the block: a retention failure must not hold records back. Retried at
            // the next rotation.
            self.chain.retire_old(settings, stats, first_ts)?;
        }
        Ok(())
    }

    /// Opens the next segment, which starts with a checkpoint of everything live, so a
    /// reader can start there.
    fn rotate(&mut self, settings: &LogSettings, stats: &LogStats, now_ns: u64) -> io::Result<()> {
        let live = &self.live;
        self.chain.rotate(settings, stats, now_ns, |chain| {
            let checkpoint = live.checkpoint();
            // Always written, even empty: an empty checkpoint tells a reader nothing was live.
            if checkpoint.is_empty() {
                append_records(chain, &[], true, settings, stats)?;
            }
            for chunk in checkpoint.chunks(settings.block_records) {
                append_records(chain, chunk, true, settings, stats)?;
            }
            Ok(())
        })
    }

    /// Cuts pending records into a block if `cut`, then syncs the open file.
    fn sync(&mut self, cut: bool, settings: &LogSettings, stats: &LogStats) -> io::Result<()> {
        if cut {
            self.cut_block(settings, stats)?;
        }
        self.chain.sync(stats)
    }

    /// Writes what is pending and closes the segment. Can be called again after an error.
    fn close(&mut self, settings: &LogSettings, stats: &LogStats) -> io::Result<()> {
        self.cut_block(settings, stats)?;
        self.chain.close_segment()
    }
}

/// A worker whose newest segments were removed (it has fewer than `runs.jsonl` says it
/// had written by the last start) goes on under the next number the runs recorded, not
/// the removed ones: the gap stays in its chain for `verify` to report, and the start says
/// so.
fn keep_removed_segments_visible(root: &Path, logs: &mut [WorkerLog], notes: &mut Vec<String>) {
    let lines = runs::read(root).map(|r| r.lines).unwrap_or_default();
    let written = runs::segments_written_before_last_start(&lines);
    for (log, &count) in logs.iter_mut().zip(&written) {
        let next = &mut log.chain.segment_sequence;
        if *next < count {
            notes.push(format!(
                "worker {}: segments {}..{} that runs.jsonl records as written are missing; \
                 going on at {count} (run `tracenat log verify`)",
                log.worker,
                *next,
                count - 1,
            ));
            *next = count;
        }
    }
}

/// Encodes mapping records as the chain's next block and appends it.
fn append_records(
    chain: &mut SegmentChain,
    records: &[Record],
    checkpoint: bool,
    settings: &LogSettings,
    stats: &LogStats,
) -> io::Result<()> {
    let ctx = chain.next_context(checkpoint, settings);
    let encoded = block::encode(records, &ctx, settings.codec, &mut chain.scratch);
    chain.append(&encoded, stats)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
