//! A second connection that makes SQLite refuse the applier's writes, for
//! the store's integration tests of its error path.
//!
//! Owns: holding SQLite's write lock while a trigger that refuses rows is
//! added, and waiting for the applier to catch up once it is gone. Must
//! never: touch the store's files other than through SQLite.

use hearth_store::Store;
use std::path::Path;
use std::time::{Duration, Instant};

/// Opens a second connection to the store's database in `dir`, holding
/// SQLite's write lock (the applier waits for it) while it adds a trigger,
/// `refuse`, that aborts every insert into `table` once that transaction
/// commits. The test ends the transaction with `COMMIT` and later drops
/// the trigger with `DROP TRIGGER refuse`.
pub(crate) fn refusing_inserts_into(dir: &Path, table: &str) -> rusqlite::Connection {
    let other = rusqlite::Connection::open(dir.join("hearth.db")).unwrap();
    other.busy_timeout(Duration::from_secs(30)).unwrap();
    other
        .execute_batch(&format!(
            "BEGIN IMMEDIATE; CREATE TRIGGER refuse BEFORE INSERT ON {table} \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        ))
        .unwrap();
    other
}

/// Flushes `store` until the applier has caught up (it retries a refused
/// transaction after a back-off); fails the test after a minute.
pub(crate) fn flush_until_caught_up(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = store.flush() {
        assert!(
            Instant::now() < deadline,
            "the applier never caught up: {e:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
