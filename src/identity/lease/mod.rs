//! DHCP lease files and RADIUS `detail` files as identity sources: parsers that turn what
//! the files say into identity records, a [`Follower`] that tails a live lease file, and
//! [`import`] for files read after the fact. docs/identity-sources.md describes the formats.

pub mod detail;
pub mod follow;
pub mod isc;
pub mod kea;
mod text;
mod tracker;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::{Identity, IdentityRecord, IdentitySink, Source};

pub use follow::{Follower, PollReport};
pub use tracker::LeaseTracker;

/// The file formats `tracenat identity import --format` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum LeaseFormat {
    /// Kea DHCPv4 memfile lease file (CSV).
    KeaCsv,
    /// ISC dhcpd `dhcpd.leases`.
    IscDhcpd,
    /// FreeRADIUS `detail` accounting file.
    RadiusDetail,
}

impl LeaseFormat {
    pub const ALL: [LeaseFormat; 3] = [
        LeaseFormat::KeaCsv,
        LeaseFormat::IscDhcpd,
        LeaseFormat::RadiusDetail,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LeaseFormat::KeaCsv => "kea-csv",
            LeaseFormat::IscDhcpd => "isc-dhcpd",
            LeaseFormat::RadiusDetail => "radius-detail",
        }
    }

    pub fn source(self) -> Source {
        match self {
            LeaseFormat::KeaCsv => Source::KeaLease,
            LeaseFormat::IscDhcpd => Source::IscLease,
            LeaseFormat::RadiusDetail => Source::RadiusDetail,
        }
    }
}

impl fmt::Display for LeaseFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LeaseFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LeaseFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown lease format {s:?} (kea-csv, isc-dhcpd, radius-detail)")
            })
    }
}

/// What a lease file says about one address at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    pub inside_ip: Ipv4Addr,
    pub identity: Identity,
    /// The lease is held (granted or renewed); otherwise it ended.
    pub held: bool,
    /// Client last transaction time: when the lease was granted or last renewed (ns).
    pub cltt_ns: u64,
    /// When the lease lapses unless renewed; 0 if never.
    pub expires_ns: u64,
    /// For an ended lease, when it ended, if the file says; `None` when the file only says
    /// that it was removed (Kea writes no release time).
    pub ended_ns: Option<u64>,
}

/// What one line, block or record of a source file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A lease's state, to be turned into a record by a [`LeaseTracker`].
    Lease(LeaseState),
    /// A record complete in itself (RADIUS accounting); `learned_ns` is filled in later.
    Record(IdentityRecord),
    /// Understood but says nothing about who held an address (a header, a declined lease,
    /// a `host` block); counted when `counted` is set.
    Ignored { counted: bool },
    /// Not understood: skipped, with why.
    Skipped(String),
}

impl Parsed {
    pub(crate) fn skipped(why: impl Into<String>) -> Parsed {
        Parsed::Skipped(why.into())
    }
}

/// One skipped line, block or record: where it began and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub line: u64,
    pub reason: String,
}

/// How many reasons a report keeps; the count goes on.
pub const MAX_SKIP_REASONS: usize = 8;

/// What reading (part of) a source produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records handed to the sink.
    pub records: u64,
    /// Of those, how many the sink stored as new.
    pub new: u64,
    /// Lease states that repeat what was already said for the address (a file read again).
    pub unchanged: u64,
    /// Understood but not an identity change (declined, abandoned, backup, other
    /// accounting types).
    pub ignored: u64,
    /// Not understood.
    pub skipped: u64,
    /// The first few skips.
    pub first_skips: Vec<Skip>,
}

impl Counts {
    pub(crate) fn skip(&mut self, line: u64, reason: String) {
        self.skipped += 1;
        if self.first_skips.len() < MAX_SKIP_REASONS {
            self.first_skips.push(Skip { line, reason });
        }
    }

    pub(crate) fn add(&mut self, other: &Counts) {
        self.records += other.records;
        self.new += other.new;
        self.unchanged += other.unchanged;
        self.ignored += other.ignored;
        for s in &other.first_skips {
            if self.first_skips.len() < MAX_SKIP_REASONS {
                self.first_skips.push(s.clone());
            }
        }
        self.skipped += other.skipped;
    }
}

/// What an import read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub format: LeaseFormat,
    pub counts: Counts,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the {format} file: {source}")]
    Read {
        format: LeaseFormat,
        source: io::Error,
    },
    #[error("storing identity records: {0}")]
    Sink(io::Error),
}

/// Reads a whole file of `format` and hands its records to `sink`, learned at `now_ns`.
/// Leases are turned into records as a [`Follower`] would, from the first line on.
pub fn import(
    format: LeaseFormat,
    mut reader: impl Read,
    sink: &mut dyn IdentitySink,
    now_ns: u64,
) -> Result<ImportReport, ImportError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|source| ImportError::Read { format, source })?;
    let mut feeder = Feeder::new(format);
    let mut tracker = LeaseTracker::new(format.source());
    let mut counts = Counts::default();
    // No live clock: an import learns of everything after the fact.
    let records = feeder.feed(&bytes, true, &mut tracker, None, &mut counts);
    hand_to_sink(sink, &records, now_ns, &mut counts).map_err(ImportError::Sink)?;
    Ok(ImportReport { format, counts })
}

/// Stamps `learned_ns` and commits; counts what the sink took as new.
pub(crate) fn hand_to_sink(
    sink: &mut dyn IdentitySink,
    records: &[IdentityRecord],
    now_ns: u64,
    counts: &mut Counts,
) -> io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let stamped: Vec<IdentityRecord> = records
        .iter()
        .cloned()
        .map(|mut r| {
            r.learned_ns = now_ns;
            r
        })
        .collect();
    let new = sink.commit(&stamped)?;
    counts.records += stamped.len() as u64;
    counts.new += new as u64;
    Ok(())
}

fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// One of the three parsers, fed bytes as they arrive.
#[derive(Debug)]
pub(crate) enum AnyParser {
    Kea(kea::KeaParser),
    Isc(isc::IscParser),
    Detail(detail::DetailParser),
}

/// Cuts bytes into the units a format is made of (lines, blocks, records) and parses each
/// complete one; keeps line numbers for skip reasons.
#[derive(Debug)]
pub(crate) struct Feeder {
    parser: AnyParser,
    /// The line the next unit begins on (1-based).
    pub(crate) line: u64,
}

impl Feeder {
    pub(crate) fn new(format: LeaseFormat) -> Feeder {
        let parser = match format {
            LeaseFormat::KeaCsv => AnyParser::Kea(kea::KeaParser::new()),
            LeaseFormat::IscDhcpd => AnyParser::Isc(isc::IscParser::new()),
            LeaseFormat::RadiusDetail => AnyParser::Detail(detail::DetailParser::new()),
        };
        Feeder { parser, line: 1 }
    }

    /// A new file begins: line 1, and the Kea header must be read again.
    pub(crate) fn restart(&mut self) {
        if let AnyParser::Kea(k) = &mut self.parser {
            *k = kea::KeaParser::new();
        }
        self.line = 1;
    }

    /// Parses the complete units at the front of `buf` (all of it when `at_eof`) and
    /// returns the records they make and how many bytes were used.
    pub(crate) fn feed_prefix(
        &mut self,
        buf: &[u8],
        at_eof: bool,
        tracker: &mut LeaseTracker,
        live_now: Option<u64>,
        counts: &mut Counts,
    ) -> (Vec<IdentityRecord>, usize) {
        let mut records = Vec::new();
        let mut used = 0;
        while used < buf.len() {
            let rest = &buf[used..];
            let len = match self.unit_len(rest) {
                Some(len) => len,
                None if at_eof => rest.len(),
                None => break,
            };
            let unit = String::from_utf8_lossy(&rest[..len]);
            let parsed = self.parse_unit(&unit);
            // A unit may begin with the line end of the one before: report the line its
            // text begins on.
            let text_at = rest[..len]
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(0);
            let line = self.line + newlines(&rest[..text_at]);
            self.line += newlines(&rest[..len]);
            used += len;
            match parsed {
                None => {}
                // A holding of nobody in particular would answer "who?" with nothing.
                Some(Parsed::Lease(state)) if state.held && state.identity.is_empty() => {
                    counts.skip(line, format!("lease of {} names no one", state.inside_ip));
                }
                Some(Parsed::Lease(state)) => {
                    if let Some(r) = tracker.observe(state, live_now, counts) {
                        records.push(r);
                    }
                }
                Some(Parsed::Record(r)) => records.push(r),
                Some(Parsed::Ignored { counted }) => counts.ignored += counted as u64,
                Some(Parsed::Skipped(why)) => counts.skip(line, why),
            }
        }
        (records, used)
    }

    /// Parses all of `bytes` (for an import).
    fn feed(
        &mut self,
        bytes: &[u8],
        at_eof: bool,
        tracker: &mut LeaseTracker,
        live_now: Option<u64>,
        counts: &mut Counts,
    ) -> Vec<IdentityRecord> {
        self.feed_prefix(bytes, at_eof, tracker, live_now, counts).0
    }

    fn unit_len(&self, buf: &[u8]) -> Option<usize> {
        match &self.parser {
            AnyParser::Kea(_) => memchr::memchr(b'\n', buf).map(|i| i + 1),
            AnyParser::Isc(_) => isc::unit_len(buf),
            AnyParser::Detail(_) => detail::unit_len(buf),
        }
    }

    /// `None` for a unit that is only white space.
    fn parse_unit(&mut self, unit: &str) -> Option<Parsed> {
        match &mut self.parser {
            AnyParser::Kea(k) => k.parse_line(unit.trim_end_matches(['\n', '\r'])),
            AnyParser::Isc(p) => p.parse_unit(unit),
            AnyParser::Detail(p) => p.parse_record(unit),
        }
    }
}

/// The entry point shared by the fuzzer (`fuzz/fuzz_targets/leases.rs`) and the property
/// tests: arbitrary bytes as each format. Panics only when an invariant breaks: a record
/// that is not well formed, or bytes fed in two pieces (as a follower reads a file being
/// written) reading otherwise than fed at once.
pub fn fuzz_bytes(data: &[u8]) {
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    for format in LeaseFormat::ALL {
        let whole = feed_in_pieces(format, data, data.len());
        let pieces = feed_in_pieces(format, data, split);
        assert_eq!(whole, pieces, "{format}: split at {split}");
        for r in &whole.0 {
            assert!(well_formed(r, format), "{format}: {r:?}");
        }
    }
}

fn feed_in_pieces(format: LeaseFormat, data: &[u8], split: usize) -> (Vec<IdentityRecord>, Counts) {
    let mut feeder = Feeder::new(format);
    let mut tracker = LeaseTracker::new(format.source());
    let mut counts = Counts::default();
    let (mut records, used) =
        feeder.feed_prefix(&data[..split], false, &mut tracker, None, &mut counts);
    let rest = &data[used..];
    records.extend(feeder.feed(rest, true, &mut tracker, None, &mut counts));
    (records, counts)
}

/// What every record from a file must be: from the format's source, located (an inside
/// address, or for a NAS reset the NAS), naming someone.
pub(crate) fn well_formed(r: &IdentityRecord, format: LeaseFormat) -> bool {
    use super::Change;
    let located = match r.change {
        Change::NasReset => r.inside_ip.is_unspecified() && r.identity.nas_ip.is_some(),
        Change::Live => false,
        _ => !r.inside_ip.is_unspecified(),
    };
    located && r.source == format.source() && !r.identity.is_empty()
}
