//! Identity records in the log directory (docs/mapping-log.md §2, §5.2, §6.1, §8.1): the
//! identity chain stores what sources commit, durably and verifiably; restarts keep the
//! open holdings and recognise repeats; a query reads back no further than the segment
//! open at its time; every answer names who held each candidate's subscriber address.

use std::net::Ipv4Addr;
use std::path::Path;

use tracenat::config::Config;
use tracenat::engine::event::{Event, EventKind, EventSink};
use tracenat::identity::{Change, Identity, IdentityRecord, IdentitySink, Source};
use tracenat::maplog::identity_log::{IdentityLog, identity_dir, stored};
use tracenat::maplog::writer::{LogSettings, MapLog};
use tracenat::reader::identity::{Holders, IdentityBook};
use tracenat::reader::logdir::{self, LogDir};
use tracenat::reader::model::{MappingSource, Question, Verdict};

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_795_601_472 * SEC;
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

fn settings(dir: &Path, segment_age: &str) -> LogSettings {
    let cfg = Config::from_toml_str(&format!(
        "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
         [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n\
         [logging]\ndirect-io = false\nsegment-age = \"{segment_age}\"\n"
    ))
    .unwrap();
    LogSettings::from_config(&cfg, dir)
}

fn sub(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 1, i)
}

/// A RADIUS accounting change for `user` on subscriber address `i`, learned `at_s` after T0.
fn radius(change: Change, i: u8, at_s: u64, user: &str) -> IdentityRecord {
    IdentityRecord {
        change,
        source: Source::Radius,
        inside_ip: sub(i),
        at_ns: T0 + at_s * SEC,
        learned_ns: T0 + at_s * SEC + 3_000_000,
        source_ns: T0 + at_s * SEC,
        expires_ns: 0,
        identity: Identity {
            user: Some(format!("{user}@isp.example")),
            nas_ip: Some(Ipv4Addr::new(100, 64, 0, 2)),
            nas_port_id: Some(format!("eth 0/1/2:{}", 100 + i as u16)),
            session_id: Some(format!("{user}-{i}")),
            ..Identity::default()
        },
    }
}

fn names(holders: &Holders) -> Vec<String> {
    match holders {
        Holders::Known(h) => h
            .iter()
            .map(|h| {
                h.identity
                    .user
                    .clone()
                    .or(h.identity.hostname.clone())
                    .unwrap()
            })
            .collect(),
        other => vec![other.verdict().to_owned()],
    }
}

fn holder_at(dir: &Path, i: u8, at_s: u64) -> Holders {
    let t = T0 + at_s * SEC;
    IdentityBook::load(dir, t, t).unwrap().holders(sub(i), t, t)
}

#[test]
fn an_address_handed_between_customers_names_each_in_their_own_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut log = IdentityLog::open(&settings(&dir, "15m")).unwrap();
    log.commit(&[radius(Change::Start, 1, 10, "alice")])
        .unwrap();
    log.commit(&[radius(Change::Update, 1, 70, "alice")])
        .unwrap();
    log.commit(&[
        radius(Change::Stop, 1, 100, "alice"),
        radius(Change::Start, 1, 130, "bob"),
    ])
    .unwrap();
    drop(log);
    assert_eq!(names(&holder_at(&dir, 1, 50)), ["alice@isp.example"]);
    assert_eq!(names(&holder_at(&dir, 1, 110)), ["unknown"]);
    assert_eq!(names(&holder_at(&dir, 1, 200)), ["bob@isp.example"]);
    assert_eq!(names(&holder_at(&dir, 1, 5)), ["unknown"]);
    assert_eq!(names(&holder_at(&dir, 2, 50)), ["unknown"]);
    // A window across the handover shows both, and says they overlap the window.
    let book = IdentityBook::load(&dir, T0 + 90 * SEC, T0 + 140 * SEC).unwrap();
    let both = book.holders(sub(1), T0 + 90 * SEC, T0 + 140 * SEC);
    assert_eq!(both.verdict(), "overlap");
    assert_eq!(names(&both), ["alice@isp.example", "bob@isp.example"]);
    assert!(logdir::verify(&LogDir::open(&dir).unwrap()).is_empty());
}

#[test]
fn repeats_are_stored_once_also_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let start = radius(Change::Start, 1, 10, "alice");
    let mut log = IdentityLog::open(&settings(&dir, "15m")).unwrap();
    assert_eq!(log.commit(&[start.clone(), start.clone()]).unwrap(), 1);
    let mut retransmitted = start.clone();
    retransmitted.learned_ns += 2 * SEC;
    assert_eq!(log.commit(&[retransmitted.clone()]).unwrap(), 0);
    // A crash: the segment is left open, without its index.
    std::mem::forget(log);
    let mut log = IdentityLog::open(&settings(&dir, "15m")).unwrap();
    assert!(
        log.recovered.iter().any(|r| r.contains("not closed")),
        "{:?}",
        log.recovered
    );
    assert_eq!(
        log.commit(&[retransmitted]).unwrap(),
        0,
        "a retransmission after the restart"
    );
    assert_eq!(
        log.commit(&[radius(Change::Stop, 1, 90, "alice")]).unwrap(),
        1
    );
    assert_eq!(stored(&log.stats()), 1);
    drop(log);
    let dir_log = LogDir::open(&dir).unwrap();
    assert!(logdir::verify(&dir_log).is_empty());
    let mut records = 0;
    logdir::for_each_identity(
        &dir_log,
        0,
        u64::MAX,
        |_| records += 1,
        |_, _, e| panic!("{e}"),
    );
    assert_eq!(records, 2);
}

#[test]
fn a_query_needs_only_the_segment_open_at_its_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut log = IdentityLog::open(&settings(&dir, "1m")).unwrap();
    log.commit(&[radius(Change::Start, 1, 10, "alice")])
        .unwrap();
    log.commit(&[radius(Change::Start, 2, 20, "bob")]).unwrap();
    // Later segments: carol comes and goes; alice and bob stay, carried by checkpoints.
    log.commit(&[radius(Change::Start, 3, 200, "carol")])
        .unwrap();
    log.commit(&[radius(Change::Stop, 3, 400, "carol")])
        .unwrap();
    log.commit(&[radius(Change::Stop, 2, 600, "bob")]).unwrap();
    drop(log);
    let segments = tracenat::maplog::dir::segments(&identity_dir(&dir)).unwrap();
    assert_eq!(
        segments.len(),
        4,
        "a new segment once a minute of records has passed"
    );
    // The first segments are gone (as if retired): the holdings still follow from the
    // checkpoint of the segment open at the time asked.
    std::fs::remove_file(&segments[0]).unwrap();
    std::fs::remove_file(&segments[1]).unwrap();
    assert_eq!(names(&holder_at(&dir, 1, 500)), ["alice@isp.example"]);
    assert_eq!(names(&holder_at(&dir, 2, 500)), ["bob@isp.example"]);
    assert_eq!(names(&holder_at(&dir, 3, 500)), ["unknown"]);
    assert_eq!(names(&holder_at(&dir, 2, 700)), ["unknown"]);
    // And `verify` says what is missing.
    let problems = logdir::verify(&LogDir::open(&dir).unwrap());
    assert!(
        problems.iter().any(|p| p.what.contains("hash chain")),
        "{problems:?}"
    );
}

#[test]
fn tampering_with_the_identity_chain_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut log = IdentityLog::open(&settings(&dir, "15m")).unwrap();
    for i in 1..=20 {
        log.commit(&[radius(Change::Start, i, 10 + i as u64, "user")])
            .unwrap();
    }
    drop(log);
    let path = &tracenat::maplog::dir::segments(&identity_dir(&dir)).unwrap()[0];
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
    let problems = logdir::verify(&LogDir::open(&dir).unwrap());
    assert!(!problems.is_empty(), "a flipped bit in an identity block");
}

/// A mapping log with one TCP session per subscriber, subscriber `i` on public port 5000 + i.
fn mapping_log(dir: &Path, subscribers: &[(u8, u64, u64)]) {
    let mut s = settings(dir, "15m");
    s.record_time_only = true;
    let (log, mut producers) = MapLog::start(s, 1, T0).unwrap();
    for &(i, from_s, to_s) in subscribers {
        let session = |kind, at_s: u64| Event {
            kind,
            ts_ns: T0 + at_s * SEC,
            worker: 0,
            protocol: 6,
            inside_ip: u32::from(sub(i)),
            inside_port: 40000,
            public_ip: u32::from(PUBLIC),
            public_port: 5000 + i as u16,
            dest_ip: u32::from(SERVER),
            dest_port: 80,
            block_first: 0,
            block_last: 0,
            last_active_ns: if kind == EventKind::SessionEnded {
                T0 + at_s * SEC
            } else {
                0
            },
            refused: 0,
        };
        producers[0].emit(&session(EventKind::SessionCreated, from_s));
        producers[0].emit(&session(EventKind::SessionEnded, to_s));
    }
    producers[0].finish();
    log.close().unwrap();
}

fn ask(log: &mut LogDir, port: u16, at_s: u64) -> (Verdict, Vec<String>) {
    let q = Question {
        public_ip: PUBLIC,
        public_port: Some(port),
        from_ns: T0 + at_s * SEC - SEC,
        to_ns: T0 + at_s * SEC + SEC,
        dest_ip: None,
        dest_port: None,
        protocol: None,
    };
    let a = log.answer(&q).unwrap();
    let holders = a
        .candidates
        .iter()
        .flat_map(|c| names(&c.holders))
        .collect();
    (a.verdict, holders)
}

#[test]
fn every_answer_names_the_customer_or_says_why_it_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    // Subscriber 1 browses during alice's session and again during bob's; subscriber 2
    // has no identity record; subscriber 3 is claimed by two sources at once.
    mapping_log(&dir, &[(1, 20, 40), (2, 20, 40), (3, 20, 40)]);
    let mut without = LogDir::open(&dir).unwrap();
    let (_, holders) = ask(&mut without, 5001, 30);
    assert_eq!(holders, ["not_tracked"], "before any identity was recorded");

    let mut log = IdentityLog::open(&settings(&dir, "15m")).unwrap();
    log.commit(&[
        radius(Change::Start, 1, 10, "alice"),
        radius(Change::Stop, 1, 35, "alice"),
    ])
    .unwrap();
    log.commit(&[radius(Change::Start, 1, 36, "bob")]).unwrap();
    let mut lease = radius(Change::Start, 3, 5, "carol");
    lease.source = Source::KeaLease;
    lease.identity = Identity {
        hw_addr: Some("02:74:6e:01:01:03".into()),
        hostname: Some("dave".into()),
        ..Identity::default()
    };
    log.commit(&[radius(Change::Start, 3, 5, "carol"), lease])
        .unwrap();
    drop(log);

    let mut with = LogDir::open(&dir).unwrap();
    assert_eq!(
        ask(&mut with, 5001, 25),
        (Verdict::Unique, vec!["alice@isp.example".into()])
    );
    assert_eq!(
        ask(&mut with, 5001, 38).1,
        ["bob@isp.example"],
        "after the handover"
    );
    assert_eq!(ask(&mut with, 5002, 30).1, ["unknown"]);
    let (_, overlap) = ask(&mut with, 5003, 30);
    assert_eq!(overlap.len(), 2, "two sources disagree: both are shown");
}
