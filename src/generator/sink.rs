//! The sink: receives on every queue of an interface, counts, measures one-way latency
//! and loss per flow from the stamps, and with `reflect` turns each generated frame
//! around (MACs, addresses, ports swapped) and sends it back out of the queue it came in
//! on, so a NAT's inbound path is exercised and the sender can time round trips.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::frames::{self, FCS_LEN, Stamp};
use super::port::{Port, RING};
use super::stats::{HistFormat, Latency, LatencySummary, LossSummary, LossTracker, PerSecond};
use super::{GenError, monotonic_ns, rx_queue_count};

/// Distinct source addresses remembered for the report.
pub const MAX_SOURCES: usize = 1024;
/// Empty rounds spun before sleeping in ppoll.
const SPINS_BEFORE_SLEEP: u32 = 64;

#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub interface: String,
    /// Default: the interface's rx queue count.
    pub queues: Option<u16>,
    pub duration: Duration,
    pub reflect: bool,
    pub hist_out: Option<PathBuf>,
    pub hist_format: HistFormat,
    pub zero_copy: bool,
}

impl SinkOptions {
    pub fn new(interface: &str, duration: Duration) -> SinkOptions {
        SinkOptions {
            interface: interface.to_owned(),
            queues: None,
            duration,
            reflect: false,
            hist_out: None,
            hist_format: HistFormat::IntervalLog,
            zero_copy: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkReport {
    pub interface: String,
    pub queues: u16,
    pub zero_copy: bool,
    pub xdp: &'static str,
    pub duration_s: f64,
    /// Every frame the sockets received.
    pub received: u64,
    /// Bytes on the wire, FCS included.
    pub bytes: u64,
    /// Frames with a generator stamp.
    pub stamped: u64,
    /// Frames without one (not counted in loss or latency).
    pub foreign: u64,
    /// Stamped frames per second over the time they arrived.
    pub pps: f64,
    pub per_second: Vec<u64>,
    pub per_queue: Vec<u64>,
    pub loss: LossSummary,
    /// Receive time minus the stamped send time (same host, same clock).
    pub latency: LatencySummary,
    pub reflected: u64,
    /// Frames that could not be reflected (tx ring full).
    pub reflect_dropped: u64,
    /// Stamped frames by wire size (FCS included).
    pub sizes: BTreeMap<u16, u64>,
    /// Distinct source addresses of stamped frames (at most 1024 kept).
    pub sources: Vec<Ipv4Addr>,
}

/// A sink, set up: sockets bound, steering program attached.
pub struct Sink {
    options: SinkOptions,
    port: Port,
}

impl Sink {
    /// Binds a socket on every queue and attaches the steering program (calling thread's
    /// network namespace).
    pub fn open(options: &SinkOptions) -> Result<Sink, GenError> {
        let queues = options
            .queues
            .unwrap_or_else(|| rx_queue_count(&options.interface));
        if queues == 0 || queues > 64 {
            return Err(GenError::Usage(format!(
                "--queues {queues}: expected 1 to 64"
            )));
        }
        let port = Port::open(&options.interface, queues, 0, RING, true, options.zero_copy)?;
        Ok(Sink {
            options: options.clone(),
            port,
        })
    }

    /// Receives (and reflects) until the duration passes or `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> Result<SinkReport, GenError> {
        let o = self.options.clone();
        let queues = self.port.queues.len();
        let start = monotonic_ns();
        let end = start.saturating_add(o.duration.as_nanos() as u64);
        let mut latency = Latency::new(start);
        let mut loss = LossTracker::with_capacity(1024);
        let mut per_second = PerSecond::new(start, o.duration.as_secs() as usize);
        let mut per_queue = vec![0u64; queues];
        let mut lengths = vec![0u64; 2049];
        let mut sources: HashSet<u32> = HashSet::with_capacity(MAX_SOURCES * 2);
        let (mut received, mut bytes, mut stamped, mut foreign) = (0u64, 0u64, 0u64, 0u64);
        let (mut reflected, mut reflect_dropped) = (0u64, 0u64);
        let (mut first, mut last) = (0u64, 0u64);
        let mut idle = 0u32;
        loop {
            let now = monotonic_ns();
            if stop.load(Ordering::Relaxed) || now >= end {
                break;
            }
            per_second.tick(now, stamped);
            latency.tick(now);
            let mut work = 0;
            for (qi, q) in self.port.queues.iter_mut().enumerate() {
                // Reflected frames the kernel has sent go back to the fill ring.
                let done = q.socket.complete(&mut q.scratch);
                if done > 0 {
                    q.socket.fill(&q.scratch[..done]);
                }
                q.kick_if_pending();
                let n = q.socket.rx_batch(&mut q.descs);
                if n == 0 {
                    continue;
                }
                work += n;
                let now = monotonic_ns();
                received += n as u64;
                per_queue[qi] += n as u64;
                let mut back = 0;
                for d in &q.descs[..n] {
                    // SAFETY: just received: the frame is ours until it goes to the tx or
                    // fill ring below, and nothing else refers to it.
                    let frame = unsafe { q.umem.packet_mut(d) };
                    bytes += (frame.len() + FCS_LEN) as u64;
                    let parsed = frames::parse(frame);
                    let stamp = parsed.and_then(|p| Some((p, Stamp::read(&frame[p.payload..])?)));
                    let Some((p, s)) = stamp else {
                        foreign += 1;
                        q.scratch[back] = d.addr;
                        back += 1;
                        continue;
                    };
                    stamped += 1;
                    if first == 0 {
                        first = now;
                    }
                    last = now;
                    latency.record(s.sent_ns, now);
                    loss.record(s.flow, s.seq);
                    lengths[(frame.len() + FCS_LEN).min(2048)] += 1;
                    if sources.len() < MAX_SOURCES {
                        sources.insert(u32::from(p.src));
                    }
                    if o.reflect {
                        frames::reflect(frame, &p);
                        q.pending.push(*d);
                    } else {
                        q.scratch[back] = d.addr;
                        back += 1;
                    }
                }
                if o.reflect {
                    let taken = q.submit();
                    reflected += taken as u64;
                    for d in q.pending.drain(..).skip(taken) {
                        q.scratch[back] = d.addr;
                        back += 1;
                        reflect_dropped += 1;
                    }
                }
                if back > 0 {
                    q.socket.fill(&q.scratch[..back]);
                }
            }
            if work > 0 {
                idle = 0;
            } else {
                idle += 1;
                if idle >= SPINS_BEFORE_SLEEP {
                    self.port.wait_rx(1_000_000);
                }
            }
        }
        // Reflected frames still in flight leave before the sockets close.
        let drain_until = monotonic_ns() + 500_000_000;
        while self
            .port
            .queues
            .iter()
            .any(|q| q.socket.counters().in_tx() > 0)
            && monotonic_ns() < drain_until
        {
            for q in &mut self.port.queues {
                q.kick_if_pending();
                let _ = q.socket.complete(&mut q.scratch);
            }
        }
        if let Some(path) = &o.hist_out {
            latency
                .write(path, o.hist_format, monotonic_ns(), "one-way")
                .map_err(GenError::io(format!("writing {}", path.display())))?;
        }
        let span = (last.saturating_sub(first) as f64 / 1e9).max(1e-9);
        let mut sources: Vec<Ipv4Addr> = sources.into_iter().map(Ipv4Addr::from).collect();
        sources.sort();
        let sizes = lengths
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(len, n)| (len as u16, *n))
            .collect();
        Ok(SinkReport {
            interface: o.interface.clone(),
            queues: queues as u16,
            zero_copy: self.port.zero_copy,
            xdp: self.port.xdp_mode(),
            duration_s: (monotonic_ns() - start) as f64 / 1e9,
            received,
            bytes,
            stamped,
            foreign,
            pps: if stamped > 1 {
                stamped as f64 / span
            } else {
                0.0
            },
            per_second: per_second.finish(stamped),
            per_queue,
            loss: loss.summary(),
            latency: latency.summary(),
            reflected,
            reflect_dropped,
            sizes,
            sources,
        })
    }
}

/// Opens a sink on `options.interface` and runs it (see [`Sink`]).
pub fn run_sink(options: &SinkOptions, stop: &AtomicBool) -> Result<SinkReport, GenError> {
    Sink::open(options)?.run(stop)
}
