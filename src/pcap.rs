//! Capture files: reading classic pcap and pcapng, writing classic pcap.
//!
//! Only Ethernet captures are accepted, because Ethernet frames are what the engine parses.
//! The reader fills the caller's buffer and keeps one scratch buffer for pcapng blocks, so
//! it allocates only when a packet is larger than every one before it.
//!
//! Errors say which record (pcap) or block (pcapng) is at fault and at which byte offset;
//! corrupt or truncated input is reported as a [`PcapError`], never a panic.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const LINKTYPE_ETHERNET: u32 = 1;
/// Longest packet accepted. Longer lengths in a header mean a corrupt file, and honouring
/// them would let a few bytes of garbage demand gigabytes of memory.
pub const MAX_PACKET_LEN: u32 = 256 * 1024;
/// Longest pcapng packet-carrying block accepted: a maximal packet plus room for options.
const MAX_BLOCK_LEN: u32 = MAX_PACKET_LEN + 64 * 1024;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;

/// Reads the same in both byte orders, so it identifies pcapng before the order is known.
const BLOCK_SECTION_HEADER: u32 = 0x0a0d_0d0a;
const BLOCK_INTERFACE_DESCRIPTION: u32 = 1;
const BLOCK_SIMPLE_PACKET: u32 = 3;
const BLOCK_ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Type, length and trailing length around every block body.
const BLOCK_OVERHEAD: u32 = 12;
const OPTION_END: u16 = 0;
const OPTION_IF_TSRESOL: u16 = 9;
const OPTION_IF_TSOFFSET: u16 = 14;

// ---------------------------------------------------------------------------
// Errors

/// Where in a capture something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based record (pcap) or block (pcapng) after the file header; 0 is the file header.
    pub record: u64,
    /// Byte offset at which that record starts.
    pub offset: u64,
}

impl Position {
    const FILE_HEADER: Position = Position {
        record: 0,
        offset: 0,
    };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            0 => write!(f, "file header at byte {}", self.offset),
            record => write!(f, "record {record} at byte {}", self.offset),
        }
    }
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read failed at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("the file is empty")]
    Empty,
    #[error("not a pcap or pcapng file (it starts with 0x{magic:08x})")]
    NotACapture { magic: u32 },
    #[error("{at}: link type {link_type} is not supported; only Ethernet (1) is")]
    UnsupportedLinkType { at: Position, link_type: u32 },
    #[error("{at}: the file ends inside the {part} ({got} of {needed} bytes)")]
    Truncated {
        at: Position,
        part: &'static str,
        got: usize,
        needed: usize,
    },
    #[error("{at}: {problem}")]
    Corrupt { at: Position, problem: Corruption },
}

/// What is wrong with a record or block that is present but malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("unsupported format version {major}.{minor}")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("captured length {len} exceeds the {max}-byte limit")]
    PacketTooLong { len: u32, max: u32 },
    #[error("block length {len} is not a multiple of 4 of at least {min}")]
    BadBlockLength { len: u32, min: u32 },
    #[error("block length {len} exceeds the {max}-byte limit")]
    BlockTooLong { len: u32, max: u32 },
    #[error("trailing block length {trailer} differs from the leading {header}")]
    LengthMismatch { header: u32, trailer: u32 },
    #[error("byte-order magic 0x{0:08x} is neither 0x1a2b3c4d nor its byte swap")]
    BadByteOrderMagic(u32),
    #[error("block is too short for its fixed fields")]
    ShortBlock,
    #[error("captured length {len} runs past the end of the block")]
    CaptureOverrunsBlock { len: u32 },
    #[error("packet refers to interface {id}, but only {known} are described")]
    UnknownInterface { id: u32, known: usize },
    #[error("option {code} runs past the end of the block")]
    OptionOverrun { code: u16 },
    #[error("timestamp resolution option 0x{0:02x} is finer than tracenat can represent")]
    BadResolution(u8),
}

// ---------------------------------------------------------------------------
// Byte order

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, bytes: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(bytes),
            Endian::Big => u16::from_be_bytes(bytes),
        }
    }

    fn u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(bytes),
            Endian::Big => u32::from_be_bytes(bytes),
        }
    }

    fn u64(self, bytes: [u8; 8]) -> u64 {
        match self {
            Endian::Little => u64::from_le_bytes(bytes),
            Endian::Big => u64::from_be_bytes(bytes),
        }
    }

    /// The byte order in which `bytes` read as `expected`, if any.
    fn detect(bytes: [u8; 4], expected: u32) -> Option<Endian> {
        [Endian::Little, Endian::Big]
            .into_iter()
            .find(|endian| endian.u32(bytes) == expected)
    }
}

/// Fixed-size field at `at`, or `None` when `bytes` is too short.
fn field<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

// ---------------------------------------------------------------------------
// Input with position tracking

struct Source<R> {
    input: R,
    /// Bytes consumed so far, for error positions.
    offset: u64,
}

/// Whether a record began or the input ended cleanly before it.
enum Start {
    Began,
    EndOfInput,
}

impl<R: Read> Source<R> {
    /// Fills `buf` completely, or reports which part of the record was cut short.
    fn read_part(
        &mut self,
        buf: &mut [u8],
        part: &'static str,
        at: Position,
    ) -> Result<(), PcapError> {
        let got = self.read_up_to(buf)?;
        if got < buf.len() {
            return Err(PcapError::Truncated {
                at,
                part,
                got,
                needed: buf.len(),
            });
        }
        Ok(())
    }

    /// Like `read_part`, but input ending before the first byte is a clean end of file.
    fn read_record_start(
        &mut self,
        buf: &mut [u8],
        part: &'static str,
        at: Position,
    ) -> Result<Start, PcapError> {
        match self.read_up_to(buf)? {
            0 => Ok(Start::EndOfInput),
            got if got < buf.len() => Err(PcapError::Truncated {
                at,
                part,
                got,
                needed: buf.len(),
            }),
            _ => Ok(Start::Began),
        }
    }

    /// Reads `len` bytes into `buf`, replacing its contents and reusing its allocation.
    fn read_into_vec(
        &mut self,
        buf: &mut Vec<u8>,
        len: u32,
        part: &'static str,
        at: Position,
    ) -> Result<(), PcapError> {
        buf.clear();
        buf.resize(len as usize, 0);
        self.read_part(buf, part, at)
    }

    fn skip(&mut self, len: u64, part: &'static str, at: Position) -> Result<(), PcapError> {
        let skipped = io::copy(&mut (&mut self.input).take(len), &mut io::sink())
            .map_err(|source| self.io_error(source))?;
        self.offset += skipped;
        if skipped < len {
            return Err(PcapError::Truncated {
                at,
                part,
                got: usize::try_from(skipped).unwrap_or(usize::MAX),
                needed: usize::try_from(len).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }

    /// Reads until `buf` is full or the input ends; returns how many bytes arrived.
    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, PcapError> {
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            match self.input.read(rest) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io_error(error)),
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }

    fn io_error(&self, source: io::Error) -> PcapError {
        PcapError::Io {
            offset: self.offset,
            source,
        }
    }
}

// ---------------------------------------------------------------------------
// Reader

/// Reads Ethernet packets from a classic pcap or a pcapng capture.
pub struct PcapReader<R: Read> {
    source: Source<R>,
    format: Format,
    records: u64,
    truncated: u64,
    /// pcapng block bodies, kept between blocks to avoid allocating per packet.
    scratch: Vec<u8>,
    /// Simple Packet Blocks carry no timestamp; they inherit the previous packet's.
    last_timestamp_ns: u64,
}

enum Format {
    Classic { endian: Endian, nanos_per_tick: u64 },
    Ng(Section),
}

/// State of one pcapng section: byte order and the interfaces described so far.
struct Section {
    endian: Endian,
    interfaces: Vec<Interface>,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    /// 0 means unlimited.
    snaplen: u32,
    resolution: Resolution,
    offset_seconds: i64,
}

/// Timestamp unit of a pcapng interface: 10^-n or 2^-n seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Decimal(u8),
    Binary(u8),
}

impl Resolution {
    const MICROSECONDS: Resolution = Resolution::Decimal(6);

    /// Decodes the if_tsresol byte, refusing units too fine for a u64 tick count to matter.
    fn from_option(value: u8) -> Option<Resolution> {
        let exponent = value & 0x7f;
        match value & 0x80 {
            0 if exponent <= 19 => Some(Resolution::Decimal(exponent)),
            0 => None,
            _ if exponent <= 63 => Some(Resolution::Binary(exponent)),
            _ => None,
        }
    }

    fn to_nanos(self, ticks: u64) -> u64 {
        let ticks = u128::from(ticks);
        let nanos = match self {
            Resolution::Decimal(exponent) if exponent <= 9 => {
                ticks * 10u128.pow(u32::from(9 - exponent))
            }
            Resolution::Decimal(exponent) => ticks / 10u128.pow(u32::from(exponent - 9)),
            Resolution::Binary(exponent) => (ticks * u128::from(NANOS_PER_SECOND)) >> exponent,
        };
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

/// Adds a signed number of seconds to a timestamp, clamping instead of wrapping.
fn shift_seconds(nanos: u64, seconds: i64) -> u64 {
    let shifted = i128::from(nanos) + i128::from(seconds) * i128::from(NANOS_PER_SECOND);
    u64::try_from(shifted.max(0)).unwrap_or(u64::MAX)
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header; fails unless this is an Ethernet pcap or pcapng capture.
    pub fn new(input: R) -> Result<Self, PcapError> {
        let mut source = Source { input, offset: 0 };
        let mut magic = [0u8; 4];
        if let Start::EndOfInput =
            source.read_record_start(&mut magic, "file header", Position::FILE_HEADER)?
        {
            return Err(PcapError::Empty);
        }
        let mut scratch = Vec::new();
        let format = if u32::from_le_bytes(magic) == BLOCK_SECTION_HEADER {
            Format::Ng(read_section_header(
                &mut source,
                &mut scratch,
                Position::FILE_HEADER,
            )?)
        } else {
            read_classic_header(&mut source, magic)?
        };
        Ok(PcapReader {
            source,
            format,
            records: 0,
            truncated: 0,
            scratch,
            last_timestamp_ns: 0,
        })
    }

    /// Reads the next packet into `buf` (replacing its contents) and returns its timestamp
    /// in nanoseconds since the Unix epoch, or `None` at the end of the capture.
    pub fn next_packet(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, PcapError> {
        let packet = match &self.format {
            Format::Classic {
                endian,
                nanos_per_tick,
            } => {
                let (endian, nanos_per_tick) = (*endian, *nanos_per_tick);
                self.next_classic(buf, endian, nanos_per_tick)?
            }
            Format::Ng(_) => self.next_ng(buf)?,
        };
        Ok(packet.map(|packet| {
            if packet.captured < packet.original {
                self.truncated += 1;
            }
            self.last_timestamp_ns = packet.timestamp_ns;
            packet.timestamp_ns
        }))
    }

    /// Packets so far whose capture was cut short by the snapshot length.
    pub fn truncated_packets(&self) -> u64 {
        self.truncated
    }

    fn next_position(&mut self) -> Position {
        self.records += 1;
        Position {
            record: self.records,
            offset: self.source.offset,
        }
    }

    fn next_classic(
        &mut self,
        buf: &mut Vec<u8>,
        endian: Endian,
        nanos_per_tick: u64,
    ) -> Result<Option<PacketInfo>, PcapError> {
        let at = self.next_position();
        let mut header = [0u8; PCAP_RECORD_HEADER_LEN];
        if let Start::EndOfInput =
            self.source
                .read_record_start(&mut header, "record header", at)?
        {
            return Ok(None);
        }
        let word = |index: usize| field(&header, index * 4).map_or(0, |bytes| endian.u32(bytes));
        let (seconds, fraction, captured, original) = (word(0), word(1), word(2), word(3));
        if captured > MAX_PACKET_LEN {
            return Err(corrupt(
                at,
                Corruption::PacketTooLong {
                    len: captured,
                    max: MAX_PACKET_LEN,
                },
            ));
        }
        self.source
            .read_into_vec(buf, captured, "packet data", at)?;
        let timestamp_ns = u64::from(seconds)
            .saturating_mul(NANOS_PER_SECOND)
            .saturating_add(u64::from(fraction).saturating_mul(nanos_per_tick));
        Ok(Some(PacketInfo {
            timestamp_ns,
            captured,
            original,
        }))
    }

    fn next_ng(&mut self, buf: &mut Vec<u8>) -> Result<Option<PacketInfo>, PcapError> {
        loop {
            let at = self.next_position();
            let mut block_type = [0u8; 4];
            if let Start::EndOfInput =
                self.source
                    .read_record_start(&mut block_type, "block header", at)?
            {
                return Ok(None);
            }
            if u32::from_le_bytes(block_type) == BLOCK_SECTION_HEADER {
                let section = read_section_header(&mut self.source, &mut self.scratch, at)?;
                self.format = Format::Ng(section);
                continue;
            }
            if let Some(packet) = self.read_ng_block(block_type, buf, at)? {
                return Ok(Some(packet));
            }
        }
    }

    /// Reads one non-section block; returns the packet if it carried one.
    fn read_ng_block(
        &mut self,
        block_type: [u8; 4],
        buf: &mut Vec<u8>,
        at: Position,
    ) -> Result<Option<PacketInfo>, PcapError> {
        let Format::Ng(section) = &mut self.format else {
            return Ok(None);
        };
        let endian = section.endian;
        let block_type = endian.u32(block_type);
        let mut length = [0u8; 4];
        self.source.read_part(&mut length, "block header", at)?;
        let length = check_block_length(endian.u32(length), BLOCK_OVERHEAD, at)?;
        let known = matches!(
            block_type,
            BLOCK_INTERFACE_DESCRIPTION | BLOCK_SIMPLE_PACKET | BLOCK_ENHANCED_PACKET
        );
        if !known {
            // Statistics, name resolution, secrets...: not needed, and possibly large.
            self.source.skip(u64::from(length - 8), "block", at)?;
            return Ok(None);
        }
        let body = read_block_body(&mut self.source, &mut self.scratch, endian, (length, 8), at)?;
        match block_type {
            BLOCK_INTERFACE_DESCRIPTION => {
                section.interfaces.push(parse_interface(body, endian, at)?);
                Ok(None)
            }
            BLOCK_ENHANCED_PACKET => {
                parse_enhanced_packet(body, endian, section, buf, at).map(Some)
            }
            _ => parse_simple_packet(body, endian, section, buf, self.last_timestamp_ns, at)
                .map(Some),
        }
    }
}

/// What the reader learns about a packet besides its bytes.
struct PacketInfo {
    timestamp_ns: u64,
    captured: u32,
    original: u32,
}

fn corrupt(at: Position, problem: Corruption) -> PcapError {
    PcapError::Corrupt { at, problem }
}

fn read_classic_header<R: Read>(
    source: &mut Source<R>,
    magic: [u8; 4],
) -> Result<Format, PcapError> {
    let at = Position::FILE_HEADER;
    let (endian, nanos_per_tick) = if let Some(endian) = Endian::detect(magic, PCAP_MAGIC_MICROS) {
        (endian, 1_000)
    } else if let Some(endian) = Endian::detect(magic, PCAP_MAGIC_NANOS) {
        (endian, 1)
    } else {
        return Err(PcapError::NotACapture {
            magic: u32::from_be_bytes(magic),
        });
    };
    let mut rest = [0u8; PCAP_HEADER_LEN - 4];
    source.read_part(&mut rest, "file header", at)?;
    let half = |at: usize| field(&rest, at).map_or(0, |bytes| endian.u16(bytes));
    let (major, minor) = (half(0), half(2));
    if major != 2 {
        return Err(corrupt(at, Corruption::UnsupportedVersion { major, minor }));
    }
    // The upper 16 bits of the link-type field carry FCS information, not the type.
    let link_type = field(&rest, 16).map_or(0, |bytes| endian.u32(bytes)) & 0xffff;
    if link_type != LINKTYPE_ETHERNET {
        return Err(PcapError::UnsupportedLinkType { at, link_type });
    }
    Ok(Format::Classic {
        endian,
        nanos_per_tick,
    })
}

/// Reads a Section Header Block whose type field has already been consumed.
fn read_section_header<R: Read>(
    source: &mut Source<R>,
    scratch: &mut Vec<u8>,
    at: Position,
) -> Result<Section, PcapError> {
    let mut prefix = [0u8; 8];
    source.read_part(&mut prefix, "section header", at)?;
    let [l0, l1, l2, l3, m0, m1, m2, m3] = prefix;
    let magic = [m0, m1, m2, m3];
    let endian = Endian::detect(magic, BYTE_ORDER_MAGIC)
        .ok_or_else(|| corrupt(at, Corruption::BadByteOrderMagic(u32::from_be_bytes(magic))))?;
    // Type, length, magic, versions, section length, trailer.
    const MIN_SECTION_HEADER_LEN: u32 = 28;
    let length = check_block_length(endian.u32([l0, l1, l2, l3]), MIN_SECTION_HEADER_LEN, at)?;
    let rest = read_block_body(source, scratch, endian, (length, 12), at)?;
    let major = field(rest, 0).map_or(0, |bytes| endian.u16(bytes));
    let minor = field(rest, 2).map_or(0, |bytes| endian.u16(bytes));
    if major != 1 {
        return Err(corrupt(at, Corruption::UnsupportedVersion { major, minor }));
    }
    Ok(Section {
        endian,
        interfaces: Vec::new(),
    })
}

fn check_block_length(length: u32, min: u32, at: Position) -> Result<u32, PcapError> {
    if length < min || !length.is_multiple_of(4) {
        return Err(corrupt(at, Corruption::BadBlockLength { len: length, min }));
    }
    Ok(length)
}

/// Reads the rest of a block of `length` bytes of which `consumed` (at least type and
/// length) have been read; checks the trailing length and returns what precedes it.
fn read_block_body<'s, R: Read>(
    source: &mut Source<R>,
    scratch: &'s mut Vec<u8>,
    endian: Endian,
    (length, consumed): (u32, u32),
    at: Position,
) -> Result<&'s [u8], PcapError> {
    if length > MAX_BLOCK_LEN {
        return Err(corrupt(
            at,
            Corruption::BlockTooLong {
                len: length,
                max: MAX_BLOCK_LEN,
            },
        ));
    }
    // Callers validated `length` against a minimum above `consumed + 4`.
    source.read_into_vec(scratch, length - consumed, "block", at)?;
    let (body, trailer) = scratch.split_at(scratch.len().saturating_sub(4));
    let trailer = field(trailer, 0).map_or(0, |bytes| endian.u32(bytes));
    if trailer != length {
        return Err(corrupt(
            at,
            Corruption::LengthMismatch {
                header: length,
                trailer,
            },
        ));
    }
    Ok(body)
}

fn parse_interface(body: &[u8], endian: Endian, at: Position) -> Result<Interface, PcapError> {
    let (Some(link_type), Some(snaplen)) = (field(body, 0), field(body, 4)) else {
        return Err(corrupt(at, Corruption::ShortBlock));
    };
    let link_type = u32::from(endian.u16(link_type));
    if link_type != LINKTYPE_ETHERNET {
        return Err(PcapError::UnsupportedLinkType { at, link_type });
    }
    let mut interface = Interface {
        snaplen: endian.u32(snaplen),
        resolution: Resolution::MICROSECONDS,
        offset_seconds: 0,
    };
    for option in Options::new(body.get(8..).unwrap_or_default(), endian) {
        let (code, value) = option.map_err(|problem| corrupt(at, problem))?;
        match (code, value) {
            (OPTION_IF_TSRESOL, [byte, ..]) => {
                interface.resolution = Resolution::from_option(*byte)
                    .ok_or_else(|| corrupt(at, Corruption::BadResolution(*byte)))?;
            }
            (OPTION_IF_TSOFFSET, value) => {
                if let Some(bytes) = field(value, 0) {
                    interface.offset_seconds = endian.u64(bytes).cast_signed();
                }
            }
            _ => {}
        }
    }
    Ok(interface)
}

fn parse_enhanced_packet(
    body: &[u8],
    endian: Endian,
    section: &Section,
    buf: &mut Vec<u8>,
    at: Position,
) -> Result<PacketInfo, PcapError> {
    const FIXED_LEN: usize = 20;
    let word = |index: usize| field(body, index * 4).map(|bytes| endian.u32(bytes));
    let (Some(id), Some(high), Some(low), Some(captured), Some(original)) =
        (word(0), word(1), word(2), word(3), word(4))
    else {
        return Err(corrupt(at, Corruption::ShortBlock));
    };
    let interface = interface(section, id, at)?;
    let data = packet_data(body, FIXED_LEN, captured, at)?;
    buf.clear();
    buf.extend_from_slice(data);
    let ticks = (u64::from(high) << 32) | u64::from(low);
    let timestamp_ns = shift_seconds(
        interface.resolution.to_nanos(ticks),
        interface.offset_seconds,
    );
    Ok(PacketInfo {
        timestamp_ns,
        captured,
        original,
    })
}

/// Simple Packet Blocks belong to interface 0; their captured length is implied by the
/// block length and the interface's snapshot length.
fn parse_simple_packet(
    body: &[u8],
    endian: Endian,
    section: &Section,
    buf: &mut Vec<u8>,
    timestamp_ns: u64,
    at: Position,
) -> Result<PacketInfo, PcapError> {
    const FIXED_LEN: usize = 4;
    let original = field(body, 0)
        .map(|bytes| endian.u32(bytes))
        .ok_or_else(|| corrupt(at, Corruption::ShortBlock))?;
    let interface = interface(section, 0, at)?;
    let room = u32::try_from(body.len() - FIXED_LEN).unwrap_or(u32::MAX);
    let mut captured = original.min(room);
    if interface.snaplen != 0 {
        captured = captured.min(interface.snaplen);
    }
    let data = packet_data(body, FIXED_LEN, captured, at)?;
    buf.clear();
    buf.extend_from_slice(data);
    Ok(PacketInfo {
        timestamp_ns,
        captured,
        original,
    })
}

fn interface(section: &Section, id: u32, at: Position) -> Result<Interface, PcapError> {
    usize::try_from(id)
        .ok()
        .and_then(|index| section.interfaces.get(index))
        .copied()
        .ok_or_else(|| {
            corrupt(
                at,
                Corruption::UnknownInterface {
                    id,
                    known: section.interfaces.len(),
                },
            )
        })
}

fn packet_data(body: &[u8], start: usize, captured: u32, at: Position) -> Result<&[u8], PcapError> {
    if captured > MAX_PACKET_LEN {
        return Err(corrupt(
            at,
            Corruption::PacketTooLong {
                len: captured,
                max: MAX_PACKET_LEN,
            },
        ));
    }
    let end = start + captured as usize;
    body.get(start..end)
        .ok_or_else(|| corrupt(at, Corruption::CaptureOverrunsBlock { len: captured }))
}

/// Iterator over pcapng options: (code, value without padding), up to opt_endofopt.
struct Options<'b> {
    rest: &'b [u8],
    endian: Endian,
}

impl<'b> Options<'b> {
    fn new(bytes: &'b [u8], endian: Endian) -> Self {
        Options {
            rest: bytes,
            endian,
        }
    }
}

impl<'b> Iterator for Options<'b> {
    type Item = Result<(u16, &'b [u8]), Corruption>;

    fn next(&mut self) -> Option<Self::Item> {
        let code = self.endian.u16(field(self.rest, 0)?);
        let length = usize::from(self.endian.u16(field(self.rest, 2)?));
        if code == OPTION_END {
            return None;
        }
        let padded = length.div_ceil(4) * 4;
        let Some(value) = self.rest.get(4..4 + length) else {
            self.rest = &[];
            return Some(Err(Corruption::OptionOverrun { code }));
        };
        self.rest = self.rest.get(4 + padded..).unwrap_or_default();
        Some(Ok((code, value)))
    }
}

// ---------------------------------------------------------------------------
// Writer

/// Writes classic pcap with nanosecond timestamps and link type Ethernet.
pub struct PcapWriter<W: Write> {
    output: W,
}

impl<W: Write> PcapWriter<W> {
    /// Longest packet stored; longer ones are cut and recorded with their original length.
    pub const SNAPLEN: u32 = 65535;

    /// Writes the file header.
    pub fn new(mut output: W) -> io::Result<Self> {
        let mut header = Vec::with_capacity(PCAP_HEADER_LEN);
        header.extend_from_slice(&PCAP_MAGIC_NANOS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes()); // time zone: timestamps are UTC
        header.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy: unused
        header.extend_from_slice(&Self::SNAPLEN.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        output.write_all(&header)?;
        Ok(PcapWriter { output })
    }

    /// Appends one packet stamped `ts_ns` nanoseconds after the Unix epoch.
    pub fn write_packet(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let seconds = u32::try_from(ts_ns / NANOS_PER_SECOND).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "timestamp after 2106 does not fit a pcap record",
            )
        })?;
        let original = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet longer than 4 GiB"))?;
        let captured = original.min(Self::SNAPLEN);
        // Below one second's worth of nanoseconds, so it fits in u32.
        let nanos = (ts_ns % NANOS_PER_SECOND) as u32;
        let mut header = [0u8; PCAP_RECORD_HEADER_LEN];
        for (slot, word) in header
            .chunks_exact_mut(4)
            .zip([seconds, nanos, captured, original])
        {
            slot.copy_from_slice(&word.to_le_bytes());
        }
        self.output.write_all(&header)?;
        self.output.write_all(&data[..captured as usize])
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.output.flush()?;
        Ok(self.output)
    }

    /// Returns the underlying writer without flushing it.
    pub fn into_inner(self) -> W {
        self.output
    }
}

// ---------------------------------------------------------------------------
// Whole-file helpers

/// Reads every packet of the capture at `path` as (timestamp ns, bytes).
pub fn read_all(path: &Path) -> Result<Vec<(u64, Vec<u8>)>, PcapError> {
    let file = File::open(path).map_err(|source| PcapError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = PcapReader::new(BufReader::new(file))?;
    let mut packets = Vec::new();
    let mut buf = Vec::new();
    while let Some(timestamp) = reader.next_packet(&mut buf)? {
        packets.push((timestamp, buf.clone()));
    }
    Ok(packets)
}

/// Writes `packets` as (timestamp ns, bytes) to a new capture at `path`.
pub fn write_all(path: &Path, packets: &[(u64, Vec<u8>)]) -> io::Result<()> {
    let mut writer = PcapWriter::new(BufWriter::new(File::create(path)?))?;
    for (timestamp, data) in packets {
        writer.write_packet(*timestamp, data)?;
    }
    writer.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    type Packets = Vec<(u64, Vec<u8>)>;

    /// Every packet of an in-memory capture, and how many were snaplen-truncated.
    fn read_from_bytes(bytes: &[u8]) -> Result<(Packets, u64), PcapError> {
        let mut reader = PcapReader::new(bytes)?;
        let mut packets = Vec::new();
        let mut buf = Vec::new();
        while let Some(timestamp) = reader.next_packet(&mut buf)? {
            packets.push((timestamp, buf.clone()));
        }
        Ok((packets, reader.truncated_packets()))
    }

    fn written(packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        for (timestamp, data) in packets {
            writer.write_packet(*timestamp, data).unwrap();
        }
        writer.finish().unwrap()
    }

    // -- byte builders for hand-made captures ---------------------------------

    fn u16_bytes(endian: Endian, value: u16) -> [u8; 2] {
        match endian {
            Endian::Little => value.to_le_bytes(),
            Endian::Big => value.to_be_bytes(),
        }
    }

    fn u32_bytes(endian: Endian, value: u32) -> [u8; 4] {
        match endian {
            Endian::Little => value.to_le_bytes(),
            Endian::Big => value.to_be_bytes(),
        }
    }

    fn block(endian: Endian, block_type: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let total = u32::try_from(12 + padded).unwrap();
        let mut out = Vec::new();
        out.extend(u32_bytes(endian, block_type));
        out.extend(u32_bytes(endian, total));
        out.extend(body);
        out.resize(8 + padded, 0);
        out.extend(u32_bytes(endian, total));
        out
    }

    fn section_header(endian: Endian) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(u32_bytes(endian, BYTE_ORDER_MAGIC));
        body.extend(u16_bytes(endian, 1));
        body.extend(u16_bytes(endian, 0));
        body.extend([0xff; 8]); // section length unknown
        block(endian, BLOCK_SECTION_HEADER, &body)
    }

    fn interface_block(endian: Endian, link_type: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(u16_bytes(endian, link_type));
        body.extend(u16_bytes(endian, 0));
        body.extend(u32_bytes(endian, 0));
        if let Some(resolution) = tsresol {
            body.extend(u16_bytes(endian, OPTION_IF_TSRESOL));
            body.extend(u16_bytes(endian, 1));
            body.extend([resolution, 0, 0, 0]);
            body.extend(u16_bytes(endian, OPTION_END));
            body.extend(u16_bytes(endian, 0));
        }
        block(endian, BLOCK_INTERFACE_DESCRIPTION, &body)
    }

    fn enhanced_block(endian: Endian, ticks: u64, data: &[u8], original: u32) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(u32_bytes(endian, 0));
        body.extend(u32_bytes(endian, (ticks >> 32) as u32));
        body.extend(u32_bytes(endian, ticks as u32));
        body.extend(u32_bytes(endian, data.len() as u32));
        body.extend(u32_bytes(endian, original));
        body.extend(data);
        block(endian, BLOCK_ENHANCED_PACKET, &body)
    }

    fn simple_block(endian: Endian, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(u32_bytes(endian, data.len() as u32));
        body.extend(data);
        block(endian, BLOCK_SIMPLE_PACKET, &body)
    }

    /// A pcapng file: header, interface, a skipped statistics block, two EPBs and an SPB.
    /// Returns the bytes and the offsets at which a cut leaves a complete file.
    fn pcapng_file(endian: Endian, tsresol: Option<u8>, ticks: [u64; 2]) -> (Vec<u8>, Vec<usize>) {
        let blocks = [
            section_header(endian),
            interface_block(endian, 1, tsresol),
            block(endian, 5, &[0u8; 20]),
            enhanced_block(endian, ticks[0], &frame(1, 60), 60),
            enhanced_block(endian, ticks[1], &frame(2, 61), 1514),
            simple_block(endian, &frame(3, 42)),
        ];
        let mut bytes = Vec::new();
        let mut boundaries = Vec::new();
        for block in blocks {
            bytes.extend(block);
            boundaries.push(bytes.len());
        }
        (bytes, boundaries)
    }

    fn classic_file(
        endian: Endian,
        magic: u32,
        link_type: u32,
        records: &[(u32, u32, &[u8])],
    ) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(u32_bytes(endian, magic));
        bytes.extend(u16_bytes(endian, 2));
        bytes.extend(u16_bytes(endian, 4));
        bytes.extend([0; 8]);
        bytes.extend(u32_bytes(endian, 65535));
        bytes.extend(u32_bytes(endian, link_type));
        for (seconds, fraction, data) in records {
            bytes.extend(u32_bytes(endian, *seconds));
            bytes.extend(u32_bytes(endian, *fraction));
            bytes.extend(u32_bytes(endian, data.len() as u32));
            bytes.extend(u32_bytes(endian, data.len() as u32));
            bytes.extend(*data);
        }
        bytes
    }

    // -- tests ------------------------------------------------------------------

    #[test]
    fn written_packets_read_back_unchanged() {
        let packets = vec![
            (1_700_000_000_123_456_789, frame(0, 60)),
            (1_700_000_001_000_000_000, frame(9, 1514)),
            (0, Vec::new()),
        ];
        let (read, truncated) = read_from_bytes(&written(&packets)).unwrap();
        assert_eq!(read, packets);
        assert_eq!(truncated, 0);
    }

    #[test]
    fn writer_cuts_at_snaplen_and_reader_counts_it() {
        let big = frame(5, 70_000);
        let (read, truncated) = read_from_bytes(&written(&[(1, big.clone())])).unwrap();
        assert_eq!(read[0].1, big[..65535]);
        assert_eq!(truncated, 1);
    }

    #[test]
    fn writer_uses_nanosecond_magic() {
        let bytes = written(&[]);
        assert_eq!(bytes[..4], PCAP_MAGIC_NANOS.to_le_bytes());
        assert_eq!(bytes.len(), PCAP_HEADER_LEN);
    }

    #[test]
    fn files_round_trip_through_paths() {
        let path = std::env::temp_dir().join(format!("tracenat-pcap-{}.pcap", std::process::id()));
        let packets = vec![(42, frame(1, 100)), (43, frame(2, 64))];
        write_all(&path, &packets).unwrap();
        let read = read_all(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read.unwrap(), packets);
    }

    #[test]
    fn classic_big_endian_microseconds_parse() {
        let bytes = classic_file(
            Endian::Big,
            PCAP_MAGIC_MICROS,
            1,
            &[(10, 250_000, &frame(7, 60))],
        );
        let (read, _) = read_from_bytes(&bytes).unwrap();
        assert_eq!(read, vec![(10_250_000_000, frame(7, 60))]);
    }

    #[test]
    fn classic_little_endian_nanoseconds_parse() {
        let bytes = classic_file(
            Endian::Little,
            PCAP_MAGIC_NANOS,
            1,
            &[(3, 7, &frame(1, 14))],
        );
        let (read, _) = read_from_bytes(&bytes).unwrap();
        assert_eq!(read, vec![(3_000_000_007, frame(1, 14))]);
    }

    #[test]
    fn pcapng_nanosecond_resolution_parses_in_both_byte_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let (bytes, _) = pcapng_file(endian, Some(9), [5_000_000_001, 6_000_000_000]);
            let (read, truncated) = read_from_bytes(&bytes).unwrap();
            let expected = vec![
                (5_000_000_001, frame(1, 60)),
                (6_000_000_000, frame(2, 61)),
                (6_000_000_000, frame(3, 42)),
            ];
            assert_eq!(read, expected, "{endian:?}");
            assert_eq!(truncated, 1, "{endian:?}");
        }
    }

    #[test]
    fn pcapng_defaults_to_microseconds_in_both_byte_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let (bytes, _) = pcapng_file(endian, None, [1_500_000, 2_000_001]);
            let (read, _) = read_from_bytes(&bytes).unwrap();
            let timestamps: Vec<u64> = read.iter().map(|(timestamp, _)| *timestamp).collect();
            assert_eq!(
                timestamps,
                [1_500_000_000, 2_000_001_000, 2_000_001_000],
                "{endian:?}"
            );
        }
    }

    #[test]
    fn pcapng_binary_resolution_converts() {
        let mut bytes = section_header(Endian::Little);
        bytes.extend(interface_block(Endian::Little, 1, Some(0x80 | 10)));
        bytes.extend(enhanced_block(
            Endian::Little,
            3 * 1024 + 512,
            &frame(0, 20),
            20,
        ));
        let (read, _) = read_from_bytes(&bytes).unwrap();
        assert_eq!(read[0].0, 3_500_000_000);
    }

    #[test]
    fn a_new_section_may_switch_byte_order() {
        let (mut bytes, _) = pcapng_file(Endian::Little, None, [1, 2]);
        let (big, _) = pcapng_file(Endian::Big, None, [3, 4]);
        bytes.extend(big);
        let (read, _) = read_from_bytes(&bytes).unwrap();
        assert_eq!(read.len(), 6);
        assert_eq!(read[3].0, 3_000);
    }

    #[test]
    fn non_ethernet_link_types_are_refused() {
        let classic = classic_file(Endian::Little, PCAP_MAGIC_MICROS, 101, &[]);
        let error = PcapReader::new(&classic[..]).err().unwrap();
        assert!(matches!(
            error,
            PcapError::UnsupportedLinkType { link_type: 101, .. }
        ));
        assert!(error.to_string().contains("only Ethernet (1)"), "{error}");

        let mut ng = section_header(Endian::Big);
        ng.extend(interface_block(Endian::Big, 113, None));
        let error = read_from_bytes(&ng).unwrap_err();
        assert!(matches!(
            error,
            PcapError::UnsupportedLinkType { link_type: 113, .. }
        ));
    }

    #[test]
    fn garbage_and_empty_input_are_named() {
        assert!(matches!(PcapReader::new(&[][..]), Err(PcapError::Empty)));
        let error = PcapReader::new(&b"GIF89a..."[..]).err().unwrap();
        assert!(matches!(
            error,
            PcapError::NotACapture { magic: 0x4749_4638 }
        ));
    }

    #[test]
    fn packet_for_undescribed_interface_is_corrupt() {
        let mut bytes = section_header(Endian::Little);
        bytes.extend(enhanced_block(Endian::Little, 0, &frame(0, 20), 20));
        let error = read_from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(
                error,
                PcapError::Corrupt {
                    problem: Corruption::UnknownInterface { id: 0, known: 0 },
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "record 1 at byte 28: packet refers to interface 0, but only 0 are described"
        );
    }

    #[test]
    fn absurd_lengths_are_refused_without_allocating() {
        let mut bytes = classic_file(Endian::Little, PCAP_MAGIC_MICROS, 1, &[]);
        bytes.extend([0; 8]);
        bytes.extend(u32::MAX.to_le_bytes());
        bytes.extend(u32::MAX.to_le_bytes());
        let error = read_from_bytes(&bytes).unwrap_err();
        assert!(matches!(
            error,
            PcapError::Corrupt {
                problem: Corruption::PacketTooLong { .. },
                ..
            }
        ));
    }

    /// Cutting a file anywhere either ends cleanly (only at a record boundary) or errors.
    fn assert_every_cut_is_handled(bytes: &[u8], boundaries: &[usize]) {
        for cut in 0..=bytes.len() {
            let result = read_from_bytes(&bytes[..cut]);
            let clean_end = boundaries.contains(&cut);
            assert_eq!(
                result.is_ok(),
                clean_end,
                "cut at {cut}: {:?}",
                result.err()
            );
            if let Err(PcapError::Truncated { got, needed, .. }) = result {
                assert!(got < needed);
            }
        }
    }

    #[test]
    fn classic_cut_at_any_byte_is_handled() {
        let packets = [(1, frame(0, 60)), (2, frame(1, 33))];
        let bytes = written(&packets);
        let boundaries = [PCAP_HEADER_LEN, PCAP_HEADER_LEN + 76, bytes.len()];
        assert_every_cut_is_handled(&bytes, &boundaries);
    }

    #[test]
    fn pcapng_cut_at_any_byte_is_handled() {
        for endian in [Endian::Little, Endian::Big] {
            let (bytes, boundaries) = pcapng_file(endian, Some(9), [1, 2]);
            assert_every_cut_is_handled(&bytes, &boundaries);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_from_bytes(&bytes);
        }

        #[test]
        fn corrupted_pcapng_never_panics(index in 0usize..400, value in any::<u8>(), big in any::<bool>()) {
            let endian = if big { Endian::Big } else { Endian::Little };
            let (mut bytes, _) = pcapng_file(endian, Some(6), [1, 2]);
            let index = index % bytes.len();
            bytes[index] = value;
            let _ = read_from_bytes(&bytes);
        }

        #[test]
        fn corrupted_classic_never_panics(index in 0usize..200, value in any::<u8>()) {
            let mut bytes = written(&[(1, frame(0, 60)), (2, frame(1, 33))]);
            let index = index % bytes.len();
            bytes[index] = value;
            let _ = read_from_bytes(&bytes);
        }
    }
}
