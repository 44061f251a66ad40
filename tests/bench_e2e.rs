//! `scripts/bench-e2e.sh` drives the real peers of issue 10's side-by-side figures — the
//! kernel's NAT (nftables snat + conntrack) and iperf3, both installed by
//! scripts/setup.sh — besides the ceiling and tracenat. A short run (1 s phases) must give
//! every figure for every system, and nothing it starts for one system may run on into the
//! next: the kernel's conntrack sampler once did, and was the ceiling's and tracenat's
//! whole latency tail. Needs root, like the lab.

#[allow(unused_imports)] // the lab harness is all this file takes from common
mod common;

use std::process::Command;

use common::lab::{exe, is_root, turn};
use serde_json::Value;

fn figure(results: &Value, system: &str, path: &[&str]) -> f64 {
    let mut v = &results[system];
    for key in path {
        v = &v[key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{system} {path:?} in {results:#}"))
}

#[test]
fn a_short_run_measures_the_kernel_the_ceiling_and_tracenat_and_leaves_nothing_running() {
    if !is_root() {
        eprintln!("skipped: bench-e2e needs root (network namespaces and XDP)");
        return;
    }
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-e2e.sh"))
        .args([
            "--workers",
            "1",
            "--duration",
            "1s",
            "--new-duration",
            "0.5s",
        ])
        .args(["--new-flows", "200k", "--tcp-time", "1", "--out"])
        .arg(out.path())
        .env("TRACENAT_BIN", exe())
        .status()
        .expect("bash");
    assert!(status.success(), "bench-e2e.sh: {status}");
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    for system in ["kernel", "ceiling", "tracenat"] {
        assert!(
            figure(&results, system, &["forwarded_pps"]) > 0.0,
            "{system}"
        );
        assert!(figure(&results, system, &["rtt_p99_us"]) > 0.0, "{system}");
    }
    for system in ["kernel", "tracenat"] {
        for dir in ["up", "down"] {
            let bits = figure(&results, system, &["tcp", dir, "bits_per_second"]);
            assert!(bits > 0.0, "{system} iperf3 {dir}");
        }
        assert!(
            figure(&results, system, &["sessions_created"]) > 0.0,
            "{system}"
        );
    }
    // The conntrack sampler stops with the kernel's new-session phase: its last sample is
    // taken within a second of that phase's end (`kernel-new.txt`: … send start, end).
    let phase = std::fs::read_to_string(out.path().join("kernel-new.txt")).unwrap();
    let phase_end: f64 = phase.split_whitespace().last().unwrap().parse().unwrap();
    let samples = std::fs::read_to_string(out.path().join("kernel-conntrack-count.txt")).unwrap();
    let last_sample: f64 = samples
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .expect("conntrack samples");
    assert!(
        last_sample < phase_end + 1.0,
        "the sampler ran on {:.1} s after the kernel's phase",
        last_sample - phase_end
    );
}
