//! Following a lease file as the DHCP server writes it: appended to, and now and then
//! replaced whole (Kea's LFC and dhcpd both write a new file and rename it over the old).

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Counts, Feeder, LeaseFormat, LeaseTracker, hand_to_sink};
use crate::identity::IdentitySink;

/// What one poll found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub counts: Counts,
    /// The file was replaced (renamed over) or truncated and read again from its start.
    pub reread: bool,
    /// The file is not there (the error was returned once, when it went missing).
    pub missing: bool,
}

/// The file being read: which one (device, inode) and how far.
#[derive(Debug)]
struct Open {
    file: File,
    id: (u64, u64),
    offset: u64,
}

/// Tails one lease file; see [`Follower::poll`].
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    format: LeaseFormat,
    feeder: Feeder,
    tracker: LeaseTracker,
    open: Option<Open>,
    /// Bytes read but not yet a complete line or block.
    pending: Vec<u8>,
    /// Said once that the file is missing; quiet until it is back.
    missing_said: bool,
}

fn file_id(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Follower {
    pub fn new(path: impl Into<PathBuf>, format: LeaseFormat) -> Follower {
        Follower {
            path: path.into(),
            format,
            feeder: Feeder::new(format),
            tracker: LeaseTracker::new(format.source()),
            open: None,
            pending: Vec::new(),
            missing_said: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> LeaseFormat {
        self.format
    }

    /// Reads what was written since the last poll and hands the changes it makes to
    /// `sink`, learned at `now_ns`. Only complete lines (blocks) are read; a partial one
    /// waits for the next poll. A replaced or truncated file is read again from its start,
    /// saying nothing again for leases that did not change. A missing file is an error
    /// once, then a report with `missing` set until it is back.
    pub fn poll(&mut self, sink: &mut dyn IdentitySink, now_ns: u64) -> io::Result<PollReport> {
        let mut report = PollReport::default();
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.context(e)),
        };
        let replaced = match (&self.open, &current) {
            (Some(open), Some(meta)) => open.id != file_id(meta) || meta.len() < open.offset,
            _ => false,
        };
        if self.open.is_some() && (replaced || current.is_none()) {
            // The old file may have had lines added after we last looked: read them first.
            self.read_available(sink, now_ns, &mut report)?;
            self.close(&mut report.counts);
        }
        let Some(meta) = current else {
            report.missing = true;
            if self.missing_said {
                return Ok(report);
            }
            self.missing_said = true;
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "lease file {} is missing; still looking for it",
                    self.path.display()
                ),
            ));
        };
        self.missing_said = false;
        if self.open.is_none() {
            self.open_file(&meta)?;
            report.reread = replaced;
        }
        self.read_available(sink, now_ns, &mut report)?;
        Ok(report)
    }

    fn context(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("lease file {}: {e}", self.path.display()))
    }

    fn open_file(&mut self, meta: &Metadata) -> io::Result<()> {
        let file = File::open(&self.path).map_err(|e| self.context(e))?;
        // The inode of the file actually opened, in case it was replaced since the stat.
        let id = file
            .metadata()
            .map(|m| file_id(&m))
            .unwrap_or(file_id(meta));
        self.open = Some(Open {
            file,
            id,
            offset: 0,
        });
        self.feeder.restart();
        Ok(())
    }

    /// Forgets the file being read; a partial last line in it will never be completed.
    fn close(&mut self, counts: &mut Counts) {
        if self.pending.iter().any(|b| !b.is_ascii_whitespace()) {
            let line = self.feeder_line();
            counts.skip(
                line,
                "incomplete at the end of a file that was replaced".into(),
            );
        }
        self.pending.clear();
        self.open = None;
    }

    fn feeder_line(&self) -> u64 {
        self.feeder.line
    }

    /// Reads from where we were to the end of the file and parses what is complete.
    fn read_available(
        &mut self,
        sink: &mut dyn IdentitySink,
        now_ns: u64,
        report: &mut PollReport,
    ) -> io::Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let mut fresh = Vec::new();
        open.file.seek(SeekFrom::Start(open.offset))?;
        open.file.read_to_end(&mut fresh)?;
        open.offset += fresh.len() as u64;
        self.pending.extend_from_slice(&fresh);
        let mut counts = Counts::default();
        let (records, used) = self.feeder.feed_prefix(
            &self.pending,
            false,
            &mut self.tracker,
            Some(now_ns),
            &mut counts,
        );
        self.pending.drain(..used);
        hand_to_sink(sink, &records, now_ns, &mut counts).map_err(|e| self.context(e))?;
        report.counts.add(&counts);
        Ok(())
    }
}
