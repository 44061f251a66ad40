//! The veth lab for one test: brought up in a fresh directory, taken down when dropped,
//! one at a time (the lab's names are global), plus what lab tests read back.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracenat::demo::{self, LabProcess};
use tracenat::lab::{self, UpOptions, topology};
use tracenat::maplog::record::{Record, RecordKind};
use tracenat::reader::logdir::{self, LogDir};

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tracenat"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

static LAB: Mutex<()> = Mutex::new(());

/// This test binary's turn with the lab (its names are global).
pub fn turn() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

/// A lab for one test, taken down when dropped (also when the test fails).
pub struct Lab {
    pub dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    pub fn up(name: &str, workers: u16, subscribers: u16) -> Option<Lab> {
        if !is_root() {
            eprintln!("skipped: {name} needs root (network namespaces and XDP)");
            return None;
        }
        let turn = turn();
        let dir = std::env::temp_dir().join(format!("tracenat-dp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        lab::up(
            &UpOptions {
                workers,
                subscribers,
                dir: dir.clone(),
                force: false,
            },
            &mut |_| {},
        )
        .expect("lab up (is another lab up? `tracenat lab down`)");
        Some(Lab { dir, _turn: turn })
    }

    /// Appends `toml` (whole tables) to the NAT's config before it starts.
    pub fn add_config(&self, toml: &str) {
        let config = self.dir.join("tracenat.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&config, text).unwrap();
    }

    pub fn nat(&self) -> LabProcess {
        demo::start_nat(&exe(), &self.dir).expect("tracenat run comes up")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = lab::down(&self.dir, &mut |_| {});
    }
}

/// The number on the output line `prefix N ...` of `tracenat run`.
pub fn reported(output: &str, prefix: &str) -> u64 {
    output
        .lines()
        .find_map(|l| l.trim_start_matches('\r').strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{output}"))
}

/// The log's records of `kind`, after checking that the log verifies.
pub fn records(log_dir: &Path, kind: RecordKind) -> Vec<Record> {
    let mut out = all_records(log_dir);
    out.retain(|r| r.kind == kind);
    out
}

/// Every record of the log, after checking that it verifies.
pub fn all_records(log_dir: &Path) -> Vec<Record> {
    let log = LogDir::open(log_dir).expect("mapping log");
    assert!(logdir::verify(&log).is_empty(), "the mapping log verifies");
    let mut out = Vec::new();
    logdir::for_each_record(
        &log,
        0,
        u64::MAX,
        |_, r| out.push(*r),
        |_, _, e| panic!("{e}"),
    );
    out
}

/// The running NAT's metrics now (Prometheus text), fetched in its namespace.
pub fn counters() -> String {
    let metrics: std::net::SocketAddr = topology::METRICS.parse().unwrap();
    demo::in_namespace(topology::NAT_NS, || {
        tracenat::dataplane::metrics::fetch(metrics)
    })
    .expect("the metrics endpoint answers")
}

/// `tracenat_NAME{…}` summed over the samples whose labels contain `label`.
pub fn counter(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("tracenat_{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `tracenat gen send` from the access router's namespace, straight into the NAT's inside
/// port; the caller adds who sends what.
pub fn gen_send() -> std::process::Command {
    let mut command = std::process::Command::new("ip");
    command
        .args(["netns", "exec", topology::ACCESS_NS])
        .arg(exe())
        .args([
            "gen",
            "send",
            "--interface",
            topology::INSIDE_PEER_IF,
            "--gateway",
            topology::NAT_INSIDE_ADDRESS,
        ]);
    command
}
