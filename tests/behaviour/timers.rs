//! TCP state and timers.

use super::*;

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
    let (mut pk, public) = open_udp(&cfg, a, r);
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
