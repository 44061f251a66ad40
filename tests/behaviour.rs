//! Behaviour of the NAT as seen from outside: captures in, captures + events + counters out,
//! through `replay::run`. Each test drives the packet clock explicitly.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use tracenat::engine::Side;
use tracenat::engine::ports::{self, Deterministic, Ownership};
use tracenat::wire::build::{self, FrameSpec};
use tracenat::wire::icmp;

const A: &str = "100.64.1.10";
const B: &str = "100.64.1.20";
const R: &str = "198.51.100.10";
const ROUTER: &str = "198.51.100.254";

fn ins(ts: u64, frame: Vec<u8>) -> Input {
    (ts, Side::Inside, frame)
}
fn outs(ts: u64, frame: Vec<u8>) -> Input {
    (ts, Side::Outside, frame)
}

fn only(frames: &[(u64, Vec<u8>)]) -> &Vec<u8> {
    assert_eq!(
        frames.len(),
        1,
        "expected exactly one frame, got {}",
        frames.len()
    );
    &frames[0].1
}

/// The public endpoint the first session_created event of `inside` (and protocol) got.
fn public_of(o: &Outcome, inside: SocketAddrV4, protocol: u64) -> SocketAddrV4 {
    let e = o
        .events_of("session_created")
        .into_iter()
        .find(|e| ev_ep(e, "inside") == inside && e["protocol"] == protocol)
        .unwrap_or_else(|| panic!("no session_created for {inside}/{protocol}: {:?}", o.events));
    ev_ep(e, "public")
}

/// Timestamps of session_ended events of `inside` (and protocol).
fn ended(o: &Outcome, inside: SocketAddrV4, protocol: u64) -> Vec<u64> {
    o.events_of("session_ended")
        .into_iter()
        .filter(|e| ev_ep(e, "inside") == inside && e["protocol"] == protocol)
        .map(ev_ts)
        .collect()
}

/// Clock ticks every 50 ms from 3 s before `deadline` to 1 s after it.
fn probe_around(deadline: u64) -> Vec<Input> {
    ticks(deadline - 3 * SEC, deadline + SEC, 50 * MS)
}

/// The session of `inside` ended once, at or after `deadline` and within a tick (plus the
/// 50 ms probe spacing) of it.
fn assert_ended_near(o: &Outcome, inside: SocketAddrV4, protocol: u64, deadline: u64) {
    let ts = ended(o, inside, protocol);
    assert_eq!(
        ts.len(),
        1,
        "expected one session_ended for {inside}, got {ts:?}"
    );
    let t = ts[0];
    assert!(
        t >= deadline,
        "session of {inside} ended {} ms before its deadline",
        (deadline - t) / MS
    );
    assert!(
        t <= deadline + TICK + 50 * MS,
        "session of {inside} ended {} ms after its deadline",
        (t - deadline) / MS
    );
}

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

// ===========================================================================
// 6. TCP state and timers (default timeouts), driven by the packet clock

#[test]
fn tcp_syn_only_session_ends_after_transitory_timeout() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let mut pk = vec![ins(at(0, 0), tcp(a, ep("198.51.100.10:80"), SYN))];
    pk.push(tick_at(at(200, 0)));
    pk.extend(probe_around(at(240, 0)));
    let o = replay(&cfg, &pk);
    assert_ended_near(&o, a, 6, at(240, 0));
    assert_eq!(o.counter("sessions_expired"), 1);
}

fn handshake(a: SocketAddrV4, r: SocketAddrV4, cfg: &Cfg) -> (Vec<Input>, SocketAddrV4) {
    let pk = vec![ins(at(0, 0), tcp(a, r, SYN))];
    let public = parse(only(&replay(cfg, &pk).to_outside)).src_ep();
    let mut pk = pk;
    pk.push(outs(at(0, 10), tcp(r, public, SYN | ACK)));
    pk.push(ins(at(0, 20), tcp(a, r, ACK)));
    (pk, public)
}

#[test]
fn tcp_established_session_lives_two_hours_four_minutes() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let r = ep("198.51.100.10:80");
    let (mut pk, _) = handshake(a, r, &cfg);
    let last = at(0, 20);
    pk.push(tick_at(last + 5 * MIN + SEC));
    pk.push(tick_at(last + 60 * MIN));
    pk.push(tick_at(last + 120 * MIN));
    pk.extend(probe_around(last + 124 * MIN));
    let o = replay(&cfg, &pk);
    assert_ended_near(&o, a, 6, last + 124 * MIN);
}

#[test]
fn tcp_established_session_refreshed_by_traffic() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let r = ep("198.51.100.10:80");
    let (mut pk, public) = handshake(a, r, &cfg);
    pk.push(outs(at(3600, 0), tcp(r, public, ACK | PSH)));
    pk.push(tick_at(at(0, 20) + 124 * MIN + SEC));
    pk.extend(probe_around(at(3600, 0) + 124 * MIN));
    let o = replay(&cfg, &pk);
    assert_ended_near(&o, a, 6, at(3600, 0) + 124 * MIN);
}

#[test]
fn tcp_fin_both_ways_ends_session_after_transitory_timeout() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let r = ep("198.51.100.10:80");
    let (mut pk, public) = handshake(a, r, &cfg);
    pk.push(ins(at(60, 0), tcp(a, r, FIN | ACK)));
    pk.push(outs(at(60, 10), tcp(r, public, FIN | ACK)));
    pk.push(ins(at(60, 20), tcp(a, r, ACK)));
    let last = at(60, 20);
    pk.push(tick_at(last + 200 * SEC));
    pk.extend(probe_around(last + 4 * MIN));
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 4);
    assert_eq!(o.to_inside.len(), 2);
    assert_ended_near(&o, a, 6, last + 4 * MIN);
}

#[test]
fn tcp_rst_ends_session_after_transitory_timeout_not_immediately() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:40000");
    let r = ep("198.51.100.10:80");
    let (mut pk, public) = handshake(a, r, &cfg);
    let rst = at(30, 0);
    pk.push(outs(rst, tcp(r, public, RST)));
    pk.push(tick_at(rst + SEC));
    // A segment right after the RST still goes through: the session is not gone.
    pk.push(ins(rst + 2 * SEC, tcp(a, r, ACK)));
    let o = replay(&cfg, &pk);
    assert!(
        ended(&o, a, 6).is_empty(),
        "RST ended the session immediately"
    );
    assert_eq!(o.to_inside.len(), 2, "RST not delivered");
    assert_eq!(o.to_outside.len(), 3);
    let last = rst + 2 * SEC;
    pk.push(tick_at(last + 200 * SEC));
    pk.extend(probe_around(last + 4 * MIN));
    let o = replay(&cfg, &pk);
    assert_ended_near(&o, a, 6, last + 4 * MIN);
}

#[test]
fn udp_session_ends_after_five_minutes_idle() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let mut pk = vec![ins(at(0, 0), udp(a, ep("198.51.100.10:53")))];
    pk.push(tick_at(at(290, 0)));
    pk.extend(probe_around(at(300, 0)));
    let o = replay(&cfg, &pk);
    assert_ended_near(&o, a, 17, at(300, 0));
    assert_eq!(o.counter("sessions_expired"), 1);
}

#[test]
fn udp_session_refreshed_by_traffic_in_either_direction() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(at(0, 0), udp(a, r))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
    pk.push(outs(at(200, 0), udp(r, public))); // inbound refresh
    pk.push(tick_at(at(301, 0)));
    pk.push(ins(at(450, 0), udp(a, r))); // outbound refresh
    pk.push(tick_at(at(501, 0)));
    pk.extend(probe_around(at(750, 0)));
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 2);
    assert_eq!(o.to_inside.len(), 1);
    assert_ended_near(&o, a, 17, at(750, 0));
    assert_eq!(o.counter("sessions_created"), 1);
}

#[test]
fn icmp_echo_session_ends_after_sixty_seconds() {
    let cfg = Cfg::new();
    let a = ip(A);
    let pk = sorted(
        [
            vec![
                ins(at(0, 0), echo_request(a, ip(R), 7, 1)),
                tick_at(at(55, 0)),
            ],
            probe_around(at(60, 0)),
        ]
        .concat(),
    );
    let o = replay(&cfg, &pk);
    let e = o.events_of("session_ended");
    assert_eq!(e.len(), 1);
    assert_eq!(*ev_ep(e[0], "inside").ip(), a);
    assert_eq!(e[0]["protocol"], 1);
    let t = ev_ts(e[0]);
    assert!(
        t >= at(60, 0) && t <= at(60, 0) + TICK + 50 * MS,
        "ended at +{} ms",
        (t - T0) / MS
    );
}

#[test]
fn released_port_is_held_down_120s_before_another_subscriber_gets_it() {
    // One public address with one port.
    let cfg = Cfg::new()
        .with("pool.public", "[\"203.0.113.1/32\"]")
        .with("allocation.port-min", "1024")
        .with("allocation.port-max", "1024");
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(at(0, 0), udp(ep("100.64.1.10:5000"), r))];
    pk.extend(probe_around(at(300, 0)));
    let o = replay(&cfg, &pk);
    let released = ended(&o, ep("100.64.1.10:5000"), 17);
    assert_eq!(released.len(), 1, "first session did not end");
    let rel = released[0];
    pk.push(ins(rel + 60 * SEC, udp(ep("100.64.1.20:6000"), r)));
    pk.push(ins(rel + 119 * SEC, udp(ep("100.64.1.30:7000"), r)));
    pk.push(ins(rel + 121 * SEC, udp(ep("100.64.1.40:8000"), r)));
    let o = replay(&cfg, &pk);
    assert_eq!(
        o.to_outside.len(),
        2,
        "port reused within the hold-down: {:?}",
        o.events
    );
    assert_eq!(o.counter("drop_ports_exhausted"), 2);
    let last = parse(&o.to_outside[1].1);
    assert_eq!(last.src_ep(), ep("203.0.113.1:1024"));
    assert_eq!(o.to_outside[1].0, rel + 121 * SEC);
}

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
    let mut pk = vec![ins(at(0, 0), udp(a, r))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
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

// ===========================================================================
// 8. Hairpinning

fn hairpin_case(cfg: &Cfg, a: SocketAddrV4, b: SocketAddrV4) -> (Outcome, SocketAddrV4) {
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(at(0, 0), udp(b, r))];
    let pb = parse(only(&replay(cfg, &pk).to_outside)).src_ep();
    pk.push(ins(at(0, 10), udp_payload(a, pb, b"hairpin".to_vec())));
    (replay(cfg, &pk), pb)
}

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
    let mut pk = vec![ins(at(0, 0), udp(a, r))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
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

#[test]
fn time_exceeded_is_rate_limited() {
    let cfg = Cfg::new().with("ttl.icmp-rate", "10");
    let r = ep("198.51.100.10:33435");
    let pk: Vec<Input> = (0..25u16)
        .map(|i| {
            ins(
                at(0, 0),
                build::build(&FrameSpec::udp(sock(ip(A), 30000 + i), r).with_ttl(1)),
            )
        })
        .collect();
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_inside.len(), 10);
    assert_eq!(o.counter("time_exceeded_sent"), 10);
    assert_eq!(o.counter("time_exceeded_rate_limited"), 15);
    assert_eq!(o.counter("drop_ttl_expired"), 15);
}

#[test]
fn no_time_exceeded_about_an_icmp_error() {
    let cfg = Cfg::new();
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let mut pk = vec![ins(at(0, 0), udp(a, r))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
    pk.push(outs(at(0, 10), udp(r, public)));
    let delivered = only(&replay(&cfg, &pk).to_inside).clone();
    let mut err = build::icmp_error_for(&delivered, 3, 3, *a.ip());
    set_ttl(&mut err, 1);
    pk.push(ins(at(0, 20), err));
    let o = replay(&cfg, &pk);
    assert_eq!(
        o.to_inside.len(),
        1,
        "an ICMP error was answered with an ICMP error"
    );
    assert_eq!(o.counter("drop_ttl_expired"), 1);
}

// ===========================================================================
// 11. Allocation modes

fn port_block_cfg() -> Cfg {
    Cfg::new()
        .with("allocation.mode", "\"port-block\"")
        .with("allocation.block-size", "64")
        .with("allocation.max-blocks-per-subscriber", "2")
}

#[test]
fn port_block_mode_allocates_and_releases_blocks() {
    let cfg = port_block_cfg();
    let a = ip(A);
    let r = ep("198.51.100.10:53");
    let mut pk = Vec::new();
    for i in 0..129u16 {
        pk.push(ins(at(0, i as u64), udp(sock(a, 10000 + i), r)));
    }
    pk.push(ins(at(0, 200), udp(ep("100.64.1.20:6000"), r)));
    pk.push(tick_at(at(250, 0)));
    pk.extend(probe_around(at(300, 200)));
    let o = replay(&cfg, &pk);
    // 128 mappings fit in two blocks; the 129th is over the subscriber's limit.
    assert_eq!(o.to_outside.len(), 129);
    assert_eq!(o.counter("drop_subscriber_port_limit"), 1);
    assert_eq!(o.events_of("refused_subscriber_limit").len(), 1);

    let allocated = o.events_of("block_allocated");
    let a_blocks: Vec<(Ipv4Addr, (u16, u16))> = allocated
        .iter()
        .filter(|e| *ev_ep(e, "inside").ip() == a)
        .map(|e| (*ev_ep(e, "public").ip(), ev_block(e)))
        .collect();
    assert_eq!(a_blocks.len(), 2, "A should hold two blocks: {allocated:?}");
    for (_, (first, last)) in &a_blocks {
        assert_eq!(last - first, 63);
        assert_eq!((first - 1024) % 64, 0, "block not aligned");
    }
    let b_blocks: Vec<(u16, u16)> = allocated
        .iter()
        .filter(|e| *ev_ep(e, "inside").ip() == ip(B))
        .map(|e| ev_block(e))
        .collect();
    assert_eq!(b_blocks.len(), 1);
    // A's block event comes before A's first session.
    let first_block = o
        .events
        .iter()
        .position(|e| e["kind"] == "block_allocated")
        .unwrap();
    let first_session = o
        .events
        .iter()
        .position(|e| e["kind"] == "session_created")
        .unwrap();
    assert!(first_block < first_session);

    let a_pub = a_blocks[0].0;
    assert_eq!(
        a_blocks[1].0, a_pub,
        "blocks of one subscriber on different addresses"
    );
    for e in o.events_of("session_created") {
        let inside = ev_ep(e, "inside");
        let public = ev_ep(e, "public");
        if *inside.ip() == a {
            assert_eq!(*public.ip(), a_pub);
            let idx = if inside.port() < 10064 { 0 } else { 1 };
            let (f, l) = a_blocks[idx].1;
            assert!(
                (f..=l).contains(&public.port()),
                "A's mapping {inside} got {public}, outside block {idx} {f}-{l}"
            );
        } else {
            let (f, l) = b_blocks[0];
            assert!(
                (f..=l).contains(&public.port()),
                "B's port {public} outside its block"
            );
            for (pa, (af, al)) in &a_blocks {
                assert!(
                    public.ip() != pa || !(*af..=*al).contains(&public.port()),
                    "B got a port of A's block"
                );
            }
        }
    }
    // All sessions expire: every block is released, with the ranges it was given.
    assert_eq!(o.events_of("session_ended").len(), 129);
    let released: BTreeSet<(String, (u16, u16))> = o
        .events_of("block_released")
        .iter()
        .map(|e| (e["inside"].as_str().unwrap().to_string(), ev_block(e)))
        .collect();
    let given: BTreeSet<(String, (u16, u16))> = allocated
        .iter()
        .map(|e| (e["inside"].as_str().unwrap().to_string(), ev_block(e)))
        .collect();
    assert_eq!(released, given);
}

#[test]
fn deterministic_mode_ports_match_forward_and_reverse() {
    let cfg = Cfg::new()
        .with("pool.subscribers", "[\"100.64.0.0/24\"]")
        .with("allocation.mode", "\"deterministic\"")
        .with("allocation.ports-per-subscriber", "1000");
    let det = Deterministic::from_config(&cfg.config()).expect("deterministic");
    let r = ip(R);
    let subs: Vec<Ipv4Addr> = [2u8, 10, 63, 64, 77, 128, 200, 255]
        .iter()
        .map(|&i| Ipv4Addr::new(100, 64, 0, i))
        .collect();
    let mut pk = Vec::new();
    let mut t = 0;
    for &s in &subs {
        for port in [5000u16, 5001, 5002] {
            pk.push(ins(at(0, t), udp(sock(s, port), sock(r, 53))));
            t += 1;
        }
        pk.push(ins(at(0, t), tcp(sock(s, 40000), sock(r, 80), SYN)));
        pk.push(ins(at(0, t), echo_request(s, r, 9, 1)));
        t += 1;
    }
    let o = replay(&cfg, &pk);
    assert_eq!(
        o.to_outside.len(),
        pk.len(),
        "drops: {:?}",
        o.nonzero_drops()
    );
    let created = o.events_of("session_created");
    assert_eq!(created.len(), pk.len());
    for e in created {
        let inside = *ev_ep(e, "inside").ip();
        let public = ev_ep(e, "public");
        let (addr, first, last) = det.forward(inside).unwrap();
        assert_eq!(*public.ip(), addr, "{inside} on the wrong public address");
        assert!(
            (first..=last).contains(&public.port()),
            "{inside} got {public}, range {first}-{last}"
        );
        assert_eq!(det.reverse(*public.ip(), public.port()), Some(inside));
    }
    for (_, f) in &o.to_outside {
        assert_checksums_valid(f);
    }
}

// ===========================================================================
// 12. Several workers

#[test]
fn two_workers_share_the_load_with_disjoint_ports() {
    let cfg = Cfg::new().with("workers.count", "2");
    let config = cfg.config();
    let parts = ports::partitions(&config);
    let r = ep("198.51.100.10:53");
    let subs: Vec<SocketAddrV4> = (1..=16u8)
        .map(|i| sock(Ipv4Addr::new(100, 64, 2, i), 5000))
        .collect();
    let mut pk: Vec<Input> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| ins(at(0, i as u64), udp(*s, r)))
        .collect();
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_outside.len(), 16);
    assert!(
        o.worker_counter(0, "sessions_created") > 0,
        "worker 0 unused"
    );
    assert!(
        o.worker_counter(1, "sessions_created") > 0,
        "worker 1 unused"
    );
    let mut per_worker: [BTreeSet<SocketAddrV4>; 2] = Default::default();
    let mut publics = Vec::new();
    for e in o.events_of("session_created") {
        let w = e["worker"].as_u64().unwrap() as usize;
        let p = ev_ep(e, "public");
        assert!(
            parts[w].contains(*p.ip(), p.port()),
            "worker {w} used {p} outside its partition"
        );
        per_worker[w].insert(p);
        publics.push((ev_ep(e, "inside"), p));
    }
    assert!(per_worker[0].is_disjoint(&per_worker[1]));
    // Replies reach the right subscriber whichever worker owns the mapping.
    for (i, (_, p)) in publics.iter().enumerate() {
        pk.push(outs(at(1, i as u64), udp(r, *p)));
    }
    let o = replay(&cfg, &pk);
    assert_eq!(o.to_inside.len(), 16, "drops: {:?}", o.nonzero_drops());
    for ((_, f), (inside, _)) in o.to_inside.iter().zip(&publics) {
        assert_checksums_valid(f);
        assert_eq!(parse(f).dst_ep(), *inside);
    }
}

#[test]
fn hairpin_across_workers_works_like_on_one_worker() {
    let cfg = Cfg::new().with("workers.count", "2");
    let config = cfg.config();
    let own = Ownership::new(&config, ports::partitions(&config));
    let cands: Vec<Ipv4Addr> = (1..=50u8).map(|i| Ipv4Addr::new(100, 64, 6, i)).collect();
    let a = cands[0];
    let b = *cands
        .iter()
        .find(|c| own.owner_of_subscriber(**c) != own.owner_of_subscriber(a))
        .expect("a subscriber of the other worker");
    let a = sock(a, 5000);
    let b = sock(b, 6000);
    let (o, pb) = hairpin_case(&cfg, a, b);
    let f = only(&o.to_inside);
    assert_checksums_valid(f);
    let p = parse(f);
    assert_eq!(p.dst_ep(), b);
    assert_eq!(p.src_ep(), public_of(&o, a, 17));
    assert_eq!(&p.l4[8..], b"hairpin");
    assert_ne!(public_of(&o, a, 17), pb);
    assert_eq!(o.to_outside.len(), 1);
    assert!(
        o.counter("handed_off") >= 1,
        "A and B live on different workers"
    );
    // Same TTL as a hairpin within one worker: the NAT is one hop.
    assert_eq!(p.ttl, 63, "TTL depends on which worker owns the peer");
}

// ===========================================================================
// 13. Determinism

fn mixed_workload() -> Vec<Input> {
    let r = ep("198.51.100.10:53");
    let mut pk = Vec::new();
    for i in 0..20u8 {
        let s = Ipv4Addr::new(100, 64, 7, i + 1);
        let t = at(0, i as u64 * 3);
        pk.push(ins(t, udp(sock(s, 5000), r)));
        pk.push(ins(
            t + MS,
            tcp(sock(s, 40000), ep("198.51.100.20:443"), SYN),
        ));
        pk.push(ins(t + 2 * MS, echo_request(s, ip(R), i as u16, 1)));
    }
    // Hairpins towards public addresses and ports that may or may not be mapped, fragments,
    // unsolicited traffic, TTL 1, and expiry.
    for i in 0..20u16 {
        pk.push(ins(
            at(1, i as u64),
            udp(
                sock(ip("100.64.7.1"), 7000 + i),
                sock(ip("203.0.113.1"), 1024 + i * 997),
            ),
        ));
        pk.push(outs(
            at(1, i as u64),
            udp(r, sock(ip("203.0.113.2"), 1024 + i * 1499)),
        ));
    }
    let big = build::build(&FrameSpec::udp(ep("100.64.7.3:9000"), r).with_payload(vec![5; 2000]));
    for (i, f) in build::fragment(&big, 600).into_iter().enumerate() {
        pk.push(ins(at(2, i as u64), f));
    }
    pk.push(ins(
        at(3, 0),
        build::build(&FrameSpec::udp(ep("100.64.7.4:1"), r).with_ttl(1)),
    ));
    pk.extend(ticks(at(50, 0), at(400, 0), 10 * SEC));
    sorted(pk)
}

#[test]
fn same_input_gives_byte_identical_outputs() {
    for workers in ["1", "2"] {
        let cfg = Cfg::new().with("workers.count", workers);
        let pk = mixed_workload();
        let first = replay(&cfg, &pk);
        let second = replay(&cfg, &pk);
        assert!(
            !first.to_outside.is_empty() && !first.to_inside.is_empty() && !first.events.is_empty()
        );
        assert!(!first.events_of("session_ended").is_empty());
        for (name, bytes) in &first.files {
            assert!(
                bytes == &second.files[name],
                "{name} differs between two replays ({workers} workers)"
            );
        }
    }
}

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
    let mut pk = vec![ins(at(0, 0), udp(a, r))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
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
    let mut pk = vec![ins(at(0, 0), udp(a, r))];
    let public = parse(only(&replay(&cfg, &pk).to_outside)).src_ep();
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
