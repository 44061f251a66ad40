//! Counters while running: a snapshot of every worker's counters, the status line, and a
//! Prometheus text endpoint (what `tracenat stats` reads), on loopback unless the config
//! says otherwise. Each connection is served on its own short-lived thread, so a client
//! that connects and sends nothing (or sends slowly) never holds up another's scrape.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::handoff::Rings;
use super::worker::{SOCKET_DROP_REASONS, WorkerStats};
use crate::engine::DropReason;
use crate::engine::counters::{Activity, Counters};
use crate::maplog::writer::LogStats;

/// Everything the operator sees, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub workers: Vec<WorkerSnapshot>,
    /// (from, to, handed off, dropped because the ring was full).
    pub handoffs: Vec<(u16, u16, u64, u64)>,
    pub log: Option<LogSnapshot>,
}

#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    pub rx: [u64; 2],
    pub tx: [u64; 2],
    pub tx_ring_full: u64,
    pub not_for_dataplane: u64,
    pub no_free_frame: u64,
    pub dropped_at_stop: u64,
    pub handoff_received: u64,
    pub idle_polls: u64,
    pub idle_poll_timeouts: u64,
    pub spins_when_idle: u64,
    pub live_sessions: u64,
    /// Per side, by [`SOCKET_DROP_REASONS`].
    pub socket_drops: [[u64; SOCKET_DROP_REASONS.len()]; 2],
    pub engine: Counters,
}

impl WorkerSnapshot {
    /// Frames the kernel dropped at the sockets, every side and reason.
    pub fn socket_drops_total(&self) -> u64 {
        self.socket_drops.iter().flatten().sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct LogSnapshot {
    pub records: u64,
    pub bytes: u64,
    pub write_errors: u64,
    pub records_lost: u64,
    pub durable_through_ns: u64,
    pub io: String,
}

impl Snapshot {
    pub fn take(stats: &[Arc<WorkerStats>], rings: &Rings, log: Option<&LogStats>) -> Snapshot {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            workers: stats
                .iter()
                .map(|s| WorkerSnapshot {
                    rx: [get(&s.rx[0]), get(&s.rx[1])],
                    tx: [get(&s.tx[0]), get(&s.tx[1])],
                    tx_ring_full: get(&s.tx_ring_full),
                    not_for_dataplane: get(&s.not_for_dataplane),
                    no_free_frame: get(&s.no_free_frame),
                    dropped_at_stop: get(&s.dropped_at_stop),
                    handoff_received: get(&s.handoff_received),
                    idle_polls: get(&s.idle_polls),
                    idle_poll_timeouts: get(&s.idle_poll_timeouts),
                    spins_when_idle: get(&s.spins_when_idle),
                    live_sessions: get(&s.live_sessions),
                    socket_drops: s
                        .socket_drops
                        .each_ref()
                        .map(|side| side.each_ref().map(get)),
                    engine: s
                        .engine
                        .lock()
                        .ok()
                        .and_then(|c| c.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            handoffs: rings.totals(),
            log: log.map(|l| LogSnapshot {
                records: get(&l.records_written),
                bytes: get(&l.bytes_written),
                write_errors: get(&l.write_errors),
                records_lost: get(&l.records_lost),
                durable_through_ns: get(&l.durable_through_ns),
                io: l.io_mode.lock().map(|m| m.clone()).unwrap_or_default(),
            }),
        }
    }

    pub fn total(&self) -> WorkerSnapshot {
        let mut t = WorkerSnapshot::default();
        for w in &self.workers {
            for i in 0..2 {
                t.rx[i] += w.rx[i];
                t.tx[i] += w.tx[i];
            }
            t.tx_ring_full += w.tx_ring_full;
            t.not_for_dataplane += w.not_for_dataplane;
            t.no_free_frame += w.no_free_frame;
            t.dropped_at_stop += w.dropped_at_stop;
            t.handoff_received += w.handoff_received;
            t.idle_polls += w.idle_polls;
            t.idle_poll_timeouts += w.idle_poll_timeouts;
            t.live_sessions += w.live_sessions;
            for (total, side) in t.socket_drops.iter_mut().zip(&w.socket_drops) {
                for (t, v) in total.iter_mut().zip(side) {
                    *t += v;
                }
            }
            t.engine.merge(&w.engine);
        }
        t
    }

    /// One line for a terminal, from this snapshot and the one a second `earlier`.
    pub fn status_line(&self, earlier: &Snapshot, seconds: f64) -> String {
        let (now, then) = (self.total(), earlier.total());
        let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / seconds.max(1e-9);
        let pps_in = rate(now.rx[0] + now.rx[1], then.rx[0] + then.rx[1]);
        let pps_out = rate(now.tx[0] + now.tx[1], then.tx[0] + then.tx[1]);
        let handoffs: u64 = self.handoffs.iter().map(|h| h.2).sum();
        let drops = top_drops(&now.engine, &then.engine);
        let log_rate = match (&self.log, &earlier.log) {
            (Some(a), Some(b)) => rate(a.records, b.records),
            _ => 0.0,
        };
        format!(
            "in {:>9.0} pps  out {:>9.0} pps  sessions {:>8}  drops/s {drops}  handoffs {handoffs}  log {:>7.0} rec/s",
            pps_in, pps_out, now.live_sessions, log_rate
        )
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            out.push_str(&format!(
                "# HELP tracenat_{name} {help}\n# TYPE tracenat_{name} {kind}\n"
            ));
            for (labels, v) in samples {
                out.push_str(&format!("tracenat_{name}{{{labels}}} {v}\n"));
            }
        };
        let per_side = |f: fn(&WorkerSnapshot) -> [u64; 2]| {
            self.workers
                .iter()
                .enumerate()
                .flat_map(|(w, s)| {
                    ["inside", "outside"]
                        .into_iter()
                        .zip(f(s))
                        .map(move |(side, v)| (format!("worker=\"{w}\",side=\"{side}\""), v))
                })
                .collect()
        };
        metric(
            "rx_packets_total",
            "counter",
            "Frames received.",
            per_side(|s| s.rx),
        );
        metric(
            "tx_packets_total",
            "counter",
            "Frames sent.",
            per_side(|s| s.tx),
        );
        let per_worker = |f: &dyn Fn(&WorkerSnapshot) -> u64| {
            self.workers
                .iter()
                .enumerate()
                .map(|(w, s)| (format!("worker=\"{w}\""), f(s)))
                .collect::<Vec<_>>()
        };
        metric(
            "sessions",
            "gauge",
            "Live sessions.",
            per_worker(&|s| s.live_sessions),
        );
        metric(
            "tx_ring_full_total",
            "counter",
            "Frames dropped on a full tx ring.",
            per_worker(&|s| s.tx_ring_full),
        );
        metric(
            "no_free_frame_total",
            "counter",
            "Handed-off frames dropped for want of a UMEM frame.",
            per_worker(&|s| s.no_free_frame),
        );
        metric(
            "dropped_at_stop_total",
            "counter",
            "Frames waiting when the worker stopped, dropped untranslated.",
            per_worker(&|s| s.dropped_at_stop),
        );
        metric(
            "not_for_dataplane_total",
            "counter",
            "Frames for the kernel that reached the dataplane (dropped).",
            per_worker(&|s| s.not_for_dataplane),
        );
        let socket_drops = self
            .workers
            .iter()
            .enumerate()
            .flat_map(|(w, s)| {
                ["inside", "outside"]
                    .into_iter()
                    .zip(s.socket_drops)
                    .flat_map(move |(side, counts)| {
                        SOCKET_DROP_REASONS.iter().zip(counts).map(move |(r, v)| {
                            (format!("worker=\"{w}\",side=\"{side}\",reason=\"{r}\""), v)
                        })
                    })
            })
            .collect();
        metric(
            "socket_drops_total",
            "counter",
            "Frames the kernel dropped at a worker's AF_XDP socket before the worker saw them (XDP_STATISTICS).",
            socket_drops,
        );
        metric(
            "handoff_received_total",
            "counter",
            "Frames taken from handoff rings.",
            per_worker(&|s| s.handoff_received),
        );
        metric(
            "idle_polls_total",
            "counter",
            "Times a worker slept in poll(2) for want of traffic.",
            per_worker(&|s| s.idle_polls),
        );
        metric(
            "idle_poll_timeouts_total",
            "counter",
            "Sleeps in poll(2) that ended by the timeout, not by traffic.",
            per_worker(&|s| s.idle_poll_timeouts),
        );
        metric(
            "worker_spins_when_idle",
            "gauge",
            "1 if the worker spins between frames, 0 if it sleeps in poll(2) (dataplane.idle-backoff).",
            per_worker(&|s| s.spins_when_idle),
        );
        let events = self
            .workers
            .iter()
            .enumerate()
            .flat_map(|(w, s)| {
                Activity::ALL.iter().map(move |a| {
                    (
                        format!("worker=\"{w}\",event=\"{}\"", a.name()),
                        s.engine.get(*a),
                    )
                })
            })
            .collect();
        metric(
            "events_total",
            "counter",
            "Engine activity by kind.",
            events,
        );
        let drops = self
            .workers
            .iter()
            .enumerate()
            .flat_map(|(w, s)| {
                DropReason::ALL.iter().map(move |r| {
                    (
                        format!("worker=\"{w}\",reason=\"{}\"", r.name()),
                        s.engine.drops(*r),
                    )
                })
            })
            .collect();
        metric(
            "drops_total",
            "counter",
            "Frames dropped, by reason.",
            drops,
        );
        let (sent, dropped): (Vec<_>, Vec<_>) = self
            .handoffs
            .iter()
            .map(|(f, t, s, d)| {
                let labels = format!("from=\"{f}\",to=\"{t}\"");
                ((labels.clone(), *s), (labels, *d))
            })
            .unzip();
        metric(
            "handoffs_total",
            "counter",
            "Frames handed to the worker owning their state.",
            sent,
        );
        metric(
            "handoff_dropped_total",
            "counter",
            "Handoffs dropped on a full ring.",
            dropped,
        );
        if let Some(l) = &self.log {
            metric(
                "log_records_total",
                "counter",
                "Mapping-log records written.",
                vec![(String::new(), l.records)],
            );
            metric(
                "log_bytes_total",
                "counter",
                "Mapping-log bytes written.",
                vec![(String::new(), l.bytes)],
            );
            metric(
                "log_write_errors_total",
                "counter",
                "Mapping-log write errors (retried).",
                vec![(String::new(), l.write_errors)],
            );
            metric(
                "log_records_lost_total",
                "counter",
                "Records dropped under on-backpressure = drop-records.",
                vec![(String::new(), l.records_lost)],
            );
            metric(
                "log_durable_through_seconds",
                "gauge",
                "Every record up to this time is synced.",
                vec![(String::new(), l.durable_through_ns / 1_000_000_000)],
            );
        }
        out
    }
}

/// The three drop reasons that rose most, "reason=N" each, or "0".
fn top_drops(now: &Counters, then: &Counters) -> String {
    let mut rising: Vec<(u64, DropReason)> = DropReason::ALL
        .iter()
        .map(|&r| (now.drops(r).saturating_sub(then.drops(r)), r))
        .filter(|(n, _)| *n > 0)
        .collect();
    rising.sort_by_key(|r| std::cmp::Reverse(r.0));
    if rising.is_empty() {
        return "0".into();
    }
    rising
        .iter()
        .take(3)
        .map(|(n, r)| format!("{}={n}", r.name()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A running metrics endpoint; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// More metrics text, from parts of the NAT outside the workers (the identity sources).
pub type Extra = Arc<dyn Fn() -> String + Send + Sync>;

/// Connections served at once; past this, new ones are closed at once (a client holding
/// many open cannot exhaust threads, and a real scraper's retry gets through).
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its request, or to take the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// What one scrape reads.
struct Sources {
    stats: Vec<Arc<WorkerStats>>,
    rings: Arc<Rings>,
    log: Arc<LogStats>,
    extras: Vec<Extra>,
}

impl Sources {
    fn text(&self) -> String {
        let mut body = Snapshot::take(&self.stats, &self.rings, Some(&self.log)).prometheus();
        for extra in &self.extras {
            body.push_str(&extra());
        }
        body
    }
}

/// Serves `GET /metrics` on `listener` (bound by the caller before anything starts, so a
/// taken port fails start-up cleanly; the config decides which addresses are allowed).
pub fn serve(
    listener: TcpListener,
    stats: Vec<Arc<WorkerStats>>,
    rings: Arc<Rings>,
    log: Arc<LogStats>,
    extras: Vec<Extra>,
) -> std::io::Result<Server> {
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sources = Arc::new(Sources {
        stats,
        rings,
        log,
        extras,
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve_connection(stream, &sources, &in_flight);
                }
            }
        })?;
    Ok(Server {
        stop,
        addr,
        thread: Some(thread),
    })
}

/// Answers `stream` on a thread of its own, unless [`MAX_CONNECTIONS`] are being served.
fn serve_connection(stream: TcpStream, sources: &Arc<Sources>, in_flight: &Arc<AtomicUsize>) {
    if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        in_flight.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let (sources, done) = (sources.clone(), in_flight.clone());
    let spawned = std::thread::Builder::new()
        .name("metrics-conn".into())
        .spawn(move || {
            let _ = answer(stream, &sources);
            done.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The most a request head may take: a scrape's is a few hundred bytes.
const MAX_REQUEST: u64 = 8 * 1024;

fn answer(mut stream: TcpStream, sources: &Sources) -> std::io::Result<()> {
    // One deadline for the whole request, however slowly its bytes come.
    let deadline = std::time::Instant::now() + CONNECTION_TIMEOUT;
    let before_deadline = |stream: &TcpStream| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request too slow",
            ));
        }
        stream.set_read_timeout(Some(left))
    };
    stream.set_write_timeout(Some(CONNECTION_TIMEOUT))?;
    let mut reader = BufReader::new(std::io::Read::take(&stream, MAX_REQUEST));
    let mut request = String::new();
    before_deadline(&stream)?;
    reader.read_line(&mut request)?;
    // Read the rest of the request head, so closing does not reset the connection.
    let mut line = String::new();
    loop {
        before_deadline(&stream)?;
        if reader.read_line(&mut line)? <= 2 {
            break;
        }
        line.clear();
    }
    let (status, body) = if request.starts_with("GET /metrics") {
        ("200 OK", sources.text())
    } else {
        ("404 Not Found", "try /metrics\n".to_owned())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// What `tracenat stats` does: fetches the metrics text from a running NAT.
pub fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(std::io::Error::other(format!(
            "unexpected answer from {addr}: {}",
            response.lines().next().unwrap_or("")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let extra: Extra = Arc::new(|| "tracenat_test_extra 1\n".to_owned());
        serve(
            listener,
            vec![Arc::new(WorkerStats::default())],
            Arc::new(Rings::new(1, 8)),
            Arc::new(LogStats::default()),
            vec![extra],
        )
        .unwrap()
    }

    #[test]
    fn a_scrape_is_answered_while_idle_connections_stay_open() {
        let server = server();
        // Each would hold a one-at-a-time server for its 2 s read timeout: four of them
        // would outlast `fetch`'s own 5 s timeout.
        let idle: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        let text = fetch(server.addr).expect("the scrape is answered");
        assert!(text.contains("tracenat_test_extra 1"), "{text}");
        assert!(text.contains("tracenat_events_total"), "{text}");
        drop(idle);
    }

    #[test]
    fn an_endless_request_head_is_cut_off_not_buffered() {
        let server = server();
        let mut client = TcpStream::connect(server.addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // 64 KiB with no end of line: the server reads 8 KiB of it and answers.
        let _ = client.write_all(&[b'x'; 64 * 1024]);
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut client, &mut answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 404"),
            "{answer}"
        );
        let text = fetch(server.addr).expect("still serving");
        assert!(text.contains("tracenat_test_extra 1"));
    }

    #[test]
    fn a_burst_of_connections_past_the_limit_leaves_the_endpoint_serving() {
        let server = server();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 4)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        drop(idle);
        // Once their threads have seen them close, scrapes are served again: a scraper's
        // retry gets through (the burst's threads are gone, not stuck).
        let served = (0..100).find_map(|_| {
            let answer = fetch(server.addr).ok();
            if answer.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            answer
        });
        assert!(
            served
                .expect("served after the burst")
                .contains("tracenat_test_extra 1")
        );
    }
}
