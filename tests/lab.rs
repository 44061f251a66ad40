//! The veth lab (`tracenat lab …`), built for real: namespaces, links, addresses, the
//! config it writes, reachability without the NAT running, the helper servers, and
//! teardown, including after a crash.
//!
//! Needs root (network namespaces); without it each test prints a note and passes.
//! Namespace names are global, so the tests take turns (`SERIAL`), and each one that
//! builds a lab holds a guard that runs `tracenat lab down` when dropped — also when an
//! assertion fails. A lab that is already up on the machine (someone else's) is never
//! taken down: the test fails instead, saying so.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tracenat::config::Config;
use tracenat::reader::access_log::{AccessLogParser, JsonFields, LogFormat};
use tracenat::reader::time::parse_time;

/// The lab's own namespaces, as `ip netns list` would show them after `up`.
const LAB_NAMESPACES: [&str; 6] = [
    "tn-nat",
    "tn-access",
    "tn-inet",
    "tn-sub-1",
    "tn-sub-2",
    "tn-sub-3",
];

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `None` (after printing why) when the tests cannot run here.
fn start(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !is_root() {
        eprintln!("{test}: skipped: the lab needs root (network namespaces)");
        return None;
    }
    Some(serial())
}

fn tracenat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracenat"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the tracenat binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs tracenat, insists on exit 0, returns stdout.
fn tracenat_ok(args: &[&str]) -> String {
    let output = tracenat(args);
    assert!(
        output.status.success(),
        "tracenat {} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// `tracenat lab exec WHERE -- ARGS…`, its output.
fn exec(target: &str, args: &[&str]) -> Output {
    let mut all = vec!["lab", "exec", target, "--"];
    all.extend_from_slice(args);
    tracenat(&all)
}

fn exec_ok(target: &str, args: &[&str]) -> String {
    let mut all = vec!["lab", "exec", target, "--"];
    all.extend_from_slice(args);
    tracenat_ok(&all)
}

fn ip_netns_list() -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    text(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Lab namespaces (by the lab's names; other `tn-…` namespaces may belong to others).
fn lab_namespaces_present() -> Vec<String> {
    ip_netns_list()
        .into_iter()
        .filter(|name| {
            ["tn-nat", "tn-access", "tn-inet"].contains(&name.as_str())
                || name
                    .strip_prefix("tn-sub-")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

/// A lab directory under /tmp, and the lab built in it; `lab down` when dropped.
struct Lab {
    dir: tempfile::TempDir,
    armed: bool,
}

impl Lab {
    fn new(test: &str) -> Lab {
        let present = lab_namespaces_present();
        assert!(
            present.is_empty(),
            "{test}: a lab is already up on this machine ({}); take it down (tracenat lab down) \
             and run the test again — the test will not remove a lab it did not build",
            present.join(", ")
        );
        let dir = tempfile::Builder::new()
            .prefix("tracenat-lab-test-")
            .tempdir_in("/tmp")
            .expect("a directory in /tmp");
        Lab { dir, armed: false }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn dir_arg(&self) -> &str {
        self.dir().to_str().expect("UTF-8 temp dir")
    }

    /// `lab up`; from here on the guard takes the lab down.
    fn up(&mut self, workers: u16, subscribers: u16) -> String {
        let (w, s) = (workers.to_string(), subscribers.to_string());
        // Armed before: a half-built lab is removed too.
        self.armed = true;
        tracenat_ok(&[
            "lab",
            "up",
            "--workers",
            &w,
            "--subscribers",
            &s,
            "--dir",
            self.dir_arg(),
        ])
    }

    fn status(&self) -> Value {
        let json = tracenat_ok(&["lab", "status", "--json", "--dir", self.dir_arg()]);
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("status JSON: {e}\n{json}"))
    }

    fn down(&mut self) -> String {
        let out = tracenat_ok(&["lab", "down", "--dir", self.dir_arg()]);
        self.armed = false;
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.armed {
            let output = tracenat(&["lab", "down", "--dir", self.dir_arg()]);
            if !output.status.success() {
                eprintln!("cleanup: lab down failed: {}", text(&output.stderr));
            }
        }
    }
}

/// A background process, killed (and reaped) when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(target: &str, args: &[&str]) -> Background {
    let mut all = vec!["lab", "exec", target, "--", env!("CARGO_BIN_EXE_tracenat")];
    all.extend_from_slice(args);
    let child = Command::new(env!("CARGO_BIN_EXE_tracenat"))
        .args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tracenat starts");
    Background(child)
}

fn namespace<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["namespaces"]
        .as_array()
        .expect("namespaces is an array")
        .iter()
        .find(|ns| ns["name"] == name)
        .unwrap_or_else(|| panic!("no namespace {name} in {status:#}"))
}

fn interface<'a>(status: &'a Value, ns: &str, name: &str) -> &'a Value {
    namespace(status, ns)["interfaces"]
        .as_array()
        .expect("interfaces is an array")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no interface {ns}/{name} in {status:#}"))
}

fn addresses(status: &Value, ns: &str, name: &str) -> Vec<String> {
    interface(status, ns, name)["addresses"]
        .as_array()
        .expect("addresses is an array")
        .iter()
        .map(|a| a.as_str().expect("address text").to_owned())
        .collect()
}

fn ping(target: &str, address: &str) {
    let output = exec(target, &["ping", "-c", "1", "-W", "2", address]);
    assert!(
        output.status.success(),
        "{target} cannot ping {address}:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn tx_checksumming(target: &str, device: &str) -> String {
    let features = exec_ok(target, &["ethtool", "-k", device]);
    features
        .lines()
        .find_map(|line| line.strip_prefix("tx-checksumming: "))
        .unwrap_or_else(|| panic!("no tx-checksumming in ethtool -k {device}:\n{features}"))
        .trim()
        .to_owned()
}

#[test]
fn up_builds_the_topology_status_reports_it_and_down_removes_it() {
    let Some(_serial) = start("lab up/status/down") else {
        return;
    };
    let mut lab = Lab::new("lab up/status/down");
    let summary = lab.up(2, 3);
    assert!(
        summary.contains("lab up: 2 worker(s), 3 subscriber(s)"),
        "{summary}"
    );

    // Status lists the lab's namespaces, in order, with their interfaces.
    let status = lab.status();
    assert_eq!(status["state"], "up", "{status:#}");
    assert_eq!(status["workers"], 2);
    assert_eq!(status["subscribers"], 3);
    let names: Vec<&str> = status["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, LAB_NAMESPACES, "{status:#}");
    assert_eq!(status["missing"].as_array().unwrap().len(), 0);
    let config_path = lab.dir().join("tracenat.toml");
    assert_eq!(status["config"], config_path.to_str().unwrap());
    assert_eq!(namespace(&status, "tn-sub-2")["role"], "subscriber");
    assert_eq!(addresses(&status, "tn-nat", "tn-in"), ["100.64.0.1/24"]);
    assert_eq!(addresses(&status, "tn-nat", "tn-out"), ["192.0.2.1/24"]);
    assert_eq!(
        addresses(&status, "tn-access", "tn-in-peer"),
        ["100.64.0.2/24"]
    );
    assert_eq!(
        addresses(&status, "tn-access", "tn-br"),
        ["100.64.1.254/24"]
    );
    assert_eq!(
        addresses(&status, "tn-inet", "tn-out-peer"),
        ["192.0.2.254/24"]
    );
    assert_eq!(addresses(&status, "tn-sub-3", "eth0"), ["100.64.1.3/24"]);
    let servers = addresses(&status, "tn-inet", "lo");
    assert!(
        servers.contains(&"198.51.100.10/32".to_owned()),
        "{servers:?}"
    );
    assert!(
        servers.contains(&"198.51.100.20/32".to_owned()),
        "{servers:?}"
    );
    for (ns, name) in [
        ("tn-nat", "tn-in"),
        ("tn-nat", "tn-out"),
        ("tn-access", "tn-in-peer"),
        ("tn-inet", "tn-out-peer"),
    ] {
        let link = interface(&status, ns, name);
        assert_eq!(link["rx_queues"], 2, "{ns}/{name}: {link:#}");
        assert_eq!(link["tx_queues"], 2, "{ns}/{name}: {link:#}");
        assert_eq!(link["state"], "UP", "{ns}/{name}: {link:#}");
    }
    assert_eq!(
        interface(&status, "tn-access", "tn-s2-peer")["master"],
        "tn-br"
    );
    assert_eq!(interface(&status, "tn-sub-1", "eth0")["rx_queues"], 1);

    // The queues as the dataplane will see them, from inside the NAT's namespace.
    let queues = exec_ok("nat", &["ls", "/sys/class/net/tn-in/queues"]);
    let mut queues: Vec<&str> = queues.split_whitespace().collect();
    queues.sort_unstable();
    assert_eq!(queues, ["rx-0", "rx-1", "tx-0", "tx-1"]);
    let channels = exec_ok("nat", &["ethtool", "-l", "tn-out"]);
    assert!(channels.contains("RX:\t\t2"), "{channels}");

    // The config `tracenat run` will get.
    let config_text = std::fs::read_to_string(&config_path).unwrap();
    let config = Config::from_toml_str(&config_text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.interfaces.inside, "tn-in");
    assert_eq!(config.interfaces.outside, "tn-out");
    assert_eq!(
        config.interfaces.inside_address,
        Some([100, 64, 0, 1].into())
    );
    assert_eq!(
        config.interfaces.outside_address,
        Some([192, 0, 2, 1].into())
    );
    assert_eq!(
        config.interfaces.inside_gateway,
        Some([100, 64, 0, 2].into())
    );
    assert_eq!(
        config.interfaces.outside_gateway,
        Some([192, 0, 2, 254].into())
    );
    assert_eq!(config.workers.count, 2);
    assert_eq!(config.pool.public[0].to_string(), "203.0.113.0/24");
    assert_eq!(config.pool.subscribers[0].to_string(), "100.64.0.0/10");
    assert_eq!(
        config.logging.dir.as_deref(),
        Some(lab.dir().join("log").as_path())
    );
    assert_eq!(config.logging.flush_interval, Duration::from_secs(1));
    assert_eq!(
        config.dataplane.metrics,
        Some("127.0.0.1:9917".parse().unwrap())
    );
    assert!(lab.dir().join("lab.json").is_file());
    tracenat_ok(&["config", "check", config_path.to_str().unwrap()]);

    // Reachability without the NAT running: each side reaches its neighbour, and the
    // NAT's kernel answers for its own addresses.
    ping("sub:1", "100.64.1.254");
    ping("sub:3", "100.64.1.254");
    ping("access", "100.64.0.1");
    ping("inet", "192.0.2.1");
    ping("nat", "100.64.0.2");
    ping("nat", "192.0.2.254");

    // The kernel of tn-nat must not forward (the dataplane does), tn-access must.
    let sysctl =
        |target: &str, key: &str| exec_ok(target, &["sysctl", "-n", key]).trim().to_owned();
    assert_eq!(sysctl("nat", "net.ipv4.ip_forward"), "0");
    assert_eq!(sysctl("nat", "net.ipv4.conf.all.rp_filter"), "0");
    assert_eq!(sysctl("nat", "net.ipv4.conf.tn-in.rp_filter"), "0");
    assert_eq!(sysctl("nat", "net.ipv4.conf.tn-out.rp_filter"), "0");
    assert_eq!(sysctl("access", "net.ipv4.ip_forward"), "1");
    // …so a subscriber's packet to the internet goes no further than the NAT.
    let stuck = exec("sub:1", &["ping", "-c", "1", "-W", "1", "198.51.100.10"]);
    assert!(!stuck.status.success(), "the kernel in tn-nat forwarded");

    // Full checksums on everything that sends towards the NAT or serves the hosts.
    for (target, device) in [
        ("access", "tn-in-peer"),
        ("inet", "tn-out-peer"),
        ("access", "tn-s1-peer"),
        ("access", "tn-s3-peer"),
        ("sub:1", "eth0"),
        ("sub:2", "eth0"),
    ] {
        assert_eq!(tx_checksumming(target, device), "off", "{target} {device}");
    }

    // A second `up` is refused and leaves the lab alone.
    let again = tracenat(&["lab", "up", "--dir", lab.dir_arg()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already up"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(lab.status()["state"], "up");

    // Down removes every namespace and lab.json but keeps the log directory.
    let out = lab.down();
    assert!(
        out.contains("removed namespaces: tn-nat tn-access tn-inet tn-sub-1"),
        "{out}"
    );
    assert_eq!(lab_namespaces_present(), Vec::<String>::new());
    assert!(
        !ip_netns_list()
            .iter()
            .any(|n| LAB_NAMESPACES.contains(&n.as_str()))
    );
    assert!(!lab.dir().join("lab.json").exists());
    assert!(lab.dir().join("log").is_dir());
    assert_eq!(lab.status()["state"], "down");
    // A second down is fine.
    assert!(lab.down().contains("no lab to take down"));
}

#[test]
fn exec_passes_status_and_stdio_through() {
    let Some(_serial) = start("lab exec") else {
        return;
    };
    let mut lab = Lab::new("lab exec");
    lab.up(1, 1);

    let status = exec("nat", &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(status.status.code(), Some(7));
    assert_eq!(text(&status.stdout), "out\n");
    assert_eq!(text(&status.stderr), "err\n");

    let mut cat = Command::new(env!("CARGO_BIN_EXE_tracenat"))
        .args(["lab", "exec", "sub:1", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cat.stdin.take().unwrap().write_all(b"through\n").unwrap();
    let output = cat.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(text(&output.stdout), "through\n");

    // The command runs in the namespace asked for.
    let addr = exec_ok("sub:1", &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("100.64.1.1/24"), "{addr}");
    let route = exec_ok("sub:1", &["ip", "route", "show", "default"]);
    assert!(route.contains("via 100.64.1.254"), "{route}");

    let missing = exec("sub:5", &["true"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("tn-sub-5 does not exist"));
    let bad = exec("router", &["true"]);
    assert_eq!(bad.status.code(), Some(2));
    lab.down();
}

/// Polls until `probe` succeeds (the server is listening) or 5 s pass.
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !probe() {
        assert!(Instant::now() < deadline, "{what}: timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `f` on a thread that has entered network namespace `name` (setns affects only
/// the calling thread).
fn in_namespace<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from("/run/netns").join(name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace file opens");
        // SAFETY: setns on a valid fd; it changes only this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("the namespace thread finishes")
}

#[test]
fn servers_answer_and_log_in_combined_format() {
    let Some(_serial) = start("lab servers") else {
        return;
    };
    let mut lab = Lab::new("lab servers");
    lab.up(1, 1);
    let log_path = lab.dir().join("access.log");
    let log_arg = log_path.to_str().unwrap().to_owned();

    let mut http = spawn_in(
        "inet",
        &[
            "lab",
            "serve-http",
            "--listen",
            "198.51.100.10:8080",
            "--access-log",
            &log_arg,
        ],
    );
    let _echo = spawn_in(
        "inet",
        &["lab", "udp-echo", "--listen", "198.51.100.20:7007"],
    );

    // Without the NAT running tn-nat does not forward, so the client is in tn-inet too.
    let curl = |path: &str| {
        exec(
            "inet",
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-A",
                "lab-test/1",
                &format!("http://198.51.100.10:8080{path}"),
            ],
        )
    };
    eventually("serve-http listening", || curl("/ready").status.success());
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let response = curl("/hello?x=1");
    assert!(response.status.success(), "{}", text(&response.stderr));
    let body = text(&response.stdout);
    let client = body
        .lines()
        .find_map(|line| line.strip_prefix("you are "))
        .unwrap_or_else(|| panic!("no client in {body:?}"));
    let client: SocketAddr = client.parse().unwrap();
    assert_eq!(client.ip().to_string(), "198.51.100.10");

    // The line is in the log as soon as the response arrived.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let line = lines[1];
    let (head, rest) = line
        .split_once(" - - [")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(head, client.to_string());
    let (time, rest) = rest.split_once("] ").unwrap();
    // dd/Mon/yyyy:hh:mm:ss +0000
    assert_eq!(time.len(), 26, "{time}");
    assert!(time.ends_with(" +0000"), "{time}");
    assert_eq!(&time[2..3], "/");
    assert_eq!(&time[6..7], "/");
    assert_eq!(&time[11..12], ":");
    let logged_s = parse_time(&format!("[{time}]")).unwrap() / 1_000_000_000;
    assert!(
        logged_s + 1 >= before && logged_s <= before + 5,
        "{time} vs {before}"
    );
    assert_eq!(
        rest,
        format!(
            "\"GET /hello?x=1 HTTP/1.1\" 200 {} \"-\" \"lab-test/1\"",
            body.len()
        )
    );
    // And `tracenat log attribute` reads it as combined with the client's port.
    let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
    for (i, line) in lines.iter().enumerate() {
        let record = parser
            .parse(i as u64 + 1, line)
            .unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(record.client_port.is_some());
    }
    assert_eq!(parser.format(), LogFormat::Combined);

    // UDP echo, from a socket in tn-inet.
    let echoed = in_namespace("tn-inet", || {
        let socket = UdpSocket::bind("198.51.100.10:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..25 {
            socket.send_to(b"echo me", "198.51.100.20:7007").unwrap();
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                return Some((buf[..n].to_vec(), from));
            }
        }
        None
    });
    let (payload, from) = echoed.expect("udp-echo answered");
    assert_eq!(payload, b"echo me");
    assert_eq!(from.to_string(), "198.51.100.20:7007");

    // SIGTERM stops serve-http with status 0 (`ip netns exec` execs, so the pid is the server).
    // SAFETY: kill on our own child's pid.
    assert_eq!(unsafe { libc::kill(http.0.id() as i32, libc::SIGTERM) }, 0);
    let exited = http.0.wait().unwrap();
    assert!(exited.success(), "{exited:?}");

    // Down ends the processes left in the namespaces (the echo server) and removes it all.
    lab.down();
    assert_eq!(lab_namespaces_present(), Vec::<String>::new());
}

#[test]
fn down_clears_what_a_crash_left() {
    let Some(_serial) = start("lab down after a crash") else {
        return;
    };
    let mut lab = Lab::new("lab down after a crash");
    lab.up(1, 2);
    // As if `up` had died half-way through a later run: lab.json gone, a namespace
    // deleted by hand, an extra subscriber namespace and a lab veth in the root namespace.
    std::fs::remove_file(lab.dir().join("lab.json")).unwrap();
    let ip = |args: &[&str]| {
        let output = Command::new("ip").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "ip {args:?}: {}",
            text(&output.stderr)
        );
    };
    ip(&["netns", "del", "tn-sub-2"]);
    ip(&["netns", "add", "tn-sub-7"]);
    ip(&[
        "link",
        "add",
        "tn-s7",
        "type",
        "veth",
        "peer",
        "name",
        "tn-s7-peer",
    ]);

    let status = lab.status();
    assert_eq!(status["state"], "partial", "{status:#}");
    assert_eq!(status["workers"], Value::Null);
    assert_eq!(namespace(&status, "tn-sub-7")["expected"], false);

    let out = lab.down();
    assert!(out.contains("tn-sub-7"), "{out}");
    assert!(out.contains("removed interfaces: tn-s7"), "{out}");
    assert_eq!(lab_namespaces_present(), Vec::<String>::new());
    let root = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(
        !text(&root.stdout).contains("tn-s7"),
        "{}",
        text(&root.stdout)
    );
    assert_eq!(lab.status()["state"], "down");
}

#[test]
fn bad_arguments_are_usage_errors() {
    // No root needed: the arguments are checked first.
    for args in [
        ["lab", "up", "--subscribers", "65"],
        ["lab", "up", "--subscribers", "0"],
        ["lab", "up", "--workers", "0"],
    ] {
        let output = tracenat(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

/// `lab up --dhcp` (Kea and dhclient): its own file, sharing these helpers and `SERIAL`.
#[path = "lab/dhcp.rs"]
mod dhcp;
