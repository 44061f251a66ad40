use super::*;
use crate::maplog::clock::ClockState;
use proptest::prelude::*;

fn ctx() -> BlockContext {
    BlockContext {
        worker: 3,
        sequence: 9,
        prev_hash: [7; 32],
        checkpoint: false,
        clock: ClockState {
            synchronised: true,
            max_error_us: 1500,
            est_error_us: 20,
        },
    }
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        1u8..=10,
        any::<u64>(),
        any::<u8>(),
        any::<(u32, u16, u32, u16, u32, u16)>(),
        any::<(u16, u16, u32)>(),
        0u64..1 << 40,
    )
        .prop_map(
            |(k, ts, proto, (ii, ip, pi, pp, di, dp), (bf, bl, open), idle_ms)| {
                let kind = RecordKind::from_code(k).unwrap();
                Record {
                    kind,
                    ts_ns: ts,
                    protocol: proto,
                    inside_ip: ii,
                    inside_port: ip,
                    public_ip: pi,
                    public_port: pp,
                    dest_ip: di,
                    dest_port: dp,
                    block_first: if kind.has_block() { bf } else { 0 },
                    block_last: if kind.has_block() { bl } else { 0 },
                    open_sessions: if kind == RecordKind::LiveMapping {
                        open
                    } else {
                        0
                    },
                    // Whole milliseconds before the end, as the engine writes them.
                    last_active_ns: match ts.checked_sub(idle_ms * 1_000_000) {
                        Some(active) if kind.is_session_end() => active,
                        // A clock step: the wall clock before it, either way.
                        _ if kind == RecordKind::ClockStep => ts ^ idle_ms,
                        _ => 0,
                    },
                    refused: if kind.is_refusal() { open } else { 0 },
                }
            },
        )
}

proptest! {
    #[test]
    fn any_records_round_trip_with_every_codec(
        records in proptest::collection::vec(arb_record(), 0..300),
        codec in prop_oneof![Just(Codec::None), Just(Codec::Lz4), Just(Codec::Zstd)],
    ) {
        let block = encode(&records, &ctx(), codec, &mut Vec::new());
        let header = BlockHeader::parse(&block.bytes).unwrap();
        prop_assert_eq!(header, block.header);
        prop_assert_eq!(header.total_len(), block.bytes.len());
        let mut out = Vec::new();
        decode(&header, &block.bytes, &mut out).unwrap();
        prop_assert_eq!(out, records);
    }

    #[test]
    fn damaged_blocks_are_refused_not_panicked_on(
        records in proptest::collection::vec(arb_record(), 1..50),
        at in any::<usize>(),
        bit in 0u8..8,
    ) {
        let block = encode(&records, &ctx(), Codec::Zstd, &mut Vec::new());
        let mut bytes = block.bytes.clone();
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        let decoded = BlockHeader::parse(&bytes).and_then(|h| {
            let mut out = Vec::new();
            decode(&h, &bytes, &mut out).map(|_| out)
        });
        prop_assert!(decoded.is_err(), "flipped bit at {} went unnoticed", at);
        prop_assert_ne!(block_hash(&bytes), block.hash);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(h) = BlockHeader::parse(&bytes) {
            let _ = decode(&h, &bytes, &mut Vec::new());
        }
    }
}

proptest! {
    #[test]
    fn endpoint_filter_has_no_false_negatives(
        records in proptest::collection::vec(arb_record(), 1..400),
    ) {
        let block = encode(&records, &ctx(), Codec::Lz4, &mut Vec::new());
        let filter = EndpointFilter::of(&block.header, &block.bytes).unwrap();
        for r in records.iter().filter(|r| r.public_ip != 0) {
            if r.kind.has_block() {
                prop_assert!(filter.may_hold_block_of(r.public_ip));
            } else {
                prop_assert!(filter.may_hold_endpoint(r.public_ip, r.public_port));
            }
        }
    }
}

#[test]
fn endpoint_filter_rules_out_most_absent_endpoints() {
    let records: Vec<Record> = (0..8192u32)
        .map(|i| Record {
            kind: RecordKind::SessionCreated,
            ts_ns: i as u64,
            protocol: 6,
            inside_ip: 0x6440_0000 + i,
            inside_port: 40000,
            public_ip: 0xCB00_7100 + i % 64,
            public_port: (1024 + i * 7) as u16,
            dest_ip: 0xC633_6401,
            dest_port: 443,
            block_first: 0,
            block_last: 0,
            open_sessions: 0,
            last_active_ns: 0,
            refused: 0,
        })
        .collect();
    let block = encode(&records, &ctx(), Codec::Zstd, &mut Vec::new());
    let filter = EndpointFilter::of(&block.header, &block.bytes).unwrap();
    let false_positives = (0..10_000u32)
        .filter(|i| filter.may_hold_endpoint(0xC633_0000 + i, 80))
        .count();
    assert!(
        false_positives < 100,
        "{false_positives} of 10000 absent endpoints passed"
    );
    assert!(!filter.may_hold_block_of(0xCB00_7100));
}

#[test]
fn header_summarises_public_endpoints_and_clock() {
    let mut r = Record::from_event(&crate::engine::event::Event {
        kind: crate::engine::event::EventKind::SessionCreated,
        ts_ns: 1_000,
        worker: 0,
        protocol: 17,
        inside_ip: 0x6440_0001,
        inside_port: 5000,
        public_ip: 0xCB00_7105,
        public_port: 40000,
        dest_ip: 0xC633_640A,
        dest_port: 53,
        block_first: 0,
        block_last: 0,
        last_active_ns: 0,
        refused: 0,
    });
    let first = r;
    r.ts_ns = 5_000;
    r.public_port = 1024;
    let mut c = ctx();
    c.clock.synchronised = false;
    let block = encode(&[first, r], &c, Codec::Zstd, &mut Vec::new());
    let h = block.header;
    assert_eq!((h.first_ts_ns, h.last_ts_ns, h.count), (1_000, 5_000, 2));
    assert_eq!(h.key_min, 0xCB00_7105_u64 << 16 | 1024);
    assert_eq!(h.key_max, 0xCB00_7105_u64 << 16 | 40000);
    assert!(h.may_hold_address(0xCB00_7105));
    assert!(!h.may_hold_address(0xCB00_7106));
    assert!(!h.clock_synchronised());
    assert!(h.may_overlap(5_000, 9_000) && !h.may_overlap(5_001, 9_000));
}

#[test]
fn refusals_in_blocks_without_the_column_stand_for_one_each() {
    let refusal = |kind, refused| Record {
        protocol: 17,
        inside_ip: 0x6440_0001,
        inside_port: 4000,
        refused,
        ..Record::new(kind, 1_000)
    };
    let records = [
        refusal(RecordKind::RefusedSubscriberLimit, 1),
        refusal(RecordKind::RefusedPortsExhausted, 70),
    ];
    let mut raw = Vec::new();
    encode_columns(&records, &mut raw);
    let mut out = Vec::new();
    decode_columns(&raw, 2, 1_000, flags::ACTIVITY | flags::EXTRA, &mut out).unwrap();
    assert_eq!(out, records);
    // A block from before the column: the same payload without its last two varints.
    raw.truncate(raw.len() - 2);
    out.clear();
    decode_columns(&raw, 2, 1_000, flags::ACTIVITY, &mut out).unwrap();
    assert_eq!(out.iter().map(|r| r.refused).collect::<Vec<_>>(), [1, 1]);
}
