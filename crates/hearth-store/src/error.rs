//! The store's error type and its mapping onto protocol error codes.
//!
//! Owns: every way a store operation can fail, each with a message that says
//! what to do. Must never: hide an I/O error behind a log line; every storage
//! failure reaches the caller through this type.

use hearth_proto::{DocumentError, ErrorBody, ErrorCode, IdError};
use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The document id is not valid.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// The document is not valid (bad JSON, not an object, too large).
    #[error(transparent)]
    InvalidDocument(#[from] DocumentError),
    /// Another argument is not valid.
    #[error("{0}")]
    InvalidInput(String),
    /// A batch or request is over a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// Another process (or this one) holds the data directory.
    #[error(
        "data directory {dir} is in use by process {pid}; stop that process or use another --data-dir"
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The holder's pid as written in the lock file (0 if unknown).
        pid: u32,
    },
    /// A file is damaged.
    #[error("{path} is damaged: {detail}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A SQLite database that is not hearth's.
    #[error(
        "{path} is a SQLite database that hearth did not create; point --data-dir at an empty or hearth directory"
    )]
    Foreign {
        /// The foreign database.
        path: PathBuf,
    },
    /// The data directory cannot be used.
    #[error("cannot use data directory {dir}: {detail}")]
    BadDirectory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        detail: String,
    },
    /// The disk is full.
    #[error("the disk holding {path} is full; free space and retry (nothing was written)")]
    StorageFull {
        /// The file being written.
        path: PathBuf,
    },
    /// An I/O error on a file.
    #[error("I/O error on {path}: {source}{}", io_advice(.source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A SQLite error.
    #[error("database error: {source}{advice}", source = .0, advice = sqlite_advice(.0))]
    Sqlite(#[from] rusqlite::Error),
    /// The store cannot accept writes now.
    #[error("{0}")]
    Unavailable(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// An internal invariant failed; a bug in hearth.
    #[error("internal error: {0}; please report this")]
    Internal(String),
}

impl StoreError {
    /// The stable protocol code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::InvalidId(_) | StoreError::InvalidInput(_) => ErrorCode::InvalidInput,
            StoreError::TooLarge(_) => ErrorCode::TooLarge,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                ErrorCode::Corrupt
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DiskFull =>
            {
                ErrorCode::StorageFull
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ReadOnly =>
            {
                ErrorCode::PermissionDenied
            }
            StoreError::InvalidDocument(DocumentError::TooLarge { .. }) => ErrorCode::TooLarge,
            StoreError::InvalidDocument(_) => ErrorCode::InvalidInput,
            StoreError::Locked { .. } => ErrorCode::Locked,
            StoreError::Corrupt { .. } | StoreError::Foreign { .. } => ErrorCode::Corrupt,
            StoreError::BadDirectory { .. } => ErrorCode::Unavailable,
            StoreError::StorageFull { .. } => ErrorCode::StorageFull,
            StoreError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorCode::PermissionDenied
            }
            StoreError::Io { .. } | StoreError::Sqlite(_) | StoreError::Internal(_) => {
                ErrorCode::Internal
            }
            StoreError::Unavailable(_) | StoreError::Closed => ErrorCode::Unavailable,
        }
    }

    /// The error as it travels on the wire.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }

    /// Wraps an I/O error on `path`, recognising a full disk.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        let path = path.into();
        if is_disk_full(&source) {
            StoreError::StorageFull { path }
        } else {
            StoreError::Io { path, source }
        }
    }
}

/// What to do about an I/O error, when the error says: appended to its
/// message.
fn io_advice(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "; this user may not write there: check the data directory's owner and \
             permissions (`ls -l`; hearth needs to read and write every file in it), or \
             choose another --data-dir (nothing stored was changed)"
        }
        _ => "",
    }
}

/// What to do about a SQLite error, when it says: appended to its message.
fn sqlite_advice(e: &rusqlite::Error) -> &'static str {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly => {
            "; the database file or its directory is read-only to this user: check the data \
             directory's owner and permissions (`ls -l`; SQLite also writes files beside \
             the database), or choose another --data-dir (nothing stored was changed)"
        }
        _ => "",
    }
}

/// Whether an I/O error means the disk or quota is full.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_this_user_may_not_write_says_what_to_check() {
        let e = StoreError::io(
            "/data/journal/1.log",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.code(), ErrorCode::PermissionDenied);
        assert!(e.to_string().contains("owner and permissions"), "{e}");
    }

    #[test]
    fn a_read_only_database_is_permission_denied_and_says_what_to_check() {
        let failure = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY);
        let e = StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, None));
        assert_eq!(e.code(), ErrorCode::PermissionDenied);
        assert!(e.to_string().contains("read-only to this user"), "{e}");
    }

    #[test]
    fn other_io_errors_keep_their_message_as_it_is() {
        let e = StoreError::io("/data/x", std::io::Error::other("boom"));
        assert_eq!(e.to_string(), "I/O error on /data/x: boom");
    }
}
