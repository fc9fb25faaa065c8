//! The server's end of a shared-memory connection: the ring thread that
//! reads the client's ring, answers quick requests itself, and hands the
//! rest to the connection's async machinery.
//!
//! Owns: one OS thread per shared-memory connection that spins briefly
//! (not at all while the client's thread last ran on this core, which it
//! leaves for another core when it finds the client there, nor while a
//! write of its connection waits on the blocking pool for its sync), then
//! sleeps on the ring's futex; lending its ring to the server's shared
//! poller (`poller.rs`) instead of spinning once busy connections fill the
//! cores, and the poller's look at a lent ring (`RingThread::poll_once`:
//! small whole requests that cannot block, everything else back to this
//! thread, in order); copying each record out of the segment and checking
//! it as a frame before anything decodes it; answering `ping`, `get`,
//! `get_with_metadata`, `put`, `patch` and `delete` on that thread through
//! the router's synchronous path (no task wake-ups on the hot path) and
//! writing the answer straight onto the client's ring — except a write
//! that waits for an `fdatasync` (fsync mode), answered from the blocking
//! pool so that this thread never waits for a disk; forwarding every
//! other frame, in order, to the connection loop (`conn.rs`) through a
//! bounded channel; and the link's reader, which also watches the socket:
//! its EOF is the client's death.
//!
//! Must never: read the segment except through hearth-shm's checked
//! consumer, sleep without a waker (the socket's EOF, shutdown and the end
//! of the connection all wake it; a lent ring's thread is woken by the
//! poller, which returns rings of ended connections), sleep past the time
//! a half-joined split message falls due (the connection then ends), keep running after
//! the connection ends (the connection's ticket is released only once the
//! thread has exited), let two threads read one ring at once (the ring
//! moves with its `RingThread`), or let one client's ring corruption reach
//! another connection (it ends this connection with an `invalid_input`
//! error frame, best effort).

use super::conn::{self, Admit, Answered, Conn, KeptSending};
use super::turns::{Group, turn_process};
use super::{Shared, Ticket};
use crate::message::{self, Reassembler};
use crate::ops::Request;
use crate::rt::block_on;
use crate::transport::shm::{Pushed, ShmOut, ShmSide, ShmWriter};
use crate::transport::{BoxFuture, FrameReader, Link, LinkError};
use hearth_proto::{ErrorBody, ErrorCode, Frame, FrameError, FrameHeader, FrameKind, HEADER_LEN};
use hearth_shm::{Consumer, Direction, Segment, ShmError, Spinner, SteadySpinner, TurnHint, Waker};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// Frames forwarded to the connection loop before the ring thread waits.
const FORWARD_BUFFER: usize = 64;

/// Largest record the shared poller answers itself (bigger ones take long
/// enough to parse and store that the poller's other rings would wait).
const POLLED_RECORD_MAX: usize = 16 * 1024;

/// Longest the ring thread spins for the next request before sleeping.
const SPIN: Duration = Duration::from_micros(100);

/// Longest the ring thread spins for room for the next piece of an answer
/// bigger than a ring record before it queues the rest for the writer
/// task: the client, woken by the first piece, copies a piece out (a half
/// ring, 128 KiB by default) in tens of microseconds.
const PIECE_SPIN: Duration = Duration::from_micros(200);

/// Safety net on the ring thread's futex sleep; every real wake-up (a
/// request, the socket's EOF, shutdown) comes through the futex. While a
/// split message is half joined the thread also wakes when it falls due
/// (`Reassembler::deadline`), if that comes sooner.
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// Least time between two moves of the ring thread off the client's core.
///
/// A ring thread that sleeps (its client paused for longer than [`SPIN`])
/// is woken next to its client and cannot move again until this has
/// passed: the two then take turns on one core, ~3 µs a turn, while the
/// other idles. With 10 ms a lone client process spent 10–20 ms stretches
/// that way (0.05–0.19 context switches a call, 0.70–1.09M gets/s); with
/// 1 ms 0.02–0.05 and 0.83–1.13M (docs/performance-log.md, "client
/// processes"), and no worse with another process busy on one core. A
/// move costs two `sched_setaffinity` calls: at most a thousand a second.
const MOVE_EVERY: Duration = Duration::from_millis(1);

/// What the ring thread hands to the connection loop.
enum Inbound {
    /// A whole message (joined from `MORE` frames) to route.
    Frame(Frame),
    /// A bad frame header: the loop answers it (and closes if fatal).
    Error(FrameError),
    /// The connection is over (corruption, an error frame already queued,
    /// or the client closed its ring).
    End,
}

/// The link's reader: frames the ring thread forwarded, and the socket's
/// EOF.
struct ShmReader {
    rx: mpsc::Receiver<Inbound>,
    stream: UnixStream,
    stop: Arc<AtomicBool>,
    waker: Waker<Segment>,
    /// The writer's abort flag: raised when the client is gone (the
    /// socket's EOF), closed or broke its ring, or the connection is over
    /// (this reader dropped); never by shutdown, which lets the writer
    /// deliver what is queued.
    writer_abort: Arc<AtomicBool>,
    /// Wakes the writer if it waits for room, to see `writer_abort`.
    writer_waker: Waker<Segment>,
}

impl ShmReader {
    fn stop_ring(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// The client is gone, or the connection over: nobody will read what
    /// the writer waits to write.
    fn stop_writer(&self) {
        self.writer_abort.store(true, Ordering::Release);
        // The writer looks at the flag after counting itself asleep: the
        // wake-up reaches it, or it sees the flag (ring.rs, L1).
        self.writer_waker.wake();
    }

    async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        let mut probe = [0u8; 1];
        tokio::select! {
            biased;
            inbound = self.rx.recv() => match inbound {
                Some(Inbound::Frame(frame)) => Ok(Some(frame)),
                Some(Inbound::Error(e)) => Err(LinkError::Frame(e)),
                // The ring thread ended the connection: the client closed
                // its ring (it is leaving) or broke it. Nobody will make
                // room for what the writer waits to write.
                Some(Inbound::End) => {
                    self.stop_ring();
                    self.stop_writer();
                    Err(LinkError::Closed)
                }
                // The ring thread is gone without a word: stopped (the
                // socket's EOF, already seen; or shutdown, which lets the
                // writer deliver what is queued), or it never started.
                None => {
                    self.stop_ring();
                    Err(LinkError::Closed)
                }
            },
            read = self.stream.read(&mut probe) => {
                // EOF (or any byte: nothing may come on the socket after
                // the upgrade) means the client is gone.
                self.stop_ring();
                self.stop_writer();
                match read {
                    Ok(0) => Err(LinkError::Closed),
                    Ok(_) => Err(LinkError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the client wrote on the socket after moving to shared memory",
                    ))),
                    Err(e) => Err(LinkError::Io(e)),
                }
            }
        }
    }
}

impl FrameReader for ShmReader {
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, LinkError>> {
        Box::pin(self.next())
    }
}

impl Drop for ShmReader {
    fn drop(&mut self) {
        self.stop_ring();
        self.stop_writer();
    }
}

/// Serves one connection that moved to shared memory until it ends, then
/// waits for its ring thread to exit before releasing the ticket.
pub(crate) async fn serve(shared: Arc<Shared>, side: ShmSide, ticket: Ticket) {
    let ShmSide {
        stream,
        segment,
        info,
        hands_off,
    } = side;
    let out = Arc::new(ShmOut::new(&segment, Direction::ServerToClient));
    let consumer = Consumer::new(segment.clone(), Direction::ClientToServer);
    let key = if hands_off { segment.key() } else { 0 };
    let stop = Arc::new(AtomicBool::new(false));
    let waker = consumer.waker();
    let (fwd, rx) = mpsc::channel(FORWARD_BUFFER);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    // Shutdown stops the ring thread (`stop`), not the writer: what is
    // queued for a client still reading reaches it, within the stall
    // timeout.
    let writer_abort = Arc::new(AtomicBool::new(false));
    let reader = ShmReader {
        rx,
        stream,
        stop: stop.clone(),
        waker: waker.clone(),
        writer_abort: writer_abort.clone(),
        writer_waker: out.room_waker(),
    };
    let writer = ShmWriter {
        out: out.clone(),
        stall: Some(shared.config.stall_timeout),
        abort: writer_abort,
    };
    let link = Link {
        info,
        reader: Box::new(reader),
        writer: Box::new(writer),
    };
    // Shutdown stops the ring thread from taking new requests at once.
    let down = {
        let mut signal = shared.shutdown_signal();
        let stop = stop.clone();
        let waker = waker.clone();
        tokio::spawn(async move {
            super::until_down(&mut signal).await;
            stop.store(true, Ordering::Release);
            waker.wake();
        })
    };
    let handle = shared.handle.clone();
    let ring_stop = stop.clone();
    let start = move |conn: Arc<Conn>| {
        let reassembler = conn.shared.reassembler();
        let ring = Box::new(RingThread {
            conn,
            rx: consumer,
            out,
            fwd,
            stop: ring_stop,
            handle,
            record: Vec::with_capacity(4096),
            reassembler,
            spinner: Spinner::new(SPIN),
            room: RefCell::new(SteadySpinner::new(PIECE_SPIN)),
            moved_at: None,
            key,
            quiet: None,
            on_pool: Arc::new(AtomicUsize::new(0)),
        });
        let spawned = std::thread::Builder::new()
            .name("hearth-shm-conn".into())
            .spawn(move || {
                ring.run();
                drop(done_tx);
            });
        if let Err(e) = spawned {
            // The closure (and with it `fwd`) is gone: the reader sees the
            // channel closed and the connection ends.
            tracing::warn!(error = %e, "could not start a shared-memory connection thread");
        }
    };
    shared.shm_opened();
    let ticket = conn::serve_with(shared.clone(), link, ticket, Some(Box::new(start))).await;
    stop.store(true, Ordering::Release);
    waker.wake();
    down.abort();
    let _ = done_rx.await;
    shared.shm_closed();
    drop(ticket);
}

/// The per-connection thread reading the client's ring, and everything it
/// needs to serve it (all of which moves to the shared poller while the
/// poller serves the ring).
pub(super) struct RingThread {
    conn: Arc<Conn>,
    rx: Consumer<Segment>,
    out: Arc<ShmOut>,
    fwd: mpsc::Sender<Inbound>,
    stop: Arc<AtomicBool>,
    handle: Handle,
    /// The last record taken off the ring (its buffer is reused).
    record: Vec<u8>,
    reassembler: Reassembler,
    spinner: Spinner,
    /// Waits for room between the pieces of a big answer.
    room: RefCell<SteadySpinner>,
    /// When this thread last moved off the client's core.
    moved_at: Option<Instant>,
    /// The segment's key when the client hands its turn over itself
    /// (`ATTACH_HANDOFF`), else 0.
    key: u32,
    /// A turn begun by a handoff: answers go onto the ring without waking
    /// the client, whom the client whose turn ended wakes.
    quiet: Option<Quiet>,
    /// Writes of this connection on the blocking pool, waiting for their
    /// `fdatasync` (`answer_on_pool`), not yet answered.
    on_pool: Arc<AtomicUsize>,
}

/// What the ring thread does when it finds the ring empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenEmpty {
    /// Busy connections fill the cores: the shared poller serves the ring.
    Lend,
    /// Sleep at once, until the client writes: a write of the connection
    /// waits on the blocking pool for its sync (hundreds of microseconds),
    /// and a client that waits for its answer (a blocking call, an await)
    /// sends nothing before it — spinning would only take a core from the
    /// pool's thread and the client, and its yields switch between them
    /// tens of times a write. A pipelining client's next request wakes
    /// the thread. Measured (`hearth bench --durability fsync --transport
    /// shm --ops 3000`, one blocking client, six alternated runs;
    /// docs/performance-log.md, "a ring thread that sleeps while its write
    /// syncs"): CPU 198–220 → 142–166 µs a put, context switches 18–27 →
    /// ~6 a put, puts a second 3,129–3,745 → 3,666–4,528; `bench channel`'s
    /// fsync rows the same or better, but for sixteen clients with 32
    /// writes in flight each within the noise (16,649 → 15,465 a second,
    /// medians of 8 runs, higher in 4 of 8). A get right after a put
    /// finds the thread asleep: alternating the two, pairs a second
    /// 4,023 → 4,225 and 4,933 → 5,544 in two sets of eight runs, the
    /// get's p50 15.2 → 19.4 µs in the first, 12.0 → 11.8 µs in the second.
    Sleep,
    /// Spin a while for the next request (the spinner's budget), then
    /// sleep.
    Spin,
}

/// [`WhenEmpty`] for a ring found empty: `crowded` when busy connections
/// fill the cores (`Poller::crowded`), `on_pool` writes of the connection
/// waiting on the blocking pool for their sync.
fn when_empty(crowded: bool, on_pool: usize) -> WhenEmpty {
    if crowded {
        WhenEmpty::Lend
    } else if on_pool > 0 {
        WhenEmpty::Sleep
    } else {
        WhenEmpty::Spin
    }
}

/// How long the ring thread's futex sleep lasts at `now` while a
/// half-joined split message falls due at `deadline`: until then, so that
/// it is ended on time without a timer of its own, but no longer than
/// [`IDLE_WAKE`].
fn sleep_for(deadline: Instant, now: Instant) -> Duration {
    deadline.saturating_duration_since(now).min(IDLE_WAKE)
}

/// Counts a write of the connection on the blocking pool until dropped.
struct OnPool(Arc<AtomicUsize>);

impl OnPool {
    fn new(count: &Arc<AtomicUsize>) -> OnPool {
        // Relaxed: a hint for the ring thread's choice to sleep; a stale
        // count costs a spin or a sleep, never a lost request (the
        // client's write wakes a sleeping ring thread).
        count.fetch_add(1, Ordering::Relaxed);
        OnPool(count.clone())
    }
}

impl Drop for OnPool {
    fn drop(&mut self) {
        // Relaxed: as in `new`.
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The start of a turn handed over by the client whose turn ended.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    /// Wake the client anyway from then on (`HANDOFF_WAIT` after the grant).
    until: Instant,
    /// The waiting request has been answered (quietly).
    answered: bool,
}

/// Why [`RingThread::serve`] returned.
enum Served {
    /// The connection is over.
    Exit,
    /// The ring is empty and busy connections already fill the cores
    /// (`Poller::crowded`): the shared poller should serve this ring.
    Crowded,
}

/// What one look at a lent ring came to ([`RingThread::poll_once`]).
pub(super) enum Polled {
    /// A request was answered.
    Served,
    /// Nothing to read.
    Empty,
    /// The ring goes back to its thread, which starts with this.
    Return(Then),
}

/// What a connection's thread does first when the poller gives its ring
/// back.
pub(super) enum Then {
    /// Carry on as usual (it checks for the end of the connection first).
    Carry,
    /// The ring has been idle: sleep on its futex until the next request.
    Sleep,
    /// Route the record the poller took off the ring but would not run.
    Record,
    /// Send this answer, which did not fit on the client's ring.
    Reply(Frame, Option<KeptSending>),
    /// The client broke the ring protocol.
    Corrupt(ShmError),
}

impl RingThread {
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.conn.shared.is_shutting_down()
    }

    fn run(mut self: Box<Self>) {
        let _awake = self.conn.shared.poller.clone().awake_guard();
        let mut then = Then::Carry;
        loop {
            if !self.resume(then) {
                return;
            }
            match self.serve() {
                Served::Exit => return,
                Served::Crowded => {
                    let poller = self.conn.shared.poller.clone();
                    (self, then) = poller.lend(self);
                }
            }
        }
    }

    /// Does what the poller left to do; false ends the thread.
    fn resume(&mut self, then: Then) -> bool {
        match then {
            Then::Carry => true,
            Then::Sleep => self.sleep(),
            Then::Record => {
                let record = std::mem::take(&mut self.record);
                let go_on = self.on_record(&record);
                self.record = record;
                go_on
            }
            Then::Reply(frame, sending) => {
                let sent = self.reply(frame);
                drop(sending);
                sent
            }
            Then::Corrupt(e) => {
                self.corrupt(&e);
                false
            }
        }
    }

    /// Sleeps on the ring's futex until there is data (or the end); false
    /// ends the thread. The safety-net wake-up of an idle connection goes
    /// straight back to sleep: it neither spins nor lends its ring (the
    /// connections that started together would all wake together).
    fn sleep(&mut self) -> bool {
        let abort = || self.stopped();
        let poller = &self.conn.shared.poller;
        poller.asleep();
        let slept = loop {
            // The clock is read only while a split message is half joined.
            let wait = self
                .reassembler
                .deadline()
                .map_or(IDLE_WAKE, |at| sleep_for(at, Instant::now()));
            if let Err(e) = self.rx.wait_for_data(Some(wait), &abort) {
                break Err(e);
            }
            if abort() || self.waiting() {
                break Ok(None);
            }
            if !self.reassembler.is_idle()
                && let Some(body) = self.reassembler.overdue(Instant::now())
            {
                break Ok(Some(body));
            }
        };
        poller.awake();
        match slept {
            Ok(None) => true,
            Ok(Some(body)) => {
                self.partial_refused(body);
                false
            }
            Err(e) => {
                self.corrupt(&e);
                false
            }
        }
    }

    /// Ends the connection because of a split message it left half sent
    /// (over a limit, or overdue).
    fn partial_refused(&self, body: ErrorBody) {
        self.conn.shared.count_partial_disconnect();
        self.fatal(body);
    }

    /// Reads and answers requests until the connection ends or the ring is
    /// empty on a crowded machine.
    fn serve(&mut self) -> Served {
        loop {
            if self.stopped() {
                return Served::Exit;
            }
            let mut record = std::mem::take(&mut self.record);
            let popped = self.rx.try_pop(&mut record);
            let go_on = match popped {
                Ok(true) => self.on_record(&record),
                Ok(false) => {
                    self.record = record;
                    if self.rx.is_closed() {
                        // The client closed its ring: it is leaving.
                        let _ = self.fwd.blocking_send(Inbound::End);
                        return Served::Exit;
                    }
                    // Relaxed: a hint (`OnPool`).
                    let on_pool = self.on_pool.load(Ordering::Relaxed);
                    match when_empty(self.conn.shared.poller.crowded(), on_pool) {
                        // Spinning here would only take turns with the
                        // other spinners: the poller serves this ring with
                        // the others instead.
                        WhenEmpty::Lend => return Served::Crowded,
                        WhenEmpty::Sleep => {
                            if !self.sleep() {
                                return Served::Exit;
                            }
                            continue;
                        }
                        WhenEmpty::Spin => {}
                    }
                    let mut here = self.rx.note_cpu();
                    if self.rx.peer_on(here) && hearth_shm::cores() > 1 && self.may_move() {
                        // The client's thread shares this core: move to
                        // another one (and spin there) rather than hand
                        // the core back and forth through the futex.
                        if hearth_shm::move_off(here) {
                            here = self.rx.note_cpu();
                        }
                    }
                    let rx = &self.rx;
                    let stop = &self.stop;
                    // Spinning while the client's thread shares this core
                    // only keeps it from sending: sleep at once then.
                    if self.spinner.spin_unless_shared(
                        || rx.peer_on(here),
                        || rx.has_data().unwrap_or(true) || stop.load(Ordering::Relaxed),
                    ) {
                        continue;
                    }
                    if !self.sleep() {
                        return Served::Exit;
                    }
                    continue;
                }
                Err(e) => {
                    self.corrupt(&e);
                    false
                }
            };
            self.record = record;
            if !go_on {
                return Served::Exit;
            }
        }
    }

    /// Whether this thread may move off its core now: at most once per
    /// [`MOVE_EVERY`] (a wake-up that keeps placing it back next to the
    /// client costs a move per period, not per call).
    fn may_move(&mut self) -> bool {
        let now = Instant::now();
        if self
            .moved_at
            .is_some_and(|at| now.duration_since(at) < MOVE_EVERY)
        {
            return false;
        }
        self.moved_at = Some(now);
        true
    }

    /// The poller's look at this ring: answers one small whole request
    /// that cannot block (a read, or a write the store takes without
    /// waiting), or says the ring must go back to its thread.
    pub(super) fn poll_once(&mut self) -> Polled {
        match self.rx.try_pop(&mut self.record) {
            Err(e) => Polled::Return(Then::Corrupt(e)),
            Ok(false) if self.rx.is_closed() => Polled::Return(Then::Carry),
            Ok(false) => Polled::Empty,
            Ok(true) => {
                if self.quiet.is_some_and(|q| q.answered) {
                    // Its client sent again after the quiet answer: the
                    // client whose turn ended woke it.
                    self.quiet = None;
                    self.conn.shared.poller.count_handoff();
                }
                match self.quick_frame() {
                    Some(frame) => {
                        // Counted before the answer (which signals the
                        // server's counters) so that a waiter sees both.
                        self.conn.shared.poller.count_polled();
                        let polled = self.answer_here(frame);
                        if let Some(q) = self.quiet.as_mut()
                            && !q.answered
                        {
                            if self.out.reader_asleep() {
                                q.answered = true;
                            } else {
                                // Awake already: it reads the answer
                                // without anyone's wake-up; nothing to
                                // hand over.
                                self.quiet = None;
                            }
                        }
                        polled
                    }
                    None => Polled::Return(Then::Record),
                }
            }
        }
    }

    /// The record just taken, as a frame the poller may answer itself:
    /// a small, whole, well-formed request for an inline operation, and
    /// for a write, one the store takes now.
    fn quick_frame(&self) -> Option<Frame> {
        let record = &self.record;
        if record.len() > POLLED_RECORD_MAX || !self.reassembler.is_idle() {
            return None;
        }
        let header = FrameHeader::decode(record.first_chunk::<HEADER_LEN>()?).ok()?;
        if header.kind != FrameKind::Request
            || header.flags.has_more()
            || header.payload_len as usize != record.len() - HEADER_LEN
        {
            return None;
        }
        let op = header.operation?;
        if !conn::answered_without_waiting(&self.conn.shared, op, record.len()) {
            return None;
        }
        Some(Frame {
            header,
            payload: record[HEADER_LEN..].to_vec(),
        })
    }

    /// Answers `frame` on the poller: the answer goes onto the client's
    /// ring if it fits there now, or back to the connection's thread.
    fn answer_here(&mut self, frame: Frame) -> Polled {
        let Some((reply, sending)) = conn::answer_inline(&self.conn, frame, Admit::Here) else {
            return Polled::Served;
        };
        match self.onto_ring(&reply) {
            Ok(true) => Polled::Served,
            Ok(false) => {
                let kept = sending.map(|s| s.keep(&self.conn));
                Polled::Return(Then::Reply(reply, kept))
            }
            Err(e) => Polled::Return(Then::Corrupt(e)),
        }
    }

    /// The server this ring's connection belongs to.
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.conn.shared
    }

    /// Reports the poller's core as the core reading this ring (so that
    /// a client sharing it yields and sleeps instead of spinning, H3a).
    pub(super) fn note_cpu_as(&self, cpu: Option<u32>) {
        self.rx.note_cpu_as(cpu);
    }

    /// Whether the client has sent something not yet read (or closed its
    /// ring): either way the ring needs a look from whoever serves it.
    pub(super) fn waiting(&self) -> bool {
        self.rx.has_data().unwrap_or(true) || self.rx.is_closed()
    }

    /// Whose turns on the poller this connection takes part in: its
    /// [process](Self::client_process)'s, and — as its client's hint
    /// says (`Consumer::note_turns`) and `many_later` (many processes'
    /// busy clients go on later when told to wait: `turns::many_later`)
    /// allows, `turns::shares_turns` — those of every connection that
    /// shares turns, whatever its process. Read when the ring is lent and
    /// at every look the poller takes at it.
    pub(super) fn turn_group(&self, many_later: bool) -> Group {
        Group::new(self.client_process(), self.turn_hint(), many_later)
    }

    /// How the client said its calls wait for their turn.
    pub(super) fn turn_hint(&self) -> TurnHint {
        self.rx.peer_turns()
    }

    /// The client's process for turns ([`turn_process`]): its pid, or
    /// (where the platform cannot say, or says 0: a peer outside the
    /// server's pid namespace) a value of this connection alone.
    pub(super) fn client_process(&self) -> u32 {
        turn_process(self.client_pid(), self.conn.id)
    }

    /// The client's pid, where the socket's credentials gave one.
    pub(super) fn client_pid(&self) -> Option<u32> {
        self.conn
            .info
            .peer
            .and_then(|p| p.pid)
            .and_then(|pid| u32::try_from(pid).ok())
    }

    /// The thread the client says reads this ring for its own calls (a
    /// hint, `Consumer::peer_thread`), if it says.
    pub(super) fn client_thread(&self) -> Option<u32> {
        self.rx.peer_thread()
    }

    /// Tells the client that the poller serves other clients first: its
    /// answer is not coming soon, so it should sleep, not spin.
    pub(super) fn note_away(&self) {
        self.rx.note_away();
    }

    /// Whether this ring's client last reported the core `cpu`.
    pub(super) fn client_on(&self, cpu: Option<u32>) -> bool {
        cpu.is_some_and(|c| self.rx.peer_on(c))
    }

    /// Whether this ring's client last reported a core other than `cpu`
    /// (the poller's): it can send without the poller giving `cpu` up.
    pub(super) fn client_elsewhere(&self, cpu: Option<u32>) -> bool {
        cpu.is_some_and(|c| self.rx.peer_elsewhere(c))
    }

    /// Ends the connection because the client broke the ring protocol: an
    /// error frame (best effort: the ring may be unusable), then the end.
    fn corrupt(&self, e: &ShmError) {
        tracing::warn!(conn = self.conn.id, error = %e, "closing a shared-memory client that corrupted its segment");
        self.fatal(ErrorBody::new(ErrorCode::InvalidInput, e.to_string()));
    }

    fn fatal(&self, body: ErrorBody) {
        let frame = Frame::error(0, None, &body);
        // Best effort: a ring the client broke may refuse it.
        if !matches!(self.onto_ring(&frame), Ok(true)) {
            self.queue(frame);
        }
        let _ = self.fwd.blocking_send(Inbound::End);
    }

    fn forward(&self, inbound: Inbound) -> bool {
        self.fwd.blocking_send(inbound).is_ok()
    }

    /// Checks one record as a frame and routes it; false ends the thread.
    fn on_record(&mut self, record: &[u8]) -> bool {
        let Some(head) = record.first_chunk::<HEADER_LEN>() else {
            self.fatal(ErrorBody::new(
                ErrorCode::InvalidInput,
                format!(
                    "a shared-memory record of {} bytes is shorter than a frame header",
                    record.len()
                ),
            ));
            return false;
        };
        let header = match FrameHeader::decode(head) {
            Ok(header) => header,
            Err(e) => {
                let fatal = e.is_fatal();
                return self.forward(Inbound::Error(e)) && !fatal;
            }
        };
        let max = self.conn.shared.config.max_frame_bytes as usize;
        if record.len() > max {
            self.forward(Inbound::Error(FrameError::TooLarge {
                len: record.len() as u64,
                max,
            }));
            return false;
        }
        if header.payload_len as usize != record.len() - HEADER_LEN {
            self.fatal(ErrorBody::new(
                ErrorCode::InvalidInput,
                format!(
                    "a frame header says {} payload bytes but its shared-memory record holds {}",
                    header.payload_len,
                    record.len() - HEADER_LEN
                ),
            ));
            return false;
        }
        let frame = Frame {
            header,
            payload: record[HEADER_LEN..].to_vec(),
        };
        match self.reassembler.push(frame, Instant::now) {
            Ok(Some(message)) => self.dispatch(message),
            Ok(None) => true,
            Err(body) => {
                self.partial_refused(body);
                false
            }
        }
    }

    /// Answers a quick request here, or forwards the message in order.
    fn dispatch(&mut self, message: Frame) -> bool {
        let request = message.header.kind == FrameKind::Request;
        if request && let Some(parsed) = conn::streams_inline(&self.conn, &message) {
            return self.stream_here(&message, parsed);
        }
        let answered = match message.header.operation {
            Some(op) if request => conn::answered(op, self.conn.shared.writes_sync()),
            _ => Answered::AsTask,
        };
        match answered {
            Answered::Here => {}
            Answered::OnPool => return self.answer_on_pool(message),
            Answered::AsTask => return self.forward(Inbound::Frame(message)),
        }
        match conn::answer_inline(&self.conn, message, Admit::Here) {
            // The guard lives until the answer is on the ring or queued.
            Some((reply, _sending)) => self.reply(reply),
            None => true,
        }
    }

    /// Answers a write that waits for its `fdatasync` (`conn::answered`)
    /// on the blocking pool, straight onto the client's ring from there if
    /// the answer fits now (else through the writer task): this thread
    /// goes on reading the ring meanwhile, and writes of several
    /// connections (or several of one) share a sync. The pool thread never
    /// waits for the client: an answer that finds the ring full is queued
    /// by a task, which waits for room in the output queue holding no
    /// thread (waiting there, a client that stopped reading held one pool
    /// thread per write it sent, every thread of the pool for 512 writes).
    /// It is entered in flight here, before this thread reads on, so that
    /// a reused id, the in-flight limit and a cancel apply to it as to any
    /// request, and shutdown waits for it. False ends the thread.
    fn answer_on_pool(&self, message: Frame) -> bool {
        let (id, op) = (message.header.request_id, message.header.operation);
        if let Some(op) = op
            && let Err(refused) = self.conn.begin_pooled(id, op)
        {
            return self.reply(refused);
        }
        let (conn, out, handle) = (self.conn.clone(), self.out.clone(), self.handle.clone());
        let on_pool = OnPool::new(&self.on_pool);
        self.handle.spawn_blocking(move || {
            let _on_pool = on_pool;
            let Some((reply, sending)) = conn::answer_inline(&conn, message, Admit::Begun) else {
                return;
            };
            // A ring found damaged here is the writer task's to report.
            if matches!(out.try_send_whole(&reply, true), Ok(true)) {
                return;
            }
            // The in-flight guard goes with the answer until it is queued.
            let sending = sending.map(|s| s.keep(&conn));
            let queuing = conn.clone();
            handle.spawn(async move {
                let _sending = sending;
                queuing.send(reply).await;
            });
        });
        true
    }

    /// Answers a small list, query or search here (`conn::streams_inline`):
    /// its chunks, then its end, straight onto the client's ring while they
    /// fit; once one had to be queued for the writer task, the rest follow
    /// it there, so that the stream stays in order.
    fn stream_here(&self, message: &Frame, parsed: Result<Request, ErrorBody>) -> bool {
        let queued = Cell::new(false);
        let alive = Cell::new(true);
        let send = |frame: Frame| -> bool {
            if !alive.get() {
                return false;
            }
            let sent = self.reply_after(frame, &queued);
            alive.set(sent);
            sent
        };
        match conn::answer_stream_inline(&self.conn, message, parsed, send) {
            // The guard lives until the end is on the ring or queued.
            Some((end, _sending)) => send(end),
            None => true,
        }
    }

    /// Writes a final answer straight onto the client's ring when it fits
    /// now (in pieces if it is bigger than a record); otherwise queues it
    /// for the writer task.
    fn reply(&self, frame: Frame) -> bool {
        self.reply_after(frame, &Cell::new(false))
    }

    /// [`reply`](Self::reply) for a frame that must not overtake frames
    /// queued before it: queued at once if `queued` says one was, and
    /// `queued` set when this one has to be.
    fn reply_after(&self, frame: Frame, queued: &Cell<bool>) -> bool {
        if queued.get() {
            return self.queue(frame);
        }
        if HEADER_LEN + frame.payload.len() > self.out.max_frame() {
            return self.send_in_pieces(frame, queued);
        }
        match self.onto_ring(&frame) {
            Ok(true) => true,
            Ok(false) => {
                queued.set(true);
                self.queue(frame)
            }
            Err(e) => {
                self.corrupt(&e);
                false
            }
        }
    }

    /// Sends an answer bigger than a ring record as `MORE` pieces from this
    /// thread, spinning for room between them while the client copies them
    /// out (`room`, up to [`PIECE_SPIN`] a wait), so that a big document
    /// costs no hop through the writer task and the blocking pool. A piece
    /// that finds no room in time is queued for the writer task with every
    /// piece after it, in order (and `queued` set).
    fn send_in_pieces(&self, frame: Frame, queued: &Cell<bool>) -> bool {
        let mut pieces = message::split(frame, self.out.max_frame()).into_iter();
        while let Some(piece) = pieces.next() {
            loop {
                match self.out.push(&piece, self.quiet.is_none()) {
                    Ok(Pushed::Done { .. }) => break,
                    Ok(Pushed::Full { head_seen }) => {
                        let (out, stop) = (&self.out, &self.stop);
                        let room = self
                            .room
                            .borrow_mut()
                            .spin(|| out.room_since(head_seen) || stop.load(Ordering::Relaxed));
                        if room && !self.stopped() {
                            continue;
                        }
                        queued.set(true);
                        return std::iter::once(piece).chain(pieces).all(|p| self.queue(p));
                    }
                    Err(e) => {
                        self.corrupt(&e);
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Writes `frame` straight onto the client's ring if it fits there now
    /// (true); false if it is too big for one record or the ring is full.
    fn onto_ring(&self, frame: &Frame) -> Result<bool, ShmError> {
        self.out.try_send_whole(frame, self.quiet.is_none())
    }

    /// This connection's segment key if its client hands turns over
    /// itself, else 0 (`ATTACH_HANDOFF`).
    pub(super) fn handoff_key(&self) -> u32 {
        self.key
    }

    /// The turn of this ring's client ended and the turn of the client of
    /// segment `next` begins: asks this client to wake that one on its way
    /// to sleep (the poller's "away", with a name).
    pub(super) fn hand_over(&self, next: u32) {
        self.rx.note_handoff(next);
    }

    /// This ring's turn begins by a handoff: the answer to the request
    /// it waits with goes onto the ring without waking the client (the
    /// client whose turn ended wakes it), until the client sends again or
    /// `until`, whichever comes first ([`end_quiet`](Self::end_quiet)).
    pub(super) fn answer_quietly_until(&mut self, until: Instant) {
        self.quiet = Some(Quiet {
            until,
            answered: false,
        });
    }

    /// Ends a quiet start that has run to its end at `now` — counted as a
    /// missed handoff: its predecessor did not wake it (it was not running
    /// to see the name) — or at once with `None` (the ring goes back to
    /// its thread), waking the client if it still sleeps.
    pub(super) fn end_quiet(&mut self, now: Option<Instant>) {
        let Some(q) = self.quiet else {
            return;
        };
        match now {
            Some(now) if now < q.until => return,
            Some(_) => self.conn.shared.poller.count_handoff_missed(),
            None => {}
        }
        self.quiet = None;
        self.out.notify();
    }

    /// Queues an answer for the writer task, which splits it and waits for
    /// room on the ring; false if the connection is gone.
    fn queue(&self, frame: Frame) -> bool {
        // Relaxed: a statistic.
        self.conn.shared.shm_queued.fetch_add(1, Ordering::Relaxed);
        block_on(&self.handle, self.conn.send(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_thread_wakes_when_a_half_joined_message_falls_due() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(300);
        assert_eq!(sleep_for(soon, now), Duration::from_millis(300));
        assert_eq!(sleep_for(now, soon), Duration::ZERO);
    }

    #[test]
    fn a_ring_thread_sleeps_no_longer_than_the_safety_net_for_a_message_due_later() {
        let now = Instant::now();
        assert_eq!(sleep_for(now + 2 * IDLE_WAKE, now), IDLE_WAKE);
    }

    #[test]
    fn a_ring_found_empty_while_a_write_waits_for_its_sync_sleeps_at_once() {
        assert_eq!(when_empty(false, 1), WhenEmpty::Sleep);
        assert_eq!(when_empty(false, 32), WhenEmpty::Sleep);
    }

    #[test]
    fn a_ring_found_empty_with_nothing_on_the_pool_is_spun_on() {
        assert_eq!(when_empty(false, 0), WhenEmpty::Spin);
    }

    #[test]
    fn a_crowded_machine_lends_the_ring_to_the_poller_whatever_waits_on_the_pool() {
        assert_eq!(when_empty(true, 0), WhenEmpty::Lend);
        assert_eq!(when_empty(true, 3), WhenEmpty::Lend);
    }

    #[test]
    fn a_write_is_counted_on_the_pool_until_its_guard_drops() {
        let count = Arc::new(AtomicUsize::new(0));
        let first = OnPool::new(&count);
        let second = OnPool::new(&count);
        assert_eq!(count.load(Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(count.load(Ordering::Relaxed), 1);
        // A panic on the pool drops it too.
        let moved = std::thread::spawn(move || {
            let _held = second;
            panic!("the store panicked");
        });
        assert!(moved.join().is_err());
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }
}
