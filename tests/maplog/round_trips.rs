//! Round trips and a clean verify.

use super::*;

// ---------------------------------------------------------------------------
// 1–2. Round trips and a clean verify

fn round_trip(volume: &str, expected: impl Fn(&Event) -> Option<Event>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let events = vec![
        synthetic_events(0, 3000, T0, 11),
        synthetic_events(1, 2500, T0 + 7 * MS, 12),
    ];
    let counters = write_log(replay_settings(&dir, volume, 10), &events);
    let want: Vec<Vec<Event>> = events
        .iter()
        .map(|v| v.iter().filter_map(&expected).collect())
        .collect();
    let total: usize = want.iter().map(Vec::len).sum();
    assert_eq!(
        counters,
        Counters {
            records_written: total as u64,
            records_lost: 0,
            records_overflowed: 0,
            write_errors: 0,
        }
    );

    let log = LogDir::open(&dir).unwrap();
    for w in 0..2 {
        assert!(
            segment_paths(&dir, w).len() >= 4,
            "worker {w}: the events span several segments"
        );
    }
    let got = read_events(&log, 2);
    for w in 0..2 {
        assert_eq!(got[w].len(), want[w].len(), "worker {w}: record count");
        for (i, (g, e)) in got[w].iter().zip(&want[w]).enumerate() {
            assert_eq!(g, e, "worker {w}, record {i}");
        }
    }
    let problems = logdir::verify(&log);
    assert!(problems.is_empty(), "fresh log:\n{}", show(&problems));
    assert!(log.damage().is_empty(), "{:?}", log.damage());
    let stats = logdir::stats(&log);
    for (w, s) in stats.iter().enumerate() {
        assert_eq!(s.records, want[w].len() as u64);
        if let (Some(first), Some(last)) = (want[w].first(), want[w].last()) {
            assert_eq!(s.first_ts_ns, Some(first.ts_ns));
            assert_eq!(s.last_ts_ns, Some(last.ts_ns));
        }
    }

    // A window returns exactly the records inside it.
    let (from, to) = (T0 + 20 * SEC, T0 + 35 * SEC);
    let mut windowed = vec![Vec::new(); 2];
    logdir::for_each_record(
        &log,
        from,
        to,
        |w, r| windowed[w as usize].push(r.to_event(w).unwrap()),
        |_, _, e| panic!("{e}"),
    );
    for w in 0..2 {
        let want_w: Vec<Event> = want[w]
            .iter()
            .filter(|e| (from..=to).contains(&e.ts_ns))
            .copied()
            .collect();
        assert_eq!(windowed[w], want_w, "worker {w}: window");
    }
}

#[test]
fn round_trip_sessions_with_destination() {
    round_trip("sessions-with-destination", |e| Some(*e));
}

#[test]
fn round_trip_sessions_without_destination() {
    round_trip("sessions-without-destination", |e| {
        Some(Event {
            dest_ip: 0,
            dest_port: 0,
            ..*e
        })
    });
}

#[test]
fn round_trip_port_blocks() {
    round_trip("port-blocks", |e| match e.kind {
        EventKind::SessionCreated | EventKind::SessionEnded => None,
        _ => Some(Event {
            dest_ip: 0,
            dest_port: 0,
            ..*e
        }),
    });
}

#[test]
fn round_trip_every_codec() {
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let events = vec![synthetic_events(0, 1500, T0, 99)];
        let mut s = replay_settings(&dir, "sessions-with-destination", 5);
        s.codec = codec;
        write_log(s, &events);
        let log = LogDir::open(&dir).unwrap();
        assert_eq!(read_events(&log, 1), events, "{}", codec.name());
        assert!(logdir::verify(&log).is_empty(), "{}", codec.name());
    }
}

#[test]
fn verify_is_clean_on_a_fresh_log_and_after_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let first = vec![
        synthetic_events(0, 800, T0, 1),
        synthetic_events(1, 800, T0, 2),
    ];
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &first,
    );
    let problems = verify_dir(&dir);
    assert_eq!(problems, Vec::<Problem>::new(), "\n{}", show(&problems));

    // A second run appends new segments that continue both hash chains.
    let later = T0 + 3600 * SEC;
    let second = vec![
        synthetic_events(0, 500, later, 3),
        synthetic_events(1, 500, later, 4),
    ];
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &second,
    );
    let problems = verify_dir(&dir);
    assert_eq!(problems, Vec::<Problem>::new(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 2);
    for w in 0..2 {
        let want: Vec<Event> = first[w].iter().chain(&second[w]).copied().collect();
        assert_eq!(got[w], want, "worker {w}");
    }
}
