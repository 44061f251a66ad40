//! The entry point shared by the fuzzer (`fuzz/`) and the robustness tests: arbitrary bytes
//! through parse + translate. It panics only when an invariant breaks:
//! a frame the engine forwards must still carry a valid IPv4 header checksum and keep its
//! length, and a generated reply must fit the buffer.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::Config;
use crate::engine::event::VecSink;
use crate::engine::{Engine, Side, Verdict};
use crate::wire::build::{FrameSpec, build};
use crate::wire::{ethernet, ipv4};

const CONFIG: &str = r#"
[interfaces]
inside = "in0"
outside = "out0"
inside-address = "100.64.0.1"
outside-address = "192.0.2.1"
[workers]
count = 2
[pool]
public = ["203.0.113.0/30"]
subscribers = ["100.64.0.0/24"]
[limits]
max-sessions = 4096
fragments = 64
"#;

pub struct Harness {
    engines: Vec<Engine<VecSink>>,
    buf: Vec<u8>,
    now: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// Two workers with a few live UDP, TCP and ICMP sessions.
    pub fn new() -> Harness {
        let cfg = Config::from_toml_str(CONFIG).expect("fuzz config");
        let mut h = Harness {
            engines: Engine::for_all_workers(&cfg, 0, |_| VecSink::default()),
            buf: vec![0; 2048],
            now: 1_000_000_000,
        };
        let remote = Ipv4Addr::new(198, 51, 100, 7);
        for i in 0..8u8 {
            let sub = Ipv4Addr::new(100, 64, 0, 10 + i);
            let port = 40_000 + i as u16;
            let frames = [
                FrameSpec::udp(SocketAddrV4::new(sub, port), SocketAddrV4::new(remote, 53)),
                FrameSpec::tcp(
                    SocketAddrV4::new(sub, port),
                    SocketAddrV4::new(remote, 80),
                    0x02,
                ),
                FrameSpec::echo_request(sub, remote, port, 1),
            ];
            for spec in frames {
                let frame = build(&spec);
                let mut data = vec![0u8];
                data.extend_from_slice(&frame);
                h.run(&data);
            }
        }
        h
    }

    /// `data[0]`: bit 0 chooses the side, bit 1 the worker, bit 2 whether to fix up the IP
    /// header checksum first (so mutated frames get past that check and reach the deeper
    /// paths), the rest steps the clock (in 1/8 s); `data[1..]` is the frame.
    pub fn run(&mut self, data: &[u8]) {
        let Some((&control, frame)) = data.split_first() else {
            return;
        };
        let from = if control & 1 == 0 {
            Side::Inside
        } else {
            Side::Outside
        };
        let worker = ((control >> 1) & 1) as usize % self.engines.len();
        self.now += (control >> 3) as u64 * 125_000_000;
        let len = frame.len().min(self.buf.len());
        self.buf[..len].copy_from_slice(&frame[..len]);
        if control & 4 != 0 {
            fix_ip_checksum(&mut self.buf[..len]);
        }
        let engine = &mut self.engines[worker];
        engine.advance(self.now);
        let verdict = engine.process(&mut self.buf, len, from, self.now);
        engine.sink_mut().events.clear();
        match verdict {
            Verdict::Forward(_) => assert_ip_checksum_valid(&self.buf[..len]),
            Verdict::Reply { len: reply, .. } => {
                let reply = usize::from(reply);
                assert!(reply <= self.buf.len());
                assert_ip_checksum_valid(&self.buf[..reply]);
            }
            _ => {}
        }
    }
}

fn fix_ip_checksum(frame: &mut [u8]) {
    let Ok(l2) = ethernet::parse_l2(frame) else {
        return;
    };
    if let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[l2.l3_offset..]) {
        ip.fill_checksum();
    }
}

fn assert_ip_checksum_valid(frame: &[u8]) {
    let l2 = ethernet::parse_l2(frame).expect("forwarded frame parses");
    let ip = ipv4::Packet::new_checked(&frame[l2.l3_offset..]).expect("forwarded IPv4 parses");
    assert!(
        ip.verify_checksum(),
        "forwarded frame has a bad IP checksum"
    );
}
