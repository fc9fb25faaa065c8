//! The applier's CPU priority (Linux): by default the thread that
//! materialises acknowledged writes into SQLite runs at background priority
//! (nice 19), so on a busy machine it takes idle CPU instead of CPU from
//! the threads acknowledging writes; `background_applier: false` keeps it
//! at the process's priority. Read from `/proc`, on a real store.

#![cfg(target_os = "linux")]

use hearth_store::{Options, Store};
use serde_json::json;
use std::fs;

/// The nice value in a `/proc/.../stat` line (field 19; the fields after
/// the command name, which may hold spaces, start at field 3).
fn nice_in(stat: &str) -> Option<i64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19 - 3)?.parse().ok()
}

/// The nice values of this process's threads named `name` (the tests of
/// this file run in parallel, each with its own store and applier: each
/// looks for the value only its own configuration can produce).
fn nices_of_threads(name: &str) -> Vec<i64> {
    let tasks = fs::read_dir("/proc/self/task").expect("procfs is mounted");
    tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let comm = fs::read_to_string(dir.join("comm")).ok()?;
            (comm.trim_end() == name).then_some(())?;
            nice_in(&fs::read_to_string(dir.join("stat")).ok()?)
        })
        .collect()
}

fn own_nice() -> i64 {
    let stat = fs::read_to_string("/proc/thread-self/stat").expect("procfs is mounted");
    nice_in(&stat).expect("stat has a nice field")
}

#[test]
fn the_applier_runs_at_background_priority_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.put("a", json!({"n": 1})).unwrap();
    store.flush().unwrap();
    assert!(nices_of_threads("hearth-applier").contains(&19));
}

#[test]
fn background_applier_false_keeps_the_process_priority() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        background_applier: false,
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    store.put("a", json!({"n": 1})).unwrap();
    store.flush().unwrap();
    // The test runner itself is not at 19, or this test could not tell.
    assert_ne!(own_nice(), 19);
    assert!(nices_of_threads("hearth-applier").contains(&own_nice()));
}
