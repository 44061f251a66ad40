//! ISC dhcpd's `dhcpd.leases`: a journal of `lease A.B.C.D { … }` blocks, the later
//! block for an address superseding the earlier, rewritten whole from time to time
//! (dhcpd writes `dhcpd.leases~` … and renames).

use std::net::Ipv4Addr;

use super::text::{
    hex_colon, parse_clock, parse_hex_colon, printable_or_hex, secs_to_ns, utc_epoch,
};
use super::{LeaseState, Parsed};
use crate::identity::Identity;

/// The length of the first complete top-level statement in `buf` (`…;` or `… { … }`), if
/// it is all there. Quotes, escapes and `#` comments are honoured.
pub(crate) fn unit_len(buf: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'"' => i = skip_quoted(buf, i)?,
            b'#' => i = memchr::memchr(b'\n', &buf[i..]).map(|n| i + n)?,
            b'{' => depth += 1,
            b'}' if depth <= 1 => return Some(i + 1),
            b'}' => depth -= 1,
            b';' if depth == 0 => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the closing quote of the string opening at `start`.
fn skip_quoted(buf: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < buf.len() {
        match buf[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// A quoted string's bytes, escapes undone.
    Quoted(Vec<u8>),
    Punct(char),
}

fn tokens(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' => i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n),
            b'"' => {
                let (value, next) = quoted(bytes, i);
                out.push(Token::Quoted(value));
                i = next;
            }
            b'{' | b'}' | b';' => {
                out.push(Token::Punct(b as char));
                i += 1;
            }
            _ if b.is_ascii_whitespace() => i += 1,
            _ => {
                let end = bytes[i..]
                    .iter()
                    .position(|c| c.is_ascii_whitespace() || b"{};\"#".contains(c))
                    .map_or(bytes.len(), |n| i + n);
                out.push(Token::Word(
                    String::from_utf8_lossy(&bytes[i..end]).into_owned(),
                ));
                i = end;
            }
        }
    }
    out
}

/// A quoted string from `start` (the quote) with dhcpd's escapes (`\"`, `\\`, `\ooo`
/// octal) undone; returns its bytes and where the text goes on.
fn quoted(bytes: &[u8], start: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (out, i + 1),
            b'\\' => {
                let octal: Vec<u8> = bytes[i + 1..]
                    .iter()
                    .take(3)
                    .take_while(|c| (b'0'..=b'7').contains(c))
                    .copied()
                    .collect();
                if octal.len() == 3 {
                    let v = octal
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    out.push(v as u8);
                    i += 4;
                } else if let Some(&c) = bytes.get(i + 1) {
                    out.push(c);
                    i += 2;
                } else {
                    i += 1;
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, bytes.len())
}

/// Reads `dhcpd.leases` one top-level statement at a time.
#[derive(Debug, Default)]
pub struct IscParser;

impl IscParser {
    pub fn new() -> IscParser {
        IscParser
    }

    /// One top-level statement, as cut by the follower. `None` when it is only white
    /// space and comments.
    pub fn parse_unit(&mut self, unit: &str) -> Option<Parsed> {
        let toks = tokens(unit);
        let first = toks.first()?;
        Some(match first {
            Token::Word(w) if w == "lease" => lease_block(&toks).unwrap_or_else(Parsed::Skipped),
            // server-duid, authoring-byte-order, failover peer state, host, lease6,
            // class and subclass: nothing about who held a v4 address.
            Token::Word(w) if TOP_LEVEL.contains(&w.as_str()) && ends_properly(&toks) => {
                Parsed::Ignored { counted: false }
            }
            _ => Parsed::skipped(format!("not a statement: {}", describe(&toks))),
        })
    }
}

/// Top-level statements dhcpd writes besides `lease`.
const TOP_LEVEL: [&str; 10] = [
    "authoring-byte-order",
    "server-duid",
    "failover",
    "host",
    "class",
    "subclass",
    "lease6",
    "ia-na",
    "ia-ta",
    "ia-pd",
];

fn ends_properly(toks: &[Token]) -> bool {
    matches!(toks.last(), Some(Token::Punct(';' | '}')))
}

fn describe(toks: &[Token]) -> String {
    let words: Vec<String> = toks
        .iter()
        .take(4)
        .map(|t| match t {
            Token::Word(w) => w.chars().take(40).collect(),
            Token::Quoted(_) => "\"…\"".into(),
            Token::Punct(c) => c.to_string(),
        })
        .collect();
    words.join(" ")
}

/// What a lease block says, field by field.
#[derive(Debug, Default)]
struct Block {
    starts: Option<Time>,
    ends: Option<Time>,
    cltt: Option<Time>,
    binding: Option<String>,
    identity: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Time {
    At(u64),
    Never,
}

fn lease_block(toks: &[Token]) -> Result<Parsed, String> {
    let ip = match toks.get(1) {
        Some(Token::Word(w)) => w
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("lease {w:?} is not an IPv4 address"))?,
        _ => return Err("lease without an address".into()),
    };
    if toks.get(2) != Some(&Token::Punct('{')) || toks.last() != Some(&Token::Punct('}')) {
        return Err(format!("lease {ip}: not a {{ … }} block"));
    }
    if ip.is_unspecified() {
        return Err("lease 0.0.0.0".into());
    }
    let mut block = Block::default();
    for stmt in statements(&toks[3..toks.len() - 1]) {
        apply(&mut block, stmt).map_err(|why| format!("lease {ip}: {why}"))?;
    }
    to_state(ip, block).map_err(|why| format!("lease {ip}: {why}"))
}

/// The `;`-terminated statements of a block body; nested `{ … }` (an `on` handler) stays
/// inside its statement.
fn statements(body: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in body.iter().enumerate() {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    out.push(&body[start..=i]);
                    start = i + 1;
                }
            }
            Token::Punct(';') if depth == 0 => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        out.push(&body[start..]);
    }
    out
}

fn word(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Word(w)) => Some(w),
        _ => None,
    }
}

fn apply(block: &mut Block, stmt: &[Token]) -> Result<(), String> {
    let Some(key) = word(stmt.first()) else {
        return Ok(());
    };
    let args = &stmt[1..];
    match key {
        "starts" => block.starts = Some(time(args)?),
        "ends" => block.ends = Some(time(args)?),
        "cltt" => block.cltt = Some(time(args)?),
        "binding" if word(args.first()) == Some("state") => {
            block.binding = word(args.get(1)).map(str::to_ascii_lowercase);
        }
        "hardware" => {
            let text = word(args.get(1)).unwrap_or("");
            let bytes = parse_hex_colon(text)
                .ok_or_else(|| format!("hardware address {text:?} is not colon-separated hex"))?;
            block.identity.hw_addr = Some(hex_colon(&bytes));
        }
        "uid" => block.identity.client_id = Some(hex_colon(&value_bytes(args.first(), "uid")?)),
        "client-hostname" => {
            block.identity.hostname = Some(
                String::from_utf8_lossy(&value_bytes(args.first(), "client-hostname")?)
                    .into_owned(),
            );
        }
        "option" => match word(args.first()) {
            Some("agent.circuit-id") => {
                block.identity.circuit_id =
                    Some(printable_or_hex(&value_bytes(args.get(1), "circuit-id")?));
            }
            Some("agent.remote-id") => {
                block.identity.remote_id =
                    Some(printable_or_hex(&value_bytes(args.get(1), "remote-id")?));
            }
            _ => {}
        },
        // next/rewind binding state, tstp, tsfp, atsfp, set, on, billing class, …
        _ => {}
    }
    Ok(())
}

/// A value dhcpd writes either quoted (escapes undone) or as colon-separated hex.
fn value_bytes(t: Option<&Token>, what: &str) -> Result<Vec<u8>, String> {
    match t {
        Some(Token::Quoted(b)) => Ok(b.clone()),
        Some(Token::Word(w)) => {
            parse_hex_colon(w).ok_or_else(|| format!("{what} {w:?} is neither quoted nor hex"))
        }
        _ => Err(format!("{what} without a value")),
    }
}

/// `W YYYY/MM/DD HH:MM:SS` (UTC), `epoch N` (db-time-format local) or `never`.
fn time(args: &[Token]) -> Result<Time, String> {
    let words: Vec<&str> = args.iter().filter_map(|t| word(Some(t))).collect();
    match words.as_slice() {
        ["never"] => Ok(Time::Never),
        ["epoch", n] => n
            .parse()
            .map(|s| Time::At(secs_to_ns(s)))
            .map_err(|_| format!("epoch {n:?} is not a number")),
        [_weekday, date, clock] => {
            let bad = || format!("time {date} {clock} is not YYYY/MM/DD HH:MM:SS");
            let mut d = date.split('/');
            let (y, m, day) = (d.next(), d.next(), d.next());
            let (y, m, day) = match (y, m, day, d.next()) {
                (Some(y), Some(m), Some(day), None) => (
                    y.parse().map_err(|_| bad())?,
                    m.parse().map_err(|_| bad())?,
                    day.parse().map_err(|_| bad())?,
                ),
                _ => return Err(bad()),
            };
            let (h, mi, s) = parse_clock(clock).ok_or_else(bad)?;
            utc_epoch(y, m, day, h, mi, s)
                .map(|s| Time::At(secs_to_ns(s)))
                .ok_or_else(bad)
        }
        _ => Err("a time is `W YYYY/MM/DD HH:MM:SS`, `epoch N` or `never`".into()),
    }
}

fn at(t: Option<Time>) -> Option<u64> {
    match t {
        Some(Time::At(ns)) => Some(ns),
        _ => None,
    }
}

fn to_state(inside_ip: Ipv4Addr, block: Block) -> Result<Parsed, String> {
    let binding = block.binding.as_deref().ok_or("no binding state")?;
    let cltt_ns = at(block.cltt).or(at(block.starts)).unwrap_or(0);
    let expires_ns = at(block.ends).unwrap_or(0);
    let state = |held: bool, ended_ns: Option<u64>| {
        Parsed::Lease(LeaseState {
            inside_ip,
            identity: block.identity.clone(),
            held,
            cltt_ns,
            expires_ns,
            ended_ns,
        })
    };
    Ok(match binding {
        "active" | "bootp" => {
            if cltt_ns == 0 {
                return Err("active lease without starts or cltt".into());
            }
            state(true, None)
        }
        // dhcpd sets `ends` to the moment of release or expiry.
        "free" | "released" | "expired" => match at(block.ends).unwrap_or(cltt_ns) {
            0 => return Err(format!("{binding} lease without ends, cltt or starts")),
            ended => state(false, Some(ended)),
        },
        // Abandoned (in use by someone unknown), or set aside for a failover peer: no
        // customer's holding begins or ends.
        "abandoned" | "backup" | "reset" => Parsed::Ignored { counted: true },
        other => return Err(format!("unknown binding state {other:?}")),
    })
}
