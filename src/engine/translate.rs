//! The packet path: classify a frame, find or create its session, rewrite it in place.
//!
//! Outbound (from subscribers): source becomes the subscriber's public endpoint.
//! Inbound (from the Internet): destination becomes the subscriber's inside endpoint.
//! ICMP errors are matched on the packet they quote and translated inside and out
//! (RFC 5508); later IP fragments follow their first fragment; a packet from one
//! subscriber to another's public mapping is translated both ways (hairpinning).

use std::net::Ipv4Addr;

use super::counters::Activity;
use super::event::{Event, EventKind, EventSink};
use super::fragments::FragmentKey;
use super::ports::{AllocError, BlockChange, Proto};
use super::rewrite::{
    self, Endpoint, Rewrite, decrement_ttl, fix_icmp_checksum, rewrite_address, rewrite_endpoint,
    rewrite_endpoint_with,
};
use super::state::{FlowKey, Mapping, Session, Subscriber, tcp_state};
use super::table::Slot;
use super::{DropReason, Engine, Lookup, Side, Verdict};
use crate::config::{FilteringMode, Ipv4Prefix, TtlExpiredAction};
use crate::wire::checksum::Delta;
use crate::wire::{ethernet, icmp, ipv4, tcp, udp};

/// The IPv4 header fields the path needs, read once.
#[derive(Debug, Clone, Copy)]
struct IpInfo {
    l3: usize,
    ihl: usize,
    total: usize,
    src: u32,
    dst: u32,
    protocol: u8,
    ttl: u8,
    ident: u16,
    frag_offset: usize,
    more_frags: bool,
}

impl IpInfo {
    fn packet_end(&self) -> usize {
        self.l3 + self.total
    }
    fn l4_start(&self) -> usize {
        self.l3 + self.ihl
    }
}

/// What the fast path knows of a frame before it looks anything up.
#[derive(Debug, Clone, Copy)]
pub(super) struct Established {
    ip: IpInfo,
    flow: Flow,
    key: FlowKey,
    slot: Slot,
}

impl Established {
    pub(super) fn slot(&self) -> Slot {
        self.slot
    }
}

/// A transport flow as seen in the packet's direction. For ICMP queries the identifier
/// stands for the subscriber-side port and the remote "port" is always 0.
#[derive(Debug, Clone, Copy)]
struct Flow {
    proto: Proto,
    src_port: u16,
    dst_port: u16,
    tcp_flags: u8,
}

enum Transport {
    Flow(Flow),
    IcmpError,
}

/// The packet an ICMP error quotes.
struct Quoted {
    ihl: usize,
    proto: Proto,
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
}

type Step = Result<Verdict, DropReason>;

#[inline]
fn in_prefixes(prefixes: &[Ipv4Prefix], ip: Ipv4Addr) -> bool {
    prefixes.iter().any(|p| p.contains(ip))
}

#[inline]
fn parse_ip(frame: &[u8], l3: usize) -> Result<IpInfo, DropReason> {
    let pkt = ipv4::Packet::new_checked(&frame[l3..])?;
    if !pkt.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    Ok(IpInfo {
        l3,
        ihl: pkt.header_len(),
        total: pkt.total_len(),
        src: u32::from(pkt.src_addr()),
        dst: u32::from(pkt.dst_addr()),
        protocol: pkt.protocol(),
        ttl: pkt.ttl(),
        ident: pkt.ident(),
        frag_offset: pkt.frag_offset(),
        more_frags: pkt.more_frags(),
    })
}

/// Reads the transport header of an unfragmented packet or a first fragment. A first
/// fragment too short to hold the ports is refused (RFC 1858 tiny-fragment attack).
#[inline]
fn parse_transport(frame: &[u8], ip: &IpInfo, from: Side) -> Result<Transport, DropReason> {
    let l4 = &frame[ip.l4_start()..ip.packet_end()];
    let short = |e: crate::wire::WireError| {
        if ip.more_frags {
            DropReason::TinyFragment
        } else {
            DropReason::from(e)
        }
    };
    let flow = match ip.protocol {
        ipv4::protocol::TCP => {
            let t = tcp::Packet::new_checked(l4).map_err(short)?;
            Flow {
                proto: Proto::Tcp,
                src_port: t.src_port(),
                dst_port: t.dst_port(),
                tcp_flags: t.flags(),
            }
        }
        ipv4::protocol::UDP => {
            // A first fragment's length field covers the whole datagram, not this fragment.
            let u = if ip.more_frags {
                if l4.len() < 8 {
                    return Err(DropReason::TinyFragment);
                }
                udp::Packet::new_unchecked(l4)
            } else {
                udp::Packet::new_checked(l4)?
            };
            Flow {
                proto: Proto::Udp,
                src_port: u.src_port(),
                dst_port: u.dst_port(),
                tcp_flags: 0,
            }
        }
        ipv4::protocol::ICMP => {
            let m = icmp::Packet::new_checked(l4).map_err(short)?;
            match (m.kind(), from) {
                (icmp::Kind::Error, _) => return Ok(Transport::IcmpError),
                (icmp::Kind::EchoRequest, Side::Inside) => Flow {
                    proto: Proto::Icmp,
                    src_port: m.echo_ident(),
                    dst_port: 0,
                    tcp_flags: 0,
                },
                (icmp::Kind::EchoReply, Side::Outside) => Flow {
                    proto: Proto::Icmp,
                    src_port: 0,
                    dst_port: m.echo_ident(),
                    tcp_flags: 0,
                },
                _ => return Err(DropReason::UnsupportedIcmp),
            }
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    Ok(Transport::Flow(flow))
}

/// Parses the packet quoted by an ICMP error: its IP header and at least 8 transport bytes.
fn parse_quoted(q: &[u8]) -> Result<Quoted, DropReason> {
    // The quote is usually cut short of the original total length: that is accepted.
    let pkt = ipv4::Packet::new_checked_embedded(q)?;
    if q.len() < pkt.header_len() + 8 {
        return Err(DropReason::MalformedTruncated);
    }
    let ihl = pkt.header_len();
    let l4 = &q[ihl..];
    let proto = Proto::from_ip_protocol(pkt.protocol()).ok_or(DropReason::UnsupportedProtocol)?;
    let (src_port, dst_port) = match proto {
        Proto::Icmp => {
            let m = icmp::Packet::new_unchecked(l4);
            if !matches!(m.kind(), icmp::Kind::EchoRequest | icmp::Kind::EchoReply) {
                return Err(DropReason::UnsupportedIcmp);
            }
            (m.echo_ident(), m.echo_ident())
        }
        _ => (rewrite::get16(l4, 0), rewrite::get16(l4, 2)),
    };
    Ok(Quoted {
        ihl,
        proto,
        src: u32::from(pkt.src_addr()),
        dst: u32::from(pkt.dst_addr()),
        src_port,
        dst_port,
    })
}

/// The flow table key of a packet from `from`: `local` is the subscriber's endpoint from
/// the inside and the public one from the outside.
#[inline]
fn flow_key(proto: Proto, from: Side, local: (u32, u16), remote: (u32, u16)) -> FlowKey {
    FlowKey {
        proto,
        from,
        local_ip: local.0,
        local_port: local.1,
        remote_ip: remote.0,
        remote_port: remote.1,
    }
}

fn remote_port(proto: Proto, port: u16) -> u16 {
    if proto == Proto::Icmp { 0 } else { port }
}

/// The TCP state after a packet with `flags` from `from`.
fn next_tcp_state(state: u8, flags: u8, from: Side) -> u8 {
    use tcp_state::*;
    let mut st = state;
    if flags & tcp::SYN != 0 {
        // A new connection reusing a closed one's endpoints starts from scratch.
        if st & RST != 0 || (st & FIN_OUT != 0 && st & FIN_IN != 0) {
            st = 0;
        }
        st |= if from == Side::Inside {
            SYN_OUT
        } else {
            SYN_IN
        };
    }
    if flags & tcp::RST != 0 {
        st |= RST;
    }
    if flags & tcp::FIN != 0 {
        st |= if from == Side::Inside {
            FIN_OUT
        } else {
            FIN_IN
        };
    }
    let both_syns = st & SYN_OUT != 0 && st & SYN_IN != 0;
    let picked_up = st & MIDSTREAM != 0 && from == Side::Outside;
    if both_syns || picked_up {
        st |= ESTABLISHED;
    }
    st
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
    #[inline]
    pub(super) fn process_classified(
        &mut self,
        buf: &mut [u8],
        len: usize,
        from: Side,
        now: u64,
        fast: Option<&Established>,
    ) -> Verdict {
        self.counters.count(match from {
            Side::Inside => Activity::RxInside,
            Side::Outside => Activity::RxOutside,
        });
        let verdict = match fast.and_then(|f| self.established(buf, f, now)) {
            Some(verdict) => verdict,
            None => self
                .translate_frame(buf, len, from, now)
                .unwrap_or_else(Verdict::Drop),
        };
        self.count_outcome(verdict);
        verdict
    }

    /// Whether a frame may take the fast path: a well-formed, unfragmented TCP or UDP
    /// packet, not to the NAT itself, not hairpinned, not about to expire its TTL — nearly
    /// all traffic. What it reads is kept for [`Engine::established`] (and lets a batch
    /// prefetch the flow table bucket). It reads only the frame, never the state.
    #[inline(always)]
    pub(super) fn classify(&self, buf: &[u8], len: usize, from: Side) -> Option<Established> {
        if self.lookup != Lookup::OneProbe {
            return None;
        }
        let frame = &buf[..len];
        let l2 = ethernet::parse_l2(frame).ok()?;
        if l2.ethertype != ethernet::EtherType::IPV4 {
            return None;
        }
        let ip = parse_ip(frame, l2.l3_offset).ok()?;
        if ip.ttl <= 1 || ip.frag_offset > 0 || ip.more_frags || ip.protocol == ipv4::protocol::ICMP
        {
            return None;
        }
        let dst = Ipv4Addr::from(ip.dst);
        if self.is_own_address(dst) || dst.is_broadcast() || dst.is_multicast() {
            return None;
        }
        if from == Side::Inside && in_prefixes(&self.settings.public, dst) {
            return None; // hairpinned: translated twice, by the general path
        }
        let Ok(Transport::Flow(flow)) = parse_transport(frame, &ip, from) else {
            return None;
        };
        let (local, remote) = match from {
            Side::Inside => ((ip.src, flow.src_port), (ip.dst, flow.dst_port)),
            Side::Outside => ((ip.dst, flow.dst_port), (ip.src, flow.src_port)),
        };
        let key = flow_key(flow.proto, from, local, remote);
        Some(Established {
            ip,
            flow,
            slot: self.state.flow_slot(&key),
            key,
        })
    }

    /// The fast path: one flow table probe finds the session, whose record holds the
    /// rewrite. `None` (no live session) sends the frame down the general path, which
    /// decides exactly as it would have had this one not existed: the conditions it checks
    /// either hold for every packet of a live session or were checked by `classify`.
    /// `tests/fast_path.rs` holds the two paths to the same bytes.
    #[inline]
    fn established(&mut self, buf: &mut [u8], e: &Established, now: u64) -> Option<Verdict> {
        let session = self.state.find_flow_at(e.slot, &e.key)?;
        self.touch(session, e.flow, e.key.from, now);
        let s = *self.state.session(session);
        let pkt = &mut buf[e.ip.l3..e.ip.packet_end()];
        self.rewrite(pkt, e.ip.ihl, &s, e.key.from);
        decrement_ttl(pkt);
        Some(Verdict::Forward(match e.key.from {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }))
    }

    #[inline(always)]
    fn count_outcome(&mut self, verdict: Verdict) {
        let tx = |side| match side {
            Side::Inside => Activity::TxInside,
            Side::Outside => Activity::TxOutside,
        };
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

    fn translate_frame(&mut self, buf: &mut [u8], len: usize, from: Side, now: u64) -> Step {
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
            Side::Inside => self.outbound(buf, ip, now),
            Side::Outside => self.inbound(buf, ip, now, false),
        }
    }

    #[inline]
    fn is_own_address(&self, ip: Ipv4Addr) -> bool {
        self.settings.inside_address == Some(ip) || self.settings.outside_address == Some(ip)
    }

    fn outbound(&mut self, buf: &mut [u8], ip: IpInfo, now: u64) -> Step {
        let src = Ipv4Addr::from(ip.src);
        if !in_prefixes(&self.settings.subscribers, src) {
            return Err(DropReason::SourceNotSubscriber);
        }
        if let Some(worker) = self.other_owner_of_subscriber(src) {
            return Ok(Verdict::Handoff {
                worker,
                from: Side::Inside,
            });
        }
        let hairpin = in_prefixes(&self.settings.public, Ipv4Addr::from(ip.dst));
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
            Transport::IcmpError => return self.translate_icmp_error(buf, ip, Side::Inside),
        };
        let session = self.outbound_session(&ip, flow, now)?;
        let s = *self.state.session(session);
        if ip.more_frags {
            self.remember_fragment(&ip, Side::Inside, s.public_ip, now)?;
        }
        let pkt = &mut buf[ip.l3..ip.packet_end()];
        self.rewrite(pkt, ip.ihl, &s, Side::Inside);
        if hairpin {
            // The NAT is one hop for a hairpinned packet: the inbound half decrements the
            // TTL, here or on the worker that owns the peer's mapping.
            self.counters.count(Activity::Hairpinned);
            let turned = parse_ip(buf, ip.l3)?;
            return self.inbound(buf, turned, now, true);
        }
        decrement_ttl(pkt);
        Ok(Verdict::Forward(Side::Outside))
    }

    /// `hairpin`: the packet came from a subscriber and was just translated outbound; its
    /// TTL was already checked (but not decremented).
    fn inbound(&mut self, buf: &mut [u8], ip: IpInfo, now: u64, hairpin: bool) -> Step {
        if !in_prefixes(&self.settings.public, Ipv4Addr::from(ip.dst)) {
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
            Transport::IcmpError => return self.translate_icmp_error(buf, ip, Side::Outside),
        };
        let Some(session) = self.inbound_session(&ip, flow, now)? else {
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
    ) -> Result<Option<u32>, DropReason> {
        let remote = remote_port(flow.proto, flow.src_port);
        if self.lookup == Lookup::OneProbe {
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

    /// Rewrites the subscriber-side endpoint of a packet of session `s` received from
    /// `from`: the precomputed rewrite on the fast path, the reference's from the mapping.
    #[inline]
    fn rewrite(&self, pkt: &mut [u8], ihl: usize, s: &Session, from: Side) {
        let (which, r) = match from {
            Side::Inside => (
                Endpoint::Source,
                Rewrite {
                    addr: s.public_ip,
                    port: s.public_port,
                    ip_delta: s.ip_delta,
                    l4_delta: s.l4_delta,
                },
            ),
            Side::Outside => (
                Endpoint::Destination,
                Rewrite {
                    addr: s.inside_ip,
                    port: s.inside_port,
                    ip_delta: Delta::undo_folded(s.ip_delta),
                    l4_delta: Delta::undo_folded(s.l4_delta),
                },
            ),
        };
        match self.lookup {
            Lookup::OneProbe => rewrite_endpoint_with(pkt, ihl, s.proto, which, r),
            Lookup::MappingThenSession => {
                // From the mapping record, as before the session carried a copy (a live
                // session always has its mapping; the copy stands in should it not).
                let (addr, port) = match self
                    .state
                    .find_by_inside(s.proto, s.inside_ip, s.inside_port)
                    .map(|m| *self.state.mapping(m))
                {
                    Some(m) if from == Side::Inside => (m.public_ip, m.public_port),
                    Some(m) => (m.inside_ip, m.inside_port),
                    None => (r.addr, r.port),
                };
                rewrite_endpoint(pkt, ihl, s.proto, which, addr, port);
            }
        }
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
        self.check_can_open(&owner, flow, ip.src, now)?;
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

    fn outbound_session(&mut self, ip: &IpInfo, flow: Flow, now: u64) -> Result<u32, DropReason> {
        let (proto, sport, dport) = (flow.proto, flow.src_port, flow.dst_port);
        let owner = FlowOwner {
            proto,
            inside_ip: ip.src,
            inside_port: sport,
            dest_port: dport,
        };
        let remote = remote_port(proto, dport);
        if self.lookup == Lookup::OneProbe {
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
            self.check_can_open(&owner, flow, ip.dst, now)?;
            return self.open_session(mapping, ip.dst, dport, flow, Side::Inside, now);
        }
        self.check_can_open(&owner, flow, ip.dst, now)?;
        let mapping = self.open_mapping(&owner, ip.dst, now)?;
        self.open_session(mapping, ip.dst, dport, flow, Side::Inside, now)
    }

    /// Everything that can refuse a new session, checked before any state changes.
    fn check_can_open(
        &mut self,
        owner: &FlowOwner,
        flow: Flow,
        remote: u32,
        now: u64,
    ) -> Result<(), DropReason> {
        if flow.proto == Proto::Tcp && flow.tcp_flags & tcp::RST != 0 {
            return Err(DropReason::TcpNoSession);
        }
        if self.state.is_full() {
            return Err(DropReason::SessionTableFull);
        }
        let sessions = self
            .state
            .subscribers
            .get(&owner.inside_ip)
            .map_or(0, |s| s.sessions);
        if sessions >= self.settings.sessions_per_subscriber {
            return Err(self.refuse(
                EventKind::RefusedSubscriberLimit,
                DropReason::SubscriberSessionLimit,
                owner,
                remote,
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
                    return Err(self.refuse(
                        EventKind::RefusedPortsExhausted,
                        DropReason::PortsExhausted,
                        owner,
                        remote,
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
                        now,
                    ),
                    AllocError::SubscriberLimit => self.refuse(
                        EventKind::RefusedSubscriberLimit,
                        DropReason::SubscriberPortLimit,
                        owner,
                        remote,
                        now,
                    ),
                    AllocError::NotOwner => DropReason::NotOwner,
                });
            }
        };
        sub.mappings[proto as usize] += 1;
        self.state.subscribers.insert(ip, sub);
        self.counters.count(Activity::MappingsCreated);
        // `check_can_open` made sure of room, so this refusal cannot happen.
        self.state
            .insert_mapping(Mapping {
                inside_ip: ip,
                public_ip: u32::from(self.ports.address(sub.pairing.pool)),
                inside_port: owner.inside_port,
                public_port: port,
                proto,
                sessions: 0,
            })
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
    #[inline]
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
        let s = self.state.session_mut(session);
        s.tcp = tcp;
        s.expires_tick = expires_tick;
        s.scheduled_tick = scheduled_tick;
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

    /// Later fragments carry no ports: they follow the note their first fragment left.
    fn later_fragment(&mut self, buf: &mut [u8], ip: IpInfo, from: Side, now: u64) -> Step {
        let key = FragmentKey {
            src: ip.src,
            dst: ip.dst,
            ident: ip.ident,
            protocol: ip.protocol,
            from,
        };
        let new_addr = self
            .fragments
            .lookup(&key, now)
            .ok_or(DropReason::FragmentOutOfOrder)?;
        let (which, to) = match from {
            Side::Inside => (Endpoint::Source, Side::Outside),
            Side::Outside => (Endpoint::Destination, Side::Inside),
        };
        let pkt = &mut buf[ip.l3..ip.packet_end()];
        rewrite_address(&mut pkt[..ip.ihl], which, new_addr);
        decrement_ttl(pkt);
        self.counters.count(Activity::FragmentsTranslated);
        Ok(Verdict::Forward(to))
    }

    fn remember_fragment(
        &mut self,
        ip: &IpInfo,
        from: Side,
        new_addr: u32,
        now: u64,
    ) -> Result<(), DropReason> {
        let key = FragmentKey {
            src: ip.src,
            dst: ip.dst,
            ident: ip.ident,
            protocol: ip.protocol,
            from,
        };
        self.fragments
            .remember(key, new_addr, now)
            .map_err(|_| DropReason::FragmentTableFull)
    }

    /// Translates an ICMP error about a packet of a live session: the outer header and the
    /// quoted packet, with every checksum (RFC 5508 REQ-3/4). Errors refresh no timer.
    fn translate_icmp_error(&mut self, buf: &mut [u8], ip: IpInfo, from: Side) -> Step {
        let icmp_start = ip.l4_start();
        let end = ip.packet_end();
        let quote_start = icmp_start + 8;
        let q = parse_quoted(&buf[quote_start..end])?;
        let (mapping, outer, quoted_endpoint, to) = match from {
            // We sent the quoted packet out: its source is our public endpoint.
            Side::Outside => {
                if q.src != ip.dst {
                    return Err(DropReason::IcmpErrorNoSession);
                }
                let Some(m) = self.state.find_by_public(q.proto, q.src, q.src_port) else {
                    return self.owned_elsewhere_or(
                        q.src,
                        q.src_port,
                        DropReason::IcmpErrorNoSession,
                    );
                };
                self.state
                    .find_session(m, q.dst, remote_port(q.proto, q.dst_port))
                    .ok_or(DropReason::IcmpErrorNoSession)?;
                (m, Endpoint::Destination, Endpoint::Source, Side::Inside)
            }
            // We delivered the quoted packet in: its destination is the subscriber. The error
            // may come from the subscriber or from a router in front of it (RFC 5508 REQ-5).
            Side::Inside => {
                let m = self
                    .state
                    .find_by_inside(q.proto, q.dst, q.dst_port)
                    .ok_or(DropReason::IcmpErrorNoSession)?;
                self.state
                    .find_session(m, q.src, remote_port(q.proto, q.src_port))
                    .ok_or(DropReason::IcmpErrorNoSession)?;
                (m, Endpoint::Source, Endpoint::Destination, Side::Outside)
            }
        };
        let m = *self.state.mapping(mapping);
        let (addr, port) = match to {
            Side::Inside => (m.inside_ip, m.inside_port),
            Side::Outside => (m.public_ip, m.public_port),
        };
        let quote_change = rewrite_endpoint(
            &mut buf[quote_start..end],
            q.ihl,
            q.proto,
            quoted_endpoint,
            addr,
            port,
        );
        fix_icmp_checksum(&mut buf[icmp_start..end], quote_change);
        let pkt = &mut buf[ip.l3..end];
        rewrite_address(&mut pkt[..ip.ihl], outer, addr);
        decrement_ttl(pkt);
        self.counters.count(Activity::IcmpErrorsTranslated);
        Ok(Verdict::Forward(to))
    }

    /// TTL would reach zero here: answer with ICMP time exceeded (RFC 792) from the NAT's
    /// address on that side — never about an ICMP error or a later fragment, and within the
    /// rate limit — or just drop.
    fn ttl_expired(&mut self, buf: &mut [u8], ip: IpInfo, from: Side, now: u64) -> Step {
        if self.settings.ttl_expired == TtlExpiredAction::Drop
            || ip.frag_offset > 0
            || is_icmp_error(buf, &ip)
        {
            return Err(DropReason::TtlExpired);
        }
        let source = match from {
            Side::Inside => self.settings.inside_address,
            Side::Outside => self.settings.outside_address,
        };
        let Some(source) = source else {
            return Err(DropReason::TtlExpired);
        };
        if !self.icmp_limiter.take(now) {
            self.counters.count(Activity::TimeExceededRateLimited);
            return Err(DropReason::TtlExpired);
        }
        let len = build_time_exceeded(buf, &ip, source).ok_or(DropReason::TtlExpired)?;
        Ok(Verdict::Reply { side: from, len })
    }

    fn refuse(
        &mut self,
        kind: EventKind,
        reason: DropReason,
        owner: &FlowOwner,
        remote: u32,
        now: u64,
    ) -> DropReason {
        if self.sink.has_room(1) {
            self.sink.emit(&Event {
                kind,
                ts_ns: now,
                worker: self.worker,
                protocol: owner.proto.ip_protocol(),
                inside_ip: owner.inside_ip,
                inside_port: owner.inside_port,
                public_ip: 0,
                public_port: 0,
                dest_ip: remote,
                dest_port: owner.dest_port,
                block_first: 0,
                block_last: 0,
                last_active_ns: 0,
            });
        }
        reason
    }

    fn emit_session(
        &mut self,
        kind: EventKind,
        m: &Mapping,
        (remote_ip, remote_port): (u32, u16),
        now: u64,
        last_active_ns: u64,
    ) {
        self.sink.emit(&Event {
            kind,
            ts_ns: now,
            worker: self.worker,
            protocol: m.proto.ip_protocol(),
            inside_ip: m.inside_ip,
            inside_port: m.inside_port,
            public_ip: m.public_ip,
            public_port: m.public_port,
            dest_ip: remote_ip,
            dest_port: remote_port,
            block_first: 0,
            block_last: 0,
            last_active_ns,
        });
    }

    fn emit_block(&mut self, change: BlockChange, inside_ip: u32, now: u64) {
        self.sink.emit(&Event {
            kind: if change.allocated {
                EventKind::BlockAllocated
            } else {
                EventKind::BlockReleased
            },
            ts_ns: now,
            worker: self.worker,
            protocol: 0,
            inside_ip,
            inside_port: 0,
            public_ip: u32::from(change.public),
            public_port: 0,
            dest_ip: 0,
            dest_port: 0,
            block_first: change.first,
            block_last: change.last,
            last_active_ns: 0,
        });
    }
}

/// Who a new session belongs to, for limits and refusal events.
struct FlowOwner {
    proto: Proto,
    inside_ip: u32,
    inside_port: u16,
    dest_port: u16,
}

fn is_icmp_error(buf: &[u8], ip: &IpInfo) -> bool {
    ip.protocol == ipv4::protocol::ICMP
        && buf.get(ip.l4_start()).is_some_and(|t| {
            matches!(
                *t,
                icmp::DST_UNREACHABLE | icmp::TIME_EXCEEDED | icmp::PARAM_PROBLEM
            )
        })
}

/// Rewrites the frame into an ICMP time exceeded from `source` back to the packet's sender,
/// quoting its IP header and first 8 payload bytes. `None` if `buf` has no room.
fn build_time_exceeded(buf: &mut [u8], ip: &IpInfo, source: Ipv4Addr) -> Option<usize> {
    const MAX_QUOTE: usize = 60 + 8;
    let quote_len = (ip.ihl + 8).min(ip.total);
    let mut quote = [0u8; MAX_QUOTE];
    quote[..quote_len].copy_from_slice(&buf[ip.l3..ip.l3 + quote_len]);
    let icmp_len = 8 + quote_len;
    let len = ip.l3 + ipv4::HEADER_LEN + icmp_len;
    if buf.len() < len {
        return None;
    }
    let (dst_mac, src_mac) = buf[..12].split_at_mut(6);
    dst_mac.swap_with_slice(src_mac);
    let repr = ipv4::Repr {
        src: source,
        dst: Ipv4Addr::from(ip.src),
        protocol: ipv4::protocol::ICMP,
        ttl: 64,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        payload_len: icmp_len,
    };
    repr.emit(&mut ipv4::Packet::new_unchecked(
        &mut buf[ip.l3..ip.l3 + ipv4::HEADER_LEN],
    ));
    let message = &mut buf[ip.l3 + ipv4::HEADER_LEN..len];
    message[..8].copy_from_slice(&[icmp::TIME_EXCEEDED, 0, 0, 0, 0, 0, 0, 0]);
    message[8..].copy_from_slice(&quote[..quote_len]);
    icmp::Packet::new_unchecked(message).fill_checksum();
    Some(len)
}
