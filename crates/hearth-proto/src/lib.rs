//! hearth-proto: the vocabulary every side of hearth shares.
//!
//! Owns: document id validation, size limits, the stable error codes and the
//! error body that crosses process boundaries, the list of operations, the
//! frame layout with its incremental decoder, the connection handshake and
//! its shared-memory upgrade messages (all specified in `docs/protocol.md`).
//! Must never: do I/O, spawn threads, or read the clock. Everything here is a
//! pure function of its arguments so that it can be tested and fuzzed alone.

mod error;
mod frame;
mod handshake;
mod id;
mod limits;
mod op;
mod upgrade;

pub use error::{ErrorBody, ErrorCode};
pub use frame::{
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PAYLOAD_BYTES, Frame, FrameDecoder, FrameError,
    FrameFlags, FrameHeader, FrameKind, HEADER_LEN, decode_error_payload, encode_frame,
    error_payload,
};
pub use handshake::{
    CLIENT_HELLO_LEN, CLIENT_MAGIC, Capabilities, ClientHello, DEFAULT_MAX_IN_FLIGHT,
    HandshakeError, HandshakeStatus, HelloRole, MAX_REASON_BYTES, MESSAGE_LIMIT_LEN,
    MESSAGE_LIMIT_VERSION, MIN_FRAME_LIMIT, MIN_MESSAGE_LIMIT, MIN_PROTOCOL_VERSION, Negotiated,
    PROTOCOL_VERSION, SERVER_HELLO_FIXED_LEN, SERVER_MAGIC, ServerHello, ServerLimits, conclude,
    negotiate,
};
pub use id::{IdError, MAX_ID_BYTES, validate_id};
pub use limits::{
    CompactDocument, DEFAULT_MAX_DOC_BYTES, DocumentError, Limits, MAX_DEPTH, RESERVED_KEY_PREFIX,
    check_depth, check_document_value, check_reserved_keys, is_compact_document, is_reserved_key,
    kind_of, validate_document,
};
pub use op::Operation;
pub use upgrade::{
    ATTACH_CONFIRM_MAGIC, ATTACH_HANDOFF, ATTACH_OFFER_MAGIC, ATTACH_OK, ATTACH_REQUEST_MAGIC,
    ATTACH_UNAVAILABLE, AttachConfirm, AttachOffer, AttachProbe, AttachRequest,
    UPGRADE_MESSAGE_LEN, UpgradeError, probe_attach,
};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<crate::ErrorBody>();
        assert_send_sync::<crate::ErrorCode>();
        assert_send_sync::<crate::Limits>();
        assert_send_sync::<crate::Operation>();
        assert_send_sync::<crate::IdError>();
        assert_send_sync::<crate::DocumentError>();
        assert_send_sync::<crate::CompactDocument>();
    }
}
