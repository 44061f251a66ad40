//! Subscriber identity in `tracenat run`, against real peers in the veth lab: FreeRADIUS's
//! `radclient` and a raw-socket NAS in `tn-access` sending accounting to the NAT's RADIUS
//! listener (also across a `kill -9`), and the lab's Kea and dhclients handing an address
//! from one customer to another while the lab's web server logs requests with a skewed
//! clock. The readers (`log decode`, `log verify`, `identity query`, `log attribute`) are
//! the real binary.
//!
//! Needs root (network namespaces, XDP); without it each test says so and passes. The
//! lab's names are global, so the tests take turns, and each lab is taken down when its
//! guard drops (also when an assertion fails).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracenat::demo::{self, LabProcess, in_namespace};
use tracenat::identity::radius::wire::{self, Packet, attr};
use tracenat::lab::nat_config::LAB_RADIUS_SECRET;
use tracenat::lab::{self, Addressing, UpOptions, topology};

#[path = "identity_lab/crash.rs"]
mod crash;
#[path = "identity_lab/handover.rs"]
mod handover;

static SERIAL: Mutex<()> = Mutex::new(());

/// Exit status of `identity query` when nobody held the address.
const EXIT_UNKNOWN: i32 = 4;

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tracenat"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A lab for one test, taken down when dropped.
struct Lab {
    dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    fn up(name: &str, subscribers: u16, addressing: Addressing) -> Option<Lab> {
        if !is_root() {
            eprintln!("skipped: {name} needs root (network namespaces and XDP)");
            return None;
        }
        let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        wait_for_no_lab(name);
        let dir = std::env::temp_dir().join(format!("tracenat-id-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = UpOptions {
            workers: 1,
            subscribers,
            dir: dir.clone(),
            force: false,
        };
        lab::up_with(&options, addressing, &mut |_| {})
            .expect("lab up (is another lab up? `tracenat lab down`)");
        Some(Lab { dir, _turn: turn })
    }

    fn nat(&self) -> LabProcess {
        demo::start_nat(&exe(), &self.dir).expect("tracenat run comes up")
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn log_arg(&self) -> String {
        self.log_dir().to_str().expect("UTF-8 path").to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = lab::down(&self.dir, &mut |_| {});
    }
}

/// Another process's lab (another test binary, `tracenat demo`) shares the namespace
/// names: wait up to two minutes for it to go, then fail rather than tear it down.
fn wait_for_no_lab(test: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip runs");
        let present: Vec<String> = text(&list.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| [topology::NAT_NS, topology::ACCESS_NS, topology::INET_NS].contains(n))
            .map(str::to_owned)
            .collect();
        if present.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: a lab is up on this machine ({}); take it down (tracenat lab down)",
            present.join(", ")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn tracenat(args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the tracenat binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tracenat_ok(args: &[&str]) -> String {
    let out = tracenat(args);
    assert!(
        out.status.success(),
        "tracenat {} exited {:?}\n{}\n{}",
        args.join(" "),
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The identity records of the log, as `log decode --format json` prints them.
fn identity_records(log_dir: &str) -> Vec<Value> {
    tracenat_ok(&["log", "decode", "--dir", log_dir, "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON record"))
        .filter(|r| {
            r["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("identity_"))
        })
        .collect()
}

/// `log verify` exits 0 and says the chain is intact.
fn assert_verifies(log_dir: &str) {
    let report = tracenat_ok(&["log", "verify", "--dir", log_dir]);
    assert!(report.contains("intact"), "{report}");
}

/// The NAT's metrics text, fetched inside `tn-nat`.
fn metrics() -> String {
    let address: SocketAddr = topology::METRICS.parse().unwrap();
    in_namespace(topology::NAT_NS, || {
        tracenat::dataplane::metrics::fetch(address)
    })
    .expect("the metrics endpoint answers")
}

/// The value of the metric line starting with `series` (name and labels).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn radius_result(result: &str) -> String {
    format!("tracenat_radius_requests_total{{result=\"{result}\"}}")
}

/// Waits (up to 10 s) until `series` is at least `n`; its value then. Counters move
/// just after the socket operation a test has already seen.
fn wait_at_least(series: &str, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics();
        let value = metric(&text, series);
        assert!(
            value >= n || Instant::now() < deadline,
            "{series} stayed below {n}\n{text}"
        );
        if value >= n {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `series` reaches `n`, and insists it is exactly `n`.
fn wait_metric(series: &str, n: u64) {
    assert_eq!(wait_at_least(series, n), n, "{series}\n{}", metrics());
}

/// The listener in the lab: the NAT's inside address, port 1813.
fn listener() -> SocketAddr {
    SocketAddr::new(topology::NAT_INSIDE_ADDRESS.parse().unwrap(), 1813)
}

/// A NAS socket in `tn-access`: sends `packet`, waits up to `wait` for one answer.
fn exchange(socket: &UdpSocket, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    socket.send_to(packet, listener()).expect("send");
    receive(socket, wait)
}

fn receive(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// The Accounting-Response the listener must send for `request`.
fn expected_response(request: &[u8]) -> Vec<u8> {
    wire::accounting_response(
        &Packet::new_unchecked(request),
        LAB_RADIUS_SECRET.as_bytes(),
    )
}

/// A UDP socket bound in `tn-access` (sockets keep their namespace once made).
fn access_socket() -> UdpSocket {
    in_namespace(topology::ACCESS_NS, || {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
    })
    .expect("a socket in tn-access")
}

// ---- 1. radclient against `tracenat run` ----

/// Event-Timestamp of the first session's Start (2025-11-24, whole seconds).
const BASE: u32 = 1_764_000_000;
const SESSIONS: u32 = 100;

/// Session `i`: address 100.64.2.(i+1), one of 7 users; Start at BASE + 10 i, an
/// Interim-Update 60 s later, the Stop 120 s after the Start.
struct Session(u32);

impl Session {
    fn address(&self) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, 2, 1 + self.0 as u8)
    }
    fn user(&self) -> String {
        format!("user{}@lab.example", self.0 % 7)
    }
    fn id(&self) -> String {
        format!("S{}", self.0)
    }
    fn start(&self) -> u32 {
        BASE + 10 * self.0
    }
    fn stop(&self) -> u32 {
        self.start() + 120
    }
    /// radclient's text for one event of this session.
    fn request(&self, status: &str, at: u32) -> String {
        format!(
            "Acct-Status-Type = {status}\nFramed-IP-Address = {}\nUser-Name = \"{}\"\n\
             Acct-Session-Id = \"{}\"\nEvent-Timestamp = {at}\n",
            self.address(),
            self.user(),
            self.id()
        )
    }
    fn events(&self) -> [String; 3] {
        [
            self.request("Start", self.start()),
            self.request("Interim-Update", self.start() + 60),
            self.request("Stop", self.stop()),
        ]
    }
    /// The same Start as the raw bytes a NAS would send.
    fn start_packet(&self, identifier: u8) -> Vec<u8> {
        let attributes: [(u8, Vec<u8>); 5] = [
            (attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes().to_vec()),
            (attr::FRAMED_IP_ADDRESS, self.address().octets().to_vec()),
            (attr::USER_NAME, self.user().into_bytes()),
            (attr::ACCT_SESSION_ID, self.id().into_bytes()),
            (attr::EVENT_TIMESTAMP, self.start().to_be_bytes().to_vec()),
        ];
        let refs: Vec<(u8, &[u8])> = attributes.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        wire::accounting_request(identifier, &refs, LAB_RADIUS_SECRET.as_bytes()).unwrap()
    }
}

/// radclient in `tn-access` sending `requests` (32 in flight) to the listener.
fn radclient(dir: &Path, name: &str, requests: &[String], secret: &str, tries: u32) -> Output {
    let file = dir.join(name);
    std::fs::write(&file, requests.join("\n")).unwrap();
    let (file, tries) = (file.to_str().unwrap().to_owned(), tries.to_string());
    let server = listener().to_string();
    tracenat(&[
        "lab",
        "exec",
        "access",
        "--",
        "radclient",
        "-x",
        "-p",
        "32",
        "-t",
        "2",
        "-r",
        &tries,
        "-f",
        &file,
        &server,
        "acct",
        secret,
    ])
}

fn responses(out: &Output) -> usize {
    text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("Received Accounting-Response"))
        .count()
}

/// `identity query` for `address` at `at` (epoch seconds): exit status and JSON answer.
fn who(log_dir: &str, address: Ipv4Addr, at: u32) -> (i32, Value) {
    let (address, at) = (address.to_string(), at.to_string());
    let out = tracenat(&[
        "identity", "query", "--dir", log_dir, "--inside", &address, "--at", &at, "--json",
    ]);
    let answer = serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap_or(-1), answer)
}

/// Retransmissions (radclient again, and identical datagrams), a wrong secret and
/// malformed datagrams, each counted by the running NAT; none stores anything new.
fn send_the_awkward_ones(lab: &Lab) {
    let again: Vec<String> = (0..10).map(|i| Session(i).events()[0].clone()).collect();
    let out = radclient(&lab.dir, "again.txt", &again, LAB_RADIUS_SECRET, 3);
    assert_eq!(
        responses(&out),
        10,
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    wait_metric("tracenat_identity_repeats_total", 10);

    // The same datagram twice from the same port: the second is a duplicate, answered
    // again with the same bytes from the cache.
    let socket = access_socket();
    let packet = Session(20).start_packet(7);
    let first = exchange(&socket, &packet, Duration::from_secs(3)).expect("an answer");
    let second = exchange(&socket, &packet, Duration::from_secs(3)).expect("an answer again");
    assert_eq!(first, expected_response(&packet));
    assert_eq!(second, first);
    wait_metric(&radius_result("duplicate"), 1);
    wait_metric("tracenat_identity_repeats_total", 11);

    // A wrong secret: no answer, counted; radclient gives up.
    let wrong: Vec<String> = (0..5)
        .map(|i| Session(200 + i).request("Start", BASE))
        .collect();
    let out = radclient(&lab.dir, "wrong.txt", &wrong, "not-the-secret", 1);
    assert_eq!(responses(&out), 0, "{}", text(&out.stdout));
    assert!(
        !out.status.success(),
        "radclient got no answer, it must say so"
    );
    let bad = metric(&metrics(), &radius_result("bad_authenticator"));
    assert!(bad >= 5, "{}", metrics());

    // Malformed datagrams: too short; an address 3 octets long (authentic otherwise).
    assert_eq!(
        exchange(&socket, b"\x04\x01\x00\x0cgarbage!", Duration::from_secs(1)),
        None
    );
    wait_metric(&radius_result("malformed_length"), 1);
    let short_address = wire::accounting_request(
        8,
        &[
            (attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()),
            (attr::FRAMED_IP_ADDRESS, &[100, 64, 3]),
        ],
        LAB_RADIUS_SECRET.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        exchange(&socket, &short_address, Duration::from_secs(1)),
        None
    );
    wait_metric(&radius_result("malformed_attribute"), 1);
}

/// Every record once: (kind, inside, session) → user, with one entry per record.
fn by_event(records: &[Value]) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut events: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for r in records {
        assert_eq!(r["source"], "radius", "{r}");
        let key = (
            r["kind"].as_str().unwrap().to_owned(),
            r["inside"].as_str().unwrap().to_owned(),
            r["identity"]["session_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
        let user = r["identity"]["user"].as_str().unwrap_or("").to_owned();
        events.entry(key).or_default().push(user);
    }
    events
}

#[test]
fn radclient_sessions_are_stored_once_each_and_name_their_user() {
    let Some(lab) = Lab::up("radclient", 1, Addressing::Static) else {
        return;
    };
    let nat = lab.nat();
    let requests: Vec<String> = (0..SESSIONS).flat_map(|i| Session(i).events()).collect();
    let out = radclient(&lab.dir, "sessions.txt", &requests, LAB_RADIUS_SECRET, 3);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(responses(&out), requests.len(), "{}", text(&out.stdout));
    wait_metric(&radius_result("stored"), u64::from(SESSIONS) * 3);

    send_the_awkward_ones(&lab);
    let text_now = metrics();
    assert_eq!(metric(&text_now, &radius_result("stored")), 311);
    assert_eq!(
        metric(&text_now, "tracenat_identity_records_stored_total"),
        300
    );
    nat.stop().unwrap();

    let log_dir = lab.log_arg();
    let records = identity_records(&log_dir);
    let events = by_event(&records);
    assert_eq!(records.len(), 300, "one record per accounting event");
    for i in 0..SESSIONS {
        let s = Session(i);
        for kind in ["identity_start", "identity_update", "identity_stop"] {
            let key = (kind.to_owned(), s.address().to_string(), s.id());
            assert_eq!(events.get(&key), Some(&vec![s.user()]), "{key:?}");
        }
    }
    assert_verifies(&log_dir);

    for i in [0, 37, 99] {
        let s = Session(i);
        let (code, answer) = who(&log_dir, s.address(), s.start() + 90);
        assert_eq!(code, 0, "{answer}");
        assert_eq!(answer["holder"]["verdict"], "known", "{answer}");
        assert_eq!(answer["holder"]["holders"][0]["name"], s.user(), "{answer}");
        let (code, answer) = who(&log_dir, s.address(), s.stop() + 1);
        assert_eq!(code, EXIT_UNKNOWN, "after the Stop: {answer}");
        assert_eq!(answer["holder"]["verdict"], "unknown", "{answer}");
    }
}
