//! Cross-protocol property tests: frames from `build`, rewritten the way the
//! translator rewrites them, and hostile input into every parser.

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::collection::vec;
use proptest::prelude::*;

use super::build::{self, FrameSpec, L4Spec};
use super::checksum::{update_udp16, update_udp32, update16, update32};
use super::ethernet::{self, EtherType};
use super::ipv4::{self, protocol};
use super::{Result, WireError, arp, icmp, tcp, udp};

fn addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn l4_spec() -> impl Strategy<Value = L4Spec> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(|(src_port, dst_port, seq, ack, flags)| L4Spec::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
            }),
        (any::<u16>(), any::<u16>(), any::<bool>()).prop_map(
            |(src_port, dst_port, zero_checksum)| L4Spec::Udp {
                src_port,
                dst_port,
                zero_checksum,
            }
        ),
        (any::<bool>(), any::<u16>(), any::<u16>()).prop_map(|(request, ident, seq)| {
            L4Spec::IcmpEcho {
                request,
                ident,
                seq,
            }
        }),
    ]
}

prop_compose! {
    fn frame_spec()(
        src in addr(),
        dst in addr(),
        vlan in proptest::option::of(0u16..4096),
        ttl in 2u8..=255,
        ident in any::<u16>(),
        dont_frag in any::<bool>(),
        l4 in l4_spec(),
        payload in vec(any::<u8>(), 0..300),
    ) -> FrameSpec {
        FrameSpec { vlan, ttl, ident, dont_frag, payload, ..FrameSpec::new(src, dst, l4) }
    }
}

/// What the translator changes in one packet.
#[derive(Debug, Clone)]
struct Rewrite {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// New source port, or echo identifier for ICMP.
    port: u16,
    /// Also decrement the TTL (the TTL/protocol word changes).
    hop: bool,
}

prop_compose! {
    fn rewrite()(src in addr(), dst in addr(), port in any::<u16>(), hop in any::<bool>()) -> Rewrite {
        Rewrite { src, dst, port, hop }
    }
}

/// Rewrite `ip` in place using only incremental checksum updates.
fn rewrite_incrementally(ip: &mut [u8], rw: &Rewrite) {
    let mut p = ipv4::Packet::new_checked(&mut *ip).unwrap();
    let (old_src, old_dst) = (u32::from(p.src_addr()), u32::from(p.dst_addr()));
    let (new_src, new_dst) = (u32::from(rw.src), u32::from(rw.dst));
    let mut c = p.checksum();
    c = update32(c, old_src, new_src);
    c = update32(c, old_dst, new_dst);
    if rw.hop {
        let old_word = u16::from_be_bytes([p.ttl(), p.protocol()]);
        let new_word = u16::from_be_bytes([p.ttl() - 1, p.protocol()]);
        p.set_ttl(p.ttl() - 1);
        c = update16(c, old_word, new_word);
    }
    p.set_src_addr(rw.src);
    p.set_dst_addr(rw.dst);
    p.set_checksum(c);

    let proto = p.protocol();
    let l4 = p.payload_mut();
    match proto {
        protocol::TCP => {
            let mut t = tcp::Packet::new_checked(l4).unwrap();
            let mut c = update32(t.checksum(), old_src, new_src);
            c = update32(c, old_dst, new_dst);
            c = update16(c, t.src_port(), rw.port);
            t.set_src_port(rw.port);
            t.set_checksum(c);
        }
        protocol::UDP => {
            let mut u = udp::Packet::new_checked(l4).unwrap();
            let mut c = update_udp32(u.checksum(), old_src, new_src);
            c = update_udp32(c, old_dst, new_dst);
            c = update_udp16(c, u.src_port(), rw.port);
            u.set_src_port(rw.port);
            u.set_checksum(c);
        }
        protocol::ICMP => {
            // No pseudo-header: only the identifier enters the checksum.
            let mut m = icmp::Packet::new_checked(l4).unwrap();
            let c = update16(m.checksum(), m.echo_ident(), rw.port);
            m.set_echo_ident(rw.port);
            m.set_checksum(c);
        }
        other => panic!("unexpected protocol {other}"),
    }
}

/// Recompute every checksum of `ip` from scratch, returning (ip, l4) values.
fn full_checksums(ip: &[u8]) -> (u16, u16) {
    let mut copy = ip.to_vec();
    let mut p = ipv4::Packet::new_checked(&mut copy[..]).unwrap();
    p.fill_checksum();
    let (src, dst, proto, ip_c) = (p.src_addr(), p.dst_addr(), p.protocol(), p.checksum());
    let l4 = p.payload_mut();
    let l4_c = match proto {
        protocol::TCP => {
            let mut t = tcp::Packet::new_checked(l4).unwrap();
            t.fill_checksum(src, dst);
            t.checksum()
        }
        protocol::UDP => {
            let mut u = udp::Packet::new_checked(l4).unwrap();
            if u.checksum() == 0 {
                return (ip_c, 0); // "no checksum" must survive translation
            }
            u.fill_checksum(src, dst);
            u.checksum()
        }
        _ => {
            let mut m = icmp::Packet::new_checked(l4).unwrap();
            m.fill_checksum();
            m.checksum()
        }
    };
    (ip_c, l4_c)
}

/// Parse a frame as deeply as the translator would, touching every getter.
/// Must never panic; returns the first error.
fn parse_deep(frame: &[u8]) -> Result<()> {
    let l2 = ethernet::parse_l2(frame)?;
    let eth = ethernet::Frame::new_checked(frame)?;
    let _ = (
        eth.dst_addr(),
        eth.src_addr(),
        eth.ethertype(),
        eth.payload(),
    );
    let l3 = &frame[l2.l3_offset..];
    match l2.ethertype {
        EtherType::ARP => parse_arp(l3),
        EtherType::IPV4 => parse_ipv4(ipv4::Packet::new_checked(l3)?),
        _ => Ok(()),
    }
}

fn parse_arp(buf: &[u8]) -> Result<()> {
    let a = arp::Packet::new_checked(buf)?;
    let _ = (a.is_ethernet_ipv4(), a.operation(), a.sender_hw_addr());
    let _ = (
        a.sender_proto_addr(),
        a.target_hw_addr(),
        a.target_proto_addr(),
    );
    Ok(())
}

fn parse_ipv4(p: ipv4::Packet<&[u8]>) -> Result<()> {
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp_ecn(),
        p.total_len(),
        p.ident(),
    );
    let _ = (
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
    );
    let _ = (p.ttl(), p.checksum(), p.options(), p.header_bytes());
    let _ = (p.verify_checksum(), ipv4::Repr::parse(&p));
    let (src, dst) = (p.src_addr(), p.dst_addr());
    let l4 = p.payload();
    match p.protocol() {
        protocol::TCP => {
            let t = tcp::Packet::new_checked(l4)?;
            let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
            let _ = (t.flags(), t.syn(), t.ack(), t.fin(), t.rst(), t.window());
            let _ = (t.options(), t.payload(), t.urgent_ptr());
            let _ = t.verify_checksum(src, dst);
        }
        protocol::UDP => {
            let u = udp::Packet::new_checked(l4)?;
            let _ = (u.src_port(), u.dst_port(), u.len(), u.payload());
            let _ = u.verify_checksum(src, dst);
        }
        protocol::ICMP => {
            let m = icmp::Packet::new_checked(l4)?;
            let _ = (
                m.msg_type(),
                m.code(),
                m.kind(),
                m.echo_ident(),
                m.echo_seq_no(),
            );
            let _ = (m.rest_of_header(), m.payload(), m.verify_checksum());
            if m.kind() == icmp::Kind::Error {
                let inner = m.embedded()?;
                let _ = (inner.src_addr(), inner.dst_addr(), inner.payload());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every `new_checked` on the same bytes, so that each sees hostile input.
fn check_every_parser(bytes: &[u8]) {
    let _ = parse_deep(bytes);
    let _ = parse_arp(bytes);
    if let Ok(p) = ipv4::Packet::new_checked(bytes) {
        let _ = parse_ipv4(p);
    }
    if let Ok(p) = ipv4::Packet::new_checked_embedded(bytes) {
        let _ = (p.payload(), p.options(), p.verify_checksum());
    }
    if let Ok(t) = tcp::Packet::new_checked(bytes) {
        let _ = (t.payload(), t.options());
    }
    if let Ok(u) = udp::Packet::new_checked(bytes) {
        let _ = u.payload();
    }
    if let Ok(m) = icmp::Packet::new_checked(bytes) {
        let _ = (m.payload(), m.embedded().map(|p| p.payload().len()));
    }
}

fn ip_of(frame: &mut [u8]) -> &mut [u8] {
    let l2 = ethernet::parse_l2(frame).unwrap();
    &mut frame[l2.l3_offset..]
}

proptest! {
    #[test]
    fn incremental_rewrite_matches_full_recompute(
        spec in frame_spec(),
        rw in rewrite(),
        padded in any::<bool>(),
    ) {
        let mut frame = build::build(&spec);
        if padded {
            frame = build::pad(frame);
        }
        prop_assert_eq!(parse_deep(&frame), Ok(()));
        let udp_zero = matches!(spec.l4, L4Spec::Udp { zero_checksum: true, .. });
        let ip = ip_of(&mut frame);
        rewrite_incrementally(ip, &rw);

        let p = ipv4::Packet::new_checked(&*ip).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!((p.src_addr(), p.dst_addr()), (rw.src, rw.dst));
        prop_assert_eq!(p.ttl(), if rw.hop { spec.ttl - 1 } else { spec.ttl });
        let (full_ip, full_l4) = full_checksums(ip);
        prop_assert_eq!(p.checksum(), full_ip);

        let l4 = p.payload();
        let (l4_checksum, port) = match p.protocol() {
            protocol::TCP => {
                let t = tcp::Packet::new_checked(l4).unwrap();
                prop_assert!(t.verify_checksum(rw.src, rw.dst));
                (t.checksum(), t.src_port())
            }
            protocol::UDP => {
                let u = udp::Packet::new_checked(l4).unwrap();
                prop_assert!(u.verify_checksum(rw.src, rw.dst));
                prop_assert_eq!(u.checksum() == 0, udp_zero);
                (u.checksum(), u.src_port())
            }
            _ => {
                let m = icmp::Packet::new_checked(l4).unwrap();
                // An all-zero echo reply sums to +0 in full but -0
                // incrementally; both verify, only one can equal.
                prop_assume!(m.into_inner().iter().any(|b| *b != 0));
                let m = icmp::Packet::new_checked(l4).unwrap();
                prop_assert!(m.verify_checksum());
                (m.checksum(), m.echo_ident())
            }
        };
        prop_assert_eq!(l4_checksum, full_l4);
        prop_assert_eq!(port, rw.port);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..128)) {
        check_every_parser(&bytes);
    }

    #[test]
    fn random_l3_bytes_behind_valid_l2_never_panic(
        vlan in any::<bool>(),
        ethertype in prop_oneof![Just(EtherType::IPV4), Just(EtherType::ARP)],
        mut body in vec(any::<u8>(), 0..96),
        version_ihl in 0x40u8..0x50,
    ) {
        // Steer random bytes past the version check so deeper parsers run.
        if let Some(b) = body.first_mut() {
            *b = version_ihl;
        }
        let mut frame = vec![0u8; 12];
        if vlan {
            frame.extend_from_slice(&EtherType::VLAN.to_be_bytes());
            frame.extend_from_slice(&[0, 1]);
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&body);
        check_every_parser(&frame);
    }

    #[test]
    fn every_truncation_is_rejected_without_panic(spec in frame_spec()) {
        let frame = build::build(&spec);
        prop_assert_eq!(parse_deep(&frame), Ok(()));
        for cut in 0..frame.len() {
            let short = &frame[..cut];
            check_every_parser(short);
            // Every cut loses bytes the IP total length claims.
            prop_assert!(parse_deep(short).is_err(), "cut at {} accepted", cut);
        }
    }

    #[test]
    fn corrupted_frames_never_panic(
        spec in frame_spec(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut frame = build::build(&spec);
        for (i, v) in edits {
            let at = i.index(frame.len());
            frame[at] = v;
        }
        check_every_parser(&frame);
    }

    #[test]
    fn fragments_reassemble(
        spec in frame_spec(),
        extra in vec(any::<u8>(), 0..3000),
        max in 8usize..1500,
    ) {
        let mut spec = spec;
        spec.payload.extend_from_slice(&extra);
        let frame = build::build(&spec);
        let original = ipv4::Packet::new_checked(build::ip_packet(&frame)).unwrap();
        let frags = build::fragment(&frame, max);
        let whole = original.payload();
        // A packet that fits is left whole; otherwise pieces are 8-aligned.
        let expected = if whole.len() <= max { 1 } else { whole.len().div_ceil(max & !7) };
        prop_assert_eq!(frags.len(), expected);
        if expected == 1 {
            prop_assert_eq!(&frags[0], &frame);
        }

        let mut reassembled = vec![None; whole.len()];
        for (i, f) in frags.iter().enumerate() {
            let last = i + 1 == frags.len();
            let l2 = ethernet::parse_l2(f).unwrap();
            prop_assert_eq!(l2.vlan, spec.vlan);
            let p = ipv4::Packet::new_checked(&f[l2.l3_offset..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(p.ident(), spec.ident);
            prop_assert_eq!(p.dont_frag(), spec.dont_frag);
            prop_assert_eq!(p.more_frags(), !last);
            prop_assert_eq!(p.frag_offset() % 8, 0);
            prop_assert!(p.payload().len() <= max);
            prop_assert_eq!(p.total_len(), f.len() - l2.l3_offset);
            for (j, b) in p.payload().iter().enumerate() {
                let slot = &mut reassembled[p.frag_offset() + j];
                prop_assert!(slot.is_none(), "overlap at {}", p.frag_offset() + j);
                *slot = Some(*b);
            }
        }
        let bytes: Option<Vec<u8>> = reassembled.into_iter().collect();
        prop_assert_eq!(bytes.as_deref(), Some(whole));
    }

    #[test]
    fn icmp_error_embeds_original(spec in frame_spec(), from in addr()) {
        let orig = build::build(&spec);
        let err = build::icmp_error_for(&orig, icmp::DST_UNREACHABLE, 3, from);
        prop_assert_eq!(parse_deep(&err), Ok(()));
        let ip = ipv4::Packet::new_checked(build::ip_packet(&err)).unwrap();
        prop_assert_eq!((ip.src_addr(), ip.dst_addr()), (from, spec.src));
        let m = icmp::Packet::new_checked(ip.payload()).unwrap();
        prop_assert!(m.verify_checksum());
        let inner = m.embedded().unwrap();
        prop_assert_eq!((inner.src_addr(), inner.dst_addr()), (spec.src, spec.dst));
        let orig_ip = build::ip_packet(&orig);
        prop_assert_eq!(inner.total_len(), orig_ip.len());
        prop_assert_eq!(m.payload(), &orig_ip[..20 + 8]);
    }
}

#[test]
fn truncated_vlan_and_qinq_errors() {
    let spec = FrameSpec::udp(
        SocketAddrV4::new([10, 0, 0, 1].into(), 1),
        SocketAddrV4::new([10, 0, 0, 2].into(), 2),
    );
    let mut frame = build::build(&spec.with_vlan(7));
    assert_eq!(ethernet::parse_l2(&frame[..16]), Err(WireError::Truncated));
    frame[12..14].copy_from_slice(&EtherType::QINQ.to_be_bytes());
    assert_eq!(parse_deep(&frame), Err(WireError::UnsupportedVlan));
}

#[test]
fn ethernet_padding_is_not_payload() {
    let spec = FrameSpec::echo_request([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 1);
    let frame = build::pad(build::build(&spec));
    assert!(frame.len() > 14 + 28);
    let ip = ipv4::Packet::new_checked(&frame[14..]).unwrap();
    assert_eq!(ip.payload().len(), 8);
    assert!(
        icmp::Packet::new_checked(ip.payload())
            .unwrap()
            .verify_checksum()
    );
}
