//! Allocation modes, several workers and determinism.

use super::*;

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
    let a = Ipv4Addr::new(100, 64, 6, 1);
    let b = subscriber_of_another_worker(&cfg, a, 6);
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
