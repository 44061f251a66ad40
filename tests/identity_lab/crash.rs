//! `kill -9` of `tracenat run` in the middle of a stream of Accounting-Requests: nothing
//! that was answered is lost, and what the NAS sends again after the restart is stored
//! once (the identity log recognises repeats across the restart).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

/// Requests in flight at once (distinct Identifiers within a batch).
const WINDOW: usize = 16;
/// Answered requests before the kill.
const ANSWERED_BEFORE_KILL: usize = 300;
/// The most a sender sends, whatever happens.
const CAP: usize = 15_000;
/// Event-Timestamp of request 0.
const STREAM_BASE: u32 = 1_765_000_000;

/// One Accounting-Request of the stream and whether it was answered.
struct Sent {
    packet: Vec<u8>,
    inside: Ipv4Addr,
    answered: bool,
}

/// Request `n`: a Start for 100.64.(4 + n/250).(1 + n%250), its own user and session.
fn stream_request(n: usize) -> Sent {
    let inside = Ipv4Addr::new(100, 64, 4 + (n / 250) as u8, 1 + (n % 250) as u8);
    let (user, session) = (format!("nas-user-{n}"), format!("K{n}"));
    let at = STREAM_BASE + n as u32;
    let packet = wire::accounting_request(
        (n % 256) as u8,
        &[
            (attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()),
            (attr::FRAMED_IP_ADDRESS, &inside.octets()),
            (attr::USER_NAME, user.as_bytes()),
            (attr::ACCT_SESSION_ID, session.as_bytes()),
            (attr::EVENT_TIMESTAMP, &at.to_be_bytes()),
        ],
        LAB_RADIUS_SECRET.as_bytes(),
    )
    .unwrap();
    Sent {
        packet,
        inside,
        answered: false,
    }
}

/// What the sender thread and the test share.
#[derive(Default)]
struct Progress {
    answered: AtomicUsize,
    /// Batches that got no answer at all.
    silent: AtomicUsize,
    stop: AtomicBool,
}

/// Sends `batch` at once, then takes answers until each is answered or none comes for
/// a while; marks the answered ones (only a byte-exact Accounting-Response counts).
fn send_batch(socket: &UdpSocket, batch: &mut [Sent]) -> usize {
    for sent in batch.iter() {
        socket.send_to(&sent.packet, listener()).expect("send");
    }
    let mut answered = 0;
    while answered < batch.len() {
        let Some(response) = receive(socket, Duration::from_millis(500)) else {
            break;
        };
        let hit = batch
            .iter_mut()
            .find(|s| !s.answered && expected_response(&s.packet) == response);
        if let Some(sent) = hit {
            sent.answered = true;
            answered += 1;
        }
    }
    answered
}

/// The NAS: batches of WINDOW requests from one socket in `tn-access` until told to stop.
fn stream(progress: &Progress) -> Vec<Sent> {
    let socket = access_socket();
    let mut all = Vec::new();
    while !progress.stop.load(Ordering::SeqCst) && all.len() < CAP {
        let mut batch: Vec<Sent> = (all.len()..all.len() + WINDOW)
            .map(stream_request)
            .collect();
        let answered = send_batch(&socket, &mut batch);
        progress.answered.fetch_add(answered, Ordering::SeqCst);
        if answered == 0 {
            progress.silent.fetch_add(1, Ordering::SeqCst);
        }
        all.extend(batch);
    }
    all
}

/// Polls `condition` every 20 ms for up to 60 s.
fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many records of the log name each inside address.
fn stored_by_address(log_dir: &str) -> BTreeMap<Ipv4Addr, usize> {
    let mut counts = BTreeMap::new();
    for r in identity_records(log_dir) {
        assert_eq!(r["kind"], "identity_start", "{r}");
        let inside: Ipv4Addr = r["inside"].as_str().unwrap().parse().unwrap();
        *counts.entry(inside).or_default() += 1;
    }
    counts
}

/// Sends each request again (stop-and-wait, up to 3 tries) from a fresh socket, as a
/// NAS does after its server went away; every one must be answered.
fn resend(requests: &[&Sent]) {
    let socket = access_socket();
    for sent in requests {
        let answered = (0..3).any(|_| {
            exchange(&socket, &sent.packet, Duration::from_secs(2))
                .is_some_and(|r| r == expected_response(&sent.packet))
        });
        assert!(answered, "{} not answered after the restart", sent.inside);
    }
}

#[test]
fn kill_9_mid_stream_loses_no_answered_request_and_stores_none_twice() {
    let Some(lab) = Lab::up("crash", 1, Addressing::Static) else {
        return;
    };
    let log_dir = lab.log_arg();
    let nat = lab.nat();
    let progress = Arc::new(Progress::default());
    let sender = {
        let progress = progress.clone();
        std::thread::spawn(move || stream(&progress))
    };
    wait_for("answers before the kill", || {
        progress.answered.load(Ordering::SeqCst) >= ANSWERED_BEFORE_KILL
    });
    nat.kill().unwrap();
    // The stream goes on until a whole batch went unanswered: requests after the kill.
    wait_for("a batch after the kill", || {
        progress.silent.load(Ordering::SeqCst) >= 1
    });
    progress.stop.store(true, Ordering::SeqCst);
    let sent = sender.join().expect("the sender thread");
    assert!(sent.len() < CAP, "the kill came after the whole stream");
    let (answered, unanswered): (Vec<&Sent>, Vec<&Sent>) = sent.iter().partition(|s| s.answered);
    assert!(answered.len() >= ANSWERED_BEFORE_KILL);
    assert!(unanswered.len() >= WINDOW, "a whole batch went unanswered");

    // Straight after the crash: every answered request is in the log, once; nothing
    // is there twice (what was stored but not answered yet may be there too).
    let after_kill = stored_by_address(&log_dir);
    eprintln!(
        "sent {}, answered {} before the kill, {} in the log after it",
        sent.len(),
        answered.len(),
        after_kill.len()
    );
    for s in &answered {
        assert_eq!(after_kill.get(&s.inside), Some(&1), "answered {}", s.inside);
    }
    assert!(after_kill.values().all(|&n| n == 1), "{after_kill:?}");
    assert!(after_kill.len() <= sent.len());

    // The NAS sends the unanswered ones again, and (to be sure repeats are recognised
    // across the restart) the last 50 answered ones too.
    let nat = lab.nat();
    let mut again = unanswered.clone();
    again.extend(answered.iter().rev().take(50));
    resend(&again);
    let text_now = metrics();
    let stored = metric(&text_now, "tracenat_identity_records_stored_total");
    let repeats = metric(&text_now, "tracenat_identity_repeats_total");
    assert_eq!(stored + repeats, again.len() as u64, "{text_now}");
    assert!(repeats >= 50, "{text_now}");
    assert_eq!(
        stored as usize,
        sent.len() - after_kill.len(),
        "stored after the restart: exactly what the crash left out\n{text_now}"
    );
    nat.stop().unwrap();

    let in_the_end = stored_by_address(&log_dir);
    assert_eq!(in_the_end.len(), sent.len(), "every request stored");
    assert!(in_the_end.values().all(|&n| n == 1), "none twice");
    for s in &sent {
        assert!(in_the_end.contains_key(&s.inside), "{} missing", s.inside);
    }
    assert_verifies(&log_dir);
}
