//! The question an operator asks and the answer the reader gives.

use std::net::{Ipv4Addr, SocketAddrV4};

/// "Who used this public endpoint during this window?"
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub public_ip: Ipv4Addr,
    /// Without a port the answer is every subscriber on the address in the window.
    pub public_port: Option<u16>,
    /// Window, nanoseconds since the Unix epoch, inclusive at both ends.
    pub from_ns: u64,
    pub to_ns: u64,
    /// Narrow to sessions towards this destination (a server's own address and port).
    pub dest_ip: Option<Ipv4Addr>,
    pub dest_port: Option<u16>,
    /// IP protocol number (6, 17, 1); `None` for any.
    pub protocol: Option<u8>,
}

/// Where a candidate's evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// A logged session (its destination matched the question's, when one was given).
    Session,
    /// A logged mapping whose destinations are not known (not logged, or opened before the
    /// scanned range): it cannot be excluded by destination.
    Mapping,
    /// A logged port block holding the port.
    Block,
    /// Computed from the deterministic (RFC 7422) configuration in force at the time.
    Deterministic,
}

impl Evidence {
    pub fn name(self) -> &'static str {
        match self {
            Evidence::Session => "session",
            Evidence::Mapping => "mapping",
            Evidence::Block => "block",
            Evidence::Deterministic => "deterministic",
        }
    }
}

/// `IP:PORT`, or `IP` alone when the port is 0 (evidence without a port).
pub fn endpoint_text(endpoint: SocketAddrV4) -> String {
    if endpoint.port() == 0 {
        endpoint.ip().to_string()
    } else {
        endpoint.to_string()
    }
}

/// One subscriber endpoint that held the public endpoint during (part of) the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Inside address and port; port 0 where the evidence has none (blocks, deterministic).
    pub subscriber: SocketAddrV4,
    /// Public address and port; port 0 where a range applies (`ports`).
    pub public: SocketAddrV4,
    /// Inclusive public port range, for blocks and deterministic ranges.
    pub ports: Option<(u16, u16)>,
    /// Destination of the session, when logged.
    pub dest: Option<SocketAddrV4>,
    /// IP protocol number; 0 for blocks and deterministic ranges (all protocols).
    pub protocol: u8,
    /// When the holding began; `None` if it began before anything the log covers.
    pub start_ns: Option<u64>,
    /// When it ended; `None` if still held at the end of the log.
    pub end_ns: Option<u64>,
    /// Its last activity (last packet) where the log knows it: a session's end is logged
    /// when its idle timer fires, minutes after its traffic stopped. `None` when unknown
    /// (still open, or written without activity); then `end_ns` bounds it.
    pub last_active_ns: Option<u64>,
    pub evidence: Evidence,
    /// Who held the subscriber address then, by the identity records (§8.1).
    pub holders: crate::reader::identity::Holders,
    /// The box whose log holds it, when the answer spans several boxes' logs.
    pub box_name: Option<String>,
}

/// The honest verdict: one subscriber, several, or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unique,
    Ambiguous,
    None,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Unique => "unique",
            Verdict::Ambiguous => "ambiguous",
            Verdict::None => "none",
        }
    }

    /// Decided by the number of distinct subscriber addresses among the candidates.
    pub fn of(candidates: &[Candidate]) -> Verdict {
        // Subscribers are told apart by address within a box; the same address behind two
        // boxes is two subscribers (access networks reuse private space).
        let mut addresses = candidates
            .iter()
            .map(|c| (c.box_name.as_deref(), *c.subscriber.ip()));
        match addresses.next() {
            None => Verdict::None,
            Some(first) if addresses.all(|a| a == first) => Verdict::Unique,
            Some(_) => Verdict::Ambiguous,
        }
    }
}

/// How far the NAT's clock could have been off when the evidence was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockNote {
    /// Some block in the evidence was written while the host clock was unsynchronised.
    pub unsynchronised: bool,
    /// Largest maximum-error bound (adjtimex `maxerror`) among those blocks, microseconds.
    pub max_error_us: u32,
    /// The wall clock stepped during the run that wrote the evidence, by this much in all:
    /// the question's window was widened by it on both sides, since the log cannot tell
    /// which side of a step the clock was right on (docs/mapping-log.md §5.1.2).
    pub stepped_ns: u64,
}

impl ClockNote {
    /// The error bound in nanoseconds, unless it is unknown (`u32::MAX`: capture times in
    /// `replay`, or adjtimex failed) — then nothing can be added and the answer's
    /// `unsynchronised` flag is what warns.
    pub fn known_max_error_ns(&self) -> Option<u64> {
        (self.max_error_us != u32::MAX).then_some(self.max_error_us as u64 * 1_000)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub candidates: Vec<Candidate>,
    pub clock: ClockNote,
}

impl Answer {
    pub fn new(candidates: Vec<Candidate>, clock: ClockNote) -> Answer {
        Answer {
            verdict: Verdict::of(&candidates),
            candidates,
            clock,
        }
    }
}

/// Anything that answers questions: the log directory, or a fake in tests.
pub trait MappingSource {
    fn answer(&mut self, question: &Question) -> Result<Answer, crate::reader::ReaderError>;

    /// Answers many questions at once (a chunk of an access log); a source that can share
    /// work between them (one pass over the log) overrides this.
    fn answer_all(
        &mut self,
        questions: &[Question],
    ) -> Result<Vec<Answer>, crate::reader::ReaderError> {
        questions.iter().map(|q| self.answer(q)).collect()
    }
}
