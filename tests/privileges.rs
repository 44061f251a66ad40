//! Least privilege (issue 12): `tracenat run` with `process.user = "nobody"` in the veth
//! lab. Once started, every thread of the process runs as nobody with no capability and
//! no way to gain one, and the NAT still translates, logs and stops cleanly. Needs root.

#[allow(unused_imports)] // the lab harness is all this file takes from common
mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::lab::{Lab, records, reported};
use tracenat::demo::{self, echo_server, in_namespace};
use tracenat::lab::topology;
use tracenat::maplog::record::RecordKind;

const NOBODY: u32 = 65534;

/// `field:` of a /proc status file, as its whitespace-separated values.
fn field(status: &str, name: &str) -> Vec<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn after_start_up_every_thread_is_an_unprivileged_user_without_capabilities() {
    let Some(lab) = Lab::up("privileges", 1, 1) else {
        return;
    };
    lab.add_config("[process]\nuser = \"nobody\"\n");
    let _servers = demo::start_servers(&common::lab::exe(), &lab.dir).unwrap();
    let nat = lab.nat();
    let pid = nat.pid().unwrap();
    // The drop follows the metrics endpoint's start by a moment: wait for its report.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&nat.output)
        .unwrap_or_default()
        .contains("now running as uid 65534")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no privilege drop reported"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| t.unwrap().path())
        .collect();
    assert!(tasks.len() > 3, "workers, writer, metrics: {tasks:?}");
    let mut checked = 0;
    for task in &tasks {
        // A connection thread of the metrics endpoint may have finished meanwhile.
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue;
        };
        checked += 1;
        for ids in ["Uid:", "Gid:"] {
            let values = field(&status, ids);
            assert!(
                values.iter().all(|v| *v == NOBODY.to_string()),
                "{ids} {values:?} in {}",
                task.display()
            );
        }
        for caps in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
            assert_eq!(
                field(&status, caps),
                ["0000000000000000"],
                "{caps} in {}",
                task.display()
            );
        }
        assert_eq!(field(&status, "NoNewPrivs:"), ["1"], "{}", task.display());
    }
    assert!(checked > 3, "{checked} threads checked");

    // It still translates: a UDP exchange through it, and new sessions logged.
    in_namespace(&topology::subscriber_ns(1), || {
        for _ in 0..20 {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            socket.send_to(b"hello", echo_server())?;
            let mut buf = [0u8; 16];
            socket.recv_from(&mut buf)?;
        }
        Ok(())
    })
    .expect("UDP through the NAT running as nobody");
    let output = nat.stop().unwrap();
    assert_eq!(reported(&output, "UMEM frames unaccounted for at exit:"), 0);
    assert!(output.contains("all flushed"), "{output}");

    let log = lab.dir.join("log");
    assert_eq!(std::fs::metadata(&log).unwrap().uid(), NOBODY);
    let created = records(&log, RecordKind::SessionCreated).len();
    assert!(created >= 20, "{created} sessions logged\n{output}");
    assert_eq!(records(&log, RecordKind::SessionEnded).len(), created);
}

#[test]
fn the_shipped_systemd_unit_scores_ok_in_systemd_analyze_security() {
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/systemd/tracenat.service"
    );
    let out = std::process::Command::new("systemd-analyze")
        // The threshold is in tenths: 40 is an exposure of 4.0.
        .args(["security", "--offline=true", "--threshold=40", unit])
        .output()
        .expect("systemd-analyze (scripts/setup.sh installs systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 4.0:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tracenat.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 4.0, "{level}");
    // The settings the issue names are there, not merely a good score.
    let text = std::fs::read_to_string(unit).unwrap();
    for setting in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(text.contains(setting), "{setting}");
    }
}
