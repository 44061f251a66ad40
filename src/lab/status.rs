//! `tracenat lab status`: what is there, compared with what `lab.json` says should be.
//!
//! # JSON (`--json`)
//!
//! One object:
//!
//! ```json
//! {
//!   "state": "up",
//!   "dir": "/run/tracenat-lab",
//!   "config": "/run/tracenat-lab/tracenat.toml",
//!   "description": "/run/tracenat-lab/lab.json",
//!   "workers": 2,
//!   "subscribers": 3,
//!   "namespaces": [
//!     {
//!       "name": "tn-nat",
//!       "role": "nat",
//!       "present": true,
//!       "expected": true,
//!       "interfaces": [
//!         {
//!           "name": "tn-in",
//!           "kind": "veth",
//!           "altnames": [],
//!           "state": "UP",
//!           "mac": "02:74:6e:00:00:01",
//!           "master": null,
//!           "addresses": ["100.64.0.1/24"],
//!           "rx_queues": 2,
//!           "tx_queues": 2
//!         }
//!       ]
//!     }
//!   ],
//!   "missing": [],
//!   "dhcp": {
//!     "server_running": true,
//!     "server_pid": 4242,
//!     "config": "/run/tracenat-lab/kea/kea-dhcp4.conf",
//!     "lease_file": "/run/tracenat-lab/kea/kea-leases4.csv",
//!     "subscribers": [
//!       {
//!         "index": 1,
//!         "namespace": "tn-sub-1",
//!         "customer": "alice",
//!         "client_running": true,
//!         "address": "100.64.1.1"
//!       }
//!     ]
//!   }
//! }
//! ```
//!
//! * `state`: `"up"` — `lab.json` is there and every namespace and interface it names
//!   exists; `"down"` — none of the lab's namespaces and no `lab.json`; `"partial"` — anything
//!   else (a crashed `up`, a lab from another `--dir`, a namespace deleted by hand):
//!   `tracenat lab down` clears it.
//! * `config`, `description`: paths of `tracenat.toml` and `lab.json` in the directory,
//!   `null` where the file does not exist. `workers`, `subscribers`: from `lab.json`,
//!   `null` without it.
//! * `namespaces`: the lab's namespaces (from `lab.json`) and any other lab-named
//!   namespace found (`tn-nat`, `tn-access`, `tn-inet`, `tn-sub-<i>`), in the order nat, access, inet, subscribers by number. `role` is
//!   `nat`, `access`, `inet`, `subscriber` or `unknown`; `expected` says whether
//!   `lab.json` names it; `present` whether it exists. `interfaces` (empty when absent)
//!   lists every interface but `lo` (which is listed only where it carries more than
//!   127.0.0.1, as in `tn-inet`, whose servers' addresses are there): `kind` is the link kind (`veth`, `bridge`,
//!   …, or `null`), `state` the operational state as `ip` prints it (`UP`,
//!   `DOWN`, `UNKNOWN`), `master` the bridge of a bridge port, `addresses`
//!   the IPv4 addresses with prefix length, `rx_queues`/`tx_queues` the queue counts.
//! * `missing`: what `lab.json` names that does not exist, as `"tn-sub-2"` for a
//!   namespace or `"tn-nat/tn-in"` for an interface.
//! * `dhcp`: `null` unless the lab was built with `--dhcp` (`super::dhcp`). Then
//!   whether Kea runs (`server_running`, the pid from its pid file), its configuration
//!   and lease file, and per subscriber its customer (the host name it sends), whether
//!   its `dhclient` runs and the address it holds now (`null`: none).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::LabError;
use super::dhcp::{self, DhcpStatus};
use super::sys::{Tools, namespace_order};
use super::topology::{Topology, role_of};

/// What `lab status` reports; serialised as documented in the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabStatus {
    pub state: String,
    pub dir: PathBuf,
    pub config: Option<PathBuf>,
    pub description: Option<PathBuf>,
    pub workers: Option<u16>,
    pub subscribers: Option<u16>,
    pub namespaces: Vec<NamespaceStatus>,
    pub missing: Vec<String>,
    /// The DHCP server and clients of a `--dhcp` lab.
    pub dhcp: Option<DhcpStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceStatus {
    pub name: String,
    pub role: String,
    pub present: bool,
    pub expected: bool,
    pub interfaces: Vec<InterfaceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub kind: Option<String>,
    pub altnames: Vec<String>,
    pub state: String,
    pub mac: Option<String>,
    pub master: Option<String>,
    pub addresses: Vec<String>,
    pub rx_queues: Option<u64>,
    pub tx_queues: Option<u64>,
}

/// Looks at the machine and `<dir>/lab.json`.
pub fn status(dir: &Path) -> Result<LabStatus, LabError> {
    let tools = Tools::check(false)?;
    let dir = std::path::absolute(dir).map_err(|e| LabError::io(dir, e))?;
    let lab = Topology::load(&dir)?;
    let present = tools.lab_namespaces()?;

    let mut names: Vec<String> = present.clone();
    if let Some(lab) = &lab {
        names.extend(lab.namespaces.iter().map(|n| n.name.clone()));
    }
    names.sort_by_key(|n| namespace_order(n));
    names.dedup();

    let mut namespaces = Vec::new();
    for name in names {
        let is_present = present.contains(&name);
        let interfaces = if is_present {
            parse_interfaces(&tools.interfaces_json(Some(&name))?)
        } else {
            Vec::new()
        };
        namespaces.push(NamespaceStatus {
            role: role_of(&name).to_owned(),
            expected: lab
                .as_ref()
                .is_some_and(|lab| lab.namespaces.iter().any(|n| n.name == name)),
            present: is_present,
            interfaces,
            name,
        });
    }

    let mut missing = Vec::new();
    if let Some(lab) = &lab {
        for ns in &lab.namespaces {
            if !present.contains(&ns.name) {
                missing.push(ns.name.clone());
            }
        }
        for (ns, name) in lab.interfaces() {
            let found = namespaces
                .iter()
                .find(|n| n.name == ns && n.present)
                .is_none_or(|n| n.interfaces.iter().any(|i| i.name == name));
            if !found {
                missing.push(format!("{ns}/{name}"));
            }
        }
    }

    let state = match (&lab, present.is_empty()) {
        (None, true) => "down",
        (Some(_), false) if missing.is_empty() && namespaces.iter().all(|n| n.expected) => "up",
        _ => "partial",
    };
    let existing = |path: PathBuf| path.exists().then_some(path);
    let dhcp = lab
        .as_ref()
        .filter(|lab| lab.dhcp)
        .map(|lab| dhcp::status(&tools, lab));
    Ok(LabStatus {
        state: state.to_owned(),
        config: existing(dir.join("tracenat.toml")),
        description: existing(Topology::description_path(&dir)),
        workers: lab.as_ref().map(|l| l.workers),
        subscribers: lab.as_ref().map(|l| l.subscribers),
        dir,
        namespaces,
        missing,
        dhcp,
    })
}

/// The interfaces of `ip -j -d addr show`; `lo` only where it has more than 127.0.0.1
/// (tn-inet's servers).
fn parse_interfaces(json: &Value) -> Vec<InterfaceStatus> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    json.as_array()
        .into_iter()
        .flatten()
        .map(|link| InterfaceStatus {
            name: text(link, "ifname").unwrap_or_default(),
            kind: link
                .get("linkinfo")
                .and_then(|info| text(info, "info_kind")),
            altnames: link
                .get("altnames")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            state: text(link, "operstate").unwrap_or_else(|| "UNKNOWN".into()),
            mac: text(link, "address"),
            master: text(link, "master"),
            addresses: link
                .get("addr_info")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|a| a.get("family").and_then(Value::as_str) == Some("inet"))
                .filter_map(|a| {
                    let local = a.get("local")?.as_str()?;
                    let len = a.get("prefixlen")?.as_u64()?;
                    Some(format!("{local}/{len}"))
                })
                .collect(),
            rx_queues: link.get("num_rx_queues").and_then(Value::as_u64),
            tx_queues: link.get("num_tx_queues").and_then(Value::as_u64),
        })
        .filter(|i| i.name != "lo" || i.addresses.iter().any(|a| !a.starts_with("127.")))
        .collect()
}

impl LabStatus {
    /// The human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string())
        };
        let _ = writeln!(out, "lab: {} (dir {})", self.state, self.dir.display());
        if let (Some(w), Some(s)) = (self.workers, self.subscribers) {
            let _ = writeln!(out, "workers: {w}, subscribers: {s}");
        }
        let _ = writeln!(out, "config: {}", path(&self.config));
        for ns in &self.namespaces {
            let mut notes = Vec::new();
            if !ns.present {
                notes.push("MISSING");
            }
            if !ns.expected {
                notes.push("not in lab.json");
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" [{}]", notes.join(", "))
            };
            let _ = writeln!(out, "{} ({}){notes}", ns.name, ns.role);
            for i in &ns.interfaces {
                let mut name = i.name.clone();
                if !i.altnames.is_empty() {
                    name = format!("{name} ({})", i.altnames.join(", "));
                }
                let addresses = if i.addresses.is_empty() {
                    "-".to_owned()
                } else {
                    i.addresses.join(" ")
                };
                let mut extra = String::new();
                if let (Some(rx), Some(tx)) = (i.rx_queues, i.tx_queues)
                    && (rx > 1 || tx > 1)
                {
                    let _ = write!(extra, " queues rx {rx} tx {tx}");
                }
                if let Some(master) = &i.master {
                    let _ = write!(extra, " port of {master}");
                }
                let _ = writeln!(
                    out,
                    "  {name:<22} {:<7} {:<6} {addresses}{extra}",
                    i.kind.as_deref().unwrap_or("-"),
                    i.state
                );
            }
        }
        if let Some(dhcp) = &self.dhcp {
            render_dhcp(&mut out, dhcp);
        }
        if !self.missing.is_empty() {
            let _ = writeln!(out, "missing: {}", self.missing.join(", "));
        }
        if self.state == "partial" {
            let _ = writeln!(out, "clear it with: tracenat lab down");
        }
        out
    }
}

/// The DHCP lines of the report: the server, then one line per subscriber.
fn render_dhcp(out: &mut String, dhcp: &DhcpStatus) {
    use std::fmt::Write as _;
    let server = match dhcp.server_pid {
        Some(pid) => format!("running (pid {pid})"),
        None => "NOT RUNNING".to_owned(),
    };
    let _ = writeln!(out, "dhcp: kea-dhcp4 {server}");
    let _ = writeln!(out, "  leases: {}", dhcp.lease_file.display());
    for client in &dhcp.subscribers {
        let address = client
            .address
            .map_or_else(|| "no address".to_owned(), |a| a.to_string());
        let running = if client.client_running {
            "dhclient running"
        } else {
            "dhclient NOT RUNNING"
        };
        let _ = writeln!(
            out,
            "  {:<10} {:<8} {address:<15} {running}",
            client.namespace, client.customer
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_are_read_from_ip_json() {
        let json: Value = serde_json::from_str(
            r#"[{"ifname":"lo","operstate":"UNKNOWN"},
                {"ifname":"eth0","operstate":"UP","address":"02:74:6e:01:01:01",
                 "altnames":["tn-s1"],"linkinfo":{"info_kind":"veth"},
                 "num_tx_queues":1,"num_rx_queues":1,
                 "addr_info":[{"family":"inet","local":"100.64.1.1","prefixlen":24},
                              {"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#,
        )
        .unwrap();
        let interfaces = parse_interfaces(&json);
        assert_eq!(interfaces.len(), 1);
        let eth0 = &interfaces[0];
        assert_eq!(eth0.name, "eth0");
        assert_eq!(eth0.altnames, ["tn-s1"]);
        assert_eq!(eth0.kind.as_deref(), Some("veth"));
        assert_eq!(eth0.addresses, ["100.64.1.1/24"]);
        assert_eq!(eth0.rx_queues, Some(1));
    }
}
