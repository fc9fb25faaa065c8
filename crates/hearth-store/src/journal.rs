//! The journal: checksummed, append-only segment files.
//!
//! Owns: the on-disk record format (docs/design.md, "Journal segment format"),
//! appending records (through a shared mapping of the active segment on
//! Linux, `MappedJournalIo`, with `write()` elsewhere), rotating segments,
//! and scanning them at recovery, free space included. Must never:
//! acknowledge a record that `write()` did not fully accept or that was not
//! wholly copied into reserved blocks, take reserved zero bytes for a
//! record, or trust a length or checksum read from disk before checking it.

use crate::crdt::ChangeKind;
use crate::error::{Result, StoreError};
use crate::hlc::Stamp;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Segment header: magic, version, reserved.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"HRTHJRNL";
pub(crate) const SEGMENT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
/// Record header: body length and CRC-32C.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// The largest record body accepted when reading (1 GiB).
pub(crate) const MAX_RECORD_BODY: usize = 1 << 30;

/// One operation inside a record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecordOp {
    pub(crate) kind: ChangeKind,
    pub(crate) stamp: Stamp,
    pub(crate) id: String,
    /// JSON object text; empty for a delete.
    pub(crate) data: Arc<str>,
}

/// A decoded record: consecutive operations starting at `first_seq`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) first_seq: u64,
    pub(crate) ops: Vec<RecordOp>,
}

/// Appends the encoding of a record (header and body) to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, first_seq: u64, ops: &[RecordOp]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        out.push(op.kind.to_u8());
        out.extend_from_slice(&op.stamp.hlc.to_le_bytes());
        out.extend_from_slice(&op.stamp.replica.to_le_bytes());
        out.extend_from_slice(&(op.id.len() as u32).to_le_bytes());
        out.extend_from_slice(op.id.as_bytes());
        out.extend_from_slice(&(op.data.len() as u32).to_le_bytes());
        out.extend_from_slice(op.data.as_bytes());
    }
    let body_len = out.len() - start - RECORD_HEADER_LEN;
    let crc = crc32c::crc32c(&out[start + RECORD_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why bytes at some offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadRecord {
    /// Fewer bytes than the header or the claimed body.
    Short,
    /// A length over the maximum.
    Length(u64),
    /// The checksum does not match.
    Checksum,
    /// The body does not parse.
    Body(&'static str),
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecord::Short => f.write_str("record cut short"),
            BadRecord::Length(n) => write!(f, "record length {n} is impossible"),
            BadRecord::Checksum => f.write_str("checksum mismatch"),
            BadRecord::Body(why) => write!(f, "record body malformed: {why}"),
        }
    }
}

/// Decodes one record from the start of `buf`; returns it and its total size.
/// Never panics and never allocates more than `buf` holds.
pub(crate) fn decode_record(buf: &[u8]) -> Result<(Record, usize), BadRecord> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(BadRecord::Short);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if !(12..=MAX_RECORD_BODY).contains(&len) {
        return Err(BadRecord::Length(len as u64));
    }
    let Some(body) = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Err(BadRecord::Short);
    };
    if crc32c::crc32c(body) != crc {
        return Err(BadRecord::Checksum);
    }
    let record = decode_body(body)?;
    Ok((record, RECORD_HEADER_LEN + len))
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadRecord> {
        if self.buf.len() < n {
            return Err(BadRecord::Body("field runs past the end"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, BadRecord> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, BadRecord> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, BadRecord> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<&'a str, BadRecord> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| BadRecord::Body("text is not UTF-8"))
    }
}

fn decode_body(body: &[u8]) -> Result<Record, BadRecord> {
    let mut c = Cursor { buf: body };
    let first_seq = c.u64()?;
    let count = c.u32()? as usize;
    // Each op is at least 29 bytes; refuse counts the body cannot hold.
    if count == 0 || count > body.len() / 29 {
        return Err(BadRecord::Body("operation count does not fit the body"));
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = ChangeKind::from_u8(c.u8()?).ok_or(BadRecord::Body("unknown operation kind"))?;
        let hlc = c.u64()?;
        let replica = c.u64()?;
        let id = c.str()?.to_string();
        let data: Arc<str> = Arc::from(c.str()?);
        ops.push(RecordOp {
            kind,
            stamp: Stamp { hlc, replica },
            id,
            data,
        });
    }
    if !c.buf.is_empty() {
        return Err(BadRecord::Body("trailing bytes"));
    }
    Ok(Record { first_seq, ops })
}

/// The file operations the journal needs. The real implementation is
/// [`OsJournalIo`]; tests substitute one that injects faults (torn writes,
/// full disks, failing truncates).
pub trait JournalIo: Send + Sync + 'static {
    /// Creates a new, empty segment file at `path` (failing if it exists).
    fn create(&self, path: &Path) -> io::Result<Box<dyn JournalFile>>;
    /// Opens an existing segment for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn JournalFile>>;
}

/// One open journal segment.
pub trait JournalFile: Send + Sync {
    /// One `write()` of `buf` at the end of the file; returns how much was
    /// written (a short count is possible).
    fn append(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// A handle that can `fdatasync` this file from another thread.
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>>;
    /// Told once, before any record, when every write will be followed by
    /// an `fdatasync` (fsync durability): a file may skip work whose cost
    /// each sync would then pay. Does nothing by default.
    fn syncs_every_write(&mut self) {}
}

/// Something that can make a file's data durable.
pub trait SyncHandle: Send + Sync {
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
}

/// The journal on the real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsJournalIo;

struct OsFile(File);

impl SyncHandle for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

impl JournalFile for OsFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
        Ok(Arc::new(self.0.try_clone()?))
    }
}

impl JournalIo for OsJournalIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        Ok(Box::new(OsFile(f)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
        let f = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(OsFile(f)))
    }
}

/// The journal on the real file system, each active segment written
/// through a shared mapping (docs/design.md, "Free space"): a record is
/// copied into the page cache with no system call. The default on Linux.
#[cfg(target_os = "linux")]
#[derive(Debug, Default, Clone, Copy)]
pub struct MappedJournalIo;

/// Bytes of a segment mapped for writing; records past it are written
/// with `pwrite` (a segment rotates once past `segment_bytes`, 64 MiB by
/// default).
#[cfg(target_os = "linux")]
const MAPPED_WINDOW: usize = 128 << 20;

#[cfg(target_os = "linux")]
struct MappedSegment(hearth_shm::MappedAppend);

#[cfg(target_os = "linux")]
impl JournalFile for MappedSegment {
    fn append(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf).map(|()| buf.len())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        // Writes back the mapping's dirty pages too.
        self.0.file().sync_data()
    }
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
        Ok(Arc::new(self.0.file().try_clone()?))
    }
    fn syncs_every_write(&mut self) {
        // The zeros written ahead would be written back by every sync.
        self.0.set_fill_ahead(false);
    }
}

#[cfg(target_os = "linux")]
impl MappedSegment {
    /// A segment file appended to from `len` on.
    fn open(f: File, len: u64) -> io::Result<Box<dyn JournalFile>> {
        let append = hearth_shm::MappedAppend::new(f, len, MAPPED_WINDOW)?;
        Ok(Box::new(MappedSegment(append)))
    }
}

#[cfg(target_os = "linux")]
impl JournalIo for MappedJournalIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
        let f = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(path)?;
        MappedSegment::open(f, 0)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        // Recovery has cut the segment back to its last record.
        let len = f.metadata()?.len();
        MappedSegment::open(f, len)
    }
}

/// The segment header bytes.
pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h
}

/// The file name of the segment whose first record has `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// Lists segment files in `dir` in sequence order: (first_seq, path).
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What scanning one segment found.
pub(crate) struct SegmentScan {
    pub(crate) records: Vec<Record>,
    /// Offset just past the last good record.
    pub(crate) good_len: u64,
    /// The file's length.
    pub(crate) file_len: u64,
    /// The first bad record, if any: its offset and why.
    pub(crate) bad: Option<(u64, BadRecord)>,
    /// Zero bytes after the last record (free space a mapped writer
    /// reserved; docs/design.md "Free space"): not a bad record.
    pub(crate) free_tail: u64,
}

/// Reads and checks a whole segment. Stops at the first bad record.
pub(crate) fn scan_segment(path: &Path) -> Result<SegmentScan> {
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| StoreError::io(path, e))?;
    let file_len = buf.len() as u64;
    let zeros = buf.iter().all(|&b| b == 0);
    if buf.len() < SEGMENT_HEADER_LEN as usize || zeros {
        // A segment created but not yet headed (shorter than a header, or
        // nothing but the zeros a mapped writer reserved) is a torn tail.
        return Ok(SegmentScan {
            records: Vec::new(),
            good_len: 0,
            file_len,
            bad: Some((0, BadRecord::Short)),
            free_tail: if zeros { file_len } else { 0 },
        });
    }
    if &buf[..8] != SEGMENT_MAGIC {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail:
                "not a hearth journal segment (bad magic); move it out of the journal directory"
                    .into(),
        });
    }
    let version = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if version != SEGMENT_VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "journal format version {version} is not supported by this hearth (supports {SEGMENT_VERSION}); upgrade hearth"
            ),
        });
    }
    let mut off = SEGMENT_HEADER_LEN as usize;
    let mut records = Vec::new();
    let mut bad = None;
    let mut free_tail = 0;
    while off < buf.len() {
        match decode_record(&buf[off..]) {
            Ok((rec, n)) => {
                records.push(rec);
                off += n;
            }
            Err(why) => {
                // Zero bytes at the end are reserved free space. No record
                // starts with zeros (its length is at least 12), so zeros
                // all the way from here are no damaged record at all.
                let zeros = buf[off..].iter().rev().take_while(|&&b| b == 0).count();
                free_tail = zeros as u64;
                if zeros < buf.len() - off {
                    bad = Some((off as u64, why));
                }
                break;
            }
        }
    }
    Ok(SegmentScan {
        records,
        good_len: off as u64,
        file_len,
        bad,
        free_tail,
    })
}

/// The journal's active segment and the segments not yet deleted.
pub(crate) struct Journal {
    dir: PathBuf,
    io: Arc<dyn JournalIo>,
    active: Box<dyn JournalFile>,
    active_path: PathBuf,
    active_len: u64,
    /// Segments by first seq, including the active one (last).
    pub(crate) segments: Vec<(u64, PathBuf)>,
    poisoned: bool,
    sync_dir: bool,
}

impl Journal {
    /// Opens the journal for appending after recovery: continues the last
    /// segment (already truncated to its good length) or starts one.
    pub(crate) fn open(
        dir: &Path,
        io: Arc<dyn JournalIo>,
        segments: Vec<(u64, PathBuf)>,
        next_seq: u64,
        sync_dir: bool,
    ) -> Result<Journal> {
        let mut segments = segments;
        let (active, active_path, active_len) = match segments.last() {
            Some((_, path)) => {
                let len = std::fs::metadata(path)
                    .map_err(|e| StoreError::io(path, e))?
                    .len();
                let mut f = io.open_append(path).map_err(|e| StoreError::io(path, e))?;
                if sync_dir {
                    f.syncs_every_write();
                }
                (f, path.clone(), len)
            }
            None => {
                let (f, path) = create_segment(dir, io.as_ref(), next_seq, sync_dir)?;
                segments.push((next_seq, path.clone()));
                (f, path, SEGMENT_HEADER_LEN)
            }
        };
        Ok(Journal {
            dir: dir.to_path_buf(),
            io,
            active,
            active_path,
            active_len,
            segments,
            poisoned: false,
            sync_dir,
        })
    }

    pub(crate) fn active_len(&self) -> u64 {
        self.active_len
    }

    pub(crate) fn sync_handle(&self) -> Result<Arc<dyn SyncHandle>> {
        self.active
            .sync_handle()
            .map_err(|e| StoreError::io(&self.active_path, e))
    }

    /// Appends one encoded record with a single `write()`. On any failure the
    /// segment is cut back so no partial record stays; if even that fails the
    /// journal refuses further writes.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Unavailable(format!(
                "the journal {} could not be repaired after a failed write; restart hearth to recover it",
                self.active_path.display()
            )));
        }
        let result = match self.active.append(bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", bytes.len()),
            )),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.active_len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                if self.active.truncate(self.active_len).is_err() {
                    self.poisoned = true;
                }
                Err(StoreError::io(&self.active_path, e))
            }
        }
    }

    /// Makes the active segment durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.active
            .sync_data()
            .map_err(|e| StoreError::io(&self.active_path, e))
    }

    /// Starts a new segment whose first record will be `next_seq`.
    pub(crate) fn rotate(&mut self, next_seq: u64) -> Result<()> {
        if self.sync_dir {
            self.sync()?;
        }
        let (f, path) = create_segment(&self.dir, self.io.as_ref(), next_seq, self.sync_dir)?;
        self.active = f;
        self.active_path = path.clone();
        self.active_len = SEGMENT_HEADER_LEN;
        self.segments.push((next_seq, path));
        Ok(())
    }

    /// Whether [`Journal::take_obsolete`] would return anything.
    pub(crate) fn has_obsolete(&self, applied: u64) -> bool {
        self.segments.len() > 1 && self.segments[1].0 <= applied + 1
    }

    /// Segments other than the active one whose records are all ≤ `applied`.
    pub(crate) fn take_obsolete(&mut self, applied: u64) -> Vec<PathBuf> {
        let mut out = Vec::new();
        while self.segments.len() > 1 && self.segments[1].0 <= applied + 1 {
            out.push(self.segments.remove(0).1);
        }
        out
    }
}

fn create_segment(
    dir: &Path,
    io: &dyn JournalIo,
    first_seq: u64,
    sync_dir: bool,
) -> Result<(Box<dyn JournalFile>, PathBuf)> {
    let path = dir.join(segment_name(first_seq));
    let mut f = io.create(&path).map_err(|e| StoreError::io(&path, e))?;
    if sync_dir {
        f.syncs_every_write();
    }
    let header = segment_header();
    match f.append(&header) {
        Ok(n) if n == header.len() => {}
        Ok(_) | Err(_) => {
            let _ = std::fs::remove_file(&path);
            return Err(StoreError::io(
                &path,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    "could not write the segment header",
                ),
            ));
        }
    }
    if sync_dir {
        f.sync_data().map_err(|e| StoreError::io(&path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(dir, e))?;
    }
    Ok((f, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, data: &str) -> RecordOp {
        RecordOp {
            kind: ChangeKind::Put,
            stamp: Stamp {
                hlc: 42,
                replica: 7,
            },
            id: id.into(),
            data: Arc::from(data),
        }
    }

    /// The real file system, counting the segments told that every write
    /// will be synced.
    #[derive(Default)]
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    struct CountingFile(Box<dyn JournalFile>, Arc<std::sync::atomic::AtomicUsize>);

    impl JournalFile for CountingFile {
        fn append(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.append(buf)
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.0.truncate(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
        fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
            self.0.sync_handle()
        }
        fn syncs_every_write(&mut self) {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl JournalIo for Counting {
        fn create(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
            Ok(Box::new(CountingFile(
                OsJournalIo.create(path)?,
                self.0.clone(),
            )))
        }
        fn open_append(&self, path: &Path) -> io::Result<Box<dyn JournalFile>> {
            Ok(Box::new(CountingFile(
                OsJournalIo.open_append(path)?,
                self.0.clone(),
            )))
        }
    }

    #[test]
    fn segments_of_a_syncing_journal_are_told_every_write_is_synced() {
        for sync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let io = Arc::new(Counting::default());
            let told = io.0.clone();
            let mut journal = Journal::open(dir.path(), io.clone(), Vec::new(), 1, sync).unwrap();
            journal.rotate(2).unwrap();
            let segments = journal.segments.clone();
            drop(journal);
            // Reopened: the last segment is continued.
            let _journal = Journal::open(dir.path(), io, segments, 3, sync).unwrap();
            let count = told.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(count, if sync { 3 } else { 0 }, "sync {sync}");
        }
    }

    #[test]
    fn a_record_round_trips() {
        let ops = vec![op("user:1", r#"{"a":1}"#), op("user:2", "{}")];
        let mut buf = Vec::new();
        encode_record(&mut buf, 9, &ops);
        let (rec, n) = decode_record(&buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(rec, Record { first_seq: 9, ops });
    }

    #[test]
    fn any_single_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, &[op("k", r#"{"v":"hello"}"#)]);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                assert!(
                    decode_record(&b).is_err(),
                    "flip at {byte}:{bit} undetected"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_short() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, &[op("k", r#"{"v":1}"#)]);
        for cut in 0..buf.len() {
            assert!(decode_record(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating() {
        let mut buf = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        buf.extend_from_slice(&[0u8; 16]);
        assert_eq!(
            decode_record(&buf).unwrap_err(),
            BadRecord::Length(u32::MAX as u64)
        );
    }
}
