//! hearth-shm: the shared-memory segment between a hearth server and one
//! client, and the single-producer single-consumer rings inside it.
//!
//! Owns: the segment ([`Segment`]: a sealed memfd created by the server,
//! passed to the client over the connection's Unix socket with
//! [`send_with_fd`] / [`recv_with_fd`], checked and mapped by the client),
//! its layout ([`Layout`], documented in `docs/protocol.md`, "Shared
//! memory"), the rings ([`Producer`], [`Consumer`]) with their futex
//! sleep/wake protocol, and the spin policy ([`Spinner`]). Every `unsafe`
//! block hearth needs for shared memory is in this crate (`segment.rs`),
//! each with a `// SAFETY:` comment; every atomic goes through `sync.rs`,
//! which switches to loom under `--cfg loom`.
//!
//! Must never: trust the peer. Every index and length read from the segment
//! is checked before use, records are copied out before anyone decodes
//! them, memory is touched only as atomics, and every wait has a timeout the
//! caller chose or a [`Waker`] the caller can fire. What a frame *means* is
//! not this crate's business: it carries opaque records.
//!
//! ```
//! use hearth_shm::{Consumer, Direction, HeapMemory, Layout, Producer};
//! use std::sync::Arc;
//! // The same protocol over plain memory (what tests and Miri use); a
//! // `Segment` works the same way across processes.
//! let mem = Arc::new(HeapMemory::new(Layout::for_memory(4096, 4096)?));
//! let mut requests = Producer::new(mem.clone(), Direction::ClientToServer);
//! let mut server_in = Consumer::new(mem.clone(), Direction::ClientToServer);
//! requests.push(&[b"header", b"payload"])?;
//! let mut record = Vec::new();
//! assert!(server_in.try_pop(&mut record)?);
//! assert_eq!(record, b"headerpayload");
//! # Ok::<(), hearth_shm::ShmError>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
#[cfg(not(loom))]
mod fdpass;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
mod layout;
#[cfg(not(loom))]
mod mapped;
#[cfg(not(loom))]
mod peer_thread;
mod placement;
mod ring;
#[cfg(not(loom))]
mod segment;
mod spin;
mod sync;

pub use error::ShmError;
#[cfg(not(loom))]
pub use fdpass::{recv_with_fd, send_with_fd};
pub use layout::{
    C2S_CTRL_OFFSET, CTRL_BYTES, Direction, HEADER_BYTES, HEADER_LEN, LAYOUT_VERSION, Layout,
    MAGIC, MAX_CAPACITY, MIN_CAPACITY, MIN_SEGMENT_CAPACITY, S2C_CTRL_OFFSET,
};
#[cfg(not(loom))]
pub use mapped::MappedAppend;
#[cfg(not(loom))]
pub use peer_thread::{ThreadProbe, this_thread_id, thread_state};
pub use placement::move_off;
pub use ring::{
    AwayWatch, Consumer, HeapMemory, OWN_AHEAD, Producer, RECORD_HEADER, RingCtrl, RingMemory,
    RoomWaiter, STREAM_FROM, TurnHint, Waker, max_record, record_bytes, this_cpu,
};
#[cfg(not(loom))]
pub use segment::{Segment, write_raw};
pub use spin::{SpinClaim, Spinner, SteadySpinner, cores, spinning};

#[cfg(all(test, not(loom)))]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<crate::Segment>();
        assert_send_sync::<crate::HeapMemory>();
        assert_send_sync::<crate::Producer<crate::Segment>>();
        assert_send_sync::<crate::Consumer<crate::Segment>>();
        assert_send_sync::<crate::Waker<crate::Segment>>();
        assert_send_sync::<crate::RoomWaiter<crate::Segment>>();
        assert_send_sync::<crate::AwayWatch<crate::Segment>>();
        assert_send_sync::<crate::ShmError>();
        assert_send_sync::<crate::ThreadProbe>();
        assert_send_sync::<crate::TurnHint>();
        assert_send_sync::<crate::Spinner>();
        assert_send_sync::<crate::SteadySpinner>();
        assert_send_sync::<crate::SpinClaim>();
    }
}
