//! Reading a frame for the packet path: the IPv4 header, the transport header or ICMP
//! message, the packet an ICMP error quotes, and the TCP state a packet leads to. Pure
//! functions of the bytes; every check that decides a drop lives here.

use std::net::Ipv4Addr;

use crate::config::Ipv4Prefix;
use crate::engine::ports::Proto;
use crate::engine::rewrite;
use crate::engine::state::{FlowKey, tcp_state};
use crate::engine::{DropReason, Side, Verdict};
use crate::wire::{icmp, ipv4, tcp, udp};

/// The IPv4 header fields the path needs, read once.
#[derive(Debug, Clone, Copy)]
pub(super) struct IpInfo {
    pub(super) l3: usize,
    pub(super) ihl: usize,
    pub(super) total: usize,
    pub(super) src: u32,
    pub(super) dst: u32,
    pub(super) protocol: u8,
    pub(super) ttl: u8,
    pub(super) ident: u16,
    pub(super) frag_offset: usize,
    pub(super) more_frags: bool,
}

impl IpInfo {
    pub(super) fn packet_end(&self) -> usize {
        self.l3 + self.total
    }
    pub(super) fn l4_start(&self) -> usize {
        self.l3 + self.ihl
    }
}

/// A transport flow as seen in the packet's direction. For ICMP queries the identifier
/// stands for the subscriber-side port and the remote "port" is always 0.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flow {
    pub(super) proto: Proto,
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
    pub(super) tcp_flags: u8,
}

pub(super) enum Transport {
    Flow(Flow),
    IcmpError,
}

/// The packet an ICMP error quotes.
pub(super) struct Quoted {
    pub(super) ihl: usize,
    pub(super) proto: Proto,
    pub(super) src: u32,
    pub(super) dst: u32,
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
}

pub(super) type Step = Result<Verdict, DropReason>;

#[inline]
pub(super) fn in_prefixes(prefixes: &[Ipv4Prefix], ip: Ipv4Addr) -> bool {
    prefixes.iter().any(|p| p.contains(ip))
}

#[inline]
pub(super) fn parse_ip(frame: &[u8], l3: usize) -> Result<IpInfo, DropReason> {
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
pub(super) fn parse_transport(
    frame: &[u8],
    ip: &IpInfo,
    from: Side,
) -> Result<Transport, DropReason> {
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

/// The destination of the packet an ICMP error quotes; `None` if the frame is not an ICMP
/// error (or a later fragment of one) with a quote [`parse_quoted`] accepts.
pub(super) fn quoted_destination(frame: &[u8], ip: &IpInfo) -> Option<Ipv4Addr> {
    if ip.protocol != ipv4::protocol::ICMP || ip.frag_offset > 0 {
        return None;
    }
    let l4 = frame.get(ip.l4_start()..ip.packet_end())?;
    if icmp::Packet::new_checked(l4).ok()?.kind() != icmp::Kind::Error {
        return None;
    }
    let quoted = parse_quoted(l4.get(8..)?).ok()?;
    Some(Ipv4Addr::from(quoted.dst))
}

/// Parses the packet quoted by an ICMP error: its IP header and at least 8 transport bytes.
pub(super) fn parse_quoted(q: &[u8]) -> Result<Quoted, DropReason> {
    // The quote is usually cut short of the original total length: that is accepted.
    let pkt = ipv4::Packet::new_checked_embedded(q)?;
    if q.len() < pkt.header_len() + 8 {
        return Err(DropReason::MalformedTruncated);
    }
    // A later fragment's first bytes are payload, not ports: nothing to match it by.
    if pkt.frag_offset() > 0 {
        return Err(DropReason::IcmpErrorNoSession);
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
pub(super) fn flow_key(proto: Proto, from: Side, local: (u32, u16), remote: (u32, u16)) -> FlowKey {
    FlowKey {
        proto,
        from,
        local_ip: local.0,
        local_port: local.1,
        remote_ip: remote.0,
        remote_port: remote.1,
    }
}

pub(super) fn remote_port(proto: Proto, port: u16) -> u16 {
    if proto == Proto::Icmp { 0 } else { port }
}

/// The TCP state after a packet with `flags` from `from`.
pub(super) fn next_tcp_state(state: u8, flags: u8, from: Side) -> u8 {
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
