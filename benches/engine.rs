//! Engine throughput: established fast path (1 M live sessions, Zipf popularity, 64-byte
//! frames) in both directions, and new sessions per second with events emitted.
//! `cargo bench --bench engine`; figures are per core (one engine, one thread).

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tracenat::engine::event::{NullSink, VecSink};
use tracenat::engine::{Side, Verdict};
use tracenat::rng::SplitMix64;
use tracenat::workload::Zipf;

use common::FRAME;

const LIVE: usize = 1 << 20;
const BATCH: usize = 1024;

fn zipf_sequence(n: usize, len: usize) -> Vec<u32> {
    let zipf = Zipf::new(n, 0.99);
    let mut rng = SplitMix64::new(9);
    (0..len).map(|_| zipf.sample(&mut rng) as u32).collect()
}

/// Established packets of `live` sessions, chosen with Zipf(0.99) popularity.
fn established_with(c: &mut Criterion, live: usize, group_name: &str) {
    let cfg = common::config(live as u32);
    let flows = common::flows(live);
    let outbound = common::frames(&flows);
    let mut engine = common::engine(&cfg, NullSink);
    let inbound = common::replies(&common::open_all(&mut engine, &outbound, 1));
    let sequence = zipf_sequence(flows.len(), 1 << 22);
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, frames, from) in [
        ("outbound", &outbound, Side::Inside),
        ("inbound", &inbound, Side::Outside),
    ] {
        let mut buf = [0u8; 2048];
        let mut pos = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut forwarded = 0;
                for _ in 0..BATCH {
                    let i = sequence[pos] as usize;
                    pos = (pos + 1) & (sequence.len() - 1);
                    buf[..FRAME].copy_from_slice(&frames[i * FRAME..(i + 1) * FRAME]);
                    forwarded += matches!(
                        engine.process(&mut buf, FRAME, from, 2),
                        Verdict::Forward(_)
                    ) as u32;
                }
                assert_eq!(forwarded as usize, BATCH);
            })
        });
        // The same packets through `process_batch`: lookups of 64 frames overlapped.
        let mut bufs = vec![[0u8; 2048]; BATCH];
        let mut verdicts = vec![Verdict::ToKernel; BATCH];
        group.bench_function(format!("{name}_batched"), |b| {
            b.iter(|| {
                for buf in bufs.iter_mut() {
                    let i = sequence[pos] as usize;
                    pos = (pos + 1) & (sequence.len() - 1);
                    buf[..FRAME].copy_from_slice(&frames[i * FRAME..(i + 1) * FRAME]);
                }
                let mut refs: Vec<(&mut [u8], usize)> =
                    bufs.iter_mut().map(|b| (&mut b[..], FRAME)).collect();
                engine.process_batch(&mut refs[..], from, 2, &mut verdicts);
                let forwarded = verdicts
                    .iter()
                    .filter(|v| matches!(v, Verdict::Forward(_)))
                    .count();
                assert_eq!(forwarded, BATCH);
            })
        });
    }
    group.finish();
}

fn established(c: &mut Criterion) {
    established_with(c, LIVE, "established_1M_sessions_zipf_64B");
    // State that fits in cache: what the code itself costs per packet.
    established_with(c, 1 << 14, "established_16K_sessions_zipf_64B");
}

fn new_sessions(c: &mut Criterion) {
    const N: usize = 1 << 17;
    let cfg = common::config(N as u32);
    let frames = common::frames(&common::flows(N));
    let mut group = c.benchmark_group("new_sessions_with_events");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.bench_function("udp", |b| {
        b.iter_batched(
            || {
                let sink = VecSink {
                    events: Vec::with_capacity(N),
                    capacity: None,
                };
                common::engine(&cfg, sink)
            },
            |mut engine| {
                common::open_all(&mut engine, &frames, 1);
                assert_eq!(engine.sink().events.len(), N);
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, established, new_sessions);
criterion_main!(benches);
