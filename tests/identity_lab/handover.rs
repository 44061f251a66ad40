//! One inside address, two customers: the lab's Kea hands 100.64.1.1 from alice to carol
//! (a real DHCPRELEASE, then carol's request), both browse the lab's web server, and the
//! server's access log, read as if its clock were 40 s fast, is attributed to the right
//! customer on both sides of the handover.

use std::net::SocketAddrV4;
use std::time::{SystemTime, UNIX_EPOCH};

use tracenat::demo::{http_get, http_server};
use tracenat::lab::dhcp;
use tracenat::lab::serve::clf_time;
use tracenat::reader::time::parse_time;

use super::*;

/// How far ahead of the NAT the web server's clock is made to be.
const SERVER_AHEAD_S: u64 = 40;
const PAGES: usize = 4;

/// Subscriber `i` fetches PAGES pages; the endpoint each request left from.
fn browse(i: u16, address: Ipv4Addr) -> Vec<SocketAddrV4> {
    in_namespace(&topology::subscriber_ns(i), || {
        (0..PAGES)
            .map(|r| {
                let (status, port) = http_get(http_server(), &format!("/sub{i}/{r}"))?;
                assert_eq!(status, 200);
                Ok(SocketAddrV4::new(address, port))
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .expect("HTTP through the NAT")
}

/// The access log with every `[time]` moved SERVER_AHEAD_S later, as a server whose
/// clock is that far ahead would have written it.
fn shifted(access_log: &Path, out: &Path) {
    let original = std::fs::read_to_string(access_log).unwrap();
    let lines: Vec<String> = original
        .lines()
        .map(|line| {
            let (head, rest) = line.split_once('[').expect("a CLF time");
            let (time, tail) = rest.split_once(']').expect("a CLF time");
            let ns = parse_time(&format!("[{time}]")).expect("a CLF time");
            let later = UNIX_EPOCH + Duration::from_nanos(ns) + Duration::from_secs(SERVER_AHEAD_S);
            format!("{head}[{}]{tail}", clf_time(later))
        })
        .collect();
    assert_ne!(lines.join("\n"), original.trim_end());
    std::fs::write(out, lines.join("\n") + "\n").unwrap();
}

const LEASES: &str = "tracenat_lease_records_total";

/// Lease times in Kea's file are whole seconds: a pause of more than a second keeps
/// one holder's requests out of the second in which the address changed hands.
fn next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::thread::sleep(Duration::from_millis(
        1100 + 1000 - u64::from(now.subsec_millis()),
    ));
}

/// `log attribute --json` of `access_log` with the given clock options: the per-request
/// objects, in log order.
fn attribute(lab: &Lab, access_log: &Path, clock: &[&str]) -> Vec<Value> {
    let log_dir = lab.log_arg();
    let server = http_server().to_string();
    let mut args = vec![
        "log",
        "attribute",
        "--dir",
        &log_dir,
        "--access-log",
        access_log.to_str().unwrap(),
        "--server",
        &server,
        "--json",
    ];
    args.extend_from_slice(clock);
    tracenat_ok(&args)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("line").is_some())
        .collect()
}

fn assert_named(lines: &[Value], sent: &[(SocketAddrV4, String)]) {
    assert_eq!(lines.len(), sent.len(), "{lines:#?}");
    for (line, (endpoint, customer)) in lines.iter().zip(sent) {
        assert_eq!(line["verdict"], "unique", "{line}");
        let candidate = &line["candidates"][0];
        assert_eq!(candidate["subscriber"], endpoint.to_string(), "{line}");
        assert_eq!(candidate["holder"]["verdict"], "known", "{line}");
        let holders = candidate["holder"]["holders"].as_array().unwrap();
        assert_eq!(holders.len(), 1, "{line}");
        assert_eq!(holders[0]["name"], customer.as_str(), "{line}");
        assert_eq!(holders[0]["source"], "kea-lease", "{line}");
    }
}

#[test]
fn a_handed_over_address_is_attributed_to_each_customer_despite_server_skew() {
    let Some(lab) = Lab::up("handover", 3, Addressing::Dhcp) else {
        return;
    };
    let servers = demo::start_servers(&exe(), &lab.dir).unwrap();
    let nat = lab.nat();
    wait_at_least(LEASES, 3);
    let address = Ipv4Addr::new(100, 64, 1, 1);
    assert_eq!(
        dhcp::subscriber_address(&lab.dir, 1).unwrap(),
        Some(address)
    );
    let (alice, carol) = (dhcp::customer_name(1), dhcp::customer_name(3));

    let mut sent: Vec<(SocketAddrV4, String)> = browse(1, address)
        .into_iter()
        .map(|e| (e, alice.clone()))
        .collect();
    next_second();
    let before = metric(&metrics(), LEASES);
    assert_eq!(dhcp::take_over(&lab.dir, 1, 3).unwrap(), address);
    // alice's release, carol's release of her own address, carol's new lease.
    wait_at_least(LEASES, before + 3);
    next_second();
    sent.extend(browse(3, address).into_iter().map(|e| (e, carol.clone())));
    nat.stop().unwrap();
    drop(servers);

    let skewed = lab.dir.join("access-skewed.log");
    shifted(&lab.dir.join("access.log"), &skewed);
    let lines = attribute(&lab, &skewed, &["--skew", "auto"]);
    assert_named(&lines, &sent);
    // The same with the offset given, and nothing right without it (the test can fail).
    let given = attribute(&lab, &skewed, &["--server-offset", "40s"]);
    assert_named(&given, &sent);
    let trusted = attribute(&lab, &skewed, &[]);
    assert!(
        trusted.iter().all(|l| l["verdict"] != "unique"),
        "a 40 s skew read as a 2 s one still found the sessions: {trusted:#?}"
    );
}
