//! The fuzz target's checks (`fuzz/fuzz_targets/shm_ring.rs`) as a
//! property test that runs on stable: arbitrary segment contents never
//! make the ring reader panic, read outside the ring, or hand out a record
//! over the limit.
//!
//! Owns: the hostile-memory promise of the ring halves. Must never: sleep.
#![cfg(not(loom))]

use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
use proptest::prelude::*;
use std::sync::Arc;

fn exercise(cap: u8, warm: u8, garbage: &[u8]) {
    let capacity = 64usize << (cap % 6);
    let mem = Arc::new(HeapMemory::new(
        Layout::for_memory(capacity, capacity).unwrap(),
    ));
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
    let _ = server_rx.wait_for_data(None, &|| true);
    for i in 0..64usize {
        match server_tx.try_push(&[&[i as u8; 5]]) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_segment_contents_are_refused_or_bounded(
        cap in any::<u8>(),
        warm in any::<u8>(),
        garbage in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        exercise(cap, warm, &garbage);
    }

    #[test]
    fn plausible_indices_over_garbage_records_are_refused_or_bounded(
        cap in any::<u8>(),
        tail_words in 0u64..512,
        records in prop::collection::vec(any::<u8>(), 8..4096),
    ) {
        // A tail that passes the index checks, over garbage records: the
        // record checks must catch what the index checks cannot.
        let capacity = 64usize << (cap % 6);
        let mem = Arc::new(HeapMemory::new(Layout::for_memory(capacity, capacity).unwrap()));
        let mut rx = Consumer::new(mem.clone(), Direction::ClientToServer);
        // `scribble` fills, in order: tail, closed, head, four wait words,
        // then the data words.
        let tail = (tail_words * 8) % (capacity as u64 + 8);
        let mut bytes = tail.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 6 * 8]);
        bytes.extend(records.iter().cycle().take(capacity));
        mem.scribble(&bytes);
        let mut out = Vec::new();
        for _ in 0..64 {
            match rx.try_pop(&mut out) {
                Ok(true) => prop_assert!(out.len() <= rx.max_record()),
                Ok(false) | Err(_) => break,
            }
        }
    }
}
