//! The mapping log: every engine event stored compactly, durably and verifiably.
//! The format is specified in docs/mapping-log.md.

pub mod clock;
pub mod io;
