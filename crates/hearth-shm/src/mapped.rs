//! Appending to a file through a shared mapping (the store's journal
//! segments on Linux, docs/design.md "Free space").
//!
//! Owns: one `MAP_SHARED` window over the start of a regular file, blocks
//! reserved ahead of the writer with `fallocate` and written with zeros a
//! step ahead of it (`pwrite`, so that its copies fault in pages the page
//! cache already holds), copying appended bytes
//! into the window at the file's logical end (past the window, on a file
//! system that cannot reserve, or for an append of `PWRITE_FROM` bytes or
//! more, `pwrite` at the same place), and
//! dropping the pages left behind from the process (`MADV_DONTNEED`; the
//! page cache keeps them) so the file does not count as its memory. A copy into the mapping is a store into the
//! page cache: no system call, and the bytes survive the process's death
//! like a `write()`'s. Must never: copy a byte past the reserved length (it
//! would fault with SIGBUS past the end of the file), hand out a reference
//! into the mapping (another process could change the file under it), or
//! leave the mapping behind (dropped with the writer, and the file is cut
//! back to its logical length then).

use rustix::fs::FallocateFlags;
use rustix::mm::{Advice, MapFlags, ProtFlags};
use std::fs::File;
use std::io;
use std::ptr::NonNull;

/// Linux's `MADV_DONTNEED` unmaps the pages from this process at once (a
/// shared file mapping's contents stay in the page cache). Elsewhere the
/// portable advice only lowers their priority, which is still safe.
#[cfg(any(target_os = "linux", target_os = "android"))]
const DROP_PAGES: Advice = Advice::LinuxDontNeed;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const DROP_PAGES: Advice = Advice::DontNeed;

/// Appends to a file through a shared mapping of its first `window` bytes.
///
/// The file's *logical length* is where the next append goes; the file
/// itself may be longer (blocks reserved ahead, zero until written), and
/// is cut back to the logical length when the writer is dropped.
///
/// ```
/// use hearth_shm::MappedAppend;
/// use std::io::Read;
/// let dir = std::env::temp_dir().join(format!("mapped-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("segment");
/// let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
/// let mut w = MappedAppend::new(file, 0, 1 << 20)?;
/// w.append(b"hello ")?;
/// w.append(b"world")?;
/// assert_eq!(w.len(), 11);
/// drop(w);
/// let mut text = String::new();
/// std::fs::File::open(&path)?.read_to_string(&mut text)?;
/// assert_eq!(text, "hello world");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct MappedAppend {
    file: File,
    /// The window's first byte; `None` when the file cannot be mapped or
    /// reserved (every append is a `pwrite` then).
    base: Option<NonNull<u8>>,
    window: usize,
    /// Bytes of the file known to be backed by blocks (never past its
    /// length): copies stay below.
    reserved: u64,
    /// Bytes of the file whose pages were written (with zeros, ahead of the
    /// writer, or with content), so that a copy into them faults in a page
    /// the page cache already holds: never past `reserved`.
    filled: u64,
    /// Whether zeros are written ahead at all ([`set_fill_ahead`](Self::set_fill_ahead)).
    fill: bool,
    /// The logical length: where the next append goes.
    len: u64,
    /// The mapping's pages below this were dropped from the process (they
    /// stay in the page cache, written or to be written back).
    released: u64,
}

// SAFETY: the mapping belongs to this value alone: it is written only
// through `&mut self` and never read or handed out, so moving it to
// another thread or sharing `&MappedAppend` (which only reads `len` or
// borrows the file) cannot race.
unsafe impl Send for MappedAppend {}
// SAFETY: as for `Send`: `&self` methods never touch the mapping.
unsafe impl Sync for MappedAppend {}

/// Blocks reserved ahead of the writer at a time (at least).
const RESERVE_STEP: u64 = 1 << 20;

/// Bytes of reserved blocks written with zeros ahead of the writer at a
/// time ([`MappedAppend::fill_ahead`]). Measured through the store
/// (`hearth bench`, puts over shared memory, alternated): ~200-byte
/// documents 426k / 426k / 386k → 469k / 475k / 424k a second, pauses of
/// 200 µs or more 53–62 → 18–23 a phase; 4 KiB documents 70k / 77k → 92k /
/// 84k a second, p50 12.6 / 11.8 → 9.4 / 9.7 µs, but p99 27 / 21 → 37 /
/// 41 µs (a step every sixteen puts). In a scratch build that wrote zeros
/// instead of reserving, 16 KiB steps left more small pauses (p99 13 µs
/// against 7 at 200 bytes), 256 KiB longer ones (p999 66–70 µs against
/// 35–36).
const FILL_STEP: u64 = 64 << 10;

/// What [`MappedAppend::fill_ahead`] writes.
static ZEROS: [u8; FILL_STEP as usize] = [0; FILL_STEP as usize];

/// Written pages are dropped from the process's mappings this many bytes
/// at a time, so that the journal does not count as the process's resident
/// memory (the page cache keeps them, exactly as after a `write()`).
const RELEASE_STEP: u64 = 4 << 20;

/// Appends of this many bytes or more are written with `pwrite`, not
/// copied into the mapping: most of their pages are new, and a page the
/// kernel fills from a `write()` costs less than one faulted in, zeroed and
/// then copied into (whose first fault also reads ahead to the end of the
/// reserved blocks). Measured through the store (`hearth bench --doc-bytes
/// N`, puts over shared memory, alternated): 8 KiB documents 38k / 33k →
/// 45k / 36k puts a second (p99 137 / 109 → 47 / 73 µs, p50 the same),
/// 16 KiB 19k / 21k → 27k / 27k, 64 KiB p50 121 / 125 → 80 / 78 µs,
/// 256 KiB p50 580 / 648 → 427 / 422 µs. At 4 KiB `pwrite` cut the
/// slowest puts (p999 600–730 → 136–202 µs) but cost the median 0.7–2 µs,
/// and at 1 KiB 1 µs: those stay copies.
const PWRITE_FROM: usize = 8192;

/// The page size the mapping is released in (a multiple of any Linux page).
const PAGE: u64 = 64 << 10;

impl MappedAppend {
    /// A writer appending at `len` (the end of the file's content; bytes
    /// past it are free), mapping the first `window` bytes. A file that
    /// cannot be mapped is still written, with `pwrite`.
    pub fn new(file: File, len: u64, window: usize) -> io::Result<MappedAppend> {
        let size = file.metadata()?.len();
        if size < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the file holds {size} bytes, fewer than the {len} to append after"),
            ));
        }
        // SAFETY: a fresh mapping (null hint, no MAP_FIXED) aliases no Rust
        // object. It may reach past the end of the file: those pages are
        // never touched, since copies stay below `reserved`, which is never
        // past the file's length and grows only through `reserve` (blocks
        // allocated) before a copy.
        let mapped = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                window,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &file,
                0,
            )
        };
        let base = match mapped {
            Ok(ptr) if window > 0 => NonNull::new(ptr.cast::<u8>()),
            _ => None,
        };
        Ok(MappedAppend {
            file,
            base,
            window,
            // Only the content is known to have blocks: whatever follows it
            // (free space, or a hole) is reserved again before a copy.
            reserved: len,
            filled: len,
            fill: true,
            len,
            released: 0,
        })
    }

    /// Whether to write zeros over the reserved blocks a step ahead of
    /// the copies (on by default). A writer that syncs after every append
    /// turns it off: each sync would write those zero pages back too (one
    /// client's puts in fsync mode were ~5 % slower with it).
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// let file = std::fs::File::options().read(true).write(true).create(true).open("segment")?;
    /// let mut w = hearth_shm::MappedAppend::new(file, 0, 1 << 20)?;
    /// w.set_fill_ahead(false);
    /// w.append(b"record")?;
    /// # Ok(()) }
    /// ```
    pub fn set_fill_ahead(&mut self, on: bool) {
        self.fill = on;
    }

    /// The logical length: bytes appended (and found) so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was appended or found.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file (to sync it, or to clone a handle that syncs it).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Appends all of `bytes` at the logical end, or none of them: an
    /// error (no space for the blocks to reserve, a failed `pwrite`)
    /// leaves the logical length where it was, though a failed `pwrite`
    /// may have written part of the bytes past it.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let start = self.len;
        let end = start + bytes.len() as u64;
        let mapped = self
            .base
            .filter(|_| end <= self.window as u64 && bytes.len() < PWRITE_FROM);
        match mapped {
            Some(base) if self.reserve(end) => {
                self.fill_ahead(end);
                // SAFETY: `start..end` lies inside the window (checked just
                // above) and below `reserved`, the file's length, so every
                // page written is mapped and backed; `bytes` is ordinary
                // memory, not the mapping, so the two cannot overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        base.as_ptr().add(start as usize),
                        bytes.len(),
                    );
                }
            }
            _ => {
                write_all_at(&self.file, bytes, start)?;
                self.reserved = self.reserved.max(end);
                self.filled = self.filled.max(end);
            }
        }
        self.len = end;
        self.release_behind();
        Ok(())
    }

    /// Drops the pages the writer has left behind from the process (not
    /// from the file or the page cache), `RELEASE_STEP` at a time.
    fn release_behind(&mut self) {
        let Some(base) = self.base else {
            return;
        };
        let upto = (self.len.min(self.window as u64) / PAGE) * PAGE;
        if upto < self.released + RELEASE_STEP {
            return;
        }
        // SAFETY: `released..upto` lies inside the mapping (`upto` is at
        // most the window) and below `len`, so no copy will touch it again
        // until a truncate moves `len` back (after which a touch faults the
        // page back in from the file); no reference into the mapping
        // exists. For a shared file mapping, MADV_DONTNEED only unmaps the
        // pages: their contents, dirty or not, stay in the page cache and
        // reach the file.
        let dropped = unsafe {
            rustix::mm::madvise(
                base.as_ptr().add(self.released as usize).cast(),
                (upto - self.released) as usize,
                DROP_PAGES,
            )
        };
        if dropped.is_ok() {
            self.released = upto;
        }
    }

    /// Makes sure the file's blocks cover `0..end`; false if they cannot
    /// be reserved (the caller then writes with `pwrite`, which reports
    /// the error, a full disk included).
    fn reserve(&mut self, end: u64) -> bool {
        if end <= self.reserved {
            return true;
        }
        // A step ahead, within the window, and at least `end` (which the
        // caller keeps within the window).
        let want = (self.reserved + RESERVE_STEP)
            .min(self.window as u64)
            .max(end);
        match rustix::fs::fallocate(
            &self.file,
            FallocateFlags::empty(),
            self.reserved,
            want - self.reserved,
        ) {
            Ok(()) => {
                self.reserved = want;
                true
            }
            Err(e) => {
                if e == rustix::io::Errno::OPNOTSUPP {
                    // A file system that cannot reserve blocks: `pwrite`
                    // from now on, without asking again.
                    self.unmap();
                }
                false
            }
        }
    }

    /// Once a copy up to `end` would pass what is filled: writes zeros
    /// (`pwrite`) over the next [`FILL_STEP`] of reserved blocks (a copy is
    /// under `PWRITE_FROM`, less than a step), so that the copies that
    /// follow land on pages the page cache already holds. A page first
    /// touched through the mapping is faulted in and zeroed by the kernel,
    /// and the first such fault after a reservation also reads ahead to its
    /// end — ~0.3–1 ms at once every megabyte; a page the kernel fills from
    /// a `write()` costs less, and a step of them costs ~tens of µs. Best
    /// effort: a failed write leaves the copies to fault as before.
    fn fill_ahead(&mut self, end: u64) {
        if !self.fill {
            return;
        }
        // Never below the content: `len` is where the coming copy starts
        // (a fill that failed earlier may have left `filled` behind it).
        let from = self.filled.max(self.len);
        if end <= from {
            return;
        }
        // `reserve(end)` succeeded, so `reserved >= end > from`.
        let want = (from + FILL_STEP).min(self.reserved);
        let n = ((want - from) as usize).min(ZEROS.len());
        if write_all_at(&self.file, &ZEROS[..n], from).is_ok() {
            self.filled = from + n as u64;
        }
    }

    fn unmap(&mut self) {
        if let Some(base) = self.base.take() {
            // SAFETY: `base..base+window` is exactly the mapping `new`
            // made, unmapped once (`base` is taken); nothing refers into it.
            let _ = unsafe { rustix::mm::munmap(base.as_ptr().cast(), self.window) };
        }
    }

    /// Cuts the logical length and the file to `len` bytes (after a failed
    /// append: nothing past `len` is kept).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.reserved = len;
        self.filled = len;
        self.len = len;
        self.released = self.released.min((len / PAGE) * PAGE);
        Ok(())
    }
}

impl Drop for MappedAppend {
    fn drop(&mut self) {
        self.unmap();
        if self.file.metadata().is_ok_and(|m| m.len() != self.len) {
            // Best effort: a file left longer ends in zero bytes, which
            // recovery recognises as free space.
            let _ = self.file.set_len(self.len);
        }
    }
}

fn write_all_at(file: &File, mut bytes: &[u8], mut at: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = rustix::io::pwrite(file, bytes, at)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        bytes = &bytes[n..];
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A new file in a directory removed when the returned guard drops.
    fn scratch() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, path, file)
    }

    fn contents(path: &std::path::Path) -> Vec<u8> {
        let mut out = Vec::new();
        File::open(path).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn appended_bytes_are_in_the_file_before_the_writer_is_dropped() {
        let (_dir, path, file) = scratch();
        let mut w = MappedAppend::new(file, 0, 1 << 20).unwrap();
        w.append(b"abc").unwrap();
        w.append(b"def").unwrap();
        // Read through the file system while the mapping is live: the page
        // cache is the same.
        assert_eq!(&contents(&path)[..6], b"abcdef");
        assert!(contents(&path)[6..].iter().all(|&b| b == 0));
        drop(w);
        assert_eq!(contents(&path), b"abcdef");
    }

    #[test]
    fn big_appends_written_with_pwrite_land_between_the_copied_ones() {
        let (_dir, path, file) = scratch();
        let mut w = MappedAppend::new(file, 0, 1 << 20).unwrap();
        let mut want = Vec::new();
        for (i, len) in [100, PWRITE_FROM, 7, 3 * PWRITE_FROM + 5, 1, PWRITE_FROM - 1]
            .into_iter()
            .enumerate()
        {
            let bytes = vec![b'a' + i as u8; len];
            w.append(&bytes).unwrap();
            want.extend_from_slice(&bytes);
        }
        assert_eq!(w.len(), want.len() as u64);
        let live = contents(&path);
        assert_eq!(&live[..want.len()], &want[..]);
        assert!(live[want.len()..].iter().all(|&b| b == 0));
        drop(w);
        assert_eq!(contents(&path), want);
    }

    #[test]
    fn the_blocks_ahead_of_the_writer_are_written_with_zeros_a_step_ahead() {
        let (_dir, path, file) = scratch();
        let mut w = MappedAppend::new(file, 0, 4 << 20).unwrap();
        w.append(b"first").unwrap();
        assert_eq!(w.filled, FILL_STEP, "one step past the first copy");
        let mut want = b"first".to_vec();
        while w.len() < 3 * FILL_STEP {
            let record = vec![b'r'; 1000];
            w.append(&record).unwrap();
            want.extend_from_slice(&record);
            assert!(w.len() <= w.filled && w.filled <= w.reserved);
        }
        // Content written, zeros after it, up to the step ahead.
        let live = contents(&path);
        assert_eq!(&live[..want.len()], &want[..]);
        assert!(live[want.len()..w.filled as usize].iter().all(|&b| b == 0));
        drop(w);
        assert_eq!(contents(&path), want);
    }

    #[test]
    fn a_writer_told_not_to_fill_writes_nothing_ahead() {
        let (_dir, path, file) = scratch();
        let mut w = MappedAppend::new(file, 0, 4 << 20).unwrap();
        w.set_fill_ahead(false);
        w.append(b"only").unwrap();
        assert_eq!(w.filled, 0);
        drop(w);
        assert_eq!(contents(&path), b"only");
    }

    #[test]
    fn bytes_past_the_window_are_written_at_the_same_place() {
        let (_dir, path, file) = scratch();
        let mut w = MappedAppend::new(file, 0, 8).unwrap();
        w.append(b"01234").unwrap();
        w.append(b"56789").unwrap();
        w.append(b"ab").unwrap();
        assert_eq!(w.len(), 12);
        drop(w);
        assert_eq!(contents(&path), b"0123456789ab");
    }

    #[test]
    fn a_writer_continues_after_existing_content() {
        let (_dir, path, mut file) = scratch();
        std::io::Write::write_all(&mut file, b"head").unwrap();
        let mut w = MappedAppend::new(file, 4, 1 << 16).unwrap();
        w.append(b"tail").unwrap();
        drop(w);
        assert_eq!(contents(&path), b"headtail");
    }

    #[test]
    fn a_truncate_cuts_back_and_the_next_append_goes_there() {
        let (_dir, path, file) = scratch();
        let mut w = MappedAppend::new(file, 0, 1 << 16).unwrap();
        w.append(b"keep").unwrap();
        w.append(b"drop").unwrap();
        w.truncate(4).unwrap();
        w.append(b"more").unwrap();
        drop(w);
        assert_eq!(contents(&path), b"keepmore");
    }

    #[test]
    fn pages_dropped_behind_the_writer_keep_their_bytes() {
        let (_dir, path, file) = scratch();
        let mut w = MappedAppend::new(file, 0, 32 << 20).unwrap();
        let chunk: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        for _ in 0..100 {
            w.append(&chunk).unwrap();
        }
        assert!(w.released >= RELEASE_STEP, "nothing was released");
        drop(w);
        let back = contents(&path);
        assert_eq!(back.len(), 100 * chunk.len());
        assert!(back.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    }

    #[test]
    fn space_after_the_content_is_reserved_again_and_cut_off_at_drop() {
        let (_dir, path, mut file) = scratch();
        std::io::Write::write_all(&mut file, b"head").unwrap();
        // A hole after the content (as a file extended without blocks).
        file.set_len(1 << 20).unwrap();
        let mut w = MappedAppend::new(file, 4, 1 << 21).unwrap();
        w.append(b"tail").unwrap();
        drop(w);
        assert_eq!(contents(&path), b"headtail");
    }

    #[test]
    fn a_length_past_the_end_of_the_file_is_refused() {
        let (_dir, _path, file) = scratch();
        assert_eq!(
            MappedAppend::new(file, 10, 1 << 16).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
