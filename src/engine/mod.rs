//! The translation engine of one worker: NAT44 with endpoint-independent mapping
//! (RFC 4787, 5382, 5508, 6888, 7857), driven by packets and an explicit clock.
//!
//! A worker owns an [`Engine`]: its share of public ports, its mappings and sessions, its
//! timers and counters. No state is shared with other workers except the read-only
//! [`ports::Ownership`], so nothing here takes a lock. Time is always an argument
//! (nanoseconds): the dataplane passes the wall clock, replay passes packet timestamps.
//!
//! Per packet: [`Engine::process`] rewrites the frame in place and says where it goes.
//! Per batch (or whenever convenient): [`Engine::advance`] expires idle sessions.

pub mod batch;
pub mod ceiling;
pub mod counters;
pub mod event;
pub mod fragments;
mod huge;
pub mod ports;
pub mod refusals;
pub mod rewrite;
pub mod state;
pub mod table;
pub mod timer;
mod translate;

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::config::{Config, FilteringMode, Ipv4Prefix, TtlExpiredAction};
use counters::Counters;
use event::EventSink;
use fragments::FragmentTable;
use ports::{Ownership, PortAllocator, RestingRange};
use refusals::RefusalLog;
use state::NatState;
use timer::TimerWheel;

pub use counters::DropReason;

/// The two sides of the NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// Subscribers (private side).
    Inside = 0,
    /// The Internet (public side).
    Outside = 1,
}

/// What to do with a frame after [`Engine::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Translated in place: send it out of this side.
    Forward(Side),
    /// Replaced by a message the NAT generated (ICMP time exceeded), `len` bytes long, with
    /// the Ethernet addresses swapped: send it out of this side.
    Reply {
        side: Side,
        /// A u16 (replies are short), so that a verdict fits in a register.
        len: u16,
    },
    /// Another worker owns the state this frame needs: give it to `worker`, to be processed
    /// as if it arrived from `from` (hairpinned packets arrive there already half translated).
    Handoff {
        worker: u16,
        from: Side,
    },
    /// ARP, IPv6, non-IP, or addressed to the NAT itself: the host's stack handles it.
    ToKernel,
    Drop(DropReason),
}

/// How a packet finds its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lookup {
    /// One probe of the flow table, keyed by the packet's own 5-tuple, leads to the session
    /// and its precomputed rewrite.
    #[default]
    OneProbe,
    /// The mapping first, then its session toward the remote, with the checksums computed
    /// from the packet: the path before the flow table, kept as the reference that tests
    /// and benchmarks hold the fast path to.
    MappingThenSession,
}

/// Engine settings, taken from [`Config`] once and turned into what the packet path needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tcp_established_ns: u64,
    pub tcp_transitory_ns: u64,
    pub udp_ns: u64,
    pub icmp_ns: u64,
    pub filtering: FilteringMode,
    pub hairpinning: bool,
    pub ttl_expired: TtlExpiredAction,
    pub icmp_rate: u32,
    pub sessions_per_subscriber: u32,
    pub ports_per_subscriber: u32,
    pub inside_address: Option<Ipv4Addr>,
    pub outside_address: Option<Ipv4Addr>,
    pub subscribers: Vec<Ipv4Prefix>,
    /// The lowest and highest address of the public pool, over all its prefixes.
    public_span: (u32, u32),
    /// The pool's prefixes as (network, mask), masks computed once.
    public_networks: Vec<(u32, u32)>,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        let ns = |d: std::time::Duration| d.as_nanos() as u64;
        Settings {
            tcp_established_ns: ns(cfg.timeouts.tcp_established),
            tcp_transitory_ns: ns(cfg.timeouts.tcp_transitory),
            udp_ns: ns(cfg.timeouts.udp),
            icmp_ns: ns(cfg.timeouts.icmp),
            filtering: cfg.filtering.mode,
            hairpinning: cfg.filtering.hairpinning,
            ttl_expired: cfg.ttl.expired,
            icmp_rate: cfg.ttl.icmp_rate,
            sessions_per_subscriber: cfg.limits.sessions_per_subscriber,
            ports_per_subscriber: cfg.limits.ports_per_subscriber,
            inside_address: cfg.interfaces.inside_address,
            outside_address: cfg.interfaces.outside_address,
            subscribers: cfg.pool.subscribers.clone(),
            public_span: span(&cfg.pool.public),
            public_networks: cfg
                .pool
                .public
                .iter()
                .map(|p| (u32::from(p.addr), p.mask()))
                .collect(),
        }
    }

    /// Whether `ip` is one of the pool's public addresses. An address outside the pool's
    /// span — nearly every destination — is answered by one comparison.
    #[inline]
    pub fn is_public(&self, ip: Ipv4Addr) -> bool {
        let (low, high) = self.public_span;
        let ip_bits = u32::from(ip);
        ip_bits.wrapping_sub(low) <= high.wrapping_sub(low)
            && self
                .public_networks
                .iter()
                .any(|&(network, mask)| ip_bits & mask == network)
    }
}

/// The lowest and highest address over `prefixes` (for none, a span the prefixes then
/// decide on: the empty list holds nothing).
fn span(prefixes: &[Ipv4Prefix]) -> (u32, u32) {
    // From the mask, so that a prefix with host bits set cannot overflow.
    let first = |p: &Ipv4Prefix| u32::from(p.addr) & p.mask();
    let last = |p: &Ipv4Prefix| u32::from(p.addr) | !p.mask();
    match (
        prefixes.iter().map(first).min(),
        prefixes.iter().map(last).max(),
    ) {
        (Some(low), Some(high)) => (low, high),
        _ => (0, 0),
    }
}

/// Limits how many ICMP errors the NAT itself generates (RFC 1812 §4.3.2.8).
#[derive(Debug)]
struct TokenBucket {
    per_second: u32,
    tokens: u32,
    last_refill_ns: u64,
}

impl TokenBucket {
    fn new(per_second: u32) -> Self {
        TokenBucket {
            per_second,
            tokens: per_second,
            last_refill_ns: 0,
        }
    }
    fn take(&mut self, now_ns: u64) -> bool {
        const SEC: u128 = 1_000_000_000;
        let elapsed = now_ns.saturating_sub(self.last_refill_ns);
        let refill = (elapsed as u128 * self.per_second as u128 / SEC) as u64;
        if refill > 0 {
            let tokens = self.tokens as u64 + refill;
            if tokens >= self.per_second as u64 {
                // Full: time beyond a full bucket earns nothing.
                self.tokens = self.per_second;
                self.last_refill_ns = now_ns;
            } else {
                // Only the time the new tokens stand for is spent: the part of the next
                // token already earned carries over (else the rate falls short of the
                // setting whenever packets come a little slower than one per token).
                self.tokens = tokens as u32;
                self.last_refill_ns += (refill as u128 * SEC / self.per_second as u128) as u64;
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

// The fast path returns verdicts in a register; a verdict written to memory field by field
// and read back whole cost a store-forwarding stall per frame.
const _: () = assert!(std::mem::size_of::<Verdict>() <= 8);

/// One worker's NAT.
pub struct Engine<S: EventSink> {
    worker: u16,
    settings: Settings,
    ownership: Arc<Ownership>,
    ports: PortAllocator,
    state: NatState,
    wheel: TimerWheel,
    fragments: FragmentTable,
    icmp_limiter: TokenBucket,
    counters: Counters,
    sink: S,
    /// Re-used list of sessions found expired during `advance`.
    expired: Vec<u32>,
    lookup: Lookup,
    refusals: RefusalLog,
}

impl<S: EventSink> Engine<S> {
    /// An engine for `worker`, owning `ownership.partition(worker)`; `now_ns` starts its clock.
    pub fn new(cfg: &Config, worker: u16, ownership: Arc<Ownership>, sink: S, now_ns: u64) -> Self {
        let partition = ownership.partition(worker);
        Engine {
            worker,
            settings: Settings::from_config(cfg),
            ports: PortAllocator::new(cfg, partition, worker),
            state: NatState::with_capacity(cfg.limits.max_sessions as usize),
            wheel: TimerWheel::new(now_ns),
            fragments: FragmentTable::new(
                cfg.limits.fragments as usize,
                cfg.timeouts.fragment.as_nanos() as u64,
            ),
            icmp_limiter: TokenBucket::new(cfg.ttl.icmp_rate),
            counters: Counters::default(),
            sink,
            expired: Vec::new(),
            lookup: Lookup::default(),
            refusals: RefusalLog::new(cfg.logging.refusal_interval.as_nanos() as u64),
            ownership,
        }
    }

    /// Builds one engine per worker of `cfg`, with the default partition of the pool.
    pub fn for_all_workers(
        cfg: &Config,
        now_ns: u64,
        mut sink: impl FnMut(u16) -> S,
    ) -> Vec<Engine<S>> {
        let ownership = Arc::new(Ownership::new(cfg, ports::partitions(cfg)));
        (0..ownership.workers())
            .map(|w| Engine::new(cfg, w, ownership.clone(), sink(w), now_ns))
            .collect()
    }

    /// Chooses how packets find their sessions ([`Lookup::OneProbe`] unless told).
    pub fn set_lookup(&mut self, lookup: Lookup) {
        self.lookup = lookup;
    }

    pub fn worker(&self) -> u16 {
        self.worker
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn sink(&self) -> &S {
        &self.sink
    }
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }
    pub fn live_sessions(&self) -> usize {
        self.state.live_sessions()
    }
    /// Backs the state tables with memory now, so no page is first touched (and zeroed)
    /// on the packet path. The dataplane calls it on each worker's own thread, before
    /// traffic, so the pages are also local to the worker's core.
    pub fn commit_memory(&mut self) {
        self.state.commit_memory();
    }
    pub fn live_mappings(&self) -> usize {
        self.state.live_mappings()
    }
    pub fn live_subscribers(&self) -> usize {
        self.state.subscribers.len()
    }
    pub fn free_port_capacity(&self) -> usize {
        self.ports.free_capacity()
    }

    /// Bytes of the state tables mapped outside the heap (see [`Engine::state_heap_bytes`],
    /// which includes them): what a count of allocations does not see.
    pub fn state_mapped_bytes(&self) -> usize {
        self.state.mapped_bytes()
    }

    /// Bytes held by the state structures (capacity reserved, not only what is live),
    /// tables mapped outside the heap included.
    pub fn state_heap_bytes(&self) -> usize {
        self.state.heap_bytes() + self.wheel.heap_bytes() + self.fragments.heap_bytes()
    }

    /// Expires every session idle past its timeout at `now_ns`, emitting their end events.
    /// Cost is proportional to the timer slots passed and the sessions due in them.
    pub fn advance(&mut self, now_ns: u64) {
        let mut expired = std::mem::take(&mut self.expired);
        let state = &mut self.state;
        self.wheel.advance(now_ns, |index, tick| {
            let session = state.session_mut(index);
            if session.is_vacant() || !timer::is_live(session.scheduled_tick, tick) {
                return timer::Due::Ignore;
            }
            if session.expires_tick <= tick {
                session.scheduled_tick = u32::MAX;
                expired.push(index);
                return timer::Due::Expire;
            }
            session.scheduled_tick = timer::placement(tick, session.expires_tick);
            timer::Due::Reschedule(session.expires_tick)
        });
        for s in expired.drain(..) {
            self.end_session(s, now_ns);
            self.counters.count(counters::Activity::SessionsExpired);
        }
        self.expired = expired;
        let sink = &mut self.sink;
        self.refusals
            .close_due(now_ns, |summary| write_if_room(sink, &summary));
    }

    /// Ends every live session at `now_ns`, as if each had expired then: its
    /// `SessionEnded` event, its port and block released. Called when the NAT stops
    /// cleanly, so the log shows no session outliving the process that translated it.
    /// Pending refusal summaries are written too. Returns how many sessions were ended.
    pub fn end_all_sessions(&mut self, now_ns: u64) -> usize {
        self.flush_refusals(now_ns);
        let live = self.state.live_session_ids();
        for &s in &live {
            self.end_session(s, now_ns);
        }
        live.len()
    }

    /// Writes the summaries of every refusal interval still open, as at their close: the
    /// input ended (replay) or the engine stops. Like session ends, they are not refused
    /// for want of room: the sink absorbs them (at most two per subscriber and reason).
    pub fn flush_refusals(&mut self, now_ns: u64) {
        let sink = &mut self.sink;
        self.refusals
            .close_all(now_ns, |summary| sink.emit(&summary));
    }

    /// Keeps the ports of `ranges` (what a previous run held at its end or released just
    /// before) from being handed out before `until_ns`. Call before the first packet.
    /// Returns how many ports (per protocol) or blocks of this worker's share rest.
    pub fn rest_ports(&mut self, ranges: &[RestingRange], until_ns: u64) -> usize {
        self.ports.rest(ranges, until_ns)
    }
}

/// Emits `event` if the log pipeline has room for it.
fn write_if_room(sink: &mut impl EventSink, event: &event::Event) -> bool {
    let room = sink.has_room(1);
    if room {
        sink.emit(event);
    }
    room
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// The span check and precomputed masks answer exactly as the prefixes do.
    #[test]
    fn is_public_agrees_with_the_prefixes() {
        let mut rng = SplitMix64::new(5);
        let cfg = Config::from_toml_str(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
             [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n",
        )
        .unwrap();
        for round in 0..200 {
            let pool: Vec<Ipv4Prefix> = (0..round % 4)
                .map(|_| {
                    let len = [0, 8, 24, 30, 32][rng.below(5) as usize];
                    let mask = (u64::from(u32::MAX) << (32 - len)) as u32;
                    Ipv4Prefix {
                        addr: Ipv4Addr::from(rng.next_u64() as u32 & mask),
                        len,
                    }
                })
                .collect();
            let mut settings = Settings::from_config(&cfg);
            settings.public_span = span(&pool);
            settings.public_networks = pool.iter().map(|p| (u32::from(p.addr), p.mask())).collect();
            for _ in 0..200 {
                // Addresses at and around the prefixes' edges, and anywhere.
                let near = pool.get(rng.below(pool.len().max(1) as u32) as usize);
                let ip = match (near, rng.below(3)) {
                    (Some(p), 0) => u32::from(p.addr).wrapping_sub(1),
                    (Some(p), 1) => u32::from(p.addr) | !p.mask(),
                    (Some(p), _) => (u32::from(p.addr) | !p.mask()).wrapping_add(1),
                    (None, _) => rng.next_u64() as u32,
                };
                let ip = Ipv4Addr::from(ip);
                let expected = pool.iter().any(|p| p.contains(ip));
                assert_eq!(settings.is_public(ip), expected, "{ip} in {pool:?}");
            }
        }
    }
    use crate::engine::event::{EventKind, VecSink};
    use crate::workload;

    #[test]
    fn ending_all_sessions_ends_each_through_the_usual_path() {
        let cfg = Config::from_toml_str(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
             [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n\
             [allocation]\nmode = \"port-block\"\nblock-size = 64\n",
        )
        .unwrap();
        let mut engine = Engine::for_all_workers(&cfg, 1, |_| VecSink::default()).remove(0);
        let flows = workload::flows(Ipv4Addr::new(100, 64, 0, 1), 3, 4, 1);
        for flow in &flows {
            let mut frame = workload::min_frame(flow);
            let len = frame.len();
            frame.resize(2048, 0);
            assert!(matches!(
                engine.process(&mut frame, len, Side::Inside, 10),
                Verdict::Forward(Side::Outside)
            ));
        }
        let capacity = engine.free_port_capacity();
        let created = engine.sink().events.len();
        assert_eq!(engine.end_all_sessions(99), 12);
        assert_eq!(engine.live_sessions(), 0);
        assert_eq!(engine.live_mappings(), 0);
        assert_eq!(engine.live_subscribers(), 0);
        let after: Vec<_> = engine.sink().events[created..].to_vec();
        let count = |k: EventKind| after.iter().filter(|e| e.kind == k).count();
        assert_eq!(count(EventKind::SessionEnded), 12);
        assert_eq!(
            count(EventKind::BlockReleased),
            3,
            "one block per subscriber"
        );
        assert!(after.iter().all(|e| e.ts_ns == 99));
        // Released blocks rest (RFC 6888 REQ-8) like any other: not free at once.
        assert_eq!(engine.free_port_capacity(), capacity + 3);
        assert_eq!(engine.end_all_sessions(100), 0, "nothing left to end");
    }
}
