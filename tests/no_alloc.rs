//! The packet path does not allocate once warmed up: a counting allocator watches the
//! engine forward established traffic in both directions.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracenat::config::Config;
use tracenat::engine::event::VecSink;
use tracenat::engine::{Engine, Side, Verdict};
use tracenat::workload;

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONFIG: &str = r#"
[interfaces]
inside = "in0"
outside = "out0"
[pool]
public = ["203.0.113.0/30"]
subscribers = ["100.64.0.0/16"]
[limits]
max-sessions = 4096
"#;

#[test]
fn established_traffic_allocates_nothing() {
    let cfg = Config::from_toml_str(CONFIG).unwrap();
    let mut engine = Engine::for_all_workers(&cfg, 0, |_| VecSink::default())
        .pop()
        .unwrap();
    let flows = workload::flows(Ipv4Addr::new(100, 64, 1, 1), 64, 8, 5);
    let outbound: Vec<Vec<u8>> = flows.iter().map(workload::min_frame).collect();
    let mut buf = vec![0u8; 2048];
    let mut inbound = Vec::new();
    for frame in &outbound {
        buf[..frame.len()].copy_from_slice(frame);
        assert_eq!(
            engine.process(&mut buf, frame.len(), Side::Inside, 1_000),
            Verdict::Forward(Side::Outside)
        );
        // The reply: addresses and ports swapped.
        let mut reply = buf[..frame.len()].to_vec();
        reply[26..34].rotate_left(4);
        let ports: Vec<u8> = reply[34..38].to_vec();
        reply[34..36].copy_from_slice(&ports[2..4]);
        reply[36..38].copy_from_slice(&ports[0..2]);
        inbound.push(reply);
    }
    assert_eq!(engine.live_sessions(), flows.len());

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut forwarded = 0;
    for round in 0..50u64 {
        let now = 2_000_000_000 + round * 100_000_000;
        engine.advance(now);
        for (out, back) in outbound.iter().zip(&inbound) {
            buf[..out.len()].copy_from_slice(out);
            forwarded += (engine.process(&mut buf, out.len(), Side::Inside, now)
                == Verdict::Forward(Side::Outside)) as usize;
            buf[..back.len()].copy_from_slice(back);
            forwarded += (engine.process(&mut buf, back.len(), Side::Outside, now)
                == Verdict::Forward(Side::Inside)) as usize;
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(forwarded, 50 * 2 * flows.len());
    assert_eq!(
        allocations, 0,
        "the packet path allocated {allocations} times"
    );
}
