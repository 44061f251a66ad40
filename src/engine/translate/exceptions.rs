//! The packets that are not a flow's own: later IP fragments (they follow their first
//! fragment's note), ICMP errors (matched on the packet they quote and translated inside and
//! out, RFC 5508), and TTLs that would expire here (ICMP time exceeded, RFC 792).

use std::net::Ipv4Addr;

use super::Pass;
use super::parse::{IpInfo, Step, parse_quoted, remote_port};
use crate::config::TtlExpiredAction;
use crate::engine::counters::Activity;
use crate::engine::event::EventSink;
use crate::engine::fragments::FragmentKey;
use crate::engine::rewrite::{
    Endpoint, decrement_ttl, fix_icmp_checksum, rewrite_address, rewrite_endpoint,
};
use crate::engine::{DropReason, Engine, Side, Verdict};
use crate::wire::{icmp, ipv4};

impl<S: EventSink> Engine<S> {
    /// Later fragments carry no ports: they follow the note their first fragment left.
    pub(super) fn later_fragment(
        &mut self,
        buf: &mut [u8],
        ip: IpInfo,
        from: Side,
        now: u64,
    ) -> Step {
        let new_addr = self
            .fragments
            .lookup(&fragment_key(&ip, from), now)
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

    /// Whether a first fragment (`ip`) from `from` could be noted now; any other packet can.
    pub(super) fn fragment_note_fits(&mut self, ip: &IpInfo, from: Side, now: u64) -> bool {
        !ip.more_frags || self.fragments.has_room_for(&fragment_key(ip, from), now)
    }

    pub(super) fn remember_fragment(
        &mut self,
        ip: &IpInfo,
        from: Side,
        new_addr: u32,
        now: u64,
    ) -> Result<(), DropReason> {
        self.fragments
            .remember(fragment_key(ip, from), new_addr, now)
            .map_err(|_| DropReason::FragmentTableFull)
    }

    /// Translates an ICMP error about a packet of a live session: the outer header and the
    /// quoted packet, with every checksum (RFC 5508 REQ-3/4). Errors refresh no timer.
    pub(super) fn translate_icmp_error(
        &mut self,
        buf: &mut [u8],
        ip: IpInfo,
        from: Side,
        pass: Pass,
    ) -> Step {
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
        if pass == Pass::Whole {
            decrement_ttl(pkt);
            self.counters.count(Activity::IcmpErrorsTranslated);
        }
        Ok(Verdict::Forward(to))
    }

    /// TTL would reach zero here: answer with ICMP time exceeded (RFC 792) from the NAT's
    /// address on that side — never about an ICMP error or a later fragment, and within the
    /// rate limit — or just drop.
    pub(super) fn ttl_expired(&mut self, buf: &mut [u8], ip: IpInfo, from: Side, now: u64) -> Step {
        if self.settings.ttl_expired == TtlExpiredAction::Drop
            || ip.frag_offset > 0
            || is_icmp_error(buf, &ip)
            || !is_one_host(Ipv4Addr::from(ip.src))
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
        let len = build_time_exceeded(buf, &ip, source)
            .and_then(|len| u16::try_from(len).ok())
            .ok_or(DropReason::TtlExpired)?;
        Ok(Verdict::Reply { side: from, len })
    }
}

fn is_icmp_error(buf: &[u8], ip: &IpInfo) -> bool {
    ip.protocol == ipv4::protocol::ICMP
        && buf
            .get(ip.l4_start())
            .is_some_and(|&t| icmp::is_error_type(t))
}

/// Whether `ip` can be one host's source address, which an ICMP error may be sent to: not
/// "this network" (0/8), loopback, broadcast, multicast or reserved (240/4) — RFC 1812
/// §4.3.2.7 forbids errors about datagrams from those.
fn is_one_host(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    first != 0 && !ip.is_loopback() && !ip.is_multicast() && first < 240
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

/// What the fragments of one datagram share (RFC 791), and the side they arrive from.
fn fragment_key(ip: &IpInfo, from: Side) -> FragmentKey {
    FragmentKey {
        src: ip.src,
        dst: ip.dst,
        ident: ip.ident,
        protocol: ip.protocol,
        from,
    }
}
