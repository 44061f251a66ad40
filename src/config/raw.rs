//! The file as written: every key optional, unknown keys rejected.

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
    pub identity: Identity,
    pub export: Export,
    pub process: Process,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Process {
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Dataplane {
    pub burst: Option<i64>,
    pub frames: Option<i64>,
    pub zero_copy: Option<bool>,
    /// `true`, `false` or `"auto"`; checked in validation, which can name the key.
    pub idle_backoff: Option<toml::Value>,
    pub idle_spin: Option<DurationValue>,
    pub metrics: Option<String>,
    pub metrics_remote: Option<bool>,
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
    pub box_name: Option<String>,
    pub refusal_interval: Option<DurationValue>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Identity {
    pub radius: Option<Radius>,
    pub dhcp: Dhcp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Radius {
    pub listen: Option<String>,
    pub clients: Vec<RadiusClient>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RadiusClient {
    pub address: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Dhcp {
    pub kea_lease_file: Option<String>,
    pub isc_lease_file: Option<String>,
    pub poll_interval: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Export {
    pub ipfix: Vec<String>,
    pub syslog: Vec<String>,
    pub observation_domain: Option<i64>,
    pub template_refresh: Option<DurationValue>,
    pub hostname: Option<String>,
    pub facility: Option<String>,
}
