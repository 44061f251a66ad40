use super::*;

const EXAMPLE: &str = include_str!("../../tracenat.example.toml");

const MINIMAL: &str = r#"
[interfaces]
inside = "tn-in"
outside = "tn-out"
[pool]
public = ["203.0.113.0/28"]
subscribers = ["100.64.0.0/24"]
"#;

fn minimal_with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

/// The key of the error `text` produces; fails the test if it is accepted.
fn rejected_key(text: &str) -> String {
    match Config::from_toml_str(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error.key().unwrap_or("<no key>").to_owned(),
    }
}

#[test]
fn example_file_parses_with_its_values() {
    let config = Config::from_toml_str(EXAMPLE).expect("example config is valid");
    assert_eq!(config.workers.count, 2);
    assert_eq!(config.workers.cores, vec![0, 1]);
    assert_eq!(config.pool.exclude, vec![Ipv4Addr::new(203, 0, 113, 0)]);
    assert_eq!(config.pool.usable_public_addresses(), 16 + 8 - 1);
    assert_eq!(
        config.allocation.mode,
        AllocationMode::PortBlock {
            block_size: 256,
            max_blocks_per_subscriber: 4
        }
    );
    assert_eq!(config.allocation.seed, Some(7));
    assert_eq!(
        config.interfaces.outside_address,
        Some(Ipv4Addr::new(192, 0, 2, 1))
    );
    assert_eq!(
        config.logging.dir,
        Some(PathBuf::from("/var/lib/tracenat/log"))
    );
}

#[test]
fn absent_keys_take_documented_defaults() {
    let config = Config::from_toml_str(MINIMAL).expect("minimal config is valid");
    assert_eq!(
        config.workers,
        Workers {
            count: 1,
            cores: vec![]
        }
    );
    assert_eq!(config.allocation.mode, AllocationMode::Dynamic);
    assert_eq!(
        (config.allocation.port_min, config.allocation.port_max),
        (1024, 65535)
    );
    assert_eq!(config.allocation.seed, None);
    assert_eq!(
        config.limits,
        Limits {
            max_sessions: 1_048_576,
            sessions_per_subscriber: 10_000,
            ports_per_subscriber: 4_096,
            fragments: 8_192
        }
    );
    assert_eq!(config.timeouts.tcp_established, Duration::from_secs(7440));
    assert_eq!(config.timeouts.tcp_transitory, Duration::from_secs(240));
    assert_eq!(config.timeouts.udp, Duration::from_secs(300));
    assert_eq!(config.timeouts.icmp, Duration::from_secs(60));
    assert_eq!(config.timeouts.fragment, Duration::from_secs(2));
    assert_eq!(config.filtering.mode, FilteringMode::EndpointIndependent);
    assert!(config.filtering.hairpinning);
    assert_eq!(
        config.ttl,
        Ttl {
            expired: TtlExpiredAction::Icmp,
            icmp_rate: 100
        }
    );
    assert_eq!(config.logging.dir, None);
    assert_eq!(config.logging.volume, LogVolume::SessionsWithDestination);
    assert_eq!(config.logging.flush_interval, Duration::from_secs(1));
    assert_eq!(config.interfaces.inside_address, None);
}

#[test]
fn mode_specific_defaults() {
    let block = Config::from_toml_str(&minimal_with("[allocation]\nmode = \"port-block\"\n"));
    assert_eq!(
        block.expect("valid").allocation.mode,
        AllocationMode::PortBlock {
            block_size: 256,
            max_blocks_per_subscriber: 4
        }
    );
    let fixed = Config::from_toml_str(&minimal_with("[allocation]\nmode = \"deterministic\"\n"));
    assert_eq!(
        fixed.expect("valid").allocation.mode,
        AllocationMode::Deterministic {
            ports_per_subscriber: 2000
        }
    );
}

#[test]
fn each_section_rule_names_its_key() {
    let cases: &[(&str, &str)] = &[
        ("[workers]\ncount = 0", "workers.count"),
        ("[workers]\ncount = 257", "workers.count"),
        ("[workers]\ncount = 2\ncores = [0]", "workers.cores"),
        ("[allocation]\nport-min = 80", "allocation.port-min"),
        (
            "[allocation]\nport-min = 5000\nport-max = 4000",
            "allocation.port-min",
        ),
        ("[allocation]\nport-max = 70000", "allocation.port-max"),
        (
            "[allocation]\nmode = \"port-block\"\nblock-size = 0",
            "allocation.block-size",
        ),
        (
            "[allocation]\nmode = \"port-block\"\nblock-size = 100",
            "allocation.block-size",
        ),
        (
            "[allocation]\nmode = \"port-block\"\nport-min = 2000\nport-max = 2099\nblock-size = 128",
            "allocation.block-size",
        ),
        (
            "[allocation]\nmode = \"port-block\"\nmax-blocks-per-subscriber = 0",
            "allocation.max-blocks-per-subscriber",
        ),
        (
            "[allocation]\nmode = \"deterministic\"\nports-per-subscriber = 0",
            "allocation.ports-per-subscriber",
        ),
        ("[limits]\nmax-sessions = 0", "limits.max-sessions"),
        (
            "[limits]\nsessions-per-subscriber = 0",
            "limits.sessions-per-subscriber",
        ),
        (
            "[limits]\nports-per-subscriber = 0",
            "limits.ports-per-subscriber",
        ),
        ("[limits]\nfragments = 0", "limits.fragments"),
        ("[timeouts]\nudp = \"90s\"", "timeouts.udp"),
        (
            "[timeouts]\ntcp-established = \"2h\"",
            "timeouts.tcp-established",
        ),
        (
            "[timeouts]\ntcp-transitory = \"3m59s\"",
            "timeouts.tcp-transitory",
        ),
        ("[timeouts]\nicmp = 59", "timeouts.icmp"),
        ("[timeouts]\nfragment = \"500ms\"", "timeouts.fragment"),
        ("[timeouts]\nfragment = \"61s\"", "timeouts.fragment"),
        ("[timeouts]\nudp = \"five minutes\"", "timeouts.udp"),
        ("[timeouts]\nudp = -5", "timeouts.udp"),
        ("[ttl]\nicmp-rate = 0", "ttl.icmp-rate"),
        (
            "[logging]\nflush-interval = \"0s\"",
            "logging.flush-interval",
        ),
        ("[logging]\nvolume = \"deterministic\"", "logging.volume"),
        ("[logging]\nvolume = \"port-blocks\"", "logging.volume"),
        ("[logging]\nretention = \"1m\"", "logging.retention"),
        ("[logging]\nbox-name = \"cgn 1\"", "logging.box-name"),
        ("[logging]\nbox-name = \"..\"", "logging.box-name"),
        ("[export]\nipfix = [\"collector:4739\"]", "export.ipfix"),
        (
            "[export]\nsyslog = [\"sctp://127.0.0.1:514\"]",
            "export.syslog",
        ),
        ("[export]\nfacility = \"kern\"", "export.facility"),
        (
            "[export]\ntemplate-refresh = \"0s\"",
            "export.template-refresh",
        ),
        ("[logging]\nsegment-size = 1000", "logging.segment-size"),
        (
            "[dataplane]\nmetrics = \"192.0.2.1:9917\"",
            "dataplane.metrics",
        ),
        ("[dataplane]\nmetrics = \"localhost\"", "dataplane.metrics"),
        ("[dataplane]\nframes = 100", "dataplane.frames"),
        ("[dataplane]\nburst = 0", "dataplane.burst"),
        ("[dataplane]\nframes = 256\nburst = 256", "dataplane.frames"),
        (
            "[dataplane]\nrss-profile = \"e1000\"",
            "dataplane.rss-profile",
        ),
        ("[dataplane]\nidle-spin = \"2s\"", "dataplane.idle-spin"),
        ("[dataplane]\nidle-spin = \"200\"", "dataplane.idle-spin"),
        (
            "[dataplane]\nidle-backoff = false\nidle-spin = \"50us\"",
            "dataplane.idle-spin",
        ),
        (
            "[dataplane]\nidle-backoff = \"sometimes\"",
            "dataplane.idle-backoff",
        ),
        ("[dataplane]\nidle-backoff = 1", "dataplane.idle-backoff"),
    ];
    for (extra, key) in cases {
        assert_eq!(rejected_key(&minimal_with(extra)), *key, "for {extra:?}");
    }
}

#[test]
fn gateway_macs_are_read_or_refused_by_key() {
    let ok = with_interfaces(
        "inside = \"a\"\noutside = \"b\"\ninside-gateway-mac = \"02:00:5E:10:00:01\"",
    );
    let config = Config::from_toml_str(&ok).unwrap();
    assert_eq!(
        config.interfaces.inside_gateway_mac,
        Some([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01])
    );
    for bad in [
        "02:00:5e:10:00",
        "02:00:5e:10:00:01:02",
        "0x:00:5e:10:00:01",
        "020:0:5e:10:00:01",
    ] {
        let text = with_interfaces(&format!(
            "inside = \"a\"\noutside = \"b\"\noutside-gateway-mac = \"{bad}\""
        ));
        assert_eq!(
            rejected_key(&text),
            "interfaces.outside-gateway-mac",
            "{bad}"
        );
    }
}

fn with_interfaces(lines: &str) -> String {
    let pool = "[pool]\npublic = [\"192.0.2.0/24\"]\nsubscribers = [\"100.64.0.0/24\"]";
    format!("[interfaces]\n{lines}\n{pool}\n")
}

fn with_pool(public: &[&str], subscribers: &[&str], exclude: &[&str]) -> String {
    let list = |items: &[&str]| {
        let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
        format!("[{}]", quoted.join(", "))
    };
    format!(
        "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
         [pool]\npublic = {}\nsubscribers = {}\nexclude = {}\n",
        list(public),
        list(subscribers),
        list(exclude)
    )
}

#[test]
fn interface_rules_name_their_keys() {
    let cases = [
        ("outside = \"b\"", "interfaces.inside"),
        ("inside = \"a\"", "interfaces.outside"),
        ("inside = \"a\"\noutside = \"a\"", "interfaces.outside"),
        ("inside = \"\"\noutside = \"a\"", "interfaces.inside"),
        (
            "inside = \"a\"\noutside = \"b\"\ninside-address = \"100.64.0\"",
            "interfaces.inside-address",
        ),
    ];
    for (lines, key) in cases {
        assert_eq!(rejected_key(&with_interfaces(lines)), key, "for {lines:?}");
    }
}

#[test]
fn pool_rules_name_their_keys() {
    let subscribers = ["100.64.0.0/24"];
    let public = ["192.0.2.0/24"];
    // (public, subscribers, exclude, key the error must name)
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a str);
    let cases: [Case; 10] = [
        (&[], &subscribers, &[], "pool.public"),
        (&public, &[], &[], "pool.subscribers"),
        (
            &["192.0.2.0/24", "203.0.113.0/33"],
            &subscribers,
            &[],
            "pool.public[1]",
        ),
        (&["192.0.2.1/24"], &subscribers, &[], "pool.public[0]"),
        (
            &["192.0.2.0/24", "192.0.2.128/25"],
            &subscribers,
            &[],
            "pool.public[1]",
        ),
        (
            &public,
            &["100.64.0.0/24", "192.0.2.8/29"],
            &[],
            "pool.subscribers[1]",
        ),
        (
            &public,
            &["100.64.0.0/24", "100.64.0.0/25"],
            &[],
            "pool.subscribers[1]",
        ),
        (&public, &subscribers, &["198.51.100.1"], "pool.exclude[0]"),
        (
            &public,
            &subscribers,
            &["192.0.2.1", "192.0.2.1"],
            "pool.exclude[1]",
        ),
        (&["192.0.2.1"], &subscribers, &["192.0.2.1"], "pool.exclude"),
    ];
    for (public, subscribers, exclude, key) in cases {
        let text = with_pool(public, subscribers, exclude);
        assert_eq!(rejected_key(&text), key, "for\n{text}");
    }
    assert!(Config::from_toml_str(&with_pool(&public, &subscribers, &["192.0.2.1"])).is_ok());
}

#[test]
fn errors_read_well_to_an_operator() {
    let udp = Config::from_toml_str(&minimal_with("[timeouts]\nudp = \"90s\"\n")).unwrap_err();
    assert_eq!(
        udp.to_string(),
        "timeouts.udp: 1m30s is below the 2m minimum of RFC 4787 REQ-5"
    );
    let text = MINIMAL.replace("203.0.113.0/28", "203.0.113.0/33");
    let prefix = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(
        prefix.to_string(),
        "pool.public[0]: \"203.0.113.0/33\" is not an IPv4 prefix: the length \"33\" is not a number from 0 to 32"
    );
}

#[test]
fn deterministic_capacity_says_needed_and_available() {
    // 4096 subscribers, 2000 ports each → 32 per address → 128 addresses needed, 16 given.
    let text = r#"
[interfaces]
inside = "tn-in"
outside = "tn-out"
[pool]
public = ["203.0.113.0/28"]
subscribers = ["100.64.0.0/20"]
[allocation]
mode = "deterministic"
"#;
    let error = Config::from_toml_str(text).unwrap_err();
    assert_eq!(error.key(), Some("allocation.ports-per-subscriber"));
    let message = error.to_string();
    assert!(message.contains("need 128 public addresses"), "{message}");
    assert!(message.contains("has 16"), "{message}");
    let fits = text.replace("100.64.0.0/20", "100.64.0.0/23");
    assert!(Config::from_toml_str(&fits).is_ok());
}

#[test]
fn syntax_errors_carry_line_and_key() {
    let unknown = minimal_with("[timeouts]\nudp = \"5m\"\ntcp = \"2h4m\"\n");
    match Config::from_toml_str(&unknown).unwrap_err() {
        ConfigError::Syntax { key, line, message } => {
            assert_eq!(key.as_deref(), Some("timeouts.tcp"));
            assert_eq!(line, Some(10));
            assert!(message.contains("unknown field"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let bad_mode = minimal_with("[allocation]\nmode = \"random\"\n");
    let error = Config::from_toml_str(&bad_mode).unwrap_err();
    assert_eq!(error.key(), Some("allocation.mode"));
    let broken = Config::from_toml_str("[interfaces\ninside = 1").unwrap_err();
    assert!(
        matches!(broken, ConfigError::Syntax { line: Some(1), .. }),
        "{broken:?}"
    );
}

#[test]
fn load_reports_missing_file_with_its_path() {
    let path = Path::new("/nonexistent/tracenat.toml");
    let error = Config::load(path).unwrap_err();
    assert!(matches!(error, ConfigError::Io { .. }));
    assert!(error.to_string().contains("/nonexistent/tracenat.toml"));
}

#[test]
fn durations_parse() {
    let cases = [
        ("2h4m", 7_440_000),
        ("300s", 300_000),
        ("1.5s", 1500),
        ("250ms", 250),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1h 30m", 5_400_000),
        ("0.25h", 900_000),
    ];
    for (text, millis) in cases {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(millis)),
            "{text}"
        );
    }
    assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
}

#[test]
fn idle_backoff_and_spin_default_and_read() {
    let config = Config::from_toml_str(&minimal_with("")).unwrap();
    assert_eq!(config.dataplane.idle_backoff, IdleBackoff::Auto);
    for (written, read) in [
        ("true", IdleBackoff::Sleep),
        ("false", IdleBackoff::Spin),
        ("\"auto\"", IdleBackoff::Auto),
    ] {
        let extra = format!("[dataplane]\nidle-backoff = {written}");
        let config = Config::from_toml_str(&minimal_with(&extra)).unwrap();
        assert_eq!(config.dataplane.idle_backoff, read, "{written}");
    }
    let extra = "[dataplane]\nidle-backoff = \"auto\"\nidle-spin = \"20us\"";
    let config = Config::from_toml_str(&minimal_with(extra)).unwrap();
    assert_eq!(config.dataplane.idle_spin, Duration::from_micros(20));
    let config = Config::from_toml_str(&minimal_with("")).unwrap();
    assert_eq!(config.dataplane.idle_spin, Duration::ZERO);
    let config = Config::from_toml_str(&minimal_with("[dataplane]\nidle-spin = \"1ms\"")).unwrap();
    assert_eq!(config.dataplane.idle_spin, Duration::from_millis(1));
}

#[test]
fn durations_reject_malformed_text() {
    let cases = [
        ("", DurationError::Empty),
        ("5", DurationError::MissingUnit { number: "5".into() }),
        ("5w", DurationError::UnknownUnit { unit: "w".into() }),
        ("m", DurationError::MissingNumber { rest: "m".into() }),
        ("-5s", DurationError::MissingNumber { rest: "-5s".into() }),
        (
            "1.s",
            DurationError::BadNumber {
                number: "1.".into(),
            },
        ),
        (
            ".5s",
            DurationError::BadNumber {
                number: ".5".into(),
            },
        ),
        (
            "1.2.3s",
            DurationError::BadNumber {
                number: "1.2.3".into(),
            },
        ),
        ("99999999999999999999999h", DurationError::TooLong),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_duration(text), Err(expected), "{text:?}");
    }
}

#[test]
fn durations_format_back_to_config_spelling() {
    assert_eq!(format_duration(Duration::from_secs(7440)), "2h4m");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    assert_eq!(format_duration(Duration::ZERO), "0s");
    assert_eq!(format_duration(Duration::from_micros(1250)), "1ms250us");
}

#[test]
fn prefixes_parse_and_reject() {
    let prefix: Ipv4Prefix = "198.51.100.0/24".parse().unwrap();
    assert_eq!(
        prefix,
        Ipv4Prefix {
            addr: Ipv4Addr::new(198, 51, 100, 0),
            len: 24
        }
    );
    let host: Ipv4Prefix = "192.0.2.7".parse().unwrap();
    assert_eq!(host.len, 32);
    assert_eq!(host.size(), 1);
    let everything: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
    assert!(everything.contains(Ipv4Addr::new(203, 0, 113, 9)));
    assert_eq!(
        "203.0.113.5/24".parse::<Ipv4Prefix>(),
        Err(PrefixError::HostBitsSet("203.0.113.0/24".parse().unwrap()))
    );
    assert_eq!(
        "203.0.113.0/33".parse::<Ipv4Prefix>(),
        Err(PrefixError::BadLength("33".into()))
    );
    assert_eq!(
        "203.0.113.0/".parse::<Ipv4Prefix>(),
        Err(PrefixError::BadLength("".into()))
    );
    assert_eq!(
        "203.0.113/24".parse::<Ipv4Prefix>(),
        Err(PrefixError::BadAddress("203.0.113".into()))
    );
}

#[test]
fn prefixes_overlap_only_when_nested() {
    let wide: Ipv4Prefix = "100.64.0.0/10".parse().unwrap();
    let inner: Ipv4Prefix = "100.64.8.0/24".parse().unwrap();
    let apart: Ipv4Prefix = "198.51.100.0/24".parse().unwrap();
    assert!(wide.overlaps(&inner) && inner.overlaps(&wide));
    assert!(!wide.overlaps(&apart));
}

#[test]
fn summary_mentions_pool_ports_mode_and_workers() {
    let summary = Config::from_toml_str(EXAMPLE).unwrap().summary();
    assert!(summary.contains("23 usable public addresses"), "{summary}");
    assert!(summary.contains("64512 per public address"), "{summary}");
    assert!(summary.contains("port-block"), "{summary}");
    assert!(summary.contains("workers: 2"), "{summary}");
}

#[test]
fn refusal_interval_defaults_to_a_second_and_is_bounded() {
    let cfg = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(cfg.logging.refusal_interval, Duration::from_secs(1));
    let set = minimal_with("[logging]\nrefusal-interval = \"10s\"\n");
    let cfg = Config::from_toml_str(&set).unwrap();
    assert_eq!(cfg.logging.refusal_interval, Duration::from_secs(10));
    for bad in ["\"0s\"", "\"50ms\"", "\"2h\""] {
        let text = minimal_with(&format!("[logging]\nrefusal-interval = {bad}\n"));
        let error = Config::from_toml_str(&text).unwrap_err();
        assert_eq!(error.key(), Some("logging.refusal-interval"), "{bad}");
    }
}

#[test]
fn metrics_stay_on_loopback_unless_remote_is_asked_for() {
    let remote = minimal_with("[dataplane]\nmetrics = \"192.0.2.1:9917\"\n");
    let error = Config::from_toml_str(&remote).unwrap_err();
    assert_eq!(error.key(), Some("dataplane.metrics"));
    assert!(error.to_string().contains("metrics-remote"), "{error}");
    let asked = minimal_with("[dataplane]\nmetrics = \"192.0.2.1:9917\"\nmetrics-remote = true\n");
    let cfg = Config::from_toml_str(&asked).unwrap();
    assert_eq!(
        cfg.dataplane.metrics,
        Some("192.0.2.1:9917".parse().unwrap())
    );
    let local = minimal_with("[dataplane]\nmetrics = \"127.0.0.1:9917\"\n");
    assert!(Config::from_toml_str(&local).is_ok());
}

#[test]
fn the_process_user_is_optional_never_root_and_the_group_needs_a_user() {
    let cfg = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(cfg.process, Process::default());
    let set = minimal_with("[process]\nuser = \"tracenat\"\ngroup = \"nat\"\n");
    let cfg = Config::from_toml_str(&set).unwrap();
    assert_eq!(cfg.process.user.as_deref(), Some("tracenat"));
    assert_eq!(cfg.process.group.as_deref(), Some("nat"));
    for (text, key) in [
        ("[process]\nuser = \"root\"\n", "process.user"),
        ("[process]\nuser = \"a b\"\n", "process.user"),
        ("[process]\nuser = \"\"\n", "process.user"),
        ("[process]\ngroup = \"nat\"\n", "process.group"),
    ] {
        let error = Config::from_toml_str(&minimal_with(text)).unwrap_err();
        assert_eq!(error.key(), Some(key), "{text}");
    }
}
