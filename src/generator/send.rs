//! The sender: flows, templates and UMEM set up front, then a loop that reaps completed
//! frames, receives replies (with `expect_replies`), starts new flows when due, and sends
//! a batch whenever the token bucket covers one.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::flows::{FlowTable, NewFlowSchedule};
use super::frames::{self, FCS_LEN, Proto, SizeMix, Stamp, Templates};
use super::port::{Port, RING};
use super::rate::{TokenBucket, batch_for_rate};
use super::stats::{HistFormat, Latency, LatencySummary, LossSummary, LossTracker, PerSecond};
use super::{GenError, monotonic_ns, rx_queue_count};
use crate::dataplane::neigh;
use crate::dataplane::xdp::xsk::Desc;

/// What to send.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub interface: String,
    /// Queues to send on (default: the interface's rx queue count).
    pub queues: Option<u16>,
    /// Default: the interface's MAC.
    pub src_mac: Option<[u8; 6]>,
    /// Default: the MAC of `gateway`, resolved through the kernel's neighbour table.
    pub dst_mac: Option<[u8; 6]>,
    pub gateway: Option<Ipv4Addr>,
    pub subscribers: u32,
    pub subscriber_base: Ipv4Addr,
    /// Flows per subscriber.
    pub flows: u32,
    pub servers: Vec<SocketAddrV4>,
    pub proto: Proto,
    pub size: SizeMix,
    /// Packets per second; `None`: as fast as the interface takes them.
    pub rate: Option<u64>,
    /// New 5-tuples per second (each replaces an active flow).
    pub new_flows_per_sec: f64,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Also receive on the interface: round-trip latency and loss of the replies.
    pub expect_replies: bool,
    /// How long to wait for the last replies after sending stops.
    pub reply_wait: Duration,
    /// Most packets per batch.
    pub batch: u32,
    pub hist_out: Option<PathBuf>,
    pub hist_format: HistFormat,
    pub zero_copy: bool,
}

impl SendOptions {
    /// Defaults for everything but the interface and servers: 1 subscriber from
    /// 100.64.2.1 with 1 UDP flow, 64-byte frames, 1000 pps for 1 s.
    pub fn new(interface: &str, servers: Vec<SocketAddrV4>) -> SendOptions {
        SendOptions {
            interface: interface.to_owned(),
            queues: None,
            src_mac: None,
            dst_mac: None,
            gateway: None,
            subscribers: 1,
            subscriber_base: Ipv4Addr::new(100, 64, 2, 1),
            flows: 1,
            servers,
            proto: Proto::Udp,
            size: SizeMix::Fixed(64),
            rate: Some(1000),
            new_flows_per_sec: 0.0,
            duration: Some(Duration::from_secs(1)),
            count: None,
            expect_replies: false,
            reply_wait: Duration::from_millis(500),
            batch: 64,
            hist_out: None,
            hist_format: HistFormat::IntervalLog,
            zero_copy: true,
        }
    }
}

/// Round trips of the replies (with `expect_replies`).
#[derive(Debug, Clone, Serialize)]
pub struct ReplyReport {
    pub received: u64,
    /// Sent minus received, after waiting `reply_wait` for stragglers.
    pub lost: u64,
    pub loss_ratio: f64,
    /// Per flow, from sequence gaps.
    pub gaps: LossSummary,
    pub rtt: LatencySummary,
    /// Frames received that were not replies to this run.
    pub foreign: u64,
}

/// What was sent.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    pub interface: String,
    pub queues: u16,
    pub zero_copy: bool,
    pub xdp: &'static str,
    pub proto: Proto,
    pub src_mac: String,
    pub dst_mac: String,
    pub subscribers: u32,
    /// Active flows (subscribers × flows).
    pub flows: u64,
    /// Every 5-tuple used (active flows plus new ones).
    pub flows_started: u64,
    pub sent: u64,
    /// Bytes on the wire, FCS included.
    pub bytes: u64,
    pub duration_s: f64,
    pub pps: f64,
    /// Bits per second on the wire (FCS included, preamble and gap not).
    pub bps: f64,
    /// Packets in each second of the run.
    pub per_second: Vec<u64>,
    pub per_queue: Vec<u64>,
    /// Frames sent, by wire size (FCS included).
    pub sizes: BTreeMap<u16, u64>,
    /// Times the generator could not keep up with the rate (no free frame or ring room).
    pub stalls: u64,
    pub replies: Option<ReplyReport>,
}

/// A sender, set up: sockets bound, flows and templates built.
pub struct Sender {
    options: SendOptions,
    port: Port,
    table: FlowTable,
    templates: Templates,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

fn usage(text: impl Into<String>) -> GenError {
    GenError::Usage(text.into())
}

impl Sender {
    /// Resolves addresses, builds the flows and their templates, binds the sockets (and
    /// attaches the steering program when expecting replies). Runs in the calling thread's
    /// network namespace.
    pub fn open(options: &SendOptions) -> Result<Sender, GenError> {
        let o = options;
        if o.duration.is_none() && o.count.is_none() {
            return Err(usage("give --duration or --count: runs are bounded"));
        }
        if o.rate == Some(0) {
            return Err(usage("--rate must be positive (or max)"));
        }
        let queues = o.queues.unwrap_or_else(|| rx_queue_count(&o.interface));
        if queues == 0 || queues > 64 {
            return Err(usage(format!("--queues {queues}: expected 1 to 64")));
        }
        let src_mac = match o.src_mac {
            Some(m) => m,
            None => super::interface_mac(&o.interface)
                .map_err(GenError::io(format!("interface {}", o.interface)))?,
        };
        let dst_mac = match (o.dst_mac, o.gateway) {
            (Some(m), _) => m,
            (None, Some(gw)) => neigh::resolve(gw, Duration::from_secs(3)).ok_or_else(|| {
                usage(format!(
                    "--gateway {gw} does not answer ARP on this host's links; give --dst-mac"
                ))
            })?,
            (None, None) => return Err(usage("give --dst-mac or --gateway")),
        };
        let table = FlowTable::new(
            o.subscriber_base,
            o.subscribers,
            o.flows,
            &o.servers,
            queues,
        )
        .map_err(usage)?;
        let mut templates = Templates::new(o.proto, o.size, table.slots.len(), src_mac, dst_mac);
        if templates.max_len() > super::port::FRAME_SIZE as usize {
            return Err(usage("frames longer than a UMEM frame"));
        }
        for (i, slot) in table.slots.iter().enumerate() {
            templates.set_flow(i, slot.tuple);
        }
        let rx_frames = if o.expect_replies { RING } else { 0 };
        let port = Port::open(
            &o.interface,
            queues,
            RING,
            rx_frames,
            o.expect_replies,
            o.zero_copy,
        )?;
        Ok(Sender {
            options: o.clone(),
            port,
            table,
            templates,
            src_mac,
            dst_mac,
        })
    }

    /// Sends until the duration or count is reached or `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> Result<SendReport, GenError> {
        let o = self.options.clone();
        let queues = self.port.queues.len();
        let pattern = o.size.pattern();
        let lens: Vec<usize> = self.templates.lens().to_vec();
        let max_batch = o.batch.clamp(1, 256);
        let batch = batch_for_rate(o.rate, max_batch);
        let limit = o.count.unwrap_or(u64::MAX);
        let start = monotonic_ns();
        let end = o
            .duration
            .map_or(u64::MAX, |d| start.saturating_add(d.as_nanos() as u64));
        // The burst lets the sender catch up after being preempted (2 ms of packets).
        let mut bucket = o.rate.map(|pps| {
            let burst = (pps / 500).clamp(u64::from(batch) * 2, 1 << 20) as u32;
            TokenBucket::new(pps as f64, burst, start)
        });
        let mut schedule = NewFlowSchedule::new(o.new_flows_per_sec, start);
        let seconds = o.duration.map_or(0, |d| d.as_secs() as usize);
        let mut per_second = PerSecond::new(start, seconds);
        let mut latency = Latency::new(start);
        let mut loss = LossTracker::with_capacity(self.table.slots.len());
        let mut per_queue = vec![0u64; queues];
        let mut per_class = vec![0u64; lens.len()];
        let (mut sent, mut bytes, mut stalls) = (0u64, 0u64, 0u64);
        let (mut received, mut foreign) = (0u64, 0u64);
        let mut next_slot = 0usize;
        let mut next_class = 0usize;
        let mut last_send = start;
        loop {
            let now = monotonic_ns();
            if stop.load(Ordering::Relaxed) || now >= end || sent >= limit {
                break;
            }
            for q in &mut self.port.queues {
                q.reap_to_free();
                q.kick_if_pending();
            }
            if o.expect_replies {
                let (r, f) = self.receive(&mut latency, &mut loss);
                received += r;
                foreign += f;
            }
            per_second.tick(now, sent);
            latency.tick(now);
            for _ in 0..schedule.due(now) {
                let (slot, port) = self.table.renew();
                self.templates.set_src_port(slot, port);
            }
            let want = u64::from(batch).min(limit - sent) as u32;
            let granted = match &mut bucket {
                None => want,
                Some(b) => b.take(now, want),
            };
            if granted == 0 {
                let wait = bucket.as_mut().map_or(0, |b| b.ns_until(now, want));
                let wait = wait.min(end.saturating_sub(now));
                if o.expect_replies {
                    // Wake on a reply, so round trips are timed when they arrive.
                    if wait > 20_000 {
                        self.port.wait_rx(wait - 10_000);
                    }
                } else if wait > 150_000 {
                    std::thread::sleep(Duration::from_nanos(wait - 100_000));
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            let stamp_ns = monotonic_ns();
            let mut built = 0u32;
            for _ in 0..granted {
                let slot = &mut self.table.slots[next_slot];
                let q = &mut self.port.queues[slot.queue as usize];
                let Some(addr) = q.tx_free.pop() else {
                    stalls += 1;
                    break;
                };
                let class = pattern[next_class] as usize;
                // SAFETY: `addr` was a free transmit frame: no ring and no one else holds
                // it until it is submitted below.
                let frame = unsafe { q.umem.frame_mut(addr) };
                let stamp = Stamp {
                    flow: slot.flow,
                    seq: slot.seq,
                    sent_ns: stamp_ns,
                };
                let len = self
                    .templates
                    .write(next_slot, class, &stamp, &mut frame[..lens[class]]);
                q.pending.push(Desc {
                    addr,
                    len: len as u32,
                    options: 0,
                });
                slot.seq = slot.seq.wrapping_add(1);
                per_class[class] += 1;
                next_slot = (next_slot + 1) % self.table.slots.len();
                next_class = (next_class + 1) % pattern.len();
                built += 1;
            }
            if let Some(b) = &mut bucket {
                b.refund(granted - built);
            }
            for (i, q) in self.port.queues.iter_mut().enumerate() {
                let taken = q.submit();
                // Transmit frames per queue never exceed the ring: it takes them all.
                for d in q.pending.drain(..).skip(taken) {
                    q.tx_free.push(d.addr);
                    stalls += 1;
                }
                per_queue[i] += taken as u64;
                sent += taken as u64;
            }
            if built > 0 {
                last_send = stamp_ns;
            }
        }
        // Everything in flight leaves; then the stragglers among the replies come back.
        let drain_until = monotonic_ns() + 1_000_000_000;
        while self
            .port
            .queues
            .iter()
            .any(|q| q.socket.counters().in_tx() > 0)
            && monotonic_ns() < drain_until
        {
            for q in &mut self.port.queues {
                q.kick_if_pending();
                q.reap_to_free();
            }
            if o.expect_replies {
                let (r, f) = self.receive(&mut latency, &mut loss);
                received += r;
                foreign += f;
            }
        }
        if o.expect_replies {
            let wait_until = monotonic_ns() + o.reply_wait.as_nanos() as u64;
            while received < sent && !stop.load(Ordering::Relaxed) {
                let now = monotonic_ns();
                if now >= wait_until {
                    break;
                }
                let (r, f) = self.receive(&mut latency, &mut loss);
                received += r;
                foreign += f;
                if r == 0 {
                    self.port.wait_rx((wait_until - now).min(1_000_000));
                }
            }
        }
        for (class, n) in per_class.iter().enumerate() {
            bytes += *n * (lens[class] + FCS_LEN) as u64;
        }
        let secs = (last_send.saturating_sub(start) as f64 / 1e9).max(1e-9);
        let replies = o.expect_replies.then(|| {
            let lost = sent.saturating_sub(received);
            ReplyReport {
                received,
                lost,
                loss_ratio: if sent > 0 {
                    lost as f64 / sent as f64
                } else {
                    0.0
                },
                gaps: loss.summary(),
                rtt: latency.summary(),
                foreign,
            }
        });
        if let Some(path) = &o.hist_out {
            latency
                .write(path, o.hist_format, monotonic_ns(), "rtt")
                .map_err(GenError::io(format!("writing {}", path.display())))?;
        }
        let mut sizes = BTreeMap::new();
        for (class, n) in per_class.iter().enumerate() {
            let wire = (lens[class] + FCS_LEN) as u16;
            *sizes.entry(wire).or_insert(0) += *n;
        }
        Ok(SendReport {
            interface: o.interface.clone(),
            queues: queues as u16,
            zero_copy: self.port.zero_copy,
            xdp: self.port.xdp_mode(),
            proto: o.proto,
            src_mac: neigh::format_mac(self.src_mac),
            dst_mac: neigh::format_mac(self.dst_mac),
            subscribers: o.subscribers,
            flows: self.table.slots.len() as u64,
            flows_started: self.table.flows_started(),
            sent,
            bytes,
            duration_s: secs,
            pps: sent as f64 / secs,
            bps: bytes as f64 * 8.0 / secs,
            per_second: per_second.finish(sent),
            per_queue,
            sizes,
            stalls,
            replies,
        })
    }

    /// Receives replies on every queue; returns (replies, foreign frames).
    fn receive(&mut self, latency: &mut Latency, loss: &mut LossTracker) -> (u64, u64) {
        let flows = self.table.flows_started();
        let (mut replies, mut foreign) = (0, 0);
        for q in &mut self.port.queues {
            let n = q.socket.rx_batch(&mut q.descs);
            if n == 0 {
                continue;
            }
            let now = monotonic_ns();
            for (i, d) in q.descs[..n].iter().enumerate() {
                // SAFETY: just received: the frame is ours until it goes back to the fill
                // ring below, and nothing else refers to it.
                let frame = unsafe { q.umem.packet_mut(d) };
                let stamp = frames::parse(frame)
                    .and_then(|p| Stamp::read(&frame[p.payload..]))
                    .filter(|s| u64::from(s.flow) < flows);
                match stamp {
                    Some(s) => {
                        latency.record(s.sent_ns, now);
                        loss.record(s.flow, s.seq);
                        replies += 1;
                    }
                    None => foreign += 1,
                }
                q.scratch[i] = d.addr;
            }
            q.socket.fill(&q.scratch[..n]);
        }
        (replies, foreign)
    }
}

/// Opens a sender on `options.interface` and runs it (see [`Sender`]).
pub fn run_send(options: &SendOptions, stop: &AtomicBool) -> Result<SendReport, GenError> {
    Sender::open(options)?.run(stop)
}
