//! Who the customer is: which subscriber identity held an inside address, and when.
//!
//! Sources (RADIUS accounting, DHCP lease files) turn what they hear into
//! [`IdentityRecord`]s and hand them to an [`IdentitySink`] — in `tracenat run` the
//! identity chain of the mapping log (`maplog::identity`), which stores them with the same
//! blocks, CRCs, hash chain, rotation and retention as the mappings. The reader
//! (`reader::identity`) answers "who held 100.64.1.1 at T" from that chain.

pub mod lease;
pub mod model;
pub mod radius;

pub use model::{Change, Identity, IdentityRecord, IdentitySink, MemorySink, Source};
