//! Memory per live session: heap bytes counted by a wrapping allocator, for an engine sized
//! for and filled with 1 M sessions. `cargo bench --bench memory`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tracenat::engine::event::NullSink;

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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    const N: usize = 1 << 20;
    let cfg = common::config(N as u32);
    let frames = common::frames(&common::flows(N));
    let before_engine = heap();
    // The empty engine with its pool structures (free port lists of a /27): not per session.
    let empty = common::engine(&cfg, NullSink);
    let pool_only = heap() - before_engine;
    drop(empty);
    let before = heap();
    let mut engine = common::engine(&cfg, NullSink);
    common::open_all(&mut engine, &frames, 1);
    let after = heap();
    let sessions = engine.live_sessions();
    assert_eq!(sessions, N);
    let total = after - before;
    println!("live sessions:                 {sessions}");
    println!(
        "engine heap, total:            {:.1} MiB",
        total as f64 / (1 << 20) as f64
    );
    println!(
        "  of which empty engine:       {:.1} MiB (tables reserved for 1 M, pool free lists)",
        pool_only as f64 / (1 << 20) as f64
    );
    println!(
        "bytes per live session, all:   {:.1}",
        total as f64 / sessions as f64
    );
    println!(
        "state structures per session:  {:.1} (sessions, mappings, tables, subscribers, timers)",
        engine.state_heap_bytes() as f64 / sessions as f64
    );
}
