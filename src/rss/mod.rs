//! Receive-side scaling (RSS) alignment: make the NIC deliver every packet to the RX queue
//! of the worker that owns its state, so workers share nothing and take no locks.
//!
//! **What it buys.** Each worker has its own session tables and its own share of the public
//! (address, port) pairs. An outbound packet must reach the worker that serves its
//! subscriber; a return packet must reach the worker that owns its public port. When the
//! NIC already delivers it there, the packet is handled where it lands; otherwise the
//! receiving worker must pass it to the owner over a handoff ring — a cache-line transfer
//! and a queue per packet, the cost this module removes.
//!
//! **How.** A NIC picks the queue as `indirection[toeplitz(key, header fields) % size]`
//! ([`toeplitz`], verified against Microsoft's RSS verification suite). The Toeplitz hash is
//! linear, and output bit `j` depends on input bit `i` only through key bit `i + j`; clearing
//! the right key bits takes chosen fields out of the low hash bits the indirection reads
//! ([`steer`] derives which):
//! * the *outside* key makes the queue of a return packet depend only on the public
//!   address and the high bits of the public port — not on the remote end — so the pool
//!   is split by computing, once, the queue of every (public address, port)
//!   ([`partitions`]); aligned blocks of `2^n` ports stay on one queue, for port-block
//!   allocation;
//! * the *inside* key makes the queue of an outbound packet depend only on the subscriber
//!   address ([`subscriber_queue`]).
//!
//! The two sides need different keys (proved in [`steer`]); each NIC port takes its own
//! key. [`plan`] prints the `ethtool`, IRQ-affinity and busy-poll commands from the NIC
//! profiles in `hw/`. Where nothing can be steered (veth, fixed keys), [`partitions`]
//! refuses with [`RssError::NotAligned`] and the dataplane relies on handoff rings.

pub mod partition;
pub mod plan;
pub mod steer;
pub mod toeplitz;

pub use plan::{Design, PlanError, Profile, format_hkey, parse_hkey, plan, plan_design};
pub use steer::{
    Field, Flow, HashFields, RssError, RssSpec, Side, engineered_key, owner_of_public, partitions,
    subscriber_queue,
};
pub use toeplitz::{MICROSOFT_KEY, Table, hash, hash_ipv4, hash_ipv4_ports};
