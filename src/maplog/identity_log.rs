//! The identity chain of the log directory (`identity/`): who held which inside address,
//! stored with the same segments, blocks, CRCs, hash chain, rotation and retention as the
//! mappings (docs/mapping-log.md §2, §5.2, §6.1). Sources commit records through it; each
//! commit is one block and one sync, so a commit that returned is durable (a RADIUS
//! source answers its NAS only then), and records that come together share the sync.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::block::BlockError;
use super::chain::SegmentChain;
use super::dir;
use super::identity_block::{self, cut_long_fields};
use super::segment::Segment;
use super::writer::{LogError, LogSettings, LogStats, io_err};
use crate::identity::{Change, IdentityRecord, IdentitySink, Source};

/// The chain's number in segment and block headers (worker numbers stay below it).
pub const IDENTITY_CHAIN: u16 = u16::MAX;
/// Its folder in the log directory.
pub const IDENTITY_DIR: &str = "identity";
/// Records per identity block at most.
const BLOCK_RECORDS: usize = 4096;
/// How many recent events are remembered to recognise repeats (a retransmission, a lease
/// file read again after a restart): about a day of RADIUS for 10,000 subscribers with
/// hourly interims, at 8 bytes each.
const RECENT_EVENTS: usize = 1 << 18;

/// The identity chain's folder under a log directory.
pub fn identity_dir(root: &Path) -> PathBuf {
    root.join(IDENTITY_DIR)
}

/// Counters of the identity log, readable while it runs.
#[derive(Debug, Default)]
pub struct IdentityStats {
    /// Blocks, bytes, syncs, segments, write errors.
    pub log: LogStats,
    pub records_stored: AtomicU64,
    /// Records not stored because the same event was stored before.
    pub repeats: AtomicU64,
    /// Records whose over-long fields were cut to `identity_block::MAX_FIELD_LEN` bytes.
    pub fields_cut: AtomicU64,
}

/// The holdings open now, for the checkpoint each segment starts with: per (source,
/// address), the open holding as a [`Change::Live`] record dated at its start.
#[derive(Debug, Default)]
pub struct OpenHoldings {
    open: HashMap<(Source, Ipv4Addr), IdentityRecord>,
}

impl OpenHoldings {
    /// Applies one record, as a reader does (docs/mapping-log.md §8.1).
    pub fn apply(&mut self, r: &IdentityRecord) {
        let key = (r.source, r.inside_ip);
        match r.change {
            Change::Start | Change::Update | Change::Live => match self.open.get_mut(&key) {
                Some(open) if open.identity.same_holder(&r.identity) => {
                    open.expires_ns = r.expires_ns;
                    open.identity = r.identity.clone();
                }
                _ => {
                    let mut live = r.clone();
                    live.change = Change::Live;
                    self.open.insert(key, live);
                }
            },
            Change::Stop => {
                if self
                    .open
                    .get(&key)
                    .is_some_and(|open| open.identity.same_holder(&r.identity))
                {
                    self.open.remove(&key);
                }
            }
            Change::NasReset => self.open.retain(|_, open| {
                !(open.source == r.source && open.identity.nas_ip == r.identity.nas_ip)
            }),
        }
    }

    /// The checkpoint at `now_ns`: every open holding whose lease has not lapsed, sorted by
    /// address and source.
    pub fn checkpoint(&self, now_ns: u64) -> Vec<IdentityRecord> {
        let mut live: Vec<IdentityRecord> = self
            .open
            .values()
            .filter(|r| r.expires_ns == 0 || r.expires_ns > now_ns)
            .cloned()
            .collect();
        live.sort_by_key(|r| (r.inside_ip, r.source));
        live
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// The last events stored, as hashes of everything but the time they were learned.
#[derive(Debug, Default)]
struct RecentEvents {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentEvents {
    /// A hash of everything but the time the record was learned.
    fn key(r: &IdentityRecord) -> u64 {
        let mut h = DefaultHasher::new();
        let IdentityRecord {
            change,
            source,
            inside_ip,
            at_ns,
            learned_ns: _,
            source_ns,
            expires_ns,
            identity,
        } = r;
        (
            change, source, inside_ip, at_ns, source_ns, expires_ns, identity,
        )
            .hash(&mut h);
        h.finish()
    }

    fn remember(&mut self, r: &IdentityRecord) {
        let key = Self::key(r);
        if self.set.insert(key) {
            self.order.push_back(key);
        }
        while self.order.len() > RECENT_EVENTS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

pub struct IdentityLog {
    settings: LogSettings,
    chain: SegmentChain,
    open: OpenHoldings,
    recent: RecentEvents,
    stats: Arc<IdentityStats>,
    /// What was repaired when the chain was opened.
    pub recovered: Vec<String>,
}

impl IdentityLog {
    /// Opens (or creates) the identity chain of the log directory `settings.dir`: repairs
    /// what the last run left, and rebuilds the open holdings and the recent events from
    /// its newest segment (its checkpoint and records), so a restart neither loses the
    /// holdings nor stores a retransmission twice.
    pub fn open(settings: &LogSettings) -> Result<IdentityLog, LogError> {
        dir::prepare(&settings.dir).map_err(io_err(&settings.dir))?;
        let mut recovered = Vec::new();
        let folder = identity_dir(&settings.dir);
        let chain = SegmentChain::open(settings, IDENTITY_CHAIN, folder.clone(), &mut recovered)?;
        let mut log = IdentityLog {
            settings: settings.clone(),
            chain,
            open: OpenHoldings::default(),
            recent: RecentEvents::default(),
            stats: Arc::new(IdentityStats::default()),
            recovered,
        };
        log.reload_newest_segment(&folder)?;
        Ok(log)
    }

    fn reload_newest_segment(&mut self, folder: &Path) -> Result<(), LogError> {
        let paths = dir::segments(folder).map_err(io_err(folder))?;
        let Some(seg) = paths.iter().rev().find_map(|p| Segment::open(p).ok()) else {
            return Ok(());
        };
        let mut records = Vec::new();
        for b in &seg.blocks {
            records.clear();
            match identity_block::decode(&b.header, seg.block_bytes(b), &mut records) {
                Ok(()) => {}
                Err(
                    e @ (BlockError::PayloadCrc | BlockError::Corrupt(_) | BlockError::Truncated),
                ) => {
                    self.recovered.push(format!(
                        "{}: a block at offset {} is damaged ({e}); holdings it changed are not known to this run",
                        seg.path.display(),
                        b.offset
                    ));
                    continue;
                }
                Err(e) => return Err(io_err(&seg.path)(io::Error::other(e.to_string()))),
            }
            for r in &records {
                self.open.apply(r);
                if r.change != Change::Live {
                    self.recent.remember(r);
                }
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> Arc<IdentityStats> {
        self.stats.clone()
    }

    /// Holdings open now (for the operator's status line).
    pub fn open_holdings(&self) -> usize {
        self.open.len()
    }

    /// Stores the records that are new as blocks of the identity chain and syncs. On an
    /// error nothing is taken as stored: the caller (a NAS retransmitting, a lease file
    /// re-read) offers the records again.
    pub fn store(&mut self, records: &[IdentityRecord]) -> io::Result<usize> {
        let fresh = self.new_events(records);
        if fresh.is_empty() {
            return Ok(0);
        }
        let first_learned = fresh.iter().map(|r| r.learned_ns).min().unwrap_or(0);
        let stats = &self.stats.log;
        if self.chain.rotation_due(&self.settings, first_learned) {
            let (settings, open) = (&self.settings, &self.open);
            self.chain.rotate(settings, stats, first_learned, |chain| {
                let checkpoint = open.checkpoint(first_learned);
                // Always written, even empty: it says nothing was held.
                if checkpoint.is_empty() {
                    append(chain, &[], true, settings, stats)?;
                }
                for chunk in checkpoint.chunks(BLOCK_RECORDS) {
                    append(chain, chunk, true, settings, stats)?;
                }
                Ok(())
            })?;
            self.chain
                .retire_old(&self.settings, stats, first_learned)?;
        }
        for chunk in fresh.chunks(BLOCK_RECORDS) {
            append(&mut self.chain, chunk, false, &self.settings, stats)?;
        }
        self.chain.sync(stats)?;
        LogStats::add(&stats.syncs, 1);
        for r in &fresh {
            self.open.apply(r);
            self.recent.remember(r);
        }
        LogStats::add(&self.stats.records_stored, fresh.len() as u64);
        Ok(fresh.len())
    }

    /// The records not seen before (within this batch too), with over-long fields cut.
    fn new_events(&mut self, records: &[IdentityRecord]) -> Vec<IdentityRecord> {
        let mut fresh: Vec<IdentityRecord> = Vec::with_capacity(records.len());
        let mut in_batch = HashSet::with_capacity(records.len());
        for r in records {
            let mut r = r.clone();
            if cut_long_fields(&mut r.identity) {
                LogStats::add(&self.stats.fields_cut, 1);
            }
            let key = RecentEvents::key(&r);
            if self.recent.set.contains(&key) || !in_batch.insert(key) {
                LogStats::add(&self.stats.repeats, 1);
                continue;
            }
            fresh.push(r);
        }
        fresh
    }

    /// Closes the open segment (writing its index). Can be called again after an error.
    pub fn close(&mut self) -> io::Result<()> {
        self.chain.close_segment()
    }
}

impl IdentitySink for IdentityLog {
    fn commit(&mut self, records: &[IdentityRecord]) -> io::Result<usize> {
        self.store(records).inspect_err(|e| {
            self.stats.log.note_error(&self.chain.path, e);
        })
    }
}

impl Drop for IdentityLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The identity log shared by every source thread of `tracenat run` (the lock is never on
/// the packet path: it serialises RADIUS batches and lease-file polls).
#[derive(Clone)]
pub struct SharedIdentityLog(Arc<Mutex<IdentityLog>>);

impl SharedIdentityLog {
    pub fn new(log: IdentityLog) -> SharedIdentityLog {
        SharedIdentityLog(Arc::new(Mutex::new(log)))
    }

    pub fn stats(&self) -> Arc<IdentityStats> {
        self.lock().stats()
    }

    pub fn open_holdings(&self) -> usize {
        self.lock().open_holdings()
    }

    pub fn close(&self) -> io::Result<()> {
        self.lock().close()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdentityLog> {
        // A source thread that panicked cannot leave the log half-written: every store
        // either synced or returned an error before the guard was dropped.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl IdentitySink for SharedIdentityLog {
    fn commit(&mut self, records: &[IdentityRecord]) -> io::Result<usize> {
        self.lock().commit(records)
    }
}

fn append(
    chain: &mut SegmentChain,
    records: &[IdentityRecord],
    checkpoint: bool,
    settings: &LogSettings,
    stats: &LogStats,
) -> io::Result<()> {
    let ctx = chain.next_context(checkpoint, settings);
    let encoded = identity_block::encode(records, &ctx, settings.codec, &mut chain.scratch);
    chain.append(&encoded, stats)
}

/// For tests and the benches: how many records the stats count as stored.
pub fn stored(stats: &IdentityStats) -> u64 {
    stats.records_stored.load(Ordering::Relaxed)
}
