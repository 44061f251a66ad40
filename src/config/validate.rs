//! Validation: raw → typed, stopping at the first problem.

use super::*;

impl Config {
    /// Parses and validates a configuration; the error names the key to fix.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: raw::File =
            toml::from_str(text).map_err(|error| ConfigError::from_toml(text, &error))?;
        build(raw)
    }

    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }
}

pub(super) fn build(raw: raw::File) -> Result<Config, ConfigError> {
    let config = Config {
        interfaces: interfaces(raw.interfaces)?,
        workers: workers(raw.workers)?,
        pool: pool(raw.pool)?,
        allocation: allocation(raw.allocation)?,
        limits: limits(raw.limits)?,
        timeouts: timeouts(raw.timeouts)?,
        filtering: filtering(raw.filtering),
        ttl: ttl(raw.ttl)?,
        logging: logging(raw.logging)?,
        dataplane: dataplane(raw.dataplane)?,
        identity: super::identity::identity(raw.identity)?,
        export: super::export::export(raw.export)?,
        process: process(raw.process)?,
    };
    check_deterministic_capacity(&config)?;
    check_log_volume(&config)?;
    Ok(config)
}

fn process(raw: raw::Process) -> Result<super::Process, ConfigError> {
    let name = |key: &str, value: Option<String>| match value {
        Some(v)
            if v.is_empty() || v.contains(['\0', ':', '/']) || v.contains(char::is_whitespace) =>
        {
            Err(invalid(key, format!("{v:?} is not a user or group name")))
        }
        Some(v) if key == "process.user" && v == "root" => Err(invalid(
            key,
            "root keeps every privilege: name an unprivileged user, or leave the key out",
        )),
        v => Ok(v),
    };
    let user = name("process.user", raw.user)?;
    let group = name("process.group", raw.group)?;
    if group.is_some() && user.is_none() {
        return Err(invalid("process.group", "needs process.user"));
    }
    Ok(super::Process { user, group })
}

/// `value` converted to `T` if it lies in `range`; otherwise an error naming the bound.
pub(super) fn integer<T: TryFrom<i64>>(
    key: &str,
    value: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<T, ConfigError> {
    if value < *range.start() {
        return Err(invalid(
            key,
            format!("{value} is below the minimum of {}", range.start()),
        ));
    }
    if value > *range.end() {
        return Err(invalid(
            key,
            format!("{value} is above the maximum of {}", range.end()),
        ));
    }
    T::try_from(value).map_err(|_| invalid(key, format!("{value} does not fit")))
}

pub(super) fn interfaces(raw: raw::Interfaces) -> Result<Interfaces, ConfigError> {
    let inside = interface_name("interfaces.inside", raw.inside)?;
    let outside = interface_name("interfaces.outside", raw.outside)?;
    if inside == outside {
        return Err(invalid(
            "interfaces.outside",
            format!("{outside:?} is also the inside interface; the two sides must differ"),
        ));
    }
    Ok(Interfaces {
        inside,
        outside,
        inside_address: optional_address("interfaces.inside-address", raw.inside_address)?,
        outside_address: optional_address("interfaces.outside-address", raw.outside_address)?,
        inside_gateway: optional_address("interfaces.inside-gateway", raw.inside_gateway)?,
        outside_gateway: optional_address("interfaces.outside-gateway", raw.outside_gateway)?,
        inside_gateway_mac: optional_mac("interfaces.inside-gateway-mac", raw.inside_gateway_mac)?,
        outside_gateway_mac: optional_mac(
            "interfaces.outside-gateway-mac",
            raw.outside_gateway_mac,
        )?,
    })
}

/// A MAC address written `02:00:5e:10:00:01`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub(super) fn optional_mac(
    key: &str,
    text: Option<String>,
) -> Result<Option<[u8; 6]>, ConfigError> {
    text.map(|text| {
        parse_mac(&text).ok_or_else(|| {
            invalid(
                key,
                format!("{text:?} is not a MAC address (write it like \"02:00:5e:10:00:01\")"),
            )
        })
    })
    .transpose()
}

pub(super) fn dataplane(raw: raw::Dataplane) -> Result<Dataplane, ConfigError> {
    let metrics = match raw.metrics {
        None => None,
        Some(text) => {
            let addr: std::net::SocketAddr = text.parse().map_err(|_| {
                invalid(
                    "dataplane.metrics",
                    format!("{text:?} is not an address and port like \"127.0.0.1:9917\""),
                )
            })?;
            if !addr.ip().is_loopback() && raw.metrics_remote != Some(true) {
                return Err(invalid(
                    "dataplane.metrics",
                    format!(
                        "{addr} is not a loopback address: the counters tell anyone who can reach them how loaded the box is; set dataplane.metrics-remote = true to serve them there anyway"
                    ),
                ));
            }
            Some(addr)
        }
    };
    let burst: u16 = integer("dataplane.burst", raw.burst.unwrap_or(64), 1..=1024)?;
    let frames: u32 = integer(
        "dataplane.frames",
        raw.frames.unwrap_or(8192),
        256..=1 << 20,
    )?;
    // Each socket's fill ring is stocked with a quarter of the frames, and that must be a
    // burst at least twice over; with fewer, the inside socket would take them all.
    let least_frames = 8 * u32::from(burst);
    if frames < least_frames {
        return Err(invalid(
            "dataplane.frames",
            format!(
                "{frames} frames cannot keep both sockets stocked for bursts of {burst}: \
                 at least {least_frames} (8 × dataplane.burst)"
            ),
        ));
    }
    let rss_profile = raw.rss_profile.unwrap_or_else(|| "veth".to_owned());
    if crate::rss::plan::Profile::builtin(&rss_profile).is_err() {
        let known: Vec<&str> = crate::rss::plan::Profile::names().collect();
        return Err(invalid(
            "dataplane.rss-profile",
            format!(
                "{rss_profile:?} is not a NIC profile; known: {}",
                known.join(", ")
            ),
        ));
    }
    let idle_backoff = idle_backoff(raw.idle_backoff)?;
    Ok(Dataplane {
        rss_profile,
        burst,
        frames,
        zero_copy: raw.zero_copy.unwrap_or(true),
        idle_backoff,
        idle_spin: idle_spin(raw.idle_spin, idle_backoff)?,
        metrics,
    })
}

fn idle_backoff(raw: Option<toml::Value>) -> Result<IdleBackoff, ConfigError> {
    match raw {
        None => Ok(IdleBackoff::Auto),
        Some(toml::Value::Boolean(true)) => Ok(IdleBackoff::Sleep),
        Some(toml::Value::Boolean(false)) => Ok(IdleBackoff::Spin),
        Some(toml::Value::String(word)) if word == "auto" => Ok(IdleBackoff::Auto),
        Some(other) => Err(invalid(
            "dataplane.idle-backoff",
            format!("{other} is not true, false or \"auto\""),
        )),
    }
}

/// How long a worker polls after its last packet before sleeping; not with a worker that
/// never sleeps.
fn idle_spin(
    raw: Option<raw::DurationValue>,
    idle_backoff: IdleBackoff,
) -> Result<Duration, ConfigError> {
    const KEY: &str = "dataplane.idle-spin";
    if raw.is_some() && idle_backoff == IdleBackoff::Spin {
        return Err(invalid(
            KEY,
            "has no effect with dataplane.idle-backoff = false (the workers never sleep); remove one of them",
        ));
    }
    let spin = duration(KEY, raw, defaults::IDLE_SPIN)?;
    if spin > defaults::IDLE_SPIN_MAX {
        return Err(invalid(
            KEY,
            format!(
                "{} is above {}; to never sleep set dataplane.idle-backoff = false",
                format_duration(spin),
                format_duration(defaults::IDLE_SPIN_MAX)
            ),
        ));
    }
    Ok(spin)
}

pub(super) fn interface_name(key: &str, name: Option<String>) -> Result<String, ConfigError> {
    match name {
        None => Err(invalid(
            key,
            "is required (the name of a network interface)",
        )),
        Some(name) if name.trim().is_empty() => Err(invalid(key, "must not be empty")),
        Some(name) => Ok(name),
    }
}

pub(super) fn optional_address(
    key: &str,
    text: Option<String>,
) -> Result<Option<Ipv4Addr>, ConfigError> {
    text.map(|text| {
        text.parse()
            .map_err(|_| invalid(key, format!("{text:?} is not an IPv4 address")))
    })
    .transpose()
}

pub(super) fn workers(raw: raw::Workers) -> Result<Workers, ConfigError> {
    let count: u16 = integer(
        "workers.count",
        raw.count.unwrap_or(defaults::WORKERS),
        1..=MAX_WORKERS,
    )?;
    let cores = raw.cores.unwrap_or_default();
    if !cores.is_empty() && cores.len() != usize::from(count) {
        return Err(invalid(
            "workers.cores",
            format!(
                "lists {} cores but workers.count is {count}; give one core per worker or leave it out",
                cores.len()
            ),
        ));
    }
    Ok(Workers { count, cores })
}

pub(super) fn pool(raw: raw::Pool) -> Result<Pool, ConfigError> {
    let public = prefixes("pool.public", &raw.public)?;
    let subscribers = prefixes("pool.subscribers", &raw.subscribers)?;
    check_disjoint_within("pool.public", &public)?;
    check_disjoint_within("pool.subscribers", &subscribers)?;
    check_subscribers_not_public(&public, &subscribers)?;
    let exclude = excluded_addresses(&raw.exclude, &public)?;
    let pool = Pool {
        public,
        subscribers,
        exclude,
    };
    if pool.usable_public_addresses() == 0 {
        return Err(invalid(
            "pool.exclude",
            "excludes every public address, leaving none to translate to",
        ));
    }
    Ok(pool)
}

pub(super) fn prefixes(key: &str, texts: &[String]) -> Result<Vec<Ipv4Prefix>, ConfigError> {
    if texts.is_empty() {
        return Err(invalid(key, "needs at least one prefix"));
    }
    let parse = |(index, text): (usize, &String)| {
        text.parse().map_err(|error: PrefixError| {
            invalid(
                format!("{key}[{index}]"),
                format!("{text:?} is not an IPv4 prefix: {error}"),
            )
        })
    };
    texts.iter().enumerate().map(parse).collect()
}

/// Overlapping entries would count addresses twice (and hand them out twice).
pub(super) fn check_disjoint_within(key: &str, prefixes: &[Ipv4Prefix]) -> Result<(), ConfigError> {
    for (index, prefix) in prefixes.iter().enumerate() {
        if let Some(earlier) = prefixes[..index].iter().position(|p| p.overlaps(prefix)) {
            return Err(invalid(
                format!("{key}[{index}]"),
                format!("{prefix} overlaps {key}[{earlier}] ({})", prefixes[earlier]),
            ));
        }
    }
    Ok(())
}

pub(super) fn check_subscribers_not_public(
    public: &[Ipv4Prefix],
    subscribers: &[Ipv4Prefix],
) -> Result<(), ConfigError> {
    for (index, subscriber) in subscribers.iter().enumerate() {
        if let Some(clash) = public.iter().position(|p| p.overlaps(subscriber)) {
            return Err(invalid(
                format!("pool.subscribers[{index}]"),
                format!(
                    "{subscriber} overlaps pool.public[{clash}] ({}); an address cannot be both",
                    public[clash]
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn excluded_addresses(
    texts: &[String],
    public: &[Ipv4Prefix],
) -> Result<Vec<Ipv4Addr>, ConfigError> {
    let mut addresses: Vec<Ipv4Addr> = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let key = format!("pool.exclude[{index}]");
        let address: Ipv4Addr = text
            .parse()
            .map_err(|_| invalid(&key, format!("{text:?} is not an IPv4 address")))?;
        if !public.iter().any(|p| p.contains(address)) {
            return Err(invalid(
                key,
                format!("{address} is not in pool.public, so excluding it has no effect"),
            ));
        }
        if addresses.contains(&address) {
            return Err(invalid(key, format!("{address} is listed twice")));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

impl Pool {
    /// Public addresses available for mappings: the public prefixes minus the exclusions.
    pub fn usable_public_addresses(&self) -> u64 {
        let total: u64 = self.public.iter().map(Ipv4Prefix::size).sum();
        total.saturating_sub(self.exclude.len() as u64)
    }

    /// Subscriber (inside) addresses covered by the subscriber prefixes.
    pub fn subscriber_addresses(&self) -> u64 {
        self.subscribers.iter().map(Ipv4Prefix::size).sum()
    }
}

impl Allocation {
    /// Number of ports in `port_min..=port_max` (0 if the bounds are reversed).
    pub fn port_range_size(&self) -> u32 {
        (u32::from(self.port_max) + 1).saturating_sub(u32::from(self.port_min))
    }
}

pub(super) fn allocation(raw: raw::Allocation) -> Result<Allocation, ConfigError> {
    let port_min: u16 = integer(
        "allocation.port-min",
        raw.port_min.unwrap_or(defaults::PORT_MIN),
        0..=65535,
    )?;
    let port_max: u16 = integer(
        "allocation.port-max",
        raw.port_max.unwrap_or(defaults::PORT_MAX),
        0..=65535,
    )?;
    if i64::from(port_min) < LOWEST_ALLOCATABLE_PORT {
        return Err(invalid(
            "allocation.port-min",
            format!("{port_min} is below 1024; ports below 1024 are never allocated"),
        ));
    }
    if port_min > port_max {
        return Err(invalid(
            "allocation.port-min",
            format!("{port_min} is above allocation.port-max ({port_max})"),
        ));
    }
    let range_size = i64::from(port_max) - i64::from(port_min) + 1;
    let mode = match raw.mode.unwrap_or(raw::ModeName::Dynamic) {
        raw::ModeName::Dynamic => AllocationMode::Dynamic,
        raw::ModeName::PortBlock => port_block_mode(&raw, range_size)?,
        raw::ModeName::Deterministic => AllocationMode::Deterministic {
            ports_per_subscriber: integer(
                "allocation.ports-per-subscriber",
                raw.ports_per_subscriber
                    .unwrap_or(defaults::DETERMINISTIC_PORTS_PER_SUBSCRIBER),
                1..=range_size,
            )?,
        },
    };
    Ok(Allocation {
        mode,
        port_min,
        port_max,
        seed: raw.seed,
    })
}

pub(super) fn port_block_mode(
    raw: &raw::Allocation,
    range_size: i64,
) -> Result<AllocationMode, ConfigError> {
    let block_size: u16 = integer(
        "allocation.block-size",
        raw.block_size.unwrap_or(defaults::BLOCK_SIZE),
        1..=range_size,
    )?;
    // Power-of-two blocks keep block arithmetic to shifts and masks.
    if !block_size.is_power_of_two() {
        return Err(invalid(
            "allocation.block-size",
            format!("{block_size} is not a power of two (e.g. 64, 256, 1024)"),
        ));
    }
    let max_blocks_per_subscriber = integer(
        "allocation.max-blocks-per-subscriber",
        raw.max_blocks_per_subscriber
            .unwrap_or(defaults::MAX_BLOCKS_PER_SUBSCRIBER),
        1..=i64::from(u16::MAX),
    )?;
    Ok(AllocationMode::PortBlock {
        block_size,
        max_blocks_per_subscriber,
    })
}

pub(super) fn limits(raw: raw::Limits) -> Result<Limits, ConfigError> {
    let limit = |key: &str, value: Option<i64>, default: i64| {
        integer(key, value.unwrap_or(default), 1..=U32_MAX)
    };
    Ok(Limits {
        max_sessions: limit(
            "limits.max-sessions",
            raw.max_sessions,
            defaults::MAX_SESSIONS,
        )?,
        sessions_per_subscriber: limit(
            "limits.sessions-per-subscriber",
            raw.sessions_per_subscriber,
            defaults::SESSIONS_PER_SUBSCRIBER,
        )?,
        ports_per_subscriber: limit(
            "limits.ports-per-subscriber",
            raw.ports_per_subscriber,
            defaults::PORTS_PER_SUBSCRIBER,
        )?,
        fragments: limit("limits.fragments", raw.fragments, defaults::FRAGMENTS)?,
    })
}

pub(super) fn timeouts(raw: raw::Timeouts) -> Result<Timeouts, ConfigError> {
    let fragment = duration("timeouts.fragment", raw.fragment, defaults::FRAGMENT)?;
    if !FRAGMENT_RANGE.contains(&fragment) {
        return Err(invalid(
            "timeouts.fragment",
            format!(
                "{} is outside {}..={}; fragments of one datagram arrive together, waiting longer only holds memory",
                format_duration(fragment),
                format_duration(*FRAGMENT_RANGE.start()),
                format_duration(*FRAGMENT_RANGE.end()),
            ),
        ));
    }
    Ok(Timeouts {
        tcp_established: timeout(
            "timeouts.tcp-established",
            raw.tcp_established,
            defaults::TCP_ESTABLISHED,
            TCP_ESTABLISHED_MINIMUM,
        )?,
        tcp_transitory: timeout(
            "timeouts.tcp-transitory",
            raw.tcp_transitory,
            defaults::TCP_TRANSITORY,
            TCP_TRANSITORY_MINIMUM,
        )?,
        udp: timeout("timeouts.udp", raw.udp, defaults::UDP, UDP_MINIMUM)?,
        icmp: timeout("timeouts.icmp", raw.icmp, defaults::ICMP, ICMP_MINIMUM)?,
        fragment,
    })
}

pub(super) fn timeout(
    key: &str,
    raw: Option<raw::DurationValue>,
    default: Duration,
    minimum: Minimum,
) -> Result<Duration, ConfigError> {
    let value = duration(key, raw, default)?;
    if value < minimum.value {
        return Err(invalid(
            key,
            format!(
                "{} is below the {} minimum of {}",
                format_duration(value),
                format_duration(minimum.value),
                minimum.source
            ),
        ));
    }
    Ok(value)
}

pub(super) fn duration(
    key: &str,
    raw: Option<raw::DurationValue>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(raw::DurationValue::Seconds(seconds)) => u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| invalid(key, format!("{seconds} seconds is negative"))),
        Some(raw::DurationValue::Text(text)) => parse_duration(&text).map_err(|error| {
            invalid(
                key,
                format!(
                    "{text:?} is not a duration ({error}); write it like \"2h4m\", \"90s\", \"1.5s\" or \"250ms\""
                ),
            )
        }),
    }
}

pub(super) fn filtering(raw: raw::Filtering) -> Filtering {
    Filtering {
        mode: raw.mode.unwrap_or(FilteringMode::EndpointIndependent),
        hairpinning: raw.hairpinning.unwrap_or(true),
    }
}

pub(super) fn ttl(raw: raw::Ttl) -> Result<Ttl, ConfigError> {
    let icmp_rate = raw.icmp_rate.unwrap_or(defaults::ICMP_RATE);
    if icmp_rate == 0 {
        return Err(invalid(
            "ttl.icmp-rate",
            "must be at least 1; to send no ICMP errors set ttl.expired = \"drop\"",
        ));
    }
    Ok(Ttl {
        expired: raw.expired.unwrap_or(TtlExpiredAction::Icmp),
        icmp_rate: integer("ttl.icmp-rate", icmp_rate, 1..=U32_MAX)?,
    })
}

pub(super) fn logging(raw: raw::Logging) -> Result<Logging, ConfigError> {
    let flush_interval = duration(
        "logging.flush-interval",
        raw.flush_interval,
        defaults::FLUSH_INTERVAL,
    )?;
    if flush_interval.is_zero() {
        return Err(invalid(
            "logging.flush-interval",
            "must be greater than zero",
        ));
    }
    let segment_size = raw.segment_size.unwrap_or(defaults::SEGMENT_SIZE);
    if !(1 << 20..=1 << 40).contains(&segment_size) {
        return Err(invalid(
            "logging.segment-size",
            format!("{segment_size} bytes is outside 1 MiB to 1 TiB"),
        ));
    }
    let segment_age = duration(
        "logging.segment-age",
        raw.segment_age,
        defaults::SEGMENT_AGE,
    )?;
    if segment_age < Duration::from_secs(1) {
        return Err(invalid("logging.segment-age", "must be at least 1s"));
    }
    let retention = match raw.retention {
        None => None,
        Some(value) => Some(duration("logging.retention", Some(value), Duration::ZERO)?),
    };
    if let Some(retention) = retention
        && retention < segment_age
    {
        return Err(invalid(
            "logging.retention",
            format!(
                "{} is shorter than logging.segment-age ({}): a segment would be deleted while written",
                format_duration(retention),
                format_duration(segment_age)
            ),
        ));
    }
    let refusal_interval = duration(
        "logging.refusal-interval",
        raw.refusal_interval,
        defaults::REFUSAL_INTERVAL,
    )?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&refusal_interval) {
        return Err(invalid(
            "logging.refusal-interval",
            format!(
                "{} is outside 100ms to 1h",
                format_duration(refusal_interval)
            ),
        ));
    }
    Ok(Logging {
        refusal_interval,
        dir: raw.dir.map(PathBuf::from),
        volume: raw.volume.unwrap_or(LogVolume::SessionsWithDestination),
        flush_interval,
        segment_size: segment_size as u64,
        segment_age,
        retention,
        on_backpressure: raw
            .on_backpressure
            .unwrap_or(BackpressurePolicy::RefuseSessions),
        direct_io: raw.direct_io.unwrap_or(true),
        box_name: match raw.box_name {
            Some(name) if !super::valid_box_name(&name) => {
                return Err(invalid(
                    "logging.box-name",
                    format!("{name:?}: use 1 to 64 letters, digits, '-', '_' and '.'"),
                ));
            }
            name => name,
        },
    })
}

/// Deterministic NAT gives every subscriber address a fixed slice of one public address,
/// so the subscriber space must fit into the public addresses × slices per address.
pub(super) fn check_deterministic_capacity(config: &Config) -> Result<(), ConfigError> {
    let AllocationMode::Deterministic {
        ports_per_subscriber,
    } = config.allocation.mode
    else {
        return Ok(());
    };
    let per_address =
        u64::from(config.allocation.port_range_size() / u32::from(ports_per_subscriber));
    let subscribers = config.pool.subscriber_addresses();
    let available = config.pool.usable_public_addresses();
    let needed = subscribers.div_ceil(per_address.max(1));
    if needed > available {
        return Err(invalid(
            "allocation.ports-per-subscriber",
            format!(
                "{subscribers} subscriber addresses with {ports_per_subscriber} ports each \
                 ({per_address} per public address) need {needed} public addresses, \
                 but pool.public has {available}"
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_log_volume(config: &Config) -> Result<(), ConfigError> {
    let deterministic_allocation =
        matches!(config.allocation.mode, AllocationMode::Deterministic { .. });
    if config.logging.volume == LogVolume::Deterministic && !deterministic_allocation {
        return Err(invalid(
            "logging.volume",
            "\"deterministic\" logs no mappings, which is only traceable with allocation.mode = \"deterministic\"",
        ));
    }
    let block_allocation = matches!(config.allocation.mode, AllocationMode::PortBlock { .. });
    if config.logging.volume == LogVolume::PortBlocks && !block_allocation {
        return Err(invalid(
            "logging.volume",
            "\"port-blocks\" logs only port blocks, which exist only with allocation.mode = \"port-block\"",
        ));
    }
    Ok(())
}
