//! The blocking client: the API PluresDB-IPC users expect (`connect`, `put`,
//! `get`, …), each call waiting on the calling thread.
//!
//! Owns: running the async client's futures to completion on the calling
//! thread while a background runtime drives the connection. Must never:
//! panic when called from inside an async runtime, or hold the calling
//! thread past a call's deadline.

use super::within::{Later, RawWithin, Within};
use super::{
    AsyncChangeStream, AsyncClient, AsyncDocStream, AsyncTopicStream, Collected, calls, hits,
    hits_json, page, page_json, parse_json,
};
use crate::error::IpcError;
use crate::rt::{block_on, client_runtime};
use crate::types::{Change, ConnectOptions, Document, Hit, Page, Subscription, TopicEvent};
use hearth_proto::Operation;
use hearth_store::{ListOptions, WriteOp};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use tokio::runtime::Handle;

/// A blocking client. Cheap to clone; clones share the connection and may
/// be used from many threads at once (their calls are pipelined).
///
/// ```no_run
/// use hearth_ipc::{Client, Subscription};
/// use serde_json::json;
/// let client = Client::connect("my-app")?;
/// client.put("user:1", json!({"name": "Alice"}))?;
/// let doc = client.get("user:1")?;
/// assert_eq!(doc.unwrap()["name"], "Alice");
/// let reply = client.call("one-core:login", json!({"username": "a", "password": "b"}))?;
/// for change in client.subscribe(Subscription::prefix("user:").from_seq(0))? {
///     let change = change?;
///     println!("{} {}", change.seq, change.id);
/// #   break;
/// }
/// # Ok::<(), hearth_ipc::IpcError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: AsyncClient,
    handle: Handle,
}

impl Client {
    /// Connects to the server on channel `name` with default options (30 s
    /// per call). Fails at once with [`IpcError::ChannelNotFound`] when no
    /// server runs there.
    pub fn connect(name: &str) -> Result<Client, IpcError> {
        Client::connect_with(ConnectOptions::new(name))
    }

    /// Connects with options.
    pub fn connect_with(options: ConnectOptions) -> Result<Client, IpcError> {
        let handle = client_runtime()?;
        let inner = block_on(&handle, AsyncClient::connect_with(options))?;
        Ok(Client { inner, handle })
    }

    pub(crate) fn from_async(inner: AsyncClient, handle: Handle) -> Client {
        Client { inner, handle }
    }

    fn run<F: std::future::Future>(&self, fut: F) -> F::Output {
        block_on(&self.handle, fut)
    }

    /// One request and its answer: on shared memory entirely on this
    /// thread; over a socket written by this thread, the answer routed to
    /// it by the connection's reader; in process through the connection's
    /// runtime.
    fn unary(&self, op: Operation, payload: Vec<u8>) -> Result<Vec<u8>, IpcError> {
        let mut payload = Some(payload);
        if let Some(result) = self.inner.unary_blocking(op, &mut payload) {
            return result;
        }
        // In process, or no free slot, or the connection is down: the
        // async path, which also reconnects a dead connection.
        let payload = payload.unwrap_or_default();
        self.run(self.inner.unary_payload(op, payload))
    }

    /// One request that waits on this thread for at most `budget`: over
    /// shared memory the thread reads the answer itself, over a socket it
    /// writes the request itself and parks for the answer; otherwise the
    /// call runs as a task of the connection's runtime, waited on for the
    /// budget. Either way what is left after the budget becomes a
    /// [`Later`](super::Later).
    fn unary_within(&self, op: Operation, payload: Vec<u8>, budget: Duration) -> RawWithin {
        let mut payload = Some(payload);
        if let Some(within) = self
            .inner
            .unary_blocking_within(op, &mut payload, Some(budget))
        {
            return within;
        }
        let payload = payload.unwrap_or_default();
        let inner = self.inner.clone();
        let mut task = self
            .handle
            .spawn(async move { inner.unary_payload(op, payload).await });
        match self.run(async { tokio::time::timeout(budget, &mut task).await }) {
            Ok(r) => Within::Ready(joined(r)),
            Err(_) => Within::Later(Later::new(async move { joined(task.await) })),
        }
    }

    /// A streamed call (list, query, search) that waits on this thread for
    /// at most `budget`, like [`unary_within`](Self::unary_within): the
    /// thread sends the request itself and, over shared memory, reads the
    /// chunks itself; otherwise the call runs as a task of the
    /// connection's runtime, waited on for the budget. `shape` makes the
    /// result of what was collected; with `raw`, chunks read on this
    /// thread are kept unparsed for it (`page_json`).
    fn collect_within<T: Send + 'static>(
        &self,
        op: Operation,
        body: Value,
        budget: Duration,
        raw: bool,
        shape: fn(Collected) -> Result<T, IpcError>,
    ) -> Within<T> {
        let on_thread =
            self.inner
                .collect_blocking_within(op, &body, Some(budget), Some(&self.handle), raw);
        if let Some(within) = on_thread {
            return within.and_then(shape);
        }
        let inner = self.inner.clone();
        let mut task = self
            .handle
            .spawn(async move { inner.collect(op, &body).await });
        match self.run(async { tokio::time::timeout(budget, &mut task).await }) {
            Ok(r) => Within::Ready(joined(r).and_then(shape)),
            Err(_) => Within::Later(Later::new(async move { shape(joined(task.await)?) })),
        }
    }

    /// A streamed call (list, query, search) waited for on this thread:
    /// sent by it, and over shared memory read by it (no thread hop, as a
    /// unary call); in process, or with no free slot, through the
    /// connection's runtime (which also reconnects a dead connection).
    fn collect<T>(
        &self,
        op: Operation,
        body: Value,
        shape: fn(Collected) -> Result<T, IpcError>,
    ) -> Result<T, IpcError> {
        let collected =
            match self
                .inner
                .collect_blocking_within(op, &body, None, Some(&self.handle), false)
            {
                Some(Within::Ready(r)) => r,
                Some(later) => self.run(later.finish()),
                None => self.run(self.inner.collect(op, &body)),
            };
        shape(collected?)
    }

    /// [`Client::list`] that waits here for at most `budget`; see
    /// [`Within`]. Over shared memory the chunks are read on this thread
    /// until the budget, then the rest comes as a future.
    pub fn list_within(&self, options: ListOptions, budget: Duration) -> Within<Page> {
        let body = AsyncClient::list_body(&options);
        self.collect_within(Operation::List, body, budget, false, page)
    }

    /// [`Client::query`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn query_within(
        &self,
        filter: Value,
        limit: Option<usize>,
        after: Option<&str>,
        budget: Duration,
    ) -> Within<Page> {
        let body = AsyncClient::query_body(filter, limit, after);
        self.collect_within(Operation::Query, body, budget, false, page)
    }

    /// [`list_within`](Self::list_within) whose page comes as JSON text,
    /// `{"docs":[{"id":…,"data":…},…],"cursor":…}` (`cursor` `null` at the
    /// end), each document's data the text the server sent: for a caller
    /// that hands the page on as text (a JavaScript binding), it spares
    /// parsing each document into a `Value` and writing it out again (a
    /// page of ten 200-byte documents: ~16 µs of the one, ~2 µs of the
    /// other, on the project's VM).
    ///
    /// ```no_run
    /// use hearth_ipc::{Client, ListOptions, Within};
    /// use std::time::Duration;
    /// let client = Client::connect("my-app")?;
    /// let options = ListOptions { prefix: Some("user:".into()), limit: Some(10), ..Default::default() };
    /// if let Within::Ready(page) = client.list_json_within(options, Duration::from_micros(50)) {
    ///     let page: serde_json::Value = serde_json::from_str(&page?).unwrap();
    ///     assert!(page["docs"].is_array());
    /// }
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn list_json_within(&self, options: ListOptions, budget: Duration) -> Within<String> {
        let body = AsyncClient::list_body(&options);
        self.collect_within(Operation::List, body, budget, true, page_json)
    }

    /// [`query_within`](Self::query_within) whose page comes as JSON text,
    /// as [`list_json_within`](Self::list_json_within)'s.
    pub fn query_json_within(
        &self,
        filter: Value,
        limit: Option<usize>,
        after: Option<&str>,
        budget: Duration,
    ) -> Within<String> {
        let body = AsyncClient::query_body(filter, limit, after);
        self.collect_within(Operation::Query, body, budget, true, page_json)
    }

    /// [`Client::search`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn search_within(&self, text: &str, limit: usize, budget: Duration) -> Within<Vec<Hit>> {
        let body = AsyncClient::search_body(text, limit);
        self.collect_within(Operation::Search, body, budget, false, hits)
    }

    /// [`search_within`](Self::search_within) whose matches come as JSON
    /// text, `[{"id":…,"data":…,"score":…},…]` best first, each document's
    /// data and score the text the server sent (see
    /// [`list_json_within`](Self::list_json_within)).
    pub fn search_json_within(&self, text: &str, limit: usize, budget: Duration) -> Within<String> {
        let body = AsyncClient::search_body(text, limit);
        self.collect_within(Operation::Search, body, budget, true, hits_json)
    }

    /// [`Client::put`] that waits here for at most `budget`; see
    /// [`Within`]. For event-loop hosts: a microsecond answer comes back at
    /// once, a slow one as a future.
    pub fn put_within(&self, id: &str, data: Value, budget: Duration) -> Within<u64> {
        let (op, body) = calls::put(id, &data);
        self.unary_within(op, body, budget).decode(calls::seq)
    }

    /// [`Client::put_json`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn put_json_within(&self, id: &str, json: &str, budget: Duration) -> Within<u64> {
        match calls::put_text(id, json) {
            Ok((op, body)) => self.unary_within(op, body, budget).decode(calls::seq),
            Err(e) => Within::Ready(Err(e)),
        }
    }

    /// [`Client::patch`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn patch_within(&self, id: &str, fields: Value, budget: Duration) -> Within<u64> {
        let (op, body) = calls::patch(id, &fields);
        self.unary_within(op, body, budget).decode(calls::seq)
    }

    /// [`Client::get`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn get_within(&self, id: &str, budget: Duration) -> Within<Option<Value>> {
        let (op, body) = calls::get(id);
        self.unary_within(op, body, budget).decode(calls::doc_data)
    }

    /// [`Client::get_json`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn get_json_within(&self, id: &str, budget: Duration) -> Within<Option<String>> {
        let (op, body) = calls::get(id);
        self.unary_within(op, body, budget).decode(calls::doc_text)
    }

    /// [`Client::delete`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn delete_within(&self, id: &str, budget: Duration) -> Within<Option<u64>> {
        let (op, body) = calls::delete(id);
        self.unary_within(op, body, budget).decode(calls::deleted)
    }

    /// [`Client::get_with_metadata`] that waits here for at most
    /// `budget`; see [`Within`].
    pub fn get_with_metadata_within(&self, id: &str, budget: Duration) -> Within<Option<Document>> {
        let (op, body) = calls::get_with_metadata(id);
        self.unary_within(op, body, budget).decode(calls::document)
    }

    /// [`Client::batch`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn batch_within(&self, writes: Vec<WriteOp>, budget: Duration) -> Within<(u64, u64)> {
        let (op, body) = calls::batch(writes);
        self.unary_within(op, body, budget).decode(calls::seq_range)
    }

    /// [`Client::call`] that waits here for at most `budget`; see
    /// [`Within`]. The handler's answer comes back at once when it is that
    /// quick (a Rust handler, an idle Node host), else as a future.
    pub fn call_within(&self, name: &str, payload: Value, budget: Duration) -> Within<Value> {
        let (op, body) = calls::call(name, payload);
        self.unary_within(op, body, budget).decode(parse_json)
    }

    /// [`Client::publish`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn publish_within(&self, topic: &str, payload: Value, budget: Duration) -> Within<usize> {
        let (op, body) = calls::publish(topic, payload);
        self.unary_within(op, body, budget).decode(calls::delivered)
    }

    /// [`Client::ping`] that waits here for at most `budget`; see
    /// [`Within`].
    pub fn ping_within(&self, budget: Duration) -> Within<()> {
        self.unary_within(Operation::Ping, b"{}".to_vec(), budget)
            .decode(|_| Ok(()))
    }

    /// The async client underneath (same connection).
    pub fn as_async(&self) -> &AsyncClient {
        &self.inner
    }

    /// The same client with another per-call timeout (at most
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT)).
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            inner: self.inner.with_timeout(timeout),
            handle: self.handle.clone(),
        }
    }

    /// The same client whose calls with a budget may wait on the calling
    /// thread for their connection's turn for up to `turn_wait`; see
    /// [`AsyncClient::with_turn_wait`].
    pub fn with_turn_wait(&self, turn_wait: Duration) -> Client {
        Client {
            inner: self.inner.with_turn_wait(turn_wait),
            handle: self.handle.clone(),
        }
    }

    /// What the current connection's handshake agreed; see
    /// [`AsyncClient::link_info`].
    pub fn link_info(&self) -> Option<crate::transport::LinkInfo> {
        self.inner.link_info()
    }

    /// The longest request the current connection sends; `None` when it
    /// is down. See [`AsyncClient::max_request_bytes`] and
    /// [`ConnectOptions::max_request_bytes`](crate::ConnectOptions::max_request_bytes).
    pub fn max_request_bytes(&self) -> Option<usize> {
        self.inner.max_request_bytes()
    }

    /// The transport of the current connection (`shm`, `socket`,
    /// `in-process`); `None` when it is down. See
    /// [`AsyncClient::transport`].
    pub fn transport(&self) -> Option<crate::transport::TransportKind> {
        self.inner.transport()
    }

    /// Checks the server answers.
    pub fn ping(&self) -> Result<(), IpcError> {
        self.unary(Operation::Ping, b"{}".to_vec()).map(|_| ())
    }

    /// See [`AsyncClient::put`].
    pub fn put(&self, id: &str, data: Value) -> Result<u64, IpcError> {
        let (op, body) = calls::put(id, &data);
        calls::seq(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::put_json`].
    pub fn put_json(&self, id: &str, json: &str) -> Result<u64, IpcError> {
        let (op, body) = calls::put_text(id, json)?;
        calls::seq(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::patch`].
    pub fn patch(&self, id: &str, fields: Value) -> Result<u64, IpcError> {
        let (op, body) = calls::patch(id, &fields);
        calls::seq(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::get`].
    pub fn get(&self, id: &str) -> Result<Option<Value>, IpcError> {
        let (op, body) = calls::get(id);
        calls::doc_data(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::get_json`].
    pub fn get_json(&self, id: &str) -> Result<Option<String>, IpcError> {
        let (op, body) = calls::get(id);
        calls::doc_text(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::get_with_metadata`].
    pub fn get_with_metadata(&self, id: &str) -> Result<Option<Document>, IpcError> {
        let (op, body) = calls::get_with_metadata(id);
        calls::document(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::delete`].
    pub fn delete(&self, id: &str) -> Result<Option<u64>, IpcError> {
        let (op, body) = calls::delete(id);
        calls::deleted(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::list`].
    pub fn list(&self, options: ListOptions) -> Result<Page, IpcError> {
        self.collect(Operation::List, AsyncClient::list_body(&options), page)
    }

    /// See [`AsyncClient::list_stream`].
    pub fn list_stream(&self, options: ListOptions) -> Result<DocStream, IpcError> {
        let inner = self.run(self.inner.list_stream(options))?;
        Ok(DocStream {
            inner,
            handle: self.handle.clone(),
        })
    }

    /// See [`AsyncClient::query`].
    pub fn query(
        &self,
        filter: Value,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<Page, IpcError> {
        let body = AsyncClient::query_body(filter, limit, after);
        self.collect(Operation::Query, body, page)
    }

    /// See [`AsyncClient::search`].
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>, IpcError> {
        let body = AsyncClient::search_body(text, limit);
        self.collect(Operation::Search, body, hits)
    }

    /// See [`AsyncClient::batch`].
    pub fn batch(&self, writes: Vec<WriteOp>) -> Result<(u64, u64), IpcError> {
        let (op, body) = calls::batch(writes);
        calls::seq_range(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::stats`].
    pub fn stats(&self) -> Result<Value, IpcError> {
        parse_json(&self.unary(Operation::Stats, b"{}".to_vec())?)
    }

    /// See [`AsyncClient::changes_since`].
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, IpcError> {
        let (op, body) = calls::changes_since(after, limit);
        calls::changes(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::call`].
    pub fn call(&self, name: &str, payload: Value) -> Result<Value, IpcError> {
        let (op, body) = calls::call(name, payload);
        parse_json(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::call_as`].
    pub fn call_as<T: DeserializeOwned>(&self, name: &str, payload: Value) -> Result<T, IpcError> {
        calls::shaped(name, self.call(name, payload)?)
    }

    /// See [`AsyncClient::publish`].
    pub fn publish(&self, topic: &str, payload: Value) -> Result<usize, IpcError> {
        let (op, body) = calls::publish(topic, payload);
        calls::delivered(&self.unary(op, body)?)
    }

    /// See [`AsyncClient::subscribe`]. The returned iterator blocks for the
    /// next change and never ends by itself; it yields an error only when
    /// resuming failed for the client's resume timeout.
    pub fn subscribe(&self, subscription: Subscription) -> Result<ChangeStream, IpcError> {
        let inner = self.run(self.inner.subscribe(subscription))?;
        Ok(ChangeStream {
            inner,
            handle: self.handle.clone(),
        })
    }

    /// See [`AsyncClient::subscribe_topic`].
    pub fn subscribe_topic(&self, pattern: &str) -> Result<TopicStream, IpcError> {
        let inner = self.run(self.inner.subscribe_topic(pattern))?;
        Ok(TopicStream {
            inner,
            handle: self.handle.clone(),
        })
    }
}

/// Blocking iterator over a change subscription; see [`AsyncChangeStream`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use hearth_ipc::{Server, Subscription};
/// use serde_json::json;
/// let server = Server::builder().data_dir(dir.path()).start()?;
/// let client = server.connect_in_process()?;
/// client.put("user:1", json!({"n": 1}))?;
/// client.put("order:1", json!({"n": 2}))?;
/// let mut changes = client.subscribe(Subscription::prefix("user:").from_seq(0))?;
/// let first = changes.next().unwrap()?;
/// assert_eq!((first.id.as_str(), first.data), ("user:1", Some(json!({"n": 1}))));
/// assert!(changes.next_timeout(std::time::Duration::from_millis(1))?.is_none());
/// # server.shutdown()?;
/// # Ok::<(), hearth_ipc::IpcError>(())
/// ```
#[derive(Debug)]
pub struct ChangeStream {
    inner: AsyncChangeStream,
    handle: Handle,
}

impl ChangeStream {
    /// The next change, or `Ok(None)` if none arrives within `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, IpcError> {
        block_on(&self.handle, self.inner.next_timeout(timeout))
    }

    /// The sequence number of the next change to be handed out.
    pub fn position(&self) -> u64 {
        self.inner.position()
    }

    /// How many times the stream subscribed again.
    pub fn resumes(&self) -> u64 {
        self.inner.resumes()
    }

    /// Whether changes came faster than this stream was read and overflowed
    /// its buffer; see [`AsyncChangeStream::overflowed`].
    pub fn overflowed(&self) -> bool {
        self.inner.overflowed()
    }
}

impl Iterator for ChangeStream {
    type Item = Result<Change, IpcError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(block_on(&self.handle, self.inner.next()))
    }
}

/// Blocking iterator over a topic subscription; see [`AsyncTopicStream`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use hearth_ipc::Server;
/// use serde_json::json;
/// let server = Server::builder().data_dir(dir.path()).start()?;
/// let client = server.connect_in_process()?;
/// let mut events = client.subscribe_topic("one-core:event:*")?;
/// client.publish("one-core:event:objectCreated", json!({"hash": "h1"}))?;
/// let event = events.next().unwrap()?;
/// assert_eq!(event.topic, "one-core:event:objectCreated");
/// assert_eq!(events.dropped(), 0);
/// # server.shutdown()?;
/// # Ok::<(), hearth_ipc::IpcError>(())
/// ```
#[derive(Debug)]
pub struct TopicStream {
    inner: AsyncTopicStream,
    handle: Handle,
}

impl TopicStream {
    /// The next event, or `Ok(None)` if none arrives within `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<TopicEvent>, IpcError> {
        block_on(&self.handle, self.inner.next_timeout(timeout))
    }

    /// Events dropped because a buffer was full, so far.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped()
    }
}

impl Iterator for TopicStream {
    type Item = Result<TopicEvent, IpcError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(block_on(&self.handle, self.inner.next()))
    }
}

/// Blocking iterator over a streamed `list`; see [`AsyncDocStream`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use hearth_ipc::{ListOptions, Server};
/// use serde_json::json;
/// let server = Server::builder().data_dir(dir.path()).start()?;
/// let client = server.connect_in_process()?;
/// for i in 0..3 {
///     client.put(&format!("n:{i}"), json!({"i": i}))?;
/// }
/// let opts = ListOptions { prefix: Some("n:".into()), limit: Some(2), ..Default::default() };
/// let mut docs = client.list_stream(opts)?;
/// let ids: Vec<String> = docs.by_ref().map(|d| d.map(|d| d.id)).collect::<Result<_, _>>()?;
/// assert_eq!(ids, ["n:0", "n:1"]);
/// assert_eq!(docs.cursor(), Some("n:1"));
/// # server.shutdown()?;
/// # Ok::<(), hearth_ipc::IpcError>(())
/// ```
#[derive(Debug)]
pub struct DocStream {
    inner: AsyncDocStream,
    handle: Handle,
}

impl DocStream {
    /// After the end: the cursor to continue from, when the list stopped at
    /// its limit.
    pub fn cursor(&self) -> Option<&str> {
        self.inner.cursor()
    }
}

impl Iterator for DocStream {
    type Item = Result<Document, IpcError>;

    fn next(&mut self) -> Option<Self::Item> {
        block_on(&self.handle, self.inner.next())
    }
}

/// The result of a call run as a task of the client's runtime.
fn joined<T>(r: Result<Result<T, IpcError>, tokio::task::JoinError>) -> Result<T, IpcError> {
    r.unwrap_or_else(|e| {
        Err(IpcError::Disconnected {
            reason: format!("the client's runtime dropped the call: {e}"),
        })
    })
}
