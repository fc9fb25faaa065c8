//! The async client: connecting (socket or in process), reconnecting, and
//! one method per operation.
//!
//! Owns: [`AsyncClient`] — per-call deadlines, turning replies into typed
//! values, and replacing a dead connection on the next call. Must never:
//! wait past a call's deadline, retry a request that may have run (only
//! connecting is retried, and only by change streams), or block a thread.

mod blocking;
mod core;
mod permits;
mod shm;
mod stream;
mod within;

pub use blocking::{ChangeStream, Client, DocStream, TopicStream};
pub use stream::{AsyncChangeStream, AsyncDocStream, AsyncTopicStream};
pub use within::{Later, Within};

use self::core::{ConnCore, EventMode, Pending, final_payload};
use crate::channel;
use crate::error::IpcError;
use crate::ops;
use crate::server::Shared;
use crate::transport::shm::{ShmSide, client_upgrade};
use crate::transport::{Link, socket};
use crate::types::{ConnectOptions, Document, Hit, Page, Subscription, TransportPreference};
use hearth_proto::{ClientHello, Frame, Operation};
use hearth_store::{ListOptions, WriteOp};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A connection as the transports hand it over.
pub(crate) enum Connected {
    /// Frames over a link (socket, in process), and a socket's direct
    /// write for blocking calls.
    Link(Link, Option<socket::DirectWrite>),
    /// Shared memory.
    Shm(ShmSide),
}

/// How a client reaches its server.
pub(crate) enum Connector {
    /// A channel's Unix socket.
    Socket { options: ConnectOptions },
    /// A server in this process.
    InProcess {
        shared: Weak<Shared>,
        options: ConnectOptions,
    },
}

impl Connector {
    pub(crate) fn options(&self) -> &ConnectOptions {
        match self {
            Connector::Socket { options } | Connector::InProcess { options, .. } => options,
        }
    }

    pub(crate) async fn connect(&self, hello: ClientHello) -> Result<Connected, IpcError> {
        match self {
            Connector::Socket { options } => {
                if options.transport == TransportPreference::Auto
                    && let Some(value) = TransportPreference::invalid_env()
                {
                    return Err(IpcError::InvalidInput(format!(
                        "HEARTH_TRANSPORT={value:?} names no transport: set it to auto, socket or shm, or unset it"
                    )));
                }
                let path = match &options.socket_path {
                    Some(path) => path.clone(),
                    None => {
                        channel::validate_channel_name(&options.channel)?;
                        let dir = match &options.socket_dir {
                            Some(dir) => dir.clone(),
                            None => channel::socket_dir()?,
                        };
                        let path = dir.join(format!("{}.sock", options.channel));
                        if let Some(dir) = path.parent()
                            && !channel::ensure_private_dir(dir, false)?
                        {
                            let detail =
                                format!("the socket directory {} does not exist", dir.display());
                            return Err(IpcError::ChannelNotFound {
                                channel: options.channel.clone(),
                                path,
                                detail,
                            });
                        }
                        path
                    }
                };
                channel::check_path_len(&path)?;
                let started = tokio::time::Instant::now();
                let handshaken =
                    socket::connect(&options.channel, &path, hello, options.connect_timeout)
                        .await?;
                let preference = options.transport.resolve();
                let agreed = handshaken
                    .info
                    .negotiated
                    .capabilities
                    .contains(hearth_proto::Capabilities::SHARED_MEMORY);
                let required = preference == TransportPreference::SharedMemory;
                if !agreed || !preference.allows_shared_memory() {
                    if required {
                        return Err(crate::transport::shm::shm_unavailable(
                            "the server does not offer shared memory",
                            "it is not on Linux, was started with --no-shm (or \
                             shared memory turned off), or cannot create shared memory \
                             where it runs (its log says why)",
                        ));
                    }
                    let (link, direct) = handshaken.into_link(None);
                    return Ok(Connected::Link(link, Some(direct)));
                }
                let left = options.connect_timeout.saturating_sub(started.elapsed());
                match tokio::time::timeout(left, client_upgrade(handshaken, required)).await {
                    Ok(Ok(Ok(side))) => Ok(Connected::Shm(side)),
                    Ok(Ok(Err(handshaken))) => {
                        let (link, direct) = handshaken.into_link(None);
                        Ok(Connected::Link(link, Some(direct)))
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(IpcError::Timeout {
                        operation: format!(
                            "moving the connection to channel {:?} to shared memory",
                            options.channel
                        ),
                        timeout: options.connect_timeout,
                    }),
                }
            }
            Connector::InProcess { shared, .. } => {
                let shared = shared
                    .upgrade()
                    .ok_or_else(|| IpcError::ShutDown("the in-process server is gone".into()))?;
                shared
                    .connect_in_process(hello)
                    .map(|link| Connected::Link(link, None))
            }
        }
    }
}

struct ClientInner {
    connector: Connector,
    current: Mutex<Option<Arc<ConnCore>>>,
    reconnecting: tokio::sync::Mutex<()>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        if let Some(core) = self.current.lock().take() {
            core.close();
        }
    }
}

/// A client for async programs: every method is `async` and never blocks
/// the runtime. Cheap to clone; clones share the connection. Many calls may
/// be in flight at once (pipelined on one connection).
///
/// ```no_run
/// # async fn demo() -> Result<(), hearth_ipc::IpcError> {
/// use hearth_ipc::AsyncClient;
/// use serde_json::json;
/// let client = AsyncClient::connect("my-app").await?;
/// client.put("user:1", json!({"name": "Alice"})).await?;
/// let user = client.get("user:1").await?;
/// assert_eq!(user.unwrap()["name"], "Alice");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<ClientInner>,
    timeout: Duration,
    /// How long a call with a budget (`get_within`, …) may wait on the
    /// calling thread for its connection's turn (see
    /// [`with_turn_wait`](AsyncClient::with_turn_wait)).
    turn_wait: Duration,
    /// How long a unary call over shared memory waits for its answer on
    /// the calling thread before awaiting the rest (zero: never; see
    /// [`with_fast_path`](AsyncClient::with_fast_path)).
    fast_path: Duration,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient")
            .field("channel", &self.inner.connector.options().channel)
            .field("timeout", &self.timeout)
            .field("turn_wait", &self.turn_wait)
            .field("fast_path", &self.fast_path)
            .finish_non_exhaustive()
    }
}

/// What a subscribe request set up.
pub(crate) struct EventSub {
    core: Arc<ConnCore>,
    id: u64,
    mode: EventMode,
    pub(crate) number: u64,
    pub(crate) start: u64,
    pub(crate) rx: mpsc::Receiver<Frame>,
    pub(crate) overflow: Arc<AtomicU64>,
    /// The server already ended it (lagged): nothing to unsubscribe.
    pub(crate) ended: bool,
}

impl Drop for EventSub {
    fn drop(&mut self) {
        self.core.unregister(self.id);
        if self.ended || self.core.is_dead() {
            return;
        }
        // Fire and forget: the answer goes to an id nobody waits for.
        let op = match self.mode {
            EventMode::Change => Operation::Unsubscribe,
            EventMode::Topic => Operation::UnsubscribeTopic,
        };
        let id = self.core.next_id();
        let _ = self.core.send(Frame::json_request(
            op,
            id,
            &json!({"subscription": self.number}),
        ));
    }
}

/// The outcome of a streamed operation: its items and the stream-end
/// summary.
pub(crate) struct Collected {
    items: Vec<Value>,
    /// Chunks kept unparsed (a stream that `keep_raw`), after `items`.
    raw: Vec<Vec<u8>>,
    end: Value,
}

fn parse_json(payload: &[u8]) -> Result<Value, IpcError> {
    serde_json::from_slice(payload)
        .map_err(|e| IpcError::Protocol(format!("the server sent a reply that is not JSON: {e}")))
}

impl AsyncClient {
    /// Connects to the server on channel `channel` (default options).
    pub async fn connect(channel: &str) -> Result<AsyncClient, IpcError> {
        AsyncClient::connect_with(ConnectOptions::new(channel)).await
    }

    /// Connects with options (timeouts, limits, an explicit socket path).
    pub async fn connect_with(options: ConnectOptions) -> Result<AsyncClient, IpcError> {
        if options.socket_path.is_none() {
            channel::validate_channel_name(&options.channel)?;
        }
        AsyncClient::connect_with_connector(Connector::Socket { options }).await
    }

    pub(crate) async fn connect_with_connector(
        connector: Connector,
    ) -> Result<AsyncClient, IpcError> {
        let timeout = connector.options().timeout;
        let core = ConnCore::open(&connector).await?;
        Ok(AsyncClient {
            inner: Arc::new(ClientInner {
                connector,
                current: Mutex::new(Some(core)),
                reconnecting: tokio::sync::Mutex::new(()),
            }),
            timeout,
            turn_wait: Duration::ZERO,
            fast_path: Duration::ZERO,
        })
    }

    /// The same client (same connection) with another per-call timeout
    /// (at most [`MAX_TIMEOUT`](crate::MAX_TIMEOUT)).
    pub fn with_timeout(&self, timeout: Duration) -> AsyncClient {
        AsyncClient {
            timeout: crate::types::clamp_timeout(timeout),
            ..self.clone()
        }
    }

    /// The same client (same connection) whose calls with a budget
    /// ([`Client::get_within`](crate::Client::get_within) and the other
    /// `_within` calls) may wait on the calling thread for up to
    /// `turn_wait` in all, instead of their budget, while the server
    /// answers this connection only in its turn.
    ///
    /// Over shared memory, when more of a process's connections are busy
    /// than the server has cores for, the server answers them by turns of
    /// a couple of milliseconds, and tells each waiting connection so. A
    /// call that waits for its turn past its budget is otherwise handed to
    /// the async side (a [`Later`](crate::Later)), which costs several
    /// thread wake-ups per wait; a thread that has nothing else to do (a
    /// worker thread of an event-loop host) keeps more of its share by
    /// waiting on. Only a call the server has said waits for its turn
    /// waits on: any other slow answer (a stalled server) still goes on
    /// later after the budget, and a server that stalls mid-round holds a
    /// call for the turn wait at most. Zero (the default) turns it off; at
    /// most the call's timeout.
    ///
    /// ```no_run
    /// use hearth_ipc::{Client, Within};
    /// use std::time::Duration;
    /// let client = Client::connect("my-app")?.with_turn_wait(Duration::from_millis(50));
    /// match client.get_within("user:1", Duration::from_millis(1)) {
    ///     Within::Ready(doc) => println!("{:?}", doc?),
    ///     Within::Later(_rest) => println!("the server was slow, not busy with our turns"),
    /// }
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn with_turn_wait(&self, turn_wait: Duration) -> AsyncClient {
        AsyncClient {
            turn_wait: crate::types::clamp_timeout(turn_wait),
            ..self.clone()
        }
    }

    /// The same client (same connection) whose unary calls (`get`, `put`,
    /// `patch`, `delete`, `call`, …) and collected streams (`list`,
    /// `query`, `search`) over shared memory first wait for their answer
    /// on the calling thread, for up to `budget`, as the blocking
    /// [`Client`](crate::Client) does: a round trip then takes
    /// microseconds instead of the several thread wake-ups of the async
    /// path (~40–60 µs a get on the project's 2-core VM against ~3 µs,
    /// docs/performance-log.md). What is not answered within the budget is
    /// awaited as usual. Zero (the default) turns it off.
    ///
    /// The price: each such call holds its executor thread for up to the
    /// budget (keep it to tens of microseconds), and calls made while
    /// others of the connection are already awaited asynchronously take
    /// the async path, so that a connection with many requests in flight
    /// keeps pipelining them. Streams handed out as they come
    /// (`list_stream`), subscriptions and the socket transport are
    /// unchanged.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), hearth_ipc::IpcError> {
    /// use hearth_ipc::AsyncClient;
    /// use std::time::Duration;
    /// let client = AsyncClient::connect("my-app")
    ///     .await?
    ///     .with_fast_path(Duration::from_micros(20));
    /// let user = client.get("user:1").await?;
    /// # Ok(()) }
    /// ```
    pub fn with_fast_path(&self, budget: Duration) -> AsyncClient {
        AsyncClient {
            fast_path: crate::types::clamp_timeout(budget),
            ..self.clone()
        }
    }

    /// How long a unary call waits on the calling thread before awaiting
    /// its answer (see [`with_fast_path`](Self::with_fast_path)).
    pub fn fast_path(&self) -> Duration {
        self.fast_path
    }

    /// How long a call with a budget may wait for its connection's turn
    /// (see [`with_turn_wait`](Self::with_turn_wait)).
    pub fn turn_wait(&self) -> Duration {
        self.turn_wait
    }

    /// The per-call timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What the current connection's handshake agreed (transport, version,
    /// limits); `None` when it is down.
    pub fn link_info(&self) -> Option<crate::transport::LinkInfo> {
        self.with_live(|core| core.info)
    }

    /// `f` of the current connection while it is alive (under the lock
    /// that a reconnect replaces it under); `None` when it is down.
    fn with_live<T>(&self, f: impl FnOnce(&Arc<ConnCore>) -> T) -> Option<T> {
        self.inner
            .current
            .lock()
            .as_ref()
            .filter(|core| !core.is_dead())
            .map(f)
    }

    /// The longest request the current connection sends (its JSON
    /// arguments): the server's message limit, from its hello, or this
    /// client's own lower `ConnectOptions::max_request_bytes` (see there);
    /// `None` when the connection is down. A longer request is refused
    /// before it is sent (`IpcError::TooLarge`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let rt = tokio::runtime::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use hearth_ipc::Server;
    /// let server = Server::builder().data_dir(dir.path()).max_message_bytes(48 << 20).start_async().await?;
    /// let client = server.connect_in_process_async().await?;
    /// assert_eq!(client.max_request_bytes(), Some(48 << 20));
    /// # server.shutdown_async().await?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_request_bytes(&self) -> Option<usize> {
        self.with_live(|core| core.max_request)
    }

    /// The transport of the current connection; `None` when it is down.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let rt = tokio::runtime::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use hearth_ipc::Server;
    /// use hearth_ipc::transport::TransportKind;
    /// let server = Server::builder().data_dir(dir.path()).start_async().await?;
    /// let client = server.connect_in_process_async().await?;
    /// assert_eq!(client.transport(), Some(TransportKind::InProcess));
    /// # server.shutdown_async().await?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// # }).unwrap();
    /// ```
    pub fn transport(&self) -> Option<crate::transport::TransportKind> {
        self.link_info().map(|info| info.kind)
    }

    pub(crate) fn resume_timeout(&self) -> Duration {
        self.inner.connector.options().resume_timeout
    }

    /// The live connection, reconnecting once if the last one died.
    async fn core(&self) -> Result<Arc<ConnCore>, IpcError> {
        if let Some(core) = self.with_live(Arc::clone) {
            return Ok(core);
        }
        let _one_at_a_time = self.inner.reconnecting.lock().await;
        if let Some(core) = self.with_live(Arc::clone) {
            return Ok(core);
        }
        let core = ConnCore::open(&self.inner.connector).await?;
        *self.inner.current.lock() = Some(core.clone());
        Ok(core)
    }

    fn timed_out(&self, op: Operation) -> IpcError {
        IpcError::Timeout {
            operation: op.name().to_string(),
            timeout: self.timeout,
        }
    }

    async fn begin(
        &self,
        op: Operation,
        deadline: Instant,
    ) -> Result<(Arc<ConnCore>, permits::Permit), IpcError> {
        let ready = async {
            let core = self.core().await?;
            let permit = core.permit().await?;
            Ok::<_, IpcError>((core, permit))
        };
        tokio::time::timeout_at(deadline, ready)
            .await
            .map_err(|_| self.timed_out(op))?
    }

    /// Sends one request and returns the payload of its response.
    async fn unary(&self, op: Operation, body: &Value) -> Result<Vec<u8>, IpcError> {
        self.unary_payload(op, calls::json(body)).await
    }

    /// Sends one request with a ready JSON payload; the payload of its
    /// response.
    async fn unary_payload(&self, op: Operation, payload: Vec<u8>) -> Result<Vec<u8>, IpcError> {
        let mut payload = Some(payload);
        if let Some(budget) = self.fast_path_now()
            && let Some(within) = self.unary_blocking_within(op, &mut payload, Some(budget))
        {
            return within.finish().await;
        }
        // Untouched when the blocking path was not taken.
        let payload = payload.unwrap_or_default();
        let deadline = Instant::now() + self.timeout;
        let (core, permit) = self.begin(op, deadline).await?;
        let id = core.next_id();
        let (tx, rx) = oneshot::channel();
        core.register(
            id,
            Pending::Unary {
                tx,
                _permit: permit,
            },
        );
        if let Err(e) = core.send(calls::request(op, id, payload)) {
            core.unregister(id);
            return Err(e);
        }
        self.final_reply(&core, id, op, deadline, rx).await
    }

    /// The [`with_fast_path`] budget a call takes now; `None` when it goes
    /// the async way: no fast path, the current connection not on shared
    /// memory (a round trip over the socket takes longer than any budget
    /// worth holding an executor thread for), or a call, stream or
    /// subscription of it waiting for frames asynchronously (the calls
    /// join them there).
    ///
    /// [`with_fast_path`]: Self::with_fast_path
    fn fast_path_now(&self) -> Option<Duration> {
        if self.fast_path.is_zero() {
            return None;
        }
        let current = self.inner.current.lock();
        let on = current
            .as_ref()
            .is_some_and(|core| core.shm.is_some() && !core.has_async_interest());
        on.then_some(self.fast_path)
    }

    /// Waits until `deadline` for the final frame of request `id` on `rx`;
    /// a request that times out is cancelled on the server.
    async fn final_reply(
        &self,
        core: &ConnCore,
        id: u64,
        op: Operation,
        deadline: Instant,
        rx: oneshot::Receiver<Frame>,
    ) -> Result<Vec<u8>, IpcError> {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(frame)) => final_payload(frame),
            Ok(Err(_)) => Err(core.dead_error()),
            Err(_) => {
                core.cancel(id, op);
                Err(self.timed_out(op))
            }
        }
    }

    /// A unary call made on the calling thread: over shared memory the
    /// request goes onto the ring and the thread reads the answer itself
    /// (no runtime, no thread hop); over a socket the thread writes the
    /// request and the connection's reader hands it the answer. `None`
    /// when the current connection is in process, is down, or has no free
    /// in-flight slot: use the async path then.
    pub(crate) fn unary_blocking(
        &self,
        op: Operation,
        payload: &mut Option<Vec<u8>>,
    ) -> Option<Result<Vec<u8>, IpcError>> {
        Some(match self.unary_blocking_within(op, payload, None)? {
            Within::Ready(result) => result,
            // Never: without a budget the wait on the calling thread lasts
            // until the call's own deadline, so nothing is left for later.
            Within::Later(_) => Err(self.timed_out(op)),
        })
    }

    /// The current connection, for a call made from the calling thread
    /// ([`within::OnThread::of`] says how it goes): on shared memory or a
    /// socket written directly, alive, with nothing queued ahead. The
    /// caller then takes an in-flight permit (`ConnCore::try_permit_here`
    /// or `try_permit`), and goes the async way if none is free.
    fn on_thread_core(&self) -> Option<Arc<ConnCore>> {
        let core = self.with_live(Arc::clone)?;
        if core.shm.is_none() && !core.writes_directly() {
            return None;
        }
        if !core.queue_drained() {
            // Frames wait in the queue (an unsubscribe sent by a drop, a
            // cancel): go behind them, so that this connection's requests
            // reach the server in the order they were made.
            return None;
        }
        Some(core)
    }

    async fn unary_json(&self, op: Operation, body: &Value) -> Result<Value, IpcError> {
        parse_json(&self.unary(op, body).await?)
    }

    /// Opens a streamed operation (list, query, search).
    pub(crate) async fn open_stream(
        &self,
        op: Operation,
        body: &Value,
    ) -> Result<AsyncDocStream, IpcError> {
        let deadline = Instant::now() + self.timeout;
        let (core, permit) = self.begin(op, deadline).await?;
        let id = core.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        core.register(
            id,
            Pending::Stream {
                tx,
                _permit: permit,
            },
        );
        if let Err(e) = core.send(Frame::json_request(op, id, body)) {
            core.unregister(id);
            return Err(e);
        }
        Ok(AsyncDocStream::new(core, id, op, rx, self.timeout))
    }

    /// A streamed call's items and end: with a fast path
    /// ([`with_fast_path`](Self::with_fast_path)) over shared memory
    /// collected on the calling thread for up to the budget, as the unary
    /// calls are; else on the async side.
    async fn collect(&self, op: Operation, body: &Value) -> Result<Collected, IpcError> {
        if let Some(budget) = self.fast_path_now()
            && let Some(within) = self.collect_blocking_within(op, body, Some(budget), None, false)
        {
            return within.finish().await;
        }
        self.open_stream(op, body).await?.collect_rest().await
    }

    /// Sends a subscribe request and waits for its response.
    pub(crate) async fn open_events(
        &self,
        op: Operation,
        body: &Value,
        mode: EventMode,
    ) -> Result<EventSub, IpcError> {
        let deadline = Instant::now() + self.timeout;
        let (core, permit) = self.begin(op, deadline).await?;
        let id = core.next_id();
        let (tx, mut rx) = mpsc::channel(core.event_buffer.max(2));
        let overflow = Arc::new(AtomicU64::new(0));
        core.register(
            id,
            Pending::Events {
                tx,
                _permit: Some(permit),
                mode,
                overflow: overflow.clone(),
            },
        );
        if let Err(e) = core.send(Frame::json_request(op, id, body)) {
            core.unregister(id);
            return Err(e);
        }
        let first = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(core.dead_error()),
            Err(_) => {
                core.cancel(id, op);
                return Err(self.timed_out(op));
            }
        };
        let reply = match final_payload(first) {
            Ok(payload) => parse_json(&payload)?,
            Err(e) => {
                core.unregister(id);
                return Err(e);
            }
        };
        let number = ops::u64_field(&reply, "subscription")?;
        let start = reply.get("from_seq").and_then(Value::as_u64).unwrap_or(0);
        Ok(EventSub {
            core,
            id,
            mode,
            number,
            start,
            rx,
            overflow,
            ended: false,
        })
    }

    /// Checks the server is there and answering.
    pub async fn ping(&self) -> Result<(), IpcError> {
        self.unary(Operation::Ping, &json!({})).await.map(|_| ())
    }

    /// Replaces document `id` with `data` (a JSON object); returns the
    /// change's sequence number once it is durable.
    pub async fn put(&self, id: &str, data: Value) -> Result<u64, IpcError> {
        let (op, body) = calls::put(id, &data);
        calls::seq(&self.unary_payload(op, body).await?)
    }

    /// Like [`put`](Self::put), with the document as JSON text (one JSON
    /// object), sent as it is: no [`Value`] is built on this side.
    pub async fn put_json(&self, id: &str, json: &str) -> Result<u64, IpcError> {
        let (op, body) = calls::put_text(id, json)?;
        calls::seq(&self.unary_payload(op, body).await?)
    }

    /// Merges top-level `fields` into document `id` (`null` removes a field).
    pub async fn patch(&self, id: &str, fields: Value) -> Result<u64, IpcError> {
        let (op, body) = calls::patch(id, &fields);
        calls::seq(&self.unary_payload(op, body).await?)
    }

    /// The document's data; `None` when absent or deleted.
    pub async fn get(&self, id: &str) -> Result<Option<Value>, IpcError> {
        let (op, body) = calls::get(id);
        calls::doc_data(&self.unary_payload(op, body).await?)
    }

    /// The document as its JSON text, exactly as the server sent it (no
    /// parse into a [`Value`]: for callers that pass the document on, as
    /// text, to JavaScript, a file or another process); `None` when absent
    /// or deleted.
    pub async fn get_json(&self, id: &str) -> Result<Option<String>, IpcError> {
        let (op, body) = calls::get(id);
        calls::doc_text(&self.unary_payload(op, body).await?)
    }

    /// The document with its metadata, including a deleted one (its
    /// `data` is `null`, `metadata.deleted` true); `None` if it never
    /// existed.
    pub async fn get_with_metadata(&self, id: &str) -> Result<Option<Document>, IpcError> {
        let (op, body) = calls::get_with_metadata(id);
        calls::document(&self.unary_payload(op, body).await?)
    }

    /// Deletes document `id`; the change's sequence number, or `None` when
    /// there was no such document.
    pub async fn delete(&self, id: &str) -> Result<Option<u64>, IpcError> {
        let (op, body) = calls::delete(id);
        calls::deleted(&self.unary_payload(op, body).await?)
    }

    fn list_body(options: &ListOptions) -> Value {
        json!({
            "prefix": options.prefix,
            "type": options.type_name,
            "limit": options.limit,
            "after": options.after,
        })
    }

    /// Documents by id prefix and `type`, in id order; the page's cursor is
    /// set when it stopped at `limit`. Arrives in chunks; see
    /// [`list_stream`](Self::list_stream) to handle them as they come.
    pub async fn list(&self, options: ListOptions) -> Result<Page, IpcError> {
        let collected = self
            .collect(Operation::List, &Self::list_body(&options))
            .await?;
        page(collected)
    }

    /// Like [`list`](Self::list), handing out documents as chunks arrive.
    pub async fn list_stream(&self, options: ListOptions) -> Result<AsyncDocStream, IpcError> {
        self.open_stream(Operation::List, &Self::list_body(&options))
            .await
    }

    /// Documents whose top-level fields equal every value in `filter` (a
    /// JSON object), in id order, at most `limit` (default: the server's
    /// page limit), after the id `after`.
    pub async fn query(
        &self,
        filter: Value,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<Page, IpcError> {
        let body = Self::query_body(filter, limit, after);
        page(self.collect(Operation::Query, &body).await?)
    }

    fn query_body(filter: Value, limit: Option<usize>, after: Option<&str>) -> Value {
        json!({"filter": filter, "limit": limit, "after": after})
    }

    /// Full-text search; best matches first, at most `limit`.
    pub async fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>, IpcError> {
        let body = Self::search_body(text, limit);
        hits(self.collect(Operation::Search, &body).await?)
    }

    fn search_body(text: &str, limit: usize) -> Value {
        json!({"text": text, "limit": limit})
    }

    /// Applies all writes atomically; returns the first and last sequence
    /// numbers.
    pub async fn batch(&self, writes: Vec<WriteOp>) -> Result<(u64, u64), IpcError> {
        let (op, body) = calls::batch(writes);
        calls::seq_range(&self.unary_payload(op, body).await?)
    }

    /// The store's and the server's counters (`{"store":…,"server":…}`).
    pub async fn stats(&self) -> Result<Value, IpcError> {
        self.unary_json(Operation::Stats, &json!({})).await
    }

    /// Changes after sequence number `after`, in order, at most `limit`.
    pub async fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::Change>, IpcError> {
        let (op, body) = calls::changes_since(after, limit);
        calls::changes(&self.unary_payload(op, body).await?)
    }

    /// Calls the custom handler `name` with `payload`; its result, or its
    /// typed error as [`IpcError::Remote`].
    pub async fn call(&self, name: &str, payload: Value) -> Result<Value, IpcError> {
        let (op, body) = calls::call(name, payload);
        parse_json(&self.unary_payload(op, body).await?)
    }

    /// Like [`call`](Self::call), deserialising the result into `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        name: &str,
        payload: Value,
    ) -> Result<T, IpcError> {
        calls::shaped(name, self.call(name, payload).await?)
    }

    /// Publishes an event to every topic subscription matching `topic`;
    /// returns how many received it.
    pub async fn publish(&self, topic: &str, payload: Value) -> Result<usize, IpcError> {
        let (op, body) = calls::publish(topic, payload);
        calls::delivered(&self.unary_payload(op, body).await?)
    }

    /// Follows committed changes. The stream resumes by itself after a lag
    /// or a reconnect, from the last change it handed out: every change
    /// exactly once, in order.
    pub async fn subscribe(
        &self,
        subscription: Subscription,
    ) -> Result<AsyncChangeStream, IpcError> {
        AsyncChangeStream::open(self.clone(), subscription).await
    }

    /// Receives events published on topics matching `pattern` (`*` segments
    /// allowed, e.g. `one-core:event:*`).
    pub async fn subscribe_topic(&self, pattern: &str) -> Result<AsyncTopicStream, IpcError> {
        hearth_bus::validate_pattern(pattern).map_err(|e| IpcError::InvalidInput(e.to_string()))?;
        let sub = self
            .open_events(
                Operation::SubscribeTopic,
                &json!({"pattern": pattern}),
                EventMode::Topic,
            )
            .await?;
        Ok(AsyncTopicStream::new(sub))
    }
}

/// The request bodies and reply decoding of the unary operations, shared
/// by the async and the blocking client.
pub(crate) mod calls {
    use super::parse_json;
    use crate::error::IpcError;
    use crate::ops;
    use crate::types::Document;
    use hearth_proto::{Frame, FrameFlags, FrameHeader, FrameKind, Operation};
    use hearth_store::WriteOp;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    /// The JSON text of `body`.
    pub(crate) fn json(body: &Value) -> Vec<u8> {
        // Serialising a Value into memory cannot fail.
        serde_json::to_vec(body).unwrap_or_default()
    }

    /// A request frame with a ready JSON payload.
    pub(crate) fn request(op: Operation, id: u64, payload: Vec<u8>) -> Frame {
        Frame {
            header: FrameHeader {
                payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                kind: FrameKind::Request,
                flags: FrameFlags::JSON,
                operation: Some(op),
                request_id: id,
            },
            payload,
        }
    }

    /// `{"id":…}` written directly (the hot path of point reads).
    fn id_only(id: &str) -> Vec<u8> {
        let mut out = String::with_capacity(id.len() + 10);
        out.push_str("{\"id\":");
        ops::push_json_str(&mut out, id);
        out.push('}');
        out.into_bytes()
    }

    /// `{"id":…,"<field>":…}` without building a map.
    fn id_and(id: &str, field: &str, value: &Value) -> Vec<u8> {
        let mut out = Vec::with_capacity(id.len() + 64);
        out.extend_from_slice(b"{\"id\":");
        let _ = serde_json::to_writer(&mut out, id);
        out.extend_from_slice(b",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        let _ = serde_json::to_writer(&mut out, value);
        out.push(b'}');
        out
    }

    pub(crate) fn put(id: &str, data: &Value) -> (Operation, Vec<u8>) {
        (Operation::Put, id_and(id, "data", data))
    }

    /// A put of a document given as JSON text, checked here to be one
    /// JSON object (syntax only, without building it; the server checks
    /// the rest) and copied into the request as it is.
    pub(crate) fn put_text(id: &str, json: &str) -> Result<(Operation, Vec<u8>), IpcError> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(json)
            .map_err(|e| IpcError::InvalidInput(format!("the document is not valid JSON: {e}")))?;
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(IpcError::InvalidInput(format!(
                "a document must be a JSON object, not {}",
                text.chars().next().map_or("nothing", |c| match c {
                    '[' => "an array",
                    '"' => "a string",
                    'n' => "null",
                    't' | 'f' => "a boolean",
                    _ => "a number",
                })
            )));
        }
        let mut out = String::with_capacity(id.len() + text.len() + 20);
        out.push_str("{\"id\":");
        ops::push_json_str(&mut out, id);
        out.push_str(",\"data\":");
        out.push_str(text);
        out.push('}');
        Ok((Operation::Put, out.into_bytes()))
    }

    pub(crate) fn patch(id: &str, fields: &Value) -> (Operation, Vec<u8>) {
        (Operation::Patch, id_and(id, "fields", fields))
    }

    pub(crate) fn get(id: &str) -> (Operation, Vec<u8>) {
        (Operation::Get, id_only(id))
    }

    pub(crate) fn get_with_metadata(id: &str) -> (Operation, Vec<u8>) {
        (Operation::GetWithMetadata, id_only(id))
    }

    pub(crate) fn delete(id: &str) -> (Operation, Vec<u8>) {
        (Operation::Delete, id_only(id))
    }

    pub(crate) fn batch(writes: Vec<WriteOp>) -> (Operation, Vec<u8>) {
        let ops: Vec<Value> = writes
            .into_iter()
            .map(|w| match w {
                WriteOp::Put { id, data } => json!({"op": "put", "id": id, "data": data}),
                WriteOp::Patch { id, fields } => json!({"op": "patch", "id": id, "fields": fields}),
                WriteOp::Delete { id } => json!({"op": "delete", "id": id}),
            })
            .collect();
        (Operation::Batch, json(&json!({"ops": ops})))
    }

    pub(crate) fn changes_since(after: u64, limit: usize) -> (Operation, Vec<u8>) {
        (
            Operation::ChangesSince,
            json(&json!({"after": after, "limit": limit})),
        )
    }

    pub(crate) fn call(name: &str, payload: Value) -> (Operation, Vec<u8>) {
        (
            Operation::Call,
            json(&json!({"name": name, "payload": payload})),
        )
    }

    pub(crate) fn publish(topic: &str, payload: Value) -> (Operation, Vec<u8>) {
        (
            Operation::Publish,
            json(&json!({"topic": topic, "payload": payload})),
        )
    }

    pub(crate) fn seq(reply: &[u8]) -> Result<u64, IpcError> {
        /// `{"seq":N}` read without a tree; any other shape goes to the
        /// general decoder, which says what is wrong.
        #[derive(serde::Deserialize)]
        struct Reply {
            seq: u64,
        }
        if reply.first() == Some(&b'{')
            && let Ok(Reply { seq }) = serde_json::from_slice(reply)
        {
            return Ok(seq);
        }
        ops::u64_field(&parse_json(reply)?, "seq")
    }

    pub(crate) fn doc_text(reply: &[u8]) -> Result<Option<String>, IpcError> {
        // The shape the protocol fixes for a get's answer (docs/protocol.md:
        // exactly `id` then `data`) and the server writes
        // (`ops::encode_doc`), split without a parser: the document's text
        // was checked when it was stored, and the server is the store, so it
        // is not scanned again here (a scan costs a tenth of the call).
        if let Some((_, rest)) = crate::ops::split_leading_id(reply)
            && let Some(data) = rest
                .strip_prefix(b",\"data\":")
                .and_then(|r| r.strip_suffix(b"}"))
            && data.first() == Some(&b'{')
            && data.last() == Some(&b'}')
            && let Ok(text) = std::str::from_utf8(data)
        {
            return Ok(Some(text.to_owned()));
        }
        /// `{"id":…,"data":…}`: `data` borrowed as its text.
        #[derive(serde::Deserialize)]
        struct Reply<'a> {
            #[serde(borrow)]
            data: &'a serde_json::value::RawValue,
        }
        match serde_json::from_slice::<Option<Reply<'_>>>(reply) {
            Ok(reply) => Ok(reply.map(|r| r.data.get().to_owned())),
            // Not that shape: the general decoder says what is wrong.
            Err(_) => Ok(doc_data(reply)?.map(|doc| doc.to_string())),
        }
    }

    pub(crate) fn doc_data(reply: &[u8]) -> Result<Option<Value>, IpcError> {
        /// `{"id":…,"data":…}`: only `data` is kept (the id is skipped
        /// without allocating).
        #[derive(serde::Deserialize)]
        struct Reply {
            data: Value,
        }
        match serde_json::from_slice::<Option<Reply>>(reply) {
            Ok(reply) => Ok(reply.map(|r| r.data)),
            // Not that shape: the general decoder says what is wrong.
            Err(_) => match parse_json(reply)? {
                Value::Null => Ok(None),
                doc => Ok(Some(ops::decode_doc(doc)?.data)),
            },
        }
    }

    pub(crate) fn document(reply: &[u8]) -> Result<Option<Document>, IpcError> {
        match parse_json(reply)? {
            Value::Null => Ok(None),
            doc => Ok(Some(ops::decode_doc(doc)?)),
        }
    }

    pub(crate) fn deleted(reply: &[u8]) -> Result<Option<u64>, IpcError> {
        Ok(parse_json(reply)?.get("seq").and_then(Value::as_u64))
    }

    pub(crate) fn seq_range(reply: &[u8]) -> Result<(u64, u64), IpcError> {
        let reply = parse_json(reply)?;
        Ok((
            ops::u64_field(&reply, "first_seq")?,
            ops::u64_field(&reply, "last_seq")?,
        ))
    }

    pub(crate) fn changes(reply: &[u8]) -> Result<Vec<crate::Change>, IpcError> {
        let reply = parse_json(reply)?;
        let changes = reply
            .get("changes")
            .and_then(Value::as_array)
            .ok_or_else(|| IpcError::Protocol("changes_since reply without \"changes\"".into()))?;
        changes.iter().map(ops::decode_change).collect()
    }

    pub(crate) fn delivered(reply: &[u8]) -> Result<usize, IpcError> {
        Ok(ops::u64_field(&parse_json(reply)?, "delivered")? as usize)
    }

    pub(crate) fn shaped<T: DeserializeOwned>(name: &str, value: Value) -> Result<T, IpcError> {
        serde_json::from_value(value).map_err(|e| {
            IpcError::Protocol(format!(
                "the result of {name:?} does not have the expected shape: {e}"
            ))
        })
    }
}

/// A search's matches, best first, from its collected stream.
fn hits(collected: Collected) -> Result<Vec<Hit>, IpcError> {
    hits_of(all_items(collected)?)
}

/// Search matches from their parsed items.
fn hits_of(items: Vec<Value>) -> Result<Vec<Hit>, IpcError> {
    items
        .into_iter()
        .map(|item| {
            let score = item.get("score").and_then(Value::as_f64).unwrap_or(0.0);
            let mut doc = item;
            if let Value::Object(m) = &mut doc {
                m.remove("score");
            }
            Ok(Hit {
                doc: ops::decode_doc(doc)?,
                score,
            })
        })
        .collect()
}

fn page(collected: Collected) -> Result<Page, IpcError> {
    let cursor = collected
        .end
        .get("cursor")
        .and_then(Value::as_str)
        .map(str::to_string);
    let docs = all_items(collected)?
        .into_iter()
        .map(ops::decode_doc)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page { docs, cursor })
}

/// A collected stream's items, those of its unparsed chunks after the
/// others.
fn all_items(collected: Collected) -> Result<Vec<Value>, IpcError> {
    let mut items = collected.items;
    for chunk in &collected.raw {
        items.extend(raw_items::<Value>(chunk, "JSON values")?);
    }
    Ok(items)
}

/// One document of a list or query chunk, its parts as the server wrote
/// them. A field this client does not know (the server's `metadata`, say,
/// which the parsed form would keep) makes the chunk a protocol error
/// rather than be dropped from the text unseen.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc<'a> {
    #[serde(borrow)]
    id: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// One match of a search chunk, its parts as the server wrote them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHit<'a> {
    #[serde(borrow)]
    id: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    score: &'a serde_json::value::RawValue,
}

/// Appends one document's JSON text, `{"id":…,"data":…}` (with
/// `,"score":…` for a search match), given its parts' JSON text, after a
/// comma unless it opens the array.
fn push_doc(out: &mut String, id: &str, data: &str, score: Option<&str>) {
    if !out.ends_with('[') {
        out.push(',');
    }
    out.push_str("{\"id\":");
    out.push_str(id);
    out.push_str(",\"data\":");
    out.push_str(data);
    if let Some(score) = score {
        out.push_str(",\"score\":");
        out.push_str(score);
    }
    out.push('}');
}

/// `text`, the JSON text of `what` (an unparsed chunk item's id), if it
/// is a JSON string; else the protocol error.
fn string_text<'a>(text: &'a str, what: &str) -> Result<&'a str, IpcError> {
    if text.starts_with('"') {
        Ok(text)
    } else {
        Err(IpcError::Protocol(format!(
            "{what} is not a string: {text}"
        )))
    }
}

/// Parses an unparsed chunk as an array of `T`.
fn raw_items<'a, T: serde::Deserialize<'a>>(
    chunk: &'a [u8],
    what: &str,
) -> Result<Vec<T>, IpcError> {
    serde_json::from_slice(chunk)
        .map_err(|e| IpcError::Protocol(format!("a chunk is not an array of {what}: {e}")))
}

/// A page as JSON text, `{"docs":[{"id":…,"data":…},…],"cursor":…}`,
/// each document's data the text the server sent (no parse into a
/// `Value` and back). Checks what it copies: each chunk an array of
/// objects with a string `id` and a `data`, and nothing else.
fn page_json(collected: Collected) -> Result<String, IpcError> {
    let Collected { items, raw, end } = collected;
    let bytes: usize = raw.iter().map(Vec::len).sum();
    let mut out = String::with_capacity(bytes + 64);
    out.push_str("{\"docs\":[");
    for item in items {
        let doc = ops::decode_doc(item)?;
        push_doc(
            &mut out,
            &ops::json_string(&doc.id),
            &doc.data.to_string(),
            None,
        );
    }
    for chunk in &raw {
        for doc in raw_items::<RawDoc<'_>>(chunk, "documents")? {
            let id = string_text(doc.id.get(), "a document's id")?;
            push_doc(&mut out, id, doc.data.get(), None);
        }
    }
    out.push_str("],\"cursor\":");
    match end.get("cursor").and_then(Value::as_str) {
        Some(cursor) => out.push_str(&ops::json_string(cursor)),
        None => out.push_str("null"),
    }
    out.push('}');
    Ok(out)
}

/// A search's matches as JSON text, `[{"id":…,"data":…,"score":…},…]`,
/// best first, each document's data and score the text the server sent;
/// checked as [`page_json`] checks (a match also has a numeric `score`).
fn hits_json(collected: Collected) -> Result<String, IpcError> {
    let Collected { items, raw, .. } = collected;
    let bytes: usize = raw.iter().map(Vec::len).sum();
    let mut out = String::with_capacity(bytes + 2);
    out.push('[');
    for hit in hits_of(items)? {
        let score = Value::from(hit.score).to_string();
        push_doc(
            &mut out,
            &ops::json_string(&hit.doc.id),
            &hit.doc.data.to_string(),
            Some(&score),
        );
    }
    for chunk in &raw {
        for hit in raw_items::<RawHit<'_>>(chunk, "search matches")? {
            let id = string_text(hit.id.get(), "a match's id")?;
            let score = hit.score.get();
            if !score.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(IpcError::Protocol(format!(
                    "a match's score is not a finite number: {score}"
                )));
            }
            push_doc(&mut out, id, hit.data.get(), Some(score));
        }
    }
    out.push(']');
    Ok(out)
}

/// For the page-text fuzz target (feature `fuzzing`, not an API): takes
/// `chunk` as one unparsed chunk of a list and of a search, and panics
/// unless: whatever text `page_json` / `hits_json` give is JSON text (as
/// JavaScript's `JSON.parse` reads it: syntax; a number out of `f64`'s
/// range in a document's data passes the text forms, which copy it, and
/// not `Value`'s parse); and wherever the parsed forms (`page` / `hits`)
/// accept the chunk too, both give the same ids, data and scores.
#[cfg(feature = "fuzzing")]
pub fn fuzz_page_text(chunk: &[u8]) {
    let collected = || Collected {
        items: Vec::new(),
        raw: vec![chunk.to_vec()],
        end: Value::Null,
    };
    let is_json = |text: &str| serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok();
    if let Ok(text) = page_json(collected()) {
        assert!(is_json(&text), "the page's text is JSON: {text}");
        if let (Ok(page), Ok(value)) = (page(collected()), serde_json::from_str::<Value>(&text)) {
            let docs = value["docs"].as_array().expect("docs");
            assert_eq!(docs.len(), page.docs.len());
            for (text_doc, doc) in docs.iter().zip(&page.docs) {
                assert_eq!(text_doc["id"], Value::from(doc.id.as_str()));
                assert_eq!(text_doc["data"], doc.data);
            }
        }
    }
    if let Ok(text) = hits_json(collected()) {
        assert!(is_json(&text), "the matches' text is JSON: {text}");
        if let (Ok(hits), Ok(value)) = (hits(collected()), serde_json::from_str::<Value>(&text)) {
            let matches = value.as_array().expect("an array");
            assert_eq!(matches.len(), hits.len());
            for (text_hit, hit) in matches.iter().zip(&hits) {
                assert_eq!(text_hit["id"], Value::from(hit.doc.id.as_str()));
                assert_eq!(text_hit["data"], hit.doc.data);
                assert_eq!(text_hit["score"].as_f64(), Some(hit.score));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Collected, calls, hits_json, page_json};
    use serde_json::{Value, json};

    fn raw(chunks: &[&str], end: Value) -> Collected {
        Collected {
            items: Vec::new(),
            raw: chunks.iter().map(|c| c.as_bytes().to_vec()).collect(),
            end,
        }
    }

    #[test]
    fn a_page_as_text_copies_each_documents_text_as_the_server_wrote_it() {
        let page = page_json(raw(
            &[
                r#"[{"id":"a\"b","data":{"z":1,"a":1.50}}]"#,
                r#"[{"data":null,"id":"c"}]"#,
            ],
            json!({"cursor": "c"}),
        ))
        .unwrap();
        assert_eq!(
            page,
            r#"{"docs":[{"id":"a\"b","data":{"z":1,"a":1.50}},{"id":"c","data":null}],"cursor":"c"}"#
        );
        let empty = page_json(raw(&[], json!({}))).unwrap();
        assert_eq!(empty, r#"{"docs":[],"cursor":null}"#);
    }

    #[test]
    fn search_matches_as_text_keep_the_servers_text_and_refuse_a_match_without_a_number() {
        let hits = hits_json(raw(
            &[r#"[{"id":"a","data":{"x":"\u00e9"},"score":-1.25e-3}]"#],
            json!({}),
        ))
        .unwrap();
        assert_eq!(
            hits,
            r#"[{"id":"a","data":{"x":"\u00e9"},"score":-1.25e-3}]"#
        );
        for bad in [
            r#"[{"id":"a","data":1}]"#,
            r#"[{"id":"a","data":1,"score":"high"}]"#,
            r#"[{"id":"a","data":1,"score":-1.2e553}]"#,
            r#"[{"id":null,"data":1,"score":1}]"#,
            r#"[{"id":"a","data":1,"score":1,"metadata":{}}]"#,
        ] {
            let e = hits_json(raw(&[bad], json!({}))).unwrap_err();
            assert!(matches!(e, crate::IpcError::Protocol(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn a_page_as_text_refuses_chunks_that_are_not_arrays_of_documents() {
        for bad in [
            "not json",
            r#"{"id":"a","data":1}"#,
            r#"[{"id":7,"data":1}]"#,
            r#"[{"id":"a"}]"#,
            r#"[{"id":"a","data":1,"score":2}]"#,
            r#"[{"id":"a","data":1}"#,
        ] {
            let e = page_json(raw(&[bad], json!({}))).unwrap_err();
            assert!(matches!(e, crate::IpcError::Protocol(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn a_seq_reply_is_read_with_or_without_the_quick_path() {
        assert_eq!(calls::seq(br#"{"seq":42}"#).unwrap(), 42);
        assert_eq!(calls::seq(br#"{"other":1,"seq":7}"#).unwrap(), 7);
        assert_eq!(
            calls::seq(b"{\"seq\":18446744073709551615}").unwrap(),
            u64::MAX
        );
        for bad in [
            &b"[42]"[..],
            b"{}",
            br#"{"seq":-1}"#,
            br#"{"seq":"1"}"#,
            b"not json",
        ] {
            assert!(calls::seq(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn doc_text_takes_the_servers_answer_as_it_is_and_parses_any_other() {
        let doc = r#"{"b":"}\"","a":[{"c":1}]}"#;
        let mut answer = String::new();
        crate::ops::encode_doc(&mut answer, "user:1", doc);
        assert_eq!(
            calls::doc_text(answer.as_bytes()).unwrap().as_deref(),
            Some(doc)
        );
        let mut escaped = String::new();
        crate::ops::encode_doc(&mut escaped, "a\"b", doc);
        assert_eq!(
            calls::doc_text(escaped.as_bytes()).unwrap().as_deref(),
            Some(doc)
        );
        assert_eq!(calls::doc_text(b"null").unwrap(), None);
        assert_eq!(
            calls::doc_text(br#" { "id": "a", "data": {"x": 1} } "#)
                .unwrap()
                .as_deref(),
            Some(r#"{"x": 1}"#)
        );
    }
}
