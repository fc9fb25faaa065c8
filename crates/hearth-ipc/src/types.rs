//! The plain values a client hands out and takes: documents, pages, hits,
//! changes, topic events, subscription requests, connection options.
//!
//! Owns: the client-facing shapes. Must never: hold a connection, a lock or
//! do I/O; these are plain data.

use hearth_store::ChangeKind;
use serde_json::Value;
use std::time::Duration;

/// A document as read over the channel.
///
/// ```
/// use hearth_ipc::Document;
/// use serde_json::json;
/// let doc = Document { id: "user:1".into(), data: json!({"name": "Alice"}), metadata: None };
/// assert_eq!(doc.data["name"], "Alice");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The document id.
    pub id: String,
    /// The JSON object (`null` for a deleted document read with metadata).
    pub data: Value,
    /// Clock stamp, sequence number, deletion: present for
    /// `get_with_metadata`, absent otherwise.
    pub metadata: Option<Metadata>,
}

/// Per-document metadata.
///
/// ```
/// use hearth_ipc::Metadata;
/// let m = Metadata { seq: 3, hlc: 1, replica: 9, updated_at_ms: 0, deleted: false };
/// assert!(!m.deleted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Sequence number of the latest change to the document.
    pub seq: u64,
    /// Hybrid logical clock stamp of that change.
    pub hlc: u64,
    /// The replica that made it.
    pub replica: u64,
    /// Milliseconds since the epoch of that change.
    pub updated_at_ms: u64,
    /// Whether the document is deleted (a tombstone).
    pub deleted: bool,
}

/// One page of `list` or `query`.
///
/// ```
/// use hearth_ipc::Page;
/// let page = Page { docs: vec![], cursor: None };
/// assert!(page.docs.is_empty() && page.cursor.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// The documents, in id order.
    pub docs: Vec<Document>,
    /// Set when the page stopped at its limit: pass it as `after` to get the
    /// next page. `None` when there is nothing more.
    pub cursor: Option<String>,
}

/// A full-text search result.
///
/// ```
/// use hearth_ipc::{Document, Hit};
/// let hit = Hit { doc: Document { id: "a".into(), data: serde_json::json!({}), metadata: None }, score: 1.5 };
/// assert!(hit.score > 0.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The document.
    pub doc: Document,
    /// Relevance; higher is better.
    pub score: f64,
}

/// One committed change, as pushed to a change subscription.
///
/// ```
/// use hearth_ipc::{Change, ChangeKind};
/// let c = Change { seq: 1, id: "user:1".into(), kind: ChangeKind::Put, hlc: 5, replica: 2,
///                  data: Some(serde_json::json!({"name": "Alice"})) };
/// assert_eq!(c.kind, ChangeKind::Put);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Sequence number in the server's change log (strictly increasing).
    pub seq: u64,
    /// The document id.
    pub id: String,
    /// Put, patch or delete.
    pub kind: ChangeKind,
    /// Hybrid logical clock stamp.
    pub hlc: u64,
    /// The writing replica.
    pub replica: u64,
    /// The written object (whole document for a put, the fields for a
    /// patch); `None` for a delete.
    pub data: Option<Value>,
}

/// An event received on a topic subscription.
///
/// ```
/// use hearth_ipc::TopicEvent;
/// let e = TopicEvent { topic: "one-core:event:syncProgress".into(), payload: serde_json::json!({"progress": 1}) };
/// assert!(e.topic.starts_with("one-core:event:"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TopicEvent {
    /// The concrete topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Value,
}

/// What a change subscription follows: an id prefix (or everything), from a
/// sequence number (or from now).
///
/// ```
/// use hearth_ipc::Subscription;
/// let s = Subscription::prefix("user:").from_seq(0);
/// assert_eq!(s.prefix_filter(), Some("user:"));
/// assert_eq!(s.start(), Some(0));
/// assert_eq!(Subscription::all().start(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    prefix: Option<String>,
    from_seq: Option<u64>,
}

impl Subscription {
    /// Every document's changes, from now on.
    pub fn all() -> Subscription {
        Subscription::default()
    }

    /// Changes to ids starting with `prefix`, from now on.
    pub fn prefix(prefix: impl Into<String>) -> Subscription {
        Subscription {
            prefix: Some(prefix.into()),
            from_seq: None,
        }
    }

    /// Start at sequence number `seq` instead of now (0 or 1: the whole
    /// change log). Changes with a smaller number are not delivered.
    pub fn from_seq(mut self, seq: u64) -> Subscription {
        self.from_seq = Some(seq);
        self
    }

    /// The id prefix, if any.
    pub fn prefix_filter(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The first sequence number wanted; `None` means "from now".
    pub fn start(&self) -> Option<u64> {
        self.from_seq
    }
}

/// The longest timeout hearth keeps: 100 years. Every timeout setter
/// (client and server) clamps to it, so that `Duration::MAX` — or any
/// duration too long to add to the clock — means "no timeout in practice"
/// instead of an overflow.
///
/// ```
/// use hearth_ipc::{ConnectOptions, MAX_TIMEOUT};
/// use std::time::Duration;
/// let options = ConnectOptions::new("my-app").timeout(Duration::MAX);
/// # let _ = options;
/// assert_eq!(MAX_TIMEOUT.as_secs(), 100 * 365 * 24 * 60 * 60);
/// ```
pub const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `timeout`, at most [`MAX_TIMEOUT`].
pub(crate) fn clamp_timeout(timeout: Duration) -> Duration {
    timeout.min(MAX_TIMEOUT)
}

/// The instant (`std`'s or tokio's) `wait` after `start`, the wait kept at
/// most [`MAX_TIMEOUT`]: every deadline built from a caller's duration
/// goes through here, so that none overflows the clock.
pub(crate) fn deadline_after<I: std::ops::Add<Duration, Output = I>>(
    start: I,
    wait: Duration,
) -> I {
    start + clamp_timeout(wait)
}

/// How a client connects and how long it waits.
///
/// ```
/// use hearth_ipc::ConnectOptions;
/// use std::time::Duration;
/// let opts = ConnectOptions::new("my-app").timeout(Duration::from_secs(5));
/// assert_eq!(opts.call_timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub(crate) channel: String,
    pub(crate) socket_path: Option<std::path::PathBuf>,
    pub(crate) socket_dir: Option<std::path::PathBuf>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) resume_timeout: Duration,
    pub(crate) max_frame_bytes: u32,
    pub(crate) max_in_flight: u32,
    /// `None`: the server's message limit (see `max_request_bytes`).
    pub(crate) max_request_bytes: Option<usize>,
    pub(crate) event_buffer: usize,
    pub(crate) transport: TransportPreference,
}

/// Which transport a client connects over.
///
/// ```
/// use hearth_ipc::{ConnectOptions, TransportPreference};
/// let opts = ConnectOptions::new("my-app").transport(TransportPreference::Socket);
/// assert_eq!(opts.transport_preference(), TransportPreference::Socket);
/// assert_eq!(TransportPreference::parse("shm"), Some(TransportPreference::SharedMemory));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TransportPreference {
    /// Shared memory when both sides can (Linux, memfd and mmap allowed,
    /// the server offers it), else the socket. The default; the
    /// environment variable `HEARTH_TRANSPORT` (`socket`, `shm`, `auto`)
    /// overrides it.
    #[default]
    Auto,
    /// The Unix socket only.
    Socket,
    /// Shared memory, or fail to connect with the reason.
    SharedMemory,
}

impl TransportPreference {
    /// Reads a preference by name: `auto`, `socket`, `shm` (or
    /// `shared-memory`), case-insensitive.
    pub fn parse(name: &str) -> Option<TransportPreference> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(TransportPreference::Auto),
            "socket" | "unix" => Some(TransportPreference::Socket),
            "shm" | "shared-memory" | "shared_memory" | "sharedmemory" => {
                Some(TransportPreference::SharedMemory)
            }
            _ => None,
        }
    }

    /// The preference from `HEARTH_TRANSPORT`, if it is set and valid.
    pub fn from_env() -> Option<TransportPreference> {
        std::env::var("HEARTH_TRANSPORT")
            .ok()
            .and_then(|v| TransportPreference::parse(&v))
    }

    /// `HEARTH_TRANSPORT`'s value when it is set but names no
    /// preference (a typo would otherwise go unnoticed).
    pub(crate) fn invalid_env() -> Option<String> {
        let value = std::env::var_os("HEARTH_TRANSPORT")?;
        let text = value.to_string_lossy();
        TransportPreference::parse(&text)
            .is_none()
            .then(|| text.into_owned())
    }

    /// What to do: an explicit choice stands; `Auto` defers to
    /// `HEARTH_TRANSPORT`.
    pub fn resolve(self) -> TransportPreference {
        match self {
            TransportPreference::Auto => {
                TransportPreference::from_env().unwrap_or(TransportPreference::Auto)
            }
            explicit => explicit,
        }
    }

    /// Whether shared memory may be tried.
    pub fn allows_shared_memory(self) -> bool {
        self != TransportPreference::Socket
    }
}

/// Whose limit a request was held to, in [`IpcError::TooLarge`].
///
/// ```
/// use hearth_ipc::LimitSource;
/// assert_ne!(LimitSource::Server, LimitSource::Assumed);
/// ```
///
/// [`IpcError::TooLarge`]: crate::IpcError::TooLarge
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitSource {
    /// The server's `max_message_bytes`, as its hello said (protocol 2).
    Server,
    /// A server of protocol 1, which does not say its limit: the
    /// default, 32 MiB, is assumed.
    Assumed,
    /// This client's own `ConnectOptions::max_request_bytes`, below the
    /// server's limit or set against a protocol-1 server.
    Client {
        /// What the server takes, if it said (protocol 2).
        server_max: Option<usize>,
    },
}

/// The longest request a connection sends and whose limit that is: the
/// client's own limit (`own`, `ConnectOptions::max_request_bytes`) and
/// what the server said in its hello (`server`, protocol 2; `None` under
/// protocol 1). See [`ConnectOptions::max_request_bytes`].
pub(crate) fn request_limit(own: Option<usize>, server: Option<u64>) -> (usize, LimitSource) {
    match (own, server_message_limit(server)) {
        (None, Some(server)) => (server, LimitSource::Server),
        (None, None) => (
            hearth_proto::DEFAULT_MAX_PAYLOAD_BYTES,
            LimitSource::Assumed,
        ),
        (Some(own), Some(server)) if own >= server => (server, LimitSource::Server),
        (Some(own), server_max) => (own, LimitSource::Client { server_max }),
    }
}

/// The message limit a server said in its hello (protocol 2; `None`
/// under protocol 1), as this machine holds it: one past the address
/// space is the most there is.
pub(crate) fn server_message_limit(server: Option<u64>) -> Option<usize> {
    server.map(|max| usize::try_from(max).unwrap_or(usize::MAX))
}

/// The default per-call timeout: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl ConnectOptions {
    /// Defaults for channel `channel`: 30 s per call, 10 s to connect, the
    /// protocol's default frame and in-flight limits.
    pub fn new(channel: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            channel: channel.into(),
            socket_path: None,
            socket_dir: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            resume_timeout: DEFAULT_TIMEOUT,
            max_frame_bytes: hearth_proto::DEFAULT_MAX_FRAME_BYTES as u32,
            max_in_flight: hearth_proto::DEFAULT_MAX_IN_FLIGHT,
            max_request_bytes: None,
            event_buffer: 4096,
            transport: TransportPreference::Auto,
        }
    }

    /// The default deadline of every call (default 30 s; at most
    /// [`MAX_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.timeout = clamp_timeout(timeout);
        self
    }

    /// How long connecting and the handshake may take (default 10 s; at
    /// most [`MAX_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.connect_timeout = clamp_timeout(timeout);
        self
    }

    /// How long a change stream keeps trying to reconnect and resume after
    /// the connection is lost before it reports the error (default 30 s;
    /// at most [`MAX_TIMEOUT`]).
    pub fn resume_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.resume_timeout = clamp_timeout(timeout);
        self
    }

    /// Look for the channel's socket in this directory instead of
    /// `$XDG_RUNTIME_DIR/hearth` (the directory must still be private to
    /// this user). Pair with [`ServerBuilder::socket_dir`](crate::ServerBuilder::socket_dir).
    pub fn socket_dir(mut self, dir: impl Into<std::path::PathBuf>) -> ConnectOptions {
        self.socket_dir = Some(dir.into());
        self
    }

    /// Connect to this socket path instead of the channel's usual one (no
    /// directory checks).
    pub fn socket_path(mut self, path: impl Into<std::path::PathBuf>) -> ConnectOptions {
        self.socket_path = Some(path.into());
        self
    }

    /// Largest frame this client accepts (at least 64 KiB; larger messages
    /// arrive split).
    pub fn max_frame_bytes(mut self, bytes: u32) -> ConnectOptions {
        self.max_frame_bytes = bytes.max(hearth_proto::MIN_FRAME_LIMIT);
        self
    }

    /// A lower limit of this client's own on the length of a request
    /// (its JSON arguments). A longer request is refused before anything
    /// is sent ([`IpcError::TooLarge`] with [`LimitSource::Client`]): a
    /// server closes the connection of a client that sends more than it
    /// takes, and a refusal here lets the connection, its other calls and
    /// its subscriptions go on.
    ///
    /// Unset (the default), a connection sends whatever the server takes:
    /// the `max_message_bytes` a server of protocol 2 says in its hello
    /// (`ServerBuilder::max_message_bytes`, `hearth serve
    /// --max-message-bytes`; 32 MiB by default), or 32 MiB
    /// ([`DEFAULT_MAX_PAYLOAD_BYTES`](hearth_proto::DEFAULT_MAX_PAYLOAD_BYTES))
    /// against a server of protocol 1, which does not say its limit.
    ///
    /// Set, the limit is the smaller of `bytes` and what a protocol-2
    /// server said: it can lower the server's limit, never raise it,
    /// since the server would close the connection. Against a protocol-1
    /// server it is `bytes` as given: set it there to the
    /// `max_message_bytes` that server was started with, if that was
    /// raised. [`Client::max_request_bytes`] tells the limit of the
    /// current connection.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let sockets = tempfile::tempdir().unwrap();
    /// # let sockets = sockets.path().join("s");
    /// use hearth_ipc::{Client, ConnectOptions, Server};
    /// let server = Server::builder()
    ///     .channel("big-docs")
    ///     # .socket_dir(&sockets)
    ///     .data_dir(dir.path())
    ///     .max_message_bytes(64 << 20)
    ///     .start()?;
    /// let options = ConnectOptions::new("big-docs");
    /// # let options = options.socket_dir(&sockets);
    /// // Nothing to set: the server says it takes 64 MiB.
    /// let client = Client::connect_with(options.clone())?;
    /// assert_eq!(client.max_request_bytes(), Some(64 << 20));
    /// // A lower limit of this client's own.
    /// let careful = Client::connect_with(options.max_request_bytes(1 << 20))?;
    /// assert_eq!(careful.max_request_bytes(), Some(1 << 20));
    /// let e = careful.publish("big", serde_json::json!({"blob": "x".repeat(2 << 20)})).unwrap_err();
    /// assert_eq!(e.code(), hearth_proto::ErrorCode::TooLarge);
    /// # drop((client, careful));
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    ///
    /// [`IpcError::TooLarge`]: crate::IpcError::TooLarge
    /// [`Client::max_request_bytes`]: crate::Client::max_request_bytes
    pub fn max_request_bytes(mut self, bytes: usize) -> ConnectOptions {
        self.max_request_bytes = Some(bytes);
        self
    }

    /// Most requests this client keeps in flight at once (at least 1).
    pub fn max_in_flight(mut self, n: u32) -> ConnectOptions {
        self.max_in_flight = n.max(1);
        self
    }

    /// Events buffered per subscription on the client before the stream
    /// resubscribes (changes) or counts drops (topics) (default 4096).
    pub fn event_buffer(mut self, n: usize) -> ConnectOptions {
        self.event_buffer = n.max(1);
        self
    }

    /// Which transport to use (default [`TransportPreference::Auto`]:
    /// shared memory when possible, which `HEARTH_TRANSPORT=socket`
    /// turns off).
    pub fn transport(mut self, preference: TransportPreference) -> ConnectOptions {
        self.transport = preference;
        self
    }

    /// The transport preference set (before `HEARTH_TRANSPORT` is
    /// consulted).
    pub fn transport_preference(&self) -> TransportPreference {
        self.transport
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::{LimitSource, request_limit};

    const MIB: usize = 1 << 20;

    #[test]
    fn an_unset_limit_is_the_servers_or_32_mib_against_protocol_1() {
        assert_eq!(
            request_limit(None, Some(40 << 20)),
            (40 * MIB, LimitSource::Server)
        );
        assert_eq!(
            request_limit(None, Some(64 << 10)),
            (64 << 10, LimitSource::Server)
        );
        assert_eq!(request_limit(None, None), (32 * MIB, LimitSource::Assumed));
    }

    #[test]
    fn a_set_limit_lowers_the_servers_and_never_raises_it() {
        assert_eq!(
            request_limit(Some(MIB), Some(40 << 20)),
            (
                MIB,
                LimitSource::Client {
                    server_max: Some(40 * MIB)
                }
            )
        );
        assert_eq!(
            request_limit(Some(64 * MIB), Some(40 << 20)),
            (40 * MIB, LimitSource::Server)
        );
        assert_eq!(
            request_limit(Some(40 * MIB), Some(40 << 20)),
            (40 * MIB, LimitSource::Server)
        );
    }

    #[test]
    fn a_set_limit_stands_against_protocol_1() {
        assert_eq!(
            request_limit(Some(64 * MIB), None),
            (64 * MIB, LimitSource::Client { server_max: None })
        );
    }

    #[test]
    fn a_server_limit_past_the_address_space_is_the_most_there_is() {
        assert_eq!(request_limit(None, Some(u64::MAX)).0, usize::MAX);
    }
}
