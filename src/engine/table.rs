//! A bucketised open-addressing hash index of `u32` record numbers, built for the packet
//! path: one cache line per bucket, 12 one-byte tags compared at once, and a prefetch for
//! the bucket a key will need, so a batch can hide its DRAM misses (VPP's bihash and F14 work
//! the same way).
//!
//! The index stores no keys: the caller keeps its records in its own arrays and says, for a
//! candidate record number, whether it holds the key sought. A tag (8 bits of the hash)
//! rules out almost every non-matching slot before any record is read.
//!
//! A full bucket passes new entries to the next one (linear probing by buckets) and counts
//! them in its `overflow`; a lookup stops at the first bucket whose overflow is zero, so
//! misses stay short and removal needs no tombstones. The table is sized once, for the most
//! entries it can hold; it never grows, so the packet path never allocates.

use super::huge::HugeArray;

/// Slots per bucket: 12 tags + a 4-byte overflow count + 12 values = one 64-byte line.
const SLOTS: usize = 12;
/// Buckets are sized so that a table holding its stated capacity is at most this full.
const MAX_LOAD: f64 = 0.86;
const EMPTY: u8 = 0; // zero, so that zeroed memory is an empty table

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u8; SLOTS],
    /// Entries whose probe passed this bucket because it was full.
    overflow: u32,
    values: [u32; SLOTS],
}

impl Bucket {
    /// Bit i set when slot i holds `tag`: one SSE2 compare of the 16 bytes that hold the
    /// tags (the overflow count's 4 bytes masked off).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn matches(&self, tag: u8) -> u32 {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_load_si128, _mm_movemask_epi8, _mm_set1_epi8};
        // SAFETY: SSE2 is part of x86_64; a bucket is 64 bytes aligned to 64, so its first
        // 16 bytes are an aligned, readable 128-bit load.
        let equal = unsafe {
            let line = _mm_load_si128((self as *const Bucket).cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(line, _mm_set1_epi8(tag as i8)))
        };
        equal as u32 & ((1 << SLOTS) - 1)
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn matches(&self, tag: u8) -> u32 {
        self.matches_swar(tag)
    }

    /// [`Bucket::matches`] without SIMD: eight and four tags at a time in integer registers.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline]
    fn matches_swar(&self, tag: u8) -> u32 {
        let lo = u64::from_le_bytes(self.tags[..8].try_into().expect("8 tags"));
        let hi = u32::from_le_bytes(self.tags[8..].try_into().expect("4 tags"));
        zero_bytes_64(lo ^ (u64::from(tag) * 0x0101_0101_0101_0101))
            | zero_bytes_32(hi ^ (u32::from(tag) * 0x0101_0101)) << 8
    }
}

/// Bit i set when byte i of `x` is zero (exact: no borrow between bytes).
#[inline]
fn zero_bytes_64(x: u64) -> u32 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let high_bits = !(((x & LOW7) + LOW7) | x | LOW7);
    // Gather the eight byte-high bits into the low byte.
    ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

#[inline]
fn zero_bytes_32(x: u32) -> u32 {
    const LOW7: u32 = 0x7F7F_7F7F;
    let high_bits = !(((x & LOW7) + LOW7) | x | LOW7);
    (high_bits >> 7).wrapping_mul(0x1020_4080) >> 28
}

/// A keyed hash of two 64-bit words for the packet path: two folded multiplies (the 128-bit
/// product's halves XORed, foldhash's core) under keys drawn at random for each table set,
/// unknown outside the process, so that flows cannot be aimed at one bucket without
/// them — and no `Hasher` state machine.
#[derive(Clone, Copy)]
pub struct KeyedHash {
    keys: [u64; 3],
}

/// The keys stay out of logs and debug output.
impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash(..)")
    }
}

impl KeyedHash {
    /// Fresh random keys (from the standard library's randomly seeded SipHash).
    pub fn random() -> KeyedHash {
        use std::hash::BuildHasher;
        let seed = std::hash::RandomState::new();
        KeyedHash {
            keys: [0u64, 1, 2].map(|i| seed.hash_one(i)),
        }
    }

    #[inline(always)]
    pub fn hash(&self, a: u64, b: u64) -> u64 {
        let mixed = folded_multiply(a ^ self.keys[0], b ^ self.keys[1]);
        folded_multiply(mixed, self.keys[2] | 1)
    }
}

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    product as u64 ^ (product >> 64) as u64
}

/// Where a key lives: its home bucket and its tag, both from one 64-bit hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    home: u32,
    tag: u8,
}

pub struct TagTable {
    buckets: HugeArray<Bucket>,
    len: usize,
}

impl std::fmt::Debug for TagTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TagTable({} of {} buckets)",
            self.len,
            self.buckets.len()
        )
    }
}

/// The table could not take another entry (only when more than its capacity is inserted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl TagTable {
    /// A table for at most `capacity` entries.
    pub fn with_capacity(capacity: usize) -> TagTable {
        let buckets = ((capacity as f64 / (SLOTS as f64 * MAX_LOAD)).ceil() as usize).max(1);
        TagTable {
            // SAFETY: an all-zero bucket is an empty one (EMPTY tags, no overflow).
            buckets: unsafe { HugeArray::zeroed(buckets) },
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Backs the buckets with memory now (see [`HugeArray::commit`]).
    pub fn commit(&mut self) {
        self.buckets.commit();
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory the table holds (its own mapping, outside the heap).
    pub fn bytes(&self) -> usize {
        self.buckets.bytes()
    }

    /// The home bucket (from the low 32 bits, scaled to the bucket count without a
    /// division) and the tag (the top byte, never the empty marker).
    #[inline]
    pub fn slot(&self, hash: u64) -> Slot {
        let home = ((hash as u32 as u64 * self.buckets.len() as u64) >> 32) as u32;
        let tag = ((hash >> 56) as u8).max(1);
        Slot { home, tag }
    }

    /// Asks the CPU to start loading the bucket `slot` needs (a hint; no effect elsewhere).
    #[inline]
    pub fn prefetch(&self, slot: Slot) {
        prefetch_read(&self.buckets[slot.home as usize]);
    }

    /// Calls `f` with each value of `slot`'s home bucket whose tag matches: the records worth
    /// prefetching before the lookup proper (the bucket itself should be in cache by now).
    /// True when the key is surely absent: no tag matched and no entry ever passed the home
    /// bucket, so no lookup would look further.
    #[inline]
    pub fn for_each_candidate(&self, slot: Slot, mut f: impl FnMut(u32)) -> bool {
        let bucket = &self.buckets[slot.home as usize];
        let mut hits = bucket.matches(slot.tag);
        let absent = hits == 0 && bucket.overflow == 0;
        while hits != 0 {
            f(bucket.values[hits.trailing_zeros() as usize]);
            hits &= hits - 1;
        }
        absent
    }

    /// The value at `slot` for which `is_key(value)` holds.
    #[inline]
    pub fn find(&self, slot: Slot, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut b = slot.home as usize;
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            let mut hits = bucket.matches(slot.tag);
            while hits != 0 {
                let i = hits.trailing_zeros() as usize;
                if is_key(bucket.values[i]) {
                    return Some(bucket.values[i]);
                }
                hits &= hits - 1;
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// Overflow counts are raised only once a free slot is sure to exist.
    fn count_overflow(&mut self, from: usize, to: usize) {
        let mut b = from;
        while b != to {
            self.buckets[b].overflow += 1;
            b = self.next(b);
        }
    }

    /// Adds `value` at `slot`, counting it in the full buckets it passes. The caller
    /// ensures no entry with an equal key is present.
    pub fn insert(&mut self, slot: Slot, value: u32) -> Result<(), Full> {
        let mut b = slot.home as usize;
        for _ in 0..self.buckets.len() {
            let free = self.buckets[b].matches(EMPTY);
            if free != 0 {
                let i = free.trailing_zeros() as usize;
                self.count_overflow(slot.home as usize, b);
                let bucket = &mut self.buckets[b];
                bucket.tags[i] = slot.tag;
                bucket.values[i] = value;
                self.len += 1;
                return Ok(());
            }
            b = self.next(b);
        }
        Err(Full)
    }

    /// Removes the entry holding `value` at `slot`; false if there is none.
    pub fn remove(&mut self, slot: Slot, value: u32) -> bool {
        let mut b = slot.home as usize;
        for _ in 0..self.buckets.len() {
            let bucket = &mut self.buckets[b];
            let mut hits = bucket.matches(slot.tag);
            while hits != 0 {
                let i = hits.trailing_zeros() as usize;
                if bucket.values[i] == value {
                    bucket.tags[i] = EMPTY;
                    self.len -= 1;
                    self.uncount_overflow(slot.home as usize, b);
                    return true;
                }
                hits &= hits - 1;
            }
            if bucket.overflow == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }

    fn uncount_overflow(&mut self, from: usize, to: usize) {
        let mut b = from;
        while b != to {
            self.buckets[b].overflow -= 1;
            b = self.next(b);
        }
    }

    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }
}

#[inline]
fn prefetch_read<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is only a hint; the pointer comes from a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetch for records the table's values point at.
#[inline]
pub fn prefetch<T>(p: &T) {
    prefetch_read(p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
    }

    #[test]
    fn tag_matching_finds_exactly_the_equal_bytes() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..10_000 {
            let mut bucket: Bucket = unsafe { std::mem::zeroed() };
            for t in bucket.tags.iter_mut() {
                *t = (rng.next_u64() % 4) as u8;
            }
            let tag = (rng.next_u64() % 4) as u8;
            let expected = (0..SLOTS)
                .filter(|&i| bucket.tags[i] == tag)
                .fold(0, |m, i| m | 1 << i);
            bucket.overflow = rng.next_u64() as u32; // never mistaken for tags
            assert_eq!(bucket.matches(tag), expected, "{:?} {tag}", bucket.tags);
            assert_eq!(
                bucket.matches_swar(tag),
                expected,
                "{:?} {tag}",
                bucket.tags
            );
        }
    }

    /// Random inserts and removals against a model, in a table small enough that buckets
    /// overflow and probes wrap around the end.
    #[test]
    fn agrees_with_a_model_under_heavy_load() {
        let mut rng = SplitMix64::new(7);
        let capacity = 200;
        let mut table = TagTable::with_capacity(capacity);
        let mut model: Vec<(u64, u32)> = Vec::new();
        // Few distinct hashes: many shared homes and tags.
        let hash_of = |v: u32| (v as u64 % 37).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for step in 0..50_000u32 {
            let insert =
                model.len() < capacity && (model.is_empty() || rng.next_u64().is_multiple_of(2));
            if insert {
                let value = step;
                let h = hash_of(value);
                table.insert(table.slot(h), value).unwrap();
                model.push((h, value));
            } else {
                let i = (rng.next_u64() % model.len() as u64) as usize;
                let (h, value) = model.swap_remove(i);
                assert!(table.remove(table.slot(h), value));
                assert!(!table.remove(table.slot(h), value));
            }
            assert_eq!(table.len(), model.len());
            if step.is_multiple_of(97) {
                for &(h, value) in &model {
                    assert_eq!(table.find(table.slot(h), |v| v == value), Some(value));
                    let absent = table.for_each_candidate(table.slot(h), |_| {});
                    assert!(!absent, "a present key is never called surely absent");
                }
                assert_eq!(
                    table.find(table.slot(hash_of(step + 1)), |v| v == u32::MAX),
                    None
                );
            }
        }
        let overflowed = table.buckets.iter().filter(|b| b.overflow > 0).count();
        assert!(overflowed > 0, "the test must exercise overflow");
        for (h, value) in model.drain(..) {
            assert!(table.remove(table.slot(h), value));
        }
        assert!(table.is_empty());
        assert!(table.buckets.iter().all(|b| b.overflow == 0));
    }

    /// "Surely absent" is said of most keys not in a lightly loaded table, and of none in it
    /// (the model test above checks the latter under heavy load).
    #[test]
    fn keys_not_in_a_light_table_are_mostly_surely_absent() {
        let mut rng = SplitMix64::new(11);
        let mut table = TagTable::with_capacity(12_000);
        for v in 0..3_000u32 {
            table.insert(table.slot(rng.next_u64()), v).unwrap();
        }
        let absent = (0..10_000)
            .filter(|_| table.for_each_candidate(table.slot(rng.next_u64()), |_| {}))
            .count();
        assert!(
            absent > 9_000,
            "{absent} of 10 000 unknown keys called surely absent"
        );
    }

    #[test]
    fn a_full_table_refuses() {
        let mut table = TagTable::with_capacity(1);
        for v in 0..SLOTS as u32 {
            table.insert(table.slot(v as u64), v).unwrap();
        }
        assert_eq!(table.insert(table.slot(99), 99), Err(Full));
    }
}
