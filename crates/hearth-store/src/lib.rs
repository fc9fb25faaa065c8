//! hearth-store: hearth's durable document store.
//!
//! Owns: documents on disk — the checksummed journal that acknowledges
//! writes, the SQLite database (WAL) the background applier materialises them
//! into, CRDT merge across replicas, the change log and subscriptions, and
//! full-text search. The format and invariants are in `docs/design.md`.
//! Must never: acknowledge a write that a `kill -9` could lose, drop a change
//! silently, or leave a storage error only in a log.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use hearth_store::{ListOptions, Options, Store};
//! use serde_json::json;
//!
//! let store = Store::open(dir.path(), Options::default())?;
//! store.put("user:1", json!({"type": "User", "name": "Alice"}))?;
//! store.put("user:2", json!({"type": "User", "name": "Bob"}))?;
//! let users: Vec<_> = store
//!     .list(ListOptions { prefix: Some("user:".into()), ..Default::default() })?
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(users.len(), 2);
//! # Ok::<(), hearth_store::StoreError>(())
//! ```

mod crdt;
mod error;
mod hlc;
mod journal;
mod sql;
mod store;
mod types;

pub use crdt::ChangeKind;
pub use error::{Result, StoreError};
pub use hlc::Stamp;
#[cfg(target_os = "linux")]
pub use journal::MappedJournalIo;
pub use journal::{JournalFile, JournalIo, OsJournalIo, SyncHandle};
pub use store::{List, Store, Subscription};
pub use types::{
    Change, Document, Durability, Event, Hit, ListOptions, Metadata, Options, Recovery, Stats,
    WriteOp,
};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<crate::Store>();
        assert_send_sync::<crate::Document>();
        assert_send_sync::<crate::Change>();
        assert_send_sync::<crate::StoreError>();
        assert_send_sync::<crate::Options>();
        assert_send_sync::<crate::Stats>();
        assert_send::<crate::List>();
        assert_send::<crate::Subscription>();
    }
}
