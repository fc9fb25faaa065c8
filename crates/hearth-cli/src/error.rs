//! The CLI's error type and its exit codes.
//!
//! Owns: every way a command can fail, the stable error code each carries and
//! the exit code it maps to (0 ok, 1 not found, 2 bad input, 3 store or I/O
//! failure). Must never: lose the store's message (it says what to do) or map
//! a storage failure to an exit code that suggests the input was wrong.

use hearth_proto::{DocumentError, ErrorBody, ErrorCode, IdError};
use hearth_store::StoreError;
use std::path::PathBuf;
use thiserror::Error;

/// Exit code: a document that was asked for does not exist.
pub(crate) const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: the input or the arguments are not valid.
pub(crate) const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the store or the file system failed.
pub(crate) const EXIT_FAILURE: u8 = 3;

/// Everything that can make a command fail.
#[derive(Debug, Error)]
pub(crate) enum CliError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The document asked for does not exist.
    #[error("no document with id {id:?}; list the ids there are with `hearth list`")]
    NotFound {
        /// The id.
        id: String,
    },
    /// The input or an argument is not valid (exit code 2).
    #[error("{message}")]
    Input {
        /// `invalid_input` or `too_large`.
        code: ErrorCode,
        /// What is wrong and what to do.
        message: String,
    },
    /// Reading or writing a file other than the store's failed.
    #[error("cannot {action} {}: {source}; {hint}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `open`…).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// An error with where it happened in front (for example the line of
    /// an import); code and exit code are the inner error's.
    #[error("{prefix}: {inner}{suffix}")]
    Context {
        /// Where.
        prefix: String,
        /// What.
        inner: Box<CliError>,
        /// What it means for the rest (may be empty).
        suffix: String,
    },
}

impl From<DocumentError> for CliError {
    fn from(e: DocumentError) -> Self {
        let code = match e {
            DocumentError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::InvalidInput,
        };
        CliError::Input {
            code,
            message: e.to_string(),
        }
    }
}

impl From<IdError> for CliError {
    fn from(e: IdError) -> Self {
        CliError::input(e.to_string())
    }
}

impl CliError {
    /// A bad-input error (exit code 2).
    pub(crate) fn input(message: impl Into<String>) -> CliError {
        CliError::Input {
            code: ErrorCode::InvalidInput,
            message: message.into(),
        }
    }

    /// The stable error code.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            CliError::Store(e) => e.code(),
            CliError::NotFound { .. } => ErrorCode::NotFound,
            CliError::Input { code, .. } => *code,
            CliError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorCode::PermissionDenied
            }
            CliError::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                ErrorCode::StorageFull
            }
            CliError::Io { .. } => ErrorCode::Internal,
            CliError::Context { inner, .. } => inner.code(),
        }
    }

    /// The process exit code: 1 not found, 2 bad input, 3 everything else.
    pub(crate) fn exit_code(&self) -> u8 {
        // A data directory that cannot be used is a store failure (3), even
        // though the store reports it as `invalid_input` on the wire.
        match self {
            CliError::Store(StoreError::BadDirectory { .. }) => return EXIT_FAILURE,
            CliError::Context { inner, .. } => return inner.exit_code(),
            _ => {}
        }
        match self.code() {
            ErrorCode::NotFound => EXIT_NOT_FOUND,
            ErrorCode::InvalidInput | ErrorCode::TooLarge => EXIT_BAD_INPUT,
            _ => EXIT_FAILURE,
        }
    }

    /// The error as a code and a message.
    pub(crate) fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }

    /// Prefixes the message with where the error happened (for example the
    /// line of an import), keeping the code and the exit code.
    pub(crate) fn context(self, prefix: impl std::fmt::Display) -> CliError {
        self.context_with(prefix, "")
    }

    /// Like [`CliError::context`], also appending `suffix` to the message.
    pub(crate) fn context_with(
        self,
        prefix: impl std::fmt::Display,
        suffix: impl std::fmt::Display,
    ) -> CliError {
        CliError::Context {
            prefix: prefix.to_string(),
            inner: Box::new(self),
            suffix: suffix.to_string(),
        }
    }
}

/// The CLI's result type.
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_error_codes() {
        assert_eq!(
            CliError::NotFound { id: "a".into() }.exit_code(),
            EXIT_NOT_FOUND
        );
        assert_eq!(CliError::input("bad").exit_code(), EXIT_BAD_INPUT);
        let too_large: CliError = DocumentError::TooLarge { len: 2, max: 1 }.into();
        assert_eq!(too_large.exit_code(), EXIT_BAD_INPUT);
        let locked = CliError::Store(StoreError::Locked {
            dir: "/d".into(),
            pid: 7,
        });
        assert_eq!(locked.exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn a_bad_data_directory_is_a_store_failure() {
        let e = CliError::Store(StoreError::BadDirectory {
            dir: "/d".into(),
            detail: "it is a file".into(),
        });
        assert_eq!(e.exit_code(), EXIT_FAILURE);
        assert_eq!(e.context("opening").exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn context_keeps_the_code_and_prefixes_the_message() {
        let e = CliError::input("missing id").context("line 3");
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert_eq!(e.to_string(), "line 3: missing id");
    }
}
