//! The fuzz target's checks as a property test that runs on stable: both
//! `fuzz/fuzz_targets/shm_ring.rs` and this file call
//! `hearth_shm::fuzzing::hostile_ring`. Arbitrary segment contents never
//! make the ring reader panic, read outside the ring, or hand out a record
//! over the limit.
//!
//! Owns: the hostile-memory promise of the ring halves. Must never: sleep.
#![cfg(not(loom))]

use hearth_shm::{Consumer, Direction, HeapMemory, Layout};
use proptest::prelude::*;
use std::sync::Arc;

/// Cases per property: thousands natively; a few under Miri, which runs
/// each some ten thousand times slower and checks every access for
/// undefined behaviour (no file of past failures there: Miri isolates the
/// file system).
fn config() -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(4)
        }
    } else {
        ProptestConfig::with_cases(2000)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_segment_contents_are_refused_or_bounded(
        cap in any::<u8>(),
        warm in any::<u8>(),
        garbage in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        hearth_shm::fuzzing::hostile_ring(cap, warm, &garbage);
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
