//! Change subscriptions: which changes a subscription gets, and the fan-out
//! hub that hands each committed change to every live subscription without
//! ever waiting on one.
//!
//! Owns: the filter (sequence start + id prefix), the catch-up boundary
//! between "read from the change log" and "delivered live", each change's
//! JSON encoded once for every subscription that wants it ([`LiveChange`];
//! a forwarder only copies it into its event), and the lag decision: a subscription whose buffer is full is cut off with the exact
//! sequence number to resume from. Must never: block the dispatching thread
//! on a subscriber, skip a change without recording where the subscriber
//! must resume, or do I/O.

use hearth_store::Change;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// What one subscription wants: changes from `start` on, to ids starting
/// with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) prefix: Option<String>,
    pub(crate) start: u64,
}

impl Filter {
    /// Whether the change `seq` to `id` is for this subscription.
    pub(crate) fn wants(&self, seq: u64, id: &str) -> bool {
        seq >= self.start && self.prefix.as_deref().is_none_or(|p| id.starts_with(p))
    }
}

/// What happens to a subscription after offering it a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not for it, or delivered: it stays.
    Keep,
    /// Its buffer was full: cut it off; it resumes from this sequence number.
    Lagged(u64),
    /// Its receiver is gone: remove it.
    Gone,
}

/// The lag rule, with no I/O: `sent` is the outcome of a non-blocking send
/// of change `seq`.
pub(crate) fn verdict(seq: u64, sent: Result<(), mpsc::error::TrySendError<()>>) -> Verdict {
    match sent {
        Ok(()) => Verdict::Keep,
        Err(mpsc::error::TrySendError::Full(())) => Verdict::Lagged(seq),
        Err(mpsc::error::TrySendError::Closed(())) => Verdict::Gone,
    }
}

/// A committed change as live subscriptions get it: its sequence number
/// and its `change` object, encoded once by [`ChangeHub::dispatch`] and
/// shared by every subscription it goes to.
#[derive(Debug, Clone)]
pub(crate) struct LiveChange {
    pub(crate) seq: u64,
    pub(crate) json: Arc<str>,
}

struct Live {
    filter: Filter,
    tx: mpsc::Sender<LiveChange>,
    lagged_at: Arc<AtomicU64>,
}

#[derive(Default)]
struct Inner {
    /// The last sequence number dispatched.
    delivered: u64,
    next_key: u64,
    subs: HashMap<u64, Live>,
    closed: bool,
}

/// A registered subscription, as its forwarder sees it.
pub(crate) struct Registration {
    /// The key to remove it with.
    pub(crate) key: u64,
    /// The filter in force.
    pub(crate) filter: Filter,
    /// Changes from here on arrive on `rx`; those in `filter.start..live_from`
    /// must be read from the change log first.
    pub(crate) live_from: u64,
    /// Live changes, in order.
    pub(crate) rx: mpsc::Receiver<LiveChange>,
    /// Non-zero once the subscription was cut off: the sequence number to
    /// resume from (read after `rx` is drained and closed).
    pub(crate) lagged_at: Arc<AtomicU64>,
}

/// The fan-out of committed changes to live subscriptions.
#[derive(Default)]
pub(crate) struct ChangeHub {
    inner: Mutex<Inner>,
    /// Signalled when a subscription is registered (or the hub closes).
    registered: Condvar,
}

impl ChangeHub {
    /// A hub whose next dispatched change will be `last_seq + 1`.
    pub(crate) fn new(last_seq: u64) -> ChangeHub {
        ChangeHub {
            inner: Mutex::new(Inner {
                delivered: last_seq,
                ..Inner::default()
            }),
            registered: Condvar::new(),
        }
    }

    /// Registers a subscription. `from_seq`: `None` is "after `last_seq`"
    /// (the store's last acknowledged change, which the hub may not have
    /// dispatched yet); `Some(0)` and `Some(1)` are "from the beginning".
    /// `capacity` bounds the live buffer. `None` once the hub is closed.
    pub(crate) fn register(
        &self,
        prefix: Option<String>,
        from_seq: Option<u64>,
        last_seq: u64,
        capacity: usize,
    ) -> Option<Registration> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return None;
        }
        let live_from = inner.delivered + 1;
        let filter = Filter {
            prefix,
            start: from_seq.map_or(live_from.max(last_seq + 1), |s| s.max(1)),
        };
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let lagged_at = Arc::new(AtomicU64::new(0));
        inner.next_key += 1;
        let key = inner.next_key;
        inner.subs.insert(
            key,
            Live {
                filter: filter.clone(),
                tx,
                lagged_at: lagged_at.clone(),
            },
        );
        self.registered.notify_all();
        Some(Registration {
            key,
            filter,
            live_from,
            rx,
            lagged_at,
        })
    }

    /// Hands `change` to every subscription that wants it, never waiting,
    /// encoded once for all of them. Changes must be dispatched in sequence
    /// order.
    pub(crate) fn dispatch(&self, change: &Change) {
        let mut inner = self.inner.lock();
        if change.seq <= inner.delivered {
            return;
        }
        inner.delivered = change.seq;
        let mut encoded: Option<LiveChange> = None;
        inner.subs.retain(|_, live| {
            if !live.filter.wants(change.seq, &change.id) {
                return !live.tx.is_closed();
            }
            let item = encoded
                .get_or_insert_with(|| LiveChange {
                    seq: change.seq,
                    json: crate::ops::change_json(change),
                })
                .clone();
            let sent = live.tx.try_send(item).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => mpsc::error::TrySendError::Full(()),
                mpsc::error::TrySendError::Closed(_) => mpsc::error::TrySendError::Closed(()),
            });
            match verdict(change.seq, sent) {
                Verdict::Keep => true,
                Verdict::Lagged(resume_from) => {
                    live.lagged_at.store(resume_from, Ordering::Release);
                    // Dropping the sender closes the buffer: the forwarder
                    // drains what it holds, then reports the lag.
                    false
                }
                Verdict::Gone => false,
            }
        });
    }

    /// With no subscription registered, records every change up to `seq`
    /// as dispatched (nobody wanted them; a later subscription reads older
    /// changes from the change log) and returns true. Returns false, doing
    /// nothing, when there are subscriptions. Lets the dispatcher stop
    /// following the store while nobody listens.
    pub(crate) fn skip_if_idle(&self, seq: u64) -> bool {
        let mut inner = self.inner.lock();
        if !inner.subs.is_empty() {
            return false;
        }
        inner.delivered = inner.delivered.max(seq);
        true
    }

    /// Waits at most `timeout` for a subscription to be registered; true if
    /// there is one (or the hub closed).
    pub(crate) fn wait_for_subscribers(&self, timeout: Duration) -> bool {
        let mut inner = self.inner.lock();
        if inner.subs.is_empty() && !inner.closed {
            let _ = self.registered.wait_for(&mut inner, timeout);
        }
        !inner.subs.is_empty() || inner.closed
    }

    /// Removes a subscription (unsubscribe, connection closed).
    pub(crate) fn remove(&self, key: u64) {
        self.inner.lock().subs.remove(&key);
    }

    /// The last sequence number dispatched.
    pub(crate) fn delivered(&self) -> u64 {
        self.inner.lock().delivered
    }

    /// Live subscriptions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().subs.len()
    }

    /// Ends every subscription and refuses new ones.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.subs.clear();
        self.registered.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_store::{ChangeKind, Stamp};

    fn change(seq: u64, id: &str) -> Arc<Change> {
        Arc::new(Change {
            seq,
            id: id.into(),
            kind: ChangeKind::Put,
            stamp: Stamp {
                hlc: seq,
                replica: 1,
            },
            data: Some(Arc::from("{}")),
        })
    }

    fn drain(rx: &mut mpsc::Receiver<LiveChange>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            out.push(c.seq);
        }
        out
    }

    #[test]
    fn an_idle_hub_skips_ahead_and_a_later_subscription_starts_after_it() {
        let hub = ChangeHub::new(3);
        assert!(hub.skip_if_idle(10));
        assert_eq!(hub.delivered(), 10);
        let reg = hub.register(None, Some(1), 12, 8).unwrap();
        // Changes 1..=10 come from the change log, 11 on live.
        assert_eq!((reg.filter.start, reg.live_from), (1, 11));
        assert!(!hub.skip_if_idle(20));
        assert_eq!(hub.delivered(), 10);
    }

    #[test]
    fn waiting_for_subscribers_sees_one_registered_before() {
        let hub = ChangeHub::new(0);
        assert!(!hub.wait_for_subscribers(Duration::ZERO));
        let _reg = hub.register(None, None, 0, 8).unwrap();
        assert!(hub.wait_for_subscribers(Duration::ZERO));
    }

    #[test]
    fn the_filter_checks_start_and_prefix() {
        let f = Filter {
            prefix: Some("user:".into()),
            start: 5,
        };
        assert!(f.wants(5, "user:1"));
        assert!(!f.wants(4, "user:1"));
        assert!(!f.wants(9, "order:1"));
        let all = Filter {
            prefix: None,
            start: 1,
        };
        assert!(all.wants(1, "x"));
    }

    #[test]
    fn the_verdict_follows_the_send_outcome() {
        use mpsc::error::TrySendError;
        assert_eq!(verdict(3, Ok(())), Verdict::Keep);
        assert_eq!(verdict(3, Err(TrySendError::Full(()))), Verdict::Lagged(3));
        assert_eq!(verdict(3, Err(TrySendError::Closed(()))), Verdict::Gone);
    }

    #[test]
    fn a_subscription_from_now_starts_after_the_last_dispatched_change() {
        let hub = ChangeHub::new(10);
        let mut reg = hub.register(None, None, 10, 8).unwrap();
        assert_eq!((reg.live_from, reg.filter.start), (11, 11));
        hub.dispatch(&change(11, "a"));
        assert_eq!(drain(&mut reg.rx), vec![11]);
    }

    #[test]
    fn from_now_means_after_the_stores_last_change_even_if_not_yet_dispatched() {
        let hub = ChangeHub::new(10);
        let mut reg = hub.register(None, None, 12, 8).unwrap();
        assert_eq!((reg.live_from, reg.filter.start), (11, 13));
        for seq in 11..=13 {
            hub.dispatch(&change(seq, "a"));
        }
        assert_eq!(drain(&mut reg.rx), vec![13]);
    }

    #[test]
    fn a_subscription_from_the_past_must_catch_up_below_live_from() {
        let hub = ChangeHub::new(10);
        let reg = hub.register(Some("user:".into()), Some(0), 10, 8).unwrap();
        assert_eq!((reg.filter.start, reg.live_from), (1, 11));
    }

    #[test]
    fn changes_are_filtered_by_prefix_and_duplicates_ignored() {
        let hub = ChangeHub::new(0);
        let mut reg = hub.register(Some("user:".into()), Some(0), 10, 8).unwrap();
        hub.dispatch(&change(1, "user:1"));
        hub.dispatch(&change(2, "order:1"));
        hub.dispatch(&change(2, "user:again"));
        hub.dispatch(&change(3, "user:2"));
        assert_eq!(drain(&mut reg.rx), vec![1, 3]);
        assert_eq!(hub.delivered(), 3);
    }

    #[test]
    fn a_full_subscriber_is_cut_off_with_the_first_missing_seq_and_others_go_on() {
        let hub = ChangeHub::new(0);
        let mut slow = hub.register(None, None, 0, 2).unwrap();
        let mut fast = hub.register(None, None, 0, 100).unwrap();
        for seq in 1..=5 {
            hub.dispatch(&change(seq, "a"));
        }
        assert_eq!(drain(&mut slow.rx), vec![1, 2]);
        assert_eq!(slow.lagged_at.load(Ordering::Acquire), 3);
        assert!(slow.rx.try_recv().is_err(), "closed after the lag");
        assert_eq!(drain(&mut fast.rx), vec![1, 2, 3, 4, 5]);
        assert_eq!(hub.len(), 1);
    }

    #[test]
    fn every_subscription_gets_the_same_encoding_of_a_change() {
        let hub = ChangeHub::new(0);
        let mut a = hub.register(None, None, 0, 8).unwrap();
        let mut b = hub.register(Some("us".into()), None, 0, 8).unwrap();
        hub.dispatch(&change(1, "user:1"));
        let (a, b) = (a.rx.try_recv().unwrap(), b.rx.try_recv().unwrap());
        assert!(Arc::ptr_eq(&a.json, &b.json), "encoded once");
        assert_eq!(&*a.json, &*crate::ops::change_json(&change(1, "user:1")));
    }

    #[test]
    fn a_dropped_receiver_is_removed_and_a_closed_hub_refuses() {
        let hub = ChangeHub::new(0);
        let reg = hub.register(None, None, 0, 2).unwrap();
        drop(reg);
        hub.dispatch(&change(1, "a"));
        assert_eq!(hub.len(), 0);
        hub.close();
        assert!(hub.register(None, None, 0, 2).is_none());
    }
}
