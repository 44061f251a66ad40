//! Configuration: the TOML file an operator writes, validated once into typed settings.
//!
//! CONTRACT (the engine relies on these types and field names; parsing/validation may grow):
//! `Config::from_toml_str(&str) -> Result<Config, ConfigError>` and `Config::load(path)`.
//!
//! Parsing happens in two steps: serde reads the file into loosely typed `raw` structs
//! (every key optional, unknown keys rejected), then `build` validates them into the typed
//! structs below. Validation stops at the first problem and reports it with the dotted key
//! the operator has to edit, so one run of `tracenat config check` points at one line.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// An IPv4 prefix such as 203.0.113.0/24 (host bits must be zero).
///
/// Parses from "203.0.113.0/24" or a bare address (meaning /32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    /// Number of addresses covered.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.len as u32)
    }
    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len as u32)
        };
        (u32::from(ip) & mask) == u32::from(self.addr)
    }
    /// The `i`-th address of the prefix (no bounds check beyond `size`).
    pub fn nth(&self, i: u64) -> Option<Ipv4Addr> {
        (i < self.size()).then(|| Ipv4Addr::from(u32::from(self.addr) + i as u32))
    }
    /// Whether the two prefixes share at least one address. Prefixes either nest or are
    /// disjoint, so it is enough to test each base address against the other prefix.
    pub fn overlaps(&self, other: &Ipv4Prefix) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationMode {
    /// A port per mapping, chosen at random from the worker's free ports.
    Dynamic,
    /// Blocks of `block_size` contiguous ports handed to a subscriber on demand.
    PortBlock {
        block_size: u16,
        max_blocks_per_subscriber: u16,
    },
    /// RFC 7422: subscriber → (public IP, port range) computed from config alone.
    Deterministic { ports_per_subscriber: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilteringMode {
    EndpointIndependent,
    AddressAndPortDependent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TtlExpiredAction {
    /// Answer with ICMP time-exceeded (rate limited), then drop.
    Icmp,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogVolume {
    SessionsWithDestination,
    SessionsWithoutDestination,
    PortBlocks,
    Deterministic,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interfaces {
    pub inside: String,
    pub outside: String,
    /// The NAT's own address on each side: source of ICMP errors it generates, and traffic
    /// to it is passed to the kernel.
    pub inside_address: Option<Ipv4Addr>,
    pub outside_address: Option<Ipv4Addr>,
    /// Next hop on each side: the router towards the subscribers and the upstream router.
    /// Their MAC addresses come from the kernel's neighbour table unless given.
    pub inside_gateway: Option<Ipv4Addr>,
    pub outside_gateway: Option<Ipv4Addr>,
    pub inside_gateway_mac: Option<[u8; 6]>,
    pub outside_gateway_mac: Option<[u8; 6]>,
}

/// The AF_XDP packet path (`tracenat run`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataplane {
    /// Frames received or sent per ring operation.
    pub burst: u16,
    /// UMEM frames per worker (shared by its inside and outside sockets), 256 to 1 Mi.
    pub frames: u32,
    /// Ask for zero-copy sockets (the driver may refuse; copy mode is then used).
    pub zero_copy: bool,
    /// Sleep briefly in poll(2) when idle instead of spinning.
    pub idle_backoff: bool,
    /// Where `tracenat run` serves Prometheus metrics (and `tracenat stats` reads them);
    /// loopback only.
    pub metrics: Option<std::net::SocketAddr>,
    /// The NIC profile (hw/): with RSS set up as `tracenat hw plan` prints, each worker gets
    /// the public ports whose return traffic its queue receives. "veth": no RSS, handoff.
    pub rss_profile: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workers {
    pub count: u16,
    /// CPU cores to pin worker i to; empty means "choose".
    pub cores: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub public: Vec<Ipv4Prefix>,
    pub subscribers: Vec<Ipv4Prefix>,
    /// Public addresses never handed out (e.g. the NAT's own address).
    pub exclude: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub mode: AllocationMode,
    /// Lowest and highest port handed out; the lowest is never below 1024.
    pub port_min: u16,
    pub port_max: u16,
    /// Seed for port randomisation when the configuration fixes one. Unset, `tracenat run`
    /// draws a fresh one at every start (the port order must not be predictable from one
    /// start to the next) and `replay` uses 0, so replays are reproducible.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Session table capacity per worker.
    pub max_sessions: u32,
    pub sessions_per_subscriber: u32,
    /// Mappings (public ports) per subscriber and protocol.
    pub ports_per_subscriber: u32,
    /// Fragment-tracking entries per worker.
    pub fragments: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub tcp_established: Duration,
    pub tcp_transitory: Duration,
    pub udp: Duration,
    pub icmp: Duration,
    pub fragment: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filtering {
    pub mode: FilteringMode,
    pub hairpinning: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ttl {
    pub expired: TtlExpiredAction,
    /// ICMP errors generated per second per worker.
    pub icmp_rate: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Logging {
    pub dir: Option<std::path::PathBuf>,
    pub volume: LogVolume,
    pub flush_interval: Duration,
    /// A segment is closed and a new one begun past this size…
    pub segment_size: u64,
    /// …or this age.
    pub segment_age: Duration,
    /// Segments whose newest record is older than this are deleted; `None` keeps all.
    pub retention: Option<Duration>,
    pub on_backpressure: BackpressurePolicy,
    /// Try O_DIRECT writes (falls back to buffered where the filesystem refuses).
    pub direct_io: bool,
}

/// What happens when the mapping log cannot take more records (disk slow or full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackpressurePolicy {
    /// New sessions are refused (counted); established sessions keep flowing. No session
    /// is ever translated without its creation record in the log pipeline.
    RefuseSessions,
    /// Sessions are translated anyway and the records that do not fit are dropped and
    /// counted as lost. For operators who put service above traceability.
    DropRecords,
}

impl BackpressurePolicy {
    pub fn name(self) -> &'static str {
        match self {
            BackpressurePolicy::RefuseSessions => "refuse-sessions",
            BackpressurePolicy::DropRecords => "drop-records",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub interfaces: Interfaces,
    pub workers: Workers,
    pub pool: Pool,
    pub allocation: Allocation,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    pub ttl: Ttl,
    pub logging: Logging,
    pub dataplane: Dataplane,
}

// ---------------------------------------------------------------------------
// Errors

/// Why a configuration could not be used. Each variant tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{}", describe_syntax(key.as_deref(), *line, message))]
    Syntax {
        /// Dotted key the problem is at, when it could be recovered.
        key: Option<String>,
        /// 1-based line number.
        line: Option<usize>,
        message: String,
    },
    /// Well-formed, but a setting is unacceptable.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// The dotted key (e.g. `timeouts.udp`) the error is about, when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    fn from_toml(input: &str, error: &toml::de::Error) -> Self {
        let location = error.span().map(|span| locate(input, span.start));
        ConfigError::Syntax {
            key: location.as_ref().and_then(|at| at.key.clone()),
            line: location.map(|at| at.line),
            message: error.message().trim_end().to_owned(),
        }
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

fn describe_syntax(key: Option<&str>, line: Option<usize>, message: &str) -> String {
    match (key, line) {
        (Some(key), Some(line)) => format!("{key} (line {line}): {message}"),
        (None, Some(line)) => format!("line {line}: {message}"),
        (Some(key), None) => format!("{key}: {message}"),
        (None, None) => message.to_owned(),
    }
}

/// A position in the TOML text: 1-based line and, best effort, the dotted key there.
struct Location {
    line: usize,
    key: Option<String>,
}

/// toml's error carries a byte span but does not expose its key path, so the key is
/// recovered from the text: the nearest `[table]` header above and the last `key =` at or
/// above the line (the latter covers arrays spread over several lines).
fn locate(input: &str, offset: usize) -> Location {
    let before = input.get(..offset).unwrap_or(input);
    let line_index = before.matches('\n').count();
    let mut table: Option<&str> = None;
    let mut key: Option<&str> = None;
    for line in input.lines().take(line_index + 1) {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(header) = table_header(line) {
            table = Some(header);
            key = None;
        } else if let Some((name, _)) = line.split_once('=') {
            key = Some(name.trim().trim_matches('"'));
        }
    }
    let key = match (table, key) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (table, key) => table.or(key).map(str::to_owned),
    };
    Location {
        line: line_index + 1,
        key,
    }
}

fn table_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let inner = inner.strip_suffix(']').unwrap_or(inner);
    Some(inner.trim())
}

// ---------------------------------------------------------------------------
// Durations

const SECOND_NS: u128 = 1_000_000_000;

/// Why a duration such as "2h4m" could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("it is empty")]
    Empty,
    #[error("expected a number at {rest:?}")]
    MissingNumber { rest: String },
    #[error("{number} has no unit")]
    MissingUnit { number: String },
    #[error("{unit:?} is not a unit")]
    UnknownUnit { unit: String },
    #[error("{number:?} is not a number with at most 9 decimal places")]
    BadNumber { number: String },
    #[error("it is negative")]
    Negative,
    #[error("it is too long")]
    TooLong,
}

/// Parses durations written as a sequence of `<number><unit>` parts, units `d`, `h`, `m`,
/// `s` and `ms`: "2h4m", "300s", "1.5s", "250ms", "180d".
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let (number, after_number) = split_leading(rest, |c| c.is_ascii_digit() || c == '.');
        if number.is_empty() {
            return Err(DurationError::MissingNumber {
                rest: rest.to_owned(),
            });
        }
        let (unit, after_unit) = split_leading(after_number, |c| c.is_ascii_alphabetic());
        let part = scaled(number, unit_nanos(number, unit)?)?;
        total_ns = total_ns.checked_add(part).ok_or(DurationError::TooLong)?;
        rest = after_unit.trim_start();
    }
    let nanos = u64::try_from(total_ns).map_err(|_| DurationError::TooLong)?;
    Ok(Duration::from_nanos(nanos))
}

/// Splits `text` after its longest prefix of characters matching `wanted`.
fn split_leading(text: &str, wanted: impl Fn(char) -> bool) -> (&str, &str) {
    let end = text
        .char_indices()
        .find(|&(_, c)| !wanted(c))
        .map_or(text.len(), |(at, _)| at);
    text.split_at(end)
}

fn unit_nanos(number: &str, unit: &str) -> Result<u128, DurationError> {
    match unit {
        "d" => Ok(86400 * SECOND_NS),
        "h" => Ok(3600 * SECOND_NS),
        "m" => Ok(60 * SECOND_NS),
        "s" => Ok(SECOND_NS),
        "ms" => Ok(SECOND_NS / 1000),
        "" => Err(DurationError::MissingUnit {
            number: number.to_owned(),
        }),
        other => Err(DurationError::UnknownUnit {
            unit: other.to_owned(),
        }),
    }
}

/// `number` (digits with an optional fraction) times `unit_ns`.
fn scaled(number: &str, unit_ns: u128) -> Result<u128, DurationError> {
    let bad = || DurationError::BadNumber {
        number: number.to_owned(),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let malformed = whole.is_empty() || fraction.contains('.') || number.ends_with('.');
    if malformed || fraction.len() > 9 {
        return Err(bad());
    }
    // Only digits remain, so a failed parse can only mean overflow.
    let whole: u128 = whole.parse().map_err(|_| DurationError::TooLong)?;
    let fraction_ns = match fraction {
        "" => 0,
        digits => {
            let value: u128 = digits.parse().map_err(|_| bad())?;
            // At most 9 digits (checked above), so the exponent cannot overflow.
            value * unit_ns / 10u128.pow(digits.len() as u32)
        }
    };
    whole
        .checked_mul(unit_ns)
        .and_then(|ns| ns.checked_add(fraction_ns))
        .ok_or(DurationError::TooLong)
}

/// Formats a duration the way the config file writes it, to the millisecond: "2h4m", "1s500ms".
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let parts = [
        (seconds / 3600, "h"),
        (seconds % 3600 / 60, "m"),
        (seconds % 60, "s"),
        (u64::from(duration.subsec_millis()), "ms"),
    ];
    let text: String = parts
        .iter()
        .filter(|(amount, _)| *amount > 0)
        .map(|(amount, unit)| format!("{amount}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_owned()
    } else {
        text
    }
}

// ---------------------------------------------------------------------------
// Prefixes

/// Why a prefix such as "203.0.113.0/24" could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an IPv4 address")]
    BadAddress(String),
    #[error("the length {0:?} is not a number from 0 to 32")]
    BadLength(String),
    #[error("host bits are set (the prefix would be {0})")]
    HostBitsSet(Ipv4Prefix),
}

impl FromStr for Ipv4Prefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, length) = text.trim().split_once('/').unwrap_or((text.trim(), "32"));
        let addr: Ipv4Addr = address
            .parse()
            .map_err(|_| PrefixError::BadAddress(address.to_owned()))?;
        let len = length
            .parse::<u8>()
            .ok()
            .filter(|len| *len <= 32)
            .ok_or_else(|| PrefixError::BadLength(length.to_owned()))?;
        let network = Ipv4Prefix {
            addr: Ipv4Addr::from(u32::from(addr) & network_mask(len)),
            len,
        };
        if network.addr != addr {
            return Err(PrefixError::HostBitsSet(network));
        }
        Ok(network)
    }
}

fn network_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

// ---------------------------------------------------------------------------
// The file as written: every key optional, unknown keys rejected.

mod raw {
    use super::{BackpressurePolicy, FilteringMode, LogVolume, TtlExpiredAction};
    use serde::Deserialize;
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct File {
        pub interfaces: Interfaces,
        pub workers: Workers,
        pub pool: Pool,
        pub allocation: Allocation,
        pub limits: Limits,
        pub timeouts: Timeouts,
        pub filtering: Filtering,
        pub ttl: Ttl,
        pub logging: Logging,
        pub dataplane: Dataplane,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Dataplane {
        pub burst: Option<i64>,
        pub frames: Option<i64>,
        pub zero_copy: Option<bool>,
        pub idle_backoff: Option<bool>,
        pub metrics: Option<String>,
        pub rss_profile: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Interfaces {
        pub inside: Option<String>,
        pub outside: Option<String>,
        pub inside_address: Option<String>,
        pub outside_address: Option<String>,
        pub inside_gateway: Option<String>,
        pub outside_gateway: Option<String>,
        pub inside_gateway_mac: Option<String>,
        pub outside_gateway_mac: Option<String>,
    }

    // Integers are read as i64 so that range errors come from validation, which names the
    // key and the accepted range, rather than from serde's "expected u16".
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Workers {
        pub count: Option<i64>,
        pub cores: Option<Vec<usize>>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Pool {
        pub public: Vec<String>,
        pub subscribers: Vec<String>,
        pub exclude: Vec<String>,
    }

    #[derive(Debug, Clone, Copy, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ModeName {
        Dynamic,
        PortBlock,
        Deterministic,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Allocation {
        pub mode: Option<ModeName>,
        pub port_min: Option<i64>,
        pub port_max: Option<i64>,
        pub seed: Option<u64>,
        pub block_size: Option<i64>,
        pub max_blocks_per_subscriber: Option<i64>,
        pub ports_per_subscriber: Option<i64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Limits {
        pub max_sessions: Option<i64>,
        pub sessions_per_subscriber: Option<i64>,
        pub ports_per_subscriber: Option<i64>,
        pub fragments: Option<i64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Timeouts {
        pub tcp_established: Option<DurationValue>,
        pub tcp_transitory: Option<DurationValue>,
        pub udp: Option<DurationValue>,
        pub icmp: Option<DurationValue>,
        pub fragment: Option<DurationValue>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Filtering {
        pub mode: Option<FilteringMode>,
        pub hairpinning: Option<bool>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Ttl {
        pub expired: Option<TtlExpiredAction>,
        pub icmp_rate: Option<i64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Logging {
        pub dir: Option<String>,
        pub volume: Option<LogVolume>,
        pub flush_interval: Option<DurationValue>,
        pub segment_size: Option<i64>,
        pub segment_age: Option<DurationValue>,
        pub retention: Option<DurationValue>,
        pub on_backpressure: Option<BackpressurePolicy>,
        pub direct_io: Option<bool>,
    }

    /// A duration as written: text such as "2h4m", or a bare integer meaning seconds.
    #[derive(Debug)]
    pub enum DurationValue {
        Text(String),
        Seconds(i64),
    }

    impl<'de> Deserialize<'de> for DurationValue {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(DurationVisitor)
        }
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = DurationValue;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"5m\" or \"2h4m\", or a whole number of seconds")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationValue, E> {
            Ok(DurationValue::Text(text.to_owned()))
        }

        fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<DurationValue, E> {
            Ok(DurationValue::Seconds(seconds))
        }

        fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<DurationValue, E> {
            i64::try_from(seconds)
                .map(DurationValue::Seconds)
                .map_err(|_| E::custom("the number of seconds is too large"))
        }
    }
}

// ---------------------------------------------------------------------------
// Defaults and protocol minimums

pub mod defaults {
    use std::time::Duration;

    pub const WORKERS: i64 = 1;
    pub const PORT_MIN: i64 = 1024;
    pub const PORT_MAX: i64 = 65535;
    pub const BLOCK_SIZE: i64 = 256;
    pub const MAX_BLOCKS_PER_SUBSCRIBER: i64 = 4;
    pub const DETERMINISTIC_PORTS_PER_SUBSCRIBER: i64 = 2000;
    pub const MAX_SESSIONS: i64 = 1_048_576;
    pub const SESSIONS_PER_SUBSCRIBER: i64 = 10_000;
    pub const PORTS_PER_SUBSCRIBER: i64 = 4_096;
    pub const FRAGMENTS: i64 = 8_192;
    pub const TCP_ESTABLISHED: Duration = Duration::from_secs(2 * 3600 + 4 * 60);
    pub const TCP_TRANSITORY: Duration = Duration::from_secs(4 * 60);
    pub const UDP: Duration = Duration::from_secs(5 * 60);
    pub const ICMP: Duration = Duration::from_secs(60);
    pub const FRAGMENT: Duration = Duration::from_secs(2);
    pub const ICMP_RATE: i64 = 100;
    pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
    pub const SEGMENT_SIZE: i64 = 256 << 20;
    pub const SEGMENT_AGE: Duration = Duration::from_secs(15 * 60);
}

/// A lower bound on a timeout and the requirement that imposes it.
struct Minimum {
    value: Duration,
    source: &'static str,
}

const UDP_MINIMUM: Minimum = Minimum {
    value: Duration::from_secs(120),
    source: "RFC 4787 REQ-5",
};
const TCP_ESTABLISHED_MINIMUM: Minimum = Minimum {
    value: Duration::from_secs(2 * 3600 + 4 * 60),
    source: "RFC 5382 REQ-5",
};
const TCP_TRANSITORY_MINIMUM: Minimum = Minimum {
    value: Duration::from_secs(4 * 60),
    source: "RFC 5382 REQ-5",
};
const ICMP_MINIMUM: Minimum = Minimum {
    value: Duration::from_secs(60),
    source: "RFC 5508 REQ-1",
};
const FRAGMENT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(60);
/// Ports below this are well-known services and never handed to subscribers.
const LOWEST_ALLOCATABLE_PORT: i64 = 1024;
const MAX_WORKERS: i64 = 256;
const U32_MAX: i64 = u32::MAX as i64;

// ---------------------------------------------------------------------------
// Validation: raw → typed, stopping at the first problem.

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

fn build(raw: raw::File) -> Result<Config, ConfigError> {
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
    };
    check_deterministic_capacity(&config)?;
    check_log_volume(&config)?;
    Ok(config)
}

/// `value` converted to `T` if it lies in `range`; otherwise an error naming the bound.
fn integer<T: TryFrom<i64>>(
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

fn interfaces(raw: raw::Interfaces) -> Result<Interfaces, ConfigError> {
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

fn optional_mac(key: &str, text: Option<String>) -> Result<Option<[u8; 6]>, ConfigError> {
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

fn dataplane(raw: raw::Dataplane) -> Result<Dataplane, ConfigError> {
    let metrics = match raw.metrics {
        None => None,
        Some(text) => {
            let addr: std::net::SocketAddr = text.parse().map_err(|_| {
                invalid(
                    "dataplane.metrics",
                    format!("{text:?} is not an address and port like \"127.0.0.1:9917\""),
                )
            })?;
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "dataplane.metrics",
                    format!(
                        "{addr} is not a loopback address; metrics are served on loopback only"
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
    Ok(Dataplane {
        rss_profile,
        burst,
        frames,
        zero_copy: raw.zero_copy.unwrap_or(true),
        idle_backoff: raw.idle_backoff.unwrap_or(true),
        metrics,
    })
}

fn interface_name(key: &str, name: Option<String>) -> Result<String, ConfigError> {
    match name {
        None => Err(invalid(
            key,
            "is required (the name of a network interface)",
        )),
        Some(name) if name.trim().is_empty() => Err(invalid(key, "must not be empty")),
        Some(name) => Ok(name),
    }
}

fn optional_address(key: &str, text: Option<String>) -> Result<Option<Ipv4Addr>, ConfigError> {
    text.map(|text| {
        text.parse()
            .map_err(|_| invalid(key, format!("{text:?} is not an IPv4 address")))
    })
    .transpose()
}

fn workers(raw: raw::Workers) -> Result<Workers, ConfigError> {
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

fn pool(raw: raw::Pool) -> Result<Pool, ConfigError> {
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

fn prefixes(key: &str, texts: &[String]) -> Result<Vec<Ipv4Prefix>, ConfigError> {
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
fn check_disjoint_within(key: &str, prefixes: &[Ipv4Prefix]) -> Result<(), ConfigError> {
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

fn check_subscribers_not_public(
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

fn excluded_addresses(
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

fn allocation(raw: raw::Allocation) -> Result<Allocation, ConfigError> {
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

fn port_block_mode(raw: &raw::Allocation, range_size: i64) -> Result<AllocationMode, ConfigError> {
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

fn limits(raw: raw::Limits) -> Result<Limits, ConfigError> {
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

fn timeouts(raw: raw::Timeouts) -> Result<Timeouts, ConfigError> {
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

fn timeout(
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

fn duration(
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

fn filtering(raw: raw::Filtering) -> Filtering {
    Filtering {
        mode: raw.mode.unwrap_or(FilteringMode::EndpointIndependent),
        hairpinning: raw.hairpinning.unwrap_or(true),
    }
}

fn ttl(raw: raw::Ttl) -> Result<Ttl, ConfigError> {
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

fn logging(raw: raw::Logging) -> Result<Logging, ConfigError> {
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
    Ok(Logging {
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
    })
}

/// Deterministic NAT gives every subscriber address a fixed slice of one public address,
/// so the subscriber space must fit into the public addresses × slices per address.
fn check_deterministic_capacity(config: &Config) -> Result<(), ConfigError> {
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

fn check_log_volume(config: &Config) -> Result<(), ConfigError> {
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

// ---------------------------------------------------------------------------
// Summary

impl FilteringMode {
    /// The spelling used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            FilteringMode::EndpointIndependent => "endpoint-independent",
            FilteringMode::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl LogVolume {
    /// The spelling used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            LogVolume::SessionsWithDestination => "sessions-with-destination",
            LogVolume::SessionsWithoutDestination => "sessions-without-destination",
            LogVolume::PortBlocks => "port-blocks",
            LogVolume::Deterministic => "deterministic",
        }
    }
}

impl Config {
    /// A few lines for an operator: what the pool holds, how ports are shared, who logs what.
    pub fn summary(&self) -> String {
        [
            self.interfaces_line(),
            self.workers_line(),
            self.pool_line(),
            self.ports_line(),
            self.allocation_line(),
            self.timeouts_line(),
            self.behaviour_line(),
            self.logging_line(),
        ]
        .join("\n")
    }

    fn interfaces_line(&self) -> String {
        format!(
            "interfaces: inside {}, outside {}",
            self.interfaces.inside, self.interfaces.outside
        )
    }

    fn workers_line(&self) -> String {
        let pinning = if self.workers.cores.is_empty() {
            "cores chosen automatically".to_owned()
        } else {
            let cores: Vec<String> = self.workers.cores.iter().map(usize::to_string).collect();
            format!("pinned to cores {}", cores.join(", "))
        };
        format!("workers: {} ({pinning})", self.workers.count)
    }

    fn pool_line(&self) -> String {
        format!(
            "pool: {} usable public addresses ({} excluded), {} subscriber addresses",
            self.pool.usable_public_addresses(),
            self.pool.exclude.len(),
            self.pool.subscriber_addresses()
        )
    }

    fn ports_line(&self) -> String {
        let per_address = u64::from(self.allocation.port_range_size());
        format!(
            "ports: {}-{}, {per_address} per public address, {} in total",
            self.allocation.port_min,
            self.allocation.port_max,
            per_address * self.pool.usable_public_addresses()
        )
    }

    fn allocation_line(&self) -> String {
        let range = self.allocation.port_range_size();
        let detail = match self.allocation.mode {
            AllocationMode::Dynamic => "dynamic (a random free port per mapping)".to_owned(),
            AllocationMode::PortBlock {
                block_size,
                max_blocks_per_subscriber,
            } => format!(
                "port-block ({block_size}-port blocks, {} per public address, at most {max_blocks_per_subscriber} per subscriber)",
                range / u32::from(block_size)
            ),
            AllocationMode::Deterministic {
                ports_per_subscriber,
            } => format!(
                "deterministic ({ports_per_subscriber} ports per subscriber, {} subscribers per public address)",
                range / u32::from(ports_per_subscriber)
            ),
        };
        let seed = match self.allocation.seed {
            Some(seed) => format!("seed {seed}"),
            None => "seed random at every start of `run` (0 in `replay`)".to_owned(),
        };
        format!("allocation: {detail}, {seed}")
    }

    fn timeouts_line(&self) -> String {
        let t = &self.timeouts;
        format!(
            "timeouts: tcp-established {}, tcp-transitory {}, udp {}, icmp {}, fragment {}",
            format_duration(t.tcp_established),
            format_duration(t.tcp_transitory),
            format_duration(t.udp),
            format_duration(t.icmp),
            format_duration(t.fragment)
        )
    }

    fn behaviour_line(&self) -> String {
        let hairpinning = if self.filtering.hairpinning {
            "on"
        } else {
            "off"
        };
        let ttl = match self.ttl.expired {
            TtlExpiredAction::Icmp => {
                format!("ICMP time-exceeded, at most {}/s", self.ttl.icmp_rate)
            }
            TtlExpiredAction::Drop => "dropped silently".to_owned(),
        };
        format!(
            "filtering: {}, hairpinning {hairpinning}; expired TTL: {ttl}",
            self.filtering.mode.name()
        )
    }

    fn logging_line(&self) -> String {
        let destination = match &self.logging.dir {
            Some(dir) => format!("to {}", dir.display()),
            None => "no directory configured".to_owned(),
        };
        let retention = match self.logging.retention {
            Some(r) => format!("kept {}", format_duration(r)),
            None => "kept until deleted by hand".to_owned(),
        };
        format!(
            "logging: {destination}, volume {}, flush every {}, {retention}, when full: {}",
            self.logging.volume.name(),
            format_duration(self.logging.flush_interval),
            self.logging.on_backpressure.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../tracenat.example.toml");

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
        let fixed =
            Config::from_toml_str(&minimal_with("[allocation]\nmode = \"deterministic\"\n"));
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
            ("[logging]\nsegment-size = 1000", "logging.segment-size"),
            (
                "[dataplane]\nmetrics = \"192.0.2.1:9917\"",
                "dataplane.metrics",
            ),
            ("[dataplane]\nmetrics = \"localhost\"", "dataplane.metrics"),
            ("[dataplane]\nframes = 100", "dataplane.frames"),
            ("[dataplane]\nburst = 0", "dataplane.burst"),
            (
                "[dataplane]\nrss-profile = \"e1000\"",
                "dataplane.rss-profile",
            ),
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
}
