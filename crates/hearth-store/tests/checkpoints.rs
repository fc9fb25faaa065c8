//! The applier checkpoints SQLite's WAL itself, outside its transactions,
//! once the WAL holds 1,000 pages (docs/design.md, "Checkpoints"): under
//! sustained writes the WAL file, which SQLite reuses from its start after
//! a checkpoint and never shrinks, stays near that size.

use hearth_store::{Options, Store};
use serde_json::json;

#[test]
fn sustained_writes_keep_the_wal_near_a_thousand_pages() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        // Small transactions (~1 MB of documents each), so that the WAL's
        // size is the checkpoints' doing, not one transaction's.
        apply_batch: 500,
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let text = "x".repeat(2000);
    // 24 MB of documents: without checkpoints, a WAL at least that big;
    // with SQLite's automatic ones at 4,000 pages, 16 MiB.
    for i in 0..12_000 {
        store
            .put(&format!("d:{i}"), json!({ "n": i, "text": text }))
            .unwrap();
    }
    store.flush().unwrap();
    let wal = std::fs::metadata(dir.path().join("hearth.db-wal"))
        .unwrap()
        .len();
    assert!(
        wal <= 8 << 20,
        "a WAL of {:.1} MiB (1,000 pages are 3.9 MiB)",
        wal as f64 / (1 << 20) as f64
    );
    assert_eq!(store.stats().unwrap().documents, 12_000);
}
