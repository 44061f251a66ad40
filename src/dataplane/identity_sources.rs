//! The identity sources of `tracenat run` (`[identity]`): the RADIUS accounting listener
//! and the lease-file followers, each in its own thread, all storing through the identity
//! chain of the log directory. Nothing here is on the packet path: the workers never wait
//! for it, and it never waits for them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::identity::lease::{Follower, LeaseFormat};
use crate::identity::radius::{RadiusListener, RadiusStats};
use crate::maplog::clock::wall_clock_ns;
use crate::maplog::identity_log::{IdentityLog, IdentityStats, SharedIdentityLog};
use crate::maplog::writer::{LogError, LogSettings, LogStats};

/// What the lease followers did, for the metrics.
#[derive(Debug, Default)]
pub struct FollowerStats {
    pub records: AtomicU64,
    pub stored: AtomicU64,
    pub skipped: AtomicU64,
    pub rereads: AtomicU64,
    pub errors: AtomicU64,
}

pub struct IdentitySources {
    log: SharedIdentityLog,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    radius: Option<Arc<RadiusStats>>,
    followers: Option<Arc<FollowerStats>>,
    log_stats: Arc<IdentityStats>,
    /// What opening the identity chain repaired.
    pub recovered: Vec<String>,
}

impl IdentitySources {
    /// Opens the identity chain and starts every configured source; `None` when
    /// `[identity]` names none. A RADIUS port that cannot be bound fails the start, before
    /// any packet moves.
    pub fn start(config: &Config, settings: &LogSettings) -> Result<Option<Self>, String> {
        let identity = &config.identity;
        if identity.is_empty() {
            return Ok(None);
        }
        let log = IdentityLog::open(settings).map_err(|e: LogError| e.to_string())?;
        let recovered = log.recovered.clone();
        let log = SharedIdentityLog::new(log);
        let stop = Arc::new(AtomicBool::new(false));
        let mut sources = IdentitySources {
            log_stats: log.stats(),
            log,
            stop,
            threads: Vec::new(),
            radius: None,
            followers: None,
            recovered,
        };
        if let Some(radius) = &identity.radius {
            let stats = Arc::new(RadiusStats::default());
            let listener = RadiusListener::bind(radius.clone(), stats.clone())
                .map_err(|e| format!("identity.radius.listen {}: {e}", radius.listen))?;
            sources.radius = Some(stats);
            sources.spawn("radius", move |mut log, stop| {
                let mut listener = listener;
                if let Err(e) = listener.run(&mut log, &wall_clock_ns, &stop) {
                    eprintln!("tracenat: RADIUS accounting stopped: {e}");
                }
            })?;
        }
        let files: Vec<(PathBuf, LeaseFormat)> = [
            (identity.kea_lease_file.clone(), LeaseFormat::KeaCsv),
            (identity.isc_lease_file.clone(), LeaseFormat::IscDhcpd),
        ]
        .into_iter()
        .filter_map(|(path, format)| path.map(|p| (p, format)))
        .collect();
        if !files.is_empty() {
            let stats = Arc::new(FollowerStats::default());
            sources.followers = Some(stats.clone());
            let interval = identity.poll_interval;
            sources.spawn("leases", move |mut log, stop| {
                let mut followers: Vec<Follower> = files
                    .into_iter()
                    .map(|(p, f)| Follower::new(p, f))
                    .collect();
                follow(&mut followers, &mut log, &stop, interval, &stats);
            })?;
        }
        Ok(Some(sources))
    }

    fn spawn(
        &mut self,
        name: &str,
        body: impl FnOnce(SharedIdentityLog, Arc<AtomicBool>) + Send + 'static,
    ) -> Result<(), String> {
        let (log, stop) = (self.log.clone(), self.stop.clone());
        let thread = thread::Builder::new()
            .name(format!("identity-{name}"))
            .spawn(move || body(log, stop))
            .map_err(|e| format!("identity {name} thread: {e}"))?;
        self.threads.push(thread);
        Ok(())
    }

    /// Stops every source, then closes the identity chain's segment.
    pub fn stop(self) -> Result<IdentityReport, String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.log.close().map_err(|e| format!("identity log: {e}"))?;
        Ok(IdentityReport {
            stored: self.log_stats.records_stored.load(Ordering::Relaxed),
            repeats: self.log_stats.repeats.load(Ordering::Relaxed),
            open: self.log.open_holdings(),
        })
    }

    /// The metrics text, for the metrics thread.
    pub fn metrics(&self) -> super::metrics::Extra {
        let radius = self.radius.clone();
        let followers = self.followers.clone();
        let log_stats = self.log_stats.clone();
        Arc::new(move || prometheus(radius.as_deref(), followers.as_deref(), &log_stats))
    }
}

/// Prometheus text: the RADIUS listener's, the followers' and the identity log's counters.
fn prometheus(
    radius: Option<&RadiusStats>,
    followers: Option<&FollowerStats>,
    log: &IdentityStats,
) -> String {
    let mut out = radius.map(|r| r.prometheus()).unwrap_or_default();
    let mut counters = vec![
        (
            "identity_records_stored_total",
            "Identity records stored in the log.",
            LogStats::get(&log.records_stored),
        ),
        (
            "identity_repeats_total",
            "Identity records not stored again (retransmissions, files re-read).",
            LogStats::get(&log.repeats),
        ),
        (
            "identity_fields_cut_total",
            "Identity records with a field cut to the longest stored.",
            LogStats::get(&log.fields_cut),
        ),
        (
            "identity_log_write_errors_total",
            "Failed writes of the identity chain.",
            LogStats::get(&log.log.write_errors),
        ),
        (
            "identity_log_bytes_total",
            "Bytes written to the identity chain.",
            LogStats::get(&log.log.bytes_written),
        ),
    ];
    if let Some(f) = followers {
        counters.extend([
            (
                "lease_records_total",
                "Lease changes read from lease files.",
                f.records.load(Ordering::Relaxed),
            ),
            (
                "lease_lines_skipped_total",
                "Lease-file lines or blocks not understood.",
                f.skipped.load(Ordering::Relaxed),
            ),
            (
                "lease_file_rereads_total",
                "Lease files read again after being replaced or truncated.",
                f.rereads.load(Ordering::Relaxed),
            ),
            (
                "lease_file_errors_total",
                "Lease files that could not be read (missing, unreadable).",
                f.errors.load(Ordering::Relaxed),
            ),
        ]);
    }
    for (name, help, value) in counters {
        out.push_str(&format!(
                "# HELP tracenat_{name} {help}\n# TYPE tracenat_{name} counter\ntracenat_{name} {value}\n"
            ));
    }
    out
}

/// What the identity sources did in a run.
#[derive(Debug, Clone, Copy)]
pub struct IdentityReport {
    pub stored: u64,
    pub repeats: u64,
    /// Holdings open at the stop (they stay open in the log: a NAT stop ends no lease).
    pub open: usize,
}

/// Polls every lease file each `interval` until `stop`. An error (a missing file) is told
/// once per change of message, and polling goes on.
fn follow(
    followers: &mut [Follower],
    log: &mut SharedIdentityLog,
    stop: &AtomicBool,
    interval: Duration,
    stats: &FollowerStats,
) {
    let mut last_error: Vec<Option<String>> = vec![None; followers.len()];
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        for (f, said) in followers.iter_mut().zip(&mut last_error) {
            match f.poll(log, wall_clock_ns()) {
                Ok(report) => {
                    let c = &report.counts;
                    stats.records.fetch_add(c.records, Ordering::Relaxed);
                    stats.stored.fetch_add(c.new, Ordering::Relaxed);
                    stats.skipped.fetch_add(c.skipped, Ordering::Relaxed);
                    stats
                        .rereads
                        .fetch_add(report.reread as u64, Ordering::Relaxed);
                    for skip in &c.first_skips {
                        eprintln!(
                            "tracenat: {} line {}: {}",
                            f.path().display(),
                            skip.line,
                            skip.reason
                        );
                    }
                    *said = None;
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    let message = format!("tracenat: lease file {}: {e}", f.path().display());
                    if said.as_deref() != Some(message.as_str()) {
                        eprintln!("{message}");
                        *said = Some(message);
                    }
                }
            }
        }
        while !stop.load(Ordering::Relaxed) && began.elapsed() < interval {
            thread::sleep(Duration::from_millis(20).min(interval));
        }
    }
}
