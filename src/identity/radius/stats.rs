//! Counters of the RADIUS listener, shared with the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// What became of one Accounting-Request. Each request gets exactly one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestResult {
    /// Its record is durable and it was answered.
    Stored,
    /// A Start, Stop or Interim-Update without a usable Framed-IP-Address: answered.
    NoAddress,
    /// An Acct-Status-Type that names no holding (or none): answered.
    OtherStatus,
    /// A retransmission of a request already answered: answered again from the cache.
    Duplicate,
    /// From an address no client prefix holds: dropped.
    UnknownClient,
    /// Too short, or a bad Length field: dropped.
    MalformedLength,
    /// A bad attribute header, or a value of the wrong size: dropped.
    MalformedAttribute,
    /// Request Authenticator wrong (another secret, or altered): dropped.
    BadAuthenticator,
    /// Message-Authenticator present and wrong: dropped.
    BadMessageAuthenticator,
    /// Not an Accounting-Request: dropped.
    UnexpectedCode,
    /// The sink could not make its record durable: unanswered, so the NAS retransmits.
    CommitFailed,
}

impl RequestResult {
    pub const ALL: [RequestResult; 11] = [
        RequestResult::Stored,
        RequestResult::NoAddress,
        RequestResult::OtherStatus,
        RequestResult::Duplicate,
        RequestResult::UnknownClient,
        RequestResult::MalformedLength,
        RequestResult::MalformedAttribute,
        RequestResult::BadAuthenticator,
        RequestResult::BadMessageAuthenticator,
        RequestResult::UnexpectedCode,
        RequestResult::CommitFailed,
    ];

    /// Stable snake_case name, the `result` label: do not rename.
    pub fn name(self) -> &'static str {
        match self {
            RequestResult::Stored => "stored",
            RequestResult::NoAddress => "no_address",
            RequestResult::OtherStatus => "other_status",
            RequestResult::Duplicate => "duplicate",
            RequestResult::UnknownClient => "unknown_client",
            RequestResult::MalformedLength => "malformed_length",
            RequestResult::MalformedAttribute => "malformed_attribute",
            RequestResult::BadAuthenticator => "bad_authenticator",
            RequestResult::BadMessageAuthenticator => "bad_message_authenticator",
            RequestResult::UnexpectedCode => "unexpected_code",
            RequestResult::CommitFailed => "commit_failed",
        }
    }

    /// Whether the NAS gets an Accounting-Response.
    pub fn answered(self) -> bool {
        matches!(
            self,
            RequestResult::Stored
                | RequestResult::NoAddress
                | RequestResult::OtherStatus
                | RequestResult::Duplicate
        )
    }
}

/// Counters of one listener, shared (in an `Arc`) with whoever renders metrics.
#[derive(Debug, Default)]
pub struct RadiusStats {
    requests: [AtomicU64; RequestResult::ALL.len()],
    /// Accounting-Responses sent (first answers and repeats).
    pub responses: AtomicU64,
    /// Accounting-Responses the socket would not send.
    pub send_errors: AtomicU64,
    /// Errors receiving from the socket (other than its read timeout).
    pub receive_errors: AtomicU64,
    /// Calls to the sink's `commit` (one per batch holding records).
    pub commits: AtomicU64,
}

impl RadiusStats {
    pub fn count(&self, result: RequestResult) {
        self.requests[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self, result: RequestResult) -> u64 {
        self.requests[result as usize].load(Ordering::Relaxed)
    }

    /// Prometheus text exposition lines, `tracenat_radius_…`.
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP tracenat_radius_requests_total Accounting-Requests received, by what became of them.\n\
             # TYPE tracenat_radius_requests_total counter\n",
        );
        for result in RequestResult::ALL {
            out.push_str(&format!(
                "tracenat_radius_requests_total{{result=\"{}\"}} {}\n",
                result.name(),
                self.requests(result)
            ));
        }
        let single = [
            (
                "responses_total",
                "Accounting-Responses sent.",
                &self.responses,
            ),
            (
                "send_errors_total",
                "Accounting-Responses that could not be sent.",
                &self.send_errors,
            ),
            (
                "receive_errors_total",
                "Errors receiving from the RADIUS socket.",
                &self.receive_errors,
            ),
            (
                "commits_total",
                "Group commits of identity records.",
                &self.commits,
            ),
        ];
        for (name, help, value) in single {
            out.push_str(&format!(
                "# HELP tracenat_radius_{name} {help}\n# TYPE tracenat_radius_{name} counter\ntracenat_radius_{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexes_match() {
        for (i, r) in RequestResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(r.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(!RequestResult::ALL[..i].iter().any(|o| o.name() == r.name()));
        }
    }

    #[test]
    fn renders_every_result() {
        let stats = RadiusStats::default();
        stats.count(RequestResult::Stored);
        stats.count(RequestResult::Stored);
        let text = stats.prometheus();
        assert!(text.contains("tracenat_radius_requests_total{result=\"stored\"} 2\n"));
        assert!(text.contains("tracenat_radius_requests_total{result=\"commit_failed\"} 0\n"));
        assert!(text.contains("tracenat_radius_responses_total 0\n"));
    }
}
