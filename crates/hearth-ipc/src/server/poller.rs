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
//! turns on few cores: fewer context switches per call. Several busy
//! connections of one client process take turns (`turns.rs`): the poller
//! answers one of them at a time (per core beyond its own) for a time
//! slice, in a tight loop, and reports "away" on the others' rings so
//! that their threads sleep; a turn holder found on the poller's core
//! gives its turn to one of its process's clients elsewhere, or the
//! poller moves off the core (also when the holder is the only client
//! it serves); a holder silent for `TURN_PEEK` has its calling thread's
//! state looked at (`Lent::client_running`: asleep, its turn ends).
//!
//! Must never: block on a peer or the applier (it runs nothing that can:
//! a write goes back to its thread while the store holds writers back),
//! keep a ring whose connection has ended, or lose one (a ring it still
//! holds when it unwinds goes back to its thread as it is dropped).

use super::shm::{Polled, RingThread, Then};
use super::turns::{
    Group, HolderHere, TURN_SLICE, Turns, Waiting, handing_over, holder_here, many_later,
};
use hearth_shm::{SpinClaim, ThreadProbe, TurnHint};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// A ring idle this long goes back to its thread, which sleeps on it.
const RETURN_IDLE: Duration = Duration::from_millis(1);

/// Once no ring has had a request (answered or waiting for a turn) for
/// this long, every ring goes back to its thread, idle for
/// [`RETURN_IDLE`] or not: the clients are calling now and then, not
/// busy, and a poller kept by a ring that is never idle for a whole
/// [`RETURN_IDLE`] would spin a core for them. Two connections each
/// sending a ping every 800 µs kept the poller at 99 % of a core (the
/// hostile-client audit); a lone connection's thread spins 100 µs after a
/// request (`SPIN`). The longest silence of a busy Node client holding a
/// turn (`turns::TURN_IDLE_BUDGETED`) is 300 µs.
const RETURN_QUIET: Duration = Duration::from_micros(300);

/// How long a turn handed over by the client whose turn ended may take
/// to begin (its successor's next request) before the poller wakes the
/// successor itself: a handoff takes 5–15 µs here (the predecessor sees
/// the name within a microsecond of its next look, wakes its successor on
/// its own core and sleeps); the poller's own wake-up from its core costs
/// ~20–35 µs on this VM (docs/performance-log.md).
const HANDOFF_WAIT: Duration = Duration::from_micros(30);

/// A ring's client that reports a thread the poller has no probe for
/// gets a new one at most this often (each open of `/proc/…/stat` costs
/// the poller tens of microseconds; a client changing the thread it
/// reports at every call would otherwise have it opening files).
const PROBE_REOPEN: Duration = Duration::from_millis(1);

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

/// The poller moves off its turn holder's core once per turn, and again
/// after this long.
const MOVE_EVERY: Duration = Duration::from_millis(10);

/// How often, while every turn is held, the poller looks at every ring
/// (each look reads the client's index: a cache miss per ring): for new
/// waiters, rings gone idle and connections that ended.
const SCAN_EVERY: Duration = Duration::from_micros(250);

/// Rounds over the holders' rings between two looks at the clock.
const ROUNDS_PER_LOOK: u32 = 64;

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
    /// Turns handed over by the client whose turn ended (it woke the next
    /// holder itself) since the server started.
    handoffs: AtomicU64,
    /// Turns whose handoff did not come within [`HANDOFF_WAIT`] (the
    /// poller woke the next holder itself).
    handoffs_missed: AtomicU64,
    /// Turns ended because the holder's calling thread was found asleep
    /// (`TURN_PEEK`), before `TURN_IDLE`.
    holders_asleep: AtomicU64,
    /// Times a busy ring was told to wait while another of its turn group
    /// had the turn.
    turn_waits: AtomicU64,
    /// Rings on loan now (in the inbox or being served).
    lent: AtomicUsize,
    /// Loans made since the server started (each loan's id).
    loans: AtomicU64,
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
    /// This loan's id (turns are held by loan).
    id: u64,
    /// Whose turns it takes part in (`Turns`, `RingThread::turn_group`):
    /// its process's, and maybe those shared across processes.
    group: Group,
    /// When the last look found a request waiting for a turn.
    waiting_since: Option<Instant>,
    /// Its last turn ended at once because its client ran on the poller's
    /// core ([`Serving::leave_core`]).
    passed_over: bool,
    /// The client's calling thread's `/proc` stat, once looked at.
    probe: Option<ThreadProbe>,
    /// When the last probe was opened (or tried).
    probe_opened: Option<Instant>,
}

impl Lent {
    /// Whether the thread the client says calls on this ring runs or waits
    /// for a core, as of `now`: a holder silent for `TURN_PEEK`. True when
    /// it cannot be looked at (no pid or thread reported, `/proc` closed,
    /// a probe opened too recently: [`PROBE_REOPEN`]) and when a request
    /// is on the ring by now (sent just before the thread slept, waiting
    /// for its answer). A thread found asleep is counted
    /// (`shm_holders_asleep`).
    fn client_running(&mut self, now: Instant) -> bool {
        let Some(ring) = self.ring.as_ref() else {
            return true;
        };
        let (Some(pid), Some(thread)) = (ring.client_pid(), ring.client_thread()) else {
            return true;
        };
        if self.probe.as_ref().is_none_or(|p| p.thread() != thread) {
            if self
                .probe_opened
                .is_some_and(|at| now.duration_since(at) < PROBE_REOPEN)
            {
                return true;
            }
            self.probe_opened = Some(now);
            self.probe = ThreadProbe::open(pid, thread).ok();
        }
        let Some(probe) = self.probe.as_ref() else {
            return true;
        };
        let running = probe.running().unwrap_or(true) || ring.waiting();
        if !running {
            ring.shared().poller.count_holder_asleep();
        }
        running
    }

    fn give_back(mut self, then: Then) {
        self.hand_back(then);
    }

    fn hand_back(&mut self, then: Then) {
        if let Some(mut ring) = self.ring.take() {
            // A quiet start ends here: its thread answers as usual.
            ring.end_quiet(None);
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

    /// Counts a turn the client whose turn ended handed over itself.
    pub(super) fn count_handoff(&self) {
        // Relaxed: a statistic.
        self.handoffs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a handoff that did not come within [`HANDOFF_WAIT`].
    pub(super) fn count_handoff_missed(&self) {
        // Relaxed: a statistic.
        self.handoffs_missed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a turn ended because its holder's thread was asleep.
    pub(super) fn count_holder_asleep(&self) {
        // Relaxed: a statistic.
        self.holders_asleep.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a busy ring told to wait for its turn.
    pub(super) fn count_turn_wait(&self) {
        // Relaxed: a statistic.
        self.turn_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Times a busy ring was told to wait for its turn, since the server
    /// started.
    pub(super) fn turn_waits(&self) -> u64 {
        // Relaxed: a statistic.
        self.turn_waits.load(Ordering::Relaxed)
    }

    /// Turns ended because the holder's calling thread was found asleep
    /// outside hearth, since the server started.
    pub(super) fn holders_asleep(&self) -> u64 {
        // Relaxed: a statistic.
        self.holders_asleep.load(Ordering::Relaxed)
    }

    /// Turns handed over by the clients themselves, and handoffs that did
    /// not come in time, since the server started.
    pub(super) fn handoffs(&self) -> (u64, u64) {
        // Relaxed: statistics.
        (
            self.handoffs.load(Ordering::Relaxed),
            self.handoffs_missed.load(Ordering::Relaxed),
        )
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
        // Whether many processes' clients go on later is the poller's to
        // count: until its next look, the ring's hint alone.
        let group = ring.turn_group(false);
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
                id: self.loans.fetch_add(1, Ordering::Relaxed),
                group,
                waiting_since: None,
                passed_over: false,
                probe: None,
                probe_opened: None,
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
        let mut serving = Serving::new();
        let mut claim: Option<SpinClaim> = None;
        loop {
            // Acquire: pairs with the Release store in `lend`.
            if self.queued.swap(false, Ordering::Acquire) {
                serving.owned.append(&mut self.inbox.lock().lent);
            }
            if serving.owned.is_empty() {
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
            let cpu = hearth_shm::this_cpu();
            let now = Instant::now();
            if serving.grantable()
                || serving.turns.due(now)
                || now.duration_since(serving.last_scan) >= SCAN_EVERY
            {
                serving.scan(now, cpu);
            } else {
                serving.run_turns(cpu);
            }
        }
    }
}

/// How long a ring found empty at `now` may have been idle and stay with
/// the poller, given every ring's last request (`last_busy`): [`RETURN_IDLE`],
/// or none at all once every ring has been quiet for [`RETURN_QUIET`].
fn return_idle(last_busy: impl Iterator<Item = Instant>, now: Instant) -> Duration {
    match last_busy.max() {
        Some(last) if now.duration_since(last) >= RETURN_QUIET => Duration::ZERO,
        _ => RETURN_IDLE,
    }
}

/// Whether a ring found with nothing to answer at `now` stays with the
/// poller: one waiting for a turn (`waiting_since`) always, whatever the
/// others do — it is to be answered in its turn, not sent back to sleep
/// (its thread would answer it out of turn, after an extra wake-up) — and
/// any other while it has been idle (since `last_busy`) less than
/// `return_idle` ([`return_idle`]).
fn stays(
    waiting_since: Option<Instant>,
    last_busy: Instant,
    now: Instant,
    return_idle: Duration,
) -> bool {
    waiting_since.is_some() || now.duration_since(last_busy) < return_idle
}

/// Whether a ring among `owned` that a holder of `group` holds back waits
/// for a turn (as the last look at it found).
fn waits_in(owned: &[Lent], group: Group) -> bool {
    owned
        .iter()
        .any(|l| group.holds_back(l.group) && l.waiting_since.is_some())
}

/// The poller thread's rings and what it knows of them.
struct Serving {
    owned: Vec<Lent>,
    turns: Turns,
    linger: Linger,
    last_scan: Instant,
    /// The last move off a holder's core: whose turn, when.
    moved: Option<(u64, Instant)>,
}

impl Serving {
    /// Whether a ring not answered now could get a turn at once (a look
    /// at every ring is then due at every pass, as before turns).
    fn grantable(&self) -> bool {
        self.owned
            .iter()
            .any(|l| !self.turns.holds(l.id) && self.turns.free_for(l.group))
    }

    fn new() -> Serving {
        Serving {
            owned: Vec::new(),
            turns: Turns::new(hearth_shm::cores().saturating_sub(1), TURN_SLICE),
            linger: Linger::default(),
            last_scan: Instant::now(),
            moved: None,
        }
    }

    /// One look at every ring: answers the holders' requests, notes the
    /// rings that wait for a turn, gives back the idle and the ended ones,
    /// ends and grants turns, and yields the core after a pass that
    /// answered nothing ([`Linger`]).
    fn scan(&mut self, now: Instant, cpu: Option<u32>) {
        self.last_scan = now;
        let many_later = many_later(self.owned.iter().filter_map(|l| {
            let ring = l.ring.as_ref()?;
            (ring.turn_hint() == TurnHint::Later).then(|| ring.client_process())
        }));
        let mut served = false;
        let mut client_elsewhere = false;
        let mut client_here = None;
        let return_idle = return_idle(self.owned.iter().map(|l| l.last_busy), now);
        let mut i = 0;
        while i < self.owned.len() {
            let lent = &mut self.owned[i];
            let holder = self.turns.holds(lent.id);
            let Some(ring) = lent.ring.as_mut() else {
                self.turns.release(lent.id);
                self.owned.swap_remove(i);
                continue;
            };
            if ring.stopped() {
                self.turns.release(lent.id);
                self.owned.swap_remove(i).give_back(Then::Carry);
                continue;
            }
            ring.end_quiet(Some(now));
            // The client says with each call how it waits for its turn, and
            // the poller counts the processes whose clients go on later:
            // the group follows both (from its next turn).
            lent.group = ring.turn_group(many_later);
            if holder || self.turns.free_for(lent.group) {
                ring.note_cpu_as(cpu);
                client_elsewhere |= ring.client_elsewhere(cpu);
                if holder && self.turns.settled(lent.id) && ring.client_on(cpu) {
                    client_here = Some(lent.id);
                }
            } else {
                // Its answer waits for a turn: its client should sleep.
                ring.note_away();
            }
            let polled = if holder {
                ring.poll_once()
            } else if ring.waiting() {
                lent.waiting_since.get_or_insert(now);
                lent.last_busy = now;
                Polled::Empty
            } else {
                Polled::Empty
            };
            match polled {
                Polled::Served => {
                    served = true;
                    lent.last_busy = now;
                    self.turns.served(lent.id, now, 1);
                    i += 1;
                }
                Polled::Empty if stays(lent.waiting_since, lent.last_busy, now, return_idle) => {
                    i += 1
                }
                Polled::Empty => {
                    self.turns.release(lent.id);
                    self.owned.swap_remove(i).give_back(Then::Sleep);
                }
                Polled::Return(then) => {
                    self.turns.release(lent.id);
                    self.owned.swap_remove(i).give_back(then);
                }
            }
        }
        // Holders silent for `TURN_PEEK` while another of their process
        // waits: a thread asleep outside hearth is not about to call, and
        // its turn ends now (H3g).
        let owned = &self.owned;
        let due = self.turns.looks_due(now, |group| waits_in(owned, group));
        for id in due {
            let lent = self.owned.iter_mut().find(|l| l.id == id);
            let running = lent.is_none_or(|l| l.client_running(now));
            self.turns.looked(id, running);
        }
        let owned = &self.owned;
        self.turns.expire(now, |group| waits_in(owned, group));
        let mut granted = false;
        // (the loan whose turn ended, the index in `owned` of the ring
        // whose turn begins, that ring's segment key)
        let mut handoffs: Vec<(u64, usize, u32)> = Vec::new();
        loop {
            let turns = &self.turns;
            let waiting = self.owned.iter().enumerate().filter_map(|(k, l)| {
                let since = l.waiting_since.filter(|_| turns.free_for(l.group))?;
                let here = l.ring.as_ref().is_some_and(|r| r.client_on(cpu));
                let process = l.group.process;
                Some((
                    k,
                    Waiting {
                        since,
                        here,
                        process,
                    },
                ))
            });
            let Some(k) = turns.pick(waiting) else {
                break;
            };
            let lent = &mut self.owned[k];
            lent.waiting_since = None;
            self.turns.grant(lent.id, lent.group, now);
            if let Some(ring) = lent.ring.as_ref() {
                ring.note_cpu_as(cpu);
                let key = ring.handoff_key();
                if key != 0
                    && let Some(from) = handing_over(self.turns.ended(), lent.group)
                    && !handoffs.iter().any(|&(f, _, _)| f == from)
                {
                    handoffs.push((from, k, key));
                }
            }
            granted = true;
        }
        if granted {
            // The clients whose turn ended wait now: they should sleep.
            for lent in &self.owned {
                let waits = !self.turns.holds(lent.id) && !self.turns.free_for(lent.group);
                if let Some(ring) = lent.ring.as_ref().filter(|_| waits) {
                    ring.note_away();
                    ring.shared().poller.count_turn_wait();
                }
            }
            // A turn whose slice ran out goes to the next client of its
            // process through the outgoing client (if both can — the name
            // means something only in the process that gave it, so never
            // from one process to another sharing turns — and the
            // outgoing one is waiting for an answer now, so that it reads
            // the name within microseconds — a client between two calls,
            // as a Node client often is for tens of microseconds, would
            // leave its successor asleep until `HANDOFF_WAIT`): it gets
            // the successor's name where it would read "away", and the
            // successor's waiting answer goes out without a wake-up.
            for (from, to, key) in handoffs {
                let Some(outgoing) = self
                    .owned
                    .iter()
                    .find(|l| l.id == from)
                    .and_then(|l| l.ring.as_ref())
                    .filter(|r| r.handoff_key() != 0 && r.waiting())
                else {
                    continue;
                };
                outgoing.hand_over(key);
                if let Some(ring) = self.owned[to].ring.as_mut() {
                    ring.answer_quietly_until(now + HANDOFF_WAIT);
                }
            }
        }
        if let Some(id) = client_here {
            self.leave_core(id, now, cpu);
        }
        if self.linger.after_pass(now, served, client_elsewhere) {
            thread::yield_now();
        }
    }

    /// Answers the rings whose turn it is, and only those, until a look
    /// at every ring is due (the clock read every [`ROUNDS_PER_LOOK`]
    /// rounds), a ring goes back to its thread, or the poller moves off
    /// its holder's core.
    fn run_turns(&mut self, cpu: Option<u32>) {
        let held: Vec<usize> = self
            .turns
            .holders()
            .filter_map(|id| self.owned.iter().position(|l| l.id == id))
            .collect();
        let mut answered = vec![0u32; held.len()];
        let mut elsewhere = true;
        let mut back: Option<(usize, Then)> = None;
        let mut rounds: u32 = 0;
        'run: loop {
            let mut any = false;
            for (k, &i) in held.iter().enumerate() {
                let Some(ring) = self.owned[i].ring.as_mut() else {
                    continue;
                };
                match ring.poll_once() {
                    Polled::Served => {
                        answered[k] += 1;
                        any = true;
                    }
                    Polled::Empty => {}
                    Polled::Return(then) => {
                        back = Some((i, then));
                        break 'run;
                    }
                }
            }
            rounds = rounds.wrapping_add(1);
            // A holder on this core (one core only: the poller cannot
            // move) needs the core to send its next request.
            let yielded = !any && !elsewhere;
            if yielded {
                thread::yield_now();
            }
            if !yielded && !rounds.is_multiple_of(ROUNDS_PER_LOOK) {
                continue;
            }
            let now = Instant::now();
            for &i in &held {
                if let Some(ring) = self.owned[i].ring.as_mut() {
                    ring.end_quiet(Some(now));
                }
            }
            self.credit(&held, &mut answered, now);
            elsewhere = false;
            let mut here = None;
            for &i in &held {
                let lent = &self.owned[i];
                let Some(ring) = lent.ring.as_ref() else {
                    continue;
                };
                if ring.stopped() {
                    back = Some((i, Then::Carry));
                    break 'run;
                }
                ring.note_cpu_as(cpu);
                elsewhere |= ring.client_elsewhere(cpu);
                if self.turns.settled(lent.id) && ring.client_on(cpu) {
                    here = Some(lent.id);
                }
            }
            if let Some(id) = here
                && self.leave_core(id, now, cpu)
            {
                // The turn or the core changed: the caller looks again.
                break;
            }
            if self.turns.due(now) || now.duration_since(self.last_scan) >= SCAN_EVERY {
                break;
            }
        }
        self.credit(&held, &mut answered, Instant::now());
        if let Some((i, then)) = back {
            self.turns.release(self.owned[i].id);
            self.owned.swap_remove(i).give_back(then);
        }
    }

    /// Counts the requests answered on the rings at `held` (by index, as
    /// `answered`) since the last look, as of `now`, and clears the counts.
    fn credit(&mut self, held: &[usize], answered: &mut [u32], now: Instant) {
        for (&i, n) in held.iter().zip(answered.iter_mut()) {
            let n = std::mem::take(n);
            if n > 0 {
                let lent = &mut self.owned[i];
                lent.last_busy = now;
                self.turns.served(lent.id, now, n);
            }
        }
    }

    /// The client holding turn `id` runs on the poller's core: the two
    /// would take turns on one core while the other idles. Ends its turn
    /// or moves the poller off the core, as [`holder_here`] decides; true
    /// if either happened.
    fn leave_core(&mut self, id: u64, now: Instant, cpu: Option<u32>) -> bool {
        let Some(k) = self.owned.iter().position(|l| l.id == id) else {
            return false;
        };
        let group = self.owned[k].group;
        let mut waits = false;
        let mut elsewhere_waits = false;
        let mut served_elsewhere = false;
        for l in self.owned.iter().filter(|l| l.id != id) {
            let Some(ring) = l.ring.as_ref() else {
                continue;
            };
            if group.holds_back(l.group) && l.waiting_since.is_some() {
                waits = true;
                elsewhere_waits |= !ring.client_on(cpu);
            } else if self.turns.holds(l.id) || self.turns.free_for(l.group) {
                served_elsewhere |= ring.client_elsewhere(cpu);
            }
        }
        let lent = &mut self.owned[k];
        match holder_here(waits, elsewhere_waits, lent.passed_over, served_elsewhere) {
            HolderHere::Stay => false,
            HolderHere::PassOver => {
                // Once: a client that keeps waking here must still be served.
                lent.passed_over = true;
                lent.waiting_since = Some(now);
                self.turns.release(id);
                true
            }
            HolderHere::MoveOff => {
                lent.passed_over = false;
                self.move_off(id, now, cpu)
            }
        }
    }

    /// Moves the poller off its core, where the client holding turn `id`
    /// runs. Once per turn, and again after [`MOVE_EVERY`]; true if it
    /// moved.
    fn move_off(&mut self, id: u64, now: Instant, cpu: Option<u32>) -> bool {
        let Some(cpu) = cpu else {
            return false;
        };
        let again = self
            .moved
            .is_none_or(|(last, at)| last != id || now.duration_since(at) >= MOVE_EVERY);
        if !again || hearth_shm::cores() < 2 {
            return false;
        }
        self.moved = Some((id, now));
        hearth_shm::move_off(cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_stay_while_any_had_a_request_lately() {
        let t = Instant::now();
        let busy = [t, t + RETURN_QUIET / 2];
        assert_eq!(return_idle(busy.into_iter(), t + RETURN_QUIET), RETURN_IDLE);
    }

    #[test]
    fn every_ring_goes_back_once_all_were_quiet_for_a_while() {
        let t = Instant::now();
        let quiet = [t, t + Duration::from_micros(10)];
        let now = t + Duration::from_micros(10) + RETURN_QUIET;
        assert_eq!(return_idle(quiet.into_iter(), now), Duration::ZERO);
    }

    #[test]
    fn a_ring_waiting_for_a_turn_stays_once_every_ring_was_quiet() {
        // The look before this one was more than `RETURN_QUIET` ago (the
        // poller was preempted, or ran its holders' turns): every ring
        // counts as quiet, so an idle one would go back at once.
        let t = Instant::now();
        let now = t + RETURN_QUIET + Duration::from_micros(1);
        let idle = return_idle([t, t].into_iter(), now);
        assert_eq!(idle, Duration::ZERO);
        // The ring's request waits for another of its process to end its
        // turn; this look found it still waiting (and noted it busy now).
        let waiting_since = Some(t);
        assert!(stays(waiting_since, now, now, idle));
        assert!(stays(waiting_since, t, now, idle), "however long ago");
    }

    #[test]
    fn a_ring_not_waiting_goes_back_once_every_ring_was_quiet() {
        let t = Instant::now();
        let now = t + RETURN_QUIET;
        let idle = return_idle([t].into_iter(), now);
        assert!(!stays(None, t, now, idle));
    }

    #[test]
    fn an_idle_ring_stays_for_return_idle_while_another_is_busy() {
        let t = Instant::now();
        let now = t + RETURN_IDLE / 2;
        let idle = return_idle([t, now].into_iter(), now);
        assert!(stays(None, t, now, idle));
        assert!(!stays(None, t, t + RETURN_IDLE, idle));
    }

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
