//! The Toeplitz hash, exactly as NICs compute it for receive-side scaling.
//!
//! Input bits and key bits are numbered from the most significant bit of the first byte.
//! For every input bit `i` that is set, the 32-bit window of the key starting at key bit `i`
//! is XORed into the result. So output bit `j` (counting from the most significant, 0..32)
//! depends on input bit `i` exactly when key bit `i + j` is set, and the hash is linear over
//! GF(2): `hash(a ^ b) = hash(a) ^ hash(b)`.
//!
//! Two implementations: [`hash`] walks the input bit by bit with a shifting key register
//! (the textbook algorithm of the Microsoft RSS specification); [`Table`] precomputes, per
//! input byte position, the contribution of each of the 256 byte values, so a hash is one
//! lookup and XOR per input byte, and the queue of every port of an address costs two
//! lookups per port. A property test checks the two agree.
//!
//! Keys are 40 bytes on most NICs and 52 on ice/i40e; any length works here. Key bits past
//! the end of the key count as zero (no NIC hashes an input that long: an input of `n`
//! bytes needs `n + 4` key bytes).

use std::net::Ipv4Addr;

/// The key of the Microsoft RSS verification suite (also the default key of many drivers
/// before they switched to random keys).
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Input length of the IPv4 address pair (source, destination).
pub const IPV4_LEN: usize = 8;
/// Input length of the IPv4 4-tuple (source, destination, source port, destination port).
pub const IPV4_PORTS_LEN: usize = 12;

/// Key bit `i` (0 = most significant bit of byte 0); bits past the end are zero.
pub fn key_bit(key: &[u8], i: usize) -> bool {
    key.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

/// Sets or clears key bit `i` (0 = most significant bit of byte 0). Panics past the end.
pub fn set_key_bit(key: &mut [u8], i: usize, value: bool) {
    let mask = 0x80 >> (i % 8);
    if value {
        key[i / 8] |= mask;
    } else {
        key[i / 8] &= !mask;
    }
}

/// The 32-bit key window starting at key bit `i`: what input bit `i` XORs into the hash.
pub fn window(key: &[u8], i: usize) -> u32 {
    let byte = i / 8;
    let mut w = 0u64;
    for k in 0..5 {
        w = (w << 8) | key.get(byte + k).copied().unwrap_or(0) as u64;
    }
    (w >> (8 - i % 8)) as u32
}

/// The Toeplitz hash of `input` under `key`, bit by bit (reference implementation).
pub fn hash(key: &[u8], input: &[u8]) -> u32 {
    // The register holds key bits [pos, pos + 32); `next` is the index of the next key bit
    // to shift in.
    let mut register = window(key, 0);
    let mut next = 32;
    let mut result = 0u32;
    for &byte in input {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= register;
            }
            register = (register << 1) | key_bit(key, next) as u32;
            next += 1;
        }
    }
    result
}

/// The input NICs hash for an IPv4 packet with `rx-flow-hash sd`: source then destination
/// address, network byte order.
pub fn ipv4_input(src: Ipv4Addr, dst: Ipv4Addr) -> [u8; IPV4_LEN] {
    let mut input = [0; IPV4_LEN];
    input[..4].copy_from_slice(&src.octets());
    input[4..].copy_from_slice(&dst.octets());
    input
}

/// The input NICs hash for IPv4 TCP/UDP with `rx-flow-hash sdfn`: source address,
/// destination address, source port, destination port, network byte order.
pub fn ipv4_ports_input(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> [u8; IPV4_PORTS_LEN] {
    let mut input = [0; IPV4_PORTS_LEN];
    input[..4].copy_from_slice(&src.octets());
    input[4..8].copy_from_slice(&dst.octets());
    input[8..10].copy_from_slice(&sport.to_be_bytes());
    input[10..].copy_from_slice(&dport.to_be_bytes());
    input
}

/// Hash of the IPv4 address pair of a received packet.
pub fn hash_ipv4(key: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
    hash(key, &ipv4_input(src, dst))
}

/// Hash of the IPv4 4-tuple of a received TCP/UDP packet.
pub fn hash_ipv4_ports(key: &[u8], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
    hash(key, &ipv4_ports_input(src, dst, sport, dport))
}

/// Per-byte contribution tables: `rows[p][v]` is the hash of an input that is zero except
/// for value `v` at byte `p`. By linearity the hash of any input is the XOR of its bytes'
/// contributions.
#[derive(Clone)]
pub struct Table {
    rows: Vec<[u32; 256]>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "toeplitz::Table({} input bytes)", self.rows.len())
    }
}

impl Table {
    /// Tables for inputs of up to `max_input_len` bytes.
    pub fn new(key: &[u8], max_input_len: usize) -> Table {
        let rows = (0..max_input_len)
            .map(|p| {
                let bits: [u32; 8] = std::array::from_fn(|b| window(key, p * 8 + b));
                let mut row = [0u32; 256];
                for (v, slot) in row.iter_mut().enumerate() {
                    *slot = (0..8)
                        .filter(|b| v & (0x80 >> b) != 0)
                        .fold(0, |acc, b| acc ^ bits[b]);
                }
                row
            })
            .collect();
        Table { rows }
    }

    /// Longest input the tables cover.
    pub fn max_input_len(&self) -> usize {
        self.rows.len()
    }

    /// Contribution of `bytes` placed at byte offset `offset` of an otherwise zero input.
    #[inline]
    pub fn field(&self, offset: usize, bytes: &[u8]) -> u32 {
        bytes
            .iter()
            .enumerate()
            .fold(0, |acc, (i, &b)| acc ^ self.rows[offset + i][b as usize])
    }

    /// Contribution of a 16-bit port (network byte order) at byte offset `offset`.
    #[inline]
    pub fn port(&self, offset: usize, port: u16) -> u32 {
        self.rows[offset][(port >> 8) as usize] ^ self.rows[offset + 1][(port & 0xff) as usize]
    }

    /// Contribution of an IPv4 address at byte offset `offset`.
    #[inline]
    pub fn addr(&self, offset: usize, addr: Ipv4Addr) -> u32 {
        self.field(offset, &addr.octets())
    }

    /// The hash of `input` (panics if it is longer than the tables).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.field(0, input)
    }

    pub fn hash_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        self.addr(0, src) ^ self.addr(4, dst)
    }

    pub fn hash_ipv4_ports(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        self.addr(0, src) ^ self.addr(4, dst) ^ self.port(8, sport) ^ self.port(10, dport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The IPv4 examples of Microsoft's "Verifying the RSS Hash Calculation" (also in the
    /// Intel 82599 datasheet, section 7.1.2.8.3, and DPDK's test_thash.c):
    /// (source, source port, destination, destination port, hash of the addresses,
    /// hash of the 4-tuple), under [`MICROSOFT_KEY`].
    type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);
    const VECTORS: [Vector; 5] = [
        (
            [66, 9, 149, 187],
            2794,
            [161, 142, 100, 80],
            1766,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            [199, 92, 111, 2],
            14230,
            [65, 69, 140, 83],
            4739,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            [24, 19, 198, 95],
            12898,
            [12, 22, 207, 184],
            38024,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            [38, 27, 205, 30],
            48228,
            [209, 142, 163, 6],
            2217,
            0x82989176,
            0xafc7327f,
        ),
        (
            [153, 39, 163, 191],
            44251,
            [202, 188, 127, 2],
            1303,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    #[test]
    fn microsoft_vectors_bit_by_bit() {
        for (src, sport, dst, dport, h2, h4) in VECTORS {
            let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            assert_eq!(hash_ipv4(&MICROSOFT_KEY, s, d), h2, "{s} -> {d}");
            assert_eq!(
                hash_ipv4_ports(&MICROSOFT_KEY, s, d, sport, dport),
                h4,
                "{s}:{sport} -> {d}:{dport}"
            );
        }
    }

    #[test]
    fn microsoft_vectors_table() {
        let t = Table::new(&MICROSOFT_KEY, IPV4_PORTS_LEN);
        for (src, sport, dst, dport, h2, h4) in VECTORS {
            let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            assert_eq!(t.hash_ipv4(s, d), h2);
            assert_eq!(t.hash_ipv4_ports(s, d, sport, dport), h4);
            assert_eq!(t.hash(&ipv4_ports_input(s, d, sport, dport)), h4);
        }
    }

    #[test]
    fn a_52_byte_key_hashes_ipv4_like_its_first_40_bytes() {
        // An IPv4 4-tuple reads key bits 0..=126 only: the tail of a longer key is unused.
        let mut long = MICROSOFT_KEY.to_vec();
        long.extend_from_slice(&[0xa5; 12]);
        let (src, sport, dst, dport, _, h4) = VECTORS[0];
        let h = hash_ipv4_ports(&long, src.into(), dst.into(), sport, dport);
        assert_eq!(h, h4);
        assert_eq!(
            Table::new(&long, 48).hash_ipv4_ports(src.into(), dst.into(), sport, dport),
            h4
        );
    }

    #[test]
    fn windows_read_key_bits_msb_first() {
        assert_eq!(window(&MICROSOFT_KEY, 0), 0x6d5a56da);
        assert_eq!(window(&MICROSOFT_KEY, 8), 0x5a56da25);
        assert_eq!(window(&MICROSOFT_KEY, 4), 0xd5a56da2);
        // Past the end, zeros come in.
        assert_eq!(window(&MICROSOFT_KEY, 320 - 8), 0xfa00_0000);
        let mut k = [0u8; 4];
        set_key_bit(&mut k, 9, true);
        assert_eq!(k, [0, 0x40, 0, 0]);
        assert!(key_bit(&k, 9) && !key_bit(&k, 8) && !key_bit(&k, 999));
        set_key_bit(&mut k, 9, false);
        assert_eq!(k, [0; 4]);
    }

    proptest! {
        #[test]
        fn table_agrees_with_bit_by_bit(
            key in prop::collection::vec(any::<u8>(), 40..=52),
            input in prop::collection::vec(any::<u8>(), 0..=36),
        ) {
            let t = Table::new(&key, 36);
            prop_assert_eq!(t.hash(&input), hash(&key, &input));
        }

        #[test]
        fn ipv4_helpers_agree(
            key in prop::collection::vec(any::<u8>(), 40),
            src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(),
        ) {
            let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let t = Table::new(&key, IPV4_PORTS_LEN);
            prop_assert_eq!(t.hash_ipv4_ports(s, d, sport, dport), hash_ipv4_ports(&key, s, d, sport, dport));
            prop_assert_eq!(t.hash_ipv4(s, d), hash_ipv4(&key, s, d));
        }

        #[test]
        fn hash_is_linear(
            key in prop::collection::vec(any::<u8>(), 40),
            a in prop::collection::vec(any::<u8>(), 12),
            b in prop::collection::vec(any::<u8>(), 12),
        ) {
            let x: Vec<u8> = a.iter().zip(&b).map(|(p, q)| p ^ q).collect();
            prop_assert_eq!(hash(&key, &x), hash(&key, &a) ^ hash(&key, &b));
        }
    }
}
