//! The UDP listener: receives Accounting-Requests, stores what they say through an
//! [`IdentitySink`] in group commits, and answers each only once its record is durable.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::accounting::{Meaning, meaning};
use super::duplicates::{RequestKey, ResponseCache};
use super::stats::{RadiusStats, RequestResult};
use super::wire::{self, MAX_LEN, Packet, RadiusError, code};
use crate::config::RadiusConfig;
use crate::identity::{IdentityRecord, IdentitySink};

/// How long a blocking receive waits before the stop flag is looked at again.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// The most requests stored in one commit.
pub const MAX_BATCH: usize = 256;
/// How long an answer is kept for retransmissions. NASes retry for seconds to tens of
/// seconds; a retry after this is stored again (and the sink drops it as a repeat).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(30);
/// The most answers kept for retransmissions.
pub const DUPLICATE_CAPACITY: usize = 65_536;

/// A bound RADIUS accounting socket with its clients. Bind in the starting thread, so
/// that a taken port fails the start; then move it to its own thread and [`run`] it.
///
/// [`run`]: RadiusListener::run
pub struct RadiusListener {
    socket: UdpSocket,
    config: RadiusConfig,
    stats: Arc<RadiusStats>,
    answered: ResponseCache,
}

/// A request that passed every check, waiting for its batch's commit.
struct Accepted {
    key: RequestKey,
    response: Vec<u8>,
    record: Option<IdentityRecord>,
    result: RequestResult,
}

impl RadiusListener {
    pub fn bind(config: RadiusConfig, stats: Arc<RadiusStats>) -> io::Result<RadiusListener> {
        let socket = UdpSocket::bind(config.listen)?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(RadiusListener {
            socket,
            config,
            stats,
            answered: ResponseCache::new(DUPLICATE_WINDOW.as_nanos() as u64, DUPLICATE_CAPACITY),
        })
    }

    /// Where it listens (the port, when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn stats(&self) -> &Arc<RadiusStats> {
        &self.stats
    }

    /// Serves until `stop` is set. `clock` gives wall-clock ns since the epoch; it stamps
    /// `learned_ns` and ages the duplicate cache. Errors only if the socket cannot be
    /// set up; every bad request is a counted drop and every failed commit a counted
    /// silence.
    pub fn run(
        &mut self,
        sink: &mut dyn IdentitySink,
        clock: &dyn Fn() -> u64,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_LEN];
        while !stop.load(Ordering::Relaxed) {
            let batch = self.receive_batch(&mut buf, clock)?;
            if !batch.is_empty() {
                self.commit_and_answer(sink, batch, clock());
            }
        }
        Ok(())
    }

    /// Waits up to [`READ_TIMEOUT`] for a request, then takes whatever else is already
    /// queued, up to [`MAX_BATCH`]: one commit then covers a burst.
    fn receive_batch(
        &mut self,
        buf: &mut [u8],
        clock: &dyn Fn() -> u64,
    ) -> io::Result<Vec<Accepted>> {
        let mut batch = Vec::new();
        if !self.receive_one(buf, clock, &mut batch) {
            return Ok(batch);
        }
        self.socket.set_nonblocking(true)?;
        let mut received = 1;
        while received < MAX_BATCH && self.receive_one(buf, clock, &mut batch) {
            received += 1;
        }
        self.socket.set_nonblocking(false)?;
        Ok(batch)
    }

    /// Receives and judges one datagram; false when none was waiting.
    fn receive_one(
        &mut self,
        buf: &mut [u8],
        clock: &dyn Fn() -> u64,
        batch: &mut Vec<Accepted>,
    ) -> bool {
        match self.socket.recv_from(buf) {
            Ok((len, from)) => {
                self.judge(&buf[..len], from, clock(), batch);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                self.stats.receive_errors.fetch_add(1, Ordering::Relaxed);
                // A persistent error must not spin a core.
                std::thread::sleep(Duration::from_millis(10));
                false
            }
        }
    }

    /// Drops and counts a bad datagram; answers a retransmission from the cache; adds a
    /// good request to the batch.
    fn judge(&mut self, datagram: &[u8], from: SocketAddr, now_ns: u64, batch: &mut Vec<Accepted>) {
        match self.accept(datagram, from, now_ns, batch) {
            Ok(Some(accepted)) => batch.push(accepted),
            Ok(None) => {}
            Err(dropped) => self.stats.count(dropped),
        }
    }

    fn accept(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now_ns: u64,
        batch: &[Accepted],
    ) -> Result<Option<Accepted>, RequestResult> {
        let SocketAddr::V4(from_v4) = from else {
            return Err(RequestResult::UnknownClient);
        };
        let client = self
            .config
            .client_for(*from_v4.ip())
            .ok_or(RequestResult::UnknownClient)?;
        let packet = Packet::new_checked(datagram).map_err(|e| match e {
            RadiusError::BadLength => RequestResult::MalformedLength,
            RadiusError::BadAttribute => RequestResult::MalformedAttribute,
        })?;
        if packet.code() != code::ACCOUNTING_REQUEST {
            return Err(RequestResult::UnexpectedCode);
        }
        if !packet.accounting_request_authentic(&client.secret) {
            return Err(RequestResult::BadAuthenticator);
        }
        if packet.message_authenticator_valid(&client.secret) == Some(false) {
            return Err(RequestResult::BadMessageAuthenticator);
        }
        let key = RequestKey {
            from,
            identifier: packet.identifier(),
            authenticator: packet.authenticator(),
        };
        if self.answer_duplicate(&key, now_ns, batch) {
            return Ok(None);
        }
        let (record, result) = match meaning(&packet, *from_v4.ip(), now_ns) {
            Meaning::Record(record) => (Some(*record), RequestResult::Stored),
            Meaning::NoAddress => (None, RequestResult::NoAddress),
            Meaning::OtherStatus => (None, RequestResult::OtherStatus),
            Meaning::Malformed => return Err(RequestResult::MalformedAttribute),
        };
        Ok(Some(Accepted {
            key,
            response: wire::accounting_response(&packet, &client.secret),
            record,
            result,
        }))
    }

    /// A retransmission of a request answered earlier is answered again now; one of a
    /// request still in this batch is left to that request's answer (sent once).
    fn answer_duplicate(&self, key: &RequestKey, now_ns: u64, batch: &[Accepted]) -> bool {
        if batch.iter().any(|a| a.key == *key) {
            self.stats.count(RequestResult::Duplicate);
            return true;
        }
        let Some(response) = self.answered.get(key, now_ns) else {
            return false;
        };
        let response = response.to_vec();
        self.stats.count(RequestResult::Duplicate);
        self.send(&response, key.from);
        true
    }

    /// One commit for every record of the batch; only once it returned are the requests
    /// answered, so that an answered record survives a crash or power loss. On failure
    /// those requests stay unanswered and their NASes retransmit.
    fn commit_and_answer(
        &mut self,
        sink: &mut dyn IdentitySink,
        batch: Vec<Accepted>,
        now_ns: u64,
    ) {
        let records: Vec<IdentityRecord> = batch.iter().filter_map(|a| a.record.clone()).collect();
        let durable = records.is_empty() || {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            sink.commit(&records).is_ok()
        };
        for accepted in batch {
            if accepted.record.is_some() && !durable {
                self.stats.count(RequestResult::CommitFailed);
                continue;
            }
            self.stats.count(accepted.result);
            self.send(&accepted.response, accepted.key.from);
            self.answered
                .insert(accepted.key, accepted.response, now_ns);
        }
    }

    fn send(&self, response: &[u8], to: SocketAddr) {
        match self.socket.send_to(response, to) {
            Ok(_) => self.stats.responses.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.send_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}
