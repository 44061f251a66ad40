//! Activity windows (issue 8, part 1): a session's end is logged when its idle timer fires,
//! minutes after its last packet, so each end also records that last packet. A port-less
//! question (a server log without client ports) is matched against what was *active* at
//! its moment; a question with a port still matches the mapping's whole lifetime.
//!
//! Everything goes through the real pipeline: captures → `replay` (engine and mapping log)
//! → `LogDir` queries.

#[allow(unused_imports)] // the shared harness exports more than this file uses
mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use serde_json::Value;
use tracenat::engine::Side;
use tracenat::reader::logdir::LogDir;
use tracenat::reader::model::{Answer, Evidence, MappingSource, Question, Verdict};

const A: &str = "100.64.1.10:40000";
const B: &str = "100.64.1.20:40001";
const SERVER: &str = "198.51.100.10:443";

fn ins(ts: u64, frame: Vec<u8>) -> Input {
    (ts, Side::Inside, frame)
}

/// One public address for everyone, so subscribers share it as on a real CGN.
fn shared_address() -> Cfg {
    Cfg::new().with("pool.public", "[\"203.0.113.1/32\"]")
}

/// A short HTTPS-like connection of `inside` to the server: handshake at `start_s`, a
/// request and a reply, FIN both ways `busy_s` later. Returns its packets.
fn connection(inside: SocketAddrV4, start_s: u64, busy_s: u64) -> Vec<Input> {
    let server = ep(SERVER);
    let t = at(start_s, 0);
    let end = at(start_s + busy_s, 0);
    vec![
        ins(t, tcp(inside, server, SYN)),
        ins(t + MS, tcp(inside, server, ACK)),
        ins(t + 2 * MS, tcp(inside, server, ACK | PSH)),
        ins(end, tcp(inside, server, FIN | ACK)),
        ins(end + MS, tcp(inside, server, ACK)),
    ]
}

/// The replies of the server to `inside`'s connection, through the public endpoint the NAT
/// gave it (found by a first replay of the inside packets alone).
fn replies(public: SocketAddrV4, start_s: u64, busy_s: u64) -> Vec<Input> {
    let server = ep(SERVER);
    let t = at(start_s, 0);
    let end = at(start_s + busy_s, 0);
    vec![
        (t + MS / 2, Side::Outside, tcp(server, public, SYN | ACK)),
        (t + 3 * MS, Side::Outside, tcp(server, public, ACK | PSH)),
        (end + MS / 2, Side::Outside, tcp(server, public, FIN | ACK)),
    ]
}

fn public_of(o: &Outcome, inside: SocketAddrV4) -> SocketAddrV4 {
    let e = o
        .events_of("session_created")
        .into_iter()
        .find(|e| ev_ep(e, "inside") == inside)
        .unwrap_or_else(|| panic!("no session for {inside}"));
    ev_ep(e, "public")
}

fn ended_event(o: &Outcome, inside: SocketAddrV4) -> Value {
    let ends = o.events_of("session_ended");
    let e = ends
        .into_iter()
        .find(|e| ev_ep(e, "inside") == inside)
        .unwrap_or_else(|| panic!("no end for {inside}: {:?}", o.events));
    e.clone()
}

/// A: connection 0–2 s; B: connection 100–102 s; the clock runs to 400 s so both end.
fn two_subscribers(cfg: &Cfg, log_dir: Option<&std::path::Path>) -> Outcome {
    let (a, b) = (ep(A), ep(B));
    let mut packets = connection(a, 0, 2);
    packets.extend(connection(b, 100, 2));
    packets.push(tick_at(at(400, 0)));
    let first = replay(cfg, &packets);
    packets.extend(replies(public_of(&first, a), 0, 2));
    packets.extend(replies(public_of(&first, b), 100, 2));
    packets.sort_by_key(|p| p.0);
    match log_dir {
        Some(dir) => replay_logged(cfg, &packets, dir),
        None => replay(cfg, &packets),
    }
}

#[test]
fn a_tcp_end_records_its_last_packet_not_its_expiry() {
    let o = two_subscribers(&shared_address(), None);
    let e = ended_event(&o, ep(A));
    let last_packet = at(2, 0) + MS;
    let ended = ev_ts(&e);
    let active = e["last_active_ns"]
        .as_u64()
        .expect("last_active_ns on an end");
    // The end comes a transitory timeout (4 min) after the last packet...
    assert!(ended >= last_packet + 4 * MIN, "ended at {ended}");
    // ...and the activity is the last packet, rounded up by at most a tick and a ms.
    assert!(
        (last_packet..=last_packet + TICK + MS).contains(&active),
        "last activity {} ms after the last packet",
        (active as i64 - last_packet as i64) / MS as i64
    );
    assert_eq!(
        (ended - active) % MS,
        0,
        "whole milliseconds before the end"
    );
    // Creations carry no activity.
    let created = &o.events_of("session_created")[0];
    assert!(created.get("last_active_ns").is_none(), "{created}");
}

#[test]
fn a_udp_end_records_the_last_packet_in_either_direction() {
    let a = ep("100.64.1.10:5000");
    let r = ep("198.51.100.10:53");
    let cfg = Cfg::new();
    let mut packets = vec![ins(at(0, 0), udp(a, r))];
    let public = public_of(&replay(&cfg, &packets), a);
    packets.push((at(10, 0), Side::Outside, udp(r, public)));
    packets.push(tick_at(at(400, 0)));
    let o = replay(&cfg, &packets);
    let e = ended_event(&o, a);
    let active = e["last_active_ns"].as_u64().unwrap();
    assert!(
        (at(10, 0)..=at(10, 0) + TICK + MS).contains(&active),
        "last activity at {active}, the reply came at {}",
        at(10, 0)
    );
    assert!(ev_ts(&e) >= at(10, 0) + 5 * MIN);
}

fn question(port: Option<u16>, at_s: u64, dest: bool) -> Question {
    let server = ep(SERVER);
    Question {
        public_ip: Ipv4Addr::new(203, 0, 113, 1),
        public_port: port,
        from_ns: at(at_s, 0) - 2 * SEC,
        to_ns: at(at_s, 0) + 2 * SEC,
        dest_ip: dest.then_some(*server.ip()),
        dest_port: dest.then_some(server.port()),
        protocol: Some(6),
    }
}

fn subscribers(a: &Answer) -> Vec<Ipv4Addr> {
    let mut s: Vec<Ipv4Addr> = a.candidates.iter().map(|c| *c.subscriber.ip()).collect();
    s.dedup();
    s
}

fn logged(volume: &str) -> (tempfile::TempDir, LogDir, Outcome) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let cfg = shared_address().with("logging.volume", &format!("\"{volume}\""));
    let o = two_subscribers(&cfg, Some(&dir));
    let log = LogDir::open(&dir).unwrap();
    (tmp, log, o)
}

#[test]
fn a_portless_request_matches_only_the_sessions_active_at_its_moment() {
    for (volume, dest) in [
        ("sessions-with-destination", true),
        ("sessions-with-destination", false),
        ("sessions-without-destination", false),
    ] {
        let (_tmp, mut log, o) = logged(volume);
        let (a, b) = (ep(A), ep(B));
        // At 101 s A's mapping still exists (it ends at ~242 s) but its traffic stopped at
        // 2 s: only B can have sent a request then.
        let at101 = log.answer(&question(None, 101, dest)).unwrap();
        assert_eq!(at101.verdict, Verdict::Unique, "{volume}: {at101:?}");
        assert_eq!(subscribers(&at101), vec![*b.ip()], "{volume}");
        let c = &at101.candidates[0];
        assert!(
            c.last_active_ns
                .is_some_and(|t| (at(102, 0)..at(103, 0)).contains(&t)),
            "{volume}: the evidence shows B's last packet: {c:?}"
        );
        let at1 = log.answer(&question(None, 1, dest)).unwrap();
        assert_eq!(subscribers(&at1), vec![*a.ip()], "{volume}: {at1:?}");
        // Nobody was active at 150 s, though both mappings existed.
        let at150 = log.answer(&question(None, 150, dest)).unwrap();
        assert_eq!(at150.verdict, Verdict::None, "{volume}: {at150:?}");
        // With a port, the mapping's whole lifetime still counts: A held its port at 101 s.
        let a_port = public_of(&o, a).port();
        let with_port = log.answer(&question(Some(a_port), 101, dest)).unwrap();
        assert_eq!(subscribers(&with_port), vec![*a.ip()], "{volume}");
    }
}

#[test]
fn activity_evidence_is_the_session_when_destinations_are_logged() {
    let (_tmp, mut log, _) = logged("sessions-with-destination");
    let a = log.answer(&question(None, 101, true)).unwrap();
    assert_eq!(a.candidates[0].evidence, Evidence::Session, "{a:?}");
    let (_tmp, mut log, _) = logged("sessions-without-destination");
    let a = log.answer(&question(None, 101, false)).unwrap();
    assert_eq!(a.candidates[0].evidence, Evidence::Mapping, "{a:?}");
}

#[test]
fn a_session_still_open_at_the_end_of_the_log_counts_as_active() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let a = ep(A);
    // A's connection never closes and the log stops at 60 s: its activity is unknown.
    let mut packets = vec![
        ins(at(0, 0), tcp(a, ep(SERVER), SYN)),
        ins(at(1, 0), tcp(a, ep(SERVER), ACK)),
    ];
    packets.push(tick_at(at(60, 0)));
    replay_logged(&shared_address(), &packets, &dir);
    let mut log = LogDir::open(&dir).unwrap();
    let answer = log.answer(&question(None, 50, false)).unwrap();
    assert_eq!(subscribers(&answer), vec![*a.ip()], "{answer:?}");
    assert_eq!(answer.candidates[0].last_active_ns, None);
}

/// Against an oracle that knows every connection (the workload's own record), on a busy
/// shared address: each port-less answer holds every subscriber with a connection to that
/// server active in the window and none other (activity is known to within the timer's
/// tick). Checked both one question at a time and in the streaming batches `attribute`
/// uses, which go through the destination index.
#[test]
fn portless_answers_match_an_oracle_of_the_connections() {
    use tracenat::engine::Engine;
    use tracenat::engine::event::VecSink;
    use tracenat::maplog::writer::{LogSettings, MapLog};
    use tracenat::workload::web::{self, WebSpec};

    let spec = WebSpec {
        subscribers: 300,
        first_subscriber: Ipv4Addr::new(100, 64, 2, 0),
        servers: 30,
        zipf: 1.0,
        start_ns: T0,
        duration_ns: 20 * MIN,
        mean_think_ns: 30 * SEC,
        burst_max: 4,
        // Some connections last longer than the index's 30 s "short" bound.
        busy_ns: (200 * MS, 90 * SEC),
        requests_max: 2,
        server_offset_max_ns: 0,
        seed: 5,
    };
    let cfg = shared_address().with("limits.max-sessions", "200000");
    let config = cfg.config();
    let mut web = spec.generate();
    let mut engine = Engine::for_all_workers(&config, T0, |_| VecSink::default())
        .pop()
        .unwrap();
    let mut events = Vec::new();
    web::drive(&mut web.connections, &mut engine, T0 + 40 * MIN, |s| {
        events.append(&mut s.events)
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut settings = LogSettings::from_config(&config, &dir);
    settings.record_time_only = true;
    settings.config_text = Some(cfg.toml());
    let (log, mut producers) = MapLog::start(settings, 1, T0).unwrap();
    for e in &events {
        use tracenat::engine::event::EventSink;
        producers[0].poll(e.ts_ns);
        producers[0].emit(e);
    }
    producers[0].finish();
    log.close().unwrap();

    let requests = web::logged_requests(&web);
    assert!(requests.len() > 2000, "{} requests", requests.len());
    let window = |r: &web::LoggedRequest| (r.logged_ns - SEC, r.logged_ns + SEC);
    let oracle = |r: &web::LoggedRequest, slack: u64| {
        let (from, to) = window(r);
        let mut subs: Vec<Ipv4Addr> = web
            .connections
            .iter()
            .filter(|c| c.server == r.server && c.start_ns <= to && c.last_ns + slack >= from)
            .map(|c| *c.inside.ip())
            .collect();
        subs.sort_unstable();
        subs.dedup();
        subs
    };
    let questions: Vec<Question> = requests
        .iter()
        .map(|r| Question {
            public_ip: *r.public.ip(),
            public_port: None,
            from_ns: window(r).0,
            to_ns: window(r).1,
            dest_ip: Some(*r.server.ip()),
            dest_port: Some(r.server.port()),
            protocol: Some(6),
        })
        .collect();
    let mut log = LogDir::open(&dir).unwrap();
    let streamed = log.answer_all(&questions).unwrap();
    let mut log = LogDir::open(&dir).unwrap();
    for (i, (r, answer)) in requests.iter().zip(&streamed).enumerate() {
        let mut got = subscribers(answer);
        got.sort_unstable();
        got.dedup();
        let (surely, maybe) = (oracle(r, 0), oracle(r, TICK + MS));
        assert!(
            surely.iter().all(|s| got.contains(s)),
            "request {i}: {got:?} misses some of {surely:?}"
        );
        let extra: Vec<_> = answer
            .candidates
            .iter()
            .filter(|c| !maybe.contains(c.subscriber.ip()))
            .collect();
        assert!(
            extra.is_empty(),
            "request {i} at {:?}: more than {maybe:?}: {extra:?}",
            window(r)
        );
        if i % 97 == 0 {
            // Alone, the reader reads less far ahead, so a session's end may be unknown
            // where the sweep knew it; who could have sent the request is the same.
            let alone = log.answer(&questions[i]).unwrap();
            assert_eq!(subscribers(&alone), subscribers(answer), "request {i}");
        }
    }
}
