//! Opening the store for a command.
//!
//! Owns: turning the global flags into an open [`Store`] and telling the user
//! what recovery did (a dropped torn record, files set aside). Must never:
//! repair anything unless asked (`hearth repair`), or hide a recovery.

use crate::args::GlobalArgs;
use crate::error::Result;
use crate::output::print_notice;
use hearth_store::{Recovery, Store};
use serde_json::json;

/// Opens the store in the data directory the flags name. With `repair`, a
/// damaged journal is cut at the damage and the rest set aside; the caller
/// reports that itself.
pub(crate) fn open_store(global: &GlobalArgs, repair: bool) -> Result<Store> {
    let dir = global.resolve_data_dir();
    let mut opts = global.store_options();
    opts.repair = repair;
    tracing::debug!(dir = %dir.display(), ?opts, "opening the store");
    let store = Store::open(&dir, opts)?;
    if !repair {
        report_recovery(global.json, &store);
    }
    Ok(store)
}

/// Prints a one-line notice when opening dropped or set aside anything.
pub(crate) fn report_recovery(json: bool, store: &Store) {
    let r = store.recovery();
    if let Some(message) = recovery_message(r, store) {
        print_notice(
            json,
            "recovered",
            &message,
            json!({
                "data_dir": store.dir(),
                "torn_tail_bytes": r.torn_tail_bytes,
                "set_aside": r.set_aside,
            }),
        );
    }
}

/// The notice for a recovery, if there is anything to say.
fn recovery_message(r: &Recovery, store: &Store) -> Option<String> {
    let mut parts = Vec::new();
    if r.torn_tail_bytes > 0 {
        parts.push(format!(
            "dropped an incomplete last journal record ({} bytes) left by a crash; it was never acknowledged, so no acknowledged write is lost",
            r.torn_tail_bytes
        ));
    }
    if !r.set_aside.is_empty() {
        let files: Vec<String> = r
            .set_aside
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        parts.push(format!(
            "set aside damaged journal data in {}",
            files.join(", ")
        ));
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!(
            "recovered {}: {}",
            store.dir().display(),
            parts.join("; ")
        ))
    }
}
