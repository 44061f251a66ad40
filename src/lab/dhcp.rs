//! `tracenat lab up --dhcp`: the subscribers get their addresses from a real DHCP server.
//!
//! A Kea DHCPv4 server (`kea-dhcp4`, Debian's kea-dhcp4-server) runs in `tn-access` on the
//! bridge `tn-br` (raw sockets: they work inside a namespace, and Kea needs them to answer
//! clients that have no address yet); every subscriber runs ISC `dhclient` on its `eth0`,
//! sending its customer name ([`customer_name`]: alice, bob, carol, …, then `cust-<i>`)
//! as host name. Nothing of either touches the host: every file is under the lab
//! directory, and the client's script is the lab's own (it sets the address and default
//! route, never `/etc/resolv.conf`).
//!
//! ```text
//! <dir>/kea/kea-dhcp4.conf       the server's configuration (written by `up`)
//! <dir>/kea/kea-leases4.csv      the lease file: Kea's memfile, the file Kea writes
//! <dir>/kea/kea-dhcp4.log        Kea's log (one INFO line per lease event)
//! <dir>/kea/kea4-ctrl.sock       Kea's control socket; pid and lock files are here too
//! <dir>/dhcp/sub-<i>.conf        subscriber i's dhclient.conf (host name, address hint)
//! <dir>/dhcp/sub-<i>.leases      … its lease file, .pid its pid file, .log its stderr
//! <dir>/dhcp/dhclient-script     the script dhclient runs (`-sf`)
//! ```
//!
//! Kea's choices, and why:
//!
//! * Subnet 100.64.1.0/24, option routers 100.64.1.254 (`tn-br`), and a pool of exactly
//!   one address per subscriber, 100.64.1.1 to 100.64.1.N. Each subscriber asks for
//!   100.64.1.<i> at `up` (a requested-address hint Kea honours when the address is free),
//!   so the addresses are the static lab's, whatever order the clients start in.
//! * Valid lifetime 600 s, renew at 300 s, rebind at 525 s: short enough that a demo sees
//!   renewals (each one a new line in the lease file), long enough that nothing expires
//!   while a demo runs.
//! * Lease database: memfile, `persist: true`, `lfc-interval: 0`. Kea appends one CSV
//!   line per event (allocation, renewal, release, reclamation) to
//!   `<dir>/kea/kea-leases4.csv`; lease file cleanup (LFC) would rename that file and
//!   compact the history away, so it is off: for the lab's lifetime the file is one
//!   append-only file that `tracenat run` can follow. It grows by about 100 bytes per
//!   event (64 subscribers renewing every 300 s: under 100 KB an hour).
//! * A DHCPRELEASE is written as the lease with `valid_lifetime` 0 (Kea's "deleted").
//!
//! Handing an address to another subscriber ([`take_over`]) is deterministic: the pool is
//! full while every subscriber holds its lease, so after subscriber j releases, its
//! address is the only free one besides the taker's own; the taker releases its own and
//! asks for j's with the requested-address hint.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::LabError;
use super::sys::{self, Tool, Tools, find_tool};
use super::topology::{ACCESS_NS, BRIDGE_IF, SUBSCRIBER_GATEWAY, Topology, subscriber_ns};

/// Seconds a lease is valid for.
pub const VALID_LIFETIME: u32 = 600;
/// Seconds until a client renews (T1, half the lifetime).
pub const RENEW_TIMER: u32 = 300;
/// Seconds until a client rebinds (T2, 7/8 of the lifetime).
pub const REBIND_TIMER: u32 = 525;
/// How long `up`, [`acquire`] and [`take_over`] wait for a lease.
const LEASE_WAIT: Duration = Duration::from_secs(20);
/// How long `up` waits for Kea to open its sockets.
const SERVER_WAIT: Duration = Duration::from_secs(10);
/// The longest unix socket path (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

const CUSTOMERS: [&str; 19] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
];

/// The customer subscriber `i` (1-based) belongs to, sent as its DHCP host name:
/// alice, bob, carol, dave, erin, frank, … walter, then `cust-20`, `cust-21`, ….
pub fn customer_name(i: u16) -> String {
    match CUSTOMERS.get(usize::from(i).wrapping_sub(1)) {
        Some(name) => (*name).to_owned(),
        None => format!("cust-{i}"),
    }
}

/// `<dir>/kea/kea-leases4.csv`: the lease file Kea writes (memfile, CSV).
pub fn lease_file(dir: &Path) -> PathBuf {
    kea_dir(dir).join("kea-leases4.csv")
}

/// `<dir>/kea/kea-dhcp4.conf`.
pub fn server_config_path(dir: &Path) -> PathBuf {
    kea_dir(dir).join("kea-dhcp4.conf")
}

/// `<dir>/kea/kea-dhcp4.log`.
pub fn server_log_path(dir: &Path) -> PathBuf {
    kea_dir(dir).join("kea-dhcp4.log")
}

fn kea_dir(dir: &Path) -> PathBuf {
    dir.join("kea")
}

fn client_dir(dir: &Path) -> PathBuf {
    dir.join("dhcp")
}

/// Kea names its pid file after the configuration file (`KEA_PIDFILE_DIR` says where).
fn server_pid_file(dir: &Path) -> PathBuf {
    kea_dir(dir).join("kea-dhcp4.kea-dhcp4.pid")
}

fn control_socket(dir: &Path) -> PathBuf {
    kea_dir(dir).join("kea4-ctrl.sock")
}

fn client_script(dir: &Path) -> PathBuf {
    client_dir(dir).join("dhclient-script")
}

/// Subscriber `i`'s dhclient file with this extension (`conf`, `leases`, `pid`, `log`).
fn client_file(dir: &Path, i: u16, extension: &str) -> PathBuf {
    client_dir(dir).join(format!("sub-{i}.{extension}"))
}

/// The address subscriber `i` asks for at `up`.
fn home_address(i: u16) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 1, i as u8) // i ≤ 64
}

/// Kea's configuration for `lab` (see the module documentation for the choices).
pub fn server_config(lab: &Topology) -> String {
    let dir = &lab.dir;
    let path = |p: PathBuf| p.display().to_string();
    let last = home_address(lab.subscribers);
    let config = serde_json::json!({
        "Dhcp4": {
            "interfaces-config": {
                "interfaces": [BRIDGE_IF],
                "dhcp-socket-type": "raw"
            },
            "control-socket": {"socket-type": "unix", "socket-name": path(control_socket(dir))},
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "name": path(lease_file(dir)),
                "lfc-interval": 0
            },
            // The only server on the bridge: NAK a request for an address it did not
            // grant at once, rather than leave the client waiting for another server.
            "authoritative": true,
            "valid-lifetime": VALID_LIFETIME,
            "renew-timer": RENEW_TIMER,
            "rebind-timer": REBIND_TIMER,
            "subnet4": [{
                "id": 1,
                "subnet": "100.64.1.0/24",
                "pools": [{"pool": format!("100.64.1.1 - {last}")}],
                "option-data": [{"name": "routers", "data": SUBSCRIBER_GATEWAY}]
            }],
            "loggers": [{
                "name": "kea-dhcp4",
                "output_options": [{"output": path(server_log_path(dir))}],
                "severity": "INFO"
            }]
        }
    });
    let mut text = serde_json::to_string_pretty(&config).expect("JSON serialises");
    text.push('\n');
    text
}

/// Subscriber `i`'s `dhclient.conf`: its customer name as host name, and the address to
/// ask for, if any (honoured by Kea when it is free).
pub fn client_config(i: u16, requested: Option<Ipv4Addr>) -> String {
    let mut text = format!(
        "# tracenat lab: {} ({})\nsend host-name \"{}\";\n",
        subscriber_ns(i),
        customer_name(i),
        customer_name(i)
    );
    if let Some(address) = requested {
        text.push_str(&format!("send dhcp-requested-address {address};\n"));
    }
    text.push_str("request subnet-mask, broadcast-address, routers;\n");
    text
}

/// The script dhclient runs on every state change (`-sf`). Debian's dhclient-script
/// would also rewrite /etc/resolv.conf and run the host's hooks; this one only sets or
/// clears the address (valid as long as the lease) and the default route.
fn client_script_text(ip: &Path) -> String {
    let ip = ip.display();
    format!(
        r#"#!/bin/sh
# tracenat lab: dhclient's script (-sf). Address and default route only.
case "$reason" in
  PREINIT) {ip} link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      {ip} -4 addr flush dev "$interface"
    fi
    {ip} addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" \
      valid_lft "$new_dhcp_lease_time" preferred_lft "$new_dhcp_lease_time"
    for router in $new_routers; do
      {ip} route replace default via "$router" dev "$interface"
      break
    done ;;
  EXPIRE|FAIL|RELEASE|STOP) {ip} -4 addr flush dev "$interface" ;;
  # No answer: never fall back on an old lease the server did not grant again.
  TIMEOUT) exit 1 ;;
esac
exit 0
"#
    )
}

/// Starts the DHCP side of `lab` (its links are up): writes the files, starts Kea in
/// `tn-access` and a dhclient in every subscriber, and waits until each has its lease.
/// A leftover `<dir>/kea` and `<dir>/dhcp` from an earlier lab are replaced.
pub(crate) fn start(
    tools: &Tools,
    lab: &Topology,
    note: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let kea = find_tool(Tool::KeaDhcp4)?;
    let dhclient = find_tool(Tool::Dhclient)?;
    let socket = control_socket(&lab.dir);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(LabError::Usage(format!(
            "--dir {}: too long for Kea's control socket {} (at most {MAX_SOCKET_PATH} bytes)",
            lab.dir.display(),
            socket.display()
        )));
    }
    prepare_files(tools, lab)?;
    start_server(tools, &kea, &lab.dir)?;
    note(&format!(
        "DHCP server running in {ACCESS_NS}; leases in {}",
        lease_file(&lab.dir).display()
    ));
    for i in 1..=lab.subscribers {
        start_client(tools, &dhclient, &lab.dir, i)?;
    }
    for i in 1..=lab.subscribers {
        wait_for_lease(tools, &lab.dir, i)?;
    }
    Ok(())
}

fn prepare_files(tools: &Tools, lab: &Topology) -> Result<(), LabError> {
    for dir in [kea_dir(&lab.dir), client_dir(&lab.dir)] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(dir, e)),
        }
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
    }
    write(&server_config_path(&lab.dir), &server_config(lab))?;
    let script = client_script(&lab.dir);
    write(&script, &client_script_text(&tools.ip))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io(&script, e))?;
    for i in 1..=lab.subscribers {
        write(
            &client_file(&lab.dir, i, "conf"),
            &client_config(i, Some(home_address(i))),
        )?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(path, e))
}

/// Checks the configuration (`kea-dhcp4 -t`, in the namespace: it looks up `tn-br`), then
/// starts Kea in its own process group, and waits until it says it serves.
fn start_server(tools: &Tools, kea: &Path, dir: &Path) -> Result<(), LabError> {
    let config = server_config_path(dir);
    let mut check = kea_command(tools, kea, dir);
    check.arg("-t").arg(&config);
    sys::run(&mut check)?;

    let output = kea_dir(dir).join("kea-dhcp4.out");
    let mut server = kea_command(tools, kea, dir);
    server.arg("-c").arg(&config);
    let mut child = spawn_detached(&mut server, &output)?;
    let deadline = Instant::now() + SERVER_WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::Dhcp(format!(
                "kea-dhcp4 exited ({status}) while starting: {}",
                tail(&[output, server_log_path(dir)])
            )));
        }
        let log = std::fs::read_to_string(server_log_path(dir)).unwrap_or_default();
        if log.contains("DHCP4_STARTED") {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Dhcp(format!(
                "kea-dhcp4 did not start within {} s: {}",
                SERVER_WAIT.as_secs(),
                tail(&[output, server_log_path(dir)])
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ip netns exec tn-access kea-dhcp4` with its pid and lock files under `<dir>/kea`.
fn kea_command(tools: &Tools, kea: &Path, dir: &Path) -> Command {
    let mut command = Command::new(&tools.ip);
    command
        .args(["netns", "exec", ACCESS_NS])
        .arg(kea)
        .env("KEA_PIDFILE_DIR", kea_dir(dir))
        .env("KEA_LOCKFILE_DIR", kea_dir(dir));
    command
}

/// Starts a long-running program with its output appended to `output`, in a process
/// group of its own (a Ctrl-C meant for `tracenat lab up` does not reach it).
fn spawn_detached(command: &mut Command, output: &Path) -> Result<Child, LabError> {
    use std::os::unix::process::CommandExt as _;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(|e| LabError::io(output, e))?;
    let stderr = file.try_clone().map_err(|e| LabError::io(output, e))?;
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0);
    command.spawn().map_err(|source| LabError::Spawn {
        command: sys::describe(command),
        source,
    })
}

/// The last lines of these files, for an error message.
fn tail(paths: &[PathBuf]) -> String {
    let mut lines = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let last: Vec<&str> = text.lines().rev().take(5).collect();
        lines.extend(last.into_iter().rev().map(str::to_owned));
    }
    let where_ = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!("{} (see {where_})", lines.join(" | "))
}

/// Starts subscriber `i`'s dhclient (`-nw`: it goes to the background at once; the
/// caller waits for the lease). A dhclient already running for it is replaced.
fn start_client(tools: &Tools, dhclient: &Path, dir: &Path, i: u16) -> Result<(), LabError> {
    let log = client_file(dir, i, "log");
    let mut command = client_command(tools, dhclient, dir, i);
    command.arg("-nw").arg("eth0");
    let mut child = spawn_detached(&mut command, &log)?;
    let status = child.wait().map_err(|source| LabError::Spawn {
        command: sys::describe(&command),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(LabError::Dhcp(format!(
            "dhclient for subscriber {i} ({}) failed ({status}): {}",
            subscriber_ns(i),
            tail(&[log])
        )))
    }
}

/// `ip netns exec tn-sub-<i> dhclient -4 -v` with the subscriber's files.
fn client_command(tools: &Tools, dhclient: &Path, dir: &Path, i: u16) -> Command {
    let mut command = Command::new(&tools.ip);
    command
        .args(["netns", "exec", &subscriber_ns(i)])
        .arg(dhclient)
        .args(["-4", "-v", "-cf"])
        .arg(client_file(dir, i, "conf"))
        .arg("-sf")
        .arg(client_script(dir))
        .arg("-pf")
        .arg(client_file(dir, i, "pid"))
        .arg("-lf")
        .arg(client_file(dir, i, "leases"));
    command
}

/// Waits until subscriber `i` holds an address; an error names it and where to look.
fn wait_for_lease(tools: &Tools, dir: &Path, i: u16) -> Result<Ipv4Addr, LabError> {
    let deadline = Instant::now() + LEASE_WAIT;
    loop {
        if let Some(address) = address_in_namespace(tools, i)? {
            return Ok(address);
        }
        if Instant::now() > deadline {
            return Err(LabError::Dhcp(format!(
                "subscriber {i} ({}, {}) got no DHCP lease within {} s: {}",
                subscriber_ns(i),
                customer_name(i),
                LEASE_WAIT.as_secs(),
                tail(&[client_file(dir, i, "log"), server_log_path(dir)])
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The IPv4 address on subscriber `i`'s `eth0`, if any.
fn address_in_namespace(tools: &Tools, i: u16) -> Result<Option<Ipv4Addr>, LabError> {
    let ns = subscriber_ns(i);
    let text = tools.ip(&["-n", &ns, "-j", "-4", "addr", "show", "dev", "eth0"])?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| LabError::Command {
        command: format!("ip -n {ns} -j -4 addr show dev eth0"),
        status: "unreadable output".into(),
        stderr: e.to_string(),
    })?;
    Ok(json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|link| link.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|a| a.get("local")?.as_str()?.parse().ok())
        .next())
}

/// The lab in `dir`, which must be a `--dhcp` one with a subscriber `i`.
fn dhcp_lab(dir: &Path, i: u16) -> Result<(Tools, Topology), LabError> {
    let tools = Tools::check(false)?;
    let dir = std::path::absolute(dir).map_err(|e| LabError::io(dir, e))?;
    let lab = Topology::load(&dir)?.ok_or_else(|| {
        LabError::Dhcp(format!(
            "no lab in {} (no lab.json); start one with `tracenat lab up --dhcp`",
            dir.display()
        ))
    })?;
    if !lab.dhcp {
        return Err(LabError::Dhcp(format!(
            "the lab in {} has static addresses; start it with `tracenat lab up --dhcp`",
            dir.display()
        )));
    }
    if !(1..=lab.subscribers).contains(&i) {
        return Err(LabError::Usage(format!(
            "subscriber {i}: the lab has subscribers 1 to {}",
            lab.subscribers
        )));
    }
    Ok((tools, lab))
}

/// The address subscriber `i` of the `--dhcp` lab in `dir` holds now (read from its
/// namespace); `None` while it holds none.
pub fn subscriber_address(dir: &Path, i: u16) -> Result<Option<Ipv4Addr>, LabError> {
    let (tools, _) = dhcp_lab(dir, i)?;
    address_in_namespace(&tools, i)
}

/// Subscriber `i` gives its lease back: `dhclient -r` stops its client and sends a real
/// DHCPRELEASE, which Kea records as the lease with valid lifetime 0; the address leaves
/// `eth0`.
pub fn release(dir: &Path, i: u16) -> Result<(), LabError> {
    let (tools, lab) = dhcp_lab(dir, i)?;
    let dhclient = find_tool(Tool::Dhclient)?;
    let mut command = client_command(&tools, &dhclient, &lab.dir, i);
    command.args(["-r", "eth0"]);
    sys::run(&mut command)?;
    Ok(())
}

/// Subscriber `i` starts its DHCP client again and waits for a lease (Kea's choice of
/// address: with the pool full, the one free address); returns the address.
pub fn acquire(dir: &Path, i: u16) -> Result<Ipv4Addr, LabError> {
    let (tools, lab) = dhcp_lab(dir, i)?;
    write(&client_file(&lab.dir, i, "conf"), &client_config(i, None))?;
    start_and_wait(&tools, &lab.dir, i)
}

fn start_and_wait(tools: &Tools, dir: &Path, i: u16) -> Result<Ipv4Addr, LabError> {
    let dhclient = find_tool(Tool::Dhclient)?;
    start_client(tools, &dhclient, dir, i)?;
    wait_for_lease(tools, dir, i)
}

/// Subscriber `to` ends up with the address subscriber `from` holds: `from` releases,
/// `to` releases its own (if it holds one) and acquires again asking for `from`'s
/// address, which Kea grants because it is free. Returns the address; an error if Kea
/// granted another.
pub fn take_over(dir: &Path, from: u16, to: u16) -> Result<Ipv4Addr, LabError> {
    let (tools, lab) = dhcp_lab(dir, from)?;
    dhcp_lab(dir, to)?;
    if from == to {
        return Err(LabError::Usage(format!(
            "subscriber {from} cannot take over its own address"
        )));
    }
    let address = address_in_namespace(&tools, from)?.ok_or_else(|| {
        LabError::Dhcp(format!(
            "subscriber {from} ({}) holds no address to hand over",
            subscriber_ns(from)
        ))
    })?;
    release(dir, from)?;
    if address_in_namespace(&tools, to)?.is_some() {
        release(dir, to)?;
    }
    write(
        &client_file(&lab.dir, to, "conf"),
        &client_config(to, Some(address)),
    )?;
    let got = start_and_wait(&tools, &lab.dir, to)?;
    if got != address {
        return Err(LabError::Dhcp(format!(
            "subscriber {to} asked for {address} (released by subscriber {from}) but got {got}"
        )));
    }
    Ok(got)
}

/// The DHCP side of `lab status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DhcpStatus {
    /// Whether `kea-dhcp4` (the pid in its pid file) is running.
    pub server_running: bool,
    pub server_pid: Option<i32>,
    pub config: PathBuf,
    pub lease_file: PathBuf,
    pub subscribers: Vec<ClientStatus>,
}

/// One subscriber's DHCP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientStatus {
    pub index: u16,
    pub namespace: String,
    /// The host name it sends.
    pub customer: String,
    /// Whether its `dhclient` is running.
    pub client_running: bool,
    /// The address it holds now.
    pub address: Option<Ipv4Addr>,
}

/// What runs and who holds which address, for a `--dhcp` lab.
pub fn status(tools: &Tools, lab: &Topology) -> DhcpStatus {
    let server_pid = running_pid(&server_pid_file(&lab.dir), "kea-dhcp4");
    let subscribers = (1..=lab.subscribers)
        .map(|i| ClientStatus {
            index: i,
            namespace: subscriber_ns(i),
            customer: customer_name(i),
            client_running: running_pid(&client_file(&lab.dir, i, "pid"), "dhclient").is_some(),
            address: address_in_namespace(tools, i).ok().flatten(),
        })
        .collect();
    DhcpStatus {
        server_running: server_pid.is_some(),
        server_pid,
        config: server_config_path(&lab.dir),
        lease_file: lease_file(&lab.dir),
        subscribers,
    }
}

/// The pid in `pid_file` if that process runs and is `program` (a stale file may name a
/// pid reused by something else).
fn running_pid(pid_file: &Path, program: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == program && super::apply::alive(pid)).then_some(pid)
}

/// Kea and dhclient processes of a lab in `dir` that outlived their namespaces (found by
/// their pid files): `down` ends them with the rest.
pub(crate) fn leftover_pids(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = running_pid(&server_pid_file(dir), "kea-dhcp4")
        .into_iter()
        .collect();
    if let Ok(entries) = std::fs::read_dir(client_dir(dir)) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid") {
                pids.extend(running_pid(&path, "dhclient"));
            }
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_have_names_then_numbers() {
        assert_eq!(customer_name(1), "alice");
        assert_eq!(customer_name(2), "bob");
        assert_eq!(customer_name(19), "walter");
        assert_eq!(customer_name(20), "cust-20");
        assert_eq!(customer_name(0), "cust-0");
    }

    #[test]
    fn server_config_is_kea_json_with_the_labs_paths() {
        let lab = Topology::build(1, 3, Path::new("/tmp/lab"), true).unwrap();
        let config: serde_json::Value = serde_json::from_str(&server_config(&lab)).unwrap();
        let dhcp4 = &config["Dhcp4"];
        assert_eq!(dhcp4["interfaces-config"]["interfaces"][0], "tn-br");
        let db = &dhcp4["lease-database"];
        assert_eq!(db["name"], "/tmp/lab/kea/kea-leases4.csv");
        assert_eq!(db["persist"], true);
        assert_eq!(db["lfc-interval"], 0);
        let subnet = &dhcp4["subnet4"][0];
        assert_eq!(subnet["pools"][0]["pool"], "100.64.1.1 - 100.64.1.3");
        assert_eq!(subnet["option-data"][0]["data"], "100.64.1.254");
        assert_eq!(dhcp4["valid-lifetime"], 600);
    }

    #[test]
    fn client_config_names_the_customer() {
        let text = client_config(2, Some(Ipv4Addr::new(100, 64, 1, 2)));
        assert!(text.contains("send host-name \"bob\";"), "{text}");
        assert!(
            text.contains("send dhcp-requested-address 100.64.1.2;"),
            "{text}"
        );
        assert!(!client_config(2, None).contains("requested"));
    }
}
