//! tracenat: a carrier-grade NAT44 that keeps a verifiable record of every mapping.
//!
//! Data flows one way through the modules:
//! `wire` (zero-copy packet views) → `engine` (translation, ports, timers, events)
//! → `replay` / dataplane (drivers that feed packets and a clock) → mapping log → reader
//! → `export` (IPFIX and syslog; live, the log's writer feeds it through `RecordTap`, a
//! trait the log defines, so the log never imports it).
//! `config` is read once at start-up and turned into the engine's typed settings.

pub mod config;
pub mod dataplane;
pub mod demo;
pub mod engine;
pub mod export;
pub mod fuzzing;
pub mod generator;
pub mod identity;
pub mod lab;
pub mod maplog;
pub mod pcap;
pub mod reader;
pub mod replay;
pub mod rng;
pub mod rss;
pub mod wire;
pub mod workload;
