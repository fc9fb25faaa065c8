//! Stats answer at once and count every acknowledged write: the documents
//! and tombstones are SQLite's rows corrected by the writes the applier
//! has not moved there yet, and `pending_ops` is that backlog. The applier
//! is held back for real (a second connection holds SQLite's write lock),
//! or runs beside the stats calls with small transactions.

use hearth_store::{Options, Stats, Store};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Stats on another thread; fails the test if they do not come within a
/// minute (a stats call that waited for the held-back applier would come,
/// if at all, only as an error once SQLite's busy timeout ran out).
fn stats_without_waiting(store: &Store) -> Stats {
    let (tx, rx) = mpsc::channel();
    let s = store.clone();
    std::thread::spawn(move || {
        let _ = tx.send(s.stats());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("stats waited for the applier")
        .unwrap()
}

fn put(store: &Store, range: std::ops::Range<usize>) {
    for i in range {
        store.put(&format!("d:{i}"), json!({ "n": i })).unwrap();
    }
}

#[test]
fn stats_count_unapplied_writes_without_waiting_for_the_applier() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    put(&store, 0..10);
    store.flush().unwrap();
    let blocker = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    put(&store, 10..20); // ten new documents
    put(&store, 0..3); // three replaced: no new document
    store.delete("d:3").unwrap(); // two documents become tombstones
    store.delete("d:4").unwrap();
    put(&store, 20..21); // made and deleted before either is applied:
    store.delete("d:20").unwrap(); // one tombstone, no document

    let stats = stats_without_waiting(&store);
    assert_eq!((stats.documents, stats.tombstones), (18, 3));
    assert_eq!(stats.pending_ops, 17);
    assert_eq!(stats.applied_seq, 10);
    assert_eq!(stats.last_seq, 27);
    // SQLite had none of them while the stats were taken.
    let applied: i64 = blocker
        .query_row("SELECT count(*) FROM docs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(applied, 10, "the writes were applied: nothing tested");

    blocker.execute_batch("COMMIT").unwrap();
    store.flush().unwrap();
    let after = store.stats().unwrap();
    assert_eq!((after.documents, after.tombstones), (18, 3));
    assert_eq!((after.pending_ops, after.applied_seq), (0, 27));
}

#[test]
fn stats_count_each_write_once_while_the_applier_commits_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        // Many small transactions, from the start (a backlog past an eighth
        // of the limit is not deferred): stats calls fall between them,
        // and between a commit and the overlay's cleanup after it.
        apply_batch: 8,
        max_pending_ops: 64,
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    const DOCS: u64 = 3000;
    // Writes begun and writes acknowledged: one writer, so at most one
    // is between the two.
    let (begun, acked) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    let (calls, between) = std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..DOCS {
                begun.store(i + 1, Ordering::SeqCst);
                store.put(&format!("d:{i}"), json!({ "n": i })).unwrap();
                acked.store(i + 1, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        });
        let (mut calls, mut between) = (0, 0);
        while !done.load(Ordering::SeqCst) {
            let before = acked.load(Ordering::SeqCst);
            let stats = store.stats().unwrap();
            let after = begun.load(Ordering::SeqCst);
            // Every write acknowledged before the call is counted, and none
            // twice: at most those begun by its end.
            assert!(
                (before..=after).contains(&stats.documents),
                "{} documents counted, {before} acknowledged, {after} begun",
                stats.documents
            );
            assert_eq!(stats.tombstones, 0);
            calls += 1;
            if stats.applied_seq > 0 && stats.pending_ops > 0 {
                between += 1;
            }
        }
        (calls, between)
    });
    eprintln!("{calls} calls, {between} between");
    assert!(
        between > 0,
        "no stats call ran while the applier had applied some writes and not others"
    );
    let stats = store.stats().unwrap();
    assert_eq!(stats.documents, DOCS);
}
