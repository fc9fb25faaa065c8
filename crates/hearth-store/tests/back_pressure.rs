//! Back-pressure over a real store: a writer that outpaces the applier is
//! held while the backlog is at `max_pending_ops`, and goes on in small
//! steps as the applier's transaction is written, not only once it commits
//! (docs/design.md, "Back-pressure"); the backlog stays within the limit
//! plus one transaction; a transaction SQLite refuses after part of it
//! was written counts as unwritten again.

#[path = "common/refuse.rs"]
mod refuse;

use hearth_store::{Options, Store};
use refuse::{flush_until_caught_up, refusing_inserts_into};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};

const LIMIT: usize = 1_000;
const BATCH: usize = 1_000;

/// A store whose backlog limit and transactions are small, so that one
/// writer reaches the limit at once and each transaction takes a few of
/// the applier's progress steps.
fn small_store(dir: &std::path::Path) -> Store {
    let opts = Options {
        max_pending_ops: LIMIT,
        apply_batch: BATCH,
        // At normal priority: at nice 19 the applier all but stops while
        // other tests keep both cores busy, and so would these.
        background_applier: false,
        ..Options::default()
    };
    Store::open(dir, opts).unwrap()
}

/// One writer puts single-operation records until `stop` is set (or it has
/// made `most`), while `look` is called with each `Stats::pending_ops` it
/// can read; returns what `look` saw and how many puts were made.
fn flood(store: &Store, most: u64, mut look: impl FnMut(u64) -> bool) -> (u64, Vec<u64>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while n < most && !stop.load(Ordering::SeqCst) {
                store.put(&format!("d:{n}"), json!({ "n": n })).unwrap();
                n += 1;
            }
            stop.store(true, Ordering::SeqCst);
            n
        });
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let pending = store.stats().unwrap().pending_ops;
            seen.push(pending);
            if look(pending) {
                stop.store(true, Ordering::SeqCst);
            }
        }
        (writer.join().unwrap(), seen)
    })
}

#[test]
fn a_held_writer_goes_on_while_the_applier_writes_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    // Before, a held writer was let go only when a transaction committed,
    // so the backlog (one writer, one operation a record) never passed the
    // limit. Now it goes on as the transaction is written: the backlog not
    // yet committed passes the limit while the transaction runs.
    let (puts, seen) = flood(&store, 400_000, |pending| pending > LIMIT as u64);
    let most = seen.iter().max().copied().unwrap_or(0);
    assert!(
        most > LIMIT as u64,
        "the backlog never passed the limit in {puts} puts ({} looks, most {most})",
        seen.len()
    );
    store.flush().unwrap();
    assert_eq!(store.stats().unwrap().documents, puts);
}

#[test]
fn the_backlog_stays_within_the_limit_plus_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let (puts, seen) = flood(&store, 20_000, |_| false);
    assert!(puts == 20_000, "{puts}");
    let most = seen.iter().max().copied().unwrap_or(0);
    assert!(
        most <= (LIMIT + BATCH) as u64,
        "a backlog of {most} ({} looks)",
        seen.len()
    );
    store.flush().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.documents, stats.pending_ops), (20_000, 0));
}

#[test]
fn a_transaction_sqlite_refuses_after_part_of_it_was_written_counts_as_unwritten_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    // Another connection holds SQLite's write lock while it adds a trigger
    // that refuses every new document row: the applier's transaction of
    // LIMIT operations writes their change rows and looks their documents
    // up (publishing its written share on the way), then fails at its
    // first document row.
    let other = refusing_inserts_into(dir.path(), "docs");
    for n in 0..LIMIT {
        store.put(&format!("d:{n}"), json!({ "n": n })).unwrap();
    }
    assert!(store.writes_would_wait(0), "at the limit");
    other.execute_batch("COMMIT").unwrap();
    let refused = store.flush().unwrap_err();
    assert_eq!(
        refused.code(),
        hearth_proto::ErrorCode::Unavailable,
        "{refused:?}"
    );
    // Rolled back: none of it is written, and the backlog is at the limit.
    // (The applier tries again every so often, publishing its share on the
    // way until the trigger refuses it: a look may fall inside one.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !store.writes_would_wait(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the written share was kept"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(store.stats().unwrap().pending_ops, LIMIT as u64);

    other.execute_batch("DROP TRIGGER refuse").unwrap();
    flush_until_caught_up(&store);
    assert!(!store.writes_would_wait(0));
    assert_eq!(store.stats().unwrap().documents, LIMIT as u64);
}
