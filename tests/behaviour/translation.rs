//! Outbound translation, paired pooling and endpoint-independent mapping.

use super::*;

// ===========================================================================
// 1. Outbound translation and replies

#[test]
fn outbound_udp_is_translated_and_reply_returns_to_subscriber() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(at(0, 0), udp_payload(a, r, b"hello".to_vec()))];
    let o = replay(&cfg, &pk);
    let out = only(&o.to_outside);
    assert_checksums_valid(out);
    let p = parse(out);
    assert!(
        in_default_pool(p.src),
        "source {} not a pool address",
        p.src
    );
    assert!(p.sport >= 1024, "public port {} below 1024", p.sport);
    assert_eq!(p.dst_ep(), r);
    assert_eq!(p.ttl, 63, "TTL not decremented");
    assert_eq!(&p.l4[8..], b"hello");
    let public = p.src_ep();
    let created = o.events_of("session_created");
    assert_eq!(created.len(), 1);
    assert_eq!(ev_ep(created[0], "inside"), a);
    assert_eq!(ev_ep(created[0], "public"), public);
    assert_eq!(ev_ep(created[0], "dest"), r);
    assert_eq!(created[0]["protocol"], 17);

    pk.push(outs(at(0, 10), udp_payload(r, public, b"world".to_vec())));
    let o = replay(&cfg, &pk);
    let back = only(&o.to_inside);
    assert_checksums_valid(back);
    let q = parse(back);
    assert_eq!(q.src_ep(), r, "reply source changed");
    assert_eq!(
        q.dst_ep(),
        a,
        "reply not returned to the subscriber endpoint"
    );
    assert_eq!(q.ttl, 63);
    assert_eq!(&q.l4[8..], b"world");
    assert_eq!(o.counter("tx_inside"), 1);
    assert_eq!(o.counter("tx_outside"), 1);
    assert_eq!(
        o.counter("sessions_created"),
        1,
        "reply must not create a session"
    );
}

#[test]
fn zero_udp_checksum_stays_zero_both_ways() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let f = build::build(
        &FrameSpec::udp(a, r)
            .with_payload(vec![1, 2, 3])
            .with_zero_udp_checksum(),
    );
    let mut pk = vec![ins(at(0, 0), f)];
    let o = replay(&cfg, &pk);
    let p = parse(only(&o.to_outside));
    assert_eq!(
        p.udp_checksum,
        Some(0),
        "absent UDP checksum must stay absent"
    );
    assert_checksums_valid(only(&o.to_outside));
    let g = build::build(&FrameSpec::udp(r, p.src_ep()).with_zero_udp_checksum());
    pk.push(outs(at(0, 5), g));
    let o = replay(&cfg, &pk);
    let q = parse(only(&o.to_inside));
    assert_eq!(q.udp_checksum, Some(0));
    assert_eq!(q.dst_ep(), a);
}

#[test]
fn outbound_tcp_handshake_is_translated_both_ways() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let r = ep("198.51.100.10:80");
    let mut pk = vec![ins(at(0, 0), build::pad(tcp(a, r, SYN)))];
    let o = replay(&cfg, &pk);
    let syn = only(&o.to_outside);
    assert_checksums_valid(syn);
    let p = parse(syn);
    assert!(in_default_pool(p.src));
    assert!(p.sport >= 1024);
    assert_eq!(p.dst_ep(), r);
    assert_eq!(p.tcp_flags, SYN);
    assert_eq!(p.ttl, 63);
    let public = p.src_ep();
    pk.push(outs(at(0, 10), tcp(r, public, SYN | ACK)));
    pk.push(ins(at(0, 20), tcp(a, r, ACK)));
    let o = replay(&cfg, &pk);
    let synack = only(&o.to_inside);
    assert_checksums_valid(synack);
    let q = parse(synack);
    assert_eq!(
        (q.src_ep(), q.dst_ep(), q.tcp_flags, q.ttl),
        (r, a, SYN | ACK, 63)
    );
    assert_eq!(o.to_outside.len(), 2);
    let ack = &o.to_outside[1].1;
    assert_checksums_valid(ack);
    assert_eq!(
        parse(ack).src_ep(),
        public,
        "the ACK must use the same mapping"
    );
    assert_eq!(o.counter("sessions_created"), 1);
}

#[test]
fn icmp_echo_identifier_is_translated_and_restored() {
    let cfg = Cfg::new();
    let a = ip(A);
    let r = ip(R);
    let mut pk = vec![ins(at(0, 0), echo_request(a, r, 7, 1))];
    let o = replay(&cfg, &pk);
    let req = only(&o.to_outside);
    assert_checksums_valid(req);
    let p = parse(req);
    assert!(in_default_pool(p.src));
    assert_eq!(p.dst, r);
    assert_eq!(p.icmp_type, Some(icmp::ECHO_REQUEST));
    let ident = p.icmp_ident.unwrap();
    assert!(
        ident >= 1024,
        "identifier {ident} not translated into the port range"
    );
    assert_eq!(p.ttl, 63);
    pk.push(outs(at(0, 10), echo_reply(r, p.src, ident, 1)));
    let o = replay(&cfg, &pk);
    let rep = only(&o.to_inside);
    assert_checksums_valid(rep);
    let q = parse(rep);
    assert_eq!(
        (q.src, q.dst, q.icmp_type, q.icmp_ident),
        (r, a, Some(icmp::ECHO_REPLY), Some(7))
    );
    assert_eq!(q.ttl, 63);
}

#[test]
fn public_ports_never_below_1024_across_many_sessions() {
    let cfg = Cfg::new();
    let r = ip(R);
    let mut pk = Vec::new();
    let mut n = 0u64;
    for s in 0..60u8 {
        let sub = Ipv4Addr::new(100, 64, 3, s + 2);
        for port in [1u16, 53, 123, 1023] {
            pk.push(ins(at(0, n), udp(sock(sub, port), sock(r, 53))));
            pk.push(ins(at(0, n), tcp(sock(sub, port), sock(r, 80), SYN)));
            n += 1;
        }
        pk.push(ins(at(0, n), echo_request(sub, r, s as u16, 1)));
        n += 1;
    }
    let o = replay(&cfg, &pk);
    assert_eq!(
        o.to_outside.len(),
        pk.len(),
        "drops: {:?}",
        o.nonzero_drops()
    );
    let mut seen: BTreeSet<(u8, SocketAddrV4)> = BTreeSet::new();
    for (_, f) in &o.to_outside {
        assert_checksums_valid(f);
        let p = parse(f);
        let port = if p.proto == 1 {
            p.icmp_ident.unwrap()
        } else {
            p.sport
        };
        assert!(
            port >= 1024,
            "public port/identifier {port} below 1024: {p:?}"
        );
        assert!(in_default_pool(p.src));
        assert!(
            seen.insert((p.proto, sock(p.src, port))),
            "public endpoint {}:{port} given twice",
            p.src
        );
    }
}

// ===========================================================================
// 2. Paired pooling

#[test]
fn one_subscriber_uses_one_public_address_for_all_protocols() {
    let cfg = Cfg::new();
    let r = ip(R);
    let mut pk = Vec::new();
    // Interleave 12 subscribers so the allocator has every chance to spread one of them.
    for round in 0..3u16 {
        for s in 0..12u8 {
            let sub = Ipv4Addr::new(100, 64, 4, s + 1);
            let t = at(0, (round as u64) * 100 + s as u64);
            pk.push(ins(t, tcp(sock(sub, 40000 + round), sock(r, 80), SYN)));
            pk.push(ins(t, udp(sock(sub, 5000 + round), sock(r, 53))));
            pk.push(ins(t, echo_request(sub, r, 100 + round, 1)));
        }
    }
    let o = replay(&cfg, &pk);
    assert_eq!(
        o.to_outside.len(),
        pk.len(),
        "drops: {:?}",
        o.nonzero_drops()
    );
    let mut by_sub: HashMap<Ipv4Addr, BTreeSet<Ipv4Addr>> = HashMap::new();
    for e in o.events_of("session_created") {
        by_sub
            .entry(*ev_ep(e, "inside").ip())
            .or_default()
            .insert(*ev_ep(e, "public").ip());
    }
    assert_eq!(by_sub.len(), 12);
    for (sub, addrs) in &by_sub {
        assert_eq!(addrs.len(), 1, "subscriber {sub} spread over {addrs:?}");
    }
    // And the packets agree with the events.
    for (_, f) in &o.to_outside {
        let p = parse(f);
        assert!(in_default_pool(p.src));
        assert!(by_sub.values().any(|addrs| addrs.contains(&p.src)));
    }
}

#[test]
fn subscribers_spread_over_the_pool_addresses() {
    let cfg = Cfg::new();
    let mut pk = Vec::new();
    for s in 0..40u8 {
        let sub = Ipv4Addr::new(100, 64, 5, s + 1);
        pk.push(ins(
            at(0, s as u64),
            udp(sock(sub, 5000), ep("198.51.100.10:53")),
        ));
    }
    let o = replay(&cfg, &pk);
    let mut per_addr: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for (_, f) in &o.to_outside {
        *per_addr.entry(parse(f).src).or_default() += 1;
    }
    assert_eq!(per_addr.len(), 4, "40 subscribers on only {per_addr:?}");
    let max = *per_addr.values().max().unwrap();
    let min = *per_addr.values().min().unwrap();
    assert!(max - min <= 2, "unbalanced pairing: {per_addr:?}");
}

// ===========================================================================
// 3. Endpoint-independent mapping

#[test]
fn same_inside_endpoint_gets_same_public_endpoint_towards_any_remote() {
    let cfg = Cfg::new();
    let a_udp = ep("100.64.1.10:5000");
    let a_tcp = ep("100.64.1.10:40000");
    let pk = vec![
        ins(at(0, 0), udp(a_udp, ep("198.51.100.10:53"))),
        ins(at(0, 1), udp(a_udp, ep("198.51.100.99:123"))),
        ins(at(0, 2), udp(a_udp, ep("192.0.2.77:9999"))),
        ins(at(0, 3), tcp(a_tcp, ep("198.51.100.10:80"), SYN)),
        ins(at(0, 4), tcp(a_tcp, ep("198.51.100.99:443"), SYN)),
    ];
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 5);
    let srcs: Vec<SocketAddrV4> = o
        .to_outside
        .iter()
        .map(|(_, f)| parse(f).src_ep())
        .collect();
    assert_eq!(srcs[0], srcs[1]);
    assert_eq!(srcs[0], srcs[2]);
    assert_eq!(srcs[3], srcs[4]);
    assert_eq!(o.counter("mappings_created"), 2);
    assert_eq!(o.counter("sessions_created"), 5);
}
