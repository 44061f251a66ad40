//! Queries.

use super::*;

// ---------------------------------------------------------------------------
// 4. Queries

const A: (&str, u16) = ("100.64.0.10", 5000);
const B: (&str, u16) = ("100.64.0.11", 6000);
const C: (&str, u16) = ("100.64.0.12", 7000);
const PUBLIC: &str = "203.0.113.1";

fn session(
    kind: EventKind,
    secs: u64,
    worker: u16,
    inside: (&str, u16),
    port: u16,
    dest: (&str, u16),
) -> Event {
    event(
        kind,
        T0 + secs * SEC,
        worker,
        17,
        (ip(inside.0), inside.1),
        (ip(PUBLIC), port),
        (ip(dest.0), dest.1),
        (0, 0),
    )
}

/// A holds 203.0.113.1:40000/UDP from 10 s to 100 s (towards 198.51.100.10:53), B holds it
/// from 400 s to 900 s (towards 198.51.100.20:443), C holds 203.0.113.1:40001 from 30 s to
/// 60 s. Filler traffic on another address every 5 s on both workers makes the 100 s
/// segments rotate, so B's mapping is carried by checkpoints from 500 s on.
fn query_log(dir: &Path, b_worker: u16) {
    let mut events = vec![Vec::new(), Vec::new()];
    for secs in (0..1000).step_by(5) {
        for w in 0..2u16 {
            let filler = event(
                EventKind::SessionCreated,
                T0 + secs * SEC,
                w,
                6,
                (ip("100.64.1.1"), 1000 + secs as u16),
                (ip("203.0.113.2"), 2000 + secs as u16),
                (ip("198.51.100.99"), 80),
                (0, 0),
            );
            events[w as usize].push(filler);
            events[w as usize].push(Event {
                kind: EventKind::SessionEnded,
                ts_ns: filler.ts_ns + 2 * SEC,
                ..filler
            });
        }
    }
    let dns = ("198.51.100.10", 53);
    let https = ("198.51.100.20", 443);
    events[0].push(session(EventKind::SessionCreated, 10, 0, A, 40000, dns));
    events[0].push(session(EventKind::SessionEnded, 100, 0, A, 40000, dns));
    events[0].push(session(EventKind::SessionCreated, 30, 0, C, 40001, dns));
    events[0].push(session(EventKind::SessionEnded, 60, 0, C, 40001, dns));
    let bw = b_worker as usize;
    events[bw].push(session(
        EventKind::SessionCreated,
        400,
        b_worker,
        B,
        40000,
        https,
    ));
    events[bw].push(session(
        EventKind::SessionEnded,
        900,
        b_worker,
        B,
        40000,
        https,
    ));
    for v in &mut events {
        v.sort_by_key(|e| e.ts_ns);
    }
    write_log(
        replay_settings(dir, "sessions-with-destination", 100),
        &events,
    );
    for w in 0..2 {
        assert!(
            segment_paths(dir, w).len() >= 9,
            "worker {w}: segments rotate"
        );
    }
}

fn question(port: Option<u16>, from_s: u64, to_s: u64) -> Question {
    Question {
        public_ip: PUBLIC.parse().unwrap(),
        public_port: port,
        from_ns: T0 + from_s * SEC,
        to_ns: T0 + to_s * SEC,
        dest_ip: None,
        dest_port: None,
        protocol: None,
    }
}

fn subscribers(a: &Answer) -> Vec<(Ipv4Addr, u16)> {
    let mut s: Vec<(Ipv4Addr, u16)> = a
        .candidates
        .iter()
        .map(|c| (*c.subscriber.ip(), c.subscriber.port()))
        .collect();
    s.sort();
    s.dedup();
    s
}

fn sub(s: (&str, u16)) -> (Ipv4Addr, u16) {
    (s.0.parse().unwrap(), s.1)
}

fn check_queries(log: &mut LogDir) {
    let at = |log: &mut LogDir, q: Question| log.answer(&q).unwrap();

    let a50 = at(log, question(Some(40000), 49, 51));
    assert_eq!(a50.verdict, Verdict::Unique, "{a50:?}");
    assert_eq!(subscribers(&a50), vec![sub(A)]);
    let c = &a50.candidates[0];
    assert_eq!(c.start_ns, Some(T0 + 10 * SEC));
    // The reader reads up to the window's end: A's end at 100 s is not seen from 51 s.
    assert!(c.end_ns.is_none_or(|e| e == T0 + 100 * SEC), "{c:?}");
    assert_eq!(c.dest, Some("198.51.100.10:53".parse().unwrap()));

    let b450 = at(log, question(Some(40000), 449, 451));
    assert_eq!(b450.verdict, Verdict::Unique, "{b450:?}");
    assert_eq!(subscribers(&b450), vec![sub(B)]);

    let none250 = at(log, question(Some(40000), 249, 251));
    assert_eq!(none250.verdict, Verdict::None, "{none250:?}");

    let window = at(log, question(Some(40000), 90, 410));
    assert_eq!(window.verdict, Verdict::Ambiguous, "{window:?}");
    assert_eq!(subscribers(&window), vec![sub(A), sub(B)]);
    for c in &window.candidates {
        if c.subscriber.port() == A.1 {
            assert_eq!(
                (c.start_ns, c.end_ns),
                (Some(T0 + 10 * SEC), Some(T0 + 100 * SEC))
            );
        } else {
            assert_eq!(c.start_ns, Some(T0 + 400 * SEC));
        }
    }

    // B's mapping began in the segment created at 400 s; at 850 s the segment open is the
    // one created at 800 s, whose checkpoint must carry it.
    for w in &log.workers {
        let open_at_849 = w
            .segments
            .iter()
            .rev()
            .find(|s| s.header.created_ns <= T0 + 849 * SEC)
            .unwrap();
        assert!(open_at_849.header.created_ns >= T0 + 800 * SEC);
        assert!(open_at_849.blocks[0].header.is_checkpoint());
    }
    let b850 = at(log, question(Some(40000), 849, 851));
    assert_eq!(b850.verdict, Verdict::Unique, "{b850:?}");
    assert_eq!(subscribers(&b850), vec![sub(B)]);
    assert_eq!(b850.candidates[0].start_ns, Some(T0 + 400 * SEC));

    let none950 = at(log, question(Some(40000), 949, 951));
    assert_eq!(none950.verdict, Verdict::None, "{none950:?}");

    // Without a port: everyone on the address.
    let any50 = at(log, question(None, 49, 51));
    assert_eq!(any50.verdict, Verdict::Ambiguous, "{any50:?}");
    assert!(subscribers(&any50).contains(&sub(A)), "{any50:?}");
    assert!(subscribers(&any50).contains(&sub(C)), "{any50:?}");
    assert!(!subscribers(&any50).contains(&sub(B)), "{any50:?}");

    // A destination that matches narrows to the session; one that does not, when every
    // session on the mapping is known, excludes it.
    let mut q = question(Some(40000), 49, 51);
    q.dest_ip = Some("198.51.100.10".parse().unwrap());
    q.dest_port = Some(53);
    let matched = at(log, q.clone());
    assert_eq!(matched.verdict, Verdict::Unique, "{matched:?}");
    assert_eq!(matched.candidates[0].evidence, Evidence::Session);
    q.dest_ip = Some("192.0.2.99".parse().unwrap());
    let excluded = at(log, q);
    assert_eq!(excluded.verdict, Verdict::None, "{excluded:?}");

    // At 850 s B's sessions before the checkpoint are unknown: a non-matching destination
    // cannot exclude it.
    let mut q = question(Some(40000), 849, 851);
    q.dest_ip = Some("192.0.2.99".parse().unwrap());
    let honest = at(log, q);
    assert_eq!(honest.verdict, Verdict::Unique, "{honest:?}");
    assert_eq!(honest.candidates[0].evidence, Evidence::Mapping);

    // The protocol filter.
    let mut q = question(Some(40000), 49, 51);
    q.protocol = Some(6);
    assert_eq!(at(log, q).verdict, Verdict::None);
}

#[test]
fn queries_across_segments_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    query_log(&dir, 0);
    let mut log = LogDir::open(&dir).unwrap();
    check_queries(&mut log);
}

#[test]
fn queries_when_the_mapping_moves_to_another_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    query_log(&dir, 1);
    let mut log = LogDir::open(&dir).unwrap();
    check_queries(&mut log);
}
