//! The client JavaScript drives: one connection to a channel.
//!
//! Owns: [`NativeClient`] — point operations (put, patch, get, delete)
//! done synchronously on the JavaScript thread through the blocking
//! [`hearth_ipc::Client`] (no thread hop: over shared memory the answer is
//! microseconds away, and `index.js` hands back an already-settled
//! promise), every other operation run on the addon's tokio runtime and
//! settled through a promise, and opening the streams of [`crate::streams`].
//! Must never: run a list, query, search, batch, handler call or any wait
//! of unbounded length on the JavaScript thread, or keep using a client
//! after [`close`](NativeClient::close).

use crate::error::{ErrorInfo, NodeError, Outcome, outcome};
use crate::json;
use crate::rt::{CancelToken, cancellable, run_sync, timeout};
use crate::streams::{NativeChangeStream, NativeDocStream, NativeTopicStream, StreamState};
use hearth_ipc::{AsyncClient, Client, ConnectOptions, ListOptions, Subscription, Within};
use napi::Env;
use napi::bindgen_prelude::Either;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How to connect, as `index.js` sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConnectArgs {
    channel: String,
    socket_dir: Option<PathBuf>,
    socket_path: Option<PathBuf>,
    timeout_ms: Option<f64>,
    connect_timeout_ms: Option<f64>,
    resume_timeout_ms: Option<f64>,
    event_buffer: Option<usize>,
    /// How long a fast-path call may wait on the calling thread for its
    /// connection's turn on the server (`Client::with_turn_wait`).
    turn_wait_ms: Option<f64>,
}

impl ConnectArgs {
    fn options(&self) -> Result<ConnectOptions, NodeError> {
        let mut o = ConnectOptions::new(&self.channel);
        if let Some(dir) = &self.socket_dir {
            o = o.socket_dir(dir);
        }
        if let Some(path) = &self.socket_path {
            o = o.socket_path(path);
        }
        if let Some(t) = timeout(self.timeout_ms)? {
            o = o.timeout(t);
        }
        if let Some(t) = timeout(self.connect_timeout_ms)? {
            o = o.connect_timeout(t);
        }
        if let Some(t) = timeout(self.resume_timeout_ms)? {
            o = o.resume_timeout(t);
        }
        if let Some(n) = self.event_buffer {
            o = o.event_buffer(n);
        }
        Ok(o)
    }
}

/// State shared by a client and the streams it opened.
#[derive(Debug)]
pub struct ClientShared {
    client: RwLock<Option<Client>>,
    /// Turns `true` on close; streams watch it and end.
    closed: watch::Sender<bool>,
}

impl ClientShared {
    fn client(&self) -> Result<Client, NodeError> {
        self.client
            .read()
            .clone()
            .ok_or(NodeError::Closed("this client"))
    }

    fn with<T>(
        &self,
        timeout_ms: Option<f64>,
        f: impl FnOnce(&Client) -> Result<T, hearth_ipc::IpcError>,
    ) -> Result<T, NodeError> {
        let guard = self.client.read();
        let client = guard.as_ref().ok_or(NodeError::Closed("this client"))?;
        match timeout(timeout_ms)? {
            None => Ok(f(client)?),
            Some(t) => Ok(f(&client.with_timeout(t))?),
        }
    }

    fn async_client(&self, timeout_ms: Option<f64>) -> Result<AsyncClient, NodeError> {
        let client = self.client()?;
        Ok(match timeout(timeout_ms)? {
            None => client.as_async().clone(),
            Some(t) => client.as_async().with_timeout(t),
        })
    }

    /// A receiver that turns `true` when the client closes.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

/// A connection to a hearth channel. Made by [`NativeClient::connect`];
/// `index.js` wraps it in `LocalFirst`.
#[napi]
#[derive(Debug)]
pub struct NativeClient {
    shared: Arc<ClientShared>,
}

impl NativeClient {
    /// Connects with the options in `options_json` (see
    /// [`connect`](NativeClient::connect)), blocking.
    fn open(options_json: &str) -> Result<NativeClient, NodeError> {
        let args: ConnectArgs = json::args(options_json, "connect")?;
        let mut client = Client::connect_with(args.options()?)?;
        if let Some(wait) = timeout(args.turn_wait_ms)? {
            client = client.with_turn_wait(wait);
        }
        Ok(NativeClient {
            shared: Arc::new(ClientShared {
                client: RwLock::new(Some(client)),
                closed: watch::channel(false).0,
            }),
        })
    }
}

fn sync<T>(r: Result<T, NodeError>) -> napi::Result<T, String> {
    r.map_err(NodeError::into_napi)
}

#[napi]
impl NativeClient {
    /// Connects (blocking, bounded by the connect timeout) with the options
    /// in `options_json`:
    /// `{channel, socketDir?, socketPath?, timeoutMs?, connectTimeoutMs?, resumeTimeoutMs?, eventBuffer?}`.
    #[napi(factory)]
    pub fn connect(options_json: String) -> napi::Result<NativeClient, String> {
        sync(NativeClient::open(&options_json))
    }

    /// [`connect`](Self::connect) off the JavaScript thread: the promise
    /// resolves with the client once connected, or with an error
    /// description (see [`Outcome`]), so that a slow or frozen server never
    /// holds the event loop while the connection opens.
    #[napi(ts_return_type = "Promise<NativeClient | ErrorInfo>")]
    pub fn connect_async<'env>(
        env: &'env Env,
        options_json: String,
    ) -> napi::Result<PromiseRaw<'env, Either<NativeClient, ErrorInfo>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own: connecting blocks (on hearth-ipc's runtime),
        // which a task of the addon's runtime must not.
        let spawned = std::thread::Builder::new()
            .name("hearth-connect".into())
            .spawn(move || {
                let _ = tx.send(NativeClient::open(&options_json));
            });
        env.spawn_future(async move {
            let opened = match spawned {
                Ok(_) => rx.await.unwrap_or_else(|_| {
                    Err(NodeError::Internal(
                        "the connecting thread ended without an answer".into(),
                    ))
                }),
                Err(e) => Err(NodeError::Internal(format!(
                    "starting a connecting thread: {e}"
                ))),
            };
            Ok(match opened {
                Ok(client) => Either::A(client),
                Err(e) => Either::B(e.info()),
            })
        })
    }

    /// Replaces document `id` with the JSON object `data_json`; the
    /// change's sequence number once it is durable. Waits on the
    /// JavaScript thread for at most `budget_ms` (see `NativeClient::fast`); a slower
    /// answer comes as a promise of an [`Outcome`] (the number as JSON),
    /// which `cancel` can end.
    #[napi(ts_return_type = "number | Promise<string | null | ErrorInfo>")]
    pub fn put<'env>(
        &self,
        env: &'env Env,
        id: String,
        data_json: String,
        timeout_ms: Option<f64>,
        budget_ms: f64,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Either<f64, PromiseRaw<'env, Outcome>>, String> {
        self.fast(
            env,
            Wait {
                timeout_ms,
                budget_ms,
                cancel,
            },
            |c, budget| c.put_json_within(&id, &data_json, budget),
            |seq| seq as f64,
            |seq| json!(seq).to_string(),
        )
    }

    /// Merges the top-level fields of `fields_json` into document `id`;
    /// like [`put`](Self::put).
    #[napi(ts_return_type = "number | Promise<string | null | ErrorInfo>")]
    pub fn patch<'env>(
        &self,
        env: &'env Env,
        id: String,
        fields_json: String,
        timeout_ms: Option<f64>,
        budget_ms: f64,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Either<f64, PromiseRaw<'env, Outcome>>, String> {
        let fields = sync(json::parse(&fields_json, "the fields"))?;
        self.fast(
            env,
            Wait {
                timeout_ms,
                budget_ms,
                cancel,
            },
            |c, budget| c.patch_within(&id, fields, budget),
            |seq| seq as f64,
            |seq| json!(seq).to_string(),
        )
    }

    /// Document `id` as JSON text, or `null` when absent or deleted; like
    /// [`put`](Self::put) (a promise of the same text when slow).
    #[napi(ts_return_type = "string | null | Promise<string | null | ErrorInfo>")]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        id: String,
        timeout_ms: Option<f64>,
        budget_ms: f64,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Either<Option<String>, PromiseRaw<'env, Outcome>>, String> {
        self.fast(
            env,
            Wait {
                timeout_ms,
                budget_ms,
                cancel,
            },
            |c, budget| c.get_json_within(&id, budget),
            |text| text,
            |text| text.unwrap_or_else(|| "null".to_string()),
        )
    }

    /// Deletes document `id`; whether it existed. Like [`put`](Self::put)
    /// (a promise of `true`/`false` as JSON when slow).
    #[napi(ts_return_type = "boolean | Promise<string | null | ErrorInfo>")]
    pub fn delete<'env>(
        &self,
        env: &'env Env,
        id: String,
        timeout_ms: Option<f64>,
        budget_ms: f64,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Either<bool, PromiseRaw<'env, Outcome>>, String> {
        self.fast(
            env,
            Wait {
                timeout_ms,
                budget_ms,
                cancel,
            },
            |c, budget| c.delete_within(&id, budget),
            |seq| seq.is_some(),
            |seq| json!(seq.is_some()).to_string(),
        )
    }

    /// `getWithMetadata`, `batch`, `call`, `publish`, `list`, `query` or
    /// `search` with the arguments in `args_json` (as
    /// [`request`](Self::request) takes them), on the fast path like
    /// [`put`](Self::put) (a streamed answer's chunks read on this thread
    /// until the budget): the result as JSON text (`"null"` for a document
    /// that never existed) when it comes within `budget_ms`, else a promise
    /// of an [`Outcome`], which `cancel` can end.
    #[napi(ts_return_type = "string | null | Promise<string | null | ErrorInfo>")]
    pub fn unary<'env>(
        &self,
        env: &'env Env,
        op: String,
        args_json: String,
        timeout_ms: Option<f64>,
        budget_ms: f64,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Either<Option<String>, PromiseRaw<'env, Outcome>>, String> {
        let wait = Wait {
            timeout_ms,
            budget_ms,
            cancel,
        };
        match op.as_str() {
            "getWithMetadata" => {
                let a: json::IdArgs = sync(json::args(&args_json, &op))?;
                self.fast_text(
                    env,
                    wait,
                    |c, budget| c.get_with_metadata_within(&a.id, budget),
                    |doc| {
                        doc.map_or_else(|| "null".to_string(), |d| json::text(&json::document(d)))
                    },
                )
            }
            "batch" => {
                let a: json::BatchArgs = sync(json::args(&args_json, &op))?;
                let writes = sync(a.writes())?;
                self.fast_text(
                    env,
                    wait,
                    |c, budget| c.batch_within(writes, budget),
                    seq_range,
                )
            }
            "call" => {
                let a: json::CallArgs = sync(json::args(&args_json, &op))?;
                self.fast_text(
                    env,
                    wait,
                    |c, budget| c.call_within(&a.name, a.payload, budget),
                    |v| json::text(&v),
                )
            }
            "publish" => {
                let a: json::PublishArgs = sync(json::args(&args_json, &op))?;
                self.fast_text(
                    env,
                    wait,
                    |c, budget| c.publish_within(&a.topic, a.payload, budget),
                    |n| n.to_string(),
                )
            }
            "list" => {
                let a: json::ListArgs = sync(json::args(&args_json, &op))?;
                self.fast_text(
                    env,
                    wait,
                    |c, budget| c.list_json_within(a.into(), budget),
                    std::convert::identity,
                )
            }
            "query" => {
                let a: json::QueryArgs = sync(json::args(&args_json, &op))?;
                self.fast_text(
                    env,
                    wait,
                    |c, budget| c.query_json_within(a.filter, a.limit, a.cursor.as_deref(), budget),
                    std::convert::identity,
                )
            }
            "search" => {
                let a: json::SearchArgs = sync(json::args(&args_json, &op))?;
                self.fast_text(
                    env,
                    wait,
                    |c, budget| {
                        c.search_json_within(&a.text, a.limit.unwrap_or(SEARCH_LIMIT), budget)
                    },
                    std::convert::identity,
                )
            }
            other => sync(Err(NodeError::InvalidInput(format!(
                "no fast path for the operation {other:?}"
            )))),
        }
    }

    /// Document `id` with its metadata (`{id, data, metadata}`), deleted
    /// ones included; `null` if it never existed.
    #[napi]
    pub fn get_with_metadata(
        &self,
        id: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<Option<String>, String> {
        sync(
            self.shared
                .with(timeout_ms, |c| c.get_with_metadata(&id))
                .map(|doc| doc.map(|d| json::text(&json::document(d)))),
        )
    }

    /// Checks the server answers (blocking, bounded by the timeout).
    #[napi]
    pub fn ping(&self, timeout_ms: Option<f64>) -> napi::Result<(), String> {
        sync(self.shared.with(timeout_ms, |c| c.ping()))
    }

    /// The transport of the current connection (`shm`, `socket`,
    /// `in-process`), or `null` while it is down.
    #[napi]
    pub fn transport(&self) -> Option<String> {
        let client = self.shared.client().ok()?;
        client.link_info().map(|info| info.kind.name().to_string())
    }

    /// Runs operation `op` with the argument object `args_json` off the
    /// JavaScript thread. The promise resolves with the result as JSON
    /// text, or with an error description (see [`Outcome`]).
    ///
    /// Operations: `put`, `patch`, `get`, `getWithMetadata`, `delete`,
    /// `list`, `query`, `search`, `batch`, `call`, `publish`, `stats`,
    /// `changesSince`, `ping`.
    #[napi(ts_return_type = "Promise<string | null | ErrorInfo>")]
    pub fn request<'env>(
        &self,
        env: &'env Env,
        op: String,
        args_json: String,
        timeout_ms: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<PromiseRaw<'env, Outcome>> {
        let client = self.shared.async_client(timeout_ms);
        let cancel = cancel.map(CancelToken::watch);
        let closed = self.shared.closed();
        env.spawn_future(async move {
            let work = async move { run(client?, &op, &args_json).await };
            let closing = async move {
                crate::rt::until_set(closed).await;
                Err(NodeError::Closed("this client"))
            };
            let result = tokio::select! {
                r = cancellable(work, cancel) => r,
                r = closing => r,
            };
            Ok(outcome(result))
        })
    }

    /// Follows committed changes to ids starting with `prefix` (all when
    /// absent), from sequence number `from_seq` (from now when absent).
    /// The subscription is in place when this returns, so a write made
    /// after it is never missed.
    #[napi]
    pub fn watch(
        &self,
        prefix: Option<String>,
        from_seq: Option<f64>,
    ) -> napi::Result<NativeChangeStream, String> {
        sync((|| {
            let client = self.shared.async_client(None)?;
            let mut spec = match prefix {
                Some(p) => Subscription::prefix(p),
                None => Subscription::all(),
            };
            if let Some(seq) = from_seq {
                if !(seq.is_finite() && seq >= 0.0) {
                    return Err(NodeError::InvalidInput(format!(
                        "fromSeq must be a non-negative integer, not {seq}"
                    )));
                }
                spec = spec.from_seq(seq as u64);
            }
            let stream = run_sync(async move { client.subscribe(spec).await })??;
            Ok(NativeChangeStream::new(StreamState::new(
                stream,
                self.shared.closed(),
            )))
        })())
    }

    /// Receives events published on topics matching `pattern`. In place
    /// when this returns.
    #[napi]
    pub fn topics(&self, pattern: String) -> napi::Result<NativeTopicStream, String> {
        sync((|| {
            let client = self.shared.async_client(None)?;
            let stream = run_sync(async move { client.subscribe_topic(&pattern).await })??;
            Ok(NativeTopicStream::new(StreamState::new(
                stream,
                self.shared.closed(),
            )))
        })())
    }

    /// [`topics`](Self::topics) off the JavaScript thread: the promise
    /// resolves with the stream once the subscription is in place, or with
    /// an error description (see [`Outcome`]) — so that a frozen or slow
    /// server never holds the event loop while it is set up.
    #[napi(ts_return_type = "Promise<NativeTopicStream | ErrorInfo>")]
    pub fn topics_async<'env>(
        &self,
        env: &'env Env,
        pattern: String,
    ) -> napi::Result<PromiseRaw<'env, Either<NativeTopicStream, ErrorInfo>>> {
        let client = self.shared.async_client(None);
        let closed = self.shared.closed();
        env.spawn_future(async move {
            let opened = async move {
                let stream = client?.subscribe_topic(&pattern).await?;
                Ok::<_, NodeError>(NativeTopicStream::new(StreamState::new(stream, closed)))
            };
            Ok(match opened.await {
                Ok(stream) => Either::A(stream),
                Err(e) => Either::B(e.info()),
            })
        })
    }

    /// Streams a `list` (`{prefix?, type?, limit?, cursor?}`) in chunks as
    /// the server sends them.
    #[napi]
    pub fn list_stream(
        &self,
        options_json: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<NativeDocStream, String> {
        sync((|| {
            let args: json::ListArgs = json::args(&options_json, "list")?;
            let client = self.shared.async_client(timeout_ms)?;
            let options: ListOptions = args.into();
            let stream = run_sync(async move { client.list_stream(options).await })??;
            Ok(NativeDocStream::new(StreamState::new(
                stream,
                self.shared.closed(),
            )))
        })())
    }

    /// Closes the connection: calls in flight and open streams end with
    /// `ECLOSED` (streams simply end). Idempotent.
    #[napi]
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
        let client = self.shared.client.write().take();
        drop(client);
    }

    /// Whether [`close`](Self::close) was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        *self.shared.closed.borrow()
    }
}

impl NativeClient {
    /// A point operation on the fast path: made on the JavaScript thread,
    /// which waits for at most `budget_ms` (no thread hop: over shared
    /// memory the answer is usually microseconds away). An answer that
    /// takes longer, from a busy or stalled server, comes as a promise
    /// settled on the addon's runtime, so the event loop is never held for
    /// longer than the budget. `now` shapes an answer given at once,
    /// `later` one given through the promise (as JSON text, like
    /// [`request`](Self::request)); cancelling `cancel` ends that promise
    /// with `ABORT_ERR` (an answer given at once cannot be cancelled: the
    /// JavaScript thread was busy with the call the whole time).
    fn fast<'env, T: Send + 'static, R>(
        &self,
        env: &'env Env,
        wait: Wait<'_>,
        call: impl FnOnce(&Client, Duration) -> Within<T>,
        now: impl FnOnce(T) -> R,
        later: fn(T) -> String,
    ) -> napi::Result<Either<R, PromiseRaw<'env, Outcome>>, String> {
        let budget = sync(budget(wait.budget_ms))?;
        let within = sync(self.shared.with(wait.timeout_ms, |c| Ok(call(c, budget))))?;
        let rest = match within {
            Within::Ready(result) => {
                return sync(result.map(now).map_err(NodeError::from)).map(Either::A);
            }
            Within::Later(rest) => rest,
        };
        let closed = self.shared.closed();
        let cancel = wait.cancel.map(CancelToken::watch);
        env.spawn_future(async move {
            let work = async move { Ok(Some(later(rest.wait().await?))) };
            let work = cancellable(work, cancel);
            let closing = async move {
                crate::rt::until_set(closed).await;
                Err(NodeError::Closed("this client"))
            };
            let result = tokio::select! {
                r = work => r,
                r = closing => r,
            };
            Ok(outcome(result))
        })
        .map(Either::B)
        .map_err(|e| napi::Error::new(e.status.as_ref().to_string(), e.reason))
    }

    /// [`fast`](Self::fast) for a call whose answer JavaScript gets as JSON
    /// text either way: `text` shapes it now and later alike.
    fn fast_text<'env, T: Send + 'static>(
        &self,
        env: &'env Env,
        wait: Wait<'_>,
        call: impl FnOnce(&Client, Duration) -> Within<T>,
        text: fn(T) -> String,
    ) -> napi::Result<Either<Option<String>, PromiseRaw<'env, Outcome>>, String> {
        self.fast(env, wait, call, |v| Some(text(v)), text)
    }
}

/// How a fast-path call may wait: its timeout (the client's when `None`),
/// how long on the JavaScript thread, and what can cancel the rest.
struct Wait<'a> {
    timeout_ms: Option<f64>,
    budget_ms: f64,
    cancel: Option<&'a CancelToken>,
}

/// The fast path's budget: a finite, non-negative number of milliseconds.
fn budget(ms: f64) -> Result<Duration, NodeError> {
    if ms.is_finite() && ms >= 0.0 {
        Ok(crate::rt::millis(ms))
    } else {
        Err(NodeError::InvalidInput(format!(
            "the fast-path budget must be a non-negative number of milliseconds, not {ms}"
        )))
    }
}

/// How many hits a search gives when it does not say.
const SEARCH_LIMIT: usize = 20;

/// Search hits as the JSON array JavaScript gets.
fn hits(hits: Vec<hearth_ipc::Hit>) -> Value {
    Value::Array(hits.into_iter().map(json::hit).collect())
}

/// A batch's first and last sequence numbers as JSON text.
fn seq_range((first, last): (u64, u64)) -> String {
    json::text(&json!({"firstSeq": first, "lastSeq": last}))
}

fn page(page: hearth_ipc::Page) -> Value {
    let docs: Vec<Value> = page.docs.into_iter().map(json::document).collect();
    json!({"docs": docs, "cursor": page.cursor})
}

/// One asynchronous operation.
async fn run(client: AsyncClient, op: &str, args: &str) -> Result<Option<String>, NodeError> {
    let value: Value = match op {
        "put" => {
            let a: json::PutArgs = json::args(args, op)?;
            json!(client.put(&a.id, a.data).await?)
        }
        "patch" => {
            let a: json::PatchArgs = json::args(args, op)?;
            json!(client.patch(&a.id, a.fields).await?)
        }
        "get" => {
            let a: json::IdArgs = json::args(args, op)?;
            return Ok(client.get_json(&a.id).await?);
        }
        "getWithMetadata" => {
            let a: json::IdArgs = json::args(args, op)?;
            return Ok(client
                .get_with_metadata(&a.id)
                .await?
                .map(|d| json::text(&json::document(d))));
        }
        "delete" => {
            let a: json::IdArgs = json::args(args, op)?;
            json!(client.delete(&a.id).await?.is_some())
        }
        "list" => {
            let a: json::ListArgs = json::args(args, op)?;
            page(client.list(a.into()).await?)
        }
        "query" => {
            let a: json::QueryArgs = json::args(args, op)?;
            page(client.query(a.filter, a.limit, a.cursor.as_deref()).await?)
        }
        "search" => {
            let a: json::SearchArgs = json::args(args, op)?;
            hits(
                client
                    .search(&a.text, a.limit.unwrap_or(SEARCH_LIMIT))
                    .await?,
            )
        }
        "batch" => {
            let a: json::BatchArgs = json::args(args, op)?;
            return Ok(Some(seq_range(client.batch(a.writes()?).await?)));
        }
        "call" => {
            let a: json::CallArgs = json::args(args, op)?;
            client.call(&a.name, a.payload).await?
        }
        "publish" => {
            let a: json::PublishArgs = json::args(args, op)?;
            json!(client.publish(&a.topic, a.payload).await?)
        }
        "stats" => client.stats().await?,
        "changesSince" => {
            let a: json::ChangesArgs = json::args(args, op)?;
            let changes = client
                .changes_since(a.after, a.limit.unwrap_or(1000))
                .await?;
            Value::Array(changes.into_iter().map(json::change).collect())
        }
        "ping" => {
            client.ping().await?;
            Value::Bool(true)
        }
        other => {
            return Err(NodeError::InvalidInput(format!(
                "unknown operation {other:?}"
            )));
        }
    };
    Ok(Some(json::text(&value)))
}
