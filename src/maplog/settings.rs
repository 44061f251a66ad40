//! How the log is written: the `[logging]` section as the writer uses it, plus tuning.

use std::path::{Path, PathBuf};

use super::block::Codec;
use super::runs::SeedOrigin;
use crate::config::{BackpressurePolicy, Config, LogVolume};

/// How the log is written; from the `[logging]` section, plus tuning.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub volume: LogVolume,
    pub flush_interval_ns: u64,
    pub segment_size: u64,
    pub segment_age_ns: u64,
    pub retention_ns: Option<u64>,
    pub policy: BackpressurePolicy,
    pub direct_io: bool,
    pub codec: Codec,
    /// Records per block at most.
    pub block_records: usize,
    /// Records per batch handed from a worker to the writer.
    pub batch_records: usize,
    /// Batches per worker: how far the writer may fall behind before back-pressure.
    pub batches_per_worker: usize,
    /// Replay: blocks are cut by record time and count only (never by the wall clock), so
    /// the same capture gives the same log.
    pub record_time_only: bool,
    /// The configuration text, stored in the log directory with its activation time.
    pub config_text: Option<String>,
    /// Where the allocator's seed came from, recorded with the run (`runs.jsonl`).
    pub seed: SeedOrigin,
    /// The box's name, recorded with the run (`runs.jsonl`); the host name when `None`.
    pub box_name: Option<String>,
}

impl LogSettings {
    pub fn from_config(cfg: &Config, dir: &Path) -> LogSettings {
        let l = &cfg.logging;
        LogSettings {
            dir: dir.to_owned(),
            volume: l.volume,
            flush_interval_ns: l.flush_interval.as_nanos() as u64,
            segment_size: l.segment_size,
            segment_age_ns: l.segment_age.as_nanos() as u64,
            retention_ns: l.retention.map(|r| r.as_nanos() as u64),
            policy: l.on_backpressure,
            direct_io: l.direct_io,
            seed: match cfg.allocation.seed {
                Some(_) => SeedOrigin::Config,
                None => SeedOrigin::Random,
            },
            box_name: l.box_name.clone(),
            ..LogSettings::defaults(dir)
        }
    }
}

impl LogSettings {
    /// The defaults of `[logging]`, for writing into a directory without a configuration
    /// (`tracenat identity import`).
    pub fn defaults(dir: &Path) -> LogSettings {
        use crate::config::defaults;
        LogSettings {
            dir: dir.to_owned(),
            volume: LogVolume::SessionsWithDestination,
            flush_interval_ns: defaults::FLUSH_INTERVAL.as_nanos() as u64,
            segment_size: defaults::SEGMENT_SIZE as u64,
            segment_age_ns: defaults::SEGMENT_AGE.as_nanos() as u64,
            retention_ns: None,
            policy: BackpressurePolicy::RefuseSessions,
            direct_io: true,
            codec: Codec::Zstd,
            block_records: 8192,
            batch_records: 1024,
            batches_per_worker: 64,
            record_time_only: false,
            config_text: None,
            seed: SeedOrigin::Default,
            box_name: None,
        }
    }
}
