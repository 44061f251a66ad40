//! The mapping log: every engine event stored compactly, durably and verifiably.
//! The format is specified in docs/mapping-log.md.
//!
//! `record` (what is stored) → `block` (columns, compression, CRC, hash chain) → `segment`
//! (files of blocks with an index) → `dir` (the directory layout) → `writer` (producers,
//! rings, the writer thread, rotation, retention) over `io` (io_uring) and `clock`.
//! `chain` is one chain of segments on disk (recovery, rotation, retention) that both the
//! workers' logs and `identity_log` (the identity chain, `identity_block` its payload) own;
//! `settings` is how the log is written. `live` keeps the checkpoint each segment starts with; `runs` records where each run of
//! the NAT began and ended, and `tail` reads what the previous run left (ports to rest).

pub mod block;
mod chain;
pub mod clock;
pub mod dir;
pub mod identity_block;
pub mod identity_log;
pub mod io;
pub mod live;
pub mod record;
pub mod runs;
pub mod segment;
pub mod settings;
pub mod tail;
pub mod writer;
