//! ICMP errors and hairpinning.

use super::*;

// ===========================================================================
// 7. ICMP errors

/// Sends one outbound packet, then the ICMP error `make_error` builds from its translated
/// form; returns the outcome and the translated frame.
fn icmp_error_case(
    cfg: &Cfg,
    first: Vec<u8>,
    make_error: impl Fn(&[u8]) -> Vec<u8>,
) -> (Outcome, Vec<u8>) {
    let mut pk = vec![ins(at(0, 0), first)];
    let o = replay(cfg, &pk);
    let translated = only(&o.to_outside).clone();
    pk.push(outs(at(0, 50), make_error(&translated)));
    (replay(cfg, &pk), translated)
}

#[test]
fn icmp_error_about_outbound_udp_is_translated_back() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (o, translated) = icmp_error_case(&cfg, udp(a, r), |t| {
        build::icmp_error_for(t, icmp::DST_UNREACHABLE, 3, ip(ROUTER))
    });
    let f = only(&o.to_inside);
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!(p.src, ip(ROUTER));
    assert_eq!(p.dst, *a.ip(), "outer destination not the subscriber");
    assert_eq!((p.icmp_type, p.icmp_code), (Some(3), Some(3)));
    assert_eq!(p.ttl, 63);
    let q = p.quoted.expect("quote");
    assert_eq!(q.src_ep(), a, "quoted source not the inside endpoint");
    assert_eq!(q.dst_ep(), r);
    assert_eq!(q.proto, 17);
    assert_eq!(q.ttl, parse(&translated).ttl, "quoted TTL changed");
    assert_eq!(o.counter("icmp_errors_translated"), 1);
}

#[test]
fn icmp_error_with_full_quote_keeps_quoted_transport_checksum_valid() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (o, _) = icmp_error_case(&cfg, udp_payload(a, r, b"query".to_vec()), |t| {
        icmp_error_full_quote(t, icmp::DST_UNREACHABLE, 3, ip(ROUTER))
    });
    let f = only(&o.to_inside);
    assert_checksums_valid(f); // includes the quoted UDP checksum: the whole datagram is quoted
    let q = parse(f).quoted.unwrap();
    assert_eq!(q.src_ep(), a);
    assert_eq!(&q.bytes[28..], b"query");

    let at_ = ep("100.64.1.10:40000");
    let (o, _) = icmp_error_case(&cfg, tcp(at_, ep("198.51.100.10:80"), SYN), |t| {
        icmp_error_full_quote(t, icmp::DST_UNREACHABLE, 1, ip(ROUTER))
    });
    let f = only(&o.to_inside);
    assert_checksums_valid(f); // quoted TCP checksum too
    assert_eq!(parse(f).quoted.unwrap().src_ep(), at_);
}

#[test]
fn icmp_error_about_outbound_tcp_is_translated_back() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let r = ep("198.51.100.10:80");
    let (o, _) = icmp_error_case(&cfg, tcp(a, r, SYN), |t| {
        build::icmp_error_for(t, icmp::DST_UNREACHABLE, 1, ip(ROUTER))
    });
    let f = only(&o.to_inside);
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!((p.src, p.dst), (ip(ROUTER), *a.ip()));
    let q = p.quoted.unwrap();
    assert_eq!((q.src_ep(), q.dst_ep(), q.proto), (a, r, 6));
}

#[test]
fn icmp_error_about_outbound_echo_is_translated_back() {
    let cfg = Cfg::new();
    let a = ip(A);
    let (o, _) = icmp_error_case(&cfg, echo_request(a, ip(R), 7, 1), |t| {
        build::icmp_error_for(t, icmp::TIME_EXCEEDED, 0, ip(ROUTER))
    });
    let f = only(&o.to_inside);
    assert_checksums_valid(f); // the quoted echo is complete: its checksum is checked too
    let p = parse(f);
    assert_eq!(
        (p.src, p.dst, p.icmp_type),
        (ip(ROUTER), a, Some(icmp::TIME_EXCEEDED))
    );
    let q = p.quoted.unwrap();
    assert_eq!(q.src, a);
    assert_eq!(q.dst, ip(R));
    assert_eq!(q.proto, 1);
    assert_eq!(q.sport, 7, "quoted echo identifier not restored");
}

#[test]
fn icmp_error_quoting_no_live_session_is_dropped() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(at(0, 0), udp(a, r))];
    let translated = only(&replay(&cfg, &pk).to_outside).clone();
    let public = parse(&translated).src_ep();
    // A packet we never sent: from an unused public port.
    let other_port = if public.port() == 60000 { 60001 } else { 60000 };
    let never = udp(sock(*public.ip(), other_port), r);
    pk.push(outs(
        at(0, 10),
        build::icmp_error_for(&never, 3, 3, ip(ROUTER)),
    ));
    // Our mapping, but to a remote it never talked to.
    let other_remote = udp(public, ep("198.51.100.11:53"));
    pk.push(outs(
        at(0, 20),
        build::icmp_error_for(&other_remote, 3, 3, ip(ROUTER)),
    ));
    // After the session expired, the error about the real packet is stale.
    pk.extend(probe_around(at(300, 0)));
    pk.push(outs(
        at(302, 0),
        build::icmp_error_for(&translated, 3, 3, ip(ROUTER)),
    ));
    let o = replay(&cfg, &sorted(pk));
    assert!(o.to_inside.is_empty(), "error about no session delivered");
    assert_eq!(o.counter("drop_icmp_error_no_session"), 3);
}

#[test]
fn icmp_error_from_subscriber_about_inbound_udp_is_translated_out() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (mut pk, public) = open_udp(&cfg, a, r);
    pk.push(outs(at(0, 10), udp(r, public)));
    let delivered = only(&replay(&cfg, &pk).to_inside).clone();
    // The subscriber's stack answers port unreachable about what it received.
    pk.push(ins(
        at(0, 20),
        build::icmp_error_for(&delivered, icmp::DST_UNREACHABLE, 3, *a.ip()),
    ));
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 2);
    let f = &o.to_outside[1].1;
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!(
        (p.src, p.dst),
        (*public.ip(), *r.ip()),
        "outer header not translated"
    );
    assert_eq!((p.icmp_type, p.icmp_code), (Some(3), Some(3)));
    let q = p.quoted.unwrap();
    assert_eq!(q.src_ep(), r);
    assert_eq!(
        q.dst_ep(),
        public,
        "quoted destination not the public endpoint"
    );
    assert_eq!(o.counter("icmp_errors_translated"), 1);
}

/// An error quoting a later fragment has payload where ports would be: it matches no
/// session, even when those bytes happen to spell the session's ports.
#[test]
fn icmp_error_quoting_a_later_fragment_is_not_translated() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let (mut pk, public) = open_udp(&cfg, a, r);
    // The second fragment starts 1000 bytes into the UDP datagram, 992 into its payload.
    let mut payload = vec![7u8; 2000];
    payload[992..994].copy_from_slice(&public.port().to_be_bytes());
    payload[994..996].copy_from_slice(&r.port().to_be_bytes());
    let whole = build::build(&FrameSpec::udp(a, r).with_payload(payload).with_ident(9));
    for (i, f) in build::fragment(&whole, 1000).into_iter().enumerate() {
        pk.push(ins(at(0, 10 + i as u64), f));
    }
    let later = replay(&cfg, &pk).to_outside[2].1.clone();
    pk.push(outs(
        at(0, 50),
        build::icmp_error_for(&later, icmp::DST_UNREACHABLE, 3, ip(ROUTER)),
    ));
    let o = replay(&cfg, &pk);
    assert_eq!(o.counter("icmp_errors_translated"), 0);
    assert_eq!(o.counter("drop_icmp_error_no_session"), 1);
}

/// A subscriber's flow, a reply delivered to it, and then a Destination Unreachable about
/// that reply from `router`, a router in front of the subscriber; returns the outcome, the
/// subscriber's public endpoint and the remote.
fn error_from_router_case(
    cfg: &Cfg,
    a: SocketAddrV4,
    router: Ipv4Addr,
) -> (Outcome, SocketAddrV4, SocketAddrV4) {
    let r = ep("198.51.100.10:53");
    let (mut pk, public) = open_udp(cfg, a, r);
    pk.push(outs(at(0, 10), udp(r, public)));
    let delivered = only(&replay(cfg, &pk).to_inside).clone();
    pk.push(ins(
        at(0, 20),
        build::icmp_error_for(&delivered, icmp::DST_UNREACHABLE, 1, router),
    ));
    (replay(cfg, &pk), public, r)
}

/// The error goes out as if the subscriber had sent it: from its public endpoint's
/// address, quoting the reply as the remote sent it.
fn assert_error_translated_out(o: &Outcome, public: SocketAddrV4, r: SocketAddrV4) {
    assert_eq!(o.to_outside.len(), 2, "the error was not sent out");
    let f = &o.to_outside[1].1;
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!((p.src, p.dst), (*public.ip(), *r.ip()));
    assert_eq!((p.icmp_type, p.icmp_code), (Some(3), Some(1)));
    let q = p.quoted.expect("quote");
    assert_eq!((q.src_ep(), q.dst_ep()), (r, public));
    assert_eq!(o.counter("icmp_errors_translated"), 1);
}

/// RFC 5508 REQ-5: an error from a router between the NAT and the subscriber, whose address
/// is not a subscriber's, is about the subscriber's session all the same.
#[test]
fn icmp_error_from_a_router_in_front_of_the_subscriber_is_translated_out() {
    let cfg = Cfg::new();
    let router = ip("100.65.0.1"); // outside pool.subscribers (100.64.0.0/16)
    let (o, public, r) = error_from_router_case(&cfg, ep("100.64.1.10:5000"), router);
    assert_eq!(o.counter("drop_source_not_subscriber"), 0);
    assert_error_translated_out(&o, public, r);
}

/// With two workers the error belongs to the worker of the subscriber it is about, not to
/// the worker of the router that sent it.
#[test]
fn icmp_error_from_a_router_goes_to_the_worker_of_the_subscriber_it_is_about() {
    let cfg = Cfg::new().with("workers.count", "2");
    let router = ip("100.64.0.254"); // inside pool.subscribers
    let a = subscriber_of_another_worker(&cfg, router, 1);
    let (o, public, r) = error_from_router_case(&cfg, sock(a, 5000), router);
    assert_error_translated_out(&o, public, r);
}

/// `b` answers the packet `a` hairpinned to it with Port Unreachable.
fn hairpinned_error_case(cfg: &Cfg, a: SocketAddrV4, b: SocketAddrV4) -> (Outcome, SocketAddrV4) {
    let (mut pk, pb) = hairpin_inputs(cfg, a, b);
    let delivered = only(&replay(cfg, &pk).to_inside).clone();
    pk.push(ins(
        at(0, 20),
        build::icmp_error_for(&delivered, icmp::DST_UNREACHABLE, 3, *b.ip()),
    ));
    (replay(cfg, &pk), pb)
}

/// RFC 5508 REQ-7: the error is turned around inside the NAT and reaches `a` as if `b`'s
/// public endpoint had sent it, quoting what `a` sent, one hop later.
fn assert_hairpinned_error_reaches_the_sender(o: &Outcome, a: SocketAddrV4, pb: SocketAddrV4) {
    assert_eq!(o.to_outside.len(), 1, "the error leaked outside");
    assert_eq!(o.to_inside.len(), 2, "the error did not come back inside");
    let f = &o.to_inside[1].1;
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!((p.src, p.dst), (*pb.ip(), *a.ip()));
    assert_eq!((p.icmp_type, p.icmp_code), (Some(3), Some(3)));
    assert_eq!(p.ttl, 63, "the NAT is one hop");
    let q = p.quoted.expect("quote");
    assert_eq!((q.src_ep(), q.dst_ep()), (a, pb));
    assert_eq!(o.counter("icmp_errors_translated"), 1);
    assert_eq!(o.counter("hairpinned"), 2, "the packet and its error");
}

#[test]
fn icmp_error_about_a_hairpinned_packet_is_turned_around() {
    let cfg = Cfg::new();
    let (a, b) = (ep("100.64.1.10:5000"), ep("100.64.1.20:6000"));
    let (o, pb) = hairpinned_error_case(&cfg, a, b);
    assert_hairpinned_error_reaches_the_sender(&o, a, pb);
}

#[test]
fn icmp_error_about_a_packet_hairpinned_across_workers_is_turned_around() {
    let cfg = Cfg::new().with("workers.count", "2");
    let a = ip("100.64.1.10");
    let b = subscriber_of_another_worker(&cfg, a, 2);
    let (a, b) = (sock(a, 5000), sock(b, 6000));
    let (o, pb) = hairpinned_error_case(&cfg, a, b);
    assert_hairpinned_error_reaches_the_sender(&o, a, pb);
    assert!(
        o.counter("handed_off") >= 1,
        "a and b live on different workers"
    );
}

// ===========================================================================
// 8. Hairpinning

#[test]
fn hairpinning_delivers_to_the_other_subscriber() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let b = ep("100.64.1.20:6000");
    let (o, pb) = hairpin_case(&cfg, a, b);
    assert_eq!(o.to_outside.len(), 1, "hairpinned packet leaked outside");
    let f = only(&o.to_inside);
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!(p.dst_ep(), b, "not delivered to B's inside endpoint");
    let pa = public_of(&o, a, 17);
    assert_eq!(p.src_ep(), pa, "source is not A's public endpoint");
    assert_ne!(pa, pb);
    assert_eq!(p.ttl, 63, "hairpin should cost one TTL");
    assert_eq!(&p.l4[8..], b"hairpin");
    assert_eq!(o.counter("hairpinned"), 1);
}

#[test]
fn hairpinning_disabled_drops() {
    let cfg = Cfg::new().with("filtering.hairpinning", "false");
    let (o, _) = hairpin_case(&cfg, ep("100.64.1.10:5000"), ep("100.64.1.20:6000"));
    assert!(o.to_inside.is_empty());
    assert_eq!(o.to_outside.len(), 1);
    assert_eq!(o.counter("drop_hairpin_disabled"), 1);
    assert_eq!(o.counter("hairpinned"), 0);
}
