//! Engine throughput per core, measured against a ceiling in the same run.
//!
//! `cargo bench --bench engine` fills one engine with 16 K, 1 M and 16.5 M live UDP
//! sessions (CSIT's scheme: inside hosts × 63 ports, one remote each), then sends
//! established 64-byte frames through it — Zipf(0.99) and uniform popularity, outbound and
//! inbound — in batches of 64, as the dataplane does. Each batch is written into a ring of
//! 64 buffers before the clock starts (a NIC's DMA does that work, and leaves the frames in
//! cache), so the timed part is the packet path alone: translation and the Ethernet
//! addresses. The *ceiling* runs the same frames through the least any forwarder does (MAC
//! rewrite, TTL decrement, incremental IP checksum: `engine::ceiling`) with no table at all.
//! Every figure is the median of three runs, as Mpps and as a fraction of the ceiling.
//!
//! `TRACENAT_BENCH_ONLY=1K,16K,1M,16.5M,new` picks scales (1K: everything in L1/L2); `TRACENAT_BENCH_PACKETS` sets the
//! packets per run (default 2^21).

mod common;

use std::time::Instant;

use tracenat::engine::batch::MAX_BATCH;
use tracenat::engine::ceiling;
use tracenat::engine::event::{EventSink, NullSink, VecSink};
use tracenat::engine::{Engine, Lookup, Side, Verdict};

use common::FRAME;
use common::traffic::{MACS, NOW, Ring, Traffic, ceiling_batch, nat_batch, sequence};

/// The same, one frame at a time (no batch warm-up): what prefetching buys.
fn nat_one_by_one<S: EventSink>(engine: &mut Engine<S>, ring: &mut Ring, from: Side) -> usize {
    let mut forwarded = 0;
    for buf in ring.bufs.iter_mut() {
        if let Verdict::Forward(_) = engine.process(buf, FRAME, from, NOW) {
            ceiling::set_macs(buf, MACS.0, MACS.1);
            forwarded += 1;
        }
    }
    forwarded
}

struct Scale {
    name: &'static str,
    sessions: usize,
}

const SCALES: [Scale; 4] = [
    Scale {
        name: "1K",
        sessions: 1 << 10,
    },
    Scale {
        name: "16K",
        sessions: 1 << 14,
    },
    Scale {
        name: "1M",
        sessions: 1 << 20,
    },
    Scale {
        name: "16.5M",
        sessions: (common::CSIT_HOSTS * common::CSIT_PORTS) as usize,
    },
];

fn row(sessions: &str, pop: &str, dir: &str, path: &str, nat: f64, ceiling: f64) {
    println!(
        "| {sessions} | {pop} | {dir} | {path} | {nat:.2} | {ceiling:.2} | {:.0} % |",
        100.0 * nat / ceiling
    );
}

fn established(scale: &Scale, packets: usize) {
    let cfg = common::config(scale.sessions as u32);
    let flows = common::flows(scale.sessions, common::CSIT_PORTS);
    let mut engine = common::engine(&cfg, NullSink);
    let publics = common::open_all(&mut engine, &flows, 1);
    let mut verdicts = vec![Verdict::ToKernel; MAX_BATCH];
    for (pop, zipf) in [("uniform", false), ("Zipf 0.99", true)] {
        let sequence = sequence(flows.len(), zipf);
        for (dir, from) in [("outbound", Side::Inside), ("inbound", Side::Outside)] {
            let traffic = Traffic {
                flows: &flows,
                publics: &publics,
                sequence: &sequence,
                from,
            };
            let ceiling = traffic.median(packets, |r| ceiling_batch(r, from));
            let nat = traffic.median(packets, |r| nat_batch(&mut engine, r, from, &mut verdicts));
            row(scale.name, pop, dir, "one probe, batched", nat, ceiling);
            if !zipf || from == Side::Outside {
                continue;
            }
            // What each part buys, on one case: no prefetch, and the two-lookup path.
            let one = traffic.median(packets, |r| nat_one_by_one(&mut engine, r, from));
            row(scale.name, pop, dir, "one probe, one by one", one, ceiling);
            engine.set_lookup(Lookup::MappingThenSession);
            let old = traffic.median(packets, |r| nat_one_by_one(&mut engine, r, from));
            engine.set_lookup(Lookup::OneProbe);
            row(
                scale.name,
                pop,
                dir,
                "two lookups (before), one by one",
                old,
                ceiling,
            );
        }
    }
}

/// New sessions per second, each with its creation event (and block events) emitted, in
/// an engine that has run before: its tables' pages are touched, as in a NAT that has been
/// up for a while (the first touch of fresh pages is a one-off cost of the first minutes).
fn new_sessions() {
    const N: usize = 1 << 17;
    let cfg = common::config(N as u32);
    let flows = common::flows(N, common::CSIT_PORTS);
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let sink = VecSink {
                events: Vec::with_capacity(6 * N),
                capacity: None,
            };
            let mut engine = common::engine(&cfg, sink);
            common::open_all(&mut engine, &flows, 1);
            engine.end_all_sessions(2);
            let before = engine.sink().events.len();
            let start = Instant::now();
            common::open_all(&mut engine, &flows, 3);
            let secs = start.elapsed().as_secs_f64();
            assert!(engine.sink().events.len() - before >= N);
            N as f64 / secs / 1e6
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "\nnew sessions (UDP, events emitted, frame writing included): {:.2} M/s (median of 5)",
        rates[2]
    );
}

/// New sessions as the dataplane meets them: in batches of 64 frames written before the
/// clock starts, into an engine sized for 1 M sessions that has run before, so its tables
/// are beyond cache and every opening's probes and inserts miss, as in the lab's
/// new-session phase. One frame in eight of the 1 M flows, each a new session.
fn new_sessions_batched() {
    const CAPACITY: usize = 1 << 20;
    const N: usize = CAPACITY / 8;
    let cfg = common::config(CAPACITY as u32);
    let flows = common::flows(CAPACITY, common::CSIT_PORTS);
    let order: Vec<u32> = (0..CAPACITY as u32).step_by(CAPACITY / N).collect();
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let sink = VecSink {
                events: Vec::with_capacity(2 * CAPACITY + 2 * N),
                capacity: None,
            };
            let mut engine = common::engine(&cfg, sink);
            common::open_all(&mut engine, &flows, 1);
            engine.end_all_sessions(2);
            let traffic = Traffic {
                flows: &flows,
                publics: &[],
                sequence: &order,
                from: Side::Inside,
            };
            let mut verdicts = [Verdict::ToKernel; MAX_BATCH];
            let rate = traffic.run(N, |ring| {
                nat_batch(&mut engine, ring, Side::Inside, &mut verdicts)
            });
            assert_eq!(engine.live_sessions(), N, "every frame a new session");
            rate
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "new sessions in batches of 64, tables for 1 M sessions (beyond cache): {:.2} M/s (median of 5)",
        rates[2]
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    let only = std::env::var("TRACENAT_BENCH_ONLY").unwrap_or_default();
    let packets = common::traffic::packets_per_run();
    println!(
        "| sessions | popularity | direction | path | tracenat Mpps | ceiling Mpps | of ceiling |"
    );
    println!("|---|---|---|---|---:|---:|---:|");
    for scale in SCALES.iter() {
        if only.is_empty() || only.split(',').any(|s| s == scale.name) {
            established(scale, packets);
        }
    }
    if only.is_empty() || only.split(',').any(|s| s == "new") {
        new_sessions();
        new_sessions_batched();
    }
}
