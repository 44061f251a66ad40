//! Reading an access log in chunks, with every line and every chunk bounded in memory.
//!
//! A server's log is input from the outside world: a line may be megabytes of junk, or
//! never end. A line longer than [`MAX_LINE_BYTES`] is skipped — its rest is read and
//! discarded without being kept — and reported as too long; a chunk stops at
//! [`CHUNK_LINES`] lines or [`CHUNK_BYTES`] bytes of text, whichever comes first. Bytes that
//! are not UTF-8 are read with replacement characters.

use std::io::{self, BufRead, Read};
use std::path::PathBuf;

use crate::reader::ReaderError;

/// Lines answered together: one sweep over the log serves the whole chunk.
pub const CHUNK_LINES: usize = 1 << 16;
/// Text kept per chunk, so that a chunk of long lines stays bounded too.
pub const CHUNK_BYTES: usize = 16 << 20;
/// The longest line read; longer lines are skipped and counted as unparsed.
pub const MAX_LINE_BYTES: usize = 64 << 10;

pub(crate) fn input_error(source: io::Error) -> ReaderError {
    ReaderError::Io {
        path: PathBuf::from("<access log>"),
        source,
    }
}

/// One non-blank line of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkLine {
    /// 1-based line number in the input, blank lines included.
    pub no: u64,
    /// Its text is `Chunk::text[start..end]`; empty when `too_long`.
    pub start: usize,
    pub end: usize,
    /// Longer than [`MAX_LINE_BYTES`]: not kept.
    pub too_long: bool,
}

/// A chunk of an access log's lines, kept in one buffer.
#[derive(Default)]
pub(crate) struct Chunk {
    pub text: String,
    pub lines: Vec<ChunkLine>,
    buf: Vec<u8>,
}

/// What one bounded read of a line gave.
enum Line {
    End,
    Kept,
    TooLong,
}

impl Chunk {
    /// The text of a line that was kept.
    pub fn line(&self, line: &ChunkLine) -> &str {
        &self.text[line.start..line.end]
    }

    /// Reads up to [`CHUNK_LINES`] non-blank lines (fewer once [`CHUNK_BYTES`] are held);
    /// false at the end of the input.
    pub fn read(
        &mut self,
        input: &mut impl BufRead,
        line_no: &mut u64,
    ) -> Result<bool, ReaderError> {
        self.text.clear();
        self.lines.clear();
        while self.lines.len() < CHUNK_LINES && self.text.len() < CHUNK_BYTES {
            let start = self.text.len();
            match read_bounded_line(input, &mut self.buf).map_err(input_error)? {
                Line::End => break,
                Line::TooLong => {
                    *line_no += 1;
                    self.lines.push(ChunkLine {
                        no: *line_no,
                        start,
                        end: start,
                        too_long: true,
                    });
                }
                Line::Kept => {
                    *line_no += 1;
                    self.text.push_str(&String::from_utf8_lossy(&self.buf));
                    if self.text[start..].trim_ascii().is_empty() {
                        self.text.truncate(start);
                        continue;
                    }
                    self.lines.push(ChunkLine {
                        no: *line_no,
                        start,
                        end: self.text.len(),
                        too_long: false,
                    });
                }
            }
        }
        Ok(!self.lines.is_empty())
    }
}

/// Reads one line into `buf` (newline included) unless it is longer than
/// [`MAX_LINE_BYTES`]: then its rest is consumed without being kept.
fn read_bounded_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let limit = MAX_LINE_BYTES as u64 + 1;
    let read = input.by_ref().take(limit).read_until(b'\n', buf)?;
    if read == 0 {
        return Ok(Line::End);
    }
    // `take` stops at the limit: a line of exactly the limit still has its newline.
    if buf.len() <= MAX_LINE_BYTES || buf.ends_with(b"\n") {
        return Ok(Line::Kept);
    }
    buf.clear();
    skip_to_newline(input)?;
    Ok(Line::TooLong)
}

/// Consumes input up to and including the next newline, holding nothing.
fn skip_to_newline(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(());
        }
        match memchr::memchr(b'\n', available) {
            Some(at) => {
                input.consume(at + 1);
                return Ok(());
            }
            None => {
                let all = available.len();
                input.consume(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(ChunkLine, String)> {
        let mut chunk = Chunk::default();
        let mut reader = io::BufReader::with_capacity(1024, input);
        let mut no = 0;
        let mut all = Vec::new();
        while chunk.read(&mut reader, &mut no).unwrap() {
            all.extend(chunk.lines.iter().map(|l| (*l, chunk.line(l).to_owned())));
        }
        all
    }

    #[test]
    fn long_lines_are_skipped_and_the_next_line_is_read() {
        let mut input = b"first\n\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE_BYTES));
        input.extend_from_slice(b"\nlast");
        let got = lines(&input);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!((got[0].0.no, got[0].1.as_str()), (1, "first\n"));
        assert!(got[1].0.too_long);
        assert_eq!(got[1].0.no, 3);
        assert_eq!((got[2].0.no, got[2].1.as_str()), (4, "last"));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        let mut input = vec![b'y'; MAX_LINE_BYTES];
        input.push(b'\n');
        input.extend(vec![b'z'; MAX_LINE_BYTES + 1]);
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert!(!got[0].0.too_long);
        assert_eq!(got[0].1.len(), MAX_LINE_BYTES + 1);
        assert!(
            got[1].0.too_long,
            "a line without its newline over the limit"
        );
    }

    #[test]
    fn chunks_stop_at_the_byte_bound() {
        let line = vec![b'a'; 60_000];
        let mut input = Vec::new();
        for _ in 0..600 {
            input.extend_from_slice(&line);
            input.push(b'\n');
        }
        let mut chunk = Chunk::default();
        let mut reader = &input[..];
        let mut no = 0;
        assert!(chunk.read(&mut reader, &mut no).unwrap());
        assert!(chunk.lines.len() < 600);
        assert!(chunk.text.len() < CHUNK_BYTES + MAX_LINE_BYTES * 4);
    }
}
