//! One export destination: events in, framed messages out, every record counted as sent
//! or lost. Live export and `tracenat log export` drive the same [`Output`].

use std::collections::BTreeMap;
use std::io;

use super::event::ExportEvent;
use super::ipfix::{Finished, IpfixStream};
use super::sender::Sender;
use super::syslog::{self, SyslogFormat};

/// The largest IPFIX message sent over UDP: a 1500-byte MTU less IPv4 and UDP headers,
/// with room for tunnels on the way.
pub const UDP_MAX_MESSAGE: usize = 1400;

#[derive(Debug, Clone)]
pub enum Format {
    /// IPFIX; observation domain = `domain_base + worker`.
    Ipfix {
        domain_base: u32,
    },
    Syslog(SyslogFormat),
}

/// Records sent and lost, and the last error, for one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub lost: u64,
    pub messages: u64,
    pub bytes: u64,
    pub last_error: Option<String>,
}

pub struct Output {
    pub name: String,
    format: Format,
    sender: Sender,
    /// IPFIX: one stream per observation domain, opened at its first event.
    streams: BTreeMap<u32, IpfixStream>,
    pub tally: Tally,
    /// A file: what was written into its buffer since the last flush that reached the
    /// disk. Counted sent only once a flush succeeds, lost if a write or the flush fails
    /// (a full disk fails the flush, not the buffered write).
    unconfirmed: Tally,
    /// A file that failed once: what comes after is counted lost, not written, so the file
    /// holds only what was counted sent (and no message cut in two is completed later).
    broken: bool,
}

impl Output {
    pub fn new(name: String, format: Format, sender: Sender) -> Output {
        Output {
            name,
            format,
            sender,
            streams: BTreeMap::new(),
            tally: Tally::default(),
            unconfirmed: Tally::default(),
            broken: false,
        }
    }

    /// Formats and sends one event (IPFIX packs events into messages: sent when full or
    /// at [`Output::flush`]).
    pub fn export(&mut self, e: &ExportEvent, now_secs: u32) {
        match &self.format {
            Format::Syslog(format) => {
                let message = format.message(e);
                let framed = match &self.sender {
                    Sender::Udp { .. } => message.into_bytes(),
                    Sender::Tcp { .. } => syslog::octet_counted(&message),
                    Sender::File { .. } => {
                        let mut line = message.into_bytes();
                        line.push(b'\n');
                        line
                    }
                };
                self.send(&framed, 1);
            }
            Format::Ipfix { domain_base } => {
                let domain = domain_base.wrapping_add(u32::from(e.worker));
                let datagram = self.sender.is_datagram();
                let mut opened = None;
                let stream = self.streams.entry(domain).or_insert_with(|| {
                    let max = if datagram {
                        UDP_MAX_MESSAGE
                    } else {
                        super::ipfix::MAX_MESSAGE
                    };
                    let stream = IpfixStream::new(domain, max);
                    opened = Some(stream.templates(now_secs));
                    stream
                });
                let finished = stream.push(e, now_secs);
                if let Some(templates) = opened {
                    self.send(&templates, 0);
                }
                if let Some(Finished { bytes, records }) = finished {
                    self.send(&bytes, records);
                }
            }
        }
    }

    /// Sends every message still being built, and flushes a file.
    pub fn flush(&mut self, now_secs: u32) {
        let finished: Vec<Finished> = self
            .streams
            .values_mut()
            .filter_map(|s| s.finish(now_secs))
            .collect();
        for f in finished {
            self.send(&f.bytes, f.records);
        }
        if self.broken {
            return;
        }
        let flushed = self.sender.flush();
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        match flushed {
            Ok(()) => {
                self.tally.sent += unconfirmed.sent;
                self.tally.messages += unconfirmed.messages;
                self.tally.bytes += unconfirmed.bytes;
            }
            Err(e) => {
                self.tally.lost += unconfirmed.sent;
                self.break_file(&e);
            }
        }
    }

    /// IPFIX over UDP: templates again, for collectors that started after this exporter
    /// or lost them (RFC 7011 section 8.4).
    pub fn refresh_templates(&mut self, now_secs: u32) {
        if !self.sender.is_datagram() {
            return;
        }
        let templates: Vec<Vec<u8>> = self
            .streams
            .values()
            .map(|s| s.templates(now_secs))
            .collect();
        for t in templates {
            self.send(&t, 0);
        }
    }

    fn send(&mut self, message: &[u8], records: u32) {
        if self.broken {
            self.tally.lost += u64::from(records);
            return;
        }
        let buffered = self.sender.is_buffered();
        match self.sender.send(message) {
            Ok(()) => {
                let count = if buffered {
                    &mut self.unconfirmed
                } else {
                    &mut self.tally
                };
                count.sent += u64::from(records);
                count.messages += 1;
                count.bytes += message.len() as u64;
            }
            Err(e) => {
                // A buffered write that fails may have taken the buffer's earlier
                // messages with it.
                let earlier = std::mem::take(&mut self.unconfirmed).sent;
                self.tally.lost += u64::from(records) + earlier;
                if buffered {
                    self.break_file(&e);
                } else {
                    self.note_error(&e);
                }
            }
        }
    }

    fn break_file(&mut self, e: &io::Error) {
        self.broken = true;
        self.sender.discard_buffered();
        self.note_error(e);
    }

    fn note_error(&mut self, e: &io::Error) {
        self.tally.last_error = Some(format!("{}: {e}", self.name));
    }
}
