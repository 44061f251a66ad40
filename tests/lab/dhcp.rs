//! `tracenat lab up --dhcp`, for real: Kea in `tn-access`, dhclient in every subscriber,
//! the lease file Kea writes, handing an address from one subscriber to another, and
//! `down` leaving no DHCP process behind (also one whose namespace was deleted by hand).
//! Part of `tests/lab.rs` (its helpers, and its turn-taking: namespaces are global).

use std::net::Ipv4Addr;
use std::path::Path;

use tracenat::lab::dhcp;
use tracenat::lab::{Addressing, LabError, UpOptions};

use super::*;

/// A lease line of Kea's memfile CSV:
/// `address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context`.
#[derive(Debug, PartialEq)]
struct LeaseLine {
    address: String,
    hwaddr: String,
    valid_lifetime: u64,
    hostname: String,
}

fn lease_lines(dir: &Path) -> Vec<LeaseLine> {
    let path = dhcp::lease_file(dir);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,\
             hostname,state,user_context"
        ),
        "{text}"
    );
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert!(fields.len() >= 10, "not a lease line: {line}");
            LeaseLine {
                address: fields[0].to_owned(),
                hwaddr: fields[1].to_owned(),
                valid_lifetime: fields[3].parse().expect("valid_lifetime"),
                hostname: fields[8].to_owned(),
            }
        })
        .collect()
}

/// Subscriber i's MAC address (the lab's fixed `02:74:6e:01:01:<i>`).
fn subscriber_mac(i: u8) -> String {
    format!("02:74:6e:01:01:{i:02x}")
}

/// Running kea-dhcp4 and dhclient processes whose command line names `dir`.
fn dhcp_processes(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm != "kea-dhcp4" && comm != "dhclient" {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !zombie && cmdline.contains(dir) {
            found.push(format!("{}: {cmdline}", path.display()));
        }
    }
    found
}

fn up_dhcp(lab: &mut Lab, subscribers: u16) -> String {
    let s = subscribers.to_string();
    lab.armed = true;
    tracenat_ok(&[
        "lab",
        "up",
        "--dhcp",
        "--subscribers",
        &s,
        "--dir",
        lab.dir_arg(),
    ])
}

#[test]
fn dhcp_lab_leases_addresses_hands_one_over_and_down_ends_kea_and_dhclients() {
    let Some(_serial) = start("lab up --dhcp") else {
        return;
    };
    let mut lab = Lab::new("lab up --dhcp");
    let summary = up_dhcp(&mut lab, 3);
    let leases = dhcp::lease_file(lab.dir());
    assert!(
        summary.contains(&format!("leases {}", leases.display())),
        "{summary}"
    );

    // Every subscriber holds the address it asked Kea for, with the default route from
    // the lease; the gateway answers.
    let status = lab.status();
    assert_eq!(status["state"], "up", "{status:#}");
    let dhcp_status = &status["dhcp"];
    assert_eq!(dhcp_status["server_running"], true, "{status:#}");
    assert_eq!(dhcp_status["lease_file"], leases.to_str().unwrap());
    for i in 1..=3u8 {
        let ns = format!("tn-sub-{i}");
        assert_eq!(
            addresses(&status, &ns, "eth0"),
            [format!("100.64.1.{i}/24")]
        );
        let client = &dhcp_status["subscribers"][usize::from(i) - 1];
        assert_eq!(client["address"], format!("100.64.1.{i}"), "{status:#}");
        assert_eq!(client["customer"], dhcp::customer_name(i.into()));
        assert_eq!(client["client_running"], true, "{status:#}");
        let route = exec_ok(&format!("sub:{i}"), &["ip", "route", "show", "default"]);
        assert!(route.contains("via 100.64.1.254"), "{ns}: {route}");
    }
    ping("sub:1", "100.64.1.254");
    let text = tracenat_ok(&["lab", "status", "--dir", lab.dir_arg()]);
    assert!(text.contains("dhcp: kea-dhcp4 running (pid "), "{text}");
    assert!(text.contains("alice"), "{text}");

    // Kea's own lease file has each subscriber's hardware address and host name.
    let lines = lease_lines(lab.dir());
    for (i, name) in [(1u8, "alice"), (2, "bob"), (3, "carol")] {
        let expected = LeaseLine {
            address: format!("100.64.1.{i}"),
            hwaddr: subscriber_mac(i),
            valid_lifetime: 600,
            hostname: name.to_owned(),
        };
        assert!(lines.contains(&expected), "no {expected:?} in {lines:#?}");
    }

    // Errors, not panics, for what cannot be done.
    let dir = lab.dir().to_owned();
    let dir = dir.as_path();
    assert!(matches!(
        dhcp::subscriber_address(dir, 4),
        Err(LabError::Usage(_))
    ));
    assert!(matches!(
        dhcp::take_over(dir, 2, 2),
        Err(LabError::Usage(_))
    ));

    // carol takes over alice's address: a real DHCPRELEASE from alice, then carol's
    // request; the lease file shows the address with both hardware addresses in turn.
    let address = dhcp::take_over(dir, 1, 3).expect("carol takes over alice's address");
    assert_eq!(address, Ipv4Addr::new(100, 64, 1, 1));
    assert_eq!(dhcp::subscriber_address(dir, 1).unwrap(), None);
    assert_eq!(dhcp::subscriber_address(dir, 3).unwrap(), Some(address));
    ping("sub:3", "100.64.1.254");
    let history: Vec<(String, u64, String)> = lease_lines(dir)
        .into_iter()
        .filter(|l| l.address == "100.64.1.1")
        .map(|l| (l.hwaddr, l.valid_lifetime, l.hostname))
        .collect();
    let alice_holds = (subscriber_mac(1), 600, "alice".to_owned());
    let alice_releases = (subscriber_mac(1), 0, "alice".to_owned());
    let carol_holds = (subscriber_mac(3), 600, "carol".to_owned());
    let at = |line: &(String, u64, String)| {
        history
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line:?} for 100.64.1.1 in {history:#?}"))
    };
    assert!(at(&alice_holds) < at(&alice_releases), "{history:#?}");
    assert!(at(&alice_releases) < at(&carol_holds), "{history:#?}");

    // alice comes back: the pool's one free address is carol's old one.
    assert_eq!(
        dhcp::acquire(dir, 1).expect("alice gets an address again"),
        Ipv4Addr::new(100, 64, 1, 3)
    );

    // Down ends Kea and every dhclient, also one whose namespace was deleted by hand.
    assert_eq!(dhcp_processes(dir).len(), 4, "{:#?}", dhcp_processes(dir));
    let deleted = Command::new("ip")
        .args(["netns", "del", "tn-sub-2"])
        .status()
        .unwrap();
    assert!(deleted.success());
    lab.down();
    assert_eq!(dhcp_processes(dir), Vec::<String>::new());
    assert_eq!(lab_namespaces_present(), Vec::<String>::new());
}

#[test]
fn dhcp_helpers_refuse_a_static_lab() {
    let Some(_serial) = start("dhcp helpers on a static lab") else {
        return;
    };
    let mut lab = Lab::new("dhcp helpers on a static lab");
    let options = UpOptions {
        workers: 1,
        subscribers: 1,
        dir: lab.dir().to_owned(),
        force: false,
    };
    lab.armed = true;
    tracenat::lab::up_with(&options, Addressing::Static, &mut |_| {}).unwrap();
    let error = dhcp::release(lab.dir(), 1).unwrap_err();
    assert!(error.to_string().contains("--dhcp"), "{error}");
    assert_eq!(lab.status()["dhcp"], Value::Null);
    lab.down();
}
