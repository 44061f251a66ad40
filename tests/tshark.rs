//! An independent check of every checksum tracenat writes: replay a mix of traffic (TCP,
//! UDP with and without checksum, ICMP echo, ICMP errors quoting each protocol, fragments,
//! hairpinning, a generated time-exceeded, VLAN tags), then have tshark validate the IP,
//! TCP, UDP and ICMP checksums of both output captures.
//! Needs tshark (`scripts/setup.sh` installs it).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;

use tracenat::config::Config;
use tracenat::pcap;
use tracenat::replay::{self, ReplayArgs};
use tracenat::wire::build::{self, FrameSpec};
use tracenat::wire::tcp;

const CONFIG: &str = r#"
[interfaces]
inside = "in0"
outside = "out0"
inside-address = "100.64.0.1"
outside-address = "192.0.2.1"
[pool]
public = ["203.0.113.0/30"]
subscribers = ["100.64.0.0/16"]
"#;

fn sock(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracenat-tshark-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn replay(
    dir: &Path,
    inside: Vec<(u64, Vec<u8>)>,
    outside: Vec<(u64, Vec<u8>)>,
    out: &str,
) -> PathBuf {
    let (i, o) = (
        dir.join(format!("{out}-in.pcap")),
        dir.join(format!("{out}-out.pcap")),
    );
    pcap::write_all(&i, &inside).unwrap();
    pcap::write_all(&o, &outside).unwrap();
    let out_dir = dir.join(out);
    let args = ReplayArgs {
        config: Config::from_toml_str(CONFIG).unwrap(),
        inside: i,
        outside: Some(o),
        out_dir: out_dir.clone(),
        log_dir: None,
        config_text: None,
    };
    replay::run(&args).unwrap();
    out_dir
}

/// Checksum statuses tshark reports for one capture, per protocol field: (good, bad).
fn tshark_statuses(capture: &Path) -> Vec<(String, u32, u32)> {
    let fields = [
        "ip.checksum.status",
        "tcp.checksum.status",
        "udp.checksum.status",
        "icmp.checksum.status",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(capture);
    for pref in [
        "ip.check_checksum:TRUE",
        "tcp.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
    ] {
        cmd.arg("-o").arg(pref);
    }
    cmd.args(["-T", "fields", "-E", "separator=;"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let output = cmd
        .output()
        .expect("tshark is installed (run scripts/setup.sh)");
    assert!(
        output.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    fields
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Values per packet; a field repeated (e.g. the IP header quoted in an ICMP error)
            // is comma separated. Wireshark's statuses: 0 bad, 1 good, 2 unverified.
            let values: Vec<&str> = text
                .lines()
                .filter_map(|l| l.split(';').nth(i))
                .flat_map(|v| v.split(','))
                .filter(|v| !v.is_empty())
                .collect();
            let good = values.iter().filter(|v| **v == "1").count() as u32;
            let bad = values.iter().filter(|v| **v == "0").count() as u32;
            (name.to_string(), good, bad)
        })
        .collect()
}

#[test]
fn tshark_finds_every_checksum_valid() {
    let dir = scratch_dir();
    let server = [198, 51, 100, 10];
    let (a, b) = ([100, 64, 0, 10], [100, 64, 0, 11]);
    let ms = 1_000_000u64;
    let mut inside = vec![
        build::build(
            &FrameSpec::udp(sock(a, 5000), sock(server, 53)).with_payload(b"query".to_vec()),
        ),
        build::build(&FrameSpec::udp(sock(a, 5001), sock(server, 53)).with_zero_udp_checksum()),
        build::build(&FrameSpec::tcp(sock(a, 40000), sock(server, 80), tcp::SYN)),
        build::build(
            &FrameSpec::tcp(sock(a, 40000), sock(server, 80), tcp::ACK)
                .with_payload(b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ),
        build::build(
            &FrameSpec::echo_request(Ipv4Addr::from(a), Ipv4Addr::from(server), 77, 1)
                .with_payload(vec![0xab; 32]),
        ),
        build::build(&FrameSpec::udp(sock(b, 6000), sock(server, 123)).with_vlan(100)),
        build::build(&FrameSpec::udp(sock(a, 5002), sock(server, 9)).with_ttl(1)),
    ];
    inside.extend(build::fragment(
        &build::build(&FrameSpec::udp(sock(a, 5003), sock(server, 7)).with_payload(vec![3; 1000])),
        256,
    ));
    let inside: Vec<(u64, Vec<u8>)> = inside
        .into_iter()
        .enumerate()
        .map(|(i, f)| (i as u64 * ms, f))
        .collect();
    let first = replay(&dir, inside.clone(), vec![], "first");

    // Replies and ICMP errors from the Internet about what went out, then a hairpin.
    let sent = pcap::read_all(&first.join("to-outside.pcap")).unwrap();
    assert!(
        sent.len() >= 8,
        "outbound traffic was translated ({} frames)",
        sent.len()
    );
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let mut outside = Vec::new();
    for (k, (_, frame)) in sent.iter().enumerate() {
        let t = 100 * ms + k as u64 * ms;
        outside.push((t, build::icmp_error_for(frame, 3, 3, router)));
        outside.push((t, build::icmp_error_for(frame, 11, 0, router)));
    }
    let public_a = {
        let ip = build::ip_packet(&sent[0].1);
        sock(
            [ip[12], ip[13], ip[14], ip[15]],
            u16::from_be_bytes([ip[20], ip[21]]),
        )
    };
    outside.push((
        200 * ms,
        build::build(&FrameSpec::udp(sock(server, 53), public_a).with_payload(b"answer".to_vec())),
    ));
    let mut inside2 = inside;
    inside2.push((
        300 * ms,
        build::build(&FrameSpec::udp(sock(b, 6001), public_a)),
    ));
    let second = replay(&dir, inside2, outside, "second");

    for capture in ["to-outside.pcap", "to-inside.pcap"] {
        let path = second.join(capture);
        let statuses = tshark_statuses(&path);
        for (field, good, bad) in &statuses {
            assert_eq!(
                *bad, 0,
                "{capture}: tshark found {bad} bad {field} ({good} good)"
            );
        }
        let good_ip = statuses
            .iter()
            .find(|s| s.0 == "ip.checksum.status")
            .unwrap()
            .1;
        assert!(
            good_ip >= 5,
            "{capture}: tshark verified only {good_ip} IP checksums"
        );
    }
    let inbound = tshark_statuses(&second.join("to-inside.pcap"));
    let good = |f: &str| inbound.iter().find(|s| s.0 == f).unwrap().1;
    assert!(
        good("icmp.checksum.status") >= 10,
        "ICMP errors translated back and verified"
    );
    assert!(
        good("udp.checksum.status") >= 2,
        "UDP reply and hairpin verified"
    );
    let outbound = tshark_statuses(&second.join("to-outside.pcap"));
    assert!(
        outbound
            .iter()
            .find(|s| s.0 == "tcp.checksum.status")
            .unwrap()
            .1
            >= 2
    );
    let _ = std::fs::remove_dir_all(&dir);
}
