//! Configuration: the TOML file an operator writes, validated once into typed settings.
//!
//! CONTRACT (the engine relies on these types and field names; parsing/validation may grow):
//! `Config::from_toml_str(&str) -> Result<Config, ConfigError>` and `Config::load(path)`.

use std::net::Ipv4Addr;
use std::time::Duration;

/// An IPv4 prefix such as 203.0.113.0/24 (host bits must be zero).
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
        let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len as u32) };
        (u32::from(ip) & mask) == u32::from(self.addr)
    }
    /// The `i`-th address of the prefix (no bounds check beyond `size`).
    pub fn nth(&self, i: u64) -> Option<Ipv4Addr> {
        (i < self.size()).then(|| Ipv4Addr::from(u32::from(self.addr) + i as u32))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationMode {
    /// A port per mapping, chosen at random from the worker's free ports.
    Dynamic,
    /// Blocks of `block_size` contiguous ports handed to a subscriber on demand.
    PortBlock { block_size: u16, max_blocks_per_subscriber: u16 },
    /// RFC 7422: subscriber → (public IP, port range) computed from config alone.
    Deterministic { ports_per_subscriber: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteringMode {
    EndpointIndependent,
    AddressAndPortDependent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlExpiredAction {
    /// Answer with ICMP time-exceeded (rate limited), then drop.
    Icmp,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Seed for port randomisation, so replays are reproducible.
    pub seed: u64,
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
}
