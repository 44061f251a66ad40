//! The payload of identity blocks (docs/mapping-log.md §5.2): identity records row by row,
//! sealed, compressed, CRC'd and chained exactly like mapping blocks.
//!
//! Rows rather than columns: identity records are few (one per subscriber per session or
//! lease renewal, against one or two per connection for mappings) and mostly text, which
//! the codec compresses well either way.

use std::net::Ipv4Addr;

use super::block::{
    self, BlockContext, BlockError, BlockHeader, Codec, EncodedBlock, Reader, Summary, flags,
    put_varint, unzigzag, zigzag,
};
use crate::identity::{Change, Identity, IdentityRecord, Source};

/// Longest identity field stored, in bytes; longer values are cut (on a character
/// boundary) by the identity log, which counts them. RADIUS attributes hold at most 253.
pub const MAX_FIELD_LEN: usize = 1024;

/// Presence bits of the optional times.
const HAS_SOURCE_TIME: u8 = 1;
const HAS_EXPIRY: u8 = 2;

/// The text fields in stored order; `nas_ip` (bit 11) follows as 4 bytes.
const TEXT_FIELDS: usize = 10;
const NAS_IP_BIT: u16 = 1 << TEXT_FIELDS;

fn text_fields(identity: &Identity) -> [&Option<String>; TEXT_FIELDS] {
    [
        &identity.user,
        &identity.calling_station_id,
        &identity.nas_port_id,
        &identity.session_id,
        &identity.class,
        &identity.hw_addr,
        &identity.client_id,
        &identity.hostname,
        &identity.circuit_id,
        &identity.remote_id,
    ]
}

fn text_fields_mut(identity: &mut Identity) -> [&mut Option<String>; TEXT_FIELDS] {
    [
        &mut identity.user,
        &mut identity.calling_station_id,
        &mut identity.nas_port_id,
        &mut identity.session_id,
        &mut identity.class,
        &mut identity.hw_addr,
        &mut identity.client_id,
        &mut identity.hostname,
        &mut identity.circuit_id,
        &mut identity.remote_id,
    ]
}

/// Encodes identity records (in the order given) as one block of the identity chain.
pub fn encode(
    records: &[IdentityRecord],
    ctx: &BlockContext,
    codec: Codec,
    scratch: &mut Vec<u8>,
) -> EncodedBlock {
    scratch.clear();
    let first_ts_ns = records.iter().map(|r| r.at_ns).min().unwrap_or(0);
    let mut prev = first_ts_ns;
    for r in records {
        encode_row(r, &mut prev, scratch);
    }
    // NAS resets (0.0.0.0) count too: a lookup of any address must read them.
    let addresses = records.iter().map(|r| (u32::from(r.inside_ip), 0));
    let (key_min, key_max, address_filter) = block::summarise(addresses);
    let summary = Summary {
        count: records.len() as u32,
        first_ts_ns,
        last_ts_ns: records.iter().map(|r| r.at_ns).max().unwrap_or(0),
        key_min,
        key_max,
        address_filter,
    };
    block::seal(scratch, &summary, flags::IDENTITY, ctx, codec, |_| 0)
}

fn encode_row(r: &IdentityRecord, prev: &mut u64, out: &mut Vec<u8>) {
    out.push(r.change as u8);
    out.push(r.source as u8);
    out.extend_from_slice(&r.inside_ip.octets());
    put_varint(out, zigzag(r.at_ns.wrapping_sub(*prev) as i64));
    *prev = r.at_ns;
    put_varint(out, zigzag(r.learned_ns.wrapping_sub(r.at_ns) as i64));
    let mut times = 0;
    if r.source_ns != 0 {
        times |= HAS_SOURCE_TIME;
    }
    if r.expires_ns != 0 {
        times |= HAS_EXPIRY;
    }
    out.push(times);
    for t in [r.source_ns, r.expires_ns].into_iter().filter(|t| *t != 0) {
        put_varint(out, zigzag(t.wrapping_sub(r.at_ns) as i64));
    }
    let fields = text_fields(&r.identity);
    let mut mask = 0u16;
    for (bit, field) in fields.iter().enumerate() {
        mask |= (field.is_some() as u16) << bit;
    }
    mask |= r.identity.nas_ip.is_some() as u16 * NAS_IP_BIT;
    out.extend_from_slice(&mask.to_le_bytes());
    for value in fields.into_iter().flatten() {
        put_varint(out, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    }
    if let Some(nas) = r.identity.nas_ip {
        out.extend_from_slice(&nas.octets());
    }
}

/// Checks the payload CRC and decodes the identity records of a whole block.
pub fn decode(
    header: &BlockHeader,
    bytes: &[u8],
    out: &mut Vec<IdentityRecord>,
) -> Result<(), BlockError> {
    decode_where(header, bytes, |_| true, out)
}

/// [`decode`], keeping only the records whose inside address `keep` accepts; the others
/// are stepped over without building their fields (a lookup of a few addresses).
pub fn decode_where(
    header: &BlockHeader,
    bytes: &[u8],
    keep: impl Fn(Ipv4Addr) -> bool,
    out: &mut Vec<IdentityRecord>,
) -> Result<(), BlockError> {
    if header.flags & flags::IDENTITY == 0 {
        return Err(BlockError::Corrupt("a mapping block in the identity chain"));
    }
    if header.count as usize > block::MAX_RECORDS {
        return Err(BlockError::Corrupt("too many records"));
    }
    let raw = block::payload(header, bytes)?;
    let mut reader = Reader { buf: &raw, pos: 0 };
    let mut prev = header.first_ts_ns;
    for _ in 0..header.count {
        if let Some(record) = decode_row(&mut reader, &mut prev, &keep)? {
            out.push(record);
        }
    }
    if reader.pos != raw.len() {
        return Err(BlockError::Corrupt("bytes after the last identity record"));
    }
    Ok(())
}

fn decode_row(
    r: &mut Reader,
    prev: &mut u64,
    keep: &impl Fn(Ipv4Addr) -> bool,
) -> Result<Option<IdentityRecord>, BlockError> {
    let head = r.take(6)?;
    let change = Change::from_code(head[0]).ok_or(BlockError::Corrupt("identity change"))?;
    let source = Source::from_code(head[1]).ok_or(BlockError::Corrupt("identity source"))?;
    let inside_ip = Ipv4Addr::new(head[2], head[3], head[4], head[5]);
    let wanted = keep(inside_ip);
    let at_ns = prev.wrapping_add(unzigzag(r.varint()?) as u64);
    *prev = at_ns;
    let learned_ns = at_ns.wrapping_add(unzigzag(r.varint()?) as u64);
    let times = r.take(1)?[0];
    if times & !(HAS_SOURCE_TIME | HAS_EXPIRY) != 0 {
        return Err(BlockError::Corrupt("identity time flags"));
    }
    let mut optional_time = |present: bool| -> Result<u64, BlockError> {
        if !present {
            return Ok(0);
        }
        Ok(at_ns.wrapping_add(unzigzag(r.varint()?) as u64))
    };
    let source_ns = optional_time(times & HAS_SOURCE_TIME != 0)?;
    let expires_ns = optional_time(times & HAS_EXPIRY != 0)?;
    let mask = u16::from_le_bytes(r.take(2)?.try_into().expect("two bytes"));
    if mask >> (TEXT_FIELDS + 1) != 0 {
        return Err(BlockError::Corrupt("identity field mask"));
    }
    if !wanted {
        for _ in (0..TEXT_FIELDS).filter(|bit| mask & (1 << bit) != 0) {
            skip_text(r)?;
        }
        if mask & NAS_IP_BIT != 0 {
            r.take(4)?;
        }
        return Ok(None);
    }
    let mut identity = Identity::default();
    for (bit, field) in text_fields_mut(&mut identity).into_iter().enumerate() {
        if mask & (1 << bit) != 0 {
            *field = Some(read_text(r)?);
        }
    }
    if mask & NAS_IP_BIT != 0 {
        let o = r.take(4)?;
        identity.nas_ip = Some(Ipv4Addr::new(o[0], o[1], o[2], o[3]));
    }
    Ok(Some(IdentityRecord {
        change,
        source,
        inside_ip,
        at_ns,
        learned_ns,
        source_ns,
        expires_ns,
        identity,
    }))
}

fn skip_text(r: &mut Reader) -> Result<(), BlockError> {
    let len = r.varint()?;
    if len > MAX_FIELD_LEN as u64 {
        return Err(BlockError::Corrupt("identity field too long"));
    }
    r.take(len as usize).map(|_| ())
}

fn read_text(r: &mut Reader) -> Result<String, BlockError> {
    let len = r.varint()?;
    if len > MAX_FIELD_LEN as u64 {
        return Err(BlockError::Corrupt("identity field too long"));
    }
    let bytes = r.take(len as usize)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| BlockError::Corrupt("identity field not UTF-8"))
}

/// Cuts every text field to [`MAX_FIELD_LEN`] bytes on a character boundary; true if
/// anything was cut.
pub fn cut_long_fields(identity: &mut Identity) -> bool {
    let mut cut = false;
    for value in text_fields_mut(identity).into_iter().flatten() {
        if value.len() > MAX_FIELD_LEN {
            let mut end = MAX_FIELD_LEN;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
            cut = true;
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maplog::block::HEADER_LEN;
    use crate::maplog::clock::ClockState;
    use proptest::prelude::*;

    fn ctx() -> BlockContext {
        BlockContext {
            worker: u16::MAX,
            sequence: 3,
            prev_hash: [7; 32],
            checkpoint: false,
            clock: ClockState {
                synchronised: true,
                max_error_us: 1000,
                est_error_us: 10,
            },
        }
    }

    fn alice(at_ns: u64) -> IdentityRecord {
        IdentityRecord {
            change: Change::Start,
            source: Source::Radius,
            inside_ip: Ipv4Addr::new(100, 64, 1, 1),
            at_ns,
            learned_ns: at_ns + 2_000_000,
            source_ns: at_ns,
            expires_ns: 0,
            identity: Identity {
                user: Some("alice@isp.example".into()),
                nas_ip: Some(Ipv4Addr::new(100, 64, 0, 2)),
                nas_port_id: Some("eth 0/1/2:100".into()),
                session_id: Some("5f00a1".into()),
                ..Identity::default()
            },
        }
    }

    fn round_trip(records: &[IdentityRecord]) -> Vec<IdentityRecord> {
        let block = encode(records, &ctx(), Codec::Zstd, &mut Vec::new());
        let header = BlockHeader::parse(&block.bytes[..HEADER_LEN]).unwrap();
        assert_eq!(header, block.header);
        let mut out = Vec::new();
        decode(&header, &block.bytes, &mut out).unwrap();
        out
    }

    #[test]
    fn records_round_trip_and_the_header_covers_their_addresses() {
        let mut bob = alice(1_800_000_000_000_000_000);
        bob.change = Change::Stop;
        bob.source = Source::KeaLease;
        bob.inside_ip = Ipv4Addr::new(100, 64, 1, 9);
        bob.expires_ns = bob.at_ns + 600_000_000_000;
        bob.source_ns = 0;
        bob.identity = Identity {
            hw_addr: Some("02:74:6e:01:01:09".into()),
            hostname: Some("bob".into()),
            circuit_id: Some("eth 0/1/2:100".into()),
            ..Identity::default()
        };
        let records = vec![alice(1_800_000_001_000_000_000), bob];
        assert_eq!(round_trip(&records), records);
        let block = encode(&records, &ctx(), Codec::Zstd, &mut Vec::new());
        assert!(
            block
                .header
                .may_hold_address(u32::from(Ipv4Addr::new(100, 64, 1, 9)))
        );
        assert_eq!(block.header.first_ts_ns, 1_800_000_000_000_000_000);
        assert_ne!(block.header.flags & flags::IDENTITY, 0);
    }

    #[test]
    fn a_mapping_decoder_refuses_identity_blocks_and_back() {
        let block = encode(&[alice(5)], &ctx(), Codec::Zstd, &mut Vec::new());
        assert!(block::decode(&block.header, &block.bytes, &mut Vec::new()).is_err());
        let mapping = block::encode(&[], &ctx(), Codec::Zstd, &mut Vec::new());
        assert!(decode(&mapping.header, &mapping.bytes, &mut Vec::new()).is_err());
    }

    #[test]
    fn long_fields_are_cut_on_a_character_boundary() {
        let mut identity = Identity {
            hostname: Some("é".repeat(MAX_FIELD_LEN)),
            ..Identity::default()
        };
        assert!(cut_long_fields(&mut identity));
        let host = identity.hostname.unwrap();
        assert!(host.len() <= MAX_FIELD_LEN && host.chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            at in 0u64..u64::MAX, learned in 0u64..u64::MAX, source in 0u64..u64::MAX,
            expires in 0u64..u64::MAX, ip in any::<u32>(), change in 1u8..=5, src in 1u8..=4,
            user in proptest::option::of("\\PC{0,40}"), host in proptest::option::of("[a-z]{0,20}"),
            nas in proptest::option::of(any::<u32>()),
        ) {
            let record = IdentityRecord {
                change: Change::from_code(change).unwrap(),
                source: Source::from_code(src).unwrap(),
                inside_ip: Ipv4Addr::from(ip),
                at_ns: at,
                learned_ns: learned,
                source_ns: source,
                expires_ns: expires,
                identity: Identity { user, hostname: host, nas_ip: nas.map(Ipv4Addr::from), ..Identity::default() },
            };
            prop_assert_eq!(round_trip(std::slice::from_ref(&record)), vec![record]);
        }

        #[test]
        fn damaged_payloads_are_errors_not_panics(flip in 0usize..4096, byte in any::<u8>()) {
            let mut block = encode(&[alice(9), alice(10)], &ctx(), Codec::None, &mut Vec::new());
            let at = HEADER_LEN + flip % (block.bytes.len() - HEADER_LEN);
            block.bytes[at] ^= byte | 1;
            prop_assert!(decode(&block.header, &block.bytes, &mut Vec::new()).is_err());
        }
    }
}
