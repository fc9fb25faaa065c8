//! The transport seam: one connected, post-handshake duplex of frames.
//!
//! Owns: the [`FrameReader`] / [`FrameWriter`] traits every transport
//! implements, the [`Link`] that bundles them with what the handshake
//! agreed ([`LinkInfo`]), and [`LinkError`]. The client and the server are
//! written against these alone, so a transport is added without touching
//! either: the Unix socket ([`socket`]), in-process channels ([`memory`])
//! and shared memory ([`shm`]).
//!
//! Shared memory plugs in here: after the socket handshake agreed
//! [`Capabilities::SHARED_MEMORY`](hearth_proto::Capabilities), the client
//! asks to attach, the server creates the memfd rings and passes the fd
//! over the socket, and both sides build a `Link` whose writer puts frames
//! on the outbound ring and whose reader yields frames from the inbound
//! one, while the socket stays open and is read only for EOF (the liveness
//! signal: EOF ends the link). Frames bigger than a ring are split with
//! `MORE` above this seam (the negotiated frame limits of a shared-memory
//! link are lowered to what a ring carries). The hot path bypasses the
//! seam: the server's per-connection ring thread answers quick requests
//! itself, and a blocking client writes and reads the rings on its own
//! thread (see `server/shm.rs` and `client/shm.rs`).
//!
//! Must never: interpret payloads, apply policy (limits, routing), or block
//! a thread: every method is async and a stuck peer surfaces as
//! [`LinkError::Stalled`] after the writer's stall timeout.

pub mod memory;
pub mod shm;
pub mod socket;

/// The stable start of the reason of a handshake refused (status 4,
/// `unavailable`) because the client's process already has
/// `ServerBuilder::max_connections_per_process` connections.
///
/// ```
/// assert_eq!(hearth_ipc::PROCESS_LIMIT_PREFIX, "process_limit:");
/// ```
pub const PROCESS_LIMIT_PREFIX: &str = "process_limit:";

/// The stable start of the reason in the refusing hello a socket gets when
/// it is closed without its hello because its process, or the server, has
/// as many sockets in the handshake as it may
/// (`ServerBuilder::max_handshakes_per_process`,
/// `ServerBuilder::max_handshakes`). hearth's clients connect again when
/// they get it (`socket::connect`).
///
/// ```
/// assert_eq!(hearth_ipc::HANDSHAKE_LIMIT_PREFIX, "handshake_limit:");
/// ```
pub const HANDSHAKE_LIMIT_PREFIX: &str = "handshake_limit:";

/// Whether `e` is a refusal for the handshake limits
/// ([`HANDSHAKE_LIMIT_PREFIX`]): the server counts those, the client
/// connects again after one.
pub(crate) fn handshake_limit_refusal(e: &hearth_proto::HandshakeError) -> bool {
    matches!(e, hearth_proto::HandshakeError::Refused { reason, .. } if reason.starts_with(HANDSHAKE_LIMIT_PREFIX))
}

use crate::policy::PeerCredentials;
use hearth_proto::{Frame, FrameError, Negotiated};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use thiserror::Error;

/// A boxed, sendable future (the traits are object-safe, so transports can
/// be chosen at run time).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which transport a link runs over.
///
/// ```
/// use hearth_ipc::transport::TransportKind;
/// assert_eq!(TransportKind::Socket.name(), "socket");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// A Unix stream socket carrying frames.
    Socket,
    /// Channels inside one process (tests, embedding).
    InProcess,
    /// Rings in a shared-memory segment, with the Unix socket kept open as
    /// the liveness signal.
    SharedMemory,
}

impl TransportKind {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Socket => "socket",
            TransportKind::InProcess => "in-process",
            TransportKind::SharedMemory => "shm",
        }
    }
}

/// What a link's handshake established.
///
/// ```
/// use hearth_ipc::transport::{LinkInfo, TransportKind};
/// use hearth_proto::{negotiate, ClientHello, ServerLimits};
/// let info = LinkInfo {
///     kind: TransportKind::InProcess,
///     negotiated: negotiate(&ClientHello::default(), &ServerLimits::default()).unwrap(),
///     peer: None,
/// };
/// assert_eq!(info.negotiated.version, 2);
/// assert_eq!(info.negotiated.server_max_message_bytes, Some(32 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    /// The transport.
    pub kind: TransportKind,
    /// Version, capabilities and limits both sides agreed.
    pub negotiated: Negotiated,
    /// The peer's credentials (sockets; `None` in process).
    pub peer: Option<PeerCredentials>,
}

/// Why a link failed.
///
/// ```
/// use hearth_ipc::transport::LinkError;
/// use std::time::Duration;
/// let e = LinkError::Stalled { after: Duration::from_secs(10) };
/// assert!(e.to_string().contains("not reading"));
/// ```
#[derive(Debug, Error)]
pub enum LinkError {
    /// The peer sent bytes that are not a valid frame.
    /// [`FrameError::is_fatal`] says whether the link can go on.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed in the middle of a frame.
    #[error(
        "the peer closed the connection in the middle of a frame ({buffered} bytes of it received)"
    )]
    Truncated {
        /// Bytes of the unfinished frame received.
        buffered: usize,
    },
    /// A write made no progress for the stall timeout: the peer is not
    /// reading.
    #[error("the peer is not reading: a write made no progress for {after:?}")]
    Stalled {
        /// The stall timeout.
        after: Duration,
    },
    /// The other side is gone.
    #[error("the connection is closed")]
    Closed,
    /// An operating-system error.
    #[error("connection I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Frames in: the receiving half of a link. `read_frame` must be
/// cancel-safe (dropping its future loses no frame): the connection loops
/// select on it. See [`Link`] for an example.
pub trait FrameReader: Send + 'static {
    /// The next frame; `Ok(None)` when the peer closed cleanly. A
    /// non-fatal [`LinkError::Frame`] (an unknown operation) may be followed
    /// by more frames; any other error ends the link.
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, LinkError>>;
}

/// Frames out: the sending half of a link. See [`Link`] for an example.
pub trait FrameWriter: Send + 'static {
    /// Sends `frames` in order. Each is within the peer's `max_frame_bytes`
    /// (the caller splits larger messages). Fails with
    /// [`LinkError::Stalled`] when the peer stops reading for the writer's
    /// stall timeout.
    fn write_frames<'a>(&'a mut self, frames: &'a [Frame]) -> BoxFuture<'a, Result<(), LinkError>>;

    /// Closes the sending direction (the peer reads EOF).
    fn close(&mut self) -> BoxFuture<'_, ()>;
}

/// A connected, post-handshake duplex of frames.
///
/// ```
/// use hearth_ipc::transport::memory;
/// use hearth_proto::{negotiate, ClientHello, Frame, Operation, ServerLimits};
/// use serde_json::json;
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let agreed = negotiate(&ClientHello::default(), &ServerLimits::default()).unwrap();
/// let (mut client, mut server) = memory::pair(agreed, std::time::Duration::from_secs(1));
/// let ping = Frame::json_request(Operation::Ping, 1, &json!({}));
/// client.writer.write_frames(std::slice::from_ref(&ping)).await.unwrap();
/// assert_eq!(server.reader.read_frame().await.unwrap(), Some(ping));
/// # });
/// ```
pub struct Link {
    /// What the handshake agreed.
    pub info: LinkInfo,
    /// Frames from the peer.
    pub reader: Box<dyn FrameReader>,
    /// Frames to the peer.
    pub writer: Box<dyn FrameWriter>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}
