//! The in-flight permits of one client connection: at most the negotiated
//! `max_in_flight` of its requests, streams and subscriptions wait for the
//! server at once.
//!
//! Owns: counting the permits in use in one atomic word (with a bit that
//! closes them all), handing one out at once ([`Permits::try_take`], or
//! [`Permits::try_take_here`] for a blocking call that gives it back
//! before it returns: one compare-and-swap, and one subtract to give it
//! back, with no reference count touched) or once one is given back
//! ([`Permits::take`], async callers woken through a `Notify`), and
//! refusing every taker once the connection is closed. While takers wait,
//! callers that would take one at once wait behind them instead (tokio's
//! semaphore, which this replaced, handed permits out first come, first
//! served; here a woken taker may still lose a permit to another waiting
//! taker, but not to callers that keep coming). Must never: hand
//! out more than the limit at once, or miss a wake-up (a taker that finds
//! none free while a holder gives one back: both sides use SeqCst, and the
//! giver notifies only when it sees a taker waiting).

use crate::waiters::Waiters;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Set in [`Permits::used`] once the connection is closed: no permit is
/// handed out after it (the count, with it, is never below the limit).
const CLOSED: usize = 1 << (usize::BITS - 1);

/// A connection's in-flight permits.
pub(crate) struct Permits {
    /// Permits in use, with [`CLOSED`] set once closed.
    used: AtomicUsize,
    max: usize,
    /// Tasks in [`take`](Self::take) now: a giver notifies only then.
    waiting: Waiters,
    freed: Notify,
}

/// A permit owned by whoever waits for the answer (a pending entry);
/// given back when dropped.
pub(crate) struct Permit {
    permits: Arc<Permits>,
}

/// A permit held by a call on its own thread, borrowed from the
/// connection; given back when dropped, or kept by a pending entry
/// ([`Held::keep`]).
pub(crate) struct Held<'a> {
    permits: &'a Permits,
}

impl Permits {
    /// `max` permits (at least one).
    pub(crate) fn new(max: usize) -> Arc<Permits> {
        Arc::new(Permits {
            used: AtomicUsize::new(0),
            max: max.clamp(1, CLOSED - 1),
            waiting: Waiters::new(),
            freed: Notify::new(),
        })
    }

    /// Counts one more in use if one is free and the permits are open.
    fn try_count(&self) -> bool {
        // SeqCst, not only the compare-and-swap: a taker in `take` that
        // finds every permit in use never swaps, and this load is then its
        // side of the pairing with `give_back` (see there).
        let mut used = self.used.load(Ordering::SeqCst);
        // A closed count is at least CLOSED, above any limit.
        while used < self.max {
            // SeqCst pairs with the one in `take`: see `give_back`.
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
        false
    }

    /// Whether a caller that does not wait may take a permit now: not
    /// while takers wait in [`take`](Self::take), so that callers that
    /// keep coming cannot keep a waiting one from the permits given back
    /// (they wait behind it instead).
    fn no_one_waits(&self) -> bool {
        // A hint for fairness; the count itself is exact.
        !self.waiting.any_hint()
    }

    /// A permit if one is free now (and the connection is open), unless
    /// takers wait for one.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Permit> {
        (self.no_one_waits() && self.try_count()).then(|| Permit {
            permits: self.clone(),
        })
    }

    /// [`try_take`](Self::try_take) for a call that gives the permit back
    /// before it returns, unless it hands it to a pending entry.
    pub(crate) fn try_take_here(&self) -> Option<Held<'_>> {
        // Not `then_some`: a `Held` made and dropped would give back a
        // permit never taken.
        if self.no_one_waits() && self.try_count() {
            Some(Held { permits: self })
        } else {
            None
        }
    }

    /// Waits for a permit; `None` once the permits are closed.
    pub(crate) async fn take(self: &Arc<Self>) -> Option<Permit> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before anything is looked at, so that neither a
            // permit given back nor `close` after the look is missed.
            freed.as_mut().enable();
            // Counted (SeqCst) before it looks: pairs with `give_back`.
            let _waiting = self.waiting.enter();
            if self.try_count() {
                return Some(Permit {
                    permits: self.clone(),
                });
            }
            if self.is_closed() {
                return None;
            }
            freed.await;
        }
    }

    /// Whether the permits are closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.used.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// Closes the permits: no more are handed out, and every waiting
    /// [`take`](Self::take) ends with `None`. Those held are given back as
    /// their holders drop them.
    pub(crate) fn close(&self) {
        self.used.fetch_or(CLOSED, Ordering::SeqCst);
        self.freed.notify_waiters();
    }

    fn give_back(&self) {
        // SeqCst on both sides (this subtract and load, the increment of
        // `waiting` and the compare-and-swap in `take`): either this sees
        // the taker counted and wakes it, or the taker, counted before it
        // looks, sees the permit given back.
        self.used.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.any() {
            // Wakes one waiting taker (or lets the next one through): a
            // woken taker that is dropped first passes it on.
            self.freed.notify_one();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.permits.give_back();
    }
}

impl Held<'_> {
    /// The same permit, owned by a pending entry from now on; `permits`
    /// is the connection's, the one this was taken from.
    pub(crate) fn keep(self, permits: &Arc<Permits>) -> Permit {
        debug_assert!(std::ptr::eq(self.permits, Arc::as_ptr(permits)));
        // The count taken for this moves to the owned permit.
        std::mem::forget(self);
        Permit {
            permits: permits.clone(),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.permits.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn in_use(permits: &Permits) -> usize {
        permits.used.load(Ordering::SeqCst) & !CLOSED
    }

    /// A task that waits in `take`: true if it got a permit.
    fn taker(permits: &Arc<Permits>) -> tokio::task::JoinHandle<bool> {
        let permits = permits.clone();
        tokio::spawn(async move { permits.take().await.is_some() })
    }

    /// Waits until a task waits in `take`.
    async fn until_someone_waits(permits: &Permits) {
        while permits.no_one_waits() {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn no_more_than_the_limit_are_handed_out_and_each_comes_back_when_dropped() {
        let permits = Permits::new(2);
        let a = permits.try_take().unwrap();
        let b = permits.try_take_here().unwrap();
        assert!(permits.try_take().is_none());
        assert!(permits.try_take_here().is_none());
        drop(a);
        let c = permits.try_take().unwrap();
        drop(b);
        drop(c);
        assert_eq!(in_use(&permits), 0);
    }

    #[test]
    fn a_held_permit_kept_by_an_entry_is_given_back_once() {
        let permits = Permits::new(1);
        let kept = permits.try_take_here().unwrap().keep(&permits);
        assert!(permits.try_take().is_none());
        drop(kept);
        assert_eq!(in_use(&permits), 0);
        assert!(permits.try_take().is_some());
    }

    #[test]
    fn a_limit_of_zero_still_lets_one_through() {
        let permits = Permits::new(0);
        let one = permits.try_take();
        assert!(one.is_some());
        assert!(permits.try_take().is_none());
    }

    #[test]
    fn closed_permits_hand_out_none_and_held_ones_still_come_back() {
        let permits = Permits::new(4);
        let held = permits.try_take().unwrap();
        permits.close();
        assert!(permits.is_closed());
        assert!(permits.try_take().is_none());
        assert!(permits.try_take_here().is_none());
        drop(held);
        assert_eq!(in_use(&permits), 0);
        assert!(permits.is_closed());
    }

    #[tokio::test]
    async fn a_waiting_taker_gets_the_permit_given_back_before_any_newcomer() {
        let permits = Permits::new(1);
        let held = permits.try_take().unwrap();
        let waiter = taker(&permits);
        until_someone_waits(&permits).await;
        assert!(!waiter.is_finished());
        drop(held);
        // The permit given back is the waiting taker's, not a newcomer's.
        assert!(permits.try_take().is_none());
        assert!(permits.try_take_here().is_none());
        assert!(waiter.await.unwrap());
        assert!(permits.try_take().is_some());
    }

    #[tokio::test]
    async fn closing_ends_every_waiting_taker() {
        let permits = Permits::new(1);
        let _held = permits.try_take().unwrap();
        let waiters: Vec<_> = (0..3).map(|_| taker(&permits)).collect();
        while permits.waiting.count() < 3 {
            tokio::task::yield_now().await;
        }
        permits.close();
        for waiter in waiters {
            assert!(!waiter.await.unwrap());
        }
    }

    #[test]
    fn many_threads_taking_and_giving_back_never_hold_more_than_the_limit() {
        let permits = Permits::new(3);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let most = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (permits, most) = (permits.clone(), most.clone());
                    tokio::spawn(async move {
                        for _ in 0..2_000 {
                            let permit = permits.take().await.unwrap();
                            most.fetch_max(in_use(&permits), Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            drop(permit);
                        }
                    })
                })
                .collect();
            // A lost wake-up would leave a task waiting for good.
            let all = async {
                for task in tasks {
                    task.await.unwrap();
                }
            };
            tokio::time::timeout(Duration::from_secs(120), all)
                .await
                .expect("every task ends");
        });
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(in_use(&permits), 0);
    }
}
