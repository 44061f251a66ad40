//! A block: thousands of records of one worker, stored column by column, delta-encoded and
//! compressed, behind a fixed header that a reader can check and skip on without
//! decompressing. Layout: docs/mapping-log.md, "Blocks".
//!
//! Integrity has two layers: CRC32C of header and payload catches accidents (torn writes,
//! bit rot) cheaply; the BLAKE3 chain (each header holds the hash of the previous block)
//! makes any alteration, removal or reordering detectable by `tracenat log verify`.

use super::record::{Record, RecordKind};

pub const BLOCK_MAGIC: [u8; 4] = *b"TNLB";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 144;
pub type Hash = [u8; 32];

/// How a payload is compressed (docs/mapping-log.md, "Compression").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    None = 0,
    Lz4 = 1,
    Zstd = 2,
}

impl Codec {
    fn from_code(code: u8) -> Option<Codec> {
        match code {
            0 => Some(Codec::None),
            1 => Some(Codec::Lz4),
            2 => Some(Codec::Zstd),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Header flag bits.
pub mod flags {
    /// The block holds the checkpoint written when its segment opened.
    pub const CHECKPOINT: u8 = 1;
    /// The host clock was not synchronised when the block was written.
    pub const CLOCK_UNSYNCHRONISED: u8 = 2;
    /// The payload ends with the activity column: each session end's last activity. Blocks
    /// written before the log kept it lack the column; their ends' activity is unknown.
    pub const ACTIVITY: u8 = 4;
    /// The payload holds identity records (docs/mapping-log.md §5.2), not mappings: the
    /// blocks of the identity chain.
    pub const IDENTITY: u8 = 8;
    /// The payload ends with the extra column: how many refusals each refusal record stands
    /// for, and how far each clock step went. In blocks written before the column existed,
    /// each refusal stands for one (and there are no clock steps).
    pub const EXTRA: u8 = 16;
}

/// Everything a reader learns from a block without decompressing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub codec: Codec,
    pub flags: u8,
    pub worker: u16,
    /// Length of the endpoint filter after the payload, in 8-byte words.
    pub filter_words: u16,
    pub count: u32,
    /// Position of the block in its worker's chain, counting from 0, across segments.
    pub sequence: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub payload_len: u32,
    pub raw_len: u32,
    pub clock_max_error_us: u32,
    pub clock_est_error_us: u32,
    /// Smallest and largest (public address << 16 | public port) among the records (a
    /// block record counts with its first port).
    pub key_min: u64,
    pub key_max: u64,
    /// Bit `h(public address) % 256` set for every public address in the block.
    pub address_filter: [u8; 32],
    pub prev_hash: Hash,
    pub payload_crc: u32,
}

impl BlockHeader {
    pub fn is_checkpoint(&self) -> bool {
        self.flags & flags::CHECKPOINT != 0
    }
    pub fn clock_synchronised(&self) -> bool {
        self.flags & flags::CLOCK_UNSYNCHRONISED == 0
    }
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize + self.filter_len()
    }
    pub fn filter_len(&self) -> usize {
        self.filter_words as usize * 8
    }
    /// False only if no record of the block can have this public address.
    pub fn may_hold_address(&self, ip: u32) -> bool {
        let bit = address_bit(ip);
        let in_range = (self.key_min >> 16) as u32 <= ip && ip <= (self.key_max >> 16) as u32;
        in_range && self.address_filter[bit / 8] & (1 << (bit % 8)) != 0
    }
    /// False only if no record of the block can be in `[from, to]`.
    pub fn may_overlap(&self, from_ns: u64, to_ns: u64) -> bool {
        self.first_ts_ns <= to_ns && self.last_ts_ns >= from_ns
    }

    /// The header as stored, CRC included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut [u8]) {
        let mut w = Cursor { buf: out, pos: 0 };
        w.put(&BLOCK_MAGIC);
        w.put(&FORMAT_VERSION.to_le_bytes());
        w.put(&[self.codec as u8, self.flags]);
        w.put(&self.worker.to_le_bytes());
        w.put(&self.filter_words.to_le_bytes());
        w.put(&self.count.to_le_bytes());
        w.put(&self.sequence.to_le_bytes());
        w.put(&self.first_ts_ns.to_le_bytes());
        w.put(&self.last_ts_ns.to_le_bytes());
        w.put(&self.payload_len.to_le_bytes());
        w.put(&self.raw_len.to_le_bytes());
        w.put(&self.clock_max_error_us.to_le_bytes());
        w.put(&self.clock_est_error_us.to_le_bytes());
        w.put(&self.key_min.to_le_bytes());
        w.put(&self.key_max.to_le_bytes());
        w.put(&self.address_filter);
        w.put(&self.prev_hash);
        w.put(&self.payload_crc.to_le_bytes());
        debug_assert_eq!(w.pos, HEADER_LEN - 4);
        let crc = crc32c::crc32c(&w.buf[..HEADER_LEN - 4]);
        w.put(&crc.to_le_bytes());
    }

    /// Reads and checks a header: magic, version, header CRC, known codec.
    pub fn parse(bytes: &[u8]) -> Result<BlockHeader, BlockError> {
        if bytes.len() < HEADER_LEN {
            return Err(BlockError::Truncated);
        }
        if bytes[..4] != BLOCK_MAGIC {
            return Err(BlockError::BadMagic);
        }
        let stored_crc = u32::from_le_bytes(bytes[HEADER_LEN - 4..HEADER_LEN].try_into().unwrap());
        if crc32c::crc32c(&bytes[..HEADER_LEN - 4]) != stored_crc {
            return Err(BlockError::HeaderCrc);
        }
        let mut r = Reader {
            buf: &bytes[..HEADER_LEN],
            pos: 4,
        };
        let version = r.u16();
        if version != FORMAT_VERSION {
            return Err(BlockError::Version(version));
        }
        let codec = Codec::from_code(r.u8()).ok_or(BlockError::Corrupt("unknown codec"))?;
        let flags = r.u8();
        let worker = r.u16();
        let filter_words = r.u16();
        Ok(BlockHeader {
            codec,
            flags,
            worker,
            filter_words,
            count: r.u32(),
            sequence: r.u64(),
            first_ts_ns: r.u64(),
            last_ts_ns: r.u64(),
            payload_len: r.u32(),
            raw_len: r.u32(),
            clock_max_error_us: r.u32(),
            clock_est_error_us: r.u32(),
            key_min: r.u64(),
            key_max: r.u64(),
            address_filter: r.array(),
            prev_hash: r.array(),
            payload_crc: r.u32(),
        })
    }
}

/// Why a block cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("truncated")]
    Truncated,
    #[error("no block magic")]
    BadMagic,
    #[error("header CRC mismatch")]
    HeaderCrc,
    #[error("payload CRC mismatch")]
    PayloadCrc,
    #[error("unsupported format version {0}")]
    Version(u16),
    #[error("corrupt payload: {0}")]
    Corrupt(&'static str),
}

/// Where a block sits in its chain and what the writer knows about the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockContext {
    pub worker: u16,
    pub sequence: u64,
    pub prev_hash: Hash,
    pub checkpoint: bool,
    pub clock: crate::maplog::clock::ClockState,
}

/// An encoded block ready to be appended, with its hash (the next block's `prev_hash`).
pub struct EncodedBlock {
    pub bytes: Vec<u8>,
    pub header: BlockHeader,
    pub hash: Hash,
}

/// Encodes records (in the order given) into a block. Reuses `scratch` between calls.
pub fn encode(
    records: &[Record],
    ctx: &BlockContext,
    codec: Codec,
    scratch: &mut Vec<u8>,
) -> EncodedBlock {
    scratch.clear();
    encode_columns(records, scratch);
    let keys = records.iter().filter(|r| r.public_ip != 0).map(|r| {
        let port = if r.kind.has_block() {
            r.block_first
        } else {
            r.public_port
        };
        (r.public_ip, port)
    });
    let (key_min, key_max, address_filter) = summarise(keys);
    let summary = Summary {
        count: records.len() as u32,
        first_ts_ns: records.iter().map(|r| r.ts_ns).min().unwrap_or(0),
        last_ts_ns: records.iter().map(|r| r.ts_ns).max().unwrap_or(0),
        key_min,
        key_max,
        address_filter,
    };
    let columns = flags::ACTIVITY | flags::EXTRA;
    seal(scratch, &summary, columns, ctx, codec, |bytes| {
        EndpointFilter::build(records, bytes)
    })
}

/// What a block's header says about its records, so they can be skipped undecoded.
pub(crate) struct Summary {
    pub count: u32,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub key_min: u64,
    pub key_max: u64,
    pub address_filter: [u8; 32],
}

/// Compresses an encoded payload and puts the header (with `content_flags` and the chain
/// context's), the payload and whatever `add_filter` appends (returning its length in
/// 8-byte words) together as one block. Every kind of payload is sealed the same way.
pub(crate) fn seal(
    raw: &[u8],
    summary: &Summary,
    content_flags: u8,
    ctx: &BlockContext,
    codec: Codec,
    add_filter: impl FnOnce(&mut Vec<u8>) -> u16,
) -> EncodedBlock {
    let mut bytes = vec![0u8; HEADER_LEN];
    compress(codec, raw, &mut bytes);
    let payload_len = bytes.len() - HEADER_LEN;
    let filter_words = add_filter(&mut bytes);
    let payload = &bytes[HEADER_LEN..];
    let mut flags = content_flags;
    if ctx.checkpoint {
        flags |= flags::CHECKPOINT;
    }
    if !ctx.clock.synchronised {
        flags |= flags::CLOCK_UNSYNCHRONISED;
    }
    let header = BlockHeader {
        codec,
        flags,
        worker: ctx.worker,
        count: summary.count,
        sequence: ctx.sequence,
        first_ts_ns: summary.first_ts_ns,
        last_ts_ns: summary.last_ts_ns,
        payload_len: payload_len as u32,
        filter_words,
        raw_len: raw.len() as u32,
        clock_max_error_us: ctx.clock.max_error_us,
        clock_est_error_us: ctx.clock.est_error_us,
        key_min: summary.key_min,
        key_max: summary.key_max,
        address_filter: summary.address_filter,
        prev_hash: ctx.prev_hash,
        payload_crc: crc32c::crc32c(payload),
    };
    header.write(&mut bytes[..HEADER_LEN]);
    let hash = *blake3::hash(&bytes).as_bytes();
    EncodedBlock {
        bytes,
        header,
        hash,
    }
}

/// The hash that chains a block to the next one: BLAKE3 of its header and payload.
pub fn block_hash(block_bytes: &[u8]) -> Hash {
    *blake3::hash(block_bytes).as_bytes()
}

/// Checks the payload CRC and decodes the records of a whole block (`bytes` starts at the
/// header and holds at least `header.total_len()` bytes).
pub fn decode(header: &BlockHeader, bytes: &[u8], out: &mut Vec<Record>) -> Result<(), BlockError> {
    if header.flags & flags::IDENTITY != 0 {
        return Err(BlockError::Corrupt(
            "an identity block where mappings were expected",
        ));
    }
    let raw = payload(header, bytes)?;
    decode_columns(
        &raw,
        header.count as usize,
        header.first_ts_ns,
        header.flags,
        out,
    )
}

/// Checks the payload CRC (which covers the endpoint filter too) and returns the payload
/// decompressed.
pub(crate) fn payload(header: &BlockHeader, bytes: &[u8]) -> Result<Vec<u8>, BlockError> {
    let covered = bytes
        .get(HEADER_LEN..header.total_len())
        .ok_or(BlockError::Truncated)?;
    if crc32c::crc32c(covered) != header.payload_crc {
        return Err(BlockError::PayloadCrc);
    }
    decompress(header, &covered[..header.payload_len as usize])
}

/// A Bloom filter over the public endpoints of a block's records, stored after the payload
/// (CRC and hash cover it), so a point query decompresses only the blocks that may hold
/// its endpoint. Sessions count by (address, port); port blocks by address alone, since a
/// question's port may lie anywhere in a block's range. 12 bits and 6 probes per record:
/// about 0.4 % false positives for 1.5 bytes per record.
pub struct EndpointFilter<'a> {
    words: &'a [u8],
}

const FILTER_BITS_PER_RECORD: usize = 12;
const FILTER_PROBES: u64 = 6;
/// Marks a port-block key (no port) apart from any (address, port) key.
const BLOCK_KEY: u64 = 1 << 48;

impl<'a> EndpointFilter<'a> {
    /// The filter of a block (`bytes` holds the whole block).
    pub fn of(header: &BlockHeader, bytes: &'a [u8]) -> Option<EndpointFilter<'a>> {
        let start = HEADER_LEN + header.payload_len as usize;
        let words = bytes.get(start..start + header.filter_len())?;
        (!words.is_empty()).then_some(EndpointFilter { words })
    }

    pub fn key_of(r: &Record) -> Option<u64> {
        if r.public_ip == 0 {
            return None;
        }
        Some(if r.kind.has_block() {
            BLOCK_KEY | r.public_ip as u64
        } else {
            (r.public_ip as u64) << 16 | r.public_port as u64
        })
    }

    /// False only if no session record of the block has this endpoint.
    pub fn may_hold_endpoint(&self, ip: u32, port: u16) -> bool {
        self.contains((ip as u64) << 16 | port as u64)
    }

    /// False only if no port-block record of the block has this address.
    pub fn may_hold_block_of(&self, ip: u32) -> bool {
        self.contains(BLOCK_KEY | ip as u64)
    }

    fn contains(&self, key: u64) -> bool {
        let bits = self.words.len() as u64 * 8;
        probes(key, bits).all(|bit| self.words[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// Appends the filter of `records` to `out`; returns its length in words.
    fn build(records: &[Record], out: &mut Vec<u8>) -> u16 {
        let words = (records.len() * FILTER_BITS_PER_RECORD)
            .div_ceil(64)
            .min(u16::MAX as usize);
        let start = out.len();
        out.resize(start + words * 8, 0);
        let filter = &mut out[start..];
        let bits = words as u64 * 64;
        for key in records.iter().filter_map(EndpointFilter::key_of) {
            for bit in probes(key, bits) {
                filter[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        words as u16
    }
}

/// The filter bits of `key` (double hashing over a SplitMix64-style finaliser).
fn probes(key: u64, bits: u64) -> impl Iterator<Item = u64> {
    let mut h = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    let (h1, h2) = (h & 0xFFFF_FFFF, (h >> 32) | 1);
    (0..FILTER_PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits.max(1))
}

fn address_bit(ip: u32) -> usize {
    // Multiplicative hash: spreads consecutive pool addresses over the 256 bits.
    (ip.wrapping_mul(0x9E37_79B1) >> 24) as usize
}

/// Key range and address filter over `(address, port)` keys (§4.5).
pub(crate) fn summarise(keys: impl Iterator<Item = (u32, u16)>) -> (u64, u64, [u8; 32]) {
    let mut filter = [0u8; 32];
    let (mut min, mut max) = (u64::MAX, 0u64);
    for (ip, port) in keys {
        let key = (ip as u64) << 16 | port as u64;
        min = min.min(key);
        max = max.max(key);
        let bit = address_bit(ip);
        filter[bit / 8] |= 1 << (bit % 8);
    }
    if min > max {
        (0, 0, filter)
    } else {
        (min, max, filter)
    }
}

fn compress(codec: Codec, raw: &[u8], out: &mut Vec<u8>) {
    match codec {
        Codec::None => out.extend_from_slice(raw),
        Codec::Lz4 => out.extend_from_slice(&lz4_flex::block::compress(raw)),
        Codec::Zstd => {
            // Level 3 (zstd's default): measured in benches/maplog.rs against 1 and lz4.
            let compressed = zstd::bulk::compress(raw, 3).expect("zstd compression of a buffer");
            out.extend_from_slice(&compressed);
        }
    }
}

fn decompress(header: &BlockHeader, payload: &[u8]) -> Result<Vec<u8>, BlockError> {
    let raw_len = header.raw_len as usize;
    // A corrupt header cannot make us allocate absurd amounts: bound by a block's maximum.
    if raw_len > MAX_RAW_LEN {
        return Err(BlockError::Corrupt("raw length too large"));
    }
    let raw = match header.codec {
        Codec::None => payload.to_vec(),
        Codec::Lz4 => lz4_flex::block::decompress(payload, raw_len)
            .map_err(|_| BlockError::Corrupt("lz4 stream"))?,
        Codec::Zstd => zstd::bulk::decompress(payload, raw_len)
            .map_err(|_| BlockError::Corrupt("zstd stream"))?,
    };
    if raw.len() != raw_len {
        return Err(BlockError::Corrupt("raw length mismatch"));
    }
    Ok(raw)
}

/// Upper bound of a block's uncompressed payload (records per block × widest record).
pub const MAX_RECORDS: usize = 1 << 16;
const MAX_RAW_LEN: usize = MAX_RECORDS * 48;

// ---------------------------------------------------------------------------
// Columns. Each column holds one field of every record; wide fields are split into byte
// planes (all first bytes, then all second bytes, …) so the compressor sees long runs of
// the slowly changing high bytes. Timestamps are zigzag varint deltas.

/// Column order in the payload (docs/mapping-log.md, "Payload").
const PLANES: [(Field, usize); 7] = [
    (Field::InsideIp, 4),
    (Field::InsidePort, 2),
    (Field::PublicIp, 4),
    (Field::PublicPort, 2),
    (Field::DestIp, 4),
    (Field::DestPort, 2),
    (Field::Protocol, 1),
];

#[derive(Clone, Copy)]
enum Field {
    InsideIp,
    InsidePort,
    PublicIp,
    PublicPort,
    DestIp,
    DestPort,
    Protocol,
}

impl Field {
    fn get(self, r: &Record) -> u32 {
        match self {
            Field::InsideIp => r.inside_ip,
            Field::InsidePort => r.inside_port as u32,
            Field::PublicIp => r.public_ip,
            Field::PublicPort => r.public_port as u32,
            Field::DestIp => r.dest_ip,
            Field::DestPort => r.dest_port as u32,
            Field::Protocol => r.protocol as u32,
        }
    }
    fn set(self, r: &mut Record, v: u32) {
        match self {
            Field::InsideIp => r.inside_ip = v,
            Field::InsidePort => r.inside_port = v as u16,
            Field::PublicIp => r.public_ip = v,
            Field::PublicPort => r.public_port = v as u16,
            Field::DestIp => r.dest_ip = v,
            Field::DestPort => r.dest_port = v as u16,
            Field::Protocol => r.protocol = v as u8,
        }
    }
}

fn encode_columns(records: &[Record], out: &mut Vec<u8>) {
    out.extend(records.iter().map(|r| r.kind as u8));
    let mut prev = records.iter().map(|r| r.ts_ns).min().unwrap_or(0);
    for r in records {
        put_varint(out, zigzag(r.ts_ns.wrapping_sub(prev) as i64));
        prev = r.ts_ns;
    }
    for (field, width) in PLANES {
        for plane in (0..width).rev() {
            out.extend(records.iter().map(|r| (field.get(r) >> (plane * 8)) as u8));
        }
    }
    // Only the records that have them: port ranges and open-session counts.
    for r in records.iter().filter(|r| r.kind.has_block()) {
        out.extend_from_slice(&r.block_first.to_be_bytes());
        out.extend_from_slice(&r.block_last.to_be_bytes());
    }
    for r in records.iter().filter(|r| r.kind == RecordKind::LiveMapping) {
        put_varint(out, r.open_sessions as u64);
    }
    for r in records.iter().filter(|r| r.kind.is_session_end()) {
        put_varint(out, idle_code(r));
    }
    for r in records
        .iter()
        .filter(|r| r.kind.is_refusal() || r.kind == RecordKind::ClockStep)
    {
        let v = if r.kind == RecordKind::ClockStep {
            zigzag(r.last_active_ns.wrapping_sub(r.ts_ns) as i64)
        } else {
            u64::from(r.refused)
        };
        put_varint(out, v);
    }
}

/// A session end's idle time (end − last activity) in whole milliseconds, plus one; 0 when
/// the activity is unknown. Rounding down moves the activity later, never earlier.
fn idle_code(r: &Record) -> u64 {
    match r.ts_ns.checked_sub(r.last_active_ns) {
        Some(idle) if r.last_active_ns != 0 => idle / NS_PER_MS + 1,
        _ => 0,
    }
}

const NS_PER_MS: u64 = 1_000_000;

fn decode_columns(
    raw: &[u8],
    count: usize,
    first_ts: u64,
    flags: u8,
    out: &mut Vec<Record>,
) -> Result<(), BlockError> {
    if count > MAX_RECORDS {
        return Err(BlockError::Corrupt("record count too large"));
    }
    let start = out.len();
    let mut r = Reader { buf: raw, pos: 0 };
    let kinds = r.take(count)?;
    let mut ts = first_ts;
    for &code in kinds {
        let kind = RecordKind::from_code(code).ok_or(BlockError::Corrupt("unknown record kind"))?;
        ts = ts.wrapping_add(unzigzag(r.varint()?) as u64);
        out.push(Record::new(kind, ts));
    }
    let records = &mut out[start..];
    for (field, width) in PLANES {
        for plane in (0..width).rev() {
            let bytes = r.take(count)?;
            for (rec, &b) in records.iter_mut().zip(bytes) {
                let v = field.get(rec) | (b as u32) << (plane * 8);
                field.set(rec, v);
            }
        }
    }
    for rec in records.iter_mut().filter(|r| r.kind.has_block()) {
        let b = r.take(4)?;
        rec.block_first = u16::from_be_bytes([b[0], b[1]]);
        rec.block_last = u16::from_be_bytes([b[2], b[3]]);
    }
    for rec in records
        .iter_mut()
        .filter(|r| r.kind == RecordKind::LiveMapping)
    {
        rec.open_sessions =
            u32::try_from(r.varint()?).map_err(|_| BlockError::Corrupt("session count"))?;
    }
    if flags & flags::ACTIVITY != 0 {
        for rec in records.iter_mut().filter(|r| r.kind.is_session_end()) {
            rec.last_active_ns = match r.varint()? {
                0 => 0,
                code => (code - 1)
                    .checked_mul(NS_PER_MS)
                    .and_then(|idle| rec.ts_ns.checked_sub(idle))
                    .ok_or(BlockError::Corrupt("activity before the epoch"))?,
            };
        }
    }
    let extra = records
        .iter_mut()
        .filter(|r| r.kind.is_refusal() || r.kind == RecordKind::ClockStep);
    if flags & flags::EXTRA != 0 {
        for rec in extra {
            let v = r.varint()?;
            if rec.kind == RecordKind::ClockStep {
                // The wall clock just before the step.
                rec.last_active_ns = rec.ts_ns.wrapping_add(unzigzag(v) as u64);
            } else {
                rec.refused = u32::try_from(v).map_err(|_| BlockError::Corrupt("refusal count"))?;
            }
        }
    } else {
        for rec in extra {
            if rec.kind == RecordKind::ClockStep {
                return Err(BlockError::Corrupt("a clock step without the extra column"));
            }
            rec.refused = 1;
        }
    }
    if r.pos != raw.len() {
        return Err(BlockError::Corrupt("trailing bytes"));
    }
    Ok(())
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

/// Bounds-checked little-endian reads over a byte slice.
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], BlockError> {
        let end = self.pos.checked_add(n).ok_or(BlockError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(BlockError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }
    pub fn varint(&mut self) -> Result<u64, BlockError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(BlockError::Truncated)?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BlockError::Corrupt("varint too long"))
    }
    // Fixed-width reads for headers whose length was checked up front.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let a = self.buf[self.pos..self.pos + N].try_into().unwrap();
        self.pos += N;
        a
    }
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

#[cfg(test)]
mod tests;
