//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are carried as `u32` values that are congruent, modulo 0xFFFF, to the
//! one's-complement sum of the 16-bit big-endian words. [`sum`] and
//! [`pseudo_header_sum`] return values below 2^17, so callers can add a
//! handful of them in a `u32` without overflow before calling [`fold`].

use std::net::Ipv4Addr;

/// One's-complement accumulation of `data` as 16-bit big-endian words, an odd
/// trailing byte padded with zero. Not folded to 16 bits, not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Adding 64-bit words with end-around carry gives the same one's-complement
    // sum as adding 16-bit words (2^16 ≡ 1 mod 0xFFFF), four times fewer adds.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_be_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let (s, carry) = acc.overflowing_add(word);
        acc = s + u64::from(carry);
    }
    let mut tail = 0u64;
    let mut pairs = chunks.remainder().chunks_exact(2);
    for pair in &mut pairs {
        tail += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        tail += u64::from(*last) << 8;
    }
    let (s, carry) = acc.overflowing_add(tail);
    acc = s + u64::from(carry);
    fold64(acc)
}

/// Reduce a 64-bit end-around sum to below 2^17 without losing carries.
#[inline]
fn fold64(acc: u64) -> u32 {
    let a = (acc >> 32) + (acc & 0xFFFF_FFFF); // < 2^33
    let a = (a >> 32) + (a & 0xFFFF_FFFF); // < 2^32 + 1, and fits u32 after one more step
    let a = (a >> 16) + (a & 0xFFFF); // < 2^17
    a as u32
}

/// Fold carries into 16 bits. Not complemented.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum >> 16) + (sum & 0xFFFF);
    }
    sum as u16
}

/// [`fold`] for a sum below 2^17 (what [`fold64`] leaves): two steps, no loop, which the
/// packet path's checksum updates need.
#[inline(always)]
fn fold17(sum: u32) -> u16 {
    let sum = (sum >> 16) + (sum & 0xFFFF); // <= 0x10000
    ((sum >> 16) + (sum & 0xFFFF)) as u16
}

/// The Internet checksum of `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// True if `data`, which includes its checksum field, sums to 0xFFFF.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xFFFF
}

/// Sum of the TCP/UDP IPv4 pseudo-header (RFC 793 / RFC 768).
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    addr_sum(src) + addr_sum(dst) + u32::from(protocol) + u32::from(length)
}

/// Checksum of an L4 segment under its pseudo-header, for filling the field
/// (which must be zero in `segment` while computing).
pub fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    !fold(pseudo_header_sum(src, dst, protocol, len16(segment)) + sum(segment))
}

/// True if `segment`, checksum field included, verifies under its pseudo-header.
pub fn verify_l4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> bool {
    fold(pseudo_header_sum(src, dst, protocol, len16(segment)) + sum(segment)) == 0xFFFF
}

/// Segment length as carried in the pseudo-header. IPv4 payloads never exceed
/// 16 bits; a longer slice (only possible through misuse) is truncated rather
/// than panicking.
fn len16(segment: &[u8]) -> u16 {
    segment.len() as u16
}

fn addr_sum(addr: Ipv4Addr) -> u32 {
    let v = u32::from(addr);
    (v >> 16) + (v & 0xFFFF)
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit field changed from
/// `old` (m) to `new` (m'). Eqn. 3 rather than RFC 1141's formula because it
/// agrees with a full recomputation when the new sum is one's-complement zero.
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    let mut delta = Delta::default();
    delta.word(old, new);
    delta.apply(checksum)
}

/// Changes to several 16-bit words, applied to a checksum at once: RFC 1624 eqn. 3 summed
/// over the words, HC' = ~(~HC + Σ(~m + m')). Translating a packet quoted in an ICMP error
/// changes addresses, ports and inner checksums that the outer checksum covers; the
/// rewrite collects them here and fixes the outer checksum once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// One 16-bit word changed from `old` to `new`.
    #[inline]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// A 32-bit field (an IPv4 address) changed, as two words.
    #[inline]
    pub fn dword(&mut self, old: u32, new: u32) {
        self.word((old >> 16) as u16, (new >> 16) as u16);
        self.word(old as u16, new as u16);
    }

    /// Adds the changes recorded in `other`.
    #[inline]
    pub fn merge(&mut self, other: Delta) {
        self.0 += other.0;
    }

    /// The recorded changes as one 16-bit one's-complement word, to be kept and applied
    /// later with [`Delta::from_folded`]: applying it gives exactly what applying the
    /// changes word by word gives (a non-zero sum folds to a non-zero word).
    pub fn folded(self) -> u16 {
        fold17(fold64(self.0))
    }

    #[inline]
    pub fn from_folded(sum: u16) -> Delta {
        Delta(u64::from(sum))
    }

    /// The folded change that undoes `sum` (its one's-complement negation), as
    /// [`Delta::folded`] of the reverse changes gives it whenever that sum is not zero —
    /// which needs every reverse word change to be 0xFFFF → 0, never true of an address.
    #[inline]
    pub fn undo_folded(sum: u16) -> u16 {
        match !sum {
            0 => 0xFFFF,
            undo => undo,
        }
    }

    /// The checksum after all recorded changes.
    #[inline]
    pub fn apply(self, checksum: u16) -> u16 {
        !fold17(fold64(u64::from(!checksum) + self.0))
    }
}

/// [`update16`] for a 32-bit field (an IPv4 address), as two 16-bit words.
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update16(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// [`update16`] for a UDP checksum field: 0 means "no checksum" and stays 0;
/// a computed 0 is sent as 0xFFFF (RFC 768).
pub fn update_udp16(checksum: u16, old: u16, new: u16) -> u16 {
    if checksum == 0 {
        return 0;
    }
    udp_nonzero(update16(checksum, old, new))
}

/// [`update32`] for a UDP checksum field, with the rules of [`update_udp16`].
pub fn update_udp32(checksum: u16, old: u32, new: u32) -> u16 {
    if checksum == 0 {
        return 0;
    }
    udp_nonzero(update32(checksum, old, new))
}

/// UDP transmits a computed checksum of 0 as 0xFFFF, the other zero of
/// one's-complement arithmetic, because 0 on the wire means "none".
pub fn udp_nonzero(checksum: u16) -> u16 {
    if checksum == 0 { 0xFFFF } else { checksum }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: the textbook 16-bit loop, deliberately slow and obvious.
    fn naive_sum(data: &[u8]) -> u32 {
        let mut s = 0u32;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            s += hi | lo;
            s = (s & 0xFFFF) + (s >> 16);
        }
        s
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2 folded.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[])), 0);
    }

    #[test]
    fn all_ones_is_negative_zero_not_zero() {
        assert_eq!(fold(sum(&[0xff; 64])), 0xFFFF);
        assert_eq!(fold(sum(&[0; 64])), 0);
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // A commonly cited example header; its checksum field is 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&hdr));
        hdr[8] = 0x3f;
        assert!(!verify(&hdr));
    }

    #[test]
    fn udp_zero_rules() {
        assert_eq!(update_udp16(0, 1, 2), 0);
        assert_eq!(update_udp32(0, 1, 2), 0);
        assert_eq!(udp_nonzero(0), 0xFFFF);
        assert_eq!(udp_nonzero(7), 7);
    }

    #[test]
    fn pseudo_header_known_value() {
        let s = pseudo_header_sum(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            12,
        );
        assert_eq!(s, 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 12);
    }

    proptest! {
        #[test]
        fn sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), fold(naive_sum(&data)));
            prop_assert!(sum(&data) < 1 << 17);
        }

        #[test]
        fn update16_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..64),
            idx in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            // Word-aligned field, checksum stored in the first word.
            data[0] = 0;
            data[1] = 0;
            let words = data.len() / 2;
            let w = 1 + idx.index(words - 1);
            let c = checksum(&data);
            data[..2].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([data[2 * w], data[2 * w + 1]]);
            data[2 * w..2 * w + 2].copy_from_slice(&new.to_be_bytes());
            let inc = update16(c, old, new);
            data[..2].copy_from_slice(&[0, 0]);
            // All-zero data is +0 in full and -0 incrementally (see below).
            prop_assume!(data.iter().any(|b| *b != 0));
            let full = checksum(&data);
            prop_assert_eq!(inc, full);
        }

        #[test]
        fn update32_matches_recompute(
            prefix in proptest::collection::vec(any::<u8>(), 0..16usize),
            old in any::<u32>(),
            new in any::<u32>(),
        ) {
            let mut prefix = prefix;
            prefix.truncate(prefix.len() & !1);
            let build = |v: u32| {
                let mut d = prefix.clone();
                d.extend_from_slice(&v.to_be_bytes());
                d
            };
            let c = checksum(&build(old));
            // Skip the lone case where all data is zero: the full sum is then
            // +0 and the incremental one -0, which RFC 1624 accepts.
            prop_assume!(build(new).iter().any(|b| *b != 0));
            prop_assert_eq!(update32(c, old, new), checksum(&build(new)));
        }
    }
}
