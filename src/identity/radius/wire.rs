//! RADIUS packets (RFC 2865 §3, RFC 2866 §3) as zero-copy views, in the style of
//! `crate::wire`: `new_checked` proves the length field and every attribute header once,
//! so that the accessors and the attribute iterator stay in bounds on any input.
//!
//! Also the two MD5 authenticators of accounting (RFC 2866 §3) and Message-Authenticator
//! (HMAC-MD5, RFC 3579 §3.2), and the builders for an Accounting-Response and, for tests
//! and the fuzzer, an Accounting-Request.

use md5::{Digest, Md5};

mod field {
    pub const CODE: usize = 0;
    pub const IDENTIFIER: usize = 1;
    pub const LENGTH: core::ops::Range<usize> = 2..4;
    pub const AUTHENTICATOR: core::ops::Range<usize> = 4..20;
}

/// Code, Identifier, Length and Authenticator.
pub const HEADER_LEN: usize = field::AUTHENTICATOR.end;
/// The largest packet RFC 2865 §3 allows.
pub const MAX_LEN: usize = 4096;
/// An attribute's Type and Length octets.
pub const ATTRIBUTE_HEADER_LEN: usize = 2;
/// The most an attribute value can hold: its Length octet counts the header too.
pub const MAX_VALUE_LEN: usize = 255 - ATTRIBUTE_HEADER_LEN;
/// Authenticators and Message-Authenticator are 16 octets.
pub const AUTHENTICATOR_LEN: usize = 16;

/// Packet codes used here (RFC 2865 §3, RFC 2866 §3).
pub mod code {
    pub const ACCOUNTING_REQUEST: u8 = 4;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
}

/// Attribute types used here (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5, RFC 3579 §3.2).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const CLASS: u8 = 25;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const PROXY_STATE: u8 = 33;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const NAS_PORT_ID: u8 = 87;
}

/// Why a datagram is not a RADIUS packet. Each variant is a counted drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RadiusError {
    /// Shorter than the header, or the Length field is below 20, above 4096 or beyond
    /// the datagram.
    #[error("bad RADIUS length")]
    BadLength,
    /// An attribute's Length is below 2 or runs past the packet's end, or a value has
    /// the wrong size for its type.
    #[error("malformed RADIUS attribute")]
    BadAttribute,
}

pub type Result<T> = core::result::Result<T, RadiusError>;

/// A view of a RADIUS packet. The Length field, not the buffer, bounds the packet:
/// octets past it are padding and ignored (RFC 2865 §3).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without validation: accessors may panic on a malformed buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap, validating the Length field and every attribute header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        packet.check_attributes()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(RadiusError::BadLength);
        }
        let claimed = self.len();
        if !(HEADER_LEN..=MAX_LEN).contains(&claimed) || claimed > buf.len() {
            return Err(RadiusError::BadLength);
        }
        Ok(())
    }

    /// Every attribute has Length ≥ 2 and ends inside the packet.
    fn check_attributes(&self) -> Result<()> {
        let attributes = self.attributes_bytes();
        let mut at = 0;
        while at < attributes.len() {
            at = next_attribute_end(attributes, at).ok_or(RadiusError::BadAttribute)?;
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref()[field::IDENTIFIER]
    }

    /// The Length field: header plus attributes, in octets.
    #[allow(clippy::len_without_is_empty)] // a packet is never empty
    pub fn len(&self) -> usize {
        let b = &self.buffer.as_ref()[field::LENGTH];
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn authenticator(&self) -> [u8; AUTHENTICATOR_LEN] {
        let mut out = [0; AUTHENTICATOR_LEN];
        out.copy_from_slice(&self.buffer.as_ref()[field::AUTHENTICATOR]);
        out
    }

    /// The packet as bounded by the Length field.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.len()]
    }

    fn attributes_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }

    /// The attributes in order (duplicates included).
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            bytes: self.attributes_bytes(),
            at: 0,
        }
    }

    /// The value of the first attribute of type `kind`.
    pub fn first(&self, kind: u8) -> Option<&[u8]> {
        self.attributes().find(|a| a.kind == kind).map(|a| a.value)
    }

    /// RFC 2866 §3: the Request Authenticator is
    /// MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret).
    pub fn accounting_request_authentic(&self, secret: &[u8]) -> bool {
        let expected = md5_of(&[
            &self.as_bytes()[..field::AUTHENTICATOR.start],
            &[0; AUTHENTICATOR_LEN],
            self.attributes_bytes(),
            secret,
        ]);
        constant_time_eq(&expected, &self.authenticator())
    }

    /// Checks Message-Authenticator if there is one: `None` if absent, else whether it
    /// verifies. RFC 3579 §3.2: HMAC-MD5 keyed with the secret over the packet with the
    /// attribute's value as 16 zero octets. In an Accounting-Request the Request
    /// Authenticator covers this attribute, so it is computed first, over a zero
    /// Request Authenticator, and checked the same way (as RADIUS clients compute it).
    /// A Message-Authenticator that is not 16 octets is `Some(false)`.
    pub fn message_authenticator_valid(&self, secret: &[u8]) -> Option<bool> {
        let found = self
            .attributes()
            .find(|a| a.kind == attr::MESSAGE_AUTHENTICATOR)?;
        if found.value.len() != AUTHENTICATOR_LEN {
            return Some(false);
        }
        let bytes = self.as_bytes();
        let value_at = HEADER_LEN + found.offset + ATTRIBUTE_HEADER_LEN;
        let expected = hmac_md5(
            secret,
            &[
                &bytes[..field::AUTHENTICATOR.start],
                &[0; AUTHENTICATOR_LEN],
                &bytes[HEADER_LEN..value_at],
                &[0; AUTHENTICATOR_LEN],
                &bytes[value_at + AUTHENTICATOR_LEN..],
            ],
        );
        Some(constant_time_eq(&expected, found.value))
    }
}

/// Where the attribute at `at` ends, if its header is whole, its Length ≥ 2 and it ends
/// within `bytes`.
fn next_attribute_end(bytes: &[u8], at: usize) -> Option<usize> {
    let len = usize::from(*bytes.get(at + 1)?);
    let end = at + len;
    (len >= ATTRIBUTE_HEADER_LEN && end <= bytes.len()).then_some(end)
}

/// One attribute: its type, its value and where it starts among the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u8,
    pub value: &'a [u8],
    /// Offset of its Type octet from the first attribute.
    pub offset: usize,
}

/// Iterates attributes that `new_checked` proved well formed; stops early, rather than
/// panicking, on an unchecked packet.
pub struct Attributes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        let end = next_attribute_end(self.bytes, self.at)?;
        let attribute = Attribute {
            kind: self.bytes[self.at],
            value: &self.bytes[self.at + ATTRIBUTE_HEADER_LEN..end],
            offset: self.at,
        };
        self.at = end;
        Some(attribute)
    }
}

/// The Accounting-Response to `request` (RFC 2866 §4.2). It carries the request's
/// Proxy-State attributes, in order, as RFC 2865 §5.33 asks of a server, and nothing
/// else. Response Authenticator = MD5(Code + Identifier + Length + Request Authenticator
/// + Attributes + Secret).
pub fn accounting_response<T: AsRef<[u8]>>(request: &Packet<T>, secret: &[u8]) -> Vec<u8> {
    let mut out = vec![0; HEADER_LEN];
    out[field::CODE] = code::ACCOUNTING_RESPONSE;
    out[field::IDENTIFIER] = request.identifier();
    out[field::AUTHENTICATOR].copy_from_slice(&request.authenticator());
    for a in request.attributes().filter(|a| a.kind == attr::PROXY_STATE) {
        push_attribute(&mut out, a.kind, a.value);
    }
    // The request fit in 4096 octets, so its Proxy-States do too.
    set_length(&mut out);
    let authenticator = md5_of(&[&out, secret]);
    out[field::AUTHENTICATOR].copy_from_slice(&authenticator);
    out
}

/// An Accounting-Request with `attributes` in order and a correct Request Authenticator.
/// An attribute of type 80 (Message-Authenticator) has its value replaced by the right
/// HMAC. For tests and the fuzzer; errs if a value or the packet is too long.
pub fn accounting_request(
    identifier: u8,
    attributes: &[(u8, &[u8])],
    secret: &[u8],
) -> Result<Vec<u8>> {
    let mut out = vec![0; HEADER_LEN];
    out[field::CODE] = code::ACCOUNTING_REQUEST;
    out[field::IDENTIFIER] = identifier;
    let mut message_authenticator_at = None;
    for &(kind, value) in attributes {
        if value.len() > MAX_VALUE_LEN {
            return Err(RadiusError::BadAttribute);
        }
        if kind == attr::MESSAGE_AUTHENTICATOR && message_authenticator_at.is_none() {
            message_authenticator_at = Some(out.len() + ATTRIBUTE_HEADER_LEN);
            push_attribute(&mut out, kind, &[0; AUTHENTICATOR_LEN]);
        } else {
            push_attribute(&mut out, kind, value);
        }
    }
    if out.len() > MAX_LEN {
        return Err(RadiusError::BadLength);
    }
    set_length(&mut out);
    if let Some(at) = message_authenticator_at {
        let mac = hmac_md5(secret, &[&out]);
        out[at..at + AUTHENTICATOR_LEN].copy_from_slice(&mac);
    }
    let authenticator = md5_of(&[&out, secret]);
    out[field::AUTHENTICATOR].copy_from_slice(&authenticator);
    Ok(out)
}

fn push_attribute(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    // Callers keep values within MAX_VALUE_LEN, so the Length octet holds the sum.
    out.push(kind);
    out.push((value.len() + ATTRIBUTE_HEADER_LEN) as u8);
    out.extend_from_slice(value);
}

fn set_length(out: &mut [u8]) {
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
    out[field::LENGTH].copy_from_slice(&len.to_be_bytes());
}

fn md5_of(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// HMAC-MD5 (RFC 2104) of the concatenated `parts`.
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..16].copy_from_slice(&md5_of(&[key]));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let inner_pad = block_key.map(|b| b ^ 0x36);
    let outer_pad = block_key.map(|b| b ^ 0x5c);
    let mut inner = Md5::new();
    inner.update(inner_pad);
    for part in parts {
        inner.update(part);
    }
    let inner: [u8; 16] = inner.finalize().into();
    md5_of(&[&outer_pad, &inner])
}

/// Compares without an early exit, so timing does not reveal how much of a forged
/// authenticator was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
