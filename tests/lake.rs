//! The data lake road: a log exported as Parquet (`tracenat log export --format parquet`),
//! then the attribution SQL of scripts/lake/ run by DuckDB (embedded) and by Spark SQL
//! (pyspark, local mode) over it. Every question must get the same verdict and the same
//! subscribers as `tracenat log query` and `tracenat log attribute` on the log itself.
//! Needs duckdb and pyspark in /opt/tracenat-lake (a virtual environment) and a Java
//! runtime: `scripts/setup.sh` installs them.

#[allow(unused_imports)]
mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;
use tracenat::engine::Side;

/// 40 subscribers on a 4-address pool (so addresses are shared ten ways), TCP connections
/// (a SYN, then up to three segments 20 s apart, as web clients make) spread over 20
/// minutes, ending on the transitory timeout; so public ports are reused by other
/// subscribers over time, and a connection's last packet is often well before its end.
fn write_log(dir: &Path, port_block: bool) -> PathBuf {
    let log = dir.join("log");
    let mut cfg = Cfg::new();
    if port_block {
        cfg = cfg
            .with("allocation.mode", "\"port-block\"")
            .with("allocation.block-size", "64");
    }
    let mut packets = Vec::new();
    let mut rng = 7u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    for i in 0..160u64 {
        let sub = Ipv4Addr::new(100, 64, 3, (i % 40) as u8 + 1);
        let start = T0 + next() % (1_200 * SEC);
        let src = sock(sub, 30_000 + (i / 40) as u16);
        let server = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, (next() % 5) as u8 + 1), 443);
        packets.push((
            start,
            Side::Inside,
            tcp(src, server, tracenat::wire::tcp::SYN),
        ));
        for k in 1..=next() % 4 {
            let segment = tcp(src, server, tracenat::wire::tcp::ACK);
            packets.push((start + k * 20 * SEC, Side::Inside, segment));
        }
    }
    packets.extend(ticks(T0, T0 + 1_500 * SEC, 5 * SEC));
    replay_logged(&cfg, &sorted(packets), &log);
    log
}

/// Questions: each public endpoint the log hands out, asked with and without its port at
/// moments across the 25 minutes (during sessions, between them, after them).
fn questions(log: &Path) -> Vec<(SocketAddrV4, u64)> {
    let publics: BTreeSet<SocketAddrV4> = decoded(log)
        .iter()
        .filter(|e| e["kind"] == "session_created")
        .map(|e| ev_ep(e, "public"))
        .collect();
    let mut out = Vec::new();
    for (n, public) in publics.iter().enumerate() {
        for k in 0..4u64 {
            // Whole seconds: the access log's time has no fraction.
            let at = T0 + ((n as u64 * 37 + k * 390) % 1_500) * SEC;
            out.push((*public, at));
        }
    }
    out
}

/// (verdict, distinct subscriber addresses) of one `tracenat log query`.
fn tracenat_answer(log: &Path, public: &str, at: u64) -> (String, Vec<String>) {
    let o = tracenat(&[
        "log",
        "query",
        "--dir",
        log.to_str().unwrap(),
        "--public",
        public,
        "--at",
        &(at / SEC).to_string(),
        "--tolerance",
        "2s",
        "--proto",
        "tcp",
        "--json",
    ]);
    let answer: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("query json: {}", String::from_utf8_lossy(&o.stderr)));
    let subscribers: BTreeSet<String> = answer["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = c["subscriber"].as_str().unwrap();
            s.split(':').next().unwrap().to_owned()
        })
        .collect();
    (
        answer["verdict"].as_str().unwrap().to_owned(),
        subscribers.into_iter().collect(),
    )
}

/// The requests CSV lake.py reads, one row per question (with and without the port).
fn requests_csv(dir: &Path, asked: &[(String, u64)]) -> PathBuf {
    let mut csv = String::from("line,client_ip,client_port,ts_ns\n");
    for (i, (client, at)) in asked.iter().enumerate() {
        let (ip, port) = client.split_once(':').unwrap_or((client, "-1"));
        csv.push_str(&format!("{},{ip},{port},{at}\n", i + 1));
    }
    let path = dir.join("requests.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// The Python with duckdb and pyspark: scripts/setup.sh's virtual environment.
fn lake_python() -> String {
    std::env::var("TRACENAT_LAKE_PYTHON").unwrap_or_else(|_| "/opt/tracenat-lake/bin/python".into())
}

fn lake_attribute(engine: &str, lake: &Path, requests: &Path) -> Vec<(String, Vec<String>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lake/lake.py");
    let out = ok(Command::new(lake_python())
        .arg(script)
        .args(["attribute", "--engine", engine, "--lake"])
        .arg(lake)
        .arg("--requests")
        .arg(requests)
        .args(["--tolerance", "2000000000"])
        .output()
        .expect("run python3"));
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let subs = v["subscribers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            (v["verdict"].as_str().unwrap().to_owned(), subs)
        })
        .collect()
}

/// An access log of the same requests, in Apache's combined format (times in UTC).
fn access_log(dir: &Path, asked: &[(String, u64)]) -> PathBuf {
    let mut text = String::new();
    for (i, (client, at)) in asked.iter().enumerate() {
        let rfc3339 = tracenat::reader::time::format_time(*at);
        let (date, time) = rfc3339.split_once('T').unwrap();
        let (y, rest) = date.split_once('-').unwrap();
        let (m, d) = rest.split_once('-').unwrap();
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][m.parse::<usize>().unwrap() - 1];
        text.push_str(&format!(
            "{client} - - [{d}/{month}/{y}:{} +0000] \"GET /q/{i} HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n",
            &time[..8]
        ));
    }
    let path = dir.join("access.log");
    std::fs::write(&path, text).unwrap();
    path
}

fn attribute_answers(log: &Path, access: &Path) -> Vec<(String, Vec<String>)> {
    let out = ok(tracenat(&[
        "log",
        "attribute",
        "--dir",
        log.to_str().unwrap(),
        "--access-log",
        access.to_str().unwrap(),
        "--skew",
        "2s",
        "--json",
    ]));
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("verdict").is_some() && v.get("candidates").is_some())
        .map(|v| {
            let subs: BTreeSet<String> = v["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    c["subscriber"]
                        .as_str()
                        .unwrap()
                        .split(':')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            (
                v["verdict"].as_str().unwrap().to_owned(),
                subs.into_iter().collect(),
            )
        })
        .collect()
}

fn export_parquet(log: &Path, lake: &Path) {
    ok(tracenat(&[
        "log",
        "export",
        "--dir",
        log.to_str().unwrap(),
        "--format",
        "parquet",
        "--out",
        lake.to_str().unwrap(),
        "--box",
        "cgn-test",
    ]));
}

fn same_answers_everywhere(port_block: bool) {
    let dir = scratch("lake", if port_block { "blocks" } else { "dynamic" });
    let log = write_log(&dir, port_block);
    let lake = dir.join("lake");
    export_parquet(&log, &lake);
    let mut asked = Vec::new();
    let mut expected = Vec::new();
    // In time order, as a server writes its access log.
    let mut questions = questions(&log);
    questions.sort_by_key(|(public, at)| (*at, *public));
    for (public, at) in questions {
        for text in [public.to_string(), public.ip().to_string()] {
            expected.push(tracenat_answer(&log, &text, at));
            asked.push((text, at));
        }
    }
    let verdicts: BTreeSet<&str> = expected.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        verdicts.len(),
        3,
        "the questions reach every verdict: {verdicts:?}"
    );
    let requests = requests_csv(&dir, &asked);
    let from_attribute = attribute_answers(&log, &access_log(&dir, &asked));
    assert_eq!(
        from_attribute, expected,
        "log attribute agrees with log query"
    );
    for engine in ["duckdb", "spark"] {
        let got = lake_attribute(engine, &lake, &requests);
        assert_eq!(
            got.len(),
            expected.len(),
            "{engine}: one answer per request"
        );
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                g,
                e,
                "{engine}: request {} ({} at {})",
                i + 1,
                asked[i].0,
                asked[i].1
            );
        }
    }
}

#[test]
fn duckdb_and_spark_answer_as_the_reader_does_with_dynamic_ports() {
    same_answers_everywhere(false);
}

#[test]
fn duckdb_and_spark_answer_as_the_reader_does_with_port_blocks() {
    same_answers_everywhere(true);
}

#[test]
fn identities_reach_the_lake_with_their_fields() {
    let dir = scratch("lake", "identities");
    let log = write_log(&dir, false);
    let leases = dir.join("kea-leases4.csv");
    std::fs::write(
        &leases,
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n\
         100.64.3.1,02:00:5e:00:53:01,,3600,1700003600,1,0,0,cpe-1,0,\n\
         100.64.3.2,02:00:5e:00:53:02,,3600,1700003600,1,0,0,cpe-2,0,\n",
    )
    .unwrap();
    ok(tracenat(&[
        "identity",
        "import",
        "--format",
        "kea-csv",
        leases.to_str().unwrap(),
        "--log-dir",
        log.to_str().unwrap(),
    ]));
    let lake = dir.join("lake");
    export_parquet(&log, &lake);
    let query = format!(
        "import duckdb; print(duckdb.sql(\"SELECT inside_ip, hw_addr, hostname, source, box FROM read_parquet('{}/identities/*/*/*.parquet', hive_partitioning = true) ORDER BY inside_ip\").fetchall())",
        lake.display()
    );
    let rows = ok(Command::new(lake_python())
        .args(["-c", &query])
        .output()
        .unwrap());
    assert_eq!(
        rows.trim(),
        "[('100.64.3.1', '02:00:5e:00:53:01', 'cpe-1', 'kea-lease', 'cgn-test'), \
         ('100.64.3.2', '02:00:5e:00:53:02', 'cpe-2', 'kea-lease', 'cgn-test')]"
    );
}
