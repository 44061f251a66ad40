//! Owned packet builders for tests, benchmarks, fuzz seeds and traffic
//! generation. These allocate and panic on misuse; they are never on the
//! packet path.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::ethernet::{self, EtherType, Frame};
use super::ipv4::{self, protocol};
use super::{icmp, tcp, udp};

pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const DEFAULT_TTL: u8 = 64;
pub const DEFAULT_IDENT: u16 = 0x1000;
/// Window advertised by built TCP segments.
pub const DEFAULT_WINDOW: u16 = 0xFFFF;

/// Everything needed to build one Ethernet/IPv4 frame.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub l4: L4Spec,
    /// Transport payload. For `IcmpError` it follows `original` (normally empty).
    pub payload: Vec<u8>,
}

/// The transport layer of a [`FrameSpec`].
#[derive(Clone, Debug)]
pub enum L4Spec {
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        /// Send 0 ("no checksum") instead of computing one.
        zero_checksum: bool,
    },
    IcmpEcho {
        request: bool,
        ident: u16,
        seq: u16,
    },
    IcmpError {
        msg_type: u8,
        code: u8,
        /// The original IP packet (header + at least 8 bytes).
        original: Vec<u8>,
    },
    /// Any other protocol: the payload is the whole IP payload.
    Raw {
        protocol: u8,
    },
}

impl FrameSpec {
    /// A spec with default link layer and IP fields around `l4`.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, l4: L4Spec) -> Self {
        FrameSpec {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src,
            dst,
            ttl: DEFAULT_TTL,
            ident: DEFAULT_IDENT,
            dont_frag: false,
            l4,
            payload: Vec::new(),
        }
    }

    pub fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        let l4 = L4Spec::Udp {
            src_port: src.port(),
            dst_port: dst.port(),
            zero_checksum: false,
        };
        Self::new(*src.ip(), *dst.ip(), l4)
    }

    /// A segment with sequence number 1 and, if `flags` has ACK, ack number 1.
    pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Self {
        let l4 = L4Spec::Tcp {
            src_port: src.port(),
            dst_port: dst.port(),
            seq: 1,
            ack: if flags & tcp::ACK != 0 { 1 } else { 0 },
            flags,
        };
        Self::new(*src.ip(), *dst.ip(), l4)
    }

    pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Self {
        let l4 = L4Spec::IcmpEcho {
            request: true,
            ident,
            seq,
        };
        Self::new(src, dst, l4)
    }

    pub fn echo_reply(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Self {
        let l4 = L4Spec::IcmpEcho {
            request: false,
            ident,
            seq,
        };
        Self::new(src, dst, l4)
    }

    pub fn raw(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Self {
        Self::new(src, dst, L4Spec::Raw { protocol })
    }

    pub fn with_payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }

    pub fn with_vlan(mut self, vid: u16) -> Self {
        self.vlan = Some(vid);
        self
    }

    pub fn with_ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn with_ident(mut self, ident: u16) -> Self {
        self.ident = ident;
        self
    }

    pub fn with_dont_frag(mut self, dont_frag: bool) -> Self {
        self.dont_frag = dont_frag;
        self
    }

    pub fn with_macs(mut self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Self {
        self.src_mac = src_mac;
        self.dst_mac = dst_mac;
        self
    }

    /// For UDP specs, send a zero ("absent") checksum; no effect otherwise.
    pub fn with_zero_udp_checksum(mut self) -> Self {
        if let L4Spec::Udp { zero_checksum, .. } = &mut self.l4 {
            *zero_checksum = true;
        }
        self
    }

    fn protocol(&self) -> u8 {
        match self.l4 {
            L4Spec::Tcp { .. } => protocol::TCP,
            L4Spec::Udp { .. } => protocol::UDP,
            L4Spec::IcmpEcho { .. } | L4Spec::IcmpError { .. } => protocol::ICMP,
            L4Spec::Raw { protocol } => protocol,
        }
    }
}

/// A full Ethernet frame for `spec`, every checksum correct, unpadded.
///
/// Panics if the IP packet would exceed 65535 bytes.
pub fn build(spec: &FrameSpec) -> Vec<u8> {
    let l4 = build_l4(spec);
    let repr = ipv4::Repr {
        src: spec.src,
        dst: spec.dst,
        protocol: spec.protocol(),
        ttl: spec.ttl,
        ident: spec.ident,
        dont_frag: spec.dont_frag,
        more_frags: false,
        frag_offset: 0,
        payload_len: l4.len(),
    };
    assert!(
        repr.buffer_len() <= usize::from(u16::MAX),
        "IP packet too long"
    );
    let mut frame = l2_header(spec.src_mac, spec.dst_mac, spec.vlan);
    let l3 = frame.len();
    frame.resize(l3 + ipv4::HEADER_LEN, 0);
    frame.extend_from_slice(&l4);
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut frame[l3..]));
    frame
}

fn l2_header(src: [u8; 6], dst: [u8; 6], vlan: Option<u16>) -> Vec<u8> {
    let mut out = vec![0; ethernet::HEADER_LEN];
    let mut frame = Frame::new_unchecked(&mut out[..]);
    frame.set_dst_addr(dst);
    frame.set_src_addr(src);
    match vlan {
        None => frame.set_ethertype(EtherType::IPV4),
        Some(vid) => {
            frame.set_ethertype(EtherType::VLAN);
            out.extend_from_slice(&(vid & 0x0FFF).to_be_bytes());
            out.extend_from_slice(&EtherType::IPV4.to_be_bytes());
        }
    }
    out
}

/// The transport segment, checksum filled under the spec's addresses.
fn build_l4(spec: &FrameSpec) -> Vec<u8> {
    match &spec.l4 {
        L4Spec::Tcp {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
        } => {
            let mut buf = with_header(tcp::HEADER_LEN, &spec.payload);
            let mut p = tcp::Packet::new_unchecked(&mut buf[..]);
            p.set_src_port(*src_port);
            p.set_dst_port(*dst_port);
            p.set_seq_number(*seq);
            p.set_ack_number(*ack);
            p.set_header_len(tcp::HEADER_LEN as u8);
            p.set_flags(*flags);
            p.set_window(DEFAULT_WINDOW);
            p.fill_checksum(spec.src, spec.dst);
            buf
        }
        L4Spec::Udp {
            src_port,
            dst_port,
            zero_checksum,
        } => {
            let mut buf = with_header(udp::HEADER_LEN, &spec.payload);
            let len = u16::try_from(buf.len()).expect("UDP datagram too long");
            let mut p = udp::Packet::new_unchecked(&mut buf[..]);
            p.set_src_port(*src_port);
            p.set_dst_port(*dst_port);
            p.set_len(len);
            if !zero_checksum {
                p.fill_checksum(spec.src, spec.dst);
            }
            buf
        }
        L4Spec::IcmpEcho {
            request,
            ident,
            seq,
        } => {
            let mut buf = with_header(icmp::HEADER_LEN, &spec.payload);
            let mut p = icmp::Packet::new_unchecked(&mut buf[..]);
            p.set_msg_type(if *request {
                icmp::ECHO_REQUEST
            } else {
                icmp::ECHO_REPLY
            });
            p.set_echo_ident(*ident);
            p.set_echo_seq_no(*seq);
            p.fill_checksum();
            buf
        }
        L4Spec::IcmpError {
            msg_type,
            code,
            original,
        } => {
            let mut buf = with_header(icmp::HEADER_LEN, original);
            buf.extend_from_slice(&spec.payload);
            let mut p = icmp::Packet::new_unchecked(&mut buf[..]);
            p.set_msg_type(*msg_type);
            p.set_code(*code);
            p.fill_checksum();
            buf
        }
        L4Spec::Raw { .. } => spec.payload.clone(),
    }
}

/// A zeroed header of `header_len` bytes followed by `payload`.
fn with_header(header_len: usize, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; header_len];
    buf.extend_from_slice(payload);
    buf
}

/// Pad `frame` with zeros to the Ethernet minimum, as a NIC delivers it.
pub fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < ethernet::MIN_FRAME_LEN {
        frame.resize(ethernet::MIN_FRAME_LEN, 0);
    }
    frame
}

/// The IPv4 packet inside a frame (without link-layer padding).
///
/// Panics if `frame` does not hold a valid IPv4 packet.
pub fn ip_packet(frame: &[u8]) -> &[u8] {
    let l3 = &frame[l3_offset(frame)..];
    let len = ipv4::Packet::new_checked(l3)
        .expect("frame holds no valid IPv4 packet")
        .total_len();
    &l3[..len]
}

fn l3_offset(frame: &[u8]) -> usize {
    let l2 = ethernet::parse_l2(frame).expect("bad link layer");
    assert_eq!(l2.ethertype, EtherType::IPV4, "not an IPv4 frame");
    l2.l3_offset
}

/// Split the IPv4 packet in `frame` into fragment frames carrying at most
/// `max_ip_payload` bytes of IP payload each (rounded down to a multiple of
/// 8). Each fragment copies the link-layer and IP header (options included,
/// whatever their copy bit) and has a correct IP checksum. A packet that fits
/// comes back as a single unchanged frame. Fragmenting a fragment works too:
/// offsets are relative to the original and the last piece keeps its MF bit.
///
/// Panics if `max_ip_payload < 8` or `frame` holds no valid IPv4 packet.
pub fn fragment(frame: &[u8], max_ip_payload: usize) -> Vec<Vec<u8>> {
    let chunk = max_ip_payload & !7;
    assert!(chunk >= 8, "fragments must carry at least 8 bytes");
    let l3 = l3_offset(frame);
    let packet = ipv4::Packet::new_checked(&frame[l3..]).expect("no valid IPv4 packet");
    let payload = packet.payload();
    if payload.len() <= max_ip_payload {
        return vec![frame[..l3 + packet.total_len()].to_vec()];
    }
    let prefix = &frame[..l3 + packet.header_len()];
    let pieces = payload.chunks(chunk).count();
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let last = i + 1 == pieces;
            let offset = packet.frag_offset() + i * chunk;
            let mut out = Vec::with_capacity(prefix.len() + piece.len());
            out.extend_from_slice(prefix);
            out.extend_from_slice(piece);
            let mut ip = ipv4::Packet::new_unchecked(&mut out[l3..]);
            ip.set_total_len((packet.header_len() + piece.len()) as u16);
            ip.set_frag_offset(offset as u16);
            ip.set_more_frags(!last || packet.more_frags());
            ip.fill_checksum();
            out
        })
        .collect()
}

/// Transport bytes quoted by [`icmp_error_for`]: the RFC 792 minimum, which
/// is the hardest case for a translator (the quoted TCP header is cut short).
pub const ICMP_ERROR_QUOTE_L4: usize = icmp::EMBEDDED_L4_LEN;

/// An ICMP error about `original_frame`, sent from `from` back to the
/// original's source over the same link (MACs swapped, same VLAN). It quotes
/// the original IP header and the first 8 bytes of its payload.
///
/// Panics if `original_frame` holds no valid IPv4 packet.
pub fn icmp_error_for(original_frame: &[u8], msg_type: u8, code: u8, from: Ipv4Addr) -> Vec<u8> {
    let l2 = ethernet::parse_l2(original_frame).expect("bad link layer");
    let eth = Frame::new_unchecked(original_frame);
    let orig = ipv4::Packet::new_checked(ip_packet(original_frame)).expect("bad IPv4 packet");
    let quote_len = orig.header_len() + orig.payload().len().min(ICMP_ERROR_QUOTE_L4);
    let spec = FrameSpec {
        src_mac: eth.dst_addr(),
        dst_mac: eth.src_addr(),
        vlan: l2.vlan,
        src: from,
        dst: orig.src_addr(),
        ttl: DEFAULT_TTL,
        ident: DEFAULT_IDENT,
        dont_frag: false,
        l4: L4Spec::IcmpError {
            msg_type,
            code,
            original: orig.into_inner()[..quote_len].to_vec(),
        },
        payload: Vec::new(),
    };
    build(&spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn udp_frame_layout() {
        let spec = FrameSpec::udp(sock([10, 0, 0, 1], 1000), sock([192, 0, 2, 7], 53))
            .with_payload(vec![1, 2, 3]);
        let frame = build(&spec);
        assert_eq!(frame.len(), 14 + 20 + 8 + 3);
        assert_eq!(frame[12..14], [0x08, 0x00]);
        let ip = ipv4::Packet::new_checked(ip_packet(&frame)).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), protocol::UDP);
        assert_eq!(ip.ttl(), DEFAULT_TTL);
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (1000, 53, 11));
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(u.payload(), &[1, 2, 3]);
    }

    #[test]
    fn vlan_tag_and_padding() {
        let spec =
            FrameSpec::echo_request([10, 0, 0, 1].into(), [8, 8, 8, 8].into(), 7, 9).with_vlan(42);
        let frame = pad(build(&spec));
        assert_eq!(frame.len(), 60);
        let l2 = ethernet::parse_l2(&frame).unwrap();
        assert_eq!((l2.vlan, l2.l3_offset), (Some(42), 18));
        assert_eq!(ip_packet(&frame).len(), 20 + 8);
    }

    #[test]
    fn zero_udp_checksum_is_kept() {
        let spec =
            FrameSpec::udp(sock([10, 0, 0, 1], 1), sock([10, 0, 0, 2], 2)).with_zero_udp_checksum();
        let frame = build(&spec);
        let ip = ipv4::Packet::new_checked(ip_packet(&frame)).unwrap();
        assert_eq!(
            udp::Packet::new_checked(ip.payload()).unwrap().checksum(),
            0
        );
    }

    #[test]
    fn icmp_error_quotes_original() {
        let orig = build(
            &FrameSpec::tcp(
                sock([10, 0, 0, 1], 40000),
                sock([192, 0, 2, 7], 80),
                tcp::SYN,
            )
            .with_vlan(5),
        );
        let err = icmp_error_for(&orig, icmp::TIME_EXCEEDED, 0, [192, 0, 2, 1].into());
        let l2 = ethernet::parse_l2(&err).unwrap();
        assert_eq!(l2.vlan, Some(5));
        assert_eq!(Frame::new_unchecked(&err[..]).dst_addr(), DEFAULT_SRC_MAC);
        let ip = ipv4::Packet::new_checked(ip_packet(&err)).unwrap();
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        let msg = icmp::Packet::new_checked(ip.payload()).unwrap();
        assert!(msg.verify_checksum());
        assert_eq!(msg.kind(), icmp::Kind::Error);
        assert_eq!(msg.payload(), &ip_packet(&orig)[..28]);
        let inner = msg.embedded().unwrap();
        assert_eq!(inner.total_len(), 40);
        assert_eq!(inner.payload()[..4], [0x9c, 0x40, 0x00, 0x50]);
    }
}
