//! In-place header rewriting with incremental checksum updates (RFC 1624).
//!
//! Every rewrite returns the [`Delta`] of the 16-bit words it changed, so an enclosing
//! checksum can follow too: an ICMP error's checksum covers the packet embedded in it, and
//! translating that packet changes addresses, ports and inner checksums all at once.

use crate::engine::ports::Proto;
use crate::wire::checksum::Delta;

/// Which endpoint of a packet to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Source,
    Destination,
}

const IP_CHECKSUM: usize = 10;
const IP_TTL: usize = 8;

#[inline]
fn addr_offset(which: Endpoint) -> usize {
    match which {
        Endpoint::Source => 12,
        Endpoint::Destination => 16,
    }
}

#[inline]
pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn set16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a 16-bit field and records the change.
fn write16(b: &mut [u8], at: usize, new: u16, delta: &mut Delta) {
    delta.word(get16(b, at), new);
    set16(b, at, new);
}

/// Applies `change` to the checksum stored at `at`, recording the checksum's own change.
fn fix_checksum(b: &mut [u8], at: usize, change: Delta, delta: &mut Delta) {
    let old = get16(b, at);
    write16(b, at, change.apply(old), delta);
}

/// Replaces the source or destination address of the IPv4 header at the start of `ip`,
/// keeping the header checksum right. Returns the change (both words and the checksum).
pub fn rewrite_address(ip: &mut [u8], which: Endpoint, new: u32) -> Delta {
    let at = addr_offset(which);
    let old = get32(ip, at);
    let mut changed = Delta::default();
    changed.dword(old, new);
    ip[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let mut delta = changed;
    fix_checksum(ip, IP_CHECKSUM, changed, &mut delta);
    delta
}

/// Where a transport's "port" and checksum live. ICMP query identifiers stand for the port
/// in both directions (RFC 5508 §3.1).
#[inline]
fn port_offset(proto: Proto, which: Endpoint) -> usize {
    match (proto, which) {
        (Proto::Icmp, _) => 4,
        (_, Endpoint::Source) => 0,
        (_, Endpoint::Destination) => 2,
    }
}

#[inline]
fn checksum_offset(proto: Proto) -> usize {
    match proto {
        Proto::Tcp => 16,
        Proto::Udp => 6,
        Proto::Icmp => 2,
    }
}

/// Replaces one endpoint (address and port) of an IPv4 packet whose header is `ihl` bytes,
/// fixing the IP checksum and the transport checksum (pseudo-header included for TCP/UDP;
/// a zero UDP checksum means "none" and stays zero). `pkt` may be cut short, as the copy
/// inside an ICMP error is: a transport checksum beyond its end is left alone.
/// The caller guarantees the IP header and the first 8 transport bytes are present.
pub fn rewrite_endpoint(
    pkt: &mut [u8],
    ihl: usize,
    proto: Proto,
    which: Endpoint,
    addr: u32,
    port: u16,
) -> Delta {
    let old_addr = get32(pkt, addr_offset(which));
    let mut delta = rewrite_address(&mut pkt[..ihl], which, addr);
    let l4 = &mut pkt[ihl..];
    let mut transport = Delta::default();
    write16(l4, port_offset(proto, which), port, &mut transport);
    let mut pseudo = transport;
    if proto != Proto::Icmp {
        pseudo.dword(old_addr, addr);
    }
    let at = checksum_offset(proto);
    if l4.len() >= at + 2
        && let Some(new) = transport_checksum(proto, get16(l4, at), pseudo)
    {
        write16(l4, at, new, &mut transport);
    }
    delta.merge(transport);
    delta
}

/// A transport checksum after `change`; `None` for a UDP datagram sent without one (0),
/// which stays so. A computed UDP 0 is sent as 0xFFFF, since 0 would mean "none".
#[inline]
fn transport_checksum(proto: Proto, old: u16, change: Delta) -> Option<u16> {
    if proto == Proto::Udp && old == 0 {
        return None;
    }
    match change.apply(old) {
        0 if proto == Proto::Udp => Some(0xFFFF),
        new => Some(new),
    }
}

/// A rewrite known in advance: the new address and port of one endpoint, and the folded
/// checksum changes ([`Delta::folded`]) of the address words (IP header) and of the port
/// word with the pseudo-header's address words (transport). What a session precomputes.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    pub addr: u32,
    pub port: u16,
    pub ip_delta: u16,
    pub l4_delta: u16,
}

/// [`rewrite_endpoint`] with the checksum changes known in advance, so the packet path
/// neither reads old values nor sums anything. Gives the same bytes as `rewrite_endpoint`
/// for a packet whose endpoint `r` was made from. The IP header and the whole transport
/// header must be present.
#[inline(always)]
pub fn rewrite_endpoint_with(
    pkt: &mut [u8],
    ihl: usize,
    proto: Proto,
    which: Endpoint,
    r: Rewrite,
) {
    let at = addr_offset(which);
    pkt[at..at + 4].copy_from_slice(&r.addr.to_be_bytes());
    let ip_checksum = Delta::from_folded(r.ip_delta).apply(get16(pkt, IP_CHECKSUM));
    set16(pkt, IP_CHECKSUM, ip_checksum);
    let l4 = &mut pkt[ihl..];
    set16(l4, port_offset(proto, which), r.port);
    let at = checksum_offset(proto);
    if let Some(new) = transport_checksum(proto, get16(l4, at), Delta::from_folded(r.l4_delta)) {
        set16(l4, at, new);
    }
}

/// Decrements the TTL, keeping the header checksum right. Caller checked TTL > 1.
#[inline(always)]
pub fn decrement_ttl(ip: &mut [u8]) {
    let word = get16(ip, IP_TTL);
    let mut change = Delta::default();
    change.word(word, word - 0x0100);
    set16(ip, IP_TTL, word - 0x0100);
    let old = get16(ip, IP_CHECKSUM);
    set16(ip, IP_CHECKSUM, change.apply(old));
}

/// Applies the change of an embedded packet to the enclosing ICMP message's checksum.
pub fn fix_icmp_checksum(icmp: &mut [u8], embedded_change: Delta) {
    let old = get16(icmp, 2);
    set16(icmp, 2, embedded_change.apply(old));
}
