//! Export: the mapping log's events in the formats operators' collectors already read.
//!
//! `event` turns a log record into a NAT event as RFC 8158 names it; `ipfix` encodes those
//! events as IPFIX messages (RFC 7011), `syslog` as RFC 5424 lines; `sender` carries
//! either to collectors over UDP or TCP, or into a file; `live` is the second consumer of
//! a running NAT's records, fed by the mapping-log writer after each block is written, so
//! that export never slows translation or the durable log (when it cannot keep up, it
//! drops and counts). `offline` reads a log directory back out through the same encoders;
//! `lake` writes it as Parquet tables (events, sessions, port blocks) for DuckDB and Spark.
//!
//! The durable log stays the record of truth: export is a copy, best effort on the wire,
//! exact when nothing is dropped.

pub mod event;
pub mod ipfix;
pub mod lake;
pub mod live;
pub mod offline;
pub mod output;
pub mod sender;
pub mod syslog;

pub use event::{ExportEvent, NatEvent};
