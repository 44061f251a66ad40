//! The wall clock steps under a running NAT (issue 12): `tracenat run` in the veth lab
//! under libfaketime (Debian's faketime), whose wall clock the test moves 10 minutes
//! forward and then back mid-run, as an NTP step would; the monotonic clock is left alone.
//! Timers must not notice, the log must record each step and verify, and the requests
//! before and after trace back to their senders; a session opened before the step back
//! expires on its timeout, not ten minutes later. Needs root and faketime.

#[allow(unused_imports)] // the lab harness is all this file takes from common
mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::{Lab, counter, counters, exe, records, reported};
use tracenat::demo::{self, echo_server, http_get, http_server, in_namespace};
use tracenat::lab::topology;
use tracenat::maplog::record::RecordKind;
use tracenat::maplog::runs::{self, RunLine};

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const STEP_NS: i64 = 600_000_000_000;

/// Moves the NAT's wall clock to `offset` from the true time (libfaketime re-reads the
/// file on every clock read with FAKETIME_NO_CACHE), then gives the NAT time to see it.
fn set_clock(file: &Path, offset: &str) {
    std::fs::write(file, offset).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
}

/// One UDP exchange with the echo server from subscriber 1's `socket`; the socket's port.
fn exchange(socket: &UdpSocket) -> u16 {
    socket.send_to(b"tick", echo_server()).unwrap();
    let mut buf = [0u8; 64];
    socket.recv_from(&mut buf).expect("the echo comes back");
    socket.local_addr().unwrap().port()
}

#[test]
fn a_stepped_wall_clock_leaves_timers_alone_and_is_recorded_in_the_log() {
    if !Path::new(FAKETIME).exists() {
        eprintln!("skipped: needs libfaketime (scripts/setup.sh installs faketime)");
        return;
    }
    let Some(lab) = Lab::up("clock", 1, 2) else {
        return;
    };
    let clock = lab.dir.join("faketime");
    std::fs::write(&clock, "+0").unwrap();
    let preload = format!("LD_PRELOAD={FAKETIME}");
    let file = format!("FAKETIME_TIMESTAMP_FILE={}", clock.display());
    let _servers = demo::start_servers(&exe(), &lab.dir).unwrap();
    let nat = demo::start_nat_under(
        &[
            "/usr/bin/env",
            &preload,
            &file,
            "FAKETIME_NO_CACHE=1",
            "FAKETIME_DONT_FAKE_MONOTONIC=1",
        ],
        &exe(),
        &lab.dir,
    )
    .expect("tracenat run comes up under faketime");

    // Subscriber 1 keeps one UDP session across both steps; subscriber 2 fetches a page
    // in each period (its own new session each time).
    let socket = in_namespace(&topology::subscriber_ns(1), || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(s)
    })
    .unwrap();
    let fetch = || {
        in_namespace(&topology::subscriber_ns(2), || http_get(http_server(), "/"))
            .expect("the page is fetched")
    };
    let udp_port = exchange(&socket);
    fetch();
    set_clock(&clock, "+10m");
    exchange(&socket);
    fetch();
    // An ICMP echo session (timeout 60 s, the shortest there is) opened before the step
    // back must expire 60 s after its last packet, not 10 minutes later.
    let sub1_ns = topology::subscriber_ns(1);
    assert!(demo::ping(&sub1_ns, Ipv4Addr::new(198, 51, 100, 20), 1));
    let pinged = Instant::now();
    set_clock(&clock, "+0");
    exchange(&socket);
    fetch();
    let expired = || counter(&counters(), "events_total", "event=\"sessions_expired\"");
    let expired_before = expired();
    let expired_after = loop {
        if expired() > expired_before {
            break pinged.elapsed();
        }
        assert!(
            pinged.elapsed() < Duration::from_secs(150),
            "the ICMP session outlived its timeout by more than 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "the ICMP session expired {:.1} s after its last packet",
        expired_after.as_secs_f64()
    );
    assert!(
        expired_after >= Duration::from_secs(59),
        "the ICMP session expired early: after {expired_after:?}"
    );
    let output = nat.stop().unwrap();
    assert_eq!(reported(&output, "UMEM frames unaccounted for at exit:"), 0);

    let log = lab.dir.join("log");
    // Each step is in the worker's chain (the log verifies: `records` checks)…
    let steps: Vec<i64> = records(&log, RecordKind::ClockStep)
        .iter()
        .map(|r| r.ts_ns.wrapping_sub(r.last_active_ns) as i64)
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}\n{output}");
    assert!((steps[0] - STEP_NS).abs() < 2_000_000_000, "{steps:?}");
    assert!((steps[1] + STEP_NS).abs() < 2_000_000_000, "{steps:?}");
    // …and in runs.jsonl, where readers find them.
    let noted = runs::read(&log)
        .unwrap()
        .lines
        .iter()
        .filter(|l| matches!(l, RunLine::ClockStep(_)))
        .count();
    assert_eq!(noted, 2);
    // The UDP session lived through both steps: created once, ended once (at the stop).
    let sub1 = u32::from(Ipv4Addr::new(100, 64, 1, 1));
    let mine = |kind| {
        records(&log, kind)
            .into_iter()
            .filter(|r| r.inside_ip == sub1 && r.inside_port == udp_port && r.protocol == 17)
            .count()
    };
    assert_eq!(mine(RecordKind::SessionCreated), 1, "{output}");
    assert_eq!(mine(RecordKind::SessionEnded), 1, "{output}");

    // The web server's clock never stepped: every request still traces to subscriber 2.
    let access_log = lab.dir.join("access.log");
    let out = common::ok(common::tracenat(&[
        "log",
        "attribute",
        "--dir",
        log.to_str().unwrap(),
        "--access-log",
        access_log.to_str().unwrap(),
        "--json",
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("verdict").is_some())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    let sub2 = SocketAddrV4::new(Ipv4Addr::new(100, 64, 1, 2), 0);
    for line in &lines {
        assert_eq!(line["verdict"], "unique", "{line}");
        let text = line.to_string();
        assert!(text.contains(&sub2.ip().to_string()), "{line}");
    }
}
