//! `[export]`: live copies of the mapping log's events to IPFIX and syslog collectors.

use std::net::SocketAddr;
use std::time::Duration;

use super::validate::{duration, integer};
use super::{ConfigError, invalid, raw};

/// How often IPFIX templates are sent again over UDP, by default.
pub const DEFAULT_TEMPLATE_REFRESH: Duration = Duration::from_secs(60);
/// The syslog facility by default: local0, the usual choice for network equipment.
pub const DEFAULT_FACILITY: &str = "local0";

#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    pub ipfix: Vec<Collector>,
    pub syslog: Vec<Collector>,
    /// Worker `w` exports as observation domain `observation_domain + w`.
    pub observation_domain: u32,
    pub template_refresh: Duration,
    /// Syslog HOSTNAME; the system's host name when `None`.
    pub hostname: Option<String>,
    pub facility: String,
}

impl ExportConfig {
    pub fn is_empty(&self) -> bool {
        self.ipfix.is_empty() && self.syslog.is_empty()
    }
}

/// A collector's transport, as written in the config (`udp://HOST:PORT`, `tcp://HOST:PORT`,
/// or a bare `HOST:PORT`, which is UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl Collector {
    pub fn parse(text: &str) -> Result<Collector, String> {
        let (tcp, address) = match text.split_once("://") {
            Some(("udp", rest)) => (false, rest),
            Some(("tcp", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "unknown transport {scheme:?}: use udp:// or tcp://"
                ));
            }
            None => (false, text),
        };
        let address: SocketAddr = address.parse().map_err(|_| {
            format!("{address:?} is not an IP address and port, such as 192.0.2.9:4739")
        })?;
        Ok(if tcp {
            Collector::Tcp(address)
        } else {
            Collector::Udp(address)
        })
    }

    pub fn address(self) -> SocketAddr {
        match self {
            Collector::Udp(a) | Collector::Tcp(a) => a,
        }
    }
}

impl std::fmt::Display for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collector::Udp(a) => write!(f, "udp://{a}"),
            Collector::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The syslog facilities accepted, by name, with their codes (RFC 5424 table 1).
pub const FACILITIES: [(&str, u8); 11] = [
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, code)| *code)
}

pub(super) fn export(raw: raw::Export) -> Result<ExportConfig, ConfigError> {
    let collectors = |key: &str, list: Vec<String>| -> Result<Vec<Collector>, ConfigError> {
        list.iter()
            .map(|text| Collector::parse(text).map_err(|why| invalid(key, why)))
            .collect()
    };
    let template_refresh = duration(
        "export.template-refresh",
        raw.template_refresh,
        DEFAULT_TEMPLATE_REFRESH,
    )?;
    if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&template_refresh) {
        return Err(invalid(
            "export.template-refresh",
            "must lie between 1s and 24h",
        ));
    }
    let facility = raw.facility.unwrap_or_else(|| DEFAULT_FACILITY.to_owned());
    if facility_code(&facility).is_none() {
        let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
        return Err(invalid(
            "export.facility",
            format!(
                "unknown facility {facility:?}: use one of {}",
                names.join(", ")
            ),
        ));
    }
    if let Some(name) = &raw.hostname {
        // RFC 5424 HOSTNAME: 1 to 255 printable ASCII characters, no spaces.
        if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "export.hostname",
                "must be 1 to 255 printable ASCII characters without spaces",
            ));
        }
    }
    Ok(ExportConfig {
        ipfix: collectors("export.ipfix", raw.ipfix)?,
        syslog: collectors("export.syslog", raw.syslog)?,
        observation_domain: integer(
            "export.observation-domain",
            raw.observation_domain.unwrap_or(1),
            0..=u32::MAX as i64 - 65_535,
        )?,
        template_refresh,
        hostname: raw.hostname,
        facility,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectors_parse_with_or_without_a_transport() {
        assert_eq!(
            Collector::parse("192.0.2.9:4739"),
            Ok(Collector::Udp("192.0.2.9:4739".parse().unwrap()))
        );
        assert_eq!(
            Collector::parse("tcp://127.0.0.1:601"),
            Ok(Collector::Tcp("127.0.0.1:601".parse().unwrap()))
        );
        assert!(Collector::parse("sctp://127.0.0.1:4739").is_err());
        assert!(Collector::parse("collector.example:4739").is_err());
    }
}
