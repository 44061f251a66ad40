//! The reader: answers "who had public IP[:port] at time T" from a mapping log.
//!
//! `model` holds the question and answer types every part shares; `time` parses the
//! timestamps operators paste; `access_log` reads servers' logs; `attribute` runs a whole
//! access log through a [`model::MappingSource`]; `query` is that source over a log
//! directory, following endpoints with `tracker` (and its `dest_index` for port-less
//! questions).
//! Around `attribute`: `input` reads access logs in bounded chunks, `actor` and `correlate`
//! group requests by the actor they name and intersect their candidates, `offset` and
//! `server_clock` measure and apply the server's clock, `fuzz` drives arbitrary bytes
//! through all of it.

pub mod access_log;
pub mod actor;
pub mod attribute;
pub mod correlate;
mod dest_index;
pub mod fleet;
pub mod fuzz;
pub mod identity;
pub mod input;
pub mod logdir;
pub mod model;
pub mod offset;
pub mod query;
pub mod server_clock;
pub mod time;
mod tracker;

/// Why a reader command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Log(String),
    #[error("{0}")]
    Usage(String),
}
