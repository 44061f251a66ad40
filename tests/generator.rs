//! `tracenat gen`: the AF_XDP generator and sink on real (veth) links.
//!
//! Needs root (namespaces, XDP); without it each test says so and passes without running.
//! The direct tests build their own namespace `tn-gt-<pid>-<n>` with a veth pair `tn-gt-a` ↔
//! `tn-gt-b` (no NAT) and delete it when done, also when an assertion fails. The
//! end-to-end test builds the lab (1 worker, 1 subscriber) in a directory of its own, runs
//! the NAT, a reflecting sink in tn-inet and the sender in tn-access, and takes the lab down
//! afterwards (a drop guard). Tests take turns: they share the CPUs, and pacing and latency
//! are measured.

#[allow(unused_imports)] // the lab harness is all this file takes from common
mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::lab::{exe, gen_send};
use serde_json::Value;
use tracenat::demo::{self, LabProcess, in_namespace};
use tracenat::generator::frames::{Proto, SizeMix};
use tracenat::generator::send::{SendOptions, SendReport, run_send};
use tracenat::generator::sink::{Sink, SinkOptions, SinkReport};
use tracenat::lab::{self, UpOptions, topology};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with a veth pair `tn-gt-a` ↔ `tn-gt-b` (2 queues each), deleted on drop.
struct Pair {
    ns: String,
}

impl Pair {
    fn new(test: &str) -> Option<(Pair, MutexGuard<'static, ()>)> {
        if !is_root() {
            eprintln!("skipped: {test} needs root (network namespaces and XDP)");
            return None;
        }
        let guard = turn();
        // A fresh name each time: a deleted namespace's devices go away asynchronously.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let ns = format!(
            "tn-gt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        let pair = Pair { ns };
        let n = pair.ns.as_str();
        ip(&[
            "-n",
            n,
            "link",
            "add",
            "tn-gt-a",
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "type",
            "veth",
            "peer",
            "name",
            "tn-gt-b",
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
        ]);
        for dev in ["tn-gt-a", "tn-gt-b", "lo"] {
            ip(&["-n", n, "link", "set", dev, "up"]);
        }
        Some((pair, guard))
    }

    fn mac_b(&self) -> [u8; 6] {
        in_namespace(&self.ns, || tracenat::generator::interface_mac("tn-gt-b"))
            .expect("tn-gt-b's MAC")
    }

    /// Runs a sink on tn-gt-b while `send` runs (in the namespace); the sink stops shortly
    /// after the sender.
    fn exchange(&self, sink: SinkOptions, send: SendOptions) -> (SendReport, SinkReport) {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let (ns, stop2, ready2) = (self.ns.clone(), stop.clone(), ready.clone());
        let sink_thread = std::thread::spawn(move || {
            in_namespace(&ns, move || {
                let sink = Sink::open(&sink).map_err(|e| std::io::Error::other(e.to_string()))?;
                ready2.store(true, Ordering::SeqCst);
                sink.run(&stop2)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline && !sink_thread.is_finished(),
                "the sink did not come up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let never = AtomicBool::new(false);
        let sent = in_namespace(&self.ns, || {
            run_send(&send, &never).map_err(|e| std::io::Error::other(e.to_string()))
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let received = sink_thread.join().expect("sink thread").expect("sink runs");
        (sent.expect("sender runs"), received)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn server() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 7)
}

fn options(pair: &Pair) -> (SinkOptions, SendOptions) {
    let sink = SinkOptions::new("tn-gt-b", Duration::from_secs(30));
    let mut send = SendOptions::new("tn-gt-a", vec![server()]);
    send.dst_mac = Some(pair.mac_b());
    send.subscribers = 4;
    send.flows = 2;
    (sink, send)
}

#[test]
fn every_packet_arrives_without_loss_with_latency_and_imix_in_proportion() {
    let Some((pair, _turn)) = Pair::new("every_packet_arrives") else {
        return;
    };
    let (mut sink, mut send) = options(&pair);
    let dir = tempfile::tempdir().unwrap();
    let hist = dir.path().join("one-way.hlog");
    sink.hist_out = Some(hist.clone());
    send.size = SizeMix::Imix;
    send.rate = Some(5_000);
    send.duration = None;
    send.count = Some(6_000); // 500 IMIX cycles
    let (sent, got) = pair.exchange(sink, send);

    assert_eq!(sent.sent, 6_000, "the count bounds the run");
    assert_eq!(sent.flows, 8);
    assert_eq!(got.stamped, sent.sent, "every packet counted: {got:?}");
    assert_eq!(got.foreign, 0);
    assert_eq!(got.loss.lost, 0, "no loss at 5 kpps: {:?}", got.loss);
    assert_eq!(got.loss.flows, 8);
    assert_eq!(got.bytes, sent.bytes, "bytes agree");
    let l = got.latency;
    assert_eq!(l.count, sent.sent);
    assert!(l.min_ns > 0 && l.p50_ns <= l.p90_ns && l.p90_ns <= l.p99_ns);
    assert!(l.p99_ns <= l.p999_ns && l.p999_ns <= l.max_ns, "{l:?}");
    // IMIX: 64/594/1518 in 7:4:1, as sent and as received.
    for sizes in [&sent.sizes, &got.sizes] {
        let n = |s: u16| sizes.get(&s).copied().unwrap_or(0);
        assert_eq!((n(64), n(594), n(1518)), (3_500, 2_000, 500), "{sizes:?}");
    }
    // Both queues used: subscribers are spread by their owner's hash.
    assert!(got.per_queue.iter().all(|&n| n > 0), "{:?}", got.per_queue);
    assert_eq!(
        got.per_queue, sent.per_queue,
        "each frame arrives on its tx queue"
    );
    let log = std::fs::read_to_string(&hist).unwrap();
    assert!(
        log.lines().any(|l| l.contains(",HIST")),
        "interval log:\n{log}"
    );
}

#[test]
fn pacing_never_exceeds_the_rate() {
    let Some((pair, _turn)) = Pair::new("pacing") else {
        return;
    };
    let (sink, mut send) = options(&pair);
    send.rate = Some(20_000);
    send.duration = Some(Duration::from_secs(1));
    send.proto = Proto::Tcp;
    let (sent, got) = pair.exchange(sink, send);
    // Pacing, not speed: the token bucket never lets more out than the rate allows (plus
    // 20 % for its first burst and timer slack), while unpaced this sender goes many times
    // faster. How far short of the rate a starved machine falls is the machine's business,
    // so the lower bound asks only that traffic flowed.
    assert!(
        sent.sent > 0 && sent.sent <= 24_000,
        "sent {} in 1 s at 20 kpps: {sent:?}",
        sent.sent
    );
    assert!(sent.pps <= 24_000.0, "{}", sent.pps);
    assert_eq!(got.stamped, sent.sent);
    // TCP frames of the 64-byte class are raised to hold the stamp.
    assert_eq!(sent.sizes.keys().copied().collect::<Vec<_>>(), vec![76]);
}

#[test]
fn new_flows_get_new_tuples() {
    let Some((pair, _turn)) = Pair::new("new_flows") else {
        return;
    };
    let (sink, mut send) = options(&pair);
    send.rate = Some(4_000);
    send.new_flows_per_sec = 200.0;
    send.duration = Some(Duration::from_secs(1));
    let (sent, got) = pair.exchange(sink, send);
    assert!(
        (180..=210).contains(&(sent.flows_started - sent.flows)),
        "{} new flows",
        sent.flows_started - sent.flows
    );
    // Every flow that sent at least one frame was seen, and nothing was lost.
    assert!(got.loss.flows > 150, "{:?}", got.loss);
    assert_eq!(got.loss.lost, 0);
    assert_eq!(got.stamped, sent.sent);
}

#[test]
fn bad_arguments_are_usage_errors() {
    let run = |args: &[&str]| {
        Command::new(exe())
            .args(args)
            .output()
            .expect("tracenat runs")
    };
    let unbounded = run(&[
        "gen",
        "send",
        "--interface",
        "lo",
        "--dst",
        "198.51.100.10:7",
    ]);
    assert_eq!(unbounded.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unbounded.stderr).contains("--duration or --count"));
    for bad in [
        vec!["--rate", "fast"],
        vec!["--size", "63"],
        vec!["--dst-mac", "zz"],
    ] {
        let mut args = vec![
            "gen",
            "send",
            "--interface",
            "lo",
            "--dst",
            "198.51.100.10:7",
            "--count",
            "1",
        ];
        args.extend(bad.iter());
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// The lab for the end-to-end test, taken down when dropped (also when the test fails).
struct Lab {
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = lab::down(&self.dir, &mut |_| {});
    }
}

fn json_in(text: &str) -> Value {
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in:\n{text}"));
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

#[test]
fn round_trips_through_the_nat_in_the_lab() {
    if !is_root() {
        eprintln!("skipped: round_trips_through_the_nat_in_the_lab needs root");
        return;
    }
    let _turn = turn();
    let dir = std::env::temp_dir().join(format!("tracenat-gen-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let up = UpOptions {
        workers: 1,
        subscribers: 1,
        dir: dir.clone(),
        force: false,
    };
    // Armed before `up`: a half-built lab is removed too.
    let lab = Lab { dir: dir.clone() };
    lab::up(&up, &mut |_| {}).expect("lab up (is another lab up? `tracenat lab down`)");
    let nat = demo::start_nat(&exe(), &lab.dir).expect("tracenat run comes up");

    let sink = LabProcess::start(
        &exe(),
        topology::INET_NS,
        &[
            "gen",
            "sink",
            "--interface",
            topology::OUTSIDE_PEER_IF,
            "--duration",
            "30s",
            "--reflect",
            "--json",
        ],
        dir.join("sink.out"),
    )
    .expect("sink starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(dir.join("sink.out"))
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "the sink did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let send = gen_send()
        .args([
            "--dst",
            "198.51.100.10:7,198.51.100.20:9",
            "--subscribers",
            "4",
            "--flows",
            "2",
            "--rate",
            "1000",
            "--duration",
            "1s",
            "--expect-replies",
            "--json",
        ])
        .output()
        .expect("gen send runs");
    let text = String::from_utf8_lossy(&send.stdout);
    assert!(
        send.status.success(),
        "gen send: {text}{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let sent = json_in(&text);
    let sink_text = sink.stop().expect("sink stops");
    let run_output = nat.stop().expect("the NAT stops");
    let got = json_in(&sink_text);

    let n = sent["sent"].as_u64().unwrap();
    assert!((800..=1200).contains(&n), "{sent}");
    assert_eq!(sent["dst_mac"], "02:74:6e:00:00:01", "resolved tn-in's MAC");
    let replies = &sent["replies"];
    assert_eq!(replies["received"].as_u64(), Some(n), "every reply: {sent}");
    assert_eq!(replies["lost"].as_u64(), Some(0));
    assert_eq!(replies["gaps"]["flows"].as_u64(), Some(8));
    let rtt = &replies["rtt"];
    let (p50, p99, max) = (
        rtt["p50_ns"].as_u64().unwrap(),
        rtt["p99_ns"].as_u64().unwrap(),
        rtt["max_ns"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{rtt}");

    assert_eq!(got["stamped"].as_u64(), Some(n), "{got}");
    assert_eq!(got["reflected"].as_u64(), Some(n));
    let sources: Vec<Ipv4Addr> = got["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!sources.is_empty());
    for s in &sources {
        assert_eq!(&s.octets()[..3], &[203, 0, 113], "translated source {s}");
    }
    assert!(
        run_output.contains("sessions: 8 created"),
        "one session per flow:\n{run_output}"
    );
    drop(lab);
}
