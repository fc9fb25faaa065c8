//! The store's public value types: documents, changes, options, results.
//!
//! Owns: the shapes callers see. Must never: hold locks or do I/O; these are
//! plain values (documents are cheap `Arc` handles).

use crate::crdt::{ChangeKind, DocState, StoredMeta};
use crate::hlc::Stamp;
use crate::journal::JournalIo;
use hearth_proto::Limits;
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// How durable an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledged once the journal `write()` returns: survives `kill -9` of
    /// the process at any instant, not a power loss.
    #[default]
    Journal,
    /// Also `fdatasync`ed before the acknowledgement (group commit): survives
    /// power loss.
    Fsync,
}

impl Durability {
    /// `journal` or `fsync`: how `--durability` spells it, and its JSON.
    ///
    /// ```
    /// assert_eq!(hearth_store::Durability::Fsync.name(), "fsync");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Durability::Journal => "journal",
            Durability::Fsync => "fsync",
        }
    }
}

/// Options for [`crate::Store::open`].
///
/// ```
/// use hearth_store::{Durability, Options};
/// let opts = Options { durability: Durability::Fsync, ..Options::default() };
/// assert_eq!(opts.durability, Durability::Fsync);
/// ```
#[derive(Clone)]
pub struct Options {
    /// Durability of acknowledged writes.
    pub durability: Durability,
    /// Document and batch limits.
    pub limits: Limits,
    /// Bytes of hot documents kept in memory.
    pub cache_bytes: usize,
    /// A journal segment is rotated past this size.
    pub segment_bytes: u64,
    /// Most operations the applier moves into SQLite per transaction
    /// (default 32,768). It takes what is queued, so this only matters
    /// when writers outpace it: larger transactions then cost less per
    /// document (each B-tree page and index segment is written once per
    /// transaction, whatever number of its rows changed). While a query
    /// or search waits for its writes, a transaction ends at the
    /// reader's write once it holds 4,096 operations (or this many, if
    /// fewer).
    pub apply_batch: usize,
    /// Writers wait when this many operations are not yet written to
    /// SQLite by the applier; the transaction it is writing counts as
    /// written in proportion as it goes, so memory holds at most this many
    /// plus one transaction (`apply_batch`).
    pub max_pending_ops: usize,
    /// Writers wait when this many bytes are not yet written to SQLite, as
    /// `max_pending_ops`: memory holds at most this plus one transaction
    /// (at most 16 MiB).
    pub max_pending_bytes: usize,
    /// Recent changes kept in memory for subscribers.
    pub ring_capacity: usize,
    /// Run the applier (the thread that materialises acknowledged writes
    /// into SQLite) at background CPU priority (Linux: nice 19), so that it
    /// takes idle CPU rather than CPU from the threads acknowledging writes
    /// and answering reads. A thread cannot raise its priority back without
    /// privileges, so this is chosen once, at open. Default `true`; turn it
    /// off when other programs keep every core busy and list, query and
    /// search must see recent writes quickly anyway.
    pub background_applier: bool,
    /// On a damaged journal, keep what precedes the damage and set the rest
    /// aside instead of refusing to open.
    pub repair: bool,
    /// The file layer under the journal (tests inject faults here).
    pub journal_io: Arc<dyn JournalIo>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Journal,
            limits: Limits::default(),
            cache_bytes: 64 << 20,
            segment_bytes: 64 << 20,
            apply_batch: 32_768,
            max_pending_ops: 200_000,
            max_pending_bytes: 256 << 20,
            ring_capacity: 65_536,
            background_applier: true,
            repair: false,
            journal_io: default_journal_io(),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("durability", &self.durability)
            .field("limits", &self.limits)
            .field("cache_bytes", &self.cache_bytes)
            .field("segment_bytes", &self.segment_bytes)
            .field("background_applier", &self.background_applier)
            .field("repair", &self.repair)
            .finish_non_exhaustive()
    }
}

/// What opening the store had to recover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// Journal operations replayed because SQLite had not applied them yet.
    pub replayed_ops: u64,
    /// Bytes of a torn (never acknowledged) last record that were dropped.
    pub torn_tail_bytes: u64,
    /// Files the repair set aside (damaged journal parts).
    pub set_aside: Vec<PathBuf>,
}

/// Per-document metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// The stamp of the latest change.
    pub stamp: Stamp,
    /// The sequence number of the latest change.
    pub seq: u64,
    /// Milliseconds since the epoch of the latest change.
    pub updated_at_ms: u64,
    /// Whether the document is deleted (a tombstone).
    pub deleted: bool,
}

/// One document's in-memory state.
///
/// The JSON tree is built lazily: an entry made from text (a local put of
/// compact text) keeps only the stamps and the text until something needs
/// the fields (docs/design.md, "Lazy state").
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    /// The state's stamps; its values are the fields of `json`.
    meta: StoredMeta,
    /// The whole state, once built (at once for an entry made from a state).
    state: OnceLock<DocState>,
    /// JSON text of the visible document; `None` for a tombstone.
    pub(crate) json: Option<Arc<str>>,
    pub(crate) stamp: Stamp,
    pub(crate) seq: u64,
}

impl Entry {
    /// An entry whose state is already built (a merge, a parsed put).
    pub(crate) fn from_state(
        id: String,
        state: DocState,
        json: Option<Arc<str>>,
        stamp: Stamp,
        seq: u64,
    ) -> Entry {
        let entry = Entry::from_text(id, StoredMeta::default(), json, stamp, seq);
        // A new entry's state is empty, so this sets it.
        let _ = entry.state.set(state);
        entry
    }

    /// An entry whose state is `meta` plus the fields of `json`, which the
    /// caller has validated as a JSON object (or `None` for a tombstone).
    pub(crate) fn from_text(
        id: String,
        meta: StoredMeta,
        json: Option<Arc<str>>,
        stamp: Stamp,
        seq: u64,
    ) -> Entry {
        Entry {
            id,
            meta,
            state: OnceLock::new(),
            json,
            stamp,
            seq,
        }
    }

    /// The replicated state, built from the text on first use and kept.
    pub(crate) fn state(&self) -> &DocState {
        self.state.get_or_init(|| self.build_state())
    }

    /// The replicated state without keeping a built tree (for one-off
    /// readers such as the applier, so applied entries stay small).
    pub(crate) fn state_once(&self) -> Cow<'_, DocState> {
        match self.state.get() {
            Some(state) => Cow::Borrowed(state),
            None => Cow::Owned(self.build_state()),
        }
    }

    fn build_state(&self) -> DocState {
        let values = match self.json.as_deref() {
            // Invariant: `from_text` is only given text that passed the
            // compact-document check (`Store::put_json`/`put_compact`, and
            // rows read from SQLite: `sql::row_entry`), so it parses as an
            // object.
            Some(text) => serde_json::from_str(text)
                .expect("an entry's JSON text was validated as an object before it was stored"),
            None => Map::new(),
        };
        DocState::from_stored(self.meta.clone(), values)
    }

    /// Approximate memory held, for the cache's accounting.
    pub(crate) fn weight(&self) -> usize {
        let json = self.json.as_ref().map_or(0, |j| j.len());
        let fields = match self.state.get() {
            Some(state) => state.fields.len(),
            None => self.meta.fields.len(),
        };
        128 + self.id.len() * 2 + json * 2 + fields * 64
    }
}

/// A document: a cheap, immutable handle to a JSON object and its metadata.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use hearth_store::{Options, Store};
/// use serde_json::json;
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// store.put("user:1", json!({"name": "Alice"})).unwrap();
/// let doc = store.get("user:1").unwrap().unwrap();
/// assert_eq!(doc.id(), "user:1");
/// assert_eq!(doc.data()["name"], "Alice");
/// assert_eq!(doc.json(), r#"{"name":"Alice"}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Document(pub(crate) Arc<Entry>);

impl Document {
    /// The document id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The fields (empty for a tombstone).
    pub fn data(&self) -> &Map<String, Value> {
        &self.0.state().values
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.state().values.clone())
    }

    /// The document's JSON text (`null` for a tombstone).
    pub fn json(&self) -> &str {
        self.0.json.as_deref().unwrap_or("null")
    }

    /// Stamp, sequence number, update time, deletion.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            stamp: self.0.stamp,
            seq: self.0.seq,
            updated_at_ms: self.0.stamp.physical_ms(),
            deleted: self.0.json.is_none(),
        }
    }
}

/// One committed change from the change log.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Its sequence number on this replica.
    pub seq: u64,
    /// The document id.
    pub id: String,
    /// Put, patch or delete.
    pub kind: ChangeKind,
    /// The stamp the write was made with (kept across replicas).
    pub stamp: Stamp,
    /// The JSON object text written (the whole document for a put, the fields
    /// for a patch); `None` for a delete.
    pub data: Option<Arc<str>>,
}

impl Change {
    /// The written fields, parsed.
    pub fn data_value(&self) -> Option<Value> {
        self.data
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    }

    /// The change as a JSON object
    /// `{"seq","id","kind","hlc","replica","data"}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "seq": self.seq,
            "id": self.id,
            "kind": self.kind.as_str(),
            "hlc": self.stamp.hlc,
            "replica": self.stamp.replica,
            "data": self.data_value(),
        })
    }

    /// Parses a change from the shape [`Change::to_json`] produces.
    pub fn from_json(v: &Value) -> Option<Change> {
        let kind = match v.get("kind")?.as_str()? {
            "put" => ChangeKind::Put,
            "patch" => ChangeKind::Patch,
            "delete" => ChangeKind::Delete,
            _ => return None,
        };
        let data = match v.get("data") {
            Some(Value::Object(m)) => Some(Arc::from(serde_json::to_string(m).ok()?)),
            _ => None,
        };
        Some(Change {
            seq: v.get("seq").and_then(Value::as_u64).unwrap_or(0),
            id: v.get("id")?.as_str()?.to_string(),
            kind,
            stamp: Stamp {
                hlc: v.get("hlc")?.as_u64()?,
                replica: v.get("replica")?.as_u64()?,
            },
            data,
        })
    }
}

/// One write in a [`crate::Store::batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Replace a document.
    Put {
        /// Document id.
        id: String,
        /// The new document (a JSON object).
        data: Value,
    },
    /// Merge top-level fields (`null` removes a field).
    Patch {
        /// Document id.
        id: String,
        /// The fields (a JSON object).
        fields: Value,
    },
    /// Delete a document.
    Delete {
        /// Document id.
        id: String,
    },
}

/// Filters and paging for [`crate::Store::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only ids starting with this.
    pub prefix: Option<String>,
    /// Only documents whose `type` field is this string.
    pub type_name: Option<String>,
    /// At most this many documents.
    pub limit: Option<usize>,
    /// Only ids after this one (the last id of the previous page).
    pub after: Option<String>,
}

/// A search result.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The document.
    pub doc: Document,
    /// Relevance; higher is better.
    pub score: f64,
}

/// An item from a change subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The next change, in sequence order.
    Change(Arc<Change>),
    /// The subscriber fell out of the in-memory window; changes continue
    /// from `resume_from`, read from the change log. Nothing is skipped.
    Lagged {
        /// The next sequence number that will be delivered.
        resume_from: u64,
    },
}

/// Counters and sizes.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// The data directory.
    pub data_dir: PathBuf,
    /// This replica's id.
    pub replica_id: u64,
    /// Durability mode.
    pub durability: Durability,
    /// Visible documents.
    pub documents: u64,
    /// Deleted documents kept as tombstones.
    pub tombstones: u64,
    /// Sequence number of the last acknowledged change.
    pub last_seq: u64,
    /// Sequence number of the last change applied to SQLite.
    pub applied_seq: u64,
    /// Operations acknowledged but not yet applied.
    pub pending_ops: u64,
    /// Documents in the hot cache.
    pub cache_entries: u64,
    /// Approximate bytes in the hot cache.
    pub cache_bytes: u64,
    /// Journal segment files.
    pub journal_segments: u64,
    /// Bytes in the journal.
    pub journal_bytes: u64,
    /// Bytes of the SQLite database and its WAL.
    pub database_bytes: u64,
}

/// The journal's file layer unless told otherwise: segments written
/// through a shared mapping on Linux, with `write()` elsewhere.
fn default_journal_io() -> Arc<dyn JournalIo> {
    #[cfg(target_os = "linux")]
    {
        Arc::new(crate::journal::MappedJournalIo)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Arc::new(crate::journal::OsJournalIo)
    }
}
