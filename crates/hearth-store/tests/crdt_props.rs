//! Merge laws, property-tested through the public API with real replicas.
//!
//! Two or three replicas (separate directories, separate [`Store`]s) each run
//! random puts, patches (with `null` fields) and deletes over a small id and
//! field set, interleaved with random exchanges: `export_changes(0)` from one
//! replica, shuffled, cut into random chunks and `apply_remote`d to another —
//! sometimes twice. Then every replica receives every other's changes, and:
//!
//! - all replicas hold identical documents and tombstones (`get`,
//!   `get_with_metadata`, `list`) — any interleaving converges;
//! - they equal an independent oracle: all distinct changes, sorted by stamp,
//!   applied one after another with plain last-writer-wins semantics;
//! - two fresh replicas that receive the union of all changes one at a time,
//!   in two different random orders and with duplicates, hold the same
//!   documents — merge is commutative, associative and idempotent;
//! - re-applying changes a replica already has applies nothing (returns 0 and
//!   writes no change), the store-level face of idempotence.

use hearth_store::{Change, ChangeKind, ListOptions, Options, Stamp, Store};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

type Doc = Map<String, Value>;

const IDS: &[&str] = &["a", "b", "c"];
const FIELDS: &[&str] = &["x", "y", "z"];

#[derive(Debug, Clone)]
enum Op {
    Put(&'static str, Doc),
    Patch(&'static str, Doc),
    Delete(&'static str),
}

#[derive(Debug, Clone)]
enum Step {
    Local {
        replica: usize,
        op: Op,
    },
    Sync {
        from: usize,
        to: usize,
        chunk: usize,
        seed: u64,
        twice: bool,
    },
}

/// A small deterministic RNG (splitmix64) for shuffles driven by a seed
/// that proptest generates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

fn value(nulls: bool) -> BoxedStrategy<Value> {
    let plain = prop_oneof![
        (0i64..5).prop_map(Value::from),
        prop::sample::select(vec!["red", "green", "blue"]).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ];
    if nulls {
        prop_oneof![1 => Just(Value::Null), 2 => plain].boxed()
    } else {
        prop_oneof![6 => plain, 1 => Just(Value::Null)].boxed()
    }
}

fn fields(min: usize, nulls: bool) -> impl Strategy<Value = Doc> {
    prop::collection::btree_map(prop::sample::select(FIELDS), value(nulls), min..=3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn op() -> impl Strategy<Value = Op> {
    let id = prop::sample::select(IDS);
    prop_oneof![
        3 => (id.clone(), fields(0, false)).prop_map(|(i, d)| Op::Put(i, d)),
        4 => (id.clone(), fields(1, true)).prop_map(|(i, d)| Op::Patch(i, d)),
        2 => id.prop_map(Op::Delete),
    ]
}

fn step(replicas: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..replicas, op()).prop_map(|(replica, op)| Step::Local { replica, op }),
        1 => (0..replicas, 0..replicas, 1usize..5, any::<u64>(), any::<bool>()).prop_map(
            |(from, to, chunk, seed, twice)| Step::Sync { from, to, chunk, seed, twice }
        ),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Step>, u64)> {
    (2usize..=3).prop_flat_map(|n| (Just(n), prop::collection::vec(step(n), 1..40), any::<u64>()))
}

fn local(store: &Store, op: &Op) {
    match op {
        Op::Put(id, d) => {
            store.put(id, Value::Object(d.clone())).unwrap();
        }
        Op::Patch(id, f) => {
            store.patch(id, Value::Object(f.clone())).unwrap();
        }
        Op::Delete(id) => {
            store.delete(id).unwrap();
        }
    }
}

/// Applies `changes` in `chunk`-sized `apply_remote` calls; returns how many
/// the store reported as applied.
fn apply_in_chunks(store: &Store, changes: &[Change], chunk: usize) -> usize {
    changes
        .chunks(chunk.max(1))
        .map(|c| store.apply_remote(c).unwrap())
        .sum()
}

/// A replica's visible state: per id, `None` (never heard of),
/// or (deleted, stamp, fields).
type Snapshot = BTreeMap<&'static str, Option<(bool, Stamp, Doc)>>;

fn snapshot(store: &Store) -> Snapshot {
    IDS.iter()
        .map(|id| {
            let d = store.get_with_metadata(id).unwrap().map(|d| {
                let m = d.metadata();
                (m.deleted, m.stamp, d.data().clone())
            });
            (*id, d)
        })
        .collect()
}

fn documents(store: &Store) -> BTreeMap<String, Doc> {
    let got: BTreeMap<String, Doc> = IDS
        .iter()
        .filter_map(|id| {
            store
                .get(id)
                .unwrap()
                .map(|d| (id.to_string(), d.data().clone()))
        })
        .collect();
    let listed: BTreeMap<String, Doc> = store
        .list(ListOptions::default())
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            (d.id().to_string(), d.data().clone())
        })
        .collect();
    assert_eq!(got, listed, "get and list disagree on one replica");
    got
}

/// The oracle: distinct changes in stamp order, applied with plain
/// last-writer-wins semantics (put replaces, patch merges and creates,
/// `null` removes, delete removes).
fn oracle(all: &[Change]) -> BTreeMap<String, Doc> {
    let mut by_stamp: BTreeMap<Stamp, &Change> = BTreeMap::new();
    for c in all {
        if let Some(prev) = by_stamp.insert(c.stamp, c) {
            assert_eq!(
                (&prev.id, prev.kind, prev.data_value()),
                (&c.id, c.kind, c.data_value()),
                "two different changes share stamp {:?}",
                c.stamp
            );
        }
    }
    let mut docs: BTreeMap<String, Doc> = BTreeMap::new();
    for c in by_stamp.values() {
        match c.kind {
            ChangeKind::Put => {
                let Some(Value::Object(d)) = c.data_value() else {
                    panic!("put without an object: {c:?}")
                };
                docs.insert(c.id.clone(), d);
            }
            ChangeKind::Patch => {
                let Some(Value::Object(f)) = c.data_value() else {
                    panic!("patch without an object: {c:?}")
                };
                let doc = docs.entry(c.id.clone()).or_default();
                for (k, v) in f {
                    if v.is_null() {
                        doc.remove(&k);
                    } else {
                        doc.insert(k, v);
                    }
                }
            }
            ChangeKind::Delete => {
                docs.remove(&c.id);
            }
        }
    }
    docs
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(
        dir.path(),
        Options {
            apply_batch: 3,
            ..Options::default()
        },
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn replicas_that_exchanged_all_changes_hold_the_same_documents(
        (n, steps, seed) in scenario()
    ) {
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let stores: Vec<Store> = dirs.iter().map(open).collect();
        for step in &steps {
            match step {
                Step::Local { replica, op } => local(&stores[*replica], op),
                Step::Sync { from, to, chunk, seed, twice } => {
                    let mut changes = stores[*from].export_changes(0).unwrap();
                    Rng(*seed).shuffle(&mut changes);
                    apply_in_chunks(&stores[*to], &changes, *chunk);
                    if *twice {
                        let before = stores[*to].last_seq();
                        prop_assert_eq!(apply_in_chunks(&stores[*to], &changes, 1), 0);
                        prop_assert_eq!(stores[*to].last_seq(), before);
                    }
                }
            }
        }

        // Everyone receives everyone's changes, in a random order of pairs.
        let mut rng = Rng(seed);
        let mut pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
            .collect();
        rng.shuffle(&mut pairs);
        for (from, to) in pairs {
            let changes = stores[from].export_changes(0).unwrap();
            apply_in_chunks(&stores[to], &changes, 1 + rng.below(4));
        }

        let all: Vec<Change> = stores
            .iter()
            .flat_map(|s| s.export_changes(0).unwrap())
            .collect();
        let expected = oracle(&all);
        let first = snapshot(&stores[0]);
        for (i, s) in stores.iter().enumerate() {
            prop_assert_eq!(&snapshot(s), &first, "replica {} differs from replica 0", i);
            prop_assert_eq!(&documents(s), &expected, "replica {} differs from the oracle", i);
        }

        // Nothing more to learn: a full re-exchange applies nothing.
        for (i, s) in stores.iter().enumerate() {
            let before = s.last_seq();
            prop_assert_eq!(s.apply_remote(&all).unwrap(), 0, "replica {} re-applied", i);
            prop_assert_eq!(s.last_seq(), before);
        }

        // Two fresh replicas, each change on its own, different orders,
        // one of them seeing every change several times.
        let mut distinct: HashMap<Stamp, Change> = HashMap::new();
        for c in &all {
            distinct.entry(c.stamp).or_insert_with(|| c.clone());
        }
        let mut once: Vec<Change> = distinct.into_values().collect();
        once.sort_by_key(|c| c.stamp);
        rng.shuffle(&mut once);
        let mut dup: Vec<Change> = all.iter().chain(all.iter()).cloned().collect();
        rng.shuffle(&mut dup);
        for changes in [once, dup] {
            let dir = tempfile::tempdir().unwrap();
            let fresh = open(&dir);
            apply_in_chunks(&fresh, &changes, 1);
            prop_assert_eq!(&snapshot(&fresh), &first, "a fresh replica differs");
            prop_assert_eq!(&documents(&fresh), &expected);
            // And it survives a reopen unchanged.
            drop(fresh);
            let fresh = open(&dir);
            prop_assert_eq!(&snapshot(&fresh), &first, "a reopened replica differs");
        }
    }
}

/// Two replicas and a helper to hand all of one's changes to the other.
fn pair() -> (Vec<tempfile::TempDir>, Store, Store) {
    let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = open(&dirs[0]);
    let b = open(&dirs[1]);
    (dirs, a, b)
}

fn send(from: &Store, to: &Store) -> usize {
    to.apply_remote(&from.export_changes(0).unwrap()).unwrap()
}

#[test]
fn concurrent_patches_of_different_fields_both_survive() {
    let (_d, a, b) = pair();
    a.put("u", json!({"name": "x"})).unwrap();
    send(&a, &b);
    a.patch("u", json!({"email": "e"})).unwrap();
    b.patch("u", json!({"age": 3})).unwrap();
    send(&a, &b);
    send(&b, &a);
    let want = json!({"name": "x", "email": "e", "age": 3});
    assert_eq!(a.get("u").unwrap().unwrap().to_value(), want);
    assert_eq!(b.get("u").unwrap().unwrap().to_value(), want);
}

#[test]
fn the_later_of_two_concurrent_writes_to_one_field_wins_on_both_sides() {
    let (_d, a, b) = pair();
    a.put("u", json!({"v": "first"})).unwrap();
    b.put("u", json!({"v": "second"})).unwrap();
    let sa = a.get_with_metadata("u").unwrap().unwrap().metadata().stamp;
    let sb = b.get_with_metadata("u").unwrap().unwrap().metadata().stamp;
    send(&a, &b);
    send(&b, &a);
    let want = if sa > sb {
        json!({"v": "first"})
    } else {
        json!({"v": "second"})
    };
    assert_eq!(a.get("u").unwrap().unwrap().to_value(), want);
    assert_eq!(b.get("u").unwrap().unwrap().to_value(), want);
}

#[test]
fn a_delete_that_arrives_before_the_put_it_follows_still_wins() {
    let (_d, a, b) = pair();
    a.put("u", json!({"v": 1})).unwrap();
    a.delete("u").unwrap();
    let mut changes = a.export_changes(0).unwrap();
    changes.reverse();
    for c in &changes {
        b.apply_remote(std::slice::from_ref(c)).unwrap();
    }
    assert!(b.get("u").unwrap().is_none());
    assert!(
        b.get_with_metadata("u")
            .unwrap()
            .unwrap()
            .metadata()
            .deleted
    );
}

#[test]
fn a_remote_patch_after_a_local_delete_revives_the_document() {
    let (_d, a, b) = pair();
    a.put("u", json!({"v": 1, "w": 2})).unwrap();
    send(&a, &b);
    a.delete("u").unwrap();
    send(&a, &b);
    b.patch("u", json!({"w": 3})).unwrap();
    send(&b, &a);
    assert_eq!(a.get("u").unwrap().unwrap().to_value(), json!({"w": 3}));
    assert_eq!(b.get("u").unwrap().unwrap().to_value(), json!({"w": 3}));
}

#[test]
fn applying_the_same_changes_twice_applies_nothing_the_second_time() {
    let (_d, a, b) = pair();
    a.put("u", json!({"v": 1})).unwrap();
    a.patch("u", json!({"v": null, "w": 1})).unwrap();
    a.delete("u").unwrap();
    a.patch("u", json!({"z": 1})).unwrap();
    assert_eq!(send(&a, &b), 4);
    let seq = b.last_seq();
    assert_eq!(send(&a, &b), 0);
    assert_eq!(b.last_seq(), seq);
    // Sending them back to where they came from applies nothing either.
    assert_eq!(send(&b, &a), 0);
}

#[test]
fn a_remote_change_keeps_its_stamp_and_the_local_clock_moves_past_it() {
    let (_d, a, b) = pair();
    a.put("u", json!({"v": 1})).unwrap();
    send(&a, &b);
    let remote = b.export_changes(0).unwrap()[0].stamp;
    assert_eq!(remote.replica, a.replica_id());
    b.patch("u", json!({"v": 2})).unwrap();
    let local = b.export_changes(1).unwrap()[0].stamp;
    assert!(local > remote);
    assert_eq!(local.replica, b.replica_id());
}

#[test]
fn a_remote_change_with_a_clock_far_in_the_future_is_not_overtaken_by_later_local_writes() {
    let (_d, a, _b) = pair();
    let future = Stamp {
        hlc: Stamp::hlc_from_parts(u64::from(u32::MAX) * 1000, 0),
        replica: 42,
    };
    let change = Change {
        seq: 0,
        id: "u".into(),
        kind: ChangeKind::Put,
        stamp: future,
        data: Some(r#"{"v":"future"}"#.into()),
    };
    assert_eq!(a.apply_remote(&[change]).unwrap(), 1);
    a.patch("u", json!({"v": "now"})).unwrap();
    // The local clock observed the future stamp, so the local patch is later.
    assert_eq!(a.get("u").unwrap().unwrap().to_value(), json!({"v": "now"}));
}

#[test]
fn a_remote_change_with_the_largest_possible_clock_does_not_stop_local_writes() {
    let (_d, a, _b) = pair();
    let change = Change {
        seq: 0,
        id: "u".into(),
        kind: ChangeKind::Put,
        stamp: Stamp {
            hlc: u64::MAX,
            replica: 42,
        },
        data: Some(r#"{"v":"remote"}"#.into()),
    };
    // Refusing an impossible stamp is fine; accepting it must not break the
    // local clock.
    if a.apply_remote(&[change]).is_err() {
        return;
    }
    let local = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.put("w", json!({"v": "local"}))
    }));
    assert!(
        matches!(local, Ok(Ok(_))),
        "a local write after the remote change failed or panicked"
    );
    let mine = a.get_with_metadata("w").unwrap().unwrap().metadata().stamp;
    let theirs = a.get_with_metadata("u").unwrap().unwrap().metadata().stamp;
    assert!(
        mine > theirs,
        "the local clock went backwards: {mine:?} <= {theirs:?}"
    );
}
