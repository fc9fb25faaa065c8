//! One server connection: the reading loop, request admission, cancel,
//! subscriptions, and closing.
//!
//! Owns: turning frames from one client into work (through the in-flight
//! table, the parser and the rate limiter; split messages are joined
//! within the server's bounds, and a connection that leaves one half sent
//! past them, or past the stall timeout, is ended — the loop keeps a
//! timer only while one is half joined), making sure every request gets
//! exactly one final frame, forwarding change and topic events to this
//! client (each built around JSON encoded once per change or event for
//! every subscription, so that a subscription costs a copy, not an
//! encoding), counting its subscriptions against the connection's, its
//! process's and the server's limits, and freeing everything (subscriptions, in-flight work, the
//! connection count) when the client goes. Must never: let this client's
//! slowness block the accept loop, the change pump or other connections,
//! or answer a request twice.

use super::slots::{Admission, Level, Levels, Places, StreamSlots};
use super::{Shared, SubSlot, Ticket, router};
use crate::ops::{self, Request, parse_request};
use crate::outq::{OutQueue, QueueError, run_writer};
use crate::policy::{InFlight, Refusal};
use crate::subs::Registration;
use crate::transport::{Link, LinkError, LinkInfo};
use crate::waiters::Waiters;
use hearth_proto::{ErrorBody, ErrorCode, Frame, FrameFlags, FrameHeader, FrameKind, Operation};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;

/// Topic events held for a subscription whose response is not queued yet.
const MAX_GATE_PENDING: usize = 1024;

/// A frame with a JSON payload.
pub(crate) fn json_frame(
    kind: FrameKind,
    op: Option<Operation>,
    id: u64,
    payload: Vec<u8>,
) -> Frame {
    Frame {
        header: FrameHeader {
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            kind,
            flags: FrameFlags::JSON,
            operation: op,
            request_id: id,
        },
        payload,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubKind {
    Change,
    Topic,
}

/// A live subscription of this connection; dropping it ends it.
pub(crate) struct SubHandle {
    kind: SubKind,
    shared: Arc<Shared>,
    hub_key: Option<u64>,
    task: Option<AbortHandle>,
    _guard: Option<hearth_bus::SubscriptionGuard>,
    /// Its place under the process's and the server's limits.
    _slot: SubSlot,
}

impl Drop for SubHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(key) = self.hub_key {
            self.shared.hub.remove(key);
        }
        match self.kind {
            SubKind::Change => self.shared.change_subs.fetch_sub(1, Ordering::SeqCst),
            SubKind::Topic => self.shared.topic_subs.fetch_sub(1, Ordering::SeqCst),
        };
        self.shared.bump();
    }
}

pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) out: OutQueue,
    pub(crate) info: LinkInfo,
    inflight: Mutex<InFlight<AbortHandle>>,
    /// Requests that left `inflight` and whose final frame is not queued
    /// yet (see [`Sending`]).
    sending: AtomicUsize,
    idle: Notify,
    /// Tasks in [`Conn::wait_idle`] now: only then is `idle` notified.
    idle_waiters: Waiters,
    subs: Mutex<HashMap<u64, SubHandle>>,
    next_sub: AtomicU64,
    /// Slots for this connection's streams on the blocking pool.
    streams: StreamSlots,
    /// The process's and the server's slots, taken after those.
    levels: Levels,
}

/// A finished request whose final frame is on its way to the output queue.
/// Shutdown waits until every one is dropped, so that closing the output
/// cannot overtake an answer that already won its request.
pub(crate) struct Sending<'a> {
    conn: &'a Conn,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        // SeqCst, like the increment in `finish`: `wait_idle` reads both
        // counts after enabling its notification.
        self.conn.sending.fetch_sub(1, Ordering::SeqCst);
        self.conn.notify_idle();
    }
}

impl Sending<'_> {
    /// The same guard, owning its connection, so that it can move to
    /// another thread with the frame it guards.
    pub(crate) fn keep(self, conn: &Arc<Conn>) -> KeptSending {
        debug_assert!(std::ptr::eq(self.conn, Arc::as_ptr(conn)));
        // The count taken in `finish` moves to the kept guard, which
        // gives it back when dropped.
        std::mem::forget(self);
        KeptSending { conn: conn.clone() }
    }
}

/// [`Sending`], owning its connection.
pub(crate) struct KeptSending {
    conn: Arc<Conn>,
}

impl Drop for KeptSending {
    fn drop(&mut self) {
        // SeqCst: as in `Sending`'s drop.
        self.conn.sending.fetch_sub(1, Ordering::SeqCst);
        self.conn.notify_idle();
    }
}

impl Conn {
    /// Queues a frame, waiting for room; a closed queue means the client is
    /// gone and the frame is moot.
    pub(crate) async fn send(&self, frame: Frame) -> bool {
        self.out.send(frame).await.is_ok()
    }

    /// Admits request `id` for an answer made on the calling thread before
    /// it reads anything more of the connection ([`answer_here`]): refused
    /// as [`InFlight::begin`] refuses (a duplicate of a request in flight,
    /// or the in-flight limit), else counted as sending until the guard
    /// drops (so that shutdown waits for its answer) but never entered in
    /// `inflight`: a cancel of it can only be read after its answer is
    /// made, and no other request is admitted meanwhile.
    fn admit_here(&self, id: u64) -> Result<Sending<'_>, Refusal> {
        self.inflight.lock().would_admit(id)?;
        // SeqCst, as in `finish`: `wait_idle` reads both counts.
        self.sending.fetch_add(1, Ordering::SeqCst);
        Ok(Sending { conn: self })
    }

    /// Counts request `id` and enters it in flight on the ring thread,
    /// before the blocking pool answers it ([`answer_inline`] with
    /// [`Admit::Begun`]) while the ring thread reads on: the error frame to
    /// send instead when it is refused (a duplicate of a request in
    /// flight, or the in-flight limit).
    pub(crate) fn begin_pooled(&self, id: u64, op: Operation) -> Result<(), Frame> {
        self.shared.count_request();
        self.inflight
            .lock()
            .begin(id)
            .map_err(|refusal| Frame::error(id, Some(op), &refusal.to_body(id)))
    }

    pub(crate) fn in_flight(&self, id: u64) -> bool {
        self.inflight.lock().contains(id)
    }

    /// Ends request `id`; `Some` if this call won: the caller sends the
    /// final frame and keeps the guard until it is queued.
    pub(crate) fn finish(&self, id: u64) -> Option<Sending<'_>> {
        // Counted as sending before it leaves `inflight`, so that
        // `wait_idle` always finds it in one of the two counts.
        self.sending.fetch_add(1, Ordering::SeqCst);
        let sending = Sending { conn: self };
        self.inflight.lock().finish(id).then_some(sending)
    }

    /// Sends the final answer to `id` unless it was cancelled meanwhile.
    pub(crate) async fn reply(&self, id: u64, op: Operation, result: Result<Vec<u8>, ErrorBody>) {
        self.last_frame(id, op, FrameKind::Response, result).await;
    }

    /// Sends one chunk of stream `id` unless it was cancelled meanwhile;
    /// false when the stream should stop (cancelled, or the connection is
    /// gone).
    pub(crate) async fn chunk(&self, id: u64, op: Operation, chunk: Vec<u8>) -> bool {
        self.in_flight(id)
            && self
                .send(json_frame(FrameKind::StreamChunk, Some(op), id, chunk))
                .await
    }

    /// Sends the end of stream `id` (its summary, or the error that ended
    /// it) unless it was cancelled meanwhile.
    pub(crate) async fn reply_end(&self, id: u64, op: Operation, end: Result<Vec<u8>, ErrorBody>) {
        self.last_frame(id, op, FrameKind::StreamEnd, end).await;
    }

    /// Ends request `id` with a `kind` frame of `result`'s payload, or an
    /// error frame, unless it was cancelled meanwhile.
    async fn last_frame(
        &self,
        id: u64,
        op: Operation,
        kind: FrameKind,
        result: Result<Vec<u8>, ErrorBody>,
    ) {
        if let Some(_sending) = self.finish(id) {
            let frame = match result {
                Ok(payload) => json_frame(kind, Some(op), id, payload),
                Err(body) => Frame::error(id, Some(op), &body),
            };
            self.send(frame).await;
        }
    }

    async fn error(&self, id: u64, op: Option<Operation>, body: ErrorBody) {
        self.send(Frame::error(id, op, &body)).await;
    }

    /// A place for a new stream among this connection's slots on the
    /// blocking pool (`slots.rs`), counted in `streams_waited` if it has to
    /// wait. Taken by the reading loop, so that streams get their slots in
    /// the order the client sent them.
    pub(crate) fn admit_stream(&self) -> Admission {
        let admission = self.streams.admit();
        if admission.waits() {
            // Relaxed: a statistic.
            self.shared.streams_waited.fetch_add(1, Ordering::Relaxed);
        }
        admission
    }

    /// A stream's places at every level, once its connection's slot
    /// (`admission`) comes: then its process's, then the server's, each
    /// wait counted (`streams_waited_process`, `streams_waited_server`).
    /// `None` if the connection ends first.
    pub(crate) async fn stream_places(&self, admission: Admission) -> Option<Places> {
        let shared = &self.shared;
        self.levels
            .places(admission, |level| {
                let counter = match level {
                    Level::Process => &shared.streams_waited_process,
                    Level::Server => &shared.streams_waited_server,
                };
                // SeqCst: pairs with `bump`'s load of its waiters.
                counter.fetch_add(1, Ordering::SeqCst);
                shared.bump();
            })
            .await
    }

    /// A number for a new subscription and its place under the process's
    /// and the server's limits, if this connection may have one more.
    pub(crate) fn reserve_sub(&self) -> Result<(u64, SubSlot), ErrorBody> {
        let max = self.shared.config.max_subscriptions;
        if self.subs.lock().len() >= max {
            return Err(ErrorBody::new(
                ErrorCode::RateLimited,
                format!(
                    "this connection already has {max} subscriptions, the limit; unsubscribe some first"
                ),
            ));
        }
        let slot = self
            .shared
            .reserve_subscription(self.info.peer.and_then(|p| p.pid))?;
        Ok((self.next_sub.fetch_add(1, Ordering::Relaxed) + 1, slot))
    }

    fn add_sub(&self, n: u64, handle: SubHandle) {
        match handle.kind {
            SubKind::Change => self.shared.change_subs.fetch_add(1, Ordering::SeqCst),
            SubKind::Topic => self.shared.topic_subs.fetch_add(1, Ordering::SeqCst),
        };
        self.shared.bump();
        self.subs.lock().insert(n, handle);
    }

    /// Ends subscription `n` of `kind`.
    pub(crate) fn unsubscribe(&self, kind: SubKind, n: u64) -> Result<Vec<u8>, ErrorBody> {
        let removed = {
            let mut subs = self.subs.lock();
            match subs.get(&n) {
                Some(h) if h.kind == kind => subs.remove(&n),
                _ => None,
            }
        };
        match removed {
            Some(handle) => {
                drop(handle);
                Ok(br#"{"removed":true}"#.to_vec())
            }
            None => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!(
                    "this connection has no {} subscription {n}",
                    if kind == SubKind::Change {
                        "change"
                    } else {
                        "topic"
                    }
                ),
            )),
        }
    }

    /// Wakes [`wait_idle`](Self::wait_idle) to look at the counts again,
    /// after one of them went down, if anyone waits there (a request's
    /// answer skips the notification's lock otherwise).
    fn notify_idle(&self) {
        // SeqCst pairs with the count in `wait_idle` (`Waiters::enter`): either this sees
        // the waiter, or the waiter, counted before it reads the counts,
        // sees the decrement that came before this load.
        if self.idle_waiters.any() {
            self.idle.notify_waiters();
        }
    }

    /// Waits until nothing is in flight, at most `limit`.
    async fn wait_idle(&self, limit: Duration) -> bool {
        // Counted (SeqCst) before it looks: see `notify_idle`.
        let _waiting = self.idle_waiters.enter();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inflight.lock().len() == 0 && self.sending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Frees everything this connection holds.
    fn close_all(&self) {
        let subs: Vec<SubHandle> = self.subs.lock().drain().map(|(_, h)| h).collect();
        drop(subs);
        for task in self.inflight.lock().drain() {
            task.abort();
        }
    }
}

enum End {
    /// The client closed its side.
    Eof,
    /// The server is shutting down.
    Shutdown,
    /// The writer failed: the client is gone or not reading.
    Writer(Result<Result<(), LinkError>, tokio::task::JoinError>),
    /// The client broke the protocol; an error frame is queued.
    Fatal,
    /// The link failed on reading.
    Broken,
}

/// Serves one connection until it ends.
pub(crate) async fn serve(shared: Arc<Shared>, link: Link, ticket: Ticket) {
    drop(serve_with(shared, link, ticket, None).await);
}

/// Called with the connection once it exists (the shared-memory transport
/// starts its ring thread here).
pub(crate) type OnStart = Box<dyn FnOnce(Arc<Conn>) + Send>;

/// Serves one connection until it ends and returns its ticket, so that the
/// caller decides when the connection stops being counted (after its own
/// threads are gone).
pub(crate) async fn serve_with(
    shared: Arc<Shared>,
    link: Link,
    ticket: Ticket,
    on_start: Option<OnStart>,
) -> Ticket {
    let Link {
        info,
        mut reader,
        writer,
    } = link;
    let _listed = shared.list_connection(ticket.id, &info);
    let (out, rx) = OutQueue::new(Some(shared.config.output_queue_bytes));
    let peer_max = info.negotiated.client_max_frame_bytes as usize;
    let mut writer_task = tokio::spawn(run_writer(writer, rx, peer_max, out.clone()));
    let conn = Arc::new(Conn {
        id: ticket.id,
        shared: shared.clone(),
        out,
        info,
        inflight: Mutex::new(InFlight::new(info.negotiated.max_in_flight as usize)),
        sending: AtomicUsize::new(0),
        idle: Notify::new(),
        idle_waiters: Waiters::new(),
        subs: Mutex::new(HashMap::new()),
        next_sub: AtomicU64::new(0),
        streams: StreamSlots::new(shared.config.max_running_streams),
        levels: shared.stream_levels(info.peer.and_then(|p| p.pid)),
    });
    if let Some(start) = on_start {
        start(conn.clone());
    }
    let mut shutdown = shared.shutdown_signal();
    // Over shared memory the ring thread joins split messages; this one
    // then only ever sees whole ones.
    let mut reassembler = shared.reassembler();
    let end = loop {
        // A timer only while a split message is half joined: when its
        // time is up (the stall timeout after its first frame), the
        // connection ends even if the client sends nothing more.
        let due = reassembler.deadline();
        let overdue = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Shutdown first: over shared memory it also stops the ring
            // thread, which ends the reader; seen as a broken link, that
            // would abort the requests in flight that shutdown lets finish.
            biased;
            () = super::until_down(&mut shutdown) => break End::Shutdown,
            result = &mut writer_task => break End::Writer(result),
            () = overdue => {
                if let Some(body) = reassembler.overdue(Instant::now()) {
                    shared.count_partial_disconnect();
                    conn.error(0, None, body).await;
                    break End::Fatal;
                }
            }
            frame = reader.read_frame() => match frame {
                Ok(Some(frame)) => match reassembler.push(frame, Instant::now) {
                    Ok(Some(message)) => on_frame(&conn, message).await,
                    Ok(None) => {}
                    Err(body) => {
                        shared.count_partial_disconnect();
                        conn.error(0, None, body).await;
                        break End::Fatal;
                    }
                },
                Ok(None) => break End::Eof,
                Err(LinkError::Frame(e)) if !e.is_fatal() => {
                    shared.count_request();
                    conn.error(e.request_id().unwrap_or(0), None, e.to_error_body()).await;
                }
                Err(LinkError::Frame(e)) => {
                    conn.error(0, None, e.to_error_body()).await;
                    break End::Fatal;
                }
                Err(e @ LinkError::Truncated { .. }) => {
                    conn.error(0, None, ErrorBody::new(ErrorCode::InvalidInput, e.to_string())).await;
                    break End::Fatal;
                }
                Err(e) if *shutdown.borrow() => {
                    // Shutdown stopped the ring thread, which ended the
                    // reader, and this poll saw that first: still a
                    // shutdown, whose requests in flight may finish.
                    tracing::debug!(conn = conn.id, error = %e, "reader ended by the shutdown");
                    break End::Shutdown;
                }
                Err(e) => {
                    tracing::debug!(conn = conn.id, error = %e, "connection read failed");
                    break End::Broken;
                }
            },
        }
    };
    // What its half-joined messages held goes back to the server's budget
    // now, not once the writer is done.
    drop(reassembler);
    let config = &shared.config;
    let writer_result = match end {
        End::Shutdown => {
            // Stop taking requests; let those in flight finish.
            if !conn.wait_idle(config.shutdown_timeout).await {
                tracing::warn!(
                    conn = conn.id,
                    "in-flight requests did not finish before the shutdown timeout"
                );
            }
            None
        }
        End::Eof => {
            // The client may still read answers to what it sent (a
            // half-closed socket); its subscriptions end now.
            drop(std::mem::take(&mut *conn.subs.lock()));
            conn.wait_idle(config.stall_timeout).await;
            None
        }
        End::Writer(result) => Some(result),
        End::Fatal | End::Broken => None,
    };
    conn.close_all();
    let writer_result = match writer_result {
        Some(r) => r,
        None => {
            conn.out.finish();
            writer_task.await
        }
    };
    match writer_result {
        Ok(Err(LinkError::Stalled { after })) => {
            shared.stalled.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(
                conn = conn.id,
                "disconnected a client that stopped reading its answers (no progress for {after:?}); its output queue was full"
            );
        }
        Ok(Err(e)) => tracing::debug!(conn = conn.id, error = %e, "connection closed"),
        Ok(Ok(())) | Err(_) => {}
    }
    conn.out.shut();
    ticket
}

async fn on_frame(conn: &Arc<Conn>, frame: Frame) {
    let id = frame.header.request_id;
    match frame.header.kind {
        FrameKind::Request => handle_request(conn, frame).await,
        FrameKind::Cancel => {
            let cancelled = conn.inflight.lock().cancel(id);
            if let Some(task) = cancelled {
                if let Some(task) = task {
                    task.abort();
                }
                conn.notify_idle();
                conn.error(
                    id,
                    frame.header.operation,
                    ErrorBody::new(
                        ErrorCode::Cancelled,
                        format!("request {id} was cancelled by the client"),
                    ),
                )
                .await;
            }
        }
        kind => {
            conn.error(
                id,
                frame.header.operation,
                ErrorBody::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "a client sends only request (1) and cancel (5) frames, not {kind} ({})",
                        kind.code()
                    ),
                ),
            )
            .await;
        }
    }
}

async fn handle_request(conn: &Arc<Conn>, frame: Frame) {
    let shared = &conn.shared;
    shared.count_request();
    let id = frame.header.request_id;
    let Some(op) = frame.header.operation else {
        conn.error(
            id,
            None,
            ErrorBody::new(
                ErrorCode::UnknownOperation,
                "a request must name an operation",
            ),
        )
        .await;
        return;
    };
    let admitted = conn.inflight.lock().begin(id);
    if let Err(refusal) = admitted {
        conn.error(id, Some(op), refusal.to_body(id)).await;
        return;
    }
    let request = match parse_request(op, &frame.payload, &shared.store_limits) {
        Ok(request) => request,
        Err(body) => {
            conn.reply(id, op, Err(body)).await;
            return;
        }
    };
    if let Some(limiter) = &shared.limiter {
        let checked = limiter.lock().check(request.limit_name(op), Instant::now());
        if let Err(body) = checked {
            conn.reply(id, op, Err(body)).await;
            return;
        }
    }
    if router::is_quick(&request) {
        let result = router::quick(conn, request);
        conn.reply(id, op, result).await;
        return;
    }
    // A write that waits for nothing but the journal (journal durability,
    // room in the applier's backlog now) is answered here too, as on a
    // shared-memory ring thread: as a task on the blocking pool it cost two
    // wake-ups more, ~130 µs a sequential put over the socket instead of
    // ~70 here. A write that would wait (fsync, back-pressure) runs as a
    // task, so that this loop never waits on a disk or on the applier.
    if answered_without_waiting(shared, op, frame.payload.len()) {
        let result = router::inline(conn, request);
        conn.reply(id, op, result).await;
        return;
    }
    if let Some((chunks, end)) = router::small_list(&shared.store, &request) {
        for chunk in chunks {
            if !conn.chunk(id, op, chunk).await {
                break;
            }
        }
        conn.reply_end(id, op, end).await;
        return;
    }
    // Its place among the connection's stream slots is taken here, in the
    // order the requests came, not when its task first runs.
    let slot = router::is_streamed(&request).then(|| conn.admit_stream());
    let task = tokio::spawn(router::run(conn.clone(), op, id, request, slot));
    let attached = conn.inflight.lock().attach(id, task.abort_handle());
    // Err: the request already finished (or was cancelled); nothing to keep.
    drop(attached);
}

/// Where a shared-memory connection answers a request ([`answered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// On the thread that reads the ring (its own, or the shared poller):
    /// it finishes in microseconds, waiting on nothing but the store's
    /// journal.
    Here,
    /// On the blocking pool, its answer sent from there: a write that waits
    /// for an `fdatasync`.
    OnPool,
    /// By the connection's async side, as over the socket.
    AsTask,
}

/// Where a shared-memory connection answers a request for `op`, `writes_sync`
/// if every write waits for an `fdatasync` ([`Durability::Fsync`]): reads
/// where the ring is read; writes there too, unless each waits for a sync —
/// answered there one after another, a write would hold up the
/// connection's other requests (on the shared poller, every busy
/// connection's) for hundreds of microseconds each, milliseconds on a busy
/// disk, and the store's group commit would find no other writer to share a
/// sync with — then on the blocking pool; everything else by the async side.
/// The socket's reading loop answers a write itself by the same rule
/// ([`handle_request`]).
///
/// [`Durability::Fsync`]: hearth_store::Durability::Fsync
pub(crate) fn answered(op: Operation, writes_sync: bool) -> Answered {
    match op {
        _ if is_point_read(op) => Answered::Here,
        Operation::Put | Operation::Patch | Operation::Delete if writes_sync => Answered::OnPool,
        Operation::Put | Operation::Patch | Operation::Delete => Answered::Here,
        _ => Answered::AsTask,
    }
}

/// `ping`, `get` and `get_with_metadata`: they read, and never wait.
fn is_point_read(op: Operation) -> bool {
    matches!(
        op,
        Operation::Ping | Operation::Get | Operation::GetWithMetadata
    )
}

/// Whether a thread that serves others too — the shared poller, the
/// socket's reading loop — answers a request for `op` of about `bytes`
/// itself now: one [`answered`] [`Answered::Here`] that will not wait, a
/// read, or a write while the store takes it at once (its backlog has
/// room, `Store::writes_would_wait`; a snapshot: another writer may fill
/// it the moment after).
pub(crate) fn answered_without_waiting(shared: &Shared, op: Operation, bytes: usize) -> bool {
    answered(op, shared.writes_sync()) == Answered::Here
        && (is_point_read(op) || !shared.store.writes_would_wait(bytes))
}

/// Answers a request that a shared-memory connection answers itself
/// ([`answered`]: [`Answered::Here`], or [`Answered::OnPool`] on a pool
/// thread) on the calling thread, with the same accounting as
/// [`handle_request`] (counted, admitted in flight, parsed, rate
/// limited). Returns the final frame to send, if any, with the guard to
/// drop once it is sent.
pub(crate) fn answer_inline(
    conn: &Conn,
    frame: Frame,
    admit: Admit,
) -> Option<(Frame, Option<Sending<'_>>)> {
    let parse = |op| parse_request(op, &frame.payload, &conn.shared.store_limits);
    answer_here(
        conn,
        &frame,
        admit,
        parse,
        FrameKind::Response,
        |_, _, request| router::inline(conn, request),
    )
}

/// How a request answered by [`answer_inline`] is admitted in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// It is answered before anything more of its connection is read (on
    /// the ring thread or the poller): counted, and checked against the
    /// in-flight table without being entered in it ([`Conn::admit_here`]).
    Here,
    /// It was counted and entered in flight already ([`Conn::begin_pooled`],
    /// on the ring thread, before it went to the blocking pool, which
    /// answers it while the ring thread reads on): a cancel may end it
    /// meanwhile, and its answer is then dropped.
    Begun,
}

/// The largest `limit` of a list, query or search that a shared-memory
/// ring thread answers itself (`answer_stream_inline`); a longer or
/// unlimited one streams from the blocking pool, beside the connection's
/// other requests.
const INLINE_STREAM_LIMIT: usize = 1000;

/// The parsed request in `frame` when it is a streamed one (list, query,
/// search) small enough for the ring thread to answer itself: its limit is
/// set and at most [`INLINE_STREAM_LIMIT`]. A request that does not parse
/// is answered there too (with its error). `None`: not for the ring thread.
pub(crate) fn streams_inline(conn: &Conn, frame: &Frame) -> Option<Result<Request, ErrorBody>> {
    let op = frame.header.operation?;
    if !matches!(op, Operation::List | Operation::Query | Operation::Search) {
        return None;
    }
    let parsed = parse_request(op, &frame.payload, &conn.shared.store_limits);
    let small = match &parsed {
        Ok(Request::List { limit, .. }) => limit.is_some_and(|l| l <= INLINE_STREAM_LIMIT),
        Ok(Request::Query { limit, .. } | Request::Search { limit, .. }) => {
            *limit <= INLINE_STREAM_LIMIT
        }
        Ok(_) => false,
        Err(_) => true,
    };
    small.then_some(parsed)
}

/// Answers a streamed request on the calling thread, `parsed` from `frame`
/// by [`streams_inline`], with the same accounting as [`handle_request`]:
/// every chunk frame through `emit` (false: stop), then returns the
/// stream-end frame (or the error) to send, with the guard to drop once it
/// is sent.
pub(crate) fn answer_stream_inline<'c>(
    conn: &'c Conn,
    frame: &Frame,
    parsed: Result<Request, ErrorBody>,
    mut emit: impl FnMut(Frame) -> bool,
) -> Option<(Frame, Option<Sending<'c>>)> {
    let parse = |_| parsed;
    answer_here(
        conn,
        frame,
        Admit::Here,
        parse,
        FrameKind::StreamEnd,
        |op, id, request| {
            let store = conn.shared.store.clone();
            let send = |chunk| emit(json_frame(FrameKind::StreamChunk, Some(op), id, chunk));
            router::produce_caught(store, request, op, send)
        },
    )
}

/// What both inline answers share with [`handle_request`]: the request in
/// `frame` counted, admitted in flight, parsed (by `parse`) and rate
/// limited; `run` makes the payload of the final frame (of kind `last`), or
/// its error.
fn answer_here<'c>(
    conn: &'c Conn,
    frame: &Frame,
    admit: Admit,
    parse: impl FnOnce(Operation) -> Result<Request, ErrorBody>,
    last: FrameKind,
    run: impl FnOnce(Operation, u64, Request) -> Result<Vec<u8>, ErrorBody>,
) -> Option<(Frame, Option<Sending<'c>>)> {
    let shared = &conn.shared;
    if admit == Admit::Here {
        shared.count_request();
    }
    let id = frame.header.request_id;
    let op = frame.header.operation?;
    let admitted_here = match admit {
        Admit::Here => match conn.admit_here(id) {
            Ok(sending) => Some(sending),
            Err(refusal) => return Some((Frame::error(id, Some(op), &refusal.to_body(id)), None)),
        },
        Admit::Begun => None,
    };
    let result = parse(op).and_then(|request| {
        if let Some(limiter) = &shared.limiter {
            limiter
                .lock()
                .check(request.limit_name(op), Instant::now())?;
        }
        run(op, id, request)
    });
    let sending = match admitted_here {
        Some(sending) => sending,
        // Cancelled meanwhile: the client was told so; no answer.
        None => conn.finish(id)?,
    };
    let frame = match result {
        Ok(payload) => json_frame(last, Some(op), id, payload),
        Err(body) => Frame::error(id, Some(op), &body),
    };
    Some((frame, Some(sending)))
}

/// Subscribes this connection to changes and starts its forwarder.
pub(crate) async fn subscribe_changes(
    conn: &Arc<Conn>,
    op: Operation,
    id: u64,
    prefix: Option<String>,
    from_seq: Option<u64>,
) {
    let (n, slot) = match conn.reserve_sub() {
        Ok(reserved) => reserved,
        Err(body) => return conn.reply(id, op, Err(body)).await,
    };
    let shared = &conn.shared;
    let last_seq = shared.store.last_seq();
    let registration = shared.hub.register(
        prefix,
        from_seq,
        last_seq,
        shared.config.subscription_buffer,
    );
    let Some(registration) = registration else {
        let body = ErrorBody::new(ErrorCode::Unavailable, "the server is shutting down");
        return conn.reply(id, op, Err(body)).await;
    };
    let start = registration.filter.start;
    let key = registration.key;
    let (go, gate) = oneshot::channel();
    let task = tokio::spawn(forward_changes(conn.clone(), n, id, registration, gate));
    conn.add_sub(
        n,
        SubHandle {
            kind: SubKind::Change,
            shared: shared.clone(),
            hub_key: Some(key),
            task: Some(task.abort_handle()),
            _guard: None,
            _slot: slot,
        },
    );
    if let Some(_sending) = conn.finish(id) {
        let payload = format!("{{\"subscription\":{n},\"from_seq\":{start}}}").into_bytes();
        conn.send(json_frame(FrameKind::Response, Some(op), id, payload))
            .await;
        let _ = go.send(());
    } else {
        let _ = conn.unsubscribe(SubKind::Change, n);
    }
}

/// Sends one subscription's changes: first those before `live_from` from
/// the change log, then the live ones, then `lagged` if it was cut off.
async fn forward_changes(
    conn: Arc<Conn>,
    n: u64,
    request_id: u64,
    mut reg: Registration,
    go: oneshot::Receiver<()>,
) {
    if go.await.is_err() {
        return;
    }
    let event = |payload: Vec<u8>| {
        json_frame(
            FrameKind::Event,
            Some(Operation::Subscribe),
            request_id,
            payload,
        )
    };
    let mut next = reg.filter.start;
    while next < reg.live_from {
        let store = conn.shared.store.clone();
        let after = next - 1;
        let page = tokio::task::spawn_blocking(move || store.changes_since(after, 256)).await;
        let changes = match page {
            Ok(Ok(changes)) => changes,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the change log for a subscriber failed; telling it to resume");
                conn.send(event(ops::lagged_event(n, next))).await;
                let _ = conn.unsubscribe(SubKind::Change, n);
                return;
            }
            Err(_) => return,
        };
        if changes.is_empty() {
            break;
        }
        for change in changes {
            if change.seq >= reg.live_from {
                next = reg.live_from;
                break;
            }
            next = change.seq + 1;
            if reg.filter.wants(change.seq, &change.id)
                && !conn.send(event(ops::change_event(n, &change))).await
            {
                return;
            }
        }
    }
    while let Some(change) = reg.rx.recv().await {
        debug_assert!(
            change.seq >= reg.live_from,
            "live changes start at live_from"
        );
        if !conn
            .send(event(ops::change_event_json(n, &change.json)))
            .await
        {
            return;
        }
    }
    let resume_from = reg.lagged_at.load(Ordering::Acquire);
    if resume_from > 0 {
        conn.send(event(ops::lagged_event(n, resume_from))).await;
        // Removing our own handle aborts this task at its next await; there
        // is none left.
        let _ = conn.unsubscribe(SubKind::Change, n);
    }
}

/// Holds a topic subscription's events until its response is queued, then
/// passes them to the output queue without ever waiting; what does not fit
/// is counted and reported with a `dropped` event.
struct TopicGate {
    state: Mutex<GateState>,
    out: OutQueue,
    n: u64,
    request_id: u64,
}

#[derive(Default)]
struct GateState {
    open: bool,
    pending: Vec<Frame>,
    dropped: u64,
}

impl TopicGate {
    fn frame(&self, payload: Vec<u8>) -> Frame {
        json_frame(
            FrameKind::Event,
            Some(Operation::SubscribeTopic),
            self.request_id,
            payload,
        )
    }

    /// Queues `event` for this subscription: its payload's JSON is the
    /// emit's, encoded once for every subscription, and only copied here.
    fn deliver(&self, event: &hearth_bus::Emitted<'_>) {
        let frame = self.frame(ops::topic_event(
            self.n,
            event.topic(),
            &event.payload_json(),
        ));
        let mut state = self.state.lock();
        if !state.open {
            if state.pending.len() < MAX_GATE_PENDING {
                state.pending.push(frame);
            } else {
                state.dropped += 1;
            }
            return;
        }
        self.push(&mut state, frame);
    }

    fn push(&self, state: &mut GateState, frame: Frame) {
        if state.dropped > 0 {
            match self
                .out
                .try_send(self.frame(ops::dropped_event(self.n, state.dropped)))
            {
                Ok(()) => state.dropped = 0,
                Err(QueueError::Full) => {
                    state.dropped += 1;
                    return;
                }
                Err(QueueError::Closed) => return,
            }
        }
        if let Err(QueueError::Full) = self.out.try_send(frame) {
            state.dropped += 1;
        }
    }

    fn open(&self) {
        let mut state = self.state.lock();
        state.open = true;
        for frame in std::mem::take(&mut state.pending) {
            self.push(&mut state, frame);
        }
    }
}

/// Subscribes this connection to topics matching `pattern`.
pub(crate) async fn subscribe_topic(conn: &Arc<Conn>, op: Operation, id: u64, pattern: String) {
    let (n, slot) = match conn.reserve_sub() {
        Ok(reserved) => reserved,
        Err(body) => return conn.reply(id, op, Err(body)).await,
    };
    let gate = Arc::new(TopicGate {
        state: Mutex::new(GateState::default()),
        out: conn.out.clone(),
        n,
        request_id: id,
    });
    let listener = {
        let gate = gate.clone();
        move |event: &hearth_bus::Emitted<'_>| gate.deliver(event)
    };
    let guard = match conn.shared.bus.on_emitted(&pattern, listener) {
        Ok(sub) => sub.into_guard(),
        Err(e) => {
            return conn
                .reply(
                    id,
                    op,
                    Err(ErrorBody::new(ErrorCode::InvalidInput, e.to_string())),
                )
                .await;
        }
    };
    conn.add_sub(
        n,
        SubHandle {
            kind: SubKind::Topic,
            shared: conn.shared.clone(),
            hub_key: None,
            task: None,
            _guard: Some(guard),
            _slot: slot,
        },
    );
    if let Some(_sending) = conn.finish(id) {
        let payload = format!("{{\"subscription\":{n}}}").into_bytes();
        conn.send(json_frame(FrameKind::Response, Some(op), id, payload))
            .await;
        gate.open();
    } else {
        let _ = conn.unsubscribe(SubKind::Topic, n);
    }
}

#[cfg(test)]
mod tests {
    use super::{Answered, answered};
    use hearth_proto::Operation;

    #[test]
    fn reads_are_answered_where_the_ring_is_read_whatever_the_durability() {
        for op in [Operation::Ping, Operation::Get, Operation::GetWithMetadata] {
            assert_eq!(answered(op, false), Answered::Here, "{op:?}");
            assert_eq!(answered(op, true), Answered::Here, "{op:?}");
        }
    }

    #[test]
    fn writes_are_answered_where_the_ring_is_read_unless_each_waits_for_a_sync() {
        for op in [Operation::Put, Operation::Patch, Operation::Delete] {
            assert_eq!(answered(op, false), Answered::Here, "{op:?}");
            assert_eq!(
                answered(op, true),
                Answered::OnPool,
                "{op:?} waits for an fdatasync"
            );
        }
    }

    #[test]
    fn scans_calls_and_batches_are_answered_by_the_async_side() {
        for op in [Operation::List, Operation::Batch, Operation::Call] {
            assert_eq!(answered(op, false), Answered::AsTask, "{op:?}");
            assert_eq!(answered(op, true), Answered::AsTask, "{op:?}");
        }
    }
}
