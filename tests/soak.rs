//! `scripts/soak.sh` for two minutes (issue 12): the lab at a steady mix of established
//! flows and churn, then memory, UMEM frames, the log and the counters that must stay zero
//! are checked by the script, which fails if any is off. Needs root; without it, skipped.

#[allow(unused_imports)] // the lab harness is all this file takes from common
mod common;

use std::process::Command;

use common::lab::{exe, is_root};

#[test]
fn two_minutes_of_steady_traffic_leave_memory_frames_log_and_counters_clean() {
    if !is_root() {
        eprintln!("skipped: the soak needs root (network namespaces and XDP)");
        return;
    }
    // The lab's names are global: hold the lab tests' turn.
    let _turn = common::lab::turn();
    let out = std::env::temp_dir().join(format!("tracenat-soak-{}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soak.sh");
    let run = Command::new("bash")
        .args([script, "2m", "--out"])
        .arg(&out)
        .env("TRACENAT", exe())
        .output()
        .expect("run scripts/soak.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}");
    assert!(run.status.success(), "soak failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("soak.json")).unwrap()).unwrap();
    let checks = report["checks"].as_object().unwrap();
    assert_eq!(checks.len(), 6, "{report}");
    assert!(checks.values().all(|v| v == true), "{report}");
    assert!(
        report["sessions_created"].as_u64().unwrap() > 1024,
        "{report}"
    );
}
