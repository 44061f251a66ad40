//! Export checked by the real collectors: a log written by `tracenat replay` (sessions with
//! destinations, port blocks, quota refusals), exported with `tracenat log export`
//!
//! - as an IPFIX file (RFC 5655) that tshark reads and decodes field by field, with no
//!   malformed packet and no expert warning;
//! - as IPFIX over UDP to nfdump's collector, nfcapd, then read back with `nfdump -r`;
//! - as syslog over UDP and over TCP (octet counting) to rsyslogd, which writes the lines.
//!
//! Every event must arrive, with the log's addresses, ports and times: the counts match
//! `tracenat log decode` exactly. Needs tshark, nfdump and rsyslog (`scripts/setup.sh`).

#[allow(unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tracenat::engine::Side;

/// One event as the log has it, and as every collector must show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    nat_event: u8,
    ts_ms: u64,
    inside: Ipv4Addr,
    /// Session events: the inside and public ports, and the destination.
    inside_port: u16,
    public: Ipv4Addr,
    public_port: u16,
    dest: Option<SocketAddrV4>,
    block: Option<(u16, u16)>,
}

/// A log with every kind of event a test can provoke: 12 subscribers with 4 UDP flows
/// each to servers in 198.51.100.0/24, in port-block mode (so blocks are allocated and
/// released), a 3-session quota (so one flow each is refused), all ending on timeout.
fn write_log(dir: &Path) -> (PathBuf, Vec<Expected>) {
    let log = dir.join("log");
    let cfg = Cfg::new()
        .with("allocation.mode", "\"port-block\"")
        .with("allocation.block-size", "64")
        .with("limits.sessions-per-subscriber", "3")
        .with("timeouts.udp", "\"2m\"");
    let mut packets = Vec::new();
    for i in 0..48u32 {
        let sub = Ipv4Addr::new(100, 64, 2, (i / 4) as u8 + 1);
        let t = T0 + u64::from(i) * 1_250 * MS;
        let server = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, (i % 7) as u8 + 1), 443);
        packets.push((t, Side::Inside, udp(sock(sub, 40_000 + i as u16), server)));
    }
    packets.extend(ticks(T0, T0 + 400 * SEC, 10 * SEC));
    replay_logged(&cfg, &sorted(packets), &log);
    let expected = decoded(&log).iter().filter_map(expected_event).collect();
    (log, expected)
}

fn expected_event(e: &Value) -> Option<Expected> {
    let kind = e["kind"].as_str()?;
    let inside = ev_ep(e, "inside");
    let public = ev_ep(e, "public");
    let nat_event = match kind {
        "session_created" => 4,
        "session_ended" => 5,
        "block_allocated" => 16,
        "block_released" => 17,
        "refused_subscriber_limit" => 13,
        "refused_ports_exhausted" if public.ip().is_unspecified() => 3,
        "refused_ports_exhausted" => 12,
        _ => return None,
    };
    let session = nat_event == 4 || nat_event == 5;
    Some(Expected {
        nat_event,
        ts_ms: ev_ts(e) / 1_000_000,
        inside: *inside.ip(),
        inside_port: if session { inside.port() } else { 0 },
        public: *public.ip(),
        public_port: if session { public.port() } else { 0 },
        dest: e.get("dest").filter(|_| session).map(|_| ev_ep(e, "dest")),
        block: e.get("block").map(|_| ev_block(e)),
    })
}

fn counts(events: &[Expected]) -> BTreeMap<u8, usize> {
    let mut c = BTreeMap::new();
    for e in events {
        *c.entry(e.nat_event).or_default() += 1;
    }
    c
}

fn sorted_events(mut v: Vec<Expected>) -> Vec<Expected> {
    v.sort();
    v
}

#[test]
fn an_ipfix_file_decodes_in_tshark_field_for_field() {
    let dir = scratch("export", "tshark");
    let (log, expected) = write_log(&dir);
    let c = counts(&expected);
    for kind in [4, 5, 13, 16, 17] {
        assert!(
            c.get(&kind).copied().unwrap_or(0) > 0,
            "the log has natEvent {kind}: {c:?}"
        );
    }
    let file = dir.join("events.ipfix");
    ok(tracenat(&[
        "log",
        "export",
        "--dir",
        log.to_str().unwrap(),
        "--format",
        "ipfix",
        "--out",
        file.to_str().unwrap(),
    ]));
    let verbose = ok(Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-V"])
        .output()
        .expect("run tshark"));
    assert!(
        !verbose.contains("Malformed"),
        "tshark: malformed\n{verbose}"
    );
    let expert = ok(Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-q", "-z", "expert"])
        .output()
        .unwrap());
    assert!(
        !expert.contains("Warn") && !expert.contains("Error"),
        "tshark expert info:\n{expert}"
    );
    let decoded = tshark_events(&file);
    assert_eq!(sorted_events(decoded), sorted_events(expected));
}

/// Every data record tshark decodes from an IPFIX file, one `Expected` each.
fn tshark_events(file: &Path) -> Vec<Expected> {
    let out = ok(Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-T", "json"])
        .output()
        .expect("run tshark"));
    let packets: Vec<Value> = serde_json::from_str(&out).expect("tshark json");
    let mut events = Vec::new();
    for p in packets {
        let cflow = &p["_source"]["layers"]["cflow"];
        for (key, set) in cflow.as_object().into_iter().flatten() {
            if !key.starts_with("Set ") {
                continue;
            }
            for (name, flow) in set.as_object().into_iter().flatten() {
                if name.starts_with("Flow ") {
                    events.push(ipfix_flow(flow));
                }
            }
        }
    }
    events
}

fn field<'a>(flow: &'a Value, name: &str) -> Option<&'a str> {
    flow.get(name).and_then(Value::as_str)
}

fn ipfix_flow(flow: &Value) -> Expected {
    let num = |name: &str| {
        field(flow, name)
            .map(|v| v.parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    let addr = |name: &str| field(flow, name).map_or(Ipv4Addr::UNSPECIFIED, |v| v.parse().unwrap());
    let nat_event = num("cflow.nat_event") as u8;
    let session = nat_event == 4 || nat_event == 5;
    let dest = field(flow, "cflow.dstaddr")
        .map(|a| SocketAddrV4::new(a.parse().unwrap(), num("cflow.dstport") as u16));
    Expected {
        nat_event,
        ts_ms: observation_ms(flow),
        inside: addr("cflow.srcaddr"),
        inside_port: num("cflow.srcport") as u16,
        public: addr("cflow.post_natsource_ipv4_address"),
        public_port: num("cflow.post_naptsource_transport_port") as u16,
        dest: dest.filter(|_| session),
        block: field(flow, "cflow.port_range_start").map(|_| {
            (
                num("cflow.port_range_start") as u16,
                num("cflow.port_range_end") as u16,
            )
        }),
    }
}

/// tshark shows observationTimeMilliseconds as a date: `Nov 14, 2023 22:13:53.750000000 UTC`.
fn observation_ms(flow: &Value) -> u64 {
    let text = field(flow, "cflow.observation_time_milliseconds").expect("observation time");
    let parts: Vec<&str> = text.split_whitespace().collect();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[0])
    .expect("month")
        + 1;
    let day: u32 = parts[1].trim_end_matches(',').parse().unwrap();
    let rfc3339 = format!("{}-{month:02}-{day:02}T{}Z", parts[2], parts[3]);
    tracenat::reader::time::parse_time(&rfc3339).expect("time") / 1_000_000
}

/// A free loopback UDP port (bound, noted, released).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn terminate(d: &mut Daemon) {
    // SAFETY: signalling our own child, which has not been waited for.
    unsafe { libc::kill(d.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = d.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the collector did not stop");
}

/// Waits until `ready` holds (a collector bound its socket), at most 10 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn udp_port_in_use(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_err()
}

#[test]
fn nfcapd_receives_every_event_over_udp_and_nfdump_prints_it() {
    let dir = scratch("export", "nfdump");
    let (log, expected) = write_log(&dir);
    let port = free_udp_port();
    let files = dir.join("nfcapd");
    std::fs::create_dir_all(&files).unwrap();
    let mut nfcapd = Daemon(
        Command::new("nfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
            .arg(&files)
            .args(["-t", "3600", "-I", "tracenat-test", "-B", "4000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nfcapd"),
    );
    wait_for("nfcapd", || udp_port_in_use(port));
    let collector = format!("127.0.0.1:{port}");
    ok(tracenat(&[
        "log",
        "export",
        "--dir",
        log.to_str().unwrap(),
        "--ipfix",
        &collector,
        "--rate",
        "20000",
    ]));
    std::thread::sleep(Duration::from_millis(300));
    terminate(&mut nfcapd);
    let json = ok(Command::new("nfdump")
        .env("TZ", "UTC")
        .arg("-R")
        .arg(&files)
        .args(["-o", "json", "-q"])
        .output()
        .expect("run nfdump"));
    // nfdump 1.7.1 prints objects separated by commas, without the enclosing brackets.
    let array = format!("[{}]", json.trim().trim_end_matches(','));
    let records: Vec<Value> = serde_json::from_str(&array).expect("nfdump json");
    let got: Vec<Expected> = records.iter().map(nfdump_record).collect();
    // nfdump 1.7.1 does not decode the port-range elements (361, 362): a block event
    // arrives with its addresses, time and event, and tshark checks the range above.
    let without_range = |v: &[Expected]| {
        sorted_events(
            v.iter()
                .cloned()
                .map(|mut e| {
                    e.block = None;
                    e
                })
                .collect(),
        )
    };
    assert_eq!(without_range(&got), without_range(&expected));
}

fn nfdump_record(r: &Value) -> Expected {
    let s = |k: &str| r.get(k).and_then(Value::as_str);
    let n = |k: &str| {
        r.get(k).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let addr = |k: &str| s(k).map_or(Ipv4Addr::UNSPECIFIED, |a| a.parse().unwrap());
    let nat_event = n("nat_event_id").expect("nat_event_id") as u8;
    let session = nat_event == 4 || nat_event == 5;
    let dest = addr("dst4_addr");
    Expected {
        nat_event,
        ts_ms: nfdump_time_ms(s("t_event").expect("t_event")),
        inside: addr("src4_addr"),
        inside_port: if session {
            n("src_port").unwrap_or(0) as u16
        } else {
            0
        },
        public: addr("src4_xlt_ip"),
        public_port: if session {
            n("src_xlt_port").unwrap_or(0) as u16
        } else {
            0
        },
        dest: (session && !dest.is_unspecified())
            .then(|| SocketAddrV4::new(dest, n("dst_port").unwrap_or(0) as u16)),
        block: None,
    }
}

/// nfdump's JSON event time, `2023-11-14T22:13:20.5` (local time: TZ=UTC here), as ms
/// since the epoch. 1.7.1 prints the milliseconds without zero padding (`.5` is 5 ms).
fn nfdump_time_ms(text: &str) -> u64 {
    let (seconds, millis) = text.rsplit_once('.').expect("milliseconds");
    let whole = tracenat::reader::time::parse_time(&format!("{seconds}Z")).expect("time");
    whole / 1_000_000 + millis.parse::<u64>().expect("ms")
}

#[test]
fn rsyslogd_writes_every_event_sent_over_udp_and_tcp() {
    let dir = scratch("export", "rsyslog");
    let (log, expected) = write_log(&dir);
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let (udp_file, tcp_file) = (dir.join("udp.log"), dir.join("tcp.log"));
    let mut rsyslogd = rsyslogd(&dir, Some((udp, &udp_file)), (tcp, &tcp_file));
    ok(tracenat(&[
        "log",
        "export",
        "--dir",
        log.to_str().unwrap(),
        "--syslog",
        &format!("127.0.0.1:{udp}"),
        "--syslog",
        &format!("tcp://127.0.0.1:{tcp}"),
        "--hostname",
        "nat-test",
        "--rate",
        "20000",
    ]));
    wait_for("rsyslogd to write every line", || {
        lines(&udp_file).len() >= expected.len() && lines(&tcp_file).len() >= expected.len()
    });
    terminate(&mut rsyslogd);
    for file in [&udp_file, &tcp_file] {
        let got: Vec<Expected> = lines(file).iter().map(|l| syslog_event(l)).collect();
        assert_eq!(
            sorted_events(got),
            sorted_events(expected.clone()),
            "{}",
            file.display()
        );
    }
}

/// rsyslogd writing what it receives on TCP `tcp` (and on UDP `udp`, if given) into the
/// files given with them, raw, one line per message.
fn rsyslogd(dir: &Path, udp: Option<(u16, &Path)>, tcp: (u16, &Path)) -> Daemon {
    let mut conf = format!(
        "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\n\
         template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
         ruleset(name=\"tcp\") {{ action(type=\"omfile\" file=\"{}\" template=\"raw\") }}\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"tcp\")\n",
        dir.display(),
        tcp.1.display(),
        tcp.0
    );
    if let Some((port, file)) = udp {
        conf.push_str(&format!(
            "module(load=\"imudp\")\n\
             ruleset(name=\"udp\") {{ action(type=\"omfile\" file=\"{}\" template=\"raw\") }}\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"udp\")\n",
            file.display()
        ));
    }
    let path = dir.join("rsyslog.conf");
    std::fs::write(&path, conf).unwrap();
    let daemon = Daemon(
        Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rsyslogd"),
    );
    wait_for("rsyslogd", || {
        udp.is_none_or(|(port, _)| udp_port_in_use(port))
            && std::net::TcpStream::connect(("127.0.0.1", tcp.0)).is_ok()
    });
    daemon
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The structured data of one exported line, back into an event.
fn syslog_event(line: &str) -> Expected {
    assert!(
        line.starts_with('<') && line.contains(">1 "),
        "RFC 5424 header: {line}"
    );
    let fields: Vec<&str> = line.splitn(8, ' ').collect();
    assert_eq!(fields[2], "nat-test", "{line}");
    assert_eq!(fields[3], "tracenat", "{line}");
    let sd_start = line.find("[nat@32473 ").expect("structured data");
    let sd_end = sd_start + line[sd_start..].find(']').expect("end of structured data");
    let params: BTreeMap<&str, &str> = line[sd_start + 11..sd_end]
        .split(' ')
        .map(|p| {
            let (k, v) = p.split_once('=').expect("key=value");
            (k, v.trim_matches('"'))
        })
        .collect();
    let get = |k: &str| params.get(k).copied();
    let num = |k: &str| get(k).map_or(0, |v| v.parse::<u64>().unwrap());
    let addr = |k: &str| get(k).map_or(Ipv4Addr::UNSPECIFIED, |v| v.parse().unwrap());
    Expected {
        nat_event: num("event") as u8,
        ts_ms: tracenat::reader::time::parse_time(fields[1]).unwrap() / 1_000_000,
        inside: addr("src"),
        inside_port: num("sport") as u16,
        public: addr("xsrc"),
        public_port: num("xsport") as u16,
        dest: get("dst").map(|_| SocketAddrV4::new(addr("dst"), num("dport") as u16)),
        block: get("first").map(|_| (num("first") as u16, num("last") as u16)),
    }
}

#[test]
fn a_collector_that_is_down_is_a_clear_error_with_every_lost_event_counted() {
    let dir = scratch("export", "down");
    let (log, expected) = write_log(&dir);
    let port = free_tcp_port();
    let o = tracenat(&[
        "log",
        "export",
        "--dir",
        log.to_str().unwrap(),
        "--syslog",
        &format!("tcp://127.0.0.1:{port}"),
        "--rate",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "0 of {n} events sent in 0 messages (0 bytes), {n} lost",
            n = expected.len()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("Connection refused") || stderr.contains("not connected"),
        "{stderr}"
    );
}

/// "N of M events sent in …, L lost" from an export's report: (sent, lost).
fn sent_and_lost(report: &str) -> (u64, u64) {
    let line = report
        .lines()
        .find(|l| l.contains(" events sent in "))
        .unwrap_or_else(|| panic!("no tally in:\n{report}"));
    let number = |word: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap();
        words[if word == "lost" { at - 1 } else { at + 1 }]
            .trim_end_matches(',')
            .parse()
            .unwrap()
    };
    let sent: u64 = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    (sent, number("lost"))
}

#[test]
fn a_collector_that_closes_the_connection_mid_export_costs_counted_events_only() {
    let dir = scratch("export", "closes");
    let (log, expected) = write_log(&dir);
    let port = free_tcp_port();
    let file = dir.join("tcp.log");
    let mut rsyslogd = rsyslogd(&dir, None, (port, &file));
    // Slow enough (about 2 s in all) for the collector to go away in the middle.
    let export = Command::new(env!("CARGO_BIN_EXE_tracenat"))
        .args(["log", "export", "--dir", log.to_str().unwrap()])
        .args([
            "--syslog",
            &format!("tcp://127.0.0.1:{port}"),
            "--rate",
            "50",
        ])
        .args(["--hostname", "nat-test"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first lines", || lines(&file).len() >= 5);
    terminate(&mut rsyslogd);
    let o = export.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let (sent, lost) = sent_and_lost(&stderr);
    assert_eq!(sent + lost, expected.len() as u64, "{stderr}");
    assert!(lost > 0 && sent >= 5, "{stderr}");
    // What rsyslogd wrote before it stopped is the log's, and no more than was sent.
    let written: Vec<Expected> = lines(&file).iter().map(|l| syslog_event(l)).collect();
    assert!(
        written.len() as u64 <= sent,
        "{} written, {sent} sent",
        written.len()
    );
    for event in &written {
        assert!(expected.contains(event), "{event:?} is not in the log");
    }
}

#[test]
fn a_full_disk_under_the_export_is_a_clear_error_with_every_event_counted_lost() {
    let dir = scratch("export", "full");
    let (log, expected) = write_log(&dir);
    for format in ["ipfix", "syslog"] {
        let o = tracenat(&[
            "log",
            "export",
            "--dir",
            log.to_str().unwrap(),
            "--format",
            format,
            "--out",
            "/dev/full",
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{format}: {stderr}");
        assert!(stderr.contains("No space left on device"), "{stderr}");
        assert_eq!(
            sent_and_lost(&stderr),
            (0, expected.len() as u64),
            "nothing reached the disk: {stderr}"
        );
    }
    // Parquet onto a file system with room for almost nothing (needs root to mount it).
    if !common::lab::is_root() {
        eprintln!("skipped the Parquet case: mounting a small tmpfs needs root");
        return;
    }
    let small = dir.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8k", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success());
    let o = tracenat(&[
        "log",
        "export",
        "--dir",
        log.to_str().unwrap(),
        "--format",
        "parquet",
        "--out",
        small.join("lake").to_str().unwrap(),
    ]);
    let _ = Command::new("umount").arg(&small).status();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}
