//! The hostile-ring exercise shared by the `shm_ring` fuzz target and the
//! `hostile_ring` property test, so both check exactly the same thing.
//!
//! Owns: driving a ring pair over plain memory into an arbitrary state and
//! reading it the way the server would. Must never: sleep (every wait is
//! given an abort condition that already holds), or be used outside tests
//! and fuzzing (it panics on purpose when a check fails).

use crate::{Consumer, Direction, HeapMemory, Layout, Producer};
use std::sync::Arc;

/// Builds a ring pair with capacity `64 << (cap % 6)` bytes, pushes and pops
/// `warm % 32` legitimate records each way (so positions are anywhere,
/// wrapped or not), writes `garbage` over every control field and data word
/// (cycled, see [`HeapMemory::scribble`]), then reads and writes as the
/// server would. Panics if a record handed out is over the ring's limit or
/// the warm-up fails; a corrupt ring must be reported as an error, never
/// trusted, never read outside the ring (indexing is bounds-checked).
pub fn hostile_ring(cap: u8, warm: u8, garbage: &[u8]) {
    let capacity = 64usize << (cap % 6);
    let Ok(layout) = Layout::for_memory(capacity, capacity) else {
        return;
    };
    let mem = Arc::new(HeapMemory::new(layout));
    // The server's view: it reads client→server, writes server→client.
    let mut client_tx = Producer::new(mem.clone(), Direction::ClientToServer);
    let mut server_rx = Consumer::new(mem.clone(), Direction::ClientToServer);
    let mut server_tx = Producer::new(mem.clone(), Direction::ServerToClient);
    let mut client_rx = Consumer::new(mem.clone(), Direction::ServerToClient);
    let mut out = Vec::new();
    for i in 0..usize::from(warm % 32) {
        let body = vec![i as u8; i % (server_rx.max_record() + 1)];
        assert!(matches!(client_tx.push(&[&body]), Ok(true)));
        assert!(matches!(server_rx.try_pop(&mut out), Ok(true)));
        assert_eq!(out, body);
        assert!(matches!(server_tx.push(&[&body]), Ok(true)));
        assert!(matches!(client_rx.try_pop(&mut out), Ok(true)));
    }

    mem.scribble(garbage);

    for _ in 0..64 {
        match server_rx.try_pop(&mut out) {
            Ok(true) => assert!(out.len() <= server_rx.max_record()),
            Ok(false) | Err(_) => break,
        }
    }
    let _ = server_rx.has_data();
    let _ = server_rx.is_closed();
    // The hints the server reads from the client's side of the segment.
    let _ = server_rx.peer_thread();
    let _ = server_rx.peer_turns();
    // Never sleeps: the abort condition holds.
    let _ = server_rx.wait_for_data(None, &|| true);
    for i in 0..64usize {
        match server_tx.try_push(&[&[i as u8; 5]]) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
    let _ = server_tx.has_room(1);
}
