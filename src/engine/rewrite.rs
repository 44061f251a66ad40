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

/// A rewrite known in advance: the new address and port of one endpoint, and the checksum
/// changes of the address words (IP header) and of the port word with the pseudo-header's
/// address words (transport). What a session precomputes, folded ([`Delta::folded`]).
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    pub addr: u32,
    pub port: u16,
    pub ip_change: Delta,
    pub l4_change: Delta,
}

/// Decrements the TTL byte and gives the header checksum's change for it, to be applied
/// alone or with others: the word holding the TTL goes from w to w - 0x0100, and
/// !w + (w - 0x0100) = 0xFEFF whatever w is (for any TTL above 0).
#[inline(always)]
fn take_one_hop(ip: &mut [u8]) -> Delta {
    debug_assert!(ip[IP_TTL] > 0, "a TTL of 0 is never forwarded");
    ip[IP_TTL] -= 1;
    Delta::from_folded(0xFEFF)
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
    set16(pkt, IP_CHECKSUM, r.ip_change.apply(get16(pkt, IP_CHECKSUM)));
    let l4 = &mut pkt[ihl..];
    set16(l4, port_offset(proto, which), r.port);
    let at = checksum_offset(proto);
    if let Some(new) = transport_checksum(proto, get16(l4, at), r.l4_change) {
        set16(l4, at, new);
    }
}

/// [`rewrite_endpoint_with`] and then [`decrement_ttl`], the same bytes with one update of
/// the header checksum for both changes (the forwarding fast path). Caller checked TTL > 1.
#[inline(always)]
pub fn rewrite_endpoint_and_hop(
    pkt: &mut [u8],
    ihl: usize,
    proto: Proto,
    which: Endpoint,
    mut r: Rewrite,
) {
    r.ip_change.merge(take_one_hop(pkt));
    rewrite_endpoint_with(pkt, ihl, proto, which, r);
}

/// Decrements the TTL, keeping the header checksum right. Caller checked TTL > 1 (the
/// checksum change below holds for any TTL above 0).
#[inline(always)]
pub fn decrement_ttl(ip: &mut [u8]) {
    let change = take_one_hop(ip);
    set16(ip, IP_CHECKSUM, change.apply(get16(ip, IP_CHECKSUM)));
}

/// Applies the change of an embedded packet to the enclosing ICMP message's checksum.
pub fn fix_icmp_checksum(icmp: &mut [u8], embedded_change: Delta) {
    let old = get16(icmp, 2);
    set16(icmp, 2, embedded_change.apply(old));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::wire::checksum::checksum;

    /// A UDP packet with a valid header checksum and the given TTL.
    fn packet(rng: &mut SplitMix64, ttl: u8) -> Vec<u8> {
        let mut pkt: Vec<u8> = (0..28).map(|_| rng.next_u64() as u8).collect();
        pkt[0] = 0x45;
        pkt[IP_TTL] = ttl;
        pkt[9] = 17;
        pkt[IP_CHECKSUM..IP_CHECKSUM + 2].fill(0);
        let sum = checksum(&pkt[..20]);
        set16(&mut pkt, IP_CHECKSUM, sum);
        pkt
    }

    #[test]
    fn a_decremented_ttl_keeps_the_header_checksum_right() {
        let mut rng = SplitMix64::new(7);
        for ttl in 1..=255u8 {
            let mut pkt = packet(&mut rng, ttl);
            decrement_ttl(&mut pkt);
            assert_eq!(pkt[IP_TTL], ttl - 1);
            assert_eq!(checksum(&pkt[..20]), 0, "TTL {ttl}");
        }
    }

    #[test]
    fn rewrite_and_hop_in_one_gives_the_bytes_of_the_two_steps() {
        let mut rng = SplitMix64::new(8);
        for i in 0..2000 {
            let ttl = 2 + (i % 254) as u8;
            let pkt = packet(&mut rng, ttl);
            let which = if i % 2 == 0 {
                Endpoint::Source
            } else {
                Endpoint::Destination
            };
            let (addr, port) = (rng.next_u64() as u32, rng.next_u64() as u16);
            // The rewrite as a session precomputes it, from the packet's own endpoint.
            let mut reference = pkt.clone();
            rewrite_endpoint(&mut reference, 20, Proto::Udp, which, addr, port);
            let old = get32(&pkt, addr_offset(which));
            let mut ip_change = Delta::default();
            ip_change.dword(old, addr);
            let mut l4 = Delta::default();
            l4.word(get16(&pkt, 20 + port_offset(Proto::Udp, which)), port);
            l4.merge(ip_change);
            let r = Rewrite {
                addr,
                port,
                ip_change: Delta::from_folded(ip_change.folded()),
                l4_change: Delta::from_folded(l4.folded()),
            };
            let mut two_steps = pkt.clone();
            rewrite_endpoint_with(&mut two_steps, 20, Proto::Udp, which, r);
            assert_eq!(two_steps, reference, "precomputed against summed, case {i}");
            decrement_ttl(&mut two_steps);
            let mut one = pkt.clone();
            rewrite_endpoint_and_hop(&mut one, 20, Proto::Udp, which, r);
            assert_eq!(one, two_steps, "case {i}");
            assert_eq!(checksum(&one[..20]), 0, "case {i}");
        }
    }
}
