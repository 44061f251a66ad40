//! The packet path: classify a frame, find or create its session, rewrite it in place.
//!
//! Outbound (from subscribers): source becomes the subscriber's public endpoint.
//! Inbound (from the Internet): destination becomes the subscriber's inside endpoint.
//! ICMP errors are matched on the packet they quote and translated inside and out
//! (RFC 5508); later IP fragments follow their first fragment; a packet from one
//! subscriber to another's public mapping is translated both ways (hairpinning).

mod events;
mod exceptions;
mod fast;
mod parse;

use std::net::Ipv4Addr;

use super::counters::Activity;
use super::event::{EventKind, EventSink};
use super::ports::{AllocError, Proto};
use super::rewrite::decrement_ttl;
use super::state::{Mapping, Session, Subscriber, tcp_state};
use super::{DropReason, Engine, Lookup, Side, Verdict};
use crate::config::FilteringMode;
use crate::wire::{ethernet, tcp};
use events::FlowOwner;
pub(super) use fast::Established;
use parse::{
    Flow, IpInfo, Step, Transport, flow_key, in_prefixes, next_tcp_state, parse_ip,
    parse_transport, quoted_destination, remote_port,
};

fn rx(from: Side) -> Activity {
    match from {
        Side::Inside => Activity::RxInside,
        Side::Outside => Activity::RxOutside,
    }
}

fn tx(to: Side) -> Activity {
    match to {
        Side::Inside => Activity::TxInside,
        Side::Outside => Activity::TxOutside,
    }
}

/// Whether the fast path already probed the flow table for this frame's flow, and missed.
#[derive(Debug, Clone, Copy)]
struct Probed(bool);

/// Whether a translation is all the NAT does to a packet, or the outbound half of a
/// hairpin: the inbound half takes the hop (the TTL) and counts the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    Whole,
    HairpinOutbound,
}

impl<S: EventSink> Engine<S> {
    /// Translates one Ethernet frame of `len` bytes, in place, received from `from` at
    /// `now_ns`. `buf` may be longer than the frame: a generated reply may use the room.
    pub fn process(&mut self, buf: &mut [u8], len: usize, from: Side, now_ns: u64) -> Verdict {
        let len = len.min(buf.len());
        let fast = self.classify(buf, len, from);
        self.process_classified(buf, len, from, now_ns, fast.as_ref())
    }

    /// [`Engine::process`] for a frame [`Engine::classify`] has already looked at.
    #[inline(always)]
    pub(super) fn process_classified(
        &mut self,
        buf: &mut [u8],
        len: usize,
        from: Side,
        now: u64,
        fast: Option<&Established>,
    ) -> Verdict {
        // A `match`, not `Option::and_then`: the closure would not be inlined.
        let established = match fast {
            Some(f) => self.established(buf, f, now),
            None => None,
        };
        let verdict = match established {
            Some(verdict) => verdict,
            // A classified frame whose flow the fast path missed needs no second probe.
            None => self
                .translate_frame(buf, len, from, now, Probed(fast.is_some()))
                .unwrap_or_else(Verdict::Drop),
        };
        self.counters.count(rx(from));
        self.count_outcome(verdict);
        verdict
    }

    #[inline(always)]
    fn count_outcome(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Forward(side) => self.counters.count(tx(side)),
            Verdict::Reply { side, .. } => {
                self.counters.count(tx(side));
                self.counters.count(Activity::TimeExceededSent);
            }
            Verdict::Handoff { .. } => self.counters.count(Activity::HandedOff),
            Verdict::ToKernel => self.counters.count(Activity::ToKernel),
            Verdict::Drop(reason) => self.counters.drop(reason),
        }
    }

    /// Every frame the fast path did not translate: kept out of line, so that the fast
    /// path's loop stays small.
    #[inline(never)]
    fn translate_frame(
        &mut self,
        buf: &mut [u8],
        len: usize,
        from: Side,
        now: u64,
        probed: Probed,
    ) -> Step {
        let l2 = ethernet::parse_l2(&buf[..len])?;
        if l2.ethertype != ethernet::EtherType::IPV4 {
            return Ok(Verdict::ToKernel); // ARP, IPv6 and the rest belong to the host
        }
        let ip = parse_ip(&buf[..len], l2.l3_offset)?;
        let dst = Ipv4Addr::from(ip.dst);
        if self.is_own_address(dst) {
            return Ok(Verdict::ToKernel);
        }
        if dst.is_broadcast() || dst.is_multicast() {
            return Err(DropReason::NotUnicast);
        }
        match from {
            Side::Inside => self.outbound(buf, ip, now, probed),
            Side::Outside => self.inbound(buf, ip, now, false, probed),
        }
    }

    #[inline]
    fn is_own_address(&self, ip: Ipv4Addr) -> bool {
        self.settings.inside_address == Some(ip) || self.settings.outside_address == Some(ip)
    }

    fn outbound(&mut self, buf: &mut [u8], ip: IpInfo, now: u64, probed: Probed) -> Step {
        let subscriber = self.inside_subscriber(buf, &ip);
        if !in_prefixes(&self.settings.subscribers, subscriber) {
            return Err(DropReason::SourceNotSubscriber);
        }
        if let Some(worker) = self.other_owner_of_subscriber(subscriber) {
            return Ok(Verdict::Handoff {
                worker,
                from: Side::Inside,
            });
        }
        let hairpin = self.settings.is_public(Ipv4Addr::from(ip.dst));
        if hairpin && !self.settings.hairpinning {
            return Err(DropReason::HairpinDisabled);
        }
        if ip.ttl <= 1 {
            return self.ttl_expired(buf, ip, Side::Inside, now);
        }
        if ip.frag_offset > 0 {
            return self.later_fragment(buf, ip, Side::Inside, now);
        }
        let flow = match parse_transport(buf, &ip, Side::Inside)? {
            Transport::Flow(flow) => flow,
            Transport::IcmpError if hairpin => {
                // About a packet another subscriber hairpinned here (RFC 5508 REQ-7).
                self.translate_icmp_error(buf, ip, Side::Inside, Pass::HairpinOutbound)?;
                return self.turn_around(buf, ip, now);
            }
            Transport::IcmpError => {
                return self.translate_icmp_error(buf, ip, Side::Inside, Pass::Whole);
            }
        };
        let session = self.outbound_session(&ip, flow, now, probed)?;
        let s = *self.state.session(session);
        if ip.more_frags {
            self.remember_fragment(&ip, Side::Inside, s.public_ip, now)?;
        }
        let pkt = &mut buf[ip.l3..ip.packet_end()];
        self.rewrite(pkt, ip.ihl, &s, Side::Inside);
        if hairpin {
            return self.turn_around(buf, ip, now);
        }
        decrement_ttl(pkt);
        Ok(Verdict::Forward(Side::Outside))
    }

    /// The inbound half of a hairpinned packet whose outbound half was just translated.
    /// The NAT is one hop for it: the inbound half decrements the TTL, here or on the
    /// worker that owns the peer's mapping.
    fn turn_around(&mut self, buf: &mut [u8], ip: IpInfo, now: u64) -> Step {
        self.counters.count(Activity::Hairpinned);
        let turned = parse_ip(buf, ip.l3)?;
        self.inbound(buf, turned, now, true, Probed(false))
    }

    /// The subscriber a packet from the inside belongs to, which decides whether it is
    /// translated and by which worker: its source, except for an ICMP error about a packet
    /// the NAT delivered to a subscriber, which belongs to that subscriber (the quoted
    /// destination) — it may come from a router in front of the subscriber (RFC 5508
    /// REQ-5), whose own address says nothing of whose it is.
    fn inside_subscriber(&self, buf: &[u8], ip: &IpInfo) -> Ipv4Addr {
        quoted_destination(buf, ip)
            .filter(|&quoted| in_prefixes(&self.settings.subscribers, quoted))
            .unwrap_or(Ipv4Addr::from(ip.src))
    }

    /// `hairpin`: the packet came from a subscriber and was just translated outbound; its
    /// TTL was already checked (but not decremented).
    fn inbound(
        &mut self,
        buf: &mut [u8],
        ip: IpInfo,
        now: u64,
        hairpin: bool,
        probed: Probed,
    ) -> Step {
        if !self.settings.is_public(Ipv4Addr::from(ip.dst)) {
            return Err(DropReason::NotInPool);
        }
        if !hairpin && ip.ttl <= 1 {
            return self.ttl_expired(buf, ip, Side::Outside, now);
        }
        if ip.frag_offset > 0 {
            return self.later_fragment(buf, ip, Side::Outside, now);
        }
        let flow = match parse_transport(buf, &ip, Side::Outside)? {
            Transport::Flow(flow) => flow,
            Transport::IcmpError => {
                return self.translate_icmp_error(buf, ip, Side::Outside, Pass::Whole);
            }
        };
        let Some(session) = self.inbound_session(&ip, flow, now, probed)? else {
            return self.owned_elsewhere_or(ip.dst, flow.dst_port, DropReason::NoMapping);
        };
        let s = *self.state.session(session);
        if ip.more_frags {
            self.remember_fragment(&ip, Side::Outside, s.inside_ip, now)?;
        }
        let pkt = &mut buf[ip.l3..ip.packet_end()];
        self.rewrite(pkt, ip.ihl, &s, Side::Outside);
        decrement_ttl(pkt);
        Ok(Verdict::Forward(Side::Inside))
    }

    /// The session of an inbound packet: found by its flow, or opened on the mapping of its
    /// public endpoint if filtering admits it; `None` when that endpoint has no mapping.
    fn inbound_session(
        &mut self,
        ip: &IpInfo,
        flow: Flow,
        now: u64,
        probed: Probed,
    ) -> Result<Option<u32>, DropReason> {
        let remote = remote_port(flow.proto, flow.src_port);
        if self.lookup == Lookup::OneProbe && !probed.0 {
            let key = flow_key(
                flow.proto,
                Side::Outside,
                (ip.dst, flow.dst_port),
                (ip.src, remote),
            );
            if let Some(session) = self.state.find_flow(&key) {
                self.touch(session, flow, Side::Outside, now);
                return Ok(Some(session));
            }
        }
        let Some(mapping) = self.state.find_by_public(flow.proto, ip.dst, flow.dst_port) else {
            return Ok(None);
        };
        if self.lookup == Lookup::MappingThenSession
            && let Some(session) = self.state.find_session(mapping, ip.src, remote)
        {
            self.touch(session, flow, Side::Outside, now);
            return Ok(Some(session));
        }
        self.admit_inbound(mapping, ip, flow, now).map(Some)
    }

    /// Endpoint-independent filtering lets any remote reach a live mapping (UDP, and TCP by
    /// SYN, RFC 5382 REQ-2a simultaneous open); address-and-port-dependent filtering only the
    /// remotes the subscriber already talks to.
    fn admit_inbound(
        &mut self,
        mapping: u32,
        ip: &IpInfo,
        flow: Flow,
        now: u64,
    ) -> Result<u32, DropReason> {
        if self.settings.filtering == FilteringMode::AddressAndPortDependent {
            return Err(DropReason::Filtered);
        }
        let opens = match flow.proto {
            Proto::Udp => true,
            Proto::Tcp => flow.tcp_flags & (tcp::SYN | tcp::RST) == tcp::SYN,
            Proto::Icmp => false,
        };
        if !opens {
            return Err(DropReason::Filtered);
        }
        let m = *self.state.mapping(mapping);
        let owner = FlowOwner {
            proto: m.proto,
            inside_ip: m.inside_ip,
            inside_port: m.inside_port,
            dest_port: flow.src_port,
        };
        let remote = (ip.src, remote_port(m.proto, flow.src_port));
        self.state.prefetch_session_flow(&m, Side::Inside, remote);
        self.check_can_open(&owner, flow, (ip, Side::Outside), now)?;
        self.open_session(mapping, ip.src, flow.src_port, flow, Side::Outside, now)
    }

    fn other_owner_of_subscriber(&self, ip: Ipv4Addr) -> Option<u16> {
        if self.ownership.workers() == 1 {
            return None;
        }
        let owner = self.ownership.owner_of_subscriber(ip);
        (owner != self.worker).then_some(owner)
    }

    /// A public endpoint with no mapping here: another worker's, or nobody's.
    fn owned_elsewhere_or(&self, ip: u32, port: u16, reason: DropReason) -> Step {
        if self.ownership.workers() > 1
            && let Some(worker) = self.ownership.owner_of_public(Ipv4Addr::from(ip), port)
            && worker != self.worker
        {
            return Ok(Verdict::Handoff {
                worker,
                from: Side::Outside,
            });
        }
        Err(reason)
    }

    fn outbound_session(
        &mut self,
        ip: &IpInfo,
        flow: Flow,
        now: u64,
        probed: Probed,
    ) -> Result<u32, DropReason> {
        let (proto, sport, dport) = (flow.proto, flow.src_port, flow.dst_port);
        let owner = FlowOwner {
            proto,
            inside_ip: ip.src,
            inside_port: sport,
            dest_port: dport,
        };
        let remote = remote_port(proto, dport);
        if self.lookup == Lookup::OneProbe && !probed.0 {
            let key = flow_key(proto, Side::Inside, (ip.src, sport), (ip.dst, remote));
            if let Some(session) = self.state.find_flow(&key) {
                self.touch(session, flow, Side::Inside, now);
                return Ok(session);
            }
        }
        if let Some(mapping) = self.state.find_by_inside(proto, ip.src, sport) {
            if self.lookup == Lookup::MappingThenSession
                && let Some(session) = self.state.find_session(mapping, ip.dst, remote)
            {
                self.touch(session, flow, Side::Inside, now);
                return Ok(session);
            }
            let m = self.state.mapping(mapping);
            self.state
                .prefetch_session_flow(m, Side::Outside, (ip.dst, remote));
            self.check_can_open(&owner, flow, (ip, Side::Inside), now)?;
            return self.open_session(mapping, ip.dst, dport, flow, Side::Inside, now);
        }
        self.check_can_open(&owner, flow, (ip, Side::Inside), now)?;
        let mapping = self.open_mapping(&owner, ip.dst, now)?;
        self.open_session(mapping, ip.dst, dport, flow, Side::Inside, now)
    }

    /// Everything that can refuse a new session for the packet `ip` from `from`, checked
    /// before any state changes.
    fn check_can_open(
        &mut self,
        owner: &FlowOwner,
        flow: Flow,
        (ip, from): (&IpInfo, Side),
        now: u64,
    ) -> Result<(), DropReason> {
        if flow.proto == Proto::Tcp && flow.tcp_flags & tcp::RST != 0 {
            return Err(DropReason::TcpNoSession);
        }
        if self.state.is_full() {
            return Err(DropReason::SessionTableFull);
        }
        // A first fragment is noted for its later fragments once translated; without room
        // for the note it is dropped, and must not have opened a session first.
        if !self.fragment_note_fits(ip, from, now) {
            return Err(DropReason::FragmentTableFull);
        }
        let sessions = self
            .state
            .subscribers
            .get(&owner.inside_ip)
            .map_or(0, |s| s.sessions);
        if sessions >= self.settings.sessions_per_subscriber {
            let remote = match from {
                Side::Inside => ip.dst,
                Side::Outside => ip.src,
            };
            return Err(self.refuse(
                EventKind::RefusedSubscriberLimit,
                DropReason::SubscriberSessionLimit,
                owner,
                remote,
                0,
                now,
            ));
        }
        // Room for the session's creation event and possibly a block allocation.
        if !self.sink.has_room(2) {
            return Err(DropReason::LogBackpressure);
        }
        Ok(())
    }

    /// Creates the mapping for a new inside endpoint: pairs the subscriber with a public
    /// address if it has none, then takes a port.
    fn open_mapping(
        &mut self,
        owner: &FlowOwner,
        remote: u32,
        now: u64,
    ) -> Result<u32, DropReason> {
        let ip = owner.inside_ip;
        let existing = self.state.subscribers.get(&ip).copied();
        let mut sub = match existing {
            Some(sub) => sub,
            None => match self.ports.pair(Ipv4Addr::from(ip)) {
                Ok(pairing) => Subscriber {
                    pairing,
                    sessions: 0,
                    mappings: [0; 3],
                },
                Err(AllocError::NotOwner) => return Err(DropReason::NotOwner),
                Err(_) => {
                    // No address could be paired: the pool, not one address, ran out.
                    return Err(self.refuse(
                        EventKind::RefusedPortsExhausted,
                        DropReason::PortsExhausted,
                        owner,
                        remote,
                        0,
                        now,
                    ));
                }
            },
        };
        let proto = owner.proto;
        let allocated = if sub.mappings[proto as usize] as u32 >= self.settings.ports_per_subscriber
        {
            Err(AllocError::SubscriberLimit)
        } else {
            let mut block = None;
            let port = self
                .ports
                .allocate(Ipv4Addr::from(ip), &mut sub.pairing, proto, now, |c| {
                    block = Some(c)
                });
            if let Some(change) = block {
                self.emit_block(change, ip, now);
            }
            port
        };
        let port = match allocated {
            Ok(port) => port,
            Err(e) => {
                if existing.is_none() {
                    self.ports.unpair(&sub.pairing);
                }
                return Err(match e {
                    AllocError::Exhausted => self.refuse(
                        EventKind::RefusedPortsExhausted,
                        DropReason::PortsExhausted,
                        owner,
                        remote,
                        u32::from(self.ports.address(sub.pairing.pool)),
                        now,
                    ),
                    AllocError::SubscriberLimit => self.refuse(
                        EventKind::RefusedSubscriberLimit,
                        DropReason::SubscriberPortLimit,
                        owner,
                        remote,
                        0,
                        now,
                    ),
                    AllocError::NotOwner => DropReason::NotOwner,
                });
            }
        };
        let mapping = Mapping {
            inside_ip: ip,
            public_ip: u32::from(self.ports.address(sub.pairing.pool)),
            inside_port: owner.inside_port,
            public_port: port,
            proto,
            sessions: 0,
        };
        self.state.prefetch_public_endpoint(&mapping);
        let session_remote = (remote, remote_port(proto, owner.dest_port));
        self.state
            .prefetch_session_flow(&mapping, Side::Outside, session_remote);
        sub.mappings[proto as usize] += 1;
        self.state.subscribers.insert(ip, sub);
        self.counters.count(Activity::MappingsCreated);
        // `check_can_open` made sure of room, so this refusal cannot happen.
        self.state
            .insert_mapping(mapping)
            .ok_or(DropReason::SessionTableFull)
    }

    fn open_session(
        &mut self,
        mapping: u32,
        remote_ip: u32,
        remote_port_: u16,
        flow: Flow,
        from: Side,
        now: u64,
    ) -> Result<u32, DropReason> {
        let tcp = match (flow.proto, from) {
            (Proto::Tcp, _) if flow.tcp_flags & tcp::SYN != 0 => {
                next_tcp_state(0, flow.tcp_flags, from)
            }
            (Proto::Tcp, _) => tcp_state::MIDSTREAM,
            _ => 0,
        };
        let expires_tick = self
            .wheel
            .deadline_tick(now + self.timeout(flow.proto, tcp));
        let m = *self.state.mapping(mapping);
        let remote = remote_port(flow.proto, remote_port_);
        let session = self
            .state
            .insert_session(
                mapping,
                Session::new(&m, remote_ip, remote, tcp, expires_tick),
            )
            .ok_or(DropReason::SessionTableFull)?;
        let tick = self.wheel.schedule(session, expires_tick);
        self.state.session_mut(session).scheduled_tick = tick;
        if let Some(sub) = self.state.subscribers.get_mut(&m.inside_ip) {
            sub.sessions += 1;
        }
        self.emit_session(
            EventKind::SessionCreated,
            &m,
            (remote_ip, remote_port(flow.proto, remote_port_)),
            now,
            0,
        );
        self.counters.count(Activity::SessionsCreated);
        Ok(session)
    }

    /// A packet on a live session: advance TCP state and push the deadline out. Only a
    /// shortened deadline touches the wheel.
    #[inline(always)]
    fn touch(&mut self, session: u32, flow: Flow, from: Side, now: u64) {
        let s = *self.state.session(session);
        let tcp = if flow.proto == Proto::Tcp {
            next_tcp_state(s.tcp, flow.tcp_flags, from)
        } else {
            s.tcp
        };
        let expires_tick = self
            .wheel
            .deadline_tick(now + self.timeout(flow.proto, tcp));
        let scheduled_tick = if expires_tick < s.scheduled_tick {
            self.wheel.schedule(session, expires_tick)
        } else {
            s.scheduled_tick
        };
        // Most packets change nothing (the deadline moves a tick at a time): leaving the
        // session's line unwritten spares the write-back of a line per packet, memory
        // traffic that millions of sessions out of cache would otherwise pay.
        if (tcp, expires_tick, scheduled_tick) != (s.tcp, s.expires_tick, s.scheduled_tick) {
            let s = self.state.session_mut(session);
            s.tcp = tcp;
            s.expires_tick = expires_tick;
            s.scheduled_tick = scheduled_tick;
        }
    }

    /// When a session last carried a packet: every packet pushes its deadline to
    /// `now + timeout(state)`, so the deadline less the timeout of its current state is the
    /// last packet's time — rounded up to the timer's tick, and then to a whole millisecond
    /// toward `now` (the log stores milliseconds), so never earlier than the truth.
    fn last_activity(&self, s: &Session, proto: Proto, now: u64) -> u64 {
        let deadline = self.wheel.tick_ns(s.expires_tick);
        let active = deadline.saturating_sub(self.timeout(proto, s.tcp)).min(now);
        let idle_ms = (now - active) / 1_000_000;
        now - idle_ms * 1_000_000
    }

    #[inline]
    fn timeout(&self, proto: Proto, tcp: u8) -> u64 {
        use tcp_state::*;
        match proto {
            Proto::Udp => self.settings.udp_ns,
            Proto::Icmp => self.settings.icmp_ns,
            Proto::Tcp if tcp & RST != 0 || (tcp & FIN_OUT != 0 && tcp & FIN_IN != 0) => {
                self.settings.tcp_transitory_ns
            }
            Proto::Tcp if tcp & ESTABLISHED != 0 => self.settings.tcp_established_ns,
            Proto::Tcp => self.settings.tcp_transitory_ns,
        }
    }

    /// Ends a session: its event, then the mapping and port if it was the last, then the
    /// subscriber's pairing if it holds nothing more.
    pub(super) fn end_session(&mut self, session: u32, now: u64) {
        let (s, mapping) = self.state.remove_session(session);
        // The session's copy of its mapping stands in should the record be missing.
        let m = match mapping {
            Some((m, _)) => *self.state.mapping(m),
            None => s.mapping(),
        };
        let last_active = self.last_activity(&s, m.proto, now);
        self.emit_session(
            EventKind::SessionEnded,
            &m,
            (s.remote_ip, s.remote_port),
            now,
            last_active,
        );
        let Some(mut sub) = self.state.subscribers.get(&m.inside_ip).copied() else {
            debug_assert!(false, "session without subscriber");
            return;
        };
        sub.sessions -= 1;
        if let Some((mapping, true)) = mapping {
            self.state.remove_mapping(mapping);
            sub.mappings[m.proto as usize] -= 1;
            let mut block = None;
            self.ports
                .release(&mut sub.pairing, m.proto, m.public_port, now, |c| {
                    block = Some(c)
                });
            if let Some(change) = block {
                self.emit_block(change, m.inside_ip, now);
            }
        }
        self.state.subscribers.insert(m.inside_ip, sub);
        if let Some(pairing) = self.state.forget_subscriber_if_idle(m.inside_ip) {
            self.ports.unpair(&pairing);
        }
    }
}
