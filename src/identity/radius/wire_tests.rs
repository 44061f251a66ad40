use proptest::prelude::*;

use super::*;

/// An Accounting-Request captured from FreeRADIUS's radclient (secret `testing123`):
/// Start, Framed-IP-Address 100.64.0.7, User-Name "alice", Acct-Session-Id "S1",
/// NAS-IP-Address 127.0.0.1.
const RADCLIENT_START: &str = "04aa0031b64ef29b8accc1f54b9f6bf5113dec292806000000010806644000070107616c6963652c04533104067f000001";
/// The same from radclient with `Message-Authenticator = 0x00` (it fills it in).
const RADCLIENT_WITH_MESSAGE_AUTHENTICATOR: &str = "04d40039cb40dcece55fafeeb667b809dcd818262806000000010806644000070107616c69636550128ab489aafce444623492331605764dbc";
/// MD5(05 aa 0014 + RADCLIENT_START's Request Authenticator + "testing123"), computed
/// apart from this code (Python's hashlib).
const RESPONSE_AUTHENTICATOR: &str = "761d55ff208466258c57aa6812adffea";
const SECRET: &[u8] = b"testing123";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn reads_a_radclient_request() {
    let bytes = hex(RADCLIENT_START);
    let p = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.code(), code::ACCOUNTING_REQUEST);
    assert_eq!(p.identifier(), 0xaa);
    assert_eq!(p.len(), bytes.len());
    let kinds: Vec<u8> = p.attributes().map(|a| a.kind).collect();
    assert_eq!(kinds, [40, 8, 1, 44, 4]);
    assert_eq!(p.first(attr::USER_NAME), Some(&b"alice"[..]));
    assert_eq!(p.first(attr::FRAMED_IP_ADDRESS), Some(&[100, 64, 0, 7][..]));
    assert_eq!(p.first(attr::CLASS), None);
}

#[test]
fn request_authenticator_needs_the_secret_and_the_bytes() {
    let mut bytes = hex(RADCLIENT_START);
    assert!(
        Packet::new_checked(&bytes[..])
            .unwrap()
            .accounting_request_authentic(SECRET)
    );
    assert!(
        !Packet::new_checked(&bytes[..])
            .unwrap()
            .accounting_request_authentic(b"testing124")
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(
        !Packet::new_checked(&bytes[..])
            .unwrap()
            .accounting_request_authentic(SECRET)
    );
}

#[test]
fn message_authenticator_as_radclient_computes_it() {
    let mut bytes = hex(RADCLIENT_WITH_MESSAGE_AUTHENTICATOR);
    let p = Packet::new_checked(&bytes[..]).unwrap();
    assert!(p.accounting_request_authentic(SECRET));
    assert_eq!(p.message_authenticator_valid(SECRET), Some(true));
    assert_eq!(p.message_authenticator_valid(b"other"), Some(false));
    let start = hex(RADCLIENT_START);
    assert_eq!(
        Packet::new_checked(&start[..])
            .unwrap()
            .message_authenticator_valid(SECRET),
        None
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let p = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.message_authenticator_valid(SECRET), Some(false));
}

#[test]
fn hmac_md5_matches_rfc_2104() {
    // RFC 2104 appendix, first test: key 0x0b × 16, data "Hi There".
    let mac = hmac_md5(&[0x0b; 16], &[b"Hi ", b"There"]);
    assert_eq!(mac.to_vec(), hex("9294727a3638bb1c13f48ef8158bfc9d"));
    // RFC 2202 §2, test 6: a key longer than the block is hashed first.
    let mac = hmac_md5(
        &[0xaa; 80],
        &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
    );
    assert_eq!(mac.to_vec(), hex("6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"));
}

#[test]
fn response_authenticator_matches_an_independent_computation() {
    let bytes = hex(RADCLIENT_START);
    let request = Packet::new_checked(&bytes[..]).unwrap();
    let response = accounting_response(&request, SECRET);
    let p = Packet::new_checked(&response[..]).unwrap();
    assert_eq!(p.code(), code::ACCOUNTING_RESPONSE);
    assert_eq!(p.identifier(), 0xaa);
    assert_eq!(p.len(), HEADER_LEN);
    assert_eq!(p.authenticator().to_vec(), hex(RESPONSE_AUTHENTICATOR));
}

#[test]
fn response_carries_proxy_state_in_order() {
    let request = accounting_request(
        3,
        &[
            (attr::PROXY_STATE, b"one"),
            (attr::USER_NAME, b"u"),
            (attr::PROXY_STATE, b"two"),
        ],
        SECRET,
    )
    .unwrap();
    let request = Packet::new_checked(&request[..]).unwrap();
    let response = accounting_response(&request, SECRET);
    let p = Packet::new_checked(&response[..]).unwrap();
    let values: Vec<&[u8]> = p.attributes().map(|a| a.value).collect();
    assert_eq!(values, [&b"one"[..], &b"two"[..]]);
}

#[test]
fn bad_lengths_are_refused() {
    let good = hex(RADCLIENT_START);
    let with_length = |len: u16| {
        let mut b = good.clone();
        b[2..4].copy_from_slice(&len.to_be_bytes());
        b
    };
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        good[..19].to_vec(),
        with_length(19),
        with_length(0),
        with_length(good.len() as u16 + 1),
        {
            let mut b = with_length(4097);
            b.resize(5000, 0);
            b
        },
    ];
    for bytes in cases {
        assert_eq!(
            Packet::new_checked(&bytes[..]).err(),
            Some(RadiusError::BadLength),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn octets_past_the_length_are_padding() {
    let mut bytes = hex(RADCLIENT_START);
    bytes.extend_from_slice(&[0xff; 7]);
    let p = Packet::new_checked(&bytes[..]).unwrap();
    assert!(p.accounting_request_authentic(SECRET));
    assert_eq!(p.attributes().count(), 5);
}

#[test]
fn bad_attributes_are_refused() {
    let header = |attributes: &[u8]| {
        let mut b = vec![4, 1, 0, 0];
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(attributes);
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        b
    };
    let cases: [&[u8]; 5] = [
        &[1, 0],
        &[1, 1],
        &[1],
        &[1, 5, b'a', b'b'],
        &[1, 3, b'a', 2],
    ];
    for attributes in cases {
        let bytes = header(attributes);
        assert_eq!(
            Packet::new_checked(&bytes[..]).err(),
            Some(RadiusError::BadAttribute),
            "{attributes:?}"
        );
    }
    assert!(Packet::new_checked(&header(&[1, 2, 25, 3, 9])[..]).is_ok());
}

#[test]
fn builder_refuses_what_cannot_be_encoded() {
    assert_eq!(
        accounting_request(1, &[(1, &[0; 254])], SECRET).err(),
        Some(RadiusError::BadAttribute)
    );
    let big = [0u8; 253];
    let many: Vec<(u8, &[u8])> = (0..17).map(|_| (1, &big[..])).collect();
    assert_eq!(
        accounting_request(1, &many, SECRET).err(),
        Some(RadiusError::BadLength)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        crate::identity::radius::fuzz::judge_bytes(&data);
    }

    #[test]
    fn arbitrary_attributes_after_a_valid_header_never_panic(
        attributes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![4, 9, 0, 0];
        bytes.extend_from_slice(&[7; 16]);
        bytes.extend_from_slice(&attributes);
        let len = bytes.len() as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        crate::identity::radius::fuzz::judge_bytes(&bytes);
    }

    #[test]
    fn a_built_request_round_trips(
        identifier in any::<u8>(),
        attributes in proptest::collection::vec(
            (1u8..=255, proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
        secret in proptest::collection::vec(any::<u8>(), 1..80),
    ) {
        let pairs: Vec<(u8, &[u8])> = attributes.iter().map(|(k, v)| (*k, &v[..])).collect();
        let bytes = accounting_request(identifier, &pairs, &secret).unwrap();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(p.identifier(), identifier);
        prop_assert!(p.accounting_request_authentic(&secret));
        let has_mac = pairs.iter().any(|(k, _)| *k == attr::MESSAGE_AUTHENTICATOR);
        prop_assert_eq!(p.message_authenticator_valid(&secret), has_mac.then_some(true));
        let read: Vec<u8> = p.attributes().map(|a| a.kind).collect();
        let kinds: Vec<u8> = pairs.iter().map(|(k, _)| *k).collect();
        prop_assert_eq!(read, kinds);
        for (a, (kind, value)) in p.attributes().zip(&pairs) {
            if *kind != attr::MESSAGE_AUTHENTICATOR {
                prop_assert_eq!(a.value, *value);
            }
        }
    }
}
