//! What a verified Accounting-Request says about who held an inside address
//! (RFC 2866 §5), as an [`IdentityRecord`].

use std::net::Ipv4Addr;

use super::wire::{Packet, attr};
use crate::identity::{Change, Identity, IdentityRecord, Source};

/// Acct-Status-Type values (RFC 2866 §5.1).
pub mod status {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
}

const NS_PER_SEC: u64 = 1_000_000_000;

/// What to do with a request once it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// Store this record, then answer.
    Record(Box<IdentityRecord>),
    /// A Start, Stop or Interim-Update naming no usable Framed-IP-Address: answered,
    /// nothing stored.
    NoAddress,
    /// Another Acct-Status-Type (or none): answered, nothing stored.
    OtherStatus,
    /// An attribute this module reads has the wrong size (an address or integer that is
    /// not 4 octets): dropped, unanswered.
    Malformed,
}

/// Reads `request`, received from `source` at `learned_ns` (wall clock, ns since the
/// epoch). The caller has checked its authenticators.
pub fn meaning<T: AsRef<[u8]>>(request: &Packet<T>, source: Ipv4Addr, learned_ns: u64) -> Meaning {
    match read(request, source, learned_ns) {
        Ok(meaning) => meaning,
        Err(WrongSize) => Meaning::Malformed,
    }
}

/// An attribute's value has the wrong size for its type.
struct WrongSize;

fn read<T: AsRef<[u8]>>(
    request: &Packet<T>,
    source: Ipv4Addr,
    learned_ns: u64,
) -> Result<Meaning, WrongSize> {
    let change = match u32_attribute(request, attr::ACCT_STATUS_TYPE)? {
        Some(status::START) => Change::Start,
        Some(status::STOP) => Change::Stop,
        Some(status::INTERIM_UPDATE) => Change::Update,
        Some(status::ACCOUNTING_ON | status::ACCOUNTING_OFF) => Change::NasReset,
        _ => return Ok(Meaning::OtherStatus),
    };
    let (at_ns, source_ns) = event_time(request, learned_ns)?;
    // Without NAS-IP-Address the sender is the NAS; filling it in for every record lets
    // a later Accounting-On from the same NAS end the holdings it opened.
    let nas_ip = ipv4_attribute(request, attr::NAS_IP_ADDRESS)?.or(Some(source));
    let inside_ip = if change == Change::NasReset {
        Ipv4Addr::UNSPECIFIED
    } else {
        match ipv4_attribute(request, attr::FRAMED_IP_ADDRESS)? {
            Some(ip) if is_assigned(ip) => ip,
            _ => return Ok(Meaning::NoAddress),
        }
    };
    Ok(Meaning::Record(Box::new(IdentityRecord {
        change,
        source: Source::Radius,
        inside_ip,
        at_ns,
        learned_ns,
        source_ns,
        expires_ns: 0,
        identity: identity(request, nas_ip),
    })))
}

/// 0.0.0.0 and the two "not chosen yet" values of RFC 2865 §5.8 (255.255.255.254: the NAS
/// should pick; 255.255.255.255: the user may pick) name no holding.
fn is_assigned(ip: Ipv4Addr) -> bool {
    !ip.is_unspecified() && ip != Ipv4Addr::new(255, 255, 255, 254) && !ip.is_broadcast()
}

/// `(at_ns, source_ns)`: Event-Timestamp where given (RFC 2869 §5.3), else the time we
/// learned it less Acct-Delay-Time (RFC 2866 §5.2: how long the NAS has been trying).
fn event_time<T: AsRef<[u8]>>(
    request: &Packet<T>,
    learned_ns: u64,
) -> Result<(u64, u64), WrongSize> {
    if let Some(seconds) = u32_attribute(request, attr::EVENT_TIMESTAMP)? {
        let ns = u64::from(seconds) * NS_PER_SEC;
        return Ok((ns, ns));
    }
    let delay = u64::from(u32_attribute(request, attr::ACCT_DELAY_TIME)?.unwrap_or(0));
    Ok((learned_ns.saturating_sub(delay * NS_PER_SEC), 0))
}

fn identity<T: AsRef<[u8]>>(request: &Packet<T>, nas_ip: Option<Ipv4Addr>) -> Identity {
    let text = |kind| request.first(kind).and_then(text_or_hex);
    Identity {
        user: text(attr::USER_NAME),
        calling_station_id: text(attr::CALLING_STATION_ID),
        nas_ip,
        nas_port_id: text(attr::NAS_PORT_ID),
        session_id: text(attr::ACCT_SESSION_ID),
        class: text(attr::CLASS),
        ..Identity::default()
    }
}

fn u32_attribute<T: AsRef<[u8]>>(request: &Packet<T>, kind: u8) -> Result<Option<u32>, WrongSize> {
    request
        .first(kind)
        .map(|v| {
            <[u8; 4]>::try_from(v)
                .map(u32::from_be_bytes)
                .map_err(|_| WrongSize)
        })
        .transpose()
}

fn ipv4_attribute<T: AsRef<[u8]>>(
    request: &Packet<T>,
    kind: u8,
) -> Result<Option<Ipv4Addr>, WrongSize> {
    Ok(u32_attribute(request, kind)?.map(Ipv4Addr::from))
}

/// A value as text if it is UTF-8 without control characters, else lower-case hex with
/// colons (`01:02:0a`), so that nothing is lost and nothing unprintable reaches a log.
/// An empty value is absent.
pub fn text_or_hex(value: &[u8]) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    match std::str::from_utf8(value) {
        Ok(text) if !text.chars().any(char::is_control) => Some(text.to_string()),
        _ => Some(hex_with_colons(value)),
    }
}

fn hex_with_colons(value: &[u8]) -> String {
    value
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::super::wire::accounting_request;
    use super::*;

    const NAS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
    const LEARNED: u64 = 1_700_000_100 * NS_PER_SEC;

    fn meaning_of(attributes: &[(u8, &[u8])]) -> Meaning {
        let bytes = accounting_request(7, attributes, b"s").unwrap();
        meaning(&Packet::new_checked(&bytes[..]).unwrap(), NAS, LEARNED)
    }

    fn record_of(attributes: &[(u8, &[u8])]) -> IdentityRecord {
        match meaning_of(attributes) {
            Meaning::Record(r) => *r,
            other => panic!("no record: {other:?}"),
        }
    }

    fn status(value: u32) -> [u8; 4] {
        value.to_be_bytes()
    }

    #[test]
    fn start_with_every_field() {
        let r = record_of(&[
            (attr::ACCT_STATUS_TYPE, &status(status::START)),
            (attr::FRAMED_IP_ADDRESS, &[100, 64, 1, 1]),
            (attr::USER_NAME, b"alice@isp.example"),
            (attr::CALLING_STATION_ID, b"02-00-5e-00-53-01"),
            (attr::NAS_IP_ADDRESS, &[192, 0, 2, 9]),
            (attr::NAS_PORT_ID, b"eth 0/1/2:100"),
            (attr::ACCT_SESSION_ID, b"S1"),
            (attr::CLASS, &[0x01, 0x02, 0x0a]),
            (attr::EVENT_TIMESTAMP, &1_700_000_000u32.to_be_bytes()),
            (attr::ACCT_DELAY_TIME, &status(5)),
        ]);
        assert_eq!(r.change, Change::Start);
        assert_eq!(r.source, Source::Radius);
        assert_eq!(r.inside_ip, Ipv4Addr::new(100, 64, 1, 1));
        assert_eq!(r.at_ns, 1_700_000_000 * NS_PER_SEC);
        assert_eq!(r.source_ns, r.at_ns);
        assert_eq!(r.learned_ns, LEARNED);
        let id = &r.identity;
        assert_eq!(id.user.as_deref(), Some("alice@isp.example"));
        assert_eq!(id.calling_station_id.as_deref(), Some("02-00-5e-00-53-01"));
        assert_eq!(id.nas_ip, Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(id.nas_port_id.as_deref(), Some("eth 0/1/2:100"));
        assert_eq!(id.session_id.as_deref(), Some("S1"));
        assert_eq!(id.class.as_deref(), Some("01:02:0a"));
    }

    #[test]
    fn delay_is_subtracted_without_event_timestamp() {
        let r = record_of(&[
            (attr::ACCT_STATUS_TYPE, &status(status::INTERIM_UPDATE)),
            (attr::FRAMED_IP_ADDRESS, &[100, 64, 1, 1]),
            (attr::ACCT_DELAY_TIME, &status(30)),
        ]);
        assert_eq!(r.change, Change::Update);
        assert_eq!(r.at_ns, LEARNED - 30 * NS_PER_SEC);
        assert_eq!(r.source_ns, 0);
        assert_eq!(
            r.identity.nas_ip,
            Some(NAS),
            "the sender stands in for NAS-IP"
        );
    }

    #[test]
    fn accounting_on_and_off_reset_the_nas() {
        for value in [status::ACCOUNTING_ON, status::ACCOUNTING_OFF] {
            let r = record_of(&[(attr::ACCT_STATUS_TYPE, &status(value))]);
            assert_eq!(r.change, Change::NasReset);
            assert_eq!(r.inside_ip, Ipv4Addr::UNSPECIFIED);
            assert_eq!(r.identity.nas_ip, Some(NAS));
        }
    }

    #[test]
    fn no_usable_address_or_other_status_stores_nothing() {
        let stop = status(status::STOP);
        assert_eq!(
            meaning_of(&[(attr::ACCT_STATUS_TYPE, &stop)]),
            Meaning::NoAddress
        );
        for ip in [[0, 0, 0, 0], [255, 255, 255, 254], [255, 255, 255, 255]] {
            let m = meaning_of(&[
                (attr::ACCT_STATUS_TYPE, &stop),
                (attr::FRAMED_IP_ADDRESS, &ip),
            ]);
            assert_eq!(m, Meaning::NoAddress, "{ip:?}");
        }
        assert_eq!(meaning_of(&[]), Meaning::OtherStatus);
        assert_eq!(
            meaning_of(&[(attr::ACCT_STATUS_TYPE, &status(15))]),
            Meaning::OtherStatus
        );
    }

    #[test]
    fn wrong_sized_values_are_malformed() {
        let start = status(status::START);
        let cases: [&[(u8, &[u8])]; 3] = [
            &[(attr::ACCT_STATUS_TYPE, &[1])],
            &[
                (attr::ACCT_STATUS_TYPE, &start),
                (attr::FRAMED_IP_ADDRESS, &[100, 64, 1]),
            ],
            &[
                (attr::ACCT_STATUS_TYPE, &start),
                (attr::FRAMED_IP_ADDRESS, &[100, 64, 1, 1]),
                (attr::EVENT_TIMESTAMP, &[0; 8]),
            ],
        ];
        for attributes in cases {
            assert_eq!(meaning_of(attributes), Meaning::Malformed, "{attributes:?}");
        }
    }

    #[test]
    fn text_stays_text_and_the_rest_becomes_hex() {
        assert_eq!(text_or_hex(b"bob").as_deref(), Some("bob"));
        assert_eq!(text_or_hex("zoë".as_bytes()).as_deref(), Some("zoë"));
        assert_eq!(text_or_hex(&[0xff, 0x00]).as_deref(), Some("ff:00"));
        assert_eq!(text_or_hex(b"a\nb").as_deref(), Some("61:0a:62"));
        assert_eq!(text_or_hex(b""), None);
    }
}
