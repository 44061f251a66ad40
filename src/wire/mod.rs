//! Zero-copy packet views.
//!
//! One file per protocol. Each view (`Packet<T>` / `Frame<T>`) wraps a byte
//! buffer and reads or writes header fields in place; nothing here allocates
//! except the owned builders in [`build`]. `new_checked` validates lengths once,
//! so that every accessor afterwards stays in bounds on any input: this is the
//! packet path, and a malformed packet must be a counted drop, never a panic.
//!
//! Layout of a view, shared by all files:
//! - a private `mod field` that names each header field as a byte range;
//! - `new_unchecked` / `new_checked` / `check_len` / `into_inner`;
//! - getters for every field, setters where `T: AsMut<[u8]>`;
//! - `payload()` / `payload_mut()` and checksum helpers.

pub mod arp;
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod tests;

/// Why a buffer is not a valid packet. Each variant is a counted drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the fixed header of its protocol.
    #[error("buffer too short for header")]
    Truncated,
    /// The IP version nibble is not 4.
    #[error("IP version is not 4")]
    BadVersion,
    /// A header length field (IPv4 IHL, TCP data offset) is below the minimum
    /// or points past the end of the buffer.
    #[error("bad header length")]
    BadHeaderLength,
    /// The IPv4 total length is shorter than the header or longer than the buffer.
    #[error("bad IPv4 total length")]
    BadTotalLength,
    /// An L4 length field (UDP length) is inconsistent with the buffer.
    #[error("bad L4 length")]
    BadLength,
    /// QinQ, or more than one 802.1Q tag.
    #[error("unsupported VLAN stacking")]
    UnsupportedVlan,
}

impl WireError {
    /// Every variant, in declaration order, for registering counters up front.
    pub const ALL: [WireError; 6] = [
        WireError::Truncated,
        WireError::BadVersion,
        WireError::BadHeaderLength,
        WireError::BadTotalLength,
        WireError::BadLength,
        WireError::UnsupportedVlan,
    ];

    /// Stable snake_case name, used as a counter name: do not rename.
    pub fn name(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::BadVersion => "bad_version",
            WireError::BadHeaderLength => "bad_header_length",
            WireError::BadTotalLength => "bad_total_length",
            WireError::BadLength => "bad_length",
            WireError::UnsupportedVlan => "unsupported_vlan",
        }
    }
}

pub type Result<T> = core::result::Result<T, WireError>;

/// A header field, as a byte range from the start of its header.
type Field = core::ops::Range<usize>;

/// Big-endian reads and writes of fixed-size fields.
///
/// Callers index only ranges that `new_checked` has proven in bounds; the
/// `try_into` cannot fail because each range has the width of its integer.
mod be {
    use super::Field;

    #[inline]
    pub fn get_u16(buf: &[u8], f: Field) -> u16 {
        u16::from_be_bytes(buf[f].try_into().unwrap_or([0; 2]))
    }

    #[inline]
    pub fn get_u32(buf: &[u8], f: Field) -> u32 {
        u32::from_be_bytes(buf[f].try_into().unwrap_or([0; 4]))
    }

    #[inline]
    pub fn get_mac(buf: &[u8], f: Field) -> [u8; 6] {
        buf[f].try_into().unwrap_or([0; 6])
    }

    #[inline]
    pub fn set_u16(buf: &mut [u8], f: Field, v: u16) {
        buf[f].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_u32(buf: &mut [u8], f: Field, v: u32) {
        buf[f].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod error_tests {
    use super::WireError;

    #[test]
    fn names_are_unique_snake_case() {
        let names: Vec<_> = WireError::ALL.iter().map(|e| e.name()).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(!names[..i].contains(n), "duplicate name {n}");
        }
        assert_eq!(WireError::BadTotalLength.name(), "bad_total_length");
    }
}
