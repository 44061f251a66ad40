//! Tests of the lease parsers, import and the follower, with samples as the servers write
//! them.

use std::io;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::identity::{Change, MemorySink};

const NOW: u64 = 1_900_000_000_000_000_000;
const S: u64 = 1_000_000_000;

fn run(format: LeaseFormat, text: &str) -> (Vec<IdentityRecord>, Counts) {
    let mut sink = MemorySink::default();
    let report = import(format, text.as_bytes(), &mut sink, NOW).unwrap();
    (sink.records, report.counts)
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 1, last)
}

const KEA_HEADER: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n";

/// A Kea 2.2 journal: alice is granted .7 and renews, bob gets .8 and releases it, .7
/// expires and is reclaimed, then flushed, then carol's CPE gets .7.
fn kea_journal() -> String {
    let ctx = r#"{ "ISC": { "relay-agent-info": "0x0106657468302F310206414243313233" } }"#
        .replace(',', "&#x2c");
    let ctx_new = r#"{ "ISC": { "relay-agent-info": { "sub-options": "0x010400010203", "remote-id": "00010203" } } }"#
        .replace(',', "&#x2c");
    [
        KEA_HEADER.trim_end().to_string(),
        format!("100.64.1.7,02:00:5E:00:53:01,01:02:00:5e:00:53:01,3600,1796018400,1,0,0,alice&#x2chome&#x26co,0,{ctx}"),
        format!("100.64.1.7,02:00:5e:00:53:01,01:02:00:5e:00:53:01,3600,1796020200,1,0,0,alice&#x2chome&#x26co,0,{ctx}"),
        "100.64.1.8,02:00:5e:00:53:02,,3600,1796018000,1,0,0,bob,0,".into(),
        // Kea 2.2's release: the lease removed, valid_lifetime 0, expire = cltt.
        "100.64.1.8,02:00:5e:00:53:02,,0,1796014400,1,0,0,bob,0,".into(),
        "100.64.1.9,,,86400,1796100000,1,0,0,,1,".into(),
        // Reclaimed on expiry: state 2, hostname cleared, times unchanged.
        "100.64.1.7,02:00:5e:00:53:01,01:02:00:5e:00:53:01,3600,1796020200,1,0,0,,2,".into(),
        // Flushed after hold-reclaimed-time: removed (valid_lifetime 0).
        "100.64.1.7,02:00:5e:00:53:01,01:02:00:5e:00:53:01,0,1796016600,1,0,0,,2,".into(),
        format!("100.64.1.7,02:00:5e:00:53:03,,3600,1796030000,1,0,0,carol,0,{ctx_new}"),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn kea_journal_becomes_starts_updates_and_stops() {
    let (records, counts) = run(LeaseFormat::KeaCsv, &kea_journal());
    let summary: Vec<(Change, Ipv4Addr, u64)> = records
        .iter()
        .map(|r| (r.change, r.inside_ip, r.at_ns / S))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Change::Start, ip(7), 1_796_014_800),
            (Change::Update, ip(7), 1_796_016_600),
            (Change::Start, ip(8), 1_796_014_400),
            // The release is undated: the latest it can have been is the lease's expiry.
            (Change::Stop, ip(8), 1_796_018_000),
            (Change::Stop, ip(7), 1_796_020_200),
            (Change::Start, ip(7), 1_796_026_400),
        ]
    );
    assert_eq!(counts.ignored, 1, "the declined lease");
    assert_eq!(counts.unchanged, 1, "the flush after the reclaim");
    assert_eq!(counts.skipped, 0, "{:?}", counts.first_skips);
    assert_eq!(counts.records, 6);
    assert!(
        records
            .iter()
            .all(|r| r.source == Source::KeaLease && r.learned_ns == NOW)
    );

    let alice = &records[0];
    assert_eq!(alice.expires_ns, 1_796_018_400 * S);
    assert_eq!(alice.source_ns, 1_796_014_800 * S);
    assert_eq!(alice.identity.hw_addr.as_deref(), Some("02:00:5e:00:53:01"));
    assert_eq!(
        alice.identity.client_id.as_deref(),
        Some("01:02:00:5e:00:53:01")
    );
    assert_eq!(alice.identity.hostname.as_deref(), Some("alice,home&co"));
    assert_eq!(alice.identity.circuit_id.as_deref(), Some("eth0/1"));
    assert_eq!(alice.identity.remote_id.as_deref(), Some("ABC123"));
    // The stop on reclaim names the holding as it was, hostname included.
    assert_eq!(records[4].identity, alice.identity);
    let carol = &records[5];
    assert_eq!(carol.identity.hw_addr.as_deref(), Some("02:00:5e:00:53:03"));
    assert_eq!(carol.identity.circuit_id.as_deref(), Some("00:01:02:03"));
    assert_eq!(carol.identity.remote_id, None);
}

#[test]
fn kea_lease_moving_to_another_cpe_is_a_new_start() {
    let text = format!(
        "{KEA_HEADER}100.64.1.20,02:00:5e:00:53:0a,,3600,1796018400,1,0,0,,0,\n\
         100.64.1.20,02:00:5e:00:53:0b,,3600,1796019000,1,0,0,,0,\n"
    );
    let (records, _) = run(LeaseFormat::KeaCsv, &text);
    let changes: Vec<_> = records.iter().map(|r| r.change).collect();
    assert_eq!(changes, vec![Change::Start, Change::Start]);
    assert_eq!(
        records[1].identity.hw_addr.as_deref(),
        Some("02:00:5e:00:53:0b")
    );
}

#[test]
fn kea_newer_layout_with_pool_id_and_released_state() {
    let text = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n\
                100.64.2.1,02:00:5e:00:53:21,,600,1796015400,1,0,0,,0,,0\n\
                100.64.2.1,02:00:5e:00:53:21,,0,1796014800,1,0,0,,3,,0\n";
    let (records, counts) = run(LeaseFormat::KeaCsv, text);
    assert_eq!(counts.skipped, 0, "{:?}", counts.first_skips);
    let changes: Vec<_> = records.iter().map(|r| (r.change, r.at_ns / S)).collect();
    assert_eq!(
        changes,
        vec![
            (Change::Start, 1_796_014_800),
            (Change::Stop, 1_796_015_400)
        ]
    );
}

#[test]
fn kea_bad_lines_are_counted_with_their_line_numbers() {
    let text = "100.64.1.1,02:00:5e:00:53:01,,3600,1796018400,1,0,0,,0,\n\
                address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n\
                100.64.1.1,02:00:5e:00:53:01,,3600\n\
                100.64.1.300,02:00:5e:00:53:01,,3600,1796018400,1,0,0,,0,\n\
                100.64.1.1,zz:00,,3600,1796018400,1,0,0,,0,\n\
                100.64.1.1,02:00:5e:00:53:01,,3600,100,1,0,0,,0,\n\
                100.64.1.1,02:00:5e:00:53:01,,3600,1796018400,1,0,0,,9,\n\
                100.64.1.1,02:00:5e:00:53:01,,3600,1796018400,1,0,0,,0,{not json\n";
    let (records, counts) = run(LeaseFormat::KeaCsv, text);
    let lines: Vec<u64> = counts.first_skips.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![1, 3, 4, 5, 6, 7]);
    assert!(counts.first_skips[0].reason.contains("before the header"));
    assert!(
        counts.first_skips[5]
            .reason
            .contains("unknown lease state 9")
    );
    // A user context that is not JSON costs the option 82 fields, not the lease.
    assert_eq!(records.len(), 1);
}

#[test]
fn kea_unescape_leaves_what_is_not_an_escape() {
    assert_eq!(kea::unescape("a&#x2cb&#x26#x2c"), "a,b&#x2c");
    assert_eq!(kea::unescape("&#xZZ&#x+1&#x"), "&#xZZ&#x+1&#x");
    assert_eq!(kea::unescape("plain"), "plain");
}

const ISC_LEASES: &str = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\000\001\000\001*\375\030\373\002\000^\000S\000";

failover peer "bng" state {
  my state normal at 1 2026/11/30 04:00:00;
  partner state normal at 1 2026/11/30 04:00:00;
}

host cpe-static {
  dynamic;
  hardware ethernet 02:00:5e:00:53:99;
  fixed-address 100.64.9.9;
}

lease 100.64.1.7 {
  starts 1 2026/11/30 05:00:00;
  ends 1 2026/11/30 06:00:00;
  cltt 1 2026/11/30 05:00:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 2:0:5e:0:53:1;
  uid "\001\002\000^\000S\001";
  option agent.circuit-id "eth0/1;vlan 100";
  option agent.remote-id 0:1:2:3;
  set vendor-class-identifier = "udhcp 1.36";
  client-hostname "alice-cpe";
}
lease 100.64.1.7 {
  starts epoch 1796016600; # Mon Nov 30 05:30:00 2026
  ends epoch 1796020200; # Mon Nov 30 06:30:00 2026
  cltt epoch 1796016600; # Mon Nov 30 05:30:00 2026
  binding state active;
  next binding state free;
  hardware ethernet 02:00:5e:00:53:01;
  uid "\001\002\000^\000S\001";
  option agent.circuit-id "eth0/1;vlan 100";
  option agent.remote-id 0:1:2:3;
  client-hostname "alice-cpe";
}
lease 100.64.1.7 {
  starts 1 2026/11/30 05:30:00;
  ends 1 2026/11/30 05:45:00;
  tstp 1 2026/11/30 05:45:00;
  cltt 1 2026/11/30 05:45:00;
  binding state released;
  next binding state free;
  hardware ethernet 02:00:5e:00:53:01;
  uid "\001\002\000^\000S\001";
}
lease 100.64.1.8 {
  starts 1 2026/11/30 05:10:00;
  ends never;
  binding state active;
  hardware ethernet 02:00:5e:00:53:02;
}
lease 100.64.1.8 {
  starts 1 2026/11/30 05:10:00;
  ends 1 2026/11/30 07:10:00;
  binding state free;
  hardware ethernet 02:00:5e:00:53:02;
}
lease 100.64.1.9 {
  starts 1 2026/11/30 05:10:00;
  ends 1 2026/11/30 07:10:00;
  binding state abandoned;
}
lease 100.64.1.10 {
  ends 1 2026/11/30 07:10:00;
  binding state free;
}
"#;

#[test]
fn isc_journal_later_blocks_supersede_earlier() {
    let (records, counts) = run(LeaseFormat::IscDhcpd, ISC_LEASES);
    assert_eq!(counts.skipped, 0, "{:?}", counts.first_skips);
    let summary: Vec<(Change, Ipv4Addr, u64)> = records
        .iter()
        .map(|r| (r.change, r.inside_ip, r.at_ns / S))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Change::Start, ip(7), 1_796_014_800),
            (Change::Update, ip(7), 1_796_016_600),
            (Change::Stop, ip(7), 1_796_017_500),
            (Change::Start, ip(8), 1_796_015_400),
            (Change::Stop, ip(8), 1_796_022_600),
        ]
    );
    // abandoned, and a free lease no one ever held.
    assert_eq!(counts.ignored, 2);
    let alice = &records[0];
    assert_eq!(alice.source, Source::IscLease);
    assert_eq!(alice.expires_ns, 1_796_018_400 * S);
    assert_eq!(alice.identity.hw_addr.as_deref(), Some("02:00:5e:00:53:01"));
    assert_eq!(
        alice.identity.client_id.as_deref(),
        Some("01:02:00:5e:00:53:01")
    );
    assert_eq!(alice.identity.hostname.as_deref(), Some("alice-cpe"));
    assert_eq!(
        alice.identity.circuit_id.as_deref(),
        Some("eth0/1;vlan 100")
    );
    assert_eq!(alice.identity.remote_id.as_deref(), Some("00:01:02:03"));
    assert_eq!(records[3].expires_ns, 0, "ends never");
    // The release names the holder as the active lease did.
    assert_eq!(records[2].identity, records[1].identity);
}

#[test]
fn isc_bad_blocks_are_counted() {
    let text = "lease 100.64.1.300 { binding state active; }\n\
                lease 100.64.1.1 { starts 1 2026/13/30 05:00:00; binding state active; }\n\
                lease 100.64.1.2 { starts 1 2026/11/30 05:00:00; binding state weird; }\n\
                lease 100.64.1.3 { hardware ethernet 02:00:5e:00:53:01; }\n\
                } stray;\n\
                lease 100.64.1.4 { starts 1 2026/11/30 05:00:00; binding state active;";
    let (records, counts) = run(LeaseFormat::IscDhcpd, text);
    assert!(records.is_empty());
    assert_eq!(counts.skipped, 7, "{:?}", counts.first_skips);
    let lines: Vec<u64> = counts.first_skips.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![1, 2, 3, 4, 5, 5, 6]);
}

const DETAIL: &str = "Mon Nov 30 05:00:00 2026
\tAcct-Status-Type = Start
\tUser-Name = \"alice@isp.example\"
\tFramed-IP-Address = 100.64.1.7
\tNAS-IP-Address = 192.0.2.10
\tNAS-Port-Id = \"eth 0/1/2:100\"
\tCalling-Station-Id = \"02-00-5e-00-53-01\"
\tAcct-Session-Id = \"0000abcd\"
\tClass = 0x676f6c64
\tEvent-Timestamp = \"Nov 30 2026 05:00:00 UTC\"
\tTimestamp = 1796014801

Mon Nov 30 05:10:00 2026
\tAcct-Status-Type = Interim-Update
\tUser-Name = \"alice@isp.example\"
\tFramed-IP-Address = 100.64.1.7
\tNAS-IP-Address = 192.0.2.10
\tAcct-Session-Id = \"0000abcd\"
\tClass = 0x0102
\tAcct-Delay-Time = 5
\tTimestamp = 1796015405

Mon Nov 30 05:20:00 2026
\tAcct-Status-Type = Stop
\tUser-Name = \"alice@isp.example\"
\tFramed-IP-Address = 100.64.1.7
\tNAS-IP-Address = 192.0.2.10
\tEvent-Timestamp = 1796016000
\tTimestamp = 1796016001

Mon Nov 30 05:30:00 2026
\tAcct-Status-Type = Accounting-On
\tNAS-IP-Address = 192.0.2.10
\tEvent-Timestamp = \"Nov 30 2026 05:30:00 UTC\"

Mon Nov 30 05:31:00 2026
\tAcct-Status-Type = Failed
\tTimestamp = 1796016660

Mon Nov 30 05:32:00 2026
\tAcct-Status-Type = Start
\tFramed-IP-Address = 100.64.1.8
\tEvent-Timestamp = \"Nov 30 2026 05:32:00 CET\"
";

#[test]
fn detail_maps_like_radius_accounting() {
    let (records, counts) = run(LeaseFormat::RadiusDetail, DETAIL);
    let summary: Vec<(Change, Ipv4Addr, u64, u64)> = records
        .iter()
        .map(|r| (r.change, r.inside_ip, r.at_ns / S, r.source_ns / S))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Change::Start, ip(7), 1_796_014_800, 1_796_014_800),
            (Change::Update, ip(7), 1_796_015_400, 1_796_015_405),
            (Change::Stop, ip(7), 1_796_016_000, 1_796_016_000),
            (
                Change::NasReset,
                Ipv4Addr::UNSPECIFIED,
                1_796_016_600,
                1_796_016_600
            ),
        ]
    );
    assert_eq!(counts.ignored, 1, "Failed");
    assert_eq!(counts.skipped, 1, "a zone whose offset is unknown");
    assert_eq!(counts.first_skips[0].line, 40);
    let start = &records[0].identity;
    assert_eq!(start.user.as_deref(), Some("alice@isp.example"));
    assert_eq!(start.nas_ip, Some(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(start.nas_port_id.as_deref(), Some("eth 0/1/2:100"));
    assert_eq!(
        start.calling_station_id.as_deref(),
        Some("02-00-5e-00-53-01")
    );
    assert_eq!(start.session_id.as_deref(), Some("0000abcd"));
    assert_eq!(start.class.as_deref(), Some("gold"));
    assert_eq!(records[1].identity.class.as_deref(), Some("01:02"));
    assert_eq!(
        records[3].identity,
        Identity {
            nas_ip: Some(Ipv4Addr::new(192, 0, 2, 10)),
            ..Identity::default()
        }
    );
    assert!(records.iter().all(|r| r.source == Source::RadiusDetail));
}

#[test]
fn format_names_round_trip() {
    for f in LeaseFormat::ALL {
        assert_eq!(f.name().parse::<LeaseFormat>(), Ok(f));
        let by_clap = <LeaseFormat as clap::ValueEnum>::from_str(f.name(), false);
        assert_eq!(by_clap, Ok(f));
    }
    assert!("kea".parse::<LeaseFormat>().is_err());
}

fn check_never_panics(format: LeaseFormat, bytes: &[u8]) {
    let mut sink = MemorySink::default();
    let report = import(format, bytes, &mut sink, NOW).unwrap();
    assert_eq!(report.counts.new as usize, sink.records.len());
    assert!(report.counts.new <= report.counts.records);
    for r in &sink.records {
        assert!(well_formed(r, format) && r.learned_ns == NOW, "{r:?}");
    }
}

/// Lines built from pieces of the real formats, so parsing gets past the first check.
fn format_like_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        KEA_HEADER,
        "100.64.1.7,02:00:5e:00:53:01,,3600,1796018400,1,0,0,a&#x2c,0,",
        "100.64.1.7,02:00:5e:00:53:02,,0,1796018400,1,0,0,,2,",
        "100.64.1.7,,,5,1,1,0,0,,0,{\"ISC\":{\"relay-agent-info\":\"0x0102\"}}",
        "lease 100.64.1.7 {",
        "starts 1 2026/11/30 05:00:00;",
        "ends never;",
        "binding state active;",
        "binding state free;",
        "hardware ethernet 2:0:5e:0:53:1;",
        r#"uid "\001\";"#,
        "option agent.circuit-id 1:2;",
        "}",
        "\"",
        "#",
        "Mon Nov 30 05:00:00 2026",
        "\tAcct-Status-Type = Start",
        "\tAcct-Status-Type = Accounting-Off",
        "\tFramed-IP-Address = 100.64.1.7",
        "\tNAS-IP-Address = 192.0.2.1",
        "\tEvent-Timestamp = \"Nov 30 2026 05:00:00 UTC\"",
        "\tTimestamp = 18446744073709551615",
        "\tAcct-Delay-Time = 99999999999",
        "",
        ",",
        "\\",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.join("\n"))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_any_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        for format in LeaseFormat::ALL {
            check_never_panics(format, &bytes);
        }
        fuzz_bytes(&bytes);
    }

    #[test]
    fn format_like_lines_never_panic_and_make_well_formed_records(text in format_like_text()) {
        for format in LeaseFormat::ALL {
            check_never_panics(format, text.as_bytes());
        }
        fuzz_bytes(text.as_bytes());
    }
}

/// What the sink holds, as (change, address's last byte, hw address's last byte).
fn seen(sink: &MemorySink) -> Vec<(Change, u8, String)> {
    sink.records
        .iter()
        .map(|r| {
            let hw = r.identity.hw_addr.clone().unwrap_or_default();
            (
                r.change,
                r.inside_ip.octets()[3],
                hw[hw.len().saturating_sub(2)..].to_string(),
            )
        })
        .collect()
}

fn kea_line(last: u8, hw: u8, valid: u64, expire: u64, state: u8) -> String {
    format!("100.64.1.{last},02:00:5e:00:53:{hw:02x},,{valid},{expire},1,0,0,,{state},\n")
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn follower_reads_appends_rewrites_and_truncation_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kea-leases4.csv");
    let mut sink = MemorySink::default();
    let mut follower = Follower::new(&path, LeaseFormat::KeaCsv);

    // Not there yet: an error once, then quiet.
    assert_eq!(
        follower.poll(&mut sink, NOW).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert!(follower.poll(&mut sink, NOW).unwrap().missing);

    append(&path, KEA_HEADER);
    append(&path, &kea_line(1, 1, 3600, 1_796_018_400, 0));
    let report = follower.poll(&mut sink, NOW).unwrap();
    assert_eq!((report.counts.records, report.missing), (1, false));

    // Half a line waits for its end.
    let renew = kea_line(1, 1, 3600, 1_796_019_000, 0);
    let (head, tail) = renew.split_at(20);
    append(&path, head);
    assert_eq!(follower.poll(&mut sink, NOW).unwrap().counts.records, 0);
    append(&path, tail);
    append(&path, &kea_line(2, 2, 3600, 1_796_018_400, 0));
    assert_eq!(follower.poll(&mut sink, NOW).unwrap().counts.records, 2);
    assert_eq!(
        follower.poll(&mut sink, NOW).unwrap(),
        PollReport::default()
    );

    // The LFC writes the compacted file and renames it over; a line added to the old
    // file just before is still read, and the leases that did not change say nothing.
    append(&path, &kea_line(3, 3, 3600, 1_796_018_500, 0));
    let compacted = dir.path().join("kea-leases4.csv.output");
    std::fs::write(
        &compacted,
        format!(
            "{KEA_HEADER}{}{}{}{}",
            kea_line(1, 1, 3600, 1_796_019_000, 0),
            kea_line(2, 2, 3600, 1_796_018_400, 0),
            kea_line(3, 3, 3600, 1_796_018_500, 0),
            kea_line(4, 4, 3600, 1_796_018_600, 0),
        ),
    )
    .unwrap();
    std::fs::rename(&compacted, &path).unwrap();
    let report = follower.poll(&mut sink, NOW + S).unwrap();
    assert!(report.reread);
    assert_eq!(report.counts.records, 2, "{report:?}");
    assert_eq!(report.counts.unchanged, 3);

    // Truncated and written again from the start: .2 moved to another CPE, .4 released.
    std::fs::write(
        &path,
        format!(
            "{KEA_HEADER}{}{}",
            kea_line(2, 5, 3600, 1_796_019_400, 0),
            kea_line(4, 4, 0, 1_796_015_000, 0),
        ),
    )
    .unwrap();
    let report = follower.poll(&mut sink, NOW + 2 * S).unwrap();
    assert!(report.reread);
    assert_eq!(report.counts.records, 2, "{report:?}");

    // Gone: one error, the lines before it already read.
    std::fs::remove_file(&path).unwrap();
    assert!(follower.poll(&mut sink, NOW).is_err());
    assert!(follower.poll(&mut sink, NOW).unwrap().missing);

    assert_eq!(
        seen(&sink),
        vec![
            (Change::Start, 1, "01".into()),
            (Change::Update, 1, "01".into()),
            (Change::Start, 2, "02".into()),
            (Change::Start, 3, "03".into()),
            (Change::Start, 4, "04".into()),
            (Change::Start, 2, "05".into()),
            (Change::Stop, 4, "04".into()),
        ]
    );
    // A live follower dates the undated release no later than its own clock.
    let stop = sink.records.last().unwrap();
    assert_eq!(stop.at_ns, 1_796_018_600 * S);
    assert!(
        sink.records[5..]
            .iter()
            .all(|r| r.learned_ns == NOW + 2 * S)
    );
}

#[test]
fn follower_counts_bad_lines_and_a_partial_line_left_in_a_replaced_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dhcpd.leases");
    let mut sink = MemorySink::default();
    let mut follower = Follower::new(&path, LeaseFormat::IscDhcpd);
    std::fs::write(
        &path,
        "lease 100.64.1.1 { starts 1 2026/11/30 05:00:00; binding state active; \
         hardware ethernet 02:00:5e:00:53:01; }\nlease nonsense { }\nlease 100.64.1.2 {",
    )
    .unwrap();
    let report = follower.poll(&mut sink, NOW).unwrap();
    assert_eq!(report.counts.records, 1);
    assert_eq!(report.counts.skipped, 1);
    assert_eq!(report.counts.first_skips[0].line, 2);

    let new = dir.path().join("dhcpd.leases~");
    std::fs::write(&new, "lease 100.64.1.1 { starts 1 2026/11/30 05:00:00; binding state active; hardware ethernet 02:00:5e:00:53:01; }\n").unwrap();
    std::fs::rename(&new, &path).unwrap();
    let report = follower.poll(&mut sink, NOW).unwrap();
    assert!(report.reread);
    assert_eq!(report.counts.records, 0);
    assert_eq!(
        report.counts.skipped, 1,
        "the block left unfinished in the old file"
    );
    assert!(report.counts.first_skips[0].reason.contains("replaced"));
}

#[test]
fn an_undated_release_read_live_is_dated_no_later_than_the_clock() {
    let mut tracker = LeaseTracker::new(Source::KeaLease);
    let mut counts = Counts::default();
    let holder = Identity {
        hw_addr: Some("02:00:5e:00:53:01".into()),
        ..Identity::default()
    };
    let state = |held: bool, expires: u64| LeaseState {
        inside_ip: ip(30),
        identity: holder.clone(),
        held,
        cltt_ns: 1_000 * S,
        expires_ns: expires * S,
        ended_ns: None,
    };
    let start = tracker.observe(state(true, 4_600), Some(1_100 * S), &mut counts);
    assert_eq!(start.map(|r| r.change), Some(Change::Start));
    let stop = tracker
        .observe(state(false, 1_000), Some(1_200 * S), &mut counts)
        .unwrap();
    assert_eq!((stop.change, stop.at_ns), (Change::Stop, 1_200 * S));
    // Read again: nothing new.
    assert!(
        tracker
            .observe(state(false, 1_000), Some(1_300 * S), &mut counts)
            .is_none()
    );
    assert_eq!(counts.unchanged, 1);
}

/// Written by a real Kea 2.2.0 (Debian bookworm) with an 8 s lifetime, `hold-reclaimed-time`
/// 4 s: a grant that expires (reclaimed: state 2, hostname cleared; then flushed:
/// valid_lifetime 0), another that expires, and one that is released (valid_lifetime 0,
/// state 0, expire = cltt).
const KEA_2_2_REAL: &str = "\
address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context
100.64.50.10,02:00:5e:00:53:77,01:02:00:5e:00:53:77,8,1796020105,1,0,0,cpeoneco,0,
100.64.50.10,02:00:5e:00:53:77,01:02:00:5e:00:53:77,8,1796020105,1,0,0,,2,
100.64.50.10,02:00:5e:00:53:77,01:02:00:5e:00:53:77,0,1796020097,1,0,0,,2,
100.64.50.10,02:00:5e:00:53:77,01:02:00:5e:00:53:77,8,1796020124,1,0,0,cpeoneco,0,
100.64.50.10,02:00:5e:00:53:77,01:02:00:5e:00:53:77,8,1796020124,1,0,0,,2,
100.64.50.10,02:00:5e:00:53:77,01:02:00:5e:00:53:77,8,1796020135,1,0,0,cpeoneco,0,
100.64.50.10,02:00:5e:00:53:77,01:02:00:5e:00:53:77,0,1796020127,1,0,0,cpeoneco,0,
";

#[test]
fn kea_2_2_as_really_written_on_expiry_and_release() {
    let (records, counts) = run(LeaseFormat::KeaCsv, KEA_2_2_REAL);
    let summary: Vec<(Change, u64, u64)> = records
        .iter()
        .map(|r| (r.change, r.at_ns / S, r.expires_ns / S))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Change::Start, 1_796_020_097, 1_796_020_105),
            (Change::Stop, 1_796_020_105, 0),
            (Change::Start, 1_796_020_116, 1_796_020_124),
            (Change::Stop, 1_796_020_124, 0),
            (Change::Start, 1_796_020_127, 1_796_020_135),
            // Released at 1796020128 by the wall clock; the file does not say when.
            (Change::Stop, 1_796_020_135, 0),
        ]
    );
    assert_eq!((counts.unchanged, counts.skipped), (1, 0));
    assert!(
        records
            .iter()
            .all(|r| r.identity.hostname.as_deref() == Some("cpeoneco"))
    );
}
