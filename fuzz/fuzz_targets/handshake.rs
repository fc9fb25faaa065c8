//! Feeds arbitrary bytes to both hello decoders, whole and as every prefix.
//!
//! Checks: no panic; a decoded hello never claims more bytes than it was
//! given; a prefix of a decodable hello is `Incomplete`; whatever decodes
//! re-encodes to the bytes it was read from; and negotiating with a decoded
//! client hello always produces a server hello that decodes again.

#![no_main]

use hearth_proto::{ClientHello, ServerHello, ServerLimits, conclude};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ClientHello::decode(data) {
        Ok((hello, used)) => {
            assert!(used <= data.len());
            assert_eq!(&hello.encode()[..], &data[..used]);
            for n in 0..used {
                assert!(ClientHello::decode(&data[..n]).unwrap_err().is_incomplete());
            }
            let (reply, server_side) = ServerHello::respond(&hello, &ServerLimits::default());
            let bytes = reply.encode();
            let (decoded, _) = ServerHello::decode(&bytes).expect("our own reply decodes");
            let client_side = conclude(&hello, &decoded);
            assert_eq!(server_side.is_ok(), client_side.is_ok());
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
            let _ = conclude(&ClientHello::default(), &hello);
        }
        Err(e) => {
            let _ = (e.code(), e.status(), e.to_string());
        }
    }
});
