//! Live export from a running NAT: a second consumer of the mapping log's records.
//!
//! The log's writer thread hands every block's records to [`LiveExporter`]'s tap right
//! after writing them, as one copy pushed into a bounded queue; an export thread formats
//! and sends them. Translation never waits for export, and neither does the durable log:
//! when the queue is full (a collector or the network too slow, a TCP collector down) the
//! records are dropped and counted, and the log keeps them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::event::ExportEvent;
use super::output::{Output, Tally};
use crate::maplog::clock::wall_clock_ns;
use crate::maplog::record::Record;
use crate::maplog::writer::RecordTap;

/// Blocks of records waiting for the export thread: at the writer's block size (a few
/// thousand records) this holds seconds of a busy box's events.
const QUEUE_BLOCKS: usize = 1024;
/// How often the export thread looks for work when idle, and flushes what it built.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// What export did, for metrics and the stop report.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Records the writer offered (every event record written to the log).
    pub offered: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Per destination: (name, tally) as of the last flush.
    pub outputs: Mutex<Vec<(String, Tally)>>,
}

impl ExportCounters {
    /// Prometheus text for the metrics endpoint.
    pub fn prometheus(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = format!(
            "# HELP tracenat_export_records_offered_total Records handed to export by the mapping log.\n\
             # TYPE tracenat_export_records_offered_total counter\n\
             tracenat_export_records_offered_total {}\n\
             # HELP tracenat_export_queue_dropped_total Records dropped because export could not keep up.\n\
             # TYPE tracenat_export_queue_dropped_total counter\n\
             tracenat_export_queue_dropped_total {}\n",
            get(&self.offered),
            get(&self.dropped_queue_full)
        );
        let outputs = self.outputs.lock().map(|o| o.clone()).unwrap_or_default();
        for (metric, help, value) in [
            (
                "sent",
                "Records sent to a collector.",
                (|t: &Tally| t.sent) as fn(&Tally) -> u64,
            ),
            (
                "lost",
                "Records whose message could not be sent.",
                |t: &Tally| t.lost,
            ),
        ] {
            out.push_str(&format!(
                "# HELP tracenat_export_records_{metric}_total {help}\n# TYPE tracenat_export_records_{metric}_total counter\n"
            ));
            for (name, tally) in &outputs {
                out.push_str(&format!(
                    "tracenat_export_records_{metric}_total{{collector=\"{name}\"}} {}\n",
                    value(tally)
                ));
            }
        }
        out
    }
}

struct Shared {
    queue: ArrayQueue<(u16, Vec<Record>)>,
    counters: Arc<ExportCounters>,
    shutdown: AtomicBool,
    thread: Mutex<Option<thread::Thread>>,
}

impl RecordTap for Shared {
    fn written(&self, worker: u16, records: &[Record]) {
        let n = records.len() as u64;
        self.counters.offered.fetch_add(n, Ordering::Relaxed);
        if self.queue.push((worker, records.to_vec())).is_err() {
            self.counters
                .dropped_queue_full
                .fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The export thread and its queue.
pub struct LiveExporter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Vec<(String, Tally)>>>,
}

impl LiveExporter {
    /// Starts the export thread for `outputs`; IPFIX templates go out again every
    /// `template_refresh` over UDP.
    pub fn start(
        outputs: Vec<Output>,
        template_refresh: Duration,
    ) -> std::io::Result<LiveExporter> {
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(QUEUE_BLOCKS),
            counters: Arc::new(ExportCounters::default()),
            shutdown: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let for_thread = shared.clone();
        let thread = thread::Builder::new()
            .name("export".into())
            .spawn(move || run(&for_thread, outputs, template_refresh))?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread.thread().clone());
        Ok(LiveExporter {
            shared,
            thread: Some(thread),
        })
    }

    /// What the mapping-log writer calls after each block.
    pub fn tap(&self) -> Arc<dyn RecordTap> {
        self.shared.clone()
    }

    pub fn counters(&self) -> Arc<ExportCounters> {
        self.shared.counters.clone()
    }

    /// Sends what is queued, then stops. Call after the log is closed, so every record
    /// has been offered.
    pub fn stop(mut self) -> Vec<(String, Tally)> {
        self.shared.shutdown.store(true, Ordering::Release);
        if let Some(t) = self.shared.thread.lock().ok().and_then(|t| t.clone()) {
            t.unpark();
        }
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for LiveExporter {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn now_secs() -> u32 {
    (wall_clock_ns() / 1_000_000_000) as u32
}

fn run(
    shared: &Shared,
    mut outputs: Vec<Output>,
    template_refresh: Duration,
) -> Vec<(String, Tally)> {
    let mut last_refresh = Instant::now();
    loop {
        // Read before draining: a stop seen here means nothing more will be queued.
        let stopping = shared.shutdown.load(Ordering::Acquire);
        let mut any = false;
        while let Some((worker, records)) = shared.queue.pop() {
            any = true;
            let now = now_secs();
            for e in records
                .iter()
                .filter_map(|r| ExportEvent::from_record(worker, r))
            {
                for output in &mut outputs {
                    output.export(&e, now);
                }
            }
        }
        let now = now_secs();
        if last_refresh.elapsed() >= template_refresh {
            for output in &mut outputs {
                output.refresh_templates(now);
            }
            last_refresh = Instant::now();
        }
        for output in &mut outputs {
            output.flush(now);
        }
        if let Ok(mut tallies) = shared.counters.outputs.lock() {
            *tallies = outputs
                .iter()
                .map(|o| (o.name.clone(), o.tally.clone()))
                .collect();
        }
        if stopping {
            return outputs.into_iter().map(|o| (o.name, o.tally)).collect();
        }
        if !any {
            thread::park_timeout(IDLE_WAIT);
        }
    }
}

/// The live outputs a config asks for: one per IPFIX and per syslog collector.
pub fn outputs(config: &crate::config::ExportConfig) -> std::io::Result<Vec<Output>> {
    use super::output::Format;
    use super::sender::Sender;
    use super::syslog::{SyslogFormat, system_hostname};
    let syslog = SyslogFormat {
        hostname: config.hostname.clone().unwrap_or_else(system_hostname),
        facility: crate::config::export::facility_code(&config.facility).unwrap_or(16),
    };
    let ipfix = config.ipfix.iter().map(|c| {
        (
            format!("ipfix {c}"),
            *c,
            Format::Ipfix {
                domain_base: config.observation_domain,
            },
        )
    });
    let syslogs = config
        .syslog
        .iter()
        .map(|c| (format!("syslog {c}"), *c, Format::Syslog(syslog.clone())));
    ipfix
        .chain(syslogs)
        .map(|(name, collector, format)| Ok(Output::new(name, format, Sender::open(collector)?)))
        .collect()
}
