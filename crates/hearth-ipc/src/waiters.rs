//! Counting the tasks that wait for a `Notify`, so that whoever would
//! notify them takes its lock only while one waits.
//!
//! Owns: [`Waiters`] (the count) and [`Waiting`] (its holder counted while
//! it lives). Must never: let a waiter look at what it waits for before it
//! is counted (the count goes up, SeqCst, before [`Waiters::enter`]
//! returns), or miss its end (the guard counts it out on any exit, a
//! cancelled future's too). The pairing with the notifier's side — its
//! change, then [`Waiters::any`], both SeqCst — is each user's to state.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many tasks wait now.
#[derive(Debug, Default)]
pub(crate) struct Waiters(AtomicUsize);

/// Counts its holder in a [`Waiters`] until it drops.
#[derive(Debug)]
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Waiters {
    /// No task waiting.
    pub(crate) const fn new() -> Waiters {
        Waiters(AtomicUsize::new(0))
    }

    /// Counts the caller until the guard drops. SeqCst: a notifier that
    /// makes its change and then finds no one counted is sure the caller
    /// will see the change when it looks, after this.
    pub(crate) fn enter(&self) -> Waiting<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.0)
    }

    /// Whether any task waits, for a notifier (SeqCst: see [`enter`](Self::enter)).
    pub(crate) fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }

    /// Whether any task waits, as a hint (Relaxed: it may be stale).
    pub(crate) fn any_hint(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }

    /// How many tasks wait now (SeqCst), for tests that wait for waiters.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_is_counted_while_its_guard_lives() {
        let waiters = Waiters::new();
        assert!(!waiters.any());
        let a = waiters.enter();
        let b = waiters.enter();
        assert!(waiters.any() && waiters.any_hint());
        drop(a);
        assert!(waiters.any());
        drop(b);
        assert!(!waiters.any() && !waiters.any_hint());
    }
}
