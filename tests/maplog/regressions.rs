//! Bugs found while writing these tests.

use super::*;

// ---------------------------------------------------------------------------
// Bugs found while writing these tests

/// `durable_through_ns` is the max over workers of what each has written, but a slow
/// worker can still hold older records in its batch or ring.
#[test]
fn durable_through_covers_every_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut s = settings(&dir, "flush-interval = \"20ms\"");
    s.batch_records = 4;
    let (log, mut producers) = MapLog::start(s, 2, T0).unwrap();
    // Worker 1 saw one event early and nothing since: it sits in its batch.
    let slow = Event {
        worker: 1,
        ..numbered(0, T0 + SEC)
    };
    producers[1].emit(&slow);
    // Worker 0 is busy: full batches are handed over at once.
    let busy: Vec<Event> = (1..=9)
        .map(|i| Event {
            worker: 0,
            ..numbered(i, T0 + 2 * SEC + i * MS)
        })
        .collect();
    for e in &busy {
        producers[0].emit(e);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut d = 0;
    while d == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        d = log.stats().durable_through_ns.load(Ordering::Relaxed);
    }
    assert!(d > 0, "a sync happened");
    // What is on disk now is what a crash would leave.
    let on_disk = read_events(&LogDir::open(&dir).unwrap(), 2);
    let all: Vec<Event> = std::iter::once(slow).chain(busy.iter().copied()).collect();
    let claimed: Vec<&Event> = all.iter().filter(|e| e.ts_ns <= d).collect();
    for e in claimed {
        let w = e.worker as usize;
        assert!(
            on_disk[w].contains(e),
            "durable_through_ns = {d} but worker {w}'s record at {} is not on disk",
            e.ts_ns
        );
    }
    producers.iter_mut().for_each(Producer::finish);
    log.close().unwrap();
}

/// A rotation that fails on a full disk must be retried like any other write, not stop
/// the writer or lose the closing segment.
#[test]
fn full_disk_during_rotation_is_retried() {
    let Some(fs_) = Tmpfs::mount("512k") else {
        return;
    };
    let ballast = fs_.path.join("ballast");
    fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let dir = fs_.path.join("log");
    let mut s = pressure_settings(&dir, "refuse-sessions");
    s.segment_size = 1; // rotates before every block
    let (log, mut producers) = MapLog::start(s, 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut emitted = Vec::new();
    assert!(
        fill_until_refused(p, &log, &mut emitted),
        "the disk filled up"
    );
    fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.has_room(2) && Instant::now() < deadline {
        p.poll(wall_ns());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        p.has_room(2),
        "the writer recovers once the disk has room: {:?} {:?}",
        Counters::of(log.stats()),
        last_error(&log)
    );
    p.finish();
    let report = log.close().expect("close after recovery");
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    assert_eq!(report.records, emitted.len() as u64);
    assert!(got == emitted, "every emitted record is in the log");
}

/// A crash right after a rotation created the next segment file, before the first flush
/// (up to a flush interval later), leaves that file empty. The log must still open, for
/// reading and for writing.
#[test]
fn empty_segment_left_by_a_crash_at_rotation_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let events = vec![synthetic_events(0, 600, T0, 31)];
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &events,
    );
    let paths = segment_paths(&dir, 0);
    let next = paths.len();
    let empty = dir
        .join("worker-000")
        .join(format!("{next:010}-{}.tnseg", T0 + 3600 * SEC));
    fs::write(&empty, b"").unwrap();

    let log = LogDir::open(&dir);
    assert!(log.is_ok(), "reading: {:?}", log.err());
    let log = log.unwrap();
    let damage = log.damage();
    assert_eq!(damage.len(), 1, "the empty file is listed: {damage:?}");
    assert!(
        damage[0].contains(&empty.display().to_string()),
        "{damage:?}"
    );
    let got = read_events(&log, 1);
    assert_eq!(got, events);

    let more = vec![synthetic_events(0, 200, T0 + 7200 * SEC, 32)];
    let started = MapLog::start(
        replay_settings(&dir, "sessions-with-destination", 10),
        1,
        T0 + 7200 * SEC,
    );
    assert!(
        started.is_ok(),
        "restarting: {:?}",
        started.err().map(|e| e.to_string())
    );
    let (log, producers) = started.unwrap();
    producers.into_iter().for_each(|mut p| p.finish());
    let report = log.close().unwrap();
    assert_eq!(report.recovered.len(), 1, "{:?}", report.recovered);
    assert!(
        report.recovered[0].contains(&empty.display().to_string()),
        "{:?}",
        report.recovered
    );
    assert!(!empty.exists(), "the empty segment is removed");
    write_log(
        replay_settings(&dir, "sessions-with-destination", 10),
        &more,
    );
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    let want: Vec<Event> = events[0].iter().chain(&more[0]).copied().collect();
    assert!(got == want);
}
