//! Loom models of the ring protocol: every interleaving (within a
//! preemption bound) of a producer and a consumer on a tiny ring.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p hearth-shm --test loom --release`
//!
//! Owns: the concurrency promises of `ring.rs` — records arrive whole and
//! in order, wrap-around is seamless, and the sleep/wake handshake never
//! loses a wake-up (a lost one is a loom deadlock: the emulated futex has no
//! timeout). Must never: use a real futex, sleep, or a ring big enough to
//! make the state space explode.
#![cfg(loom)]

use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
use loom::thread;
use std::sync::Arc;

const DIR: Direction = Direction::ClientToServer;

fn ring(capacity: usize) -> (Producer<HeapMemory>, Consumer<HeapMemory>) {
    let mem = Arc::new(HeapMemory::new(
        Layout::for_memory(capacity, capacity).unwrap(),
    ));
    (Producer::new(mem.clone(), DIR), Consumer::new(mem, DIR))
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Pops one record, yielding to the model while the ring is empty.
fn pop_spinning(rx: &mut Consumer<HeapMemory>, out: &mut Vec<u8>) {
    while !rx.try_pop(out).unwrap() {
        thread::yield_now();
    }
}

#[test]
fn records_arrive_whole_and_in_order() {
    model(|| {
        let (mut tx, mut rx) = ring(64);
        let producer = thread::spawn(move || {
            assert!(tx.push(&[b"first..."]).unwrap());
            assert!(tx.push(&[b"second, longer"]).unwrap());
        });
        let mut out = Vec::new();
        pop_spinning(&mut rx, &mut out);
        assert_eq!(out, b"first...");
        pop_spinning(&mut rx, &mut out);
        assert_eq!(out, b"second, longer");
        producer.join().unwrap();
    });
}

#[test]
fn wrap_around_keeps_records_intact() {
    model(|| {
        // 64-byte ring, 24-byte records (32 bytes each): the third record
        // reuses the first one's bytes, so the producer must wait for the
        // consumer's head.
        let (mut tx, mut rx) = ring(64);
        let producer = thread::spawn(move || {
            for round in 1..=3u8 {
                while !tx.push(&[&[round; 24]]).unwrap() {
                    thread::yield_now();
                }
            }
        });
        let mut out = Vec::new();
        for round in 1..=3u8 {
            pop_spinning(&mut rx, &mut out);
            assert_eq!(out, [round; 24]);
        }
        producer.join().unwrap();
    });
}

#[test]
fn a_sleeping_consumer_is_never_left_asleep() {
    model(|| {
        let (mut tx, mut rx) = ring(64);
        let producer = thread::spawn(move || {
            assert!(tx.push(&[b"wake up"]).unwrap());
        });
        // Sleep protocol only (no spinning): without the fences or the
        // re-check, some interleaving sleeps forever and loom reports it.
        while !rx.wait_for_data(None, &|| false).unwrap() {}
        let mut out = Vec::new();
        assert!(rx.try_pop(&mut out).unwrap());
        assert_eq!(out, b"wake up");
        producer.join().unwrap();
    });
}

#[test]
fn a_producer_sleeping_for_room_is_never_left_asleep() {
    model(|| {
        let (mut tx, mut rx) = ring(64);
        assert!(tx.push(&[&[1; 24]]).unwrap());
        assert!(tx.push(&[&[2; 24]]).unwrap());
        let consumer = thread::spawn(move || {
            let mut out = Vec::new();
            assert!(rx.try_pop(&mut out).unwrap());
            assert_eq!(out, [1; 24]);
        });
        while !tx.wait_for_room(24, None, &|| false).unwrap() {}
        assert!(tx.push(&[&[3; 24]]).unwrap());
        consumer.join().unwrap();
    });
}

#[test]
fn a_waker_ends_the_sleep_of_an_aborting_consumer() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    model(|| {
        let (_tx, rx) = ring(64);
        let stop = Arc::new(AtomicBool::new(false));
        let waker = rx.waker();
        let stopper = {
            let stop = stop.clone();
            thread::spawn(move || {
                stop.store(true, Ordering::Relaxed);
                waker.wake();
            })
        };
        // The abort flag is only Relaxed: it is published by the Release
        // bump in `Waker::wake` and the Acquire load in `wait_for_data`.
        while !stop.load(Ordering::Relaxed) {
            rx.wait_for_data(None, &|| stop.load(Ordering::Relaxed))
                .unwrap();
        }
        stopper.join().unwrap();
    });
}
