//! The addon's one error type and how it crosses into JavaScript.
//!
//! Owns: [`NodeError`] — every way an addon call fails — and its stable
//! `code` string (the `ECHANNEL_NOT_FOUND`-style codes for conditions of the
//! channel itself, the protocol's own codes such as `not_found` or
//! `too_large` for everything else). `index.js` maps each code to its
//! protocol code and builds the `Error` users see. Must never: lose the
//! server's code or message (a remote error keeps both), or turn an error
//! into a panic.

use hearth_ipc::IpcError;
use hearth_proto::ErrorCode;
use napi_derive::napi;
use thiserror::Error;

/// Everything an addon call can fail with.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The channel, the connection or the server said no.
    #[error(transparent)]
    Ipc(#[from] IpcError),
    /// An argument from JavaScript was refused before anything was sent.
    #[error("{0}")]
    InvalidInput(String),
    /// The client (or host) was closed by the program.
    #[error("{0} is closed; create a new one to reconnect")]
    Closed(&'static str),
    /// The caller's AbortSignal fired.
    #[error("the operation was aborted")]
    Aborted,
    /// Something inside the addon failed (a task panicked, a runtime is
    /// gone); a bug to report.
    #[error("internal error in the hearth addon: {0}")]
    Internal(String),
}

impl NodeError {
    /// The stable code JavaScript sees as `err.code`.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::Ipc(e) => ipc_code(e),
            NodeError::InvalidInput(_) => ErrorCode::InvalidInput.as_str(),
            NodeError::Closed(_) => "ECLOSED",
            NodeError::Aborted => "ABORT_ERR",
            NodeError::Internal(_) => ErrorCode::Internal.as_str(),
        }
    }

    /// The error thrown by a synchronous addon call: `code` is
    /// [`code`](Self::code), the message is this error's text.
    pub fn into_napi(self) -> napi::Error<String> {
        napi::Error::new(self.code().to_string(), self.to_string())
    }

    /// The error value an asynchronous addon call resolves with (see
    /// [`Outcome`]).
    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

fn ipc_code(e: &IpcError) -> &'static str {
    match e {
        IpcError::InvalidChannelName { .. } => "EINVALID_CHANNEL",
        IpcError::ChannelNotFound { .. } => "ECHANNEL_NOT_FOUND",
        IpcError::ChannelInUse { .. } => "ECHANNEL_IN_USE",
        IpcError::UnsafeDirectory { .. } => "EUNSAFE_DIRECTORY",
        IpcError::Disconnected { .. } | IpcError::ShutDown(_) => "EDISCONNECTED",
        IpcError::Protocol(_) => "EPROTOCOL",
        // Remote errors, store errors, timeouts, handshake refusals, bad
        // input and I/O errors: the protocol code says it all.
        other => other.code().as_str(),
    }
}

impl From<serde_json::Error> for NodeError {
    fn from(e: serde_json::Error) -> Self {
        NodeError::InvalidInput(format!("not valid JSON: {e}"))
    }
}

/// What `code` and `message` an asynchronous addon call failed with.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The stable code (see [`NodeError::code`]).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

/// How an asynchronous addon call settles: its promise always resolves,
/// with the result (a JSON string, or `null`) or an [`ErrorInfo`] that
/// `index.js` turns into a thrown `Error`. (A napi-rs rejection can only
/// carry napi's own status codes, not ours.)
pub type Outcome = napi::Either<Option<String>, ErrorInfo>;

/// The [`Outcome`] of a result.
pub fn outcome(result: Result<Option<String>, NodeError>) -> Outcome {
    match result {
        Ok(value) => napi::Either::A(value),
        Err(e) => napi::Either::B(e.info()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::ErrorBody;
    use std::time::Duration;

    #[test]
    fn channel_conditions_have_e_codes_and_the_rest_protocol_codes() {
        let cases: Vec<(NodeError, &str)> = vec![
            (
                IpcError::ChannelNotFound {
                    channel: "c".into(),
                    path: "/x".into(),
                    detail: "no socket".into(),
                }
                .into(),
                "ECHANNEL_NOT_FOUND",
            ),
            (
                IpcError::Disconnected {
                    reason: "gone".into(),
                }
                .into(),
                "EDISCONNECTED",
            ),
            (
                IpcError::Remote(ErrorBody::new(ErrorCode::TooLarge, "big")).into(),
                "too_large",
            ),
            (
                IpcError::Timeout {
                    operation: "get".into(),
                    timeout: Duration::from_millis(5),
                }
                .into(),
                "timeout",
            ),
            (NodeError::Closed("the client"), "ECLOSED"),
            (NodeError::Aborted, "ABORT_ERR"),
            (NodeError::InvalidInput("x".into()), "invalid_input"),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e}");
            assert_eq!(e.info().code, code);
        }
    }

    #[test]
    fn a_remote_message_is_kept() {
        let e: NodeError = IpcError::Remote(ErrorBody::new(ErrorCode::NotFound, "no user")).into();
        assert!(e.to_string().contains("no user"));
    }
}
