//! The client's end of a shared-memory connection: calling threads write
//! their requests onto the ring and read the answers themselves.
//!
//! Owns: the reading *baton* (the lock around the server→client consumer):
//! whoever holds it pops frames and routes every one of them (its own
//! answer, other threads' answers, stream chunks, events) through
//! `ConnCore::route`, spinning briefly (not at all while the server's
//! ring thread last ran on this core, nor right after a request of its
//! own woke that thread after a pause: [`spins_for_frames`]) and then
//! sleeping on the ring's futex; handing the baton on when it leaves (to a parked caller first,
//! else to the background reader when async requests, streams or
//! subscriptions wait); the background reader thread; and the watcher task
//! that turns the socket's EOF into `Disconnected` after delivering what
//! the server wrote before it went.
//!
//! A blocking call thus costs no thread hop at all on the client when it
//! is alone: it pushes its request, spins on the ring, pops its answer.
//! A unary one that finds the baton free takes it before it sends and
//! keeps its own answer as it reads ([`Reading`]), with no pending entry
//! unless its wait ends without the answer.
//!
//! Also owns this process's table of its shared-memory connections by
//! segment key (`Handoffs`): a baton holder whose turn on the server's
//! shared poller ended, told on its ring which connection's turn begins,
//! wakes that one's reader on its own core before it sleeps
//! (docs/protocol.md, "Turns"); and reporting, on the ring, which thread
//! reads for its own calls (a caller holding the baton; none while the
//! background reader holds it), whose state the server may look at.
//!
//! Must never: let two threads read the ring at once (the baton), let go
//! of the baton while it holds back a call's answer that nothing is
//! registered for (a [`Reading`] registers first), leave a
//! caller parked with nobody reading for it (the leaving holder always
//! wakes a parked caller; parks are also bounded), sleep without a waker
//! for the server's death (the watcher wakes the holder), or block a
//! runtime thread (the watcher's blocking part runs on the blocking pool).

use super::core::ConnCore;
use crate::error::IpcError;
use crate::message::{self, Reassembler};
use crate::transport::shm::{Pushed, ShmOut, ShmWriter};
use hearth_proto::{Frame, FrameHeader, FrameKind, HEADER_LEN};
use hearth_shm::{
    AwayWatch, Consumer, Direction, Segment, Spinner, SteadySpinner, TurnHint, Waker,
};
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::Notify;

/// Longest a baton holder spins for the next frame before sleeping.
const HOLDER_SPIN: Duration = Duration::from_micros(100);

/// Longest a caller whose answer another thread will route spins before
/// parking.
const WAITER_SPIN: Duration = Duration::from_micros(20);

/// Longest a caller over a socket spins for the answer the connection's
/// reader routes to it before parking: an answer that comes while it spins
/// costs the reader no futex wake-up and the caller no wake-up latency
/// (~20 µs into a halted vCPU on the project's VM).
const ROUTED_SPIN: Duration = Duration::from_micros(50);

/// A baton holder that keeps finding frames for other callers looks at
/// its deadline once per this many rounds.
const DEADLINE_EVERY: u32 = 16;

/// This process's shared-memory connections by segment key
/// ([`Segment::key`]), for handing a turn over: the server names the
/// connection whose turn begins on the ring of the one whose turn ended,
/// and that one's reader, about to sleep, wakes the other's here — on the
/// core it runs on, where the new turn's thread will run, instead of the
/// server waking it from its own core (an interrupt between cores, ~20 µs
/// on a virtual machine; docs/performance-log.md).
struct Handoffs {
    /// (segment key, entry id, the connection's reader waker).
    by_key: Mutex<Vec<(u32, u64, Waker<Segment>)>>,
    next_id: AtomicU64,
}

static HANDOFFS: Handoffs = Handoffs {
    by_key: Mutex::new(Vec::new()),
    next_id: AtomicU64::new(1),
};

impl Handoffs {
    /// Lists a connection; the id to [`remove`](Self::remove) it with (0:
    /// not listed, its key unknown).
    fn add(&self, key: u32, waker: Waker<Segment>) -> u64 {
        if key == 0 {
            return 0;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.by_key.lock().push((key, id, waker));
        id
    }

    fn remove(&self, id: u64) {
        if id != 0 {
            let mut by_key = self.by_key.lock();
            if let Some(at) = by_key.iter().position(|e| e.1 == id) {
                by_key.swap_remove(at);
            }
        }
    }

    /// Wakes the reader of this process's connection `key`, if it has one
    /// (a key from the server: one of another process, or none, wakes
    /// nobody). The lock is not held through the wake-up.
    fn wake(&self, key: u32) {
        let waker = self
            .by_key
            .lock()
            .iter()
            .find(|e| e.0 == key)
            .map(|e| e.2.clone());
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Safety net on sleeps that have a waker anyway.
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// Longest a parked caller sleeps before looking again (a safety net: it
/// is normally unparked).
const PARK_SLICE: Duration = Duration::from_millis(50);

/// How long a sender waits for ring room between helping to read.
const ROOM_POLL: Duration = Duration::from_millis(1);

/// Longest a calling thread spins for room for the next piece of a
/// request bigger than a ring record before it sleeps: the server's
/// connection thread, woken by the first piece, copies a piece out in tens
/// of microseconds.
const PIECE_SPIN: Duration = Duration::from_micros(200);

/// Where a blocking call's final frame is handed over.
pub(crate) struct SyncSlot {
    frame: Mutex<Option<Frame>>,
    ready: AtomicBool,
    thread: Thread,
}

thread_local! {
    /// The calling thread's slot, kept for its next blocking call.
    static THIS_THREADS_SLOT: std::cell::RefCell<Option<Arc<SyncSlot>>> =
        const { std::cell::RefCell::new(None) };
    /// The calling thread's id (asking `std::thread::current` each time
    /// clones and drops a handle).
    static THIS_THREAD: std::thread::ThreadId = std::thread::current().id();
    /// How the calling thread spins for a routed answer
    /// ([`SyncSlot::wait_routed`]): it stops, but for probes, once its
    /// waits keep outlasting the spin.
    static ROUTED_SPINNER: std::cell::RefCell<SteadySpinner> =
        std::cell::RefCell::new(SteadySpinner::new(ROUTED_SPIN));
}

impl SyncSlot {
    /// An empty slot for the calling thread: the one its last call used
    /// when nothing else holds that any more (a call that timed out leaves
    /// its slot with the pending table, where a late answer may still
    /// fill it), else a new one.
    pub(crate) fn for_this_thread() -> Arc<SyncSlot> {
        let fresh = || {
            Arc::new(SyncSlot {
                frame: Mutex::new(None),
                ready: AtomicBool::new(false),
                thread: std::thread::current(),
            })
        };
        // A thread whose thread-locals are being torn down gets a new slot.
        THIS_THREADS_SLOT
            .try_with(|kept| {
                let mut kept = kept.borrow_mut();
                if let Some(slot) = kept.as_mut()
                    && let Some(only) = Arc::get_mut(slot)
                {
                    // Unique (`get_mut` synchronises with the release of every
                    // other clone): no answer can reach it any more.
                    *only.frame.get_mut() = None;
                    *only.ready.get_mut() = false;
                    return slot.clone();
                }
                let slot = fresh();
                *kept = Some(slot.clone());
                slot
            })
            .unwrap_or_else(|_| fresh())
    }

    /// Hands the final frame over and wakes the caller.
    pub(crate) fn fill(&self, frame: Frame) {
        *self.frame.lock() = Some(frame);
        // Release pairs with the Acquire load in `is_ready`: the frame is
        // in place before the caller sees the flag.
        self.ready.store(true, Ordering::Release);
        // Unparking oneself would only leave a stale token: skipped. A
        // thread in teardown counts as another.
        if THIS_THREAD
            .try_with(|me| self.thread.id() != *me)
            .unwrap_or(true)
        {
            self.thread.unpark();
        }
    }

    /// Wakes the caller (its connection died).
    pub(crate) fn wake(&self) {
        self.thread.unpark();
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Waits on the calling thread until the connection's reader routes
    /// the final frame here, the connection dies, or `deadline` (a socket
    /// connection: nothing for this thread to read itself): first spinning
    /// up to `ROUTED_SPIN` when no other thread of the process waits so
    /// (the thread's `SteadySpinner`: not while every core has a spinner,
    /// nor while its waits keep outlasting the spin), then parked.
    pub(crate) fn wait_routed(&self, core: &ConnCore, deadline: Instant) -> Result<Frame, WaitEnd> {
        let waiting = RoutedWaiter::enter();
        if waiting.alone {
            // A thread in teardown, or one already spinning further up its
            // stack, only parks.
            let _ = ROUTED_SPINNER.try_with(|spinner| {
                if let Ok(mut spinner) = spinner.try_borrow_mut() {
                    spinner.spin(|| self.is_ready() || core.is_dead());
                }
            });
        }
        loop {
            if let Some(frame) = self.take() {
                return Ok(frame);
            }
            if core.is_dead() {
                return Err(WaitEnd::Dead);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitEnd::Timeout);
            }
            // `fill` and `wake` unpark this thread; a stale token only
            // makes the loop look again.
            std::thread::park_timeout(deadline - now);
        }
    }

    fn take(&self) -> Option<Frame> {
        if self.is_ready() {
            self.frame.lock().take()
        } else {
            None
        }
    }
}

/// Threads of this process in [`SyncSlot::wait_routed`] now.
static ROUTED_WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Counts its holder among the threads waiting for a routed answer for as
/// long as it lives.
struct RoutedWaiter {
    /// No other thread of the process waited so when it began: only then
    /// does it spin. The answers of several waiting threads need the
    /// connection's reader and the server as much as the spinners' cores
    /// (sixteen socket clients of one process, each spinning while alone
    /// on a core: 86k → 55–61k gets/s on 2 cores).
    alone: bool,
}

impl RoutedWaiter {
    fn enter() -> RoutedWaiter {
        // Relaxed: a count that only chooses between spinning and parking.
        let before = ROUTED_WAITERS.fetch_add(1, Ordering::Relaxed);
        RoutedWaiter { alone: before == 0 }
    }
}

impl Drop for RoutedWaiter {
    fn drop(&mut self) {
        ROUTED_WAITERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When a blocking call stops waiting: its timeout (and the caller's
/// budget for waiting on this thread), counted from the first time the
/// call looks at the clock. A call answered within its first spin never
/// does — a clock read costs ~30 ns on this VM, a thirtieth of a round
/// trip — and one that waits longer starts counting at most one spin
/// (`HOLDER_SPIN`, `WAITER_SPIN`) after it began.
pub(crate) struct Deadline {
    timeout: Duration,
    budget: Option<Duration>,
    /// How long the wait on the calling thread may last, in all, when it
    /// is a wait for this connection's turn (see [`Deadline::waits_turn`]).
    turn_wait: Duration,
    start: std::cell::OnceCell<Instant>,
    /// The wait was seen waiting for a turn: its budget is `turn_wait`
    /// from then on — none at all without a turn wait (a turn that begins
    /// does not shorten it again just as the answer comes).
    for_turn: std::cell::Cell<bool>,
}

impl Deadline {
    /// A deadline `timeout` after the call's first look at the clock, and
    /// a wait on the calling thread bounded by `budget` as well.
    pub(crate) fn new(timeout: Duration, budget: Option<Duration>) -> Deadline {
        Deadline {
            timeout,
            budget,
            turn_wait: Duration::ZERO,
            start: std::cell::OnceCell::new(),
            for_turn: std::cell::Cell::new(false),
        }
    }

    /// The same deadline, whose wait on the calling thread may last up to
    /// `turn_wait` (instead of the budget) once it is seen waiting for the
    /// connection's turn ([`waits_turn`](Self::waits_turn)).
    pub(crate) fn with_turn_wait(mut self, turn_wait: Duration) -> Deadline {
        self.turn_wait = turn_wait;
        self
    }

    /// Notes whether the call now waits for its connection's turn on the
    /// server (the server answers other clients first, and this one within
    /// a round of turns): from the first time it does, the wait on the
    /// calling thread may last `turn_wait` — and a call with a budget and
    /// no turn wait stops waiting there at once ([`wait`](Self::wait)).
    pub(crate) fn waits_turn(&self, waits: bool) -> &Deadline {
        if waits {
            self.for_turn.set(true);
        }
        self
    }

    /// [`wait`](Self::wait) for a call on `shm`, noting first whether the
    /// server now answers it only in its turn ([`waits_turn`](Self::waits_turn)).
    pub(crate) fn wait_on(&self, shm: &ClientShm) -> Instant {
        self.waits_turn(shm.waits_for_turn()).wait()
    }

    fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// When the call times out.
    pub(crate) fn call(&self) -> Instant {
        crate::types::deadline_after(self.start(), self.timeout)
    }

    /// When the wait on the calling thread ends: the call's deadline, or
    /// the end of the budget if that comes first. Once the call was seen
    /// waiting for its turn, the budget is `turn_wait` if longer — and
    /// without a turn wait the wait is over: the answer will come only in
    /// the connection's turn, up to a round of other clients' slices
    /// away, and a thread that would rather go on than wait for longer
    /// than its budget (an event loop's) should not sleep through the
    /// budget first, to be woken by its timer in the middle of another
    /// client's turn and hand the call on there.
    pub(crate) fn wait(&self) -> Instant {
        let call = self.call();
        self.budget.map_or(call, |b| {
            let b = match (self.for_turn.get(), self.turn_wait.is_zero()) {
                (true, true) => Duration::ZERO,
                (true, false) => b.max(self.turn_wait),
                (false, _) => b,
            };
            call.min(crate::types::deadline_after(self.start(), b))
        })
    }

    /// How a wait for the connection's turn goes: on the calling thread
    /// when the call has no budget (it waits there until its deadline) or
    /// a turn wait (with a budget: its thread does other work between
    /// calls, an event loop's); else on as soon as the call is told to
    /// wait. What the client tells the server as it reads for the call
    /// (`Consumer::note_turns`).
    pub(crate) fn turn_hint(&self) -> TurnHint {
        match (self.budget, self.turn_wait.is_zero()) {
            (None, _) => TurnHint::OnThread,
            (Some(_), false) => TurnHint::Budgeted,
            (Some(_), true) => TurnHint::Later,
        }
    }

    /// Whether the budget ends the wait before the call's deadline.
    pub(crate) fn budget_first(&self) -> bool {
        self.wait() < self.call()
    }
}

/// Why a blocking wait ended without its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// The connection died.
    Dead,
    /// The deadline passed.
    Timeout,
}

/// The reading side, held by one thread at a time (the baton).
struct RxSide {
    consumer: Consumer<Segment>,
    reassembler: Reassembler,
    record: Vec<u8>,
    spinner: Spinner,
    /// The request whose final frame the holder keeps for itself instead
    /// of routing it ([`Reading::answer`]): set only while that holder has
    /// the baton, cleared before it lets go.
    claim: Option<u64>,
    /// That frame, once read.
    claimed: Option<Frame>,
    /// The holder's request woke the server's ring thread after a pause
    /// ([`Reading::send`], [`after_a_pause`]): that thread is not running
    /// yet, and the kernel most often queues it beside its waker, on this
    /// very core, where it cannot answer while this one spins. The next
    /// round of `hold` then sleeps at once instead of spinning (and clears
    /// this).
    woke_server: bool,
    /// When a request of this connection last woke the server's ring
    /// thread (read from the clock only then).
    last_woke: Option<Instant>,
}

impl RxSide {
    /// Hands one message read from the ring to whoever waits for it: the
    /// holder's own final frame stays here, the rest are routed.
    fn hand_over(&mut self, core: &ConnCore, message: Frame) {
        let last = matches!(
            message.header.kind,
            FrameKind::Response | FrameKind::Error | FrameKind::StreamEnd
        );
        if last && self.claim == Some(message.header.request_id) {
            self.claimed = Some(message);
        } else {
            core.route(message);
        }
    }
}

/// A client's shared-memory state, shared by every thread using the
/// connection.
pub(crate) struct ClientShm {
    out: Arc<ShmOut>,
    rx: Mutex<RxSide>,
    rx_waker: Waker<Segment>,
    /// Whether the server answers this connection's requests only in its
    /// turn (it reports "away": another connection of this process holds
    /// the turn), readable without the baton.
    away: AwayWatch<Segment>,
    /// The segment's key, and its entry in [`HANDOFFS`].
    key: u32,
    listed: u64,
    /// The server is gone (the socket reported EOF).
    gone: AtomicBool,
    /// This side is closing the connection.
    closing: AtomicBool,
    /// Tells the writer task to stop waiting for room.
    writer_abort: Arc<AtomicBool>,
    parked: Mutex<Vec<Thread>>,
    n_parked: AtomicUsize,
    bg: OnceLock<Thread>,
    bg_holding: AtomicBool,
    watcher: Notify,
}

impl Drop for ClientShm {
    fn drop(&mut self) {
        HANDOFFS.remove(self.listed);
    }
}

impl ClientShm {
    /// The client's side of `segment`, joining answers of up to
    /// `max_message_bytes` (`core::answer_limit`).
    pub(crate) fn new(segment: &Arc<Segment>, max_message_bytes: usize) -> ClientShm {
        let consumer = Consumer::new(segment.clone(), Direction::ServerToClient);
        let rx_waker = consumer.waker();
        let away = consumer.away_watch();
        let key = segment.key();
        let listed = HANDOFFS.add(key, rx_waker.clone());
        ClientShm {
            out: Arc::new(ShmOut::new(segment, Direction::ClientToServer)),
            rx: Mutex::new(RxSide {
                consumer,
                reassembler: Reassembler::new(max_message_bytes),
                record: Vec::with_capacity(4096),
                spinner: Spinner::new(HOLDER_SPIN),
                claim: None,
                claimed: None,
                woke_server: false,
                last_woke: None,
            }),
            rx_waker,
            away,
            key,
            listed,
            gone: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            writer_abort: Arc::new(AtomicBool::new(false)),
            parked: Mutex::new(Vec::new()),
            n_parked: AtomicUsize::new(0),
            bg: OnceLock::new(),
            bg_holding: AtomicBool::new(false),
            watcher: Notify::new(),
        }
    }

    /// Whether the server now answers this connection only in its turn
    /// (another connection of this process holds it): a hint.
    pub(crate) fn waits_for_turn(&self) -> bool {
        self.away.peer_away()
    }

    /// The frame writer for the connection's writer task (async sends).
    pub(crate) fn writer(&self) -> ShmWriter {
        ShmWriter {
            out: self.out.clone(),
            stall: None,
            abort: self.writer_abort.clone(),
        }
    }

    /// The largest frame the client→server ring carries.
    pub(crate) fn max_frame(&self) -> usize {
        self.out.max_frame()
    }

    /// Starts the background reader thread and the socket watcher (on the
    /// current runtime).
    pub(crate) fn start(
        self: &Arc<Self>,
        core: &Arc<ConnCore>,
        stream: UnixStream,
    ) -> Result<(), IpcError> {
        let weak = Arc::downgrade(core);
        let shm = self.clone();
        let bg = std::thread::Builder::new()
            .name("hearth-shm-client".into())
            .spawn(move || background(&shm, &weak))
            .map_err(|e| IpcError::io("starting the shared-memory reader thread", e))?;
        let _ = self.bg.set(bg.thread().clone());
        tokio::spawn(watch(self.clone(), Arc::downgrade(core), stream));
        Ok(())
    }

    /// Ends everything this side runs for the connection (from
    /// `ConnCore::die`).
    pub(crate) fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        self.writer_abort.store(true, Ordering::Release);
        self.out.close();
        self.rx_waker.wake();
        if let Some(bg) = self.bg.get() {
            bg.unpark();
        }
        for t in self.parked.lock().iter() {
            t.unpark();
        }
        self.watcher.notify_one();
    }

    /// Async interest appeared: make sure someone reads.
    pub(crate) fn interest_up(&self) {
        if let Some(bg) = self.bg.get() {
            bg.unpark();
        }
    }

    /// Sends `frame` (split to the ring's frame size) from the calling
    /// thread, helping to read while the ring is full, and spinning a
    /// little for room before it sleeps.
    pub(crate) fn send_blocking(
        &self,
        core: &ConnCore,
        frame: Frame,
        deadline: &Deadline,
    ) -> Result<(), WaitEnd> {
        let max = self.max_piece(core);
        let mut room = SteadySpinner::new(PIECE_SPIN);
        for part in message::split(frame, max) {
            loop {
                if core.is_dead() {
                    return Err(WaitEnd::Dead);
                }
                let head_seen = match self.out.try_send(&part) {
                    Ok(Pushed::Done { .. }) => break,
                    Ok(Pushed::Full { head_seen }) => head_seen,
                    Err(e) => return Err(write_failed(core, e)),
                };
                if Instant::now() >= deadline.call() {
                    return Err(WaitEnd::Timeout);
                }
                // The server may wait for us to read before it reads more.
                if let Some(mut rx) = self.rx.try_lock() {
                    self.drain(core, &mut rx);
                    drop(rx);
                    self.after_release(core);
                }
                if room.spin(|| self.out.room_since(head_seen) || core.is_dead()) {
                    continue;
                }
                self.out.wait_room(head_seen, ROOM_POLL, &|| {
                    core.is_dead() || self.closing.load(Ordering::Acquire)
                });
            }
        }
        Ok(())
    }

    /// Waits on the calling thread until `slot` holds the final frame:
    /// reading the ring itself when nobody else does. Gives up at
    /// `deadline()` (read only once the wait outlasts a spin).
    /// `turns`: how the call waits for its turn ([`Deadline::turn_hint`]),
    /// told to the server as it reads.
    pub(crate) fn wait_reply(
        &self,
        core: &ConnCore,
        slot: &SyncSlot,
        deadline: &dyn Fn() -> Instant,
        turns: TurnHint,
    ) -> Result<Frame, WaitEnd> {
        let mut waiter_spin: Option<Spinner> = None;
        let mut parked = false;
        loop {
            if let Some(frame) = slot.take() {
                if parked {
                    // Woken to take the baton, but the answer was already
                    // routed: hand the wake-up on to another parked caller,
                    // or to the background reader.
                    self.pass_on(core);
                }
                return Ok(frame);
            }
            if core.is_dead() {
                return Err(WaitEnd::Dead);
            }
            if let Some(mut rx) = self.rx.try_lock() {
                // This thread sends again once it has its answer: the
                // server may look at its state (`note_thread`), and may hold
                // it back behind other processes' clients (`note_turns`).
                rx.consumer.note_thread(hearth_shm::this_thread_id());
                rx.consumer.note_turns(turns);
                // `hold` returns at the deadline at the latest.
                self.hold(core, &mut rx, &|| slot.is_ready(), Some(deadline));
                drop(rx);
                self.after_release(core);
                if !slot.is_ready() && Instant::now() >= deadline() {
                    return Err(WaitEnd::Timeout);
                }
                continue;
            }
            let now = Instant::now();
            let deadline = deadline();
            if now >= deadline {
                return Err(WaitEnd::Timeout);
            }
            // Another thread reads and will hand our frame to the slot.
            let spinner = waiter_spin.get_or_insert_with(|| Spinner::new(WAITER_SPIN));
            if spinner.spin(|| slot.is_ready() || !self.rx.is_locked()) {
                continue;
            }
            self.park(core, slot, deadline - now);
            parked = true;
        }
    }

    /// The largest frame a request goes in whole (a longer one is split).
    fn max_piece(&self, core: &ConnCore) -> usize {
        self.out
            .max_frame()
            .min(core.info.negotiated.server_max_frame_bytes as usize)
    }

    /// The baton for a blocking call that sends `request` and reads its
    /// own answer, taken before the request goes (so that no other reader
    /// can take the answer first and nothing has to be registered for it
    /// unless the wait ends without it; [`Reading`]); `None` when another
    /// thread reads now, or the request does not go in one piece. `turns`
    /// as for [`wait_reply`](Self::wait_reply).
    pub(crate) fn reading<'a>(
        &'a self,
        core: &'a ConnCore,
        request: &Frame,
        turns: TurnHint,
    ) -> Option<Reading<'a>> {
        if HEADER_LEN + request.payload.len() > self.max_piece(core) {
            return None;
        }
        let rx = self.rx.try_lock()?;
        rx.consumer.note_thread(hearth_shm::this_thread_id());
        rx.consumer.note_turns(turns);
        Some(Reading {
            shm: self,
            core,
            rx: Some(rx),
        })
    }

    /// Reads the ring on the calling thread, routing every frame, until
    /// `done()` or `deadline()`; false (nothing read) when another thread
    /// reads it now. `turns` as for [`wait_reply`](Self::wait_reply).
    pub(crate) fn read_here(
        &self,
        core: &ConnCore,
        done: &dyn Fn() -> bool,
        deadline: &dyn Fn() -> Instant,
        turns: TurnHint,
    ) -> bool {
        let Some(mut rx) = self.rx.try_lock() else {
            return false;
        };
        rx.consumer.note_thread(hearth_shm::this_thread_id());
        rx.consumer.note_turns(turns);
        self.hold(core, &mut rx, done, Some(deadline));
        drop(rx);
        self.after_release(core);
        true
    }

    /// Wakes a parked caller if the baton is free (nobody reads for it),
    /// else the background reader if async requests, streams or
    /// subscriptions wait: the reader that stepped aside for this caller
    /// went to sleep counting it parked, and nothing else wakes it.
    fn pass_on(&self, core: &ConnCore) {
        // SeqCst fence pairs with the one in `park`, as in `after_release`.
        fence(Ordering::SeqCst);
        if !self.rx.is_locked() {
            self.wake_next_reader(core);
        }
    }

    /// Wakes whoever should read next: the first parked caller, else the
    /// background reader if async requests, streams or subscriptions wait.
    /// Called after the SeqCst fence that pairs with the one in `park`.
    /// A caller counted in `n_parked` but no longer listed has left `park`
    /// and may leave without the baton (its deadline passed): the
    /// background reader is woken then too (if it has nothing to read for,
    /// it sleeps again).
    fn wake_next_reader(&self, core: &ConnCore) {
        if self.n_parked.load(Ordering::Relaxed) > 0
            && let Some(t) = self.parked.lock().first()
        {
            t.unpark();
            return;
        }
        if core.has_async_interest()
            && let Some(bg) = self.bg.get()
        {
            bg.unpark();
        }
    }

    fn park(&self, core: &ConnCore, slot: &SyncSlot, remaining: Duration) {
        let me = std::thread::current();
        self.parked.lock().push(me.clone());
        self.n_parked.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence pairs with the one in `after_release`: either the
        // leaving holder sees this thread counted and unparks a parked
        // caller, or the baton's release is visible to `is_locked` below.
        fence(Ordering::SeqCst);
        if self.bg_holding.load(Ordering::Acquire) {
            // The background reader gives the baton up when callers park.
            self.rx_waker.wake();
        }
        if !slot.is_ready() && self.rx.is_locked() && !core.is_dead() {
            std::thread::park_timeout(remaining.min(PARK_SLICE));
        }
        self.n_parked.fetch_sub(1, Ordering::Relaxed);
        let mut parked = self.parked.lock();
        if let Some(i) = parked.iter().position(|t| t.id() == me.id()) {
            parked.swap_remove(i);
        }
    }

    /// Hands the baton on after releasing it, and finishes a connection
    /// whose server left while nobody was reading.
    fn after_release(&self, core: &ConnCore) {
        // SeqCst fence pairs with the one in `park`.
        fence(Ordering::SeqCst);
        self.wake_next_reader(core);
        if self.gone.load(Ordering::Acquire)
            && !core.is_dead()
            && let Some(mut rx) = self.rx.try_lock()
        {
            self.drain(core, &mut rx);
            core.die("the server closed the connection".into());
        }
    }

    /// Pops and routes every waiting frame; false if the connection died.
    fn drain(&self, core: &ConnCore, rx: &mut RxSide) -> bool {
        loop {
            match rx.consumer.try_pop(&mut rx.record) {
                Ok(true) => match deliver(&rx.record, &mut rx.reassembler) {
                    Ok(Some(message)) => rx.hand_over(core, message),
                    Ok(None) => {}
                    Err(reason) => {
                        core.die(reason);
                        return false;
                    }
                },
                Ok(false) => return true,
                Err(e) => {
                    core.die(format!("the server's shared-memory ring is unusable: {e}"));
                    return false;
                }
            }
        }
    }

    /// Reads and routes frames while holding the baton, until `done()`, the
    /// deadline, or the end of the connection.
    fn hold(
        &self,
        core: &ConnCore,
        rx: &mut RxSide,
        done: &dyn Fn() -> bool,
        deadline: Option<&dyn Fn() -> Instant>,
    ) {
        let mut rounds: u32 = 0;
        loop {
            if !self.drain(core, rx) || rx.claimed.is_some() || done() || core.is_dead() {
                return;
            }
            if self.gone.load(Ordering::Acquire) || rx.consumer.is_closed() {
                // What the server wrote before it went is delivered first.
                self.drain(core, rx);
                core.die("the server closed the connection".into());
                return;
            }
            // The deadline is looked at before a sleep, and every few
            // rounds while frames for other callers keep coming (a clock
            // read per round would be a good share of a round trip).
            rounds += 1;
            if rounds.is_multiple_of(DEADLINE_EVERY)
                && deadline.is_some_and(|d| Instant::now() >= d())
            {
                return;
            }
            let RxSide {
                consumer,
                spinner,
                woke_server,
                ..
            } = rx;
            // Spinning while the server's ring thread shares this core
            // only keeps it from answering, and a server that serves
            // other clients first (its poller's turns) answers in
            // milliseconds: sleep at once then — also when either comes
            // up mid-spin (this thread's turn ended: the client whose turn
            // began needs the core this one spins on).
            let here = consumer.note_cpu();
            if spins_for_frames(std::mem::take(woke_server), consumer.peer_away())
                && spinner.spin_unless_shared(
                    || consumer.spinning_futile(here),
                    || consumer.has_data().unwrap_or(true) || done(),
                )
            {
                continue;
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    let deadline = deadline();
                    if now >= deadline {
                        return;
                    }
                    (deadline - now).min(IDLE_WAKE)
                }
                None => IDLE_WAKE,
            };
            let abort = || {
                done()
                    || self.gone.load(Ordering::Acquire)
                    || self.closing.load(Ordering::Acquire)
                    || core.is_dead()
            };
            // The turn on the server's poller ended and the server named
            // the connection whose turn begins: wake it here, on the core
            // its thread will take from this one (the server wakes it
            // itself if it has not sent a request within `HANDOFF_WAIT`).
            if let Some(next) = consumer.peer_handoff().filter(|&k| k != self.key) {
                HANDOFFS.wake(next);
            }
            if let Err(e) = consumer.wait_for_data(Some(remaining), &abort) {
                core.die(format!("the server's shared-memory ring is unusable: {e}"));
                return;
            }
        }
    }
}

/// The reading side held by a blocking call from before its request is
/// sent until its answer is read ([`ClientShm::reading`]): frames for
/// others are routed as it reads, its own is kept for it. If the wait ends
/// without the answer, the call registers its pending entry *before* it
/// drops this, so that the next holder routes the answer to it. Dropping
/// it hands the baton on (`after_release`).
pub(crate) struct Reading<'a> {
    shm: &'a ClientShm,
    core: &'a ConnCore,
    /// Always `Some` until dropped (taken there to release the lock before
    /// the baton is handed on).
    rx: Option<MutexGuard<'a, RxSide>>,
}

impl Reading<'_> {
    fn rx(&mut self) -> &mut RxSide {
        // `rx` is `None` only inside `drop`.
        self.rx
            .as_deref_mut()
            .expect("a Reading holds the baton until it is dropped")
    }

    /// Puts the request (one piece, checked by `reading`) on the ring if
    /// it has room now: false when it has not, and nothing was sent (the
    /// caller then drops this and sends the usual way, which waits for
    /// room without the baton, so that other threads' answers and events
    /// are read meanwhile).
    pub(crate) fn send(&mut self, request: &Frame) -> Result<bool, WaitEnd> {
        if self.core.is_dead() {
            return Err(WaitEnd::Dead);
        }
        let sent = self
            .shm
            .out
            .send_whole(request, true)
            .map_err(|e| write_failed(self.core, e))?;
        if sent == Some(true) {
            let rx = self.rx();
            let now = Instant::now();
            rx.woke_server = after_a_pause(rx.last_woke, now);
            rx.last_woke = Some(now);
        }
        Ok(sent.is_some())
    }

    /// Reads until the final frame of request `id` comes, the connection
    /// dies or `deadline()` passes; the frame, or `None` (the caller then
    /// registers the request before dropping this).
    pub(crate) fn answer(&mut self, id: u64, deadline: &dyn Fn() -> Instant) -> Option<Frame> {
        let (shm, core) = (self.shm, self.core);
        let rx = self.rx();
        rx.claim = Some(id);
        while rx.claimed.is_none() && !core.is_dead() {
            shm.hold(core, rx, &|| false, Some(deadline));
            if rx.claimed.is_none() && Instant::now() >= deadline() {
                break;
            }
        }
        rx.claim = None;
        rx.claimed.take()
    }
}

/// Whether a baton holder spins for its next frame before it sleeps on
/// the ring: not while the server answers this connection only in its
/// turn (`away`: it serves other clients first, for milliseconds), and not
/// right after the holder's own request woke the server's ring thread
/// after a pause (`woke_server`, [`after_a_pause`]). That thread is not
/// running yet, and after a pause the kernel most often queues it beside
/// its waker, on this very core (the other idle), where a spin only keeps
/// it from answering. Only a call that sends and reads its own answer
/// ([`Reading`]: a blocking unary call that finds the baton free, the
/// common case) learns that its request woke the server. Gets after a
/// 10 ms pause from a Rust thread took 88.5–97.5 µs instead of 102–136,
/// from a Node main thread (20 ms apart) 174–213 µs instead of 208–235
/// (p50s of four alternated runs each; docs/performance.md, "Gets after a
/// pause").
fn spins_for_frames(woke_server: bool, away: bool) -> bool {
    !woke_server && !away
}

/// How long since the last request that woke the server's ring thread
/// makes the next such request one "after a pause" ([`after_a_pause`]).
/// The rule of [`spins_for_frames`] was measured on calls 10–20 ms apart;
/// this keeps it to such calls. A server whose thread sleeps between
/// back-to-back calls (it found itself descheduled and stopped spinning
/// for a while) is woken by every request, microseconds apart, and may run
/// on the other core, awake: a spin then catches its answer. (Without this
/// limit, four alternated runs of back-to-back gets made 444–1,143 k a
/// second against 742–1,061 k, with it 533–1,400 k against 497–1,462 k:
/// this VM's slow phases, which both builds had, hide any difference.)
const WAKE_PAUSE: Duration = Duration::from_millis(1);

/// Whether a request that woke the server's ring thread at `now` came
/// after a pause: no request had woken it before (`last_woke`), or the
/// last one did [`WAKE_PAUSE`] or longer ago.
fn after_a_pause(last_woke: Option<Instant>, now: Instant) -> bool {
    last_woke.is_none_or(|at| now.saturating_duration_since(at) >= WAKE_PAUSE)
}

/// Ends `core` after a write to its ring failed (the ring is damaged):
/// what the wait that wrote ends with.
fn write_failed(core: &ConnCore, e: impl std::fmt::Display) -> WaitEnd {
    core.die(format!("writing to the shared-memory ring failed: {e}"));
    WaitEnd::Dead
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            // Cleared by `answer` already; a panic inside it must not
            // leave the claim to the next holder.
            rx.claim = None;
            rx.claimed = None;
            rx.woke_server = false;
            drop(rx);
        }
        self.shm.after_release(self.core);
    }
}

/// Checks one record as a frame and joins it to the message it belongs to
/// (`MORE` frames): the message once complete.
fn deliver(record: &[u8], reassembler: &mut Reassembler) -> Result<Option<Frame>, String> {
    let Some(head) = record.first_chunk::<HEADER_LEN>() else {
        return Err(format!(
            "the server sent a {}-byte record, shorter than a frame header",
            record.len()
        ));
    };
    let header = match FrameHeader::decode(head) {
        Ok(header) => header,
        // An operation this client does not know: nothing waits for it.
        Err(e) if !e.is_fatal() => return Ok(None),
        Err(e) => return Err(format!("the server sent a bad frame: {e}")),
    };
    if header.payload_len as usize != record.len() - HEADER_LEN {
        return Err(format!(
            "the server's frame header says {} payload bytes, its record holds {}",
            header.payload_len,
            record.len() - HEADER_LEN
        ));
    }
    let frame = Frame {
        header,
        payload: record[HEADER_LEN..].to_vec(),
    };
    reassembler
        .push(frame, Instant::now)
        .map_err(|body| body.message)
}

/// The background reader: holds the baton while async requests, streams or
/// subscriptions wait and no blocking caller wants it.
fn background(shm: &Arc<ClientShm>, core: &Weak<ConnCore>) {
    loop {
        if shm.closing.load(Ordering::Acquire) {
            return;
        }
        let Some(core) = core.upgrade() else {
            return;
        };
        if core.is_dead() {
            return;
        }
        let wanted = core.has_async_interest() && shm.n_parked.load(Ordering::Acquire) == 0;
        if wanted && let Some(mut rx) = shm.rx.try_lock() {
            shm.bg_holding.store(true, Ordering::Release);
            // It reads for others' calls: no thread of its own to look at.
            // What the last call on a calling thread said about turns
            // stands (`note_turns`): a reader for others' calls knows
            // nothing of how they wait, and the server should not see the
            // word change with whichever thread read last.
            rx.consumer.note_thread(None);
            let done = || {
                shm.closing.load(Ordering::Acquire)
                    || !core.has_async_interest()
                    || shm.n_parked.load(Ordering::Acquire) > 0
            };
            shm.hold(&core, &mut rx, &done, None);
            shm.bg_holding.store(false, Ordering::Release);
            drop(rx);
            shm.after_release(&core);
            continue;
        }
        drop(core);
        std::thread::park_timeout(if wanted {
            Duration::from_millis(10)
        } else {
            IDLE_WAKE
        });
    }
}

/// Watches the socket: its EOF (or any byte) means the server is gone.
/// Ends when this side closes (dropping the socket tells the server).
async fn watch(shm: Arc<ClientShm>, core: Weak<ConnCore>, mut stream: UnixStream) {
    let mut probe = [0u8; 1];
    tokio::select! {
        _ = stream.read(&mut probe) => {}
        () = shm.watcher.notified() => return,
    }
    shm.gone.store(true, Ordering::Release);
    shm.writer_abort.store(true, Ordering::Release);
    shm.rx_waker.wake();
    for t in shm.parked.lock().iter() {
        t.unpark();
    }
    // Deliver what the server wrote before it went, then end the
    // connection. The holder, if any, was woken above and lets go soon.
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(core) = core.upgrade() {
            let mut rx = shm.rx.lock();
            shm.drain(&core, &mut rx);
            core.die("the server closed the connection".into());
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_sleeps_at_once_after_its_request_woke_the_server_or_while_it_is_away() {
        assert!(spins_for_frames(false, false), "the server runs: spin");
        assert!(
            !spins_for_frames(true, false),
            "the server's thread was just woken after a pause, most likely onto this core"
        );
        assert!(!spins_for_frames(false, true), "its turn is not now");
        assert!(!spins_for_frames(true, true));
    }

    #[test]
    fn a_request_that_wakes_the_server_comes_after_a_pause_unless_another_did_just_before() {
        let t = Instant::now();
        assert!(after_a_pause(None, t), "the first one");
        assert!(after_a_pause(Some(t), t + WAKE_PAUSE));
        assert!(after_a_pause(Some(t), t + Duration::from_millis(20)));
        assert!(
            !after_a_pause(Some(t), t + Duration::from_micros(3)),
            "back to back: the server sleeps between calls, and runs elsewhere"
        );
        assert!(
            !after_a_pause(Some(t + Duration::from_millis(1)), t),
            "a clock that went back"
        );
    }

    #[test]
    fn a_deadline_counts_from_the_first_time_it_is_asked() {
        let deadline = Deadline::new(Duration::from_secs(10), None);
        let before = Instant::now();
        let at = deadline.call();
        assert!(at >= before + Duration::from_secs(10));
        assert_eq!(deadline.call(), at, "the clock is read once");
        assert_eq!(
            deadline.wait(),
            at,
            "no budget: the wait ends with the call"
        );
        assert!(!deadline.budget_first());
    }

    #[test]
    fn a_budget_shorter_than_the_timeout_ends_the_wait_first() {
        let deadline = Deadline::new(Duration::from_secs(10), Some(Duration::from_millis(5)));
        assert!(deadline.budget_first());
        assert_eq!(
            deadline.call() - deadline.wait(),
            Duration::from_secs(10) - Duration::from_millis(5)
        );
    }

    #[test]
    fn durations_too_long_for_the_clock_make_a_deadline_anyway() {
        let deadline = Deadline::new(Duration::MAX, Some(Duration::MAX));
        assert!(deadline.wait() >= Instant::now() + crate::MAX_TIMEOUT / 2);
        assert!(!deadline.budget_first());
    }

    #[test]
    fn a_budget_longer_than_the_timeout_changes_nothing() {
        let deadline = Deadline::new(Duration::from_millis(5), Some(Duration::from_secs(10)));
        assert!(!deadline.budget_first());
        assert_eq!(deadline.wait(), deadline.call());
    }

    /// How long after the budget's start `deadline` ends the wait.
    fn waits_for(deadline: &Deadline) -> Duration {
        deadline.wait() - (deadline.call() - deadline.timeout)
    }

    #[test]
    fn a_call_seen_waiting_for_its_turn_may_wait_the_turn_wait() {
        let deadline = Deadline::new(Duration::from_secs(10), Some(Duration::from_millis(1)))
            .with_turn_wait(Duration::from_millis(50));
        assert_eq!(
            waits_for(&deadline),
            Duration::from_millis(1),
            "not waiting for a turn yet"
        );
        deadline.waits_turn(true);
        assert_eq!(waits_for(&deadline), Duration::from_millis(50));
        assert!(deadline.budget_first(), "the call's timeout is later still");
    }

    #[test]
    fn a_turn_that_begins_does_not_shorten_the_wait_again() {
        let deadline = Deadline::new(Duration::from_secs(10), Some(Duration::from_millis(1)))
            .with_turn_wait(Duration::from_millis(50));
        deadline.waits_turn(true);
        deadline.waits_turn(false);
        assert_eq!(
            waits_for(&deadline),
            Duration::from_millis(50),
            "the answer comes just after the turn begins: the wait goes on for it"
        );
    }

    #[test]
    fn without_a_turn_wait_a_call_seen_waiting_for_its_turn_stops_waiting_at_once() {
        let deadline = Deadline::new(Duration::from_secs(10), Some(Duration::from_millis(1)));
        deadline.waits_turn(false);
        assert_eq!(waits_for(&deadline), Duration::from_millis(1), "not yet");
        deadline.waits_turn(true);
        assert_eq!(waits_for(&deadline), Duration::ZERO);
        assert!(deadline.budget_first(), "it goes on later, not timed out");
        deadline.waits_turn(false);
        assert_eq!(
            waits_for(&deadline),
            Duration::ZERO,
            "a turn that begins does not bring the budget back"
        );
    }

    #[test]
    fn a_call_without_a_budget_waits_for_its_turn_until_its_timeout() {
        let deadline = Deadline::new(Duration::from_secs(10), None);
        deadline.waits_turn(true);
        assert_eq!(deadline.wait(), deadline.call());
        assert!(!deadline.budget_first());
    }

    #[test]
    fn a_turn_wait_never_outlasts_the_call() {
        let deadline = Deadline::new(Duration::from_millis(5), Some(Duration::from_millis(1)))
            .with_turn_wait(Duration::from_millis(50));
        deadline.waits_turn(true);
        assert_eq!(deadline.wait(), deadline.call());
        assert!(
            !deadline.budget_first(),
            "the call times out instead of going on later"
        );
    }

    #[test]
    fn a_turn_wait_shorter_than_the_budget_keeps_the_budget() {
        let deadline = Deadline::new(Duration::from_secs(10), Some(Duration::from_millis(5)))
            .with_turn_wait(Duration::from_millis(2));
        deadline.waits_turn(true);
        assert_eq!(waits_for(&deadline), Duration::from_millis(5));
    }

    #[test]
    fn a_call_says_how_it_waits_for_its_turn_and_whether_it_has_a_budget() {
        let secs = Duration::from_secs(10);
        let ms = Duration::from_millis(1);
        assert_eq!(
            Deadline::new(secs, None).turn_hint(),
            TurnHint::OnThread,
            "a blocking call waits on its thread until its timeout"
        );
        assert_eq!(
            Deadline::new(secs, Some(ms))
                .with_turn_wait(Duration::from_millis(50))
                .turn_hint(),
            TurnHint::Budgeted,
            "a call with a budget and a turn wait waits for its turn on its thread, \
             and its thread has other work between calls"
        );
        assert_eq!(
            Deadline::new(secs, Some(ms)).turn_hint(),
            TurnHint::Later,
            "a call with a budget and no turn wait goes on later instead"
        );
    }

    #[test]
    fn a_thread_gets_its_slot_back_once_nothing_else_holds_it() {
        let first = SyncSlot::for_this_thread();
        first.fill(Frame::error(
            1,
            None,
            &hearth_proto::ErrorBody::new(hearth_proto::ErrorCode::Internal, "x"),
        ));
        assert!(first.take().is_some());
        let ptr = Arc::as_ptr(&first);
        drop(first);
        let again = SyncSlot::for_this_thread();
        assert_eq!(Arc::as_ptr(&again), ptr, "reused");
        assert!(!again.is_ready() && again.take().is_none(), "and empty");
        let held = again.clone();
        drop(again);
        let other = SyncSlot::for_this_thread();
        assert_ne!(
            Arc::as_ptr(&other),
            Arc::as_ptr(&held),
            "still held: a new one"
        );
    }
}
