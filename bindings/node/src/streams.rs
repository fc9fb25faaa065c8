//! Streams JavaScript pulls from: changes of a watch, events of a topic
//! subscription, documents of a streamed list.
//!
//! Owns: handing items out in batches — each `next(max)` waits (off the
//! JavaScript thread) for the first item, then takes whatever else has
//! already arrived, up to `max`, so a busy stream costs one promise per
//! batch rather than per item — and ending a stream when it or its client
//! is closed. Must never: wait on the JavaScript thread, or hand out an
//! item twice (hearth-ipc's change stream owns exactly-once; this only
//! passes items on).

use crate::error::{NodeError, Outcome, outcome};
use crate::json;
use crate::rt::until_set;
use hearth_ipc::{AsyncChangeStream, AsyncDocStream, AsyncTopicStream};
use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A stream that hands out one batch as JSON text.
pub trait Pull: Send + 'static {
    /// Waits for the first item, then takes what else is already there,
    /// up to `max` items in all.
    fn pull(&mut self, max: usize) -> impl Future<Output = Result<String, NodeError>> + Send;
}

impl Pull for AsyncChangeStream {
    async fn pull(&mut self, max: usize) -> Result<String, NodeError> {
        let first = self.next().await?;
        let mut items = vec![json::change(first)];
        while items.len() < max {
            match self.next_timeout(Duration::ZERO).await {
                Ok(Some(change)) => items.push(json::change(change)),
                // Nothing more right now; an error shows on the next pull.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(json::text(&Value::Array(items)))
    }
}

impl Pull for AsyncTopicStream {
    async fn pull(&mut self, max: usize) -> Result<String, NodeError> {
        let first = self.next().await?;
        let mut items = vec![json::topic_event(first)];
        while items.len() < max {
            match self.next_timeout(Duration::ZERO).await {
                Ok(Some(event)) => items.push(json::topic_event(event)),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(json::text(
            &json!({"events": items, "dropped": self.dropped()}),
        ))
    }
}

impl Pull for AsyncDocStream {
    async fn pull(&mut self, max: usize) -> Result<String, NodeError> {
        let mut docs = Vec::new();
        let mut done = false;
        while docs.len() < max {
            match self.next().await {
                Some(doc) => docs.push(json::document(doc?)),
                None => {
                    done = true;
                    break;
                }
            }
        }
        Ok(json::text(
            &json!({"docs": docs, "done": done, "cursor": self.cursor()}),
        ))
    }
}

/// A stream and what ends it.
#[derive(Debug)]
pub struct StreamState<S> {
    stream: tokio::sync::Mutex<Option<S>>,
    closed: watch::Sender<bool>,
    client_closed: watch::Receiver<bool>,
}

impl<S: Pull> StreamState<S> {
    /// Wraps `stream`; it ends when closed or when the client closes.
    pub fn new(stream: S, client_closed: watch::Receiver<bool>) -> Arc<StreamState<S>> {
        Arc::new(StreamState {
            stream: tokio::sync::Mutex::new(Some(stream)),
            closed: watch::channel(false).0,
            client_closed,
        })
    }

    /// Ends the stream: a pending `next` resolves with `null`; the stream
    /// is dropped (unsubscribing on the server) now if nobody is pulling,
    /// else by the puller.
    fn close(&self) {
        self.closed.send_replace(true);
        if let Ok(mut guard) = self.stream.try_lock() {
            guard.take();
        }
    }

    /// One batch of at most `max` items, unless the stream or the client
    /// is closed first (then `Ok(None)`, and the stream is dropped).
    async fn next_batch(self: Arc<Self>, max: usize) -> Result<Option<String>, NodeError> {
        let mut guard = self.stream.lock().await;
        if *self.closed.borrow() || *self.client_closed.borrow() {
            guard.take();
            return Ok(None);
        }
        let Some(stream) = guard.as_mut() else {
            return Ok(None);
        };
        let own = self.closed.subscribe();
        let client = self.client_closed.clone();
        let result = tokio::select! {
            biased;
            () = until_set(own) => None,
            () = until_set(client) => None,
            r = stream.pull(max.max(1)) => Some(r),
        };
        match result {
            Some(r) => r.map(Some),
            None => {
                guard.take();
                Ok(None)
            }
        }
    }

    fn next_promise<'env>(
        self: &Arc<Self>,
        env: &'env Env,
        max: u32,
    ) -> napi::Result<PromiseRaw<'env, Outcome>> {
        let state = self.clone();
        env.spawn_future(async move { Ok(outcome(state.next_batch(max as usize).await)) })
    }
}

/// Changes of a watch, pulled in batches. Made by `NativeClient.watch`.
#[napi]
#[derive(Debug)]
pub struct NativeChangeStream {
    state: Arc<StreamState<AsyncChangeStream>>,
}

impl NativeChangeStream {
    /// Wraps an opened change stream.
    pub fn new(state: Arc<StreamState<AsyncChangeStream>>) -> NativeChangeStream {
        NativeChangeStream { state }
    }
}

#[napi]
impl NativeChangeStream {
    /// The next changes (at least one, at most `max`) as a JSON array of
    /// `{seq, id, kind, hlc, replica, data}`; `null` once closed.
    #[napi(ts_return_type = "Promise<string | null | ErrorInfo>")]
    pub fn next<'env>(&self, env: &'env Env, max: u32) -> napi::Result<PromiseRaw<'env, Outcome>> {
        self.state.next_promise(env, max)
    }

    /// Ends the stream (idempotent).
    #[napi]
    pub fn close(&self) {
        self.state.close();
    }

    /// The sequence number of the next change the stream will hand out —
    /// where a new watch picks up after this one ends — or `null` while a
    /// `next` is pulling (or once closed).
    #[napi]
    pub fn position(&self) -> Option<f64> {
        let guard = self.state.stream.try_lock().ok()?;
        // Sequence numbers stay far below 2^53, where f64 is exact.
        guard.as_ref().map(|stream| stream.position() as f64)
    }
}

/// Events of a topic subscription, pulled in batches. Made by
/// `NativeClient.topics`.
#[napi]
#[derive(Debug)]
pub struct NativeTopicStream {
    state: Arc<StreamState<AsyncTopicStream>>,
}

impl NativeTopicStream {
    /// Wraps an opened topic stream.
    pub fn new(state: Arc<StreamState<AsyncTopicStream>>) -> NativeTopicStream {
        NativeTopicStream { state }
    }
}

#[napi]
impl NativeTopicStream {
    /// The next events as JSON `{events: [{topic, payload}], dropped}`
    /// (`dropped`: events lost to full buffers so far); `null` once closed.
    #[napi(ts_return_type = "Promise<string | null | ErrorInfo>")]
    pub fn next<'env>(&self, env: &'env Env, max: u32) -> napi::Result<PromiseRaw<'env, Outcome>> {
        self.state.next_promise(env, max)
    }

    /// Ends the subscription (idempotent).
    #[napi]
    pub fn close(&self) {
        self.state.close();
    }
}

/// Documents of a streamed list, pulled in batches. Made by
/// `NativeClient.listStream`.
#[napi]
#[derive(Debug)]
pub struct NativeDocStream {
    state: Arc<StreamState<AsyncDocStream>>,
}

impl NativeDocStream {
    /// Wraps an opened list stream.
    pub fn new(state: Arc<StreamState<AsyncDocStream>>) -> NativeDocStream {
        NativeDocStream { state }
    }
}

#[napi]
impl NativeDocStream {
    /// The next documents as JSON `{docs: [{id, data}], done, cursor}`;
    /// with the last batch `done` is true and `cursor` is where a list
    /// that stopped at its limit continues. `null` once closed.
    #[napi(ts_return_type = "Promise<string | null | ErrorInfo>")]
    pub fn next<'env>(&self, env: &'env Env, max: u32) -> napi::Result<PromiseRaw<'env, Outcome>> {
        self.state.next_promise(env, max)
    }

    /// Stops the list (cancelled on the server) (idempotent).
    #[napi]
    pub fn close(&self) {
        self.state.close();
    }
}
