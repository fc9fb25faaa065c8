//! Feeds arbitrary bytes to both hello decoders, whole and as every prefix.
//!
//! Checks: no panic; a decoded hello never claims more bytes than it was
//! given; a prefix of a decodable hello is `Incomplete`; whatever decodes
//! re-encodes to the bytes it was read from; a decoded server hello carries
//! `max_message_bytes` exactly when it accepts with protocol 2 or later,
//! never below `MIN_MESSAGE_LIMIT`; and negotiating with a decoded client
//! hello, against a server whose highest version and message limit come
//! from the bytes after that hello, produces a server hello that decodes
//! again (unless the limit is below the minimum, which the client refuses)
//! to the agreement the server made.

#![no_main]

use hearth_proto::{
    ClientHello, MESSAGE_LIMIT_VERSION, MIN_MESSAGE_LIMIT, ServerHello, ServerLimits, conclude,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ClientHello::decode(data) {
        Ok((hello, used)) => {
            assert!(used <= data.len());
            assert_eq!(&hello.encode()[..], &data[..used]);
            for n in 0..used {
                assert!(ClientHello::decode(&data[..n]).unwrap_err().is_incomplete());
            }
            respond_and_conclude(&hello, &data[used..]);
        }
        Err(e) => {
            let _ = (e.code(), e.status(), e.to_string());
        }
    }

    match ServerHello::decode(data) {
        Ok((hello, used)) => {
            assert!(used <= data.len());
            assert_eq!(hello.encode(), &data[..used]);
            for n in 0..used {
                assert!(ServerHello::decode(&data[..n]).unwrap_err().is_incomplete());
            }
            let carries = hello.status.is_ok() && hello.version >= MESSAGE_LIMIT_VERSION;
            assert_eq!(hello.max_message_bytes.is_some(), carries);
            if let Some(max) = hello.max_message_bytes {
                assert!(max >= MIN_MESSAGE_LIMIT);
            }
            for client in [
                ClientHello::default(),
                ClientHello {
                    max_version: 1,
                    ..ClientHello::default()
                },
            ] {
                if let Ok(agreed) = conclude(&client, &hello) {
                    assert_eq!(agreed.server_max_message_bytes, hello.max_message_bytes);
                }
            }
        }
        Err(e) => {
            let _ = (e.code(), e.status(), e.to_string());
        }
    }
});

/// The server's side against `hello`: its highest version (1 or 2) from
/// the first byte of `rest`, its message limit from the next 8 (the
/// default when they are missing); then the client's reading of the reply.
fn respond_and_conclude(hello: &ClientHello, rest: &[u8]) {
    let defaults = ServerLimits::default();
    let limits = ServerLimits {
        max_version: match rest.first() {
            Some(b) if b & 1 == 1 => 1,
            _ => defaults.max_version,
        },
        max_message_bytes: rest
            .get(1..9)
            .and_then(|b| b.first_chunk::<8>())
            .map_or(defaults.max_message_bytes, |b| u64::from_le_bytes(*b)),
        ..defaults
    };
    let (reply, server_side) = ServerHello::respond(hello, &limits);
    let bytes = reply.encode();
    let decoded = ServerHello::decode(&bytes);
    let told = server_side
        .as_ref()
        .ok()
        .and_then(|agreed| agreed.server_max_message_bytes);
    if told.is_some_and(|max| max < MIN_MESSAGE_LIMIT) {
        assert!(
            decoded.is_err(),
            "a message limit below the minimum is refused"
        );
        return;
    }
    let (decoded, used) = decoded.expect("our own reply decodes");
    assert_eq!(used, bytes.len());
    let client_side = conclude(hello, &decoded);
    match (&server_side, &client_side) {
        (Ok(s), Ok(c)) => assert_eq!(s, c),
        (Err(_), Err(_)) => {}
        (s, c) => panic!("server {s:?} client {c:?}"),
    }
}
