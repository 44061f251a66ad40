//! `[identity]`: where tracenat learns who held each inside address (RADIUS accounting,
//! DHCP lease files). Every source is optional; all may run at once.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use super::validate::duration;
use super::{ConfigError, Ipv4Prefix, invalid, raw};

/// The RADIUS accounting port (RFC 2866 §3).
pub const RADIUS_ACCOUNTING_PORT: u16 = 1813;
/// How often lease files are looked at by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityConfig {
    pub radius: Option<RadiusConfig>,
    /// A Kea DHCPv4 memfile lease file (CSV) to follow.
    pub kea_lease_file: Option<PathBuf>,
    /// An ISC dhcpd `dhcpd.leases` file to follow.
    pub isc_lease_file: Option<PathBuf>,
    /// How often the lease files are looked at.
    pub poll_interval: Duration,
}

impl IdentityConfig {
    pub fn is_empty(&self) -> bool {
        self.radius.is_none() && self.kea_lease_file.is_none() && self.isc_lease_file.is_none()
    }
}

/// The RADIUS accounting listener.
#[derive(Debug, Clone, PartialEq)]
pub struct RadiusConfig {
    /// Where Accounting-Requests are received (UDP).
    pub listen: SocketAddrV4,
    /// The NASes (BNGs) allowed to send, each with its shared secret.
    pub clients: Vec<RadiusClient>,
}

impl RadiusConfig {
    /// The client a request from `source` belongs to: the most specific prefix holding it.
    pub fn client_for(&self, source: Ipv4Addr) -> Option<&RadiusClient> {
        self.clients
            .iter()
            .filter(|c| c.address.contains(source))
            .max_by_key(|c| c.address.len)
    }
}

/// One NAS allowed to send accounting.
#[derive(PartialEq, Clone)]
pub struct RadiusClient {
    /// Its source address, or a prefix of them.
    pub address: Ipv4Prefix,
    /// The shared secret (RFC 2865 §3), from `secret` or `secret-file`.
    pub secret: Vec<u8>,
    /// A name for counters and messages; the address if not given.
    pub name: String,
}

/// Never prints the secret.
impl std::fmt::Debug for RadiusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusClient")
            .field("address", &self.address)
            .field("secret", &"(redacted)")
            .field("name", &self.name)
            .finish()
    }
}

pub(super) fn identity(raw: raw::Identity) -> Result<IdentityConfig, ConfigError> {
    Ok(IdentityConfig {
        radius: raw.radius.map(radius).transpose()?,
        kea_lease_file: lease_file("identity.dhcp.kea-lease-file", raw.dhcp.kea_lease_file)?,
        isc_lease_file: lease_file("identity.dhcp.isc-lease-file", raw.dhcp.isc_lease_file)?,
        poll_interval: poll_interval(raw.dhcp.poll_interval)?,
    })
}

fn poll_interval(raw: Option<raw::DurationValue>) -> Result<Duration, ConfigError> {
    let key = "identity.dhcp.poll-interval";
    let value = duration(key, raw, DEFAULT_POLL_INTERVAL)?;
    if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&value) {
        return Err(invalid(key, "must lie between 10ms and 1h"));
    }
    Ok(value)
}

fn lease_file(key: &str, raw: Option<String>) -> Result<Option<PathBuf>, ConfigError> {
    match raw {
        Some(path) if path.trim().is_empty() => Err(invalid(key, "is empty")),
        Some(path) => Ok(Some(PathBuf::from(path))),
        None => Ok(None),
    }
}

fn radius(raw: raw::Radius) -> Result<RadiusConfig, ConfigError> {
    let listen = listen_address(raw.listen)?;
    if raw.clients.is_empty() {
        return Err(invalid(
            "identity.radius.clients",
            "no NAS may send accounting: add at least one [[identity.radius.clients]] with its address and secret",
        ));
    }
    let clients = raw
        .clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| client(i, c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RadiusConfig { listen, clients })
}

/// `ADDRESS:PORT`, or an address alone (port 1813).
fn listen_address(raw: Option<String>) -> Result<SocketAddrV4, ConfigError> {
    let key = "identity.radius.listen";
    let text = raw.unwrap_or_else(|| format!("0.0.0.0:{RADIUS_ACCOUNTING_PORT}"));
    if let Ok(address) = text.parse::<SocketAddrV4>() {
        return Ok(address);
    }
    text.parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, RADIUS_ACCOUNTING_PORT))
        .map_err(|_| {
            invalid(
                key,
                format!("{text:?} is not an IPv4 address with an optional :port"),
            )
        })
}

fn client(i: usize, raw: raw::RadiusClient) -> Result<RadiusClient, ConfigError> {
    let key = |field: &str| format!("identity.radius.clients[{i}].{field}");
    let text = raw.address.ok_or_else(|| {
        invalid(
            key("address"),
            "missing: the NAS's source address or prefix",
        )
    })?;
    let address: Ipv4Prefix = text
        .parse()
        .map_err(|e| invalid(key("address"), format!("{text:?}: {e}")))?;
    let secret = match (raw.secret, raw.secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                key("secret"),
                "give secret or secret-file, not both",
            ));
        }
        (Some(secret), None) => secret.into_bytes(),
        (None, Some(path)) => read_secret(&key("secret-file"), &path)?,
        (None, None) => {
            return Err(invalid(
                key("secret"),
                "missing: give secret or secret-file",
            ));
        }
    };
    if secret.is_empty() {
        return Err(invalid(
            key("secret"),
            "is empty (RFC 2865 §3 requires a shared secret)",
        ));
    }
    Ok(RadiusClient {
        address,
        secret,
        name: raw.name.unwrap_or_else(|| text.clone()),
    })
}

/// The file's content without its final newline, as `echo secret > file` writes it.
fn read_secret(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let mut bytes =
        std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

/// The configuration text with every `secret = …` value replaced, for storing in the log
/// directory (`configs/`): the log records what the NAT did, and must not leak the
/// shared secrets of the access network to whoever reads it.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let is_secret = trimmed
            .strip_prefix("secret")
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_secret {
            let indent = &line[..line.len() - trimmed.len()];
            let newline = if line.ends_with('\n') { "\n" } else { "" };
            out.push_str(&format!("{indent}secret = \"(redacted)\"{newline}"));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = r#"
[interfaces]
inside = "tn-in"
outside = "tn-out"
[pool]
public = ["203.0.113.0/28"]
subscribers = ["100.64.0.0/24"]
"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(&format!("{BASE}{extra}"))
    }

    #[test]
    fn absent_means_no_sources() {
        let cfg = parse("").unwrap();
        assert!(cfg.identity.is_empty());
        assert_eq!(cfg.identity.poll_interval, DEFAULT_POLL_INTERVAL);
    }

    #[test]
    fn radius_with_clients_and_lease_files() {
        let cfg = parse(
            r#"
[identity.radius]
listen = "100.64.0.1"
[[identity.radius.clients]]
address = "100.64.0.0/24"
secret = "wide"
[[identity.radius.clients]]
address = "100.64.0.2"
secret = "narrow"
name = "bng-1"
[identity.dhcp]
kea-lease-file = "/var/lib/kea/kea-leases4.csv"
poll-interval = "250ms"
"#,
        )
        .unwrap();
        let radius = cfg.identity.radius.as_ref().unwrap();
        assert_eq!(radius.listen, "100.64.0.1:1813".parse().unwrap());
        let nas = radius.client_for("100.64.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            (nas.name.as_str(), nas.secret.as_slice()),
            ("bng-1", &b"narrow"[..])
        );
        let other = radius.client_for("100.64.0.9".parse().unwrap()).unwrap();
        assert_eq!(other.secret, b"wide");
        assert!(radius.client_for("100.64.1.9".parse().unwrap()).is_none());
        assert_eq!(cfg.identity.poll_interval, Duration::from_millis(250));
        assert!(!format!("{nas:?}").contains("narrow"));
    }

    #[test]
    fn bad_sources_name_the_key() {
        let cases = [
            (
                "[identity.radius]\nlisten = \"nowhere\"\n[[identity.radius.clients]]\naddress = \"100.64.0.2\"\nsecret = \"s\"\n",
                "identity.radius.listen",
            ),
            ("[identity.radius]\n", "identity.radius.clients"),
            (
                "[identity.radius]\n[[identity.radius.clients]]\naddress = \"100.64.0.2\"\n",
                "identity.radius.clients[0].secret",
            ),
            (
                "[identity.radius]\n[[identity.radius.clients]]\naddress = \"100.64.0.2\"\nsecret = \"\"\n",
                "identity.radius.clients[0].secret",
            ),
            (
                "[identity.radius]\n[[identity.radius.clients]]\naddress = \"100.64.0.2\"\nsecret-file = \"/nonexistent/secret\"\n",
                "identity.radius.clients[0].secret-file",
            ),
            (
                "[identity.radius]\n[[identity.radius.clients]]\naddress = \"bng\"\nsecret = \"s\"\n",
                "identity.radius.clients[0].address",
            ),
            (
                "[identity.dhcp]\npoll-interval = \"1ms\"\n",
                "identity.dhcp.poll-interval",
            ),
            (
                "[identity.dhcp]\nkea-lease-file = \"\"\n",
                "identity.dhcp.kea-lease-file",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.key(), Some(key), "{text}: {err}");
        }
    }

    #[test]
    fn secrets_are_redacted_before_the_text_is_stored() {
        let text = "[[identity.radius.clients]]\naddress = \"100.64.0.2\"\n  secret = \"hunter2\"\nsecret-file = \"/x\"\n";
        let redacted = redact_secrets(text);
        assert!(!redacted.contains("hunter2"));
        assert!(redacted.contains("  secret = \"(redacted)\"\n"));
        assert!(redacted.contains("secret-file = \"/x\""));
    }
}
