//! Where exported messages go: a collector over UDP or TCP, or a file.
//!
//! A sender never blocks for long: a UDP send that fails is a lost message, a TCP
//! collector that is down or closes the connection is retried at most once a second (what
//! is sent meanwhile is lost), and a write that stalls gives up after a second. Every loss
//! is counted by the caller from the error returned.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a TCP connect or write may take before the message is given up.
const TCP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after a failed connect (or a closed connection) the next one is tried.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

pub use crate::config::export::Collector;

/// One destination's open connection or file.
pub enum Sender {
    Udp {
        socket: UdpSocket,
        to: SocketAddr,
    },
    Tcp {
        to: SocketAddr,
        stream: Option<TcpStream>,
        next_try: Instant,
    },
    File {
        path: PathBuf,
        out: BufWriter<File>,
    },
}

impl Sender {
    pub fn open(collector: Collector) -> io::Result<Sender> {
        Ok(match collector {
            Collector::Udp(to) => {
                let any: SocketAddr = if to.is_ipv4() {
                    "0.0.0.0:0".parse()
                } else {
                    "[::]:0".parse()
                }
                .expect("literal address");
                Sender::Udp {
                    socket: UdpSocket::bind(any)?,
                    to,
                }
            }
            Collector::Tcp(to) => Sender::Tcp {
                to,
                stream: None,
                next_try: Instant::now(),
            },
        })
    }

    pub fn create_file(path: &Path) -> io::Result<Sender> {
        Ok(Sender::File {
            path: path.to_owned(),
            out: BufWriter::new(File::create(path)?),
        })
    }

    /// Sends one message, already framed for this transport.
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Sender::Udp { socket, to } => socket.send_to(message, *to).map(|_| ()),
            Sender::Tcp {
                to,
                stream,
                next_try,
            } => {
                if stream.is_none() {
                    if Instant::now() < *next_try {
                        return Err(io::Error::new(
                            io::ErrorKind::NotConnected,
                            format!("tcp://{to}: not connected (retrying once a second)"),
                        ));
                    }
                    *next_try = Instant::now() + RECONNECT_AFTER;
                    let s = TcpStream::connect_timeout(to, TCP_TIMEOUT)?;
                    s.set_write_timeout(Some(TCP_TIMEOUT))?;
                    s.set_nodelay(true)?;
                    *stream = Some(s);
                }
                let result = stream.as_mut().map_or(Ok(()), |s| s.write_all(message));
                if result.is_err() {
                    // Closed or stalled: a partial message may have gone out, so the
                    // connection cannot be trusted any more; start afresh.
                    *stream = None;
                    *next_try = Instant::now() + RECONNECT_AFTER;
                }
                result
            }
            Sender::File { out, .. } => out.write_all(message),
        }
    }

    /// Throws away what a file's buffer still holds (after a failed write or flush): it is
    /// counted lost, so it must not reach the file later.
    pub fn discard_buffered(&mut self) {
        if let Sender::File { out, .. } = self
            && let Ok(file) = out.get_ref().try_clone()
        {
            let failed = std::mem::replace(out, BufWriter::new(file));
            drop(failed.into_parts());
        }
    }

    /// Writes land in a buffer first: a message is only out once [`Sender::flush`] succeeds.
    pub fn is_buffered(&self) -> bool {
        matches!(self, Sender::File { .. })
    }

    pub fn is_datagram(&self) -> bool {
        matches!(self, Sender::Udp { .. })
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Sender::File { out, .. } => out.flush().and_then(|_| out.get_ref().sync_all()),
            Sender::Tcp { stream, .. } => stream.as_mut().map_or(Ok(()), |s| s.flush()),
            Sender::Udp { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_collector_that_is_down_costs_one_connect_a_second() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut sender = Sender::open(Collector::Tcp(port)).unwrap();
        assert!(sender.send(b"1 x").is_err());
        let second = sender.send(b"1 x").unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::NotConnected);
    }
}
