//! RADIUS accounting (RFC 2866) received live by `tracenat run`: a listener that turns
//! each verified Accounting-Request into an [`IdentityRecord`](crate::identity::IdentityRecord),
//! hands a batch of them to an [`IdentitySink`](crate::identity::IdentitySink), and answers
//! only once they are durable. Behaviour and choices: docs/identity.md, "RADIUS accounting".

pub mod accounting;
pub mod duplicates;
pub mod listener;
pub mod stats;
pub mod wire;

pub use listener::RadiusListener;
pub use stats::{RadiusStats, RequestResult};

/// Arbitrary bytes through the checks a datagram meets, for the fuzzer and proptests:
/// nothing panics, and the response to any well-formed packet parses and answers it.
pub mod fuzz {
    use std::net::Ipv4Addr;

    use super::accounting::meaning;
    use super::wire::{Packet, accounting_response};

    pub fn judge_bytes(data: &[u8]) {
        let secret = b"fuzz-secret";
        let Ok(packet) = Packet::new_checked(data) else {
            return;
        };
        let _ = packet.attributes().count();
        let _ = packet.accounting_request_authentic(secret);
        let _ = packet.message_authenticator_valid(secret);
        let _ = meaning(&packet, Ipv4Addr::LOCALHOST, 1_700_000_000_000_000_000);
        let response = accounting_response(&packet, secret);
        let answer = Packet::new_checked(&response[..]).expect("our own response parses");
        assert_eq!(answer.identifier(), packet.identifier());
    }
}
