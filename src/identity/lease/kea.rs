//! Kea DHCPv4 memfile lease files (CSV), as Kea 2.2 and newer write them.
//!
//! Every line is a lease's whole state at one moment; the file is a journal that Kea's
//! lease file cleanup (LFC) compacts from time to time. Columns are found by the header,
//! so the 2.2 layout and newer ones (with `pool_id`) both read.

use std::net::Ipv4Addr;

use super::text::{hex_colon, parse_hex_colon, parse_hex_plain, printable_or_hex, secs_to_ns};
use super::{LeaseState, Parsed};
use crate::identity::Identity;

/// Lease states Kea writes (`Lease::STATE_*`).
const STATE_DEFAULT: u32 = 0;
const STATE_DECLINED: u32 = 1;
const STATE_EXPIRED_RECLAIMED: u32 = 2;
/// Kea 2.4+ with lease affinity keeps a released lease in this state.
const STATE_RELEASED: u32 = 3;

/// Where each column we use is, from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Columns {
    count: usize,
    address: usize,
    hwaddr: usize,
    client_id: Option<usize>,
    valid_lifetime: usize,
    expire: usize,
    hostname: Option<usize>,
    state: Option<usize>,
    user_context: Option<usize>,
}

impl Columns {
    fn from_header(line: &str) -> Result<Columns, String> {
        let names: Vec<&str> = line.split(',').map(str::trim).collect();
        let find = |name: &str| names.iter().position(|n| *n == name);
        let need = |name: &str| find(name).ok_or_else(|| format!("header has no {name} column"));
        Ok(Columns {
            count: names.len(),
            address: need("address")?,
            hwaddr: need("hwaddr")?,
            client_id: find("client_id"),
            valid_lifetime: need("valid_lifetime")?,
            expire: need("expire")?,
            hostname: find("hostname"),
            state: find("state"),
            user_context: find("user_context"),
        })
    }
}

/// Reads a Kea lease file line by line; remembers the header.
#[derive(Debug, Default)]
pub struct KeaParser {
    columns: Option<Columns>,
}

impl KeaParser {
    pub fn new() -> KeaParser {
        KeaParser::default()
    }

    /// One line, without its line end. `None` for an empty line.
    pub fn parse_line(&mut self, line: &str) -> Option<Parsed> {
        if line.trim().is_empty() {
            return None;
        }
        if line.starts_with("address,") {
            // A header starts every file Kea writes, the LFC's output included.
            return Some(match Columns::from_header(line) {
                Ok(c) => {
                    self.columns = Some(c);
                    Parsed::Ignored { counted: false }
                }
                Err(why) => Parsed::Skipped(why),
            });
        }
        let Some(columns) = &self.columns else {
            return Some(Parsed::skipped("lease line before the header line"));
        };
        Some(match lease_from_fields(columns, line) {
            Ok(parsed) => parsed,
            Err(why) => Parsed::Skipped(why),
        })
    }
}

fn lease_from_fields(columns: &Columns, line: &str) -> Result<Parsed, String> {
    // Kea escapes commas inside fields, so a plain split is exact.
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() != columns.count {
        return Err(format!(
            "{} fields where the header has {}",
            fields.len(),
            columns.count
        ));
    }
    let field = |i: Option<usize>| i.map(|i| fields[i].trim()).unwrap_or("");
    let address = field(Some(columns.address));
    let inside_ip: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("address {address:?} is not an IPv4 address"))?;
    if inside_ip.is_unspecified() {
        return Err("address 0.0.0.0".into());
    }
    let valid = number(field(Some(columns.valid_lifetime)), "valid_lifetime")?;
    let expire = number(field(Some(columns.expire)), "expire")?;
    let state = match field(columns.state) {
        "" => STATE_DEFAULT,
        s => u32::try_from(number(s, "state")?).map_err(|_| format!("state {s} out of range"))?,
    };
    let cltt = expire
        .checked_sub(valid)
        .ok_or_else(|| format!("expire {expire} is before valid_lifetime {valid} from 1970"))?;
    let identity = identity(columns, &fields)?;
    let lease = |held: bool, ended_ns: Option<u64>| {
        Parsed::Lease(LeaseState {
            inside_ip,
            identity: identity.clone(),
            held,
            cltt_ns: secs_to_ns(cltt),
            expires_ns: secs_to_ns(expire),
            ended_ns,
        })
    };
    Ok(match state {
        STATE_DECLINED => Parsed::Ignored { counted: true },
        // valid_lifetime 0 is how the memfile writes a removed lease (a release in 2.2, a
        // flushed one later): it ended at some time the file does not give.
        STATE_DEFAULT | STATE_RELEASED | STATE_EXPIRED_RECLAIMED if valid == 0 => {
            lease(false, None)
        }
        STATE_DEFAULT => lease(true, None),
        // Reclaimed after expiry: it ended when it expired.
        STATE_EXPIRED_RECLAIMED => lease(false, Some(secs_to_ns(expire))),
        STATE_RELEASED => lease(false, None),
        other => return Err(format!("unknown lease state {other}")),
    })
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{what} {text:?} is not a number"))
}

fn identity(columns: &Columns, fields: &[&str]) -> Result<Identity, String> {
    let field = |i: Option<usize>| i.map(|i| fields[i].trim()).unwrap_or("");
    let mut id = Identity {
        hw_addr: hex_field(field(Some(columns.hwaddr)), "hwaddr")?,
        client_id: hex_field(field(columns.client_id), "client_id")?,
        ..Identity::default()
    };
    let hostname = unescape(field(columns.hostname));
    id.hostname = (!hostname.is_empty()).then_some(hostname);
    let context = unescape(field(columns.user_context));
    if !context.is_empty() {
        add_relay_agent_info(&mut id, &context);
    }
    Ok(id)
}

/// Colon hex as Kea prints it, normalised to two lower-case digits per byte.
fn hex_field(text: &str, what: &str) -> Result<Option<String>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    parse_hex_colon(text)
        .map(|b| Some(hex_colon(&b)))
        .ok_or_else(|| format!("{what} {text:?} is not colon-separated hex"))
}

/// Undoes Kea's escaping: `&#x` and two hex digits stand for that byte (Kea escapes the
/// comma and `&` itself). Anything else is left as it is, as Kea does.
pub fn unescape(text: &str) -> String {
    const TAG: &str = "&#x";
    if !text.contains(TAG) {
        return text.to_string();
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(TAG) {
        bytes.extend_from_slice(&rest.as_bytes()[..pos]);
        let after = &rest[pos + TAG.len()..];
        match after.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if after.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit) => {
                bytes.push(b);
                rest = &after[2..];
            }
            _ => {
                bytes.extend_from_slice(TAG.as_bytes());
                rest = after;
            }
        }
    }
    bytes.extend_from_slice(rest.as_bytes());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Option 82 as `store-extended-info` keeps it: Kea 2.2 writes
/// `{"ISC": {"relay-agent-info": "0x0104…"}}`, newer Kea
/// `{"ISC": {"relay-agent-info": {"sub-options": "0x0104…", …}}}`. A context that is not
/// JSON, or has no relay agent information, adds nothing: the lease still counts.
fn add_relay_agent_info(id: &mut Identity, context: &str) {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(context) else {
        return;
    };
    let info = &json["ISC"]["relay-agent-info"];
    let hex = info.as_str().or_else(|| info["sub-options"].as_str());
    let Some(bytes) = hex.and_then(parse_hex_plain) else {
        return;
    };
    for (code, value) in sub_options(&bytes) {
        match code {
            1 => id.circuit_id = Some(printable_or_hex(value)),
            2 => id.remote_id = Some(printable_or_hex(value)),
            _ => {}
        }
    }
}

/// The (code, value) pairs of option 82's content; stops at the first that does not fit.
pub(crate) fn sub_options(mut bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let [code, len, rest @ ..] = bytes {
        let len = usize::from(*len);
        if rest.len() < len {
            break;
        }
        out.push((*code, &rest[..len]));
        bytes = &rest[len..];
    }
    out
}
