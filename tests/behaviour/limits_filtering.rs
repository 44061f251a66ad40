//! Limits, exhaustion and filtering.

use super::*;

// ===========================================================================
// 4. Limits and exhaustion

#[test]
fn sessions_per_subscriber_limit_refuses_further_sessions() {
    let cfg = Cfg::new().with("limits.sessions-per-subscriber", "3");
    let a = ep("100.64.1.10:5000");
    let mut pk = Vec::new();
    for i in 0..5u16 {
        pk.push(ins(at(0, i as u64), udp(a, sock(ip(R), 1000 + i))));
    }
    // Another subscriber is not affected.
    pk.push(ins(
        at(0, 10),
        udp(ep("100.64.1.20:5000"), ep("198.51.100.10:53")),
    ));
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 4);
    assert_eq!(o.counter("drop_subscriber_session_limit"), 2);
    // The first refusal is logged with its endpoints; the second, in the same interval,
    // only as a count in the interval's summary (written when the replay ends).
    let refused = o.events_of("refused_subscriber_limit");
    assert_eq!(ev_ep(refused[0], "inside"), a);
    assert_eq!(ev_ep(refused[0], "dest"), ep("198.51.100.10:1003"));
    assert_eq!(refused[0]["protocol"], 17);
    assert_eq!(refused[0]["refused"], 1);
    let counted: u64 = refused.iter().filter_map(|e| e["refused"].as_u64()).sum();
    assert_eq!(counted, 2);
    assert_eq!(o.counter("refusals_aggregated"), 1);
}

#[test]
fn ports_per_subscriber_limit_refuses_new_mappings_per_protocol() {
    let cfg = Cfg::new().with("limits.ports-per-subscriber", "2");
    let a = ip(A);
    let r = ep("198.51.100.10:53");
    let pk = vec![
        ins(at(0, 0), udp(sock(a, 5000), r)),
        ins(at(0, 1), udp(sock(a, 5001), r)),
        ins(at(0, 2), udp(sock(a, 5002), r)), // third UDP mapping: refused
        ins(at(0, 3), udp(sock(a, 5000), ep("198.51.100.11:53"))), // existing mapping: fine
        ins(at(0, 4), tcp(sock(a, 5002), ep("198.51.100.10:80"), SYN)), // TCP has its own quota
    ];
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 4, "drops: {:?}", o.nonzero_drops());
    assert_eq!(o.counter("drop_subscriber_port_limit"), 1);
    let refused = o.events_of("refused_subscriber_limit");
    assert_eq!(refused.len(), 1);
    assert_eq!(ev_ep(refused[0], "inside"), sock(a, 5002));
    assert!(o.to_outside.iter().all(|(_, f)| parse(f).sport != 0));
}

#[test]
fn port_exhaustion_is_refused_and_logged() {
    let cfg = Cfg::new()
        .with("pool.public", "[\"203.0.113.1/32\"]")
        .with("allocation.port-min", "1024")
        .with("allocation.port-max", "1027");
    let r = ep("198.51.100.10:53");
    let pk = vec![
        ins(at(0, 0), udp(ep("100.64.1.10:5000"), r)),
        ins(at(0, 1), udp(ep("100.64.1.10:5001"), r)),
        ins(at(0, 2), udp(ep("100.64.1.10:5002"), r)),
        ins(at(0, 3), udp(ep("100.64.1.20:6000"), r)),
        ins(at(0, 4), udp(ep("100.64.1.20:6001"), r)), // fifth: no port left
        ins(at(0, 5), udp(ep("100.64.1.30:7000"), r)), // new subscriber: none either
    ];
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 4);
    let ports: BTreeSet<u16> = o.to_outside.iter().map(|(_, f)| parse(f).sport).collect();
    assert_eq!(ports, (1024..=1027).collect());
    assert_eq!(o.counter("drop_ports_exhausted"), 2);
    let refused = o.events_of("refused_ports_exhausted");
    assert_eq!(refused.len(), 2);
    assert_eq!(ev_ep(refused[0], "inside"), ep("100.64.1.20:6001"));
    assert_eq!(ev_ep(refused[1], "inside"), ep("100.64.1.30:7000"));
    assert_eq!(ev_ep(refused[1], "dest"), r);
}

// ===========================================================================
// 5. Filtering

#[test]
fn unsolicited_inbound_is_dropped() {
    let cfg = Cfg::new();
    let pk = vec![
        outs(
            at(0, 0),
            udp(ep("198.51.100.10:53"), ep("203.0.113.1:40000")),
        ),
        outs(
            at(0, 1),
            tcp(ep("198.51.100.10:80"), ep("203.0.113.2:40000"), SYN),
        ),
        outs(at(0, 2), echo_reply(ip(R), ip("203.0.113.3"), 4000, 1)),
    ];
    let o = replay(&cfg, &pk);
    assert!(o.to_inside.is_empty());
    assert_eq!(o.counter("drop_no_mapping"), 3);
    assert!(o.events.is_empty());
}

/// A subscriber's UDP mapping towards 198.51.100.10:53, then a UDP packet from `remote` to
/// its public endpoint, under filtering `mode`.
fn filtering_case(mode: &str, remote: SocketAddrV4) -> (Outcome, SocketAddrV4) {
    let cfg = Cfg::new().with("filtering.mode", &format!("\"{mode}\""));
    let a = ep("100.64.1.10:5000");
    let mut pk = vec![ins(at(0, 0), udp(a, ep("198.51.100.10:53")))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
    pk.push(outs(at(1, 0), udp(remote, public)));
    (replay(&cfg, &pk), public)
}

#[test]
fn endpoint_independent_filtering_admits_new_remote_udp() {
    let r2 = ep("198.51.100.99:7777");
    let (o, public) = filtering_case("endpoint-independent", r2);
    let f = only(&o.to_inside);
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!(p.src_ep(), r2);
    assert_eq!(p.dst_ep(), ep("100.64.1.10:5000"));
    let created = o.events_of("session_created");
    assert_eq!(created.len(), 2);
    assert_eq!(ev_ep(created[1], "dest"), r2);
    assert_eq!(ev_ep(created[1], "public"), public);
    assert_eq!(ev_ep(created[1], "inside"), ep("100.64.1.10:5000"));
}

#[test]
fn address_and_port_dependent_filtering_drops_new_remote_udp() {
    for remote in ["198.51.100.99:7777", "198.51.100.10:54"] {
        let (o, _) = filtering_case("address-and-port-dependent", ep(remote));
        assert!(o.to_inside.is_empty(), "{remote} got through");
        assert_eq!(o.counter("drop_filtered"), 1);
        assert_eq!(o.events_of("session_created").len(), 1);
    }
    // The remote the subscriber talks to still gets through.
    let (o, _) = filtering_case("address-and-port-dependent", ep("198.51.100.10:53"));
    assert_eq!(o.to_inside.len(), 1);
}

#[test]
fn inbound_tcp_from_new_remote_needs_a_syn_even_with_eif() {
    let cfg = Cfg::new(); // endpoint-independent by default
    let a = ep("100.64.1.10:40000");
    let mut pk = vec![ins(at(0, 0), tcp(a, ep("198.51.100.10:80"), SYN))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
    let r2 = ep("198.51.100.99:9999");
    pk.push(outs(at(1, 0), tcp(r2, public, ACK)));
    pk.push(outs(at(1, 1), tcp(r2, public, ACK | PSH)));
    pk.push(outs(at(1, 2), tcp(r2, public, RST)));
    let o = replay(&cfg, &pk);
    assert!(o.to_inside.is_empty());
    assert_eq!(o.counter("drop_filtered"), 3);
    // A SYN from that remote is admitted (simultaneous open, RFC 5382 REQ-3 with EIF).
    pk.push(outs(at(1, 3), tcp(r2, public, SYN)));
    let o = replay(&cfg, &pk);
    let f = only(&o.to_inside);
    assert_eq!(parse(f).dst_ep(), a);
}
