//! The lab as data: namespaces, devices, veth pairs, addresses, routes and sysctls.
//!
//! [`Topology::new`] is the one place that knows the lab's names and addresses. `up`
//! applies it, `status` compares the machine against it, `down` removes what it names,
//! and it is stored as `<dir>/lab.json` so that the later commands see what `up` built.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LabError;

/// Every namespace and interface the lab creates starts with this.
pub const PREFIX: &str = "tn-";
/// The NAT's namespace: `tn-in` and `tn-out`, where `tracenat run` runs.
pub const NAT_NS: &str = "tn-nat";
/// The subscribers' access router: a bridge towards the subscribers, `tn-in-peer` towards the NAT.
pub const ACCESS_NS: &str = "tn-access";
/// The "internet": the upstream router and the servers.
pub const INET_NS: &str = "tn-inet";

pub const INSIDE_IF: &str = "tn-in";
pub const INSIDE_PEER_IF: &str = "tn-in-peer";
pub const OUTSIDE_IF: &str = "tn-out";
pub const OUTSIDE_PEER_IF: &str = "tn-out-peer";
pub const BRIDGE_IF: &str = "tn-br";

pub const NAT_INSIDE_ADDRESS: &str = "100.64.0.1";
pub const ACCESS_ADDRESS: &str = "100.64.0.2";
pub const SUBSCRIBER_GATEWAY: &str = "100.64.1.254";
pub const NAT_OUTSIDE_ADDRESS: &str = "192.0.2.1";
pub const UPSTREAM_ADDRESS: &str = "192.0.2.254";
pub const PUBLIC_POOL: &str = "203.0.113.0/24";
pub const SUBSCRIBER_PREFIX: &str = "100.64.0.0/10";
pub const HTTP_SERVER: &str = "198.51.100.10";
pub const UDP_ECHO_SERVER: &str = "198.51.100.20";
pub const METRICS: &str = "127.0.0.1:9917";

/// Most subscriber hosts a lab may have (their addresses are 100.64.1.1 to .64).
pub const MAX_SUBSCRIBERS: u16 = 64;
/// Most workers (and veth queues); the same bound as `workers.count`.
pub const MAX_WORKERS: u16 = 256;

/// Version of the `lab.json` layout.
pub const DESCRIPTION_VERSION: u32 = 1;

/// What `tracenat lab up` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOptions {
    pub workers: u16,
    pub subscribers: u16,
    pub dir: PathBuf,
    /// Tear down an existing lab (or its leftovers) first.
    pub force: bool,
}

/// The subscriber host `i`'s namespace (1-based).
pub fn subscriber_ns(i: u16) -> String {
    format!("tn-sub-{i}")
}

/// What a namespace is for, from its name.
pub fn role_of(namespace: &str) -> &'static str {
    match namespace {
        NAT_NS => "nat",
        ACCESS_NS => "access",
        INET_NS => "inet",
        name if name.strip_prefix("tn-sub-").is_some_and(is_number) => "subscriber",
        _ => "unknown",
    }
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a namespace name is one the lab creates (`tn-nat`, `tn-access`, `tn-inet`,
/// `tn-sub-<i>`). `down` and the "already up" check go by these names, not by the bare
/// `tn-` prefix, so other `tn-…` namespaces on the machine (another tool's test rigs)
/// are left alone.
pub fn is_lab_namespace(name: &str) -> bool {
    role_of(name) != "unknown"
}

/// Whether an interface name is one the lab creates: `tn-in`, `tn-in-peer`, `tn-out`,
/// `tn-out-peer`, `tn-br`, `tn-s<i>`, `tn-s<i>-peer`. Only `down` uses it, for
/// leftovers in the root namespace (the lab itself creates nothing there).
pub fn is_lab_interface(name: &str) -> bool {
    const FIXED: [&str; 5] = [
        INSIDE_IF,
        INSIDE_PEER_IF,
        OUTSIDE_IF,
        OUTSIDE_PEER_IF,
        BRIDGE_IF,
    ];
    if FIXED.contains(&name) {
        return true;
    }
    name.strip_prefix("tn-s")
        .map(|rest| rest.strip_suffix("-peer").unwrap_or(rest))
        .is_some_and(is_number)
}

/// The namespace `lab exec` means by `sub:N`, `access`, `nat`, `inet` (or a full lab namespace name).
pub fn namespace_for_target(target: &str) -> Result<String, LabError> {
    let bad = || {
        LabError::Usage(format!(
            "{target:?} is not a lab namespace: use sub:N, access, nat or inet"
        ))
    };
    match target {
        "nat" => Ok(NAT_NS.to_owned()),
        "access" => Ok(ACCESS_NS.to_owned()),
        "inet" => Ok(INET_NS.to_owned()),
        name if is_lab_namespace(name) => Ok(name.to_owned()),
        other => {
            let number = other
                .strip_prefix("sub:")
                .or_else(|| other.strip_prefix("sub-"))
                .ok_or_else(bad)?;
            match number.parse::<u16>() {
                Ok(i) if (1..=MAX_SUBSCRIBERS).contains(&i) => Ok(subscriber_ns(i)),
                _ => Err(bad()),
            }
        }
    }
}

/// A namespace of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    /// `nat`, `access`, `inet` or `subscriber`.
    pub role: String,
}

/// A device that is not a veth (the bridge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub namespace: String,
    pub name: String,
    /// `bridge` (the `ip link add … type` argument).
    pub kind: String,
    pub mac: Option<String>,
}

/// One end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VethEnd {
    pub namespace: String,
    pub name: String,
    /// A second name (`ip link property add … altname`), so subscriber `eth0`s can be
    /// found as `tn-s<i>`.
    pub altname: Option<String>,
    pub mac: String,
    /// The bridge this end is a port of.
    pub master: Option<String>,
    /// Turn tx checksum offload off (`ethtool -K … tx off`): frames this end sends carry
    /// full checksums. Needed wherever frames go towards AF_XDP, which loses the kernel's
    /// "checksum partial" state.
    pub tx_checksum_off: bool,
}

/// A veth pair; both ends get `queues` rx and tx queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veth {
    pub queues: u16,
    pub a: VethEnd,
    pub b: VethEnd,
}

/// An address on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub namespace: String,
    pub device: String,
    /// `100.64.0.1/24`.
    pub cidr: String,
}

/// A route: `dest` (a prefix or `default`) via a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub namespace: String,
    pub dest: String,
    pub via: String,
}

/// A sysctl set in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    pub namespace: String,
    pub key: String,
    pub value: String,
    /// Skipped with a warning where the key does not exist (IPv6 disabled at boot).
    pub optional: bool,
}

/// A reachability check run at the end of `up` (it also fills the neighbour tables, so
/// the NAT finds its gateways' MAC addresses there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub namespace: String,
    pub target: String,
}

/// The whole lab. Stored as `<dir>/lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub version: u32,
    pub workers: u16,
    pub subscribers: u16,
    /// The lab directory (absolute).
    pub dir: PathBuf,
    /// `<dir>/tracenat.toml`.
    pub config: PathBuf,
    /// `<dir>/log`, the mapping log.
    pub log_dir: PathBuf,
    pub namespaces: Vec<Namespace>,
    pub devices: Vec<Device>,
    pub veths: Vec<Veth>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub sysctls: Vec<Sysctl>,
    pub probes: Vec<Probe>,
    /// Subscribers get their addresses from the lab's DHCP server (`lab up --dhcp`,
    /// [`super::dhcp`]) instead of static ones: no subscriber address or route here.
    /// Absent in descriptions written before the option existed: static.
    #[serde(default)]
    pub dhcp: bool,
}

/// A locally administered MAC address: 02:74:6e ("tn") then three bytes.
fn mac(a: u8, b: u8, c: u8) -> String {
    format!("02:74:6e:{a:02x}:{b:02x}:{c:02x}")
}

impl Topology {
    /// The lab for `workers` queues on the NAT's links and `subscribers` hosts with static
    /// addresses, kept in `dir`.
    pub fn new(workers: u16, subscribers: u16, dir: &Path) -> Result<Topology, LabError> {
        Topology::build(workers, subscribers, dir, false)
    }

    /// [`Topology::new`], or with `dhcp` the same lab whose subscribers get their
    /// addresses and default routes from the lab's DHCP server.
    pub fn build(
        workers: u16,
        subscribers: u16,
        dir: &Path,
        dhcp: bool,
    ) -> Result<Topology, LabError> {
        if !(1..=MAX_WORKERS).contains(&workers) {
            return Err(LabError::Usage(format!(
                "--workers {workers}: expected 1 to {MAX_WORKERS}"
            )));
        }
        if !(1..=MAX_SUBSCRIBERS).contains(&subscribers) {
            return Err(LabError::Usage(format!(
                "--subscribers {subscribers}: expected 1 to {MAX_SUBSCRIBERS}"
            )));
        }
        let dir = std::path::absolute(dir).map_err(|e| LabError::io(dir, e))?;
        let mut lab = Topology {
            version: DESCRIPTION_VERSION,
            workers,
            subscribers,
            config: dir.join("tracenat.toml"),
            log_dir: dir.join("log"),
            dir,
            namespaces: Vec::new(),
            devices: Vec::new(),
            veths: Vec::new(),
            addresses: Vec::new(),
            routes: Vec::new(),
            sysctls: Vec::new(),
            probes: Vec::new(),
            dhcp,
        };
        for name in [NAT_NS, ACCESS_NS, INET_NS] {
            lab.namespace(name);
        }
        for i in 1..=subscribers {
            lab.namespace(&subscriber_ns(i));
        }
        // No IPv6: the lab is IPv4 only, and router solicitations and MLD reports would
        // be noise in the NAT's captures and counters.
        for ns in lab.namespaces.clone() {
            for scope in ["all", "default"] {
                lab.sysctls.push(Sysctl {
                    namespace: ns.name.clone(),
                    key: format!("net.ipv6.conf.{scope}.disable_ipv6"),
                    value: "1".to_owned(),
                    optional: true,
                });
            }
        }

        // The NAT: two multi-queue links. tn-in and tn-out keep their offloads: what they
        // send comes from the NAT's kernel (ARP, ICMP to its own addresses) or from AF_XDP,
        // whose frames already carry full checksums.
        lab.veth(
            workers,
            end(NAT_NS, INSIDE_IF, mac(0, 0, 1), false),
            end(ACCESS_NS, INSIDE_PEER_IF, mac(0, 0, 2), true),
        );
        lab.veth(
            workers,
            end(NAT_NS, OUTSIDE_IF, mac(0, 1, 1), false),
            end(INET_NS, OUTSIDE_PEER_IF, mac(0, 1, 0xfe), true),
        );
        lab.address(NAT_NS, INSIDE_IF, &format!("{NAT_INSIDE_ADDRESS}/24"));
        lab.address(NAT_NS, OUTSIDE_IF, &format!("{NAT_OUTSIDE_ADDRESS}/24"));
        // The NAT's kernel answers for its own addresses (ping, ARP) but never forwards:
        // tracenat's dataplane does that.
        lab.route(NAT_NS, SUBSCRIBER_PREFIX, ACCESS_ADDRESS);
        lab.route(NAT_NS, "default", UPSTREAM_ADDRESS);
        lab.sysctl(NAT_NS, "net.ipv4.ip_forward", "0");
        for scope in ["all", "default", INSIDE_IF, OUTSIDE_IF] {
            lab.sysctl(NAT_NS, &format!("net.ipv4.conf.{scope}.rp_filter"), "0");
        }

        // The access router: a bridge for the subscribers, routing to the NAT.
        lab.devices.push(Device {
            namespace: ACCESS_NS.to_owned(),
            name: BRIDGE_IF.to_owned(),
            kind: "bridge".to_owned(),
            mac: Some(mac(1, 0, 0xfe)),
        });
        lab.address(ACCESS_NS, INSIDE_PEER_IF, &format!("{ACCESS_ADDRESS}/24"));
        lab.address(ACCESS_NS, BRIDGE_IF, &format!("{SUBSCRIBER_GATEWAY}/24"));
        lab.route(ACCESS_NS, "default", NAT_INSIDE_ADDRESS);
        lab.sysctl(ACCESS_NS, "net.ipv4.ip_forward", "1");

        for i in 1..=subscribers {
            let ns = subscriber_ns(i);
            let low = i as u8; // at most 64
            let mut host = end(&ns, "eth0", mac(1, 1, low), true);
            host.altname = Some(format!("tn-s{i}"));
            let mut port = end(ACCESS_NS, &format!("tn-s{i}-peer"), mac(1, 2, low), true);
            port.master = Some(BRIDGE_IF.to_owned());
            lab.veth(1, host, port);
            // With DHCP the subscriber's client sets both, from its lease.
            if !dhcp {
                lab.address(&ns, "eth0", &format!("100.64.1.{i}/24"));
                lab.route(&ns, "default", SUBSCRIBER_GATEWAY);
            }
        }

        // The internet: upstream router, and the servers' addresses on its loopback (the
        // dummy driver is not in every kernel).
        lab.address(INET_NS, OUTSIDE_PEER_IF, &format!("{UPSTREAM_ADDRESS}/24"));
        lab.address(INET_NS, "lo", &format!("{HTTP_SERVER}/32"));
        lab.address(INET_NS, "lo", &format!("{UDP_ECHO_SERVER}/32"));
        lab.route(INET_NS, PUBLIC_POOL, NAT_OUTSIDE_ADDRESS);

        for (ns, target) in [
            (NAT_NS, ACCESS_ADDRESS),
            (NAT_NS, UPSTREAM_ADDRESS),
            (ACCESS_NS, NAT_INSIDE_ADDRESS),
            (INET_NS, NAT_OUTSIDE_ADDRESS),
        ] {
            lab.probes.push(Probe {
                namespace: ns.to_owned(),
                target: target.to_owned(),
            });
        }
        lab.probes.push(Probe {
            namespace: subscriber_ns(1),
            target: SUBSCRIBER_GATEWAY.to_owned(),
        });
        Ok(lab)
    }

    /// `<dir>/lab.json`.
    pub fn description_path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    /// Reads `<dir>/lab.json`; `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Topology>, LabError> {
        let path = Topology::description_path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(path, e)),
        };
        let lab: Topology = serde_json::from_str(&text).map_err(|e| LabError::BadDescription {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if lab.version != DESCRIPTION_VERSION {
            return Err(LabError::BadDescription {
                path,
                message: format!(
                    "version {} (this tracenat reads {DESCRIPTION_VERSION})",
                    lab.version
                ),
            });
        }
        Ok(Some(lab))
    }

    /// Writes `<dir>/lab.json` (through a temporary file, so it is whole or absent).
    pub fn save(&self) -> Result<(), LabError> {
        let path = Topology::description_path(&self.dir);
        let tmp = self.dir.join(".lab.json.tmp");
        let mut text = serde_json::to_string_pretty(self).expect("the topology serialises");
        text.push('\n');
        std::fs::write(&tmp, text).map_err(|e| LabError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LabError::io(&path, e))
    }

    /// Every interface of the lab as (namespace, name), in creation order.
    pub fn interfaces(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .devices
            .iter()
            .map(|d| (d.namespace.clone(), d.name.clone()))
            .collect();
        for veth in &self.veths {
            for end in [&veth.a, &veth.b] {
                all.push((end.namespace.clone(), end.name.clone()));
            }
        }
        all
    }

    fn namespace(&mut self, name: &str) {
        self.namespaces.push(Namespace {
            name: name.to_owned(),
            role: role_of(name).to_owned(),
        });
    }

    fn veth(&mut self, queues: u16, a: VethEnd, b: VethEnd) {
        self.veths.push(Veth { queues, a, b });
    }

    fn address(&mut self, namespace: &str, device: &str, cidr: &str) {
        self.addresses.push(Address {
            namespace: namespace.to_owned(),
            device: device.to_owned(),
            cidr: cidr.to_owned(),
        });
    }

    fn route(&mut self, namespace: &str, dest: &str, via: &str) {
        self.routes.push(Route {
            namespace: namespace.to_owned(),
            dest: dest.to_owned(),
            via: via.to_owned(),
        });
    }

    fn sysctl(&mut self, namespace: &str, key: &str, value: &str) {
        self.sysctls.push(Sysctl {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            optional: false,
        });
    }
}

fn end(namespace: &str, name: &str, mac: String, tx_checksum_off: bool) -> VethEnd {
    VethEnd {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        altname: None,
        mac,
        master: None,
        tx_checksum_off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_carry_the_prefix() {
        let lab = Topology::new(4, MAX_SUBSCRIBERS, Path::new("/tmp/x")).unwrap();
        assert_eq!(lab.namespaces.len(), 3 + 64);
        for ns in &lab.namespaces {
            assert!(ns.name.starts_with(PREFIX), "{}", ns.name);
            assert_ne!(ns.role, "unknown");
        }
        for (_, name) in lab.interfaces() {
            // IFNAMSIZ is 16 with the terminating NUL.
            assert!(name.len() <= 15, "{name}");
            assert!(name.starts_with(PREFIX) || name == "eth0", "{name}");
        }
        let nat_links: Vec<_> = lab
            .veths
            .iter()
            .filter(|v| v.a.namespace == NAT_NS)
            .collect();
        assert_eq!(nat_links.len(), 2);
        assert!(nat_links.iter().all(|v| v.queues == 4));
    }

    #[test]
    fn bounds_are_usage_errors() {
        for (workers, subscribers) in [(0, 8), (1, 0), (1, 65), (257, 1)] {
            let error = Topology::new(workers, subscribers, Path::new("/tmp/x")).unwrap_err();
            assert!(matches!(error, LabError::Usage(_)), "{error}");
        }
    }

    #[test]
    fn exec_targets() {
        assert_eq!(namespace_for_target("nat").unwrap(), "tn-nat");
        assert_eq!(namespace_for_target("sub:3").unwrap(), "tn-sub-3");
        assert_eq!(namespace_for_target("tn-inet").unwrap(), "tn-inet");
        assert!(namespace_for_target("sub:0").is_err());
        assert!(namespace_for_target("router").is_err());
        assert_eq!(role_of("tn-sub-12"), "subscriber");
        assert_eq!(role_of("tn-sub-x"), "unknown");
        assert!(namespace_for_target("tn-qa-nat").is_err());
    }

    #[test]
    fn only_the_labs_own_names_are_claimed() {
        for name in ["tn-nat", "tn-access", "tn-inet", "tn-sub-1", "tn-sub-64"] {
            assert!(is_lab_namespace(name), "{name}");
        }
        for name in ["tn-qa-nat", "tn-sub-", "tn-sub-1a", "tn-natx", "nat"] {
            assert!(!is_lab_namespace(name), "{name}");
        }
        let lab = Topology::new(1, 64, Path::new("/tmp/x")).unwrap();
        for (_, name) in lab.interfaces() {
            assert!(is_lab_interface(&name) || name == "eth0", "{name}");
        }
        for name in [
            "tnqa-in",
            "tn-qa-in",
            "tn-s",
            "tn-s1-peerx",
            "tn-in2",
            "eth0",
        ] {
            assert!(!is_lab_interface(name), "{name}");
        }
    }

    #[test]
    fn dhcp_subscribers_have_no_static_address() {
        let lab = Topology::build(1, 3, Path::new("/tmp/x"), true).unwrap();
        assert!(lab.dhcp);
        assert!(
            lab.addresses
                .iter()
                .all(|a| !a.namespace.starts_with("tn-sub-"))
        );
        assert!(
            lab.routes
                .iter()
                .all(|r| !r.namespace.starts_with("tn-sub-"))
        );
        // The gateway probe from subscriber 1 stays: it runs once the leases are there.
        assert!(lab.probes.iter().any(|p| p.namespace == "tn-sub-1"));
        // Descriptions from before the option read as static labs.
        let mut old =
            serde_json::to_value(Topology::new(1, 3, Path::new("/tmp/x")).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("dhcp");
        assert!(!serde_json::from_value::<Topology>(old).unwrap().dhcp);
    }

    #[test]
    fn description_round_trips() {
        let lab = Topology::new(2, 3, Path::new("/tmp/x")).unwrap();
        let text = serde_json::to_string(&lab).unwrap();
        assert_eq!(serde_json::from_str::<Topology>(&text).unwrap(), lab);
    }
}
