//! The store: open and recover, the write path, the applier, and reads.
//!
//! Owns: the commit protocol of docs/design.md (journal first, then the
//! overlay, the applier queue and the change ring), the background applier
//! thread, back-pressure, and the read paths (overlay → cache → SQLite).
//! Must never: acknowledge a write before its journal record is written (and
//! synced in fsync mode), let a storage error go only to a log, or hold the
//! writer lock while waiting for the applier.

use crate::crdt::{ChangeKind, DocState};
use crate::error::{Result, StoreError};
use crate::hlc::{Hlc, Stamp, wall_ms};
use crate::journal::{self, Journal, RecordOp, SyncHandle, encode_record};
use crate::sql;
use crate::types::{
    Change, Document, Durability, Entry, Event, Hit, ListOptions, Options, Recovery, Stats, WriteOp,
};
use hearth_proto::{CompactDocument, DocumentError, Limits, validate_id};
use lru::LruCache;
use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde_json::{Map, Value};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the applier waits for a fuller batch when few writes are queued
/// and nobody waits for it (docs/design.md, "The applier").
const APPLY_LINGER: Duration = Duration::from_millis(2);
/// Queued operations that make the applier start at once.
const APPLY_LINGER_OPS: usize = 256;
/// The longest the applier defers to a burst of writes (docs/design.md,
/// "The applier"): while writes keep arriving, nobody waits on the applier
/// and the backlog is under an eighth of the back-pressure limits, it
/// leaves the CPU to the writers for up to this long.
const BURST_DEFER_MAX: Duration = Duration::from_millis(250);
/// How often a deferring applier looks whether the burst goes on: each
/// look takes a core from a writer for a moment.
const BURST_STEP: Duration = Duration::from_millis(25);

/// Rows fetched per page by list iterators and subscribers catching up.
const PAGE: usize = 256;

/// A hearth document store on one data directory.
///
/// Cheap to clone; all clones share one store. Dropping the last clone drains
/// the applier and releases the directory.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use hearth_store::{Options, Store};
/// use serde_json::json;
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// store.put("user:1", json!({"type": "User", "name": "Alice"})).unwrap();
/// store.patch("user:1", json!({"email": "a@example.com"})).unwrap();
/// let doc = store.get("user:1").unwrap().unwrap();
/// assert_eq!(doc.data()["email"], "a@example.com");
/// assert_eq!(store.search("alice", 10).unwrap().len(), 1);
/// store.delete("user:1").unwrap();
/// assert!(store.get("user:1").unwrap().is_none());
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    _life: Arc<Lifetime>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    db_path: PathBuf,
    journal_dir: PathBuf,
    opts: Options,
    replica: u64,
    recovery: Recovery,
    writer: Mutex<Writer>,
    /// Unapplied entries by id (each keyed by its own `id`: no second copy
    /// of the id per write, an 8-byte slot per entry).
    overlay: Mutex<HashSet<Keyed>>,
    /// The overlay's length, stored under its lock after every change, so
    /// that a point read skips the lock and the hash while it is empty
    /// (most of the time: the applier drains it within milliseconds).
    overlay_len: AtomicUsize,
    cache: Mutex<Cache>,
    queue: Mutex<Queue>,
    /// The applier waits here for work.
    work_cv: Condvar,
    /// Writers (back-pressure) and readers (wait for applied) wait here.
    progress_cv: Condvar,
    ring: Mutex<Ring>,
    ring_cv: Condvar,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    readers: Mutex<Vec<Connection>>,
    /// Sequence number of the last acknowledged (journaled) change.
    acked: AtomicU64,
    /// Set by reads, cleared by the applier: a read since its last look
    /// means the store is busy, so a burst deferral goes on.
    read_lately: AtomicBool,
    /// Callers blocked until the applier makes progress (readers waiting for
    /// their writes to be applied, writers held by back-pressure). While any
    /// wait, the applier does not linger for a fuller batch, and a
    /// background applier does not offer its core ([`courteous`]). Changed
    /// only while the queue's lock is held, so that the applier's waits on
    /// `work_cv` see it as they would a field of the queue; read without
    /// the lock by `courteous`.
    waited_on: AtomicUsize,
    _lock: File,
}

struct Writer {
    journal: Journal,
    hlc: Hlc,
    next_seq: u64,
    buf: Vec<u8>,
}

struct Cache {
    lru: LruCache<String, Arc<Entry>>,
    bytes: usize,
    limit: usize,
    /// Bumped whenever the applier publishes entries; a reader that saw a
    /// different value before its SQLite read does not cache its result.
    generation: u64,
}

struct Queued {
    change: Arc<Change>,
    entry: Arc<Entry>,
    /// Last operation of its journal record (records are never split).
    record_end: bool,
}

struct Queue {
    /// Written and acknowledged, not yet taken by the applier.
    items: VecDeque<Queued>,
    /// Operations the applier has taken out of `items` and not yet
    /// applied (it takes them all at once, in O(1), and works through them
    /// without this lock: docs/design.md, "The applier"). They still count
    /// as pending ([`Queue::pending_ops`]).
    taken: usize,
    /// The weight of every pending operation, taken ones included.
    bytes: usize,
    /// The share of the operations in the applier's transaction that its
    /// rows written so far stand for: back-pressure counts them as written
    /// ([`Queue::unwritten_ops`]; docs/design.md, "Back-pressure"). Zero
    /// between transactions; never more than the transaction's length, so
    /// never more than `taken`.
    written_ops: usize,
    /// The same share of the transaction's weight; never more than `bytes`.
    written_bytes: usize,
    /// Writers held by back-pressure in `wait_for_space`: only while there
    /// are any does the applier wake them as its transaction goes.
    held_writers: usize,
    applied: u64,
    error: Option<String>,
    shutdown: bool,
    /// The applier is asleep on `work_cv`: only then does a writer wake it.
    applier_idle: bool,
    /// The highest seq a reader blocked in `wait_applied` has needed; while
    /// it is above `applied`, a reader waits and the applier ends its
    /// transaction there once it holds `READER_BATCH` operations.
    reader_target: u64,
}

impl Queue {
    /// Operations acknowledged and not yet applied: queued or taken by the
    /// applier.
    fn pending_ops(&self) -> usize {
        self.items.len() + self.taken
    }

    /// Operations back-pressure counts: pending ones, less the share of
    /// the applier's transaction already written.
    fn unwritten_ops(&self) -> usize {
        self.pending_ops().saturating_sub(self.written_ops)
    }

    /// Weight back-pressure counts, as [`Queue::unwritten_ops`].
    fn unwritten_bytes(&self) -> usize {
        self.bytes.saturating_sub(self.written_bytes)
    }

    /// Whether a write of `bytes` more would wait for the applier
    /// (back-pressure).
    fn full(&self, opts: &Options, bytes: usize) -> bool {
        self.unwritten_ops() >= opts.max_pending_ops
            || self.unwritten_bytes().saturating_add(bytes) >= opts.max_pending_bytes
    }
}

struct Ring {
    changes: VecDeque<Arc<Change>>,
    bytes: usize,
    closed: bool,
}

struct SyncState {
    synced: u64,
    syncing: bool,
    handle: Option<(Arc<dyn SyncHandle>, u64)>,
}

/// Joins the applier when the last [`Store`] clone goes.
struct Lifetime {
    inner: Arc<Inner>,
    applier: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.inner.queue.lock().shutdown = true;
        self.inner.work_cv.notify_all();
        self.inner.progress_cv.notify_all();
        {
            self.inner.ring.lock().closed = true;
        }
        self.inner.ring_cv.notify_all();
        if let Some(h) = self.applier.lock().take() {
            let _ = h.join();
        }
    }
}

/// A document's top-level fields.
type Fields = Map<String, Value>;

/// A validated operation, ready to be stamped and journaled.
struct Prepared {
    kind: ChangeKind,
    id: String,
    /// Parsed fields (`None` for compact text not parsed yet, see
    /// docs/design.md "Lazy state") and their JSON text; `None` for a delete.
    data: Option<(Option<Fields>, Arc<str>)>,
    /// Set for remote changes, which keep their stamp.
    stamp: Option<Stamp>,
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| bad_dir(dir, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                pid: s.trim().parse().unwrap_or(0),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&path, e)),
    }
    // One fixed-width write, so a reader never sees an empty or partial pid.
    f.rewind().map_err(|e| StoreError::io(&path, e))?;
    let pid = format!("{:<20}\n", std::process::id());
    f.write_all(pid.as_bytes())
        .map_err(|e| StoreError::io(&path, e))?;
    f.set_len(21).map_err(|e| StoreError::io(&path, e))?;
    Ok(f)
}

fn bad_dir(dir: &Path, e: std::io::Error) -> StoreError {
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "it is not writable by this user; choose another --data-dir or fix its permissions"
        }
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => {
            "a file is in the way; --data-dir must be a directory"
        }
        _ => "check the path",
    };
    StoreError::BadDirectory {
        dir: dir.to_path_buf(),
        detail: format!("{e}; {hint}"),
    }
}

fn to_object(value: Value) -> Result<Map<String, Value>> {
    match value {
        Value::Object(m) => Ok(m),
        other => Err(DocumentError::NotAnObject {
            found: hearth_proto::kind_of(&other),
        }
        .into()),
    }
}

fn prepare(kind: ChangeKind, id: &str, data: Option<Value>, limits: &Limits) -> Result<Prepared> {
    validate_id(id)?;
    let data = match data {
        None => None,
        Some(v) => {
            hearth_proto::check_document_value(&v)?;
            let map = to_object(v)?;
            let text = serde_json::to_string(&map).map_err(|e| {
                StoreError::InvalidInput(format!("document cannot be encoded: {e}"))
            })?;
            if text.len() > limits.max_doc_bytes {
                return Err(DocumentError::TooLarge {
                    len: text.len(),
                    max: limits.max_doc_bytes,
                }
                .into());
            }
            Some((Some(map), Arc::from(text)))
        }
    };
    Ok(Prepared {
        kind,
        id: id.to_string(),
        data,
        stamp: None,
    })
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, recovering any journal
    /// records SQLite has not applied yet.
    ///
    /// Fails with [`StoreError::Locked`] if another process has the
    /// directory, [`StoreError::Corrupt`] or [`StoreError::Foreign`] for a
    /// damaged or foreign database, and [`StoreError::BadDirectory`] if `dir`
    /// cannot be used.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        for (name, v) in [
            ("max_pending_ops", opts.max_pending_ops),
            ("max_pending_bytes", opts.max_pending_bytes),
            ("apply_batch", opts.apply_batch),
            ("ring_capacity", opts.ring_capacity),
            ("max_doc_bytes", opts.limits.max_doc_bytes),
            ("max_batch_ops", opts.limits.max_batch_ops),
            ("max_page", opts.limits.max_page),
        ] {
            if v == 0 {
                return Err(StoreError::InvalidInput(format!(
                    "option {name} is 0; it must be at least 1"
                )));
            }
        }
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::BadDirectory {
                dir: dir.clone(),
                detail: "it is a file; --data-dir must be a directory".into(),
            });
        }
        std::fs::create_dir_all(&dir).map_err(|e| bad_dir(&dir, e))?;
        let lock = lock_dir(&dir)?;
        let db_path = dir.join("hearth.db");
        let fsync = opts.durability == Durability::Fsync;
        let conn = sql::open_primary(&db_path)?;
        let journal_dir = dir.join("journal");
        std::fs::create_dir_all(&journal_dir).map_err(|e| bad_dir(&journal_dir, e))?;
        let applied = sql::meta_get(&conn, "applied_seq")?.unwrap_or(0) as u64;
        let replica = match sql::meta_get(&conn, "replica_id")? {
            Some(r) => r as u64,
            None => {
                let r = getrandom::u64().map_err(|e| {
                    StoreError::Internal(format!("no randomness for the replica id: {e}"))
                })? & (i64::MAX as u64);
                sql::meta_set(&conn, "replica_id", r as i64)?;
                r
            }
        };
        let max_hlc = sql::meta_get(&conn, "max_hlc")?.unwrap_or(0) as u64;

        let (segments, records, recovery) = recover_journal(&journal_dir, applied, opts.repair)?;
        let last_in_journal = records.last().map(|r| r.first_seq + r.ops.len() as u64 - 1);
        let next_seq = last_in_journal.unwrap_or(applied).max(applied) + 1;
        let journal = Journal::open(
            &journal_dir,
            opts.journal_io.clone(),
            segments,
            next_seq,
            fsync,
        )?;
        let sync_handle = journal.sync_handle()?;

        let inner = Arc::new(Inner {
            dir: dir.clone(),
            db_path: db_path.clone(),
            journal_dir,
            replica,
            recovery,
            writer: Mutex::new(Writer {
                journal,
                hlc: Hlc::new(replica, max_hlc),
                next_seq,
                buf: Vec::with_capacity(4096),
            }),
            // Pre-sized so the writer lock is never held across a rehash
            // while the overlay grows towards its usual size.
            overlay: Mutex::new(HashSet::with_capacity(overlay_presize(&opts))),
            overlay_len: AtomicUsize::new(0),
            cache: Mutex::new(Cache {
                lru: LruCache::unbounded(),
                bytes: 0,
                limit: opts.cache_bytes,
                generation: 0,
            }),
            // Both queues pre-sized like the overlay: a burst of writes then
            // fills them without reallocating and copying them on the
            // writer's thread (their pages are touched as they fill).
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(overlay_presize(&opts)),
                taken: 0,
                bytes: 0,
                written_ops: 0,
                written_bytes: 0,
                held_writers: 0,
                applied,
                error: None,
                shutdown: false,
                applier_idle: false,
                reader_target: 0,
            }),
            work_cv: Condvar::new(),
            progress_cv: Condvar::new(),
            ring: Mutex::new(Ring {
                changes: VecDeque::with_capacity(opts.ring_capacity.min(1 << 16)),
                bytes: 0,
                closed: false,
            }),
            ring_cv: Condvar::new(),
            sync: Mutex::new(SyncState {
                synced: next_seq - 1,
                syncing: false,
                handle: Some((sync_handle, next_seq - 1)),
            }),
            sync_cv: Condvar::new(),
            readers: Mutex::new(Vec::new()),
            acked: AtomicU64::new(next_seq - 1),
            read_lately: AtomicBool::new(false),
            waited_on: AtomicUsize::new(0),
            opts,
            _lock: lock,
        });
        inner.readers.lock().push(sql::connect(&db_path)?);

        // Replay what SQLite has not applied, exactly as live writes.
        {
            // Held so no write interleaves with the replay.
            let mut w = inner.writer.lock();
            let mut replayed = 0u64;
            for rec in &records {
                let mut staged = Vec::new();
                for (i, op) in rec.ops.iter().enumerate() {
                    let seq = rec.first_seq + i as u64;
                    w.hlc.observe(op.stamp.hlc);
                    if seq <= applied {
                        continue;
                    }
                    let data = if op.data.is_empty() {
                        None
                    } else {
                        let map: Map<String, Value> =
                            serde_json::from_str(&op.data).map_err(|e| StoreError::Corrupt {
                                path: inner.journal_dir.clone(),
                                detail: format!(
                                    "record {seq} holds a document that does not parse: {e}"
                                ),
                            })?;
                        Some((Some(map), op.data.clone()))
                    };
                    let p = Prepared {
                        kind: op.kind,
                        id: op.id.clone(),
                        data,
                        stamp: Some(op.stamp),
                    };
                    let (change, entry) = inner.stage(p, op.stamp, seq, &staged, true)?;
                    staged.push((change, entry));
                }
                replayed += staged.len() as u64;
                inner.publish(staged);
            }
            if replayed > 0 {
                tracing::info!(replayed, "replayed journal records not yet in SQLite");
            }
        }

        let applier_inner = inner.clone();
        let handle = std::thread::Builder::new()
            .name("hearth-applier".into())
            .spawn(move || applier_loop(applier_inner, conn))
            .map_err(|e| StoreError::Internal(format!("cannot start the applier thread: {e}")))?;
        let life = Arc::new(Lifetime {
            inner: inner.clone(),
            applier: Mutex::new(Some(handle)),
        });
        Ok(Store { inner, _life: life })
    }

    /// What recovery did when this store was opened.
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This replica's id.
    pub fn replica_id(&self) -> u64 {
        self.inner.replica
    }

    /// The sequence number of the last acknowledged change.
    pub fn last_seq(&self) -> u64 {
        self.inner.acked.load(Ordering::Acquire)
    }

    /// How durable an acknowledged write is ([`Options::durability`]). With
    /// [`Durability::Fsync`] every write waits for an `fdatasync` (shared
    /// by the writers waiting at once: group commit), hundreds of
    /// microseconds on most disks: a caller that answers many clients on
    /// one thread should run writes elsewhere then, concurrently.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_store::{Durability, Options, Store};
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// assert_eq!(store.durability(), Durability::Journal);
    /// ```
    pub fn durability(&self) -> Durability {
        self.inner.opts.durability
    }

    /// Whether a write of about `bytes` would wait for the applier now
    /// (back-pressure: the backlog is at its limit). A snapshot: another
    /// writer may fill the backlog the moment after. For callers that serve
    /// many clients on one thread and would rather hand a write elsewhere
    /// than hold the others up.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = hearth_store::Store::open(dir.path(), Default::default()).unwrap();
    /// assert!(!store.writes_would_wait(100));
    /// ```
    pub fn writes_would_wait(&self, bytes: usize) -> bool {
        self.inner.queue.lock().full(&self.inner.opts, bytes)
    }

    /// Replaces the document `id` with `data` (a JSON object). Returns the
    /// change's sequence number once it is durable per the store's
    /// [`Durability`].
    pub fn put(&self, id: &str, data: Value) -> Result<u64> {
        let p = prepare(ChangeKind::Put, id, Some(data), &self.inner.opts.limits)?;
        self.inner
            .commit(vec![p])
            .map(|r| r.map_or(0, |(_, last)| last))
    }

    /// Like [`Store::put`], from JSON text (validated: an object within the
    /// size limit).
    ///
    /// Compact text (no whitespace outside strings, no repeated key) is
    /// stored exactly as given, without building a JSON tree; other text is
    /// stored as serde_json prints it (docs/design.md, "Stored text").
    pub fn put_json(&self, id: &str, json: &str) -> Result<u64> {
        let limits = &self.inner.opts.limits;
        if !hearth_proto::is_compact_document(json, limits) {
            let map = hearth_proto::validate_document(json, limits)?;
            return self.put(id, Value::Object(map));
        }
        self.put_text(id, json)
    }

    /// Like [`Store::put_json`], for text a decoder has already checked to
    /// be compact; only the size limit is checked here.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_proto::CompactDocument;
    /// use hearth_store::{Options, Store};
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let doc = CompactDocument::new(r#"{"name":"Alice"}"#).unwrap();
    /// store.put_compact("user:1", &doc).unwrap();
    /// assert_eq!(store.get("user:1").unwrap().unwrap().json(), doc.as_str());
    /// ```
    pub fn put_compact(&self, id: &str, doc: &CompactDocument) -> Result<u64> {
        let max = self.inner.opts.limits.max_doc_bytes;
        let len = doc.as_str().len();
        if len > max {
            return Err(DocumentError::TooLarge { len, max }.into());
        }
        self.put_text(id, doc.as_str())
    }

    /// A put of text known to be a compact document within the limits.
    fn put_text(&self, id: &str, json: &str) -> Result<u64> {
        validate_id(id)?;
        let p = Prepared {
            kind: ChangeKind::Put,
            id: id.to_string(),
            data: Some((None, Arc::from(json))),
            stamp: None,
        };
        self.inner
            .commit(vec![p])
            .map(|r| r.map_or(0, |(_, last)| last))
    }

    /// Merges top-level `fields` into the document (creating it if absent); a
    /// `null` field removes that field.
    pub fn patch(&self, id: &str, fields: Value) -> Result<u64> {
        let p = prepare(ChangeKind::Patch, id, Some(fields), &self.inner.opts.limits)?;
        self.inner
            .commit(vec![p])
            .map(|r| r.map_or(0, |(_, last)| last))
    }

    /// Deletes the document, leaving a tombstone. Returns `None` (and writes
    /// nothing) when there is no such document.
    pub fn delete(&self, id: &str) -> Result<Option<u64>> {
        validate_id(id)?;
        if self.get(id)?.is_none() {
            return Ok(None);
        }
        let p = prepare(ChangeKind::Delete, id, None, &self.inner.opts.limits)?;
        self.inner.commit(vec![p]).map(|r| r.map(|(_, last)| last))
    }

    /// Applies all `ops` atomically: after a crash either all or none are
    /// there. Returns the first and last sequence numbers: every operation
    /// gets one, so a delete here leaves a tombstone even for an id with no
    /// document (where [`Store::delete`] writes nothing).
    pub fn batch(&self, ops: Vec<WriteOp>) -> Result<(u64, u64)> {
        let limits = &self.inner.opts.limits;
        if ops.is_empty() {
            return Err(StoreError::InvalidInput(
                "a batch needs at least one operation".into(),
            ));
        }
        if ops.len() > limits.max_batch_ops {
            return Err(StoreError::TooLarge(format!(
                "a batch holds at most {} operations, this one has {}; split it",
                limits.max_batch_ops,
                ops.len()
            )));
        }
        let prepared = ops
            .into_iter()
            .map(|op| match op {
                WriteOp::Put { id, data } => prepare(ChangeKind::Put, &id, Some(data), limits),
                WriteOp::Patch { id, fields } => {
                    prepare(ChangeKind::Patch, &id, Some(fields), limits)
                }
                WriteOp::Delete { id } => prepare(ChangeKind::Delete, &id, None, limits),
            })
            .collect::<Result<Vec<_>>>()?;
        let total: usize = prepared
            .iter()
            .map(|p| p.data.as_ref().map_or(0, |d| d.1.len()) + p.id.len())
            .sum();
        if total > journal::MAX_RECORD_BODY / 2 {
            return Err(StoreError::TooLarge(format!(
                "a batch of {total} bytes is too large; split it"
            )));
        }
        self.inner
            .commit(prepared)?
            .ok_or_else(|| StoreError::Internal("batch wrote nothing".into()))
    }

    /// Reads the document `id`; `None` when absent or deleted.
    pub fn get(&self, id: &str) -> Result<Option<Document>> {
        Ok(self
            .get_with_metadata(id)?
            .filter(|d| !d.metadata().deleted))
    }

    /// Reads the document `id` including tombstones: a deleted document is
    /// returned with `metadata().deleted == true` and no fields.
    pub fn get_with_metadata(&self, id: &str) -> Result<Option<Document>> {
        validate_id(id)?;
        // Only a flag for the applier's burst deferral: Relaxed suffices,
        // and loading first keeps the line shared while readers are busy.
        if !self.inner.read_lately.load(Ordering::Relaxed) {
            self.inner.read_lately.store(true, Ordering::Relaxed);
        }
        Ok(self.inner.current(id)?.map(Document))
    }

    /// Lists documents in id order, filtered by prefix and `type`. The
    /// iterator reads SQLite a page at a time and merges the writes the
    /// applier has not moved there yet (docs/design.md, "Reads"), so it
    /// never waits for the applier and memory stays bounded for any number
    /// of documents.
    pub fn list(&self, opts: ListOptions) -> Result<List> {
        let prefix = opts.prefix.as_deref().unwrap_or("");
        let pending = self.inner.pending_in(prefix, opts.after.as_deref());
        Ok(List {
            store: self.clone(),
            remaining: opts.limit.unwrap_or(usize::MAX),
            cursor: opts.after.clone(),
            scanned: opts.after.clone(),
            pending,
            sql_done: false,
            opts,
            buf: VecDeque::new(),
            done: false,
        })
    }

    /// Documents whose top-level fields equal every value in `filters`, in
    /// id order, at most `limit`, after the id `after`.
    pub fn query(
        &self,
        filters: &Map<String, Value>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<Document>> {
        let limit = limit.min(self.inner.opts.limits.max_page);
        let mut sql = String::from(
            "SELECT id, data, state, hlc, replica, seq FROM docs WHERE data IS NOT NULL",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        use rusqlite::types::Value as V;
        for (field, want) in filters {
            if field.is_empty() || field.contains(['"', '\\', '\0']) {
                return Err(StoreError::InvalidInput(format!(
                    "query field {field:?} cannot be used; field names must be non-empty without '\"' or '\\'"
                )));
            }
            if let (true, Value::String(s)) = (field == "type", want) {
                sql.push_str(" AND type = ?");
                args.push(V::Text(s.clone()));
                continue;
            }
            let path = format!("$.\"{field}\"");
            match want {
                Value::String(s) => {
                    sql.push_str(" AND json_type(data, ?) = 'text' AND json_extract(data, ?) = ?");
                    args.extend([V::Text(path.clone()), V::Text(path), V::Text(s.clone())]);
                }
                Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_some() => {
                    // Beyond SQLite's integers: compare the number's JSON text
                    // (`->` returns it as written), so the match is exact.
                    sql.push_str(
                        " AND json_type(data, ?) IN ('integer','real') AND (data -> ?) = ?",
                    );
                    args.extend([V::Text(path.clone()), V::Text(path), V::Text(n.to_string())]);
                }
                Value::Number(n) => {
                    sql.push_str(
                        " AND json_type(data, ?) IN ('integer','real') AND json_extract(data, ?) = ?",
                    );
                    args.extend([V::Text(path.clone()), V::Text(path)]);
                    args.push(match n.as_i64() {
                        Some(i) => V::Integer(i),
                        None => V::Real(n.as_f64().unwrap_or(f64::NAN)),
                    });
                }
                Value::Bool(b) => {
                    sql.push_str(" AND json_type(data, ?) = ?");
                    args.extend([
                        V::Text(path),
                        V::Text(if *b { "true" } else { "false" }.into()),
                    ]);
                }
                Value::Null => {
                    sql.push_str(" AND json_type(data, ?) = 'null'");
                    args.push(V::Text(path));
                }
                Value::Array(_) | Value::Object(_) => {
                    let kind = if want.is_array() { "array" } else { "object" };
                    sql.push_str(" AND json_type(data, ?) = ? AND json_extract(data, ?) = json(?)");
                    args.extend([
                        V::Text(path.clone()),
                        V::Text(kind.into()),
                        V::Text(path),
                        V::Text(want.to_string()),
                    ]);
                }
            }
        }
        if let Some(a) = after {
            sql.push_str(" AND id > ?");
            args.push(V::Text(a.to_string()));
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        args.push(V::Integer(limit as i64));
        self.inner.wait_applied(self.last_seq())?;
        self.inner.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), row_fields)?;
            rows.map(|r| entry_from_fields(r?).map(Document)).collect()
        })
    }

    /// Full-text search over every string value; best matches first. Words
    /// must all match; the last word also matches as a prefix.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>> {
        let words: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Err(StoreError::InvalidInput(
                "search text has no words; give at least one letter or digit".into(),
            ));
        }
        let mut q = String::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                q.push(' ');
            }
            q.push('"');
            q.push_str(w);
            q.push('"');
            if i == words.len() - 1 {
                q.push('*');
            }
        }
        let limit = limit.min(self.inner.opts.limits.max_page);
        self.inner.wait_applied(self.last_seq())?;
        self.inner.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT d.id, d.data, d.state, d.hlc, d.replica, d.seq, bm25(docs_fts) AS score
                 FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid
                 WHERE docs_fts MATCH ?1 AND d.data IS NOT NULL ORDER BY score LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![q, limit as i64], |r| {
                Ok((row_fields(r)?, r.get::<_, f64>(6)?))
            })?;
            rows.map(|r| {
                let (f, score) = r?;
                Ok(Hit {
                    doc: Document(entry_from_fields(f)?),
                    score: -score,
                })
            })
            .collect()
        })
    }

    /// Changes with a sequence number above `after`, in order, at most
    /// `limit`.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.inner.wait_applied(self.last_seq())?;
        self.inner
            .with_reader(|conn| read_changes(conn, after, limit))
    }

    /// Every change above `after`, for another replica's
    /// [`Store::apply_remote`].
    pub fn export_changes(&self, after: u64) -> Result<Vec<Change>> {
        self.changes_since(after, usize::MAX)
    }

    /// Merges changes made on other replicas. Changes that alter nothing
    /// (already known) are skipped. Atomic. Returns how many were applied.
    pub fn apply_remote(&self, changes: &[Change]) -> Result<usize> {
        let limits = &self.inner.opts.limits;
        let mut prepared = Vec::with_capacity(changes.len());
        for c in changes {
            if c.stamp.hlc > crate::hlc::MAX_HLC {
                return Err(StoreError::InvalidInput(format!(
                    "remote change to {:?} has clock {} beyond any real time; refusing it",
                    c.id, c.stamp.hlc
                )));
            }
            let data = match (&c.kind, &c.data) {
                (ChangeKind::Delete, _) => None,
                (_, Some(text)) => Some(Value::Object(hearth_proto::validate_document(
                    text, limits,
                )?)),
                (_, None) => {
                    return Err(StoreError::InvalidInput(format!(
                        "remote {} of {:?} has no data",
                        c.kind.as_str(),
                        c.id
                    )));
                }
            };
            let mut p = prepare(c.kind, &c.id, data, limits)?;
            p.stamp = Some(c.stamp);
            prepared.push(p);
        }
        if prepared.is_empty() {
            return Ok(0);
        }
        Ok(self
            .inner
            .commit(prepared)?
            .map_or(0, |(first, last)| (last - first + 1) as usize))
    }

    /// Follows the change log from `from_seq` (the first sequence number
    /// wanted; 0 or 1 for everything).
    pub fn subscribe(&self, from_seq: u64) -> Subscription {
        Subscription {
            store: self.clone(),
            next: from_seq.max(1),
            buf: VecDeque::new(),
            live: false,
        }
    }

    /// Waits until SQLite holds every acknowledged change.
    pub fn flush(&self) -> Result<()> {
        self.inner.wait_applied(self.last_seq())
    }

    /// Flushes and closes this handle. Other clones stay open.
    pub fn close(self) -> Result<()> {
        self.flush()
    }

    /// Counters and sizes. Never waits for the applier: the counts of
    /// documents and tombstones are SQLite's, corrected by the writes not
    /// applied yet (docs/design.md, "Reads", invariant S), so stats answer
    /// at once during a large import — `pending_ops` shows its backlog —
    /// and while the store cannot apply writes at all.
    pub fn stats(&self) -> Result<Stats> {
        let (documents, tombstones) = self.inner.counts()?;
        let (segments, journal_bytes) = {
            let w = self.inner.writer.lock();
            let segments = &w.journal.segments;
            // The active segment (the last) counts its records, not the
            // free space reserved after them.
            let mut bytes = w.journal.active_len();
            for (_, p) in &segments[..segments.len().saturating_sub(1)] {
                bytes += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            }
            (segments.len() as u64, bytes)
        };
        let database_bytes = ["", "-wal"]
            .iter()
            .map(|s| {
                let mut p = self.inner.db_path.clone().into_os_string();
                p.push(s);
                std::fs::metadata(PathBuf::from(p))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum();
        let (cache_entries, cache_bytes) = {
            let c = self.inner.cache.lock();
            (c.lru.len() as u64, c.bytes as u64)
        };
        let q = self.inner.queue.lock();
        Ok(Stats {
            data_dir: self.inner.dir.clone(),
            replica_id: self.inner.replica,
            durability: self.inner.opts.durability,
            documents,
            tombstones,
            last_seq: self.last_seq(),
            applied_seq: q.applied,
            pending_ops: q.pending_ops() as u64,
            cache_entries,
            cache_bytes,
            journal_segments: segments,
            journal_bytes,
            database_bytes,
        })
    }
}

type RowFields = (String, Option<Arc<str>>, String, i64, i64, i64);

fn row_fields(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowFields> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn entry_from_fields((id, data, state, hlc, replica, seq): RowFields) -> Result<Arc<Entry>> {
    sql::row_entry(id, data, &state, hlc, replica, seq).map(Arc::new)
}

fn read_changes(conn: &Connection, after: u64, limit: usize) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, kind, hlc, replica, data FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(rusqlite::params![after as i64, limit], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u8>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    rows.map(|r| {
        let (seq, id, kind, hlc, replica, data) = r?;
        Ok(Change {
            seq: seq as u64,
            kind: ChangeKind::from_u8(kind).ok_or_else(|| {
                StoreError::Internal(format!("change {seq} has unknown kind {kind}"))
            })?,
            id,
            stamp: Stamp {
                hlc: hlc as u64,
                replica: replica as u64,
            },
            data: data.map(Arc::from),
        })
    })
    .collect()
}

impl Inner {
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => sql::connect(&self.db_path)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock();
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }

    /// Visible documents and tombstones, as [`Store::stats`] counts them:
    /// SQLite's rows, each unapplied write (the overlay's latest entry for
    /// its id) moving its id from the state SQLite has to its own.
    ///
    /// The overlay is read first, then SQLite in one read transaction, so
    /// each id counts once: at its overlay entry's state if it has one,
    /// else at SQLite's — which holds every entry the applier removed from
    /// the overlay before it was read (it removes them after committing).
    fn counts(&self) -> Result<(u64, u64)> {
        let mut unapplied: Vec<Arc<Entry>> = {
            let overlay = self.overlay.lock();
            overlay.iter().map(|Keyed(e)| e.clone()).collect()
        };
        // In id order, the lookups walk SQLite's index from page to page.
        unapplied.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        self.with_reader(|conn| {
            let tx = conn.unchecked_transaction()?;
            let (mut documents, mut tombstones) = tx.query_row(
                "SELECT count(data), count(*) - count(data) FROM docs",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )?;
            let mut stmt = tx.prepare_cached("SELECT data IS NULL FROM docs WHERE id = ?1")?;
            for e in &unapplied {
                match stmt
                    .query_row([e.id.as_str()], |r| r.get::<_, bool>(0))
                    .optional()?
                {
                    Some(true) => tombstones -= 1,
                    Some(false) => documents -= 1,
                    None => {}
                }
                match e.json {
                    Some(_) => documents += 1,
                    None => tombstones += 1,
                }
            }
            drop(stmt);
            // Only read: ending it either way releases the snapshot.
            tx.rollback()?;
            // Each count is SQLite's, moved by entries whose ids it holds
            // as counted: it cannot fall below zero.
            Ok((documents.max(0) as u64, tombstones.max(0) as u64))
        })
    }

    /// The unapplied writes (overlay entries, tombstones included) whose id
    /// starts with `prefix` and comes after `after`: what a list merges
    /// over SQLite. One pass over the overlay under its lock; a heap gives
    /// them in id order as the list needs them, so a short page of a large
    /// backlog does not sort all of it.
    fn pending_in(&self, prefix: &str, after: Option<&str>) -> Pending {
        let entries: Vec<ById> = self
            .overlay
            .lock()
            .iter()
            .map(|Keyed(e)| e)
            .filter(|e| e.id.starts_with(prefix) && after.is_none_or(|a| e.id.as_str() > a))
            .map(|e| ById(e.clone()))
            .collect();
        Pending(BinaryHeap::from(entries))
    }

    /// The current entry for `id` (tombstones included): overlay, cache, then
    /// SQLite.
    fn current(&self, id: &str) -> Result<Option<Arc<Entry>>> {
        // Acquire pairs with the Release stores of `overlay_len` in
        // `publish` and the applier: a write acknowledged before this read
        // began made the length non-zero first, and a length back at zero
        // comes after the applier put the entries in the cache.
        if self.overlay_len.load(Ordering::Acquire) != 0
            && let Some(Keyed(e)) = self.overlay.lock().get(id)
        {
            return Ok(Some(e.clone()));
        }
        let generation = {
            let mut c = self.cache.lock();
            if let Some(e) = c.lru.get(id) {
                return Ok(Some(e.clone()));
            }
            c.generation
        };
        let entry = self.with_reader(|conn| sql::read_doc(conn, id))?;
        let Some(entry) = entry.map(Arc::new) else {
            return Ok(None);
        };
        let mut c = self.cache.lock();
        if c.generation == generation {
            c.insert(entry.clone());
        }
        Ok(Some(entry))
    }

    /// Computes the entry an operation produces. `staged` holds entries made
    /// earlier in the same record (a batch may touch an id twice).
    fn stage(
        &self,
        p: Prepared,
        stamp: Stamp,
        seq: u64,
        staged: &[(Arc<Change>, Arc<Entry>)],
        remote: bool,
    ) -> Result<(Arc<Change>, Arc<Entry>)> {
        let (fields, text) = match p.data {
            Some((fields, text)) => (fields, Some(text)),
            None => (None, None),
        };
        let change = Arc::new(Change {
            seq,
            id: p.id.clone(),
            kind: p.kind,
            stamp,
            data: text.clone(),
        });
        let needs_base = remote || p.kind == ChangeKind::Patch;
        if let (ChangeKind::Put, false, None, Some(text)) = (p.kind, needs_base, &fields, &text) {
            // A local put of compact text: its state is the put's own (the
            // CRDT's rule, without fields) plus its text, whose tree is
            // built only if something asks (docs/design.md, "Lazy state").
            let meta = DocState::from_op(ChangeKind::Put, stamp, None).stored_meta();
            let entry = Arc::new(Entry::from_text(p.id, meta, Some(text.clone()), stamp, seq));
            return Ok((change, entry));
        }
        let fields = match (fields, &text) {
            (None, Some(text)) => Some(serde_json::from_str(text).map_err(|e| {
                StoreError::Internal(format!("validated document does not parse: {e}"))
            })?),
            (fields, _) => fields,
        };
        let delta = DocState::from_op(p.kind, stamp, fields);
        let base = if needs_base {
            match staged.iter().rev().find(|(_, e)| e.id == p.id) {
                Some((_, e)) => Some(e.clone()),
                None => self.current(&p.id)?,
            }
        } else {
            None
        };
        let state = match &base {
            Some(b) => b.state().merge(&delta),
            None => delta,
        };
        let json: Option<Arc<str>> = if !state.exists() {
            None
        } else if p.kind == ChangeKind::Put && base.is_none() {
            text.clone()
        } else {
            Some(Arc::from(serde_json::to_string(&state.values).map_err(
                |e| StoreError::Internal(format!("cannot encode merged document: {e}")),
            )?))
        };
        let entry_stamp = state.max_stamp().unwrap_or(stamp);
        let entry = Arc::new(Entry::from_state(p.id, state, json, entry_stamp, seq));
        Ok((change, entry))
    }

    /// Makes staged changes visible: overlay, applier queue, change ring.
    /// Called with the writer lock held, in sequence order.
    fn publish(&self, staged: Vec<(Arc<Change>, Arc<Entry>)>) {
        let Some(last) = staged.last().map(|(c, _)| c.seq) else {
            return;
        };
        {
            let mut overlay = self.overlay.lock();
            for (_, e) in &staged {
                // `replace`, not `insert`: a later write of the same id
                // takes the slot (`insert` keeps the stored value).
                overlay.replace(Keyed(e.clone()));
            }
            // Release pairs with the Acquire load in `current`.
            self.overlay_len.store(overlay.len(), Ordering::Release);
        }
        let wake_applier = {
            let mut q = self.queue.lock();
            let n = staged.len();
            for (i, (change, entry)) in staged.iter().enumerate() {
                q.bytes += entry.weight();
                q.items.push_back(Queued {
                    change: change.clone(),
                    entry: entry.clone(),
                    record_end: i + 1 == n,
                });
            }
            q.applier_idle
        };
        {
            let mut ring = self.ring.lock();
            for (c, _) in &staged {
                ring.bytes += change_weight(c);
                ring.changes.push_back(c.clone());
            }
            while ring.changes.len() > self.opts.ring_capacity.max(1)
                || (ring.bytes > 64 << 20 && ring.changes.len() > 1)
            {
                if let Some(c) = ring.changes.pop_front() {
                    ring.bytes -= change_weight(&c);
                }
            }
            // Advanced under the ring lock: a subscriber checks `acked` under
            // this lock before it waits on `ring_cv`, so it cannot miss this.
            self.acked.store(last, Ordering::Release);
        }
        if wake_applier {
            self.work_cv.notify_one();
        }
        self.ring_cv.notify_all();
    }

    /// The write path (docs/design.md, "Commit protocol").
    fn commit(&self, ops: Vec<Prepared>) -> Result<Option<(u64, u64)>> {
        self.wait_for_space()?;
        let mut w = self.writer.lock();
        if let Some(err) = self.queue.lock().error.clone() {
            return Err(StoreError::Unavailable(format!(
                "the store cannot apply writes: {err}; fix the cause (disk space, permissions) — acknowledged data is safe in the journal"
            )));
        }
        let now = wall_ms();
        let first = w.next_seq;
        let mut staged: Vec<(Arc<Change>, Arc<Entry>)> = Vec::with_capacity(ops.len());
        let mut record_ops = Vec::with_capacity(ops.len());
        for p in ops {
            let remote = p.stamp.is_some();
            let stamp = match p.stamp {
                Some(s) => {
                    w.hlc.observe(s.hlc);
                    s
                }
                None => w.hlc.tick(now),
            };
            let seq = first + staged.len() as u64;
            let record_op = RecordOp {
                kind: p.kind,
                stamp,
                id: p.id.clone(),
                data: p
                    .data
                    .as_ref()
                    .map_or_else(|| Arc::from(""), |d| d.1.clone()),
            };
            let before = if remote {
                match staged.iter().rev().find(|(_, e)| e.id == p.id) {
                    Some((_, e)) => Some(e.clone()),
                    None => self.current(&p.id)?,
                }
            } else {
                None
            };
            let (change, entry) = self.stage(p, stamp, seq, &staged, remote)?;
            if before.is_some_and(|b| b.state() == entry.state()) {
                continue;
            }
            record_ops.push(record_op);
            staged.push((change, entry));
        }
        if staged.is_empty() {
            return Ok(None);
        }
        let last = first + staged.len() as u64 - 1;
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        encode_record(&mut buf, first, &record_ops);
        let appended = w.journal.append(&buf);
        if buf.capacity() <= 1 << 20 {
            w.buf = buf;
        }
        appended?;
        w.next_seq = last + 1;
        self.publish(staged);
        if w.journal.active_len() > self.opts.segment_bytes {
            match w.journal.rotate(last + 1) {
                Ok(()) => {
                    if let Ok(h) = w.journal.sync_handle() {
                        self.sync.lock().handle = Some((h, last));
                    }
                }
                Err(e) => tracing::warn!(
                    "journal rotation failed, continuing in the current segment: {e}"
                ),
            }
        }
        drop(w);
        if self.opts.durability == Durability::Fsync {
            self.sync_to(last)?;
        }
        Ok(Some((first, last)))
    }

    /// Group commit: waits until an `fdatasync` covers `seq`; the first
    /// waiter syncs for everyone.
    fn sync_to(&self, seq: u64) -> Result<()> {
        let mut s = self.sync.lock();
        loop {
            if s.synced >= seq {
                return Ok(());
            }
            if !s.syncing {
                s.syncing = true;
                let target = self.acked.load(Ordering::Acquire);
                let handle = s.handle.clone();
                drop(s);
                let result = match &handle {
                    Some((h, _)) => h.sync_data(),
                    None => Ok(()),
                };
                s = self.sync.lock();
                s.syncing = false;
                self.sync_cv.notify_all();
                match result {
                    Ok(()) => s.synced = s.synced.max(target),
                    Err(e) => return Err(StoreError::io(&self.journal_dir, e)),
                }
            } else {
                self.sync_cv.wait(&mut s);
            }
        }
    }

    /// Back-pressure: waits while the applier is too far behind.
    fn wait_for_space(&self) -> Result<()> {
        let mut q = self.queue.lock();
        // Under the queue's lock, as every change of `waited_on` (Relaxed:
        // the lock orders it).
        self.waited_on.fetch_add(1, Ordering::Relaxed);
        q.held_writers += 1;
        let result = self.wait_for_space_locked(&mut q);
        q.held_writers -= 1;
        self.waited_on.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Whether a caller waits for the applier (see [`Inner::waited_on`]).
    fn waited_on(&self) -> bool {
        // Relaxed: the queue's lock orders it against the applier's checks;
        // `courteous`, without the lock, reads it as a hint.
        self.waited_on.load(Ordering::Relaxed) > 0
    }

    fn wait_for_space_locked(&self, q: &mut parking_lot::MutexGuard<'_, Queue>) -> Result<()> {
        while q.full(&self.opts, 0) {
            if q.shutdown {
                return Err(StoreError::Closed);
            }
            if let Some(err) = &q.error {
                return Err(StoreError::Unavailable(format!(
                    "the store cannot apply writes: {err}"
                )));
            }
            self.work_cv.notify_one();
            self.progress_cv.wait(q);
        }
        Ok(())
    }

    /// Waits until the applier has applied `seq`.
    fn wait_applied(&self, seq: u64) -> Result<()> {
        let mut q = self.queue.lock();
        if q.applied >= seq {
            return Ok(());
        }
        // Under the queue's lock, as every change of `waited_on` (Relaxed:
        // the lock orders it).
        self.waited_on.fetch_add(1, Ordering::Relaxed);
        q.reader_target = q.reader_target.max(seq);
        let result = self.wait_applied_locked(&mut q, seq);
        self.waited_on.fetch_sub(1, Ordering::Relaxed);
        result
    }

    fn wait_applied_locked(
        &self,
        q: &mut parking_lot::MutexGuard<'_, Queue>,
        seq: u64,
    ) -> Result<()> {
        while q.applied < seq {
            if let Some(err) = &q.error {
                return Err(StoreError::Unavailable(format!(
                    "the store cannot apply writes: {err}; acknowledged data is safe in the journal"
                )));
            }
            if q.shutdown && q.pending_ops() == 0 {
                return Err(StoreError::Closed);
            }
            self.work_cv.notify_one();
            self.progress_cv.wait(q);
        }
        Ok(())
    }
}

fn change_weight(c: &Change) -> usize {
    64 + c.id.len() + c.data.as_ref().map_or(0, |d| d.len())
}

impl Cache {
    fn insert(&mut self, entry: Arc<Entry>) {
        if self
            .lru
            .peek(&entry.id)
            .is_some_and(|old| old.seq > entry.seq)
        {
            return;
        }
        let w = entry.weight();
        if let Some(old) = self.lru.put(entry.id.clone(), entry) {
            self.bytes -= old.weight();
        }
        self.bytes += w;
        while self.bytes > self.limit {
            match self.lru.pop_lru() {
                Some((_, e)) => self.bytes -= e.weight(),
                None => break,
            }
        }
    }
}

/// Reads and checks every journal segment (docs/design.md, "Recovery").
type Recovered = (Vec<(u64, PathBuf)>, Vec<journal::Record>, Recovery);

fn recover_journal(dir: &Path, applied: u64, repair: bool) -> Result<Recovered> {
    let mut segments = journal::list_segments(dir)?;
    let mut records = Vec::new();
    let mut recovery = Recovery::default();
    let mut i = 0;
    while i < segments.len() {
        let path = segments[i].1.clone();
        let scan = journal::scan_segment(&path)?;
        let is_last = i + 1 == segments.len();
        let mut cut_here = false;
        if scan.free_tail > 0 && scan.bad.is_none() {
            // Free space a mapped writer reserved: cut off, not reported.
            truncate_or_remove(&path, scan.good_len)?;
        }
        if let Some((off, why)) = &scan.bad {
            let claimed_end = claimed_record_end(&path, *off);
            // Zero bytes at the end are reserved free space, not data.
            let data_end = scan.file_len - scan.free_tail;
            let torn = is_last
                && claimed_end.is_none_or(|end| end >= data_end)
                && !valid_record_after(&path, *off);
            if torn {
                // A segment of nothing but reserved zeros holds no torn
                // bytes (it was created, then the process died).
                recovery.torn_tail_bytes += scan.file_len - scan.good_len - scan.free_tail;
                tracing::warn!(
                    path = %path.display(),
                    offset = off,
                    bytes = scan.file_len - scan.good_len,
                    "dropping a torn last journal record ({why}); it was never acknowledged"
                );
                truncate_or_remove(&path, scan.good_len)?;
                if scan.good_len == 0 {
                    segments.remove(i);
                    continue;
                }
            } else if repair {
                let aside = set_aside(&path, *off)?;
                recovery.set_aside.push(aside);
                cut_here = true;
            } else {
                let later = segments.len() - i - 1;
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!(
                        "journal record at byte {off} is damaged ({why}) and data follows it{}; run `hearth repair --data-dir {}` to keep everything before the damage and set the rest aside",
                        if later > 0 {
                            format!(" (and {later} later segment(s))")
                        } else {
                            String::new()
                        },
                        dir.parent().unwrap_or(dir).display()
                    ),
                });
            }
        }
        for rec in scan.records {
            let expected = records
                .last()
                .map(|r: &journal::Record| r.first_seq + r.ops.len() as u64)
                .unwrap_or(rec.first_seq);
            if rec.first_seq != expected {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    detail: format!(
                        "journal sequence jumps from {} to {}; a segment is missing",
                        expected.saturating_sub(1),
                        rec.first_seq
                    ),
                });
            }
            records.push(rec);
        }
        if cut_here {
            for (_, later) in segments.drain(i + 1..) {
                let aside = later.with_extension("log.damaged");
                std::fs::rename(&later, &aside).map_err(|e| StoreError::io(&later, e))?;
                recovery.set_aside.push(aside);
            }
        }
        i += 1;
    }
    if let Some(first) = records.first().filter(|r| r.first_seq > applied + 1) {
        {
            return Err(StoreError::Corrupt {
                path: dir.to_path_buf(),
                detail: format!(
                    "the journal starts at change {} but the database has only applied up to {applied}; changes are missing",
                    first.first_seq
                ),
            });
        }
    }
    recovery.replayed_ops = records
        .iter()
        .flat_map(|r| (0..r.ops.len() as u64).map(move |i| r.first_seq + i))
        .filter(|s| *s > applied)
        .count() as u64;
    Ok((segments, records, recovery))
}

/// Whether any intact record starts after offset `off`: then the bad record
/// at `off` is damage in the middle (e.g. a flipped bit in a length), not a
/// torn tail, and the records after it were acknowledged.
fn valid_record_after(path: &Path, off: u64) -> bool {
    let Ok(buf) = std::fs::read(path) else {
        return true;
    };
    let start = (off as usize).saturating_add(1);
    (start..buf.len()).any(|o| journal::decode_record(&buf[o..]).is_ok())
}

/// Where the record at `off` claims to end, if its header can be read.
fn claimed_record_end(path: &Path, off: u64) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    f.seek(std::io::SeekFrom::Start(off)).ok()?;
    let mut h = [0u8; 4];
    f.read_exact(&mut h).ok()?;
    Some(off + journal::RECORD_HEADER_LEN as u64 + u32::from_le_bytes(h) as u64)
}

fn truncate_or_remove(path: &Path, len: u64) -> Result<()> {
    if len == 0 {
        std::fs::remove_file(path).map_err(|e| StoreError::io(path, e))
    } else {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        f.set_len(len).map_err(|e| StoreError::io(path, e))?;
        f.sync_all().map_err(|e| StoreError::io(path, e))
    }
}

/// Copies the bytes from `off` on into `PATH.damaged-OFF` and cuts the file.
fn set_aside(path: &Path, off: u64) -> Result<PathBuf> {
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    f.seek(std::io::SeekFrom::Start(off))
        .map_err(|e| StoreError::io(path, e))?;
    let mut rest = Vec::new();
    f.read_to_end(&mut rest)
        .map_err(|e| StoreError::io(path, e))?;
    let aside = PathBuf::from(format!("{}.damaged-{off}", path.display()));
    std::fs::write(&aside, &rest).map_err(|e| StoreError::io(&aside, e))?;
    truncate_or_remove(path, off.max(journal::SEGMENT_HEADER_LEN))?;
    Ok(aside)
}

/// The applier thread (docs/design.md, "The applier").
fn applier_loop(inner: Arc<Inner>, mut conn: Connection) {
    if inner.opts.background_applier {
        lower_priority();
    }
    // Without it SQLite checkpoints inside the commit, as before: slower
    // for held writers, not wrong.
    let wal_pages = sql::take_over_checkpoints(&mut conn)
        .map_err(|e| tracing::warn!("cannot take over SQLite's checkpoints: {e}"))
        .ok();
    let mut backoff = Duration::from_millis(50);
    // What the applier has taken out of the queue and not yet applied, in
    // order (`Queue::taken` counts it), and an empty deque of the queue's
    // size that it swaps in for the queue's items: taking them is O(1)
    // under the queue's lock, where cloning a batch of up to 32,768 entries
    // out and later draining them held it (the drain alone 0.7-0.9 ms, up
    // to 6.5 ms when this thread was preempted), and every writer waited
    // (docs/design.md, "The applier").
    let mut mine: VecDeque<Queued> = VecDeque::new();
    let mut spare: VecDeque<Queued> = VecDeque::with_capacity(overlay_presize(&inner.opts));
    loop {
        let target = {
            let mut q = inner.queue.lock();
            while q.items.is_empty() && mine.is_empty() && !q.shutdown {
                q.applier_idle = true;
                inner.work_cv.wait(&mut q);
            }
            q.applier_idle = false;
            // Coalesce a trickle of writes into one transaction: wait a
            // little for more unless somebody is waiting on the applier
            // (or a backlog is already taken).
            let deadline = Instant::now() + APPLY_LINGER;
            while mine.is_empty()
                && q.items.len() < APPLY_LINGER_OPS
                && !inner.waited_on()
                && !q.shutdown
                && !inner.work_cv.wait_until(&mut q, deadline).timed_out()
            {}
            defer_to_burst(&inner, &mut q);
            if q.items.is_empty() && mine.is_empty() {
                return;
            }
            std::mem::swap(&mut q.items, &mut spare);
            q.taken += spare.len();
            (q.reader_target > q.applied).then_some(q.reader_target)
        };
        // Moves, outside the lock; `spare` keeps its capacity for the next
        // swap.
        mine.append(&mut spare);
        let len = batch_len(
            mine.iter()
                .map(|i| (i.change.seq, i.record_end, i.entry.weight())),
            inner.opts.apply_batch,
            apply_batch_bytes(&inner.opts),
            target,
        );
        let batch: Vec<Queued> = mine.drain(..len).collect();
        // As back-pressure counts it: the transaction's written share is a
        // share of it, and the commit takes all of it off the queue.
        let weight: usize = batch.iter().map(|i| i.entry.weight()).sum();
        let result = apply_batch(&mut conn, &inner, &batch, weight);
        match result {
            Ok(applied) => {
                backoff = Duration::from_millis(50);
                // A chunk at a time: this thread runs at background
                // priority, and a reader or writer blocked on a lock it was
                // preempted holding waits until it is scheduled again.
                for chunk in batch.chunks(LOCK_CHUNK) {
                    {
                        let mut c = inner.cache.lock();
                        c.generation += 1;
                        for Queued { entry: e, .. } in chunk {
                            c.insert(e.clone());
                        }
                    }
                    let mut overlay = inner.overlay.lock();
                    for Queued { entry: e, .. } in chunk {
                        if overlay
                            .get(e.id.as_str())
                            .is_some_and(|cur| cur.0.seq == e.seq)
                        {
                            overlay.remove(e.id.as_str());
                        }
                    }
                    // Release pairs with the Acquire load in `current`: the
                    // cache holds these entries before a reader may skip
                    // the overlay.
                    inner.overlay_len.store(overlay.len(), Ordering::Release);
                }
                {
                    let mut overlay = inner.overlay.lock();
                    // A burst grew it; once drained, give the table back its
                    // usual size so every read's overlay probe stays in cache.
                    let usual = overlay_presize(&inner.opts);
                    if overlay.is_empty() && overlay.capacity() > 2 * usual {
                        overlay.shrink_to(usual);
                    }
                }
                {
                    let mut q = inner.queue.lock();
                    q.taken -= batch.len();
                    q.bytes -= weight;
                    q.written_ops = 0;
                    q.written_bytes = 0;
                    q.applied = applied;
                    q.error = None;
                }
                // Dropped (the last references to many changes) after the
                // lock.
                drop(batch);
                inner.progress_cv.notify_all();
                // Invariant D: in fsync mode SQLite must be on disk before the
                // journal records it holds are deleted.
                let durable = inner.opts.durability == Durability::Journal
                    || !inner.writer.lock().journal.has_obsolete(applied)
                    || match sql::checkpoint(&conn) {
                        Ok(done) => done,
                        Err(e) => {
                            tracing::warn!(
                                "checkpoint before deleting journal segments failed: {e}"
                            );
                            false
                        }
                    };
                let obsolete = if durable {
                    inner.writer.lock().journal.take_obsolete(applied)
                } else {
                    Vec::new()
                };
                for p in obsolete {
                    if let Err(e) = std::fs::remove_file(&p) {
                        tracing::warn!(path = %p.display(), "cannot delete an applied journal segment: {e}");
                    }
                }
                // Relaxed: stored by this thread's commit (the WAL hook).
                if wal_pages
                    .as_ref()
                    .is_some_and(|p| p.load(Ordering::Relaxed) >= CHECKPOINT_PAGES)
                    && let Err(e) = sql::checkpoint_passive(&conn)
                {
                    tracing::warn!("checkpointing SQLite's WAL failed: {e}");
                }
            }
            Err(e) => {
                tracing::error!("applying journal records to SQLite failed: {e}");
                // Tried again from the same operation.
                for item in batch.into_iter().rev() {
                    mine.push_front(item);
                }
                let shutdown = {
                    let mut q = inner.queue.lock();
                    // Rolled back: none of it is written.
                    q.written_ops = 0;
                    q.written_bytes = 0;
                    q.error = Some(e.to_string());
                    q.shutdown
                };
                inner.progress_cv.notify_all();
                if shutdown {
                    return;
                }
                let deadline = Instant::now() + backoff;
                let mut q = inner.queue.lock();
                while !q.shutdown && Instant::now() < deadline {
                    inner.work_cv.wait_until(&mut q, deadline);
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The WAL's size, in pages, at which the applier checkpoints it after a
/// commit (docs/design.md, "Checkpoints"): SQLite's own default.
const CHECKPOINT_PAGES: usize = 1000;

/// Entries the applier moves into the cache and out of the overlay per
/// lock hold after a commit.
const LOCK_CHUNK: usize = 256;

/// How long the applier, at background priority, works before it offers
/// its core to any other runnable thread (docs/design.md, "Priority").
const APPLIER_TURN: Duration = Duration::from_micros(100);

/// When a background applier offers its core (policy only: time passed in).
///
/// A nice-19 thread that got a core keeps it until its scheduler slice
/// ends, at a tick (up to 4 ms on the project's VM), whoever else is
/// runnable there: a thread that yielded its core for a moment — the
/// shared-memory poller letting a client on its core run — waited that
/// long while the other core idled. Offering the core every
/// [`APPLIER_TURN`] bounds that wait and costs nothing when nobody takes
/// it (the yield returns at once).
#[derive(Debug)]
struct Courtesy {
    since: Instant,
}

impl Courtesy {
    fn new(now: Instant) -> Courtesy {
        Courtesy { since: now }
    }

    /// After a unit of work at `now`: whether to offer the core (and the
    /// next offer counts from `now`) — never while a reader or writer
    /// waits for the applier (`waited_on`): a nice-19 thread that yields
    /// to busy threads of normal priority goes to the back of a queue it
    /// may not reach again for a long time (EEVDF pushes its deadline out
    /// by a slice scaled to its weight), and under two busy loops a query
    /// waiting for 1,000 documents to be applied timed out after 30 s
    /// where without the offers it took 3 s (a debug build,
    /// docs/performance-log.md). Its nice value still gives others the cores.
    fn due(&mut self, now: Instant, waited_on: bool) -> bool {
        if waited_on || now.duration_since(self.since) < APPLIER_TURN {
            return false;
        }
        self.since = now;
        true
    }
}

/// Between two rows of a background applier's transaction: offers the
/// core when [`Courtesy`] says so (`inner`: who waits for the applier).
fn courteous(courtesy: &mut Option<Courtesy>, inner: &Inner) {
    if let Some(c) = courtesy
        && c.due(Instant::now(), inner.waited_on())
    {
        std::thread::yield_now();
    }
}

/// Operations a transaction takes, at least, before it may end at a
/// waiting reader's write (the applier's batches were this size before they
/// grew to `Options::apply_batch`).
const READER_BATCH: usize = 4096;

/// The most bytes (of queued entries' weight, as the back-pressure counts
/// them) the applier's transaction takes before it ends at a record
/// boundary: a quarter of `Options::max_pending_bytes`, at most 16 MiB.
fn apply_batch_bytes(opts: &Options) -> usize {
    (opts.max_pending_bytes / 4).clamp(1, 16 << 20)
}

/// How many of the queued operations (`(seq, last of its record, weight)`,
/// in order) the applier's next transaction takes (docs/design.md, "Batch
/// size"): whole records only, up to `max` operations or until it holds
/// `max_bytes` — or, while a reader waits for the applier to reach
/// `reader_target`, ending at the first record boundary at or past that seq
/// once it holds `READER_BATCH` operations (or `max`, if smaller), so that
/// the reader does not wait for a whole large transaction of writes made
/// after its own.
fn batch_len(
    items: impl Iterator<Item = (u64, bool, usize)>,
    max: usize,
    max_bytes: usize,
    reader_target: Option<u64>,
) -> usize {
    let floor = READER_BATCH.min(max);
    let (mut len, mut bytes) = (0, 0usize);
    for (seq, record_end, weight) in items {
        len += 1;
        bytes = bytes.saturating_add(weight);
        if !record_end {
            continue;
        }
        if len >= max
            || bytes >= max_bytes
            || (len >= floor && reader_target.is_some_and(|t| seq >= t))
        {
            break;
        }
    }
    len
}

/// Moves the calling thread (the applier) to background CPU priority.
///
/// Linux's `setpriority` on a thread id applies to that thread alone. Best
/// effort: a sandbox that forbids it leaves the applier at normal priority,
/// which is only slower for writers.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), APPLIER_NICE)
    {
        tracing::debug!("could not lower the applier's priority: {e}");
    }
}

/// The applier's nice value with [`Options::background_applier`]: the
/// lowest priority, so it runs on idle CPU and yields to acknowledged
/// writes and reads (its backlog is bounded by back-pressure anyway).
#[cfg(target_os = "linux")]
const APPLIER_NICE: i32 = 19;

/// The overlay's usual capacity: pre-sized so the writer lock is rarely
/// held across a rehash.
fn overlay_presize(opts: &Options) -> usize {
    opts.max_pending_ops.min(1 << 16)
}

/// Holds the applier back while a burst of writes is under way: each
/// `BURST_STEP` that saw new writes extends the wait, up to
/// `BURST_DEFER_MAX` (a step that saw only reads extends it too: they are
/// the other half of a busy burst). Stops at once when somebody waits on the applier
/// (a read that needs applied state, a writer held by back-pressure), at
/// shutdown, when the backlog reaches an eighth of the back-pressure limits,
/// or when a step saw no new write (the burst is over). The deferred writes
/// are acknowledged and readable from the overlay meanwhile; only their
/// materialisation in SQLite waits.
fn defer_to_burst(inner: &Inner, q: &mut parking_lot::MutexGuard<'_, Queue>) {
    let start = Instant::now();
    let mut seen = q.items.len();
    inner.read_lately.store(false, Ordering::Relaxed);
    while !inner.waited_on()
        && !q.shutdown
        && q.pending_ops() < inner.opts.max_pending_ops / 8
        && q.bytes < inner.opts.max_pending_bytes / 8
        && start.elapsed() < BURST_DEFER_MAX
    {
        let step = Instant::now() + BURST_STEP;
        while !inner.waited_on() && !q.shutdown && !inner.work_cv.wait_until(q, step).timed_out() {}
        let read = inner.read_lately.swap(false, Ordering::Relaxed);
        if q.items.len() == seen && !read {
            break;
        }
        seen = q.items.len();
    }
}

/// Applies `batch` (of `weight` in all) in one transaction; returns the
/// last seq it applied.
fn apply_batch(
    conn: &mut Connection,
    inner: &Inner,
    batch: &[Queued],
    weight: usize,
) -> Result<u64> {
    let tx = conn.transaction()?;
    let mut courtesy = inner
        .opts
        .background_applier
        .then(|| Courtesy::new(Instant::now()));
    let mut progress = Progress::new(batch.len(), weight);
    let mut last_for_id: HashMap<&str, &Arc<Entry>> = HashMap::with_capacity(batch.len());
    let mut max_hlc = 0;
    for Queued {
        change: c,
        entry: e,
        ..
    } in batch
    {
        courteous(&mut courtesy, inner);
        progress.row(inner);
        sql::write_change(&tx, c.seq, &c.id, c.kind, c.stamp, c.data.as_deref())?;
        last_for_id.insert(&e.id, e);
        max_hlc = max_hlc.max(c.stamp.hlc);
    }
    // Rows are looked up in id order (neighbouring keys of the id index) and
    // written in rowid order, new documents last (they get rowids above
    // every existing one): FTS5 flushes its pending terms into a new index
    // segment whenever a write's rowid is below the previous one, which in
    // hash order cost ~50 µs per rewritten document with text
    // (docs/design.md, "The applier").
    let mut docs: Vec<&Arc<Entry>> = last_for_id.into_values().collect();
    docs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    progress.documents(docs.len());
    let mut keyed = Vec::with_capacity(docs.len());
    for e in docs {
        courteous(&mut courtesy, inner);
        progress.row(inner);
        keyed.push((sql::doc_rowid(&tx, &e.id)?, e));
    }
    // Stable: new documents keep their id order.
    keyed.sort_by_key(|(rowid, _)| rowid.unwrap_or(i64::MAX));
    for (rowid, e) in keyed {
        courteous(&mut courtesy, inner);
        progress.row(inner);
        sql::write_doc(
            &tx,
            rowid,
            &e.id,
            &e.state_once(),
            e.json.as_deref(),
            e.stamp,
            e.seq,
        )?;
    }
    let applied = batch.last().map_or(0, |i| i.change.seq);
    sql::meta_set(&tx, "applied_seq", applied as i64)?;
    let prev: i64 = sql::meta_get(&tx, "max_hlc")?.unwrap_or(0);
    sql::meta_set(&tx, "max_hlc", prev.max(max_hlc as i64))?;
    tx.commit()?;
    Ok(applied)
}

/// How many times a transaction publishes its written share ([`Progress`]):
/// every sixth of the rows it expects, 16,384 rows (~5,500 operations) of
/// a transaction of 32,768 small documents. Each publication wakes every
/// writer held by back-pressure, and a shared-memory client's write that
/// meets a full backlog goes to the blocking pool: every 2,048 rows (48
/// times) cost sixteen Node clients 7 % of their puts a second, six times
/// nothing measurable; one client's slowest put was 16–21 ms with the
/// one and 28–36 ms with the other (docs/performance-log.md).
const PROGRESS_STEPS: usize = 6;

/// The fewest rows between two publications, for small transactions.
const PROGRESS_MIN_ROWS: usize = 64;

/// How far the applier's transaction has gone, published for back-pressure
/// (docs/design.md, "Back-pressure"): [`PROGRESS_STEPS`] times a
/// transaction, the share of its operations and weight that its rows so far
/// stand for ([`written_share`]) goes into the queue, and a writer held by
/// back-pressure is woken.
struct Progress {
    ops: usize,
    weight: usize,
    /// Rows the transaction writes (or looks up): one change row per
    /// operation, and a rowid lookup and a document row per document —
    /// counted as one per operation until [`Progress::documents`] says how
    /// many documents there are.
    rows: usize,
    done: usize,
    /// Rows between two publications.
    step: usize,
}

impl Progress {
    /// A transaction of `ops` operations of `weight` in all.
    fn new(ops: usize, weight: usize) -> Progress {
        Progress {
            ops,
            weight,
            rows: 3 * ops,
            done: 0,
            step: progress_step(ops),
        }
    }

    /// The transaction writes `docs` documents (at most one per operation,
    /// so the share only grows).
    fn documents(&mut self, docs: usize) {
        self.rows = self.ops + 2 * docs;
    }

    /// Before each row.
    fn row(&mut self, inner: &Inner) {
        if self.done > 0 && self.done.is_multiple_of(self.step) {
            let (ops, bytes) = written_share(self.ops, self.weight, self.done, self.rows);
            let mut q = inner.queue.lock();
            q.written_ops = ops;
            q.written_bytes = bytes;
            let held = q.held_writers > 0;
            drop(q);
            if held {
                inner.progress_cv.notify_all();
            }
        }
        self.done += 1;
    }
}

/// Rows between two publications of the written share of a transaction of
/// `ops` operations: [`PROGRESS_STEPS`] in the rows it expects (three per
/// operation), at least [`PROGRESS_MIN_ROWS`] apart.
fn progress_step(ops: usize) -> usize {
    (3 * ops).div_ceil(PROGRESS_STEPS).max(PROGRESS_MIN_ROWS)
}

/// The share of a transaction of `ops` operations and `weight` that `done`
/// of its `rows` rows stand for, rounded down: all of it only once every
/// row is written.
fn written_share(ops: usize, weight: usize, done: usize, rows: usize) -> (usize, usize) {
    if rows == 0 {
        return (0, 0);
    }
    let done = done.min(rows) as u128;
    let share = |n: usize| (n as u128 * done / rows as u128) as usize;
    (share(ops), share(weight))
}

/// An overlay entry, hashed and compared by its id, and found by one (a
/// `&str`): the set stores each entry once, its key inside it.
struct Keyed(Arc<Entry>);

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Keyed {}

impl std::hash::Hash for Keyed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes: `Borrow<str>` requires the same hash for a
        // `Keyed` and its id.
        self.0.id.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for Keyed {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// An overlay entry ordered by id, smallest first in a [`BinaryHeap`].
struct ById(Arc<Entry>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: `BinaryHeap` is a max-heap; the smallest id comes first.
        other.0.id.cmp(&self.0.id)
    }
}

/// A list's unapplied writes, handed out in id order.
struct Pending(BinaryHeap<ById>);

impl Pending {
    fn front(&self) -> Option<&Arc<Entry>> {
        self.0.peek().map(|e| &e.0)
    }

    fn pop_front(&mut self) -> Option<Arc<Entry>> {
        self.0.pop().map(|e| e.0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An iterator over documents from [`Store::list`], a page at a time.
pub struct List {
    store: Store,
    opts: ListOptions,
    /// The last id returned (the caller's page cursor).
    cursor: Option<String>,
    /// The last id looked at, returned or not (where SQLite reads resume).
    scanned: Option<String>,
    /// Unapplied writes in range, taken when the list began.
    pending: Pending,
    /// SQLite has no more rows in range.
    sql_done: bool,
    remaining: usize,
    buf: VecDeque<Document>,
    done: bool,
}

impl List {
    /// The id of the last document returned: pass it as
    /// [`ListOptions::after`] to get the next page.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Fills `buf` with the next documents: a page of SQLite rows merged,
    /// id by id, with the unapplied writes up to the page's last id (the
    /// newer of the two by seq wins; an unapplied delete hides the row).
    /// Loops while a page yields nothing visible and more is left.
    fn fetch(&mut self) -> Result<()> {
        while self.buf.is_empty() && !self.done {
            let (rows, upper) = if self.sql_done {
                (Vec::new(), None)
            } else {
                self.fetch_rows()?
            };
            // Every row is at most `upper`, so the merge leaves `scanned`
            // at the page's last id.
            self.merge(rows, upper.as_deref());
            if self.sql_done && self.pending.is_empty() {
                self.done = true;
            }
        }
        Ok(())
    }

    /// Merges `rows` (SQLite, in id order) with the unapplied writes whose
    /// id is at most `upper` (all of them when `None`) into `buf`.
    fn merge(&mut self, rows: Vec<Arc<Entry>>, upper: Option<&str>) {
        let mut rows = rows.into_iter().peekable();
        loop {
            let pending_next = self
                .pending
                .front()
                .filter(|p| upper.is_none_or(|u| p.id.as_str() <= u));
            let order = match (rows.peek(), pending_next) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(row), Some(p)) => p.id.cmp(&row.id),
            };
            let (entry, unapplied) = match order {
                std::cmp::Ordering::Less => match self.pending.pop_front() {
                    Some(p) => (p, true),
                    None => break,
                },
                std::cmp::Ordering::Greater => match rows.next() {
                    Some(row) => (row, false),
                    None => break,
                },
                std::cmp::Ordering::Equal => match (rows.next(), self.pending.pop_front()) {
                    (Some(row), Some(p)) if p.seq >= row.seq => (p, true),
                    (Some(row), _) => (row, false),
                    (None, Some(p)) => (p, true),
                    (None, None) => break,
                },
            };
            self.scanned = Some(entry.id.clone());
            if unapplied && !self.shows(&entry) {
                continue;
            }
            self.buf.push_back(Document(entry));
        }
    }

    /// Whether an unapplied write is listed: a document (not a delete)
    /// whose `type` is the one asked for, if any. SQLite rows are filtered
    /// by the query itself.
    fn shows(&self, entry: &Entry) -> bool {
        if entry.json.is_none() {
            return false;
        }
        match &self.opts.type_name {
            None => true,
            Some(want) => {
                let state = entry.state_once();
                state.values.get("type").and_then(Value::as_str) == Some(want.as_str())
            }
        }
    }

    /// The next page of SQLite rows in range, and the page's last id when
    /// more may follow (`None` once SQLite has nothing more in range).
    fn fetch_rows(&mut self) -> Result<(Vec<Arc<Entry>>, Option<String>)> {
        let n = PAGE.min(self.remaining);
        let prefix = self.opts.prefix.clone().unwrap_or_default();
        // One lower bound only, so SQLite seeks straight to it: a position
        // past the prefix start continues after it, else from the prefix.
        let (op, bound) = match &self.scanned {
            Some(c) if c.as_str() >= prefix.as_str() => (">", c.clone()),
            _ => (">=", prefix.clone()),
        };
        let mut sql = format!(
            "SELECT id, data, state, hlc, replica, seq FROM docs WHERE data IS NOT NULL AND id {op} ?1"
        );
        let mut args = vec![bound];
        if let Some(t) = &self.opts.type_name {
            sql.push_str(" AND type = ?2");
            args.push(t.clone());
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {n}"));
        let rows = self.store.inner.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), row_fields)?;
            rows.map(|r| entry_from_fields(r?))
                .collect::<Result<Vec<_>>>()
        })?;
        if rows.len() < n {
            self.sql_done = true;
        }
        let mut page = Vec::with_capacity(rows.len());
        for e in rows {
            if !e.id.starts_with(&prefix) {
                self.sql_done = true;
                break;
            }
            page.push(e);
        }
        let upper = if self.sql_done {
            None
        } else {
            page.last().map(|e| e.id.clone())
        };
        Ok((page, upper))
    }
}

impl Iterator for List {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        if self.buf.is_empty()
            && !self.done
            && let Err(e) = self.fetch()
        {
            self.done = true;
            return Some(Err(e));
        }
        let doc = self.buf.pop_front()?;
        self.remaining -= 1;
        self.cursor = Some(doc.id().to_string());
        Some(Ok(doc))
    }
}

/// A blocking iterator over the change log from [`Store::subscribe`].
pub struct Subscription {
    store: Store,
    next: u64,
    buf: VecDeque<Arc<Change>>,
    live: bool,
}

impl Subscription {
    /// The sequence number of the next change this subscription delivers.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Waits at most `timeout` for the next event; `None` on timeout or when
    /// the store closes.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Event>> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<Event>> {
        let inner = self.store.inner.clone();
        loop {
            if let Some(c) = self.buf.pop_front() {
                self.next = c.seq + 1;
                return Some(Ok(Event::Change(c)));
            }
            let mut ring = inner.ring.lock();
            let acked = inner.acked.load(Ordering::Acquire);
            if self.next > acked {
                if ring.closed {
                    return None;
                }
                match deadline {
                    Some(d) => {
                        if inner.ring_cv.wait_until(&mut ring, d).timed_out()
                            && self.next > inner.acked.load(Ordering::Acquire)
                        {
                            return None;
                        }
                    }
                    None => inner.ring_cv.wait(&mut ring),
                }
                continue;
            }
            let first = ring.changes.front().map_or(acked + 1, |c| c.seq);
            if self.next >= first {
                let start = (self.next - first) as usize;
                self.buf
                    .extend(ring.changes.iter().skip(start).take(PAGE).cloned());
                self.live = true;
                continue;
            }
            drop(ring);
            if self.live {
                self.live = false;
                return Some(Ok(Event::Lagged {
                    resume_from: self.next,
                }));
            }
            match self.store.changes_since(self.next - 1, PAGE) {
                Ok(changes) => self.buf.extend(changes.into_iter().map(Arc::new)),
                Err(e) => return Some(Err(e)),
            }
            if self.buf.is_empty() {
                return Some(Err(StoreError::Internal(format!(
                    "change {} is neither in memory nor in the change log",
                    self.next
                ))));
            }
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No byte bound.
    const ANY: usize = usize::MAX;

    /// `n` queued single-operation records of 100 bytes, seqs from 1.
    fn records(n: u64) -> impl Iterator<Item = (u64, bool, usize)> + Clone {
        (1..=n).map(|seq| (seq, true, 100))
    }

    #[test]
    fn without_a_waiting_reader_a_batch_takes_up_to_the_maximum() {
        assert_eq!(batch_len(records(100_000), 32_768, ANY, None), 32_768);
        assert_eq!(batch_len(records(10), 32_768, ANY, None), 10);
    }

    #[test]
    fn a_batch_ends_at_a_waiting_readers_write_once_it_holds_the_reader_floor() {
        assert_eq!(batch_len(records(100_000), 32_768, ANY, Some(5_000)), 5_000);
        assert_eq!(
            batch_len(records(100_000), 32_768, ANY, Some(10)),
            READER_BATCH
        );
        assert_eq!(
            batch_len(records(100_000), 32_768, ANY, Some(90_000)),
            32_768
        );
    }

    #[test]
    fn a_maximum_below_the_reader_floor_still_bounds_the_batch() {
        assert_eq!(batch_len(records(100), 16, ANY, Some(50)), 16);
        assert_eq!(batch_len(records(100), 16, ANY, Some(5)), 16);
    }

    #[test]
    fn a_background_applier_offers_its_core_once_per_turn_of_work() {
        let t = Instant::now();
        let mut c = Courtesy::new(t);
        assert!(!c.due(t, false));
        assert!(!c.due(t + APPLIER_TURN - Duration::from_micros(1), false));
        assert!(c.due(t + APPLIER_TURN, false));
        assert!(
            !c.due(t + APPLIER_TURN + Duration::from_micros(1), false),
            "the next turn counts from the offer"
        );
        assert!(c.due(t + APPLIER_TURN * 2, false));
    }

    #[test]
    fn a_background_applier_never_offers_its_core_while_someone_waits_for_it() {
        let t = Instant::now();
        let mut c = Courtesy::new(t);
        assert!(!c.due(t + APPLIER_TURN, true), "a reader waits");
        assert!(!c.due(t + APPLIER_TURN * 5, true), "still");
        assert!(
            c.due(t + APPLIER_TURN * 5, false),
            "nobody waits any more: the turn is long over"
        );
    }

    #[test]
    fn a_batch_never_splits_a_record() {
        // Records of three operations: seqs 1-3, 4-6, …
        let ops = (1..=30u64).map(|seq| (seq, seq % 3 == 0, 100));
        assert_eq!(batch_len(ops.clone(), 4, ANY, None), 6);
        assert_eq!(batch_len(ops.clone(), 3, ANY, Some(1)), 3);
        assert_eq!(batch_len(ops.clone(), 100, 250, None), 3);
        assert_eq!(batch_len(ops, 100, ANY, None), 30);
    }

    #[test]
    fn a_batch_of_big_documents_ends_once_it_holds_the_byte_bound() {
        // 256 KiB documents: a transaction of 16 MiB takes 64 of them, and
        // writers held by back-pressure get room after each.
        let big = (1..=1000u64).map(|seq| (seq, true, 256 << 10));
        assert_eq!(batch_len(big.clone(), 32_768, 16 << 20, None), 64);
        assert_eq!(batch_len(big.clone(), 10, 16 << 20, None), 10);
        // One document over the bound is a batch of its own.
        assert_eq!(batch_len(big, 32_768, 100, None), 1);
        // Small documents reach the operation bound first.
        assert_eq!(batch_len(records(100_000), 32_768, 16 << 20, None), 32_768);
    }

    #[test]
    fn a_transactions_written_share_is_its_rows_share_rounded_down() {
        // 1,000 operations of 100 KB in all, 3,000 rows.
        assert_eq!(written_share(1000, 100_000, 0, 3000), (0, 0));
        assert_eq!(written_share(1000, 100_000, 1500, 3000), (500, 50_000));
        assert_eq!(written_share(1000, 100_000, 2999, 3000), (999, 99_966));
        assert_eq!(written_share(1000, 100_000, 3000, 3000), (1000, 100_000));
        assert_eq!(
            written_share(1000, 100_000, 5000, 3000),
            (1000, 100_000),
            "never more than the whole transaction"
        );
        assert_eq!(written_share(0, 0, 0, 0), (0, 0));
        // Weights whose product with a row count overflows 64 bits.
        assert_eq!(
            written_share(2, usize::MAX, 1, 2),
            (1, usize::MAX / 2),
            "no overflow"
        );
    }

    #[test]
    fn a_transaction_publishes_its_share_six_times_at_least_64_rows_apart() {
        // 32,768 operations: 98,304 rows expected.
        assert_eq!(progress_step(32_768), 16_384);
        assert_eq!(progress_step(1_000), 500);
        assert_eq!(progress_step(10), PROGRESS_MIN_ROWS);
        assert_eq!(progress_step(0), PROGRESS_MIN_ROWS);
    }

    #[test]
    fn a_transactions_share_only_grows_once_its_documents_are_counted() {
        // 4 operations on 2 documents: 12 rows assumed, then 4 + 2 × 2.
        let mut p = Progress {
            ops: 4,
            weight: 400,
            rows: 12,
            done: 4,
            step: PROGRESS_MIN_ROWS,
        };
        let before = written_share(p.ops, p.weight, p.done, p.rows);
        p.documents(2);
        let after = written_share(p.ops, p.weight, p.done, p.rows);
        assert_eq!((before, after), ((1, 133), (2, 200)));
    }

    fn queue(taken: usize, bytes: usize) -> Queue {
        Queue {
            items: VecDeque::new(),
            taken,
            bytes,
            written_ops: 0,
            written_bytes: 0,
            held_writers: 0,
            applied: 0,
            error: None,
            shutdown: false,
            applier_idle: false,
            reader_target: 0,
        }
    }

    #[test]
    fn back_pressure_counts_the_written_share_of_a_transaction_as_written() {
        let opts = Options {
            max_pending_ops: 1000,
            max_pending_bytes: 1 << 20,
            ..Options::default()
        };
        let mut q = queue(1000, 1000);
        assert!(q.full(&opts, 0), "at the operation limit");
        q.written_ops = 1;
        assert!(!q.full(&opts, 0), "one of them written");
        assert_eq!((q.pending_ops(), q.unwritten_ops()), (1000, 999));

        let mut q = queue(10, 1 << 20);
        assert!(q.full(&opts, 0), "at the byte limit");
        q.written_bytes = 100;
        assert!(!q.full(&opts, 0), "100 bytes of it written");
        assert!(q.full(&opts, 100), "but not room for 100 more");
    }

    #[test]
    fn the_byte_bound_is_a_quarter_of_the_back_pressure_limit_up_to_16_mib() {
        let mut opts = Options::default();
        assert_eq!(apply_batch_bytes(&opts), 16 << 20);
        opts.max_pending_bytes = 8 << 20;
        assert_eq!(apply_batch_bytes(&opts), 2 << 20);
    }
}
