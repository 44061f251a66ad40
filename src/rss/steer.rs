//! Which RX queue a packet lands on, and keys that make that queue the owner's.
//!
//! A NIC computes the Toeplitz hash of some header fields of a received packet and delivers
//! it to `indirection[hash % indirection.len()]`. [`RssSpec`] models one NIC port's
//! configuration; [`owner_of_public`] and [`subscriber_queue`] are the two questions the NAT
//! asks of it, and [`partitions`] turns the outside NIC's answer into the engine's
//! per-worker share of the pool.
//!
//! # Engineered keys
//!
//! Output bit `j` of the hash (0 = most significant) depends on input bit `i` exactly when
//! key bit `i + j` is set. The queue only reads the low `k` output bits (`j` in
//! `32-k .. 32`; `k` = [`RssSpec::queue_bits`]), so clearing key bits `i + j` for every
//! input bit `i` of a field and every such `j` removes that field from the queue choice.
//! With the 4-tuple input (source address: input bits 0..32, destination address 32..64,
//! source port 64..80, destination port 80..96):
//!
//! * outside (return packets, source = remote, destination = public):
//!   clear key bits `32-k ..= 62` (remote address), `96-k ..= 110` (remote port) and
//!   `128-n-k ..= 126` (the low `n` bits of the public port), and set key bit `127-n-k`:
//!   the bits that remain couple the public address and port bits `n .. n+k`; with bit
//!   `127-n-k` set, the map from port bits `n .. n+k` to the queue bits is triangular with
//!   a unit anti-diagonal, hence a bijection: every aligned run of `2^(n+k)` ports of an
//!   address gives exactly `2^n` ports, one whole block, to each of the `2^k` hash
//!   values. Needs `n + k <= 16`.
//! * inside (outbound packets, source = subscriber): clear key bits `64-k ..= 126`
//!   (destination address and both ports) and set key bit `63-k`: every aligned run of
//!   `2^k` subscriber addresses hits each hash value once.
//!
//! Every other key bit is pseudo-random from a seed. Bits `127..` are never read by an
//! IPv4 input (the last input bit is 95, the last output bit 31).
//!
//! **One key cannot serve both sides**: both sides put the packet's *source* address at
//! input bits 0..32, whose queue contribution lives in key bits `32-k ..= 62`. The outside
//! needs them clear (the remote must not matter), the inside needs key bit `63-k` and
//! others around it set (the subscriber must matter). A key that makes the outside
//! independent of the remote makes the inside independent of the subscriber: every
//! subscriber would land on one queue. So the inside and outside NIC ports get different
//! keys (`ethtool -X` is per network device, so two ports of one NIC can differ); a
//! router-on-a-stick set-up with both sides on one device cannot be aligned and relies on
//! handoff rings.
//!
//! The same keys also fix the queue of packets the NIC hashes by addresses only (ICMP,
//! IPv4 fragments): outside, their queue depends on the public address alone; inside, on
//! the subscriber alone.

use std::net::Ipv4Addr;

use super::toeplitz::{self, Table};
use crate::rng::SplitMix64;
use crate::rss::partition::Partition;

/// A header field a NIC can hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    SrcIp,
    DstIp,
    SrcPort,
    DstPort,
}

impl Field {
    fn width(self) -> usize {
        match self {
            Field::SrcIp | Field::DstIp => 4,
            Field::SrcPort | Field::DstPort => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::SrcIp => "source address",
            Field::DstIp => "destination address",
            Field::SrcPort => "source port",
            Field::DstPort => "destination port",
        }
    }
}

/// Which fields of an IPv4 TCP/UDP packet the NIC hashes (`ethtool -N <if> rx-flow-hash
/// tcp4|udp4 <flags>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashFields {
    /// `sd`: source and destination address (8 bytes). What every NIC uses for IPv4
    /// packets that are not TCP/UDP, and for fragments.
    Addresses,
    /// `sdfn`: source address, destination address, source port, destination port
    /// (12 bytes). The default for TCP on every NIC here.
    FourTuple,
    /// `dn`: destination address and port only (mlx5, ice, i40e; not ixgbe), modelled as
    /// the two fields concatenated (6 bytes). That packing is what Microsoft's definition
    /// implies for partial field sets, but hardware documentation does not spell it out:
    /// verify against the NIC's reported hash before relying on it. tracenat's own plans
    /// use `sdfn` with engineered keys, which needs no such assumption.
    DstAddrPort,
    /// `s`: source address only (4 bytes), with the same caveat as `DstAddrPort`.
    SrcAddr,
}

impl HashFields {
    /// (field, byte offset in the hash input), in input order.
    pub fn layout(self) -> &'static [(Field, usize)] {
        match self {
            HashFields::Addresses => &[(Field::SrcIp, 0), (Field::DstIp, 4)],
            HashFields::FourTuple => &[
                (Field::SrcIp, 0),
                (Field::DstIp, 4),
                (Field::SrcPort, 8),
                (Field::DstPort, 10),
            ],
            HashFields::DstAddrPort => &[(Field::DstIp, 0), (Field::DstPort, 4)],
            HashFields::SrcAddr => &[(Field::SrcIp, 0)],
        }
    }

    /// Length of the hash input in bytes.
    pub fn input_len(self) -> usize {
        self.layout().iter().map(|(f, _)| f.width()).sum()
    }

    /// Byte offset of `field` in the input, if hashed.
    pub fn offset(self, field: Field) -> Option<usize> {
        self.layout()
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, o)| *o)
    }

    /// The flags of `ethtool -N <if> rx-flow-hash tcp4 <flags>`.
    pub fn ethtool_flags(self) -> &'static str {
        match self {
            HashFields::Addresses => "sd",
            HashFields::FourTuple => "sdfn",
            HashFields::DstAddrPort => "dn",
            HashFields::SrcAddr => "s",
        }
    }

    pub fn from_ethtool_flags(flags: &str) -> Option<HashFields> {
        [
            HashFields::Addresses,
            HashFields::FourTuple,
            HashFields::DstAddrPort,
            HashFields::SrcAddr,
        ]
        .into_iter()
        .find(|f| f.ethtool_flags() == flags)
    }
}

/// The header fields of a received packet, as seen on the wire of that NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

impl Flow {
    fn field_bytes(&self, field: Field) -> [u8; 4] {
        match field {
            Field::SrcIp => self.src.octets(),
            Field::DstIp => self.dst.octets(),
            Field::SrcPort => {
                let [a, b] = self.sport.to_be_bytes();
                [a, b, 0, 0]
            }
            Field::DstPort => {
                let [a, b] = self.dport.to_be_bytes();
                [a, b, 0, 0]
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RssError {
    #[error("the RSS indirection table is empty")]
    EmptyIndirection,
    #[error("an RSS key of {len} bytes is too short: {fields} hashing needs at least {need}")]
    KeyTooShort {
        len: usize,
        fields: &'static str,
        need: usize,
    },
    #[error(
        "{queue_bits} queue bits plus {block_bits} port-block bits exceed the 16 bits of a port"
    )]
    TooManyBits { queue_bits: u32, block_bits: u32 },
    #[error(
        "with this key and `{fields}` hashing the outside queue of a return packet depends on \
         the remote {what}, so no port partition can put every return packet on its owner's \
         queue: use an engineered key (`tracenat hw plan`) or destination-only hashing, or \
         run with handoff rings"
    )]
    NotAligned {
        fields: &'static str,
        what: &'static str,
    },
    #[error(
        "the indirection table sends packets to queue {queue} but there are only {workers} workers"
    )]
    QueueOutOfRange { queue: u16, workers: u16 },
    #[error("no workers")]
    NoWorkers,
    #[error("empty port range {min}..={max}")]
    EmptyPortRange { min: u16, max: u16 },
    #[error("an indirection table of {0} entries is not a power of two")]
    TableSize(usize),
}

/// One NIC port's RSS configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssSpec {
    pub key: Vec<u8>,
    pub fields: HashFields,
    /// Queue per table entry; a packet goes to `indirection[hash % len]`.
    pub indirection: Vec<u16>,
}

impl RssSpec {
    pub fn new(
        key: Vec<u8>,
        fields: HashFields,
        indirection: Vec<u16>,
    ) -> Result<RssSpec, RssError> {
        if indirection.is_empty() {
            return Err(RssError::EmptyIndirection);
        }
        let need = fields.input_len() + 4;
        if key.len() < need {
            return Err(RssError::KeyTooShort {
                len: key.len(),
                fields: fields.ethtool_flags(),
                need,
            });
        }
        Ok(RssSpec {
            key,
            fields,
            indirection,
        })
    }

    /// The table `ethtool -X <if> equal <queues>` writes: entry `i` → queue `i % queues`.
    pub fn equal(
        key: Vec<u8>,
        fields: HashFields,
        table_size: usize,
        queues: u16,
    ) -> Result<RssSpec, RssError> {
        if queues == 0 {
            return Err(RssError::NoWorkers);
        }
        let indirection = (0..table_size)
            .map(|i| (i % queues as usize) as u16)
            .collect();
        RssSpec::new(key, fields, indirection)
    }

    /// Contribution tables for this key, covering this spec's input.
    pub fn table(&self) -> Table {
        Table::new(&self.key, self.fields.input_len())
    }

    /// The hash the NIC computes for a received packet.
    pub fn hash(&self, flow: &Flow) -> u32 {
        let mut input = [0u8; 12];
        for &(field, offset) in self.fields.layout() {
            let w = field.width();
            input[offset..offset + w].copy_from_slice(&flow.field_bytes(field)[..w]);
        }
        toeplitz::hash(&self.key, &input[..self.fields.input_len()])
    }

    /// The queue a hash value selects.
    #[inline]
    pub fn queue_of_hash(&self, hash: u32) -> u16 {
        self.indirection[(hash % self.indirection.len() as u32) as usize]
    }

    /// The queue a received packet lands on.
    pub fn queue_of(&self, flow: &Flow) -> u16 {
        self.queue_of_hash(self.hash(flow))
    }

    /// The hash bits the queue choice actually reads. For a table of `2^K` entries, bit `b`
    /// (below `K`) is in the mask when flipping it changes the queue of some entry: with
    /// `equal N` and `N` a power of two that is `N - 1`. A table whose size is not a power
    /// of two reads every bit (`hash % len`) unless all entries are equal.
    pub fn queue_mask(&self) -> u32 {
        let t = &self.indirection;
        if t.iter().all(|q| *q == t[0]) {
            return 0;
        }
        if !t.len().is_power_of_two() {
            return u32::MAX;
        }
        let bits = t.len().trailing_zeros();
        (0..bits)
            .filter(|b| (0..t.len()).any(|i| t[i] != t[i ^ (1 << b)]))
            .fold(0, |m, b| m | 1 << b)
    }

    /// Number of low hash bits the queue reads: `k` in the module documentation.
    pub fn queue_bits(&self) -> u32 {
        32 - self.queue_mask().leading_zeros()
    }

    /// Whether the queue can change with the value of `field` (exact, by linearity: the
    /// field matters iff one of its bits' key windows reaches a bit of [`queue_mask`]).
    ///
    /// [`queue_mask`]: RssSpec::queue_mask
    pub fn depends_on(&self, field: Field) -> bool {
        self.depends_on_bits(field, 0, field.width() * 8)
    }

    /// Whether the queue depends on bits `lo..hi` of `field`, counted from its least
    /// significant bit.
    fn depends_on_bits(&self, field: Field, lo: usize, hi: usize) -> bool {
        let Some(offset) = self.fields.offset(field) else {
            return false;
        };
        let mask = self.queue_mask();
        let last = (offset + field.width()) * 8 - 1;
        (lo..hi).any(|b| toeplitz::window(&self.key, last - b) & mask != 0)
    }

    /// How many low bits of the destination (public) port the queue ignores: aligned
    /// blocks of `2^block_bits()` ports share a queue. 16 when the port is not hashed.
    pub fn block_bits(&self) -> u32 {
        (0..16)
            .find(|&b| self.depends_on_bits(Field::DstPort, b, b + 1))
            .map_or(16, |b| b as u32)
    }

    /// Outside NIC: whether the queue of a return packet ignores the remote end.
    pub fn is_outside_aligned(&self) -> bool {
        !self.depends_on(Field::SrcIp) && !self.depends_on(Field::SrcPort)
    }

    /// Inside NIC: whether the queue of an outbound packet depends on the subscriber only.
    pub fn is_inside_aligned(&self) -> bool {
        !self.depends_on(Field::DstIp)
            && !self.depends_on(Field::SrcPort)
            && !self.depends_on(Field::DstPort)
    }
}

/// The outside queue of a return packet: source = remote, destination = public.
pub fn owner_of_public(
    outside: &RssSpec,
    public_ip: Ipv4Addr,
    public_port: u16,
    remote_ip: Ipv4Addr,
    remote_port: u16,
) -> u16 {
    outside.queue_of(&Flow {
        src: remote_ip,
        dst: public_ip,
        sport: remote_port,
        dport: public_port,
    })
}

/// The inside queue of an outbound packet: source = subscriber, destination = remote.
pub fn subscriber_queue(
    inside: &RssSpec,
    subscriber_ip: Ipv4Addr,
    remote_ip: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> u16 {
    inside.queue_of(&Flow {
        src: subscriber_ip,
        dst: remote_ip,
        sport,
        dport,
    })
}

/// Which NIC port a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Subscriber-facing: the queue must depend on the source address only.
    Inside,
    /// Internet-facing: the queue must depend on the destination (public) address and the
    /// high bits of the destination port only.
    Outside,
}

/// Key bit ranges (inclusive) an engineered key must have clear, for the 4-tuple input
/// (which places source and destination addresses as the `sd` input does, so these keys
/// serve both), with `k` queue bits and `n` block bits.
pub fn zeroed_key_bits(side: Side, queue_bits: u32, block_bits: u32) -> Vec<(usize, usize)> {
    let (k, n) = (queue_bits as usize, block_bits as usize);
    if k == 0 {
        return Vec::new();
    }
    // Input bits i in [a, b] reach output bits 32-k..=31 through key bits a+32-k ..= b+31.
    let reach = |a: usize, b: usize| (a + 32 - k, b + 31);
    match side {
        Side::Outside => {
            let mut v = vec![reach(0, 31), reach(64, 79)];
            if n > 0 {
                v.push(reach(96 - n, 95));
            }
            v
        }
        Side::Inside => vec![reach(32, 95)],
    }
}

/// The key bit an engineered key must have set for balance (see the module documentation).
pub fn pivot_key_bit(side: Side, queue_bits: u32, block_bits: u32) -> usize {
    let (k, n) = (queue_bits as usize, block_bits as usize);
    match side {
        Side::Outside => 127 - n - k,
        Side::Inside => 63 - k,
    }
}

/// A key of `key_len` bytes (40, or 52 for ice/i40e) for one side, for an indirection that
/// reads `queue_bits` low hash bits ([`RssSpec::queue_bits`]) and, outside, blocks of
/// `2^block_bits` ports. Bits not constrained are pseudo-random from `seed`.
pub fn engineered_key(
    side: Side,
    seed: u64,
    queue_bits: u32,
    block_bits: u32,
    key_len: usize,
) -> Result<Vec<u8>, RssError> {
    let need = toeplitz::IPV4_PORTS_LEN + 4;
    if key_len < need {
        return Err(RssError::KeyTooShort {
            len: key_len,
            fields: HashFields::FourTuple.ethtool_flags(),
            need,
        });
    }
    let block_bits = if side == Side::Outside { block_bits } else { 0 };
    if queue_bits + block_bits > 16 {
        return Err(RssError::TooManyBits {
            queue_bits,
            block_bits,
        });
    }
    let mut rng = SplitMix64::new(
        seed ^ if side == Side::Inside {
            0x696e_7369_6465
        } else {
            0x6f75_7473_6964
        },
    );
    let mut key: Vec<u8> = (0..key_len).map(|_| rng.next_u64() as u8).collect();
    for (lo, hi) in zeroed_key_bits(side, queue_bits, block_bits) {
        for bit in lo..=hi {
            toeplitz::set_key_bit(&mut key, bit, false);
        }
    }
    if queue_bits > 0 {
        toeplitz::set_key_bit(&mut key, pivot_key_bit(side, queue_bits, block_bits), true);
    }
    Ok(key)
}

/// The remote end used to compute partitions; with an aligned key any would do.
pub const REFERENCE_REMOTE: (Ipv4Addr, u16) = (Ipv4Addr::new(192, 0, 2, 1), 443);

/// Splits the pool between workers so that worker `w` owns exactly the (public address,
/// port) pairs whose return traffic the outside NIC delivers to queue `w`.
///
/// Fails when the queue depends on the remote end (a key that is not engineered, with
/// `sd` or `sdfn` hashing): then no partition is right for every remote, and the
/// dataplane must hand packets to their owner over rings instead.
pub fn partitions(
    outside: &RssSpec,
    pool: &[Ipv4Addr],
    port_min: u16,
    port_max: u16,
    workers: u16,
) -> Result<Vec<Partition>, RssError> {
    if workers == 0 {
        return Err(RssError::NoWorkers);
    }
    if port_min > port_max {
        return Err(RssError::EmptyPortRange {
            min: port_min,
            max: port_max,
        });
    }
    if let Some(&queue) = outside.indirection.iter().find(|q| **q >= workers) {
        return Err(RssError::QueueOutOfRange { queue, workers });
    }
    for (field, what) in [(Field::SrcIp, "address"), (Field::SrcPort, "port")] {
        if outside.depends_on(field) {
            return Err(RssError::NotAligned {
                fields: outside.fields.ethtool_flags(),
                what,
            });
        }
    }
    let table = outside.table();
    let port_offset = outside.fields.offset(Field::DstPort);
    let mut parts = vec![Partition::default(); workers as usize];
    for &ip in pool {
        let base = outside.hash(&Flow {
            src: REFERENCE_REMOTE.0,
            dst: ip,
            sport: REFERENCE_REMOTE.1,
            dport: 0,
        });
        for port in port_min..=port_max {
            let h = base ^ port_offset.map_or(0, |o| table.port(o, port));
            parts[outside.queue_of_hash(h) as usize].insert(ip, port);
        }
    }
    #[cfg(debug_assertions)]
    debug_check_remote_independent(outside, &parts, pool);
    Ok(parts)
}

/// Debug builds: sampled ports of every address keep their queue under other remotes.
#[cfg(debug_assertions)]
fn debug_check_remote_independent(outside: &RssSpec, parts: &[Partition], pool: &[Ipv4Addr]) {
    let mut rng = SplitMix64::new(0x5eed);
    for (w, part) in parts.iter().enumerate() {
        for (ip, ports) in part.addrs().filter(|_| !pool.is_empty()) {
            for port in ports.iter().step_by(997).take(8) {
                let remote = Ipv4Addr::from(rng.next_u64() as u32);
                let q = owner_of_public(outside, ip, port, remote, rng.next_u64() as u16);
                debug_assert_eq!(q as usize, w, "{ip}:{port} from {remote}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::toeplitz::MICROSOFT_KEY;
    use proptest::prelude::*;

    fn outside_spec(workers: u16, table: usize, block_bits: u32, len: usize) -> RssSpec {
        let probe = RssSpec::equal(vec![0; len], HashFields::FourTuple, table, workers).unwrap();
        let key = engineered_key(Side::Outside, 7, probe.queue_bits(), block_bits, len).unwrap();
        RssSpec::equal(key, HashFields::FourTuple, table, workers).unwrap()
    }

    fn inside_spec(workers: u16, table: usize) -> RssSpec {
        let probe = RssSpec::equal(vec![0; 40], HashFields::FourTuple, table, workers).unwrap();
        let key = engineered_key(Side::Inside, 7, probe.queue_bits(), 0, 40).unwrap();
        RssSpec::equal(key, HashFields::FourTuple, table, workers).unwrap()
    }

    fn pool() -> Vec<Ipv4Addr> {
        (0..8).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect()
    }

    #[test]
    fn queue_mask_follows_the_table() {
        let s = |n, q| RssSpec::equal(MICROSOFT_KEY.to_vec(), HashFields::FourTuple, n, q).unwrap();
        assert_eq!(s(128, 4).queue_mask(), 0b11);
        assert_eq!(s(128, 4).queue_bits(), 2);
        assert_eq!(s(128, 6).queue_mask(), 0x7f);
        assert_eq!(s(128, 1).queue_mask(), 0);
        assert_eq!(s(100, 4).queue_mask(), u32::MAX);
        assert_eq!(s(512, 16).queue_bits(), 4);
    }

    #[test]
    fn queue_of_reads_the_indirection_table() {
        let spec = RssSpec::new(
            MICROSOFT_KEY.to_vec(),
            HashFields::FourTuple,
            vec![3, 1, 4, 1, 5, 9, 2, 6],
        )
        .unwrap();
        let flow = Flow {
            src: Ipv4Addr::new(66, 9, 149, 187),
            dst: Ipv4Addr::new(161, 142, 100, 80),
            sport: 2794,
            dport: 1766,
        };
        assert_eq!(spec.hash(&flow), 0x51ccc178);
        assert_eq!(spec.queue_of(&flow), spec.indirection[0x51ccc178 % 8]);
        let two = RssSpec {
            fields: HashFields::Addresses,
            ..spec.clone()
        };
        assert_eq!(two.hash(&flow), 0x323e8fc2);
    }

    #[test]
    fn spec_rejects_bad_input() {
        assert_eq!(
            RssSpec::new(vec![0; 40], HashFields::FourTuple, vec![]),
            Err(RssError::EmptyIndirection)
        );
        assert!(matches!(
            RssSpec::new(vec![0; 12], HashFields::FourTuple, vec![0]),
            Err(RssError::KeyTooShort { need: 16, .. })
        ));
        assert!(matches!(
            engineered_key(Side::Outside, 0, 9, 8, 40),
            Err(RssError::TooManyBits { .. })
        ));
        assert_eq!(
            HashFields::from_ethtool_flags("sdfn"),
            Some(HashFields::FourTuple)
        );
        assert_eq!(
            HashFields::from_ethtool_flags("dn"),
            Some(HashFields::DstAddrPort)
        );
        assert_eq!(HashFields::from_ethtool_flags("x"), None);
    }

    #[test]
    fn engineered_keys_clear_exactly_the_documented_bits() {
        for (side, k, n) in [
            (Side::Outside, 2, 8),
            (Side::Outside, 7, 6),
            (Side::Inside, 4, 0),
        ] {
            let key = engineered_key(side, 99, k, n, 52).unwrap();
            assert_eq!(key.len(), 52);
            for (lo, hi) in zeroed_key_bits(side, k, n) {
                assert!((lo..=hi).all(|b| !toeplitz::key_bit(&key, b)));
            }
            assert!(toeplitz::key_bit(&key, pivot_key_bit(side, k, n)));
            // Outside the zeroed windows the key is not degenerate.
            let ones: u32 = key.iter().map(|b| b.count_ones()).sum();
            assert!(ones > 100, "{ones} bits set");
        }
        // Different seeds, different keys; same seed, same key.
        let a = engineered_key(Side::Outside, 1, 2, 8, 40).unwrap();
        assert_eq!(a, engineered_key(Side::Outside, 1, 2, 8, 40).unwrap());
        assert_ne!(a, engineered_key(Side::Outside, 2, 2, 8, 40).unwrap());
        assert_ne!(a, engineered_key(Side::Inside, 1, 2, 8, 40).unwrap());
    }

    #[test]
    fn engineered_outside_key_is_aligned_and_a_plain_key_is_not() {
        for (workers, table) in [(2, 128), (4, 256), (8, 512), (16, 128), (6, 128), (3, 256)] {
            let spec = outside_spec(
                workers,
                table,
                8.min(16 - outside_probe_bits(workers, table)),
                40,
            );
            assert!(spec.is_outside_aligned(), "{workers}/{table}");
            assert!(spec.block_bits() >= 8.min(16 - spec.queue_bits()));
            let plain = RssSpec {
                key: MICROSOFT_KEY.to_vec(),
                ..spec.clone()
            };
            assert!(!plain.is_outside_aligned());
            assert!(!plain.is_inside_aligned());
        }
    }

    fn outside_probe_bits(workers: u16, table: usize) -> u32 {
        RssSpec::equal(vec![0; 40], HashFields::FourTuple, table, workers)
            .unwrap()
            .queue_bits()
    }

    #[test]
    fn one_key_cannot_serve_both_sides() {
        // The outside key, used inside, ignores the subscriber: every subscriber on one queue.
        let outside = outside_spec(4, 128, 8, 40);
        let on_inside = outside.clone();
        assert!(!on_inside.depends_on(Field::SrcIp));
        let queues: std::collections::HashSet<u16> = (0..1024u32)
            .map(|i| {
                subscriber_queue(
                    &on_inside,
                    Ipv4Addr::from(0x6440_0000 + i),
                    Ipv4Addr::new(8, 8, 8, 8),
                    5000,
                    53,
                )
            })
            .collect();
        assert_eq!(queues.len(), 1);
        // The inside key, used outside, depends on the remote.
        let inside = inside_spec(4, 128);
        assert!(inside.depends_on(Field::SrcIp));
        assert!(!inside.is_outside_aligned());
        // In general: any key that makes the outside remote-independent for k queue bits
        // makes the source address irrelevant for the same k bits — the same key bits.
        let mut rng = SplitMix64::new(3);
        for _ in 0..200 {
            let mut key: Vec<u8> = (0..40).map(|_| rng.next_u64() as u8).collect();
            for (lo, hi) in zeroed_key_bits(Side::Outside, 2, 0) {
                (lo..=hi).for_each(|b| toeplitz::set_key_bit(&mut key, b, false));
            }
            let spec = RssSpec::equal(key, HashFields::FourTuple, 128, 4).unwrap();
            assert!(spec.is_outside_aligned() && !spec.depends_on(Field::SrcIp));
        }
    }

    #[test]
    fn aligned_blocks_share_a_queue_and_every_run_is_exactly_balanced() {
        for (workers, n) in [(2u16, 8u32), (4, 6), (8, 8), (16, 4)] {
            let spec = outside_spec(workers, 128, n, 40);
            let k = spec.queue_bits();
            let remote = (Ipv4Addr::new(198, 51, 100, 7), 443);
            for ip in pool() {
                for block in (0..=u16::MAX as u32).step_by(1 << n) {
                    let q0 = owner_of_public(&spec, ip, block as u16, remote.0, remote.1);
                    for p in block..block + (1 << n) {
                        assert_eq!(owner_of_public(&spec, ip, p as u16, remote.0, remote.1), q0);
                    }
                }
                // Every aligned run of 2^(n+k) ports gives each queue exactly 2^n ports.
                for run in (0..=u16::MAX as u32).step_by(1 << (n + k)) {
                    let mut count = vec![0u32; workers as usize];
                    for p in run..run + (1 << (n + k)) {
                        count[owner_of_public(&spec, ip, p as u16, remote.0, remote.1) as usize] +=
                            1;
                    }
                    assert!(count.iter().all(|c| *c == 1 << n), "{count:?}");
                }
            }
        }
    }

    fn assert_balanced(counts: &[usize], tolerance: f64, what: &str) {
        let total: usize = counts.iter().sum();
        let even = total as f64 / counts.len() as f64;
        for c in counts {
            let dev = (*c as f64 - even).abs() / even;
            assert!(dev <= tolerance, "{what}: {counts:?} deviates {dev:.3}");
        }
    }

    #[test]
    fn pool_ports_and_subscribers_spread_evenly() {
        for workers in [2u16, 3, 4, 6, 8, 16] {
            for table in [128usize, 256, 512] {
                let k = outside_probe_bits(workers, table);
                let n = 8.min(16 - k);
                let outside = outside_spec(workers, table, n, 40);
                let parts = partitions(&outside, &pool(), 1024, 65535, workers).unwrap();
                let counts: Vec<usize> = parts.iter().map(|p| p.port_count()).collect();
                assert_eq!(counts.iter().sum::<usize>(), 8 * 64512);
                assert_balanced(&counts, 0.10, &format!("outside {workers}/{table}"));

                let inside = inside_spec(workers, table);
                let mut counts = vec![0usize; workers as usize];
                for i in 0..4096u32 {
                    let sub = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i);
                    counts[subscriber_queue(&inside, sub, Ipv4Addr::new(1, 1, 1, 1), 40000, 443)
                        as usize] += 1;
                }
                assert_balanced(&counts, 0.10, &format!("inside {workers}/{table}"));
            }
        }
    }

    #[test]
    fn fifty_two_byte_keys_work_the_same() {
        let spec = outside_spec(4, 512, 8, 52);
        assert!(spec.is_outside_aligned());
        let parts = partitions(&spec, &pool(), 1024, 65535, 4).unwrap();
        assert!(parts.iter().all(|p| p.port_count() == 8 * 64512 / 4));
    }

    #[test]
    fn partitions_refuse_a_key_that_is_not_engineered() {
        let plain = RssSpec::equal(MICROSOFT_KEY.to_vec(), HashFields::FourTuple, 128, 4).unwrap();
        let err = partitions(&plain, &pool(), 1024, 65535, 4).unwrap_err();
        assert!(matches!(
            err,
            RssError::NotAligned {
                what: "address",
                ..
            }
        ));
        assert!(err.to_string().contains("handoff rings"), "{err}");
        let two = RssSpec {
            fields: HashFields::Addresses,
            ..plain.clone()
        };
        assert!(partitions(&two, &pool(), 1024, 65535, 4).is_err());
        // Destination-only hashing needs no engineering.
        let dn = RssSpec {
            fields: HashFields::DstAddrPort,
            ..plain.clone()
        };
        let parts = partitions(&dn, &pool(), 1024, 2047, 4).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.port_count()).sum::<usize>(),
            8 * 1024
        );
        // Table pointing past the workers; no workers; empty range.
        assert_eq!(
            partitions(&plain, &pool(), 1024, 2047, 2).unwrap_err(),
            RssError::QueueOutOfRange {
                queue: 2,
                workers: 2
            }
        );
        assert_eq!(
            partitions(&plain, &pool(), 1024, 2047, 0).unwrap_err(),
            RssError::NoWorkers
        );
        let outside = outside_spec(4, 128, 8, 40);
        assert!(matches!(
            partitions(&outside, &pool(), 2000, 1000, 4),
            Err(RssError::EmptyPortRange { .. })
        ));
    }

    #[test]
    fn address_only_packets_follow_the_public_address_outside_and_the_subscriber_inside() {
        let outside = RssSpec {
            fields: HashFields::Addresses,
            ..outside_spec(4, 128, 8, 40)
        };
        assert!(outside.is_outside_aligned());
        let inside = RssSpec {
            fields: HashFields::Addresses,
            ..inside_spec(4, 128)
        };
        assert!(inside.is_inside_aligned() && inside.depends_on(Field::SrcIp));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_port_of_worker_k_returns_on_queue_k(
            seed in any::<u64>(),
            workers in prop::sample::select(vec![1u16, 2, 3, 4, 5, 8, 12, 16]),
            table in prop::sample::select(vec![64usize, 128, 256, 512]),
            remotes in prop::collection::vec((any::<u32>(), any::<u16>()), 16),
        ) {
            let k = outside_probe_bits(workers, table);
            let n = 6.min(16 - k);
            let key = engineered_key(Side::Outside, seed, k, n, 40).unwrap();
            let spec = RssSpec::equal(key, HashFields::FourTuple, table, workers).unwrap();
            let pool = [Ipv4Addr::new(203, 0, 113, 9), Ipv4Addr::new(198, 18, 7, 200)];
            let parts = partitions(&spec, &pool, 1024, 65535, workers).unwrap();
            for (w, part) in parts.iter().enumerate() {
                for (ip, ports) in part.addrs() {
                    for (i, port) in ports.iter().enumerate().filter(|(i, _)| i % 61 == 0) {
                        let (r, rp) = remotes[i % remotes.len()];
                        prop_assert_eq!(owner_of_public(&spec, ip, port, Ipv4Addr::from(r), rp) as usize, w);
                    }
                }
            }
        }

        #[test]
        fn remotes_never_move_a_public_port(
            seed in any::<u64>(), ip in any::<u32>(), port in any::<u16>(),
            r1 in any::<u32>(), p1 in any::<u16>(), r2 in any::<u32>(), p2 in any::<u16>(),
        ) {
            let key = engineered_key(Side::Outside, seed, 3, 8, 40).unwrap();
            let spec = RssSpec::equal(key, HashFields::FourTuple, 256, 8).unwrap();
            let ip = Ipv4Addr::from(ip);
            prop_assert_eq!(
                owner_of_public(&spec, ip, port, r1.into(), p1),
                owner_of_public(&spec, ip, port, r2.into(), p2)
            );
        }

        #[test]
        fn inside_queue_ignores_remote_and_ports(
            seed in any::<u64>(), sub in any::<u32>(),
            r1 in any::<u32>(), s1 in any::<u16>(), d1 in any::<u16>(),
            r2 in any::<u32>(), s2 in any::<u16>(), d2 in any::<u16>(),
        ) {
            let key = engineered_key(Side::Inside, seed, 7, 0, 40).unwrap();
            let spec = RssSpec::equal(key, HashFields::FourTuple, 128, 6).unwrap();
            let sub = Ipv4Addr::from(sub);
            prop_assert_eq!(
                subscriber_queue(&spec, sub, r1.into(), s1, d1),
                subscriber_queue(&spec, sub, r2.into(), s2, d2)
            );
        }
    }
}
