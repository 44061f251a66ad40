//! Building the lab from its description, and taking it down.
//!
//! [`plan`] turns a [`Topology`] into the list of commands that build it, in order;
//! [`up`] runs them (rolling back on the first failure), writes `tracenat.toml` and
//! `lab.json`. [`down`] needs no description: it removes every namespace with a lab name
//! (`tn-nat`, `tn-access`, `tn-inet`, `tn-sub-<i>`), ending the processes still inside
//! them, and every lab-named interface left in the root namespace. Other `tn-…` names
//! on the machine are not the lab's and are left alone.

use std::path::Path;
use std::time::{Duration, Instant};

use super::LabError;
use super::dhcp;
use super::nat_config;
use super::sys::{Tool, Tools};
use super::topology::{Topology, UpOptions, is_lab_interface};

/// One command of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `ip ARGS…` when `None`; otherwise the tool run inside the namespace.
    pub netns: Option<(String, Tool)>,
    pub args: Vec<String>,
    /// A failure is reported as a warning and the build goes on.
    pub optional: bool,
    /// Tried this many times, 200 ms apart (reachability probes).
    pub attempts: u32,
}

impl Step {
    fn ip(args: &[&str]) -> Step {
        Step {
            netns: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            optional: false,
            attempts: 1,
        }
    }

    fn in_netns(namespace: &str, tool: Tool, args: &[&str]) -> Step {
        Step {
            netns: Some((namespace.to_owned(), tool)),
            ..Step::ip(args)
        }
    }

    fn optional(mut self) -> Step {
        self.optional = true;
        self
    }

    /// The command as it would be typed.
    pub fn describe(&self) -> String {
        match &self.netns {
            None => format!("ip {}", self.args.join(" ")),
            Some((ns, tool)) => {
                format!("ip netns exec {ns} {} {}", tool.name(), self.args.join(" "))
            }
        }
    }

    fn run(&self, tools: &Tools) -> Result<(), LabError> {
        let mut attempt = 1;
        loop {
            let result = match &self.netns {
                None => tools.ip(&self.args),
                Some((ns, tool)) => {
                    let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
                    tools.in_netns(ns, *tool, &args)
                }
            };
            match result {
                Ok(_) => return Ok(()),
                Err(error) if attempt >= self.attempts => return Err(error),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

/// The commands that build `lab`, in order: namespaces, devices, veth pairs and their
/// settings, sysctls (before any link is up, so no IPv6 chatter starts), links up,
/// addresses, routes, then reachability probes.
pub fn plan(lab: &Topology) -> Vec<Step> {
    let mut steps = build_plan(lab);
    steps.extend(probe_plan(lab));
    steps
}

/// [`plan`] but the probes.
fn build_plan(lab: &Topology) -> Vec<Step> {
    let mut steps = Vec::new();
    for ns in &lab.namespaces {
        steps.push(Step::ip(&["netns", "add", &ns.name]));
        steps.push(Step::ip(&[
            "-n", &ns.name, "link", "set", "dev", "lo", "up",
        ]));
    }
    for device in &lab.devices {
        let mut args = vec!["-n", &device.namespace, "link", "add", &device.name];
        if let Some(mac) = &device.mac {
            args.extend(["address", mac]);
        }
        args.extend(["type", &device.kind]);
        steps.push(Step::ip(&args));
    }
    for veth in &lab.veths {
        let queues = veth.queues.to_string();
        let (a, b) = (&veth.a, &veth.b);
        let q = queues.as_str();
        steps.push(Step::ip(&[
            "-n",
            &a.namespace,
            "link",
            "add",
            &a.name,
            "address",
            &a.mac,
            "numtxqueues",
            q,
            "numrxqueues",
            q,
            "type",
            "veth",
            "peer",
            "name",
            &b.name,
            "address",
            &b.mac,
            "numtxqueues",
            q,
            "numrxqueues",
            q,
            "netns",
            &b.namespace,
        ]));
        for end in [a, b] {
            let ns = end.namespace.as_str();
            if let Some(alt) = &end.altname {
                // Alternative names need Linux 5.5; the lab works without them.
                steps.push(
                    Step::ip(&[
                        "-n", ns, "link", "property", "add", "dev", &end.name, "altname", alt,
                    ])
                    .optional(),
                );
            }
            if let Some(master) = &end.master {
                steps.push(Step::ip(&[
                    "-n", ns, "link", "set", "dev", &end.name, "master", master,
                ]));
            }
            if end.tx_checksum_off {
                steps.push(Step::in_netns(
                    ns,
                    Tool::Ethtool,
                    &["-K", &end.name, "tx", "off"],
                ));
            }
        }
    }
    for sysctl in &lab.sysctls {
        let setting = format!("{}={}", sysctl.key, sysctl.value);
        let step = Step::in_netns(&sysctl.namespace, Tool::Sysctl, &["-q", "-w", &setting]);
        steps.push(if sysctl.optional {
            step.optional()
        } else {
            step
        });
    }
    for (ns, name) in lab.interfaces() {
        steps.push(Step::ip(&["-n", &ns, "link", "set", "dev", &name, "up"]));
    }
    for address in &lab.addresses {
        steps.push(Step::ip(&[
            "-n",
            &address.namespace,
            "addr",
            "add",
            &address.cidr,
            "dev",
            &address.device,
        ]));
    }
    for route in &lab.routes {
        steps.push(Step::ip(&[
            "-n",
            &route.namespace,
            "route",
            "add",
            &route.dest,
            "via",
            &route.via,
        ]));
    }
    steps
}

/// The reachability probes, last in [`plan`].
fn probe_plan(lab: &Topology) -> Vec<Step> {
    let mut steps = Vec::new();
    for probe in &lab.probes {
        let mut step = Step::in_netns(
            &probe.namespace,
            Tool::Ping,
            &["-c", "1", "-W", "1", "-q", &probe.target],
        );
        step.attempts = 5;
        steps.push(step);
    }
    steps
}

/// How the subscribers get their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addressing {
    /// 100.64.1.<i>/24 and a default route, set by `up`.
    #[default]
    Static,
    /// From the lab's Kea DHCP server, by each subscriber's dhclient ([`dhcp`]).
    Dhcp,
}

/// Builds the lab `options` asks for, with static subscriber addresses: [`up_with`].
pub fn up(options: &UpOptions, note: &mut dyn FnMut(&str)) -> Result<Topology, LabError> {
    up_with(options, Addressing::Static, note)
}

/// Builds the lab `options` asks for: the namespaces and links, with `Addressing::Dhcp`
/// the DHCP server and clients (waiting for every subscriber's lease before the
/// probes), then `<dir>/tracenat.toml` and `<dir>/lab.json`. `note` receives progress
/// and warnings.
///
/// If a lab (any of its namespaces) is there already, fails with [`LabError::Exists`],
/// unless `options.force`, which takes it down first. On a failure half-way, whatever was
/// built is removed again (processes started in it included).
pub fn up_with(
    options: &UpOptions,
    addressing: Addressing,
    note: &mut dyn FnMut(&str),
) -> Result<Topology, LabError> {
    let use_dhcp = addressing == Addressing::Dhcp;
    let lab = Topology::build(options.workers, options.subscribers, &options.dir, use_dhcp)?;
    let tools = Tools::check(true)?;

    let existing = tools.lab_namespaces()?;
    if !existing.is_empty() {
        if !options.force {
            return Err(LabError::Exists {
                namespaces: existing,
            });
        }
        note(&format!(
            "--force: taking down the lab that is up ({})",
            existing.join(", ")
        ));
        down_with(&tools, &options.dir, note)?;
    }

    // The config first: a bug there should stop us before anything is built.
    let config_text = nat_config::render(&lab);
    crate::config::Config::from_toml_str(&config_text)?;

    std::fs::create_dir_all(&lab.log_dir).map_err(|e| LabError::io(&lab.log_dir, e))?;
    run_steps(&tools, &lab, &build_plan(&lab), note)?;
    // The subscribers need their leases before the probe from tn-sub-1 can work.
    if use_dhcp && let Err(error) = dhcp::start(&tools, &lab, note) {
        note("failed: starting DHCP; removing what was built");
        roll_back(&tools, &lab, note);
        return Err(error);
    }
    run_steps(&tools, &lab, &probe_plan(&lab), note)?;

    std::fs::write(&lab.config, &config_text).map_err(|e| LabError::io(&lab.config, e))?;
    lab.save()?;
    Ok(lab)
}

/// Runs `steps`; on the first failure that is not optional, removes the lab again.
fn run_steps(
    tools: &Tools,
    lab: &Topology,
    steps: &[Step],
    note: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    for step in steps {
        if let Err(error) = step.run(tools) {
            if step.optional {
                note(&format!("warning: {error} (skipped)"));
                continue;
            }
            note(&format!(
                "failed: {}; removing what was built",
                step.describe()
            ));
            roll_back(tools, lab, note);
            return Err(error);
        }
    }
    Ok(())
}

/// Removes a half-built lab. The failure that led here is the interesting error; a
/// failed rollback is only noted.
fn roll_back(tools: &Tools, lab: &Topology, note: &mut dyn FnMut(&str)) {
    if let Err(cleanup) = down_with(tools, &lab.dir, &mut |_| {}) {
        note(&format!("warning: rollback failed: {cleanup}"));
    }
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    pub namespaces: Vec<String>,
    /// Lab interfaces that were left in the root namespace.
    pub root_interfaces: Vec<String>,
    /// Processes that were still running inside the namespaces, ended first.
    pub ended_processes: Vec<i32>,
    /// Whether `<dir>/lab.json` was there and was removed.
    pub description_removed: bool,
}

impl DownReport {
    pub fn removed_anything(&self) -> bool {
        !self.namespaces.is_empty() || !self.root_interfaces.is_empty() || self.description_removed
    }
}

/// Removes every lab namespace and lab interface left in the root namespace, and `<dir>/lab.json`
/// (the mapping log and `tracenat.toml` stay). Nothing there is not an error.
pub fn down(dir: &Path, note: &mut dyn FnMut(&str)) -> Result<DownReport, LabError> {
    let tools = Tools::check(false)?;
    down_with(&tools, dir, note)
}

fn down_with(
    tools: &Tools,
    dir: &Path,
    note: &mut dyn FnMut(&str),
) -> Result<DownReport, LabError> {
    let mut report = DownReport::default();
    let namespaces = tools.lab_namespaces()?;

    for ns in &namespaces {
        let pids = tools.namespace_pids(ns).unwrap_or_default();
        if !pids.is_empty() {
            note(&format!(
                "ending processes still in {ns}: {}",
                pids.iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            end_processes(&pids);
            report.ended_processes.extend(pids);
        }
    }
    // A DHCP server or client that outlived its namespace (deleted by hand) is found by
    // its pid file in the lab directory.
    let leftovers = dhcp::leftover_pids(dir);
    if !leftovers.is_empty() {
        note(&format!(
            "ending DHCP processes left outside the lab's namespaces: {leftovers:?}"
        ));
        end_processes(&leftovers);
        report.ended_processes.extend(leftovers);
    }
    let mut first_error = None;
    for ns in &namespaces {
        match tools.ip(&["netns", "del", ns]) {
            Ok(_) => report.namespaces.push(ns.clone()),
            Err(error) => {
                note(&format!("warning: {error}"));
                first_error.get_or_insert(error);
            }
        }
    }

    // Interfaces the lab never leaves in the root namespace, unless something crashed
    // between creating and moving one (or an older lab did so).
    let links = tools.ip(&["-o", "link", "show"])?;
    for name in root_lab_interfaces(&links) {
        // Deleting one end of a veth deletes its peer: a later name may be gone already.
        match tools.ip(&["link", "del", "dev", &name]) {
            Ok(_) => report.root_interfaces.push(name),
            Err(error) if still_present(tools, &name) => {
                note(&format!("warning: {error}"));
                first_error.get_or_insert(error);
            }
            Err(_) => {}
        }
    }

    let description = Topology::description_path(dir);
    match std::fs::remove_file(&description) {
        Ok(()) => report.description_removed = true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            first_error.get_or_insert(LabError::io(&description, e));
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

fn still_present(tools: &Tools, name: &str) -> bool {
    tools.ip(&["link", "show", "dev", name]).is_ok()
}

/// Names of the lab's interfaces in `ip -o link show` output ("7: tn-x@tn-y: <…> …").
fn root_lab_interfaces(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .filter(|name| is_lab_interface(name))
        .collect()
}

/// SIGTERM, up to two seconds for them to go, then SIGKILL.
pub(crate) fn end_processes(pids: &[i32]) {
    let signal = |pid: i32, sig| {
        // SAFETY: kill has no memory-safety preconditions; a stale pid only yields ESRCH.
        unsafe { libc::kill(pid, sig) }
    };
    for &pid in pids {
        signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids.iter().filter(|&&pid| alive(pid)) {
        signal(pid, libc::SIGKILL);
    }
}

/// Running (a zombie, waiting for its parent to reap it, counts as gone).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S …": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_builds_in_order() {
        let lab = Topology::new(2, 3, Path::new("/tmp/lab")).unwrap();
        let steps: Vec<String> = plan(&lab).iter().map(Step::describe).collect();
        let at = |needle: &str| {
            steps
                .iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("no step with {needle:?} in {steps:#?}"))
        };
        assert!(steps.contains(&"ip netns add tn-nat".to_owned()));
        assert!(steps.contains(
            &"ip -n tn-nat link add tn-in address 02:74:6e:00:00:01 numtxqueues 2 numrxqueues 2 \
              type veth peer name tn-in-peer address 02:74:6e:00:00:02 numtxqueues 2 \
              numrxqueues 2 netns tn-access"
                .to_owned()
        ));
        assert!(steps.contains(&"ip netns exec tn-access ethtool -K tn-in-peer tx off".to_owned()));
        assert!(steps.contains(&"ip netns exec tn-sub-3 ethtool -K eth0 tx off".to_owned()));
        assert!(
            steps.contains(&"ip netns exec tn-nat sysctl -q -w net.ipv4.ip_forward=0".to_owned())
        );
        assert!(at("netns add tn-sub-3") < at("link add tn-br"));
        assert!(at("peer name tn-s3-peer") < at("disable_ipv6"));
        assert!(at("rp_filter") < at("link set dev tn-in up"));
        assert!(at("link set dev tn-in up") < at("addr add 100.64.0.1/24"));
        assert!(at("addr add 100.64.0.1/24") < at("route add"));
        assert!(at("route add") < at("ping"));
        // The NAT's links are the only multi-queue ones.
        assert_eq!(
            steps.iter().filter(|s| s.contains("numtxqueues 2")).count(),
            2
        );
    }

    #[test]
    fn root_interfaces_are_found_by_prefix() {
        let listing = "1: lo: <LOOPBACK,UP> mtu 65536\n\
                       7: tn-in@tn-in-peer: <BROADCAST> mtu 1500\n\
                       8: eth0: <BROADCAST> mtu 1500\n\
                       9: tn-br: <BROADCAST> mtu 1500\n\
                       10: tnqa-in@if3: <BROADCAST> mtu 1500\n";
        assert_eq!(root_lab_interfaces(listing), ["tn-in", "tn-br"]);
    }
}
