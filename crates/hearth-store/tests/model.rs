//! The store against a `BTreeMap` model: random operations, same answers.
//!
//! proptest generates sequences of puts, patches (a `null` field removes that
//! field), deletes, atomic batches and reopens over a small set of ids and
//! fields, and applies each to one store and to a
//! `BTreeMap<String, serde_json::Map>`. After every step `get` of every id
//! agrees with the model, and so do `stats`' counts of documents and
//! tombstones (before the applier has applied the writes, mostly); at the
//! end `list` (every prefix, the `type` filter,
//! paging with a cursor), `query` (every field against every value), `search`
//! and `stats` agree, and again after a reopen.
//!
//! The store is opened with varied cache sizes (including none, so reads and
//! patch bases come from SQLite) and applier batch sizes.

use hearth_store::{ListOptions, Options, Store, WriteOp};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

type Doc = Map<String, Value>;
type Model = BTreeMap<String, Doc>;

const IDS: &[&str] = &["a:1", "a:2", "a:10", "ab:1", "b:1", "b:2", "c"];
const FIELDS: &[&str] = &["type", "n", "s", "flag", "tags", "x"];
const WORDS: &[&str] = &["red apple", "green apple", "red car", "blue", "A", "B"];
const PREFIXES: &[&str] = &["", "a", "a:", "a:1", "ab", "b:", "c", "zz"];
const SEARCH_WORDS: &[&str] = &["red", "apple", "green", "car", "blue", "appl"];

#[derive(Debug, Clone)]
enum Op {
    Put(String, Doc),
    Patch(String, Doc),
    Delete(String),
    Batch(Vec<Op>),
    Reopen,
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..4).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec(
            prop_oneof![
                (0i64..3).prop_map(Value::from),
                prop::sample::select(WORDS).prop_map(Value::from)
            ],
            0..3
        )
        .prop_map(Value::Array),
        Just(json!({"k": "red"})),
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop::sample::select(IDS).prop_map(str::to_string)
}

fn fields(min: usize, nulls: bool) -> impl Strategy<Value = Doc> {
    let v = if nulls {
        prop_oneof![2 => Just(Value::Null), 3 => value()].boxed()
    } else {
        value().boxed()
    };
    prop::collection::btree_map(
        prop::sample::select(FIELDS).prop_map(str::to_string),
        v,
        min..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn write_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (id(), fields(0, false)).prop_map(|(i, d)| Op::Put(i, d)),
        4 => (id(), fields(1, true)).prop_map(|(i, d)| Op::Patch(i, d)),
        2 => id().prop_map(Op::Delete),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => write_op(),
        2 => prop::collection::vec(write_op(), 1..6).prop_map(Op::Batch),
        1 => Just(Op::Reopen),
    ]
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop::sample::select(vec![0usize, 2048, 64 << 20]),
        prop::sample::select(vec![1usize, 3, 4096]),
    )
        .prop_map(|(cache_bytes, apply_batch)| Options {
            cache_bytes,
            apply_batch,
            ..Options::default()
        })
}

/// Applies one write to the model; returns whether a single `delete`
/// should report that it deleted something.
fn apply_model(model: &mut Model, op: &Op) -> bool {
    match op {
        Op::Put(id, d) => {
            model.insert(id.clone(), d.clone());
            true
        }
        Op::Patch(id, f) => {
            let mut doc = model.remove(id).unwrap_or_default();
            for (k, v) in f {
                if v.is_null() {
                    doc.remove(k);
                } else {
                    doc.insert(k.clone(), v.clone());
                }
            }
            model.insert(id.clone(), doc);
            true
        }
        Op::Delete(id) => model.remove(id).is_some(),
        Op::Batch(ops) => {
            for o in ops {
                apply_model(model, o);
            }
            true
        }
        Op::Reopen => true,
    }
}

/// Adds the ids `op` gives a row to `written`: each has one from then on,
/// a tombstone while the model has no document for it. Puts and patches
/// write one, and so does a delete inside a batch, even of a missing
/// document (a single `delete` of one writes nothing).
fn note_written(op: &Op, written: &mut BTreeSet<String>) {
    match op {
        Op::Put(id, _) | Op::Patch(id, _) => {
            written.insert(id.clone());
        }
        Op::Batch(ops) => ops.iter().for_each(|o| match o {
            Op::Delete(id) => {
                written.insert(id.clone());
            }
            other => note_written(other, written),
        }),
        Op::Delete(_) | Op::Reopen => {}
    }
}

fn to_write_op(op: &Op) -> WriteOp {
    match op {
        Op::Put(id, d) => WriteOp::Put {
            id: id.clone(),
            data: Value::Object(d.clone()),
        },
        Op::Patch(id, f) => WriteOp::Patch {
            id: id.clone(),
            fields: Value::Object(f.clone()),
        },
        Op::Delete(id) => WriteOp::Delete { id: id.clone() },
        Op::Batch(_) | Op::Reopen => unreachable!("batches hold only writes"),
    }
}

fn apply_store(store: &Store, op: &Op, model_deleted: bool) {
    match op {
        Op::Put(id, d) => {
            store.put(id, Value::Object(d.clone())).unwrap();
        }
        Op::Patch(id, f) => {
            store.patch(id, Value::Object(f.clone())).unwrap();
        }
        Op::Delete(id) => {
            let r = store.delete(id).unwrap();
            assert_eq!(r.is_some(), model_deleted, "delete({id}) reported {r:?}");
        }
        Op::Batch(ops) => {
            let before = store.last_seq();
            let (first, last) = store.batch(ops.iter().map(to_write_op).collect()).unwrap();
            assert_eq!((first, last), (before + 1, before + ops.len() as u64));
        }
        Op::Reopen => unreachable!("the caller reopens"),
    }
}

fn get_all(store: &Store) -> Model {
    IDS.iter()
        .filter_map(|id| {
            store
                .get(id)
                .unwrap()
                .map(|d| (id.to_string(), d.data().clone()))
        })
        .collect()
}

fn listed(store: &Store, opts: ListOptions) -> Vec<(String, Doc)> {
    store
        .list(opts)
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            (d.id().to_string(), d.data().clone())
        })
        .collect()
}

fn listed_in_pages(store: &Store, prefix: &str, page: usize) -> Vec<(String, Doc)> {
    let mut out: Vec<(String, Doc)> = Vec::new();
    loop {
        let got = listed(
            store,
            ListOptions {
                prefix: Some(prefix.to_string()),
                limit: Some(page),
                after: out.last().map(|(id, _)| id.clone()),
                ..Default::default()
            },
        );
        assert!(got.len() <= page);
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

fn tokens(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => out.extend(
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase),
        ),
        Value::Array(a) => a.iter().for_each(|x| tokens(x, out)),
        Value::Object(o) => o.values().for_each(|x| tokens(x, out)),
        _ => {}
    }
}

fn query_values() -> Vec<Value> {
    let mut vals: Vec<Value> = (-3i64..4).map(Value::from).collect();
    vals.extend([
        json!(true),
        json!(false),
        Value::Null,
        json!([]),
        json!([0, "blue"]),
    ]);
    vals.extend(WORDS.iter().map(|w| json!(w)));
    vals.push(json!({"k": "red"}));
    vals
}

/// Everything a reader can ask agrees with the model.
fn assert_agrees(store: &Store, model: &Model) {
    assert_eq!(&get_all(store), model, "get");
    let everything: Vec<(String, Doc)> =
        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(listed(store, ListOptions::default()), everything, "list");
    for prefix in PREFIXES {
        let want: Vec<(String, Doc)> = everything
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .cloned()
            .collect();
        let opts = ListOptions {
            prefix: Some(prefix.to_string()),
            ..Default::default()
        };
        assert_eq!(listed(store, opts), want, "list prefix {prefix:?}");
        assert_eq!(
            listed_in_pages(store, prefix, 2),
            want,
            "paged list {prefix:?}"
        );
        for ty in ["A", "B"] {
            let want_ty: Vec<_> = want
                .iter()
                .filter(|(_, d)| d.get("type") == Some(&json!(ty)))
                .cloned()
                .collect();
            let opts = ListOptions {
                prefix: Some(prefix.to_string()),
                type_name: Some(ty.into()),
                ..Default::default()
            };
            assert_eq!(
                listed(store, opts),
                want_ty,
                "list prefix {prefix:?} type {ty}"
            );
        }
    }
    for field in FIELDS {
        for v in query_values() {
            let mut filter = Map::new();
            filter.insert(field.to_string(), v.clone());
            let got: Vec<String> = store
                .query(&filter, 100, None)
                .unwrap()
                .iter()
                .map(|d| d.id().to_string())
                .collect();
            let want: Vec<String> = model
                .iter()
                .filter(|(_, d)| d.get(*field) == Some(&v))
                .map(|(id, _)| id.clone())
                .collect();
            assert_eq!(got, want, "query {filter:?}");
        }
    }
    let mut two = Map::new();
    two.insert("type".into(), json!("A"));
    two.insert("flag".into(), json!(true));
    let got: Vec<String> = store
        .query(&two, 100, None)
        .unwrap()
        .iter()
        .map(|d| d.id().to_string())
        .collect();
    let want: Vec<String> = model
        .iter()
        .filter(|(_, d)| d.get("type") == Some(&json!("A")) && d.get("flag") == Some(&json!(true)))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(got, want, "query {two:?}");
    for word in SEARCH_WORDS {
        let got: BTreeSet<String> = store
            .search(word, 100)
            .unwrap()
            .into_iter()
            .map(|h| h.doc.id().to_string())
            .collect();
        let want: BTreeSet<String> = model
            .iter()
            .filter(|(_, d)| {
                let mut t = BTreeSet::new();
                d.values().for_each(|v| tokens(v, &mut t));
                t.iter().any(|tok| tok.starts_with(word))
            })
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(got, want, "search {word:?}");
    }
    assert_eq!(
        store.stats().unwrap().documents,
        model.len() as u64,
        "stats"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_operations_agree_with_a_btreemap_model(
        opts in options(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), opts.clone()).unwrap();
        let mut model = Model::new();
        let mut written = BTreeSet::new();
        for op in &ops {
            let deleted = apply_model(&mut model, op);
            note_written(op, &mut written);
            if let Op::Reopen = op {
                drop(store);
                store = Store::open(dir.path(), opts.clone()).unwrap();
            } else {
                apply_store(&store, op, deleted);
            }
            prop_assert_eq!(&get_all(&store), &model, "after {:?}", op);
            // Stats count the writes the applier has not applied yet too
            // (it defers a burst like this one): every document, and a
            // tombstone for every id written once and deleted since.
            let stats = store.stats().unwrap();
            let tombstones = written.iter().filter(|id| !model.contains_key(*id)).count();
            prop_assert_eq!(
                (stats.documents, stats.tombstones),
                (model.len() as u64, tombstones as u64),
                "stats after {:?} ({} pending)", op, stats.pending_ops
            );
        }
        assert_agrees(&store, &model);
        drop(store);
        let store = Store::open(dir.path(), opts).unwrap();
        assert_agrees(&store, &model);
    }
}

#[test]
fn a_patch_of_a_missing_document_creates_it_with_the_non_null_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.patch("p:1", json!({"a": 1, "b": null})).unwrap();
    assert_eq!(
        store.get("p:1").unwrap().unwrap().to_value(),
        json!({"a": 1})
    );
    store.patch("p:2", json!({"b": null})).unwrap();
    assert_eq!(store.get("p:2").unwrap().unwrap().to_value(), json!({}));
}

#[test]
fn a_patch_after_a_delete_revives_the_document_with_only_the_patched_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("r:1", json!({"a": 1, "b": 2})).unwrap();
    store.delete("r:1").unwrap();
    store.patch("r:1", json!({"c": 3})).unwrap();
    assert_eq!(
        store.get("r:1").unwrap().unwrap().to_value(),
        json!({"c": 3})
    );
}

#[test]
fn a_put_keeps_null_fields_and_a_patch_null_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("n:1", json!({"a": null, "b": 1})).unwrap();
    assert_eq!(
        store.get("n:1").unwrap().unwrap().to_value(),
        json!({"a": null, "b": 1})
    );
    let mut f = Map::new();
    f.insert("a".into(), Value::Null);
    assert_eq!(store.query(&f, 10, None).unwrap().len(), 1);
    store.patch("n:1", json!({"a": null})).unwrap();
    assert_eq!(
        store.get("n:1").unwrap().unwrap().to_value(),
        json!({"b": 1})
    );
    assert!(store.query(&f, 10, None).unwrap().is_empty());
}

#[test]
fn deleting_a_missing_document_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.delete("nope:1").unwrap(), None);
    assert_eq!(store.last_seq(), 0);
    store.put("yes:1", json!({})).unwrap();
    assert_eq!(store.delete("yes:1").unwrap(), Some(2));
    assert_eq!(store.delete("yes:1").unwrap(), None);
    assert_eq!(store.last_seq(), 2);
}

#[test]
fn a_batch_touching_one_id_several_times_applies_its_ops_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .batch(vec![
            WriteOp::Put {
                id: "t:1".into(),
                data: json!({"a": 1, "b": 1}),
            },
            WriteOp::Patch {
                id: "t:1".into(),
                fields: json!({"b": null, "c": 3}),
            },
            WriteOp::Delete { id: "t:1".into() },
            WriteOp::Patch {
                id: "t:1".into(),
                fields: json!({"d": 4}),
            },
            WriteOp::Put {
                id: "t:2".into(),
                data: json!({"x": 1}),
            },
            WriteOp::Delete { id: "t:2".into() },
        ])
        .unwrap();
    assert_eq!(
        store.get("t:1").unwrap().unwrap().to_value(),
        json!({"d": 4})
    );
    assert!(store.get("t:2").unwrap().is_none());
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        store.get("t:1").unwrap().unwrap().to_value(),
        json!({"d": 4})
    );
    assert!(store.get("t:2").unwrap().is_none());
}

#[test]
fn a_query_for_an_array_does_not_match_a_string_that_spells_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("arr:1", json!({"x": [1, 2]})).unwrap();
    store.put("str:1", json!({"x": "[1,2]"})).unwrap();
    store.put("obj:1", json!({"y": {"k": 1}})).unwrap();
    store.put("str:2", json!({"y": "{\"k\":1}"})).unwrap();
    let ids = |f: Value| -> Vec<String> {
        store
            .query(f.as_object().unwrap(), 10, None)
            .unwrap()
            .iter()
            .map(|d| d.id().to_string())
            .collect()
    };
    assert_eq!(ids(json!({"x": [1, 2]})), vec!["arr:1"]);
    assert_eq!(ids(json!({"x": "[1,2]"})), vec!["str:1"]);
    assert_eq!(ids(json!({"y": {"k": 1}})), vec!["obj:1"]);
}

#[test]
fn query_pages_with_after_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for i in 0..10 {
        store
            .put(&format!("q:{i}"), json!({"type": "Q", "even": i % 2 == 0}))
            .unwrap();
    }
    let f = json!({"type": "Q", "even": true});
    let f = f.as_object().unwrap();
    let p1 = store.query(f, 2, None).unwrap();
    let p2 = store.query(f, 2, Some(p1[1].id())).unwrap();
    let p3 = store.query(f, 2, Some(p2[1].id())).unwrap();
    let ids: Vec<&str> = p1.iter().chain(&p2).chain(&p3).map(|d| d.id()).collect();
    assert_eq!(ids, ["q:0", "q:2", "q:4", "q:6", "q:8"]);
}

#[test]
fn valid_ids_with_spaces_quotes_slashes_wildcards_newlines_and_emoji_work_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [
        "a b", "a/b", "a%b", "a_b", "a'b", "a\"b", "é😀", "a\\b", "a\nb", "-", "*", "a*",
    ];
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        for id in ids {
            store.put(id, json!({"id": id, "text": "needle"})).unwrap();
            store.patch(id, json!({"p": 1})).unwrap();
        }
        store.delete("a*").unwrap();
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut want: Vec<&str> = ids.iter().copied().filter(|i| *i != "a*").collect();
    want.sort();
    let listed: Vec<String> = store
        .list(ListOptions::default())
        .unwrap()
        .map(|d| d.unwrap().id().to_string())
        .collect();
    assert_eq!(listed, want);
    for id in &want {
        let d = store.get(id).unwrap().unwrap();
        assert_eq!(d.to_value(), json!({"id": id, "text": "needle", "p": 1}));
        let f = json!({"id": id});
        let q = store.query(f.as_object().unwrap(), 10, None).unwrap();
        assert_eq!(q.len(), 1, "query for {id:?}");
    }
    let a_prefixed: Vec<String> = store
        .list(ListOptions {
            prefix: Some("a%".into()),
            ..Default::default()
        })
        .unwrap()
        .map(|d| d.unwrap().id().to_string())
        .collect();
    assert_eq!(a_prefixed, ["a%b"], "a prefix is not a LIKE pattern");
    assert_eq!(store.search("needle", 100).unwrap().len(), want.len());
}

#[test]
fn a_query_matches_top_level_fields_whose_names_hold_dots_spaces_brackets_and_dollars() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let fields = ["a.b", "a b", "x[0]", "$", "é", "a'b", "*", "a]b", "a\nb"];
    for f in fields {
        store
            .put(&format!("f:{f}"), json!({f: 1, "other": 2}))
            .unwrap();
    }
    // A nested field must not be mistaken for a dotted top-level name.
    store.put("nested", json!({"a": {"b": 1}})).unwrap();
    for f in fields {
        let filter = json!({f: 1});
        let ids: Vec<String> = store
            .query(filter.as_object().unwrap(), 10, None)
            .unwrap()
            .iter()
            .map(|d| d.id().to_string())
            .collect();
        assert_eq!(ids, [format!("f:{f}")], "field {f:?}");
    }
}

#[test]
fn a_query_on_a_field_name_with_a_backslash_matches_it_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("bs:1", json!({"a\\b": 1})).unwrap();
    let filter = json!({"a\\b": 1});
    match store.query(filter.as_object().unwrap(), 10, None) {
        Err(e) => assert_eq!(e.code(), hearth_proto::ErrorCode::InvalidInput, "{e:?}"),
        Ok(docs) => assert_eq!(docs.len(), 1, "the document with that field was not found"),
    }
}

#[test]
fn a_query_for_a_large_unsigned_integer_matches_only_that_integer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("max", json!({"n": u64::MAX})).unwrap();
    store.put("max-1", json!({"n": u64::MAX - 1})).unwrap();
    let filter = json!({"n": u64::MAX});
    let ids: Vec<String> = store
        .query(filter.as_object().unwrap(), 10, None)
        .unwrap()
        .iter()
        .map(|d| d.id().to_string())
        .collect();
    assert_eq!(ids, ["max"]);
}

#[test]
fn a_query_for_an_integer_beyond_double_precision_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .put("odd", json!({"n": 9_007_199_254_740_993u64}))
        .unwrap();
    store
        .put("even", json!({"n": 9_007_199_254_740_992u64}))
        .unwrap();
    let filter = json!({"n": 9_007_199_254_740_993u64});
    let ids: Vec<String> = store
        .query(filter.as_object().unwrap(), 10, None)
        .unwrap()
        .iter()
        .map(|d| d.id().to_string())
        .collect();
    assert_eq!(ids, ["odd"]);
}

#[test]
fn concurrent_writers_always_read_their_own_latest_write() {
    let dir = tempfile::tempdir().unwrap();
    // No cache and one-operation applier transactions: reads race the
    // applier moving entries from the overlay into SQLite.
    let store = Store::open(
        dir.path(),
        Options {
            cache_bytes: 0,
            apply_batch: 1,
            ..Options::default()
        },
    )
    .unwrap();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..400u64 {
                    let id = format!("t{t}:{}", i % 5);
                    if i % 3 == 0 {
                        store.put(&id, json!({"i": i, "t": t})).unwrap();
                    } else {
                        store.patch(&id, json!({"i": i})).unwrap();
                    }
                    let got = store.get(&id).unwrap().unwrap();
                    assert_eq!(got.data()["i"], json!(i), "{id} went back in time");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..3u64 {
        for k in 0..5u64 {
            let last = (0..400u64).rev().find(|i| i % 5 == k).unwrap();
            let d = store.get(&format!("t{t}:{k}")).unwrap().unwrap();
            assert_eq!(d.data()["i"], json!(last));
        }
    }
}

#[test]
fn a_delete_in_a_batch_leaves_a_tombstone_even_without_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (first, last) = store
        .batch(vec![
            WriteOp::Put {
                id: "t:1".into(),
                data: json!({}),
            },
            WriteOp::Delete { id: "t:2".into() },
        ])
        .unwrap();
    assert_eq!((first, last), (1, 2), "every operation has its seq");
    assert!(store.get("t:2").unwrap().is_none());
    let t2 = store
        .get_with_metadata("t:2")
        .unwrap()
        .expect("a tombstone");
    assert!(t2.metadata().deleted);
    let stats = store.stats().unwrap();
    assert_eq!((stats.documents, stats.tombstones), (1, 1));
}
