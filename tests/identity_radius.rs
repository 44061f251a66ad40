//! The RADIUS accounting listener against FreeRADIUS's `radclient` (freeradius-utils) on
//! loopback: what is stored, what is answered, what is dropped and counted.
//! Raw datagrams (built with `radius::wire`) cover retransmissions and malformed input.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracenat::config::{RadiusClient, RadiusConfig};
use tracenat::identity::radius::wire::{self, Packet, attr, code};
use tracenat::identity::radius::{RadiusListener, RadiusStats, RequestResult};
use tracenat::identity::{Change, IdentityRecord, IdentitySink, MemorySink};

const SECRET: &str = "testing123";

/// Keeps every commit call apart, and fails on demand.
#[derive(Clone, Default)]
struct TestSink {
    commits: Arc<Mutex<Vec<Vec<IdentityRecord>>>>,
    stored: Arc<Mutex<MemorySink>>,
    fail: Arc<AtomicBool>,
}

impl IdentitySink for TestSink {
    fn commit(&mut self, records: &[IdentityRecord]) -> std::io::Result<usize> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("disk gone"));
        }
        self.commits.lock().unwrap().push(records.to_vec());
        self.stored.lock().unwrap().commit(records)
    }
}

impl TestSink {
    fn records(&self) -> Vec<IdentityRecord> {
        self.stored.lock().unwrap().records.clone()
    }
}

/// A listener on 127.0.0.1:<free port> in its own thread; NAS 127.0.0.1 with SECRET.
struct Server {
    addr: SocketAddr,
    stats: Arc<RadiusStats>,
    sink: TestSink,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let config = RadiusConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            clients: vec![RadiusClient {
                address: "127.0.0.1/32".parse().unwrap(),
                secret: SECRET.as_bytes().to_vec(),
                name: "nas-1".into(),
            }],
        };
        let stats = Arc::new(RadiusStats::default());
        let mut listener = RadiusListener::bind(config, stats.clone()).unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = TestSink::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mut sink, stop) = (sink.clone(), stop.clone());
            std::thread::spawn(move || {
                let clock = || {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as u64
                };
                listener.run(&mut sink, &clock, &stop).unwrap();
            })
        };
        Server {
            addr,
            stats,
            sink,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self, result: RequestResult) -> u64 {
        self.stats.requests(result)
    }

    /// Waits (up to 5 s) until `result` was counted `n` times.
    fn wait_for(&self, result: RequestResult, n: u64) {
        self.wait_until(result.name(), n, || self.count(result));
    }

    /// Waits (up to 5 s) until `value()` is `n`: counters move just after the socket
    /// operation a test may already have seen.
    fn wait_until(&self, what: &str, n: u64, value: impl Fn() -> u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while value() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(value(), n, "{what}\n{}", self.stats.prometheus());
    }

    /// radclient sending `requests` (blocks of `Attribute = value` lines) in one run.
    fn radclient(&self, requests: &[String], secret: &str, retries: u32) -> Output {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(requests.join("\n").as_bytes()).unwrap();
        Command::new(radclient())
            .args([
                "-x",
                "-p",
                "32",
                "-t",
                "1",
                "-r",
                &retries.to_string(),
                "-f",
            ])
            .arg(file.path())
            .arg(self.addr.to_string())
            .args(["acct", secret])
            .output()
            .expect("radclient runs")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// radclient's path, installing freeradius-utils if it is missing.
fn radclient() -> &'static str {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let present = || Command::new("radclient").arg("-v").output().is_ok();
        present()
            || Command::new("apt-get")
                .args(["install", "-y", "freeradius-utils"])
                .status()
                .is_ok_and(|s| s.success())
                && present()
    });
    assert!(
        *found,
        "radclient is missing and could not be installed (apt-get install freeradius-utils)"
    );
    "radclient"
}

fn received_responses(out: &Output) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("Received Accounting-Response"))
        .count()
}

fn session(status: &str, i: u32) -> String {
    format!(
        "Acct-Status-Type = {status}\nFramed-IP-Address = 100.64.{}.{}\nUser-Name = \"user{i}@isp.example\"\n\
         Acct-Session-Id = \"S{i}\"\nNAS-IP-Address = 127.0.0.1\nNAS-Port-Id = \"eth 0/1/{i}:100\"\n\
         Event-Timestamp = {}\n",
        i / 200,
        1 + i % 200,
        1_700_000_000 + i
    )
}

#[test]
fn every_session_is_stored_once_and_answered() {
    let server = Server::start();
    let requests: Vec<String> = (0..50)
        .flat_map(|i| ["Start", "Interim-Update", "Stop"].map(|s| session(s, i)))
        .collect();
    let out = server.radclient(&requests, SECRET, 3);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(received_responses(&out), 150);

    let records = server.sink.records();
    assert_eq!(records.len(), 150);
    for i in 0..50u32 {
        let ip = Ipv4Addr::new(100, 64, 0, 1 + i as u8);
        for change in [Change::Start, Change::Update, Change::Stop] {
            let found: Vec<_> = records
                .iter()
                .filter(|r| r.inside_ip == ip && r.change == change)
                .collect();
            assert_eq!(found.len(), 1, "{ip} {change:?}");
            let r = found[0];
            assert_eq!(r.at_ns, u64::from(1_700_000_000 + i) * 1_000_000_000);
            assert_eq!(
                r.identity.user.as_deref(),
                Some(format!("user{i}@isp.example").as_str())
            );
            assert_eq!(
                r.identity.session_id.as_deref(),
                Some(format!("S{i}").as_str())
            );
            assert_eq!(
                r.identity.nas_port_id.as_deref(),
                Some(format!("eth 0/1/{i}:100").as_str())
            );
        }
    }
    assert_eq!(server.count(RequestResult::Stored), 150);
    let commits = server.sink.commits.lock().unwrap().len() as u64;
    assert_eq!(server.stats.commits.load(Ordering::SeqCst), commits);
    assert!(commits <= 150);
}

#[test]
fn a_retransmission_is_answered_twice_and_stored_once() {
    let server = Server::start();
    let nas = nas_socket("127.0.0.1");
    let request = wire::accounting_request(
        42,
        &[
            (attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()),
            (attr::FRAMED_IP_ADDRESS, &[100, 64, 9, 9]),
            (attr::USER_NAME, b"carol"),
        ],
        SECRET.as_bytes(),
    )
    .unwrap();
    nas.send_to(&request, server.addr).unwrap();
    let first = receive(&nas).expect("first answer");
    nas.send_to(&request, server.addr).unwrap();
    let second = receive(&nas).expect("second answer");
    assert_eq!(first, second);
    let answer = Packet::new_checked(&first[..]).unwrap();
    assert_eq!(
        (answer.code(), answer.identifier()),
        (code::ACCOUNTING_RESPONSE, 42)
    );
    assert_eq!(server.sink.records().len(), 1);
    assert_eq!(server.sink.commits.lock().unwrap().len(), 1);
    assert_eq!(server.count(RequestResult::Duplicate), 1);
    server.wait_until("responses", 2, || {
        server.stats.responses.load(Ordering::SeqCst)
    });
}

#[test]
fn a_wrong_secret_gets_no_answer() {
    let server = Server::start();
    let out = server.radclient(&[session("Start", 1)], "not-the-secret", 1);
    assert!(!out.status.success());
    assert_eq!(received_responses(&out), 0);
    assert!(server.count(RequestResult::BadAuthenticator) >= 1);
    assert!(server.sink.records().is_empty());
}

#[test]
fn accounting_on_resets_the_nas_and_message_authenticator_is_checked() {
    let server = Server::start();
    let on = "Acct-Status-Type = Accounting-On\nNAS-IP-Address = 127.0.0.1\nMessage-Authenticator = 0x00\n";
    let out = server.radclient(&[on.to_string()], SECRET, 3);
    assert_eq!(
        received_responses(&out),
        1,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let records = server.sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].change, Change::NasReset);
    assert_eq!(records[0].inside_ip, Ipv4Addr::UNSPECIFIED);
    assert_eq!(records[0].identity.nas_ip, Some(Ipv4Addr::LOCALHOST));
}

#[test]
fn malformed_requests_are_counted_by_reason_and_never_answered() {
    let server = Server::start();
    let nas = nas_socket("127.0.0.1");
    let start = 1u32.to_be_bytes();
    let valid = |id: u8| {
        let attributes: [(u8, &[u8]); 2] = [
            (attr::ACCT_STATUS_TYPE, &start),
            (attr::FRAMED_IP_ADDRESS, &[100, 64, 2, id]),
        ];
        wire::accounting_request(id, &attributes, SECRET.as_bytes()).unwrap()
    };
    let mut with_length = valid(1);
    with_length[2..4].copy_from_slice(&100u16.to_be_bytes());
    let mut bad_attribute = valid(2);
    bad_attribute[21] = 1;
    let mut access_request = valid(3);
    access_request[0] = 1;
    let short_address = wire::accounting_request(
        4,
        &[
            (attr::ACCT_STATUS_TYPE, &start),
            (attr::FRAMED_IP_ADDRESS, &[100, 64, 2]),
        ],
        SECRET.as_bytes(),
    )
    .unwrap();
    let mut forged_mac = wire::accounting_request(
        5,
        &[
            (attr::ACCT_STATUS_TYPE, &start),
            (attr::MESSAGE_AUTHENTICATOR, &[]),
        ],
        SECRET.as_bytes(),
    )
    .unwrap();
    // Alter the MAC and re-sign the Request Authenticator, as a forger without the MAC
    // check in mind would.
    let last = forged_mac.len() - 1;
    forged_mac[last] ^= 1;
    resign(&mut forged_mac);
    let sent: [(&[u8], RequestResult); 6] = [
        (&[4, 1, 0], RequestResult::MalformedLength),
        (&with_length, RequestResult::MalformedLength),
        (&bad_attribute, RequestResult::MalformedAttribute),
        (&access_request, RequestResult::UnexpectedCode),
        (&short_address, RequestResult::MalformedAttribute),
        (&forged_mac, RequestResult::BadMessageAuthenticator),
    ];
    for (bytes, _) in &sent {
        nas.send_to(bytes, server.addr).unwrap();
    }
    nas_socket("127.0.0.2")
        .send_to(&valid(6), server.addr)
        .unwrap();
    // The listener takes datagrams in order: the answer to this one comes after every
    // drop above was judged, and must be the only answer.
    nas.send_to(&valid(7), server.addr).unwrap();
    let answer = receive(&nas).expect("the valid request is answered");
    assert_eq!(Packet::new_checked(&answer[..]).unwrap().identifier(), 7);
    assert_eq!(receive(&nas), None, "a dropped request was answered");
    for result in [
        RequestResult::MalformedLength,
        RequestResult::MalformedAttribute,
        RequestResult::UnexpectedCode,
        RequestResult::BadMessageAuthenticator,
    ] {
        let expected = sent.iter().filter(|(_, r)| *r == result).count() as u64;
        assert_eq!(server.count(result), expected, "{}", result.name());
    }
    server.wait_for(RequestResult::UnknownClient, 1);
    assert_eq!(server.sink.records().len(), 1);
}

#[test]
fn a_failed_commit_is_not_answered_and_the_retry_is_stored() {
    let server = Server::start();
    let nas = nas_socket("127.0.0.1");
    let request = wire::accounting_request(
        9,
        &[
            (attr::ACCT_STATUS_TYPE, &2u32.to_be_bytes()),
            (attr::FRAMED_IP_ADDRESS, &[100, 64, 3, 3]),
        ],
        SECRET.as_bytes(),
    )
    .unwrap();
    server.sink.fail.store(true, Ordering::SeqCst);
    nas.send_to(&request, server.addr).unwrap();
    assert_eq!(receive(&nas), None);
    server.wait_for(RequestResult::CommitFailed, 1);
    server.sink.fail.store(false, Ordering::SeqCst);
    nas.send_to(&request, server.addr).unwrap();
    assert!(
        receive(&nas).is_some(),
        "the retransmission is stored and answered"
    );
    assert_eq!(server.sink.records().len(), 1);
    assert_eq!(server.count(RequestResult::Duplicate), 0);
}

fn nas_socket(ip: &str) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    socket
}

fn receive(socket: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    socket
        .recv_from(&mut buf)
        .ok()
        .map(|(n, _)| buf[..n].to_vec())
}

/// Recomputes an Accounting-Request's Request Authenticator after its bytes changed.
fn resign(packet: &mut [u8]) {
    let id = packet[1];
    let attributes = Packet::new_checked(&packet[..]).unwrap();
    let pairs: Vec<(u8, Vec<u8>)> = attributes
        .attributes()
        .map(|a| (a.kind, a.value.to_vec()))
        .collect();
    // Rebuild with the MAC attribute under another type, then put type 80 back: the
    // builder would otherwise recompute the MAC.
    let renamed: Vec<(u8, &[u8])> = pairs
        .iter()
        .map(|(k, v)| {
            (
                if *k == attr::MESSAGE_AUTHENTICATOR {
                    26
                } else {
                    *k
                },
                &v[..],
            )
        })
        .collect();
    let mut rebuilt = wire::accounting_request(id, &renamed, b"unused").unwrap();
    let at = 20
        + pairs
            .iter()
            .take_while(|(k, _)| *k != attr::MESSAGE_AUTHENTICATOR)
            .map(|(_, v)| v.len() + 2)
            .sum::<usize>();
    rebuilt[at] = attr::MESSAGE_AUTHENTICATOR;
    rebuilt[4..20].fill(0);
    let authenticator = md5_request_authenticator(&rebuilt);
    rebuilt[4..20].copy_from_slice(&authenticator);
    packet.copy_from_slice(&rebuilt);
}

fn md5_request_authenticator(zeroed: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(zeroed);
    h.update(SECRET.as_bytes());
    h.finalize().into()
}
