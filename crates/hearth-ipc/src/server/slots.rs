//! A connection's slots for streamed calls on the blocking pool.
//!
//! Owns: how many of one connection's `list`, `query` and `search` streams
//! produce on the blocking pool at once (`ServerBuilder::max_running_streams`,
//! default [`DEFAULT_RUNNING_STREAMS`]), and the order in which the others
//! get a slot: the order the connection's reading loop admitted them (the
//! order the client sent them), whatever order their tasks run in. A stream
//! waiting for a slot is a parked task: it holds no pool thread. Must
//! never: lose a slot (a slot handed to a stream that was cancelled or
//! whose connection ended passes on to the next waiter, or back), or let
//! one connection's streams take more of the pool than its slots — a
//! producer holds its thread while its client does not read (`router.rs`,
//! `stream`), and a connection pipelining 1024 unread lists once held 512
//! threads, all the pool tokio had, until the stall timeout.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
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

#[derive(Debug)]
struct State {
    /// Slots handed out (held, or on their way to a waiter).
    running: usize,
    max: usize,
    /// Streams waiting for a slot, oldest first.
    waiting: VecDeque<oneshot::Sender<Slot>>,
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

/// A running stream's slot; dropping it hands it to the oldest waiter.
#[derive(Debug)]
pub(crate) struct Slot {
    /// `None` once the slot has been passed on or given back.
    slots: Option<Arc<Mutex<State>>>,
}

impl StreamSlots {
    /// `max` slots (at least one).
    pub(crate) fn new(max: usize) -> StreamSlots {
        StreamSlots(Arc::new(Mutex::new(State {
            running: 0,
            max: max.max(1),
            waiting: VecDeque::new(),
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
        let (tx, rx) = oneshot::channel();
        state.waiting.push_back(tx);
        Admission::Later(rx)
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
