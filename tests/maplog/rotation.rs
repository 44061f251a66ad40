//! Rotation and retention.

use super::*;

// ---------------------------------------------------------------------------
// Rotation and retention

#[test]
fn rotation_by_size_and_age_and_retention_keep_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("log");
    // A minute of events; segments of 5 s; keep 20 s.
    let mut s = replay_settings(&root, "sessions-with-destination", 5);
    s.retention_ns = Some(20 * SEC);
    let events = synthetic_events(0, 3000, T0, 11);
    let span = events.last().unwrap().ts_ns - events[0].ts_ns;
    assert!(span > 50 * SEC, "the events span {} s", span / SEC);
    write_log(s, std::slice::from_ref(&events));

    let kept = segment_paths(&root, 0);
    let retired = fs::read_to_string(root.join("retired.jsonl")).unwrap();
    let retired: Vec<serde_json::Value> = retired
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!retired.is_empty(), "old segments were retired");
    let newest = events.iter().map(|e| e.ts_ns).max().unwrap();
    for r in &retired {
        assert!(r["last_ts_ns"].as_u64().unwrap() < newest - 20 * SEC + 5 * SEC);
    }
    // What remains starts where retention cut, continues the chain, and verifies.
    let log = LogDir::open(&root).unwrap();
    let problems = logdir::verify(&log);
    assert!(problems.is_empty(), "{}", show(&problems));
    let first_kept = log.workers[0].segments[0].header.sequence;
    assert_eq!(first_kept, retired.len() as u64);
    assert!(kept.len() >= 3);
    let oldest_kept = read_events(&log, 1)[0][0].ts_ns;
    assert!(
        oldest_kept >= newest - 30 * SEC,
        "records older than retention remain"
    );

    // A segment removed by hand (not by retention) is still caught.
    fs::remove_file(&kept[0]).unwrap();
    let problems = verify_dir(&root);
    assert!(
        problems.iter().any(|p| p.what.contains("hash chain")),
        "{}",
        show(&problems)
    );
}

#[test]
fn rotation_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("log");
    let mut s = replay_settings(&root, "sessions-with-destination", 3600);
    s.segment_size = 4096;
    let events = synthetic_events(0, 2000, T0, 5);
    write_log(s, std::slice::from_ref(&events));
    let log = LogDir::open(&root).unwrap();
    assert!(log.workers[0].segments.len() > 3, "segments rotate by size");
    assert_eq!(read_events(&log, 1)[0], events);
    assert!(logdir::verify(&log).is_empty());
}
