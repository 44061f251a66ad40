//! The fast path: a frame classified as an ordinary packet of a flow goes through one flow
//! table probe to its session, whose record holds the rewrite.

use std::net::Ipv4Addr;

use super::parse::{Flow, flow_key};
use crate::engine::event::EventSink;
use crate::engine::ports::Proto;
use crate::engine::rewrite::{
    Endpoint, Rewrite, rewrite_endpoint, rewrite_endpoint_and_hop, rewrite_endpoint_with,
};
use crate::engine::state::{FlowKey, Session};
use crate::engine::table::Slot;
use crate::engine::{Engine, Lookup, Side, Verdict};
use crate::wire::checksum::Delta;
use crate::wire::{ethernet, ipv4};

/// Where the fast path reads: untagged Ethernet, then a 20-byte IPv4 header (no options).
const L3: usize = ethernet::HEADER_LEN;
const L4: usize = L3 + ipv4::HEADER_LEN;
/// TCP flags sit 13 bytes into the header; UDP's header is 8 bytes.
const TCP_FLAGS: usize = L4 + 13;
const UDP_END: usize = L4 + 8;

/// What the fast path knows of a frame before it looks anything up: its flow, its flow
/// table key and bucket, and the IP packet's length (the header is always at `L3`).
#[derive(Debug, Clone, Copy)]
pub(in crate::engine) struct Established {
    key: FlowKey,
    slot: Slot,
    ip_total: u16,
    tcp_flags: u8,
}

impl Established {
    pub(in crate::engine) fn slot(&self) -> Slot {
        self.slot
    }

    pub(in crate::engine) fn key(&self) -> &FlowKey {
        &self.key
    }

    /// The frame's flow, from its key: what classifying read, kept in fewer bytes (a batch
    /// holds one of these per frame).
    #[inline(always)]
    fn flow(&self) -> Flow {
        let k = &self.key;
        let (src_port, dst_port) = match k.from {
            Side::Inside => (k.local_port, k.remote_port),
            Side::Outside => (k.remote_port, k.local_port),
        };
        Flow {
            proto: k.proto,
            src_port,
            dst_port,
            tcp_flags: self.tcp_flags,
        }
    }
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Whether a 20-byte IPv4 header sums to 0xFFFF. One's-complement sums commute with byte
/// swapping and 0xFFFF is its own swap, so native-order 32-bit words do.
#[inline(always)]
fn header_checksum_ok(h: &[u8; ipv4::HEADER_LEN]) -> bool {
    let word = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let sum = word(0) + word(4) + word(8) + word(12) + word(16); // < 2^35
    let sum = (sum >> 32) + (sum & 0xFFFF_FFFF); // < 2^32 + 8
    let sum = (sum >> 16) + (sum & 0xFFFF); // < 2^17
    let sum = (sum >> 16) + (sum & 0xFFFF);
    sum == 0xFFFF
}

/// The transport of the frame's one common shape — TCP or UDP whose header the packet
/// holds — as the general path's parser would read it; `None` for anything else.
#[inline(always)]
fn fast_transport(frame: &[u8], protocol: u8, ip_total: usize) -> Option<Flow> {
    let l4_len = ip_total.checked_sub(ipv4::HEADER_LEN)?;
    let (proto, tcp_flags) = match protocol {
        ipv4::protocol::UDP => {
            let claimed = usize::from(be16(frame, L4 + 4));
            if !(8..=l4_len).contains(&claimed) {
                return None;
            }
            (Proto::Udp, 0)
        }
        ipv4::protocol::TCP => {
            let header = usize::from(*frame.get(L4 + 12)? >> 4) * 4;
            if header < 20 || header > l4_len {
                return None;
            }
            (Proto::Tcp, frame[TCP_FLAGS])
        }
        _ => return None,
    };
    Some(Flow {
        proto,
        src_port: be16(frame, L4),
        dst_port: be16(frame, L4 + 2),
        tcp_flags,
    })
}

/// The precomputed rewrite of a packet of session `s` received from `from`: its source
/// becomes the public endpoint going out, its destination the inside endpoint coming in.
#[inline(always)]
fn session_rewrite(s: &Session, from: Side) -> (Endpoint, Rewrite) {
    match from {
        Side::Inside => (
            Endpoint::Source,
            Rewrite {
                addr: s.public_ip,
                port: s.public_port,
                ip_change: Delta::from_folded(s.ip_delta),
                l4_change: Delta::from_folded(s.l4_delta),
            },
        ),
        Side::Outside => (
            Endpoint::Destination,
            Rewrite {
                addr: s.inside_ip,
                port: s.inside_port,
                ip_change: Delta::from_folded(Delta::undo_folded(s.ip_delta)),
                l4_change: Delta::from_folded(Delta::undo_folded(s.l4_delta)),
            },
        ),
    }
}

impl<S: EventSink> Engine<S> {
    /// Whether a frame may take the fast path: untagged, IPv4 without options, unfragmented,
    /// a checksum that verifies, TCP or UDP, not to the NAT itself, not hairpinned, not about
    /// to expire its TTL — nearly all traffic. It reads the headers at fixed offsets and
    /// only the frame, never the state; anything unusual goes down the general path, which
    /// parses in full. What it reads is kept for [`Engine::established`] (and lets a batch
    /// prefetch the flow table bucket).
    #[inline(always)]
    pub(in crate::engine) fn classify(
        &self,
        buf: &[u8],
        len: usize,
        from: Side,
    ) -> Option<Established> {
        if self.lookup != Lookup::OneProbe {
            return None;
        }
        let frame = buf.get(..len)?;
        if frame.len() < UDP_END || frame[12..14] != [0x08, 0x00] || frame[L3] != 0x45 {
            return None;
        }
        let header: &[u8; ipv4::HEADER_LEN] = frame[L3..L4].try_into().ok()?;
        let ip_total = usize::from(be16(header, 2));
        let fragment = be16(header, 6) & 0x3FFF; // more-fragments and the offset
        let ttl = header[8];
        if L3 + ip_total > frame.len() || fragment != 0 || ttl <= 1 {
            return None;
        }
        if !header_checksum_ok(header) {
            return None;
        }
        let (src, dst) = (be32(header, 12), be32(header, 16));
        let flow = fast_transport(frame, header[9], ip_total)?;
        let dst_ip = Ipv4Addr::from(dst);
        if self.is_own_address(dst_ip) || dst_ip.is_broadcast() || dst_ip.is_multicast() {
            return None;
        }
        if from == Side::Inside && self.settings.is_public(dst_ip) {
            return None; // hairpinned: translated twice, by the general path
        }
        let (local, remote) = match from {
            Side::Inside => ((src, flow.src_port), (dst, flow.dst_port)),
            Side::Outside => ((dst, flow.dst_port), (src, flow.src_port)),
        };
        let key = flow_key(flow.proto, from, local, remote);
        Some(Established {
            slot: self.state.flow_slot(&key),
            key,
            ip_total: ip_total as u16,
            tcp_flags: flow.tcp_flags,
        })
    }

    /// The fast path: one flow table probe finds the session, whose record holds the
    /// rewrite. `None` (no live session) sends the frame down the general path, which
    /// decides exactly as it would have had this one not existed: the conditions it checks
    /// either hold for every packet of a live session or were checked by `classify`.
    /// `tests/fast_path.rs` holds the two paths to the same bytes.
    #[inline(always)]
    pub(super) fn established(
        &mut self,
        buf: &mut [u8],
        e: &Established,
        now: u64,
    ) -> Option<Verdict> {
        let session = self.state.find_flow_at(e.slot, &e.key)?;
        self.touch(session, e.flow(), e.key.from, now);
        let s = *self.state.session(session);
        let pkt = &mut buf[L3..L3 + usize::from(e.ip_total)];
        let (which, r) = session_rewrite(&s, e.key.from);
        rewrite_endpoint_and_hop(pkt, ipv4::HEADER_LEN, s.proto, which, r);
        Some(Verdict::Forward(match e.key.from {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }))
    }

    /// Rewrites the subscriber-side endpoint of a packet of session `s` received from
    /// `from` (the general path; the TTL is the caller's): the session's precomputed
    /// rewrite, or with the two-lookup reference, the mapping's endpoint and summed changes.
    #[inline]
    pub(super) fn rewrite(&self, pkt: &mut [u8], ihl: usize, s: &Session, from: Side) {
        let (which, r) = session_rewrite(s, from);
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
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use super::*;
    use crate::config::Config;
    use crate::engine::event::NullSink;
    use crate::wire::build::{self, FrameSpec};
    use crate::wire::checksum;

    fn engine() -> Engine<NullSink> {
        let cfg = Config::from_toml_str(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
             [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n",
        )
        .unwrap();
        Engine::for_all_workers(&cfg, 0, |_| NullSink).remove(0)
    }

    fn endpoints() -> (SocketAddrV4, SocketAddrV4) {
        let src = SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 1), 1000);
        (src, SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 80))
    }

    fn fix_ip_checksum(frame: &mut [u8]) {
        frame[L3 + 10..L3 + 12].fill(0);
        let sum = checksum::checksum(&frame[L3..L4]);
        frame[L3 + 10..L3 + 12].copy_from_slice(&sum.to_be_bytes());
    }

    /// Unusual but ordinary packets stay on the fast path; the proptest in
    /// tests/fast_path.rs holds both paths to the same bytes on them and on the shapes
    /// that must leave it.
    #[test]
    fn ordinary_shapes_take_the_fast_path_and_odd_ones_do_not() {
        let engine = engine();
        let (src, dst) = endpoints();
        let classify = |frame: &[u8]| engine.classify(frame, frame.len(), Side::Inside).is_some();
        let udp = build::pad(build::build(&FrameSpec::udp(src, dst)));
        assert!(classify(&udp));
        let ttl_2 = build::build(&FrameSpec::udp(src, dst).with_ttl(2));
        assert!(classify(&ttl_2), "TTL 2 is forwarded as 1");
        let df = build::build(&FrameSpec::udp(src, dst).with_dont_frag(true));
        assert!(classify(&df));
        let mut tos = udp.clone();
        tos[L3 + 1] = 0xB8;
        fix_ip_checksum(&mut tos);
        assert!(classify(&tos));
        let mut short_udp = build::build(&FrameSpec::udp(src, dst).with_payload(vec![7; 16]));
        short_udp[L4 + 4..L4 + 6].copy_from_slice(&12u16.to_be_bytes());
        assert!(classify(&short_udp), "a UDP length below the IP payload's");
        let mut tcp_options =
            build::build(&FrameSpec::tcp(src, dst, 0x10).with_payload(vec![0; 24]));
        tcp_options[L4 + 12] = 0x60; // 24-byte header: 4 bytes of options, then payload
        assert!(classify(&tcp_options));

        let ttl_1 = build::build(&FrameSpec::udp(src, dst).with_ttl(1));
        let vlan = build::build(&FrameSpec::udp(src, dst).with_vlan(7));
        let mut fragment = udp.clone();
        fragment[L3 + 6] |= 0x20;
        fix_ip_checksum(&mut fragment);
        let mut bad_checksum = udp.clone();
        bad_checksum[L3 + 10] ^= 1;
        let hairpin = build::build(&FrameSpec::udp(src, "203.0.113.1:5000".parse().unwrap()));
        let echo = build::build(&FrameSpec::echo_request(*src.ip(), *dst.ip(), 9, 1));
        for odd in [&ttl_1, &vlan, &fragment, &bad_checksum, &hairpin, &echo] {
            assert!(!classify(odd), "{odd:02x?}");
        }
        assert!(!classify(&udp[..L4 + 7]), "cut short");
    }
}
