//! Custom handlers: what a handler is given ([`HandlerContext`]) and how it
//! fails ([`HandlerError`]).
//!
//! Owns: the handler signatures the server builder accepts and the typed
//! error that becomes an error frame `{code, message}`. Must never: let a
//! handler's failure or panic escape as anything but an error reply (the
//! server catches panics; see `server::router`).

use crate::error::IpcError;
use crate::transport::{BoxFuture, TransportKind};
use hearth_bus::EventBus;
use hearth_proto::{ErrorBody, ErrorCode};
use hearth_store::{Store, StoreError};
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// What a handler knows about the call: who is calling and the server's
/// store and event bus.
///
/// ```
/// use hearth_ipc::{HandlerContext, HandlerError, Server};
/// use serde_json::{json, Value};
/// fn whoami(ctx: &HandlerContext, _payload: Value) -> Result<Value, HandlerError> {
///     Ok(json!({"connection": ctx.connection_id(), "pid": ctx.peer_pid()}))
/// }
/// let _builder = Server::builder().handler("app:whoami", whoami);
/// ```
#[derive(Clone)]
pub struct HandlerContext {
    pub(crate) connection_id: u64,
    pub(crate) peer_pid: Option<i32>,
    pub(crate) peer_uid: Option<u32>,
    pub(crate) transport: TransportKind,
    pub(crate) name: Arc<str>,
    pub(crate) store: Store,
    pub(crate) bus: EventBus,
}

impl fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerContext")
            .field("connection_id", &self.connection_id)
            .field("peer_pid", &self.peer_pid)
            .field("peer_uid", &self.peer_uid)
            .field("transport", &self.transport)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl HandlerContext {
    /// The calling connection's id (unique for the server's lifetime).
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The calling process's pid, when the transport knows it (sockets).
    pub fn peer_pid(&self) -> Option<i32> {
        self.peer_pid
    }

    /// The calling process's uid, when the transport knows it (sockets).
    pub fn peer_uid(&self) -> Option<u32> {
        self.peer_uid
    }

    /// The transport the call came over.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// The handler name that was called.
    pub fn handler_name(&self) -> &str {
        &self.name
    }

    /// The server's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Publishes an event to every matching topic subscription (and
    /// in-process bus listener); returns how many received it.
    pub fn publish(&self, topic: &str, payload: &Value) -> Result<usize, HandlerError> {
        self.bus
            .try_emit(topic, payload)
            .map_err(|e| HandlerError::invalid_input(e.to_string()))
    }
}

/// A handler's failure: a protocol code and a message for the caller.
///
/// ```
/// use hearth_ipc::HandlerError;
/// use hearth_proto::ErrorCode;
/// let e = HandlerError::permission_denied("log in first");
/// assert_eq!(e.code(), ErrorCode::PermissionDenied);
/// let from_json: HandlerError = serde_json::from_str::<u8>("x").unwrap_err().into();
/// assert_eq!(from_json.code(), ErrorCode::InvalidInput);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(pub ErrorBody);

impl HandlerError {
    /// An error with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> HandlerError {
        HandlerError(ErrorBody::new(code, message))
    }

    /// `invalid_input`: the payload is wrong.
    pub fn invalid_input(message: impl Into<String>) -> HandlerError {
        HandlerError::new(ErrorCode::InvalidInput, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> HandlerError {
        HandlerError::new(ErrorCode::NotFound, message)
    }

    /// `permission_denied`.
    pub fn permission_denied(message: impl Into<String>) -> HandlerError {
        HandlerError::new(ErrorCode::PermissionDenied, message)
    }

    /// `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> HandlerError {
        HandlerError::new(ErrorCode::Unavailable, message)
    }

    /// `internal`.
    pub fn internal(message: impl Into<String>) -> HandlerError {
        HandlerError::new(ErrorCode::Internal, message)
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HandlerError {}

impl From<ErrorBody> for HandlerError {
    fn from(body: ErrorBody) -> Self {
        HandlerError(body)
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        HandlerError(e.to_body())
    }
}

impl From<IpcError> for HandlerError {
    fn from(e: IpcError) -> Self {
        HandlerError(e.to_body())
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(e: serde_json::Error) -> Self {
        HandlerError::invalid_input(e.to_string())
    }
}

/// A blocking handler (run on the server's blocking pool).
pub(crate) type SyncHandler =
    Arc<dyn Fn(&HandlerContext, Value) -> Result<Value, HandlerError> + Send + Sync>;

/// An async handler (run as a task on the server's runtime).
pub(crate) type AsyncHandler = Arc<
    dyn Fn(HandlerContext, Value) -> BoxFuture<'static, Result<Value, HandlerError>> + Send + Sync,
>;

/// A registered handler.
#[derive(Clone)]
pub(crate) enum Handler {
    Sync(SyncHandler),
    Async(AsyncHandler),
}

impl Handler {
    /// A blocking handler (run on the blocking pool).
    pub(crate) fn blocking<F>(f: F) -> Handler
    where
        F: Fn(&HandlerContext, Value) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        Handler::Sync(Arc::new(f))
    }

    /// An async handler (run as a task on the server's runtime).
    pub(crate) fn future<F, Fut>(f: F) -> Handler
    where
        F: Fn(HandlerContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
    {
        let f = move |ctx, payload| -> BoxFuture<'static, Result<Value, HandlerError>> {
            Box::pin(f(ctx, payload))
        };
        Handler::Async(Arc::new(f))
    }
}
