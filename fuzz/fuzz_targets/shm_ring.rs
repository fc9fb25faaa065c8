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

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, data)) = data.split_first() else {
        return;
    };
    let Some((&warm, garbage)) = data.split_first() else {
        return;
    };
    hearth_shm::fuzzing::hostile_ring(cap, warm, garbage);
});
