//! IPv4 headers (RFC 791).

use std::net::Ipv4Addr;

use super::{Result, WireError, be, checksum};

mod field {
    use crate::wire::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Offset of the header checksum, for callers patching it in place.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// IP protocol numbers the NAT translates.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
/// Fragment offset, in units of 8 bytes.
const OFFSET_MASK: u16 = 0x1FFF;

/// A view of an IPv4 packet. The buffer may extend past `total_len` (Ethernet
/// padding); everything here stops at `total_len`.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without validation: accessors may panic on a malformed buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap, validating version, header length and total length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Wrap the IP header quoted inside an ICMP error. Such a quote is cut
    /// short (header + 8 bytes is typical), so `total_len` may exceed the
    /// buffer; `payload()` then ends at the buffer instead.
    pub fn new_checked_embedded(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    /// Full validation, as done by [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if self.total_len() > self.buffer.as_ref().len() {
            return Err(WireError::BadTotalLength);
        }
        Ok(())
    }

    /// Everything but "total length fits the buffer".
    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(WireError::BadHeaderLength);
        }
        if self.total_len() < header_len {
            return Err(WireError::BadTotalLength);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0F) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length in bytes (header + payload), as claimed by the header.
    pub fn total_len(&self) -> usize {
        usize::from(be::get_u16(self.buffer.as_ref(), field::LENGTH))
    }

    pub fn ident(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_offset() & OFFSET_MASK) * 8
    }

    /// True for any fragment, first included: a first fragment has MF set,
    /// later ones a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be::get_u32(self.buffer.as_ref(), field::SRC_ADDR))
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be::get_u32(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The options, between the fixed header and `header_len`.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The whole header, options included: what the header checksum covers.
    pub fn header_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload, ending at `total_len` (or at the buffer, for an embedded
    /// quote from [`Packet::new_checked_embedded`]).
    pub fn payload(&self) -> &[u8] {
        let range = self.payload_range();
        &self.buffer.as_ref()[range]
    }

    fn payload_range(&self) -> core::ops::Range<usize> {
        let end = self.total_len().min(self.buffer.as_ref().len());
        self.header_len()..end
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header_bytes())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0F) | (version << 4);
    }

    /// Set the header length in bytes; must be a multiple of 4, at most 60.
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xF0) | ((len / 4) & 0x0F);
    }

    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    pub fn set_total_len(&mut self, len: u16) {
        be::set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        be::set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    fn set_flags_offset(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::FLG_OFF, value);
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(if value { v | FLAG_DF } else { v });
    }

    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(if value { v | FLAG_MF } else { v });
    }

    /// Set the fragment offset in bytes; must be a multiple of 8.
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.flags_offset() & !OFFSET_MASK;
        self.set_flags_offset(v | (offset / 8));
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        be::set_u32(self.buffer.as_mut(), field::SRC_ADDR, addr.into());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        be::set_u32(self.buffer.as_mut(), field::DST_ADDR, addr.into());
    }

    /// Recompute the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header_bytes());
        self.set_checksum(c);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }
}

/// A high-level view of an option-less IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes; a multiple of 8.
    pub frag_offset: usize,
    pub payload_len: usize,
}

impl Repr {
    /// Read the header of a checked packet. Options and DSCP/ECN are dropped.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            payload_len: packet.payload().len(),
        }
    }

    /// Bytes needed for header and payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Write a 20-byte header with a correct checksum into `packet`, which
    /// must be at least [`HEADER_LEN`] long. Builder path only: a
    /// `payload_len` beyond 65515 or an offset beyond 65528 is truncated.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp_ecn(0);
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(self.ident);
        packet.set_flags_offset(0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset as u16);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP, 10.0.0.1 -> 192.0.2.7, ident 0x1c46, DF, TTL 64, 8-byte payload,
    /// followed by two bytes of link-layer padding.
    const PACKET: [u8; 30] = [
        0x45, 0x00, 0x00, 0x1c, // ver/ihl, tos, total len 28
        0x1c, 0x46, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x00, 0x00, // ttl, udp, checksum (filled in tests)
        10, 0, 0, 1, // src
        192, 0, 2, 7, // dst
        1, 2, 3, 4, 5, 6, 7, 8, // payload
        0, 0, // padding
    ];

    fn packet_with_checksum() -> [u8; 30] {
        let mut buf = PACKET;
        let c = checksum::checksum(&buf[..20]);
        buf[10..12].copy_from_slice(&c.to_be_bytes());
        buf
    }

    #[test]
    fn parse_fields() {
        let buf = packet_with_checksum();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]); // not the padding
        assert!(p.options().is_empty());
        assert!(p.verify_checksum());
    }

    #[test]
    fn repr_round_trip() {
        let buf = packet_with_checksum();
        let repr = Repr::parse(&Packet::new_checked(&buf[..]).unwrap());
        assert_eq!(repr.payload_len, 8);
        let mut out = [0u8; 28];
        out[20..].copy_from_slice(&PACKET[20..28]);
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..], buf[..28]);
    }

    #[test]
    fn setters_and_checksum() {
        let mut buf = packet_with_checksum();
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ttl(63);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        assert!(p.is_fragment());
        assert!(p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(buf[6..8], [0x60, 0xb9]); // DF|MF, 1480/8 = 185 = 0xb9
    }

    #[test]
    fn fragment_flags() {
        let mut buf = packet_with_checksum();
        buf[6..8].copy_from_slice(&[0x00, 0x03]); // offset 24 bytes, no MF
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 24);
        assert!(!p.dont_frag());
    }

    #[test]
    fn options_are_skipped() {
        let mut buf = [0u8; 28];
        buf[..20].copy_from_slice(&PACKET[..20]);
        buf[0] = 0x46; // IHL 6
        buf[3] = 28;
        buf[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]); // router alert
        buf[24..].copy_from_slice(&[9, 9, 9, 9]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
    }

    #[test]
    fn validation_errors() {
        let buf = packet_with_checksum();
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&buf[..19]), Err(WireError::Truncated));
        assert_eq!(check(&buf[..27]), Err(WireError::BadTotalLength));
        assert_eq!(check(&buf[..28]), Ok(()));

        let mut b = buf;
        b[0] = 0x65;
        assert_eq!(check(&b), Err(WireError::BadVersion));
        b[0] = 0x44;
        assert_eq!(check(&b), Err(WireError::BadHeaderLength));
        b[0] = 0x4f; // 60-byte header in a 30-byte buffer
        assert_eq!(check(&b), Err(WireError::BadHeaderLength));
        b[0] = 0x45;
        b[3] = 19;
        assert_eq!(check(&b), Err(WireError::BadTotalLength));
    }

    #[test]
    fn embedded_quote_may_be_short() {
        let buf = packet_with_checksum();
        assert!(Packet::new_checked(&buf[..24]).is_err());
        let p = Packet::new_checked_embedded(&buf[..24]).unwrap();
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }
}
