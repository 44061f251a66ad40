//! Shared set-up for the engine benchmarks: CSIT's session scheme (inside hosts × ports,
//! one remote each), an engine filled with those sessions, and frames written into a small
//! ring of buffers the way a NIC delivers them.

#![allow(dead_code)] // each bench uses its own part of this module

pub mod traffic;

use std::net::Ipv4Addr;

use tracenat::config::Config;
use tracenat::engine::event::EventSink;
use tracenat::engine::{Engine, Side, Verdict};
use tracenat::rng::SplitMix64;
use tracenat::wire::checksum;

/// 64-byte frames on the wire: 60 bytes before the FCS.
pub const FRAME: usize = 60;
/// CSIT's largest NAT44 scale: 262,144 inside hosts × 63 ports = 16,515,072 sessions.
pub const CSIT_HOSTS: u32 = 262_144;
pub const CSIT_PORTS: u32 = 63;

/// A config sized for `max_sessions`, with 512 public addresses (two documentation /24s):
/// CSIT's 16.5 M sessions need 256 fully used addresses, and paired pooling fills them
/// unevenly.
pub fn config(max_sessions: u32) -> Config {
    let toml = format!(
        r#"
[interfaces]
inside = "in0"
outside = "out0"
[pool]
public = ["203.0.113.0/24", "192.0.2.0/24"]
subscribers = ["100.64.0.0/10"]
[limits]
max-sessions = {max_sessions}
"#
    );
    Config::from_toml_str(&toml).expect("bench config")
}

/// One flow of the scheme: (address, port) of each end, as the frames carry them.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub inside: (u32, u16),
    pub remote: (u32, u16),
}

/// `sessions` flows in CSIT's shape: hosts from 100.64.0.0 with `ports` source ports each
/// (1024..), each toward one of 250 servers in 198.51.100.0/24, port 443.
pub fn flows(sessions: usize, ports: u32) -> Vec<Flow> {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let server = u32::from(Ipv4Addr::new(198, 51, 100, 1));
    let mut rng = SplitMix64::new(1);
    (0..sessions as u32)
        .map(|i| Flow {
            inside: (base + i / ports, 1024 + (i % ports) as u16),
            remote: (server + rng.below(250), 443),
        })
        .collect()
}

/// A minimal UDP frame (18 payload bytes) from `src` to `dst`, checksums valid.
pub fn write_udp(buf: &mut [u8], src: (u32, u16), dst: (u32, u16)) {
    let f = &mut buf[..FRAME];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[12..16].copy_from_slice(&src.0.to_be_bytes());
    ip[16..20].copy_from_slice(&dst.0.to_be_bytes());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..60];
    udp.fill(0);
    udp[0..2].copy_from_slice(&src.1.to_be_bytes());
    udp[2..4].copy_from_slice(&dst.1.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    let c = checksum::l4_checksum(Ipv4Addr::from(src.0), Ipv4Addr::from(dst.0), 17, udp);
    udp[6..8].copy_from_slice(&checksum::udp_nonzero(c).to_be_bytes());
}

pub fn engine<S: EventSink>(cfg: &Config, sink: S) -> Engine<S> {
    let mut sink = Some(sink);
    Engine::for_all_workers(cfg, 0, |_| sink.take().expect("one worker"))
        .pop()
        .expect("one engine")
}

/// Opens a session for every flow at `now`; returns the public endpoint each got.
pub fn open_all<S: EventSink>(engine: &mut Engine<S>, flows: &[Flow], now: u64) -> Vec<(u32, u16)> {
    let mut buf = [0u8; 2048];
    flows
        .iter()
        .enumerate()
        .map(|(i, flow)| {
            write_udp(&mut buf, flow.inside, flow.remote);
            let v = engine.process(&mut buf, FRAME, Side::Inside, now);
            assert_eq!(v, Verdict::Forward(Side::Outside), "flow {i}");
            let ip = u32::from_be_bytes(buf[26..30].try_into().expect("4 bytes"));
            (ip, u16::from_be_bytes([buf[34], buf[35]]))
        })
        .collect()
}
