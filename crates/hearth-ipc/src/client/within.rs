//! Calls that wait on the calling thread only for a budget: the answer
//! when it comes that soon, else a future for the rest of the call (with
//! a turn wait, `AsyncClient::with_turn_wait`, the wait goes on past the
//! budget while the server says it answers this connection only in its
//! turn).
//!
//! Owns: [`Within`] and [`Later`], the calls that return them on
//! [`Client`](super::Client) (`put_within`, `get_within`, …), and the
//! hand-over of a call that outlives its budget from the calling thread to
//! the connection's async machinery (its blocking pending entry becomes an
//! async one: on shared memory read by the background reader, over a
//! socket awaited instead of parked on). For event-loop hosts (the Node
//! addon): a call answered in microseconds costs no thread hop (over a
//! socket, the calling thread writes its request itself and only the
//! answer comes through the connection's reader), and a stalled server
//! never holds the loop for longer than the budget.
//!
//! Must never: lose or duplicate an answer at the hand-over (the pending
//! table's lock orders it against routing), wait on the calling thread
//! past the budget (beyond the time to write the request) unless the
//! server said the call waits for its turn, and then not past the turn
//! wait, or let a [`Later`] outlive the call's own timeout.

use super::core::{ConnCore, Pending, final_payload};
use super::shm::{ClientShm, Deadline, SyncSlot, WaitEnd};
use super::stream::AsyncDocStream;
use super::{AsyncClient, Collected, calls};
use crate::error::IpcError;
use crate::rt::block_on;
use hearth_proto::{Frame, Operation};
use serde_json::Value;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// What a call with a budget gives back: its result, or the rest of it.
///
/// ```no_run
/// use hearth_ipc::{Client, Within};
/// use serde_json::json;
/// use std::time::Duration;
/// let client = Client::connect("my-app")?;
/// match client.put_within("user:1", json!({"name": "Alice"}), Duration::from_millis(1)) {
///     Within::Ready(seq) => println!("durable as change {}", seq?),
///     Within::Later(rest) => {
///         // The server did not answer within 1 ms: finish it elsewhere.
///         let rt = tokio::runtime::Runtime::new().unwrap();
///         println!("durable as change {}", rt.block_on(rest.wait())?);
///     }
/// }
/// # Ok::<(), hearth_ipc::IpcError>(())
/// ```
#[must_use = "a Later call goes on only when it is waited for"]
#[derive(Debug)]
pub enum Within<T> {
    /// The call ended within the budget (or failed at once).
    Ready(Result<T, IpcError>),
    /// The call is in flight; [`Later::wait`] finishes it.
    Later(Later<T>),
}

impl<T> Within<T> {
    /// The result, waiting for the rest of the call if it is `Later`.
    pub(crate) async fn finish(self) -> Result<T, IpcError> {
        match self {
            Within::Ready(result) => result,
            Within::Later(rest) => rest.wait().await,
        }
    }
}

impl<T: Send + 'static> Within<T> {
    /// The result made from this one by `then`, now or later.
    pub(crate) fn and_then<U: Send + 'static>(
        self,
        then: impl FnOnce(T) -> Result<U, IpcError> + Send + 'static,
    ) -> Within<U> {
        match self {
            Within::Ready(r) => Within::Ready(r.and_then(then)),
            Within::Later(rest) => {
                Within::Later(Later::new(async move { then(rest.wait().await?) }))
            }
        }
    }
}

/// The rest of a call that outlived its budget. Waiting is bounded by the
/// call's timeout, counted from when the call started waiting (at most one
/// short spin after it began); dropping it abandons the answer (the
/// request itself has been sent).
#[must_use = "the answer is lost unless it is waited for"]
pub struct Later<T> {
    rest: Pin<Box<dyn Future<Output = Result<T, IpcError>> + Send>>,
}

impl<T> std::fmt::Debug for Later<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Later").finish_non_exhaustive()
    }
}

impl<T> Later<T> {
    /// Waits for the answer, on a tokio runtime with its time driver
    /// enabled (the default of `Runtime::new` and `#[tokio::main]`).
    pub async fn wait(self) -> Result<T, IpcError> {
        self.rest.await
    }

    /// The rest of a call, from its future.
    pub(crate) fn new(
        rest: impl Future<Output = Result<T, IpcError>> + Send + 'static,
    ) -> Later<T> {
        Later {
            rest: Box::pin(rest),
        }
    }
}

/// A call with a budget before its reply payload is decoded.
pub(crate) type RawWithin = Within<Vec<u8>>;

impl RawWithin {
    /// The payload decoded by `decode`, now or later.
    pub(crate) fn decode<T: Send + 'static>(
        self,
        decode: fn(&[u8]) -> Result<T, IpcError>,
    ) -> Within<T> {
        self.and_then(move |p| decode(&p))
    }
}

impl AsyncClient {
    /// A unary call made on the calling thread — over shared memory the
    /// request goes onto the ring and the thread reads the answer itself
    /// (no runtime, no thread hop); over a socket the thread writes the
    /// request itself and the connection's reader hands it the answer —
    /// that waits there for at most `budget` (the whole timeout when
    /// `None`), then hands its pending entry to the async side. `None`,
    /// with `payload` untouched, when the blocking path is not available
    /// now (see `on_thread_core`).
    pub(crate) fn unary_blocking_within(
        &self,
        op: Operation,
        payload: &mut Option<Vec<u8>>,
        budget: Option<Duration>,
    ) -> Option<RawWithin> {
        let core = self.on_thread_core()?;
        let permit = core.try_permit_here()?;
        let path = OnThread::of(&core);
        let payload = payload.take()?;
        let deadline = Deadline::new(self.timeout, budget).with_turn_wait(self.turn_wait);
        let id = core.next_id();
        let failed = |end| self.wait_failed(&core, op, end);
        let request = calls::request(op, id, payload);
        if let Err(e) = core.within_limit(&request) {
            return Some(Within::Ready(Err(e)));
        }
        let register = |permit| {
            let slot = SyncSlot::for_this_thread();
            core.register(
                id,
                Pending::Sync {
                    slot: slot.clone(),
                    _permit: core.keep_permit(permit),
                },
            );
            slot
        };
        // Over shared memory with the baton free (the common case: one
        // thread per connection), the thread sends and reads its own answer
        // holding the baton throughout: nothing is registered unless the
        // wait ends without the answer.
        let reading = || match &path {
            OnThread::Shm(shm) => shm
                .reading(&core, &request, deadline.turn_hint())
                .map(|reading| (shm, reading)),
            OnThread::Socket => None,
        };
        // `Some(slot)` with the wait already over (`true`): the thread read
        // the ring itself until its deadline.
        let (slot, waited) = 'sent: {
            if let Some((shm, mut reading)) = reading() {
                match reading.send(&request) {
                    Err(end) => return Some(Within::Ready(Err(failed(end)))),
                    Ok(true) => {
                        if let Some(frame) = reading.answer(id, &|| deadline.wait_on(shm)) {
                            return Some(Within::Ready(final_payload(frame)));
                        }
                        if core.is_dead() {
                            return Some(Within::Ready(Err(core.dead_error())));
                        }
                        // Registered before the baton goes: whoever reads
                        // next routes the answer to the slot.
                        let slot = register(permit);
                        drop(reading);
                        break 'sent (slot, true);
                    }
                    // The ring is full: nothing was sent, and the baton
                    // goes back before the usual send waits for room.
                    Ok(false) => {}
                }
            }
            let slot = register(permit);
            if let Err(end) = path.send(&core, request, &deadline) {
                core.unregister(id);
                return Some(Within::Ready(Err(failed(end))));
            }
            (slot, false)
        };
        // (The baton, if this thread held it, is handed on by now.) A
        // thread that read the ring itself until its deadline does not
        // take the baton and spin once more: what comes now goes to the
        // slot, or to the async side it hands over to.
        let waited = if waited {
            Err(WaitEnd::Timeout)
        } else {
            path.wait(&core, &slot, &deadline, Until::Budget)
        };
        let result = match waited {
            Ok(frame) => final_payload(frame),
            Err(WaitEnd::Dead) => Err(core.dead_error()),
            Err(WaitEnd::Timeout) if deadline.budget_first() => {
                // Over budget, not over time: the rest goes async, unless
                // the answer was routed to the slot meanwhile.
                let Some(rx) = core.to_async(id) else {
                    return Some(Within::Ready(
                        path.wait(&core, &slot, &deadline, Until::Call)
                            .map_err(failed)
                            .and_then(final_payload),
                    ));
                };
                let client = self.clone();
                let deadline = tokio::time::Instant::from_std(deadline.call());
                return Some(Within::Later(Later::new(async move {
                    client.final_reply(&core, id, op, deadline, rx).await
                })));
            }
            Err(WaitEnd::Timeout) => {
                core.cancel(id, op);
                Err(self.timed_out(op))
            }
        };
        Some(Within::Ready(result))
    }

    /// A streamed call (list, query, search) collected on the calling
    /// thread, which sends the request itself: over shared memory it reads
    /// the ring itself, chunk after chunk; over a socket it waits (on
    /// `socket`'s timers) for the chunks the connection's reader routes to
    /// it. It waits there for at most `budget` (the whole timeout when
    /// `None`); what is left then goes on asynchronously (on shared memory
    /// the background reader reads for it). `None` when the blocking path
    /// is not available now (see `on_thread_core`), or the connection is
    /// a socket and `socket` is `None` (a caller on an executor thread,
    /// which must not wait on a runtime's timers). With `raw`, the chunks
    /// are kept unparsed (`Collected::raw`) for a caller that writes the
    /// page out as JSON text.
    pub(crate) fn collect_blocking_within(
        &self,
        op: Operation,
        body: &Value,
        budget: Option<Duration>,
        socket: Option<&Handle>,
        raw: bool,
    ) -> Option<Within<Collected>> {
        let core = self.on_thread_core()?;
        let permit = core.try_permit()?;
        let path = OnThread::of(&core);
        // The ring this thread reads, or none: a socket's reader routes the
        // chunks, waited for on `socket`'s timers.
        let ring = match (&path, socket) {
            (OnThread::Shm(shm), _) => Some(Arc::clone(shm)),
            (OnThread::Socket, Some(_)) => None,
            (OnThread::Socket, None) => return None,
        };
        let deadline = Deadline::new(self.timeout, budget).with_turn_wait(self.turn_wait);
        let id = core.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        // Not announced to the background reader: this thread reads for it
        // (it is told if the call goes on without this thread).
        core.register_here(
            id,
            Pending::Stream {
                tx,
                _permit: permit,
            },
        );
        let mut stream = AsyncDocStream::new(core.clone(), id, op, rx, self.timeout);
        if raw {
            stream = stream.keep_raw();
        }
        let request = Frame::json_request(op, id, body);
        if let Err(e) = core.within_limit(&request) {
            return Some(Within::Ready(Err(e)));
        }
        if let Err(end) = path.send(&core, request, &deadline) {
            return Some(Within::Ready(Err(self.wait_failed(&core, op, end))));
        }
        let Some(shm) = ring else {
            // A socket, whose handle is there (checked above).
            return socket.map(|handle| self.collect_routed(op, stream, &deadline, handle));
        };
        let stream = RefCell::new(stream);
        let ended = || stream.borrow_mut().take_routed();
        let wait = || deadline.wait_on(&shm);
        while !ended() && Instant::now() < wait() {
            if !shm.read_here(&core, &ended, &wait, deadline.turn_hint()) {
                // Another thread reads the ring: it routes our chunks.
                break;
            }
        }
        let mut stream = stream.into_inner();
        if stream.take_routed() {
            if budget.is_some() && stream.buffered_over(READY_ITEMS, READY_RAW_BYTES) {
                // Decoding and shaping that many is the runtime's work.
                return Some(Within::Later(Later::new(
                    async move { stream.collected_now() },
                )));
            }
            return Some(Within::Ready(stream.collected_now()));
        }
        if Instant::now() >= deadline.call() {
            // The call's own time is up, not only the wait's: dropping the
            // stream cancels it on the server.
            return Some(Within::Ready(Err(self.timed_out(op))));
        }
        shm.interest_up();
        Some(Within::Later(Later::new(stream.collect_rest())))
    }

    /// The rest of [`collect_blocking_within`](Self::collect_blocking_within)
    /// over a socket: waits on the calling thread, until `deadline`'s wait
    /// ends, for the chunks the connection's reader routes to `stream`.
    fn collect_routed(
        &self,
        op: Operation,
        stream: AsyncDocStream,
        deadline: &Deadline,
        handle: &Handle,
    ) -> Within<Collected> {
        let mut rest = Box::pin(stream.collect_rest());
        let until = tokio::time::Instant::from_std(deadline.wait());
        // The timer is made inside `block_on`, which enters the runtime.
        let waited = block_on(handle, async {
            tokio::time::timeout_at(until, &mut rest).await
        });
        match waited {
            Ok(collected) => Within::Ready(collected),
            Err(_) if deadline.budget_first() => Within::Later(Later::new(rest)),
            // The call's own time is up: dropping the stream cancels it.
            Err(_) => Within::Ready(Err(self.timed_out(op))),
        }
    }

    /// How a wait on the calling thread for `op` that ended without an
    /// answer fails.
    fn wait_failed(&self, core: &ConnCore, op: Operation, end: WaitEnd) -> IpcError {
        match end {
            WaitEnd::Dead => core.dead_error(),
            WaitEnd::Timeout => self.timed_out(op),
        }
    }
}

/// How a blocking call reaches the server from its calling thread.
pub(crate) enum OnThread<'a> {
    /// The rings: the thread writes the request and reads the answer.
    Shm(&'a Arc<ClientShm>),
    /// The socket: the thread writes the request (`ConnCore::send_now`),
    /// the connection's reader routes the answer to the call's slot.
    Socket,
}

/// Which end a wait on the calling thread keeps to.
#[derive(Clone, Copy)]
enum Until {
    /// The budget's (or the call's, if sooner): [`Deadline::wait`].
    Budget,
    /// The call's: [`Deadline::call`].
    Call,
}

impl<'a> OnThread<'a> {
    /// How a call reaches `core` (one [`AsyncClient::on_thread_core`]
    /// handed out: shared memory, else a socket the thread writes to).
    fn of(core: &'a ConnCore) -> OnThread<'a> {
        match &core.shm {
            Some(shm) => OnThread::Shm(shm),
            None => OnThread::Socket,
        }
    }

    fn send(&self, core: &ConnCore, frame: Frame, deadline: &Deadline) -> Result<(), WaitEnd> {
        match self {
            OnThread::Shm(shm) => shm.send_blocking(core, frame, deadline),
            OnThread::Socket => core.send_now(frame).map_err(|_| WaitEnd::Dead),
        }
    }

    fn wait(
        &self,
        core: &ConnCore,
        slot: &SyncSlot,
        deadline: &Deadline,
        until: Until,
    ) -> Result<Frame, WaitEnd> {
        let turns = deadline.turn_hint();
        match (self, until) {
            (OnThread::Shm(shm), Until::Budget) => {
                shm.wait_reply(core, slot, &|| deadline.wait_on(shm), turns)
            }
            (OnThread::Shm(shm), Until::Call) => {
                shm.wait_reply(core, slot, &|| deadline.call(), turns)
            }
            (OnThread::Socket, Until::Budget) => slot.wait_routed(core, deadline.wait()),
            (OnThread::Socket, Until::Call) => slot.wait_routed(core, deadline.call()),
        }
    }
}

/// The most items a streamed call collected on the calling thread hands
/// back at once; a longer answer, though complete, comes as a future, so
/// that the caller's thread (an event loop's) does not decode it.
const READY_ITEMS: usize = 256;

/// The same for a call that keeps its chunks unparsed (`raw`): the bytes
/// of them it hands back at once (checking and copying them out runs at
/// about a byte a nanosecond here).
const READY_RAW_BYTES: usize = 256 * 1024;
