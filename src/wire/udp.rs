//! UDP datagram headers (RFC 768).

use std::net::Ipv4Addr;

use super::ipv4::protocol;
use super::{Result, WireError, be, checksum};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

pub const HEADER_LEN: usize = field::CHECKSUM.end;
/// Offset of the checksum, for callers patching it in place.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A view of a UDP datagram. The length field, not the buffer, bounds the
/// datagram: `payload()` and the checksum stop there.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without validation: accessors may panic on a malformed buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap, validating the header and the length field.
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
        let claimed = self.len();
        if claimed < HEADER_LEN || claimed > len {
            return Err(WireError::BadLength);
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

    /// The length field: header plus payload, in bytes.
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty
    pub fn len(&self) -> usize {
        usize::from(be::get_u16(self.buffer.as_ref(), field::LENGTH))
    }

    /// 0 means the sender did not compute one.
    pub fn checksum(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }

    /// The datagram as bounded by the length field.
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.len()]
    }

    /// True if the checksum is absent (0) or verifies under the pseudo-header.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::verify_l4(src, dst, protocol::UDP, self.datagram())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, port: u16) {
        be::set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        be::set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_len(&mut self, len: u16) {
        be::set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Compute the checksum; a computed 0 is sent as 0xFFFF, since 0 on the
    /// wire means "no checksum".
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::l4_checksum(src, dst, protocol::UDP, self.datagram());
        self.set_checksum(checksum::udp_nonzero(c));
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    /// DNS-ish query 5353 -> 53 with a 3-byte payload and one stray byte past
    /// the length field.
    const DATAGRAM: [u8; 12] = [
        0x14, 0xe9, 0x00, 0x35, // ports
        0x00, 0x0b, 0x00, 0x00, // length 11, checksum
        0xaa, 0xbb, 0xcc, // payload
        0xff, // not part of the datagram
    ];

    #[test]
    fn parse_fields() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 5353);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 11);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc]);
        assert!(p.verify_checksum(SRC, DST), "zero checksum is accepted");
    }

    #[test]
    fn checksum_known_value() {
        let words: u32 = [
            0x0a00u32, 0x0001, 0xc000, 0x0207, 17, 11, // pseudo-header
            0x14e9, 0x0035, 0x000b, 0xaabb, 0xcc00, // datagram
        ]
        .iter()
        .sum();
        let mut buf = DATAGRAM;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), !checksum::fold(words));
        assert!(p.verify_checksum(SRC, DST));
        p.set_dst_port(54);
        assert!(!p.verify_checksum(SRC, DST));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload so that the full sum is 0xFFFF (checksum 0).
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_len(10);
        let partial = checksum::fold(
            checksum::pseudo_header_sum(SRC, DST, protocol::UDP, 10) + checksum::sum(&buf[..8]),
        );
        buf[8..10].copy_from_slice(&(!partial).to_be_bytes());
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn setters_write_expected_bytes() {
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(&DATAGRAM[8..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(5353);
        p.set_dst_port(53);
        p.set_len(11);
        p.set_checksum(0);
        assert_eq!(buf, DATAGRAM);
    }

    #[test]
    fn validation_errors() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&DATAGRAM[..7]), Err(WireError::Truncated));
        assert_eq!(check(&DATAGRAM[..10]), Err(WireError::BadLength));
        assert_eq!(check(&DATAGRAM[..11]), Ok(()));
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(check(&b), Err(WireError::BadLength));
    }
}
