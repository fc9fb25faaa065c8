//! Node as the host: a hearth server embedded in the Node process, whose
//! custom handlers are JavaScript functions.
//!
//! Owns: [`NativeHost`] — opening the store and starting
//! [`hearth_ipc::Server`] off the JavaScript thread, routing every handler
//! call to JavaScript through one threadsafe function (the "dispatcher")
//! and waiting for JavaScript's answer without holding a thread, events
//! published from JavaScript, and shutting down. Must never: run a handler
//! anywhere but on the JavaScript thread, block the JavaScript thread, or
//! leave a caller waiting after the host closed (pending calls fail with
//! `unavailable`).
//!
//! A name registered after start is added to the running server
//! ([`hearth_ipc::Server::async_handler`]): connections, subscriptions and
//! calls in flight are untouched.

use crate::error::{NodeError, Outcome, outcome};
use crate::json;
use hearth_bus::{BusOptions, EventBus};
use hearth_ipc::{HandlerContext, HandlerError, Server};
use hearth_proto::{ErrorBody, ErrorCode};
use hearth_store::{Durability, Options, Store};
use napi::bindgen_prelude::PromiseRaw;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Either, Env, Status};
use napi_derive::napi;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// The dispatcher JavaScript passes in: called as
/// `dispatch(token, name, payloadJson, contextJson)`; it answers later
/// through [`NativeHost::resolve`] or [`NativeHost::reject`] with the same
/// token.
pub type Dispatch = ThreadsafeFunction<
    (f64, String, String, String),
    (),
    (f64, String, String, String),
    Status,
    false,
>;

type Reply = Result<Value, HandlerError>;

/// Routes handler calls to JavaScript and their answers back.
struct Dispatcher {
    tsfn: RwLock<Option<Dispatch>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next: AtomicU64,
}

/// Forgets a pending call when its future ends (answered, or dropped
/// because the caller cancelled or disconnected).
struct PendingGuard<'a> {
    dispatcher: &'a Dispatcher,
    token: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.dispatcher.pending.lock().remove(&self.token);
    }
}

fn context_json(ctx: &HandlerContext) -> String {
    json::text(&json!({
        "callerId": ctx.connection_id(),
        "connectionId": ctx.connection_id(),
        "pid": ctx.peer_pid(),
        "uid": ctx.peer_uid(),
        "transport": ctx.transport().name(),
        "name": ctx.handler_name(),
    }))
}

impl Dispatcher {
    async fn dispatch(self: Arc<Self>, ctx: HandlerContext, payload: Value) -> Reply {
        let token = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(token, tx);
        let _guard = PendingGuard {
            dispatcher: &self,
            token,
        };
        let args = (
            token as f64,
            ctx.handler_name().to_string(),
            json::text(&payload),
            context_json(&ctx),
        );
        let status = match self.tsfn.read().as_ref() {
            Some(tsfn) => tsfn.call(args, ThreadsafeFunctionCallMode::NonBlocking),
            None => Status::Closing,
        };
        if status != Status::Ok {
            return Err(HandlerError::unavailable(format!(
                "the Node host of {:?} is closing ({status})",
                ctx.handler_name()
            )));
        }
        rx.await.unwrap_or_else(|_| {
            Err(HandlerError::unavailable(
                "the Node host closed before its handler answered",
            ))
        })
    }

    fn answer(&self, token: f64, reply: Reply) {
        if !(token.is_finite() && token >= 1.0) {
            return;
        }
        if let Some(tx) = self.pending.lock().remove(&(token as u64)) {
            let _ = tx.send(reply);
        }
    }

    /// Releases the threadsafe function (Node may exit once nothing else
    /// keeps it alive) and fails every call still waiting.
    fn shut(&self) {
        self.tsfn.write().take();
        self.pending.lock().clear();
    }
}

/// How the host is set up, as `index.js` sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HostArgs {
    channel: String,
    data_dir: PathBuf,
    socket_dir: Option<PathBuf>,
    durability: Option<String>,
    #[serde(default)]
    handlers: Vec<String>,
    shutdown_timeout_ms: Option<f64>,
}

/// What every (re)start of the listener uses.
struct HostConfig {
    channel: String,
    socket_dir: Option<PathBuf>,
    store: Store,
    bus: EventBus,
    shutdown_timeout: Duration,
}

struct HostInner {
    config: HostConfig,
    names: Mutex<BTreeSet<String>>,
    server: Mutex<Option<Server>>,
    dispatcher: Arc<Dispatcher>,
    /// One handler registration or close at a time.
    swap: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

fn start_server(
    config: &HostConfig,
    names: &BTreeSet<String>,
    dispatcher: &Arc<Dispatcher>,
) -> Result<Server, NodeError> {
    let mut builder = Server::builder()
        .channel(&config.channel)
        .store(config.store.clone())
        .bus(config.bus.clone())
        .shutdown_timeout(config.shutdown_timeout);
    if let Some(dir) = &config.socket_dir {
        builder = builder.socket_dir(dir);
    }
    for name in names {
        let d = dispatcher.clone();
        builder = builder.async_handler(name, move |ctx, payload| d.clone().dispatch(ctx, payload));
    }
    Ok(builder.start()?)
}

fn check_name(name: &str) -> Result<(), NodeError> {
    hearth_bus::validate_topic(name)
        .map_err(|e| NodeError::InvalidInput(format!("handler name {name:?}: {e}")))
}

fn open(args: HostArgs, dispatch: Dispatch) -> Result<NativeHost, NodeError> {
    hearth_ipc::validate_channel_name(&args.channel)?;
    for name in &args.handlers {
        check_name(name)?;
    }
    let durability = match args.durability.as_deref() {
        None | Some("journal") => Durability::Journal,
        Some("fsync") => Durability::Fsync,
        Some(other) => {
            return Err(NodeError::InvalidInput(format!(
                "durability must be \"journal\" or \"fsync\", not {other:?}"
            )));
        }
    };
    let shutdown_timeout =
        crate::rt::timeout(args.shutdown_timeout_ms)?.unwrap_or(Duration::from_secs(10));
    let store = Store::open(
        &args.data_dir,
        Options {
            durability,
            ..Options::default()
        },
    )
    .map_err(hearth_ipc::IpcError::from)?;
    let config = HostConfig {
        channel: args.channel,
        socket_dir: args.socket_dir,
        store,
        bus: EventBus::with_options(BusOptions {
            max_listeners: 0,
            warn_on_max_listeners: false,
        }),
        shutdown_timeout,
    };
    let dispatcher = Arc::new(Dispatcher {
        tsfn: RwLock::new(Some(dispatch)),
        pending: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
    });
    let names: BTreeSet<String> = args.handlers.into_iter().collect();
    let server = start_server(&config, &names, &dispatcher)?;
    Ok(NativeHost {
        inner: Arc::new(HostInner {
            config,
            names: Mutex::new(names),
            server: Mutex::new(Some(server)),
            dispatcher,
            swap: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        }),
    })
}

/// A running embedded server. Made by [`NativeHost::start`]; `index.js`
/// wraps it in the object `serve()` returns.
#[napi]
pub struct NativeHost {
    inner: Arc<HostInner>,
}

#[napi]
impl NativeHost {
    /// Opens the store and starts serving, off the JavaScript thread.
    /// `options_json`: `{channel, dataDir, socketDir?, durability?,
    /// handlers?: [names], shutdownTimeoutMs?}`. Resolves with the host or
    /// an error description.
    #[napi(ts_return_type = "Promise<NativeHost | ErrorInfo>")]
    pub fn start<'env>(
        env: &'env Env,
        options_json: String,
        dispatch: Dispatch,
    ) -> napi::Result<PromiseRaw<'env, Either<NativeHost, crate::error::ErrorInfo>>> {
        env.spawn_future(async move {
            let opened = async move {
                let args: HostArgs = json::args(&options_json, "serve")?;
                tokio::task::spawn_blocking(move || open(args, dispatch))
                    .await
                    .map_err(|e| NodeError::Internal(format!("starting the host: {e}")))?
            };
            Ok(match opened.await {
                Ok(host) => Either::A(host),
                Err(e) => Either::B(e.info()),
            })
        })
    }

    /// Answers handler call `token` with the JSON text `result_json`
    /// (`null` when absent).
    #[napi]
    pub fn resolve(&self, token: f64, result_json: Option<String>) {
        let reply = match result_json {
            None => Ok(Value::Null),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                HandlerError::internal(format!("the handler's result is not JSON: {e}"))
            }),
        };
        self.inner.dispatcher.answer(token, reply);
    }

    /// Fails handler call `token` with a protocol `code` (unknown codes
    /// become `internal`) and `message`.
    #[napi]
    pub fn reject(&self, token: f64, code: String, message: String) {
        let code = code.parse::<ErrorCode>().unwrap_or(ErrorCode::Internal);
        self.inner.dispatcher.answer(
            token,
            Err(HandlerError::from(ErrorBody::new(code, message))),
        );
    }

    /// Publishes an event to every subscription matching `topic`; how many
    /// received it.
    #[napi]
    pub fn emit(&self, topic: String, payload_json: String) -> napi::Result<f64, String> {
        let run = || -> Result<f64, NodeError> {
            let payload = json::parse(&payload_json, "the event payload")?;
            let n = self
                .inner
                .config
                .bus
                .try_emit(&topic, &payload)
                .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
            Ok(n as f64)
        };
        run().map_err(NodeError::into_napi)
    }

    /// The handler names served now.
    #[napi]
    pub fn handlers(&self) -> Vec<String> {
        self.inner.names.lock().iter().cloned().collect()
    }

    /// The socket path clients connect to.
    #[napi(getter)]
    pub fn socket_path(&self) -> Option<String> {
        self.inner
            .server
            .lock()
            .as_ref()
            .and_then(|s| s.socket_path().map(|p| p.display().to_string()))
    }

    /// The server's counters as JSON text (`null` once closed).
    #[napi]
    pub fn stats(&self) -> Option<String> {
        let server = self.inner.server.lock();
        let stats = server.as_ref()?.stats();
        serde_json::to_string(&stats).ok()
    }

    /// Serves one more handler name, on the running server: calls that
    /// arrive once this resolves reach it; connected clients keep their
    /// connections. A name already served resolves at once.
    #[napi(ts_return_type = "Promise<string | null | ErrorInfo>")]
    pub fn add_handler<'env>(
        &self,
        env: &'env Env,
        name: String,
    ) -> napi::Result<PromiseRaw<'env, Outcome>> {
        let inner = self.inner.clone();
        env.spawn_future(async move { Ok(outcome(add_handler(inner, name).await)) })
    }

    /// Stops serving: no new connections, calls in flight finish (up to
    /// the shutdown timeout), the store is flushed, the socket removed,
    /// and Node is no longer kept alive by the host. Idempotent.
    #[napi(ts_return_type = "Promise<string | null | ErrorInfo>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Outcome>> {
        let inner = self.inner.clone();
        env.spawn_future(async move { Ok(outcome(close(inner).await)) })
    }
}

async fn add_handler(inner: Arc<HostInner>, name: String) -> Result<Option<String>, NodeError> {
    check_name(&name)?;
    let _one = inner.swap.lock().await;
    if inner.closed.load(Ordering::Acquire) {
        return Err(NodeError::Closed("this host"));
    }
    if inner.names.lock().contains(&name) {
        return Ok(None);
    }
    {
        let server = inner.server.lock();
        let server = server.as_ref().ok_or(NodeError::Closed("this host"))?;
        let d = inner.dispatcher.clone();
        server.async_handler(&name, move |ctx, payload| d.clone().dispatch(ctx, payload))?;
    }
    inner.names.lock().insert(name);
    Ok(None)
}

async fn close(inner: Arc<HostInner>) -> Result<Option<String>, NodeError> {
    inner.closed.store(true, Ordering::Release);
    let _one = inner.swap.lock().await;
    let server = inner.server.lock().take();
    let result = match server {
        Some(server) => tokio::task::spawn_blocking(move || server.shutdown())
            .await
            .map_err(|e| NodeError::Internal(format!("stopping the host: {e}")))?
            .map_err(NodeError::from),
        None => Ok(()),
    };
    inner.dispatcher.shut();
    result.map(|()| None)
}
