//! TCP segment headers (RFC 9293). The NAT rewrites ports and reads flags for
//! connection tracking; options are left untouched.

use std::net::Ipv4Addr;

use super::ipv4::protocol;
use super::{Result, WireError, be, checksum};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in the high nibble; the low bits are reserved (and NS).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::URGENT.end;
/// Offset of the checksum, for callers patching it in place.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// A view of a TCP segment. The buffer is the whole segment (the IPv4
/// payload): the checksum covers all of it.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without validation: accessors may panic on a malformed buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap, validating that the header, options included, fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(WireError::BadHeaderLength);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        be::get_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    pub fn ack_number(&self) -> u32 {
        be::get_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte: CWR, ECE, URG, ACK, PSH, RST, SYN, FIN.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn fin(&self) -> bool {
        self.flags() & FIN != 0
    }

    pub fn syn(&self) -> bool {
        self.flags() & SYN != 0
    }

    pub fn rst(&self) -> bool {
        self.flags() & RST != 0
    }

    pub fn ack(&self) -> bool {
        self.flags() & ACK != 0
    }

    pub fn window(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent_ptr(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::URGENT)
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Verify the checksum over the pseudo-header and the whole buffer.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::verify_l4(src, dst, protocol::TCP, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, port: u16) {
        be::set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        be::set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_seq_number(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    pub fn set_ack_number(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Set the header length in bytes; must be a multiple of 4, at most 60.
    /// The reserved bits sharing the byte are kept.
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0F) | ((len / 4) << 4);
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    pub fn set_window(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_urgent_ptr(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Recompute the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::l4_checksum(src, dst, protocol::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    /// SYN 40000 -> 443, seq 0x01020304, MSS 1460 option, window 64240.
    const SYN_SEGMENT: [u8; 24] = [
        0x9c, 0x40, 0x01, 0xbb, // ports
        0x01, 0x02, 0x03, 0x04, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0x60, 0x02, 0xfa, 0xf0, // data offset 6, SYN, window
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS
    ];

    #[test]
    fn parse_syn() {
        let p = Packet::new_checked(&SYN_SEGMENT[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 443);
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 24);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.flags(), SYN);
        assert_eq!(p.window(), 64240);
        assert_eq!(p.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn checksum_known_value() {
        // Independent computation: pseudo-header words plus segment words.
        let words: u32 = [0x0a00u32, 0x0001, 0xc000, 0x0207, 6, 24]
            .iter()
            .sum::<u32>()
            + [
                0x9c40u32, 0x01bb, 0x0102, 0x0304, 0, 0, 0x6002, 0xfaf0, 0, 0, 0x0204, 0x05b4,
            ]
            .iter()
            .sum::<u32>();
        let expected = !checksum::fold(words);
        let mut buf = SYN_SEGMENT;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), expected);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(192, 0, 2, 8)));
    }

    #[test]
    fn setters_write_expected_bytes() {
        let mut buf = [0u8; 24];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(443);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0);
        p.set_header_len(24);
        p.set_flags(SYN);
        p.set_window(64240);
        p.set_urgent_ptr(0);
        p.payload_mut().fill(0xee); // payload is empty: no effect
        buf[20..].copy_from_slice(&SYN_SEGMENT[20..]);
        assert_eq!(buf, SYN_SEGMENT);
    }

    #[test]
    fn validation_errors() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&SYN_SEGMENT[..19]), Err(WireError::Truncated));
        assert_eq!(check(&SYN_SEGMENT[..23]), Err(WireError::BadHeaderLength));
        let mut b = SYN_SEGMENT;
        b[12] = 0x40; // data offset 4
        assert_eq!(check(&b), Err(WireError::BadHeaderLength));
        b[12] = 0x50;
        assert_eq!(check(&b), Ok(()));
    }
}
