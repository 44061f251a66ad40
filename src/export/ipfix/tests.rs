use super::*;
use crate::maplog::record::{Record, RecordKind};

/// What a collector needs to read a message back: the header, then each set.
struct Decoded {
    length: usize,
    sequence: u32,
    domain: u32,
    export_secs: u32,
    /// (set id, records or template definitions, as raw bytes per set).
    sets: Vec<(u16, Vec<u8>)>,
}

fn decode(message: &[u8]) -> Decoded {
    let be16 = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes(message[at..at + 4].try_into().unwrap());
    assert_eq!(be16(0), VERSION);
    let length = be16(2) as usize;
    assert_eq!(
        length,
        message.len(),
        "the header's length is the message's"
    );
    let mut sets = Vec::new();
    let mut at = MESSAGE_HEADER;
    while at < length {
        let (id, len) = (be16(at), be16(at + 2) as usize);
        assert!(
            len >= SET_HEADER && at + len <= length,
            "set fits the message"
        );
        sets.push((id, message[at + SET_HEADER..at + len].to_vec()));
        at += len;
    }
    assert_eq!(at, length, "sets fill the message exactly");
    Decoded {
        length,
        sequence: be32(8),
        domain: be32(12),
        export_secs: be32(4),
        sets,
    }
}

fn session(i: u32, with_dest: bool) -> ExportEvent {
    let record = Record {
        kind: if i.is_multiple_of(2) {
            RecordKind::SessionCreated
        } else {
            RecordKind::SessionEnded
        },
        ts_ns: 1_764_500_000_123_456_789 + u64::from(i),
        protocol: 17,
        inside_ip: 0x6440_0000 + i,
        inside_port: 40_000,
        public_ip: 0xCB00_7107,
        public_port: 1024 + i as u16,
        dest_ip: if with_dest { 0xC633_6401 } else { 0 },
        dest_port: if with_dest { 443 } else { 0 },
        block_first: 0,
        block_last: 0,
        open_sessions: 0,
        last_active_ns: 0,
        refused: 0,
    };
    ExportEvent::from_record(0, &record).unwrap()
}

#[test]
fn templates_describe_every_field_with_its_length() {
    let stream = IpfixStream::new(7, 1400);
    let d = decode(&stream.templates(1000));
    assert_eq!((d.domain, d.sequence, d.export_secs), (7, 0, 1000));
    assert_eq!(d.sets.len(), 1);
    let (id, body) = &d.sets[0];
    assert_eq!(*id, TEMPLATE_SET_ID);
    let mut at = 0;
    for t in &TEMPLATES {
        let be16 = |p: usize| u16::from_be_bytes([body[p], body[p + 1]]);
        assert_eq!(be16(at), t.id);
        let count = be16(at + 2) as usize;
        let specs: Vec<(u16, u16)> = (0..count)
            .map(|k| (be16(at + 4 + 4 * k), be16(at + 6 + 4 * k)))
            .collect();
        assert_eq!(specs, t.field_specs().collect::<Vec<_>>());
        at += 4 + 4 * count;
    }
    assert_eq!(at, body.len());
}

#[test]
fn sequence_numbers_count_the_data_records_sent_before_each_message() {
    let mut stream = IpfixStream::new(1, 200);
    let mut done: Vec<Vec<u8>> = (0..50)
        .filter_map(|i| stream.push(&session(i, true), 5))
        .map(|f| f.bytes)
        .collect();
    done.extend(stream.finish(5).map(|f| f.bytes));
    assert!(done.len() > 1, "a 200-byte limit splits 50 records");
    let mut expected = 0;
    for message in &done {
        assert!(message.len() <= 200);
        let d = decode(message);
        assert_eq!(d.sequence, expected);
        let records: usize = d
            .sets
            .iter()
            .map(|(id, body)| {
                let t = TEMPLATES
                    .iter()
                    .find(|t| t.id == *id)
                    .expect("known template");
                assert_eq!(body.len() % t.record_len(), 0);
                body.len() / t.record_len()
            })
            .sum();
        expected += records as u32;
    }
    assert_eq!(expected, 50);
    assert_eq!(stream.sequence(), 50);
}

#[test]
fn a_record_carries_the_event_as_rfc_8158_encodes_it() {
    let mut stream = IpfixStream::new(1, 1400);
    let e = session(2, true);
    assert!(stream.push(&e, 5).is_none());
    let d = decode(&stream.finish(5).unwrap().bytes);
    let (id, body) = &d.sets[0];
    assert_eq!(*id, 256);
    let ms = e.record.ts_ns / 1_000_000;
    let mut expected = ms.to_be_bytes().to_vec();
    expected.push(4); // natEvent: NAT44 session create
    expected.push(17);
    expected.extend_from_slice(&[100, 64, 0, 2, 0x9c, 0x40]);
    expected.extend_from_slice(&[203, 0, 113, 7, 4, 2]);
    expected.extend_from_slice(&[198, 51, 100, 1, 1, 187]);
    assert_eq!(body, &expected);
    assert_eq!(d.length, MESSAGE_HEADER + SET_HEADER + expected.len());
}

#[test]
fn events_of_another_template_open_a_new_set_in_the_same_message() {
    let mut stream = IpfixStream::new(1, 1400);
    assert!(stream.push(&session(0, true), 5).is_none());
    assert!(stream.push(&session(1, false), 5).is_none());
    let block = ExportEvent::from_record(
        0,
        &Record {
            kind: RecordKind::BlockAllocated,
            block_first: 2048,
            block_last: 2111,
            ..session(0, false).record
        },
    )
    .unwrap();
    assert!(stream.push(&block, 5).is_none());
    assert!(stream.push(&session(2, true), 5).is_none());
    let finished = stream.finish(5).unwrap();
    assert_eq!(finished.records, 4);
    let d = decode(&finished.bytes);
    let ids: Vec<u16> = d.sets.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [256, 257, 258, 256]);
    let block_body = &d.sets[2].1;
    // …portRangeStart, portRangeEnd, step 1, 64 ports.
    assert_eq!(
        &block_body[block_body.len() - 8..],
        &[8, 0, 8, 63, 0, 1, 0, 64]
    );
}

#[test]
fn a_tiny_limit_still_fits_the_templates() {
    let stream = IpfixStream::new(1, 10);
    assert!(stream.templates(0).len() <= stream.max_message);
}
