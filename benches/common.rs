//! Shared set-up for the engine benchmarks: a config sized for a million sessions and an
//! engine filled with that many live UDP flows.

#![allow(dead_code)] // each bench uses its own part of this module

use std::net::Ipv4Addr;

use tracenat::config::Config;
use tracenat::engine::event::EventSink;
use tracenat::engine::{Engine, Side, Verdict};
use tracenat::workload::{self, Flow};

pub const FRAME: usize = 60;

pub fn config(max_sessions: u32) -> Config {
    let toml = format!(
        r#"
[interfaces]
inside = "in0"
outside = "out0"
[pool]
public = ["203.0.113.0/27"]
subscribers = ["100.64.0.0/10"]
[limits]
max-sessions = {max_sessions}
"#
    );
    Config::from_toml_str(&toml).expect("bench config")
}

/// `n` flows: n/16 subscribers with 16 flows each.
pub fn flows(n: usize) -> Vec<Flow> {
    workload::flows(Ipv4Addr::new(100, 64, 0, 1), (n / 16) as u32, 16, 1)
}

/// Every flow's 60-byte frame, back to back.
pub fn frames(flows: &[Flow]) -> Vec<u8> {
    flows.iter().flat_map(workload::min_frame).collect()
}

pub fn engine<S: EventSink>(cfg: &Config, sink: S) -> Engine<S> {
    let mut sink = Some(sink);
    Engine::for_all_workers(cfg, 0, |_| sink.take().expect("one worker"))
        .pop()
        .expect("one engine")
}

/// Opens a session for every frame; returns the translated frames (what left outside).
pub fn open_all<S: EventSink>(engine: &mut Engine<S>, frames: &[u8], now: u64) -> Vec<u8> {
    let mut out = frames.to_vec();
    let mut buf = [0u8; 2048];
    for (i, frame) in frames.chunks(FRAME).enumerate() {
        buf[..FRAME].copy_from_slice(frame);
        let v = engine.process(&mut buf, FRAME, Side::Inside, now);
        assert_eq!(v, Verdict::Forward(Side::Outside), "flow {i}");
        out[i * FRAME..(i + 1) * FRAME].copy_from_slice(&buf[..FRAME]);
    }
    out
}

/// Replies to translated frames: addresses and ports swapped (checksums stay valid, as the
/// one's-complement sum does not depend on word order).
pub fn replies(translated: &[u8]) -> Vec<u8> {
    let mut out = translated.to_vec();
    for f in out.chunks_mut(FRAME) {
        let (src, dst) = (f[26..30].to_vec(), f[30..34].to_vec());
        f[26..30].copy_from_slice(&dst);
        f[30..34].copy_from_slice(&src);
        let (sp, dp) = (f[34..36].to_vec(), f[36..38].to_vec());
        f[34..36].copy_from_slice(&dp);
        f[36..38].copy_from_slice(&sp);
    }
    out
}
