//! Failing disks and damaged journals (docs/design.md, "Faults and what they do").
//!
//! Two kinds of fault are injected here.
//!
//! **Through the file layer.** [`Options::journal_io`] takes any
//! [`JournalIo`]; `Faulty` wraps the real files and, when armed, fails the
//! next `append` with ENOSPC, writes only half a record and then fails (or
//! returns a short count), refuses to `truncate`, refuses to create a
//! segment, or fails `fdatasync`. The checks: the failing write returns an
//! error (`StorageFull` for a full disk), is not visible, earlier writes are
//! intact, sequence numbers stay gapless, a later write succeeds once the fault
//! clears — unless the cut-back failed too, which poisons the journal
//! (`Unavailable`) until a reopen, which then drops the torn tail and says so.
//!
//! **In the files.** Journal damage only matters for records SQLite has not
//! applied yet, and a store that is dropped normally drains its applier
//! first. So the damaged journals here are made the way they are made in
//! real life: a child process (this test binary re-executed, see
//! `fault_child_writer`) opens the store, writes documents, reports how far
//! it got, and is killed with SIGKILL. To make sure none of its records reach
//! SQLite before the kill, the child holds SQLite's write lock on `hearth.db`
//! from a second connection (`BEGIN IMMEDIATE`), exactly as any other process
//! holding a write transaction would; its applier waits, its writes are still
//! acknowledged by the journal. After the kill the parent damages the journal
//! bytes following the documented segment format and reopens.

mod common;
#[path = "common/refuse.rs"]
mod refuse;

use common::Guarded;
use hearth_proto::ErrorCode;
use hearth_store::{
    Durability, JournalFile, JournalIo, Options, OsJournalIo, Store, StoreError, SyncHandle,
    WriteOp,
};
use refuse::{flush_until_caught_up, refusing_inserts_into};
use serde_json::{Value, json};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

// ------------------------------------------------------------ the file layer

/// What the next append does.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Writes nothing, fails with ENOSPC.
    Enospc,
    /// Writes the first half of the buffer, then fails with ENOSPC.
    HalfThenEnospc,
    /// Writes the first half of the buffer and reports that count.
    HalfShortCount,
}

#[derive(Debug, Default)]
struct Plan {
    next_append: Option<Fault>,
    truncate_fails: bool,
    refuse_next_create: bool,
    fail_next_header: bool,
    refuse_open_append: bool,
    sync_fails: bool,
    /// Bytes written by the last torn append.
    torn_bytes: u64,
}

/// A [`JournalIo`] over the real file system that injects faults on demand.
#[derive(Clone, Default)]
struct Faulty(Arc<Mutex<Plan>>);

impl Faulty {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.0.lock().unwrap()
    }
    fn arm(&self, fault: Fault) {
        self.plan().next_append = Some(fault);
    }
    fn options(&self) -> Options {
        Options {
            journal_io: Arc::new(self.clone()),
            ..Options::default()
        }
    }
}

fn enospc() -> io::Error {
    io::Error::from(io::ErrorKind::StorageFull)
}

struct FaultyFile {
    inner: Box<dyn JournalFile>,
    plan: Faulty,
}

struct FaultySync {
    inner: Arc<dyn SyncHandle>,
    plan: Faulty,
}

impl JournalIo for Faulty {
    fn create(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
        if std::mem::take(&mut self.plan().refuse_next_create) {
            return Err(enospc());
        }
        let inner = OsJournalIo.create(path)?;
        if std::mem::take(&mut self.plan().fail_next_header) {
            self.arm(Fault::HalfThenEnospc);
        }
        Ok(Box::new(FaultyFile {
            inner,
            plan: self.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
        if self.plan().refuse_open_append {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(Box::new(FaultyFile {
            inner: OsJournalIo.open_append(path)?,
            plan: self.clone(),
        }))
    }
}

impl JournalFile for FaultyFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fault = self.plan.plan().next_append.take();
        match fault {
            None => self.inner.append(buf),
            Some(Fault::Enospc) => Err(enospc()),
            Some(Fault::HalfThenEnospc) => {
                let n = self.inner.append(&buf[..buf.len() / 2])?;
                self.plan.plan().torn_bytes = n as u64;
                Err(enospc())
            }
            Some(Fault::HalfShortCount) => {
                let n = self.inner.append(&buf[..buf.len() / 2])?;
                self.plan.plan().torn_bytes = n as u64;
                Ok(n)
            }
        }
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.plan.plan().truncate_fails {
            return Err(io::Error::other("injected: truncate refused"));
        }
        self.inner.truncate(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.plan.plan().sync_fails {
            return Err(io::Error::other("injected: fdatasync failed"));
        }
        self.inner.sync_data()
    }
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
        Ok(Arc::new(FaultySync {
            inner: self.inner.sync_handle()?,
            plan: self.plan.clone(),
        }))
    }
}

impl SyncHandle for FaultySync {
    fn sync_data(&self) -> io::Result<()> {
        if self.plan.plan().sync_fails {
            return Err(io::Error::other("injected: fdatasync failed"));
        }
        self.inner.sync_data()
    }
}

// ------------------------------------------------------------ helpers

/// Spawning a child forks this process, and until the child's `exec` it
/// holds copies of every open descriptor — including a store's `LOCK`, whose
/// `flock` then outlives the store's drop, so a reopen in that window finds
/// the directory `Locked` by this very process. Children are therefore
/// spawned under the write side of this lock, and every test holds the read
/// side while it opens, drops and reopens stores.
static FORK: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn no_fork() -> std::sync::RwLockReadGuard<'static, ()> {
    FORK.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn doc_id(i: usize) -> String {
    format!("doc:{i:04}")
}

fn doc(i: usize) -> Value {
    json!({"type": "Doc", "i": i, "text": format!("entry number {i}")})
}

fn put_docs(store: &Store, range: std::ops::Range<usize>) {
    for i in range {
        store.put(&doc_id(i), doc(i)).unwrap();
    }
}

fn assert_docs(store: &Store, present: std::ops::Range<usize>, absent: std::ops::Range<usize>) {
    for i in present {
        assert_eq!(
            store.get(&doc_id(i)).unwrap().map(|d| d.to_value()),
            Some(doc(i)),
            "{} lost",
            doc_id(i)
        );
    }
    for i in absent {
        assert!(
            store.get(&doc_id(i)).unwrap().is_none(),
            "{} present",
            doc_id(i)
        );
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn journal_listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

/// (offset, total length) of every record in a segment, per the documented
/// format: a 16-byte header, then `len u32, crc u32, body[len]` records,
/// then (from a writer that was killed) zero bytes it had reserved.
fn records(segment: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(&segment[..8], b"HRTHJRNL");
    let mut out = Vec::new();
    let mut off = 16;
    while off + 8 <= segment.len() {
        let len = u32::from_le_bytes(segment[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 || off + 8 + len > segment.len() {
            break;
        }
        out.push((off, 8 + len));
        off += 8 + len;
    }
    assert!(
        segment[off..].iter().all(|&b| b == 0),
        "segment has trailing bytes that are not free space"
    );
    out
}

/// Where a segment's records end (its free space, if any, follows).
fn records_end(segment: &[u8]) -> usize {
    records(segment).last().map_or(16, |(off, len)| off + len)
}

/// `segment` with `extra` written right after its last record, where the
/// next record would have gone (over free space, or past the end).
fn after_records(segment: &[u8], extra: &[u8]) -> Vec<u8> {
    let end = records_end(segment);
    let mut out = segment.to_vec();
    out.resize(out.len().max(end + extra.len()), 0);
    out[end..end + extra.len()].copy_from_slice(extra);
    out
}

/// Opens the store in `dir` again and checks that recovery found no torn
/// tail.
fn reopen_whole(dir: &Path) -> Store {
    let store = Store::open(dir, Options::default()).unwrap();
    assert_eq!(store.recovery().torn_tail_bytes, 0);
    store
}

fn active_len(dir: &Path) -> u64 {
    let segs = segments(dir);
    std::fs::metadata(segs.last().unwrap()).unwrap().len()
}

// ------------------------------------------------------------ full disk

#[test]
fn a_full_disk_fails_the_write_with_storage_full_and_keeps_earlier_writes() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let store = Store::open(dir.path(), io.options()).unwrap();
    put_docs(&store, 0..10);
    let len = active_len(dir.path());
    io.arm(Fault::Enospc);
    let e = store.put(&doc_id(10), doc(10)).unwrap_err();
    assert!(matches!(e, StoreError::StorageFull { .. }), "{e:?}");
    assert_eq!(e.code(), ErrorCode::StorageFull);
    assert_eq!(active_len(dir.path()), len, "the segment was not cut back");
    assert!(
        store.get(&doc_id(10)).unwrap().is_none(),
        "a failed write is visible"
    );
    assert_eq!(store.last_seq(), 10);
    // The fault has cleared: the next write succeeds, with the next seq.
    assert_eq!(store.put(&doc_id(11), doc(11)).unwrap(), 11);
    assert_docs(&store, 0..10, 10..11);
    drop(store);
    let store = reopen_whole(dir.path());
    assert_docs(&store, 0..10, 10..11);
    assert_docs(&store, 11..12, 0..0);
    assert_eq!(store.last_seq(), 11);
}

#[test]
fn a_full_disk_during_a_patch_leaves_the_document_as_it_was() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let store = Store::open(dir.path(), io.options()).unwrap();
    store.put("p:1", json!({"a": 1, "b": 2})).unwrap();
    io.arm(Fault::Enospc);
    let e = store.patch("p:1", json!({"a": null, "c": 3})).unwrap_err();
    assert_eq!(e.code(), ErrorCode::StorageFull);
    assert_eq!(
        store.get("p:1").unwrap().unwrap().to_value(),
        json!({"a": 1, "b": 2})
    );
    io.arm(Fault::Enospc);
    assert_eq!(
        store.delete("p:1").unwrap_err().code(),
        ErrorCode::StorageFull
    );
    assert!(store.get("p:1").unwrap().is_some());
    assert_eq!(store.changes_since(0, 10).unwrap().len(), 1);
}

#[test]
fn a_full_disk_during_a_batch_writes_none_of_it() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let store = Store::open(dir.path(), io.options()).unwrap();
    put_docs(&store, 0..3);
    io.arm(Fault::HalfThenEnospc);
    let ops = (3..8)
        .map(|i| WriteOp::Put {
            id: doc_id(i),
            data: doc(i),
        })
        .chain([WriteOp::Delete { id: doc_id(0) }])
        .collect();
    let e = store.batch(ops).unwrap_err();
    assert_eq!(e.code(), ErrorCode::StorageFull);
    assert_docs(&store, 0..3, 3..8);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_docs(&store, 0..3, 3..8);
    assert_eq!(store.last_seq(), 3);
}

#[test]
fn a_full_disk_reaches_subscribers_as_nothing() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let store = Store::open(dir.path(), io.options()).unwrap();
    put_docs(&store, 0..2);
    io.arm(Fault::Enospc);
    store.put(&doc_id(2), doc(2)).unwrap_err();
    put_docs(&store, 3..4);
    let ids: Vec<String> = store
        .changes_since(0, 10)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [doc_id(0), doc_id(1), doc_id(3)]);
}

// ------------------------------------------------------------ torn writes

#[test]
fn a_half_written_record_that_then_fails_is_cut_back_and_the_next_write_succeeds() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let store = Store::open(dir.path(), io.options()).unwrap();
    put_docs(&store, 0..10);
    let len = active_len(dir.path());
    io.arm(Fault::HalfThenEnospc);
    let e = store.put(&doc_id(10), doc(10)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::StorageFull, "{e:?}");
    assert!(io.plan().torn_bytes > 0);
    assert_eq!(
        active_len(dir.path()),
        len,
        "the half record was left in the journal"
    );
    assert!(store.get(&doc_id(10)).unwrap().is_none());
    assert_eq!(store.put(&doc_id(11), doc(11)).unwrap(), 11);
    drop(store);
    let store = reopen_whole(dir.path());
    assert_docs(&store, 0..10, 10..11);
    assert_docs(&store, 11..12, 0..0);
}

#[test]
fn a_short_write_count_is_an_error_and_is_cut_back() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let store = Store::open(dir.path(), io.options()).unwrap();
    put_docs(&store, 0..5);
    let len = active_len(dir.path());
    io.arm(Fault::HalfShortCount);
    let e = store.put(&doc_id(5), doc(5)).unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
    assert_eq!(active_len(dir.path()), len);
    assert_eq!(store.put(&doc_id(6), doc(6)).unwrap(), 6);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_docs(&store, 0..5, 5..6);
    assert_docs(&store, 6..7, 0..0);
}

#[test]
fn a_torn_write_whose_cut_back_also_fails_poisons_the_journal_until_reopen() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let store = Store::open(dir.path(), io.options()).unwrap();
    put_docs(&store, 0..10);
    let len = active_len(dir.path());
    io.plan().truncate_fails = true;
    io.arm(Fault::HalfThenEnospc);
    assert!(store.put(&doc_id(10), doc(10)).is_err());
    let torn = io.plan().torn_bytes;
    assert!(torn > 0);
    assert_eq!(
        active_len(dir.path()),
        len + torn,
        "the torn bytes stay on disk"
    );
    // Even with the disk healthy again, writes are refused until a reopen.
    io.plan().truncate_fails = false;
    for attempt in [
        store.put(&doc_id(11), doc(11)).unwrap_err(),
        store.patch(&doc_id(0), json!({"x": 1})).unwrap_err(),
        store.delete(&doc_id(1)).unwrap_err(),
        store
            .batch(vec![WriteOp::Delete { id: doc_id(2) }])
            .unwrap_err(),
    ] {
        assert!(matches!(attempt, StoreError::Unavailable(_)), "{attempt:?}");
        assert_eq!(attempt.code(), ErrorCode::Unavailable);
    }
    // Reads still work.
    assert_docs(&store, 0..10, 10..12);
    assert_eq!(store.list(Default::default()).unwrap().count(), 10);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.recovery().torn_tail_bytes, torn);
    assert_eq!(
        active_len(dir.path()),
        len,
        "recovery did not drop the torn tail"
    );
    assert_docs(&store, 0..10, 10..12);
    assert_eq!(store.put(&doc_id(12), doc(12)).unwrap(), 11);
    drop(store);
    let store = reopen_whole(dir.path());
    assert_docs(&store, 12..13, 10..12);
}

// ------------------------------------------------------------ rotation, open, fsync

#[test]
fn a_segment_that_cannot_be_created_at_rotation_fails_no_write() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let opts = Options {
        segment_bytes: 1024,
        ..io.options()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    put_docs(&store, 0..10);
    io.plan().refuse_next_create = true;
    put_docs(&store, 10..20);
    io.plan().fail_next_header = true;
    put_docs(&store, 20..40);
    assert!(
        !io.plan().refuse_next_create && !io.plan().fail_next_header,
        "no rotation happened"
    );
    assert_docs(&store, 0..40, 40..41);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_docs(&store, 0..40, 40..41);
    assert_eq!(store.last_seq(), 40);
}

#[test]
fn a_journal_that_cannot_be_opened_for_appending_fails_open_with_an_error() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    {
        let store = Store::open(dir.path(), io.options()).unwrap();
        put_docs(&store, 0..3);
    }
    io.plan().refuse_open_append = true;
    let e = Store::open(dir.path(), io.options()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e:?}");
    io.plan().refuse_open_append = false;
    let store = Store::open(dir.path(), io.options()).unwrap();
    assert_docs(&store, 0..3, 3..4);
}

#[test]
fn a_failing_fdatasync_in_fsync_mode_is_returned_to_the_writer() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let io = Faulty::default();
    let opts = Options {
        durability: Durability::Fsync,
        ..io.options()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    put_docs(&store, 0..5);
    io.plan().sync_fails = true;
    let e = store.put(&doc_id(5), doc(5)).unwrap_err();
    assert_ne!(e.code(), ErrorCode::InvalidInput, "{e:?}");
    io.plan().sync_fails = false;
    put_docs(&store, 6..8);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_docs(&store, 0..5, 8..9);
    assert_docs(&store, 6..8, 0..0);
}

// ------------------------------------------------------------ damaged files

const CHILD_DIR: &str = "HEARTH_FAULT_CHILD_DIR";
const CHILD_DOCS: &str = "HEARTH_FAULT_CHILD_DOCS";
const CHILD_SEGMENT: &str = "HEARTH_FAULT_CHILD_SEGMENT";

#[test]
fn a_transaction_sqlite_refuses_is_tried_again_from_its_first_operation() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_pending_ops: 290,
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    put_docs(&store, 0..10);
    store.flush().unwrap();
    // Another connection holds SQLite's write lock (the applier waits for
    // it) and adds a trigger that refuses every change row, as a database
    // that cannot be written would, once that transaction commits.
    let other = refusing_inserts_into(dir.path(), "changes");
    put_docs(&store, 10..300);
    // Time for the applier to take them off the queue (it lingers at most
    // 2 ms, and 290 operations are past an eighth of the limit, where it
    // stops deferring) and wait for SQLite's lock: taken, they are still
    // pending, and back-pressure counts them.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(store.writes_would_wait(0));
    other.execute_batch("COMMIT").unwrap();
    let refused = store.flush().unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused:?}");
    // Stats still answer, and show what waits to be applied.
    let stats = store.stats().unwrap();
    assert_eq!((stats.documents, stats.applied_seq), (300, 10));
    assert_eq!(stats.pending_ops, 290);
    // The operations it could not apply stay readable; new writes are
    // refused rather than queued.
    assert_docs(&store, 0..300, 300..301);
    let write = store.put(&doc_id(300), doc(300)).unwrap_err();
    assert_eq!(write.code(), ErrorCode::Unavailable, "{write:?}");

    other.execute_batch("DROP TRIGGER refuse").unwrap();
    flush_until_caught_up(&store);
    assert!(!store.writes_would_wait(0));
    let stats = store.stats().unwrap();
    assert_eq!((stats.applied_seq, stats.pending_ops), (300, 0));
    // Every operation reached SQLite once, in order.
    let seqs: Vec<i64> = other
        .prepare("SELECT seq FROM changes ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seqs, (1..=300).collect::<Vec<i64>>());
    let docs: i64 = other
        .query_row("SELECT count(*) FROM docs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(docs, 300);
    drop(store);
    assert_docs(&reopen_whole(dir.path()), 0..300, 300..301);
}

/// Not a test of its own: the child process of the damaged-journal tests.
/// Does nothing unless `HEARTH_FAULT_CHILD_DIR` is set.
#[test]
fn fault_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let n: usize = std::env::var(CHILD_DOCS).unwrap().parse().unwrap();
    let segment_bytes: u64 = std::env::var(CHILD_SEGMENT).unwrap().parse().unwrap();
    let store = Store::open(
        &dir,
        Options {
            segment_bytes,
            ..Options::default()
        },
    )
    .unwrap();
    // Hold SQLite's write lock so the applier cannot apply anything.
    let blocker = rusqlite::Connection::open(Path::new(&dir).join("hearth.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    put_docs(&store, 0..n);
    // A line of its own: the test harness has already printed
    // "test fault_child_writer ... " without a newline.
    println!("\nready {}", store.last_seq());
    // Wait to be killed; if the parent goes away first, stdin closes.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(3);
}

/// Spawns `cmd` with stdin, stdout and stderr piped, under a watchdog,
/// holding the write side of [`FORK`] across the fork.
fn spawn_guarded(
    cmd: &mut Command,
    limit: std::time::Duration,
) -> (Guarded, std::process::ChildStdout) {
    let forking = FORK
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `spawn` returns once the child has exec'd and dropped our files.
    drop(forking);
    Guarded::watch(child, limit)
}

/// Runs `fault_child_writer` in a child process that writes `n` documents
/// with the given segment size, then kills it with SIGKILL.
fn write_and_kill(dir: &Path, n: usize, segment_bytes: u64) {
    let (child, stdout) = spawn_guarded(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fault_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .env(CHILD_DOCS, n.to_string())
            .env(CHILD_SEGMENT, segment_bytes.to_string()),
        std::time::Duration::from_secs(120),
    );
    let mut ready = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // Other lines are the test harness's own output.
        if let Some(seq) = line.strip_prefix("ready ") {
            ready = Some(seq.parse::<u64>().unwrap());
            break;
        }
    }
    let err = child.kill();
    assert_eq!(
        ready,
        Some(n as u64),
        "the child did not finish writing: {err}"
    );
    // Nothing reached SQLite: every record is only in the journal.
    let c = rusqlite::Connection::open(dir.join("hearth.db")).unwrap();
    let applied: Option<i64> = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'applied_seq'",
            [],
            |r| r.get(0),
        )
        .ok();
    assert_eq!(applied.unwrap_or(0), 0, "the applier was not held back");
}

#[test]
fn killed_writes_that_never_reached_sqlite_are_replayed_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 30, 64 << 20);
    let _no_fork = no_fork();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.recovery().replayed_ops, 30);
    assert_eq!(store.recovery().torn_tail_bytes, 0);
    assert_docs(&store, 0..30, 30..31);
    assert_eq!(store.list(Default::default()).unwrap().count(), 30);
    assert_eq!(store.search("entry", 100).unwrap().len(), 30);
}

#[cfg(target_os = "linux")]
#[test]
fn a_killed_writer_s_reserved_free_space_is_cut_off_at_open_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 30, 64 << 20);
    let _no_fork = no_fork();
    let seg = segments(dir.path()).pop().unwrap();
    let killed = std::fs::read(&seg).unwrap();
    let end = records_end(&killed);
    assert!(
        killed.len() > end,
        "the mapped writer reserved no space ahead of itself"
    );
    let store = reopen_whole(dir.path());
    assert_eq!(store.recovery().replayed_ops, 30);
    assert_docs(&store, 0..30, 30..31);
    assert_eq!(std::fs::read(&seg).unwrap(), killed[..end]);
    // The next record goes right after the last one.
    assert_eq!(store.put(&doc_id(30), doc(30)).unwrap(), 31);
    drop(store);
    let store = reopen_whole(dir.path());
    assert_docs(&store, 0..31, 31..32);
}

#[test]
fn the_journal_size_in_stats_counts_records_not_reserved_space() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    put_docs(&store, 0..10);
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    assert_eq!(records(&bytes).len(), 10);
    assert_eq!(
        store.stats().unwrap().journal_bytes,
        records_end(&bytes) as u64
    );
}

#[test]
fn a_last_segment_of_nothing_but_zeros_was_never_headed_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 5, 64 << 20);
    let _no_fork = no_fork();
    // As if the writer had created the next segment and reserved its space,
    // then died before its header was copied in.
    let empty = dir.path().join("journal").join(format!("{:020}.log", 6));
    std::fs::write(&empty, vec![0u8; 1 << 20]).unwrap();
    let store = reopen_whole(dir.path());
    assert_docs(&store, 0..5, 5..6);
    assert!(!empty.exists());
    assert_eq!(store.put(&doc_id(5), doc(5)).unwrap(), 6);
}

#[test]
fn a_closed_store_s_segments_end_at_their_last_record() {
    let _no_fork = no_fork();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            segment_bytes: 4096,
            ..Options::default()
        },
    )
    .unwrap();
    put_docs(&store, 0..200);
    let segs = segments(dir.path());
    assert!(segs.len() > 2, "{segs:?}");
    // Rotation cut every earlier segment back already (the applier may
    // delete one it has applied meanwhile).
    for seg in &segs[..segs.len() - 1] {
        if let Ok(bytes) = std::fs::read(seg) {
            assert_eq!(bytes.len(), records_end(&bytes), "{}", seg.display());
        }
    }
    drop(store);
    for (seg, bytes) in journal_listing(dir.path()) {
        assert_eq!(bytes.len(), records_end(&bytes), "{}", seg.display());
    }
    let store = reopen_whole(dir.path());
    assert_docs(&store, 0..200, 200..201);
}

#[test]
fn a_torn_half_record_at_the_end_of_the_journal_is_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 40, 64 << 20);
    let _no_fork = no_fork();
    let seg = segments(dir.path()).pop().unwrap();
    let killed = std::fs::read(&seg).unwrap();
    let (off, len) = *records(&killed).last().unwrap();
    let bytes = killed[..records_end(&killed)].to_vec();
    let half = &bytes[off..off + len / 2];
    std::fs::write(&seg, after_records(&killed, half)).unwrap();

    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.recovery().torn_tail_bytes, half.len() as u64);
    assert_eq!(store.recovery().replayed_ops, 40);
    assert_docs(&store, 0..40, 40..41);
    assert!(
        std::fs::read(&seg).unwrap() == bytes,
        "the torn tail was not cut off"
    );
    assert_eq!(store.put(&doc_id(40), doc(40)).unwrap(), 41);
    drop(store);
    let store = reopen_whole(dir.path());
    assert_docs(&store, 0..41, 41..42);
}

#[test]
fn three_stray_bytes_at_the_end_of_the_journal_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 5, 64 << 20);
    let _no_fork = no_fork();
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, after_records(&bytes, &[0x40, 0x01, 0x02])).unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.recovery().torn_tail_bytes, 3);
    assert_docs(&store, 0..5, 5..6);
}

/// Writes 50 documents in a killed child and flips one bit in the middle of
/// the body of record 25 (seq 26). Returns the segment, its damaged bytes
/// and the record's offset.
fn flip_a_bit_in_record_25(dir: &Path) -> (PathBuf, Vec<u8>, usize) {
    write_and_kill(dir, 50, 64 << 20);
    let segs = segments(dir);
    assert_eq!(segs.len(), 1);
    let seg = segs[0].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let recs = records(&bytes);
    assert_eq!(recs.len(), 50);
    let (off, len) = recs[25];
    bytes[off + 8 + (len - 8) / 2] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    (seg, bytes, off)
}

#[test]
fn a_flipped_bit_in_a_record_followed_by_more_records_fails_open_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, _, off) = flip_a_bit_in_record_25(dir.path());
    let _no_fork = no_fork();
    let before = journal_listing(dir.path());
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    match &e {
        StoreError::Corrupt { path, detail } => {
            assert_eq!(path, &seg);
            assert!(
                detail.contains(&off.to_string()),
                "offset {off} not named: {detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), ErrorCode::Corrupt);
    let msg = e.to_string();
    assert!(msg.contains(&seg.display().to_string()), "{msg}");
    assert!(msg.contains("hearth repair"), "{msg}");
    assert!(
        journal_listing(dir.path()) == before,
        "a failed open changed the journal"
    );
    // And it keeps refusing: nothing was half-repaired.
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn repair_keeps_the_records_before_the_damage_and_sets_the_rest_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (_seg, damaged, off) = flip_a_bit_in_record_25(dir.path());
    let _no_fork = no_fork();
    let opts = Options {
        repair: true,
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let aside = store.recovery().set_aside.clone();
    assert!(!aside.is_empty());
    for p in &aside {
        assert!(p.exists(), "{} does not exist", p.display());
    }
    assert!(
        std::fs::read(&aside[0]).unwrap() == damaged[off..],
        "the set-aside file does not hold the damaged part"
    );
    assert_eq!(store.recovery().replayed_ops, 25);
    assert_docs(&store, 0..25, 25..51);
    assert_eq!(store.last_seq(), 25);
    assert_eq!(store.put(&doc_id(50), doc(50)).unwrap(), 26);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_docs(&store, 0..25, 25..50);
    assert_docs(&store, 50..51, 0..0);
    for p in &aside {
        assert!(p.exists(), "{} was removed", p.display());
    }
}

#[test]
fn a_flipped_bit_in_the_length_of_a_record_followed_by_more_records_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 50, 64 << 20);
    let _no_fork = no_fork();
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let (off, _) = records(&bytes)[25];
    bytes[off + 2] ^= 0x01; // len += 65536: now claims to run past the end
    std::fs::write(&seg, &bytes).unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(e) => assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}"),
        Ok(store) => {
            let lost: Vec<String> = (0..50)
                .filter(|i| store.get(&doc_id(*i)).unwrap().is_none())
                .map(doc_id)
                .collect();
            panic!(
                "open succeeded (torn_tail_bytes = {}) and lost acknowledged documents {lost:?}",
                store.recovery().torn_tail_bytes
            );
        }
    }
}

#[test]
fn a_torn_record_at_the_end_of_a_segment_that_is_not_the_last_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 60, 2048);
    let _no_fork = no_fork();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let bytes = std::fs::read(&segs[0]).unwrap();
    let (off, len) = *records(&bytes).last().unwrap();
    std::fs::write(&segs[0], &bytes[..off + len / 2]).unwrap();
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    match &e {
        StoreError::Corrupt { path, detail } => {
            assert_eq!(path, &segs[0]);
            assert!(detail.contains(&off.to_string()), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn repair_of_a_damaged_early_segment_sets_the_later_segments_aside() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 60, 2048);
    let _no_fork = no_fork();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let bytes = std::fs::read(&segs[0]).unwrap();
    let recs = records(&bytes);
    let kept = recs.len() - 1;
    let (off, len) = recs[kept];
    std::fs::write(&segs[0], &bytes[..off + len / 2]).unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            repair: true,
            ..Options::default()
        },
    )
    .unwrap();
    let aside = &store.recovery().set_aside;
    assert_eq!(aside.len(), segs.len(), "{aside:?}");
    for p in aside {
        assert!(p.exists(), "{}", p.display());
    }
    assert_docs(&store, 0..kept, kept..60);
    assert_eq!(store.last_seq(), kept as u64);
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_docs(&store, 0..kept, kept..60);
}

#[test]
fn a_missing_segment_in_the_middle_of_the_journal_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 60, 2048);
    let _no_fork = no_fork();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    std::fs::remove_file(&segs[1]).unwrap();
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn a_journal_segment_with_a_foreign_header_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_and_kill(dir.path(), 5, 64 << 20);
    let _no_fork = no_fork();
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[..8].copy_from_slice(b"NOTHEART");
    std::fs::write(&seg, &bytes).unwrap();
    let e = Store::open(dir.path(), Options::default()).unwrap_err();
    match &e {
        StoreError::Corrupt { path, .. } => assert_eq!(path, &seg),
        other => panic!("{other:?}"),
    }
    assert!(std::fs::read(&seg).unwrap() == bytes);
}

#[test]
fn a_journal_left_by_a_clean_shutdown_can_take_a_torn_tail_too() {
    let _no_fork = no_fork();
    // Records that SQLite already holds stay in the active segment; damage
    // after them is handled the same way.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        put_docs(&store, 0..20);
    }
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let (off, len) = *records(&bytes).last().unwrap();
    let mut torn = bytes.clone();
    torn.extend_from_slice(&bytes[off..off + len / 2]);
    std::fs::write(&seg, &torn).unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.recovery().torn_tail_bytes, (len / 2) as u64);
    assert_eq!(store.recovery().replayed_ops, 0);
    assert_docs(&store, 0..20, 20..21);
}
