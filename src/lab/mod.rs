//! The veth lab: network namespaces that hold subscribers, an access router, the NAT and
//! an "internet", joined by veth pairs, so that `tracenat run` can be tried and tested on
//! one machine.
//!
//! ```text
//!  tn-sub-1 .. tn-sub-N              tn-access                  tn-nat                     tn-inet
//! +----------------------+      +---------------------+      +--------------------+      +------------------------+
//! | eth0 (altname tn-s1) |      | tn-br 100.64.1.254  |      |                    |      |                        |
//! | 100.64.1.1/24        |------| tn-s1-peer (port)   |      |                    |      |  tn-srv (dummy)        |
//! | gw 100.64.1.254      |      |   ...               |      |                    |      |  198.51.100.10 HTTP    |
//! +----------------------+      | tn-in-peer          |------| tn-in              |      |  198.51.100.20 UDP echo|
//!                               | 100.64.0.2/24       |  N q | 100.64.0.1/24      |      |                        |
//!                               | default via         |      | tn-out             |------| tn-out-peer            |
//!                               |   100.64.0.1        |      | 192.0.2.1/24   N q |      | 192.0.2.254/24         |
//!                               | ip_forward=1        |      | ip_forward=0       |      | 203.0.113.0/24 via     |
//!                               +---------------------+      | rp_filter=0        |      |   192.0.2.1            |
//!                                                            +--------------------+      +------------------------+
//! ```
//!
//! The lab is described as data first ([`topology::Topology`]), then built by applying
//! that description step by step ([`apply`]); `status` and `down` read the same
//! description back from `<dir>/lab.json`, and find leftovers of a crashed run by the
//! lab's fixed names (`tn-nat`, `tn-access`, `tn-inet`, `tn-sub-<i>`).
//!
//! Everything here drives `ip`, `ethtool` and `sysctl` (iproute2, ethtool, procps) through
//! `std::process::Command` and needs root.

pub mod apply;
pub mod nat_config;
pub mod serve;
pub mod status;
pub mod sys;
pub mod topology;

use std::path::PathBuf;

pub use apply::{DownReport, down, up};
pub use status::{LabStatus, status};
pub use topology::{Topology, UpOptions};

/// The directory `tracenat lab` uses unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = "/run/tracenat-lab";

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root (namespaces, links, sysctls).
    #[error("the lab needs root (network namespaces and links); run it as root")]
    NotRoot,
    /// A program the lab drives is not installed.
    #[error("{tool} not found (package {package}); run scripts/setup.sh")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}){}", describe_stderr(stderr))]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A lab (or leftovers of one) is already there.
    #[error(
        "a lab is already up (namespaces {}); run `tracenat lab down` first, or `tracenat lab up --force`",
        namespaces.join(", ")
    )]
    Exists { namespaces: Vec<String> },
    /// No namespace the command could run in.
    #[error("namespace {0} does not exist; is the lab up? (`tracenat lab status`)")]
    NoNamespace(String),
    /// A file of the lab could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `lab.json` could not be understood.
    #[error("{}: not a lab description: {message}", path.display())]
    BadDescription { path: PathBuf, message: String },
    /// An argument out of range: usage, not a runtime failure.
    #[error("{0}")]
    Usage(String),
    /// The configuration the lab writes did not validate (a bug in the lab).
    #[error("the lab's own tracenat.toml is invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
}

fn describe_stderr(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LabError {
        LabError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Runs `command` inside the lab namespace `target` (`sub:N`, `access`, `nat`, `inet`)
/// by replacing this process with `ip netns exec NS COMMAND…`: stdin, stdout, stderr,
/// signals and the exit status are the command's own. Returns only on failure.
pub fn exec(target: &str, command: &[String]) -> LabError {
    use std::os::unix::process::CommandExt as _;
    let run = || -> Result<std::convert::Infallible, LabError> {
        let namespace = topology::namespace_for_target(target)?;
        if command.is_empty() {
            return Err(LabError::Usage("no command to run".into()));
        }
        let tools = sys::Tools::check(false)?;
        if !tools.namespace_exists(&namespace)? {
            return Err(LabError::NoNamespace(namespace));
        }
        let mut process = std::process::Command::new(&tools.ip);
        process.args(["netns", "exec", &namespace]).args(command);
        let line = sys::describe(&process);
        let source = process.exec();
        Err(LabError::Spawn {
            command: line,
            source,
        })
    };
    match run() {
        Err(error) => error,
    }
}
