//! Stable error codes and the error body carried in error replies.
//!
//! Owns: the closed list of codes clients can match on, and their string
//! spelling. Must never: change the spelling of an existing code (clients and
//! scripts depend on it) or carry platform details in the code itself.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable error code.
///
/// The string form (`not_found`, `invalid_input`, …) is part of the protocol
/// and never changes once released; new codes may be added.
///
/// ```
/// use hearth_proto::ErrorCode;
/// assert_eq!(ErrorCode::NotFound.as_str(), "not_found");
/// assert_eq!("too_large".parse::<ErrorCode>(), Ok(ErrorCode::TooLarge));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The document, handler or resource does not exist.
    NotFound,
    /// The request is malformed: bad id, bad JSON, a value that is not an object…
    InvalidInput,
    /// A document, frame or batch is over the configured limit.
    TooLarge,
    /// A precondition failed (for example a concurrent change).
    Conflict,
    /// The service cannot answer now (shutting down, storage failed, not started).
    Unavailable,
    /// The operation did not finish within its deadline.
    Timeout,
    /// The caller is not allowed to do this (another user, a closed handler).
    PermissionDenied,
    /// A bug or an unexpected failure inside hearth.
    Internal,
    /// The operation or handler name is not known to the server.
    UnknownOperation,
    /// Stored data failed a checksum or is not hearth's format.
    Corrupt,
    /// The data directory or channel is held by another process.
    Locked,
    /// Too many requests in a short time; retry later.
    RateLimited,
    /// The request was cancelled by the caller.
    Cancelled,
    /// A change subscriber fell behind and must resume from a sequence number.
    Lagged,
    /// The disk (or a configured quota) is full.
    StorageFull,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::NotFound,
        ErrorCode::InvalidInput,
        ErrorCode::TooLarge,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::PermissionDenied,
        ErrorCode::Internal,
        ErrorCode::UnknownOperation,
        ErrorCode::Corrupt,
        ErrorCode::Locked,
        ErrorCode::RateLimited,
        ErrorCode::Cancelled,
        ErrorCode::Lagged,
        ErrorCode::StorageFull,
    ];

    /// The stable string spelling of this code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownOperation => "unknown_operation",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::Locked => "locked",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Lagged => "lagged",
            ErrorCode::StorageFull => "storage_full",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(())
    }
}

/// The body of an error reply: a stable code and a message for humans that
/// says what to do.
///
/// ```
/// use hearth_proto::{ErrorBody, ErrorCode};
/// let e = ErrorBody::new(ErrorCode::NotFound, "no document user:1");
/// assert_eq!(serde_json::to_string(&e).unwrap(),
///            r#"{"code":"not_found","message":"no document user:1"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// A human-readable message.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_string() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn an_unknown_code_string_does_not_parse() {
        assert!("no_such_code".parse::<ErrorCode>().is_err());
    }
}
