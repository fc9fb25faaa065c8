//! One client connection: request ids, the table of pending requests, the
//! reader and writer tasks, and how the connection dies.
//!
//! Owns: matching every frame from the server to the request (or
//! subscription) that waits for it, the in-flight permits that keep this
//! client within the negotiated `max_in_flight`, and failing every waiter
//! with `Disconnected` the moment the link ends. Must never: block the
//! reader task on a slow consumer (events go through bounded buffers that
//! report overflow instead), or leave a waiter hanging after the link died.

use super::permits::{Held, Permit, Permits};
use super::shm::{ClientShm, SyncSlot};
use crate::client::{Connected, Connector};
use crate::error::IpcError;
use crate::message::Reassembler;
use crate::outq::{OutQueue, run_writer};
use crate::transport::shm::ShmSide;
use crate::transport::socket::DirectWrite;
use crate::transport::{FrameWriter, Link, LinkInfo};
use crate::types::{ConnectOptions, LimitSource, request_limit, server_message_limit};
use hearth_proto::{
    ClientHello, Frame, FrameFlags, FrameHeader, FrameKind, Negotiated, Operation,
    decode_error_payload,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// The largest message (joined from `MORE` frames) a client accepts from
/// a server whose message limit is no larger.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The most a client accepts in one answer whatever the server's hello
/// says: a limit of the client's own (docs/protocol.md: a receiver checks
/// lengths against its own limits), so that a hello claiming, say,
/// `u64::MAX` cannot make it join answers without bound. Far above any
/// document (16 MiB by default) or message limit a desktop app sets.
const ANSWER_CEILING: usize = 1 << 30;

/// The largest answer (joined from `MORE` frames) a client accepts on a
/// connection: 64 MiB, or the server's message limit when its hello said
/// a larger one (up to [`ANSWER_CEILING`]), so that what a client may send
/// (an echoed call, a document as large as the server takes) can also
/// come back.
pub(crate) fn answer_limit(negotiated: &Negotiated) -> usize {
    let server = server_message_limit(negotiated.server_max_message_bytes).unwrap_or(0);
    MAX_MESSAGE_BYTES.max(server.min(ANSWER_CEILING))
}

/// Refuses a request longer than one message may be (`max`, whose limit
/// `source` says: the server's `max_message_bytes` from its hello, 32 MiB
/// against a protocol-1 server, or the client's own lower
/// `ConnectOptions::max_request_bytes`; docs/protocol.md "Limits"),
/// before any of it is sent ([`IpcError::TooLarge`]): a server closes the
/// connection of a client that sends a longer one, while a refusal here
/// lets the connection, its other calls and its subscriptions go on.
fn within_limit(frame: &Frame, max: usize, source: LimitSource) -> Result<(), IpcError> {
    if frame.payload.len() <= max {
        return Ok(());
    }
    Err(IpcError::TooLarge {
        operation: frame
            .header
            .operation
            .map_or("request", |op| op.name())
            .to_string(),
        bytes: frame.payload.len(),
        max,
        limit: source,
    })
}

/// How a subscription's buffer overflow is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventMode {
    /// Change events: the subscription is cut off and resubscribed from the
    /// last sequence number seen.
    Change,
    /// Topic events: counted as dropped, the subscription goes on.
    Topic,
}

pub(crate) enum Pending {
    /// A blocking call on a shared-memory connection: its thread waits on
    /// the slot (and may read the ring itself).
    Sync {
        slot: Arc<SyncSlot>,
        _permit: Permit,
    },
    Unary {
        tx: oneshot::Sender<Frame>,
        _permit: Permit,
    },
    Stream {
        tx: mpsc::UnboundedSender<Frame>,
        _permit: Permit,
    },
    Events {
        tx: mpsc::Sender<Frame>,
        /// Held until the subscribe response arrives.
        _permit: Option<Permit>,
        mode: EventMode,
        overflow: Arc<AtomicU64>,
    },
}

impl Pending {
    /// Whether someone other than a blocking caller waits for it (so the
    /// background reader must read for it on shared memory).
    fn is_async(&self) -> bool {
        !matches!(self, Pending::Sync { .. })
    }
}

/// Hashes the request ids this client numbered itself (sequential, never
/// chosen by a peer): one multiplication spreads them over the table,
/// where SipHash cost a good share of a shared-memory round trip.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); any other input is
        // folded in a byte at a time.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: an odd constant near 2^64 / φ moves the low
        // bits of sequential ids into the high bits the table also uses.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The pending requests by id, counting those that are not blocking calls.
#[derive(Default)]
struct Table {
    map: HashMap<u64, Pending, BuildHasherDefault<IdHasher>>,
    async_entries: usize,
}

impl Table {
    fn insert(&mut self, id: u64, pending: Pending) {
        if pending.is_async() {
            self.async_entries += 1;
        }
        if let Some(old) = self.map.insert(id, pending)
            && old.is_async()
        {
            self.async_entries -= 1;
        }
    }

    fn remove(&mut self, id: &u64) -> Option<Pending> {
        let removed = self.map.remove(id);
        if removed.as_ref().is_some_and(Pending::is_async) {
            self.async_entries -= 1;
        }
        removed
    }

    fn get(&self, id: &u64) -> Option<&Pending> {
        self.map.get(id)
    }

    fn drain(&mut self) -> Vec<Pending> {
        self.async_entries = 0;
        self.map.drain().map(|(_, p)| p).collect()
    }
}

/// A locked table that publishes its count of async entries when released.
struct TableGuard<'a> {
    table: parking_lot::MutexGuard<'a, Table>,
    count: &'a AtomicUsize,
}

impl std::ops::Deref for TableGuard<'_> {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.table
    }
}

impl std::ops::DerefMut for TableGuard<'_> {
    fn deref_mut(&mut self) -> &mut Table {
        &mut self.table
    }
}

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        // Release pairs with the Acquire load in `has_async_interest`.
        self.count
            .store(self.table.async_entries, Ordering::Release);
    }
}

pub(crate) struct ConnCore {
    out: OutQueue,
    pending: Mutex<Table>,
    async_interest: AtomicUsize,
    /// The shared-memory state, when the connection moved there.
    pub(crate) shm: Option<Arc<ClientShm>>,
    permits: Arc<Permits>,
    dead: Mutex<Option<String>>,
    /// Set (under `dead`'s lock) once `dead` holds a reason: the hot loops
    /// ask `is_dead` every round, an atomic load instead of a lock.
    dead_flag: AtomicBool,
    server_error: Mutex<Option<String>>,
    next_id: AtomicU64,
    pub(crate) info: LinkInfo,
    pub(crate) event_buffer: usize,
    /// The longest request this connection sends ([`request_limit`] of
    /// `ConnectOptions::max_request_bytes` and the server's hello).
    pub(crate) max_request: usize,
    /// Whose limit `max_request` is.
    max_request_source: LimitSource,
}

impl ConnCore {
    /// Connects with `connector` and starts the connection's tasks on the
    /// current runtime.
    pub(crate) async fn open(connector: &Connector) -> Result<Arc<ConnCore>, IpcError> {
        let options = connector.options();
        let hello = ClientHello {
            max_frame_bytes: options.max_frame_bytes,
            max_in_flight: options.max_in_flight,
            ..ClientHello::default()
        };
        let hello = if options.transport.resolve().allows_shared_memory() {
            hello
        } else {
            ClientHello {
                capabilities: hearth_proto::Capabilities::from_bits(
                    hello.capabilities.bits() & !hearth_proto::Capabilities::SHARED_MEMORY.bits(),
                ),
                ..hello
            }
        };
        let core = match connector.connect(hello).await? {
            Connected::Link(link, direct) => ConnCore::start(link, direct, options),
            Connected::Shm(side) => ConnCore::start_shm(side, options)?,
        };
        Ok(core)
    }

    /// Refuses a request longer than this connection sends (the server's
    /// limit, or the client's own lower one), before any of it is sent.
    pub(crate) fn within_limit(&self, frame: &Frame) -> Result<(), IpcError> {
        within_limit(frame, self.max_request, self.max_request_source)
    }

    fn new(
        info: LinkInfo,
        out: OutQueue,
        options: &ConnectOptions,
        shm: Option<Arc<ClientShm>>,
    ) -> ConnCore {
        let (max_request, max_request_source) = request_limit(
            options.max_request_bytes,
            info.negotiated.server_max_message_bytes,
        );
        ConnCore {
            out,
            pending: Mutex::new(Table::default()),
            async_interest: AtomicUsize::new(0),
            shm,
            permits: Permits::new(info.negotiated.max_in_flight.max(1) as usize),
            dead: Mutex::new(None),
            dead_flag: AtomicBool::new(false),
            server_error: Mutex::new(None),
            next_id: AtomicU64::new(1),
            info,
            event_buffer: options.event_buffer,
            max_request,
            max_request_source,
        }
    }

    /// Starts the writer task that drains the output queue onto `writer`.
    fn spawn_writer(
        core: &Arc<ConnCore>,
        writer: Box<dyn FrameWriter>,
        rx: tokio::sync::mpsc::UnboundedReceiver<crate::outq::Out>,
        max_frame: usize,
    ) {
        let out = core.out.clone();
        let writer_core = Arc::downgrade(core);
        tokio::spawn(async move {
            let result = run_writer(writer, rx, max_frame, out).await;
            if let (Err(e), Some(core)) = (result, writer_core.upgrade()) {
                core.die(format!("writing to the server failed: {e}"));
            }
        });
    }

    /// A connection over shared memory: the writer task for async sends,
    /// the background reader and the socket watcher.
    fn start_shm(side: ShmSide, options: &ConnectOptions) -> Result<Arc<ConnCore>, IpcError> {
        let ShmSide {
            stream,
            segment,
            info,
            ..
        } = side;
        let shm = Arc::new(ClientShm::new(&segment, answer_limit(&info.negotiated)));
        let (out, rx) = OutQueue::new(None);
        let core = Arc::new(ConnCore::new(info, out, options, Some(shm.clone())));
        let server_max = (info.negotiated.server_max_frame_bytes as usize).min(shm.max_frame());
        ConnCore::spawn_writer(&core, Box::new(shm.writer()), rx, server_max);
        if let Err(e) = shm.start(&core, stream) {
            core.die(e.to_string());
            return Err(e);
        }
        Ok(core)
    }

    fn start(link: Link, direct: Option<DirectWrite>, options: &ConnectOptions) -> Arc<ConnCore> {
        let Link {
            info,
            mut reader,
            writer,
        } = link;
        let (out, rx) = OutQueue::new(None);
        let server_max = info.negotiated.server_max_frame_bytes as usize;
        let out = match direct {
            Some(direct) => out.with_direct(direct, server_max),
            None => out,
        };
        let core = Arc::new(ConnCore::new(info, out, options, None));
        ConnCore::spawn_writer(&core, writer, rx, server_max);
        let reader_core = core.clone();
        tokio::spawn(async move {
            let mut reassembler = Reassembler::new(answer_limit(&reader_core.info.negotiated));
            let reason = loop {
                match reader.read_frame().await {
                    Ok(Some(frame)) => match reassembler.push(frame, Instant::now) {
                        Ok(Some(message)) => reader_core.route(message),
                        Ok(None) => {}
                        Err(body) => break body.message,
                    },
                    Ok(None) => break "the server closed the connection".to_string(),
                    Err(e) => break format!("reading from the server failed: {e}"),
                }
                if reader_core.is_dead() {
                    return;
                }
            };
            reader_core.die(reason);
        });
        core
    }

    /// A fresh request id on this connection.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_dead(&self) -> bool {
        // Acquire pairs with the Release store in `die`: whoever sees the
        // flag also sees the reason and the work `die` did before it.
        self.dead_flag.load(Ordering::Acquire)
    }

    /// The error for a waiter whose connection died.
    pub(crate) fn dead_error(&self) -> IpcError {
        let reason = self
            .dead
            .lock()
            .clone()
            .unwrap_or_else(|| "the connection was closed".into());
        IpcError::Disconnected { reason }
    }

    /// Ends the connection: every waiter is woken with `Disconnected`.
    pub(crate) fn die(&self, reason: String) {
        {
            let mut dead = self.dead.lock();
            if dead.is_some() {
                return;
            }
            let server_said = self.server_error.lock().clone();
            *dead = Some(match server_said {
                Some(said) => format!("{reason} (the server said: {said})"),
                None => reason,
            });
            // Release pairs with the Acquire load in `is_dead`.
            self.dead_flag.store(true, Ordering::Release);
        }
        self.permits.close();
        let pending: Vec<Pending> = self.table().drain();
        for p in &pending {
            if let Pending::Sync { slot, .. } = p {
                slot.wake();
            }
        }
        drop(pending);
        self.out.finish();
        if let Some(shm) = &self.shm {
            shm.shutdown();
        }
    }

    /// The pending table, locked; its async count is published on release.
    fn table(&self) -> TableGuard<'_> {
        TableGuard {
            table: self.pending.lock(),
            count: &self.async_interest,
        }
    }

    /// Whether async requests, streams or subscriptions wait for frames.
    pub(crate) fn has_async_interest(&self) -> bool {
        // Acquire pairs with the Release store in `TableGuard::drop`.
        self.async_interest.load(Ordering::Acquire) > 0
    }

    /// Closes the connection from this side.
    pub(crate) fn close(&self) {
        self.die("the client closed the connection".into());
    }

    /// Whether frames sent through the connection's queue (cancels,
    /// unsubscribes, async calls) have all reached the link: a blocking
    /// call may then write its request directly without overtaking them.
    pub(crate) fn queue_drained(&self) -> bool {
        self.out.is_drained()
    }

    /// An in-flight permit if one is free now.
    pub(crate) fn try_permit(&self) -> Option<Permit> {
        self.permits.try_take()
    }

    /// An in-flight permit if one is free now, for a blocking call that
    /// gives it back before it returns unless its pending entry keeps it
    /// ([`keep_permit`](Self::keep_permit)).
    pub(crate) fn try_permit_here(&self) -> Option<Held<'_>> {
        self.permits.try_take_here()
    }

    /// `held`, one of this connection's permits, kept by a pending entry.
    pub(crate) fn keep_permit(&self, held: Held<'_>) -> Permit {
        held.keep(&self.permits)
    }

    /// Waits for an in-flight permit.
    pub(crate) async fn permit(&self) -> Result<Permit, IpcError> {
        self.permits.take().await.ok_or_else(|| self.dead_error())
    }

    pub(crate) fn register(&self, id: u64, pending: Pending) {
        let wakes_reader = pending.is_async();
        self.table().insert(id, pending);
        if wakes_reader && let Some(shm) = &self.shm {
            shm.interest_up();
        }
    }

    /// [`register`](Self::register) for a call whose own thread reads the
    /// shared-memory ring for it: the background reader is not woken (the
    /// caller tells it, `ClientShm::interest_up`, if the call goes on
    /// without the thread).
    pub(crate) fn register_here(&self, id: u64, pending: Pending) {
        self.table().insert(id, pending);
    }

    /// Turns a blocking call's pending entry into an async one: its
    /// caller stops waiting on its own thread, the background reader reads
    /// for it. `None` when the entry is gone: `route` already filled the
    /// slot (under the same lock) or the connection died.
    pub(crate) fn to_async(&self, id: u64) -> Option<oneshot::Receiver<Frame>> {
        let rx = {
            let mut table = self.table();
            match table.remove(&id)? {
                Pending::Sync { _permit, .. } => {
                    let (tx, rx) = oneshot::channel();
                    table.insert(id, Pending::Unary { tx, _permit });
                    rx
                }
                other => {
                    // Not a blocking call's entry: leave it as it was.
                    table.insert(id, other);
                    return None;
                }
            }
        };
        if let Some(shm) = &self.shm {
            shm.interest_up();
        }
        Some(rx)
    }

    pub(crate) fn unregister(&self, id: u64) {
        let removed = self.table().remove(&id);
        drop(removed);
    }

    /// Queues a frame for the server; one too long for a message is
    /// refused ([`within_limit`]).
    pub(crate) fn send(&self, frame: Frame) -> Result<(), IpcError> {
        self.within_limit(&frame)?;
        if self.is_dead() {
            return Err(self.dead_error());
        }
        self.out.try_send(frame).map_err(|_| self.dead_error())
    }

    /// Whether [`send_now`](Self::send_now) may write on the calling
    /// thread (a socket connection).
    pub(crate) fn writes_directly(&self) -> bool {
        self.out.writes_directly()
    }

    /// Sends a frame: written onto the socket by the calling thread when
    /// nothing queued waits (no hop to the writer task), else queued.
    pub(crate) fn send_now(&self, frame: Frame) -> Result<(), IpcError> {
        self.within_limit(&frame)?;
        if self.is_dead() {
            return Err(self.dead_error());
        }
        self.out.try_send_now(frame).map_err(|_| self.dead_error())
    }

    /// Gives up on request `id`: forgets it and asks the server to stop.
    pub(crate) fn cancel(&self, id: u64, op: Operation) {
        self.unregister(id);
        let frame = Frame {
            header: FrameHeader {
                payload_len: 0,
                kind: FrameKind::Cancel,
                flags: FrameFlags::NONE,
                operation: Some(op),
                request_id: id,
            },
            payload: Vec::new(),
        };
        let _ = self.send(frame);
    }

    /// Hands a frame from the server to whoever waits for it.
    pub(super) fn route(&self, frame: Frame) {
        let id = frame.header.request_id;
        let kind = frame.header.kind;
        let mut pending = self.table();
        match kind {
            FrameKind::Response | FrameKind::Error | FrameKind::StreamEnd => {
                let entry = pending.remove(&id);
                match entry {
                    // Filled under the lock: a caller whose budget ran out
                    // turns its entry into an async one under it, and an
                    // entry it finds gone means the slot holds the answer
                    // (`to_async`).
                    Some(Pending::Sync { slot, .. }) => slot.fill(frame),
                    // Over shared memory an async waiter is woken once the
                    // table's lock is released: the router is a thread of
                    // its own, whose wake-up of a runtime worker parked in
                    // epoll (an eventfd write) costs it tens of microseconds
                    // on a VM, and the woken task's next call takes this
                    // lock to begin — held, it would wait for it, and be
                    // woken once more (docs/performance-log.md: one async
                    // client's sequential gets over shared memory went from
                    // 25–30k to 30–43k a second in five alternated sets).
                    // The entry is out of the table already, and the holder
                    // of the ring's reading side routes alone, so a stream's
                    // chunks still come before its end. On the socket the
                    // router is a task of the waiter's runtime, and
                    // releasing first measured no better: as it was.
                    Some(Pending::Unary { tx, _permit }) => {
                        if self.shm.is_some() {
                            drop(pending);
                        }
                        let _ = tx.send(frame);
                    }
                    Some(Pending::Stream { tx, _permit }) => {
                        if self.shm.is_some() {
                            drop(pending);
                        }
                        let _ = tx.send(frame);
                    }
                    Some(Pending::Events {
                        tx, mode, overflow, ..
                    }) => {
                        let ok = kind == FrameKind::Response;
                        // A fresh buffer always has room for its first frame.
                        let _ = tx.try_send(frame);
                        if ok {
                            pending.insert(
                                id,
                                Pending::Events {
                                    tx,
                                    _permit: None,
                                    mode,
                                    overflow,
                                },
                            );
                        }
                    }
                    None => {
                        if id == 0 && kind == FrameKind::Error {
                            let said = decode_error_payload(&frame.payload)
                                .map(|b| b.to_string())
                                .unwrap_or_else(|e| e.to_string());
                            *self.server_error.lock() = Some(said);
                        }
                    }
                }
            }
            FrameKind::StreamChunk => {
                if let Some(Pending::Stream { tx, .. }) = pending.get(&id) {
                    let _ = tx.send(frame);
                }
            }
            FrameKind::Event => {
                let full = match pending.get(&id) {
                    Some(Pending::Events {
                        tx, mode, overflow, ..
                    }) => match tx.try_send(frame) {
                        Ok(()) => false,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            overflow.fetch_add(1, Ordering::AcqRel);
                            *mode == EventMode::Change
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => true,
                    },
                    _ => false,
                };
                if full {
                    // Closing the buffer tells the change stream to
                    // resubscribe from the last change it handed out.
                    pending.remove(&id);
                }
            }
            FrameKind::Request | FrameKind::Cancel => {}
        }
    }
}

/// The payload of a final frame, or the server's error.
pub(crate) fn final_payload(frame: Frame) -> Result<Vec<u8>, IpcError> {
    match frame.header.kind {
        FrameKind::Error => match decode_error_payload(&frame.payload) {
            Ok(body) => Err(IpcError::Remote(body)),
            Err(e) => Err(IpcError::Protocol(e.to_string())),
        },
        _ => Ok(frame.payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(server_max_message_bytes: Option<u64>) -> Negotiated {
        let hello = ClientHello::default();
        let mut agreed =
            hearth_proto::negotiate(&hello, &hearth_proto::ServerLimits::default()).unwrap();
        agreed.server_max_message_bytes = server_max_message_bytes;
        agreed
    }

    #[test]
    fn answers_up_to_the_servers_message_limit_are_taken_and_never_past_the_clients_ceiling() {
        assert_eq!(answer_limit(&negotiated(None)), 64 << 20);
        assert_eq!(answer_limit(&negotiated(Some(32 << 20))), 64 << 20);
        assert_eq!(answer_limit(&negotiated(Some(300 << 20))), 300 << 20);
        assert_eq!(answer_limit(&negotiated(Some(u64::MAX))), ANSWER_CEILING);
    }
}
