//! Turns: which of the shared poller's rings it answers now (policy only:
//! no I/O, time passed in).
//!
//! Owns: the rule that, of one group's busy connections on the poller,
//! only as many are answered at a time as there are other cores (one on 2
//! cores), each for a time slice (a Node thread's calls for two:
//! [`BUDGETED_SLICES`]), the others waiting in the order they
//! began to wait, process by process (a process's connections count
//! as waiting from its last turn: [`Turns::pick`]; a client on the
//! poller's own core a round later); a
//! holder that goes quiet loses its turn at once (silent for
//! [`TURN_IDLE`] — [`TURN_IDLE_BUDGETED`] for a call with a budget, an
//! event loop's — or for [`TURN_PEEK`] with its thread found asleep), and
//! a slice ends only when another client it holds back waits. A
//! connection takes turns with the others of its process and, if its
//! client said its calls wait for their turn on their own thread (or go
//! on later, when many processes' clients do: [`shares_turns`]), with
//! every such connection of any process ([`Group`]); nobody else is ever
//! held back ([`Turns::free_for`]). And what the poller does about a
//! holder on its own core ([`holder_here`]).
//! Must never: hold a turn for a ring that is not being served (the poller
//! releases it), or pass over a waiting client for ever (the penalty for
//! sharing the poller's core is bounded).
//!
//! Why: a sequential client that is answered only between the time
//! slices of fifteen others switches cores and threads after every call.
//! Answered alone for a slice, it runs as one client does — its core
//! spinning for it, the poller's core answering — while the others sleep
//! (the poller reports "away" on their rings, so they do not spin), and
//! each change of turn costs one wake-up instead of one per call.

use hearth_shm::TurnHint;
use std::time::{Duration, Instant};

/// Whose turns a connection takes part in, and how its client takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Group {
    /// Its client's process (a value of the connection alone where the
    /// platform cannot say): it takes turns with that process's other
    /// connections.
    pub(super) process: u32,
    /// It also takes turns with every connection that shares turns,
    /// whatever its process ([`shares_turns`]).
    pub(super) shared: bool,
    /// Its client's calls have a budget ([`TurnHint::Later`]: a Node main
    /// thread; [`TurnHint::Budgeted`]: a Node worker thread): its thread
    /// does other work between calls (its event loop's turn), and holding
    /// a turn it may be silent for [`TURN_IDLE_BUDGETED`] rather than
    /// [`TURN_IDLE`].
    pub(super) budgeted: bool,
}

/// How many processes' busy clients that go on later when told to wait
/// ([`TurnHint::Later`]: Node main threads) there must be before those
/// take turns across processes too. Served call by call, a few such
/// processes each find their answer ready when they get a core; in turns,
/// each turn begins with the answer's trip through the client's own
/// threads and event loop. On the project's 2-core VM (`node
/// bench/processes.js`, six to ten alternated runs each, 2026-12-06): in
/// turns two processes made 0.87× of one's gets instead of 0.94×, four
/// 0.72× instead of 0.91×, eight 0.78× against 0.77×, and sixteen 0.69×
/// and 0.71× instead of 0.66× and 0.55× — the slowest of sixteen 15.6k
/// and 17k gets/s instead of 6.3k and 5.8k.
pub(super) const LATER_CROWD: usize = 8;

/// Whether the processes of the busy connections whose clients go on
/// later when told to wait (their pids, repeated as often as they have
/// such connections) are [`LATER_CROWD`] or more.
pub(super) fn many_later(processes: impl Iterator<Item = u32>) -> bool {
    let mut seen: Vec<u32> = Vec::new();
    for p in processes {
        if !seen.contains(&p) {
            seen.push(p);
            if seen.len() >= LATER_CROWD {
                return true;
            }
        }
    }
    false
}

/// Whether a connection whose client gave `hint` takes turns across
/// processes, `many_later` as [`many_later`] counted: one that waits for
/// its turn on its own thread always, one that goes on later only among
/// many such, one that never said never.
fn shares_turns(hint: TurnHint, many_later: bool) -> bool {
    match hint {
        TurnHint::OnThread | TurnHint::Budgeted => true,
        TurnHint::Later => many_later,
        TurnHint::Unsaid => false,
    }
}

/// [`Group::process`] for connection `conn` (its id) whose socket peer's
/// pid is `pid`: that pid, or — where the platform cannot say, or says 0
/// (SO_PEERCRED's answer for a peer outside the server's pid namespace) —
/// a value of this connection alone (above any pid), so that such clients
/// are never taken for one process.
pub(super) fn turn_process(pid: Option<u32>, conn: u64) -> u32 {
    match pid.filter(|&pid| pid > 0) {
        Some(pid) => pid,
        None => 1 << 31 | (conn as u32 & !(1 << 31)),
    }
}

impl Group {
    /// The group of a connection whose client's process is `process` and
    /// whose client last said `hint`, `many_later` as [`many_later`]
    /// counted: it shares turns as [`shares_turns`] says, and its calls
    /// have a budget when they go on later or wait on their thread with a
    /// budget.
    pub(super) fn new(process: u32, hint: TurnHint, many_later: bool) -> Group {
        Group {
            process,
            shared: shares_turns(hint, many_later),
            budgeted: matches!(hint, TurnHint::Later | TurnHint::Budgeted),
        }
    }

    /// How long a settled holder of this group may send nothing, its
    /// thread running, before its turn ends.
    pub(super) fn idle(self) -> Duration {
        if self.budgeted {
            TURN_IDLE_BUDGETED
        } else {
            TURN_IDLE
        }
    }

    /// How long a holder of this group keeps its turn while another
    /// waits, turns being `base` long: [`BUDGETED_SLICES`] of them for
    /// calls with a budget, one for the rest.
    pub(super) fn slice(self, base: Duration) -> Duration {
        if self.budgeted {
            base * BUDGETED_SLICES
        } else {
            base
        }
    }

    /// Whether a holder of this group holds back a client of `other`: one
    /// of the same process, or both sharing turns across processes.
    pub(super) fn holds_back(self, other: Group) -> bool {
        self.process == other.process || (self.shared && other.shared)
    }
}

/// How long one client keeps its turn while another waits for one.
///
/// Each change of turn costs a wake-up (~20–40 µs here), so the slice
/// sets how much of a busy phase goes to them. Twenty-six alternated pairs
/// of `hearth bench --clients 1,16` (docs/performance-log.md): with 1 ms,
/// sixteen threads made 0.935× of one client's gets (median; 8 of 26
/// runs ≥ 1), with 2 ms 1.020× (14 of 26); the slowest 0.1 % of their
/// calls fell from ~3.9 ms to ~0.07 ms (fewer calls wait for a turn at
/// all) while the slowest call grew from ~30 to ~40 ms (a round of
/// fifteen others' slices). From 2 to 4 ms, fifty alternated pairs
/// (2026-12-06): gets 0.950/0.965× → 0.975/0.995×, puts 0.965/0.965× →
/// 0.995/1.010× (medians of two sets), the puts' slowest 0.1 % 18 →
/// 2.2 ms, the slowest call ~45 → ~52–65 ms. 8 ms gained nothing more:
/// the changes left are mostly not the slices' (holders gone quiet or
/// found on the poller's core).
pub(super) const TURN_SLICE: Duration = Duration::from_millis(4);

/// How many slices a holder whose calls have a budget ([`TurnHint::Later`],
/// [`TurnHint::Budgeted`]: Node threads) keeps its turn for while another
/// waits. Each of its changes of turn costs far more than a blocking
/// client's wake-up — ~240 µs from the grant to the new holder's next
/// request, the answer's trip through the client's reader thread, its
/// runtime and its event loop — and since [`TURN_IDLE_BUDGETED`] most of
/// sixteen Node processes' turns end with their slice, ~200 a second. Two
/// slices (8 ms) halve those; the longest wait for a turn grows
/// from a round of fifteen others' 4 ms to their 8 ms (~120 ms, ~135 measured).
/// Six alternated pairs of `node bench/processes.js --procs 1,16 --secs 2
/// --rounds 3` against one slice (2026-12-07, docs/performance-log.md):
/// sixteen processes' gets 247k → 316k a second and puts 173k → 203k
/// (medians; higher in 6 of 6 pairs each), 16 ÷ 1 0.77× → 0.95× and
/// 0.84× → 0.93×; four more with `--rounds 5`: 0.85× → 0.91× and 0.87×
/// → 0.90×; seven with every call timed (`--latency`): 0.81× → 0.84× and
/// 0.85× → 0.87×, the slowest get ~77 → ~135 ms, the gets' p99.9 4–27 →
/// 0.2–2.6 ms. Sixteen worker threads of one process did the same
/// either way (three pairs); three slices were no better for puts in a
/// scratch build, for another 60 ms of longest wait.
pub(super) const BUDGETED_SLICES: u32 = 2;

/// A holder that sends nothing for this long loses its turn (a Node
/// client works ~3 µs between two calls; one that stops for this long is
/// doing something else).
pub(super) const TURN_IDLE: Duration = Duration::from_micros(50);

/// [`TURN_IDLE`] for a holder whose calls have a budget ([`TurnHint::Later`]:
/// a Node process's main thread; [`TurnHint::Budgeted`]: a Node worker
/// thread, which waits for its turn on its thread). Its JavaScript
/// gives the event loop a turn every 2 ms of back-to-back calls (`maxSyncMs`
/// in bindings/node/lib/local-first.js), and V8 runs its pending tasks
/// there: silences with the thread running, mostly of 25–60 µs (p10–p50
/// of those of 20 µs or more), a tenth over 120–570 µs, after which it
/// calls again. With [`TURN_IDLE`] those ended 85 % of sixteen
/// Node processes' turns after ~1.5 ms instead of the slice's 4 ms, and
/// each change of turn cost ~240 µs (p50, from the grant to the new
/// holder's next request: the answer's trip through the client's reader
/// thread, its runtime and its event loop) — ~600 changes and ~18 % of a
/// second. With 300 µs, fourteen alternated pairs of `node
/// bench/processes.js --procs 1,16 --secs 2` (2026-12-07): sixteen
/// processes' gets 354k → 410k a second (higher in 13 of 14), 16 ÷ 1
/// 0.75× → 0.88×; puts 231k → 248k (9 of 14), 16 ÷ 1 0.855× either way
/// (docs/performance-log.md; 150 µs and 600–1,000 µs measured in between).
/// Sixteen Node worker threads of one process (`--threads`, their calls
/// [`TurnHint::Budgeted`]), twelve alternated pairs: puts 208k → 229k a
/// second (9 of 12), 16 ÷ 1 0.825× → 0.955×; gets the same. A
/// longer silence (a garbage collection, ~0.8 ms) still ends the turn:
/// the poller would only wait through it. Blocking calls keep
/// [`TURN_IDLE`]: the same 300 µs for sixteen Rust threads' blocking
/// calls, sixteen alternated pairs, took their gets 16 ÷ 1 from 0.97× to
/// 0.915× and their puts from 1.045× to 0.995×.
pub(super) const TURN_IDLE_BUDGETED: Duration = Duration::from_micros(300);

/// How long a holder has been silent before the poller looks at the
/// thread its client says calls (`Consumer::peer_thread`): asleep outside
/// hearth — finished its work, or blocked on something else — it loses
/// its turn then ([`Turns::looked`]), rather than at [`TURN_IDLE`];
/// running or waiting for a core (preempted, or working between two
/// calls), it keeps it. One look per silence, ~3 µs of the poller's time
/// here. A holder that calls again within this never costs a look: a
/// Rust thread calls within ~0.1 µs of its answer, a Node client ~3 µs.
pub(super) const TURN_PEEK: Duration = Duration::from_micros(10);

/// How long a new holder has to send its next request after the answer
/// that began its turn: the client was asleep and has to be woken, and a
/// Node client's answer then reaches JavaScript through the addon's
/// runtime and the event loop (~100–150 µs here) before the next call.
/// With [`TURN_IDLE`] from the start, sixteen Node processes lost each
/// turn after one call: 74k gets/s together against one's 331k.
pub(super) const TURN_WAKE: Duration = Duration::from_micros(500);

/// How much later a client waiting on the poller's own core gets a turn:
/// answered there, it would take turns with the poller for the core (the
/// poller then moves away, which costs a migration), so the clients
/// elsewhere go first unless it has waited this much longer — a round of
/// sixteen slices when it was chosen (1 ms slices then; five of today's),
/// so that the poller moves a few times a round rather than once a turn.
/// With 1 ms, 16 client threads got 0.57–0.78× of one client's gets
/// (median 0.67×); with 20 ms, 0.74–1.18× (0.85×).
pub(super) const HERE_PENALTY: Duration = Duration::from_millis(20);

/// What the poller does about a turn holder whose client runs on the
/// poller's own core (the two would take turns on one core while the
/// other idles), as [`holder_here`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HolderHere {
    /// Nothing: moving would only put the poller next to another client.
    Stay,
    /// End its turn (it waits again, behind a client of its process that
    /// runs elsewhere).
    PassOver,
    /// Move the poller to another core.
    MoveOff,
}

/// What the poller does about a holder whose client runs on its core.
/// `waits`: a client of the holder's process waits for a turn;
/// `elsewhere_waits`: one of those runs on another core; `passed_over`:
/// the holder was passed over already since the poller last moved;
/// `served_elsewhere`: a client of another ring the poller serves runs
/// on another core.
///
/// Passing over comes first, once: a thread moved onto a core that runs
/// another (the store's applier, at background priority) waits there
/// until the scheduler's next tick, up to 4 ms, while a woken client takes
/// its core at once. When nobody of its process waits, the poller moves
/// unless another client it serves runs on the other core — the last busy
/// thread of a process, left alone on the poller's core when the others
/// finished, otherwise ran at 5.5 µs a call instead of 0.8 for the rest
/// of its work (9–13 ms at the end of a 100,000-get phase of sixteen).
pub(super) fn holder_here(
    waits: bool,
    elsewhere_waits: bool,
    passed_over: bool,
    served_elsewhere: bool,
) -> HolderHere {
    if waits && elsewhere_waits && !passed_over {
        HolderHere::PassOver
    } else if waits || !served_elsewhere {
        HolderHere::MoveOff
    } else {
        HolderHere::Stay
    }
}

/// The rings whose turn it is, by the ids the poller gives its loans.
#[derive(Debug)]
pub(super) struct Turns {
    slots: usize,
    slice: Duration,
    held: Vec<Held>,
    /// The turns the last [`expire`](Turns::expire) ended.
    ended: Vec<Ended>,
    /// When each process's connection last got a turn (recent ones only:
    /// [`FAIR_MEMORY`]), so that [`pick`](Turns::pick) takes processes in
    /// turn rather than connections.
    last_turn: Vec<(u32, Instant)>,
}

/// How long [`Turns`] remembers a process's last turn. Any ring that waits
/// began to wait after it unless it waited longer than this.
const FAIR_MEMORY: Duration = Duration::from_secs(10);

/// A turn that ended, as [`Turns::expire`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ended {
    /// Its holder.
    pub(super) id: u64,
    /// Its holder's group.
    pub(super) group: Group,
    /// It ended because its holder went quiet (else its slice was over).
    pub(super) quiet: bool,
}

/// Which of the turns that just `ended` can hand over to a client of
/// `group` whose turn begins: one of the same process whose slice
/// was over — its client was sending until now, so it is running and reads
/// the name of its successor on its ring within microseconds, then wakes
/// that client on its own core instead of the poller waking it from
/// another (docs/protocol.md, "Turns"). Not one that went quiet: its
/// client may not be running at all. Not one of another process either,
/// even when the two share turns: the name the outgoing client is given
/// means a connection of its own process.
pub(super) fn handing_over(ended: &[Ended], group: Group) -> Option<u64> {
    ended
        .iter()
        .find(|e| e.group.process == group.process && !e.quiet)
        .map(|e| e.id)
}

#[derive(Debug)]
struct Held {
    id: u64,
    /// The client's group.
    group: Group,
    /// Requests answered in this turn.
    served: u32,
    since: Instant,
    last_busy: Instant,
    /// Its client's thread was looked at during this silence.
    looked: bool,
    /// ... and found asleep.
    asleep: bool,
}

impl Held {
    /// Whether the holder has gone quiet at `now`: its thread was found
    /// asleep, or nothing for its group's [idle limit](Group::idle), or
    /// for [`TURN_WAKE`] after the answer that began its turn.
    fn quiet(&self, now: Instant) -> bool {
        let idle = if self.served >= 2 {
            self.group.idle()
        } else {
            TURN_WAKE
        };
        self.asleep || now.duration_since(self.last_busy) >= idle
    }

    /// Whether its slice — its group's share of turns `base` long — is
    /// over at `now`.
    fn slice_over(&self, now: Instant, base: Duration) -> bool {
        now.duration_since(self.since) >= self.group.slice(base)
    }

    /// Whether a look at its client's thread is due at `now`: silent for
    /// [`TURN_PEEK`] since a request it sent in this turn (before that its
    /// thread was woken and may not have run yet), not looked at yet.
    fn look_due(&self, now: Instant) -> bool {
        self.served >= 2 && !self.looked && now.duration_since(self.last_busy) >= TURN_PEEK
    }
}

/// A ring that waits for a turn, as [`Turns::pick`] weighs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    /// When it began to wait.
    pub(super) since: Instant,
    /// Its client last reported the poller's core.
    pub(super) here: bool,
    /// Its client's process ([`Group::process`]).
    pub(super) process: u32,
}

impl Turns {
    /// Turns for `slots` clients at a time (at least one), each for up to
    /// `slice` while another waits.
    pub(super) fn new(slots: usize, slice: Duration) -> Turns {
        Turns {
            slots: slots.max(1),
            slice,
            held: Vec::new(),
            ended: Vec::new(),
            last_turn: Vec::new(),
        }
    }

    /// Whether `id` holds a turn.
    pub(super) fn holds(&self, id: u64) -> bool {
        self.held.iter().any(|h| h.id == id)
    }

    /// Whether a turn is free for a client of `group`: fewer holders than
    /// slots of its process (its threads compete for the same cores and
    /// wake one another cheaply), and — if it shares turns across
    /// processes — fewer than slots among the connections that do (each
    /// waits for its turn on its own thread, or goes on later once told to
    /// wait). Other processes — a few Node processes, each with an event
    /// loop and helper threads to wake at every change of turn — are
    /// served at once, as before turns.
    pub(super) fn free_for(&self, group: Group) -> bool {
        let mine = self
            .held
            .iter()
            .filter(|h| h.group.process == group.process);
        let shared = self.held.iter().filter(|h| h.group.shared);
        mine.count() < self.slots && (!group.shared || shared.count() < self.slots)
    }

    /// The ids holding a turn.
    pub(super) fn holders(&self) -> impl Iterator<Item = u64> + '_ {
        self.held.iter().map(|h| h.id)
    }

    /// Gives `id`, a client of `group`, a turn from `now` (the caller
    /// checked [`free_for`](Self::free_for)).
    pub(super) fn grant(&mut self, id: u64, group: Group, now: Instant) {
        self.last_turn
            .retain(|&(p, at)| p != group.process && now.duration_since(at) < FAIR_MEMORY);
        self.last_turn.push((group.process, now));
        self.held.push(Held {
            id,
            group,
            served: 0,
            since: now,
            last_busy: now,
            looked: false,
            asleep: false,
        });
    }

    /// Ends `id`'s turn (its ring went back to its thread).
    pub(super) fn release(&mut self, id: u64) {
        self.held.retain(|h| h.id != id);
    }

    /// `id` had `n` requests answered, the last at `now`.
    pub(super) fn served(&mut self, id: u64, now: Instant, n: u32) {
        if let Some(h) = self.held.iter_mut().find(|h| h.id == id) {
            h.last_busy = now;
            h.served = h.served.saturating_add(n);
            h.looked = false;
            h.asleep = false;
        }
    }

    /// The holders whose client's thread is due for a look at `now`
    /// ([`TURN_PEEK`]), each once per silence ([`looked`](Self::looked)),
    /// and only while another client it holds back waits
    /// (`someone_waits`, given the holder's group): ending a turn early
    /// gains nobody anything otherwise, and a look costs the poller ~3 µs
    /// — sixteen Node processes, each a process of one connection and each
    /// often silent between calls, lost about a sixth of their gets/s to
    /// looks. A holder due with nobody waiting counts as looked at and
    /// running (the old rule: [`TURN_IDLE`]).
    pub(super) fn looks_due(
        &mut self,
        now: Instant,
        someone_waits: impl Fn(Group) -> bool,
    ) -> Vec<u64> {
        let mut due = Vec::new();
        for h in self.held.iter_mut().filter(|h| h.look_due(now)) {
            if someone_waits(h.group) {
                due.push(h.id);
            } else {
                h.looked = true;
            }
        }
        due
    }

    /// The holder `id`'s client thread was looked at: `running` (or waiting
    /// for a core — or it could not be looked at) keeps its turn until
    /// [`TURN_IDLE`]; asleep, the next [`expire`](Self::expire) ends it,
    /// as gone quiet, unless it sends first.
    pub(super) fn looked(&mut self, id: u64, running: bool) {
        if let Some(h) = self.held.iter_mut().find(|h| h.id == id) {
            h.looked = true;
            h.asleep = !running;
        }
    }

    /// Whether the holder `id` has sent a request since its turn began
    /// (the first answered was sent before): the core its client reports
    /// now is where it runs, not where it slept.
    pub(super) fn settled(&self, id: u64) -> bool {
        self.held.iter().any(|h| h.id == id && h.served >= 2)
    }

    /// Whether a look at the waiting rings is due at `now`: a holder's
    /// slice is over, a holder has gone quiet, or a holder's thread is due
    /// for a look.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.held
            .iter()
            .any(|h| h.slice_over(now, self.slice) || h.quiet(now) || h.look_due(now))
    }

    /// After a look at every ring at `now`: ends the turns of holders gone
    /// quiet, and of holders whose slice is over while a client they hold
    /// back waits (`someone_waits`, given the holder's group; else their
    /// slice starts again). The turns it ended
    /// are [`ended`](Self::ended) until the next call.
    pub(super) fn expire(&mut self, now: Instant, someone_waits: impl Fn(Group) -> bool) {
        let slice = self.slice;
        let ended = &mut self.ended;
        ended.clear();
        self.held.retain_mut(|h| {
            let end = |quiet| Ended {
                id: h.id,
                group: h.group,
                quiet,
            };
            if h.quiet(now) {
                ended.push(end(true));
                return false;
            }
            if h.slice_over(now, slice) {
                if someone_waits(h.group) {
                    ended.push(end(false));
                    return false;
                }
                h.since = now;
            }
            true
        });
    }

    /// The turns the last [`expire`](Self::expire) ended.
    pub(super) fn ended(&self) -> &[Ended] {
        &self.ended
    }

    /// Which of the `waiting` rings gets the next turn: the one that began
    /// to wait first, counting one on the poller's core as having begun
    /// [`HERE_PENALTY`] later — and one whose process had a turn since it
    /// began to wait as having begun then. So processes take turns, not
    /// connections: a process with thirty connections waiting, and
    /// another with one, get a turn each in turn (its thirty among
    /// themselves in the order they began to wait), instead of the one
    /// waiting thirty turns; a process's own connections keep their order.
    pub(super) fn pick<K>(&self, waiting: impl Iterator<Item = (K, Waiting)>) -> Option<K> {
        waiting
            .min_by_key(|(_, w)| {
                let since = if w.here {
                    w.since + HERE_PENALTY
                } else {
                    w.since
                };
                let turn = self
                    .last_turn
                    .iter()
                    .find(|(p, _)| *p == w.process)
                    .map_or(since, |&(_, at)| at.max(since));
                (turn, since)
            })
            .map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICE: Duration = Duration::from_micros(1000);
    const APP: Group = process(10);

    /// A connection of process `pid` that does not share turns.
    const fn process(pid: u32) -> Group {
        Group {
            process: pid,
            shared: false,
            budgeted: false,
        }
    }

    /// A connection of process `pid` that shares turns across processes.
    const fn sharing(pid: u32) -> Group {
        Group {
            process: pid,
            shared: true,
            budgeted: false,
        }
    }

    /// A connection of process `pid` whose calls have a budget (a Node
    /// thread's event loop's), sharing turns across processes.
    const fn node(pid: u32) -> Group {
        Group {
            process: pid,
            shared: true,
            budgeted: true,
        }
    }

    fn at(t: Instant, micros: u64) -> Instant {
        t + Duration::from_micros(micros)
    }

    fn nobody(_: Group) -> bool {
        false
    }

    #[test]
    fn clients_that_go_on_later_take_turns_across_processes_only_among_many() {
        assert!(shares_turns(TurnHint::OnThread, false));
        assert!(shares_turns(TurnHint::OnThread, true));
        assert!(
            shares_turns(TurnHint::Budgeted, false),
            "a call with a budget and a turn wait waits on its thread too"
        );
        assert!(!shares_turns(TurnHint::Later, false));
        assert!(shares_turns(TurnHint::Later, true));
        assert!(!shares_turns(TurnHint::Unsaid, true), "never said: never");
    }

    #[test]
    fn many_later_counts_processes_not_connections() {
        let few = (0..LATER_CROWD as u32 - 1).flat_map(|pid| [pid, pid, pid]);
        assert!(
            !many_later(few),
            "three connections each, one process short"
        );
        assert!(many_later(0..LATER_CROWD as u32));
        assert!(!many_later(std::iter::empty()));
    }

    fn everybody(_: Group) -> bool {
        true
    }

    /// The group of connection `conn` whose socket peer's pid is `pid`,
    /// its client a blocking one that never said how it waits.
    fn connection(pid: Option<u32>, conn: u64) -> Group {
        Group::new(turn_process(pid, conn), TurnHint::Unsaid, false)
    }

    #[test]
    fn connections_of_one_process_take_turns_as_one() {
        let t = Instant::now();
        let (a, b) = (connection(Some(4242), 1), connection(Some(4242), 2));
        assert!(a.holds_back(b));
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, a, t);
        assert!(!turns.free_for(b), "b waits for a's turn to end");
    }

    #[test]
    fn clients_from_another_pid_namespace_are_each_a_process_of_their_own() {
        // SO_PEERCRED says pid 0 for a peer outside the server's pid
        // namespace (a container): two such clients are not one process.
        let t = Instant::now();
        let (a, b) = (connection(Some(0), 1), connection(Some(0), 2));
        assert_ne!(a.process, b.process);
        assert!(!a.holds_back(b));
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, a, t);
        assert!(turns.free_for(b), "b is served while a holds its turn");
    }

    #[test]
    fn clients_whose_pid_is_unknown_are_each_a_process_of_their_own() {
        let t = Instant::now();
        let (a, b) = (connection(None, 1), connection(None, 2));
        assert_ne!(a.process, b.process);
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, a, t);
        assert!(turns.free_for(b), "b is served while a holds its turn");
    }

    #[test]
    fn a_connection_without_a_pid_is_never_taken_for_a_real_process() {
        // Linux pids stay below 2^22; a connection's own value is above 2^31.
        for conn in [1, 4242, u64::from(u32::MAX), u64::MAX] {
            let own = turn_process(None, conn);
            assert!(own > i32::MAX as u32, "connection {conn}: {own}");
            assert_eq!(turn_process(Some(0), conn), own);
        }
        assert_ne!(connection(None, 4242), connection(Some(4242), 1));
    }

    #[test]
    fn one_turn_per_process_on_two_cores_and_never_none() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        assert!(turns.free_for(APP));
        turns.grant(7, APP, t);
        assert!(!turns.free_for(APP));
        assert!(turns.holds(7));
        assert!(!turns.holds(8));
        let mut none = Turns::new(0, SLICE);
        assert!(
            none.free_for(APP),
            "a machine with one core still serves one client"
        );
        none.grant(1, APP, t);
        assert!(!none.free_for(APP));
    }

    #[test]
    fn other_processes_are_not_held_back() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        assert!(!turns.free_for(APP));
        assert!(turns.free_for(process(11)));
        turns.grant(2, process(11), t);
        assert!(turns.free_for(process(12)));
    }

    #[test]
    fn connections_that_share_turns_take_them_together_across_processes() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, sharing(10), t);
        assert!(!turns.free_for(sharing(11)), "another process that shares");
        assert!(!turns.free_for(process(10)), "its own process still");
        assert!(
            turns.free_for(process(11)),
            "another process that does not share is never held back"
        );
        turns.grant(2, process(11), t);
        assert!(!turns.free_for(sharing(11)), "by either holder");
        turns.release(1);
        assert!(!turns.free_for(sharing(11)), "its own process's holder");
        assert!(turns.free_for(sharing(12)));
    }

    #[test]
    fn a_holder_holds_back_its_process_and_those_it_shares_turns_with() {
        assert!(process(10).holds_back(sharing(10)));
        assert!(sharing(10).holds_back(process(10)));
        assert!(sharing(10).holds_back(sharing(11)));
        assert!(!sharing(10).holds_back(process(11)));
        assert!(!process(10).holds_back(sharing(11)));
    }

    #[test]
    fn a_busy_holder_keeps_its_turn_through_its_slice() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        for micros in (10..1000).step_by(10) {
            turns.served(1, at(t, micros), 1);
            assert!(!turns.due(at(t, micros)));
        }
        turns.expire(at(t, 990), everybody);
        assert!(turns.holds(1));
    }

    fn ended(id: u64, quiet: bool) -> Ended {
        Ended {
            id,
            group: APP,
            quiet,
        }
    }

    #[test]
    fn a_turn_whose_slice_ran_out_hands_over_to_its_own_process_only() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        turns.served(1, at(t, 1000), 2);
        turns.expire(at(t, 1000), everybody);
        assert_eq!(turns.ended(), &[ended(1, false)]);
        assert_eq!(handing_over(turns.ended(), APP), Some(1));
        assert_eq!(
            handing_over(turns.ended(), process(11)),
            None,
            "a client of another process is woken by the poller"
        );
    }

    #[test]
    fn a_turn_is_never_handed_over_to_another_process_even_one_sharing_turns() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, sharing(10), t);
        turns.served(1, at(t, 1000), 2);
        turns.expire(at(t, 1000), everybody);
        assert!(!turns.holds(1));
        assert_eq!(handing_over(turns.ended(), sharing(10)), Some(1));
        assert_eq!(
            handing_over(turns.ended(), sharing(11)),
            None,
            "the outgoing client can wake only a connection of its own process"
        );
    }

    #[test]
    fn a_turn_that_went_quiet_hands_over_to_nobody() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        turns.served(1, at(t, 10), 2);
        turns.expire(at(t, 10) + TURN_IDLE, everybody);
        assert!(!turns.holds(1));
        assert_eq!(turns.ended(), &[ended(1, true)]);
        assert_eq!(
            handing_over(turns.ended(), APP),
            None,
            "its client may not be running to wake anyone"
        );
    }

    #[test]
    fn only_the_last_expire_s_endings_are_reported() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        turns.served(1, at(t, 1000), 2);
        turns.expire(at(t, 1000), everybody);
        turns.grant(2, APP, at(t, 1000));
        turns.expire(at(t, 1010), everybody);
        assert!(turns.ended().is_empty());
        assert_eq!(handing_over(turns.ended(), APP), None);
    }

    #[test]
    fn a_slice_ends_only_when_another_client_of_its_process_waits() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        turns.served(1, at(t, 1000), 2);
        assert!(turns.due(at(t, 1000)));
        turns.expire(at(t, 1000), |group| group != APP);
        assert!(
            turns.holds(1),
            "nobody of its process waits: the slice starts again"
        );
        assert!(!turns.due(at(t, 1005)));
        turns.served(1, at(t, 2000), 1);
        turns.expire(at(t, 2000), everybody);
        assert!(!turns.holds(1), "another waits: the turn ends");
        assert!(turns.free_for(APP));
    }

    #[test]
    fn a_holder_whose_calls_have_a_budget_keeps_its_turn_for_more_slices() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, node(10), t);
        let whole = SLICE.as_micros() as u64 * u64::from(BUDGETED_SLICES);
        assert!(whole > SLICE.as_micros() as u64);
        for micros in (100..whole).step_by(100) {
            turns.served(1, at(t, micros), 1);
            turns.expire(at(t, micros), everybody);
            assert!(turns.holds(1), "another waits, {micros} µs in");
        }
        turns.served(1, at(t, whole), 1);
        assert!(turns.due(at(t, whole)));
        turns.expire(at(t, whole), everybody);
        assert!(!turns.holds(1), "its slices are over");
        assert!(!turns.ended()[0].quiet);
    }

    #[test]
    fn only_calls_with_a_budget_have_the_longer_slice() {
        assert_eq!(process(1).slice(SLICE), SLICE);
        assert_eq!(sharing(1).slice(SLICE), SLICE, "a blocking call's");
        assert_eq!(node(1).slice(SLICE), SLICE * BUDGETED_SLICES);
    }

    #[test]
    fn a_quiet_holder_loses_its_turn_even_when_nobody_waits() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        turns.served(1, at(t, 5), 1);
        turns.served(1, at(t, 10), 1);
        // Its thread cannot be looked at (or runs): it has TURN_IDLE.
        turns.looked(1, true);
        assert!(!turns.due(at(t, 10 + 49)));
        assert!(turns.due(at(t, 10 + 50)));
        turns.expire(at(t, 60), nobody);
        assert!(!turns.holds(1));
    }

    /// A holder granted at `t` that has sent a request in its turn, the
    /// last answered at `t` + 10 µs.
    fn settled_at(t: Instant) -> Turns {
        settled_in(APP, t)
    }

    /// [`settled_at`] for a holder of `group`.
    fn settled_in(group: Group, t: Instant) -> Turns {
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, group, t);
        turns.served(1, at(t, 5), 1);
        turns.served(1, at(t, 10), 1);
        turns
    }

    /// A holder granted at `t` whose first answer (to the request it sent
    /// before its turn) went out at `t`: woken, it has not sent yet.
    fn woken_at(t: Instant) -> Turns {
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        turns.served(1, t, 1);
        turns
    }

    #[test]
    fn a_holder_silent_for_the_peek_is_due_for_one_look_at_its_thread() {
        let t = Instant::now();
        let mut turns = settled_at(t);
        let peek = TURN_PEEK.as_micros() as u64;
        assert_eq!(turns.looks_due(at(t, 10 + peek - 1), everybody).len(), 0);
        assert!(!turns.due(at(t, 10 + peek - 1)));
        assert_eq!(turns.looks_due(at(t, 10 + peek), everybody), [1]);
        assert!(turns.due(at(t, 10 + peek)));
        turns.looked(1, true);
        assert_eq!(
            turns.looks_due(at(t, 10 + 40), everybody).len(),
            0,
            "one look per silence"
        );
        assert!(!turns.due(at(t, 10 + 40)));
    }

    #[test]
    fn a_holder_is_not_looked_at_while_nobody_of_its_process_waits() {
        let t = Instant::now();
        let mut turns = settled_at(t);
        let peek = TURN_PEEK.as_micros() as u64;
        assert!(turns.looks_due(at(t, 10 + peek), nobody).is_empty());
        assert!(
            !turns.due(at(t, 10 + peek)),
            "counted as looked at: no look at every pass"
        );
        assert!(
            turns.looks_due(at(t, 10 + peek + 1), everybody).is_empty(),
            "once per silence"
        );
        turns.expire(at(t, 10 + 49), nobody);
        assert!(turns.holds(1), "the old rule: TURN_IDLE");
    }

    #[test]
    fn a_holder_whose_thread_sleeps_loses_its_turn_as_gone_quiet() {
        let t = Instant::now();
        let mut turns = settled_at(t);
        let looked_at = at(t, 10 + TURN_PEEK.as_micros() as u64);
        turns.looked(1, false);
        assert!(turns.due(looked_at));
        turns.expire(looked_at, nobody);
        assert!(!turns.holds(1), "even with nobody waiting");
        assert_eq!(
            turns.ended(),
            &[ended(1, true)],
            "not running: it hands over to nobody"
        );
    }

    #[test]
    fn a_holder_whose_thread_runs_keeps_its_turn_until_the_idle_limit() {
        let t = Instant::now();
        let mut turns = settled_at(t);
        turns.looked(1, true);
        turns.expire(at(t, 10 + 49), everybody);
        assert!(turns.holds(1), "preempted or working: it calls again soon");
        turns.expire(at(t, 10 + 50), everybody);
        assert!(!turns.holds(1));
    }

    #[test]
    fn a_holder_whose_calls_have_a_budget_keeps_its_turn_through_its_event_loop_s_turn() {
        let t = Instant::now();
        let mut turns = settled_in(node(10), t);
        turns.looked(1, true);
        let idle = TURN_IDLE_BUDGETED.as_micros() as u64;
        assert!(idle > TURN_IDLE.as_micros() as u64);
        turns.expire(at(t, 10 + idle - 1), everybody);
        assert!(turns.holds(1), "running: its JavaScript calls again soon");
        turns.served(1, at(t, 10 + idle - 1), 1);
        turns.expire(at(t, 10 + 2 * idle - 2), everybody);
        assert!(turns.holds(1), "each request starts a new silence");
        turns.expire(at(t, 10 + 2 * idle - 1), everybody);
        assert!(!turns.holds(1));
        assert!(
            turns.ended()[0].quiet,
            "gone quiet: it hands over to nobody"
        );
    }

    #[test]
    fn a_holder_whose_calls_have_a_budget_and_whose_thread_sleeps_still_loses_its_turn_at_once() {
        let t = Instant::now();
        let mut turns = settled_in(node(10), t);
        let looked_at = at(t, 10 + TURN_PEEK.as_micros() as u64);
        turns.looked(1, false);
        turns.expire(looked_at, everybody);
        assert!(!turns.holds(1), "asleep outside hearth: not about to call");
    }

    #[test]
    fn only_calls_with_a_budget_have_the_longer_silence() {
        assert_eq!(process(1).idle(), TURN_IDLE);
        assert_eq!(sharing(1).idle(), TURN_IDLE, "a blocking call's");
        assert_eq!(node(1).idle(), TURN_IDLE_BUDGETED);
        let said = |hint| Group::new(1, hint, true).idle();
        assert_eq!(said(TurnHint::OnThread), TURN_IDLE);
        assert_eq!(said(TurnHint::Unsaid), TURN_IDLE);
        assert_eq!(said(TurnHint::Later), TURN_IDLE_BUDGETED);
        assert_eq!(said(TurnHint::Budgeted), TURN_IDLE_BUDGETED);
    }

    #[test]
    fn a_request_after_the_look_keeps_the_turn_and_starts_a_new_silence() {
        let t = Instant::now();
        let mut turns = settled_at(t);
        turns.looked(1, false);
        turns.served(1, at(t, 25), 1);
        turns.expire(at(t, 25), everybody);
        assert!(turns.holds(1), "it sent before the turn ended");
        let peek = TURN_PEEK.as_micros() as u64;
        assert_eq!(turns.looks_due(at(t, 25 + peek), everybody), [1]);
    }

    #[test]
    fn a_woken_holder_is_not_looked_at_before_it_sends_in_its_turn() {
        let t = Instant::now();
        let mut turns = woken_at(t);
        // Its thread was asleep for its turn and may not have run yet.
        assert!(turns.looks_due(at(t, 400), everybody).is_empty());
        assert!(!turns.due(at(t, 400)));
    }

    #[test]
    fn a_new_holder_has_longer_to_send_its_next_request() {
        let t = Instant::now();
        let mut turns = woken_at(t);
        assert!(!turns.due(at(t, 499)), "woken, it has TURN_WAKE");
        assert!(turns.due(at(t, 500)));
        turns.expire(at(t, 500), nobody);
        assert!(!turns.holds(1));
    }

    #[test]
    fn a_holder_is_settled_from_its_second_answer() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        turns.grant(1, APP, t);
        assert!(!turns.settled(1));
        turns.served(1, t, 1);
        assert!(
            !turns.settled(1),
            "the first request was sent before the turn"
        );
        turns.served(1, t, 1);
        assert!(turns.settled(1));
    }

    #[test]
    fn a_holder_here_is_passed_over_once_when_a_client_elsewhere_waits() {
        assert_eq!(holder_here(true, true, false, false), HolderHere::PassOver);
        assert_eq!(
            holder_here(true, true, true, false),
            HolderHere::MoveOff,
            "passed over already: it must still be served"
        );
    }

    #[test]
    fn a_holder_here_moves_the_poller_when_only_clients_on_its_core_wait() {
        assert_eq!(holder_here(true, false, false, false), HolderHere::MoveOff);
        assert_eq!(holder_here(true, false, false, true), HolderHere::MoveOff);
    }

    #[test]
    fn a_lone_holder_here_moves_the_poller() {
        assert_eq!(holder_here(false, false, false, false), HolderHere::MoveOff);
    }

    #[test]
    fn a_holder_here_stays_when_nobody_waits_and_another_client_runs_elsewhere() {
        assert_eq!(holder_here(false, false, false, true), HolderHere::Stay);
    }

    #[test]
    fn release_frees_the_slot() {
        let t = Instant::now();
        let mut turns = Turns::new(2, SLICE);
        turns.grant(1, APP, t);
        turns.grant(2, APP, t);
        assert!(!turns.free_for(APP));
        turns.release(1);
        assert!(turns.free_for(APP));
        assert_eq!(turns.holders().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn the_longest_waiting_goes_first() {
        let t = Instant::now();
        let waiting = [
            ("b", at(t, 20), false),
            ("a", at(t, 10), false),
            ("c", at(t, 30), false),
        ];
        let turns = Turns::new(1, SLICE);
        let next = turns.pick(waiting.iter().map(|&(k, since, here)| {
            (
                k,
                Waiting {
                    since,
                    here,
                    process: 10,
                },
            )
        }));
        assert_eq!(next, Some("a"));
        assert_eq!(turns.pick(std::iter::empty::<((), Waiting)>()), None);
    }

    /// Thirty connections of one process wait, and one of another: after
    /// one of the thirty's turns, the other process goes next, though it
    /// began to wait after all thirty; then one of the thirty again, in
    /// the order they began to wait.
    #[test]
    fn processes_take_turns_not_connections() {
        let t = Instant::now();
        let mut turns = Turns::new(1, SLICE);
        let many = sharing(10);
        let one = sharing(20);
        let mut waiting: Vec<(u64, Waiting)> = (0..30)
            .map(|i| {
                let since = at(t, i);
                (
                    i,
                    Waiting {
                        since,
                        here: false,
                        process: 10,
                    },
                )
            })
            .collect();
        waiting.push((
            99,
            Waiting {
                since: at(t, 100),
                here: false,
                process: 20,
            },
        ));
        let mut order = Vec::new();
        let mut now = at(t, 200);
        for _ in 0..5 {
            let next = turns.pick(waiting.iter().copied()).unwrap();
            order.push(next);
            let w = waiting.iter().position(|&(k, _)| k == next).unwrap();
            let (_, w) = waiting.remove(w);
            turns.grant(next, if w.process == 10 { many } else { one }, now);
            turns.release(next);
            now += SLICE;
            // It waits again, from the end of its turn.
            waiting.push((next, Waiting { since: now, ..w }));
            now += Duration::from_micros(1);
        }
        assert_eq!(order, vec![0, 99, 1, 99, 2]);
    }

    #[test]
    fn a_client_on_the_pollers_core_goes_after_others_unless_it_waited_much_longer() {
        let t = Instant::now();
        let turns = Turns::new(1, SLICE);
        let pick = |here_since: Instant| {
            turns.pick(
                [
                    (
                        "here",
                        Waiting {
                            since: here_since,
                            here: true,
                            process: 10,
                        },
                    ),
                    (
                        "there",
                        Waiting {
                            since: at(t, 1_000),
                            here: false,
                            process: 11,
                        },
                    ),
                ]
                .into_iter(),
            )
        };
        assert_eq!(pick(at(t, 500)), Some("there"));
        let long_before = at(t, 1_000) - HERE_PENALTY - Duration::from_micros(1);
        assert_eq!(pick(long_before), Some("here"));
    }
}
