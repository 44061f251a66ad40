//! End to end: a capture through `tracenat replay --log-dir`, then the reader commands on
//! that log — `attribute` of a synthetic access log of the same traffic, `query`,
//! `decode`, `verify` — run as an operator would, through the binary.

#[allow(unused_imports)]
mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use tracenat::pcap;

const SERVER: &str = "198.51.100.80:80";

fn tracenat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracenat"))
        .args(args)
        .output()
        .expect("run tracenat")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Traced {
    dir: PathBuf,
    log: PathBuf,
    /// (time of the SYN, subscriber endpoint, public endpoint) per session.
    sessions: Vec<(u64, SocketAddrV4, SocketAddrV4)>,
}

/// 30 subscribers open 3 connections each to one server over ten minutes, through two
/// workers with a small segment age so several segments and checkpoints are involved.
fn traced_capture(name: &str) -> Traced {
    traced_capture_with(name, Cfg::new())
}

fn traced_capture_with(name: &str, cfg: Cfg) -> Traced {
    traced_capture_spaced(name, cfg, 6_700 * MS)
}

/// The same 90 connections, `spacing` apart.
fn traced_capture_spaced(name: &str, cfg: Cfg, spacing: u64) -> Traced {
    let dir = std::env::temp_dir().join(format!("tracenat-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = cfg
        .with("workers.count", "2")
        .with("logging.segment-age", "\"60s\"");
    std::fs::write(dir.join("nat.toml"), cfg.toml()).unwrap();
    let server = ep(SERVER);
    let mut inside = Vec::new();
    for i in 0..90u64 {
        let sub = Ipv4Addr::new(100, 64, 1, (i % 30) as u8 + 10);
        let t = T0 + i * spacing;
        inside.push((t, tcp(sock(sub, 40000 + i as u16), server, SYN)));
    }
    pcap::write_all(&dir.join("in.pcap"), &inside).unwrap();
    let log = dir.join("log");
    let o = tracenat(&[
        "replay",
        "--config",
        dir.join("nat.toml").to_str().unwrap(),
        "--inside",
        dir.join("in.pcap").to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
        "--log-dir",
        log.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let events = std::fs::read_to_string(dir.join("out/events.jsonl")).unwrap();
    let sessions = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "session_created")
        .map(|e| (ev_ts(&e), ev_ep(&e, "inside"), ev_ep(&e, "public")))
        .collect::<Vec<_>>();
    assert_eq!(sessions.len(), 90);
    Traced { dir, log, sessions }
}

fn query_json(t: &Traced, public: &str, ts: u64) -> (Option<i32>, Value) {
    let at = format!("{}.{:09}", ts / SEC, ts % SEC);
    let q = tracenat(&[
        "log",
        "query",
        "--dir",
        t.log.to_str().unwrap(),
        "--public",
        public,
        "--at",
        &at,
        "--json",
    ]);
    (q.status.code(), serde_json::from_str(&stdout(&q)).unwrap())
}

/// Common log format time, in UTC, to the second (what servers write).
fn clf_time(ns: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = tracenat::reader::time::format_time(ns); // 2023-11-14T22:13:20.000Z
    let (y, mo, d) = (&text[0..4], &text[5..7], &text[8..10]);
    let month = MONTHS[mo.parse::<usize>().unwrap() - 1];
    format!("[{d}/{month}/{y}:{} +0000]", &text[11..19])
}

fn access_log(t: &Traced, with_port: bool) -> PathBuf {
    let mut text = String::new();
    for (i, (ts, _, public)) in t.sessions.iter().enumerate() {
        let client = if with_port {
            public.to_string()
        } else {
            public.ip().to_string()
        };
        text.push_str(&format!(
            "{client} - - {} \"GET /page/{i} HTTP/1.1\" 200 512 \"-\" \"curl/8\"\n",
            clf_time(ts + 300 * MS)
        ));
    }
    let path = t.dir.join(if with_port {
        "access-port.log"
    } else {
        "access.log"
    });
    std::fs::write(&path, text).unwrap();
    path
}

fn attribute_json(t: &Traced, log: &Path) -> Vec<Value> {
    let o = tracenat(&[
        "log",
        "attribute",
        "--dir",
        t.log.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
        "--server",
        SERVER,
        "--skew",
        "2s",
        "--json",
    ]);
    assert!(
        o.status.success(),
        "attribute: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn subscribers(line: &Value) -> BTreeSet<String> {
    line["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subscriber"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_request_with_a_port_traces_to_its_subscriber() {
    let t = traced_capture("port");
    let lines = attribute_json(&t, &access_log(&t, true));
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("summary").is_none())
        .collect();
    assert_eq!(requests.len(), t.sessions.len());
    for (line, (_, inside, _)) in requests.iter().zip(&t.sessions) {
        assert_eq!(line["verdict"], "unique", "{line}");
        assert_eq!(
            subscribers(line),
            BTreeSet::from([inside.to_string()]),
            "{line}"
        );
    }
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["unique"], 90, "{summary}");
}

#[test]
fn without_ports_the_candidate_set_holds_the_subscriber() {
    let t = traced_capture("noport");
    let lines = attribute_json(&t, &access_log(&t, false));
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("summary").is_none())
        .collect();
    assert_eq!(requests.len(), t.sessions.len());
    let mut ambiguous = 0;
    for (line, (_, inside, _)) in requests.iter().zip(&t.sessions) {
        assert_ne!(line["verdict"], "none", "{line}");
        ambiguous += (line["verdict"] == "ambiguous") as usize;
        let subs = subscribers(line);
        assert!(
            subs.iter()
                .any(|s| s.starts_with(&format!("{}:", inside.ip()))),
            "{inside} missing from {subs:?}"
        );
    }
    // Four public addresses shared by 30 subscribers: most answers cannot be unique.
    assert!(ambiguous > 0);
}

#[test]
fn query_verify_decode_and_stats_agree_with_the_replay() {
    let t = traced_capture("cmds");
    let dir = t.log.to_str().unwrap();
    let (ts, inside, public) = t.sessions[45];
    let at = format!("{}.{:09}", ts / SEC, ts % SEC);
    let public_s = public.to_string();
    let q = tracenat(&[
        "log", "query", "--dir", dir, "--public", &public_s, "--at", &at, "--json",
    ]);
    assert_eq!(q.status.code(), Some(0), "{}", stdout(&q));
    let answer: Value = serde_json::from_str(&stdout(&q)).unwrap();
    assert_eq!(answer["verdict"], "unique");
    assert_eq!(answer["candidates"][0]["subscriber"], inside.to_string());
    assert_eq!(answer["candidates"][0]["dest"], SERVER);

    // An hour later nobody holds it (transitory TCP state expires after 4 minutes).
    let later = format!("{}", ts / SEC + 3600);
    let q = tracenat(&[
        "log", "query", "--dir", dir, "--public", &public_s, "--at", &later,
    ]);
    assert_eq!(q.status.code(), Some(4), "{}", stdout(&q));

    let v = tracenat(&["log", "verify", "--dir", dir]);
    assert!(v.status.success(), "{}", stdout(&v));

    let d = tracenat(&["log", "decode", "--dir", dir, "--format", "json"]);
    assert!(d.status.success());
    let decoded: BTreeSet<String> = stdout(&d).lines().map(str::to_owned).collect();
    let replayed: BTreeSet<String> = std::fs::read_to_string(t.dir.join("out/events.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(decoded, replayed);

    let s = tracenat(&["log", "stats", "--dir", dir, "--json"]);
    let stats: Value = serde_json::from_str(&stdout(&s)).unwrap();
    assert_eq!(stats["records"].as_u64(), Some(replayed.len() as u64));
    let _ = std::fs::remove_dir_all(&t.dir);
}

#[test]
fn port_block_volume_answers_from_blocks() {
    let cfg = Cfg::new()
        .with("allocation.mode", "\"port-block\"")
        .with("allocation.block-size", "64")
        .with("logging.volume", "\"port-blocks\"");
    let t = traced_capture_with("blocks", cfg);
    let decoded = tracenat(&[
        "log",
        "decode",
        "--dir",
        t.log.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        !stdout(&decoded).contains("session_created"),
        "port-blocks volume keeps no sessions"
    );
    for (ts, inside, public) in t.sessions.iter().step_by(7) {
        let (code, answer) = query_json(&t, &public.to_string(), ts + 100 * MS);
        assert_eq!(code, Some(0), "{answer}");
        let c = &answer["candidates"][0];
        assert_eq!(c["evidence"], "block");
        assert_eq!(c["subscriber"], inside.ip().to_string());
        let (lo, hi) = (
            c["ports"][0].as_u64().unwrap(),
            c["ports"][1].as_u64().unwrap(),
        );
        assert!((lo..=hi).contains(&(public.port() as u64)), "{c}");
        assert_eq!(hi - lo + 1, 64);
    }
}

#[test]
fn deterministic_volume_answers_from_the_stored_config() {
    let cfg = Cfg::new()
        .with("allocation.mode", "\"deterministic\"")
        .with("allocation.ports-per-subscriber", "1000")
        .with("pool.subscribers", "[\"100.64.1.0/24\"]")
        .with("logging.volume", "\"deterministic\"");
    let t = traced_capture_with("det", cfg);
    let stats = tracenat(&["log", "stats", "--dir", t.log.to_str().unwrap(), "--json"]);
    let stats: Value = serde_json::from_str(&stdout(&stats)).unwrap();
    assert_eq!(stats["records"], 0, "deterministic volume logs no mappings");
    for (ts, inside, public) in &t.sessions {
        let (code, answer) = query_json(&t, &public.to_string(), *ts);
        assert_eq!(code, Some(0), "{answer}");
        let c = &answer["candidates"][0];
        assert_eq!(c["evidence"], "deterministic");
        assert_eq!(c["subscriber"], inside.ip().to_string());
    }
    // Without a port: every subscriber whose range is on that address.
    let address = t.sessions[0].2.ip().to_string();
    let (code, answer) = query_json(&t, &address, t.sessions[0].0);
    assert_eq!(code, Some(3), "{answer}");
    assert!(answer["candidates"].as_array().unwrap().len() > 1);
}

/// Port-less lines naming their subscriber's user (`u<last octet>`), plus an actor `mover`
/// whose two requests come from subscribers on two different public addresses.
fn access_log_with_users(t: &Traced) -> (PathBuf, usize) {
    let mut text = String::new();
    for (i, (ts, inside, public)) in t.sessions.iter().enumerate() {
        text.push_str(&format!(
            "{} - u{} {} \"GET /page/{i} HTTP/1.1\" 200 512 \"-\" \"curl/8\"\n",
            public.ip(),
            inside.ip().octets()[3],
            clf_time(ts + 300 * MS)
        ));
    }
    let (t0, _, p0) = t.sessions[0];
    let other = (1..t.sessions.len())
        .find(|&j| t.sessions[j].2.ip() != p0.ip())
        .expect("two public addresses in use");
    let (t1, _, p1) = t.sessions[other];
    for (ts, public) in [(t0, p0), (t1, p1)] {
        text.push_str(&format!(
            "{} - mover {} \"GET / HTTP/1.1\" 200 1 \"-\" \"curl/8\"\n",
            public.ip(),
            clf_time(ts + 300 * MS)
        ));
    }
    let path = t.dir.join("access-users.log");
    std::fs::write(&path, text).unwrap();
    (path, other)
}

/// `tracenat log attribute --correlate user` of `access_log` towards the server, with `flag`.
fn correlated_by_user(log_dir: &Path, access_log: &Path, flag: &str) -> Output {
    tracenat(&[
        "log",
        "attribute",
        "--dir",
        log_dir.to_str().unwrap(),
        "--access-log",
        access_log.to_str().unwrap(),
        "--server",
        SERVER,
        "--correlate",
        "user",
        flag,
    ])
}

#[test]
fn requests_grouped_by_user_narrow_to_their_subscriber() {
    let t = traced_capture("correlate");
    let (log, _) = access_log_with_users(&t);
    let o = correlated_by_user(&t.log, &log, "--json");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("verdict").is_some())
        .collect();
    assert_eq!(requests.len(), t.sessions.len() + 2);
    let groups: Vec<&Value> = lines.iter().filter_map(|l| l.get("group")).collect();
    assert_eq!(groups.len(), 31, "30 users and the mover");
    let mut unique = 0;
    for g in &groups {
        let fit: BTreeSet<&str> = g["fit_all"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["subscriber"].as_str().unwrap())
            .collect();
        if g["value"] == "mover" {
            assert_eq!(g["verdict"], "conflict", "{g}");
            assert!(fit.is_empty());
            assert_eq!(g["others"][0]["requests"], 1, "{g}");
            continue;
        }
        let user = g["value"].as_str().unwrap();
        let truth = format!("100.64.1.{}", &user[1..]);
        assert!(fit.contains(truth.as_str()), "{truth} not in {g}");
        assert_eq!(g["requests"], 3);
        // The intersection is never wider than any of its requests.
        for line in g["lines"].as_array().unwrap() {
            let request = requests.iter().find(|r| r["line"] == *line).unwrap();
            let addresses = request["subscribers"].as_array().unwrap().len();
            assert!(fit.len() <= addresses);
        }
        unique += (g["verdict"] == "unique") as u64;
    }
    let summary = &lines
        .iter()
        .find_map(|l| l.get("group_summary"))
        .expect("a group summary");
    assert_eq!(summary["unique"], unique);
    assert_eq!(summary["conflict"], 1);
    assert_eq!(summary["requests_in_unique"], 3 * unique);
    assert!(lines.last().unwrap().get("summary").is_some());

    // Only the groups and the summaries.
    let o = correlated_by_user(&t.log, &log, "--groups-only");
    let text = stdout(&o);
    println!("{text}");
    assert!(!text.lines().any(|l| l.starts_with("line ")), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("group ")).count(), 31);
    assert!(text.contains("groups by user: "), "{text}");

    // A field the format does not have is a usage error.
    let o = tracenat(&[
        "log",
        "attribute",
        "--dir",
        t.log.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
        "--format",
        "combined",
        "--correlate",
        "cookie",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&t.dir);
}

/// The access log with ports of a server whose clock is `offset(i, ts)` ns away from the
/// NAT's for request i, logged at its connection's SYN (the sessions' only packet: a
/// request after a session's last activity could not have travelled on it), truncated to
/// the second.
fn access_log_with_clock(t: &Traced, name: &str, offset: impl Fn(usize, u64) -> i64) -> PathBuf {
    let mut text = String::new();
    for (i, (ts, _, public)) in t.sessions.iter().enumerate() {
        let at = *ts;
        let logged = (at as i64 + offset(i, at)) as u64;
        text.push_str(&format!(
            "{public} - - {} \"GET /page/{i} HTTP/1.1\" 200 512 \"-\" \"curl/8\"\n",
            clf_time(logged)
        ));
    }
    let path = t.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn attribute_with(t: &Traced, log: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "log",
        "attribute",
        "--dir",
        t.log.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
        "--server",
        SERVER,
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = tracenat(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Per request: (verdict, subscriber addresses), in log order.
fn verdicts(lines: &[Value]) -> Vec<(String, BTreeSet<String>)> {
    lines
        .iter()
        .filter(|l| l.get("verdict").is_some())
        .map(|l| {
            let subs = l["subscribers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            (l["verdict"].as_str().unwrap().to_owned(), subs)
        })
        .collect()
}

fn measured_server(lines: &[Value]) -> Value {
    let clock = lines
        .iter()
        .find_map(|l| l.get("server_clock"))
        .expect("a server clock report");
    assert_eq!(clock["mode"], "measured");
    assert_eq!(clock["servers"].as_array().unwrap().len(), 1, "{clock}");
    clock["servers"][0].clone()
}

const SLOW: i64 = -160 * SEC as i64;

#[test]
fn a_slow_server_clock_is_measured_and_applied() {
    let t = traced_capture("clock");
    let log = access_log_with_clock(&t, "slow.log", |_, _| SLOW);
    let truth: Vec<String> = t
        .sessions
        .iter()
        .map(|(_, s, _)| s.ip().to_string())
        .collect();

    let skewed = verdicts(&attribute_with(&t, &log, &["--skew", "2s"]));
    assert!(skewed.iter().all(|(v, _)| v == "none"), "{skewed:?}");

    let lines = attribute_with(&t, &log, &["--skew", "auto"]);
    let server = measured_server(&lines);
    assert_eq!(server["samples"], 90, "{server}");
    assert_eq!(server["consistent"], true, "{server}");
    let hi = server["band_ns"][1].as_i64().unwrap();
    let lo = server["band_ns"][0].as_i64().unwrap();
    // The band holds the true offset and is bounded above within a second of it (by the
    // sessions' starts and the one-second resolution).
    assert!(lo <= SLOW && (hi - SLOW).abs() <= SEC as i64, "{server}");
    for ((verdict, subs), truth) in verdicts(&lines).iter().zip(&truth) {
        assert_eq!(verdict, "unique");
        assert_eq!(subs, &BTreeSet::from([truth.clone()]));
    }

    // A given offset does the same without measuring.
    let given = verdicts(&attribute_with(&t, &log, &["--server-offset", "-160s"]));
    assert!(
        given
            .iter()
            .zip(&truth)
            .all(|((v, s), truth)| v == "unique" && s.contains(truth))
    );
    let _ = std::fs::remove_dir_all(&t.dir);
}

#[test]
fn a_drifting_server_clock_is_followed() {
    // Ten hours of connections; the server's clock drifts by 500 ppm: 18 s over the log,
    // far more than the skew.
    let t = traced_capture_spaced("drift", Cfg::new(), 400 * SEC);
    let first = t.sessions[0].0;
    let log = access_log_with_clock(&t, "drift.log", |_, at| SLOW + ((at - first) / 2000) as i64);
    let lines = attribute_with(&t, &log, &["--skew", "auto"]);
    let server = measured_server(&lines);
    let ppm = server["drift_ppm"].as_f64().unwrap();
    assert_eq!(server["consistent"], true, "{server}");
    let band = |i: usize| server["band_ns"][i].as_i64().unwrap();
    if band(1) - band(0) < 10 * SEC as i64 {
        // With each session's last activity logged, the band is narrow and the drift shows.
        assert!((300.0..700.0).contains(&ppm), "{server}");
    } else {
        // With only the sessions' ends, each sample spans their minutes of lifetime: the
        // 18 s of drift are within that, and no drift the evidence does not need is applied.
        assert_eq!(ppm, 0.0, "{server}");
    }
    for ((verdict, subs), (_, truth, _)) in verdicts(&lines).iter().zip(&t.sessions) {
        assert_eq!(verdict, "unique", "{server}");
        assert_eq!(subs, &BTreeSet::from([truth.ip().to_string()]));
    }
    let _ = std::fs::remove_dir_all(&t.dir);
}

#[test]
fn two_server_clocks_in_one_log_give_no_false_unique() {
    let t = traced_capture("twoclocks");
    // Without the sessions' last activity in the log, a session is evidence for the
    // whole of its lifetime (minutes): clocks must differ by more than that to be told
    // apart. Whether they are told apart or not, no answer may be falsely unique.
    let log = access_log_with_clock(&t, "two.log", |i, _| {
        if i % 3 == 0 {
            -20 * SEC as i64
        } else {
            -400 * SEC as i64
        }
    });
    let lines = attribute_with(&t, &log, &["--skew", "auto"]);
    let server = measured_server(&lines);
    assert_eq!(server["consistent"], false, "{server}");
    for ((verdict, subs), (_, truth, _)) in verdicts(&lines).iter().zip(&t.sessions) {
        let truth = truth.ip().to_string();
        assert!(subs.contains(&truth), "{verdict} {subs:?} lacks {truth}");
        if verdict == "unique" {
            assert_eq!(subs.len(), 1);
        }
    }
    let _ = std::fs::remove_dir_all(&t.dir);
}
