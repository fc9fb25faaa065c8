//! Spinning before sleeping: how long, and when not to.
//!
//! Owns: the adaptive spin budget of one waiter ([`Spinner`]), the
//! fixed spin of a waiter whose answer other threads bring
//! ([`SteadySpinner`]), and the process-wide count of threads spinning
//! right now. A waiter spins while
//! there are no more spinners than cores (a spinner on an oversubscribed
//! machine only steals the time slice the peer needs), yields the core
//! between polls once it has spun a while, and lets its budget grow when
//! spinning paid off and shrink when it had to sleep anyway — trying a
//! shrunk budget at full length again now and then (a probe), since only
//! a wait that ends within a spin can grow it. A spinner that
//! finds it was descheduled in the middle of a spin (a gap between two
//! looks at the clock far longer than the polls take) concludes that other
//! threads want its core — another process, the store's applier, a JIT
//! compiler's thread — and does not spin at all for a cool-down period: it
//! sleeps on its futex and is woken, which on a busy machine is faster
//! than spinning against the thread it waits for. The cool-down starts
//! short (most such bursts are brief) and doubles while every return to
//! spinning is soon descheduled again. A waiter whose peer last ran on its
//! own core does not spin either: it yields the core to it a bounded
//! number of times (staying runnable, so that the peer need not wake it
//! through the futex), then reports failure so the caller sleeps. Must
//! never: spin without a bound, or spin for longer than `CROWDED_SPIN`
//! when the process already has a spinner per core (it then yields, up to
//! `CROWDED_YIELDS` times within its longest spin, staying runnable so
//! that its peer need not wake it, and reports failure so the caller
//! sleeps on its futex).

use crate::sync::LocalCount;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Threads of this process inside [`Spinner::spin`] now.
static SPINNING: LocalCount = LocalCount::new();

/// Polls between two looks at the clock.
const POLLS_PER_CHECK: u32 = 64;

/// Yields tried by a waiter that finds every core already has a spinner
/// (within its longest spin). Yielding keeps the waiter runnable, so its
/// peer need not wake it through the futex: with 16 busy connections on 2
/// cores, 2 yields gave 225–259k gets/s, 8 gave ~284k, 32 gave 284–308k
/// and 128 or 512 no more (`hearth bench --clients 16`).
const CROWDED_YIELDS: u32 = 32;

/// How long a waiter spins when the process already has a spinner per
/// core, before it starts yielding — and only while its peer last ran on
/// another core. With more busy client threads than cores, the one that
/// runs while the server's poller holds the other core gets its answer
/// within a microsecond or two and goes on with its next call: its core
/// then runs a whole time slice of calls instead of switching to another
/// client after each (16 client threads of one process on 2 cores: gets
/// p50 30–38 µs → 0.9–1.0 µs, 400–427k → 633–693k gets/s, with the
/// poller's linger, docs/performance-log.md).
const CROWDED_SPIN: Duration = Duration::from_micros(10);

/// Yields a waiter makes to a peer that last ran on its own core before
/// it sleeps on its futex (within its longest spin). The peer answering a
/// runnable waiter writes its answer and goes on; a sleeping one costs it a
/// futex wake (a system call, ~1 µs here, and a wake-up to schedule).
/// Client and server confined to one core: one client's gets 96–116k →
/// 148–172k/s, four clients' 101–123k → 241–242k/s.
const SHARED_YIELDS: u32 = 32;

/// A gap this long between two looks at the clock (64 polls take well
/// under a microsecond or two) means the thread was descheduled.
const PREEMPTED_GAP: Duration = Duration::from_micros(50);

/// How long a spinner that was descheduled sleeps instead of spinning, the
/// first time: bursts of other work (a JIT compiler's thread, a garbage
/// collector's helpers) are usually over by then. With 20 ms from the
/// first, a Node client's first 10,000 puts ran at 94k–146k/s while V8
/// compiled the caller's code; with 0.3 or 2 ms, at 139k–179k/s.
const COOL_MIN: Duration = Duration::from_millis(1);

/// The longest cool-down, reached by doubling while every spin after a
/// cool-down is descheduled again soon (a thread that keeps wanting the
/// core: another process's busy loop, the store's applier catching up).
const COOL_MAX: Duration = Duration::from_millis(20);

/// Waits between two full-length spins (probes) of a spinner whose budget
/// has shrunk, at first and after a probe that paid off.
const PROBE_EVERY_MIN: u32 = 8;

/// The most waits between two probes: the interval doubles after each
/// probe that did not pay off, so that a waiter whose peer is truly slow
/// (or away) spins its whole budget at most once in this many waits.
const PROBE_EVERY_MAX: u32 = 1024;

/// The number of cores this process may run on.
///
/// ```
/// assert!(hearth_shm::cores() >= 1);
/// ```
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Threads of this process spinning right now (for benchmarks and tests).
///
/// ```
/// assert_eq!(hearth_shm::spinning(), 0);
/// ```
pub fn spinning() -> usize {
    SPINNING.get()
}

#[derive(Debug)]
struct Registered;

impl Registered {
    fn enter() -> (Registered, usize) {
        let now = SPINNING.up();
        (Registered, now)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        SPINNING.down();
    }
}

/// Counts its holder as a spinning thread for as long as it lives.
///
/// For a thread that polls many rings in turn instead of waiting on one
/// (the server's shared poller): while it holds a claim, every
/// [`Spinner`] of the process sees one more core taken, so that waiters
/// stop spinning against it once every core is busy.
///
/// ```
/// let before = hearth_shm::spinning();
/// let claim = hearth_shm::SpinClaim::new();
/// assert_eq!(hearth_shm::spinning(), before + 1);
/// drop(claim);
/// assert_eq!(hearth_shm::spinning(), before);
/// ```
#[derive(Debug)]
pub struct SpinClaim {
    _registered: Registered,
}

impl SpinClaim {
    /// Claims a spinner's place until dropped.
    pub fn new() -> SpinClaim {
        SpinClaim {
            _registered: Registered::enter().0,
        }
    }
}

impl Default for SpinClaim {
    fn default() -> SpinClaim {
        SpinClaim::new()
    }
}

/// One waiter's adaptive spin budget.
///
/// ```
/// use hearth_shm::Spinner;
/// use std::time::Duration;
/// let mut spinner = Spinner::new(Duration::from_micros(50));
/// let mut polls = 0;
/// assert!(spinner.spin(|| { polls += 1; polls > 10 }));
/// ```
#[derive(Debug, Clone)]
pub struct Spinner {
    budget: Budget,
    max: Duration,
    yield_after: Duration,
    /// No spinning before this instant (set when a spin was descheduled).
    quiet_until: Option<Instant>,
    /// The last cool-down: when it ended and how long it was.
    cooled: Option<(Instant, Duration)>,
}

impl Spinner {
    /// A spinner whose budget adapts between `max / 16` and `max`
    /// (starting at `max`).
    pub fn new(max: Duration) -> Spinner {
        Spinner {
            budget: Budget::new(max),
            max,
            yield_after: max / 4,
            quiet_until: None,
            cooled: None,
        }
    }

    /// The current budget.
    pub fn budget(&self) -> Duration {
        self.budget.now
    }

    /// Polls `ready` until it holds (true) or the budget is spent (false).
    /// With a spinner per core already, only yields a couple of times.
    pub fn spin(&mut self, ready: impl FnMut() -> bool) -> bool {
        self.spin_unless_shared(|| false, ready)
    }

    /// [`spin`](Self::spin), except that it does not spin (the budget
    /// untouched) while `shares_core()` says the thread it waits for last
    /// ran on this core: that thread cannot make `ready` true while this
    /// one spins. Before a spin, the waiter then yields the core up to
    /// 32 times (`SHARED_YIELDS`; true as soon as `ready` holds; it stops
    /// yielding once the peer reports another core), then gives up (false)
    /// so the caller sleeps; during a spin (the peer moved onto this core)
    /// it gives up at once. Looked at before spinning and at every look at
    /// the clock. When every core has a spinner, the waiter spins at most
    /// 10 µs (`CROWDED_SPIN`), and only while the peer is elsewhere, then yields
    /// as usual.
    ///
    /// ```
    /// use hearth_shm::Spinner;
    /// use std::time::Duration;
    /// let mut spinner = Spinner::new(Duration::from_micros(50));
    /// assert!(!spinner.spin_unless_shared(|| true, || false));
    /// assert_eq!(spinner.budget(), Duration::from_micros(50));
    /// // Answered during a yield (a long budget: yields stop at the budget).
    /// let mut patient = Spinner::new(Duration::from_secs(10));
    /// let mut looks = 0;
    /// assert!(patient.spin_unless_shared(|| true, || { looks += 1; looks == 3 }));
    /// ```
    pub fn spin_unless_shared(
        &mut self,
        shares_core: impl Fn() -> bool,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if ready() {
            return true;
        }
        if self.max.is_zero() {
            return false;
        }
        if let Some(until) = self.quiet_until {
            if Instant::now() < until {
                return false;
            }
            self.quiet_until = None;
        }
        let (_registered, now) = Registered::enter();
        if now > cores() {
            let start = Instant::now();
            if !shares_core() && poll_until(start + CROWDED_SPIN.min(self.max), &mut ready) {
                return true;
            }
            return yield_until(CROWDED_YIELDS, start + self.max, &mut ready, || false);
        }
        if shares_core() {
            let end = Instant::now() + self.max;
            return yield_until(SHARED_YIELDS, end, &mut ready, || !shares_core());
        }
        let budget = self.budget.for_next_spin();
        let start = Instant::now();
        let mut last = start;
        let mut checked = false;
        loop {
            for _ in 0..POLLS_PER_CHECK {
                if ready() {
                    if checked {
                        // Paid off: keep (or grow) a budget that covers it.
                        self.budget.paid(start.elapsed());
                    }
                    // Within the first polls: the budget covers it already,
                    // and the round trip is spared a clock read.
                    return true;
                }
                std::hint::spin_loop();
            }
            checked = true;
            if shares_core() {
                // The peer was moved onto this core: it needs it now.
                return false;
            }
            let now = Instant::now();
            if now.duration_since(last) >= PREEMPTED_GAP {
                // Descheduled mid-spin: the core is wanted elsewhere.
                let cool = cool_down_after(self.cooled, now);
                self.quiet_until = Some(now + cool);
                self.cooled = Some((now + cool, cool));
                self.budget.preempted();
                return false;
            }
            last = now;
            let spent = now.duration_since(start);
            if spent >= budget {
                // Had to give up: spin less next time (down to a sixteenth).
                self.budget.gave_up();
                return false;
            }
            if spent >= self.yield_after && spinning() >= cores() {
                std::thread::yield_now();
                // A yield that gave the core away for long is a deschedule
                // too; do not count the yield itself as one.
                last = Instant::now();
            }
        }
    }
}

/// Consecutive waits that outlast a [`SteadySpinner`]'s spin before it
/// stops spinning (but for probes). Many: a socket's answers come late in
/// spells (the threads bringing them waiting for a core), and stopping
/// after eight in a row left one client's gets at p50 18–26 µs where
/// spinning on through them kept 17 µs (docs/performance-log.md).
const STEADY_MISSES: u32 = 64;

/// The most waits between two probes of a stopped [`SteadySpinner`]: its
/// peer's slow spells pass (a socket's answers come late for a while when
/// the threads bringing them wait for a core), and a probe that catches
/// an answer should come soon after; a spin in 64 waits costs little.
const STEADY_PROBE_MAX: u32 = 64;

/// A waiter that spins for a fixed time before it sleeps, for an answer
/// that other threads bring whether or not it spins (a socket's reader
/// routing it, after a server process answered): an answer that comes
/// while it spins costs the bringer no wake-up system call and the waiter
/// no wake-up latency.
///
/// Unlike [`Spinner`] it neither shrinks its spin after a miss nor stops
/// for a cool-down when descheduled: such answers come at two speeds (all
/// threads on their cores, or one of them waiting for a core), and a
/// budget halved at each slow answer spent half its time at its floor and
/// missed the fast ones too. It stops spinning only after
/// `STEADY_MISSES` (64) waits in a row outlasted the spin (the peer is slow:
/// a long query, a busy server), then spins again every eighth wait, the
/// interval doubling up to one in 64 (`STEADY_PROBE_MAX`) while those
/// miss too. It does not spin while every core already has a
/// spinner in this process, and counts itself as one while it spins.
///
/// ```
/// use hearth_shm::SteadySpinner;
/// use std::time::Duration;
/// let mut spinner = SteadySpinner::new(Duration::from_micros(50));
/// let mut polls = 0;
/// assert!(spinner.spin(|| { polls += 1; polls > 10 }));
/// ```
#[derive(Debug, Clone)]
pub struct SteadySpinner {
    spin: Duration,
    /// Waits in a row that outlasted the spin (or would have: skipped).
    misses: u32,
    /// While stopped: when it spins again.
    probes: Probes,
}

impl SteadySpinner {
    /// A waiter that spins for up to `spin` before it sleeps.
    pub fn new(spin: Duration) -> SteadySpinner {
        SteadySpinner {
            spin,
            misses: 0,
            probes: Probes::new(STEADY_PROBE_MAX),
        }
    }

    /// Polls `ready` until it holds (true), or for up to the spin, or not
    /// at all (false: the caller sleeps) — see the type's rules.
    pub fn spin(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return true;
        }
        if !self.spins_next() || spinning() >= cores() {
            return false;
        }
        let (_registered, _) = Registered::enter();
        let got = poll_until(Instant::now() + self.spin, &mut ready);
        self.record(got);
        got
    }

    /// Whether the next wait spins: unless the waits keep outlasting the
    /// spin, then only the probes.
    fn spins_next(&mut self) -> bool {
        self.misses < STEADY_MISSES || self.probes.due()
    }

    /// What a spin found: the answer (`got`) or nothing.
    fn record(&mut self, got: bool) {
        if got {
            self.misses = 0;
            self.probes.paid();
        } else if self.misses >= STEADY_MISSES {
            // A probe that missed: the next one comes later.
            self.probes.missed();
        } else {
            self.misses += 1;
        }
    }
}

/// When a waiter that no longer spins in full (a [`Spinner`] whose budget
/// shrank, a stopped [`SteadySpinner`]) spins in full once more: every
/// [`PROBE_EVERY_MIN`]-th wait, the interval doubling up to `max` after each
/// such probe that did not pay, and back to the shortest after one that
/// did.
#[derive(Debug, Clone)]
struct Probes {
    /// Waits since the last probe.
    waits: u32,
    /// Waits between two probes.
    every: u32,
    max: u32,
}

impl Probes {
    fn new(max: u32) -> Probes {
        Probes {
            waits: 0,
            every: PROBE_EVERY_MIN,
            max,
        }
    }

    /// Counts a wait; whether it is a probe.
    fn due(&mut self) -> bool {
        self.waits += 1;
        if self.waits < self.every {
            return false;
        }
        self.waits = 0;
        true
    }

    /// Counting starts again (the waiter spins in full anyway).
    fn restart(&mut self) {
        self.waits = 0;
    }

    /// A probe paid off: the next comes soon.
    fn paid(&mut self) {
        self.every = PROBE_EVERY_MIN;
    }

    /// A probe did not pay: the next comes later.
    fn missed(&mut self) {
        self.every = (self.every * 2).min(self.max);
    }
}

/// A spinner's budget and how it adapts: no clock and no spinning, so
/// that the policy is tested on its own.
///
/// A wait the budget covered keeps it (and grows it by what the wait
/// took); one it did not halves it, down to a sixteenth of the longest.
/// A shrunk budget is tried at full length again now and then (a
/// *probe*, every [`PROBE_EVERY_MIN`] waits, the interval doubling after
/// each probe that did not pay off, up to [`PROBE_EVERY_MAX`]): without
/// probes, a budget below the usual wait could never grow back, since only
/// a wait that ends within the budget grows it. Two peers that each do
/// tens of microseconds of work between their turns (a list and the
/// JavaScript that handles its page) were caught like that: each side's
/// budget shrank while the other slept, then every wait ended asleep, and
/// each call paid two futex wake-ups (docs/performance-log.md).
#[derive(Debug, Clone)]
struct Budget {
    /// The budget for a spin that is not a probe.
    now: Duration,
    min: Duration,
    max: Duration,
    /// When a shrunk budget is spun at full length.
    probes: Probes,
    /// Whether the spin under way is a probe.
    probing: bool,
}

impl Budget {
    fn new(max: Duration) -> Budget {
        Budget {
            now: max,
            min: max / 16,
            max,
            probes: Probes::new(PROBE_EVERY_MAX),
            probing: false,
        }
    }

    /// How long the next spin may last: the budget, or the longest when a
    /// probe is due.
    fn for_next_spin(&mut self) -> Duration {
        if self.now >= self.max {
            self.probing = false;
            self.probes.restart();
            return self.max;
        }
        self.probing = self.probes.due();
        if self.probing { self.max } else { self.now }
    }

    /// The wait ended within the spin, after `took`.
    fn paid(&mut self, took: Duration) {
        self.now = (self.now + took).clamp(self.min, self.max);
        if self.probing {
            self.probes.paid();
        }
    }

    /// The spin used up its budget.
    fn gave_up(&mut self) {
        self.now = (self.now / 2).max(self.min);
        if self.probing {
            self.probes.missed();
        }
    }

    /// The spin was descheduled: spin less, and try at full length again no
    /// sooner than planned (a deschedule says nothing of the peer).
    fn preempted(&mut self) {
        self.now = (self.now / 2).max(self.min);
    }
}

/// Yields the core up to `times` times, looking at `ready` after each
/// (true as soon as it holds); gives up (false) after the last, once the
/// clock passes `end`, or when `stop()` says the wait is no longer one to
/// yield in.
fn yield_until(
    times: u32,
    end: Instant,
    ready: &mut impl FnMut() -> bool,
    stop: impl Fn() -> bool,
) -> bool {
    for _ in 0..times {
        std::thread::yield_now();
        if ready() {
            return true;
        }
        if stop() || Instant::now() >= end {
            break;
        }
    }
    false
}

/// Polls `ready` until it holds (true) or the clock passes `end` (false),
/// looking at the clock every [`POLLS_PER_CHECK`] polls.
fn poll_until(end: Instant, ready: &mut impl FnMut() -> bool) -> bool {
    loop {
        for _ in 0..POLLS_PER_CHECK {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= end {
            return false;
        }
    }
}

/// How long to cool down after a spin descheduled at `now`, given the
/// last cool-down (when it ended, how long it was): double the last one
/// (up to [`COOL_MAX`]) if the spinner was descheduled again within that
/// long of its end, else [`COOL_MIN`].
fn cool_down_after(last: Option<(Instant, Duration)>, now: Instant) -> Duration {
    match last {
        Some((end, len)) if now.saturating_duration_since(end) < len => (len * 2).min(COOL_MAX),
        _ => COOL_MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// The spinner count is process-wide: tests that spin take turns, so
    /// that none sees another's spin (or is pushed onto the crowded path).
    fn one_at_a_time() -> MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[test]
    fn a_condition_that_never_holds_gives_up_and_halves_the_budget() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::from_micros(40));
        assert!(!s.spin(|| false));
        assert_eq!(s.budget(), Duration::from_micros(20));
    }

    #[test]
    fn a_zero_budget_never_spins() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::ZERO);
        let mut polls = 0;
        assert!(!s.spin(|| {
            polls += 1;
            false
        }));
        assert_eq!(polls, 1);
    }

    #[test]
    fn the_spinner_count_returns_to_zero() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::from_micros(5));
        s.spin(|| false);
        assert_eq!(spinning(), 0);
    }

    /// Looks at a condition that never holds during one wait whose peer is
    /// on this core (the wait gives up: false).
    fn looks_with_the_peer_here(s: &mut Spinner) -> u32 {
        let mut polls = 0;
        assert!(!s.spin_unless_shared(
            || true,
            || {
                polls += 1;
                false
            }
        ));
        polls
    }

    #[test]
    fn a_peer_on_this_core_gets_a_few_yields_then_the_waiter_gives_up_keeping_its_budget() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::from_secs(10));
        let polls = looks_with_the_peer_here(&mut s);
        assert_eq!(
            polls,
            1 + SHARED_YIELDS,
            "a look before, then one per yield"
        );
        assert_eq!(s.budget(), Duration::from_secs(10));
    }

    #[test]
    fn a_peer_on_this_core_that_answers_during_a_yield_ends_the_wait() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::from_secs(10));
        let mut polls = 0;
        assert!(s.spin_unless_shared(
            || true,
            || {
                polls += 1;
                polls == 3
            }
        ));
        assert_eq!(polls, 3);
        assert_eq!(s.budget(), Duration::from_secs(10));
    }

    #[test]
    fn a_peer_that_leaves_this_core_ends_the_yields() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::from_secs(10));
        let looks = std::cell::Cell::new(0);
        let mut polls = 0;
        assert!(!s.spin_unless_shared(
            || {
                looks.set(looks.get() + 1);
                looks.get() < 3
            },
            || {
                polls += 1;
                false
            }
        ));
        assert_eq!(looks.get(), 3, "before the yields, then after each");
        assert_eq!(polls, 3, "a look before, then one per yield");
    }

    /// Fills every core's spinner place for as long as it lives.
    fn crowd() -> Vec<SpinClaim> {
        (0..cores()).map(|_| SpinClaim::new()).collect()
    }

    #[test]
    fn a_crowded_waiter_spins_briefly_while_its_peer_is_elsewhere() {
        let _turn = one_at_a_time();
        let _crowd = crowd();
        let mut s = Spinner::new(Duration::from_secs(10));
        let mut polls = 0;
        // More polls than the yields alone would make: only a spin gets
        // there (within CROWDED_SPIN, which 40 polls take a tiny part of).
        assert!(s.spin_unless_shared(
            || false,
            || {
                polls += 1;
                polls == CROWDED_YIELDS + 8
            }
        ));
    }

    #[test]
    fn a_crowded_waiter_whose_peer_shares_its_core_only_yields() {
        let _turn = one_at_a_time();
        let _crowd = crowd();
        let mut s = Spinner::new(Duration::from_secs(10));
        let polls = looks_with_the_peer_here(&mut s);
        assert_eq!(
            polls,
            1 + CROWDED_YIELDS,
            "a look before, then one per yield"
        );
        assert_eq!(s.budget(), Duration::from_secs(10));
    }

    #[test]
    fn a_peer_moved_onto_this_core_ends_a_spin_under_way() {
        let _turn = one_at_a_time();
        // A ten-second budget: only the peer's move can end this spin soon,
        // and giving up on the budget would have halved it. The move shows
        // at the first look at the clock, before anything reads the clock,
        // so a preemption of this test cannot end the spin first.
        let mut s = Spinner::new(Duration::from_secs(10));
        let looks = std::cell::Cell::new(0);
        assert!(!s.spin_unless_shared(
            || {
                looks.set(looks.get() + 1);
                looks.get() > 1
            },
            || false
        ));
        assert_eq!(looks.get(), 2, "before the spin, then at its first check");
        assert_eq!(s.budget(), Duration::from_secs(10));
    }

    #[test]
    fn a_descheduled_spin_cools_down_for_the_shortest_time_first() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::from_secs(10));
        let mut polls = 0;
        // A poll that sleeps stands for a deschedule: the gap it leaves
        // between two looks at the clock is far longer than polls take.
        assert!(!s.spin(|| {
            polls += 1;
            if polls == 2 {
                std::thread::sleep(PREEMPTED_GAP * 4);
            }
            false
        }));
        let (end, len) = s.cooled.expect("the deschedule started a cool-down");
        assert_eq!(len, COOL_MIN);
        assert_eq!(s.quiet_until, Some(end));
        let mut polls_while_quiet = 0;
        if Instant::now() < end {
            assert!(!s.spin(|| {
                polls_while_quiet += 1;
                false
            }));
            assert_eq!(polls_while_quiet, 1, "no spinning while cooling down");
        }
    }

    #[test]
    fn a_deschedule_soon_after_a_cool_down_doubles_it_up_to_the_longest() {
        let t = Instant::now();
        let mut last = None;
        let mut seen = Vec::new();
        let mut now = t;
        for _ in 0..8 {
            let cool = cool_down_after(last, now);
            seen.push(cool);
            let end = now + cool;
            last = Some((end, cool));
            // Descheduled again right after the cool-down ended.
            now = end + cool / 2;
        }
        let ms = Duration::from_millis;
        assert_eq!(seen[..6], [ms(1), ms(2), ms(4), ms(8), ms(16), ms(20)]);
        assert!(seen[6..].iter().all(|&c| c == COOL_MAX));
    }

    #[test]
    fn a_deschedule_long_after_the_last_cool_down_starts_again_at_the_shortest() {
        let t = Instant::now();
        let last = Some((t, Duration::from_millis(16)));
        assert_eq!(
            cool_down_after(last, t + Duration::from_millis(16)),
            COOL_MIN
        );
        assert_eq!(cool_down_after(last, t + Duration::from_secs(1)), COOL_MIN);
        assert_eq!(
            cool_down_after(last, t + Duration::from_millis(15)),
            Duration::from_millis(20)
        );
        assert_eq!(cool_down_after(None, t), COOL_MIN);
    }

    /// Gives up spins until the budget is at its floor; the waits that
    /// took count from the last of them.
    fn shrunk(max: Duration) -> Budget {
        let mut b = Budget::new(max);
        while b.now > b.min {
            b.for_next_spin();
            b.gave_up();
        }
        b.probes.restart();
        b
    }

    /// The waits until the next probe (counting it), giving up every spin.
    fn waits_to_probe(b: &mut Budget) -> u32 {
        for n in 1..=PROBE_EVERY_MAX {
            let spin = b.for_next_spin();
            if b.probing {
                assert_eq!(spin, b.max, "a probe spins the longest budget");
                return n;
            }
            assert_eq!(spin, b.now, "a plain spin keeps to the budget");
            b.gave_up();
        }
        panic!("no probe within {PROBE_EVERY_MAX} waits");
    }

    #[test]
    fn a_budget_at_its_longest_is_never_a_probe() {
        let mut b = Budget::new(Duration::from_micros(100));
        for _ in 0..100 {
            assert_eq!(b.for_next_spin(), b.max);
            assert!(!b.probing);
            b.paid(Duration::from_micros(3));
        }
    }

    #[test]
    fn a_shrunk_budget_spins_at_full_length_every_eighth_wait() {
        let mut b = shrunk(Duration::from_micros(100));
        assert_eq!(b.now, Duration::from_micros(100) / 16);
        assert_eq!(waits_to_probe(&mut b), PROBE_EVERY_MIN);
    }

    #[test]
    fn a_probe_that_pays_grows_the_budget_back_from_its_floor() {
        let max = Duration::from_micros(100);
        let mut b = shrunk(max);
        waits_to_probe(&mut b);
        // The peer answered 45 µs into the probe: the next spins cover that.
        b.paid(Duration::from_micros(45));
        assert_eq!(b.now, max / 16 + Duration::from_micros(45));
        assert_eq!(b.for_next_spin(), b.now);
        assert!(!b.probing);
    }

    #[test]
    fn probes_that_do_not_pay_come_ever_more_rarely_up_to_one_in_1024_waits() {
        let mut b = shrunk(Duration::from_micros(100));
        let mut gaps = Vec::new();
        for _ in 0..10 {
            gaps.push(waits_to_probe(&mut b));
            b.gave_up();
        }
        assert_eq!(gaps, [8, 16, 32, 64, 128, 256, 512, 1024, 1024, 1024]);
    }

    #[test]
    fn a_probe_that_pays_brings_the_next_back_to_eight_waits() {
        let mut b = shrunk(Duration::from_micros(100));
        for _ in 0..4 {
            waits_to_probe(&mut b);
            b.gave_up();
        }
        waits_to_probe(&mut b);
        b.paid(Duration::from_micros(1));
        assert_eq!(waits_to_probe(&mut b), PROBE_EVERY_MIN);
    }

    #[test]
    fn a_descheduled_probe_does_not_make_probes_rarer() {
        let mut b = shrunk(Duration::from_micros(100));
        waits_to_probe(&mut b);
        b.preempted();
        assert_eq!(waits_to_probe(&mut b), PROBE_EVERY_MIN);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri's clock moves with the instructions run, not with time: its polls look descheduled"
    )]
    fn a_shrunk_spinner_waits_out_a_slower_peer_again_within_a_few_waits() {
        let _turn = one_at_a_time();
        let max = Duration::from_micros(1600);
        let mut s = Spinner::new(max);
        while s.budget() > max / 16 {
            assert!(!s.spin(|| false));
        }
        // The peer now answers 300 µs into each wait: later than the
        // shrunk budget (100 µs) lasts, sooner than the longest. Only a spin at full
        // length sees it (a bound on the loop, not a measured time: without
        // probes no wait would ever end within the spin).
        let peer = Duration::from_micros(300);
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            let begun = Instant::now();
            let seen = s.spin(|| begun.elapsed() >= peer);
            // Grown by about what the wait took (counted from the spin's
            // start, a little after the wait's). A wait the thread was
            // descheduled through is seen without being timed, and grows
            // nothing: the next waits look again.
            if seen && s.budget() > max / 16 + peer / 2 {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "no spin waited out the peer: {:?}",
                s.budget()
            );
        }
    }

    /// The waits until a stopped steady spinner spins again (counting it),
    /// every spin missing.
    fn steady_waits_to_spin(s: &mut SteadySpinner) -> u32 {
        for n in 1..=PROBE_EVERY_MAX {
            if s.spins_next() {
                return n;
            }
        }
        panic!("no spin within {PROBE_EVERY_MAX} waits");
    }

    #[test]
    fn a_steady_spinner_keeps_spinning_through_misses_short_of_many_in_a_row() {
        let mut s = SteadySpinner::new(Duration::from_micros(50));
        for _ in 0..100 {
            // Every other answer outlasts the spin: it spins every time.
            for got in [false, true] {
                assert!(s.spins_next());
                s.record(got);
            }
        }
        for _ in 0..STEADY_MISSES - 1 {
            assert!(s.spins_next());
            s.record(false);
        }
        assert!(s.spins_next(), "one miss short of stopping: still spinning");
    }

    #[test]
    fn misses_in_a_row_stop_a_steady_spinner_but_for_rarer_probes_up_to_one_in_64() {
        let mut s = SteadySpinner::new(Duration::from_micros(50));
        for _ in 0..STEADY_MISSES {
            assert!(s.spins_next());
            s.record(false);
        }
        let mut gaps = Vec::new();
        for _ in 0..10 {
            gaps.push(steady_waits_to_spin(&mut s));
            s.record(false);
        }
        assert_eq!(gaps, [8, 16, 32, 64, 64, 64, 64, 64, 64, 64]);
    }

    #[test]
    fn a_probe_that_catches_its_answer_starts_a_steady_spinner_again() {
        let mut s = SteadySpinner::new(Duration::from_micros(50));
        for _ in 0..STEADY_MISSES {
            s.spins_next();
            s.record(false);
        }
        for _ in 0..3 {
            steady_waits_to_spin(&mut s);
            s.record(false);
        }
        steady_waits_to_spin(&mut s);
        s.record(true);
        for _ in 0..20 {
            assert!(s.spins_next(), "spinning at every wait again");
            s.record(true);
        }
    }

    #[test]
    fn a_steady_spinner_does_not_spin_while_every_core_has_a_spinner() {
        let _turn = one_at_a_time();
        let _crowd = crowd();
        let mut s = SteadySpinner::new(Duration::from_secs(10));
        let mut polls = 0;
        assert!(!s.spin(|| {
            polls += 1;
            false
        }));
        assert_eq!(polls, 1, "one look, then the caller sleeps");
    }

    #[test]
    fn a_steady_spinner_spins_until_its_answer_and_counts_as_a_spinner() {
        let _turn = one_at_a_time();
        let mut s = SteadySpinner::new(Duration::from_secs(10));
        let mut polls = 0;
        let mut seen = 0;
        assert!(s.spin(|| {
            polls += 1;
            seen = seen.max(spinning());
            polls == 1000
        }));
        assert_eq!(seen, 1);
        assert_eq!(spinning(), 0);
    }

    #[test]
    fn a_peer_elsewhere_leaves_the_spin_as_it_was() {
        let _turn = one_at_a_time();
        let mut s = Spinner::new(Duration::from_micros(40));
        assert!(!s.spin_unless_shared(|| false, || false));
        assert_eq!(s.budget(), Duration::from_micros(20));
        let mut fresh = Spinner::new(Duration::from_micros(40));
        let mut polls = 0;
        assert!(fresh.spin_unless_shared(
            || false,
            || {
                polls += 1;
                polls > 10
            }
        ));
    }
}
