//! Subscriptions and the change log: every change, in order, none dropped.
//!
//! A subscriber follows the change log from a sequence number. Recent changes
//! come from the in-memory ring; a live subscriber that falls out of the ring
//! gets exactly one explicit `Lagged { resume_from }` and then every change
//! from `resume_from` on, read from SQLite (docs/design.md, "Subscriptions").
//! `changes_since` pages through the same log.
//!
//! Waiting uses `next_timeout` only where the test *expects* nothing to come;
//! every expected event is already committed when it is read, so no test
//! depends on timing.

use hearth_store::{Change, ChangeKind, Event, Options, Store, Subscription, WriteOp};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait for an event that must not come.
const IDLE: Duration = Duration::from_millis(50);
/// Long enough for an event that must come (it is already committed).
const DUE: Duration = Duration::from_secs(30);

fn open(ring: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            ring_capacity: ring,
            ..Options::default()
        },
    )
    .unwrap();
    (dir, store)
}

/// Writes `n` changes of mixed kinds starting with document number `from`;
/// returns the (seq, id, kind) of each.
fn write_mixed(store: &Store, from: usize, n: usize) -> Vec<(u64, String, ChangeKind)> {
    let mut out = Vec::new();
    for i in from..from + n {
        let id = format!("doc:{}", i % 7);
        match i % 4 {
            0 | 1 => {
                let seq = store
                    .put(&id, json!({"i": i, "text": format!("word{i}")}))
                    .unwrap();
                out.push((seq, id, ChangeKind::Put));
            }
            2 => {
                let seq = store.patch(&id, json!({"p": i, "gone": null})).unwrap();
                out.push((seq, id, ChangeKind::Patch));
            }
            _ => match store.delete(&id).unwrap() {
                Some(seq) => out.push((seq, id, ChangeKind::Delete)),
                None => {
                    let seq = store.put(&id, json!({"i": i})).unwrap();
                    out.push((seq, id, ChangeKind::Put));
                }
            },
        }
    }
    out
}

fn next_change(sub: &mut Subscription) -> Arc<Change> {
    match sub.next_timeout(DUE).expect("an event is due").unwrap() {
        Event::Change(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn assert_idle(sub: &mut Subscription) {
    if let Some(ev) = sub.next_timeout(IDLE) {
        panic!("expected no event, got {ev:?}");
    }
}

#[test]
fn subscribe_from_zero_sees_every_change_in_order() {
    let (_dir, store) = open(65_536);
    let written = write_mixed(&store, 0, 200);
    let mut sub = store.subscribe(0);
    for (seq, id, kind) in &written {
        let c = next_change(&mut sub);
        assert_eq!((c.seq, &c.id, c.kind), (*seq, id, *kind));
    }
    assert_idle(&mut sub);
    assert_eq!(sub.position(), store.last_seq() + 1);
}

#[test]
fn sequence_numbers_start_at_one_and_have_no_gaps() {
    let (_dir, store) = open(65_536);
    let written = write_mixed(&store, 0, 50);
    let (first, last) = store
        .batch(vec![
            WriteOp::Put {
                id: "b:1".into(),
                data: json!({"a": 1}),
            },
            WriteOp::Patch {
                id: "b:1".into(),
                fields: json!({"b": 2}),
            },
            WriteOp::Delete { id: "b:2".into() },
        ])
        .unwrap();
    let seqs: Vec<u64> = written.iter().map(|w| w.0).chain(first..=last).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let logged: Vec<u64> = store
        .changes_since(0, 1000)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(logged, seqs);
}

#[test]
fn a_change_carries_the_written_data_and_stamp() {
    let (_dir, store) = open(65_536);
    store.put("u:1", json!({"name": "Alice"})).unwrap();
    store.patch("u:1", json!({"name": null, "age": 3})).unwrap();
    store.delete("u:1").unwrap();
    let mut sub = store.subscribe(1);
    let put = next_change(&mut sub);
    let patch = next_change(&mut sub);
    let del = next_change(&mut sub);
    assert_eq!(put.data_value(), Some(json!({"name": "Alice"})));
    assert_eq!(patch.data_value(), Some(json!({"name": null, "age": 3})));
    assert_eq!((del.kind, del.data.clone()), (ChangeKind::Delete, None));
    assert!(put.stamp < patch.stamp && patch.stamp < del.stamp);
    assert_eq!(put.stamp.replica, store.replica_id());
    let logged = store.changes_since(0, 10).unwrap();
    assert_eq!(
        logged,
        vec![(*put).clone(), (*patch).clone(), (*del).clone()]
    );
}

#[test]
fn subscribe_from_a_later_seq_starts_there() {
    let (_dir, store) = open(65_536);
    write_mixed(&store, 0, 30);
    let mut sub = store.subscribe(17);
    assert_eq!(next_change(&mut sub).seq, 17);
    assert_eq!(next_change(&mut sub).seq, 18);
}

#[test]
fn next_timeout_returns_none_when_nothing_is_written() {
    let (_dir, store) = open(65_536);
    let mut sub = store.subscribe(0);
    assert_idle(&mut sub);
    store.put("a:1", json!({})).unwrap();
    assert_eq!(next_change(&mut sub).seq, 1);
    assert_idle(&mut sub);
}

#[test]
fn a_live_subscriber_sees_a_change_written_after_it_started_waiting() {
    let (_dir, store) = open(65_536);
    let mut sub = store.subscribe(0);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || store.put("late:1", json!({"x": 1})).unwrap())
    };
    // Blocks until the writer's change arrives; no timing assumption.
    let ev = sub.next().expect("a change").unwrap();
    let seq = writer.join().unwrap();
    match ev {
        Event::Change(c) => assert_eq!((c.seq, c.id.as_str()), (seq, "late:1")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_subscriber_that_falls_behind_the_ring_gets_one_lagged_then_every_change() {
    let (_dir, store) = open(16);
    let first = write_mixed(&store, 0, 5);
    let mut sub = store.subscribe(0);
    for (seq, ..) in &first {
        assert_eq!(next_change(&mut sub).seq, *seq);
    }
    // The subscriber is live and caught up; now it stops reading while far
    // more than the ring holds is written.
    let behind = write_mixed(&store, 5, 100);
    let ev = sub.next_timeout(DUE).expect("an event is due").unwrap();
    assert_eq!(
        ev,
        Event::Lagged {
            resume_from: first.last().unwrap().0 + 1
        }
    );
    for (seq, id, kind) in &behind {
        let c = next_change(&mut sub);
        assert_eq!((c.seq, &c.id, c.kind), (*seq, id, *kind));
    }
    assert_idle(&mut sub);
    // Back in the ring: new changes arrive without another Lagged.
    let more = write_mixed(&store, 105, 3);
    for (seq, ..) in &more {
        assert_eq!(next_change(&mut sub).seq, *seq);
    }
    assert_idle(&mut sub);
}

#[test]
fn a_subscriber_starting_before_the_ring_reads_the_log_without_losing_anything() {
    let (_dir, store) = open(16);
    let written = write_mixed(&store, 0, 300);
    let mut sub = store.subscribe(0);
    let mut seqs = Vec::new();
    loop {
        match sub.next_timeout(IDLE) {
            None => break,
            Some(Ok(Event::Change(c))) => seqs.push(c.seq),
            Some(Ok(Event::Lagged { resume_from })) => {
                assert_eq!(resume_from, seqs.last().map_or(1, |s| s + 1));
            }
            Some(Err(e)) => panic!("{e}"),
        }
    }
    assert_eq!(seqs, written.iter().map(|w| w.0).collect::<Vec<_>>());
}

#[test]
fn a_subscriber_racing_a_writer_through_a_tiny_ring_misses_nothing() {
    let (_dir, store) = open(16);
    let mut sub = store.subscribe(0);
    const N: u64 = 3000;
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                store
                    .put(&format!("r:{}", i % 50), json!({"i": i}))
                    .unwrap();
            }
        })
    };
    let mut expect = 1;
    let mut lagged = 0;
    while expect <= N {
        match sub.next().expect("the store is open").unwrap() {
            Event::Change(c) => {
                assert_eq!(c.seq, expect, "a change was skipped or repeated");
                assert_eq!(c.data_value().unwrap()["i"], json!(expect - 1));
                expect += 1;
            }
            Event::Lagged { resume_from } => {
                assert_eq!(resume_from, expect);
                lagged += 1;
            }
        }
    }
    writer.join().unwrap();
    assert_idle(&mut sub);
    println!("lagged {lagged} times");
}

#[test]
fn after_a_reopen_subscribe_from_zero_replays_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        write_mixed(&store, 0, 120)
    };
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let more = write_mixed(&store, 120, 5);
    let mut sub = store.subscribe(0);
    let mut seqs = Vec::new();
    while let Some(ev) = sub.next_timeout(IDLE) {
        if let Event::Change(c) = ev.unwrap() {
            seqs.push(c.seq);
        }
    }
    let want: Vec<u64> = written.iter().chain(&more).map(|w| w.0).collect();
    assert_eq!(seqs, want);
}

#[test]
fn changes_since_pages_through_the_log_in_order() {
    let (_dir, store) = open(65_536);
    let written = write_mixed(&store, 0, 25);
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = store.changes_since(after, 4).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = page.last().unwrap().seq;
        pages.push(page);
    }
    assert_eq!(pages.len(), 7);
    let got: Vec<(u64, String, ChangeKind)> = pages
        .into_iter()
        .flatten()
        .map(|c| (c.seq, c.id, c.kind))
        .collect();
    assert_eq!(got, written);
}

#[test]
fn changes_since_the_last_seq_is_empty() {
    let (_dir, store) = open(65_536);
    write_mixed(&store, 0, 10);
    assert!(
        store
            .changes_since(store.last_seq(), 10)
            .unwrap()
            .is_empty()
    );
    assert!(store.changes_since(u64::MAX / 2, 10).unwrap().is_empty());
    assert_eq!(store.changes_since(9, 10).unwrap().len(), 1);
}

#[test]
fn changes_since_sees_a_write_made_just_before_it() {
    let (_dir, store) = open(65_536);
    for i in 0..200 {
        let seq = store.put("hot:1", json!({"i": i})).unwrap();
        let c = store.changes_since(seq - 1, 1).unwrap();
        assert_eq!(c.len(), 1, "change {seq} not yet in the log");
        assert_eq!(c[0].seq, seq);
    }
}

#[test]
fn export_changes_is_the_whole_log() {
    let (_dir, store) = open(16);
    let written = write_mixed(&store, 0, 40);
    let exported: Vec<u64> = store
        .export_changes(0)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(exported, written.iter().map(|w| w.0).collect::<Vec<_>>());
    assert_eq!(store.export_changes(30).unwrap().len(), 10);
}

#[test]
fn a_change_round_trips_through_its_json_form() {
    let (_dir, store) = open(65_536);
    store.put("j:1", json!({"a": [1, 2], "b": "x"})).unwrap();
    store.patch("j:1", json!({"a": null})).unwrap();
    store.delete("j:1").unwrap();
    for c in store.changes_since(0, 10).unwrap() {
        assert_eq!(Change::from_json(&c.to_json()), Some(c));
    }
}
