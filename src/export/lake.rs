//! Parquet for the data lake: `tracenat log export --format parquet --out DIR`.
//!
//! Four Hive-partitioned tables, by day (UTC) and by box:
//!
//! ```text
//! DIR/events/day=2026-11-30/box=cgn-1/part-0.parquet     one row per logged event
//! DIR/sessions/day=2026-11-30/box=cgn-1/part-0.parquet   one row per session: start, end, endpoints
//! DIR/blocks/day=2026-11-30/box=cgn-1/part-0.parquet     one row per port block held
//! DIR/identities/day=2026-11-30/box=cgn-1/part-0.parquet one row per identity change
//! ```
//!
//! `events` is the log as rows. `sessions` pairs each creation with its end (or the end of
//! the run that held it), `blocks` each block allocation with its release: what an
//! attribution query joins requests against. The
//! columns and the queries that use them are in docs/export.md; scripts/lake/ holds the
//! attribution query for DuckDB and for Spark SQL.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::Type;

use super::event::ExportEvent;
use crate::identity::IdentityRecord;
use crate::maplog::record::{Record, RecordKind};
use crate::maplog::runs::RunEnd;
use crate::reader::logdir::{self, LogDir};
use crate::reader::time::TimeDisplay;

/// Rows per row group: large enough for good compression and few footers, small enough
/// that a partition's buffer stays a few tens of megabytes.
const ROW_GROUP: usize = 256 * 1024;
const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

const EVENTS: &str = "message event {
    required int64 ts_ns;
    required int64 time (TIMESTAMP(MICROS,true));
    required binary kind (STRING);
    required int32 nat_event;
    required int32 worker;
    required int32 protocol;
    required binary inside_ip (STRING);
    required int32 inside_port;
    optional binary public_ip (STRING);
    optional int32 public_port;
    optional binary dest_ip (STRING);
    optional int32 dest_port;
    optional int32 block_first;
    optional int32 block_last;
    optional int64 last_active_ns;
    optional int64 refused;
}";

const SESSIONS: &str = "message session {
    optional int64 start_ns;
    optional int64 end_ns;
    optional int64 last_active_ns;
    optional int64 start_time (TIMESTAMP(MICROS,true));
    optional int64 end_time (TIMESTAMP(MICROS,true));
    required binary end_reason (STRING);
    required int32 worker;
    required int32 protocol;
    required binary inside_ip (STRING);
    required int32 inside_port;
    required binary public_ip (STRING);
    required int32 public_port;
    optional binary dest_ip (STRING);
    optional int32 dest_port;
}";

const BLOCKS: &str = "message block {
    optional int64 start_ns;
    optional int64 end_ns;
    optional int64 start_time (TIMESTAMP(MICROS,true));
    optional int64 end_time (TIMESTAMP(MICROS,true));
    required binary end_reason (STRING);
    required int32 worker;
    required binary inside_ip (STRING);
    required binary public_ip (STRING);
    required int32 port_first;
    required int32 port_last;
}";

const IDENTITIES: &str = "message identity {
    required int64 ts_ns;
    required int64 time (TIMESTAMP(MICROS,true));
    required binary change (STRING);
    required binary source (STRING);
    optional binary inside_ip (STRING);
    required int64 learned_ns;
    optional int64 source_ns;
    optional int64 expires_ns;
    optional binary user (STRING);
    optional binary calling_station_id (STRING);
    optional binary nas_ip (STRING);
    optional binary nas_port_id (STRING);
    optional binary session_id (STRING);
    optional binary class (STRING);
    optional binary hw_addr (STRING);
    optional binary client_id (STRING);
    optional binary hostname (STRING);
    optional binary circuit_id (STRING);
    optional binary remote_id (STRING);
}";

fn identity_row(r: &IdentityRecord, texts: &mut Texts) -> Vec<Value> {
    let known = |ns: u64| (ns != 0).then_some(ns);
    let text = |v: &Option<String>| Value::Str(v.as_deref().map(ByteArray::from));
    let id = &r.identity;
    vec![
        nanos(Some(r.at_ns)),
        micros(Some(r.at_ns)),
        fixed(r.change.name()),
        fixed(r.source.name()),
        Value::Str(texts.ip(u32::from(r.inside_ip))),
        nanos(Some(r.learned_ns)),
        nanos(known(r.source_ns)),
        nanos(known(r.expires_ns)),
        text(&id.user),
        text(&id.calling_station_id),
        Value::Str(id.nas_ip.map(|a| texts.address(u32::from(a)))),
        text(&id.nas_port_id),
        text(&id.session_id),
        text(&id.class),
        text(&id.hw_addr),
        text(&id.client_id),
        text(&id.hostname),
        text(&id.circuit_id),
        text(&id.remote_id),
    ]
}

/// One cell.
#[derive(Debug, Clone)]
enum Value {
    I64(Option<i64>),
    I32(Option<i32>),
    Str(Option<ByteArray>),
}

/// A text that never changes (an event's kind, an end reason): shared, never copied.
fn fixed(text: &'static str) -> Value {
    Value::Str(Some(ByteArray::from(Bytes::from_static(text.as_bytes()))))
}

/// Bound on the addresses [`Texts`] keeps: a few tens of megabytes at most.
const TEXTS_KEPT: usize = 1 << 20;

/// Addresses as text cells, each built once and then shared by reference count: a CGN's
/// rows repeat a bounded set of inside and public addresses, and building every cell
/// afresh made the allocator the export's bottleneck.
#[derive(Default)]
struct Texts {
    addresses: HashMap<u32, ByteArray>,
}

impl Texts {
    fn address(&mut self, v: u32) -> ByteArray {
        if self.addresses.len() >= TEXTS_KEPT && !self.addresses.contains_key(&v) {
            self.addresses.clear();
        }
        self.addresses
            .entry(v)
            .or_insert_with(|| ByteArray::from(Bytes::from(dotted(v).into_bytes())))
            .clone()
    }

    /// An address, or null for 0.0.0.0 (none).
    fn ip(&mut self, v: u32) -> Option<ByteArray> {
        (v != 0).then(|| self.address(v))
    }
}

/// A dotted quad, built without the formatting machinery (a row has up to three).
fn dotted(v: u32) -> String {
    let mut text = String::with_capacity(15);
    for (i, octet) in v.to_be_bytes().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

fn port(p: u16, present: bool) -> Value {
    Value::I32(present.then_some(i32::from(p)))
}

fn micros(ns: Option<u64>) -> Value {
    Value::I64(ns.map(|ns| (ns / 1_000) as i64))
}

fn nanos(ns: Option<u64>) -> Value {
    Value::I64(ns.map(|ns| ns as i64))
}

fn event_row(e: &ExportEvent, texts: &mut Texts) -> Vec<Value> {
    let r = &e.record;
    let block = r.kind.has_block();
    let session = matches!(
        r.kind,
        RecordKind::SessionCreated | RecordKind::SessionEnded
    );
    vec![
        nanos(Some(r.ts_ns)),
        micros(Some(r.ts_ns)),
        fixed(r.kind.name()),
        Value::I32(Some(i32::from(e.event.code()))),
        Value::I32(Some(i32::from(e.worker))),
        Value::I32(Some(i32::from(r.protocol))),
        Value::Str(Some(texts.address(r.inside_ip))),
        Value::I32(Some(i32::from(r.inside_port))),
        Value::Str(texts.ip(r.public_ip)),
        port(r.public_port, session),
        Value::Str(texts.ip(r.dest_ip)),
        port(r.dest_port, r.dest_ip != 0),
        port(r.block_first, block),
        port(r.block_last, block),
        nanos((r.last_active_ns != 0).then_some(r.last_active_ns)),
        Value::I64(r.kind.is_refusal().then_some(i64::from(r.refused))),
    ]
}

/// A session (`sessions` table) or a port block (`blocks`) from its start to its end.
struct Session {
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    last_active_ns: Option<u64>,
    /// `logged` (its end is in the log), `run_end` (closed when its run ended) or `open`
    /// (still open at the end of the export's range).
    end_reason: &'static str,
    worker: u16,
    record: Record,
}

impl Session {
    fn is_block(&self) -> bool {
        self.record.kind.has_block()
    }

    fn row(&self, texts: &mut Texts) -> Vec<Value> {
        let r = &self.record;
        if self.is_block() {
            return vec![
                nanos(self.start_ns),
                nanos(self.end_ns),
                micros(self.start_ns),
                micros(self.end_ns),
                fixed(self.end_reason),
                Value::I32(Some(i32::from(self.worker))),
                Value::Str(Some(texts.address(r.inside_ip))),
                Value::Str(Some(texts.address(r.public_ip))),
                Value::I32(Some(i32::from(r.block_first))),
                Value::I32(Some(i32::from(r.block_last))),
            ];
        }
        vec![
            nanos(self.start_ns),
            nanos(self.end_ns),
            nanos(self.last_active_ns),
            micros(self.start_ns),
            micros(self.end_ns),
            fixed(self.end_reason),
            Value::I32(Some(i32::from(self.worker))),
            Value::I32(Some(i32::from(r.protocol))),
            Value::Str(Some(texts.address(r.inside_ip))),
            Value::I32(Some(i32::from(r.inside_port))),
            Value::Str(Some(texts.address(r.public_ip))),
            Value::I32(Some(i32::from(r.public_port))),
            Value::Str(texts.ip(r.dest_ip)),
            port(r.dest_port, r.dest_ip != 0),
        ]
    }

    /// The day it is filed under: its start's, or its end's when the start is unknown.
    fn day_ns(&self) -> u64 {
        self.start_ns.or(self.end_ns).unwrap_or(0)
    }
}

/// What identifies one session among the open ones: the endpoints it was logged with.
type SessionKey = (u8, u32, u16, u32, u16, u32, u16);

fn session_key(r: &Record) -> SessionKey {
    if r.kind.has_block() {
        // A block: its holder, address and range (protocol 0 keeps it apart from sessions).
        return (
            0,
            r.inside_ip,
            r.block_first,
            r.public_ip,
            r.block_last,
            0,
            0,
        );
    }
    (
        r.protocol,
        r.inside_ip,
        r.inside_port,
        r.public_ip,
        r.public_port,
        r.dest_ip,
        r.dest_port,
    )
}

/// Pairs one worker's creations with their ends, in time order.
#[derive(Default)]
struct Pairing {
    /// The oldest open session on each key: almost always the only one.
    open: hashbrown::HashMap<SessionKey, Record>,
    /// Younger sessions on a key that already has one open (its end was not logged before
    /// the next creation, e.g. across a crash), oldest first.
    younger: hashbrown::HashMap<SessionKey, VecDeque<Record>>,
}

impl Pairing {
    fn created(&mut self, r: &Record) {
        let key = session_key(r);
        match self.open.entry(key) {
            hashbrown::hash_map::Entry::Occupied(_) => {
                self.younger.entry(key).or_default().push_back(*r)
            }
            hashbrown::hash_map::Entry::Vacant(slot) => {
                slot.insert(*r);
            }
        }
    }

    /// The session `end` ends; a session started before the range when none is open.
    fn ended(&mut self, worker: u16, end: &Record) -> Session {
        let key = session_key(end);
        let start = self.open.remove(&key);
        if start.is_some()
            && let Some(queue) = self.younger.get_mut(&key)
        {
            if let Some(next) = queue.pop_front() {
                self.open.insert(key, next);
            }
            if queue.is_empty() {
                self.younger.remove(&key);
            }
        }
        Session {
            start_ns: start.map(|s| s.ts_ns),
            end_ns: Some(end.ts_ns),
            last_active_ns: (end.last_active_ns != 0).then_some(end.last_active_ns),
            end_reason: "logged",
            worker,
            record: *end,
        }
    }

    /// Every open session, closed at `at` for `reason` (`None`: left open).
    fn close_all(&mut self, worker: u16, at: Option<u64>, reason: &'static str) -> Vec<Session> {
        let younger = self.younger.drain().flat_map(|(_, starts)| starts);
        let mut sessions: Vec<Session> = self
            .open
            .drain()
            .map(|(_, start)| start)
            .chain(younger)
            .map(|s| Session {
                start_ns: Some(s.ts_ns),
                end_ns: at,
                last_active_ns: None,
                end_reason: reason,
                worker,
                record: s,
            })
            .collect();
        sessions.sort_by_key(|s| s.start_ns);
        sessions
    }
}

/// One column's cells waiting for the next row group: the values present, and a
/// definition level per row (1 present, 0 null; required columns ignore them).
struct ColumnBuf {
    defs: Vec<i16>,
    data: ColumnData,
}

enum ColumnData {
    I64(Vec<i64>),
    I32(Vec<i32>),
    Str(Vec<ByteArray>),
}

impl ColumnBuf {
    fn for_value(v: &Value) -> ColumnBuf {
        ColumnBuf {
            defs: Vec::new(),
            data: match v {
                Value::I64(_) => ColumnData::I64(Vec::new()),
                Value::I32(_) => ColumnData::I32(Vec::new()),
                Value::Str(_) => ColumnData::Str(Vec::new()),
            },
        }
    }

    fn push(&mut self, v: Value) {
        let present = match (v, &mut self.data) {
            (Value::I64(x), ColumnData::I64(values)) => x.map(|x| values.push(x)).is_some(),
            (Value::I32(x), ColumnData::I32(values)) => x.map(|x| values.push(x)).is_some(),
            (Value::Str(x), ColumnData::Str(values)) => x.map(|x| values.push(x)).is_some(),
            // Cannot happen: each row producer follows its table's schema, cell by cell.
            _ => false,
        };
        self.defs.push(i16::from(present));
    }

    fn write(
        &mut self,
        column: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    ) -> parquet::errors::Result<()> {
        let defs = Some(self.defs.as_slice());
        match &mut self.data {
            ColumnData::I64(v) => column.typed::<Int64Type>().write_batch(v, defs, None)?,
            ColumnData::I32(v) => column.typed::<Int32Type>().write_batch(v, defs, None)?,
            ColumnData::Str(v) => column.typed::<ByteArrayType>().write_batch(v, defs, None)?,
        };
        self.defs.clear();
        match &mut self.data {
            ColumnData::I64(v) => v.clear(),
            ColumnData::I32(v) => v.clear(),
            ColumnData::Str(v) => v.clear(),
        }
        Ok(())
    }
}

/// One open Parquet file (one table, one day) and the rows waiting for its next row group,
/// held column by column.
struct Partition {
    path: PathBuf,
    writer: SerializedFileWriter<File>,
    columns: Vec<ColumnBuf>,
    rows: usize,
}

impl Partition {
    fn create(path: PathBuf, schema: &Arc<Type>) -> io::Result<Partition> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer =
            SerializedFileWriter::new(File::create(&path)?, schema.clone(), Arc::new(props))
                .map_err(io::Error::other)?;
        Ok(Partition {
            path,
            writer,
            columns: Vec::new(),
            rows: 0,
        })
    }

    fn push(&mut self, row: Vec<Value>) -> io::Result<()> {
        if self.columns.is_empty() {
            self.columns = row.iter().map(ColumnBuf::for_value).collect();
        }
        for (column, value) in self.columns.iter_mut().zip(row) {
            column.push(value);
        }
        self.rows += 1;
        if self.rows >= ROW_GROUP {
            self.write_row_group()?;
        }
        Ok(())
    }

    /// Writes the waiting rows as one row group.
    fn write_row_group(&mut self) -> io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group().map_err(io::Error::other)?;
        let mut buffers = self.columns.iter_mut();
        while let Some(mut column) = group.next_column().map_err(io::Error::other)? {
            if let Some(buffer) = buffers.next() {
                buffer.write(&mut column).map_err(io::Error::other)?;
            }
            column.close().map_err(io::Error::other)?;
        }
        group.close().map_err(io::Error::other)?;
        self.rows = 0;
        Ok(())
    }

    fn close(mut self) -> io::Result<PathBuf> {
        self.write_row_group()?;
        self.writer.close().map_err(io::Error::other)?;
        Ok(self.path)
    }
}

/// Every table's open partitions.
struct Lake<'a> {
    dir: &'a Path,
    box_name: &'a str,
    schemas: [Arc<Type>; 4],
    /// (table index, UTC day number) → partition.
    partitions: BTreeMap<(usize, u64), Partition>,
    texts: Texts,
}

const TABLES: [&str; 4] = ["events", "sessions", "blocks", "identities"];

impl Lake<'_> {
    fn push(&mut self, table: usize, day_ns: u64, row: Vec<Value>) -> io::Result<()> {
        let key = (table, day_ns / NS_PER_DAY);
        if !self.partitions.contains_key(&key) {
            let partition = Partition::create(self.path(&key), &self.schemas[table])?;
            self.partitions.insert(key, partition);
        }
        match self.partitions.get_mut(&key) {
            Some(p) => p.push(row),
            None => Ok(()),
        }
    }

    /// Every table without rows gets an empty file on `day_ns`, so the layout (and the
    /// queries over it) never lack a table.
    fn complete(&mut self, day_ns: u64) -> io::Result<()> {
        for table in 0..TABLES.len() {
            if !self.partitions.keys().any(|&(t, _)| t == table) {
                let key = (table, day_ns / NS_PER_DAY);
                let partition = Partition::create(self.path(&key), &self.schemas[table])?;
                self.partitions.insert(key, partition);
            }
        }
        Ok(())
    }

    fn path(&self, &(table, day): &(usize, u64)) -> PathBuf {
        let day = &TimeDisplay::millis(day * NS_PER_DAY).to_string()[..10];
        self.dir
            .join(TABLES[table])
            .join(format!("day={day}"))
            .join(format!("box={}", self.box_name))
            .join("part-0.parquet")
    }

    fn session(&mut self, s: &Session) -> io::Result<()> {
        let row = s.row(&mut self.texts);
        self.push(if s.is_block() { 2 } else { 1 }, s.day_ns(), row)
    }
}

#[derive(Debug, Default)]
pub struct LakeReport {
    pub events: u64,
    /// Rows of `sessions` and `blocks`.
    pub sessions: u64,
    pub identities: u64,
    pub files: Vec<PathBuf>,
    pub bad_blocks: Vec<String>,
}

pub use crate::config::valid_box_name;

/// After a worker's last record: what it still holds ended with its run, if the run has
/// ended since; otherwise it is still open (at the end of the range, or now).
fn finish_worker(
    lake: &mut Lake,
    report: &mut LakeReport,
    worker: u16,
    mut pairing: Pairing,
    run_end: Option<&RunEnd>,
) -> io::Result<()> {
    let (at, reason) = match run_end {
        Some(end) => (Some(end.at_ns), "run_end"),
        None => (None, "open"),
    };
    for s in pairing.close_all(worker, at, reason) {
        lake.session(&s)?;
        report.sessions += 1;
    }
    Ok(())
}

/// Writes the events and identities of `log` in `[from_ns, to_ns]` as the four tables
/// under `dir`.
pub fn export(
    log: &LogDir,
    dir: &Path,
    box_name: &str,
    from_ns: u64,
    to_ns: u64,
) -> io::Result<LakeReport> {
    if !valid_box_name(box_name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("box name {box_name:?}: use letters, digits, '-', '_' and '.'"),
        ));
    }
    let parse = |text| {
        parse_message_type(text)
            .map(Arc::new)
            .map_err(io::Error::other)
    };
    let mut lake = Lake {
        dir,
        box_name,
        schemas: [
            parse(EVENTS)?,
            parse(SESSIONS)?,
            parse(BLOCKS)?,
            parse(IDENTITIES)?,
        ],
        partitions: BTreeMap::new(),
        texts: Texts::default(),
    };
    let mut report = LakeReport::default();
    let mut failed: io::Result<()> = Ok(());
    let ends: HashMap<u16, &[RunEnd]> = log
        .workers
        .iter()
        .map(|w| (w.worker, w.run_ends.as_slice()))
        .collect();
    let mut current: Option<(u16, Pairing, usize)> = None;
    let mut bad_blocks = Vec::new();
    let run_ends = |worker: u16| ends.get(&worker).copied().unwrap_or_default();
    logdir::for_each_record(
        log,
        from_ns,
        to_ns,
        |worker, r| {
            if failed.is_err() {
                return;
            }
            let Some(e) = ExportEvent::from_record(worker, r) else {
                return;
            };
            // Records come worker by worker: a new worker finishes the previous one.
            if let Some((w, pairing, next_end)) = current.take_if(|(w, _, _)| *w != worker) {
                failed = finish_worker(
                    &mut lake,
                    &mut report,
                    w,
                    pairing,
                    run_ends(w).get(next_end),
                );
            }
            let (_, pairing, next_end) =
                current.get_or_insert_with(|| (worker, Pairing::default(), 0));
            failed = (|| {
                // Runs that ended before this record close what they held.
                while let Some(end) = run_ends(worker)
                    .get(*next_end)
                    .filter(|end| end.at_ns < r.ts_ns)
                {
                    for s in pairing.close_all(worker, Some(end.at_ns), "run_end") {
                        lake.session(&s)?;
                        report.sessions += 1;
                    }
                    *next_end += 1;
                }
                let row = event_row(&e, &mut lake.texts);
                lake.push(0, r.ts_ns, row)?;
                report.events += 1;
                match r.kind {
                    RecordKind::SessionCreated | RecordKind::BlockAllocated => pairing.created(r),
                    RecordKind::SessionEnded | RecordKind::BlockReleased => {
                        let s = pairing.ended(worker, r);
                        lake.session(&s)?;
                        report.sessions += 1;
                    }
                    _ => {}
                }
                Ok(())
            })();
        },
        |seg, b, e| bad_blocks.push(logdir::describe_bad_block(seg, b, &e)),
    );
    std::mem::replace(&mut failed, Ok(()))?;
    logdir::for_each_identity(
        log,
        from_ns,
        to_ns,
        |r| {
            if failed.is_ok() {
                let row = identity_row(r, &mut lake.texts);
                failed = lake.push(3, r.at_ns, row);
                report.identities += 1;
            }
        },
        |seg, b, e| bad_blocks.push(logdir::describe_bad_block(seg, b, &e)),
    );
    failed?;
    report.bad_blocks = bad_blocks;
    if let Some((w, pairing, next_end)) = current.take() {
        finish_worker(
            &mut lake,
            &mut report,
            w,
            pairing,
            run_ends(w).get(next_end),
        )?;
    }
    if let Some(day) = lake.partitions.keys().map(|&(_, day)| day).min() {
        lake.complete(day * NS_PER_DAY)?;
    }
    for (_, partition) in std::mem::take(&mut lake.partitions) {
        report.files.push(partition.close()?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quads_match_the_standard_format() {
        for v in [0u32, 1, 0x6440_0001, 0xCB00_7107, 0xFFFF_FFFF, 0x0A09_6364] {
            assert_eq!(dotted(v), std::net::Ipv4Addr::from(v).to_string());
        }
    }
}
