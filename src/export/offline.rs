//! `tracenat log export`: a log directory's events, for a time range, through the same
//! encoders as live export — into a file, or to collectors at a chosen rate.

use std::time::{Duration, Instant};

use super::event::ExportEvent;
use super::output::Output;
use crate::maplog::clock::wall_clock_ns;
use crate::reader::logdir::{self, LogDir};

#[derive(Debug, Clone, Copy)]
pub struct OfflineOptions {
    pub from_ns: u64,
    pub to_ns: u64,
    /// Events per second at most (collectors over UDP drop what they cannot take in);
    /// `None`: as fast as the outputs go.
    pub rate: Option<u64>,
    /// Export time in message headers: the event's own time (files: the same log gives
    /// the same bytes) or the wall clock (collectors).
    pub stamp: Stamp,
    pub template_refresh: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    EventTime,
    WallClock,
}

#[derive(Debug, Default)]
pub struct OfflineReport {
    /// Events exported (offered to every output).
    pub events: u64,
    /// Blocks that failed their check and were skipped, described.
    pub bad_blocks: Vec<String>,
}

/// Exports every event of `log` in the range to each of `outputs`, worker by worker
/// (each worker's events in time order; IPFIX gives each worker its own observation
/// domain), then flushes them.
pub fn export(log: &LogDir, outputs: &mut [Output], options: &OfflineOptions) -> OfflineReport {
    let mut report = OfflineReport::default();
    let pace = Pace::new(options.rate);
    let mut last_refresh = Instant::now();
    let mut newest_secs = 0;
    logdir::for_each_record(
        log,
        options.from_ns,
        options.to_ns,
        |worker, r| {
            let Some(e) = ExportEvent::from_record(worker, r) else {
                return;
            };
            let now = match options.stamp {
                Stamp::EventTime => (e.record.ts_ns / 1_000_000_000) as u32,
                Stamp::WallClock => (wall_clock_ns() / 1_000_000_000) as u32,
            };
            newest_secs = newest_secs.max(now);
            for output in outputs.iter_mut() {
                output.export(&e, now);
            }
            report.events += 1;
            if last_refresh.elapsed() >= options.template_refresh {
                for output in outputs.iter_mut() {
                    output.refresh_templates(now);
                }
                last_refresh = Instant::now();
            }
            pace.wait(report.events);
        },
        |seg, b, e| {
            report
                .bad_blocks
                .push(logdir::describe_bad_block(seg, b, &e))
        },
    );
    for output in outputs.iter_mut() {
        output.flush(newest_secs);
    }
    report
}

/// Keeps a rate by sleeping whenever the events sent run ahead of the clock.
struct Pace {
    start: Instant,
    rate: Option<u64>,
}

impl Pace {
    fn new(rate: Option<u64>) -> Pace {
        Pace {
            start: Instant::now(),
            rate: rate.filter(|&r| r > 0),
        }
    }

    fn wait(&self, sent: u64) {
        let Some(rate) = self.rate else { return };
        // Checked every 64 events: sleeping is coarse, and so is the budget.
        if !sent.is_multiple_of(64) {
            return;
        }
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}
