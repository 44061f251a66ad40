//! The one-probe fast path against the reference path (mapping lookup, then session lookup,
//! checksums computed from the packet): random mixes of new, established, expiring,
//! hairpinned and ICMP-error traffic, from both sides, go through an engine of each kind
//! (the fast one in batches, the reference one frame by frame), and every verdict, every
//! translated byte, every event and every counter must agree. Batches run past the
//! batch's prefetch distance and its 64-frame chunks; frames go to the NAT's own addresses,
//! broadcast and multicast too; with two workers, to subscribers the other worker owns.

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;
use tracenat::config::Config;
use tracenat::engine::event::VecSink;
use tracenat::engine::{Engine, Lookup, Side, Verdict};
use tracenat::wire::build::{self, FrameSpec};
use tracenat::wire::{checksum, icmp};

const SEC: u64 = 1_000_000_000;

/// The NAT's own addresses on each side: frames to them belong to the host.
const INSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 100);
const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn config(filtering: &str, workers: u32) -> Config {
    Config::from_toml_str(&format!(
        "[interfaces]\ninside = \"in0\"\noutside = \"out0\"\n\
         inside-address = \"{INSIDE_ADDRESS}\"\noutside-address = \"{OUTSIDE_ADDRESS}\"\n\
         [workers]\ncount = {workers}\n\
         [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n\
         [filtering]\nmode = \"{filtering}\"\nhairpinning = true\n\
         [limits]\nmax-sessions = 64\n"
    ))
    .expect("test config")
}

/// One packet to send, in terms of small indexes into fixed sets of endpoints, so that
/// flows repeat (established), collide with mappings (new sessions on old mappings) and
/// reach public endpoints the NAT handed out (inbound, hairpinned).
#[derive(Debug, Clone)]
struct Packet {
    proto: u8,
    subscriber: u8,
    port: u8,
    remote: u8,
    /// Inbound and hairpinned packets go to the n-th public endpoint seen so far.
    public: u8,
    hairpin: bool,
    tcp_flags: u8,
    zero_udp_checksum: bool,
    icmp_error: bool,
    /// An unusual or broken header ([`mutate`]; 0: none).
    odd_shape: u8,
    /// A destination other than the flow's ([`odd_destination`]; 0: none).
    odd_destination: u8,
}

#[derive(Debug, Clone)]
struct Round {
    advance_s: u64,
    from_outside: bool,
    packets: Vec<Packet>,
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        (0u8..3, 0u8..4, 0u8..3, 0u8..3),
        (any::<u8>(), 0u8..8, any::<u8>(), any::<bool>(), 0u8..16),
        prop_oneof![4 => Just(0u8), 1 => 1u8..=ODD_SHAPES],
        prop_oneof![12 => Just(0u8), 1 => 1u8..=ODD_DESTINATIONS],
    )
        .prop_map(
            |(
                (proto, subscriber, port, remote),
                (public, hairpin, tcp_flags, z, e),
                odd_shape,
                odd_destination,
            )| {
                Packet {
                    proto,
                    subscriber,
                    port,
                    remote,
                    public,
                    hairpin: hairpin == 0,
                    tcp_flags, // all eight: CWR, ECE, URG and PSH too
                    zero_udp_checksum: z,
                    icmp_error: e == 0,
                    odd_shape,
                    odd_destination,
                }
            },
        )
}

fn opening_packet(subscriber: u8) -> Packet {
    Packet {
        proto: 1,
        subscriber,
        port: 0,
        remote: 0,
        public: 0,
        hairpin: false,
        tcp_flags: 0,
        zero_udp_checksum: false,
        icmp_error: false,
        odd_shape: 0,
        odd_destination: 0,
    }
}

fn rounds() -> impl Strategy<Value = Vec<Round>> {
    let round = (
        prop_oneof![3 => Just(0u64), 2 => 1u64..30, 1 => 100u64..400],
        any::<bool>(),
        // Mostly short; some past the prefetch distance (16) and the 64-frame chunks.
        prop_oneof![
            6 => prop::collection::vec(packet(), 1..12),
            1 => prop::collection::vec(packet(), 12..150),
        ],
    )
        .prop_map(|(advance_s, from_outside, packets)| Round {
            advance_s,
            from_outside,
            packets,
        });
    prop::collection::vec(round, 1..40)
}

fn subscriber(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 0, 1 + i)
}

fn remote(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1 + i), 80 + i as u16)
}

/// The frame for `p`, or `None` when it needs a public endpoint and none is known yet.
fn frame(p: &Packet, side: Side, publics: &[SocketAddrV4]) -> Option<Vec<u8>> {
    let public = publics
        .get(p.public as usize % publics.len().max(1))
        .copied();
    let inside = SocketAddrV4::new(subscriber(p.subscriber), 1000 + p.port as u16);
    let (src, mut dst) = match (side, p.hairpin) {
        (Side::Inside, false) => (inside, remote(p.remote)),
        (Side::Inside, true) => (inside, public?),
        (Side::Outside, _) => (remote(p.remote), public?),
    };
    if let Some(ip) = odd_destination(p.odd_destination) {
        dst.set_ip(ip);
    }
    let spec = match p.proto {
        0 => FrameSpec::tcp(src, dst, p.tcp_flags),
        1 if p.zero_udp_checksum => FrameSpec::udp(src, dst).with_zero_udp_checksum(),
        1 => FrameSpec::udp(src, dst),
        _ if side == Side::Inside => FrameSpec::echo_request(*src.ip(), *dst.ip(), src.port(), 1),
        _ => FrameSpec::echo_reply(*src.ip(), *dst.ip(), dst.port(), 1),
    };
    let mut frame = build::pad(build::build(&spec));
    if !p.icmp_error {
        mutate(&mut frame, p.odd_shape);
        return Some(frame);
    }
    // An error about the packet the other side would have sent: quote it reversed.
    let quoted = build::pad(build::build(&FrameSpec::udp(dst, src)));
    Some(build::icmp_error_for(
        &quoted,
        icmp::DST_UNREACHABLE,
        3,
        *src.ip(),
    ))
}

const ODD_DESTINATIONS: u8 = 4;

/// Destinations that are not a flow's: the NAT's own addresses, broadcast, multicast.
fn odd_destination(which: u8) -> Option<Ipv4Addr> {
    match which {
        0 => None,
        1 => Some(INSIDE_ADDRESS),
        2 => Some(OUTSIDE_ADDRESS),
        3 => Some(Ipv4Addr::BROADCAST),
        _ => Some(Ipv4Addr::new(224, 0, 0, 251)),
    }
}

const ODD_SHAPES: u8 = 18;
const IP: usize = 14;
const L4: usize = IP + 20;

/// Gives a frame an unusual shape: one the fast path leaves to the general path (another
/// valid packet — options, a VLAN tag, a fragment, TTL 1 — or a broken one), or one it
/// keeps (TTL 2, a TOS byte and the don't-fragment bit).
fn mutate(frame: &mut Vec<u8>, odd_shape: u8) {
    let set16 =
        |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_be_bytes());
    let total = u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]);
    let tcp = frame[IP + 9] == 6;
    match odd_shape {
        0 => return,
        1 => frame[IP + 8] = 1,                 // TTL 1: time exceeded
        2 => frame[IP + 8] = 0,                 // TTL 0
        3 => frame[IP + 10] ^= 0x40,            // a wrong header checksum
        4 => frame[IP + 6] |= 0x20,             // more fragments
        5 => set16(frame, IP + 6, 0x0004),      // a later fragment
        6 => set16(frame, IP + 2, total + 200), // longer than the frame
        7 => set16(frame, IP + 2, 24),          // too short for the transport header
        8 if tcp => frame[L4 + 12] = 0x40,      // TCP data offset 4 words
        8 => set16(frame, L4 + 4, total),       // UDP length past the packet
        9 if tcp => frame[L4 + 12] = 0xF0,      // TCP header past the packet
        9 => set16(frame, L4 + 4, 7),           // UDP length below its header
        10 => {
            // IHL 6: four bytes of options (end-of-list), the transport moved along.
            frame[IP] = 0x46;
            frame.splice(L4..L4, [0u8; 4]);
            set16(frame, IP + 2, total + 4);
        }
        11 => {
            // An 802.1Q tag.
            frame.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
            return;
        }
        12 => set16(frame, 12, 0x86DD), // not IPv4
        13 => frame.truncate(L4 + 4),   // cut short
        14 => frame[IP] = 0x55,         // IP version 5
        15 => frame[IP + 8] = 2,        // TTL 2: forwarded with TTL 1
        16 => frame[IP + 8] = 255,      // the highest TTL
        17 => {
            // A payload, then an Ethernet trailer the IP packet does not cover: the
            // trailer must come out untouched.
            let payload_at = L4 + if tcp { 20 } else { 8 };
            frame.truncate(IP + usize::from(total));
            frame.splice(payload_at..payload_at, [0x5Au8; 24]);
            set16(frame, IP + 2, total + 24);
            if frame[IP + 9] == 17 {
                set16(frame, L4 + 4, total + 24 - 20); // the UDP length
            }
            frame.extend_from_slice(&[0xA5; 6]);
        }
        _ => {
            frame[IP + 1] = 0xB8; // a TOS byte (DSCP EF)
            frame[IP + 6] |= 0x40; // don't fragment
        }
    }
    if !matches!(odd_shape, 3 | 11 | 12 | 13) && frame.len() >= L4 {
        set16(frame, IP + 10, 0);
        let ihl = usize::from(frame[IP] & 0x0F) * 4;
        let sum = checksum::checksum(&frame[IP..IP + ihl.min(frame.len() - IP)]);
        set16(frame, IP + 10, sum);
    }
}

/// Public endpoints the NAT announced in session events, in order of first appearance.
fn publics_seen(events: &[tracenat::engine::event::Event], into: &mut Vec<SocketAddrV4>) {
    for e in events {
        let ep = SocketAddrV4::new(Ipv4Addr::from(e.public_ip), e.public_port);
        if e.public_port != 0 && !into.contains(&ep) {
            into.push(ep);
        }
    }
}

fn compare(filtering: &str, workers: u32, rounds: &[Round]) -> Result<(), TestCaseError> {
    let cfg = config(filtering, workers);
    let mut fast = Engine::for_all_workers(&cfg, 0, |_| VecSink::default()).remove(0);
    let mut reference = Engine::for_all_workers(&cfg, 0, |_| VecSink::default()).remove(0);
    reference.set_lookup(Lookup::MappingThenSession);
    let (mut now, mut publics) = (SEC, Vec::new());
    let mut forwarded = 0;
    // Every mix starts with each subscriber opening a UDP flow, so the comparison always
    // covers translated traffic and inbound packets have public endpoints to go to.
    let opening = Round {
        advance_s: 0,
        from_outside: false,
        packets: (0..4).map(opening_packet).collect(),
    };
    for round in std::iter::once(&opening).chain(rounds) {
        now += round.advance_s * SEC;
        fast.advance(now);
        reference.advance(now);
        let side = if round.from_outside {
            Side::Outside
        } else {
            Side::Inside
        };
        let frames: Vec<Vec<u8>> = round
            .packets
            .iter()
            .filter_map(|p| frame(p, side, &publics))
            .collect();
        let mut expected_bufs = Vec::new();
        let mut expected = Vec::new();
        for f in &frames {
            let mut buf = f.clone();
            buf.resize(2048, 0);
            expected.push(reference.process(&mut buf, f.len(), side, now));
            expected_bufs.push(buf);
        }
        let mut bufs: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let mut b = f.clone();
                b.resize(2048, 0);
                b
            })
            .collect();
        let mut refs: Vec<(&mut [u8], usize)> = bufs
            .iter_mut()
            .zip(&frames)
            .map(|(b, f)| (&mut b[..], f.len()))
            .collect();
        let mut verdicts = vec![Verdict::ToKernel; refs.len()];
        fast.process_batch(&mut refs[..], side, now, &mut verdicts);
        prop_assert_eq!(&verdicts, &expected);
        prop_assert!(bufs == expected_bufs, "translated bytes differ");
        forwarded += expected
            .iter()
            .filter(|v| matches!(v, Verdict::Forward(_) | Verdict::Handoff { .. }))
            .count();
        publics_seen(&reference.sink().events, &mut publics);
    }
    // Past every timeout: each session ends, and its end event carries the last activity
    // both engines derive from the session's deadline and TCP state.
    now += 3 * 3600 * SEC;
    fast.advance(now);
    reference.advance(now);
    prop_assert_eq!(fast.live_sessions(), 0);
    prop_assert_eq!(&fast.sink().events, &reference.sink().events);
    prop_assert_eq!(
        format!("{:?}", fast.counters()),
        format!("{:?}", reference.counters())
    );
    prop_assert_eq!(fast.live_sessions(), reference.live_sessions());
    prop_assert!(
        forwarded >= opening.packets.len(),
        "the opening round was translated or handed to its worker"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fast_path_agrees_with_the_reference_endpoint_independent(rounds in rounds()) {
        compare("endpoint-independent", 1, &rounds)?;
    }

    #[test]
    fn fast_path_agrees_with_the_reference_address_and_port_dependent(rounds in rounds()) {
        compare("address-and-port-dependent", 1, &rounds)?;
    }

    #[test]
    fn fast_path_agrees_with_the_reference_on_one_of_two_workers(rounds in rounds()) {
        compare("endpoint-independent", 2, &rounds)?;
    }
}
