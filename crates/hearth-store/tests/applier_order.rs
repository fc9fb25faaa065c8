//! The applier writes a batch's documents sorted (ids looked up in id
//! order, rows written in rowid order, new documents last, because FTS5
//! starts a new index segment whenever a write's rowid is below the
//! previous one): every document of a batch still reaches SQLite, and
//! rewrites applied together leave the search index answering for the new
//! text only. The index is rewritten only where a document's text changed:
//! a rewrite that keeps it stays findable (once), one that drops it or a
//! delete leaves search. On a real store and its SQLite file. (That the order saves
//! time is measured, not tested: `hearth bench store`, "rewrite" row.)

use hearth_store::{Options, Store};
use serde_json::json;
use std::path::Path;

const DOCS: usize = 2000;

/// Ids whose sort order differs from their insertion order, so neither id
/// order nor hash order matches rowid order by accident.
fn id(i: usize) -> String {
    format!("note:{:05}", (i * 7919) % DOCS)
}

/// Runs `write` while a second connection holds SQLite's write lock, so
/// everything it writes reaches SQLite in the applier's next batches
/// together, then waits until it has.
fn in_one_go(dir: &Path, store: &Store, write: impl FnOnce()) {
    let blocker = rusqlite::Connection::open(dir.join("hearth.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    write();
    blocker.execute_batch("COMMIT").unwrap();
    store.flush().unwrap();
}

fn write_all(store: &Store, word: &str) {
    for i in 0..DOCS {
        store
            .put(
                &id(i),
                json!({"type": "Note", "title": format!("{word} {i}")}),
            )
            .unwrap();
    }
}

#[test]
fn rewrites_applied_in_one_batch_are_found_by_their_new_text_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    in_one_go(dir.path(), &store, || write_all(&store, "alpha"));
    in_one_go(dir.path(), &store, || write_all(&store, "omega"));
    assert!(store.search("alpha", 10).unwrap().is_empty());
    assert_eq!(store.search("omega", DOCS + 1).unwrap().len(), DOCS);
}

#[test]
fn a_batch_mixing_new_rewritten_and_deleted_documents_applies_each_as_last_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    in_one_go(dir.path(), &store, || write_all(&store, "alpha"));
    in_one_go(dir.path(), &store, || {
        for i in (0..DOCS).rev() {
            if i % 3 == 0 {
                store.delete(&id(i)).unwrap();
            } else if i % 3 == 1 {
                let data = json!({"title": format!("omega {i}")});
                store.put(&id(i), data).unwrap();
            } else {
                store
                    .put(&format!("new:{i:05}"), json!({"title": "gamma"}))
                    .unwrap();
            }
        }
    });
    let listed: Vec<(String, serde_json::Value)> = store
        .list(Default::default())
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            (
                d.id().to_string(),
                serde_json::Value::Object(d.data().clone()),
            )
        })
        .collect();
    for i in 0..DOCS {
        let old = listed.iter().find(|(k, _)| *k == id(i)).map(|(_, v)| v);
        match i % 3 {
            0 => assert_eq!(old, None, "{} was deleted", id(i)),
            1 => assert_eq!(old, Some(&json!({"title": format!("omega {i}")}))),
            _ => {
                assert_eq!(
                    old,
                    Some(&json!({"type": "Note", "title": format!("alpha {i}")}))
                );
                assert!(listed.iter().any(|(k, _)| *k == format!("new:{i:05}")));
            }
        }
    }
    assert_eq!(
        store.search("omega", DOCS).unwrap().len(),
        (0..DOCS).filter(|i| i % 3 == 1).count()
    );
    assert_eq!(
        store.search("gamma", DOCS).unwrap().len(),
        (0..DOCS).filter(|i| i % 3 == 2).count()
    );
}

/// Applies one put of `data` to `id` and returns how many documents a
/// search for `word` finds.
fn put_then_search(store: &Store, id: &str, data: serde_json::Value, word: &str) -> usize {
    store.put(id, data).unwrap();
    store.search(word, 10).unwrap().len()
}

#[test]
fn a_rewrite_that_keeps_the_text_keeps_the_document_findable_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let doc = |n: i64| json!({"title": "kestrel sighting", "count": n});
    assert_eq!(put_then_search(&store, "bird:1", doc(1), "kestrel"), 1);
    assert_eq!(put_then_search(&store, "bird:1", doc(2), "kestrel"), 1);
    assert_eq!(put_then_search(&store, "bird:1", doc(3), "kestrel"), 1);
    let hits = store.search("kestrel", 10).unwrap();
    assert_eq!(hits[0].doc.data()["count"], json!(3));
}

#[test]
fn a_rewrite_without_text_or_a_delete_takes_the_document_out_of_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        put_then_search(&store, "bird:1", json!({"title": "heron"}), "heron"),
        1
    );
    assert_eq!(
        put_then_search(&store, "bird:1", json!({"count": 1}), "heron"),
        0
    );
    assert_eq!(
        put_then_search(&store, "bird:1", json!({"title": "heron"}), "heron"),
        1
    );
    store.delete("bird:1").unwrap();
    assert!(store.search("heron", 10).unwrap().is_empty());
    assert_eq!(
        put_then_search(&store, "bird:1", json!({"title": "heron"}), "heron"),
        1
    );
}
