//! Behaviour of the NAT as seen from outside: captures in, captures + events + counters out,
//! through `replay::run`. Each test drives the packet clock explicitly. The tests are in
//! behaviour/, a file per concern; this file holds what they share.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use tracenat::engine::Side;
use tracenat::engine::ports::{self, Deterministic, Ownership};
use tracenat::wire::build::{self, FrameSpec};
use tracenat::wire::icmp;

const A: &str = "100.64.1.10";
const B: &str = "100.64.1.20";
const R: &str = "198.51.100.10";
const ROUTER: &str = "198.51.100.254";

fn ins(ts: u64, frame: Vec<u8>) -> Input {
    (ts, Side::Inside, frame)
}
fn outs(ts: u64, frame: Vec<u8>) -> Input {
    (ts, Side::Outside, frame)
}

fn only(frames: &[(u64, Vec<u8>)]) -> &Vec<u8> {
    assert_eq!(
        frames.len(),
        1,
        "expected exactly one frame, got {}",
        frames.len()
    );
    &frames[0].1
}

/// The public endpoint the first session_created event of `inside` (and protocol) got.
fn public_of(o: &Outcome, inside: SocketAddrV4, protocol: u64) -> SocketAddrV4 {
    let e = o
        .events_of("session_created")
        .into_iter()
        .find(|e| ev_ep(e, "inside") == inside && e["protocol"] == protocol)
        .unwrap_or_else(|| panic!("no session_created for {inside}/{protocol}: {:?}", o.events));
    ev_ep(e, "public")
}

/// Timestamps of session_ended events of `inside` (and protocol).
fn ended(o: &Outcome, inside: SocketAddrV4, protocol: u64) -> Vec<u64> {
    o.events_of("session_ended")
        .into_iter()
        .filter(|e| ev_ep(e, "inside") == inside && e["protocol"] == protocol)
        .map(ev_ts)
        .collect()
}

/// Clock ticks every 50 ms from 3 s before `deadline` to 1 s after it.
fn probe_around(deadline: u64) -> Vec<Input> {
    ticks(deadline - 3 * SEC, deadline + SEC, 50 * MS)
}

/// The session of `inside` ended once, at or after `deadline` and within a tick (plus the
/// 50 ms probe spacing) of it.
fn assert_ended_near(o: &Outcome, inside: SocketAddrV4, protocol: u64, deadline: u64) {
    let ts = ended(o, inside, protocol);
    assert_eq!(
        ts.len(),
        1,
        "expected one session_ended for {inside}, got {ts:?}"
    );
    let t = ts[0];
    assert!(
        t >= deadline,
        "session of {inside} ended {} ms before its deadline",
        (deadline - t) / MS
    );
    assert!(
        t <= deadline + TICK + 50 * MS,
        "session of {inside} ended {} ms after its deadline",
        (t - deadline) / MS
    );
}

/// `a` sends one UDP packet to `r`: the packets so far, and the public endpoint `a` got.
fn open_udp(cfg: &Cfg, a: SocketAddrV4, r: SocketAddrV4) -> (Vec<Input>, SocketAddrV4) {
    let pk = vec![ins(at(0, 0), udp(a, r))];
    let public = parse(only(&replay(cfg, &pk).to_outside)).src_ep();
    (pk, public)
}

/// Subscriber `b` opens a flow, then `a` sends to the public endpoint `b` got; returns the
/// outcome and that endpoint.
fn hairpin_case(cfg: &Cfg, a: SocketAddrV4, b: SocketAddrV4) -> (Outcome, SocketAddrV4) {
    let (pk, pb) = hairpin_inputs(cfg, a, b);
    (replay(cfg, &pk), pb)
}

/// The packets of [`hairpin_case`], and the public endpoint of `b`.
fn hairpin_inputs(cfg: &Cfg, a: SocketAddrV4, b: SocketAddrV4) -> (Vec<Input>, SocketAddrV4) {
    let (mut pk, pb) = open_udp(cfg, b, ep("198.51.100.10:53"));
    pk.push(ins(at(0, 10), udp_payload(a, pb, b"hairpin".to_vec())));
    (pk, pb)
}

#[path = "behaviour/fragments_ttl.rs"]
mod fragments_ttl;
#[path = "behaviour/icmp_errors.rs"]
mod icmp_errors;
#[path = "behaviour/limits_filtering.rs"]
mod limits_filtering;
#[path = "behaviour/malformed.rs"]
mod malformed;
#[path = "behaviour/modes_workers.rs"]
mod modes_workers;
#[path = "behaviour/timers.rs"]
mod timers;
/// A subscriber address in 100.64.`net`.0/24 that another worker owns than the one owning
/// `of` (the config has several workers).
fn subscriber_of_another_worker(cfg: &Cfg, of: Ipv4Addr, net: u8) -> Ipv4Addr {
    let config = cfg.config();
    let own = Ownership::new(&config, ports::partitions(&config));
    (1..=250u8)
        .map(|i| Ipv4Addr::new(100, 64, net, i))
        .find(|s| own.owner_of_subscriber(*s) != own.owner_of_subscriber(of))
        .expect("a subscriber of another worker")
}

#[path = "behaviour/translation.rs"]
mod translation;
