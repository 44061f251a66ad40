//! Shared harness for black-box tests of the NAT through `replay::run`.
//!
//! * [`Cfg`]: a TOML config with a small pool (public `203.0.113.0/30`, subscribers
//!   `100.64.0.0/16`, inside address `100.64.0.1`, outside address `192.0.2.1`) and
//!   `set("section.key", value)` overrides.
//! * [`replay`]: writes the packets into capture files in a fresh temporary directory,
//!   runs the replay and reads everything back into an [`Outcome`].
//! * Frame builders ([`udp`], [`tcp`], [`echo_request`], ...), a frame parser ([`parse`])
//!   and a full checksum verifier ([`assert_checksums_valid`]).
//!
//! Addresses used: subscribers in 100.64.0.0/10, remotes and pool in 192.0.2.0/24,
//! 198.51.100.0/24 and 203.0.113.0/24.
#![allow(dead_code)]

pub mod lab;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tracenat::config::Config;
use tracenat::engine::Side;
use tracenat::pcap;
use tracenat::replay::{self, ReplayArgs};
use tracenat::wire::build::L4Spec;
use tracenat::wire::build::{self, FrameSpec};
use tracenat::wire::{checksum, ethernet, icmp, ipv4};

pub use tracenat::wire::tcp::{ACK, FIN, PSH, RST, SYN};

// ---------------------------------------------------------------------------
// Time

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;
pub const MIN: u64 = 60 * SEC;
/// Timer-wheel granularity of the engine: sessions end within one tick of their deadline.
pub const TICK: u64 = 125 * MS;
/// A realistic epoch (2023-11-14) so captures look like real ones; fits classic pcap.
pub const T0: u64 = 1_700_000_000 * SEC;

/// `T0 + secs seconds + ms milliseconds`.
pub fn at(secs: u64, ms: u64) -> u64 {
    T0 + secs * SEC + ms * MS
}

// ---------------------------------------------------------------------------
// Addresses

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|_| panic!("bad address {s:?}"))
}

pub fn ep(s: &str) -> SocketAddrV4 {
    s.parse().unwrap_or_else(|_| panic!("bad endpoint {s:?}"))
}

pub fn sock(addr: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(addr, port)
}

/// The default pool's public addresses.
pub fn pool_addresses() -> Vec<Ipv4Addr> {
    (0..4).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect()
}

pub fn in_default_pool(a: Ipv4Addr) -> bool {
    pool_addresses().contains(&a)
}

// ---------------------------------------------------------------------------
// Config

/// A config as TOML sections with overridable keys. Values are TOML literals
/// (`"\"port-block\""`, `"64"`, `"false"`, `"[\"203.0.113.1/32\"]"`).
#[derive(Clone, Debug)]
pub struct Cfg {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Default for Cfg {
    fn default() -> Self {
        Cfg::new()
    }
}

impl Cfg {
    /// The base config: one worker, dynamic allocation, default timeouts, a session table
    /// small enough to build quickly.
    pub fn new() -> Cfg {
        let mut c = Cfg {
            sections: Vec::new(),
        };
        c.set("interfaces.inside", "\"tn-in\"")
            .set("interfaces.outside", "\"tn-out\"")
            .set("interfaces.inside-address", "\"100.64.0.1\"")
            .set("interfaces.outside-address", "\"192.0.2.1\"")
            .set("workers.count", "1")
            .set("pool.public", "[\"203.0.113.0/30\"]")
            .set("pool.subscribers", "[\"100.64.0.0/16\"]")
            .set("allocation.seed", "7")
            .set("limits.max-sessions", "8192");
        c
    }

    /// Sets `section.key` (TOML literal `value`), replacing an earlier value.
    pub fn set(&mut self, path: &str, value: &str) -> &mut Cfg {
        let (section, key) = path.split_once('.').expect("path is section.key");
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let keys = &mut self.sections[idx].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_string(),
            None => keys.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// Builder-style [`Cfg::set`].
    pub fn with(mut self, path: &str, value: &str) -> Cfg {
        self.set(path, value);
        self
    }

    /// Removes `section.key`.
    pub fn unset(mut self, path: &str) -> Cfg {
        let (section, key) = path.split_once('.').expect("path is section.key");
        if let Some((_, keys)) = self.sections.iter_mut().find(|(s, _)| s == section) {
            keys.retain(|(k, _)| k != key);
        }
        self
    }

    pub fn toml(&self) -> String {
        let mut out = String::new();
        for (section, keys) in &self.sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }

    pub fn config(&self) -> Config {
        let text = self.toml();
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("test config rejected: {e}\n{text}"))
    }
}

// ---------------------------------------------------------------------------
// Replay

/// One input packet: timestamp (ns), the side it arrives from, the Ethernet frame.
pub type Input = (u64, Side, Vec<u8>);

/// Everything a replay produced.
#[derive(Debug)]
pub struct Outcome {
    pub to_outside: Vec<(u64, Vec<u8>)>,
    pub to_inside: Vec<(u64, Vec<u8>)>,
    pub events: Vec<Value>,
    /// `counters.json`'s `total`.
    pub counters: Value,
    /// `counters.json`'s `workers`.
    pub workers: Vec<Value>,
    /// Raw bytes of every output file, by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

pub const EVENT_KINDS: [&str; 6] = [
    "session_created",
    "session_ended",
    "block_allocated",
    "block_released",
    "refused_ports_exhausted",
    "refused_subscriber_limit",
];

impl Outcome {
    /// A total counter. Panics on an unknown name, so a typo cannot pass as zero.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .get(name)
            .unwrap_or_else(|| panic!("no counter named {name:?} in {}", self.counters))
            .as_u64()
            .expect("counter is an integer")
    }

    /// A counter of one worker.
    pub fn worker_counter(&self, worker: usize, name: &str) -> u64 {
        self.workers[worker]["counters"]
            .get(name)
            .unwrap_or_else(|| panic!("no counter named {name:?}"))
            .as_u64()
            .expect("counter is an integer")
    }

    /// Every drop counter that is not zero, by name.
    pub fn nonzero_drops(&self) -> BTreeMap<String, u64> {
        self.counters
            .as_object()
            .expect("counters object")
            .iter()
            .filter(|(k, v)| k.starts_with("drop_") && v.as_u64() != Some(0))
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect()
    }

    /// Events of one kind, in log order. Panics on an unknown kind.
    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        assert!(EVENT_KINDS.contains(&kind), "unknown event kind {kind:?}");
        self.events.iter().filter(|e| e["kind"] == kind).collect()
    }

    /// Public endpoints of the `session_created` events, in order.
    pub fn created_publics(&self) -> Vec<SocketAddrV4> {
        self.events_of("session_created")
            .iter()
            .map(|e| ev_ep(e, "public"))
            .collect()
    }

    /// Every output frame (both sides) with its direction.
    pub fn all_out(&self) -> impl Iterator<Item = (Side, u64, &Vec<u8>)> {
        self.to_outside
            .iter()
            .map(|(t, f)| (Side::Outside, *t, f))
            .chain(self.to_inside.iter().map(|(t, f)| (Side::Inside, *t, f)))
    }

    /// Every packet the engine saw ended in exactly one outcome (single worker: no handoffs).
    pub fn assert_accounting_balanced(&self) {
        let rx = self.counter("rx_inside") + self.counter("rx_outside");
        let drops: u64 = self.nonzero_drops().values().sum();
        let out = self.counter("tx_inside")
            + self.counter("tx_outside")
            + self.counter("to_kernel")
            + self.counter("handed_off")
            + drops;
        assert_eq!(rx, out, "rx {rx} != outcomes {out}: {}", self.counters);
    }
}

/// A field of an event holding "ip:port".
pub fn ev_ep(e: &Value, field: &str) -> SocketAddrV4 {
    e[field]
        .as_str()
        .unwrap_or_else(|| panic!("event has no {field}: {e}"))
        .parse()
        .unwrap_or_else(|_| panic!("event {field} is not ip:port: {e}"))
}

pub fn ev_ts(e: &Value) -> u64 {
    e["ts_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("event has no ts_ns: {e}"))
}

pub fn ev_block(e: &Value) -> (u16, u16) {
    let b = e["block"]
        .as_array()
        .unwrap_or_else(|| panic!("event has no block: {e}"));
    (b[0].as_u64().unwrap() as u16, b[1].as_u64().unwrap() as u16)
}

static RUN: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir() -> PathBuf {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tracenat-behaviour-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Replays `packets` (each side's packets keep their order) with the config `cfg`.
pub fn replay(cfg: &Cfg, packets: &[Input]) -> Outcome {
    replay_config(cfg.config(), packets)
}

pub fn replay_config(config: Config, packets: &[Input]) -> Outcome {
    replay_into(config, packets, None, None)
}

/// Replays `packets` and also writes the durable mapping log into `log_dir`.
pub fn replay_logged(cfg: &Cfg, packets: &[Input], log_dir: &Path) -> Outcome {
    replay_into(
        cfg.config(),
        packets,
        Some(log_dir.to_owned()),
        Some(cfg.toml()),
    )
}

fn replay_into(
    config: Config,
    packets: &[Input],
    log_dir: Option<PathBuf>,
    config_text: Option<String>,
) -> Outcome {
    let dir = fresh_dir();
    let split = |side: Side| -> Vec<(u64, Vec<u8>)> {
        packets
            .iter()
            .filter(|p| p.1 == side)
            .map(|(t, _, f)| (*t, f.clone()))
            .collect()
    };
    let inside = dir.join("inside.pcap");
    let outside = dir.join("outside.pcap");
    pcap::write_all(&inside, &split(Side::Inside)).expect("write inside capture");
    pcap::write_all(&outside, &split(Side::Outside)).expect("write outside capture");
    let out_dir = dir.join("out");
    let args = ReplayArgs {
        inside,
        outside: Some(outside),
        out_dir: out_dir.clone(),
        config_text,
        log_dir,
        config,
    };
    replay::run(&args).unwrap_or_else(|e| panic!("replay failed: {e}"));
    let outcome = read_outcome(&out_dir);
    if std::env::var_os("TRACENAT_KEEP_TEST_DIRS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

fn read_outcome(dir: &Path) -> Outcome {
    let mut files = BTreeMap::new();
    for name in [
        "to-outside.pcap",
        "to-inside.pcap",
        "events.jsonl",
        "counters.json",
    ] {
        files.insert(
            name.to_string(),
            std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    let to_outside = pcap::read_all(&dir.join("to-outside.pcap")).expect("read to-outside");
    let to_inside = pcap::read_all(&dir.join("to-inside.pcap")).expect("read to-inside");
    let events = String::from_utf8(files["events.jsonl"].clone())
        .expect("events utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect();
    let counters: Value = serde_json::from_slice(&files["counters.json"]).expect("counters.json");
    let workers = counters["workers"]
        .as_array()
        .expect("workers array")
        .clone();
    Outcome {
        to_outside,
        to_inside,
        events,
        counters: counters["total"].clone(),
        workers,
        files,
    }
}

// ---------------------------------------------------------------------------
// Frames

pub fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    build::build(&FrameSpec::udp(src, dst))
}

pub fn udp_payload(src: SocketAddrV4, dst: SocketAddrV4, payload: Vec<u8>) -> Vec<u8> {
    build::build(&FrameSpec::udp(src, dst).with_payload(payload))
}

pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Vec<u8> {
    build::build(&FrameSpec::tcp(src, dst, flags))
}

pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    build::build(&FrameSpec::echo_request(src, dst, ident, seq))
}

pub fn echo_reply(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    build::build(&FrameSpec::echo_reply(src, dst, ident, seq))
}

/// An ARP request (who-has `target`): the kernel's business; useful as a clock tick.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&build::DEFAULT_SRC_MAC);
    f.extend_from_slice(&ethernet::EtherType::ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&build::DEFAULT_SRC_MAC);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// A clock tick: an ARP frame from inside, which touches no NAT state.
pub fn tick_at(ts: u64) -> Input {
    (
        ts,
        Side::Inside,
        arp_request(ip("100.64.200.200"), ip("100.64.0.1")),
    )
}

/// Clock ticks every `step` ns in `from ..= to`.
pub fn ticks(from: u64, to: u64, step: u64) -> Vec<Input> {
    let mut v = Vec::new();
    let mut t = from;
    while t <= to {
        v.push(tick_at(t));
        t += step;
    }
    v
}

/// A minimal IPv6 frame (UDP, no payload).
pub fn ipv6_frame() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&build::DEFAULT_DST_MAC);
    f.extend_from_slice(&build::DEFAULT_SRC_MAC);
    f.extend_from_slice(&ethernet::EtherType::IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
    f
}

/// Offset of the IPv4 header in an Ethernet frame.
pub fn l3_offset(frame: &[u8]) -> usize {
    ethernet::parse_l2(frame).expect("link layer").l3_offset
}

/// Sorts inputs by timestamp, keeping the order of equal ones (what a capture holds).
pub fn sorted(mut v: Vec<Input>) -> Vec<Input> {
    v.sort_by_key(|p| p.0);
    v
}

// ---------------------------------------------------------------------------
// Parsing output frames

/// The packet quoted in an ICMP error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedPkt {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub total_len: usize,
    /// Ports (TCP/UDP); for ICMP echo both are the identifier.
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: Option<u8>,
    /// The quote bytes (IP header onwards, as cut).
    pub bytes: Vec<u8>,
}

impl QuotedPkt {
    pub fn src_ep(&self) -> SocketAddrV4 {
        sock(self.src, self.sport)
    }
    pub fn dst_ep(&self) -> SocketAddrV4 {
        sock(self.dst, self.dport)
    }
}

/// The fields of an output frame the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkt {
    pub vlan: Option<u16>,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub ident: u16,
    pub frag_offset: usize,
    pub more_frags: bool,
    /// TCP/UDP ports (0 for ICMP and later fragments).
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub udp_checksum: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Echo identifier.
    pub icmp_ident: Option<u16>,
    pub quoted: Option<QuotedPkt>,
    /// The IP payload (transport header onwards).
    pub l4: Vec<u8>,
}

impl Pkt {
    pub fn src_ep(&self) -> SocketAddrV4 {
        sock(self.src, self.sport)
    }
    pub fn dst_ep(&self) -> SocketAddrV4 {
        sock(self.dst, self.dport)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses an Ethernet/IPv4 frame. Panics if it is not one.
pub fn parse(frame: &[u8]) -> Pkt {
    let l2 = ethernet::parse_l2(frame).expect("link layer");
    assert_eq!(l2.ethertype, ethernet::EtherType::IPV4, "not IPv4");
    let eth = ethernet::Frame::new_checked(frame).unwrap();
    let ipp = ipv4::Packet::new_checked(&frame[l2.l3_offset..]).expect("IPv4 header");
    let l4 = ipp.payload().to_vec();
    let first = ipp.frag_offset() == 0;
    let mut p = Pkt {
        vlan: l2.vlan,
        src_mac: eth.src_addr(),
        dst_mac: eth.dst_addr(),
        src: ipp.src_addr(),
        dst: ipp.dst_addr(),
        proto: ipp.protocol(),
        ttl: ipp.ttl(),
        ident: ipp.ident(),
        frag_offset: ipp.frag_offset(),
        more_frags: ipp.more_frags(),
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        udp_checksum: None,
        icmp_type: None,
        icmp_code: None,
        icmp_ident: None,
        quoted: None,
        l4: l4.clone(),
    };
    if !first {
        return p;
    }
    match p.proto {
        ipv4::protocol::TCP | ipv4::protocol::UDP if l4.len() >= 8 => {
            p.sport = be16(&l4, 0);
            p.dport = be16(&l4, 2);
            if p.proto == ipv4::protocol::TCP && l4.len() >= 14 {
                p.tcp_flags = l4[13];
            }
            if p.proto == ipv4::protocol::UDP {
                p.udp_checksum = Some(be16(&l4, 6));
            }
        }
        ipv4::protocol::ICMP if l4.len() >= 8 => {
            p.icmp_type = Some(l4[0]);
            p.icmp_code = Some(l4[1]);
            match icmp::Kind::of(l4[0]) {
                icmp::Kind::EchoRequest | icmp::Kind::EchoReply => {
                    p.icmp_ident = Some(be16(&l4, 4))
                }
                icmp::Kind::Error => p.quoted = Some(parse_quoted(&l4[8..])),
                _ => {}
            }
        }
        _ => {}
    }
    p
}

fn parse_quoted(q: &[u8]) -> QuotedPkt {
    let inner = ipv4::Packet::new_checked_embedded(q).expect("quoted IPv4 header");
    let ihl = inner.header_len();
    let l4 = &q[ihl..];
    assert!(l4.len() >= 8, "quote shorter than header + 8 bytes");
    let proto = inner.protocol();
    let (sport, dport, icmp_type) = if proto == ipv4::protocol::ICMP {
        (be16(l4, 4), be16(l4, 4), Some(l4[0]))
    } else {
        (be16(l4, 0), be16(l4, 2), None)
    };
    QuotedPkt {
        src: inner.src_addr(),
        dst: inner.dst_addr(),
        proto,
        ttl: inner.ttl(),
        total_len: inner.total_len(),
        sport,
        dport,
        icmp_type,
        bytes: q.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// Checksums, recomputed from scratch

/// Recomputes and checks every checksum of an Ethernet/IPv4 frame: the IP header; TCP/UDP
/// under the pseudo-header (UDP 0 = none is allowed) when the frame holds the whole
/// datagram; ICMP over the whole message; for an ICMP error also the quoted IP header's
/// checksum and, when the quote holds the whole quoted packet, its transport checksum.
pub fn assert_checksums_valid(frame: &[u8]) {
    let l3 = l3_offset(frame);
    let ipp = ipv4::Packet::new_checked(&frame[l3..]).expect("IPv4 header");
    let hdr = &frame[l3..l3 + ipp.header_len()];
    assert!(
        checksum::verify(hdr),
        "IP header checksum wrong: {:02x?}",
        hdr
    );
    if ipp.frag_offset() != 0 || ipp.more_frags() {
        return; // the transport checksum covers the reassembled datagram: see `reassemble`
    }
    let payload = ipp.payload();
    verify_transport(
        ipp.src_addr(),
        ipp.dst_addr(),
        ipp.protocol(),
        payload,
        "outer",
    );
    if ipp.protocol() == ipv4::protocol::ICMP && icmp::Kind::of(payload[0]) == icmp::Kind::Error {
        let q = &payload[8..];
        let inner = ipv4::Packet::new_checked_embedded(q).expect("quoted IPv4 header");
        let ihl = inner.header_len();
        assert!(
            checksum::verify(&q[..ihl]),
            "quoted IP header checksum wrong: {:02x?}",
            &q[..ihl]
        );
        if inner.total_len() <= q.len() && inner.frag_offset() == 0 && !inner.more_frags() {
            let inner_l4 = &q[ihl..inner.total_len()];
            verify_transport(
                inner.src_addr(),
                inner.dst_addr(),
                inner.protocol(),
                inner_l4,
                "quoted",
            );
        }
    }
}

fn verify_transport(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8], what: &str) {
    match proto {
        ipv4::protocol::TCP => {
            assert!(
                checksum::verify_l4(src, dst, proto, l4),
                "{what} TCP checksum wrong ({src} -> {dst})"
            );
        }
        ipv4::protocol::UDP => {
            let c = be16(l4, 6);
            assert!(
                c == 0 || checksum::verify_l4(src, dst, proto, l4),
                "{what} UDP checksum {c:#06x} wrong ({src} -> {dst})"
            );
        }
        ipv4::protocol::ICMP => {
            assert!(
                checksum::verify(l4),
                "{what} ICMP checksum wrong: {:02x?}",
                &l4[..l4.len().min(8)]
            );
        }
        _ => {}
    }
}

/// Reassembles fragment frames (any order) into (src, dst, protocol, IP payload); checks
/// the pieces tile the datagram exactly and the last one ends it.
pub fn reassemble(frames: &[&[u8]]) -> (Ipv4Addr, Ipv4Addr, u8, Vec<u8>) {
    let mut pieces: Vec<(usize, bool, Vec<u8>, Ipv4Addr, Ipv4Addr, u8)> = frames
        .iter()
        .map(|f| {
            let p = ipv4::Packet::new_checked(&f[l3_offset(f)..]).expect("IPv4");
            (
                p.frag_offset(),
                p.more_frags(),
                p.payload().to_vec(),
                p.src_addr(),
                p.dst_addr(),
                p.protocol(),
            )
        })
        .collect();
    pieces.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    for (i, (off, mf, bytes, src, dst, proto)) in pieces.iter().enumerate() {
        assert_eq!(*off, data.len(), "fragment gap or overlap");
        assert_eq!(
            (*src, *dst, *proto),
            (pieces[0].3, pieces[0].4, pieces[0].5),
            "fragments disagree on addresses"
        );
        assert_eq!(*mf, i + 1 != pieces.len(), "MF flag wrong on fragment {i}");
        data.extend_from_slice(bytes);
    }
    (pieces[0].3, pieces[0].4, pieces[0].5, data)
}

/// Checks the transport checksum of a reassembled datagram.
pub fn assert_datagram_checksum_valid(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) {
    verify_transport(src, dst, proto, l4, "reassembled");
}

/// Rewrites the TTL of a frame's IPv4 header, fixing the header checksum.
pub fn set_ttl(frame: &mut [u8], ttl: u8) {
    let l3 = l3_offset(frame);
    let mut p = ipv4::Packet::new_unchecked(&mut frame[l3..]);
    p.set_ttl(ttl);
    p.fill_checksum();
}

/// Frames of `out` whose IPv4 destination (or source) is `addr`.
pub fn frames_to(out: &[(u64, Vec<u8>)], addr: Ipv4Addr) -> Vec<&Vec<u8>> {
    out.iter()
        .map(|(_, f)| f)
        .filter(|f| parse(f).dst == addr)
        .collect()
}

pub fn frames_from(out: &[(u64, Vec<u8>)], addr: Ipv4Addr) -> Vec<&Vec<u8>> {
    out.iter()
        .map(|(_, f)| f)
        .filter(|f| parse(f).src == addr)
        .collect()
}

// Keep the wire modules reachable for tests that need raw views.
pub use tracenat::wire::ipv4 as wire_ipv4;

/// An ICMP error about the packet in `original_frame` that quotes all of it (RFC 1812
/// allows up to 576 bytes), so the quoted transport checksum can be checked too.
pub fn icmp_error_full_quote(
    original_frame: &[u8],
    msg_type: u8,
    code: u8,
    from: Ipv4Addr,
) -> Vec<u8> {
    let orig = build::ip_packet(original_frame).to_vec();
    let dst = ipv4::Packet::new_checked(&orig[..]).unwrap().src_addr();
    let spec = FrameSpec::new(
        from,
        dst,
        L4Spec::IcmpError {
            msg_type,
            code,
            original: orig,
        },
    );
    build::build(&spec)
}

// ---------------------------------------------------------------------------
// The binary, as an operator runs it

/// Runs the `tracenat` binary with `args`.
pub fn tracenat(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tracenat"))
        .args(args)
        .output()
        .expect("run tracenat")
}

/// Standard output of a command that must have succeeded (its output shown if not).
pub fn ok(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh directory for one test: `<tmp>/tracenat-<suite>-<name>-<pid>`.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracenat-{suite}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Every record `tracenat log decode --format json` prints for `log`.
pub fn decoded(log: &Path) -> Vec<Value> {
    let out = ok(tracenat(&[
        "log",
        "decode",
        "--dir",
        log.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]));
    out.lines()
        .map(|l| serde_json::from_str(l).expect("decode prints JSON lines"))
        .collect()
}
