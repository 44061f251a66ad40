//! Fragments and TTL.

use super::*;

// ===========================================================================
// 9. Fragments

#[test]
fn outbound_fragments_all_translated() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:9999");
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let big = build::build(
        &FrameSpec::udp(a, r)
            .with_payload(payload.clone())
            .with_ident(0x4242),
    );
    let frags = build::fragment(&big, 1000);
    assert_eq!(frags.len(), 4);
    let pk: Vec<Input> = frags
        .iter()
        .enumerate()
        .map(|(i, f)| ins(at(0, i as u64), f.clone()))
        .collect();
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 4, "drops: {:?}", o.nonzero_drops());
    let public = parse(&o.to_outside[0].1).src_ep();
    assert!(in_default_pool(*public.ip()));
    assert!(public.port() >= 1024);
    for (_, f) in &o.to_outside {
        assert_checksums_valid(f);
        let p = parse(f);
        assert_eq!(
            p.src,
            *public.ip(),
            "fragment left with the subscriber's address"
        );
        assert_eq!(p.dst, *r.ip());
        assert_eq!(p.ttl, 63);
        assert_eq!(p.ident, 0x4242);
    }
    let refs: Vec<&[u8]> = o.to_outside.iter().map(|(_, f)| &f[..]).collect();
    let (src, dst, proto, l4) = reassemble(&refs);
    assert_eq!(u16::from_be_bytes([l4[0], l4[1]]), public.port());
    assert_eq!(&l4[8..], &payload[..]);
    assert_datagram_checksum_valid(src, dst, proto, &l4);
    assert_eq!(o.counter("fragments_translated"), 3);
}

#[test]
fn later_fragments_before_the_first_are_dropped() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:9999");
    let big = build::build(
        &FrameSpec::udp(a, r)
            .with_payload(vec![9; 3000])
            .with_ident(0x2000),
    );
    let frags = build::fragment(&big, 1000);
    let pk = vec![
        ins(at(0, 0), frags[1].clone()),
        ins(at(0, 1), frags[2].clone()),
        ins(at(0, 2), frags[3].clone()),
        ins(at(0, 3), frags[0].clone()),
    ];
    let o = replay(&cfg, &pk);
    assert_eq!(o.counter("drop_fragment_out_of_order"), 3);
    assert_eq!(o.to_outside.len(), 1);
    assert_eq!(parse(&o.to_outside[0].1).frag_offset, 0);
    // No later fragment left with the private source address.
    assert!(
        o.to_outside
            .iter()
            .all(|(_, f)| in_default_pool(parse(f).src))
    );
}

#[test]
fn inbound_fragmented_reply_is_translated() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:9999");
    let (mut pk, public) = open_udp(&cfg, a, r);
    let payload: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let big = build::build(
        &FrameSpec::udp(r, public)
            .with_payload(payload.clone())
            .with_ident(0x777),
    );
    for (i, f) in build::fragment(&big, 800).into_iter().enumerate() {
        pk.push(outs(at(0, 10 + i as u64), f));
    }
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_inside.len(), 4, "drops: {:?}", o.nonzero_drops());
    for (_, f) in &o.to_inside {
        assert_checksums_valid(f);
        let p = parse(f);
        assert_eq!(p.dst, *a.ip(), "fragment not sent to the subscriber");
        assert_eq!(p.src, *r.ip());
        assert_eq!(p.ttl, 63);
    }
    let refs: Vec<&[u8]> = o.to_inside.iter().map(|(_, f)| &f[..]).collect();
    let (src, dst, proto, l4) = reassemble(&refs);
    assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), a.port());
    assert_eq!(&l4[8..], &payload[..]);
    assert_datagram_checksum_valid(src, dst, proto, &l4);
}

/// `limits.fragments` notes are all taken: a first fragment that would open a session is
/// dropped before it opens one — no port, no event, nothing counted against the subscriber.
#[test]
fn a_first_fragment_the_table_cannot_note_opens_no_session() {
    let cfg = Cfg::new().with("limits.fragments", "1");
    let r = ep("198.51.100.10:9999");
    let first_of = |src: SocketAddrV4, ident: u16| {
        let whole = FrameSpec::udp(src, r)
            .with_payload(vec![7; 2000])
            .with_ident(ident);
        build::fragment(&build::build(&whole), 1000).remove(0)
    };
    let (a1, a2) = (ep("100.64.1.10:5000"), ep("100.64.1.10:5001"));
    let pk = vec![
        ins(at(0, 0), first_of(a1, 1)), // takes the only note
        ins(at(0, 1), first_of(a2, 2)), // no room: dropped
    ];
    let o = replay(&cfg, &pk);
    assert_eq!(o.counter("drop_fragment_table_full"), 1);
    assert_eq!(o.to_outside.len(), 1);
    let created: Vec<SocketAddrV4> = o
        .events_of("session_created")
        .into_iter()
        .map(|e| ev_ep(e, "inside"))
        .collect();
    assert_eq!(created, [a1], "the dropped first fragment opened a session");
}

// ===========================================================================
// 10. TTL

#[test]
fn ttl_expiring_outbound_gets_time_exceeded_from_inside_address() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:33434");
    let r = ep("198.51.100.10:33435");
    let orig = build::build(
        &FrameSpec::udp(a, r)
            .with_ttl(1)
            .with_payload(vec![0xab; 12]),
    );
    let o = replay(&cfg, &[ins(at(0, 0), orig.clone())]);
    assert!(o.to_outside.is_empty());
    let f = only(&o.to_inside);
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!(
        p.src,
        ip("100.64.0.1"),
        "time exceeded not from the inside address"
    );
    assert_eq!(p.dst, *a.ip());
    assert_eq!(
        (p.icmp_type, p.icmp_code),
        (Some(icmp::TIME_EXCEEDED), Some(0))
    );
    assert_eq!(
        p.dst_mac,
        build::DEFAULT_SRC_MAC,
        "not sent back to the sender's MAC"
    );
    let q = p.quoted.unwrap();
    let original_ip = build::ip_packet(&orig);
    assert_eq!(
        &q.bytes[..],
        &original_ip[..28],
        "quote is not the original header + 8 bytes"
    );
    assert_eq!(o.counter("time_exceeded_sent"), 1);
    assert!(
        o.events.is_empty(),
        "an expired packet must not open a session"
    );
}

#[test]
fn ttl_expiring_with_drop_action_is_silent() {
    let cfg = Cfg::new().with("ttl.expired", "\"drop\"");
    let a = ep("100.64.1.10:33434");
    let r = ep("198.51.100.10:33435");
    let o = replay(
        &cfg,
        &[ins(
            at(0, 0),
            build::build(&FrameSpec::udp(a, r).with_ttl(1)),
        )],
    );
    assert!(o.to_outside.is_empty() && o.to_inside.is_empty());
    assert_eq!(o.counter("drop_ttl_expired"), 1);
    assert_eq!(o.counter("time_exceeded_sent"), 0);
}

#[test]
fn ttl_two_goes_out_with_ttl_one() {
    let cfg = Cfg::new();
    let f =
        build::build(&FrameSpec::udp(ep("100.64.1.10:5000"), ep("198.51.100.10:53")).with_ttl(2));
    let o = replay(&cfg, &[ins(at(0, 0), f)]);
    assert_eq!(parse(only(&o.to_outside)).ttl, 1);
}

/// `count` TTL-1 packets from A, each of a new flow, `spacing` apart.
fn expiring_packets(count: u64, spacing: u64) -> Vec<Input> {
    let r = ep("198.51.100.10:33435");
    (0..count)
        .map(|i| {
            let frame = FrameSpec::udp(sock(ip(A), 30000 + i as u16), r).with_ttl(1);
            ins(at(0, 0) + i * spacing, build::build(&frame))
        })
        .collect()
}

#[test]
fn time_exceeded_is_rate_limited() {
    let cfg = Cfg::new().with("ttl.icmp-rate", "10");
    let o = replay(&cfg, &expiring_packets(25, 0));
    assert_eq!(o.to_inside.len(), 10);
    assert_eq!(o.counter("time_exceeded_sent"), 10);
    assert_eq!(o.counter("time_exceeded_rate_limited"), 15);
    assert_eq!(o.counter("drop_ttl_expired"), 15);
}

/// Over a minute of TTL-expiring packets a little slower than the limit can take, as many
/// Time Exceeded go out as the limit allows: the bucket keeps the part of a token it has
/// earned between packets.
#[test]
fn time_exceeded_rate_limit_holds_over_time() {
    let cfg = Cfg::new().with("ttl.icmp-rate", "5");
    let o = replay(&cfg, &expiring_packets(400, 150 * MS));
    // 60 s at 5 per second, after a full bucket of 5: 305 at the most.
    let sent = o.counter("time_exceeded_sent");
    assert!(
        (300..=305).contains(&sent),
        "{sent} Time Exceeded in 60 s at 5 per second"
    );
}

/// Every error type of RFC 1812 §4.3.2.7, the ones the NAT translates (3, 11, 12) and the
/// ones it does not (Source Quench 4, Redirect 5).
#[test]
fn no_time_exceeded_about_an_icmp_error() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (mut pk, public) = open_udp(&cfg, a, r);
    pk.push(outs(at(0, 10), udp(r, public)));
    let delivered = only(&replay(&cfg, &pk).to_inside).clone();
    let types = [3, 4, 5, 11, 12];
    for (i, msg_type) in types.into_iter().enumerate() {
        let mut err = build::icmp_error_for(&delivered, msg_type, 0, *a.ip());
        set_ttl(&mut err, 1);
        pk.push(ins(at(0, 20 + i as u64), err));
    }
    let o = replay(&cfg, &pk);
    assert_eq!(
        o.to_inside.len(),
        1,
        "an ICMP error was answered with an ICMP error"
    );
    assert_eq!(o.counter("drop_ttl_expired"), types.len() as u64);
}

/// RFC 1812 §4.3.2.7 (RFC 5508 §7.2 has the NAT send Time Exceeded as a router does): no
/// ICMP error to a source that is not one host — "this network", broadcast, multicast,
/// loopback, reserved.
#[test]
fn no_time_exceeded_to_a_source_that_is_not_one_host() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (mut pk, public) = open_udp(&cfg, a, r);
    let sources = [
        "224.0.0.5",
        "0.0.0.0",
        "255.255.255.255",
        "127.0.0.1",
        "240.0.0.1",
    ];
    for (i, src) in sources.into_iter().enumerate() {
        let frame = FrameSpec::udp(sock(ip(src), 53), public).with_ttl(1);
        pk.push(outs(at(1, i as u64), build::build(&frame)));
    }
    // The same from one host is answered: the test can tell.
    let frame = FrameSpec::udp(r, public).with_ttl(1);
    pk.push(outs(at(1, 10), build::build(&frame)));
    let o = replay(&cfg, &pk);
    let answered: Vec<Ipv4Addr> = o.to_outside[1..]
        .iter()
        .map(|(_, f)| parse(f).dst)
        .collect();
    assert_eq!(
        answered,
        [*r.ip()],
        "Time Exceeded sent to a non-host source"
    );
    assert_eq!(o.counter("drop_ttl_expired"), sources.len() as u64);
}
