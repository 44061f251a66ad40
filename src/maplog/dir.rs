//! The log directory: one folder of segments per worker, the configurations that were in
//! force, and the list of segments retention has deleted. Layout: docs/mapping-log.md.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::segment;

/// Marks a directory as a tracenat mapping log (and which format version wrote it).
pub const MARKER: &str = "tracenat-log.json";
pub const CONFIGS: &str = "configs";
pub const RETIRED: &str = "retired.jsonl";
pub const RUNS: &str = "runs.jsonl";

pub fn worker_dir(root: &Path, worker: u16) -> PathBuf {
    root.join(format!("worker-{worker:03}"))
}

/// The workers that have a folder in `root`, in order.
pub fn workers(root: &Path) -> io::Result<Vec<u16>> {
    let mut workers = Vec::new();
    for entry in fs::read_dir(root)? {
        let name = entry?.file_name();
        if let Some(w) = name
            .to_str()
            .and_then(|n| n.strip_prefix("worker-"))
            .and_then(|n| n.parse().ok())
        {
            workers.push(w);
        }
    }
    workers.sort_unstable();
    Ok(workers)
}

/// A worker's segment files, in write order.
pub fn segments(worker_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(worker_dir)? {
        let path = entry?.path();
        if let Some(seq) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(segment::parse_file_name)
        {
            found.push((seq, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Creates the directory and its marker if needed; refuses a directory that holds
/// something else than a mapping log, so a typo cannot scatter segments into /etc.
pub fn prepare(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let marker = root.join(MARKER);
    if marker.exists() {
        return Ok(());
    }
    if fs::read_dir(root)?.next().is_some() {
        return Err(io::Error::other(format!(
            "{} is not empty and not a tracenat mapping log (no {MARKER})",
            root.display()
        )));
    }
    let text = format!(
        "{{\"format\":\"tracenat-mapping-log\",\"version\":{}}}\n",
        super::block::FORMAT_VERSION
    );
    fs::write(marker, text)
}

/// Checks that `root` is a mapping log.
pub fn check(root: &Path) -> io::Result<()> {
    let marker = root.join(MARKER);
    if marker.exists() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is not a tracenat mapping log (no {MARKER})",
                root.display()
            ),
        ))
    }
}

/// Stores the configuration text in force from `activation_ns` on. Deterministic mode
/// computes mappings from it; every mode keeps it as a record of what the NAT did. Shared
/// secrets (`[identity.radius]`) are redacted: whoever reads the log must not learn them.
pub fn store_config(root: &Path, activation_ns: u64, text: &str) -> io::Result<()> {
    let dir = root.join(CONFIGS);
    fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{activation_ns:020}.toml"));
    if !path.exists() {
        fs::write(&path, crate::config::identity::redact_secrets(text))?;
        fs::File::open(&dir)?.sync_all()?;
    }
    Ok(())
}

/// The stored configurations, oldest first, as (activation time, text).
pub fn configs(root: &Path) -> io::Result<Vec<(u64, String)>> {
    let dir = root.join(CONFIGS);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(ts) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
        {
            out.push((ts, fs::read_to_string(&path)?));
        }
    }
    out.sort_by_key(|(ts, _)| *ts);
    Ok(out)
}
