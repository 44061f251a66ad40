//! The end of the demo's story: every request in the web server's access log traced back
//! through the mapping log to the subscriber address and port that sent it, and through
//! the identity records to the customer who held that address then; and the address that
//! changed hands, as the identity records tell it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use serde_json::Value;

use super::{DemoError, http_server, io_err};
use crate::lab::topology;
use crate::reader::access_log::{AccessLogParser, JsonFields, LogFormat};
use crate::reader::attribute::{self, AttributeOptions, Summary};
use crate::reader::identity::{Holders, Holding, IdentityBook};
use crate::reader::logdir::LogDir;
use crate::reader::time::format_time;

/// How far apart the web server's clock and the NAT's may be. Both are this machine's,
/// but the window also absorbs the access log's rounding; the story's pauses around the
/// handover are sized by it.
pub const SKEW_NS: u64 = 2_000_000_000;

/// Lines of the trace shown before "…" (the wrong ones and the handover's are always shown).
const SHOWN: usize = 4;

/// One HTTP request the demo made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The subscriber (lab index) that sent it.
    pub subscriber: u16,
    /// Its address and port as the subscriber's stack saw them.
    pub from: SocketAddrV4,
    /// The customer behind that subscriber (DHCP lab): who the trace must name.
    pub customer: Option<String>,
    /// The path requested; unique per request, it finds the request in the access log.
    pub path: String,
}

/// What the trace said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub sent: Sent,
    /// `unique`, `ambiguous` or `none`.
    pub verdict: String,
    /// The subscriber endpoint of the candidate that matched the sender (else the first).
    pub subscriber: Option<SocketAddrV4>,
    /// That candidate's holder verdict (`known`, `overlap`, `unknown`, `not_tracked`).
    pub holder_verdict: String,
    /// The customer's short name of its first holder.
    pub customer: Option<String>,
    /// Unique, and the candidate is the sender's address and port.
    pub right_subscriber: bool,
    /// … and one known holder, the sender's customer (false where no customer is expected).
    pub right_customer: bool,
}

/// The address handed from one subscriber to another mid-demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub address: Ipv4Addr,
    /// The subscriber that released it, and the one that took it.
    pub from: u16,
    pub to: u16,
    /// Wall clock just after the taker got its lease.
    pub at_ns: u64,
    /// The customers the identity records say held it during the demo, in order.
    pub holders: Vec<String>,
}

/// Judges one JSON answer of `log attribute` against the request that was sent.
pub fn judge(line: &Value, sent: &Sent) -> Traced {
    let verdict = line["verdict"].as_str().unwrap_or("").to_owned();
    let expected = sent.from.to_string();
    let candidates = line["candidates"].as_array().map(Vec::as_slice);
    let candidates = candidates.unwrap_or_default();
    // The sender's candidate, where the answer has it: other candidates (older sessions
    // of the same public port) carry their own holders, not the sender's.
    let candidate = candidates
        .iter()
        .find(|c| c["subscriber"].as_str() == Some(expected.as_str()))
        .or(candidates.first());
    let subscriber = candidate
        .and_then(|c| c["subscriber"].as_str())
        .and_then(|s| s.parse().ok());
    let holder = candidate.map(|c| &c["holder"]);
    let holder_verdict = holder
        .and_then(|h| h["verdict"].as_str())
        .unwrap_or("")
        .to_owned();
    let customer = holder
        .and_then(|h| h["holders"][0]["name"].as_str())
        .map(str::to_owned);
    let right_subscriber = verdict == "unique" && subscriber == Some(sent.from);
    let right_customer = right_subscriber
        && holder_verdict == "known"
        && sent.customer.is_some()
        && customer == sent.customer;
    Traced {
        sent: sent.clone(),
        verdict,
        subscriber,
        holder_verdict,
        customer,
        right_subscriber,
        right_customer,
    }
}

/// The path of a request line (`GET /sub2/page0 HTTP/1.1` → `/sub2/page0`).
fn request_path(request: &str) -> &str {
    request.split_whitespace().nth(1).unwrap_or("")
}

/// `log attribute --json` over the access log, as JSON values (one per request).
fn attribute_json(dir: &Path) -> Result<(Summary, Vec<Value>), DemoError> {
    let access_log = dir.join("access.log");
    let mut logdir =
        LogDir::open(&dir.join("log")).map_err(|e| DemoError::Failed(e.to_string()))?;
    let input = File::open(&access_log).map_err(io_err(access_log.display().to_string()))?;
    let mut parser = AccessLogParser::new(LogFormat::Auto, JsonFields::default());
    let server = http_server();
    let server_ip: Ipv4Addr = topology::HTTP_SERVER.parse().expect("lab address");
    let mut text = Vec::new();
    let summary = attribute::attribute(
        io::BufReader::new(input),
        &mut parser,
        &mut logdir,
        &AttributeOptions {
            skew_ns: SKEW_NS,
            server: Some((server_ip, Some(server.port()))),
            json: true,
            ..AttributeOptions::default()
        },
        &mut text,
    )
    .map_err(|e| DemoError::Failed(e.to_string()))?;
    let lines = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("line").is_some())
        .collect();
    Ok((summary, lines))
}

/// Traces every request in `<dir>/access.log`, prints the story's answers (a few, the
/// wrong ones and every one from `highlight`, the address that changed hands), and
/// returns the summary and a judgement per request sent, in the order sent.
pub fn trace(
    dir: &Path,
    sent: &[Sent],
    highlight: Option<Ipv4Addr>,
    out: &mut dyn Write,
) -> Result<(Summary, Vec<Traced>), DemoError> {
    let (summary, lines) = attribute_json(dir)?;
    let by_path: HashMap<&str, &Sent> = sent.iter().map(|s| (s.path.as_str(), s)).collect();
    let mut traced = Vec::new();
    let mut skipped = false;
    for line in &lines {
        let request = line["request"].as_str().unwrap_or("");
        let Some(sent) = by_path.get(request_path(request)) else {
            continue; // not one of the demo's requests
        };
        let t = judge(line, sent);
        let right = t.right_subscriber && (sent.customer.is_none() || t.right_customer);
        let show = traced.len() < SHOWN || !right || highlight == Some(*sent.from.ip());
        if show {
            let _ = writeln!(out, "{}", describe(line, &t, right));
            skipped = false;
        } else if !skipped {
            let _ = writeln!(out, "   …");
            skipped = true;
        }
        traced.push(t);
    }
    // In the order sent, for the report.
    traced.sort_by_key(|t| sent.iter().position(|s| s.path == t.sent.path));
    Ok((summary, traced))
}

/// `   10:11:12.345  203.0.113.1:40506  GET /sub2/page0 -> unique 100.64.1.2 = bob (CPE …, kea-lease)`.
fn describe(line: &Value, t: &Traced, right: bool) -> String {
    let time = line["time"].as_str().unwrap_or("");
    let client = line["client"].as_str().unwrap_or("");
    let request = line["request"].as_str().unwrap_or("");
    let method = request.split_whitespace().next().unwrap_or("");
    let mut text = format!(
        "   {}  {client:<21}  {method} {:<14} -> {}",
        time.get(11..23).unwrap_or(time),
        t.sent.path,
        t.verdict
    );
    if let Some(subscriber) = t.subscriber {
        text.push_str(&format!(" {}", subscriber.ip()));
    }
    if let Some(name) = &t.customer {
        text.push_str(&format!(" = {name}"));
        if let Some(evidence) = holder_evidence(line, t) {
            text.push_str(&format!(" ({evidence})"));
        }
    }
    if !right {
        text.push_str(&format!(
            "   <-- sent by {}{}",
            t.sent.from,
            t.sent
                .customer
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ));
    }
    text
}

/// `CPE 02:74:6e:01:01:02, kea-lease` for the first holder of the judged candidate.
fn holder_evidence(line: &Value, t: &Traced) -> Option<String> {
    let expected = t.subscriber?.to_string();
    let candidates = line["candidates"].as_array()?;
    let candidate = candidates
        .iter()
        .find(|c| c["subscriber"].as_str() == Some(expected.as_str()))?;
    let holder = &candidate["holder"]["holders"][0];
    let source = holder["source"].as_str()?;
    Some(match holder["identity"]["hw_addr"].as_str() {
        Some(hw) => format!("CPE {hw}, {source}"),
        None => source.to_owned(),
    })
}

/// The last line of the story: how many requests were traced to whom.
pub fn summary_line(summary: &Summary, traced: &[Traced], customers: bool) -> String {
    let counts = format!(
        "   {} requests: {} unique, {} ambiguous, {} none",
        summary.requests(),
        summary.unique,
        summary.ambiguous,
        summary.none
    );
    let to_subscriber = traced.iter().filter(|t| t.right_subscriber).count();
    if customers {
        let to_customer = traced.iter().filter(|t| t.right_customer).count();
        format!(
            "{counts} — {to_subscriber} traced to the subscriber that sent them, \
             {to_customer} to the customer who sent them"
        )
    } else {
        format!("{counts} — {to_subscriber} traced to the subscriber that sent them")
    }
}

/// Section 5b: who held the handed-over address between `from_ns` and `to_ns`, by the
/// identity records (what `tracenat identity query` reads). Fills `handover.holders`.
pub fn show_handover(
    log_dir: &Path,
    handover: &mut Handover,
    from_ns: u64,
    to_ns: u64,
    out: &mut dyn Write,
) -> Result<(), DemoError> {
    let book = IdentityBook::load(log_dir, from_ns, to_ns)
        .map_err(|e| DemoError::Failed(format!("identity records: {e}")))?;
    let holdings = match book.holders(handover.address, from_ns, to_ns) {
        Holders::Known(h) => h,
        other => {
            let _ = writeln!(
                out,
                "== 5b. who held {}? the identity records say: {}",
                handover.address,
                other.verdict()
            );
            return Ok(());
        }
    };
    handover.holders = holdings.iter().map(short_name).collect();
    let _ = writeln!(out, "{}", changed_hands(handover.address, &holdings));
    for h in &holdings {
        let _ = writeln!(out, "   {}", holding_line(h));
    }
    Ok(())
}

fn short_name(h: &Holding) -> String {
    Holders::Known(vec![h.clone()])
        .short_name()
        .unwrap_or_default()
}

fn clock(ns: u64) -> String {
    let text = format_time(ns);
    text.get(11..23).map(str::to_owned).unwrap_or(text)
}

/// `== 5b. 100.64.1.2 changed hands at T: bob until T1, dave from T2`.
fn changed_hands(address: Ipv4Addr, holdings: &[Holding]) -> String {
    let at = holdings.get(1).map(|h| clock(h.from_ns));
    let spans: Vec<String> = holdings
        .iter()
        .map(|h| match h.to_ns {
            Some(to) => format!("{} until {}", short_name(h), clock(to)),
            None => format!("{} from {}", short_name(h), clock(h.from_ns)),
        })
        .collect();
    match at {
        Some(at) => format!(
            "== 5b. {address} changed hands at {at}: {}",
            spans.join(", ")
        ),
        None => format!("== 5b. {address} had one holder: {}", spans.join(", ")),
    }
}

/// `bob  CPE 02:…, host bob  kea-lease  10:11:09.000 .. 10:11:14.120 (stopped)`.
fn holding_line(h: &Holding) -> String {
    let end = match (h.to_ns, h.ended) {
        (Some(to), Some(why)) => format!("{} ({})", clock(to), why.name()),
        (Some(to), None) => clock(to),
        (None, _) => "(still held)".to_owned(),
    };
    format!(
        "{:<8} {}  {}  {} .. {end}",
        short_name(h),
        h.identity,
        h.source.name(),
        clock(h.from_ns)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(customer: &str) -> Sent {
        Sent {
            subscriber: 4,
            from: "100.64.1.2:40506".parse().unwrap(),
            customer: Some(customer.to_owned()),
            path: "/sub4/after0".into(),
        }
    }

    fn answer(verdict: &str, subscriber: &str, holder: &str, names: &[&str]) -> Value {
        let holders: Vec<Value> = names
            .iter()
            .map(|n| serde_json::json!({"name": n, "source": "kea-lease", "identity": {"hw_addr": "02:74:6e:01:01:04"}}))
            .collect();
        serde_json::json!({
            "line": 1, "verdict": verdict, "time": "2026-11-30T10:11:12.345Z",
            "client": "203.0.113.1:40506", "request": "GET /sub4/after0 HTTP/1.1",
            "candidates": [{"subscriber": subscriber, "holder": {"verdict": holder, "holders": holders}}]
        })
    }

    #[test]
    fn the_right_customer_is_traced() {
        let t = judge(
            &answer("unique", "100.64.1.2:40506", "known", &["dave"]),
            &sent("dave"),
        );
        assert!(t.right_subscriber && t.right_customer, "{t:?}");
        let line = describe(
            &answer("unique", "100.64.1.2:40506", "known", &["dave"]),
            &t,
            true,
        );
        assert!(
            line.contains("-> unique 100.64.1.2 = dave (CPE 02:74:6e:01:01:04, kea-lease)"),
            "{line}"
        );
    }

    #[test]
    fn the_previous_holder_is_not_the_sender() {
        let t = judge(
            &answer("unique", "100.64.1.2:40506", "known", &["bob"]),
            &sent("dave"),
        );
        assert!(t.right_subscriber && !t.right_customer, "{t:?}");
        let line = describe(
            &answer("unique", "100.64.1.2:40506", "known", &["bob"]),
            &t,
            false,
        );
        assert!(
            line.contains("<-- sent by 100.64.1.2:40506 (dave)"),
            "{line}"
        );
    }

    #[test]
    fn overlaps_wrong_ports_and_no_answers_are_not_traced() {
        let overlap = answer("unique", "100.64.1.2:40506", "overlap", &["dave", "bob"]);
        assert!(!judge(&overlap, &sent("dave")).right_customer);
        let port = answer("unique", "100.64.1.2:40507", "known", &["dave"]);
        assert!(!judge(&port, &sent("dave")).right_subscriber);
        let ambiguous = answer("ambiguous", "100.64.1.2:40506", "known", &["dave"]);
        assert!(!judge(&ambiguous, &sent("dave")).right_subscriber);
        let nothing = judge(&serde_json::json!({"verdict": "none"}), &sent("dave"));
        assert!(!nothing.right_subscriber && nothing.subscriber.is_none());
        // A static lab expects no customer: the subscriber alone is traced.
        let mut anonymous = sent("x");
        anonymous.customer = None;
        let t = judge(
            &answer("unique", "100.64.1.2:40506", "not_tracked", &[]),
            &anonymous,
        );
        assert!(t.right_subscriber && !t.right_customer);
    }

    #[test]
    fn request_paths() {
        assert_eq!(request_path("GET /sub2/page0 HTTP/1.1"), "/sub2/page0");
        assert_eq!(request_path("garbage"), "");
    }
}
