//! Feeds arbitrary segment contents to the shared-memory ring reader (and
//! to the writer's reading of the reader's position), as a hostile peer
//! could leave them.
//!
//! Input layout: byte 0 picks the ring capacity (64 B to 2 KiB), byte 1 the
//! number of legitimate records pushed and popped first (so positions are
//! anywhere, wrapped or not), the rest is written over every control field
//! and data word of both rings (cycled). Checks: no panic, no read outside
//! the ring (indexing is bounds-checked), every record handed out is within
//! the ring's record limit, and a corrupt ring is reported, not trusted.

#![no_main]

use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, data)) = data.split_first() else {
        return;
    };
    let Some((&warm, garbage)) = data.split_first() else {
        return;
    };
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
        assert!(client_tx.push(&[&body]).unwrap());
        assert!(server_rx.try_pop(&mut out).unwrap());
        assert_eq!(out, body);
        assert!(server_tx.push(&[&body]).unwrap());
        assert!(client_rx.try_pop(&mut out).unwrap());
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
    // Never sleeps: the abort condition holds.
    let _ = server_rx.wait_for_data(None, &|| true);
    for i in 0..64usize {
        match server_tx.try_push(&[&[i as u8; 5]]) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
    let _ = server_tx.has_room(1);
});
