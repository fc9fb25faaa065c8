//! SQLite: the schema, its migrations, and every SQL statement for documents.
//!
//! Owns: the only SQL in hearth that touches documents, the change log and the
//! search index. Must never: be called on the acknowledgement path of a put
//! (the journal acknowledges; SQLite is written by the applier), or modify a
//! database it has not recognised as hearth's.

use crate::crdt::{ChangeKind, DocState, StoredMeta};
use crate::error::{Result, StoreError};
use crate::hlc::Stamp;
use crate::types::Entry;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Map, Value};
use std::ffi::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 'HRTH' — marks a SQLite file as hearth's.
pub(crate) const APPLICATION_ID: i32 = 0x4852_5448;

/// Migrations, in order; `MIGRATIONS[i]` takes the schema from version i to i+1.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE docs (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    data TEXT,
    type TEXT,
    state TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX docs_type ON docs(type, id) WHERE data IS NOT NULL;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    data TEXT
);
CREATE VIRTUAL TABLE docs_fts USING fts5(body);
"#];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Maps errors that mean "this file is not a usable database" to `Corrupt`.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        use rusqlite::ErrorCode as C;
        if matches!(f.code, C::NotADatabase | C::DatabaseCorrupt) {
            return corrupt(
                path,
                format!("{e}; restore it from a backup or move it away to start empty"),
            );
        }
        if matches!(f.code, C::ReadOnly | C::CannotOpen | C::PermissionDenied) {
            return StoreError::BadDirectory {
                dir: path.parent().unwrap_or(path).to_path_buf(),
                detail: format!("{e}; check that the directory is writable"),
            };
        }
        if f.code == C::DiskFull {
            return StoreError::StorageFull {
                path: path.to_path_buf(),
            };
        }
    }
    StoreError::Sqlite(e)
}

fn open_raw(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| classify(path, e))?;
    Ok(conn)
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=4000; PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;",
    )
    .map_err(|e| classify(path, e))
}

/// Opens another connection to a database `open_primary` has checked.
pub(crate) fn connect(path: &Path) -> Result<Connection> {
    let conn = open_raw(path)?;
    configure(&conn, path)?;
    Ok(conn)
}

/// Opens the database for the store: checks that it is hearth's (or new)
/// *before* changing anything in it, then sets WAL mode and migrates.
pub(crate) fn open_primary(path: &Path) -> Result<Connection> {
    let mut conn = open_raw(path)?;
    check(&conn, path)?;
    configure(&conn, path)?;
    migrate(&mut conn, path)?;
    probe(&conn, path)?;
    Ok(conn)
}

/// Reads the first and last row of every table, touching each table's root
/// and edge pages: a cheap stand-in for `PRAGMA quick_check`, whose cost
/// grows with the database and would be paid by every open.
fn probe(conn: &Connection, path: &Path) -> Result<()> {
    for sql in [
        "SELECT count(*) FROM meta",
        "SELECT rowid FROM docs ORDER BY rowid DESC LIMIT 1",
        "SELECT id FROM docs ORDER BY id LIMIT 1",
        "SELECT seq FROM changes ORDER BY seq DESC LIMIT 1",
        "SELECT rowid FROM docs_fts LIMIT 1",
    ] {
        let mut stmt = conn.prepare(sql).map_err(|e| classify(path, e))?;
        let mut rows = stmt.query([]).map_err(|e| classify(path, e))?;
        while rows.next().map_err(|e| classify(path, e))?.is_some() {}
    }
    Ok(())
}

/// The applier's checkpoints (docs/design.md, "Checkpoints"): installs on
/// `conn` a WAL hook that records the WAL's size in pages after each commit
/// into the returned counter. The hook replaces SQLite's automatic
/// checkpoint on this connection, which ran inside `COMMIT`; the caller
/// checkpoints with [`checkpoint_passive`] instead.
pub(crate) fn take_over_checkpoints(conn: &mut Connection) -> Result<Arc<AtomicUsize>> {
    let pages = Arc::new(AtomicUsize::new(0));
    let seen = pages.clone();
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n: c_int| {
        // Relaxed: read by the same thread (the applier), after the commit
        // that ran this hook returned.
        seen.store(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }))?;
    Ok(pages)
}

/// Copies what the WAL holds into the database without waiting for
/// readers (`PRAGMA wal_checkpoint(PASSIVE)`); the next write starts the
/// WAL over once a checkpoint has copied all of it.
pub(crate) fn checkpoint_passive(conn: &Connection) -> Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

/// Makes everything committed durable in the main database file (used in
/// fsync mode before journal segments are deleted). Returns false if readers
/// kept the checkpoint from completing.
pub(crate) fn checkpoint(conn: &Connection) -> Result<bool> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(FULL)", [], |r| r.get(0))?;
    Ok(busy == 0)
}

/// Refuses files that are not hearth's. Reads only.
fn check(conn: &Connection, path: &Path) -> Result<()> {
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    if app_id != APPLICATION_ID && (tables > 0 || app_id != 0) {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(corrupt(
            path,
            format!(
                "written by a newer hearth (schema {version}, this build knows {SCHEMA_VERSION}); upgrade hearth"
            ),
        ));
    }
    Ok(())
}

/// Brings the schema up to date, one transaction per migration.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    for v in version..SCHEMA_VERSION {
        let tx = conn.transaction().map_err(|e| classify(path, e))?;
        tx.execute_batch(MIGRATIONS[v as usize])
            .map_err(|e| classify(path, e))?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
            v + 1
        ))
        .map_err(|e| classify(path, e))?;
        tx.commit().map_err(|e| classify(path, e))?;
    }
    Ok(())
}

/// Reads an integer from `meta`.
pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Writes an integer to `meta`.
pub(crate) fn meta_set(conn: &Connection, key: &str, value: i64) -> Result<()> {
    conn.prepare_cached("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

/// The entry of a document row as read from SQLite. Its text is kept as
/// read and its JSON tree built only if something asks (docs/design.md,
/// "Lazy state") when the text passes the compact-document check, as every
/// text the store writes does; other text (a row from an older version, a
/// damaged one) is parsed at once, so that a row that does not parse is an
/// error here and never later.
pub(crate) fn row_entry(
    id: String,
    data: Option<Arc<str>>,
    state: &str,
    hlc: i64,
    replica: i64,
    seq: i64,
) -> Result<Entry> {
    let meta: StoredMeta = serde_json::from_str(state)
        .map_err(|e| StoreError::Internal(format!("stored state of {id:?} does not parse: {e}")))?;
    let stamp = Stamp {
        hlc: hlc as u64,
        replica: replica as u64,
    };
    let seq = seq as u64;
    match data {
        Some(text) if !hearth_proto::CompactDocument::accepts(&text) => {
            let values: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
                StoreError::Internal(format!("stored document {id:?} does not parse: {e}"))
            })?;
            let state = DocState::from_stored(meta, values);
            Ok(Entry::from_state(id, state, Some(text), stamp, seq))
        }
        // Compact text (or a tombstone, whose state has no fields).
        data => Ok(Entry::from_text(id, meta, data, stamp, seq)),
    }
}

/// Reads one document row (tombstones included).
pub(crate) fn read_doc(conn: &Connection, id: &str) -> Result<Option<Entry>> {
    let mut stmt =
        conn.prepare_cached("SELECT data, state, hlc, replica, seq FROM docs WHERE id = ?1")?;
    let raw = stmt
        .query_row([id], |r| {
            Ok((
                r.get::<_, Option<Arc<str>>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    match raw {
        None => Ok(None),
        Some((data, state, hlc, replica, seq)) => {
            row_entry(id.to_string(), data, &state, hlc, replica, seq).map(Some)
        }
    }
}

/// The text FTS indexes for a document: every string value, nested included.
pub(crate) fn search_body(values: &Map<String, Value>) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    values.values().for_each(|v| walk(v, &mut out));
    out
}

/// The rowid of document `id`'s row, if it has one.
pub(crate) fn doc_rowid(conn: &Connection, id: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT rowid FROM docs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Writes one document's latest state (row and search index). `existing`
/// is its row's rowid ([`doc_rowid`]), `None` for a new document.
///
/// Callers writing many documents go in ascending rowid order, new ones
/// last: FTS5 flushes its pending terms to a new index segment whenever a
/// write's rowid is below the previous write's (docs/design.md, "The
/// applier").
pub(crate) fn write_doc(
    conn: &Connection,
    existing: Option<i64>,
    id: &str,
    state: &DocState,
    json: Option<&str>,
    stamp: Stamp,
    seq: u64,
) -> Result<()> {
    let ty = state.values.get("type").and_then(Value::as_str);
    let meta = serde_json::to_string(&state.stored_meta())
        .map_err(|e| StoreError::Internal(format!("cannot encode state: {e}")))?;
    // ?1 is the row's key: its rowid for an update (no second lookup in the
    // id index), the id for an insert.
    let key: &dyn rusqlite::ToSql = match &existing {
        Some(rowid) => rowid,
        None => &id,
    };
    let args = params![
        key,
        json,
        ty,
        meta,
        stamp.hlc as i64,
        stamp.replica as i64,
        seq as i64,
        stamp.physical_ms() as i64
    ];
    // A tombstone has no text to find.
    let body = match json {
        Some(_) => search_body(&state.values),
        None => String::new(),
    };
    match existing {
        Some(rowid) => {
            conn.prepare_cached(
                "UPDATE docs SET data = ?2, type = ?3, state = ?4, hlc = ?5, replica = ?6,
                   seq = ?7, updated_at = ?8 WHERE rowid = ?1",
            )?
            .execute(args)?;
            // The index is rewritten only when the text changed: an FTS5
            // delete tokenises the old text again, and most rewrites change
            // other fields (a status, a counter) or have no text at all.
            let old: Option<String> = conn
                .prepare_cached("SELECT body FROM docs_fts WHERE rowid = ?1")?
                .query_row([rowid], |r| r.get(0))
                .optional()?;
            if old.as_deref().unwrap_or("") != body {
                if old.is_some() {
                    conn.prepare_cached("DELETE FROM docs_fts WHERE rowid = ?1")?
                        .execute([rowid])?;
                }
                index_text(conn, rowid, &body)?;
            }
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO docs(id, data, type, state, hlc, replica, seq, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(args)?;
            index_text(conn, conn.last_insert_rowid(), &body)?;
        }
    }
    Ok(())
}

/// Adds a row's text to the search index (nothing for no text).
fn index_text(conn: &Connection, rowid: i64, body: &str) -> Result<()> {
    if !body.is_empty() {
        conn.prepare_cached("INSERT INTO docs_fts(rowid, body) VALUES (?1, ?2)")?
            .execute(params![rowid, body])?;
    }
    Ok(())
}

/// Appends one change to the change log.
pub(crate) fn write_change(
    conn: &Connection,
    seq: u64,
    id: &str,
    kind: ChangeKind,
    stamp: Stamp,
    data: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO changes(seq, id, kind, hlc, replica, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        seq as i64,
        id,
        kind.to_u8(),
        stamp.hlc as i64,
        stamp.replica as i64,
        data
    ])?;
    Ok(())
}
