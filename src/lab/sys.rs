//! Running the system's network tools: finding them, running them with errors that name
//! the command and carry its stderr, and the few queries the lab makes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::LabError;
use super::topology::is_lab_namespace;

/// A tool the lab drives, and the Debian package it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Ip,
    Ethtool,
    Sysctl,
    Ping,
    /// The DHCP server of `lab up --dhcp`.
    KeaDhcp4,
    /// The subscribers' DHCP client of `lab up --dhcp`.
    Dhclient,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Ip => "ip",
            Tool::Ethtool => "ethtool",
            Tool::Sysctl => "sysctl",
            Tool::Ping => "ping",
            Tool::KeaDhcp4 => "kea-dhcp4",
            Tool::Dhclient => "dhclient",
        }
    }

    pub fn package(self) -> &'static str {
        match self {
            Tool::Ip => "iproute2",
            Tool::Ethtool => "ethtool",
            Tool::Sysctl => "procps",
            Tool::Ping => "iputils-ping",
            Tool::KeaDhcp4 => "kea-dhcp4-server",
            Tool::Dhclient => "isc-dhcp-client",
        }
    }
}

/// Where a tool is: the first executable in `$PATH`, then the sbin directories (which a
/// non-login root shell may lack in its PATH).
pub fn find_tool(tool: Tool) -> Result<PathBuf, LabError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(tool.name()))
        .find(|candidate| is_executable(candidate))
        .ok_or(LabError::MissingTool {
            tool: tool.name(),
            package: tool.package(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails unless the process runs as root.
pub fn require_root() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// The resolved tools, checked once at the start of a command.
#[derive(Debug, Clone)]
pub struct Tools {
    pub ip: PathBuf,
    pub ethtool: Option<PathBuf>,
    pub sysctl: Option<PathBuf>,
    pub ping: Option<PathBuf>,
}

impl Tools {
    /// Root and `ip` always; the others when `all` (building a lab needs them).
    pub fn check(all: bool) -> Result<Tools, LabError> {
        require_root()?;
        let ip = find_tool(Tool::Ip)?;
        let optional = |tool| {
            if all {
                find_tool(tool).map(Some)
            } else {
                Ok(find_tool(tool).ok())
            }
        };
        Ok(Tools {
            ip,
            ethtool: optional(Tool::Ethtool)?,
            sysctl: optional(Tool::Sysctl)?,
            ping: optional(Tool::Ping)?,
        })
    }

    fn need(path: &Option<PathBuf>, tool: Tool) -> Result<&Path, LabError> {
        path.as_deref().ok_or(LabError::MissingTool {
            tool: tool.name(),
            package: tool.package(),
        })
    }

    /// `ip ARGS…`, its stdout on success.
    pub fn ip<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, LabError> {
        run(Command::new(&self.ip).args(args))
    }

    /// A tool run inside `namespace` (`ip netns exec NS TOOL ARGS…`).
    pub fn in_netns(&self, namespace: &str, tool: Tool, args: &[&str]) -> Result<String, LabError> {
        let program = match tool {
            Tool::Ip => self.ip.clone(),
            Tool::Ethtool => Tools::need(&self.ethtool, tool)?.to_owned(),
            Tool::Sysctl => Tools::need(&self.sysctl, tool)?.to_owned(),
            Tool::Ping => Tools::need(&self.ping, tool)?.to_owned(),
            // Only `lab up --dhcp` and its helpers need these: looked up when used.
            Tool::KeaDhcp4 | Tool::Dhclient => find_tool(tool)?,
        };
        let mut command = Command::new(&self.ip);
        command
            .args(["netns", "exec", namespace])
            .arg(program)
            .args(args);
        run(&mut command)
    }

    /// Every namespace of the lab that exists (`ip netns list`, names as
    /// [`is_lab_namespace`] knows them), sorted.
    pub fn lab_namespaces(&self) -> Result<Vec<String>, LabError> {
        let listing = self.ip(&["netns", "list"])?;
        let mut names: Vec<String> = listing
            .lines()
            // "tn-nat (id: 3)" or just "tn-nat".
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| is_lab_namespace(name))
            .map(str::to_owned)
            .collect();
        names.sort_by_key(|a| namespace_order(a));
        names.dedup();
        Ok(names)
    }

    /// Whether the namespace exists (has its `/run/netns` entry).
    pub fn namespace_exists(&self, name: &str) -> Result<bool, LabError> {
        Ok(self.lab_namespaces()?.iter().any(|n| n == name))
    }

    /// The processes living in a namespace (`ip netns pids`).
    pub fn namespace_pids(&self, name: &str) -> Result<Vec<i32>, LabError> {
        let listing = self.ip(&["netns", "pids", name])?;
        Ok(listing
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect())
    }

    /// `ip -j -d addr show` in a namespace (`None`: the root namespace), parsed.
    pub fn interfaces_json(&self, namespace: Option<&str>) -> Result<serde_json::Value, LabError> {
        let mut args: Vec<&str> = Vec::new();
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        args.extend(["-j", "-d", "addr", "show"]);
        let text = self.ip(&args)?;
        serde_json::from_str(&text).map_err(|e| LabError::Command {
            command: format!("ip {}", args.join(" ")),
            status: "unreadable output".into(),
            stderr: e.to_string(),
        })
    }
}

/// Orders namespaces the way the lab lists them: nat, access, inet, then subscribers by number.
pub fn namespace_order(name: &str) -> (u8, u32, String) {
    match name {
        super::topology::NAT_NS => (0, 0, String::new()),
        super::topology::ACCESS_NS => (1, 0, String::new()),
        super::topology::INET_NS => (2, 0, String::new()),
        _ => match name.strip_prefix("tn-sub-").and_then(|n| n.parse().ok()) {
            Some(i) => (3, i, String::new()),
            None => (4, 0, name.to_owned()),
        },
    }
}

/// Runs a command to completion; stdout on success, else an error naming the command
/// line, its exit status and its stderr.
pub fn run(command: &mut Command) -> Result<String, LabError> {
    let line = describe(command);
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: line.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: line,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// The command line as a shell user would type it (program by its file name).
pub fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let mut words = vec![
        program
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy()
            .into_owned(),
    ];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    // Show `ip netns exec NS /usr/sbin/ethtool …` as `… ethtool …`.
    for word in words.iter_mut().skip(1) {
        if word.starts_with('/')
            && let Some(name) = Path::new(word.as_str()).file_name()
        {
            let name = name.to_string_lossy().into_owned();
            if ["ip", "ethtool", "sysctl", "ping", "kea-dhcp4", "dhclient"].contains(&name.as_str())
            {
                *word = name;
            }
        }
    }
    words.join(" ")
}
