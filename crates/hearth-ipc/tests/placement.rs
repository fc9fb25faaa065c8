//! Where the server's ring thread runs: a ring thread that finds the
//! client's thread on its own core moves to another one, so that both can
//! spin instead of handing one core back and forth through the futex.
//!
//! Owns: that promise, over a real shared-memory connection, with the two
//! threads placed on one core by hand. Alone in its test binary (so the
//! only ring thread in the process is this test's). Must never: assert a
//! time; it watches where the thread runs, bounded by a generous count of
//! calls.
#![cfg(target_os = "linux")]

mod common;

use common::{Fx, Kind};
use rustix::thread::{CpuSet, Pid, sched_getaffinity, sched_setaffinity};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The threads of this process named `name`, by thread id.
fn threads_named(name: &str) -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim_end() == name).then(|| entry.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

/// The core thread `tid` of this process last ran on (`/proc`'s stat,
/// field 39).
fn last_cpu(tid: i32) -> usize {
    let stat = format!("/proc/self/task/{tid}/stat");
    common::stat_fields(std::path::Path::new(&stat))[36]
        .parse()
        .unwrap()
}

fn only(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu);
    set
}

#[test]
fn a_ring_thread_on_the_clients_core_moves_to_another() {
    let allowed = sched_getaffinity(None).unwrap();
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    if cpus.len() < 2 {
        eprintln!("skipped: this process may run on one core only");
        return;
    }
    let shared = cpus[0];
    // Every other core is kept busy, as a JIT compiler's or a garbage
    // collector's threads keep them in a real application: a wake-up then
    // finds no idle core to place the ring thread on, and the two threads
    // stay together unless the ring thread moves itself.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = cpus[1..]
        .iter()
        .map(|&cpu| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                sched_setaffinity(None, &only(cpu)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let fx = Fx::start(Kind::Shm, |b| b);
    let client = fx.client();
    client.put("k", json!({"v": 1})).unwrap();
    let ring = threads_named("hearth-shm-conn");
    assert_eq!(ring.len(), 1, "one connection, one ring thread");
    let ring = Pid::from_raw(ring[0]).unwrap();
    // The client's thread stays on `shared` for the whole test; the ring
    // thread is put there too, then allowed everywhere again: nothing but
    // its own decision need move it.
    sched_setaffinity(None, &only(shared)).unwrap();
    sched_setaffinity(Some(ring), &only(shared)).unwrap();
    client.get_json("k").unwrap();
    assert_eq!(last_cpu(ring.as_raw_nonzero().get()), shared);
    sched_setaffinity(Some(ring), &allowed).unwrap();
    let mut moved = false;
    for _ in 0..200 {
        for _ in 0..100 {
            client.get_json("k").unwrap();
        }
        if last_cpu(ring.as_raw_nonzero().get()) != shared {
            moved = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in busy {
        thread.join().unwrap();
    }
    sched_setaffinity(None, &allowed).unwrap();
    assert!(moved, "the ring thread stayed on the client's core");
}
