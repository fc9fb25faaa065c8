//! hearth-proto: the vocabulary every side of hearth shares.
//!
//! Owns: document id validation, size limits, the stable error codes and the
//! error body that crosses process boundaries, and the list of operations.
//! Must never: do I/O, spawn threads, or read the clock. Everything here is a
//! pure function of its arguments so that it can be tested and fuzzed alone.

mod error;
mod id;
mod limits;
mod op;

pub use error::{ErrorBody, ErrorCode};
pub use id::{IdError, MAX_ID_BYTES, validate_id};
pub use limits::{DEFAULT_MAX_DOC_BYTES, DocumentError, Limits, kind_of, validate_document};
pub use op::Operation;

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
    }
}
