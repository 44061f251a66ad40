//! The AF_XDP dataplane: the engine on the wire.
//!
//! `xdp` (sockets, UMEM, the steering program) → `worker` (one pinned thread per queue:
//! receive a batch, translate in place, send out of the other side) with `handoff` rings
//! for frames another worker owns, `neigh` for next-hop MACs and `idle` for what a worker
//! does between frames; `run` sets it all up and drives the control loop; `metrics` is
//! what the operator sees while it runs.

pub mod handoff;
pub mod identity_sources;
pub mod idle;
pub mod metrics;
pub mod neigh;
pub mod privileges;
pub mod run;
pub mod worker;
pub mod xdp;
