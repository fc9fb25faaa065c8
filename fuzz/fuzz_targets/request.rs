//! Feeds arbitrary bytes to the server's request decoders: the first two
//! bytes choose the operation (little-endian code), the rest is the payload.
//!
//! Checks: no panic on any payload or nesting; wherever the quick decoder
//! (the exact shapes clients write, read without a JSON tree) answers, its
//! request is the general parser's; wherever it does not, the decoder the
//! server runs gives the general parser's answer, error included
//! (`hearth_ipc::fuzz_request` asserts both).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((code, payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    hearth_ipc::fuzz_request(u16::from_le_bytes(*code), payload);
});
