//! The `tracenat.toml` the lab writes for `tracenat run` inside `tn-nat`.

use std::fmt::Write as _;
use std::path::Path;

use super::topology::{
    ACCESS_ADDRESS, INSIDE_IF, METRICS, NAT_INSIDE_ADDRESS, NAT_OUTSIDE_ADDRESS, OUTSIDE_IF,
    PUBLIC_POOL, SUBSCRIBER_PREFIX, Topology, UPSTREAM_ADDRESS,
};

/// The configuration text for `lab`: its interfaces, addresses and gateways, one worker
/// per veth queue, the public pool 203.0.113.0/24, every subscriber of 100.64.0.0/10,
/// the mapping log in `<dir>/log` flushed every second, metrics on 127.0.0.1:9917.
pub fn render(lab: &Topology) -> String {
    let mut text = String::new();
    let config = lab.config.display();
    let _ = write!(
        text,
        "\
# Written by `tracenat lab up` for the veth lab ({workers} worker(s), {subscribers} subscriber(s)).
# Rewritten by every `lab up`. Run the NAT inside the lab's NAT namespace:
#   tracenat lab exec nat -- tracenat run --config {config}

[interfaces]
inside = {inside}
outside = {outside}
inside-address = {inside_address}
outside-address = {outside_address}
# The access router and the upstream router; their MAC addresses are in tn-nat's
# neighbour table once `lab up` has pinged them.
inside-gateway = {inside_gateway}
outside-gateway = {outside_gateway}

[workers]
# One worker per rx queue of tn-in and tn-out.
count = {workers}

[pool]
public = [{public}]
subscribers = [{subscribers_prefix}]
# The network and broadcast addresses of the /24 are not handed to subscribers: some
# stacks and firewalls treat them specially.
exclude = [\"203.0.113.0\", \"203.0.113.255\"]

[logging]
dir = {log_dir}
flush-interval = \"1s\"

[dataplane]
# Served inside tn-nat: `tracenat lab exec nat -- curl -s http://{METRICS}/metrics`.
metrics = {metrics}

[identity.radius]
# The access router plays the BNG and sends RADIUS accounting, e.g.
#   tracenat lab exec access -- radclient {NAT_INSIDE_ADDRESS} acct {LAB_RADIUS_SECRET}
listen = {radius_listen}
[[identity.radius.clients]]
address = {access}
secret = {secret}
name = \"lab-access-router\"
",
        workers = lab.workers,
        subscribers = lab.subscribers,
        inside = quote(INSIDE_IF),
        outside = quote(OUTSIDE_IF),
        inside_address = quote(NAT_INSIDE_ADDRESS),
        outside_address = quote(NAT_OUTSIDE_ADDRESS),
        inside_gateway = quote(ACCESS_ADDRESS),
        outside_gateway = quote(UPSTREAM_ADDRESS),
        public = quote(PUBLIC_POOL),
        subscribers_prefix = quote(SUBSCRIBER_PREFIX),
        log_dir = quote_path(&lab.log_dir),
        metrics = quote(METRICS),
        radius_listen = quote(&format!("{NAT_INSIDE_ADDRESS}:1813")),
        access = quote(ACCESS_ADDRESS),
        secret = quote(LAB_RADIUS_SECRET),
    );
    if lab.dhcp {
        let _ = write!(
            text,
            "
[identity.dhcp]
# The lab's Kea DHCPv4 server writes its leases here (`lab up --dhcp`).
kea-lease-file = {leases}
poll-interval = \"250ms\"
",
            leases = quote_path(&super::dhcp::lease_file(&lab.dir)),
        );
    }
    text
}

/// The RADIUS shared secret of the lab's access router (a lab, not a secret).
pub const LAB_RADIUS_SECRET: &str = "tracenat-lab";

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::net::Ipv4Addr;

    #[test]
    fn the_lab_config_is_valid_and_says_what_the_lab_is() {
        let lab = Topology::new(3, 8, Path::new("/run/odd \"dir\"\\x")).unwrap();
        let text = render(&lab);
        let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.interfaces.inside, "tn-in");
        assert_eq!(config.interfaces.outside, "tn-out");
        assert_eq!(
            config.interfaces.inside_address,
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
        assert_eq!(
            config.interfaces.outside_gateway,
            Some(Ipv4Addr::new(192, 0, 2, 254))
        );
        assert_eq!(config.workers.count, 3);
        assert_eq!(config.pool.public.len(), 1);
        assert_eq!(
            config.logging.dir.as_deref(),
            Some(Path::new("/run/odd \"dir\"\\x/log"))
        );
        assert_eq!(config.logging.flush_interval.as_secs(), 1);
        assert_eq!(
            config.dataplane.metrics,
            Some("127.0.0.1:9917".parse().unwrap())
        );
    }
}
