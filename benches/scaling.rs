//! Multi-core scaling of the established fast path.
//!
//! `cargo bench --bench scaling` runs N workers at once, each pinned to its own core with
//! its own engine — per-core tables, nothing shared, as the dataplane runs them — and has
//! every worker send established Zipf(0.99) outbound frames through its engine while the
//! others do the same. What is shared is what a real box shares: the memory bus, the
//! last-level cache and the cores' clocks. Each worker first runs the ceiling (no table,
//! `engine::ceiling`) at the same time as the others, then the NAT, so both are measured
//! under the same contention. Two shapes:
//!
//! - `per-worker`: 1 M sessions on every worker (the load grows with the cores);
//! - `box`: CSIT's 16.5 M sessions (262,144 hosts × 63 ports) shared out over the workers,
//!   so more cores mean smaller tables each.
//!
//! `TRACENAT_BENCH_THREADS=1,2,4` picks the worker counts (default: powers of two up to the
//! cores, and the cores), `TRACENAT_BENCH_ONLY=per-worker` or `box` one shape,
//! `TRACENAT_BENCH_PACKETS` the packets per worker and run (default 2^21).

mod common;

use std::sync::Barrier;
use std::thread;

use tracenat::engine::Side;
use tracenat::engine::Verdict;
use tracenat::engine::batch::MAX_BATCH;
use tracenat::engine::event::NullSink;

use common::traffic::{Traffic, ceiling_batch, nat_batch, sequence};

/// What one worker measured: the ceiling's Mpps and the NAT's, both with every other worker
/// running the same thing.
#[derive(Clone, Copy)]
struct Rates {
    ceiling: f64,
    nat: f64,
}

/// One worker: builds its engine with `sessions` live sessions on its own core, then
/// measures in step with the others (`barrier`).
fn worker(
    core: Option<core_affinity::CoreId>,
    sessions: usize,
    packets: usize,
    barrier: &Barrier,
) -> Rates {
    if let Some(core) = core {
        core_affinity::set_for_current(core);
    }
    let cfg = common::config(sessions as u32);
    let flows = common::flows(sessions, common::CSIT_PORTS);
    let mut engine = common::engine(&cfg, NullSink);
    let publics = common::open_all(&mut engine, &flows, 1);
    let sequence = sequence(flows.len(), true);
    let traffic = Traffic {
        flows: &flows,
        publics: &publics,
        sequence: &sequence,
        from: Side::Inside,
    };
    let mut verdicts = vec![Verdict::ToKernel; MAX_BATCH];
    barrier.wait();
    let ceiling = traffic.median(packets, |r| ceiling_batch(r, Side::Inside));
    barrier.wait();
    let nat = traffic.median(packets, |r| {
        nat_batch(&mut engine, r, Side::Inside, &mut verdicts)
    });
    Rates { ceiling, nat }
}

/// Runs `workers` workers at once, `sessions` sessions each.
fn run(
    workers: usize,
    sessions: usize,
    packets: usize,
    cores: &[core_affinity::CoreId],
) -> Vec<Rates> {
    let barrier = Barrier::new(workers);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let core = cores.get(i).copied();
                let barrier = &barrier;
                scope.spawn(move || worker(core, sessions, packets, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    })
}

fn report(
    shape: &str,
    workers: usize,
    sessions: usize,
    rates: &[Rates],
    one_worker: &mut Option<f64>,
) {
    let ceiling: f64 = rates.iter().map(|r| r.ceiling).sum();
    let nat: f64 = rates.iter().map(|r| r.nat).sum();
    let slowest = rates.iter().map(|r| r.nat).fold(f64::INFINITY, f64::min);
    let fastest = rates.iter().map(|r| r.nat).fold(0.0, f64::max);
    let per_worker_at_one = *one_worker.get_or_insert(nat / workers as f64);
    println!(
        "| {shape} | {workers} | {:.2} M | {ceiling:.1} | {nat:.1} | {slowest:.2}–{fastest:.2} | {:.0} % | {:.2} |",
        sessions as f64 / 1e6,
        100.0 * nat / ceiling,
        nat / (per_worker_at_one * workers as f64),
    );
}

fn worker_counts(cores: usize) -> Vec<usize> {
    if let Ok(list) = std::env::var("TRACENAT_BENCH_THREADS") {
        return list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
    }
    let mut counts: Vec<usize> = (0..).map(|p| 1 << p).take_while(|&n| n <= cores).collect();
    if counts.last() != Some(&cores) {
        counts.push(cores);
    }
    counts
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    let only = std::env::var("TRACENAT_BENCH_ONLY").unwrap_or_default();
    let packets = common::traffic::packets_per_run();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let counts = worker_counts(cores.len().max(1));
    println!(
        "| shape | workers | sessions per worker | ceiling Mpps (all workers) | tracenat Mpps (all workers) | per worker, slowest–fastest | of ceiling | scaling efficiency |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let box_sessions = (common::CSIT_HOSTS * common::CSIT_PORTS) as usize;
    for (shape, total) in [("per-worker", None), ("box", Some(box_sessions))] {
        if !(only.is_empty() || only == shape) {
            continue;
        }
        let mut one_worker = None;
        for &workers in &counts {
            let sessions = total.map_or(1 << 20, |t| t.div_ceil(workers));
            let rates = run(workers, sessions, packets, &cores);
            report(shape, workers, sessions, &rates, &mut one_worker);
        }
    }
}
