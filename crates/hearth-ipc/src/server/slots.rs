//! Slots for streamed calls on the blocking pool: a connection's, its
//! process's and the server's.
//!
//! Owns: how many `list`, `query` and `search` streams produce on the
//! blocking pool at once — per connection
//! (`ServerBuilder::max_running_streams`, default [`DEFAULT_RUNNING_STREAMS`]),
//! per client process (`max_running_streams_per_process`, default
//! [`DEFAULT_RUNNING_STREAMS_PER_PROCESS`]) and in all
//! (`max_server_running_streams`, by default half the pool) — and the order
//! in which waiting streams get a slot at each level: a connection's in the
//! order its reading loop admitted them (the order the client sent them),
//! a process's and the server's in the order their streams got the level
//! below. A stream waiting for a slot is a parked task: it holds no pool
//! thread. Must never: lose a slot (a slot handed to a stream that was
//! cancelled or whose connection ended passes on to the next waiter, or
//! back); let a producer run without all of its [`Places`]; take the
//! levels in another order than connection, process, server (a stream
//! holding a wider slot while it waits for a narrower one could leave the
//! wider level's slots to streams that cannot run). A producer holds its
//! thread while its client does not read (`router.rs`, `stream`): a
//! connection pipelining 1024 unread lists once held 512 threads, all the
//! pool tokio had, until the stall timeout; with only the connection's
//! slots, one process's 256 connections could still hold 1024.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use tokio::sync::oneshot;

/// Streams of one connection that produce on the blocking pool at once by
/// default. Producing is CPU work (SQLite pages, JSON): on the two cores
/// hearth is built for, a fifth stream of one client would not finish its
/// answers sooner, and a client reads its streams through one socket or
/// ring. Four lets an app's screen ask for a list, a query and a search at
/// once without any waiting, while one connection that reads nothing holds
/// at most four pool threads (of `ServerBuilder::max_blocking_threads`,
/// 512).
pub(crate) const DEFAULT_RUNNING_STREAMS: usize = 4;

/// Streams of all of one client process's connections (by the socket
/// peer's pid) that produce on the blocking pool at once by default: eight
/// connections' worth. An app's worker pool of sixteen threads, each
/// streaming, still gets two at once each (on two cores more would not
/// finish sooner), while one process that opens its most connections
/// (256) and reads none of their streams holds 32 of the pool's 512
/// threads rather than 1024.
pub(crate) const DEFAULT_RUNNING_STREAMS_PER_PROCESS: usize = 32;

/// The length at which a level's queue first prunes its cancelled waiters
/// (and [`ByProcess`] the processes nothing holds).
const PRUNE_FIRST: usize = 64;

/// The length at which a collection left with `len` live entries is
/// pruned next: once it has doubled, so that pruning costs a constant per
/// entry added.
fn next_prune(len: usize) -> usize {
    (len * 2).max(PRUNE_FIRST)
}

/// The default of the server-wide limit, given the blocking pool's size:
/// half of it, so that however many processes stream and read nothing, the
/// other half is left for what every client needs the pool for — writes
/// waiting for their sync, point calls over the socket, handlers.
pub(crate) fn default_server_running_streams(max_blocking_threads: usize) -> usize {
    (max_blocking_threads / 2).max(1)
}

#[derive(Debug)]
struct State {
    /// Slots handed out (held, or on their way to a waiter).
    running: usize,
    max: usize,
    /// Streams waiting for a slot, oldest first (those cancelled meanwhile
    /// included, until their turn comes or they are pruned).
    waiting: VecDeque<oneshot::Sender<Slot>>,
    /// The queue's length at which cancelled waiters are pruned next.
    prune_at: usize,
}

/// One connection's slots.
#[derive(Debug, Clone)]
pub(crate) struct StreamSlots(Arc<Mutex<State>>);

/// A stream's place, taken when it was admitted: its slot now, or its turn
/// in the queue.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A slot was free.
    Now(Slot),
    /// Every slot was taken; the slot comes through here, in turn.
    Later(oneshot::Receiver<Slot>),
}

impl Admission {
    /// Whether the stream has to wait for a slot.
    pub(crate) fn waits(&self) -> bool {
        matches!(self, Admission::Later(_))
    }

    /// The stream's slot, once it has one; `None` only if the connection's
    /// slots are gone (it ended).
    pub(crate) async fn slot(self) -> Option<Slot> {
        match self {
            Admission::Now(slot) => Some(slot),
            Admission::Later(rx) => rx.await.ok(),
        }
    }
}

/// A running stream's slot at one level; dropping it hands it to the
/// oldest waiter.
#[derive(Debug)]
pub(crate) struct Slot {
    /// `None` once the slot has been passed on or given back.
    slots: Option<Arc<Mutex<State>>>,
}

/// Everything a producer must hold to run: its slots at every level, given
/// back (the widest first) when it is dropped.
#[derive(Debug)]
pub(crate) struct Places {
    // Held only to be dropped, in this order: the server's slot, then the
    // process's, then the connection's, the reverse of the order they were
    // taken.
    _server: Slot,
    _process: Option<Slot>,
    _connection: Slot,
}

/// Which wider level a stream had to wait at, for the statistics (a wait
/// for the connection's slots is counted when the stream is admitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Its process's slots were all taken.
    Process,
    /// The server's.
    Server,
}

/// The levels a stream takes its places at, narrowest first.
#[derive(Debug, Clone)]
pub(crate) struct Levels {
    /// The client process's slots; `None` when its pid is unknown.
    pub(crate) process: Option<StreamSlots>,
    /// The server's.
    pub(crate) server: StreamSlots,
}

impl Levels {
    /// The stream's places, taken level by level once its connection slot
    /// (`admission`) comes: `waited` is told of each wider level it has to
    /// wait at. `None` only if a level's slots are gone (the connection
    /// ended).
    pub(crate) async fn places(
        &self,
        admission: Admission,
        mut waited: impl FnMut(Level),
    ) -> Option<Places> {
        let connection = admission.slot().await?;
        let process = match &self.process {
            Some(slots) => Some(slots.take(Level::Process, &mut waited).await?),
            None => None,
        };
        let server = self.server.take(Level::Server, &mut waited).await?;
        Some(Places {
            _server: server,
            _process: process,
            _connection: connection,
        })
    }
}

/// Each client process's stream slots, by pid, for as long as anything
/// holds them: a connection of the process, or a stream's places — a
/// producer still scanning after its connection closed keeps its
/// process's slots, and the process's next connection gets the same ones,
/// not a fresh set (which would let a process that cancels and reconnects
/// run any number of producers).
#[derive(Debug, Default)]
pub(crate) struct ByProcess {
    map: Mutex<ByPid>,
}

#[derive(Debug, Default)]
struct ByPid {
    slots: HashMap<i32, Weak<Mutex<State>>>,
    /// The map's size at which entries nothing holds are forgotten next.
    prune_at: usize,
}

impl ByProcess {
    /// Process `pid`'s slots, made (`max` of them) if nothing holds them.
    pub(crate) fn slots(&self, pid: i32, max: usize) -> StreamSlots {
        let mut map = self.map.lock();
        if let Some(state) = map.slots.get(&pid).and_then(Weak::upgrade) {
            return StreamSlots(state);
        }
        // Forgets the processes whose slots nothing holds, each time the
        // map has doubled since: amortised, a constant per new process.
        if map.slots.len() >= map.prune_at {
            map.slots.retain(|_, state| state.strong_count() > 0);
            map.prune_at = next_prune(map.slots.len());
        }
        let slots = StreamSlots::new(max);
        map.slots.insert(pid, Arc::downgrade(&slots.0));
        slots
    }
}

impl StreamSlots {
    /// `max` slots (at least one).
    pub(crate) fn new(max: usize) -> StreamSlots {
        StreamSlots(Arc::new(Mutex::new(State {
            running: 0,
            max: max.max(1),
            waiting: VecDeque::new(),
            prune_at: PRUNE_FIRST,
        })))
    }

    /// Admits a stream: a slot if one is free and nobody waits, else a
    /// place at the back of the queue. Called in the order the client's
    /// requests arrived, which is the order slots are then handed out.
    pub(crate) fn admit(&self) -> Admission {
        let mut state = self.0.lock();
        if state.running < state.max && state.waiting.is_empty() {
            state.running += 1;
            return Admission::Now(Slot {
                slots: Some(self.0.clone()),
            });
        }
        // A server's or a process's queue outlives any connection, and
        // streams cancelled while they wait stay in it until their turn:
        // while every slot is held (unread streams, until the stall
        // timeout), list-and-cancel pairs would grow it without bound, and
        // the next slot given back would walk them all under the lock.
        // Pruned each time the queue has doubled since: amortised, a
        // constant per stream.
        if state.waiting.len() >= state.prune_at {
            state.waiting.retain(|tx| !tx.is_closed());
            state.prune_at = next_prune(state.waiting.len());
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.push_back(tx);
        Admission::Later(rx)
    }

    /// A slot at `level`, once it comes: admitted now, `waited` told if it
    /// has to wait. `None` if the slots are gone.
    async fn take(&self, level: Level, waited: &mut impl FnMut(Level)) -> Option<Slot> {
        let admission = self.admit();
        if admission.waits() {
            waited(level);
        }
        admission.slot().await
    }

    /// Streams waiting for a slot (those cancelled meanwhile included, until
    /// their turn comes).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.0.lock().waiting.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(slots) = self.slots.take() else {
            return;
        };
        let mut state = slots.lock();
        while let Some(tx) = state.waiting.pop_front() {
            let next = Slot {
                slots: Some(slots.clone()),
            };
            match tx.send(next) {
                // Its receiver now owns the slot; if it is dropped before
                // taking it, the slot is dropped with it and passes on.
                Ok(()) => return,
                // That stream was cancelled or its connection ended: the
                // next waiter's turn. Defused, so that its drop does not
                // come back here (the lock is held).
                Err(mut unwanted) => unwanted.slots = None,
            }
        }
        state.running -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(a: Admission) -> Slot {
        match a {
            Admission::Now(slot) => slot,
            Admission::Later(_) => panic!("expected a free slot"),
        }
    }

    fn later(a: Admission) -> oneshot::Receiver<Slot> {
        match a {
            Admission::Later(rx) => rx,
            Admission::Now(_) => panic!("expected to wait"),
        }
    }

    #[test]
    fn streams_beyond_the_slots_wait_and_get_theirs_in_order() {
        let slots = StreamSlots::new(2);
        let a = now(slots.admit());
        let b = now(slots.admit());
        let mut c = later(slots.admit());
        let mut d = later(slots.admit());
        assert_eq!(slots.waiting(), 2);
        assert!(c.try_recv().is_err() && d.try_recv().is_err());
        drop(b);
        let c = c.try_recv().expect("the oldest waiter gets the slot");
        assert!(d.try_recv().is_err());
        drop(a);
        let d = d.try_recv().expect("then the next");
        drop((c, d));
        assert_eq!(slots.0.lock().running, 0);
        // All free again: a new stream runs at once.
        drop(now(slots.admit()));
    }

    #[test]
    fn a_new_stream_does_not_overtake_one_that_waits() {
        let slots = StreamSlots::new(1);
        let a = now(slots.admit());
        let mut b = later(slots.admit());
        drop(a);
        // The slot went to b, so c waits although b has not taken it yet.
        let c = slots.admit();
        assert!(c.waits());
        assert!(b.try_recv().is_ok());
    }

    #[test]
    fn a_cancelled_waiter_is_skipped_and_its_slot_not_lost() {
        let slots = StreamSlots::new(1);
        let a = now(slots.admit());
        let b = later(slots.admit());
        let mut c = later(slots.admit());
        drop(b);
        drop(a);
        let c_slot = c.try_recv().expect("c's turn: b is gone");
        drop(c_slot);
        assert_eq!(slots.0.lock().running, 0);
        assert_eq!(slots.waiting(), 0);
    }

    #[test]
    fn a_slot_sent_to_a_waiter_that_goes_before_taking_it_passes_on() {
        let slots = StreamSlots::new(1);
        let a = now(slots.admit());
        let b = later(slots.admit());
        let mut c = later(slots.admit());
        drop(a); // sent to b, which never takes it
        assert!(c.try_recv().is_err());
        drop(b);
        assert!(c.try_recv().is_ok(), "b's unread slot passed to c");
    }

    /// Levels with `process` and `server` slots, and a place to count waits.
    fn levels(process: Option<usize>, server: usize) -> Levels {
        Levels {
            process: process.map(StreamSlots::new),
            server: StreamSlots::new(server),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Polls `f` once: its output if it is ready.
    fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_stream_runs_only_once_it_has_its_connections_its_processs_and_the_servers_slot() {
        let lv = levels(Some(1), 1);
        let (a, b) = (StreamSlots::new(4), StreamSlots::new(4));
        let waits = std::cell::RefCell::new(Vec::new());
        let first =
            block_on(lv.places(a.admit(), |l| waits.borrow_mut().push(l))).expect("all free");
        assert_eq!(lv.server.0.lock().running, 1);
        // Another connection of the same process has a slot of its own, but
        // the process's one is taken: it waits there.
        let mut second = Box::pin(lv.places(b.admit(), |l| waits.borrow_mut().push(l)));
        assert!(poll_once(&mut second).is_none());
        drop(first);
        let second = poll_once(&mut second)
            .flatten()
            .expect("the process's slot came");
        drop(second);
        assert_eq!(*waits.borrow(), [Level::Process]);
        assert_eq!(lv.server.0.lock().running, 0);
        assert_eq!(
            a.0.lock().running + b.0.lock().running,
            0,
            "every level given back"
        );
    }

    #[test]
    fn streams_of_every_process_together_wait_for_the_servers_slots() {
        // Two processes, each with its own slots, share the server's one.
        let (p1, p2) = (levels(Some(4), 1), levels(Some(4), 1));
        let p2 = Levels {
            server: p1.server.clone(),
            ..p2
        };
        let waits = std::cell::RefCell::new(Vec::new());
        let first = block_on(p1.places(StreamSlots::new(4).admit(), |_| {})).unwrap();
        let mut second =
            Box::pin(p2.places(StreamSlots::new(4).admit(), |l| waits.borrow_mut().push(l)));
        assert!(poll_once(&mut second).is_none());
        assert_eq!(p1.server.0.lock().running, 1, "one producer at a time");
        drop(first);
        assert!(poll_once(&mut second).flatten().is_some());
        assert_eq!(*waits.borrow(), [Level::Server]);
    }

    #[test]
    fn a_stream_that_gives_up_waiting_for_a_wider_slot_gives_its_connections_back() {
        let lv = levels(None, 1);
        let conn = StreamSlots::new(1);
        let holder = block_on(lv.places(StreamSlots::new(1).admit(), |_| {})).unwrap();
        let mut waiting = Box::pin(lv.places(conn.admit(), |_| {}));
        assert!(poll_once(&mut waiting).is_none());
        // Cancelled while it waits for the server's slot.
        drop(waiting);
        // Its connection's slot is free again for the connection's next stream.
        assert!(!conn.admit().waits());
        drop(holder);
        assert_eq!(lv.server.0.lock().running, 0);
    }

    #[test]
    fn a_process_gets_the_same_slots_while_anything_holds_them_and_fresh_ones_after() {
        let by = ByProcess::default();
        let first = by.slots(7, 1);
        let held = now(first.admit());
        drop(first); // its last connection closed; a producer holds `held`
        let again = by.slots(7, 1);
        assert!(again.admit().waits(), "the producer's slot is still taken");
        drop((held, again));
        let fresh = by.slots(7, 1);
        assert!(!fresh.admit().waits());
    }

    #[test]
    fn processes_whose_slots_nothing_holds_are_forgotten() {
        let by = ByProcess::default();
        for pid in 0..1000 {
            drop(by.slots(pid, 1));
        }
        assert!(
            by.map.lock().slots.len() <= 128,
            "{}",
            by.map.lock().slots.len()
        );
    }

    #[test]
    fn waiters_cancelled_while_every_slot_is_held_do_not_pile_up() {
        let slots = StreamSlots::new(1);
        let held = now(slots.admit());
        for _ in 0..10_000 {
            drop(later(slots.admit()));
        }
        assert!(
            slots.waiting() <= 2 * PRUNE_FIRST,
            "{} waiting",
            slots.waiting()
        );
        // A live waiter is never pruned, and gets the slot.
        let mut live = later(slots.admit());
        for _ in 0..1_000 {
            drop(later(slots.admit()));
        }
        drop(held);
        assert!(live.try_recv().is_ok());
    }

    #[test]
    fn the_default_server_limit_leaves_half_the_pool_to_everything_else() {
        assert_eq!(default_server_running_streams(512), 256);
        assert_eq!(default_server_running_streams(1), 1);
    }

    #[test]
    fn slots_outliving_their_connection_are_dropped_quietly() {
        let slots = StreamSlots::new(1);
        let a = now(slots.admit());
        let b = slots.admit();
        drop(slots);
        drop(a);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let slot = rt.block_on(b.slot());
        assert!(slot.is_some(), "the queue lives as long as a slot does");
    }
}
