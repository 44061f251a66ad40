//! Malformed and non-translatable input.

use super::*;

// ===========================================================================
// 14. Malformed and non-translatable input

#[test]
fn malformed_and_foreign_frames_are_counted_not_translated() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let good = udp(a, r);
    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 0x55;
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    let mut bad_total = good.clone();
    {
        let mut p = wire_ipv4::Packet::new_unchecked(&mut bad_total[14..]);
        p.set_total_len(1400);
        p.fill_checksum();
    }
    let mut qinq = build::build(&FrameSpec::udp(a, r).with_vlan(10));
    qinq[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    let gre = build::build(&FrameSpec::raw(*a.ip(), *r.ip(), 47).with_payload(vec![0; 8]));
    let gre_in =
        build::build(&FrameSpec::raw(*r.ip(), ip("203.0.113.1"), 47).with_payload(vec![0; 8]));
    let mut tiny = udp(a, r);
    {
        let mut p = wire_ipv4::Packet::new_unchecked(&mut tiny[14..]);
        p.set_total_len(24);
        p.set_more_frags(true);
        p.fill_checksum();
    }
    tiny.truncate(14 + 24);
    let pk = vec![
        ins(at(0, 0), vec![0x02; 10]),           // shorter than Ethernet
        ins(at(0, 1), good[..14 + 10].to_vec()), // IPv4 header cut
        ins(at(0, 2), bad_sum),                  // bad IP checksum
        ins(at(0, 3), bad_version),              // version 6 in an IPv4 frame
        ins(at(0, 4), bad_total),                // total length past the frame
        ins(at(0, 5), qinq),                     // stacked VLAN tags
        ins(at(0, 6), gre),                      // GRE out
        outs(at(0, 7), gre_in),                  // GRE in
        ins(at(0, 8), arp_request(*a.ip(), ip("100.64.0.1"))), // ARP
        outs(at(0, 9), ipv6_frame()),            // IPv6
        ins(at(0, 10), udp(a, ep("100.64.0.1:53"))), // to the NAT's inside address
        outs(at(0, 11), udp(r, ep("192.0.2.1:53"))), // to the NAT's outside address
        ins(at(0, 12), udp(ep("198.51.100.77:5000"), r)), // spoofed source
        ins(at(0, 13), udp(a, ep("224.0.0.5:520"))), // multicast
        outs(at(0, 14), udp(r, ep("198.51.100.200:53"))), // not our pool
        ins(at(0, 15), tiny),                    // first fragment without ports
    ];
    let o = replay(&cfg, &pk);
    assert!(o.to_outside.is_empty(), "something malformed was forwarded");
    assert!(o.to_inside.is_empty());
    assert!(o.events.is_empty());
    let drops = o.nonzero_drops();
    let expected: BTreeMap<String, u64> = [
        ("drop_malformed_truncated", 2),
        ("drop_bad_ip_checksum", 1),
        ("drop_malformed_bad_version", 1),
        ("drop_malformed_bad_total_length", 1),
        ("drop_malformed_unsupported_vlan", 1),
        ("drop_unsupported_protocol", 2),
        ("drop_source_not_subscriber", 1),
        ("drop_not_unicast", 1),
        ("drop_not_in_pool", 1),
        ("drop_tiny_fragment", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(drops, expected);
    assert_eq!(o.counter("to_kernel"), 4);
    assert_accounting(&o, pk.len() as u64);
}

fn assert_accounting(o: &Outcome, n: u64) {
    assert_eq!(o.counter("rx_inside") + o.counter("rx_outside"), n);
    o.assert_accounting_balanced();
}

#[test]
fn vlan_tagged_frames_are_translated_with_the_tag_kept() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(
        at(0, 0),
        build::build(&FrameSpec::udp(a, r).with_vlan(100)),
    )];
    let o = replay(&cfg, &pk);
    let f = only(&o.to_outside);
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!(p.vlan, Some(100), "tag lost");
    assert!(in_default_pool(p.src));
    pk.push(outs(
        at(0, 10),
        build::build(&FrameSpec::udp(r, p.src_ep()).with_vlan(200)),
    ));
    let o = replay(&cfg, &pk);
    let g = only(&o.to_inside);
    assert_checksums_valid(g);
    let q = parse(g);
    assert_eq!(q.vlan, Some(200));
    assert_eq!(q.dst_ep(), a);
}

#[test]
fn padded_frames_keep_their_padding_and_checksums() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let r = ep("198.51.100.10:80");
    let f = build::pad(tcp(a, r, SYN));
    assert_eq!(f.len(), 60);
    let o = replay(&cfg, &[ins(at(0, 0), f)]);
    let out = only(&o.to_outside);
    assert_eq!(out.len(), 60);
    assert_checksums_valid(out);
    assert_eq!(&out[54..], &[0; 6]);
}

/// A tiny deterministic generator (xorshift) for mutating frames.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_frames_never_panic_and_are_all_accounted_for() {
    let cfg = Cfg::new().with("workers.count", "1");
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let pub_ep = ep("203.0.113.1:2000");
    let seeds: Vec<(Side, Vec<u8>)> = vec![
        (Side::Inside, udp(a, r)),
        (
            Side::Inside,
            tcp(ep("100.64.1.10:40000"), ep("198.51.100.10:80"), SYN),
        ),
        (Side::Inside, echo_request(*a.ip(), *r.ip(), 7, 1)),
        (
            Side::Inside,
            build::build(&FrameSpec::udp(a, r).with_vlan(5)),
        ),
        (Side::Outside, udp(r, pub_ep)),
        (
            Side::Outside,
            build::icmp_error_for(&udp(pub_ep, r), 3, 3, ip(ROUTER)),
        ),
        (
            Side::Outside,
            build::icmp_error_for(
                &echo_request(*pub_ep.ip(), *r.ip(), 2000, 1),
                11,
                0,
                ip(ROUTER),
            ),
        ),
        (
            Side::Inside,
            build::icmp_error_for(&udp(r, a), 3, 3, *a.ip()),
        ),
    ];
    let mut frag_seeds = build::fragment(&udp_payload(a, r, vec![1; 1500]), 512);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut pk = Vec::new();
    // Real traffic first so mutated packets can hit live state.
    for (i, (side, f)) in seeds.iter().enumerate() {
        pk.push((at(0, i as u64), *side, f.clone()));
    }
    for f in frag_seeds.drain(..) {
        pk.push(ins(at(0, 20), f));
    }
    for i in 0..1500u64 {
        let (side, base) = &seeds[rng.below(seeds.len())];
        let mut f = base.clone();
        match rng.below(4) {
            0 => {
                let n = rng.below(f.len() + 1);
                f.truncate(n);
            }
            1 => {
                // Mutate headers but fix the IP checksum, to get past the first check.
                for _ in 0..1 + rng.below(3) {
                    let at_ = 14 + rng.below(f.len() - 14);
                    f[at_] = rng.next() as u8;
                }
                if let Ok(l2) = tracenat::wire::ethernet::parse_l2(&f) {
                    let l3 = l2.l3_offset;
                    if f.len() >= l3 + 20 {
                        let ihl = (f[l3] & 0x0f) as usize * 4;
                        if f[l3] >> 4 == 4 && ihl >= 20 && l3 + ihl <= f.len() {
                            wire_ipv4::Packet::new_unchecked(&mut f[l3..]).fill_checksum();
                        }
                    }
                }
            }
            2 => {
                let extra = rng.below(40);
                for _ in 0..extra {
                    f.push(rng.next() as u8);
                }
                let at_ = rng.below(f.len());
                f[at_] ^= 1 << rng.below(8);
            }
            _ => {
                let at_ = rng.below(f.len());
                f[at_] = rng.next() as u8;
            }
        }
        pk.push((at(1, i), *side, f));
    }
    let o = replay(&cfg, &pk);
    assert_accounting(&o, pk.len() as u64);
    // Transport checksums of mutated input may be wrong already; the IP header's must not be.
    for (_, _, f) in o.all_out() {
        let l3 = l3_offset(f);
        let ihl = (f[l3] & 0x0f) as usize * 4;
        assert!(
            tracenat::wire::checksum::verify(&f[l3..l3 + ihl]),
            "forwarded frame with a bad IP checksum"
        );
    }
}

// ===========================================================================
// Edge cases

#[test]
fn udp_checksum_that_translates_to_zero_is_sent_as_ffff() {
    use tracenat::wire::checksum;
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (mut pk, public) = open_udp(&cfg, a, r);
    // Choose the last two payload bytes so that, with the public source, the datagram's
    // one's-complement sum is 0xFFFF: its checksum is 0, which UDP must send as 0xFFFF.
    let mut seg = vec![0u8; 8 + 4];
    seg[0..2].copy_from_slice(&public.port().to_be_bytes());
    seg[2..4].copy_from_slice(&r.port().to_be_bytes());
    let seg_len = seg.len() as u16;
    seg[4..6].copy_from_slice(&seg_len.to_be_bytes());
    seg[8] = 0x12;
    seg[9] = 0x34;
    let s = checksum::fold(
        checksum::pseudo_header_sum(*public.ip(), *r.ip(), 17, seg.len() as u16)
            + checksum::sum(&seg),
    );
    let x = !s;
    let payload = vec![0x12, 0x34, (x >> 8) as u8, x as u8];
    pk.push(ins(at(0, 10), udp_payload(a, r, payload)));
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 2);
    let p = parse(&o.to_outside[1].1);
    assert_eq!(p.src_ep(), public);
    assert_eq!(
        p.udp_checksum,
        Some(0xFFFF),
        "a computed checksum of 0 must be sent as 0xFFFF"
    );
    assert_checksums_valid(&o.to_outside[1].1);
}

/// `frame` with 4 bytes of IP options (NOP NOP NOP EOL) inserted, checksum fixed.
fn with_ip_options(frame: &[u8]) -> Vec<u8> {
    let l3 = l3_offset(frame);
    let mut f = frame[..l3 + 20].to_vec();
    f.extend_from_slice(&[1, 1, 1, 0]);
    f.extend_from_slice(&frame[l3 + 20..]);
    let mut p = wire_ipv4::Packet::new_unchecked(&mut f[l3..]);
    p.set_header_len(24);
    let total = p.total_len() as u16 + 4;
    p.set_total_len(total);
    p.fill_checksum();
    f
}

#[test]
fn packets_with_ip_options_are_translated_and_quoted_correctly() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(
        at(0, 0),
        with_ip_options(&udp_payload(a, r, b"opt".to_vec())),
    )];
    let o = replay(&cfg, &pk);
    let f = only(&o.to_outside).clone();
    assert_checksums_valid(&f);
    let p = parse(&f);
    assert!(in_default_pool(p.src));
    assert!(p.sport >= 1024);
    assert_eq!(p.dst_ep(), r);
    assert_eq!(&p.l4[8..], b"opt");
    let public = p.src_ep();
    pk.push(outs(at(0, 10), with_ip_options(&udp(r, public))));
    pk.push(outs(at(0, 20), build::icmp_error_for(&f, 3, 3, ip(ROUTER))));
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_inside.len(), 2, "drops: {:?}", o.nonzero_drops());
    let reply = &o.to_inside[0].1;
    assert_checksums_valid(reply);
    assert_eq!(parse(reply).dst_ep(), a);
    let err = &o.to_inside[1].1;
    assert_checksums_valid(err);
    let q = parse(err).quoted.unwrap();
    assert_eq!(
        q.src_ep(),
        a,
        "quoted endpoint behind IP options not translated"
    );
}

#[test]
fn ttl_expiring_inbound_gets_time_exceeded_from_outside_address() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (mut pk, public) = open_udp(&cfg, a, r);
    pk.push(outs(
        at(0, 10),
        build::build(&FrameSpec::udp(r, public).with_ttl(1)),
    ));
    let o = replay(&cfg, &pk);
    assert!(o.to_inside.is_empty());
    assert_eq!(o.to_outside.len(), 2);
    let f = &o.to_outside[1].1;
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!((p.src, p.dst), (ip("192.0.2.1"), *r.ip()));
    assert_eq!(p.icmp_type, Some(icmp::TIME_EXCEEDED));
    assert_eq!(
        p.quoted.unwrap().dst_ep(),
        public,
        "quote must show the packet as received"
    );
}

#[test]
fn outbound_rst_without_session_is_dropped() {
    let cfg = Cfg::new();
    let o = replay(
        &cfg,
        &[ins(
            at(0, 0),
            tcp(ep("100.64.1.10:40000"), ep("198.51.100.10:80"), RST),
        )],
    );
    assert!(o.to_outside.is_empty());
    assert_eq!(o.counter("drop_tcp_no_session"), 1);
    assert!(o.events.is_empty());
}

#[test]
fn inbound_sessions_under_eif_count_towards_the_subscriber_limit() {
    let cfg = Cfg::new().with("limits.sessions-per-subscriber", "2");
    let a = ep("100.64.1.10:5000");
    let mut pk = vec![ins(at(0, 0), udp(a, ep("198.51.100.10:53")))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
    pk.push(outs(at(0, 10), udp(ep("198.51.100.20:1000"), public)));
    pk.push(outs(at(0, 20), udp(ep("198.51.100.21:1000"), public)));
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_inside.len(), 1);
    assert_eq!(o.counter("drop_subscriber_session_limit"), 1);
    assert_eq!(o.events_of("refused_subscriber_limit").len(), 1);
}
