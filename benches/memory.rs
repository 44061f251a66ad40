//! Memory per live session: heap bytes counted by a wrapping allocator, for an engine sized
//! for and filled with 1 M and with 16.5 M sessions (CSIT's scheme: 262,144 hosts × 63
//! ports). Every table, list and record counts. Also the time a worker takes at start to
//! commit its tables' memory (`Engine::commit_memory`), and, outside the engine, the mapping
//! log writer's live set for the same mappings. `cargo bench --bench memory`
//! (`TRACENAT_BENCH_ONLY=1M` or `16.5M` for one).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tracenat::engine::event::NullSink;
use tracenat::maplog::live::LiveSet;
use tracenat::maplog::record::{Record, RecordKind};

struct Counting;
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Engine heap per live session at `n` sessions in CSIT's scheme.
fn measure(n: usize) {
    let cfg = common::config(n as u32);
    let flows = common::flows(n, common::CSIT_PORTS);
    let before_engine = heap();
    // The empty engine with its pool structures (free port lists of 512 addresses) and
    // tables reserved for `n`: counted, as the table space is per session.
    let start = Instant::now();
    let mut empty = common::engine(&cfg, NullSink);
    let build = start.elapsed().as_secs_f64();
    // The big tables are mapped outside the heap (huge pages): counted separately.
    let mapped = empty.state_mapped_bytes();
    let reserved = heap() - before_engine + mapped;
    let start = Instant::now();
    empty.commit_memory();
    let commit = start.elapsed().as_secs_f64();
    drop(empty);
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let before = heap();
    let mut engine = common::engine(&cfg, NullSink);
    let publics = common::open_all(&mut engine, &flows, 1);
    // The public endpoints are kept for the live set below, not counted as the engine's.
    let kept = publics.capacity() * std::mem::size_of::<(u32, u16)>();
    let total = heap() - before - kept + engine.state_mapped_bytes();
    let sessions = engine.live_sessions();
    assert_eq!(sessions, n);
    println!("live sessions:                 {sessions}");
    println!("engine heap, total:            {:.1} MiB", mib(total));
    println!(
        "  of which the empty engine:   {:.1} MiB (tables mapped for {n}, pool free lists)",
        mib(reserved)
    );
    println!(
        "building the empty engine:     {:.0} ms (the pool's free lists, tables reserved)",
        build * 1e3
    );
    println!(
        "committing the tables at start: {:.0} ms for {:.1} MiB",
        commit * 1e3,
        mib(mapped)
    );
    println!(
        "bytes per live session, all:   {:.1}",
        total as f64 / sessions as f64
    );
    println!(
        "state structures per session:  {:.1} (sessions, mappings, flow and mapping tables, subscribers, timers)",
        engine.state_heap_bytes() as f64 / sessions as f64
    );
    drop(engine);
    let live = live_set_bytes(&flows, &publics);
    println!(
        "mapping log's live set:        {:.1} B per live mapping ({:.1} MiB; the log writer's, not the engine's)\n",
        live as f64 / flows.len() as f64,
        mib(live)
    );
}

/// Heap of the mapping log writer's live set holding one live mapping per flow (in CSIT's
/// scheme every session has its own mapping), fed as the writer feeds it: creation records
/// in blocks.
fn live_set_bytes(flows: &[common::Flow], publics: &[(u32, u16)]) -> usize {
    let before = heap();
    let mut live = LiveSet::default();
    for (flows, publics) in flows.chunks(8192).zip(publics.chunks(8192)) {
        let created: Vec<Record> = flows
            .iter()
            .zip(publics)
            .map(|(flow, public)| Record {
                protocol: 17,
                inside_ip: flow.inside.0,
                inside_port: flow.inside.1,
                public_ip: public.0,
                public_port: public.1,
                dest_ip: flow.remote.0,
                dest_port: flow.remote.1,
                ..Record::new(RecordKind::SessionCreated, 1)
            })
            .collect();
        live.apply(&created);
    }
    assert_eq!(live.len(), flows.len());
    heap() - before
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    let only = std::env::var("TRACENAT_BENCH_ONLY").unwrap_or_default();
    for (name, n) in [
        ("1M", 1 << 20),
        ("16.5M", (common::CSIT_HOSTS * common::CSIT_PORTS) as usize),
    ] {
        if only.is_empty() || only.split(',').any(|s| s == name) {
            measure(n);
        }
    }
}
