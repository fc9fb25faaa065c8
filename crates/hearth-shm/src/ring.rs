//! One single-producer single-consumer ring of records, and the sleep/wake
//! protocol on its futex words.
//!
//! Owns: the control block's layout ([`RingCtrl`]), the record format
//! (8-byte header: `u32` length, `u32` its bitwise complement; the body
//! padded to 8 bytes; records may wrap around the end of the data area), the
//! [`Producer`] and [`Consumer`] halves with their local, trusted copies of
//! the positions, validation of every index and length read from the shared
//! control block, and the wait/wake handshake (a side about to sleep counts
//! itself in its `sleeping` word, fences, re-checks, then futex-waits on its
//! `wake` word; the other side, after publishing, fences and wakes only if
//! the count is not zero). Works over any [`RingMemory`]: a mapped segment, or plain heap
//! memory for tests, loom models, the fuzz target and Miri.
//!
//! Must never: trust the peer's index or length to address memory (every
//! access is `index & mask` into the data slice, and lengths are checked
//! against what was published and the record limit before copying), read a
//! record before the Acquire load of `tail` that published it, let the
//! producer overwrite bytes before the Acquire load of `head` that freed
//! them, sleep without the fence-and-recheck, or block without a timeout
//! the caller chose.
//!
//! Positions (`head`, `tail`) are byte counts since the ring was created,
//! never reset, always multiples of 8; `tail - head` is the number of
//! bytes published and not yet consumed, at most the capacity. All data is
//! read and written as 64-bit atomic words, so a peer scribbling at the same
//! time gives garbage values, never undefined behaviour.

use crate::error::ShmError;
use crate::layout::{Direction, Layout};
use crate::sync::{
    AtomicU32, AtomicU64, Ordering, STREAMING, fence, futex_wait, futex_wake, store_streaming,
    streaming_fence,
};
use std::sync::Arc;
use std::time::Duration;

/// Bytes of a record's header.
///
/// ```
/// assert_eq!(hearth_shm::RECORD_HEADER, 8);
/// ```
pub const RECORD_HEADER: usize = 8;

/// Bytes a record with a body of `len` bytes takes in the ring (header plus
/// the body rounded up to 8).
///
/// ```
/// assert_eq!(hearth_shm::record_bytes(0), 8);
/// assert_eq!(hearth_shm::record_bytes(1), 16);
/// assert_eq!(hearth_shm::record_bytes(24), 32);
/// ```
pub const fn record_bytes(len: usize) -> usize {
    RECORD_HEADER + ((len + 7) & !7)
}

/// The largest record body a ring of `capacity` bytes carries: a record
/// takes at most half the ring, so a producer never needs it empty.
///
/// ```
/// assert_eq!(hearth_shm::max_record(4096), 2040);
/// ```
pub const fn max_record(capacity: usize) -> usize {
    capacity / 2 - RECORD_HEADER
}

/// Bytes of free ring space after its tail that [`Producer::own_ahead`]
/// takes into the producer's cache: a record up to this size (a get's
/// answer, a put) is then written into lines the producer owns already.
///
/// ```
/// assert_eq!(hearth_shm::OWN_AHEAD, 512);
/// ```
pub const OWN_AHEAD: usize = 512;

/// Record bodies of at least this many bytes are written with
/// non-temporal stores where the platform has them (x86-64): the lines go
/// towards memory instead of waiting, one after another, for the
/// consumer's core to give each up. A raw ring round trip on this
/// project's 2-core VM: 16 KiB answers 10.0 → 3.5 µs, 64 KiB 39.5 → 13.1
/// µs, 4 KiB 2.55 → 1.50 µs; below ~2 KiB the consumer's reads from memory
/// cost more than the waits saved (260 bytes: 0.25 → 0.98 µs).
///
/// ```
/// assert_eq!(hearth_shm::STREAM_FROM, 4096);
/// ```
pub const STREAM_FROM: usize = 4096;

/// Bytes of a cache line: [`Producer::own_ahead`] stores one word into
/// each.
const LINE: u64 = 64;

/// What [`current_cpu`] says where the platform cannot say; it is reported
/// as 0 ("unknown") and matches no peer.
const UNKNOWN_CPU: u32 = u32::MAX;

/// The CPU the calling thread runs on, where the platform can say.
///
/// ```
/// if let Some(cpu) = hearth_shm::this_cpu() {
///     assert!((cpu as usize) < 1 << 20);
/// }
/// ```
pub fn this_cpu() -> Option<u32> {
    Some(current_cpu()).filter(|&cpu| cpu != UNKNOWN_CPU)
}

/// The `consumer_cpu` report of a consumer that is not reading its ring
/// for now ([`Consumer::note_away`]); no CPU has this number.
const AWAY: u32 = u32::MAX;

/// A report with this bit set is "away" too, and its other bits name the
/// segment key ([`Segment::key`](crate::Segment::key)) of the connection
/// whose turn begins: the client, on its way to sleep, wakes that
/// connection of its own process on its own core ([`Consumer::note_handoff`]).
/// Never a CPU report (CPU + 1 stays far below) nor [`AWAY`] (keys stop
/// at 0x7FFF_FFFE).
const HANDOFF: u32 = 1 << 31;

/// Whether `report` says "away": plain, or with a handoff ([`HANDOFF`]).
fn is_away(report: u32) -> bool {
    report & HANDOFF != 0
}

/// The `consumer_cpu` report of the peer of the consumer of the ring going
/// `dir`: what the consumer of the other ring last wrote.
fn peer_report<M: RingMemory>(mem: &M, dir: Direction) -> u32 {
    // Relaxed: a hint (see `Consumer::note_cpu_as`).
    mem.ctrl(dir.reverse())
        .data_wait
        .cpu
        .load(Ordering::Relaxed)
}

/// Whether a `consumer_cpu` `report` names `cpu` (never when this side
/// cannot say which core it is on).
fn reports_cpu(report: u32, cpu: u32) -> bool {
    cpu != UNKNOWN_CPU && report == cpu.wrapping_add(1)
}

/// Writes `value` into a hint `word` of the consumer's wait line
/// (`consumer_cpu`, `consumer_thread`), only when it changes: the line is
/// shared with the peer, and a store of the same value would still take
/// it from the peer's cache.
fn store_hint(word: &AtomicU32, value: u32) {
    // Relaxed: a scheduling hint; nothing is published through it and a
    // stale or forged value only changes how the peer schedules itself.
    if word.load(Ordering::Relaxed) != value {
        word.store(value, Ordering::Relaxed);
    }
}

/// The CPU the calling thread runs on, or [`UNKNOWN_CPU`].
/// (Under Miri, which cannot make the call, the platform cannot say.)
fn current_cpu() -> u32 {
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
    {
        u32::try_from(rustix::thread::sched_getcpu()).unwrap_or(UNKNOWN_CPU)
    }
    #[cfg(any(not(any(target_os = "linux", target_os = "android")), miri))]
    {
        UNKNOWN_CPU
    }
}

/// The producer's cache line: `tail` at +0, `closed` at +8.
#[repr(C, align(64))]
struct TailLine {
    tail: AtomicU64,
    closed: AtomicU32,
}

/// The consumer's cache line: `head` at +0.
#[repr(C, align(64))]
struct HeadLine {
    head: AtomicU64,
}

/// A futex word, the flag saying someone sleeps on it, where and as
/// which thread the waiter runs, and how it waits for a turn: `wake` at
/// +0, `sleeping` at +4, `cpu` at +8, `thread` at +12, `turns` at +16.
#[repr(C, align(64))]
struct WaitLine {
    wake: AtomicU32,
    sleeping: AtomicU32,
    /// In the data line: the CPU the consumer's thread last reported, plus
    /// one (0: never reported). A hint for the peer's spinner, never
    /// trusted for anything else. Unused (zero) in the space line.
    cpu: AtomicU32,
    /// In the data line: the kernel id of the thread that reads the ring
    /// for its own calls (0: none, or not said). A hint for the peer's
    /// scheduling, as `cpu`. Unused (zero) in the space line.
    thread: AtomicU32,
    /// In the data line: 1 when the consumer's calls wait for their turn
    /// on their own thread, so that the peer may hold them back behind
    /// other processes' clients (0: not said). A hint, as `cpu`. Unused
    /// (zero) in the space line.
    turns: AtomicU32,
}

/// A ring's control block: 256 bytes, four 64-byte lines.
///
/// | offset | field | written by |
/// |---|---|---|
/// | +0 | `tail` u64: bytes published | producer |
/// | +8 | `closed` u32: 1 once the producer is done | producer |
/// | +64 | `head` u64: bytes consumed | consumer |
/// | +128 | `data_wake` u32: futex the consumer sleeps on | producer (bumps) |
/// | +132 | `consumer_sleeping` u32: consumers asleep (0 or 1) | consumer |
/// | +136 | `consumer_cpu` u32: CPU + 1 the consumer last ran on (0: unknown; `u32::MAX`: not reading for now), a hint | consumer |
/// | +140 | `consumer_thread` u32: kernel id of the thread reading for its own calls (0: none or unknown), a hint | consumer |
/// | +144 | `consumer_turns` u32: how its calls wait for a turn ([`TurnHint`]: 1 on their own thread, 2 they go on asynchronously, 3 on their own thread with a budget; 0 not said), a hint | consumer |
/// | +192 | `space_wake` u32: futex the producer sleeps on | consumer (bumps) |
/// | +196 | `producer_sleeping` u32: writers asleep waiting for room | producer |
///
/// ```
/// use hearth_shm::RingCtrl;
/// let ctrl = RingCtrl::new();
/// # let _ = ctrl;
/// ```
#[repr(C)]
pub struct RingCtrl {
    tail: TailLine,
    head: HeadLine,
    data_wait: WaitLine,
    space_wait: WaitLine,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<RingCtrl>() == crate::layout::CTRL_BYTES);
    assert!(std::mem::align_of::<RingCtrl>() == 64);
    assert!(std::mem::offset_of!(RingCtrl, head) == 64);
    assert!(std::mem::offset_of!(RingCtrl, data_wait) == 128);
    assert!(std::mem::offset_of!(RingCtrl, space_wait) == 192);
    assert!(std::mem::offset_of!(WaitLine, cpu) == 8);
    assert!(std::mem::offset_of!(WaitLine, thread) == 12);
    assert!(std::mem::offset_of!(WaitLine, turns) == 16);
};

impl Default for RingCtrl {
    fn default() -> Self {
        RingCtrl::new()
    }
}

impl std::fmt::Debug for RingCtrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingCtrl")
            .field("tail", &self.tail.tail.load(Ordering::Relaxed))
            .field("head", &self.head.head.load(Ordering::Relaxed))
            .field("closed", &self.tail.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RingCtrl {
    /// A control block for an empty ring (all zero, as in a fresh segment).
    pub fn new() -> RingCtrl {
        RingCtrl {
            tail: TailLine {
                tail: AtomicU64::new(0),
                closed: AtomicU32::new(0),
            },
            head: HeadLine {
                head: AtomicU64::new(0),
            },
            data_wait: WaitLine {
                wake: AtomicU32::new(0),
                sleeping: AtomicU32::new(0),
                cpu: AtomicU32::new(0),
                thread: AtomicU32::new(0),
                turns: AtomicU32::new(0),
            },
            space_wait: WaitLine {
                wake: AtomicU32::new(0),
                sleeping: AtomicU32::new(0),
                cpu: AtomicU32::new(0),
                thread: AtomicU32::new(0),
                turns: AtomicU32::new(0),
            },
        }
    }

    /// Overwrites every field with values drawn from `next` (a hostile
    /// peer's view of the block).
    fn scribble(&self, next: &mut impl FnMut() -> u64) {
        self.tail.tail.store(next(), Ordering::Relaxed);
        self.tail.closed.store(next() as u32, Ordering::Relaxed);
        self.head.head.store(next(), Ordering::Relaxed);
        for line in [&self.data_wait, &self.space_wait] {
            line.wake.store(next() as u32, Ordering::Relaxed);
            line.sleeping.store(next() as u32, Ordering::Relaxed);
            line.cpu.store(next() as u32, Ordering::Relaxed);
            line.thread.store(next() as u32, Ordering::Relaxed);
            line.turns.store(next() as u32, Ordering::Relaxed);
        }
    }
}

pub(crate) mod sealed {
    /// Keeps [`RingMemory`](super::RingMemory) implemented only here.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

/// Memory holding rings: a mapped [`Segment`](crate::Segment) or
/// [`HeapMemory`]. Sealed: only this crate implements it.
pub trait RingMemory: sealed::Sealed + Send + Sync + 'static {
    /// The layout (ring capacities).
    fn layout(&self) -> Layout;
    /// The control block of the ring going `dir`.
    fn ctrl(&self, dir: Direction) -> &RingCtrl;
    /// The data area of the ring going `dir`, as 64-bit words (a power of
    /// two of them).
    fn data(&self, dir: Direction) -> &[AtomicU64];
    /// Puts every page of the data area of the ring going `dir` in place in
    /// this process's view of the memory, ahead of use (a hint: failures
    /// are ignored, the pages then come one fault at a time). Heap memory
    /// has nothing to do.
    fn populate(&self, _dir: Direction) {}
}

/// How far round its first lap a ring's producer or consumer goes before it
/// has the whole ring put in place ([`RingMemory::populate`]): until then,
/// each new 4 KiB page of a segment costs a page fault in each process, a
/// trap that takes 3–7 µs on the project's VM (every ~73 gets; sixteen
/// fresh connections sharing 100,000 gets spent ~4 % of the phase in
/// them). A connection that never carries this much — most idle ones —
/// keeps only the pages it touched resident. The call that passes it pays
/// for the whole ring at once: 0.16–0.21 ms for 256 KiB (`strace -T`),
/// once per ring and side.
const POPULATE_AFTER: u64 = 16 * 1024;

/// Rings larger than this are never populated ahead: their pages come as
/// the traffic first reaches them (a 64 MiB ring made resident in one go
/// would be a long stall and memory the connection may never use).
const POPULATE_MAX: u64 = 1 << 20;

/// The position (a producer's tail, a consumer's head) past which a side
/// of a ring has the whole ring put in place, once ([`POPULATE_AFTER`]).
#[derive(Debug, Clone, Copy)]
struct PopulateAt(u64);

impl PopulateAt {
    /// For a side of a ring of `geo`: never above [`POPULATE_MAX`].
    fn new(geo: &Geometry) -> PopulateAt {
        if geo.capacity > POPULATE_AFTER && geo.capacity <= POPULATE_MAX {
            PopulateAt(POPULATE_AFTER)
        } else {
            PopulateAt(u64::MAX)
        }
    }

    /// Whether the side, now at `pos`, should populate the ring: true the
    /// first time `pos` reaches the mark, never again.
    fn reached(&mut self, pos: u64) -> bool {
        if pos < self.0 {
            return false;
        }
        self.0 = u64::MAX;
        true
    }
}

/// Rings in ordinary heap memory: for tests, loom models, the fuzz target
/// and Miri. Same protocol, same validation as a segment.
///
/// ```
/// use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
/// use std::sync::Arc;
/// let mem = Arc::new(HeapMemory::new(Layout::for_memory(64, 64)?));
/// let mut tx = Producer::new(mem.clone(), Direction::ClientToServer);
/// let mut rx = Consumer::new(mem, Direction::ClientToServer);
/// assert!(tx.push(&[b"hello"])?);
/// let mut out = Vec::new();
/// assert!(rx.try_pop(&mut out)?);
/// assert_eq!(out, b"hello");
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub struct HeapMemory {
    layout: Layout,
    c2s: RingCtrl,
    s2c: RingCtrl,
    c2s_data: Box<[AtomicU64]>,
    s2c_data: Box<[AtomicU64]>,
}

impl std::fmt::Debug for HeapMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapMemory")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn words(capacity: usize) -> Box<[AtomicU64]> {
    (0..capacity / 8).map(|_| AtomicU64::new(0)).collect()
}

impl HeapMemory {
    /// Two empty rings with `layout`'s capacities.
    pub fn new(layout: Layout) -> HeapMemory {
        HeapMemory {
            layout,
            c2s: RingCtrl::new(),
            s2c: RingCtrl::new(),
            c2s_data: words(layout.capacity(Direction::ClientToServer)),
            s2c_data: words(layout.capacity(Direction::ServerToClient)),
        }
    }

    /// Overwrites every control field and data word of both rings with
    /// values taken from `bytes` (cycled; nothing happens if it is empty):
    /// arbitrary contents, as a hostile peer could leave them.
    pub fn scribble(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut at = 0usize;
        let mut next = || {
            let mut w = [0u8; 8];
            for b in &mut w {
                *b = bytes[at % bytes.len()];
                at += 1;
            }
            u64::from_le_bytes(w)
        };
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            self.ctrl(dir).scribble(&mut next);
            for word in self.data(dir) {
                word.store(next(), Ordering::Relaxed);
            }
        }
    }
}

impl sealed::Sealed for HeapMemory {}

impl RingMemory for HeapMemory {
    fn layout(&self) -> Layout {
        self.layout
    }

    fn ctrl(&self, dir: Direction) -> &RingCtrl {
        match dir {
            Direction::ClientToServer => &self.c2s,
            Direction::ServerToClient => &self.s2c,
        }
    }

    fn data(&self, dir: Direction) -> &[AtomicU64] {
        match dir {
            Direction::ClientToServer => &self.c2s_data,
            Direction::ServerToClient => &self.s2c_data,
        }
    }
}

/// The fixed numbers of one ring, from the trusted layout (never re-read
/// from shared memory).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    capacity: u64,
    mask: usize,
    max_record: usize,
}

impl Geometry {
    fn of(layout: Layout, dir: Direction) -> Geometry {
        let capacity = layout.capacity(dir);
        Geometry {
            capacity: capacity as u64,
            mask: capacity / 8 - 1,
            max_record: max_record(capacity),
        }
    }
}

/// Which futex word a [`Waker`] bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Data,
    Space,
}

/// Wakes a side sleeping on one of a ring's futex words, from any thread —
/// for example when the socket reports the peer gone. It bumps the word
/// and wakes every sleeper; the sleeper re-checks its own conditions.
///
/// ```
/// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
/// use std::sync::Arc;
/// let mem = Arc::new(HeapMemory::new(Layout::for_memory(64, 64)?));
/// let rx = Consumer::new(mem, Direction::ServerToClient);
/// rx.waker().wake();
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub struct Waker<M: RingMemory> {
    mem: Arc<M>,
    dir: Direction,
    word: Word,
}

impl<M: RingMemory> Clone for Waker<M> {
    fn clone(&self) -> Self {
        Waker {
            mem: self.mem.clone(),
            dir: self.dir,
            word: self.word,
        }
    }
}

impl<M: RingMemory> std::fmt::Debug for Waker<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("dir", &self.dir)
            .field("word", &self.word)
            .finish()
    }
}

impl<M: RingMemory> Waker<M> {
    /// Bumps the word and wakes every sleeper on it. Whatever the caller
    /// stored before this call is visible to a sleeper that wakes.
    pub fn wake(&self) {
        let ctrl = self.mem.ctrl(self.dir);
        let line = match self.word {
            Word::Data => &ctrl.data_wait,
            Word::Space => &ctrl.space_wait,
        };
        // Release pairs with the Acquire load of `wake` at the start of
        // `Consumer::wait_for_data` / `Producer::wait_for_room`: a sleeper
        // that read the bumped value sees the caller's earlier stores (its
        // abort flag).
        line.wake.fetch_add(1, Ordering::Release);
        futex_wake(&line.wake);
    }
}

/// Reads whether the peer of a [`Consumer`] reports "away"
/// ([`Consumer::peer_away`]) without holding the consumer: for a thread
/// that waits for an answer while another thread holds the consumer and
/// reads for it.
///
/// ```
/// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
/// use std::sync::Arc;
/// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
/// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
/// let client_in = Consumer::new(mem, Direction::ServerToClient);
/// let watch = client_in.away_watch();
/// assert!(!watch.peer_away());
/// server_in.note_away();
/// assert!(watch.peer_away());
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub struct AwayWatch<M: RingMemory> {
    mem: Arc<M>,
    /// The watched consumer's ring (its peer reports on the other one).
    dir: Direction,
}

impl<M: RingMemory> Clone for AwayWatch<M> {
    fn clone(&self) -> Self {
        AwayWatch {
            mem: self.mem.clone(),
            dir: self.dir,
        }
    }
}

impl<M: RingMemory> std::fmt::Debug for AwayWatch<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwayWatch").field("dir", &self.dir).finish()
    }
}

impl<M: RingMemory> AwayWatch<M> {
    /// What [`Consumer::peer_away`] says of the watched consumer's peer: a
    /// hint, one relaxed load.
    pub fn peer_away(&self) -> bool {
        is_away(peer_report(&*self.mem, self.dir))
    }
}

/// How a client's calls wait when the server answers them only in their
/// turn: the ring's `consumer_turns` hint word (docs/protocol.md,
/// "Turns").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnHint {
    /// Not said (0, or a word this version does not know): the server
    /// holds the connection back only behind its own process's.
    Unsaid,
    /// On the calling thread (1): a blocking call. It takes turns with
    /// other processes' clients that wait on their thread too.
    OnThread,
    /// It goes on asynchronously as soon as it is told to wait (2): a call
    /// with a budget and no turn wait, an event loop's. It takes turns
    /// with other processes' clients only when many of them are busy.
    Later,
    /// On the calling thread, with a budget (3): a call with a budget and
    /// a turn wait, a worker thread's event loop's. It takes turns as
    /// [`OnThread`](TurnHint::OnThread) does; its thread does other work
    /// between two calls (its event loop's turn), so the server lets it
    /// keep a turn through a longer silence, as it does for
    /// [`Later`](TurnHint::Later).
    Budgeted,
}

impl TurnHint {
    /// The hint word.
    pub fn word(self) -> u32 {
        match self {
            TurnHint::Unsaid => 0,
            TurnHint::OnThread => 1,
            TurnHint::Later => 2,
            TurnHint::Budgeted => 3,
        }
    }

    /// The hint a word says ([`TurnHint::Unsaid`] for one it does not
    /// know).
    pub fn from_word(word: u32) -> TurnHint {
        match word {
            1 => TurnHint::OnThread,
            2 => TurnHint::Later,
            3 => TurnHint::Budgeted,
            _ => TurnHint::Unsaid,
        }
    }
}

/// Waits for a ring's consumer to free room, without holding the
/// [`Producer`]: for writers that share one producer behind a lock.
///
/// ```
/// use hearth_shm::{Direction, HeapMemory, Layout, Producer};
/// use std::sync::Arc;
/// use std::time::Duration;
/// let mem = Arc::new(HeapMemory::new(Layout::for_memory(64, 64)?));
/// let mut tx = Producer::new(mem, Direction::ClientToServer);
/// while tx.try_push(&[&[0; 24]])? {}
/// // Nobody consumes: the wait ends by its timeout.
/// tx.room_waiter().wait(tx.head_seen(), Some(Duration::from_millis(1)), &|| false);
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub struct RoomWaiter<M: RingMemory> {
    mem: Arc<M>,
    dir: Direction,
}

impl<M: RingMemory> Clone for RoomWaiter<M> {
    fn clone(&self) -> Self {
        RoomWaiter {
            mem: self.mem.clone(),
            dir: self.dir,
        }
    }
}

impl<M: RingMemory> std::fmt::Debug for RoomWaiter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomWaiter")
            .field("dir", &self.dir)
            .finish()
    }
}

impl<M: RingMemory> RoomWaiter<M> {
    /// Whether the consumer's `head` has moved from `head_seen` (the head
    /// the producer saw when it found no room): worth another push. Only a
    /// hint, never trusted — the push re-reads and checks `head` itself.
    /// For a writer that spins for room instead of sleeping.
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(64, 64)?));
    /// let mut tx = Producer::new(mem.clone(), Direction::ClientToServer);
    /// let mut rx = Consumer::new(mem, Direction::ClientToServer);
    /// while tx.try_push(&[&[0; 24]])? {}
    /// let room = tx.room_waiter();
    /// assert!(!room.moved(tx.head_seen()));
    /// let mut record = Vec::new();
    /// assert!(rx.try_pop(&mut record)?);
    /// assert!(room.moved(tx.head_seen()));
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn moved(&self, head_seen: u64) -> bool {
        // Acquire pairs with the Release store of `head` in
        // `Consumer::try_pop` (only compared here, as in `wait`).
        self.mem.ctrl(self.dir).head.head.load(Ordering::Acquire) != head_seen
    }

    /// One round of the sleep protocol on the space futex: counts itself
    /// in `producer_sleeping`, fences, and sleeps for at most `timeout`
    /// unless the consumer's `head` has moved from `head_seen` (the head
    /// the producer saw when it found no room) or `abort()` holds. Returns
    /// when woken, timed out, or not needed; the caller retries its push.
    pub fn wait(&self, head_seen: u64, timeout: Option<Duration>, abort: &dyn Fn() -> bool) {
        let ctrl = self.mem.ctrl(self.dir);
        let line = &ctrl.space_wait;
        // Acquire pairs with the Release bump in `Waker::wake` and
        // `Consumer::notify_producer`.
        let seen = line.wake.load(Ordering::Acquire);
        line.sleeping.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence pairs with the SeqCst fence in
        // `Consumer::notify_producer`: either the consumer sees this
        // sleeper and bumps `wake`, or the `head` it stored before its
        // fence is visible to the load below.
        fence(Ordering::SeqCst);
        // Acquire pairs with the Release store of `head` in
        // `Consumer::try_pop` (only compared here; the producer re-reads
        // and checks it before trusting it).
        let moved = ctrl.head.head.load(Ordering::Acquire) != head_seen;
        if !moved && !abort() {
            futex_wait(&line.wake, seen, timeout);
        }
        line.sleeping.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes bytes into the ring as 64-bit words starting at a word index.
struct WordWriter<'a> {
    data: &'a [AtomicU64],
    mask: usize,
    index: usize,
    acc: u64,
    fill: u32,
    /// Non-temporal stores ([`STREAM_FROM`]); the caller fences after.
    streaming: bool,
}

impl WordWriter<'_> {
    #[inline]
    fn store(&mut self, word: u64) {
        let slot = &self.data[self.index & self.mask];
        if self.streaming {
            // Ordered before the Release store of `tail` by the
            // `streaming_fence` in `try_push`.
            store_streaming(slot, word);
        } else {
            // Relaxed: published by the Release store of `tail` in `try_push`.
            slot.store(word, Ordering::Relaxed);
        }
        self.index = self.index.wrapping_add(1);
    }

    fn put(&mut self, mut bytes: &[u8]) {
        while self.fill != 0 && !bytes.is_empty() {
            self.acc |= u64::from(bytes[0]) << (8 * self.fill);
            self.fill += 1;
            bytes = &bytes[1..];
            if self.fill == 8 {
                let word = self.acc;
                self.store(word);
                self.acc = 0;
                self.fill = 0;
            }
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            self.store(u64::from_le_bytes(w));
        }
        // `fill` is 0 here whenever bytes remain: the loop above emptied
        // the accumulator or consumed every byte.
        for &b in chunks.remainder() {
            self.acc |= u64::from(b) << (8 * self.fill);
            self.fill += 1;
        }
    }

    fn finish(&mut self) {
        if self.fill > 0 {
            let word = self.acc;
            self.store(word);
            self.acc = 0;
            self.fill = 0;
        }
    }
}

/// The writing half of a ring. Owns the trusted copy of `tail`; validates
/// every `head` it reads.
///
/// ```
/// use hearth_shm::{Direction, HeapMemory, Layout, Producer};
/// use std::sync::Arc;
/// let mem = Arc::new(HeapMemory::new(Layout::for_memory(64, 64)?));
/// let mut tx = Producer::new(mem, Direction::ClientToServer);
/// assert_eq!(tx.max_record(), 24);
/// assert!(tx.push(&[b"abc", b"defghijklmnopqrstu"])?); // one 24-byte record, gathered
/// assert!(tx.push(&[&[0u8; 24]])?);                    // 2 × 32 bytes: the ring is full
/// assert!(!tx.push(&[b"x"])?);                         // nothing consumed yet
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub struct Producer<M: RingMemory> {
    mem: Arc<M>,
    dir: Direction,
    geo: Geometry,
    tail: u64,
    head: u64,
    /// The tail at which the ring is populated.
    populate_at: PopulateAt,
}

impl<M: RingMemory> std::fmt::Debug for Producer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("dir", &self.dir)
            .field("tail", &self.tail)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl<M: RingMemory> Producer<M> {
    /// The producer of the (fresh) ring going `dir` in `mem`.
    pub fn new(mem: Arc<M>, dir: Direction) -> Producer<M> {
        let geo = Geometry::of(mem.layout(), dir);
        Producer {
            mem,
            dir,
            populate_at: PopulateAt::new(&geo),
            geo,
            tail: 0,
            head: 0,
        }
    }

    /// The ring's data bytes.
    pub fn capacity(&self) -> usize {
        self.geo.capacity as usize
    }

    /// The largest record body this ring carries.
    pub fn max_record(&self) -> usize {
        self.geo.max_record
    }

    fn ctrl(&self) -> &RingCtrl {
        self.mem.ctrl(self.dir)
    }

    /// Reads and checks the consumer's `head`.
    fn reload_head(&mut self) -> Result<(), ShmError> {
        // Acquire pairs with the Release store of `head` in
        // `Consumer::try_pop`: the consumer finished copying every byte
        // before `head`, so they may be overwritten.
        let head = self.ctrl().head.head.load(Ordering::Acquire);
        if !head.is_multiple_of(8) || head < self.head || head > self.tail {
            return Err(ShmError::corrupt(format!(
                "the {} ring's head {head} is not a multiple of 8 in {}..={} (the producer's last head and tail)",
                self.dir.name(),
                self.head,
                self.tail
            )));
        }
        self.head = head;
        Ok(())
    }

    fn free(&self) -> u64 {
        // tail - head <= capacity: `reload_head` checked head in head..=tail
        // and `try_push` never lets tail run more than capacity past head.
        self.geo.capacity - (self.tail - self.head)
    }

    /// Whether a record of `len` body bytes fits now (reads `head`).
    pub fn has_room(&mut self, len: usize) -> Result<bool, ShmError> {
        let need = record_bytes(len) as u64;
        if self.free() < need {
            self.reload_head()?;
        }
        Ok(self.free() >= need)
    }

    /// Appends one record made of `parts` (concatenated) without waking the
    /// consumer; `Ok(false)` if the ring has no room now. Call
    /// [`notify`](Self::notify) after a batch.
    pub fn try_push(&mut self, parts: &[&[u8]]) -> Result<bool, ShmError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.geo.max_record {
            return Err(ShmError::TooLarge {
                len,
                max: self.geo.max_record,
            });
        }
        if !self.has_room(len)? {
            return Ok(false);
        }
        let len32 = len as u32; // len <= max_record < 2^31
        let data = self.mem.data(self.dir);
        let mut w = WordWriter {
            data,
            mask: self.geo.mask,
            index: (self.tail / 8) as usize,
            acc: 0,
            fill: 0,
            streaming: STREAMING && len >= STREAM_FROM,
        };
        w.store(u64::from(len32) | (u64::from(!len32) << 32));
        for part in parts {
            w.put(part);
        }
        w.finish();
        if w.streaming {
            // The non-temporal stores above before the Release store of
            // `tail` below (they are not ordered with it otherwise).
            streaming_fence();
        }
        self.tail += record_bytes(len) as u64;
        // Release pairs with the Acquire load of `tail` in
        // `Consumer::available`: the record's words are visible before the
        // consumer sees the tail that covers them.
        self.ctrl().tail.tail.store(self.tail, Ordering::Release);
        if self.populate_at.reached(self.tail) {
            self.mem.populate(self.dir);
        }
        Ok(true)
    }

    /// Takes the lines of free space after the tail (up to [`OWN_AHEAD`]
    /// bytes) into this side's cache, by storing a zero word into each:
    /// call it after publishing ([`notify`](Self::notify)), while nothing
    /// waits on this side. The consumer last read those lines a lap ago
    /// and may hold them still; a store into a line another core holds
    /// waits for that core to give it up, and a record's stores wait their
    /// turn one line after another before its tail is seen — on the
    /// project's 2-core VM, 40 % of a raw ring round trip with a 260-byte
    /// answer (430 → 260 ns). Done ahead, that wait is off the round trip. Writes only space the consumer released (the
    /// trusted copy of `head`, which an Acquire load read), never past it:
    /// nothing the consumer may still read.
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let mut tx = Producer::new(mem.clone(), Direction::ClientToServer);
    /// let mut rx = Consumer::new(mem, Direction::ClientToServer);
    /// tx.push(&[b"first"])?;
    /// tx.own_ahead(); // `push` does it too
    /// tx.push(&[b"second"])?;
    /// let mut out = Vec::new();
    /// assert!(rx.try_pop(&mut out)?);
    /// assert_eq!(out, b"first");
    /// assert!(rx.try_pop(&mut out)?);
    /// assert_eq!(out, b"second");
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn own_ahead(&self) {
        let data = self.mem.data(self.dir);
        // Free space ends where the consumer's released bytes do: head,
        // one lap on. `tail - head <= capacity`, so no overflow.
        let end = (self.tail + OWN_AHEAD as u64).min(self.head + self.geo.capacity);
        // The line holding the tail's last bytes is this side's already.
        let mut pos = self.tail.next_multiple_of(LINE);
        while pos < end {
            // Relaxed: free space, read by nobody until a later record's
            // Release store of `tail` publishes what is written over it.
            data[(pos / 8) as usize & self.geo.mask].store(0, Ordering::Relaxed);
            pos += LINE;
        }
    }

    /// Wakes the consumer if it sleeps (after one or more `try_push`);
    /// whether it did — whether the consumer had marked itself asleep (it
    /// may still have been re-checking the ring before its futex wait). A
    /// consumer just woken is not running yet: the kernel may have queued
    /// its thread on the caller's own core, where it runs only once the
    /// caller lets go of it.
    ///
    /// ```
    /// use hearth_shm::{Direction, HeapMemory, Layout, Producer};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let mut tx = Producer::new(mem, Direction::ClientToServer);
    /// tx.try_push(&[b"request"])?;
    /// assert!(!tx.notify(), "nobody sleeps on the ring");
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    #[must_use = "whether a sleeping consumer was woken (`let _ =` when it does not matter)"]
    pub fn notify(&self) -> bool {
        let line = &self.ctrl().data_wait;
        // SeqCst fence pairs with the SeqCst fence in
        // `Consumer::wait_for_data`: either this load sees the consumer's
        // `sleeping = 1`, or the consumer's re-check sees the tail stored
        // before this fence. No wake-up is lost.
        fence(Ordering::SeqCst);
        if line.sleeping.load(Ordering::Relaxed) != 0 {
            // Release pairs with the Acquire load of `wake` in
            // `Consumer::wait_for_data`.
            line.wake.fetch_add(1, Ordering::Release);
            futex_wake(&line.wake);
            true
        } else {
            false
        }
    }

    /// Whether the consumer sleeps now, by the test [`notify`](Self::notify)
    /// makes (after one or more `try_push`): if not, it sees what was
    /// pushed without a wake-up.
    ///
    /// ```
    /// use hearth_shm::{Direction, HeapMemory, Layout, Producer};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let mut tx = Producer::new(mem, Direction::ServerToClient);
    /// tx.try_push(&[b"answer"])?;
    /// assert!(!tx.consumer_asleep());
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn consumer_asleep(&self) -> bool {
        // SeqCst fence pairs with the SeqCst fence in
        // `Consumer::wait_for_data`, as in `notify`: either this load sees
        // the consumer's `sleeping = 1`, or the consumer's re-check sees
        // the tail stored before this fence.
        fence(Ordering::SeqCst);
        self.ctrl().data_wait.sleeping.load(Ordering::Relaxed) != 0
    }

    /// [`try_push`](Self::try_push), then [`notify`](Self::notify) and
    /// [`own_ahead`](Self::own_ahead) if it was pushed.
    pub fn push(&mut self, parts: &[&[u8]]) -> Result<bool, ShmError> {
        let pushed = self.try_push(parts)?;
        if pushed {
            let _ = self.notify();
            self.own_ahead();
        }
        Ok(pushed)
    }

    /// Marks the ring finished and wakes the consumer: once it has read
    /// what was pushed it sees [`Consumer::is_closed`].
    pub fn close(&self) {
        // Release pairs with the Acquire load in `Consumer::is_closed`.
        self.ctrl().tail.closed.store(1, Ordering::Release);
        Waker {
            mem: self.mem.clone(),
            dir: self.dir,
            word: Word::Data,
        }
        .wake();
    }

    /// The consumer's `head` as last read and checked: pass it to
    /// [`RoomWaiter::wait`] after a push found no room.
    pub fn head_seen(&self) -> u64 {
        self.head
    }

    /// A handle for waiting for room without holding the producer (so
    /// other threads can lock it meanwhile).
    pub fn room_waiter(&self) -> RoomWaiter<M> {
        RoomWaiter {
            mem: self.mem.clone(),
            dir: self.dir,
        }
    }

    /// One round of waiting for room for a `len`-byte record: returns at
    /// once if there is room, else sleeps (see [`RoomWaiter::wait`]) for at
    /// most `timeout` and reports whether there is room now. The caller
    /// loops (with its own deadline).
    pub fn wait_for_room(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
        abort: &dyn Fn() -> bool,
    ) -> Result<bool, ShmError> {
        if self.has_room(len)? {
            return Ok(true);
        }
        self.room_waiter().wait(self.head, timeout, abort);
        self.has_room(len)
    }

    /// A handle that wakes this producer out of [`wait_for_room`](Self::wait_for_room).
    pub fn waker(&self) -> Waker<M> {
        Waker {
            mem: self.mem.clone(),
            dir: self.dir,
            word: Word::Space,
        }
    }

    /// A handle that wakes the consumer of this ring.
    pub fn consumer_waker(&self) -> Waker<M> {
        Waker {
            mem: self.mem.clone(),
            dir: self.dir,
            word: Word::Data,
        }
    }
}

/// The reading half of a ring. Owns the trusted copy of `head`; validates
/// every `tail` and record header it reads, and copies each record out.
///
/// ```
/// use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
/// use std::sync::Arc;
/// let mem = Arc::new(HeapMemory::new(Layout::for_memory(64, 64)?));
/// let mut tx = Producer::new(mem.clone(), Direction::ServerToClient);
/// let mut rx = Consumer::new(mem, Direction::ServerToClient);
/// let mut out = Vec::new();
/// for round in 0..10u8 {                  // wraps around the 64-byte ring
///     assert!(tx.push(&[&[round; 20]])?);
///     assert!(rx.try_pop(&mut out)?);
///     assert_eq!(out, [round; 20]);
/// }
/// assert!(!rx.try_pop(&mut out)?);
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub struct Consumer<M: RingMemory> {
    mem: Arc<M>,
    dir: Direction,
    geo: Geometry,
    head: u64,
    /// The head at which the ring is populated.
    populate_at: PopulateAt,
}

impl<M: RingMemory> std::fmt::Debug for Consumer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("dir", &self.dir)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl<M: RingMemory> Consumer<M> {
    /// The consumer of the (fresh) ring going `dir` in `mem`.
    pub fn new(mem: Arc<M>, dir: Direction) -> Consumer<M> {
        let geo = Geometry::of(mem.layout(), dir);
        Consumer {
            mem,
            dir,
            populate_at: PopulateAt::new(&geo),
            geo,
            head: 0,
        }
    }

    /// The largest record body this ring carries.
    pub fn max_record(&self) -> usize {
        self.geo.max_record
    }

    fn ctrl(&self) -> &RingCtrl {
        self.mem.ctrl(self.dir)
    }

    /// Published, unconsumed bytes, after checking the producer's `tail`.
    fn available(&self) -> Result<u64, ShmError> {
        // Acquire pairs with the Release store of `tail` in
        // `Producer::try_push`: every word of the records before `tail` is
        // visible.
        let tail = self.ctrl().tail.tail.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if !tail.is_multiple_of(8) || avail > self.geo.capacity {
            return Err(ShmError::corrupt(format!(
                "the {} ring's tail {tail} is not a multiple of 8 within {} bytes after the head {}",
                self.dir.name(),
                self.geo.capacity,
                self.head
            )));
        }
        Ok(avail)
    }

    /// Whether a record is waiting (checks the producer's `tail`).
    pub fn has_data(&self) -> Result<bool, ShmError> {
        Ok(self.available()? > 0)
    }

    /// Whether the producer closed the ring. Records pushed before the
    /// close may still be waiting.
    pub fn is_closed(&self) -> bool {
        // Acquire pairs with the Release store in `Producer::close`.
        self.ctrl().tail.closed.load(Ordering::Acquire) != 0
    }

    /// Takes the next record into `out` (cleared first); `Ok(false)` if
    /// none is waiting. Wakes the producer if it sleeps for room.
    pub fn try_pop(&mut self, out: &mut Vec<u8>) -> Result<bool, ShmError> {
        out.clear();
        let avail = self.available()?;
        if avail == 0 {
            return Ok(false);
        }
        let data = self.mem.data(self.dir);
        let mask = self.geo.mask;
        let mut index = (self.head / 8) as usize;
        // Relaxed: ordered after the Acquire load of `tail` above.
        let header = data[index & mask].load(Ordering::Relaxed);
        index = index.wrapping_add(1);
        let len = header as u32;
        let check = (header >> 32) as u32;
        if check != !len {
            return Err(ShmError::corrupt(format!(
                "the {} ring's record header at {} is {header:#018x}: its check half is not the complement of its length",
                self.dir.name(),
                self.head
            )));
        }
        let len = len as usize;
        let need = record_bytes(len) as u64;
        if len > self.geo.max_record || need > avail {
            return Err(ShmError::corrupt(format!(
                "the {} ring's record at {} claims {len} bytes; at most {} are allowed and {} were published",
                self.dir.name(),
                self.head,
                self.geo.max_record,
                avail.saturating_sub(RECORD_HEADER as u64)
            )));
        }
        // Sized once, then filled a word at a time (a copy per word into a
        // growing vector cost a capacity check each).
        out.resize(len, 0);
        let mut chunks = out.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&data[index & mask].load(Ordering::Relaxed).to_le_bytes());
            index = index.wrapping_add(1);
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let word = data[index & mask].load(Ordering::Relaxed).to_le_bytes();
            rest.copy_from_slice(&word[..rest.len()]);
        }
        self.head += need;
        // Release pairs with the Acquire load of `head` in
        // `Producer::reload_head`: the copy above is done before the
        // producer may reuse these bytes.
        self.ctrl().head.head.store(self.head, Ordering::Release);
        self.notify_producer();
        if self.populate_at.reached(self.head) {
            self.mem.populate(self.dir);
        }
        Ok(true)
    }

    fn notify_producer(&self) {
        let line = &self.ctrl().space_wait;
        // SeqCst fence pairs with the SeqCst fence in
        // `Producer::wait_for_room`: either this load sees the producer's
        // `sleeping = 1`, or the producer's re-check sees the head stored
        // before this fence.
        fence(Ordering::SeqCst);
        if line.sleeping.load(Ordering::Relaxed) != 0 {
            // Release pairs with the Acquire load of `wake` in
            // `Producer::wait_for_room`.
            line.wake.fetch_add(1, Ordering::Release);
            futex_wake(&line.wake);
        }
    }

    /// One round of waiting for data: sets the `sleeping` flag, re-checks,
    /// and sleeps on the data futex for at most `timeout` unless a record
    /// is waiting, the ring is closed, or `abort()` holds. Returns whether a
    /// record is waiting now. The caller loops (with its own deadline).
    pub fn wait_for_data(
        &self,
        timeout: Option<Duration>,
        abort: &dyn Fn() -> bool,
    ) -> Result<bool, ShmError> {
        let line = &self.ctrl().data_wait;
        // Acquire pairs with the Release bump in `Producer::notify` and
        // `Waker::wake`: if this reads a bumped value, the waker's earlier
        // stores (its abort flag) are visible to `abort()` below.
        let seen = line.wake.load(Ordering::Acquire);
        line.sleeping.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence pairs with the SeqCst fence in `Producer::notify`:
        // either the producer sees `sleeping = 1` and bumps `wake` (so the
        // futex wait below returns), or the tail it stored before its fence
        // is visible to this re-check.
        fence(Ordering::SeqCst);
        let ready = self.has_data();
        if matches!(ready, Ok(false)) && !self.is_closed() && !abort() {
            futex_wait(&line.wake, seen, timeout);
            // The wake may have placed this thread on another core. While
            // it slept, the hint kept the core it slept on: where a wake
            // usually puts it back, and where a peer that shares it (one
            // core, or both threads pushed onto one) must not spin.
            self.note_cpu();
        }
        line.sleeping.fetch_sub(1, Ordering::Relaxed);
        ready?;
        self.has_data()
    }

    /// Reports the CPU the calling thread runs on now in this ring's
    /// control block (`consumer_cpu`, a hint for the peer) and returns it.
    /// The consumer calls it before it spins, and
    /// [`wait_for_data`](Self::wait_for_data) again when it wakes, so that
    /// the peer can tell whether the two threads share a core.
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
    /// let client_in = Consumer::new(mem, Direction::ServerToClient);
    /// let here = server_in.note_cpu();
    /// # #[cfg(target_os = "linux")]
    /// assert!(client_in.peer_on(here));
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn note_cpu(&self) -> u32 {
        let cpu = current_cpu();
        self.note_cpu_as((cpu != UNKNOWN_CPU).then_some(cpu));
        cpu
    }

    /// Reports `cpu` (from [`this_cpu`], asked once for many rings read by
    /// one thread) as this consumer's core, writing only when the report
    /// changes (the line is shared with the peer). `None` reports
    /// "unknown".
    pub fn note_cpu_as(&self, cpu: Option<u32>) {
        self.report(cpu.map_or(0, |c| c.wrapping_add(1)));
    }

    /// Writes `hint` into this consumer's `consumer_cpu` word, only when it
    /// changes (the line is shared with the peer).
    fn report(&self, hint: u32) {
        store_hint(&self.ctrl().data_wait.cpu, hint);
    }

    /// Reports that this consumer is not reading its ring for now (the
    /// server's poller gives its turns to other clients first): the
    /// producer, waiting for an answer, had better sleep than spin. The
    /// next [`note_cpu_as`](Self::note_cpu_as) ends it.
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
    /// let client_in = Consumer::new(mem, Direction::ServerToClient);
    /// server_in.note_away();
    /// assert!(client_in.peer_away());
    /// server_in.note_cpu_as(Some(0));
    /// assert!(!client_in.peer_away());
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn note_away(&self) {
        self.report(AWAY);
    }

    /// Reports "away", as [`note_away`](Self::note_away), and asks the
    /// producer (the client whose turn just ended) to wake, on its way to
    /// sleep, its process's connection whose segment key is `key` — the
    /// client whose turn begins, woken on the core it will run on instead
    /// of by the server from another (docs/protocol.md, "Turns"). A key of
    /// 0 (unknown) is plain "away".
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
    /// let client_in = Consumer::new(mem, Direction::ServerToClient);
    /// server_in.note_handoff(7);
    /// assert_eq!(client_in.peer_handoff(), Some(7));
    /// assert!(client_in.peer_away());
    /// server_in.note_cpu_as(Some(0));
    /// assert_eq!(client_in.peer_handoff(), None);
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn note_handoff(&self, key: u32) {
        let key = key & !HANDOFF;
        if key == 0 || key == AWAY & !HANDOFF {
            self.report(AWAY);
        } else {
            self.report(HANDOFF | key);
        }
    }

    /// The segment key the peer last asked this side to wake on its way to
    /// sleep ([`note_handoff`](Self::note_handoff)), if it did. A hint: a
    /// forged key wakes, at worst, another connection of this process for
    /// nothing (a spurious wake-up, which every waiter tolerates).
    pub fn peer_handoff(&self) -> Option<u32> {
        let report = self.peer_report();
        (report != AWAY && report & HANDOFF != 0).then_some(report & !HANDOFF)
    }

    /// Whether the peer last reported that it is not reading for now
    /// ([`note_away`](Self::note_away)): an answer is not coming soon, so
    /// waiting for it should sleep rather than spin. A hint, as
    /// [`peer_on`](Self::peer_on).
    pub fn peer_away(&self) -> bool {
        is_away(self.peer_report())
    }

    /// Whether the peer (the consumer of the other ring) last reported
    /// running on `cpu`. Spinning for an answer is useless then: the peer
    /// needs this very core to produce it. A hint, possibly stale (the peer
    /// reports before it spins and after it wakes); false when the peer
    /// never reported (an older client) or this platform cannot say. A
    /// peer that forges the value only changes whether this side spins.
    pub fn peer_on(&self, cpu: u32) -> bool {
        reports_cpu(self.peer_report(), cpu)
    }

    /// Whether spinning on `cpu` for the peer's next record is futile: the
    /// peer last reported this very core ([`peer_on`](Self::peer_on): it
    /// needs the core to answer) or that it is away
    /// ([`peer_away`](Self::peer_away): it serves others first). What a
    /// waiter's spin stops on, at once, so that it sleeps — a waiter that
    /// spun on after its turn ended kept its core from the client whose
    /// turn began, for up to its whole spin. One load; a hint, as
    /// [`peer_on`](Self::peer_on).
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
    /// let client_in = Consumer::new(mem, Direction::ServerToClient);
    /// server_in.note_cpu_as(Some(1));
    /// assert!(!client_in.spinning_futile(0), "the server answers from core 1");
    /// assert!(client_in.spinning_futile(1), "it needs this core");
    /// server_in.note_away();
    /// assert!(client_in.spinning_futile(0), "it serves others first");
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn spinning_futile(&self, cpu: u32) -> bool {
        let report = self.peer_report();
        is_away(report) || reports_cpu(report, cpu)
    }

    /// Whether the peer last reported running on a core other than `cpu`:
    /// it can send (or answer) without this thread giving up `cpu`. False
    /// when either side cannot say (no report yet, an older client, or
    /// `cpu` unknown). A hint, as [`peer_on`](Self::peer_on).
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
    /// let client_in = Consumer::new(mem, Direction::ServerToClient);
    /// assert!(!server_in.peer_elsewhere(0), "the client has not reported");
    /// client_in.note_cpu_as(Some(1));
    /// assert!(server_in.peer_elsewhere(0));
    /// assert!(!server_in.peer_elsewhere(1));
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn peer_elsewhere(&self, cpu: u32) -> bool {
        if cpu == UNKNOWN_CPU {
            return false;
        }
        let report = self.peer_report();
        report != 0 && !is_away(report) && !reports_cpu(report, cpu)
    }

    /// Reports `thread` (a kernel thread id, [`this_thread_id`](crate::this_thread_id))
    /// as the thread that reads this ring for its own calls — it sends its
    /// next request as soon as it has read an answer — or `None`: no such
    /// thread now (a reader that serves others' calls, as a background
    /// reader does). Written only when it changes (the line is shared with
    /// the peer). The server looks at that thread's state to tell a client
    /// that stopped calling to sleep from one that was preempted
    /// (docs/protocol.md, "Turns").
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
    /// let client_in = Consumer::new(mem, Direction::ServerToClient);
    /// assert_eq!(server_in.peer_thread(), None, "never said");
    /// client_in.note_thread(Some(4242));
    /// assert_eq!(server_in.peer_thread(), Some(4242));
    /// client_in.note_thread(None);
    /// assert_eq!(server_in.peer_thread(), None);
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn note_thread(&self, thread: Option<u32>) {
        store_hint(&self.ctrl().data_wait.thread, thread.unwrap_or(0));
    }

    /// The thread the peer last reported as reading for its own calls
    /// ([`note_thread`](Self::note_thread)), if any. A hint: a forged
    /// value names, at worst, another thread of the peer's process.
    pub fn peer_thread(&self) -> Option<u32> {
        let peer = self.mem.ctrl(self.dir.reverse());
        // Relaxed: a hint (see `note_thread`).
        Some(peer.data_wait.thread.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Says how this consumer's calls wait when the server answers them
    /// only in their turn (docs/protocol.md, "Turns"), so that the server
    /// may hold them back while clients of *other* processes take their
    /// turns, as it does for the connections of one process:
    /// [`TurnHint::OnThread`] and [`TurnHint::Budgeted`] always,
    /// [`TurnHint::Later`] only when many processes are busy;
    /// [`TurnHint::Unsaid`] (the state of a fresh
    /// segment) never. Written only when it changes; the server reads it
    /// as its poller serves the connection.
    ///
    /// ```
    /// use hearth_shm::{Consumer, Direction, HeapMemory, Layout, TurnHint};
    /// use std::sync::Arc;
    /// let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
    /// let server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
    /// let client_in = Consumer::new(mem, Direction::ServerToClient);
    /// assert_eq!(server_in.peer_turns(), TurnHint::Unsaid, "never said");
    /// client_in.note_turns(TurnHint::OnThread);
    /// assert_eq!(server_in.peer_turns(), TurnHint::OnThread);
    /// client_in.note_turns(TurnHint::Later);
    /// assert_eq!(server_in.peer_turns(), TurnHint::Later);
    /// client_in.note_turns(TurnHint::Budgeted);
    /// assert_eq!(server_in.peer_turns(), TurnHint::Budgeted);
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn note_turns(&self, hint: TurnHint) {
        store_hint(&self.ctrl().data_wait.turns, hint.word());
    }

    /// How the peer said its calls wait for their turn
    /// ([`note_turns`](Self::note_turns)). A hint: a word it does not know
    /// reads as [`TurnHint::Unsaid`], and a forged one only puts the
    /// peer's own calls behind others' turns.
    pub fn peer_turns(&self) -> TurnHint {
        let peer = self.mem.ctrl(self.dir.reverse());
        // Relaxed: a hint (see `note_turns`).
        TurnHint::from_word(peer.data_wait.turns.load(Ordering::Relaxed))
    }

    /// The peer's `consumer_cpu` word: CPU + 1, 0 (unknown) or [`AWAY`].
    fn peer_report(&self) -> u32 {
        peer_report(&*self.mem, self.dir)
    }

    /// A handle that wakes this consumer out of [`wait_for_data`](Self::wait_for_data).
    pub fn waker(&self) -> Waker<M> {
        Waker {
            mem: self.mem.clone(),
            dir: self.dir,
            word: Word::Data,
        }
    }

    /// A handle that reads [`peer_away`](Self::peer_away) from any thread.
    pub fn away_watch(&self) -> AwayWatch<M> {
        AwayWatch {
            mem: self.mem.clone(),
            dir: self.dir,
        }
    }

    /// A handle that wakes the producer of this ring.
    pub fn producer_waker(&self) -> Waker<M> {
        Waker {
            mem: self.mem.clone(),
            dir: self.dir,
            word: Word::Space,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn pair(capacity: usize) -> (Producer<HeapMemory>, Consumer<HeapMemory>, Arc<HeapMemory>) {
        let mem = Arc::new(HeapMemory::new(
            Layout::for_memory(capacity, capacity).unwrap(),
        ));
        (
            Producer::new(mem.clone(), Direction::ClientToServer),
            Consumer::new(mem.clone(), Direction::ClientToServer),
            mem,
        )
    }

    #[test]
    fn big_records_written_with_streaming_stores_arrive_intact_across_the_ring_end() {
        let (mut tx, mut rx, _mem) = pair(32 * 1024);
        let mut out = Vec::new();
        // Below, at and above the streaming threshold, odd lengths, and
        // enough of them that several wrap around the end of the ring.
        let lens = [STREAM_FROM - 1, STREAM_FROM, STREAM_FROM + 5, 9_999, 16_376];
        // A round is more than the ring: each wraps its end at least once
        // (two rounds under Miri, which is slow at this much copying).
        let rounds = if cfg!(miri) { 2 } else { 12 };
        for round in 0..rounds {
            for (k, &len) in lens.iter().enumerate() {
                let body: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(31) ^ round ^ k as u8)
                    .collect();
                assert!(tx.push(&[&body[..7], &body[7..]]).unwrap(), "{len}");
                assert!(rx.try_pop(&mut out).unwrap());
                assert!(out == body, "round {round}, {len} bytes");
            }
        }
        assert!(!rx.try_pop(&mut out).unwrap());
    }

    #[test]
    fn owning_ahead_stores_into_the_free_lines_after_the_tail() {
        let (mut tx, mut rx, mem) = pair(4096);
        // A lap's worth of non-zero bytes, all consumed: the space ahead
        // of the tail holds old records.
        let mut out = Vec::new();
        for _ in 0..4096 / 128 {
            assert!(tx.try_push(&[&[0xAB; 120]]).unwrap());
            assert!(rx.try_pop(&mut out).unwrap());
        }
        assert!(tx.try_push(&[&[0xCD; 56]]).unwrap()); // tail at one line
        let words = mem.data(Direction::ClientToServer);
        let line_starts = |from: usize| (from..from + OWN_AHEAD).step_by(64).map(|b| b / 8);
        assert!(line_starts(64).all(|w| words[w].load(Ordering::Relaxed) != 0));
        tx.own_ahead();
        assert!(line_starts(64).all(|w| words[w].load(Ordering::Relaxed) == 0));
        // The record before the tail is untouched.
        assert!(rx.try_pop(&mut out).unwrap());
        assert_eq!(out, [0xCD; 56]);
    }

    #[test]
    fn owning_ahead_never_writes_over_what_the_consumer_has_not_read() {
        let (mut tx, mut rx, _mem) = pair(256);
        // 72 + 128 bytes unread; 56 free, all of them in the tail's line.
        assert!(tx.try_push(&[&[1; 64]]).unwrap());
        assert!(tx.try_push(&[&[2; 120]]).unwrap());
        tx.own_ahead();
        let mut out = Vec::new();
        assert!(rx.try_pop(&mut out).unwrap());
        assert_eq!(out, [1; 64]);
        // Half a lap later, with the tail wrapped past the ring's end.
        assert!(tx.try_push(&[&[3; 40]]).unwrap());
        tx.own_ahead();
        assert!(rx.try_pop(&mut out).unwrap());
        assert_eq!(out, [2; 120]);
        assert!(rx.try_pop(&mut out).unwrap());
        assert_eq!(out, [3; 40]);
    }

    #[test]
    fn a_turn_hint_word_this_version_does_not_know_reads_as_unsaid() {
        for hint in [
            TurnHint::Unsaid,
            TurnHint::OnThread,
            TurnHint::Later,
            TurnHint::Budgeted,
        ] {
            assert_eq!(TurnHint::from_word(hint.word()), hint);
        }
        for word in [4, 0x8000_0000, u32::MAX] {
            assert_eq!(TurnHint::from_word(word), TurnHint::Unsaid, "{word:#x}");
        }
    }

    #[test]
    fn a_side_populates_its_ring_once_past_16_kib_and_never_above_a_mebibyte() {
        let geo = |capacity: usize| {
            Geometry::of(
                Layout::for_memory(capacity, capacity).unwrap(),
                Direction::ClientToServer,
            )
        };
        let mut at = PopulateAt::new(&geo(256 * 1024));
        assert!(!at.reached(POPULATE_AFTER - 1));
        assert!(at.reached(POPULATE_AFTER));
        assert!(!at.reached(POPULATE_AFTER + 1), "once only");
        let mut big = PopulateAt::new(&geo(4 << 20));
        assert!(!big.reached(u64::MAX - 1));
        let mut small = PopulateAt::new(&geo(16 * 1024));
        assert!(!small.reached(1 << 40), "a ring of 16 KiB or less never");
    }

    #[test]
    fn records_of_every_small_length_round_trip() {
        let (mut tx, mut rx, _) = pair(256);
        let mut out = Vec::new();
        for len in 0..=tx.max_record() {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            assert!(tx.push(&[&body]).unwrap());
            assert!(rx.try_pop(&mut out).unwrap());
            assert_eq!(out, body, "length {len}");
        }
    }

    #[test]
    fn gathered_parts_are_one_record() {
        let (mut tx, mut rx, _) = pair(256);
        let mut out = Vec::new();
        assert!(tx.push(&[b"abc", b"", b"defghij", b"k"]).unwrap());
        assert!(rx.try_pop(&mut out).unwrap());
        assert_eq!(out, b"abcdefghijk");
    }

    #[test]
    fn a_full_ring_refuses_then_accepts_after_a_pop() {
        let (mut tx, mut rx, _) = pair(64);
        assert!(tx.push(&[&[1; 24]]).unwrap());
        assert!(tx.push(&[&[2; 24]]).unwrap());
        assert!(!tx.push(&[&[3; 1]]).unwrap());
        let mut out = Vec::new();
        assert!(rx.try_pop(&mut out).unwrap());
        assert!(tx.push(&[&[3; 1]]).unwrap());
    }

    #[test]
    fn a_record_over_the_limit_is_refused_before_writing() {
        let (mut tx, _, _) = pair(64);
        let e = tx.push(&[&[0; 25]]).unwrap_err();
        assert!(matches!(e, ShmError::TooLarge { len: 25, max: 24 }));
    }

    #[test]
    fn a_tail_past_the_capacity_is_corruption() {
        let (_, mut rx, mem) = pair(64);
        mem.ctrl(Direction::ClientToServer)
            .tail
            .tail
            .store(72, Ordering::Relaxed);
        assert!(rx.try_pop(&mut Vec::new()).unwrap_err().is_corrupt());
    }

    #[test]
    fn a_misaligned_tail_is_corruption() {
        let (_, rx, mem) = pair(64);
        mem.ctrl(Direction::ClientToServer)
            .tail
            .tail
            .store(12, Ordering::Relaxed);
        assert!(rx.has_data().unwrap_err().is_corrupt());
    }

    #[test]
    fn a_length_past_what_was_published_is_corruption() {
        let (mut tx, mut rx, mem) = pair(256);
        assert!(tx.push(&[&[9; 8]]).unwrap());
        // Claim 40 bytes (check half consistent) while only 16 were published.
        mem.data(Direction::ClientToServer)[0]
            .store(40 | (u64::from(!40u32) << 32), Ordering::Relaxed);
        let e = rx.try_pop(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("claims 40 bytes"), "{e}");
    }

    #[test]
    fn a_bad_check_half_is_corruption() {
        let (mut tx, mut rx, mem) = pair(256);
        assert!(tx.push(&[&[9; 8]]).unwrap());
        mem.data(Direction::ClientToServer)[0].store(8, Ordering::Relaxed);
        assert!(rx.try_pop(&mut Vec::new()).unwrap_err().is_corrupt());
    }

    #[test]
    fn a_head_moved_backwards_or_past_the_tail_is_corruption() {
        let (mut tx, _, mem) = pair(64);
        assert!(tx.push(&[&[1; 24]]).unwrap());
        assert!(tx.push(&[&[1; 24]]).unwrap());
        let head = &mem.ctrl(Direction::ClientToServer).head.head;
        head.store(80, Ordering::Relaxed);
        assert!(tx.push(&[b"x"]).unwrap_err().is_corrupt());
        head.store(3, Ordering::Relaxed);
        assert!(tx.has_room(1).unwrap_err().is_corrupt());
    }

    #[test]
    fn a_closed_ring_still_delivers_what_was_pushed() {
        let (mut tx, mut rx, _) = pair(64);
        assert!(tx.push(&[b"last"]).unwrap());
        tx.close();
        assert!(rx.is_closed());
        let mut out = Vec::new();
        assert!(rx.try_pop(&mut out).unwrap());
        assert_eq!(out, b"last");
    }

    #[test]
    fn waiting_for_data_returns_at_once_when_data_is_there() {
        let (mut tx, rx, _) = pair(64);
        assert!(tx.push(&[b"x"]).unwrap());
        assert!(rx.wait_for_data(None, &|| false).unwrap());
    }

    #[test]
    fn waiting_for_data_returns_at_once_when_aborted() {
        let (_, rx, _) = pair(64);
        assert!(!rx.wait_for_data(None, &|| true).unwrap());
    }

    /// A thread that waits on `rx` until data comes, `slices` times at
    /// most for `slice` each: true, or false once they are all spent
    /// (bounded: a lost wake-up fails the test instead of hanging it).
    fn waiter(
        rx: Consumer<HeapMemory>,
        slices: u32,
        slice: Duration,
    ) -> std::thread::JoinHandle<bool> {
        std::thread::spawn(move || {
            (0..slices).any(|_| rx.wait_for_data(Some(slice), &|| false).unwrap())
        })
    }

    #[test]
    fn a_sleeping_consumer_is_woken_by_a_push() {
        let (mut tx, rx, _) = pair(64);
        let waiter = waiter(rx, 600, Duration::from_millis(100));
        assert!(tx.push(&[b"wake"]).unwrap());
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn notify_says_whether_it_woke_a_sleeping_consumer() {
        let (mut tx, rx, _) = pair(64);
        // One long sleep: a consumer that woke at the end of a short one
        // between the push and the notify would find the record itself,
        // and the notify would rightly wake nobody.
        let waiter = waiter(rx, 1, Duration::from_secs(60));
        // Readiness, not time: the consumer reports itself asleep.
        while !tx.consumer_asleep() {
            std::thread::yield_now();
        }
        assert!(tx.try_push(&[b"wake"]).unwrap());
        assert!(tx.notify(), "the consumer slept: woken");
        assert!(waiter.join().unwrap());
        assert!(tx.try_push(&[b"again"]).unwrap());
        assert!(!tx.notify(), "nobody sleeps now");
    }

    #[test]
    fn a_waker_ends_a_sleep_and_the_abort_flag_is_seen() {
        let (_, rx, _) = pair(64);
        let waker = rx.waker();
        let stop = Arc::new(AtomicU32::new(0));
        let stop2 = stop.clone();
        let waiter = std::thread::spawn(move || {
            // Acquire pairs with the Release store below.
            let abort = || stop2.load(Ordering::Acquire) == 1;
            while !abort() {
                rx.wait_for_data(None, &abort).unwrap();
            }
        });
        stop.store(1, Ordering::Release);
        waker.wake();
        waiter.join().unwrap();
    }

    #[test]
    fn scribbled_memory_never_panics_or_overreads() {
        let (mut tx, mut rx, mem) = pair(128);
        let mut out = Vec::new();
        // Under Miri (every access checked, ~0.1 s a seed) a sample.
        let seeds = if cfg!(miri) { 40 } else { 2000 };
        for seed in 0u32..seeds {
            let bytes: Vec<u8> = (0..64u32)
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 97) >> 7) as u8)
                .collect();
            mem.scribble(&bytes);
            if let Ok(true) = rx.try_pop(&mut out) {
                assert!(out.len() <= rx.max_record());
            }
            let _ = tx.try_push(&[b"probe"]);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot ask which core a thread runs on")]
    fn a_consumer_s_core_is_seen_by_the_other_ring_s_consumer_only() {
        let (_, server_in, mem) = pair(256);
        let client_in = Consumer::new(mem, Direction::ServerToClient);
        let here = server_in.note_cpu();
        assert!(client_in.peer_on(here), "the client sees the server's core");
        assert!(
            !server_in.peer_on(here),
            "the server's own report is not its peer's"
        );
        assert!(!client_in.peer_on(here + 1));
    }

    #[test]
    fn a_core_reported_for_another_thread_is_seen_like_its_own_and_none_means_unknown() {
        let (_, server_in, mem) = pair(256);
        let client_in = Consumer::new(mem, Direction::ServerToClient);
        server_in.note_cpu_as(Some(7));
        assert!(client_in.peer_on(7));
        assert!(!client_in.peer_on(6));
        server_in.note_cpu_as(None);
        assert!(!client_in.peer_on(7));
        assert!(!client_in.peer_on(UNKNOWN_CPU));
    }

    #[test]
    fn a_peer_is_elsewhere_only_when_it_reported_another_core_and_this_one_is_known() {
        let (_, server_in, mem) = pair(256);
        let client_in = Consumer::new(mem, Direction::ServerToClient);
        assert!(!client_in.peer_elsewhere(3), "no report yet");
        server_in.note_cpu_as(Some(7));
        assert!(client_in.peer_elsewhere(3));
        assert!(!client_in.peer_elsewhere(7), "the same core");
        assert!(
            !client_in.peer_elsewhere(UNKNOWN_CPU),
            "this side cannot say"
        );
        server_in.note_cpu_as(None);
        assert!(!client_in.peer_elsewhere(3), "the peer cannot say");
    }

    #[test]
    fn spinning_is_futile_while_the_peer_is_on_this_core_or_away_and_only_then() {
        let (_, server_in, mem) = pair(256);
        let client_in = Consumer::new(mem, Direction::ServerToClient);
        assert!(!client_in.spinning_futile(3), "no report yet");
        server_in.note_cpu_as(Some(3));
        assert!(client_in.spinning_futile(3));
        assert!(!client_in.spinning_futile(4));
        assert!(
            !client_in.spinning_futile(UNKNOWN_CPU),
            "this side cannot say"
        );
        server_in.note_away();
        for cpu in [0, 3, UNKNOWN_CPU] {
            assert!(client_in.spinning_futile(cpu), "away, seen from {cpu}");
        }
        server_in.note_cpu_as(None);
        assert!(!client_in.spinning_futile(3), "the peer cannot say");
    }

    #[test]
    fn a_peer_that_never_reported_shares_no_core() {
        let (_, server_in, _) = pair(256);
        assert!(!server_in.peer_on(current_cpu()));
        assert!(!server_in.peer_on(UNKNOWN_CPU));
    }

    #[test]
    fn a_forged_core_report_is_only_compared() {
        let (_, _, mem) = pair(256);
        let client_in = Consumer::new(mem.clone(), Direction::ServerToClient);
        mem.ctrl(Direction::ClientToServer)
            .data_wait
            .cpu
            .store(u32::MAX, Ordering::Relaxed);
        assert!(!client_in.peer_on(UNKNOWN_CPU));
        assert!(client_in.peer_on(u32::MAX - 1));
        assert!(!client_in.peer_on(0));
    }
}
