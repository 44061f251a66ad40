//! `tracenat demo`, for real: the DHCP lab, traffic from every subscriber, an address
//! handed from bob to dave while the NAT runs, and every request traced to the subscriber
//! and to the customer who sent it — both sides of the handover; and the static story.
//!
//! Needs root (namespaces, XDP) and Kea and dhclient; without them each test says so and
//! passes without running. A lab already up on the machine is never taken down: the test
//! fails instead, saying so.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use tracenat::demo::{self, DemoOptions, DemoReport, Traced};
use tracenat::lab::Addressing;
use tracenat::lab::dhcp::customer_name;
use tracenat::lab::sys::{Tool, find_tool};

static LAB: Mutex<()> = Mutex::new(());

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tracenat"))
}

/// Why the demo cannot run here, if it cannot.
fn cannot_run(addressing: Addressing) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces and XDP)".into());
    }
    if addressing == Addressing::Dhcp {
        for tool in [Tool::KeaDhcp4, Tool::Dhclient] {
            if let Err(e) = find_tool(tool) {
                return Some(e.to_string());
            }
        }
    }
    None
}

/// Runs the demo in a directory of its own; the report and what it printed.
fn run_demo(name: &str, addressing: Addressing, subscribers: u16) -> Option<(DemoReport, String)> {
    if let Some(why) = cannot_run(addressing) {
        eprintln!("skipped: {name}: {why}");
        return None;
    }
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("tracenat-demo-{name}-{}", std::process::id()));
    let options = DemoOptions {
        workers: 2,
        subscribers,
        requests_per_subscriber: 2,
        dir: dir.clone(),
        addressing,
        force: false,
        keep: false,
    };
    let mut out = Vec::new();
    let report = demo::run(&exe(), &options, &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let report = report
        .unwrap_or_else(|e| panic!("demo: {e} (is another lab up? `tracenat lab down`)\n{text}"));
    let _ = std::fs::remove_dir_all(&dir);
    Some((report, text))
}

/// The requests `subscriber` sent from `address`.
fn sent_by(report: &DemoReport, subscriber: u16, address: Ipv4Addr) -> Vec<&Traced> {
    report
        .traced
        .iter()
        .filter(|t| t.sent.subscriber == subscriber && *t.sent.from.ip() == address)
        .collect()
}

#[test]
fn every_request_is_traced_to_the_customer_who_sent_it_across_a_handover() {
    let Some((report, text)) = run_demo("dhcp", Addressing::Dhcp, 4) else {
        return;
    };
    // 4 subscribers × 2 pages, then dave's 2 pages from bob's old address.
    assert_eq!(report.requests, 10, "{text}");
    assert_eq!(report.traced.len(), report.requests, "{text}");
    for t in &report.traced {
        let expected = customer_name(t.sent.subscriber);
        assert_eq!(t.sent.customer.as_deref(), Some(expected.as_str()));
        assert!(
            t.right_subscriber && t.right_customer,
            "{} from {} ({expected}) traced as {:?} / {} {:?}\n{text}",
            t.sent.path,
            t.sent.from,
            t.subscriber,
            t.holder_verdict,
            t.customer
        );
        assert_eq!(t.customer.as_deref(), Some(expected.as_str()), "{text}");
    }
    assert_eq!(report.traced_to_customer, report.requests, "{text}");

    // Both sides of the handover: bob's requests from the address, then dave's.
    let handover = report.handover.as_ref().expect("an address changed hands");
    assert_eq!((handover.from, handover.to), (2, 4), "{text}");
    assert_eq!(handover.holders, ["bob", "dave"], "{text}");
    let bobs = sent_by(&report, 2, handover.address);
    let daves = sent_by(&report, 4, handover.address);
    assert_eq!((bobs.len(), daves.len()), (2, 2), "{text}");
    assert!(bobs.iter().all(|t| t.customer.as_deref() == Some("bob")));
    assert!(daves.iter().all(|t| t.customer.as_deref() == Some("dave")));
    // Dave also sent from his own address before he took bob's.
    assert!(
        report
            .traced
            .iter()
            .any(|t| t.sent.subscriber == 4 && *t.sent.from.ip() != handover.address),
        "{text}"
    );

    assert!(report.udp_echoed && report.pinged, "{text}");
    assert!(report.succeeded(Addressing::Dhcp), "{report:#?}\n{text}");
    for expected in [
        format!("== 5b. {} changed hands at ", handover.address),
        format!("unique {} = dave (CPE 02:74:6e:", handover.address),
        format!("unique {} = bob (CPE 02:74:6e:", handover.address),
        "10 requests: 10 unique, 0 ambiguous, 0 none".to_owned(),
        "10 to the customer who sent them".to_owned(),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
    }
}

#[test]
fn the_static_story_traces_every_request_to_its_subscriber() {
    let Some((report, text)) = run_demo("static", Addressing::Static, 2) else {
        return;
    };
    assert_eq!(report.requests, 4, "{text}");
    assert_eq!(report.traced_right, 4, "{text}");
    assert!(report.handover.is_none(), "{text}");
    assert!(report.udp_echoed && report.pinged, "{text}");
    assert!(report.succeeded(Addressing::Static), "{text}");
    assert!(
        text.contains("4 traced to the subscriber that sent them"),
        "{text}"
    );
}
