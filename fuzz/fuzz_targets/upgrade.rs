//! Feeds arbitrary bytes to the decoders around the shared-memory upgrade,
//! each of which reads what a peer wrote: the server's probe of a client's
//! first bytes, its attach request (and the ring size it then picks) and
//! the client's confirmation; the client's reading of the offer and of the
//! 64-byte header of the segment the server passed it; and an error
//! frame's payload, which either side reads.
//!
//! Checks: no panic; `probe_attach` agrees with `AttachRequest::decode` on
//! every prefix (a request only from 16 whole bytes, which re-encode to
//! themselves but for the unused status; "incomplete" only for a prefix of
//! the request's magic); an offer or a confirmation that decodes re-encodes
//! to the bytes it was read from (the confirmation's unused value aside);
//! the ring size a server picks for any request is a power of two within
//! its bounds; a segment header that decodes re-encodes to itself and
//! places both rings inside the segment, after the header page and apart;
//! an error payload that decodes keeps an unknown code's name in its
//! message.

#![no_main]

use hearth_ipc::transport::shm::{MAX_RING_BYTES, ring_bytes};
use hearth_proto::{
    ATTACH_REQUEST_MAGIC, AttachConfirm, AttachOffer, AttachProbe, AttachRequest,
    UPGRADE_MESSAGE_LEN, decode_error_payload, probe_attach,
};
use hearth_shm::{Direction, HEADER_BYTES, HEADER_LEN, Layout, MIN_SEGMENT_CAPACITY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for end in 0..=data.len().min(2 * UPGRADE_MESSAGE_LEN) {
        probe(&data[..end]);
    }
    probe(data);

    if let Ok(offer) = AttachOffer::decode(data) {
        assert_eq!(offer.encode()[..], data[..UPGRADE_MESSAGE_LEN]);
    }
    if let Ok(confirm) = AttachConfirm::decode(data) {
        assert_eq!(confirm.encode()[..12], data[..12]);
    }

    if let Some(header) = data.first_chunk::<HEADER_LEN>() {
        segment_header(header);
    }
    // A valid header with a few bytes changed, so that every check past
    // the magic is reached at once: two bytes choose the ring sizes, each
    // following pair sets one byte (position, value).
    if let [c2s, s2c, edits @ ..] = data {
        let capacity = |x: u8| MIN_SEGMENT_CAPACITY << (x % 19); // 4 KiB..=1 GiB
        let layout = Layout::new(capacity(*c2s), capacity(*s2c))
            .expect("power-of-two capacities from 4 KiB to 1 GiB are a valid layout");
        let mut header = layout.encode_header();
        for edit in edits.chunks_exact(2) {
            header[usize::from(edit[0]) % HEADER_LEN] = edit[1];
        }
        segment_header(&header);
        if edits.len() < 2 {
            assert_eq!(Layout::decode_header(&header).ok(), Some(layout));
        }
    }

    error_payload(data);
    // The input as the code of a well-formed payload, so that the code's
    // handling is reached at once.
    if let Ok(code) = std::str::from_utf8(data) {
        let payload = serde_json::json!({ "code": code, "message": "m" }).to_string();
        let body = decode_error_payload(payload.as_bytes()).expect("a well-formed error payload");
        assert!(body.code.as_str() == code || body.message == format!("{code}: m"));
    }
});

/// One prefix of a client's first bytes, as the server probes it.
fn probe(bytes: &[u8]) {
    match probe_attach(bytes) {
        AttachProbe::Request(request) => {
            assert!(bytes.len() >= UPGRADE_MESSAGE_LEN);
            // A request's status bytes are unused (written as 0, not read).
            let again = request.encode();
            assert_eq!(again[..8], bytes[..8]);
            assert_eq!(again[12..], bytes[12..UPGRADE_MESSAGE_LEN]);
            assert_eq!(AttachRequest::decode(bytes), Ok(request));
            let size = ring_bytes(request.ring_bytes as usize);
            assert!(size.is_power_of_two());
            assert!((MIN_SEGMENT_CAPACITY..=MAX_RING_BYTES).contains(&size));
        }
        AttachProbe::Incomplete => {
            assert!(bytes.len() < UPGRADE_MESSAGE_LEN);
            let n = bytes.len().min(ATTACH_REQUEST_MAGIC.len());
            assert_eq!(bytes[..n], ATTACH_REQUEST_MAGIC[..n]);
        }
        AttachProbe::NotRequest => {
            assert!(AttachRequest::decode(bytes).is_err());
        }
    }
}

/// A segment's header as the client reads it from the server's memfd.
fn segment_header(header: &[u8; HEADER_LEN]) {
    let Ok(layout) = Layout::decode_header(header) else {
        return;
    };
    assert_eq!(&layout.encode_header(), header);
    let total = layout.segment_bytes();
    let c2s = Direction::ClientToServer;
    let s2c = Direction::ServerToClient;
    for dir in [c2s, s2c] {
        assert!(layout.capacity(dir).is_power_of_two());
        assert!(layout.capacity(dir) >= MIN_SEGMENT_CAPACITY);
        assert!(layout.data_offset(dir) >= HEADER_BYTES);
        assert!(layout.data_offset(dir) + layout.capacity(dir) <= total);
        assert!(layout.ctrl_offset(dir) >= HEADER_LEN);
    }
    assert!(layout.data_offset(c2s) + layout.capacity(c2s) <= layout.data_offset(s2c));
}

/// An error frame's payload, as either side reads it.
fn error_payload(payload: &[u8]) {
    let Ok(body) = decode_error_payload(payload) else {
        return;
    };
    let value: serde_json::Value =
        serde_json::from_slice(payload).expect("decode_error_payload accepted it as JSON");
    let code = value["code"]
        .as_str()
        .expect("a decoded payload has a string code");
    if body.code.as_str() != code {
        assert!(
            body.message.starts_with(code),
            "an unknown code is kept in the message"
        );
    }
}
