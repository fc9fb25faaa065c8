//! The one error type of hearth-ipc and its mapping onto protocol codes.
//!
//! Owns: every way a channel operation can fail, on either side, each with a
//! message that says what to do, and [`IpcError::code`] onto the stable
//! [`ErrorCode`]s. Must never: lose the server's code and message (a remote
//! error travels as [`IpcError::Remote`] unchanged) or hide an I/O error.

use crate::types::LimitSource;
use hearth_proto::{ErrorBody, ErrorCode, HandshakeError};
use hearth_store::StoreError;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Everything that can go wrong on a hearth channel.
///
/// ```
/// use hearth_ipc::IpcError;
/// use hearth_proto::{ErrorBody, ErrorCode};
/// let e = IpcError::Remote(ErrorBody::new(ErrorCode::RateLimited, "slow down"));
/// assert_eq!(e.code(), ErrorCode::RateLimited);
/// assert_eq!(e.to_string(), "rate_limited: slow down");
/// ```
#[derive(Debug, Error)]
pub enum IpcError {
    /// The channel name is not `[A-Za-z0-9._-]{1,100}`.
    #[error(
        "invalid channel name {name:?}: {reason}; channel names are 1 to 100 characters from A-Z a-z 0-9 . _ -"
    )]
    InvalidChannelName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No server listens on the channel.
    #[error(
        "no hearth server on channel {channel:?} (socket {}): {detail}; start one with `hearth serve --ipc --channel {channel} --data-dir DIR`",
        path.display()
    )]
    ChannelNotFound {
        /// The channel name.
        channel: String,
        /// The socket path tried.
        path: PathBuf,
        /// What connecting found (no socket file, connection refused…).
        detail: String,
    },
    /// Another server holds the channel.
    #[error(
        "channel {channel:?} is already served by process {pid} (lock file {}); stop that server or choose another channel name",
        path.display()
    )]
    ChannelInUse {
        /// The channel name.
        channel: String,
        /// The other server's pid as written in the lock file (0 if unknown).
        pid: u32,
        /// The lock file.
        path: PathBuf,
    },
    /// The socket directory (or a file in it) is not private to this user.
    #[error("refusing to use {}: {reason}", path.display())]
    UnsafeDirectory {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The connection ended (the server went away, or closed this
    /// connection) before the answer arrived.
    #[error(
        "disconnected from the hearth server: {reason}; the next call connects again (to a restarted server, once one is back), and a write that was in flight may or may not have been applied: read it back to know"
    )]
    Disconnected {
        /// Why, as far as this side knows.
        reason: String,
    },
    /// No answer within the deadline.
    #[error(
        "{operation} got no answer within {timeout:?}; the server may be overloaded or stuck ({})",
        timeout_advice(operation)
    )]
    Timeout {
        /// What was waiting.
        operation: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The handshake failed or the server refused the connection.
    #[error("handshake with the hearth server failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server answered with an error: its code and message, unchanged.
    #[error("{0}")]
    Remote(ErrorBody),
    /// The store under the server failed (opening it, or a local call).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An argument was refused before anything was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A request longer than the connection sends, refused before
    /// anything was sent: a server closes the connection of a client that
    /// sends more than its `max_message_bytes`, and with it every call and
    /// subscription of that connection. The limit is the server's, as its
    /// hello said (protocol 2), 32 MiB against a protocol-1 server, or the
    /// client's own lower `ConnectOptions::max_request_bytes`: `limit`
    /// says which, and the message what to do.
    ///
    /// ```
    /// use hearth_ipc::{IpcError, LimitSource};
    /// let e = IpcError::TooLarge { operation: "call".into(), bytes: 50 << 20, max: 40 << 20, limit: LimitSource::Server };
    /// assert!(e.to_string().starts_with(
    ///     "call: the request is 52428800 bytes, over the 40 MiB (41943040 bytes) the server takes in one message (its max_message_bytes); nothing was sent"
    /// ));
    /// ```
    #[error(
        "{operation}: the request is {bytes} bytes, over {}; nothing was sent: {}",
        limit_text(*.max, *.limit),
        limit_advice(*.limit)
    )]
    TooLarge {
        /// The operation refused.
        operation: String,
        /// The request's length (its JSON arguments).
        bytes: usize,
        /// The most a request may be on this connection.
        max: usize,
        /// Whose limit `max` is.
        limit: LimitSource,
    },
    /// The peer broke the protocol (a reply that does not parse…).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server is shutting down or has shut down.
    #[error("the hearth server is shut down: {0}")]
    ShutDown(String),
    /// An operating-system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A size for people: `40 MiB`, `64 KiB`, `1.5 MiB`, `100 bytes`.
fn size(bytes: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The limit of [`IpcError::TooLarge`] and whose it is.
fn limit_text(max: usize, source: LimitSource) -> String {
    let limit = format!("the {} ({max} bytes)", size(max));
    match source {
        LimitSource::Server => {
            format!("{limit} the server takes in one message (its max_message_bytes)")
        }
        LimitSource::Assumed => format!(
            "{limit} a server takes in one message by default (this server speaks protocol 1, which does not say its limit)"
        ),
        LimitSource::Client {
            server_max: Some(server),
        } => format!(
            "{limit} this client set as its own limit (ConnectOptions::max_request_bytes; the server takes {})",
            size(server)
        ),
        LimitSource::Client { server_max: None } => format!(
            "{limit} this client set as its limit (ConnectOptions::max_request_bytes; this server speaks protocol 1, which does not say its own)"
        ),
    }
}

/// What to do about an [`IpcError::TooLarge`].
fn limit_advice(source: LimitSource) -> &'static str {
    match source {
        LimitSource::Server => {
            "split it into smaller documents or calls, or start the server with a larger limit (`hearth serve --max-message-bytes BYTES`, ServerBuilder::max_message_bytes)"
        }
        LimitSource::Assumed => {
            "split it into smaller documents or calls; if this server's max_message_bytes was raised, upgrade the server so that it says its limit (protocol 2), or, from Rust, raise this client's ConnectOptions::max_request_bytes as far"
        }
        LimitSource::Client {
            server_max: Some(_),
        } => {
            "split it into smaller documents or calls, or raise this client's max_request_bytes (unset, it is the server's limit)"
        }
        LimitSource::Client { server_max: None } => {
            "split it into smaller documents or calls, or raise this client's max_request_bytes no further than the server's max_message_bytes"
        }
    }
}

/// Which setting bounded a wait that timed out: connecting has its own.
fn timeout_advice(operation: &str) -> &'static str {
    if operation.starts_with(CONNECTING) {
        "raise the client's connect timeout: ConnectOptions::connect_timeout, or the connectTimeout option in Node"
    } else {
        "raise the client's timeout: ConnectOptions::timeout, or the timeout option in Node"
    }
}

/// How the operation of a connect's [`IpcError::Timeout`] starts.
pub(crate) const CONNECTING: &str = "connecting to channel";

impl IpcError {
    /// The stable protocol code for this error.
    ///
    /// ```
    /// use hearth_ipc::IpcError;
    /// use hearth_proto::ErrorCode;
    /// let e = IpcError::Disconnected { reason: "server closed the connection".into() };
    /// assert_eq!(e.code(), ErrorCode::Unavailable);
    /// ```
    pub fn code(&self) -> ErrorCode {
        match self {
            IpcError::InvalidChannelName { .. } | IpcError::InvalidInput(_) => {
                ErrorCode::InvalidInput
            }
            IpcError::TooLarge { .. } => ErrorCode::TooLarge,
            IpcError::ChannelNotFound { .. }
            | IpcError::Disconnected { .. }
            | IpcError::ShutDown(_) => ErrorCode::Unavailable,
            IpcError::ChannelInUse { .. } => ErrorCode::Locked,
            IpcError::UnsafeDirectory { .. } => ErrorCode::PermissionDenied,
            IpcError::Timeout { .. } => ErrorCode::Timeout,
            IpcError::Handshake(e) => e.code(),
            IpcError::Remote(body) => body.code,
            IpcError::Store(e) => e.code(),
            IpcError::Protocol(_) => ErrorCode::Internal,
            IpcError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
                // A transport this process or its server cannot have
                // (shared memory required where it is not offered).
                std::io::ErrorKind::Unsupported => ErrorCode::Unavailable,
                _ => ErrorCode::Internal,
            },
        }
    }

    /// The error as it travels on the wire: `{code, message}`. A remote
    /// error keeps the server's message exactly.
    ///
    /// ```
    /// use hearth_ipc::IpcError;
    /// use hearth_proto::ErrorCode;
    /// let body = IpcError::InvalidInput("id is empty".into()).to_body();
    /// assert_eq!(body.code, ErrorCode::InvalidInput);
    /// ```
    pub fn to_body(&self) -> ErrorBody {
        match self {
            IpcError::Remote(body) => body.clone(),
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> IpcError {
        IpcError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Turns a call's outcome into the `{success, data | error}` envelope that
/// Electron-style callers (ONE.CORE's `ipcMain.handle`) return.
///
/// ```
/// use hearth_ipc::{envelope, IpcError};
/// use hearth_proto::{ErrorBody, ErrorCode};
/// use serde_json::json;
/// assert_eq!(envelope(Ok(json!(1))), json!({"success": true, "data": 1}));
/// let failed = envelope(Err(IpcError::Remote(ErrorBody::new(ErrorCode::NotFound, "no user"))));
/// assert_eq!(failed, json!({"success": false, "error": {"code": "not_found", "message": "no user"}}));
/// ```
pub fn envelope(result: Result<serde_json::Value, IpcError>) -> serde_json::Value {
    match result {
        Ok(data) => serde_json::json!({"success": true, "data": data}),
        Err(e) => {
            let body = e.to_body();
            serde_json::json!({
                "success": false,
                "error": {"code": body.code.as_str(), "message": body.message},
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::HandshakeStatus;

    #[test]
    fn every_variant_maps_to_a_code() {
        let cases: Vec<(IpcError, ErrorCode)> = vec![
            (
                IpcError::InvalidChannelName {
                    name: "a/b".into(),
                    reason: "x".into(),
                },
                ErrorCode::InvalidInput,
            ),
            (
                IpcError::ChannelNotFound {
                    channel: "c".into(),
                    path: "/x".into(),
                    detail: "d".into(),
                },
                ErrorCode::Unavailable,
            ),
            (
                IpcError::ChannelInUse {
                    channel: "c".into(),
                    pid: 1,
                    path: "/x".into(),
                },
                ErrorCode::Locked,
            ),
            (
                IpcError::Timeout {
                    operation: "get".into(),
                    timeout: Duration::from_secs(1),
                },
                ErrorCode::Timeout,
            ),
            (
                IpcError::TooLarge {
                    operation: "call".into(),
                    bytes: 40 << 20,
                    max: 32 << 20,
                    limit: LimitSource::Server,
                },
                ErrorCode::TooLarge,
            ),
            (
                IpcError::Handshake(HandshakeError::Refused {
                    status: HandshakeStatus::PermissionDenied,
                    reason: "uid".into(),
                }),
                ErrorCode::PermissionDenied,
            ),
            (IpcError::Protocol("x".into()), ErrorCode::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e}");
            assert_eq!(e.to_body().code, code);
        }
    }

    #[test]
    fn channel_not_found_says_how_to_start_the_server() {
        let e = IpcError::ChannelNotFound {
            channel: "my-app".into(),
            path: "/run/user/1/hearth/my-app.sock".into(),
            detail: "no socket file".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("hearth serve --ipc --channel my-app --data-dir DIR"));
        assert!(msg.contains("/run/user/1/hearth/my-app.sock"));
    }

    fn too_large(max: usize, source: LimitSource) -> String {
        IpcError::TooLarge {
            operation: "put".into(),
            bytes: 34 << 20,
            max,
            limit: source,
        }
        .to_string()
    }

    #[test]
    fn too_large_names_whose_limit_refused_and_what_to_do() {
        let server = too_large(40 << 20, LimitSource::Server);
        assert!(
            server.contains("over the 40 MiB (41943040 bytes) the server takes"),
            "{server}"
        );
        assert!(server.contains("nothing was sent"), "{server}");
        assert!(server.contains("--max-message-bytes"), "{server}");
        let assumed = too_large(32 << 20, LimitSource::Assumed);
        assert!(
            assumed.contains("32 MiB (33554432 bytes) a server takes in one message by default"),
            "{assumed}"
        );
        assert!(assumed.contains("protocol 1"), "{assumed}");
        assert!(
            assumed.contains("ConnectOptions::max_request_bytes"),
            "{assumed}"
        );
        let own = too_large(
            1 << 20,
            LimitSource::Client {
                server_max: Some(40 << 20),
            },
        );
        assert!(
            own.contains("1 MiB (1048576 bytes) this client set as its own limit"),
            "{own}"
        );
        assert!(own.contains("the server takes 40 MiB"), "{own}");
        let own_v1 = too_large(3 << 19, LimitSource::Client { server_max: None });
        assert!(own_v1.contains("the 1.5 MiB (1572864 bytes)"), "{own_v1}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(32 << 20), "32 MiB");
        assert_eq!(size(64 << 10), "64 KiB");
        assert_eq!(size((1 << 20) + (1 << 19)), "1.5 MiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn a_connect_that_timed_out_names_the_connect_timeout_and_a_call_its_timeout() {
        let connect = IpcError::Timeout {
            operation: format!("{CONNECTING} \"app\""),
            timeout: Duration::from_secs(10),
        }
        .to_string();
        assert!(
            connect.contains("ConnectOptions::connect_timeout"),
            "{connect}"
        );
        assert!(connect.contains("connectTimeout"), "{connect}");
        let call = IpcError::Timeout {
            operation: "get".into(),
            timeout: Duration::from_secs(30),
        }
        .to_string();
        assert!(call.contains("ConnectOptions::timeout,"), "{call}");
    }
}
