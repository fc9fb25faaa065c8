//! The one error type of hearth-shm.
//!
//! Owns: every way creating, opening or using a segment can fail, each with
//! a message that says what happened. Must never: hide an OS error or make a
//! peer's corruption look like a local bug.

use thiserror::Error;

/// Everything that can go wrong with a shared-memory segment or ring.
///
/// ```
/// use hearth_shm::ShmError;
/// let e = ShmError::Corrupt { detail: "tail 9 is not a multiple of 8".into() };
/// assert!(e.is_corrupt());
/// assert!(e.to_string().contains("broke the ring protocol"));
/// ```
#[derive(Debug, Error)]
pub enum ShmError {
    /// The peer wrote something impossible into the segment (an index out
    /// of range, a record length past the limit or past what was written).
    /// The connection cannot go on.
    #[error("the shared-memory peer broke the ring protocol: {detail}")]
    Corrupt {
        /// What was found.
        detail: String,
    },
    /// A record bigger than the ring accepts (split it first).
    #[error("a record of {len} bytes is over this ring's limit of {max} bytes; split it")]
    TooLarge {
        /// The record's length.
        len: usize,
        /// The ring's largest record.
        max: usize,
    },
    /// A segment received from a peer is not a usable hearth segment (seals,
    /// size or header).
    #[error("unusable shared-memory segment: {detail}")]
    BadSegment {
        /// What is wrong with it.
        detail: String,
    },
    /// A layout or configuration that cannot be built.
    #[error("invalid shared-memory configuration: {detail}")]
    BadConfig {
        /// What is wrong with it.
        detail: String,
    },
    /// Shared memory cannot be used here (not Linux, or the sandbox forbids
    /// memfd or mmap).
    #[error("shared memory is not available here: {detail}")]
    Unsupported {
        /// Why.
        detail: String,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ShmError {
    /// Whether this is the peer's corruption of the segment.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, ShmError::Corrupt { .. })
    }

    pub(crate) fn corrupt(detail: String) -> ShmError {
        ShmError::Corrupt { detail }
    }

    // Only the segment's system calls make these (none under loom or Miri,
    // nor where there is no memfd).
    #[cfg_attr(
        any(loom, miri, not(any(target_os = "linux", target_os = "android"))),
        allow(dead_code)
    )]
    pub(crate) fn io(context: &'static str, e: impl Into<std::io::Error>) -> ShmError {
        ShmError::Io {
            context,
            source: e.into(),
        }
    }
}
