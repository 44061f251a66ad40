//! Segment files: a header, then blocks, then — once the segment is closed — an index of
//! its blocks and a trailer. An open segment (the one being written, or one cut short by a
//! crash) has no index; reading it walks the block headers instead. Layout:
//! docs/mapping-log.md, "Segments".

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::block::{self, BlockError, BlockHeader, HEADER_LEN, Hash, Reader};
use super::record::Record;

pub const SEGMENT_MAGIC: [u8; 8] = *b"TNLSEG01";
pub const SEGMENT_HEADER_LEN: usize = 64;
const INDEX_MAGIC: [u8; 4] = *b"TNLI";
const TRAILER_MAGIC: [u8; 8] = *b"TNLEND01";
const TRAILER_LEN: usize = 16;
/// Offset, then a copy of the block's header: opening a closed segment reads its index
/// alone, not one page per block scattered over the file.
const INDEX_ENTRY_LEN: usize = 8 + HEADER_LEN;

/// The first 64 bytes of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub worker: u16,
    /// Position of the segment among its worker's segments, from 0.
    pub sequence: u64,
    /// When the writer opened it (wall clock, or the first record's time in replay).
    pub created_ns: u64,
    /// Hash of the last block of the previous segment (zeros for the first): the chain
    /// continues across files.
    pub prev_hash: Hash,
}

impl SegmentHeader {
    pub fn to_bytes(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&block::FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&self.worker.to_le_bytes());
        b[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ns.to_le_bytes());
        b[32..64].copy_from_slice(&self.prev_hash);
        let crc = crc32c::crc32c(&b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn parse(bytes: &[u8]) -> Result<SegmentHeader, SegmentError> {
        let b = bytes
            .get(..SEGMENT_HEADER_LEN)
            .ok_or(SegmentError::BadHeader("shorter than a segment header"))?;
        if b[..8] != SEGMENT_MAGIC {
            return Err(SegmentError::BadHeader("no segment magic"));
        }
        let mut zeroed = [0u8; SEGMENT_HEADER_LEN];
        zeroed.copy_from_slice(b);
        zeroed[12..16].fill(0);
        let mut r = Reader { buf: b, pos: 8 };
        let version = r.u16();
        if version != block::FORMAT_VERSION {
            return Err(SegmentError::BadHeader("unsupported format version"));
        }
        let worker = r.u16();
        if crc32c::crc32c(&zeroed) != r.u32() {
            return Err(SegmentError::BadHeader("header CRC mismatch"));
        }
        Ok(SegmentHeader {
            worker,
            sequence: r.u64(),
            created_ns: r.u64(),
            prev_hash: r.array(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bad segment header: {0}")]
    BadHeader(&'static str),
    /// Shorter than a header, or nothing but zeros: the file was created but its header
    /// never reached the disk (a crash in the middle of a rotation). It holds nothing.
    #[error("{len}-byte segment file without a header (rotation interrupted by a crash)")]
    Empty { len: u64 },
}

/// A block found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub offset: usize,
    pub header: BlockHeader,
}

/// Bytes that are not a valid block, between two valid ones or at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: usize,
    pub len: usize,
    pub reason: String,
}

/// How the segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Closed by the writer: its index and trailer are present and consistent.
    Closed,
    /// Still being written, or cut short by a crash: blocks up to `valid_len` are whole;
    /// anything after is zero padding or a torn write.
    Open { valid_len: u64 },
}

/// A segment file mapped for reading.
pub struct Segment {
    pub path: PathBuf,
    map: Option<Mmap>,
    pub header: SegmentHeader,
    pub blocks: Vec<BlockRef>,
    pub tail: Tail,
    /// Regions that held no valid block (torn tail, corruption); blocks after a damaged
    /// region are still found by searching for the next valid header.
    pub damage: Vec<Damage>,
}

impl Segment {
    pub fn open(path: &Path) -> Result<Segment, SegmentError> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        // SAFETY: log files are only ever appended to or truncated by the writer, which cuts
        // only torn bytes past what a reader was told is valid; a reader maps a snapshot
        // length and never reads past it.
        let map = if len == 0 {
            None
        } else {
            Some(unsafe { Mmap::map(&file)? })
        };
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        if never_written(bytes) {
            return Err(SegmentError::Empty { len });
        }
        let header = SegmentHeader::parse(bytes)?;
        let (blocks, tail, damage) = match read_index(bytes) {
            Some(blocks) => (blocks, Tail::Closed, Vec::new()),
            None => scan(bytes),
        };
        Ok(Segment {
            path: path.to_owned(),
            map,
            header,
            blocks,
            tail,
            damage,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The bytes of a block as it is in the file (its own header says how long it is;
    /// the index's copy when that header is damaged).
    pub fn block_bytes(&self, block: &BlockRef) -> &[u8] {
        let header = self.stored_header(block).unwrap_or(block.header);
        let end = (block.offset + header.total_len()).min(self.bytes().len());
        &self.bytes()[block.offset..end]
    }

    /// The block's header as it is in the file; when that one is damaged, the copy in the
    /// segment index (the payload CRC then decides whether the block is still good).
    pub fn stored_header(&self, block: &BlockRef) -> Result<BlockHeader, BlockError> {
        BlockHeader::parse(self.bytes().get(block.offset..).unwrap_or(&[]))
    }

    /// Decodes one block's records (appended to `out`), checking its payload CRC.
    pub fn read_block(&self, block: &BlockRef, out: &mut Vec<Record>) -> Result<(), BlockError> {
        let header = self.stored_header(block).unwrap_or(block.header);
        block::decode(&header, self.block_bytes(block), out)
    }

    /// Hash of the last block: the next segment's `prev_hash`.
    pub fn last_hash(&self) -> Hash {
        self.blocks.last().map_or(self.header.prev_hash, |b| {
            block::block_hash(self.block_bytes(b))
        })
    }

    pub fn first_ts_ns(&self) -> Option<u64> {
        self.blocks.iter().map(|b| b.header.first_ts_ns).min()
    }
    pub fn last_ts_ns(&self) -> Option<u64> {
        self.blocks.iter().map(|b| b.header.last_ts_ns).max()
    }
}

/// A file left by a crash between creating a segment and writing its header: too short
/// for one, or all zeros (the size reached the disk, the data did not). Not zeros after a
/// zero header: that is damage to report, not a file to throw away.
fn never_written(bytes: &[u8]) -> bool {
    bytes.len() < SEGMENT_HEADER_LEN || bytes.iter().all(|&b| b == 0)
}

/// Walks block headers from the segment header on. Stops being "valid" at the first bad
/// header; then searches forward for the next good block so that later blocks still count.
fn scan(bytes: &[u8]) -> (Vec<BlockRef>, Tail, Vec<Damage>) {
    let mut blocks = Vec::new();
    let mut damage = Vec::new();
    let mut valid_len = None;
    let mut at = SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        match whole_block_at(bytes, at) {
            Ok(header) => {
                blocks.push(BlockRef { offset: at, header });
                at += header.total_len();
            }
            Err(reason) => {
                valid_len.get_or_insert(at as u64);
                if bytes[at..].iter().all(|&b| b == 0) {
                    break; // O_DIRECT padding after the last block
                }
                if bytes[at..].starts_with(&INDEX_MAGIC) {
                    // An index that does not fit the blocks (they were moved or removed):
                    // no block follows it, only copies of their headers.
                    damage.push(Damage {
                        offset: at,
                        len: bytes.len() - at,
                        reason: "segment index does not match the blocks before it".into(),
                    });
                    break;
                }
                let next = next_block_after(bytes, at);
                let end = next.unwrap_or(bytes.len());
                damage.push(Damage {
                    offset: at,
                    len: end - at,
                    reason,
                });
                at = end;
            }
        }
    }
    let valid_len = valid_len.unwrap_or(bytes.len().max(SEGMENT_HEADER_LEN) as u64);
    (blocks, Tail::Open { valid_len }, damage)
}

/// A block whose header is good and whose payload lies within the file.
fn whole_block_at(bytes: &[u8], at: usize) -> Result<BlockHeader, String> {
    if bytes[at..].starts_with(&INDEX_MAGIC) {
        return Err("index of a segment that was never finished".into());
    }
    let header = BlockHeader::parse(&bytes[at..]).map_err(|e| e.to_string())?;
    if at + header.total_len() > bytes.len() {
        return Err(format!(
            "block cut short: {} of {} bytes",
            bytes.len() - at,
            header.total_len()
        ));
    }
    Ok(header)
}

/// The next valid block after damage at `at` — or the index, if it comes first (the
/// index holds copies of block headers, which must not be taken for blocks).
fn next_block_after(bytes: &[u8], at: usize) -> Option<usize> {
    let index = memchr::memmem::find(&bytes[at + 1..], &INDEX_MAGIC).map(|i| at + 1 + i);
    let mut from = at + 1;
    while let Some(i) = memchr::memmem::find(&bytes[from..], &block::BLOCK_MAGIC) {
        let candidate = from + i;
        if index.is_some_and(|index| index < candidate) {
            return index;
        }
        if whole_block_at(bytes, candidate).is_ok() {
            return Some(candidate);
        }
        from = candidate + 1;
    }
    index
}

/// The bytes that close a segment: an index of `blocks` then the trailer. `index_offset` is
/// where they will be written (the end of the last block).
pub fn closing_bytes(blocks: &[BlockRef], index_offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + blocks.len() * INDEX_ENTRY_LEN + 4 + TRAILER_LEN);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for b in blocks {
        out.extend_from_slice(&(b.offset as u64).to_le_bytes());
        out.extend_from_slice(&b.header.to_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend_from_slice(&TRAILER_MAGIC);
    out
}

/// Reads a closed segment's block list from its index; `None` if there is no trailer or
/// the index does not hold together (the caller then walks the blocks). The headers are
/// the index's copies: `verify` compares them with the blocks themselves.
fn read_index(bytes: &[u8]) -> Option<Vec<BlockRef>> {
    let trailer = bytes.get(bytes.len().checked_sub(TRAILER_LEN)?..)?;
    if trailer[8..] != TRAILER_MAGIC {
        return None;
    }
    let index_offset = u64::from_le_bytes(trailer[..8].try_into().ok()?) as usize;
    let index = bytes.get(index_offset..bytes.len() - TRAILER_LEN)?;
    if index.len() < 12 || index[..4] != INDEX_MAGIC {
        return None;
    }
    let count = u32::from_le_bytes(index[4..8].try_into().ok()?) as usize;
    let body_len = 8 + count.checked_mul(INDEX_ENTRY_LEN)?;
    if index.len() != body_len + 4 {
        return None;
    }
    let crc = u32::from_le_bytes(index[body_len..].try_into().ok()?);
    if crc32c::crc32c(&index[..body_len]) != crc {
        return None;
    }
    let mut blocks = Vec::with_capacity(count);
    let mut expected_offset = SEGMENT_HEADER_LEN;
    for entry in index[8..body_len].chunks_exact(INDEX_ENTRY_LEN) {
        let offset = u64::from_le_bytes(entry[..8].try_into().ok()?) as usize;
        let header = BlockHeader::parse(&entry[8..]).ok()?;
        // Blocks are contiguous and end where the index begins: anything else is not trusted.
        if offset != expected_offset {
            return None;
        }
        expected_offset = offset + header.total_len();
        blocks.push(BlockRef { offset, header });
    }
    (expected_offset == index_offset).then_some(blocks)
}

/// Segment file name: sequence then creation time, so names sort in write order.
pub fn file_name(sequence: u64, created_ns: u64) -> String {
    format!("{sequence:010}-{created_ns}.tnseg")
}

/// The sequence number in a segment file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".tnseg")?;
    stem.split('-').next()?.parse().ok()
}
