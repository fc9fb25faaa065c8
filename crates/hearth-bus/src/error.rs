//! The bus's one error type.
//!
//! Owns: every way a topic or pattern can be refused, with a message that
//! says what to write instead. Must never: carry a handler's panic or any
//! other runtime failure — handlers cannot fail the bus.

use std::fmt;
use thiserror::Error;

/// Whether a refused name was a topic (passed to `emit`) or a pattern
/// (passed to `on`/`once`).
///
/// ```
/// use hearth_bus::{validate_topic, BusError, NameKind};
/// match validate_topic("") {
///     Err(BusError::Empty { what }) => assert_eq!(what, NameKind::Topic),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A concrete event name such as `user:login`.
    Topic,
    /// A subscription pattern such as `user:*`.
    Pattern,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Topic => "topic",
            NameKind::Pattern => "pattern",
        })
    }
}

/// Why a topic or pattern was refused.
///
/// Every message names the problem and what to write instead.
///
/// ```
/// use hearth_bus::{validate_pattern, BusError};
/// let err = validate_pattern("user*").unwrap_err();
/// assert!(matches!(err, BusError::PartialWildcard { .. }));
/// assert!(err.to_string().contains("whole segment"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BusError {
    /// The name is the empty string.
    #[error("the {what} is empty; use a `:`-separated name such as `user:login`")]
    Empty {
        /// Topic or pattern.
        what: NameKind,
    },
    /// The name is longer than [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES).
    #[error("the {what} is {len} bytes long; the limit is {max} bytes, use a shorter name")]
    TooLong {
        /// Topic or pattern.
        what: NameKind,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a NUL byte.
    #[error("the {what} {name:?} contains a NUL byte at byte {at}; remove it")]
    Nul {
        /// Topic or pattern.
        what: NameKind,
        /// The refused name.
        name: String,
        /// Byte offset of the first NUL.
        at: usize,
    },
    /// The name starts or ends with `:`, or contains `::`.
    #[error(
        "the {what} {name:?} has an empty segment at byte {at}; segments are separated by a single `:` with none at the start or end, e.g. `user:login`"
    )]
    EmptySegment {
        /// Topic or pattern.
        what: NameKind,
        /// The refused name.
        name: String,
        /// Byte offset where the empty segment starts.
        at: usize,
    },
    /// A topic passed to `emit` contains `*`.
    #[error(
        "the topic {name:?} contains `*`; `*` is a wildcard for patterns given to `on`/`once`, emit a concrete topic such as `user:login`"
    )]
    WildcardInTopic {
        /// The refused topic.
        name: String,
    },
    /// A pattern uses `*` as part of a segment rather than a whole one.
    #[error(
        "the pattern {name:?} uses `*` inside the segment {segment:?}; `*` must be a whole segment, e.g. `user:*` or `user:*:created`"
    )]
    PartialWildcard {
        /// The refused pattern.
        name: String,
        /// The offending segment.
        segment: String,
    },
}
