//! What `put_json` stores: compact text exactly as written, anything else
//! normalised (docs/design.md, "Stored text" and "Lazy state").
//!
//! Each test writes through `put_json`, then reads the document back the ways
//! a caller can — its text, its fields, a patch on top of it, `query` by type,
//! `search`, and a reopen that replays or reads SQLite — and checks that all
//! of them agree with what was written.

use hearth_store::{Options, Store};
use serde_json::{Map, Value, json};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

fn filters(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("test literal is an object"),
    }
}

#[test]
fn compact_text_is_returned_exactly_as_written_before_and_after_it_is_applied_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    // Keys not in sorted order, a float spelled with an exponent, an escape.
    let text =
        r#"{"type":"User","name":"Alice","score":1.5e2,"note":"tab\there","tags":["b","a"]}"#;
    let store = open(dir.path());
    store.put_json("user:1", text).unwrap();
    assert_eq!(store.get("user:1").unwrap().unwrap().json(), text);
    store.flush().unwrap();
    assert_eq!(store.get("user:1").unwrap().unwrap().json(), text);
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(store.get("user:1").unwrap().unwrap().json(), text);
}

#[test]
fn text_with_whitespace_is_stored_compact_with_sorted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_json("doc:1", "{ \"b\": 1,\n  \"a\": [1, 2] }")
        .unwrap();
    assert_eq!(
        store.get("doc:1").unwrap().unwrap().json(),
        r#"{"a":[1,2],"b":1}"#
    );
}

#[test]
fn a_repeated_key_keeps_its_last_value_at_every_depth() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_json("doc:1", r#"{"a":1,"o":{"k":1,"k":2},"a":3}"#)
        .unwrap();
    let doc = store.get("doc:1").unwrap().unwrap();
    assert_eq!(doc.json(), r#"{"a":3,"o":{"k":2}}"#);
    store.flush().unwrap();
    let hits = store.query(&filters(json!({"a": 3})), 10, None).unwrap();
    assert_eq!(hits.len(), 1);
}

#[test]
fn the_fields_of_a_document_put_as_text_read_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_json("user:1", r#"{"name":"Alice","age":30}"#)
        .unwrap();
    let doc = store.get("user:1").unwrap().unwrap();
    assert_eq!(doc.data()["name"], "Alice");
    assert_eq!(doc.to_value(), json!({"name": "Alice", "age": 30}));
    store.flush().unwrap();
    let doc = store.get("user:1").unwrap().unwrap();
    assert_eq!(doc.data()["age"], 30);
}

#[test]
fn a_patch_right_after_a_put_as_text_merges_with_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..200 {
        let id = format!("user:{i}");
        store
            .put_json(&id, &format!(r#"{{"name":"n{i}","age":{i}}}"#))
            .unwrap();
        store
            .patch(&id, json!({"age": null, "city": "Oslo"}))
            .unwrap();
    }
    for i in 0..200 {
        let doc = store.get(&format!("user:{i}")).unwrap().unwrap();
        assert_eq!(
            doc.to_value(),
            json!({"name": format!("n{i}"), "city": "Oslo"})
        );
    }
    store.close().unwrap();
    let store = open(dir.path());
    let doc = store.get("user:7").unwrap().unwrap();
    assert_eq!(doc.to_value(), json!({"name": "n7", "city": "Oslo"}));
}

#[test]
fn query_by_type_and_search_find_documents_put_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_json("user:1", r#"{"type":"User","name":"Alice Liddell"}"#)
        .unwrap();
    store
        .put_json("note:1", r#"{"type":"Note","body":"tea party"}"#)
        .unwrap();
    let users = store
        .query(&filters(json!({"type": "User"})), 10, None)
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id(), "user:1");
    let hits = store.search("liddell", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].doc.id(), "user:1");
}

#[test]
fn a_later_put_as_text_replaces_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_json("doc:1", r#"{"a":1,"b":2}"#).unwrap();
    store.put_json("doc:1", r#"{"c":3}"#).unwrap();
    assert_eq!(store.get("doc:1").unwrap().unwrap().json(), r#"{"c":3}"#);
    store.flush().unwrap();
    assert_eq!(
        store.get("doc:1").unwrap().unwrap().to_value(),
        json!({"c": 3})
    );
}

#[test]
fn a_checked_compact_document_over_the_size_limit_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        limits: hearth_proto::Limits {
            max_doc_bytes: 16,
            ..hearth_proto::Limits::default()
        },
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let small = hearth_proto::CompactDocument::new(r#"{"a":1}"#).unwrap();
    let big = hearth_proto::CompactDocument::new(r#"{"a":"0123456789abcdef"}"#).unwrap();
    let seq = store.put_compact("doc:1", &small).unwrap();
    let err = store.put_compact("doc:2", &big).unwrap_err();
    assert_eq!(err.code(), hearth_proto::ErrorCode::TooLarge);
    assert_eq!(store.last_seq(), seq);
    assert!(store.get("doc:2").unwrap().is_none());
}

/// Closes `store`, changes one stored row's text behind its back with
/// SQLite (as an older version, or a damaged disk, might have left it),
/// and opens the store again, its cache empty.
fn reopen_with_stored_text(store: Store, dir: &std::path::Path, id: &str, text: &str) -> Store {
    store.close().unwrap();
    let db = rusqlite::Connection::open(dir.join("hearth.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE docs SET data = ?2 WHERE id = ?1",
            rusqlite::params![id, text],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    open(dir)
}

#[test]
fn documents_read_back_from_sqlite_read_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let text = r#"{"type":"User","name":"Alice","tags":["a b"],"n":{"k":1}}"#;
    store.put_json("user:1", text).unwrap();
    store.close().unwrap();
    let store = open(dir.path());
    let doc = store.get("user:1").unwrap().unwrap();
    assert_eq!(doc.json(), text);
    assert_eq!(doc.data()["tags"], json!(["a b"]));
    let listed = store
        .query(&filters(json!({"type": "User"})), 10, None)
        .unwrap();
    assert_eq!(listed[0].data()["n"], json!({"k": 1}));
    store.patch("user:1", json!({"age": 30})).unwrap();
    let doc = store.get("user:1").unwrap().unwrap();
    assert_eq!(
        doc.to_value(),
        json!({"type": "User", "name": "Alice", "tags": ["a b"], "n": {"k": 1}, "age": 30})
    );
}

#[test]
fn a_stored_row_that_is_not_compact_still_reads_as_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_json("doc:1", r#"{"a":1}"#).unwrap();
    let store = reopen_with_stored_text(store, dir.path(), "doc:1", r#"{"a": 1, "b": [2]}"#);
    let doc = store.get("doc:1").unwrap().unwrap();
    assert_eq!(doc.data()["b"], json!([2]));
    assert_eq!(doc.to_value(), json!({"a": 1, "b": [2]}));
}

#[test]
fn a_damaged_stored_row_is_an_internal_error_and_the_others_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_json("doc:1", r#"{"a":1}"#).unwrap();
    store.put_json("doc:2", r#"{"b":2}"#).unwrap();
    let store = reopen_with_stored_text(store, dir.path(), "doc:1", r#"{"a":"#);
    let err = store.get("doc:1").unwrap_err();
    assert!(
        matches!(err, hearth_store::StoreError::Internal(_)),
        "{err:?}"
    );
    assert_eq!(store.get("doc:2").unwrap().unwrap().data()["b"], 2);
}
