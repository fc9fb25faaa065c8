//! The shared poller: one thread that serves the rings of many busy
//! shared-memory connections in turn, once there are more of them than
//! cores.
//!
//! Owns: the rings lent to it by their connections' threads (which park
//! meanwhile), looking at each in turn and answering one quick request per
//! ring per pass (see `RingThread::poll_once`), reporting its core on each
//! ring it serves (so that a client on the same core yields rather than
//! spin against it), yielding the core after passes that found nothing
//! (at once, unless a client it serves runs on another core: then after
//! `POLL_LINGER` of them, [`Linger`]), and giving every ring back to its thread: with a request it will not
//! run, an answer that did not fit, corruption, the end of the connection,
//! or after the ring has been idle a while (the thread then sleeps on the
//! ring's futex, so that an idle connection costs nothing). With one thread serving N rings, a busy client's next
//! request finds its answer ready more often than with N threads taking
//! turns on few cores: fewer context switches per call.
//!
//! Must never: block on a peer or the applier (it runs nothing that can:
//! a write goes back to its thread while the store holds writers back),
//! keep a ring whose connection has ended, or lose one (a ring it still
//! holds when it unwinds goes back to its thread as it is dropped).

use super::shm::{Polled, RingThread, Then};
use hearth_shm::SpinClaim;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// A ring idle this long goes back to its thread, which sleeps on it.
const RETURN_IDLE: Duration = Duration::from_millis(1);

/// How long the poller thread waits for a ring before it exits.
const LINGER: Duration = Duration::from_millis(50);

/// How long the poller keeps polling through passes that answered nothing
/// while a client it serves last ran on another core, before it yields
/// its own core. A client that works a few microseconds between calls (a
/// Node process runs ~3 µs of JavaScript per call) left every pass in
/// between empty, and a yield after each handed the poller's core to
/// another client, which then waited for the poller in turn: four Node
/// client processes on 2 cores got 98–101k gets/s together against one's
/// 310–400k; with the linger (and the waiters' yields, `hearth_shm`'s
/// `SHARED_YIELDS`) 357–364k. 20 to 200 µs did about as well.
const POLL_LINGER: Duration = Duration::from_micros(50);

/// When the poller gives its core away after passes that answered nothing
/// (policy only: no I/O, time passed in).
///
/// A pass that answered a request resets it. After an empty pass, the
/// poller yields at once when no client it serves last ran on another
/// core — every client that could send next needs this core (it is queued
/// behind the poller, or it sleeps), as always when everything runs on
/// one core — and otherwise once passes have been empty for
/// [`POLL_LINGER`]: the client elsewhere is most likely between two calls
/// and sends again within microseconds.
#[derive(Debug, Default)]
pub(super) struct Linger {
    /// The start of the current run of empty passes.
    empty_since: Option<Instant>,
}

impl Linger {
    /// After a pass at `now`: whether to yield the core.
    pub(super) fn after_pass(
        &mut self,
        now: Instant,
        served: bool,
        client_elsewhere: bool,
    ) -> bool {
        if served {
            self.empty_since = None;
            return false;
        }
        let since = *self.empty_since.get_or_insert(now);
        !client_elsewhere || now.duration_since(since) >= POLL_LINGER
    }
}

/// The server's shared poller (its thread runs only while it has rings).
#[derive(Default)]
pub(crate) struct Poller {
    inbox: Mutex<Inbox>,
    /// Rings are waiting in the inbox.
    queued: AtomicBool,
    /// Connection threads not asleep on their ring's futex (serving,
    /// spinning, or with their ring lent): each stands for a busy client
    /// thread too.
    awake: AtomicUsize,
    /// Requests answered here since the server started.
    polled: AtomicU64,
    /// Rings on loan now (in the inbox or being served).
    lent: AtomicUsize,
}

/// Counts a connection thread as awake until dropped.
pub(super) struct AwakeGuard(Arc<Poller>);

impl Drop for AwakeGuard {
    fn drop(&mut self) {
        self.0.asleep();
    }
}

#[derive(Default)]
struct Inbox {
    lent: Vec<Lent>,
    /// The poller thread, while it runs.
    thread: Option<Thread>,
}

/// Where a lent ring goes back to.
struct Handback {
    slot: Mutex<Option<(Box<RingThread>, Then)>>,
    owner: Thread,
}

/// A ring on loan to the poller; dropping it gives it back.
struct Lent {
    ring: Option<Box<RingThread>>,
    back: Arc<Handback>,
    last_busy: Instant,
}

impl Lent {
    fn give_back(mut self, then: Then) {
        self.hand_back(then);
    }

    fn hand_back(&mut self, then: Then) {
        if let Some(ring) = self.ring.take() {
            let shared = ring.shared().clone();
            *self.back.slot.lock() = Some((ring, then));
            self.back.owner.unpark();
            shared.poller.lent.fetch_sub(1, Ordering::Relaxed);
            shared.bump();
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.hand_back(Then::Carry);
    }
}

impl Poller {
    /// Counts the calling connection thread as awake until the guard drops.
    pub(super) fn awake_guard(self: Arc<Self>) -> AwakeGuard {
        self.awake();
        AwakeGuard(self)
    }

    /// A connection thread woke up.
    pub(super) fn awake(&self) {
        // Relaxed: a heuristic count; nothing is published through it.
        self.awake.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection thread goes to sleep on its ring's futex.
    pub(super) fn asleep(&self) {
        self.awake.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests answered by the poller since the server started.
    pub(super) fn polled(&self) -> u64 {
        // Relaxed: a statistic.
        self.polled.load(Ordering::Relaxed)
    }

    /// Rings on loan to the poller now.
    pub(super) fn lent(&self) -> usize {
        // Relaxed: a statistic.
        self.lent.load(Ordering::Relaxed)
    }

    /// Counts a request the poller is about to answer.
    pub(super) fn count_polled(&self) {
        self.polled.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a connection thread should lend its ring rather than spin:
    /// its busy clients alone fill the cores, or every core already has a
    /// spinner of this process.
    pub(super) fn crowded(&self) -> bool {
        let cores = hearth_shm::cores();
        self.awake.load(Ordering::Relaxed) >= cores || hearth_shm::spinning() >= cores
    }

    /// Lends `ring` to the poller and parks the calling thread until the
    /// poller gives it back, with what to do first.
    pub(super) fn lend(self: &Arc<Self>, ring: Box<RingThread>) -> (Box<RingThread>, Then) {
        self.lent.fetch_add(1, Ordering::Relaxed);
        ring.shared().bump();
        let back = Arc::new(Handback {
            slot: Mutex::new(None),
            owner: thread::current(),
        });
        {
            let mut inbox = self.inbox.lock();
            inbox.lent.push(Lent {
                ring: Some(ring),
                back: back.clone(),
                last_busy: Instant::now(),
            });
            // Release: pairs with the Acquire swap in `run`; the inbox's
            // lock orders the push itself.
            self.queued.store(true, Ordering::Release);
            match &inbox.thread {
                Some(poller) => poller.unpark(),
                None => {
                    let poller = self.clone();
                    let spawned = thread::Builder::new()
                        .name("hearth-shm-poller".into())
                        .spawn(move || poller.run());
                    match spawned {
                        Ok(handle) => inbox.thread = Some(handle.thread().clone()),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not start the shared-memory poller");
                            // Dropping the loan hands the ring straight back.
                            inbox.lent.clear();
                        }
                    }
                }
            }
        }
        loop {
            if let Some(back) = back.slot.lock().take() {
                return back;
            }
            thread::park();
        }
    }

    fn run(self: Arc<Self>) {
        let mut owned: Vec<Lent> = Vec::new();
        let mut claim: Option<SpinClaim> = None;
        let mut linger = Linger::default();
        loop {
            // Acquire: pairs with the Release store in `lend`.
            if self.queued.swap(false, Ordering::Acquire) {
                owned.append(&mut self.inbox.lock().lent);
            }
            if owned.is_empty() {
                claim = None;
                thread::park_timeout(LINGER);
                let mut inbox = self.inbox.lock();
                if inbox.lent.is_empty() {
                    // Nothing came: exit. A lender that comes after this
                    // finds no thread and starts a new one.
                    inbox.thread = None;
                    return;
                }
                continue;
            }
            // The poller takes a core's worth of spinning while it serves.
            claim.get_or_insert_with(SpinClaim::new);
            let now = Instant::now();
            let cpu = hearth_shm::this_cpu();
            let mut served = false;
            let mut client_elsewhere = false;
            let mut i = 0;
            while i < owned.len() {
                let lent = &mut owned[i];
                let Some(ring) = lent.ring.as_mut() else {
                    owned.swap_remove(i);
                    continue;
                };
                let polled = if ring.stopped() {
                    Polled::Return(Then::Carry)
                } else {
                    ring.note_cpu_as(cpu);
                    client_elsewhere |= ring.client_elsewhere(cpu);
                    ring.poll_once()
                };
                match polled {
                    Polled::Served => {
                        served = true;
                        lent.last_busy = now;
                        i += 1;
                    }
                    Polled::Empty if now.duration_since(lent.last_busy) < RETURN_IDLE => i += 1,
                    Polled::Empty => owned.swap_remove(i).give_back(Then::Sleep),
                    Polled::Return(then) => owned.swap_remove(i).give_back(then),
                }
            }
            if linger.after_pass(now, served, client_elsewhere) {
                thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pass_yields_at_once_when_no_client_runs_elsewhere() {
        let mut l = Linger::default();
        let t = Instant::now();
        assert!(l.after_pass(t, false, false));
    }

    #[test]
    fn empty_passes_keep_the_core_for_the_linger_while_a_client_runs_elsewhere() {
        let mut l = Linger::default();
        let t = Instant::now();
        assert!(!l.after_pass(t, false, true));
        assert!(!l.after_pass(t + POLL_LINGER / 2, false, true));
        assert!(l.after_pass(t + POLL_LINGER, false, true));
    }

    #[test]
    fn a_pass_that_answered_never_yields_and_restarts_the_linger() {
        let mut l = Linger::default();
        let t = Instant::now();
        assert!(!l.after_pass(t, false, true));
        assert!(!l.after_pass(t + POLL_LINGER / 2, true, false));
        assert!(
            !l.after_pass(t + POLL_LINGER, false, true),
            "the run of empty passes began again"
        );
        assert!(l.after_pass(t + POLL_LINGER * 2, false, true));
    }

    #[test]
    fn the_linger_counts_from_the_first_empty_pass_even_when_no_client_ran_elsewhere_then() {
        let mut l = Linger::default();
        let t = Instant::now();
        assert!(l.after_pass(t, false, false));
        assert!(l.after_pass(t + POLL_LINGER, false, true));
    }
}
