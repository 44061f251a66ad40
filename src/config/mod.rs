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
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == u32::from(self.addr)
    }
    /// The network mask (0xFFFFFF00 for a /24).
    #[inline]
    pub fn mask(&self) -> u32 {
        network_mask(self.len)
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

/// What an idle worker does (`dataplane.idle-backoff`): spinning gives the lowest latency
/// but takes a whole core, which on a core shared with other work costs more latency than
/// it saves (docs/dataplane.md, "Idle workers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleBackoff {
    /// `true`: sleep in poll(2) once `idle-spin` has passed without traffic.
    Sleep,
    /// `false`: never sleep.
    Spin,
    /// `"auto"`, the default: spin on a CPU the kernel keeps for it (`isolcpus=` or
    /// `nohz_full=`), sleep on any other.
    Auto,
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
    /// What a worker does when no frame is waiting.
    pub idle_backoff: IdleBackoff,
    /// When a worker sleeps: how long a worker keeps polling after its last packet before
    /// it sleeps. Zero by default: spinning pays only on cores of its own
    /// (docs/dataplane.md, "Idle workers").
    pub idle_spin: Duration,
    /// Where `tracenat run` serves Prometheus metrics (and `tracenat stats` reads them);
    /// a loopback address unless `metrics-remote` allows others.
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
    /// The name this box records in its log directory (`runs.jsonl`), by which answers
    /// across several boxes' logs name it; the system's host name when `None`.
    pub box_name: Option<String>,
    /// Refusals are logged at most once per subscriber, reason and this interval, plus one
    /// record with the count of the rest (docs/mapping-log.md §5.1.1).
    pub refusal_interval: Duration,
}

/// A box name: letters, digits, `-`, `_` and `.` (it is a directory name in the Parquet
/// layout and a label in answers).
pub fn valid_box_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
    pub identity: IdentityConfig,
    pub export: ExportConfig,
    pub process: Process,
}

/// Who `tracenat run` is once started (docs/operations.md, "Least privilege").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// After start-up the process becomes this user, with no capability left; `None`
    /// keeps the user it was started as.
    pub user: Option<String>,
    /// Its group; the user's primary group when `None`.
    pub group: Option<String>,
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
        "us" => Ok(SECOND_NS / 1_000_000),
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
        (u64::from(duration.subsec_micros() % 1000), "us"),
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

/// The mask of a /`len` (at most 32), shifted as 64 bits so that a /0's comes out as zero
/// without a branch (the packet path asks for it).
#[inline]
fn network_mask(len: u8) -> u32 {
    (u64::from(u32::MAX) << (32 - u32::from(len.min(32)))) as u32
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

pub mod export;
pub mod identity;
mod raw;
mod summary;
mod validate;

pub use export::ExportConfig;
pub use identity::{IdentityConfig, RadiusClient, RadiusConfig};
pub use validate::parse_mac;
#[cfg(test)]
mod tests;

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
    pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(1);
    pub const IDLE_SPIN: Duration = Duration::ZERO;
    /// Past this a worker might as well never sleep (`idle-backoff = false`).
    pub const IDLE_SPIN_MAX: Duration = Duration::from_secs(1);
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
