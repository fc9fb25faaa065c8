//! The CLI's error type and its exit codes.
//!
//! Owns: every way a command can fail, the stable error code each carries and
//! the exit code it maps to (0 ok, 1 not found, 2 bad input, 3 store or I/O
//! failure, 4 no server answering on the channel). Must never: lose the
//! store's or the server's message (it says what to do) or map a storage
//! failure to an exit code that suggests the input was wrong.

use hearth_ipc::IpcError;
use hearth_proto::{DocumentError, ErrorBody, ErrorCode, IdError};
use hearth_store::StoreError;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Exit code: a document that was asked for does not exist.
pub(crate) const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: the input or the arguments are not valid.
pub(crate) const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the store or the file system failed.
pub(crate) const EXIT_FAILURE: u8 = 3;
/// Exit code: no server answers on the channel — none runs there, it went
/// away, it is shutting down, or it did not answer in time. Worth retrying
/// once a server runs (`hearth wait`).
pub(crate) const EXIT_UNAVAILABLE: u8 = 4;

/// Everything that can make a command fail.
#[derive(Debug, Error)]
pub(crate) enum CliError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The channel failed: no server, the connection, or the server's own
    /// error (its code and message unchanged; the message is printed as the
    /// store's would be, the code goes in `--json` output).
    #[error("{}", channel_message(.0))]
    Channel(#[from] IpcError),
    /// `hearth wait` gave up.
    #[error(
        "no hearth server answered on channel {channel:?} within {waited:?} (socket {}; last attempt: {last}); start one with `hearth serve --channel {channel} --data-dir DIR`",
        socket.display()
    )]
    WaitTimedOut {
        /// The channel.
        channel: String,
        /// Its socket path.
        socket: PathBuf,
        /// How long it waited.
        waited: Duration,
        /// What the last attempt found.
        last: String,
    },
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
            CliError::Channel(e) if server_went_away(e) => ErrorCode::Unavailable,
            CliError::Channel(e) => e.code(),
            CliError::WaitTimedOut { .. } => ErrorCode::Timeout,
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

    /// The process exit code: 1 not found, 2 bad input, 4 no server
    /// answering on the channel, 3 everything else.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Store(e) | CliError::Channel(IpcError::Store(e)) => store_exit_code(e),
            CliError::Context { inner, .. } => inner.exit_code(),
            CliError::WaitTimedOut { .. } => EXIT_UNAVAILABLE,
            CliError::Channel(e) => channel_exit_code(e),
            _ => local_exit_code(self.code()),
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

/// What a channel error says: the server's own message as it is (as the
/// store's message is printed in embedded mode), anything else in full.
fn channel_message(e: &IpcError) -> String {
    match e {
        IpcError::Remote(body) => body.message.clone(),
        other => other.to_string(),
    }
}

/// The exit code of an error found in this process, by its code.
fn local_exit_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::NotFound => EXIT_NOT_FOUND,
        ErrorCode::InvalidInput | ErrorCode::TooLarge => EXIT_BAD_INPUT,
        _ => EXIT_FAILURE,
    }
}

/// The exit code of a store error. A data directory that cannot be used is
/// a store failure (3), even though the store reports it as `unavailable` on
/// the wire.
fn store_exit_code(e: &StoreError) -> u8 {
    match e {
        StoreError::BadDirectory { .. } => EXIT_FAILURE,
        other => local_exit_code(other.code()),
    }
}

/// Whether a channel error means no server answers: none runs, it went
/// away or is shutting down, or it gave no answer in time.
pub(crate) fn no_server(e: &IpcError) -> bool {
    matches!(e.code(), ErrorCode::Unavailable | ErrorCode::Timeout) || server_went_away(e)
}

/// A socket error that means the server went away under us: hearth-ipc
/// reports a connection reset while connecting (a server dying with the
/// connection in its backlog) as a plain I/O error.
fn server_went_away(e: &IpcError) -> bool {
    use std::io::ErrorKind;
    matches!(
        e,
        IpcError::Io { source, .. } if matches!(
            source.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::ConnectionRefused
                | ErrorKind::BrokenPipe
                | ErrorKind::NotConnected
        )
    )
}

/// The exit code of a channel error: the server's answer is judged by its
/// code like a local one; not reaching the server, losing it, or getting no
/// answer in time is 4.
fn channel_exit_code(e: &IpcError) -> u8 {
    if server_went_away(e) {
        return EXIT_UNAVAILABLE;
    }
    match e.code() {
        // No handler of that name: the argument is wrong.
        ErrorCode::UnknownOperation => EXIT_BAD_INPUT,
        ErrorCode::Unavailable | ErrorCode::Timeout => EXIT_UNAVAILABLE,
        code => local_exit_code(code),
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
    fn no_server_on_the_channel_exits_4() {
        let e = CliError::Channel(IpcError::ChannelNotFound {
            channel: "c".into(),
            path: "/run/hearth/c.sock".into(),
            detail: "there is no socket file".into(),
        });
        assert_eq!(e.exit_code(), EXIT_UNAVAILABLE);
        let gone = CliError::Channel(IpcError::Disconnected {
            reason: "the server closed the connection".into(),
        });
        assert_eq!(gone.exit_code(), EXIT_UNAVAILABLE);
    }

    #[test]
    fn a_connection_reset_while_connecting_is_a_server_gone_not_a_failure() {
        let e = CliError::Channel(IpcError::Io {
            context: "connecting to /run/hearth/c.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        });
        assert_eq!(e.exit_code(), EXIT_UNAVAILABLE);
        assert_eq!(e.code(), ErrorCode::Unavailable);
        let denied = CliError::Channel(IpcError::Io {
            context: "connecting to /run/hearth/c.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        assert_eq!(denied.exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn the_servers_answer_is_judged_by_its_code() {
        let remote = |code| CliError::Channel(IpcError::Remote(ErrorBody::new(code, "m")));
        assert_eq!(remote(ErrorCode::InvalidInput).exit_code(), EXIT_BAD_INPUT);
        assert_eq!(remote(ErrorCode::TooLarge).exit_code(), EXIT_BAD_INPUT);
        assert_eq!(
            remote(ErrorCode::UnknownOperation).exit_code(),
            EXIT_BAD_INPUT
        );
        assert_eq!(remote(ErrorCode::NotFound).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(remote(ErrorCode::Timeout).exit_code(), EXIT_UNAVAILABLE);
        assert_eq!(remote(ErrorCode::Internal).exit_code(), EXIT_FAILURE);
        assert_eq!(remote(ErrorCode::RateLimited).exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn the_servers_message_is_printed_as_is_and_its_code_kept() {
        let e = CliError::Channel(IpcError::Remote(ErrorBody::new(
            ErrorCode::InvalidInput,
            "search text has no words",
        )));
        assert_eq!(e.to_string(), "search text has no words");
        assert_eq!(e.to_body().code, ErrorCode::InvalidInput);
    }

    #[test]
    fn a_channel_held_by_another_server_is_a_failure_not_unavailable() {
        let e = CliError::Channel(IpcError::ChannelInUse {
            channel: "c".into(),
            pid: 42,
            path: "/run/hearth/c.lock".into(),
        });
        assert_eq!(e.exit_code(), EXIT_FAILURE);
        assert!(e.to_string().contains("42"));
    }

    #[test]
    fn context_keeps_the_code_and_prefixes_the_message() {
        let e = CliError::input("missing id").context("line 3");
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert_eq!(e.to_string(), "line 3: missing id");
    }
}
