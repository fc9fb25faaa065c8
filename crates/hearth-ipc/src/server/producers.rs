//! Counts of the streams' producers on the blocking pool: how many run
//! now, how many have started, and the most that ran at once.
//!
//! Owns: those counts, kept by a guard that a producer's closure holds
//! from its first line to its last (`router.rs`, `stream`), and their
//! report (`ServerStats::streams_running`; [`StreamProducers`],
//! `Server::stream_producers`, for tests), so that a
//! test can see that a connection's streams hold no more pool threads
//! than its slots (`slots.rs`) — cancelled streams whose producer still
//! runs included. Must never: hold or hand out a slot, or decide anything:
//! it only counts, and signals each change to `Server::wait_for`.

use super::Shared;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The counts, in `Shared`.
#[derive(Debug, Default)]
pub(crate) struct Producers {
    running: AtomicUsize,
    started: AtomicU64,
    most: AtomicUsize,
}

/// The streams' producers on the blocking pool, as
/// `Server::stream_producers` reports them (for tests: a producer holds a
/// pool thread from its start to its end, whether or not its stream was
/// cancelled meanwhile).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamProducers {
    /// Producers running now.
    pub running: usize,
    /// Producers started since the server started.
    pub started: u64,
    /// The most that ran at once since the server started.
    pub most: usize,
}

impl Producers {
    /// The counts now.
    pub(crate) fn counts(&self) -> StreamProducers {
        StreamProducers {
            running: self.running.load(Ordering::SeqCst),
            started: self.started.load(Ordering::SeqCst),
            most: self.most.load(Ordering::SeqCst),
        }
    }
}

/// Counts one producer as running until dropped.
pub(crate) struct Producing(Arc<Shared>);

impl Producing {
    /// A producer of one of `shared`'s streams starts.
    pub(crate) fn start(shared: Arc<Shared>) -> Producing {
        // SeqCst: `Server::wait_for` reads these after `bump`.
        let producers = &shared.producers;
        let running = producers.running.fetch_add(1, Ordering::SeqCst) + 1;
        producers.most.fetch_max(running, Ordering::SeqCst);
        producers.started.fetch_add(1, Ordering::SeqCst);
        shared.bump();
        Producing(shared)
    }
}

impl Drop for Producing {
    fn drop(&mut self) {
        self.0.producers.running.fetch_sub(1, Ordering::SeqCst);
        self.0.bump();
    }
}
