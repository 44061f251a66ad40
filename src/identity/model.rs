//! What an identity record says: an inside address, who held it, from which source, when.

use std::fmt;
use std::net::Ipv4Addr;

/// Where an identity was learned. Codes are stable (docs/mapping-log.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Source {
    /// RADIUS accounting (RFC 2866) received live by `tracenat run`.
    Radius = 1,
    /// A Kea DHCPv4 memfile lease file (CSV).
    KeaLease = 2,
    /// ISC dhcpd's `dhcpd.leases`.
    IscLease = 3,
    /// A FreeRADIUS `detail` accounting file, imported after the fact.
    RadiusDetail = 4,
}

impl Source {
    pub fn from_code(code: u8) -> Option<Source> {
        Some(match code {
            1 => Source::Radius,
            2 => Source::KeaLease,
            3 => Source::IscLease,
            4 => Source::RadiusDetail,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Radius => "radius",
            Source::KeaLease => "kea-lease",
            Source::IscLease => "isc-dhcpd-lease",
            Source::RadiusDetail => "radius-detail",
        }
    }
}

/// What happened to the holding of an inside address. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Change {
    /// The identity holds the address from `at_ns` (RADIUS Start, a lease granted).
    Start = 1,
    /// The identity still holds it (RADIUS Interim-Update, a lease renewed); opens the
    /// holding if its start was never heard.
    Update = 2,
    /// The holding ended at `at_ns` (RADIUS Stop, a lease released or expired).
    Stop = 3,
    /// Every holding learned from one NAS ends at `at_ns` (RADIUS Accounting-On/Off: the
    /// NAS restarted or is going down). `inside_ip` is unspecified (0); `identity.nas_ip`
    /// names the NAS.
    NasReset = 4,
    /// Checkpoint: a holding open when the segment began (docs/mapping-log.md §6).
    Live = 5,
}

impl Change {
    pub fn from_code(code: u8) -> Option<Change> {
        Some(match code {
            1 => Change::Start,
            2 => Change::Update,
            3 => Change::Stop,
            4 => Change::NasReset,
            5 => Change::Live,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Change::Start => "identity_start",
            Change::Update => "identity_update",
            Change::Stop => "identity_stop",
            Change::NasReset => "identity_nas_reset",
            Change::Live => "identity_live",
        }
    }

    /// Start and Update both say "held from here on".
    pub fn opens(self) -> bool {
        matches!(self, Change::Start | Change::Update | Change::Live)
    }
}

/// Who held an address, in the words of the source. Every field is optional: a DHCP lease
/// knows a hardware address and perhaps a hostname, RADIUS a user name and a line. Binary
/// values (RADIUS Class, option 82 sub-options, client-id) are kept as the source's text
/// when printable, otherwise as lower-case hex with colons (`01:02:0a`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    /// RADIUS User-Name.
    pub user: Option<String>,
    /// RADIUS Calling-Station-Id (often the CPE's MAC or the line).
    pub calling_station_id: Option<String>,
    /// RADIUS NAS-IP-Address: the BNG that sent the accounting.
    pub nas_ip: Option<Ipv4Addr>,
    /// RADIUS NAS-Port-Id: the subscriber's line on the NAS (`eth 0/1/2:100`).
    pub nas_port_id: Option<String>,
    /// RADIUS Acct-Session-Id.
    pub session_id: Option<String>,
    /// RADIUS Class (as the AAA server assigned it).
    pub class: Option<String>,
    /// DHCP chaddr: the CPE's hardware address, `02:00:5e:00:53:01`.
    pub hw_addr: Option<String>,
    /// DHCP client identifier (option 61).
    pub client_id: Option<String>,
    /// DHCP hostname (option 12) or the lease's client-hostname.
    pub hostname: Option<String>,
    /// Relay agent circuit-id (option 82 sub-option 1): the access line.
    pub circuit_id: Option<String>,
    /// Relay agent remote-id (option 82 sub-option 2).
    pub remote_id: Option<String>,
}

impl Identity {
    /// Nothing at all is known.
    pub fn is_empty(&self) -> bool {
        *self == Identity::default()
    }

    /// The same holder as `other`: the same RADIUS session where both name one, else the
    /// same user, hardware address and client identifier. A Stop ends only the holding of
    /// its own holder, so a late Stop of the previous customer cannot end the next one's.
    pub fn same_holder(&self, other: &Identity) -> bool {
        match (&self.session_id, &other.session_id) {
            (Some(a), Some(b)) => a == b && self.user == other.user,
            _ => {
                self.user == other.user
                    && self.hw_addr == other.hw_addr
                    && self.client_id == other.client_id
            }
        }
    }

    /// `{name: value}` for every field present.
    pub fn to_json(&self) -> serde_json::Value {
        let fields: serde_json::Map<String, serde_json::Value> = self
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        serde_json::Value::Object(fields)
    }

    /// `(name, value)` for every field present, in a fixed order; names as in JSON.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let text = [
            ("user", &self.user),
            ("calling_station_id", &self.calling_station_id),
            ("nas_port_id", &self.nas_port_id),
            ("session_id", &self.session_id),
            ("class", &self.class),
            ("hw_addr", &self.hw_addr),
            ("client_id", &self.client_id),
            ("hostname", &self.hostname),
            ("circuit_id", &self.circuit_id),
            ("remote_id", &self.remote_id),
        ];
        let mut out: Vec<(&'static str, String)> = text
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| (name, v.clone())))
            .collect();
        if let Some(nas) = self.nas_ip {
            out.insert(2, ("nas_ip", nas.to_string()));
        }
        out
    }
}

/// What an operator reads first: the customer, their line, their CPE.
/// e.g. `user alice@isp.example, line eth 0/1/2:100, CPE 02:00:5e:00:53:01`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            ("user", &self.user),
            ("line", &self.nas_port_id),
            ("circuit", &self.circuit_id),
            ("remote-id", &self.remote_id),
            ("station", &self.calling_station_id),
            ("CPE", &self.hw_addr),
            ("client-id", &self.client_id),
            ("host", &self.hostname),
        ];
        let mut first = true;
        for (label, value) in parts {
            if let Some(value) = value {
                if !first {
                    f.write_str(", ")?;
                }
                write!(f, "{label} {value}")?;
                first = false;
            }
        }
        if first {
            f.write_str("no identity fields")?;
        }
        Ok(())
    }
}

/// One change in who held an inside address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityRecord {
    pub change: Change,
    pub source: Source,
    /// The inside (subscriber) address; unspecified for [`Change::NasReset`].
    pub inside_ip: Ipv4Addr,
    /// When the change happened, by the best evidence: the source's own time where it
    /// gives one (RADIUS Event-Timestamp, a lease's start or end), else `learned_ns` less
    /// any delay the source reports (Acct-Delay-Time). Answers are decided by this time.
    pub at_ns: u64,
    /// tracenat's clock when it learned the change (for an import: when it was imported).
    pub learned_ns: u64,
    /// The source's own timestamp as given (Event-Timestamp, lease cltt); 0 if none.
    pub source_ns: u64,
    /// When the holding lapses unless renewed (a lease's expiry); 0 if no end is known.
    pub expires_ns: u64,
    pub identity: Identity,
}

impl IdentityRecord {
    /// One JSON object on one line (`tracenat log decode --format json`).
    pub fn to_json(&self) -> String {
        let optional = |ns: u64| (ns != 0).then_some(ns);
        serde_json::json!({
            "kind": self.change.name(),
            "ts_ns": self.at_ns,
            "source": self.source.name(),
            "inside": self.inside_ip.to_string(),
            "learned_ns": self.learned_ns,
            "source_ns": optional(self.source_ns),
            "expires_ns": optional(self.expires_ns),
            "identity": self.identity.to_json(),
        })
        .to_string()
    }

    /// The same event as `other`, whenever it was learned: a retransmission, or a lease
    /// file read again.
    pub fn same_event(&self, other: &IdentityRecord) -> bool {
        let mut a = self.clone();
        a.learned_ns = other.learned_ns;
        a == *other
    }
}

/// Where sources hand their records: the identity chain of the log in `tracenat run` and
/// `identity import`, a [`MemorySink`] in tests.
pub trait IdentitySink {
    /// Stores `records` and returns once they are durable (a RADIUS source answers its
    /// NAS only after that). Records that repeat what is already stored (a retransmitted
    /// Accounting-Request, a lease file read again) are not stored twice. Returns how many
    /// records were new.
    fn commit(&mut self, records: &[IdentityRecord]) -> std::io::Result<usize>;
}

/// An in-memory sink: keeps every record it is given, skipping repeats of an event.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub records: Vec<IdentityRecord>,
}

impl IdentitySink for MemorySink {
    fn commit(&mut self, records: &[IdentityRecord]) -> std::io::Result<usize> {
        let mut new = 0;
        for r in records {
            if !self.records.iter().any(|old| old.same_event(r)) {
                self.records.push(r.clone());
                new += 1;
            }
        }
        Ok(new)
    }
}
