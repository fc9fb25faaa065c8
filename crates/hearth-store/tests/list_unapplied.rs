//! A list shows every acknowledged write at once, including those the
//! applier has not moved into SQLite yet: it merges the unapplied writes
//! over SQLite's rows, id by id, the newer winning, an unapplied delete
//! hiding its row. The applier is held back for real: a second connection
//! holds SQLite's write lock while the writes are made and the list runs,
//! and every test checks that the writes were still unapplied when the
//! list ended (so the list cannot have waited for them).

use hearth_store::{ListOptions, Options, Store};
use serde_json::{Value, json};
use std::path::Path;

/// A store whose applier cannot commit while the returned connection
/// holds SQLite's write lock (`release` checks and lets go).
fn hold_applier(dir: &Path) -> rusqlite::Connection {
    let blocker = rusqlite::Connection::open(dir.join("hearth.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    blocker
}

fn listed(store: &Store, opts: ListOptions) -> Vec<(String, Value)> {
    store
        .list(opts)
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            (d.id().to_string(), d.to_value())
        })
        .collect()
}

fn prefix(p: &str) -> ListOptions {
    ListOptions {
        prefix: Some(p.to_string()),
        ..ListOptions::default()
    }
}

/// Checks that SQLite (read through the blocking connection, which holds
/// the write lock, so the applier cannot have moved past it) still lacks
/// some of the store's acknowledged writes — else the test tested nothing
/// — then lets the applier go on.
fn release(blocker: rusqlite::Connection, store: &Store) {
    let applied: i64 = blocker
        .query_row(
            "SELECT value FROM meta WHERE key = 'applied_seq'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        (applied as u64) < store.last_seq(),
        "the writes were applied: nothing tested"
    );
    blocker.execute_batch("COMMIT").unwrap();
}

/// The ids a list returns.
fn ids(store: &Store, opts: ListOptions) -> Vec<String> {
    listed(store, opts).into_iter().map(|(id, _)| id).collect()
}

#[test]
fn a_list_shows_new_rewritten_patched_and_deleted_documents_before_they_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for id in ["a", "b", "c", "e"] {
        store.put(id, json!({"v": id})).unwrap();
    }
    store.flush().unwrap();
    let blocker = hold_applier(dir.path());
    store.put("a", json!({"v": "a2"})).unwrap();
    store.patch("b", json!({"w": 1})).unwrap();
    store.delete("c").unwrap();
    store.put("d", json!({"v": "d"})).unwrap();
    let got = listed(&store, ListOptions::default());
    assert_eq!(
        got,
        vec![
            ("a".into(), json!({"v": "a2"})),
            ("b".into(), json!({"v": "b", "w": 1})),
            ("d".into(), json!({"v": "d"})),
            ("e".into(), json!({"v": "e"})),
        ]
    );
    release(blocker, &store);
    store.flush().unwrap();
    assert_eq!(
        listed(&store, ListOptions::default()),
        got,
        "applied: same list"
    );
}

#[test]
fn the_type_filter_sees_an_unapplied_change_of_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("x", json!({"type": "Draft"})).unwrap();
    store.put("y", json!({"type": "Draft"})).unwrap();
    store.flush().unwrap();
    let blocker = hold_applier(dir.path());
    store.put("x", json!({"type": "Post"})).unwrap();
    store.put("z", json!({"type": "Post"})).unwrap();
    let of = |t: &str| -> Vec<String> {
        let opts = ListOptions {
            type_name: Some(t.to_string()),
            ..ListOptions::default()
        };
        ids(&store, opts)
    };
    assert_eq!(of("Draft"), ["y"]);
    assert_eq!(of("Post"), ["x", "z"]);
    release(blocker, &store);
}

#[test]
fn a_prefix_keeps_unapplied_documents_outside_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("user:1", json!({"n": 1})).unwrap();
    store.flush().unwrap();
    let blocker = hold_applier(dir.path());
    for id in ["team:1", "user:2", "users", "usex:1", "user:0"] {
        store.put(id, json!({"n": 2})).unwrap();
    }
    assert_eq!(ids(&store, prefix("user:")), ["user:0", "user:1", "user:2"]);
    release(blocker, &store);
}

#[test]
fn paging_with_the_cursor_returns_each_document_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for i in (0..40).step_by(2) {
        store.put(&format!("k{i:02}"), json!({"i": i})).unwrap();
    }
    store.flush().unwrap();
    let blocker = hold_applier(dir.path());
    for i in (1..40).step_by(2) {
        store.put(&format!("k{i:02}"), json!({"i": i})).unwrap();
    }
    for i in (0..40).step_by(6) {
        store.delete(&format!("k{i:02}")).unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let mut list = store
            .list(ListOptions {
                limit: Some(3),
                after: after.clone(),
                ..ListOptions::default()
            })
            .unwrap();
        let page: Vec<String> = list.by_ref().map(|d| d.unwrap().id().to_string()).collect();
        if page.is_empty() {
            break;
        }
        seen.extend(page);
        after = list.cursor().map(str::to_string);
    }
    let want: Vec<String> = (0..40)
        .filter(|i| i % 6 != 0)
        .map(|i| format!("k{i:02}"))
        .collect();
    assert_eq!(seen, want);
    release(blocker, &store);
}

#[test]
fn unapplied_deletes_hiding_whole_pages_of_rows_do_not_end_the_list() {
    // More deleted rows in a row than one SQLite page (256) holds.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for i in 0..700 {
        store.put(&format!("p:{i:03}"), json!({"i": i})).unwrap();
    }
    store.put("q", json!({})).unwrap();
    store.flush().unwrap();
    let blocker = hold_applier(dir.path());
    for i in 0..650 {
        store.delete(&format!("p:{i:03}")).unwrap();
    }
    let want: Vec<String> = (650..700).map(|i| format!("p:{i:03}")).collect();
    assert_eq!(ids(&store, prefix("p:")), want);
    release(blocker, &store);
}
