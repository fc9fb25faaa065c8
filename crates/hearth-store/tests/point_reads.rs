//! A point read sees every acknowledged write wherever it is at that
//! moment — unapplied (the overlay), applied and cached, or only in SQLite
//! — including while the applier drains the overlay under the reader's
//! feet, and when the write was acknowledged to another thread.

use hearth_store::{Options, Store};
use serde_json::json;
use std::sync::mpsc;

/// The two documents as the test wrote them last.
fn assert_rewritten(store: &Store) {
    let value = |id: &str| store.get(id).unwrap().unwrap().to_value();
    assert_eq!(value("doc:old"), json!({"v": 2}));
    assert_eq!(value("doc:new"), json!({"v": 3}));
}

#[test]
fn a_get_sees_writes_before_and_after_they_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("doc:old", json!({"v": 1})).unwrap();
    store.flush().unwrap();
    // Held: SQLite's write lock keeps the applier from committing.
    let blocker = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    store.put("doc:old", json!({"v": 2})).unwrap();
    store.put("doc:new", json!({"v": 3})).unwrap();
    assert_rewritten(&store);
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    store.flush().unwrap();
    assert_rewritten(&store);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_rewritten(&store);
}

#[test]
fn a_get_sees_the_last_of_several_unapplied_writes_of_one_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    // Held from the start: none of the writes below reaches SQLite.
    let blocker = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    store.put("doc", json!({"v": 1})).unwrap();
    store.put("doc", json!({"v": 2})).unwrap();
    store.patch("doc", json!({"w": 3})).unwrap();
    store.put("gone", json!({"v": 1})).unwrap();
    store.delete("gone").unwrap();
    assert_eq!(
        store.get("doc").unwrap().unwrap().to_value(),
        json!({"v": 2, "w": 3})
    );
    assert!(store.get("gone").unwrap().is_none());
    let applied: i64 = blocker
        .query_row(
            "SELECT COALESCE((SELECT value FROM meta WHERE key = 'applied_seq'), 0)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(applied, 0, "the writes were applied: nothing tested");
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    store.flush().unwrap();
    assert_eq!(
        store.get("doc").unwrap().unwrap().to_value(),
        json!({"v": 2, "w": 3})
    );
    assert!(store.get("gone").unwrap().is_none());
}

#[test]
fn a_write_acknowledged_to_one_thread_is_seen_by_a_get_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (tx, rx) = mpsc::sync_channel::<(String, u64)>(64);
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut checked = 0u32;
            for (id, n) in rx {
                let doc = store.get(&id).unwrap().expect("an acknowledged write");
                let seen = doc.to_value()["n"].as_u64().unwrap();
                assert!(seen >= n, "{id}: wrote {n}, read {seen}");
                checked += 1;
            }
            checked
        })
    };
    // Bursts with pauses, so the applier drains the overlay to empty and
    // it fills again many times while the reader reads.
    for burst in 0..40u64 {
        for k in 0..250u64 {
            let n = burst * 250 + k;
            let id = format!("doc:{}", n % 37);
            store.put(&id, json!({"n": n})).unwrap();
            tx.send((id, n)).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    drop(tx);
    assert_eq!(reader.join().unwrap(), 10_000);
}
