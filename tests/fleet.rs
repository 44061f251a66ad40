//! Many NATs in one answer: three boxes' logs (each names its box in `runs.jsonl`), read
//! together by `log query`, `attribute`, `decode`, `stats` and `verify` — named one by one
//! or as a folder of logs — with the box named in every candidate.

#[allow(unused_imports)]
mod common;

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use tracenat::engine::Side;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const SUBSCRIBER: &str = "100.64.5.1:40000";
const SERVER: &str = "198.51.100.9:443";

/// A box's log: one subscriber, 100.64.5.1 (access networks reuse private space), opens
/// one TCP connection (a web client's) at T0 + 1 s through a box with pool `pool`.
fn box_log(folder: &Path, name: &str, pool: &str) -> (PathBuf, SocketAddrV4) {
    let log = folder.join(name);
    let cfg = Cfg::new()
        .with("pool.public", &format!("[\"{pool}\"]"))
        .with("logging.box-name", &format!("\"{name}\""));
    let syn = tcp(ep(SUBSCRIBER), ep(SERVER), tracenat::wire::tcp::SYN);
    let packets = vec![(T0 + SEC, Side::Inside, syn)];
    replay_logged(&cfg, &packets, &log);
    let created = decoded(&log)
        .into_iter()
        .find(|e| e["kind"] == "session_created")
        .expect("a session");
    (log, ev_ep(&created, "public"))
}

struct Boxes {
    folder: PathBuf,
    a: (PathBuf, SocketAddrV4),
    b: (PathBuf, SocketAddrV4),
    c: (PathBuf, SocketAddrV4),
}

/// Box a and box c share a pool (say, c took a's addresses over); box b has its own.
fn boxes(name: &str) -> Boxes {
    let folder = std::env::temp_dir().join(format!("tracenat-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    Boxes {
        a: box_log(&folder, "cgn-a", "203.0.113.0/30"),
        b: box_log(&folder, "cgn-b", "203.0.113.4/30"),
        c: box_log(&folder, "cgn-c", "203.0.113.0/30"),
        folder,
    }
}

fn query(dirs: &[&Path], public: &str) -> Value {
    let mut args = vec![
        "log",
        "query",
        "--public",
        public,
        "--at",
        "1700000001",
        "--json",
    ];
    for d in dirs {
        args.extend(["--dir", d.to_str().unwrap()]);
    }
    serde_json::from_slice(&tracenat(&args).stdout).expect("query json")
}

fn boxes_named(answer: &Value) -> Vec<String> {
    let mut names: Vec<String> = answer["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["box"].as_str().expect("box named").to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn an_endpoint_only_one_box_held_is_unique_and_names_that_box() {
    let b = boxes("unique");
    let answer = query(&[&b.a.0, &b.b.0], &b.b.1.to_string());
    assert_eq!(answer["verdict"], "unique", "{answer}");
    assert_eq!(boxes_named(&answer), ["cgn-b"]);
    assert_eq!(answer["candidates"][0]["subscriber"], SUBSCRIBER);
    // The folder of logs reads the same as the logs named one by one.
    let from_folder = query(&[&b.folder], &b.b.1.to_string());
    assert_eq!(from_folder["candidates"], answer["candidates"]);
}

#[test]
fn the_same_inside_address_behind_two_boxes_is_two_subscribers() {
    let b = boxes("two");
    assert_eq!(
        b.a.1.ip(),
        b.c.1.ip(),
        "both boxes used the shared pool's first address"
    );
    // Alone, each box's log has one subscriber on the address.
    assert_eq!(
        query(&[&b.a.0], &b.a.1.ip().to_string())["verdict"],
        "unique"
    );
    let answer = query(&[&b.folder], &b.a.1.ip().to_string());
    assert_eq!(answer["verdict"], "ambiguous", "{answer}");
    assert_eq!(boxes_named(&answer), ["cgn-a", "cgn-c"]);
}

#[test]
fn attribute_decode_stats_and_verify_read_every_box() {
    let b = boxes("commands");
    let folder = b.folder.to_str().unwrap();
    // attribute: one request to each box's public endpoint, with its port.
    let access = b.folder.join("access.log");
    let line = |public: SocketAddrV4| {
        format!(
            "{public} - - [14/Nov/2023:22:13:21 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n"
        )
    };
    std::fs::write(&access, line(b.a.1) + &line(b.b.1)).unwrap();
    let out = stdout(&tracenat(&[
        "log",
        "attribute",
        "--dir",
        folder,
        "--access-log",
        access.to_str().unwrap(),
        "--json",
    ]));
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Box a's endpoint is also box c's (shared pool, same seed): both held it.
    assert_eq!(lines[0]["verdict"], "ambiguous", "{out}");
    assert_eq!(lines[1]["verdict"], "unique", "{out}");
    assert_eq!(lines[1]["candidates"][0]["box"], "cgn-b");
    // decode: every box's records, each labelled.
    let decoded = stdout(&tracenat(&[
        "log", "decode", "--dir", folder, "--format", "json",
    ]));
    let mut labels: Vec<String> = decoded
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["box"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    labels.dedup();
    assert_eq!(labels, ["cgn-a", "cgn-b", "cgn-c"]);
    // stats and verify: one report per box.
    let stats = stdout(&tracenat(&["log", "stats", "--dir", folder]));
    for name in ["cgn-a", "cgn-b", "cgn-c"] {
        assert!(stats.contains(&format!("box {name} (")), "{stats}");
    }
    let verify = tracenat(&["log", "verify", "--dir", folder]);
    assert!(verify.status.success());
    assert_eq!(
        stdout(&verify).matches(": ok,").count(),
        3,
        "{}",
        stdout(&verify)
    );
    // A single-log command refuses several logs rather than pick one.
    let export = tracenat(&[
        "log",
        "export",
        "--dir",
        folder,
        "--format",
        "syslog",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(export.status.code(), Some(2));
}

#[test]
fn a_box_names_itself_in_runs_jsonl() {
    let b = boxes("runs");
    let runs = std::fs::read_to_string(b.b.0.join("runs.jsonl")).unwrap();
    let first: Value = serde_json::from_str(runs.lines().next().unwrap()).unwrap();
    assert_eq!(first["box"], "cgn-b");
}

#[test]
fn an_archive_copy_verifies_and_answers_as_the_original() {
    let b = boxes("archive");
    let archive = b.folder.join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let copy = archive.join("cgn-b");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&b.b.0)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let verify = tracenat(&["log", "verify", "--dir", copy.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let public = b.b.1.to_string();
    assert_eq!(
        query(&[&archive], &public)["candidates"],
        query(&[&b.b.0], &public)["candidates"]
    );
}
