//! Frames: per-flow header templates built once, frame sizes (fixed or IMIX), and the stamp
//! every generated frame carries at the start of its transport payload.
//!
//! Sizes are Ethernet frame sizes on the wire including the 4-byte FCS the NIC appends
//! (RFC 2544 convention: 64 is the minimum frame, 1518 the maximum untagged one), so the
//! buffer handed to AF_XDP is 4 bytes shorter (60, 590, 1514; veth carries no FCS). A UDP
//! frame of 64 holds the 18-byte stamp exactly; TCP needs 76 (its header is 12 bytes
//! longer), so with `--proto tcp` the 64-byte class is sent as 76.
//!
//! Per packet, [`Templates::write`] copies the flow's header into a UMEM frame, writes the
//! stamp and fixes the transport checksum incrementally. The payload after the stamp is
//! never written: UMEM frames start zeroed and transmit frames only ever hold these
//! frames, so it stays zero, as the template's checksum assumes.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::wire::build::{FrameSpec, build};
use crate::wire::checksum::{Delta, udp_nonzero, update16};
use crate::wire::tcp;

/// Bytes of the stamp: magic (2), flow (4), sequence (4), send time (8), network order.
pub const STAMP_LEN: usize = 18;
/// The first two bytes of every generated payload ("tG").
pub const MAGIC: u16 = 0x7447;
/// The frame check sequence a NIC appends (not in AF_XDP buffers).
pub const FCS_LEN: usize = 4;
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;

/// Transport protocol of the generated flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    /// Ethernet + IPv4 + transport header, no options.
    pub fn header_len(self) -> usize {
        ETH_LEN
            + IP_LEN
            + match self {
                Proto::Udp => 8,
                Proto::Tcp => tcp::HEADER_LEN,
            }
    }
    fn checksum_offset(self) -> usize {
        ETH_LEN
            + IP_LEN
            + match self {
                Proto::Udp => 6,
                Proto::Tcp => tcp::CHECKSUM_OFFSET,
            }
    }
    pub fn number(self) -> u8 {
        match self {
            Proto::Udp => 17,
            Proto::Tcp => 6,
        }
    }
}

/// Frame sizes: one fixed size, or simple IMIX (64, 594 and 1518 bytes in 7:4:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeMix {
    Fixed(u16),
    Imix,
}

/// The IMIX sizes and their weights.
pub const IMIX: [(u16, u32); 3] = [(64, 7), (594, 4), (1518, 1)];

/// The order of size classes in one IMIX cycle of 12 frames: the large frames spread out.
const IMIX_PATTERN: [u8; 12] = [0, 1, 0, 0, 1, 0, 2, 0, 1, 0, 0, 1];

impl SizeMix {
    /// `64`, `1518`, `imix`.
    pub fn parse(text: &str) -> Result<SizeMix, String> {
        if text.eq_ignore_ascii_case("imix") {
            return Ok(SizeMix::Imix);
        }
        match text.parse::<u16>() {
            Ok(n) if (64..=1518).contains(&n) => Ok(SizeMix::Fixed(n)),
            _ => Err(format!(
                "size {text:?}: expected 64 to 1518 (bytes on the wire, FCS included) or IMIX"
            )),
        }
    }

    /// The wire sizes of the classes (FCS included).
    pub fn wire_sizes(self) -> Vec<u16> {
        match self {
            SizeMix::Fixed(n) => vec![n],
            SizeMix::Imix => IMIX.iter().map(|(s, _)| *s).collect(),
        }
    }

    /// Class indices, cycled frame by frame.
    pub fn pattern(self) -> &'static [u8] {
        match self {
            SizeMix::Fixed(_) => &[0],
            SizeMix::Imix => &IMIX_PATTERN,
        }
    }
}

/// The AF_XDP buffer length for a wire size: FCS off, at least headers plus the stamp.
pub fn buffer_len(wire_size: u16, proto: Proto) -> usize {
    (wire_size as usize - FCS_LEN).max(proto.header_len() + STAMP_LEN)
}

/// What every generated frame carries at the start of its transport payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The flow (a 5-tuple; a new flow gets a new id).
    pub flow: u32,
    /// Per-flow sequence number from 0.
    pub seq: u32,
    /// CLOCK_MONOTONIC at sending, ns.
    pub sent_ns: u64,
}

impl Stamp {
    pub fn write(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        out[2..6].copy_from_slice(&self.flow.to_be_bytes());
        out[6..10].copy_from_slice(&self.seq.to_be_bytes());
        out[10..18].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// The stamp at the start of `payload`, if it carries one.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let b = payload.get(..STAMP_LEN)?;
        if u16::from_be_bytes([b[0], b[1]]) != MAGIC {
            return None;
        }
        Some(Stamp {
            flow: u32::from_be_bytes(b[2..6].try_into().ok()?),
            seq: u32::from_be_bytes(b[6..10].try_into().ok()?),
            sent_ns: u64::from_be_bytes(b[10..18].try_into().ok()?),
        })
    }
}

/// Where the parts of a received IPv4 UDP/TCP frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub l3: usize,
    pub l4: usize,
    pub payload: usize,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// Parses an untagged Ethernet/IPv4 frame carrying UDP or TCP; `None` for anything else.
pub fn parse(frame: &[u8]) -> Option<Parsed> {
    if frame.len() < ETH_LEN + IP_LEN || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IP_LEN || frame.len() < ETH_LEN + ihl {
        return None;
    }
    let protocol = ip[9];
    let l4 = ETH_LEN + ihl;
    let payload = match protocol {
        17 => l4 + 8,
        6 => l4 + usize::from(*frame.get(l4 + 12)? >> 4) * 4,
        _ => return None,
    };
    if payload > frame.len() {
        return None;
    }
    Some(Parsed {
        l3: ETH_LEN,
        l4,
        payload,
        protocol,
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    })
}

/// Turns a frame around in place: MAC addresses, IP addresses and ports swapped. Neither
/// checksum changes (the sums are the same with the words swapped).
pub fn reflect(frame: &mut [u8], p: &Parsed) {
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    for i in 0..4 {
        frame.swap(p.l3 + 12 + i, p.l3 + 16 + i);
    }
    for i in 0..2 {
        frame.swap(p.l4 + i, p.l4 + 2 + i);
    }
}

/// One flow's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// The header of every (flow slot, size class), and the transport checksum of the frame
/// with a zero stamp and zero payload.
#[derive(Debug, Clone)]
pub struct Templates {
    proto: Proto,
    header_len: usize,
    /// Buffer length of each size class.
    lens: Vec<usize>,
    /// [slot][class][header_len].
    headers: Vec<u8>,
    /// [slot][class].
    checksums: Vec<u16>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

impl Templates {
    pub fn new(
        proto: Proto,
        sizes: SizeMix,
        slots: usize,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
    ) -> Templates {
        let lens: Vec<usize> = sizes
            .wire_sizes()
            .iter()
            .map(|&s| buffer_len(s, proto))
            .collect();
        let header_len = proto.header_len();
        Templates {
            proto,
            header_len,
            headers: vec![0; slots * lens.len() * header_len],
            checksums: vec![0; slots * lens.len()],
            lens,
            src_mac,
            dst_mac,
        }
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Buffer length of each size class.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// The longest frame.
    pub fn max_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    fn index(&self, slot: usize, class: usize) -> usize {
        slot * self.lens.len() + class
    }

    /// Builds `slot`'s headers for `tuple` (set-up time: allocates).
    pub fn set_flow(&mut self, slot: usize, tuple: Tuple) {
        for class in 0..self.lens.len() {
            let payload = vec![0u8; self.lens[class] - self.header_len];
            let spec = match self.proto {
                Proto::Udp => FrameSpec::udp(tuple.src, tuple.dst),
                Proto::Tcp => FrameSpec::tcp(tuple.src, tuple.dst, tcp::ACK | tcp::PSH),
            }
            .with_macs(self.src_mac, self.dst_mac)
            .with_payload(payload);
            let frame = build(&spec);
            debug_assert_eq!(frame.len(), self.lens[class]);
            let i = self.index(slot, class);
            let h = self.header_len;
            self.headers[i * h..(i + 1) * h].copy_from_slice(&frame[..h]);
            let at = self.proto.checksum_offset();
            self.checksums[i] = u16::from_be_bytes([frame[at], frame[at + 1]]);
        }
    }

    /// A new source port for `slot` (a new flow), patched in place: no allocation.
    pub fn set_src_port(&mut self, slot: usize, port: u16) {
        let h = self.header_len;
        let at = ETH_LEN + IP_LEN;
        for class in 0..self.lens.len() {
            let i = self.index(slot, class);
            let header = &mut self.headers[i * h..(i + 1) * h];
            let old = u16::from_be_bytes([header[at], header[at + 1]]);
            header[at..at + 2].copy_from_slice(&port.to_be_bytes());
            let c = update16(self.checksums[i], old, port);
            self.checksums[i] = match self.proto {
                Proto::Udp => udp_nonzero(c),
                Proto::Tcp => c,
            };
        }
    }

    /// Writes `slot`'s frame of size class `class` with `stamp` into `frame` (whose bytes
    /// after the stamp must be zero); returns its length.
    pub fn write(&self, slot: usize, class: usize, stamp: &Stamp, frame: &mut [u8]) -> usize {
        let h = self.header_len;
        let i = self.index(slot, class);
        frame[..h].copy_from_slice(&self.headers[i * h..(i + 1) * h]);
        let s = &mut frame[h..h + STAMP_LEN];
        stamp.write(s);
        let mut delta = Delta::default();
        for w in s.chunks_exact(2) {
            delta.word(0, u16::from_be_bytes([w[0], w[1]]));
        }
        let c = delta.apply(self.checksums[i]);
        let c = match self.proto {
            Proto::Udp => udp_nonzero(c),
            Proto::Tcp => c,
        };
        let at = self.proto.checksum_offset();
        frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
        self.lens[class]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{verify, verify_l4};

    fn tuple(port: u16) -> Tuple {
        Tuple {
            src: SocketAddrV4::new(Ipv4Addr::new(100, 64, 2, 1), port),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 7),
        }
    }

    fn check(frame: &[u8], proto: Proto) {
        let p = parse(frame).expect("parses");
        assert!(verify(&frame[p.l3..p.l4]), "IP checksum");
        assert!(
            verify_l4(p.src, p.dst, proto.number(), &frame[p.l4..]),
            "transport checksum"
        );
    }

    #[test]
    fn stamped_frames_have_correct_checksums_and_sizes() {
        for proto in [Proto::Udp, Proto::Tcp] {
            let mut t = Templates::new(proto, SizeMix::Imix, 2, [2; 6], [4; 6]);
            t.set_flow(0, tuple(10_000));
            t.set_flow(1, tuple(10_001));
            t.set_src_port(1, 65_535);
            let expected: Vec<usize> = match proto {
                Proto::Udp => vec![60, 590, 1514],
                Proto::Tcp => vec![72, 590, 1514],
            };
            assert_eq!(t.lens(), &expected[..]);
            let mut frame = vec![0u8; 2048];
            for (n, sent_ns) in [0u64, 1, u64::MAX, 0x1234_5678_9abc_def0]
                .iter()
                .enumerate()
            {
                for (class, &want) in expected.iter().enumerate() {
                    let stamp = Stamp {
                        flow: n as u32 * 77,
                        seq: u32::MAX - n as u32,
                        sent_ns: *sent_ns,
                    };
                    let len = t.write(1, class, &stamp, &mut frame);
                    assert_eq!(len, want);
                    check(&frame[..len], proto);
                    let p = parse(&frame[..len]).unwrap();
                    assert_eq!(Stamp::read(&frame[p.payload..len]), Some(stamp));
                    assert_eq!(u16::from_be_bytes([frame[34], frame[35]]), 65_535);
                    // Turned around, the checksums still hold.
                    let mut back = frame[..len].to_vec();
                    reflect(&mut back, &p);
                    check(&back, proto);
                    assert_eq!(&back[0..6], &[2; 6]);
                    assert_eq!(parse(&back).unwrap().src, Ipv4Addr::new(198, 51, 100, 10));
                }
            }
        }
    }

    #[test]
    fn sizes_parse_and_imix_has_its_proportions() {
        assert_eq!(SizeMix::parse("IMIX"), Ok(SizeMix::Imix));
        assert_eq!(SizeMix::parse("64"), Ok(SizeMix::Fixed(64)));
        assert!(SizeMix::parse("63").is_err());
        assert!(SizeMix::parse("1519").is_err());
        let mut counts = [0; 3];
        for &c in SizeMix::Imix.pattern() {
            counts[c as usize] += 1;
        }
        assert_eq!(counts, [7, 4, 1]);
        assert_eq!(buffer_len(64, Proto::Udp), 60);
        assert_eq!(buffer_len(1518, Proto::Udp), 1514);
    }

    #[test]
    fn foreign_payloads_have_no_stamp() {
        assert_eq!(Stamp::read(&[0u8; 18]), None);
        assert_eq!(Stamp::read(&[0x74, 0x47, 0]), None);
        assert_eq!(parse(&[0u8; 10]), None);
    }
}
