//! The veth lab: network namespaces that hold subscribers, an access router, the NAT and
//! an "internet", joined by veth pairs, so that `tracenat run` can be tried and tested on
//! one machine.
//!
//! ```text
//!  tn-sub-<i>, i = 1..N       tn-access                   tn-nat                       tn-inet
//! +--------------------+    +------------------------+    +------------------------+    +-------------------------+
//! | eth0 (alt tn-s<i>) |    | tn-br 100.64.1.254/24  |    |                        |    | lo 198.51.100.10  HTTP  |
//! | 100.64.1.<i>/24    |----| tn-s<i>-peer (port)    |    |                        |    |    198.51.100.20  UDP   |
//! | default via        |    |                        |    |                        |    |                         |
//! |   100.64.1.254     |    | tn-in-peer             |====| tn-in                  |    |                         |
//! +--------------------+    | 100.64.0.2/24          |    | 100.64.0.1/24          |    |                         |
//!                           | default via 100.64.0.1 |    |                        |    |                         |
//!                           | ip_forward=1           |    | tn-out                 |====| tn-out-peer             |
//!                           +------------------------+    | 192.0.2.1/24           |    | 192.0.2.254/24          |
//!                                                         | ip_forward=0           |    | 203.0.113.0/24          |
//!                                                         | rp_filter=0            |    |   via 192.0.2.1         |
//!                                                         | tracenat run (AF_XDP)  |    +-------------------------+
//!                                                         | metrics 127.0.0.1:9917 |
//!                                                         +------------------------+
//! ==== veth with N rx/tx queues (N = --workers)   ---- single-queue veth, port of tn-br
//! public pool 203.0.113.0/24, subscribers 100.64.0.0/10; tx checksum offload off on
//! tn-in-peer, tn-out-peer, every eth0 and every tn-s<i>-peer
//! ```
//!
//! The lab is described as data first ([`topology::Topology`]), then built by applying
//! that description step by step ([`apply`]); `status` and `down` read the same
//! description back from `<dir>/lab.json`, and find leftovers of a crashed run by the
//! lab's fixed names (`tn-nat`, `tn-access`, `tn-inet`, `tn-sub-<i>`).
//!
//! Details the dataplane can rely on: every lab interface has a fixed, locally
//! administered MAC address (`02:74:6e:…`; `tn-in` is `02:74:6e:00:00:01`, `tn-in-peer`
//! `…:00:00:02`, `tn-out` `…:00:01:01`, `tn-out-peer` `…:00:01:fe`); IPv6 is disabled in
//! every lab namespace, so no router solicitations or MLD reports reach the NAT; the
//! last step of `up` pings across every link, which checks the wiring and leaves the
//! gateways' MAC addresses in `tn-nat`'s neighbour table; `tn-nat` has routes to
//! 100.64.0.0/10 via the access router and a default via the upstream router, for the
//! kernel's own replies — it never forwards.
//!
//! With `--dhcp` ([`apply::Addressing::Dhcp`], stored in `lab.json` as `"dhcp": true`)
//! the subscribers get no static address: a real Kea DHCPv4 server runs in `tn-access` on
//! `tn-br`, every subscriber runs `dhclient` on its `eth0` (host name: its customer name,
//! alice, bob, …) and gets its address (still 100.64.1.<i>: it asks for that one) and
//! default route from its lease. `up` waits for every lease before the probes; Kea's
//! lease file is `<dir>/kea/kea-leases4.csv` ([`dhcp::lease_file`]); `status` reports
//! Kea and each subscriber's address; `down` ends Kea and the clients with everything
//! else. [`dhcp`] has the configuration choices and the helpers a demo uses (release,
//! acquire, hand an address to another subscriber).
//!
//! Everything here drives `ip`, `ethtool`, `sysctl` and `ping` (iproute2, ethtool,
//! procps, iputils-ping) through `std::process::Command` and needs root; `--dhcp` also
//! `kea-dhcp4` (kea-dhcp4-server) and `dhclient` (isc-dhcp-client).

pub mod apply;
pub mod dhcp;
pub mod nat_config;
pub mod serve;
pub mod status;
pub mod sys;
pub mod topology;

use std::path::PathBuf;

pub use apply::{Addressing, DownReport, down, up, up_with};
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
    /// The lab's DHCP server or a subscriber's client did not do what was asked.
    #[error("DHCP: {0}")]
    Dhcp(String),
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
