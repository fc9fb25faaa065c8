//! `stats` and `repair`: looking after a data directory.
//!
//! Owns: printing the store's counters and running the journal repair with a
//! report of what was set aside. Must never: delete anything — a repair sets
//! damaged data aside beside the journal, where it can still be inspected.

use crate::args::GlobalArgs;
use crate::error::{CliError, Result};
use crate::open::open_store;
use crate::output::Output;
use serde_json::json;
use std::fmt::Write as _;

/// `hearth stats`.
pub(crate) fn stats(g: &GlobalArgs, out: &mut Output) -> Result<()> {
    let store = open_store(g, false)?;
    let s = store.stats()?;
    let value = serde_json::to_value(&s)
        .map_err(|e| CliError::input(format!("the statistics cannot be encoded: {e}")))?;
    let durability = match s.durability {
        hearth_store::Durability::Journal => "journal",
        hearth_store::Durability::Fsync => "fsync",
    };
    let rows: [(&str, String); 13] = [
        ("data dir", s.data_dir.display().to_string()),
        ("replica id", format!("{:016x}", s.replica_id)),
        ("durability", durability.to_string()),
        ("documents", s.documents.to_string()),
        ("tombstones", s.tombstones.to_string()),
        ("last seq", s.last_seq.to_string()),
        ("applied seq", s.applied_seq.to_string()),
        ("pending ops", s.pending_ops.to_string()),
        ("cache entries", s.cache_entries.to_string()),
        ("cache bytes", s.cache_bytes.to_string()),
        ("journal segments", s.journal_segments.to_string()),
        ("journal bytes", s.journal_bytes.to_string()),
        ("database bytes", s.database_bytes.to_string()),
    ];
    out.result(&value, table(&rows))
}

/// `hearth repair`.
pub(crate) fn repair(g: &GlobalArgs, out: &mut Output) -> Result<()> {
    let store = open_store(g, true)?;
    // Apply whatever was replayed, so the database is whole again.
    store.flush()?;
    let r = store.recovery().clone();
    let dir = store.dir().to_path_buf();
    let value = json!({
        "data_dir": dir,
        "set_aside": r.set_aside,
        "torn_tail_bytes": r.torn_tail_bytes,
        "replayed_ops": r.replayed_ops,
    });
    let mut human = String::new();
    if r.set_aside.is_empty() && r.torn_tail_bytes == 0 {
        let _ = write!(
            human,
            "nothing to repair in {}: the journal is intact",
            dir.display()
        );
    } else {
        let _ = write!(human, "repaired {}", dir.display());
        for p in &r.set_aside {
            let _ = write!(
                human,
                "\n  set aside {} (hearth no longer reads it; keep it for inspection or delete it)",
                p.display()
            );
        }
        if r.torn_tail_bytes > 0 {
            let _ = write!(
                human,
                "\n  dropped an incomplete last record of {} bytes (never acknowledged)",
                r.torn_tail_bytes
            );
        }
    }
    if r.replayed_ops > 0 {
        let _ = write!(
            human,
            "\n  replayed {} journaled operations into the database",
            r.replayed_ops
        );
    }
    out.result(&value, human)
}

/// Two columns, the first padded to its widest entry.
fn table(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_the_second_column() {
        let t = table(&[("a", "1".into()), ("long key", "2".into())]);
        assert_eq!(t, "a         1\nlong key  2");
    }
}
