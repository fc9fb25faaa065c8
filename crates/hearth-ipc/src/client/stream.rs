//! Client-side streams: documents of a streamed result, changes of a change
//! subscription (with transparent resume), events of a topic subscription.
//!
//! Owns: the change stream's exactly-once, in-order promise — it remembers
//! the next sequence number it owes and, after a `lagged` event, a local
//! buffer overflow or a lost connection, subscribes again from there,
//! skipping anything it already handed out. Must never: hand out a change
//! twice or out of order, or end silently (a failure to resume is returned
//! as an error).

use super::core::{ConnCore, EventMode};
use super::{AsyncClient, Collected, EventSub};
use crate::error::IpcError;
use crate::ops;
use crate::types::{Change, Document, Subscription, TopicEvent};
use hearth_proto::{ErrorCode, Frame, FrameKind, Operation};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Documents of a streamed `list`, handed out as chunks arrive.
///
/// Dropping it before the end cancels the request on the server.
///
/// ```no_run
/// # async fn demo(client: hearth_ipc::AsyncClient) -> Result<(), hearth_ipc::IpcError> {
/// use hearth_ipc::{ListOptions, Subscription};
/// let mut docs = client.list_stream(ListOptions::default()).await?;
/// while let Some(doc) = docs.next().await { println!("{}", doc?.id); }
/// let mut changes = client.subscribe(Subscription::prefix("user:")).await?;
/// let change = changes.next().await?;
/// let mut events = client.subscribe_topic("one-core:event:*").await?;
/// let event = events.next().await?;
/// # let _ = (change, event);
/// # Ok(()) }
/// ```
pub struct AsyncDocStream {
    core: Arc<ConnCore>,
    id: u64,
    op: Operation,
    rx: mpsc::UnboundedReceiver<Frame>,
    timeout: Duration,
    buf: VecDeque<Value>,
    /// When set ([`keep_raw`](Self::keep_raw)): the chunks' payloads as
    /// they came, unparsed, instead of items in `buf`.
    raw: Option<RawChunks>,
    summary: Option<Value>,
    failed: bool,
    /// A failure found by `take_routed`, for the next reader.
    error: Option<IpcError>,
}

/// A stream's chunks kept as the server sent them (JSON arrays of items),
/// and their bytes in all.
#[derive(Default)]
struct RawChunks {
    chunks: Vec<Vec<u8>>,
    bytes: usize,
}

impl std::fmt::Debug for AsyncDocStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDocStream")
            .field("op", &self.op)
            .field("done", &self.summary.is_some())
            .finish_non_exhaustive()
    }
}

impl AsyncDocStream {
    pub(crate) fn new(
        core: Arc<ConnCore>,
        id: u64,
        op: Operation,
        rx: mpsc::UnboundedReceiver<Frame>,
        timeout: Duration,
    ) -> AsyncDocStream {
        AsyncDocStream {
            core,
            id,
            op,
            rx,
            timeout,
            buf: VecDeque::new(),
            raw: None,
            summary: None,
            failed: false,
            error: None,
        }
    }

    /// The same stream, keeping its chunks unparsed for
    /// [`collected_now`](Self::collected_now) and
    /// [`collect_rest`](Self::collect_rest) (which then hand out no
    /// items): for a caller that writes the page out as JSON text again.
    pub(crate) fn keep_raw(mut self) -> AsyncDocStream {
        self.raw = Some(RawChunks::default());
        self
    }

    /// The next raw item; `Ok(None)` at the end.
    pub(crate) async fn next_raw(&mut self) -> Result<Option<Value>, IpcError> {
        loop {
            if let Some(item) = self.buf.pop_front() {
                return Ok(Some(item));
            }
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            if self.summary.is_some() || self.failed {
                return Ok(None);
            }
            let frame = match tokio::time::timeout(self.timeout, self.rx.recv()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    self.failed = true;
                    return Err(self.core.dead_error());
                }
                Err(_) => {
                    self.failed = true;
                    self.core.cancel(self.id, self.op);
                    return Err(IpcError::Timeout {
                        operation: format!("the next chunk of {}", self.op.name()),
                        timeout: self.timeout,
                    });
                }
            };
            self.take(frame)?;
        }
    }

    /// Takes one frame of the stream: its items, its end, or its failure.
    fn take(&mut self, frame: Frame) -> Result<(), IpcError> {
        let kind = frame.header.kind;
        let payload = match super::core::final_payload(frame) {
            Ok(payload) => payload,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        if kind == FrameKind::StreamChunk
            && let Some(raw) = &mut self.raw
        {
            // Checked when it is written out (`page_json`).
            raw.bytes += payload.len();
            raw.chunks.push(payload);
            return Ok(());
        }
        let value: Value = serde_json::from_slice(&payload).map_err(|e| {
            IpcError::Protocol(format!("a {} chunk is not JSON: {e}", self.op.name()))
        })?;
        match (kind, value) {
            (FrameKind::StreamChunk, Value::Array(items)) => self.buf.extend(items),
            (FrameKind::StreamEnd, summary) => self.summary = Some(summary),
            (kind, _) => {
                self.failed = true;
                return Err(IpcError::Protocol(format!(
                    "unexpected {kind} frame in a {} stream",
                    self.op.name()
                )));
            }
        }
        Ok(())
    }

    /// Takes every frame routed so far, without waiting; whether the
    /// stream is over (ended or failed; a failure is kept for
    /// [`collected_now`](Self::collected_now) or the next `next_raw`).
    pub(crate) fn take_routed(&mut self) -> bool {
        while self.summary.is_none() && !self.failed {
            match self.rx.try_recv() {
                Ok(frame) => {
                    if let Err(e) = self.take(frame) {
                        self.failed = true;
                        self.error = Some(e);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.failed = true;
                    self.error = Some(self.core.dead_error());
                }
            }
        }
        true
    }

    /// Whether what was read and not yet handed out is more than a
    /// calling thread should shape: more than `items` items, or more than
    /// `raw_bytes` bytes of unparsed chunks.
    pub(crate) fn buffered_over(&self, items: usize, raw_bytes: usize) -> bool {
        self.buf.len() > items || self.raw.as_ref().is_some_and(|raw| raw.bytes > raw_bytes)
    }

    /// Everything of a stream that is over (see [`take_routed`](Self::take_routed)).
    pub(crate) fn collected_now(mut self) -> Result<Collected, IpcError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let items = std::mem::take(&mut self.buf).into();
        Ok(self.collected(items))
    }

    /// Reads the stream to its end: every item, then the end's summary.
    pub(crate) async fn collect_rest(mut self) -> Result<Collected, IpcError> {
        let mut items = Vec::new();
        while let Some(item) = self.next_raw().await? {
            items.push(item);
        }
        Ok(self.collected(items))
    }

    /// `items` with what else the stream holds: its unparsed chunks and
    /// the end's summary.
    fn collected(&mut self, items: Vec<Value>) -> Collected {
        Collected {
            items,
            raw: self.raw.take().map(|raw| raw.chunks).unwrap_or_default(),
            end: self.summary.clone().unwrap_or(Value::Null),
        }
    }

    /// The next document; `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Result<Document, IpcError>> {
        match self.next_raw().await {
            Ok(Some(item)) => Some(ops::decode_doc(item)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// After the end: the cursor to continue from when the stream stopped
    /// at its limit.
    pub fn cursor(&self) -> Option<&str> {
        self.summary
            .as_ref()
            .and_then(|s| s.get("cursor"))
            .and_then(Value::as_str)
    }
}

impl Drop for AsyncDocStream {
    fn drop(&mut self) {
        if self.summary.is_none() && !self.failed {
            self.core.cancel(self.id, self.op);
        }
    }
}

/// Whether an error means "the server is not reachable right now" (worth
/// reconnecting for) rather than "the request is wrong".
fn retryable(e: &IpcError) -> bool {
    match e {
        IpcError::ChannelNotFound { .. }
        | IpcError::Disconnected { .. }
        | IpcError::Timeout { .. }
        | IpcError::ShutDown(_) => true,
        IpcError::Handshake(h) => h.code() == ErrorCode::Unavailable,
        IpcError::Remote(body) => body.code == ErrorCode::Unavailable,
        _ => false,
    }
}

enum Parsed {
    Change(Change),
    Lagged(u64),
    Other,
}

fn parse_change_event(frame: &Frame) -> Result<Parsed, IpcError> {
    let value: Value = serde_json::from_slice(&frame.payload)
        .map_err(|e| IpcError::Protocol(format!("a change event is not JSON: {e}")))?;
    if let Some(change) = value.get("change") {
        return Ok(Parsed::Change(ops::decode_change(change)?));
    }
    if let Some(lagged) = value.get("lagged") {
        return Ok(Parsed::Lagged(ops::u64_field(lagged, "resume_from")?));
    }
    Ok(Parsed::Other)
}

/// Changes of a change subscription, each exactly once, in order.
///
/// It resumes by itself: after a `lagged` event from the server, after its
/// own buffer overflowed, or after the connection was lost (reconnecting
/// for up to the client's resume timeout), it subscribes again from the
/// sequence number after the last change it handed out.
///
/// ```no_run
/// # async fn demo(client: hearth_ipc::AsyncClient) -> Result<(), hearth_ipc::IpcError> {
/// use hearth_ipc::{ListOptions, Subscription};
/// let mut docs = client.list_stream(ListOptions::default()).await?;
/// while let Some(doc) = docs.next().await { println!("{}", doc?.id); }
/// let mut changes = client.subscribe(Subscription::prefix("user:")).await?;
/// let change = changes.next().await?;
/// let mut events = client.subscribe_topic("one-core:event:*").await?;
/// let event = events.next().await?;
/// # let _ = (change, event);
/// # Ok(()) }
/// ```
pub struct AsyncChangeStream {
    client: AsyncClient,
    prefix: Option<String>,
    next_seq: u64,
    sub: Option<EventSub>,
    resumes: u64,
}

impl std::fmt::Debug for AsyncChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncChangeStream")
            .field("prefix", &self.prefix)
            .field("next_seq", &self.next_seq)
            .field("resumes", &self.resumes)
            .finish_non_exhaustive()
    }
}

impl AsyncChangeStream {
    pub(crate) async fn open(
        client: AsyncClient,
        spec: Subscription,
    ) -> Result<AsyncChangeStream, IpcError> {
        let prefix = spec.prefix_filter().map(str::to_string);
        let sub = client
            .open_events(
                Operation::Subscribe,
                &json!({"prefix": prefix, "from_seq": spec.start()}),
                EventMode::Change,
            )
            .await?;
        Ok(AsyncChangeStream {
            client,
            prefix,
            next_seq: sub.start.max(1),
            sub: Some(sub),
            resumes: 0,
        })
    }

    /// The sequence number of the next change this stream will hand out.
    pub fn position(&self) -> u64 {
        self.next_seq
    }

    /// How many times the stream subscribed again (after lag or reconnect).
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// Whether changes came faster than this stream was read and overflowed
    /// its buffer ([`ConnectOptions::event_buffer`](crate::ConnectOptions::event_buffer)).
    /// The stream still hands out what the buffer holds, then subscribes
    /// again from the last change it handed out: nothing is lost or repeated.
    pub fn overflowed(&self) -> bool {
        self.sub
            .as_ref()
            .is_some_and(|sub| sub.overflow.load(Ordering::Acquire) > 0)
    }

    /// The next change, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<Change, IpcError> {
        loop {
            if let Some(change) = self.next_until(None).await? {
                return Ok(change);
            }
        }
    }

    /// The next change, or `Ok(None)` if none arrives within `timeout`.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, IpcError> {
        self.next_until(Some(crate::types::deadline_after(Instant::now(), timeout)))
            .await
    }

    async fn resubscribe(&mut self) -> Result<(), IpcError> {
        let give_up = Instant::now() + self.client.resume_timeout();
        let mut backoff = Duration::from_millis(5);
        loop {
            let body = json!({"prefix": self.prefix, "from_seq": self.next_seq});
            match self
                .client
                .open_events(Operation::Subscribe, &body, EventMode::Change)
                .await
            {
                Ok(sub) => {
                    self.sub = Some(sub);
                    self.resumes += 1;
                    return Ok(());
                }
                Err(e) if retryable(&e) && Instant::now() + backoff < give_up => {
                    // Waiting for a server to come back: nothing signals
                    // that across processes, so retry with backoff.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn next_until(&mut self, deadline: Option<Instant>) -> Result<Option<Change>, IpcError> {
        loop {
            if self.sub.is_none() {
                self.resubscribe().await?;
            }
            let Some(sub) = self.sub.as_mut() else {
                continue;
            };
            let received = match deadline {
                Some(d) => match tokio::time::timeout_at(d, sub.rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                },
                None => sub.rx.recv().await,
            };
            match received {
                Some(frame) if frame.header.kind == FrameKind::Event => {
                    match parse_change_event(&frame)? {
                        Parsed::Change(change) => {
                            if change.seq >= self.next_seq {
                                self.next_seq = change.seq + 1;
                                return Ok(Some(change));
                            }
                        }
                        Parsed::Lagged(resume_from) => {
                            self.next_seq = self.next_seq.max(resume_from);
                            if let Some(mut sub) = self.sub.take() {
                                sub.ended = true;
                            }
                        }
                        Parsed::Other => {}
                    }
                }
                Some(frame) if frame.header.kind == FrameKind::Error => {
                    self.sub = None;
                    return Err(super::core::final_payload(frame)
                        .err()
                        .unwrap_or_else(|| IpcError::Protocol("an empty error frame".into())));
                }
                Some(_) => {}
                None => {
                    // Our buffer overflowed (the subscription is dropped and
                    // unsubscribed) or the connection died: resume.
                    self.sub = None;
                }
            }
        }
    }
}

/// Events of a topic subscription.
///
/// Events that did not fit the server's output queue or this stream's
/// buffer are counted in [`dropped`](AsyncTopicStream::dropped), never lost
/// silently. Dropping the stream unsubscribes.
///
/// ```no_run
/// # async fn demo(client: hearth_ipc::AsyncClient) -> Result<(), hearth_ipc::IpcError> {
/// use hearth_ipc::{ListOptions, Subscription};
/// let mut docs = client.list_stream(ListOptions::default()).await?;
/// while let Some(doc) = docs.next().await { println!("{}", doc?.id); }
/// let mut changes = client.subscribe(Subscription::prefix("user:")).await?;
/// let change = changes.next().await?;
/// let mut events = client.subscribe_topic("one-core:event:*").await?;
/// let event = events.next().await?;
/// # let _ = (change, event);
/// # Ok(()) }
/// ```
pub struct AsyncTopicStream {
    sub: EventSub,
    dropped: u64,
}

impl std::fmt::Debug for AsyncTopicStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTopicStream")
            .field("subscription", &self.sub.number)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl AsyncTopicStream {
    pub(crate) fn new(sub: EventSub) -> AsyncTopicStream {
        AsyncTopicStream { sub, dropped: 0 }
    }

    /// Events that were dropped because a buffer was full, so far.
    pub fn dropped(&self) -> u64 {
        self.dropped + self.sub.overflow.load(Ordering::Acquire)
    }

    /// The next event; an error once the connection is gone.
    pub async fn next(&mut self) -> Result<TopicEvent, IpcError> {
        loop {
            if let Some(event) = self.next_until(None).await? {
                return Ok(event);
            }
        }
    }

    /// The next event, or `Ok(None)` if none arrives within `timeout`.
    pub async fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<TopicEvent>, IpcError> {
        self.next_until(Some(crate::types::deadline_after(Instant::now(), timeout)))
            .await
    }

    async fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<TopicEvent>, IpcError> {
        loop {
            let received = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.sub.rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                },
                None => self.sub.rx.recv().await,
            };
            let Some(frame) = received else {
                return Err(self.sub_dead());
            };
            if frame.header.kind != FrameKind::Event {
                continue;
            }
            let mut value: Value = serde_json::from_slice(&frame.payload)
                .map_err(|e| IpcError::Protocol(format!("a topic event is not JSON: {e}")))?;
            if let Some(n) = value.get("dropped").and_then(Value::as_u64) {
                self.dropped += n;
                continue;
            }
            let topic = value
                .get("topic")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    IpcError::Protocol(format!("a topic event without a topic: {value}"))
                })?;
            let payload = value
                .as_object_mut()
                .and_then(|m| m.remove("payload"))
                .unwrap_or(Value::Null);
            return Ok(Some(TopicEvent { topic, payload }));
        }
    }

    fn sub_dead(&self) -> IpcError {
        self.sub.core.dead_error()
    }
}
