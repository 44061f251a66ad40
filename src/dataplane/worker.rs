//! One worker: a thread pinned to a core that owns an engine, a UMEM shared by its inside
//! and outside AF_XDP sockets (queue `id` of each interface), and its mapping-log producer.
//! It busy-polls both sockets in batches, translates frames in place and sends them out of
//! the other socket without a copy; frames another worker owns go over a handoff ring.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::handoff::{Ends, HandedFrame};
use super::neigh::SharedMac;
use super::xdp::xsk::{Desc, FramePool, Ledger, Umem, XskSocket, poll_rx};
use crate::engine::batch::Frames;
use crate::engine::ceiling;
use crate::engine::counters::Counters;
use crate::engine::{Engine, Side, Verdict};
use crate::maplog::clock::{StepWatch, Timeline};
use crate::maplog::writer::Producer;

/// One side's link layer: our MAC, and the next hop's (refreshed by the control thread).
pub struct Link {
    pub mac: [u8; 6],
    pub next_hop: Arc<SharedMac>,
}

/// Counters a worker publishes for the status line, `tracenat stats` and Prometheus.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub rx: [AtomicU64; 2],
    pub tx: [AtomicU64; 2],
    /// Frames dropped because a tx ring was full.
    pub tx_ring_full: AtomicU64,
    /// Frames that had to go to the kernel but cannot once redirected (counted drops; the
    /// XDP program passes ARP, IPv6 and the NAT's own addresses before they get here).
    pub not_for_dataplane: AtomicU64,
    /// Handed-off frames taken from the rings (each then translated, or dropped for want
    /// of a frame: `no_free_frame`).
    pub handoff_received: AtomicU64,
    /// Handed-off frames dropped because no UMEM frame was free.
    pub no_free_frame: AtomicU64,
    /// Frames waiting when the worker stopped (on its rx rings, or handed to it), dropped
    /// untranslated.
    pub dropped_at_stop: AtomicU64,
    pub live_sessions: AtomicU64,
    pub idle_polls: AtomicU64,
    /// Sleeps that ended by the timeout rather than by traffic.
    pub idle_poll_timeouts: AtomicU64,
    /// 1 when the worker spins between frames, 0 when it sleeps (set once, at start).
    pub spins_when_idle: AtomicU64,
    /// The kernel's drop counters of each side's socket, by [`SOCKET_DROP_REASONS`]:
    /// frames that never reached the worker, so the engine cannot count them.
    pub socket_drops: [[AtomicU64; SOCKET_DROP_REASONS.len()]; 2],
    /// The engine's counters as of the last publication.
    pub engine: Mutex<Option<Counters>>,
    /// Where every UMEM frame was when the worker stopped (all accounted for).
    pub ledger: Mutex<Option<Ledger>>,
}

pub struct Worker {
    pub id: u16,
    pub engine: Engine<Producer>,
    pub umem: Arc<Umem>,
    pub pool: FramePool,
    /// Indexed by `Side as usize`: inside, outside.
    pub sockets: [XskSocket; 2],
    pub links: [Link; 2],
    pub handoff: Ends,
    pub stats: Arc<WorkerStats>,
    pub burst: usize,
    pub idle: Idle,
    pub forwarding: Forwarding,
    /// Handed-off frames copied in this round (re-used: no allocation per round).
    pub arrived: Vec<(u64, usize, Side)>,
    /// Timers run on engine time (monotonic); records are stamped on the wall clock.
    pub timeline: Timeline,
}

/// Why the kernel dropped frames at an AF_XDP socket (XDP_STATISTICS), in the order of
/// [`WorkerStats::socket_drops`]: the rx ring was full (the worker fell behind); no frame
/// was free on the fill ring (or the frame was too big); a descriptor was invalid.
pub const SOCKET_DROP_REASONS: [&str; 3] = ["rx_ring_full", "rx_dropped", "invalid_descriptor"];

/// Local counts, published to [`WorkerStats`] now and then (no atomics per packet).
#[derive(Default)]
struct Local {
    rx: [u64; 2],
    tx: [u64; 2],
    tx_ring_full: u64,
    not_for_dataplane: u64,
    handoff_received: u64,
    no_free_frame: u64,
    dropped_at_stop: u64,
    idle_polls: u64,
    idle_poll_timeouts: u64,
}

/// What a worker does when no traffic comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Poll the rings without end (a core of its own; lowest latency).
    Spin,
    /// Poll for this many nanoseconds after the last packet, then sleep in poll(2) until
    /// traffic wakes the worker (or a millisecond passes, for timers and handoffs).
    SleepAfterNs(u64),
}

/// What a worker does to a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forwarding {
    /// Translate it (the NAT).
    #[default]
    Translate,
    /// Benchmark only (`tracenat run --bench-ceiling`): forward it untranslated with the
    /// ceiling's TTL rewrite (`engine::ceiling`), so the I/O path's own rate can be measured
    /// with everything else in the loop unchanged.
    Ceiling,
}

/// Frames waiting to be sent on each side this round.
struct Outbox {
    tx: [Vec<Desc>; 2],
}

const PUBLISH_EVERY_NS: u64 = 100_000_000;
/// The longest sleep: timers, the mapping log's flush and handoff rings (which poll(2) does
/// not watch) are looked at least this often.
const SLEEP_MS: i32 = 1;

impl Worker {
    /// Runs until `stop` is set, then drains: every frame sent or returned, the ledger
    /// recorded, the producer's last batch handed to the writer. `ready` is called once the
    /// tables are committed and the fill rings stocked: from then on a frame that arrives is
    /// translated, not dropped for want of a frame or delayed by page faults.
    pub fn run(mut self, stop: &AtomicBool, ready: impl FnOnce()) -> Engine<Producer> {
        self.engine.commit_memory();
        let fill_target = (self.pool.total() / 4).max(self.burst);
        for side in [Side::Inside, Side::Outside] {
            self.sockets[side as usize].refill(&mut self.pool, fill_target);
        }
        ready();
        let mut local = Local::default();
        let mut rx = vec![Desc::default(); self.burst];
        let mut verdicts = vec![Verdict::ToKernel; self.burst];
        let mut outbox = Outbox {
            tx: [
                Vec::with_capacity(self.burst * 2),
                Vec::with_capacity(self.burst * 2),
            ],
        };
        let mut completions = vec![0u64; self.burst * 2];
        let mut watch = StepWatch::default();
        let mut last_work = self.timeline.read().engine_ns;
        let mut last_publish = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now = self.read_clocks(&mut watch);
            self.engine.advance(now);
            let mut work = 0;
            for from in [Side::Inside, Side::Outside] {
                let n = self.sockets[from as usize].rx_batch(&mut rx);
                if n == 0 {
                    // A zero-copy driver whose fill ring ran dry stops receiving until it is
                    // woken (the need-wakeup flag); a spinning worker never sleeps in the
                    // poll that would wake it, so it asks here (one flag load when not needed).
                    let _ = self.sockets[from as usize].wakeup_rx();
                }
                local.rx[from as usize] += n as u64;
                self.decide(&rx[..n], from, now, &mut verdicts[..n]);
                for (d, verdict) in rx[..n].iter().zip(&verdicts[..n]) {
                    self.dispatch(d.addr, d.len as usize, *verdict, &mut outbox, &mut local);
                }
                work += n;
            }
            work += self.receive_handoffs(now, &mut outbox, &mut local);
            self.send(&mut outbox, &mut local);
            work += self.reap(&mut completions);
            for s in &mut self.sockets {
                if s.counters().in_fill() < fill_target as u64 / 2 {
                    s.refill(&mut self.pool, fill_target);
                }
            }
            self.engine.sink_mut().poll(now);
            if now.saturating_sub(last_publish) >= PUBLISH_EVERY_NS {
                self.publish(&local, false);
                last_publish = now;
            }
            if work > 0 {
                last_work = now;
            } else if self.may_sleep(now, last_work) {
                let woken_by_traffic = self.sleep_until_traffic();
                local.idle_polls += 1;
                local.idle_poll_timeouts += u64::from(!woken_by_traffic);
            }
        }
        self.drain(&mut completions, &mut local);
        self.publish(&local, true);
        self.engine
    }

    /// Engine time for this round; a step of the wall clock since the last round is
    /// recorded in the log, and the log's stamps follow the wall clock.
    fn read_clocks(&mut self, watch: &mut StepWatch) -> u64 {
        let reading = self.timeline.read();
        let sink = self.engine.sink_mut();
        if let Some(step) = watch.observe(reading) {
            sink.clock_step(step);
        }
        sink.set_clock_skew(watch.skew_ns());
        reading.engine_ns
    }

    /// The verdict for each received frame: the engine's, or the ceiling's when benchmarking.
    fn decide(&mut self, descs: &[Desc], from: Side, now: u64, verdicts: &mut [Verdict]) {
        match self.forwarding {
            Forwarding::Translate => {
                let mut received = Received {
                    umem: &self.umem,
                    descs,
                };
                self.engine
                    .process_batch(&mut received, from, now, verdicts);
            }
            Forwarding::Ceiling => {
                for (d, verdict) in descs.iter().zip(verdicts) {
                    // SAFETY: each received frame is ours until dispatched.
                    let frame = unsafe { self.umem.frame_mut(d.addr) };
                    *verdict = ceiling::forward(frame, d.len as usize, from);
                }
            }
        }
    }

    /// Whether the worker has been idle long enough to sleep.
    fn may_sleep(&self, now: u64, last_work: u64) -> bool {
        match self.idle {
            Idle::Spin => false,
            Idle::SleepAfterNs(spin) => now.saturating_sub(last_work) >= spin,
        }
    }

    /// Translates a handed-off frame (now at UMEM `addr`) and queues, hands on or frees it.
    fn handle(
        &mut self,
        addr: u64,
        len: usize,
        from: Side,
        now: u64,
        outbox: &mut Outbox,
        local: &mut Local,
    ) {
        // SAFETY: the frame was just allocated for a handoff and is ours until it is given
        // to a tx ring or back to the pool.
        let frame = unsafe { self.umem.frame_mut(addr) };
        let verdict = self.engine.process(frame, len, from, now);
        self.dispatch(addr, len, verdict, outbox, local);
    }

    /// Acts on a translated frame's verdict: queue it, hand it off or free it.
    fn dispatch(
        &mut self,
        addr: u64,
        len: usize,
        verdict: Verdict,
        outbox: &mut Outbox,
        local: &mut Local,
    ) {
        // SAFETY: the frame is ours until it is queued or freed below.
        let frame = unsafe { self.umem.frame_mut(addr) };
        match verdict {
            Verdict::Forward(side) => {
                self.address(frame, side);
                outbox.tx[side as usize].push(desc(addr, len));
            }
            Verdict::Reply { side, len } => {
                // The engine swapped the MACs; the source must be ours on that side.
                frame[6..12].copy_from_slice(&self.links[side as usize].mac);
                outbox.tx[side as usize].push(desc(addr, usize::from(len)));
            }
            Verdict::Handoff { worker, from } => {
                self.handoff
                    .send(worker, from, &frame[..len.min(frame.len())]);
                self.free(addr);
            }
            Verdict::ToKernel => {
                local.not_for_dataplane += 1;
                self.free(addr);
            }
            Verdict::Drop(_) => self.free(addr), // counted by the engine, by reason
        }
    }

    /// Sets the Ethernet addresses for sending out of `side`.
    fn address(&self, frame: &mut [u8], side: Side) {
        let link = &self.links[side as usize];
        frame[..6].copy_from_slice(&link.next_hop.get());
        frame[6..12].copy_from_slice(&link.mac);
    }

    fn free(&mut self, addr: u64) {
        // A failure would be a bookkeeping bug; the ledger at exit would show it.
        let _ = self.pool.release(addr);
    }

    /// Frames other workers handed to this one: copied into a frame of ours, then handled
    /// as if received.
    fn receive_handoffs(&mut self, now: u64, outbox: &mut Outbox, local: &mut Local) -> usize {
        let mut arrived = std::mem::take(&mut self.arrived);
        let (umem, pool, handoff) = (&self.umem, &mut self.pool, &mut self.handoff);
        let n = handoff.receive(self.burst, |f: &HandedFrame| {
            let Some(addr) = pool.alloc() else {
                local.no_free_frame += 1;
                return;
            };
            // SAFETY: the frame was just taken from the free pool: nobody else holds it.
            let frame = unsafe { umem.frame_mut(addr) };
            let len = (f.len as usize).min(frame.len());
            frame[..len].copy_from_slice(&f.bytes[..len]);
            arrived.push((addr, len, f.from));
        });
        local.handoff_received += n as u64;
        for (addr, len, from) in arrived.drain(..) {
            self.handle(addr, len, from, now, outbox, local);
        }
        self.arrived = arrived;
        n
    }

    /// Puts each side's queued frames on its tx ring and has the kernel take them all,
    /// including any a previous round left; frames that do not fit are freed and counted.
    fn send(&mut self, outbox: &mut Outbox, local: &mut Local) {
        for side in [Side::Inside, Side::Outside] {
            let queued = &mut outbox.tx[side as usize];
            let socket = &mut self.sockets[side as usize];
            if !queued.is_empty() {
                let sent = socket.tx_batch(queued);
                local.tx[side as usize] += sent as u64;
                local.tx_ring_full += (queued.len() - sent) as u64;
                for d in &queued[sent..] {
                    let _ = self.pool.release(d.addr);
                }
                queued.clear();
            }
            let _ = socket.flush_tx();
        }
    }

    /// Frames the kernel finished sending go back to the pool.
    fn reap(&mut self, scratch: &mut [u64]) -> usize {
        let mut total = 0;
        for s in &mut self.sockets {
            let n = s.complete(scratch);
            for &addr in &scratch[..n] {
                let _ = self.pool.release(addr);
            }
            total += n;
        }
        total
    }

    /// Sleeps until a socket has frames to receive or [`SLEEP_MS`] passes; returns whether
    /// traffic woke it.
    fn sleep_until_traffic(&self) -> bool {
        for s in &self.sockets {
            let _ = s.wakeup_rx();
        }
        poll_rx(&[&self.sockets[0], &self.sockets[1]], SLEEP_MS).unwrap_or(false)
    }

    /// Publishes the counters; `last` waits for a reader to finish rather than skip.
    fn publish(&self, local: &Local, last: bool) {
        let s = &self.stats;
        for i in 0..2 {
            s.rx[i].store(local.rx[i], Ordering::Relaxed);
            s.tx[i].store(local.tx[i], Ordering::Relaxed);
        }
        s.tx_ring_full.store(local.tx_ring_full, Ordering::Relaxed);
        s.not_for_dataplane
            .store(local.not_for_dataplane, Ordering::Relaxed);
        s.handoff_received
            .store(local.handoff_received, Ordering::Relaxed);
        s.no_free_frame
            .store(local.no_free_frame, Ordering::Relaxed);
        s.dropped_at_stop
            .store(local.dropped_at_stop, Ordering::Relaxed);
        s.idle_polls.store(local.idle_polls, Ordering::Relaxed);
        s.idle_poll_timeouts
            .store(local.idle_poll_timeouts, Ordering::Relaxed);
        s.live_sessions
            .store(self.engine.live_sessions() as u64, Ordering::Relaxed);
        for (counts, socket) in s.socket_drops.iter().zip(&self.sockets) {
            // One getsockopt per socket every PUBLISH_EVERY_NS: off the per-packet path.
            if let Ok(k) = socket.kernel_stats() {
                let now = [
                    k.rx_ring_full,
                    k.rx_dropped,
                    k.rx_invalid_descs + k.tx_invalid_descs,
                ];
                for (count, v) in counts.iter().zip(now) {
                    count.store(v, Ordering::Relaxed);
                }
            }
        }
        // Readers hold this lock only to copy; the packet path never waits for them.
        let engine = if last {
            Some(s.engine.lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            s.engine.try_lock().ok()
        };
        if let Some(mut engine) = engine {
            *engine = Some(self.engine.counters().clone());
        }
    }

    /// Sends what is in flight, takes back every frame, and records where they all are.
    fn drain(&mut self, scratch: &mut [u64], local: &mut Local) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while self.sockets.iter().any(|s| s.counters().in_tx() > 0)
            && std::time::Instant::now() < deadline
        {
            for s in &self.sockets {
                let _ = s.kick_tx();
            }
            self.reap(scratch);
        }
        let mut rx = vec![Desc::default(); self.burst];
        for i in 0..2 {
            loop {
                let n = self.sockets[i].rx_batch(&mut rx);
                if n == 0 {
                    break;
                }
                local.rx[i] += n as u64;
                local.dropped_at_stop += n as u64;
                for d in &rx[..n] {
                    let _ = self.pool.release(d.addr);
                }
            }
        }
        // Copies other workers handed over after this one's last round: counted, not kept.
        let left = self.handoff.receive(usize::MAX, |_| {});
        local.handoff_received += left as u64;
        local.dropped_at_stop += left as u64;
        let ledger = Ledger::new(&self.pool, &[&self.sockets[0], &self.sockets[1]]);
        *self.stats.ledger.lock().unwrap_or_else(|e| e.into_inner()) = Some(ledger);
    }
}

/// A received batch, as the engine sees it: frames in the UMEM.
struct Received<'a> {
    umem: &'a Umem,
    descs: &'a [Desc],
}

impl Frames for Received<'_> {
    fn count(&self) -> usize {
        self.descs.len()
    }
    fn frame(&mut self, i: usize) -> (&mut [u8], usize) {
        let d = &self.descs[i];
        // SAFETY: each received frame is ours until dispatched, and the engine holds one
        // frame at a time (the returned borrow ends before the next call).
        (unsafe { self.umem.frame_mut(d.addr) }, d.len as usize)
    }
}

fn desc(addr: u64, len: usize) -> Desc {
    Desc {
        addr,
        len: len as u32,
        options: 0,
    }
}
