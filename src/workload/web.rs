//! A carrier-grade NAT's web traffic, for the attribution benchmark and tests: thousands of
//! subscribers share a public address and browse in bursts of short HTTPS connections to
//! servers of Zipf popularity; each connection carries a few requests; each subscriber is
//! one actor (one user agent); each server logs its requests — without the client's port,
//! as most server logs do — by a clock that is off by seconds. Deterministic from a seed.
//!
//! [`WebSpec::generate`] makes the connections, [`drive`] pushes their packets through an
//! engine (which logs the mappings), and [`access_log`] writes what the servers saw.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::engine::event::EventSink;
use crate::engine::{Engine, Side, Verdict};
use crate::rng::SplitMix64;
use crate::wire::build::{FrameSpec, build};
use crate::wire::tcp::{ACK, FIN, PSH, SYN};
use crate::workload::Zipf;

const MS: u64 = 1_000_000;

/// The shape of the traffic.
#[derive(Debug, Clone)]
pub struct WebSpec {
    pub subscribers: u32,
    pub first_subscriber: Ipv4Addr,
    /// Servers 198.51.100.0/24 upwards (port 443), ranked by popularity.
    pub servers: u32,
    pub zipf: f64,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// Mean idle time between one subscriber's bursts (exponentially distributed).
    pub mean_think_ns: u64,
    /// Connections per burst: 1 to this many, started within a second of each other.
    pub burst_max: u32,
    /// How long a connection carries traffic: uniform in this range.
    pub busy_ns: (u64, u64),
    /// Requests per connection: 1 to this many.
    pub requests_max: u32,
    /// Each server's clock is off by a uniform amount in ± this.
    pub server_offset_max_ns: u64,
    pub seed: u64,
}

/// One TCP connection from a subscriber to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Index of the subscriber: its actor.
    pub subscriber: u32,
    pub inside: SocketAddrV4,
    pub server: SocketAddrV4,
    pub start_ns: u64,
    /// Its last packet (the end of the FIN exchange).
    pub last_ns: u64,
    /// When the server handled its requests, in true time.
    pub requests: Vec<u64>,
    /// The public endpoint the NAT gave it, once driven (`None`: refused or not driven).
    pub public: Option<SocketAddrV4>,
}

/// The generated traffic.
#[derive(Debug, Clone)]
pub struct Web {
    pub connections: Vec<Connection>,
    /// Each server's clock minus true time, in ns, by server rank.
    pub server_offsets: Vec<i64>,
}

impl WebSpec {
    pub fn generate(&self) -> Web {
        let mut rng = SplitMix64::new(self.seed);
        let popularity = Zipf::new(self.servers as usize, self.zipf);
        let mut connections = Vec::new();
        for subscriber in 0..self.subscribers {
            self.browse(subscriber, &popularity, &mut rng, &mut connections);
        }
        connections.sort_by_key(|c| c.start_ns);
        let max = self.server_offset_max_ns as i64;
        let server_offsets = (0..self.servers)
            .map(|_| below(&mut rng, 2 * max as u64 + 1) as i64 - max)
            .collect();
        Web {
            connections,
            server_offsets,
        }
    }

    /// One subscriber's bursts over the whole duration.
    fn browse(
        &self,
        subscriber: u32,
        popularity: &Zipf,
        rng: &mut SplitMix64,
        out: &mut Vec<Connection>,
    ) {
        let inside_ip = subscriber_ip(self, subscriber);
        let mut next_port = 32768 + below(rng, 28000) as u16;
        let end = self.start_ns + self.duration_ns;
        let mut t = self.start_ns + exponential(rng, self.mean_think_ns);
        while t < end {
            let mut burst_end = t;
            for _ in 0..1 + below(rng, self.burst_max as u64) {
                let start = t + below(rng, 1000) * MS;
                let (lo, hi) = self.busy_ns;
                let last = start + lo + below(rng, hi - lo + 1);
                let rank = popularity.sample(rng) as u32;
                out.push(Connection {
                    subscriber,
                    inside: SocketAddrV4::new(inside_ip, next_port),
                    server: server_of(rank),
                    start_ns: start,
                    last_ns: last,
                    requests: self.requests(start, last, rng),
                    public: None,
                });
                next_port = if next_port >= 60999 {
                    32768
                } else {
                    next_port + 1
                };
                burst_end = burst_end.max(last);
            }
            t = burst_end + exponential(rng, self.mean_think_ns);
        }
    }

    /// Request times inside the connection's traffic (after the handshake, before the FIN).
    fn requests(&self, start: u64, last: u64, rng: &mut SplitMix64) -> Vec<u64> {
        let (from, to) = (start + 3 * MS, last - 3 * MS);
        let mut times: Vec<u64> = (0..1 + below(rng, self.requests_max as u64))
            .map(|_| from + below(rng, to - from + 1))
            .collect();
        times.sort_unstable();
        times
    }
}

/// The inside address of subscriber number `subscriber`.
pub fn subscriber_ip(spec: &WebSpec, subscriber: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(spec.first_subscriber) + subscriber)
}

/// Server of popularity rank `rank`: 198.51.100.1 upwards, then on into 198.51.101.0/24...
pub fn server_of(rank: u32) -> SocketAddrV4 {
    let base = u32::from(Ipv4Addr::new(198, 51, 100, 1));
    SocketAddrV4::new(Ipv4Addr::from(base + rank), 443)
}

/// Uniform in `0..n` (n > 0); the modulo bias is negligible for these ranges.
fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.next_u64() % n
}

fn exponential(rng: &mut SplitMix64, mean_ns: u64) -> u64 {
    let u = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    (-u.ln() * mean_ns as f64) as u64
}

/// The packets of a connection, by step: handshake, a request, then the FIN exchange.
const STEPS: [(u64, Side, u8); 6] = [
    (0, Side::Inside, SYN),
    (MS, Side::Outside, SYN | ACK),
    (2 * MS, Side::Inside, ACK | PSH),
    (2 * MS, Side::Inside, FIN | ACK),
    (MS, Side::Outside, FIN | ACK),
    (0, Side::Inside, ACK),
];

/// When step `step` of `c` is sent: the first three after its start, the last three before
/// its last packet.
fn step_time(c: &Connection, step: usize) -> u64 {
    let (offset, _, _) = STEPS[step];
    if step < 3 {
        c.start_ns + offset
    } else {
        c.last_ns - offset
    }
}

/// Pushes every connection's packets through `engine` in time order, then lets the clock
/// run to `end_ns` so every session ends. Fills in each connection's public endpoint.
/// `drain` is called after each packet and clock step, to take the events the sink holds.
pub fn drive<S: EventSink>(
    connections: &mut [Connection],
    engine: &mut Engine<S>,
    end_ns: u64,
    mut drain: impl FnMut(&mut S),
) {
    let mut schedule: Vec<(u64, u32, u8)> = connections
        .iter()
        .enumerate()
        .flat_map(|(i, c)| (0..STEPS.len()).map(move |s| (step_time(c, s), i as u32, s as u8)))
        .collect();
    schedule.sort_unstable();
    let mut buf = vec![0u8; 2048];
    let mut clock = ClockSteps::default();
    for (t, i, step) in schedule {
        clock.run_to(t, engine);
        let c = &mut connections[i as usize];
        let (_, side, flags) = STEPS[step as usize];
        let spec = match (side, c.public) {
            (Side::Inside, _) => FrameSpec::tcp(c.inside, c.server, flags),
            (Side::Outside, Some(public)) => FrameSpec::tcp(c.server, public, flags),
            (Side::Outside, None) => continue,
        };
        let frame = build(&spec);
        buf[..frame.len()].copy_from_slice(&frame);
        let verdict = engine.process(&mut buf, frame.len(), side, t);
        if step == 0 && verdict == Verdict::Forward(Side::Outside) {
            c.public = Some(source_of(&buf));
        }
        drain(engine.sink_mut());
    }
    clock.run_to(end_ns, engine);
    drain(engine.sink_mut());
}

/// The engine's clock moved on in steps of at most a second, as a running NAT's workers
/// move it whether packets come or not: sessions end when their timers fire, not at the
/// next packet after a quiet spell.
#[derive(Default)]
struct ClockSteps {
    now: u64,
}

impl ClockSteps {
    fn run_to<S: EventSink>(&mut self, t: u64, engine: &mut Engine<S>) {
        const STEP: u64 = 1_000_000_000;
        while self.now != 0 && self.now + STEP < t {
            self.now += STEP;
            engine.advance(self.now);
        }
        self.now = self.now.max(t);
        engine.advance(t);
    }
}

/// The IPv4 source endpoint of an Ethernet frame (no VLAN, as built here).
fn source_of(frame: &[u8]) -> SocketAddrV4 {
    let ip = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
    let ihl = (frame[14] & 0x0F) as usize * 4;
    let port = u16::from_be_bytes([frame[14 + ihl], frame[15 + ihl]]);
    SocketAddrV4::new(ip, port)
}

/// One request as a server logged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The actor (subscriber index) that made it: the ground truth.
    pub subscriber: u32,
    pub inside: SocketAddrV4,
    pub public: SocketAddrV4,
    pub server: SocketAddrV4,
    pub true_ns: u64,
    /// By the server's clock.
    pub logged_ns: u64,
}

/// Every request of every translated connection, as the servers logged them, in the order
/// of their logged times.
pub fn logged_requests(web: &Web) -> Vec<LoggedRequest> {
    let mut out: Vec<LoggedRequest> = web
        .connections
        .iter()
        .filter_map(|c| Some((c, c.public?)))
        .flat_map(|(c, public)| {
            let rank = u32::from(*c.server.ip()) - u32::from(*server_of(0).ip());
            let offset = web.server_offsets[rank as usize];
            c.requests.iter().map(move |&t| LoggedRequest {
                subscriber: c.subscriber,
                inside: c.inside,
                public,
                server: c.server,
                true_ns: t,
                logged_ns: t.saturating_add_signed(offset),
            })
        })
        .collect();
    out.sort_by_key(|r| r.logged_ns);
    out
}

/// The requests as JSON access-log lines (`tracenat log attribute --format json`): the
/// client address, the client port only `with_port`, the server's address and port, the
/// time in epoch seconds by the server's clock, and the actor's user agent.
pub fn access_log<'a>(
    requests: impl IntoIterator<Item = &'a LoggedRequest>,
    with_port: bool,
) -> String {
    let mut out = String::new();
    for r in requests {
        let _ = write!(
            out,
            "{{\"time\":{}.{:09},\"remote_addr\":\"{}\",",
            r.logged_ns / 1_000_000_000,
            r.logged_ns % 1_000_000_000,
            r.public.ip()
        );
        if with_port {
            let _ = write!(out, "\"remote_port\":{},", r.public.port());
        }
        let _ = writeln!(
            out,
            "\"server_addr\":\"{}\",\"server_port\":{},\"user_agent\":\"actor-{}\"}}",
            r.server.ip(),
            r.server.port(),
            r.subscriber
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::event::{EventKind, VecSink};

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_764_000_000 * SEC;

    fn spec() -> WebSpec {
        WebSpec {
            subscribers: 50,
            first_subscriber: Ipv4Addr::new(100, 64, 0, 1),
            servers: 20,
            zipf: 1.0,
            start_ns: T0,
            duration_ns: 600 * SEC,
            mean_think_ns: 60 * SEC,
            burst_max: 4,
            busy_ns: (200 * MS, 5 * SEC),
            requests_max: 3,
            server_offset_max_ns: 3 * SEC,
            seed: 9,
        }
    }

    #[test]
    fn connections_are_deterministic_and_requests_lie_inside_them() {
        let (a, b) = (spec().generate(), spec().generate());
        assert_eq!(a.connections, b.connections);
        assert!(a.connections.len() > 100, "{}", a.connections.len());
        for c in &a.connections {
            assert!(c.start_ns + 5 * MS < c.last_ns);
            assert!(
                c.requests
                    .iter()
                    .all(|t| (c.start_ns..c.last_ns).contains(t))
            );
        }
        assert!(a.server_offsets.iter().all(|o| o.unsigned_abs() <= 3 * SEC));
    }

    #[test]
    fn driven_connections_are_translated_and_logged_with_their_last_packet() {
        let cfg = Config::from_toml_str(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
             [pool]\npublic = [\"203.0.113.1/32\"]\nsubscribers = [\"100.64.0.0/16\"]\n",
        )
        .unwrap();
        let mut web = spec().generate();
        let mut engine = Engine::for_all_workers(&cfg, T0, |_| VecSink::default())
            .pop()
            .unwrap();
        let mut events = Vec::new();
        drive(&mut web.connections, &mut engine, T0 + 1200 * SEC, |s| {
            events.append(&mut s.events)
        });
        assert!(web.connections.iter().all(|c| c.public.is_some()));
        let ends: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::SessionEnded)
            .collect();
        assert_eq!(ends.len(), web.connections.len(), "every session ended");
        for c in &web.connections {
            let public = c.public.unwrap();
            let end = ends
                .iter()
                .find(|e| e.public() == public && e.inside() == c.inside)
                .expect("its end");
            let slack = 125 * MS + MS;
            assert!(
                (c.last_ns..=c.last_ns + slack).contains(&end.last_active_ns),
                "{c:?} {end:?}"
            );
        }
        let requests = logged_requests(&web);
        let log = access_log(&requests, false);
        assert_eq!(log.lines().count(), requests.len());
        assert!(!log.contains("remote_port"));
    }
}
