//! The traffic the engine benchmarks send: a ring of buffers filled the way a NIC leaves
//! them, a flow order (Zipf or uniform), and the two things timed on it — the NAT's batch
//! path and the ceiling (the least any forwarder does).

use std::time::Instant;

use tracenat::engine::batch::{Frames, MAX_BATCH};
use tracenat::engine::ceiling;
use tracenat::engine::event::EventSink;
use tracenat::engine::{Engine, Side, Verdict};
use tracenat::rng::SplitMix64;
use tracenat::workload::Zipf;

use super::{FRAME, Flow};

/// Frames per timed run: `TRACENAT_BENCH_PACKETS`, 2^21 by default.
pub fn packets_per_run() -> usize {
    std::env::var("TRACENAT_BENCH_PACKETS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1 << 21)
}

pub const NOW: u64 = 2_000_000_000;
pub const SEQUENCE: usize = 1 << 22;
pub const RUNS: usize = 3;
pub const MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 8]);

/// A batch of frames as the NIC left them: `MAX_BATCH` buffers of 2 KiB, each holding one
/// 60-byte frame.
pub struct Ring {
    pub bufs: Vec<[u8; 2048]>,
}

impl Frames for Ring {
    fn count(&self) -> usize {
        self.bufs.len()
    }
    fn frame(&mut self, i: usize) -> (&mut [u8], usize) {
        (&mut self.bufs[i][..], FRAME)
    }
}

/// Which flows the packets belong to, in order: indexes into the flow list.
pub fn sequence(flows: usize, zipf: bool) -> Vec<u32> {
    let mut rng = SplitMix64::new(9);
    if !zipf {
        return (0..SEQUENCE).map(|_| rng.below(flows as u32)).collect();
    }
    // Popular flows are scattered over the table, as they are in real traffic, not the
    // first ones created.
    let mut rank_to_flow: Vec<u32> = (0..flows as u32).collect();
    rng.shuffle(&mut rank_to_flow);
    let z = Zipf::new(flows, 0.99);
    (0..SEQUENCE)
        .map(|_| rank_to_flow[z.sample(&mut rng)])
        .collect()
}

/// What a run sends: the flows, their public endpoints, the order, the direction.
pub struct Traffic<'a> {
    pub flows: &'a [Flow],
    pub publics: &'a [(u32, u16)],
    pub sequence: &'a [u32],
    pub from: Side,
}

impl Traffic<'_> {
    /// Writes the next batch's frames into the ring (the NIC's part, not timed).
    pub fn fill(&self, ring: &mut Ring, pos: &mut usize) {
        for buf in ring.bufs.iter_mut() {
            let i = self.sequence[*pos % self.sequence.len()] as usize;
            *pos += 1;
            let flow = &self.flows[i];
            match self.from {
                Side::Inside => super::write_udp(buf, flow.inside, flow.remote),
                Side::Outside => super::write_udp(buf, flow.remote, self.publics[i]),
            }
        }
    }

    /// Mpps of `forward` over `packets` packets, timing only `forward`; every frame must be
    /// forwarded.
    pub fn run(&self, packets: usize, mut forward: impl FnMut(&mut Ring) -> usize) -> f64 {
        let mut ring = Ring {
            bufs: vec![[0u8; 2048]; MAX_BATCH],
        };
        let mut pos = 0;
        let (mut ns, mut forwarded) = (0u128, 0);
        for _ in 0..packets / MAX_BATCH {
            self.fill(&mut ring, &mut pos);
            let start = Instant::now();
            forwarded += forward(&mut ring);
            ns += start.elapsed().as_nanos();
        }
        let sent = packets / MAX_BATCH * MAX_BATCH;
        assert_eq!(forwarded, sent, "every frame is forwarded");
        sent as f64 * 1e3 / ns as f64
    }

    pub fn median(&self, packets: usize, mut forward: impl FnMut(&mut Ring) -> usize) -> f64 {
        let mut runs: Vec<f64> = (0..RUNS).map(|_| self.run(packets, &mut forward)).collect();
        runs.sort_by(f64::total_cmp);
        runs[RUNS / 2]
    }
}

/// Not inlined, like [`nat_batch`], so that the two can be counted alike.
#[inline(never)]
pub fn ceiling_batch(ring: &mut Ring, from: Side) -> usize {
    let mut forwarded = 0;
    for buf in ring.bufs.iter_mut() {
        if let Verdict::Forward(_) = ceiling::forward(buf, FRAME, from) {
            ceiling::set_macs(buf, MACS.0, MACS.1);
            forwarded += 1;
        }
    }
    forwarded
}

/// Not inlined, so that a profiler can count this function alone (one call per batch).
#[inline(never)]
pub fn nat_batch<S: EventSink>(
    engine: &mut Engine<S>,
    ring: &mut Ring,
    from: Side,
    verdicts: &mut [Verdict],
) -> usize {
    engine.process_batch(ring, from, NOW, verdicts);
    let mut forwarded = 0;
    for (buf, verdict) in ring.bufs.iter_mut().zip(verdicts.iter()) {
        if let Verdict::Forward(_) = verdict {
            ceiling::set_macs(buf, MACS.0, MACS.1);
            forwarded += 1;
        }
    }
    forwarded
}
