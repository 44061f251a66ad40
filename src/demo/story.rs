//! The demo's story on a lab that is up: servers and NAT, traffic from every subscriber,
//! (DHCP lab) one address handed from one customer to another while the NAT runs and
//! more traffic from it, the NAT stopped, then the trace ([`super::trace`]).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use super::trace::{self, Handover, SKEW_NS, Sent};
use super::{
    DemoError, DemoOptions, DemoReport, echo_server, http_get, http_server, in_namespace, io_err,
    ping, start_nat, start_servers, udp_round_trip,
};
use crate::lab::{Addressing, dhcp, topology};
use crate::maplog::clock::wall_clock_ns;
use crate::reader::identity::IdentityBook;

/// The subscriber whose address changes hands (bob).
const RELEASING: u16 = 2;
/// How long the NAT's lease follower may take to record the handover (it polls Kea's
/// lease file every 250 ms).
const FOLLOWER_WAIT: Duration = Duration::from_secs(10);

fn say(out: &mut dyn Write, text: String) {
    let _ = writeln!(out, "{text}");
}

pub(super) fn scenario(
    exe: &Path,
    options: &DemoOptions,
    out: &mut dyn Write,
) -> Result<DemoReport, DemoError> {
    let dir = &options.dir;
    let dhcp = options.addressing == Addressing::Dhcp;
    let _ = std::fs::remove_dir_all(dir.join("log"));
    let _servers = start_servers(exe, dir)?;
    say(
        out,
        format!(
            "== 2. tracenat run in {} (AF_XDP on tn-in and tn-out){}",
            topology::NAT_NS,
            if dhcp {
                ", following Kea's lease file"
            } else {
                ""
            }
        ),
    );
    let started_ns = wall_clock_ns();
    let nat = start_nat(exe, dir)?;
    let (mut sent, bob_done) = first_period(options, out)?;
    let (udp_echoed, pinged) = udp_and_ping(out);
    let mut handover = match dhcp {
        true => hand_over(options, bob_done, &mut sent, out)?,
        false => None,
    };

    say(
        out,
        "== 4. Stop the NAT (SIGTERM: rings drained, mapping log flushed)".into(),
    );
    let run_output = nat.stop()?;
    for line in run_output
        .lines()
        .filter(|l| !l.starts_with('\r') && !l.trim().is_empty())
    {
        say(out, format!("   {}", line.trim_start_matches('\r')));
    }

    say(
        out,
        format!(
            "== 5. Who was it? tracenat log attribute --dir {} --access-log {}",
            dir.join("log").display(),
            dir.join("access.log").display()
        ),
    );
    let highlight = handover.as_ref().map(|h| h.address);
    let (summary, traced) = trace::trace(dir, &sent, highlight, out)?;
    if let Some(h) = handover.as_mut() {
        trace::show_handover(&dir.join("log"), h, started_ns, wall_clock_ns(), out)?;
    }
    say(out, trace::summary_line(&summary, &traced, dhcp));
    Ok(DemoReport {
        requests: sent.len(),
        attributed: summary,
        traced_right: traced.iter().filter(|t| t.right_subscriber).count(),
        traced_to_customer: traced.iter().filter(|t| t.right_customer).count(),
        traced,
        handover,
        udp_echoed,
        pinged,
    })
}

/// Every subscriber fetches its pages; returns the requests and when bob's last one ended.
fn first_period(
    options: &DemoOptions,
    out: &mut dyn Write,
) -> Result<(Vec<Sent>, Option<Instant>), DemoError> {
    say(
        out,
        format!(
            "== 3. Real traffic: every subscriber fetches http://{}/ {} times; a UDP exchange; ping",
            http_server(),
            options.requests_per_subscriber
        ),
    );
    let mut sent = Vec::new();
    let mut bob_done = None;
    for i in 1..=options.subscribers {
        let (address, customer) = sender(options, i)?;
        sent.extend(fetch(i, address, customer, "page", options)?);
        if i == RELEASING {
            bob_done = Some(Instant::now());
        }
    }
    say(out, format!("   {} HTTP requests answered", sent.len()));
    Ok((sent, bob_done))
}

/// Subscriber `i`'s address now and its customer: from its DHCP lease (the customer is
/// the host name it sends), or the static lab's 100.64.1.<i> (no customer).
fn sender(options: &DemoOptions, i: u16) -> Result<(Ipv4Addr, Option<String>), DemoError> {
    match options.addressing {
        Addressing::Static => Ok((Ipv4Addr::new(100, 64, 1, i as u8), None)),
        Addressing::Dhcp => {
            let address = dhcp::subscriber_address(&options.dir, i)?.ok_or_else(|| {
                DemoError::Failed(format!(
                    "subscriber {i} ({}) holds no DHCP address",
                    dhcp::customer_name(i)
                ))
            })?;
            Ok((address, Some(dhcp::customer_name(i))))
        }
    }
}

/// Subscriber `i` fetches `/sub<i>/<label><r>` for each request r, from `address`.
fn fetch(
    i: u16,
    address: Ipv4Addr,
    customer: Option<String>,
    label: &str,
    options: &DemoOptions,
) -> Result<Vec<Sent>, DemoError> {
    let ns = topology::subscriber_ns(i);
    let paths: Vec<String> = (0..options.requests_per_subscriber)
        .map(|r| format!("/sub{i}/{label}{r}"))
        .collect();
    let ports = in_namespace(&ns, || {
        paths
            .iter()
            .map(|path| http_get(http_server(), path).map(|(_, port)| port))
            .collect::<io::Result<Vec<u16>>>()
    })
    .map_err(io_err(format!("HTTP from {ns}")))?;
    Ok(paths
        .into_iter()
        .zip(ports)
        .map(|(path, port)| Sent {
            subscriber: i,
            from: SocketAddrV4::new(address, port),
            customer: customer.clone(),
            path,
        })
        .collect())
}

fn udp_and_ping(out: &mut dyn Write) -> (bool, bool) {
    let echo = echo_server();
    let udp_echoed = in_namespace(&topology::subscriber_ns(1), || {
        udp_round_trip(echo, b"hello through the NAT")
    })
    .is_ok_and(|reply| reply == b"hello through the NAT");
    say(
        out,
        format!(
            "   UDP to {echo}: {}",
            if udp_echoed { "echoed" } else { "NO ECHO" }
        ),
    );
    let server_ip: Ipv4Addr = topology::HTTP_SERVER.parse().expect("lab address");
    let pinged = ping(&topology::subscriber_ns(1), server_ip, 3);
    say(
        out,
        format!(
            "   ping {server_ip}: {}",
            if pinged { "3/3 replies" } else { "FAILED" }
        ),
    );
    (udp_echoed, pinged)
}

/// Who takes bob's address: dave where there is one, else the last subscriber, else alice.
fn taker(subscribers: u16) -> Option<u16> {
    match subscribers {
        0 | 1 => None,
        2 => Some(1),
        n => Some(n.min(4)),
    }
}

/// Bob releases his address (a real DHCPRELEASE) and another customer takes it while the
/// NAT runs (its follower reads the release live: Kea's file does not date releases);
/// once the NAT has recorded the new holder, the taker fetches pages from it.
fn hand_over(
    options: &DemoOptions,
    bob_done: Option<Instant>,
    sent: &mut Vec<Sent>,
    out: &mut dyn Write,
) -> Result<Option<Handover>, DemoError> {
    let Some(to) = taker(options.subscribers) else {
        say(
            out,
            "== 3b. (one subscriber: no address to hand over)".into(),
        );
        return Ok(None);
    };
    let (from_name, to_name) = (dhcp::customer_name(RELEASING), dhcp::customer_name(to));
    // Bob's last request is traced within ±SKEW of its time, and the new lease starts at
    // Kea's cltt, in whole seconds (up to 1 s before the handover): wait that long, so no
    // request of bob's can fall in the next holder's time.
    pause_after(bob_done, SKEW_NS + 1_200_000_000);
    let address = dhcp::take_over(&options.dir, RELEASING, to)?;
    let at_ns = wall_clock_ns();
    say(
        out,
        format!(
            "== 3b. {from_name} releases {address} (DHCPRELEASE); {to_name} asks Kea for it and gets it"
        ),
    );
    wait_for_holder(&options.dir.join("log"), address, &to_name)?;
    say(
        out,
        format!("   the NAT's lease follower recorded {to_name} as the holder of {address}"),
    );
    // A request's window reaches SKEW back: past it, only the new holder's time is in it.
    pause_after(Some(Instant::now()), SKEW_NS + 500_000_000);
    let late = fetch(to, address, Some(to_name.clone()), "after", options)?;
    say(
        out,
        format!(
            "   {to_name} (subscriber {to}) fetches {} pages from {address}",
            late.len()
        ),
    );
    sent.extend(late);
    Ok(Some(Handover {
        address,
        from: RELEASING,
        to,
        at_ns,
        holders: Vec::new(),
    }))
}

/// Sleeps until `ns` nanoseconds after `since` (at once if that has passed).
fn pause_after(since: Option<Instant>, ns: u64) {
    let Some(since) = since else { return };
    let until = since + Duration::from_nanos(ns);
    if let Some(left) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Waits until the identity records (what `tracenat identity query` reads) say `customer`
/// holds `address` now: the NAT has seen the handover before the new holder's traffic.
fn wait_for_holder(log_dir: &Path, address: Ipv4Addr, customer: &str) -> Result<(), DemoError> {
    let deadline = Instant::now() + FOLLOWER_WAIT;
    loop {
        let now = wall_clock_ns();
        let holder = IdentityBook::load(log_dir, now, now)
            .ok()
            .map(|book| book.holders(address, now, now));
        if holder
            .is_some_and(|h| h.verdict() == "known" && h.short_name().as_deref() == Some(customer))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Failed(format!(
                "the NAT did not record {customer} as the holder of {address} within {} s \
                 (is [identity.dhcp] in the lab's tracenat.toml?)",
                FOLLOWER_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bob_hands_over_to_dave_or_whoever_is_there() {
        assert_eq!(taker(8), Some(4));
        assert_eq!(taker(4), Some(4));
        assert_eq!(taker(3), Some(3));
        assert_eq!(taker(2), Some(1));
        assert_eq!(taker(1), None);
    }
}
