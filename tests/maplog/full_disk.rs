//! Back-pressure on a full disk.

use super::*;

// ---------------------------------------------------------------------------
// 5. Back-pressure on a full disk

/// Problems allowed on a log whose writer could not finish: a torn or open tail at the end
/// of each worker's last segment, nothing else.
fn assert_only_torn_tail(root: &Path) {
    let log = LogDir::open(root).unwrap();
    let problems = logdir::verify(&log);
    for p in &problems {
        let w = log
            .workers
            .iter()
            .find(|w| w.segments.iter().any(|s| s.path == p.path))
            .unwrap();
        let last = w.segments.last().unwrap();
        assert_eq!(
            p.path,
            last.path,
            "only the last segment may be torn:\n{}",
            show(&problems)
        );
        let Tail::Open { valid_len } = last.tail else {
            panic!("a closed segment with problems:\n{}", show(&problems));
        };
        assert!(
            p.block_sequence.is_none() && p.offset as u64 >= valid_len,
            "only the tail past {valid_len} may be damaged:\n{}",
            show(&problems)
        );
    }
}

/// The disk is still full when the NAT stops: the writer gives up after its retries, and
/// the records it could not write are counted lost and named in the error, not dropped
/// silently.
#[test]
fn a_disk_still_full_at_the_stop_counts_and_names_what_is_lost() {
    let Some(fs_) = Tmpfs::mount("512k") else {
        return;
    };
    let dir = fs_.path.join("log");
    let (log, mut producers) =
        MapLog::start(pressure_settings(&dir, "refuse-sessions"), 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut emitted = Vec::new();
    assert!(fill_until_refused(p, &log, &mut emitted), "never refused");
    p.finish();
    let stats = log.stats_handle();
    let err = log.close().expect_err("the disk stays full").to_string();
    let c = Counters::of(&stats);
    assert!(c.records_lost > 0, "{c:?}");
    assert!(
        err.contains(&format!("{} records could not be written", c.records_lost)),
        "{err}"
    );
    let written = LogStats::get(&stats.records_written);
    assert_eq!(
        written + c.records_lost,
        emitted.len() as u64,
        "every record written or counted lost"
    );
}

#[test]
fn full_disk_refuses_sessions_then_recovers() {
    let Some(fs_) = Tmpfs::mount("512k") else {
        return;
    };
    // Ballast to free later, so the writer can recover.
    let ballast = fs_.path.join("ballast");
    fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let dir = fs_.path.join("log");
    let s = pressure_settings(&dir, "refuse-sessions");
    let batch = s.batch_records;
    let (log, mut producers) = MapLog::start(s, 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut emitted = Vec::new();
    let refused = fill_until_refused(p, &log, &mut emitted);
    assert!(
        refused,
        "has_room(2) never said no on a full disk ({} emitted)",
        emitted.len()
    );
    let c = Counters::of(log.stats());
    assert!(c.write_errors > 0, "{c:?}");
    assert_eq!(c.records_lost, 0, "{c:?}");
    // End-of-session records still fit: the batch grows past its size (overflow).
    for _ in 0..batch + 10 {
        let e = numbered(emitted.len() as u64, wall_ns());
        p.emit(&e);
        emitted.push(e);
    }
    let c = Counters::of(log.stats());
    assert!(c.records_overflowed > 0, "{c:?}");
    assert_eq!(c.records_lost, 0, "{c:?}");
    assert_only_torn_tail(&dir);

    // Room again: the writer catches up, batches come back, sessions are accepted.
    fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
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
    for _ in 0..100 {
        let e = numbered(emitted.len() as u64, wall_ns());
        p.emit(&e);
        emitted.push(e);
    }
    p.finish();
    let report = log.close().expect("close after recovery");
    assert_eq!(report.records, emitted.len() as u64);
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1);
    assert_eq!(got[0].len(), emitted.len());
    assert!(
        got[0] == emitted,
        "every emitted record is in the log, in order"
    );
}

#[test]
fn full_disk_drops_records_under_drop_records_policy() {
    let Some(fs_) = Tmpfs::mount("512k") else {
        return;
    };
    let ballast = fs_.path.join("ballast");
    fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let dir = fs_.path.join("log");
    let (log, mut producers) =
        MapLog::start(pressure_settings(&dir, "drop-records"), 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut emitted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (LogStats::get(&log.stats().records_lost) < 1000
        || LogStats::get(&log.stats().write_errors) == 0)
        && Instant::now() < deadline
    {
        p.poll(wall_ns());
        if LogStats::get(&log.stats().write_errors) == 0 && emitted.len().is_multiple_of(64) {
            // Until the disk is full, let the writer keep up.
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(p.has_room(2), "drop-records never refuses");
        let e = numbered(emitted.len() as u64, wall_ns());
        p.emit(&e);
        emitted.push(e);
    }
    let c = Counters::of(log.stats());
    assert!(c.records_lost >= 1000, "{c:?}");
    assert!(c.write_errors > 0, "{c:?}");
    assert_eq!(c.records_overflowed, 0, "{c:?}");
    assert_only_torn_tail(&dir);

    fs::remove_file(&ballast).unwrap();
    p.finish();
    let report = log.close().expect("close after the disk has room");
    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    assert_eq!(got.len() as u64 + c.records_lost, emitted.len() as u64);
    assert_eq!(report.records, got.len() as u64);
    // What was kept is a subsequence of what was emitted, in order.
    let mut it = emitted.iter();
    for g in &got {
        assert!(
            it.any(|e| e == g),
            "record {} out of order or unknown",
            number_of(g)
        );
    }
}
