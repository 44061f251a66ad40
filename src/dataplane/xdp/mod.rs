//! AF_XDP in pure Rust over raw syscalls: the XDP steering program and its XSKMAP
//! (`bpf`), and sockets, UMEM, rings and the frame pool (`xsk`).

pub mod bpf;
pub mod xsk;
