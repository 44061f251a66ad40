//! ICMPv4 messages (RFC 792). The NAT translates echo identifiers like ports
//! and rewrites the packet quoted inside error messages.

use super::{Result, WireError, be, checksum, ipv4};

mod field {
    use crate::wire::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo identifier; "unused" or type-specific in error messages.
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    /// The whole type-specific second word (e.g. next-hop MTU, pointer).
    pub const REST: Field = 4..8;
}

pub const HEADER_LEN: usize = field::REST.end;
/// Offset of the echo identifier, for callers patching it in place.
pub const IDENT_OFFSET: usize = field::ECHO_IDENT.start;
/// Offset of the checksum, for callers patching it in place.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

pub const ECHO_REPLY: u8 = 0;
pub const DST_UNREACHABLE: u8 = 3;
pub const SOURCE_QUENCH: u8 = 4;
pub const REDIRECT: u8 = 5;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAM_PROBLEM: u8 = 12;

/// How the NAT treats a message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    EchoRequest,
    EchoReply,
    /// Destination unreachable, time exceeded or parameter problem: carries a
    /// quote of the packet that caused it.
    Error,
    Other,
}

/// Whether a message type is an error report (RFC 1812 §4.3.2.7's list): a router sends
/// no ICMP error about one, whether or not the NAT translates it ([`Kind::Error`]).
pub fn is_error_type(msg_type: u8) -> bool {
    matches!(
        msg_type,
        DST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
    )
}

impl Kind {
    pub fn of(msg_type: u8) -> Kind {
        match msg_type {
            ECHO_REQUEST => Kind::EchoRequest,
            ECHO_REPLY => Kind::EchoReply,
            DST_UNREACHABLE | TIME_EXCEEDED | PARAM_PROBLEM => Kind::Error,
            _ => Kind::Other,
        }
    }
}

/// A view of an ICMPv4 message. The buffer is the whole message (the IPv4
/// payload): the checksum covers all of it.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without validation: accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap, validating that the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn kind(&self) -> Kind {
        Kind::of(self.msg_type())
    }

    pub fn checksum(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Meaningful for echo request/reply only.
    pub fn echo_ident(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Meaningful for echo request/reply only.
    pub fn echo_seq_no(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// The type-specific second word (unused, next-hop MTU, pointer, ...).
    pub fn rest_of_header(&self) -> u32 {
        be::get_u32(self.buffer.as_ref(), field::REST)
    }

    /// Everything after the 8-byte header; for errors, the quoted packet.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The IPv4 packet quoted by an error message, which is usually cut
    /// short. Requires the quote to hold its transport ports (8 bytes past the
    /// IP header, as RFC 792 mandates).
    pub fn embedded(&self) -> Result<ipv4::Packet<&[u8]>> {
        let inner = ipv4::Packet::new_checked_embedded(self.payload())?;
        if inner.payload().len() < EMBEDDED_L4_LEN {
            return Err(WireError::Truncated);
        }
        Ok(inner)
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

/// Transport bytes an ICMP error must quote: enough for ports or echo ident.
pub const EMBEDDED_L4_LEN: usize = 8;

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    pub fn set_echo_seq_no(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value);
    }

    pub fn set_rest_of_header(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), field::REST, value);
    }

    /// Recompute the checksum over the whole message (no pseudo-header).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Mutable form of [`Packet::embedded`], for rewriting the quote.
    pub fn embedded_mut(&mut self) -> Result<ipv4::Packet<&mut [u8]>> {
        let inner = ipv4::Packet::new_checked_embedded(self.payload_mut())?;
        if inner.payload().len() < EMBEDDED_L4_LEN {
            return Err(WireError::Truncated);
        }
        Ok(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Echo request, ident 0x1234, seq 1, payload "hi".
    const ECHO: [u8; 10] = [0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'h', b'i'];

    #[test]
    fn parse_echo() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.kind(), Kind::EchoRequest);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.payload(), b"hi");
    }

    #[test]
    fn checksum_known_value() {
        // 0x0800 + 0x1234 + 0x0001 + 0x6869 = 0x829e
        let mut buf = ECHO;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.checksum(), !0x829e);
        assert!(p.verify_checksum());
        p.set_echo_ident(0x1235);
        assert!(!p.verify_checksum());
    }

    #[test]
    fn setters_write_expected_bytes() {
        let mut buf = [0u8; 10];
        buf[8..].copy_from_slice(b"hi");
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type(ECHO_REQUEST);
        p.set_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(1);
        assert_eq!(buf, ECHO);
    }

    #[test]
    fn kinds() {
        assert_eq!(Kind::of(0), Kind::EchoReply);
        for t in [3, 11, 12] {
            assert_eq!(Kind::of(t), Kind::Error);
        }
        for t in [4, 5, 13, 255] {
            assert_eq!(Kind::of(t), Kind::Other);
        }
    }

    #[test]
    fn embedded_quote() {
        // Port unreachable quoting a UDP datagram 10.0.0.1:5353 -> 192.0.2.7:53
        // whose IP total length (40) exceeds the 28 bytes quoted.
        let msg: [u8; 36] = [
            0x03, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ICMP header
            0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, // quoted IP header
            0x40, 0x11, 0x00, 0x00, 10, 0, 0, 1, 192, 0, 2, 7, //
            0x14, 0xe9, 0x00, 0x35, 0x00, 0x14, 0x00, 0x00, // quoted UDP header
        ];
        let p = Packet::new_checked(&msg[..]).unwrap();
        assert_eq!(p.kind(), Kind::Error);
        let inner = p.embedded().unwrap();
        assert_eq!(inner.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(inner.payload(), &msg[28..]);
        let short = Packet::new_checked(&msg[..35]).unwrap();
        assert_eq!(short.embedded().unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn too_short() {
        assert_eq!(
            Packet::new_checked(&ECHO[..7]).unwrap_err(),
            WireError::Truncated
        );
    }
}
