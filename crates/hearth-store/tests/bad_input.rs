//! Bad input is refused with the right error, and refusing it loses nothing.
//!
//! Each test feeds the store one kind of bad argument (an id, a document, a
//! query, a batch) or one kind of bad data directory, and checks three things:
//! the [`StoreError`] variant, its stable protocol code
//! ([`hearth_proto::ErrorCode`]), and that a sentinel document written before
//! the bad call is still there afterwards — in memory and after a reopen.

use hearth_proto::{DocumentError, ErrorCode, IdError, Limits};
use hearth_store::{Options, Store, StoreError, WriteOp};
use serde_json::{Map, Value, json};
use std::path::Path;

const SENTINEL: &str = "sentinel:1";

fn sentinel_value() -> Value {
    json!({"type": "Sentinel", "keep": "me", "n": 1})
}

fn small_limits() -> Options {
    Options {
        limits: Limits {
            max_doc_bytes: 1024,
            max_batch_ops: 4,
            ..Limits::default()
        },
        ..Options::default()
    }
}

/// Opens a store in `dir` with `opts` and writes the sentinel.
fn open_with_sentinel(dir: &Path, opts: Options) -> Store {
    let store = Store::open(dir, opts).unwrap();
    store.put(SENTINEL, sentinel_value()).unwrap();
    store
}

/// The sentinel is intact now and after a reopen, and nothing else was
/// written: the store's last sequence number is still `last_seq`.
fn assert_nothing_lost(store: Store, dir: &Path, opts: Options, last_seq: u64) {
    assert_eq!(store.last_seq(), last_seq, "a refused call wrote something");
    assert_eq!(
        store.get(SENTINEL).unwrap().map(|d| d.to_value()),
        Some(sentinel_value())
    );
    let stats = store.stats().unwrap();
    assert_eq!(stats.documents, 1);
    drop(store);
    let store = Store::open(dir, opts).unwrap();
    assert_eq!(store.last_seq(), last_seq);
    assert_eq!(
        store.get(SENTINEL).unwrap().map(|d| d.to_value()),
        Some(sentinel_value())
    );
    assert_eq!(store.stats().unwrap().documents, 1);
}

/// Runs `bad` against a store holding the sentinel, checks the error with
/// `check`, then checks nothing was lost.
fn refused(opts: Options, bad: impl FnOnce(&Store) -> StoreError, check: impl FnOnce(&StoreError)) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), opts.clone());
    let last = store.last_seq();
    let err = bad(&store);
    check(&err);
    assert_nothing_lost(store, dir.path(), opts, last);
}

fn nested_arrays(depth: usize) -> String {
    let mut s = String::with_capacity(depth * 2 + 16);
    s.push_str("{\"a\":");
    s.extend(std::iter::repeat_n('[', depth));
    s.extend(std::iter::repeat_n(']', depth));
    s.push('}');
    s
}

fn nested_objects(depth: usize) -> String {
    let mut s = String::with_capacity(depth * 6 + 8);
    for _ in 0..depth {
        s.push_str("{\"a\":");
    }
    s.push('1');
    s.extend(std::iter::repeat_n('}', depth));
    s
}

// ---------------------------------------------------------------- ids

#[test]
fn an_empty_id_is_refused_as_invalid_input() {
    refused(
        Options::default(),
        |s| s.put("", json!({"a": 1})).unwrap_err(),
        |e| {
            assert!(matches!(e, StoreError::InvalidId(IdError::Empty)), "{e:?}");
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        },
    );
}

#[test]
fn an_id_of_513_bytes_is_refused_with_its_length() {
    let id = "x".repeat(513);
    refused(
        Options::default(),
        |s| s.put(&id, json!({"a": 1})).unwrap_err(),
        |e| {
            assert!(
                matches!(e, StoreError::InvalidId(IdError::TooLong { len: 513 })),
                "{e:?}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidInput);
            assert!(e.to_string().contains("513"), "{e}");
        },
    );
}

#[test]
fn an_id_of_exactly_512_bytes_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let id = "é".repeat(256);
    assert_eq!(id.len(), 512);
    store.put(&id, json!({"a": 1})).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap().to_value(), json!({"a": 1}));
}

#[test]
fn an_id_with_a_nul_byte_is_refused_naming_its_position() {
    refused(
        Options::default(),
        |s| s.put("ab\0c", json!({"a": 1})).unwrap_err(),
        |e| {
            assert!(
                matches!(e, StoreError::InvalidId(IdError::Nul { at: 2 })),
                "{e:?}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        },
    );
}

#[test]
fn every_operation_that_takes_an_id_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    let last = store.last_seq();
    let long = "y".repeat(600);
    for bad in ["", "a\0", long.as_str()] {
        let errors = [
            store.put(bad, json!({})).unwrap_err(),
            store.put_json(bad, "{}").unwrap_err(),
            store.patch(bad, json!({"a": 1})).unwrap_err(),
            store.delete(bad).unwrap_err(),
            store.get(bad).unwrap_err(),
            store.get_with_metadata(bad).unwrap_err(),
            store
                .batch(vec![WriteOp::Delete { id: bad.into() }])
                .unwrap_err(),
        ];
        for e in errors {
            assert!(matches!(e, StoreError::InvalidId(_)), "{bad:?}: {e:?}");
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        }
    }
    assert_nothing_lost(store, dir.path(), Options::default(), last);
}

// ---------------------------------------------------------------- documents

#[test]
fn a_document_over_the_size_limit_is_refused_as_too_large() {
    let big = json!({"blob": "z".repeat(2000)});
    refused(
        small_limits(),
        |s| s.put("big:1", big).unwrap_err(),
        |e| {
            assert!(
                matches!(
                    e,
                    StoreError::InvalidDocument(DocumentError::TooLarge { max: 1024, .. })
                ),
                "{e:?}"
            );
            assert_eq!(e.code(), ErrorCode::TooLarge);
        },
    );
}

#[test]
fn a_document_over_the_size_limit_is_refused_by_put_json_patch_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), small_limits());
    let last = store.last_seq();
    let big = json!({"blob": "z".repeat(2000)});
    let errors = [
        store.put_json("big:1", &big.to_string()).unwrap_err(),
        store.patch(SENTINEL, big.clone()).unwrap_err(),
        store
            .batch(vec![
                WriteOp::Put {
                    id: "ok:1".into(),
                    data: json!({"small": true}),
                },
                WriteOp::Put {
                    id: "big:1".into(),
                    data: big.clone(),
                },
            ])
            .unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.code(), ErrorCode::TooLarge, "{e:?}");
    }
    assert!(store.get("big:1").unwrap().is_none());
    assert!(
        store.get("ok:1").unwrap().is_none(),
        "a batch with one refused op wrote another"
    );
    assert_nothing_lost(store, dir.path(), small_limits(), last);
}

#[test]
fn a_document_exactly_at_the_size_limit_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_limits()).unwrap();
    // {"blob":"…"} is 11 bytes of framing.
    let doc = json!({"blob": "z".repeat(1024 - 11)});
    assert_eq!(doc.to_string().len(), 1024);
    store.put("edge:1", doc.clone()).unwrap();
    assert_eq!(store.get("edge:1").unwrap().unwrap().to_value(), doc);
}

#[test]
fn put_json_refuses_an_array_a_string_a_number_and_null_as_not_an_object() {
    for (text, kind) in [
        ("[1,2,3]", "an array"),
        ("\"hello\"", "a string"),
        ("42", "a number"),
        ("null", "null"),
    ] {
        refused(
            Options::default(),
            |s| s.put_json("doc:1", text).unwrap_err(),
            |e| {
                match e {
                    StoreError::InvalidDocument(DocumentError::NotAnObject { found }) => {
                        assert_eq!(*found, kind, "{text}");
                    }
                    other => panic!("{text}: {other:?}"),
                }
                assert_eq!(e.code(), ErrorCode::InvalidInput);
            },
        );
    }
}

/// A key serde_json gives another meaning (an object whose first key is
/// `$serde_json::private::RawValue` parses as the JSON in its string): a
/// document holding one would read back as something else, so every way in
/// refuses it.
#[test]
fn a_reserved_key_is_refused_by_put_put_json_patch_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    let last = store.last_seq();
    let key = "$serde_json::private::RawValue";
    let mut fields = Map::new();
    fields.insert(key.to_string(), json!("{\"admin\":true}"));
    let value = json!({"profile": Value::Object(fields.clone())});
    let text = r#"{"$serde_json::private::RawValue":"{\"admin\":true}"}"#;
    for e in [
        store.put("doc:1", value.clone()).unwrap_err(),
        store.put_json("doc:1", text).unwrap_err(),
        store.patch(SENTINEL, value.clone()).unwrap_err(),
        store
            .batch(vec![WriteOp::Put {
                id: "doc:2".into(),
                data: value.clone(),
            }])
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                &e,
                StoreError::InvalidDocument(DocumentError::ReservedKey { key: k }) if k == key
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(e.to_string().contains("rename the field"), "{e}");
    }
    assert!(store.get("doc:1").unwrap().is_none());
    assert_nothing_lost(store, dir.path(), Options::default(), last);
}

#[test]
fn put_and_patch_refuse_json_values_that_are_not_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    let last = store.last_seq();
    for v in [json!([1]), json!("s"), json!(1.5), Value::Null, json!(true)] {
        for e in [
            store.put("doc:1", v.clone()).unwrap_err(),
            store.patch(SENTINEL, v.clone()).unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    StoreError::InvalidDocument(DocumentError::NotAnObject { .. })
                ),
                "{v}: {e:?}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        }
    }
    assert_nothing_lost(store, dir.path(), Options::default(), last);
}

#[test]
fn put_json_reports_the_line_and_column_of_invalid_json() {
    let text = "{\n  \"a\": 1,\n  oops\n}";
    refused(
        Options::default(),
        |s| s.put_json("doc:1", text).unwrap_err(),
        |e| {
            match e {
                StoreError::InvalidDocument(DocumentError::InvalidJson {
                    line, column, ..
                }) => {
                    assert_eq!((*line, *column), (3, 3), "{e}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(e.code(), ErrorCode::InvalidInput);
            assert!(e.to_string().contains("line 3, column 3"), "{e}");
        },
    );
}

#[test]
fn put_json_refuses_100000_nested_arrays_without_overflowing_the_stack() {
    let text = nested_arrays(100_000);
    refused(
        Options::default(),
        |s| s.put_json("deep:1", &text).unwrap_err(),
        |e| {
            assert!(
                matches!(
                    e,
                    StoreError::InvalidDocument(DocumentError::InvalidJson { .. })
                ),
                "{e:?}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        },
    );
}

#[test]
fn put_json_refuses_100000_nested_objects_without_overflowing_the_stack() {
    let text = nested_objects(100_000);
    refused(
        Options::default(),
        |s| s.put_json("deep:1", &text).unwrap_err(),
        |e| {
            assert!(
                matches!(
                    e,
                    StoreError::InvalidDocument(DocumentError::InvalidJson { .. })
                ),
                "{e:?}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        },
    );
}

#[test]
fn a_document_nested_200_levels_deep_is_either_refused_or_readable_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let text = nested_arrays(200);
    // Build the value without serde_json's recursion limit, as an app that
    // constructs documents in code would.
    let mut v = Value::Array(vec![]);
    for _ in 1..200 {
        v = Value::Array(vec![v]);
    }
    let mut doc = Map::new();
    doc.insert("a".into(), v);
    let doc = Value::Object(doc);
    assert_eq!(doc.to_string(), text);
    let store = open_with_sentinel(dir.path(), Options::default());
    match store.put("deep:1", doc) {
        Err(e) => assert_eq!(e.code(), ErrorCode::InvalidInput, "{e:?}"),
        Ok(_) => {
            drop(store);
            let store = Store::open(dir.path(), Options::default()).unwrap();
            let got = store
                .get("deep:1")
                .expect("an accepted document reads back");
            assert_eq!(got.map(|d| d.json().to_string()), Some(text));
        }
    }
}

// ---------------------------------------------------------------- queries

#[test]
fn a_query_on_a_field_containing_a_double_quote_is_refused() {
    refused(
        Options::default(),
        |s| {
            let mut f = Map::new();
            f.insert("ke\"y".into(), json!(1));
            s.query(&f, 10, None).unwrap_err()
        },
        |e| {
            assert!(matches!(e, StoreError::InvalidInput(_)), "{e:?}");
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        },
    );
}

#[test]
fn a_query_on_an_empty_field_name_is_refused() {
    refused(
        Options::default(),
        |s| {
            let mut f = Map::new();
            f.insert(String::new(), json!(1));
            s.query(&f, 10, None).unwrap_err()
        },
        |e| assert_eq!(e.code(), ErrorCode::InvalidInput, "{e:?}"),
    );
}

#[test]
fn a_query_value_that_looks_like_sql_is_only_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    let mut f = Map::new();
    f.insert("keep".into(), json!("me' OR 1=1 --"));
    assert!(store.query(&f, 10, None).unwrap().is_empty());
    f.insert("keep".into(), json!("me"));
    assert_eq!(store.query(&f, 10, None).unwrap().len(), 1);
}

#[test]
fn a_search_with_no_words_is_refused() {
    for text in ["", "   ", "!!! ??? ---", "\"*\""] {
        refused(
            Options::default(),
            |s| s.search(text, 10).unwrap_err(),
            |e| {
                assert!(matches!(e, StoreError::InvalidInput(_)), "{text:?}: {e:?}");
                assert_eq!(e.code(), ErrorCode::InvalidInput);
            },
        );
    }
}

#[test]
fn search_text_with_fts_syntax_is_searched_as_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    for text in [
        "me AND",
        "NEAR(me",
        "me\"",
        "keep:me",
        "me*",
        "-me",
        "me OR NOT",
    ] {
        let r = store.search(text, 10);
        assert!(r.is_ok(), "{text:?}: {r:?}");
    }
    assert_eq!(store.search("\"me\"", 10).unwrap().len(), 1);
}

// ---------------------------------------------------------------- batches

#[test]
fn an_empty_batch_is_refused() {
    refused(
        Options::default(),
        |s| s.batch(vec![]).unwrap_err(),
        |e| {
            assert!(matches!(e, StoreError::InvalidInput(_)), "{e:?}");
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        },
    );
}

fn five_puts() -> Vec<WriteOp> {
    (0..5)
        .map(|i| WriteOp::Put {
            id: format!("b:{i}"),
            data: json!({"i": i}),
        })
        .collect()
}

#[test]
fn a_batch_over_max_batch_ops_is_refused_and_writes_none_of_its_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), small_limits());
    let last = store.last_seq();
    let e = store.batch(five_puts()).unwrap_err();
    assert!(e.to_string().contains('4'), "message names the limit: {e}");
    for i in 0..5 {
        assert!(store.get(&format!("b:{i}")).unwrap().is_none());
    }
    assert_nothing_lost(store, dir.path(), small_limits(), last);
}

#[test]
fn a_batch_over_max_batch_ops_has_the_code_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_limits()).unwrap();
    let e = store.batch(five_puts()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e:?}");
}

#[test]
fn a_batch_of_exactly_max_batch_ops_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_limits()).unwrap();
    let mut ops = five_puts();
    ops.pop();
    let (first, last) = store.batch(ops).unwrap();
    assert_eq!(last - first + 1, 4);
}

#[test]
fn a_batch_with_one_invalid_op_writes_none_of_its_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    let last = store.last_seq();
    let e = store
        .batch(vec![
            WriteOp::Put {
                id: "ok:1".into(),
                data: json!({"a": 1}),
            },
            WriteOp::Patch {
                id: SENTINEL.into(),
                fields: json!({"keep": null}),
            },
            WriteOp::Put {
                id: "ok:2".into(),
                data: json!([1, 2]),
            },
        ])
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(store.get("ok:1").unwrap().is_none());
    assert_nothing_lost(store, dir.path(), Options::default(), last);
}

// ---------------------------------------------------------------- directories

#[test]
fn a_data_directory_that_is_a_regular_file_is_a_bad_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let e = Store::open(&file, Options::default()).unwrap_err();
    assert!(matches!(e, StoreError::BadDirectory { .. }), "{e:?}");
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(std::fs::read(&file).unwrap(), b"hello");
}

#[test]
fn a_data_directory_under_a_regular_file_is_a_bad_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"hello").unwrap();
    let e = Store::open(file.join("sub"), Options::default()).unwrap_err();
    assert!(matches!(e, StoreError::BadDirectory { .. }), "{e:?}");
}

#[test]
fn a_second_open_of_the_same_directory_is_locked_naming_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    match &e {
        StoreError::Locked { pid, dir: d } => {
            assert_eq!(*pid, std::process::id());
            assert_eq!(d, dir.path());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), ErrorCode::Locked);
    assert!(e.to_string().contains(&std::process::id().to_string()));
    let last = store.last_seq();
    assert_nothing_lost(store, dir.path(), Options::default(), last);
}

#[test]
fn the_directory_can_be_opened_again_once_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), Options::default());
    let clone = store.clone();
    drop(store);
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(StoreError::Locked { .. })
    ));
    drop(clone);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert!(store.get(SENTINEL).unwrap().is_some());
}

fn assert_corrupt_and_untouched(garbage: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    std::fs::write(&db, garbage).unwrap();
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    match &e {
        StoreError::Corrupt { path, .. } => assert_eq!(path, &db),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), ErrorCode::Corrupt);
    assert!(
        std::fs::read(&db).unwrap() == garbage,
        "the damaged file was modified"
    );
}

#[test]
fn a_garbage_database_file_is_corrupt_and_left_untouched() {
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_corrupt_and_untouched(&garbage);
}

#[test]
fn a_short_text_file_as_database_is_corrupt_and_left_untouched() {
    assert_corrupt_and_untouched(b"this is not a database, it is a shopping list\n");
}

#[test]
fn a_database_with_a_valid_header_and_garbage_pages_is_corrupt_and_left_untouched() {
    // A real hearth database with its pages after the first overwritten.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        for i in 0..200 {
            store
                .put(
                    &format!("d:{i}"),
                    json!({"text": format!("some words {i}")}),
                )
                .unwrap();
        }
    }
    // Fold the WAL into the main file so the damage below hits real pages.
    {
        let c = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(dir.path().join("hearth.db")).unwrap();
    assert!(bytes.len() > 8192, "{}", bytes.len());
    let page_size = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    for (i, b) in bytes.iter_mut().enumerate().skip(page_size) {
        *b = (i % 251) as u8;
    }
    assert_corrupt_and_untouched(&bytes);
}

fn foreign_database(dir: &Path) -> Vec<u8> {
    let path = dir.join("hearth.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes(body) VALUES ('not hearth''s');",
    )
    .unwrap();
    drop(c);
    std::fs::read(&path).unwrap()
}

#[test]
fn a_sqlite_database_from_another_app_is_foreign() {
    let dir = tempfile::tempdir().unwrap();
    foreign_database(dir.path());
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    match &e {
        StoreError::Foreign { path } => assert_eq!(path, &dir.path().join("hearth.db")),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), ErrorCode::Corrupt);
    // The other app's data is still readable by it.
    let c = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
    let body: String = c
        .query_row("SELECT body FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(body, "not hearth's");
}

#[test]
fn a_sqlite_database_from_another_app_is_left_byte_for_byte_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let before = foreign_database(dir.path());
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    let after = std::fs::read(dir.path().join("hearth.db")).unwrap();
    let changed: Vec<usize> = (0..before.len().max(after.len()))
        .filter(|&i| before.get(i) != after.get(i))
        .collect();
    assert!(
        changed.is_empty(),
        "the foreign database was modified at byte offsets {changed:?}"
    );
    assert!(
        !dir.path().join("hearth.db-wal").exists(),
        "a WAL file was created beside the foreign database"
    );
}

#[test]
fn an_empty_database_file_is_taken_as_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hearth.db"), b"").unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("a:1", json!({"x": 1})).unwrap();
    assert_eq!(
        store.get("a:1").unwrap().unwrap().to_value(),
        json!({"x": 1})
    );
}

// ---------------------------------------------------------------- remote changes

fn remote(id: &str, kind: hearth_store::ChangeKind, data: Option<&str>) -> hearth_store::Change {
    hearth_store::Change {
        seq: 0,
        id: id.into(),
        kind,
        stamp: hearth_store::Stamp {
            hlc: hearth_store::Stamp::hlc_from_parts(1_000, 0),
            replica: 7,
        },
        data: data.map(Into::into),
    }
}

#[test]
fn apply_remote_refuses_a_bad_change_and_applies_none_of_its_batch() {
    use hearth_store::ChangeKind::{Delete, Patch, Put};
    let big = format!(r#"{{"blob":"{}"}}"#, "z".repeat(2000));
    let bad: Vec<(hearth_store::Change, ErrorCode)> = vec![
        (remote("", Put, Some("{}")), ErrorCode::InvalidInput),
        (remote("a\0b", Delete, None), ErrorCode::InvalidInput),
        (remote("r:1", Put, None), ErrorCode::InvalidInput),
        (remote("r:1", Patch, Some("[1]")), ErrorCode::InvalidInput),
        (
            remote("r:1", Put, Some("{not json")),
            ErrorCode::InvalidInput,
        ),
        (remote("r:1", Put, Some(&big)), ErrorCode::TooLarge),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_sentinel(dir.path(), small_limits());
    let last = store.last_seq();
    for (change, code) in bad {
        let good = remote("good:1", Put, Some(r#"{"ok":true}"#));
        let e = store.apply_remote(&[good, change.clone()]).unwrap_err();
        assert_eq!(e.code(), code, "{change:?}: {e:?}");
        assert!(store.get("good:1").unwrap().is_none(), "{change:?}");
    }
    assert_nothing_lost(store, dir.path(), small_limits(), last);
}

// ---------------------------------------------------------------- options

#[test]
fn a_zero_back_pressure_limit_is_refused_at_open_or_still_lets_writes_through() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_pending_ops: 0,
        ..Options::default()
    };
    let store = match Store::open(dir.path(), opts) {
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidInput, "{e:?}");
            return;
        }
        Ok(s) => s,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = store.clone();
    std::thread::spawn(move || {
        let _ = tx.send(writer.put("a:1", json!({})).map_err(|e| e.to_string()));
    });
    // A hang is the failure being detected; the bound only turns it into one.
    let r = rx.recv_timeout(std::time::Duration::from_secs(10));
    assert!(matches!(r, Ok(Ok(1))), "the write did not complete: {r:?}");
}
