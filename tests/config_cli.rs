//! The `tracenat` binary's config and usage behaviour, run as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

fn tracenat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracenat"))
        .args(args)
        .output()
        .expect("the tracenat binary runs")
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tracenat.example.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("example config is readable")
}

/// A file in the system temp dir, removed when dropped; unique per process and call.
struct TempFile(PathBuf);

impl TempFile {
    fn with_contents(contents: &str) -> TempFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tracenat-config-cli-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).expect("temp file is writable");
        TempFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The example config with one line replaced; fails if the line is not there.
fn example_with(line: &str, replacement: &str) -> String {
    let text = example_text();
    assert!(text.contains(line), "example config has no {line:?}");
    text.replacen(line, replacement, 1)
}

#[test]
fn example_config_checks_ok_with_summary() {
    let path = example_path();
    let output = tracenat(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.starts_with(&format!("{}: ok\n", path.display())),
        "{out}"
    );
    assert!(out.contains("usable public addresses"), "{out}");
    assert!(out.contains("workers: 2"), "{out}");
}

#[test]
fn invalid_value_exits_2_naming_the_key() {
    let file = TempFile::with_contents(&example_with("udp = \"5m\"", "udp = \"90s\""));
    let output = tracenat(&["config", "check", file.arg()]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.starts_with("error: timeouts.udp: "), "{err}");
    assert!(err.contains("RFC 4787"), "{err}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn unknown_key_exits_2_naming_key_and_line() {
    let file = TempFile::with_contents(&example_with("[ttl]\n", "[ttl]\nexpire = \"drop\"\n"));
    let output = tracenat(&["config", "check", file.arg()]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("ttl.expire (line "), "{err}");
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn missing_config_file_exits_2() {
    let output = tracenat(&["config", "check", "/nonexistent/tracenat.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot read /nonexistent/tracenat.toml"));
}

#[test]
fn replay_with_invalid_config_exits_2_before_reading_captures() {
    let file = TempFile::with_contents(&example_with("count = 2", "count = 0"));
    let output = tracenat(&[
        "replay",
        "--config",
        file.arg(),
        "--inside",
        "/nonexistent/in.pcap",
        "--out",
        "/nonexistent/out",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("workers.count"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tracenat(&["config", "check"]).status.code(), Some(2));
    assert_eq!(tracenat(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn help_describes_the_tool_and_exit_statuses() {
    let output = tracenat(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    assert!(
        help.contains("keeps a verifiable record of every mapping"),
        "{help}"
    );
    assert!(help.contains("Exit status"), "{help}");
    assert!(help.contains("replay") && help.contains("config"), "{help}");
}
