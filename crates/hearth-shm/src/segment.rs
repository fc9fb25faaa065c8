//! The memfd segment: creating it (server), checking and mapping one
//! received from a peer (client), and unmapping it.
//!
//! Owns: `memfd_create` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`, sizing, the
//! seals (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`, so no peer can make
//! the mapping shorter and fault the other), writing and checking the
//! header through the file (not through the mapping), and the shared
//! read-write mapping with the typed views the rings use, and putting a
//! ring's pages in place when its side asks. All `unsafe` of the crate is
//! here but the journal's mapped appends (`mapped.rs`): mapping,
//! populating, unmapping, and turning offsets into references to atomics.
//! Under Miri a created segment is a zeroed heap allocation instead (no
//! memfd there), so that those conversions run under its checks.
//!
//! Must never: map a segment whose seals do not forbid shrinking, whose size
//! disagrees with its header, or whose header does not check; hand out a
//! reference outside the mapping; or expose the memory except as atomics.

use crate::error::ShmError;
use crate::layout::{Direction, Layout};
use crate::ring::{RingCtrl, RingMemory};
use crate::sync::AtomicU64;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// A mapped hearth segment: a header and two rings. Create one with
/// [`Segment::create`] (the server) and send its [`fd`](Segment::fd) to the
/// peer, who maps it with [`Segment::open`]. Unmapped when dropped; share
/// it with `Arc`.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use hearth_shm::{Consumer, Direction, Layout, Producer, Segment};
/// use std::sync::Arc;
/// let server = Segment::create(Layout::new(4096, 4096)?)?;
/// let fd = server.fd().expect("a new segment keeps its fd").try_clone_to_owned().unwrap();
/// let client = Arc::new(Segment::open(fd)?);          // another process, normally
/// let server = Arc::new(server);
/// let mut tx = Producer::new(client, Direction::ClientToServer);
/// let mut rx = Consumer::new(server, Direction::ClientToServer);
/// tx.push(&[b"ping"])?;
/// let mut out = Vec::new();
/// assert!(rx.try_pop(&mut out)?);
/// assert_eq!(out, b"ping");
/// # }
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub struct Segment {
    base: NonNull<u8>,
    len: usize,
    layout: Layout,
    fd: Option<OwnedFd>,
    key: u32,
}

/// The key of the segment behind `fd`: its inode number folded into
/// `1..=0x7FFF_FFFE` (what a ring's hint word can carry, see
/// `Consumer::note_handoff`), the same for the server that created it and
/// the client that received it; 0 if the platform cannot say. Two live
/// segments of one process could share a key only if their inode numbers
/// differed by a multiple of 2³¹ − 2; a shared key costs a spurious
/// wake-up, nothing else.
fn key_of(fd: &OwnedFd) -> u32 {
    const SPAN: u64 = 0x7FFF_FFFE;
    match rustix::fs::fstat(fd) {
        // `% SPAN + 1` is at most 0x7FFF_FFFE: it fits.
        Ok(st) => u32::try_from(st.st_ino % SPAN + 1).unwrap_or(0),
        Err(_) => 0,
    }
}

// SAFETY: the mapping is shared memory that every holder accesses only
// through atomics (`RingCtrl` fields and `AtomicU64` data words), so moving
// the handle between threads or sharing it is as safe as sharing those
// atomics. The pointer is never written through except by `Drop`, which
// runs once, when no reference to the mapping is left.
unsafe impl Send for Segment {}
// SAFETY: see `Send` above: `&Segment` only ever yields `&` references to
// atomics inside the mapping.
unsafe impl Sync for Segment {}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.len)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
mod sys {
    use super::*;
    use crate::layout::HEADER_LEN;
    use rustix::fs::{MemfdFlags, SealFlags};
    use rustix::mm::{Advice, MapFlags, ProtFlags};

    pub(super) const REQUIRED_SEALS: SealFlags = SealFlags::SHRINK
        .union(SealFlags::GROW)
        .union(SealFlags::SEAL);

    /// A new sealed memfd of `len` bytes for `layout`, mapped, and its
    /// descriptor.
    pub(super) fn create(
        layout: &Layout,
        len: usize,
    ) -> Result<(NonNull<u8>, Option<OwnedFd>), ShmError> {
        let fd = memfd(layout)?;
        let base = map(&fd, len)?;
        Ok((base, Some(fd)))
    }

    fn memfd(layout: &Layout) -> Result<OwnedFd, ShmError> {
        let fd = rustix::fs::memfd_create(
            "hearth-shm",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| ShmError::Unsupported {
            detail: format!("memfd_create failed: {e}"),
        })?;
        rustix::fs::ftruncate(&fd, layout.segment_bytes() as u64)
            .map_err(|e| ShmError::io("sizing the shared-memory segment", e))?;
        write_all_at(&fd, &layout.encode_header(), 0)?;
        rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS)
            .map_err(|e| ShmError::io("sealing the shared-memory segment", e))?;
        Ok(fd)
    }

    pub(super) fn check_received(fd: &OwnedFd) -> Result<Layout, ShmError> {
        let bad = |detail: String| ShmError::BadSegment { detail };
        let seals = rustix::fs::fcntl_get_seals(fd)
            .map_err(|e| bad(format!("its seals cannot be read ({e}); is it a memfd?")))?;
        if !seals.contains(REQUIRED_SEALS) {
            return Err(bad(format!(
                "its seals {seals:?} do not forbid shrinking, growing and resealing"
            )));
        }
        let stat = rustix::fs::fstat(fd).map_err(|e| ShmError::io("inspecting the segment", e))?;
        let file_type = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        if file_type != rustix::fs::FileType::RegularFile {
            return Err(bad(format!("it is a {file_type:?}, not a memfd")));
        }
        let mut header = [0u8; HEADER_LEN];
        read_exact_at(fd, &mut header, 0)?;
        let layout = Layout::decode_header(&header)?;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size != layout.segment_bytes() as u64 {
            return Err(bad(format!(
                "it is {size} bytes long; its header describes {}",
                layout.segment_bytes()
            )));
        }
        Ok(layout)
    }

    pub(super) fn map(fd: &OwnedFd, len: usize) -> Result<NonNull<u8>, ShmError> {
        // SAFETY: a fresh mapping (null hint, no MAP_FIXED) cannot alias any
        // existing Rust object. The file is sealed against shrinking and is
        // `len` bytes long (checked by the caller), so every page of the
        // mapping stays backed while it exists.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| ShmError::Unsupported {
            detail: format!("mmap of the shared-memory segment failed: {e}"),
        })?;
        NonNull::new(ptr.cast::<u8>()).ok_or_else(|| ShmError::Unsupported {
            detail: "mmap returned a null mapping".into(),
        })
    }

    pub(super) fn populate(start: *const u8, len: usize) {
        // SAFETY: `start..start+len` lies inside a live mapping of this
        // process (the caller took it from `Segment::at`), page-aligned.
        // MADV_POPULATE_WRITE only faults the pages in, writable, without
        // writing to them: no byte any reference can see changes. Failure
        // (a kernel before 5.14, no memory now) leaves the pages to come
        // one fault at a time.
        let _ = unsafe {
            rustix::mm::madvise(start.cast_mut().cast(), len, Advice::LinuxPopulateWrite)
        };
    }

    pub(super) fn unmap(base: NonNull<u8>, len: usize) {
        // SAFETY: `base..base+len` is exactly the mapping `map` returned,
        // unmapped once (from `Segment::drop`), and no reference into it
        // outlives the `Segment` (every view borrows `&self`).
        let _ = unsafe { rustix::mm::munmap(base.as_ptr().cast(), len) };
    }

    pub(super) fn write_all_at(
        fd: &impl AsFd,
        mut bytes: &[u8],
        mut at: u64,
    ) -> Result<(), ShmError> {
        while !bytes.is_empty() {
            let n = rustix::io::pwrite(fd, bytes, at)
                .map_err(|e| ShmError::io("writing into the shared-memory segment", e))?;
            if n == 0 {
                return Err(ShmError::io(
                    "writing into the shared-memory segment",
                    std::io::Error::from(std::io::ErrorKind::WriteZero),
                ));
            }
            bytes = &bytes[n..];
            at += n as u64;
        }
        Ok(())
    }

    pub(super) fn read_exact_at(
        fd: &impl AsFd,
        mut buf: &mut [u8],
        mut at: u64,
    ) -> Result<(), ShmError> {
        while !buf.is_empty() {
            let n = rustix::io::pread(fd, &mut *buf, at)
                .map_err(|e| ShmError::io("reading the shared-memory segment header", e))?;
            if n == 0 {
                return Err(ShmError::BadSegment {
                    detail: "it is shorter than its header".into(),
                });
            }
            buf = &mut buf[n..];
            at += n as u64;
        }
        Ok(())
    }
}

/// What a platform without memfd segments answers for receiving and
/// writing one (every platform but Linux, and Linux under Miri).
#[cfg(any(not(any(target_os = "linux", target_os = "android")), miri))]
mod no_memfd {
    use super::*;

    pub(super) fn unsupported() -> ShmError {
        let detail = if cfg!(miri) {
            "Miri cannot create or map a memfd"
        } else {
            "memfd segments need Linux"
        };
        ShmError::Unsupported {
            detail: detail.into(),
        }
    }

    pub(super) fn check_received(_fd: &OwnedFd) -> Result<Layout, ShmError> {
        Err(unsupported())
    }

    pub(super) fn map(_fd: &OwnedFd, _len: usize) -> Result<NonNull<u8>, ShmError> {
        Err(unsupported())
    }

    pub(super) fn populate(_start: *const u8, _len: usize) {}

    pub(super) fn write_all_at(_fd: &impl AsFd, _bytes: &[u8], _at: u64) -> Result<(), ShmError> {
        Err(unsupported())
    }
}

#[cfg(all(not(any(target_os = "linux", target_os = "android")), not(miri)))]
mod sys {
    pub(super) use super::no_memfd::{check_received, map, populate, write_all_at};
    use super::*;

    pub(super) fn create(
        _layout: &Layout,
        _len: usize,
    ) -> Result<(NonNull<u8>, Option<OwnedFd>), ShmError> {
        Err(super::no_memfd::unsupported())
    }

    pub(super) fn unmap(_base: NonNull<u8>, _len: usize) {}
}

#[cfg(miri)]
mod sys {
    //! Under Miri, which can neither create a memfd nor map one: a created
    //! segment is a zeroed, page-aligned heap allocation with no
    //! descriptor, so that the views' `unsafe` (`Segment::at`, `ctrl`,
    //! `data`) runs under Miri's checks. Receiving a segment is unsupported.
    pub(super) use super::no_memfd::{check_received, map, populate, write_all_at};
    use super::*;
    use std::alloc::Layout as Allocation;

    /// The allocation standing in for a mapping of `len` bytes.
    fn allocation(len: usize) -> Allocation {
        // A segment's length is a non-zero multiple of the page size (its
        // layout's invariant), far below isize::MAX.
        Allocation::from_size_align(len, 4096).expect("a segment's length fits an allocation")
    }

    pub(super) fn create(
        _layout: &Layout,
        len: usize,
    ) -> Result<(NonNull<u8>, Option<OwnedFd>), ShmError> {
        // SAFETY: the allocation's size is non-zero (a segment has at least
        // its header page); zeroed, as a fresh memfd is.
        let ptr = unsafe { std::alloc::alloc_zeroed(allocation(len)) };
        NonNull::new(ptr)
            .map(|base| (base, None))
            .ok_or_else(|| ShmError::Unsupported {
                detail: "no memory for the segment".into(),
            })
    }

    pub(super) fn unmap(base: NonNull<u8>, len: usize) {
        // SAFETY: `base` came from `create`'s allocation of `len` bytes with
        // this same layout and is freed once (from `Segment::drop`), when no
        // reference into it is left (every view borrows the `Segment`).
        unsafe { std::alloc::dealloc(base.as_ptr(), allocation(len)) }
    }
}

impl Segment {
    /// Creates a sealed segment with `layout` (the server's side). The
    /// segment keeps its file descriptor until [`close_fd`](Self::close_fd)
    /// so it can be sent to the peer.
    pub fn create(layout: Layout) -> Result<Segment, ShmError> {
        let len = layout.segment_bytes();
        let (base, fd) = sys::create(&layout, len)?;
        let key = fd.as_ref().map_or(0, key_of);
        Ok(Segment {
            base,
            len,
            layout,
            fd,
            key,
        })
    }

    /// Checks and maps a segment received from a peer (the client's side):
    /// its seals must forbid shrinking, growing and resealing, its header
    /// must check, and its size must match the header. The descriptor is
    /// closed once mapped.
    pub fn open(fd: OwnedFd) -> Result<Segment, ShmError> {
        let layout = sys::check_received(&fd)?;
        let len = layout.segment_bytes();
        let base = sys::map(&fd, len)?;
        let key = key_of(&fd);
        drop(fd);
        Ok(Segment {
            base,
            len,
            layout,
            fd: None,
            key,
        })
    }

    /// A number the server and the client compute alike for this segment
    /// (from its file's inode), so that the server can name one of a
    /// client's connections to that client (`Consumer::note_handoff`):
    /// `1..=0x7FFF_FFFE`, or 0 where the platform cannot say.
    ///
    /// ```
    /// # #[cfg(target_os = "linux")] {
    /// use hearth_shm::{Layout, Segment};
    /// use std::os::fd::AsFd;
    /// let server = Segment::create(Layout::for_memory(4096, 4096)?)?;
    /// let sent = server.fd().unwrap().try_clone_to_owned().unwrap();
    /// let client = Segment::open(sent)?;
    /// assert_ne!(server.key(), 0);
    /// assert_eq!(client.key(), server.key());
    /// # }
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn key(&self) -> u32 {
        self.key
    }

    /// The segment's file descriptor, while it is kept (after
    /// [`create`](Self::create), until [`close_fd`](Self::close_fd)).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Closes the kept descriptor (the mapping stays): once the peer has
    /// it, holding it only costs a descriptor.
    pub fn close_fd(&mut self) {
        self.fd = None;
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a segment has at least its header page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The ring capacities.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The address of `offset` in the mapping, if `offset + size` fits.
    fn at(&self, offset: usize, size: usize) -> *const u8 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "segment view {offset}+{size} outside the {}-byte mapping",
            self.len
        );
        // SAFETY: offset + size <= len (asserted above), so the result stays
        // inside the mapping (`add` within one allocated object).
        unsafe { self.base.as_ptr().add(offset) }
    }
}

/// Writes `bytes` at `offset` into the segment behind `fd` through the file
/// (`pwrite`), exactly as another process holding the descriptor could:
/// for tests that play a hostile peer. Safe: the kernel does the writing,
/// and the rings read the memory only through atomics and check it.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use hearth_shm::{Layout, Segment, write_raw};
/// let seg = Segment::create(Layout::new(4096, 4096)?)?;
/// write_raw(seg.fd().unwrap(), 4096, &[0xff; 64])?;
/// # }
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
pub fn write_raw(fd: BorrowedFd<'_>, offset: u64, bytes: &[u8]) -> Result<(), ShmError> {
    sys::write_all_at(&fd, bytes, offset)
}

impl Drop for Segment {
    fn drop(&mut self) {
        sys::unmap(self.base, self.len);
    }
}

impl crate::ring::sealed::Sealed for Segment {}

impl RingMemory for Segment {
    fn layout(&self) -> Layout {
        self.layout
    }

    fn ctrl(&self, dir: Direction) -> &RingCtrl {
        let ptr = self.at(
            self.layout.ctrl_offset(dir),
            std::mem::size_of::<RingCtrl>(),
        );
        // SAFETY: the block lies inside the mapping (`at` checked it), at a
        // 64-byte-aligned offset of a page-aligned mapping (RingCtrl's
        // alignment). A fresh memfd is zero-filled, a valid RingCtrl (all
        // atomics at 0), and the block is only ever accessed through its
        // atomics, by both processes, so a shared reference for the life of
        // `&self` (the mapping outlives it) is sound.
        unsafe { &*ptr.cast::<RingCtrl>() }
    }

    fn data(&self, dir: Direction) -> &[AtomicU64] {
        let capacity = self.layout.capacity(dir);
        let ptr = self.at(self.layout.data_offset(dir), capacity);
        // SAFETY: `capacity` bytes from a page-aligned offset lie inside the
        // mapping (`at` checked), which is 8-aligned for AtomicU64; any bit
        // pattern is a valid AtomicU64; and the words are only accessed as
        // atomics, so sharing them with the peer process is sound for the
        // life of `&self`.
        unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU64>(), capacity / 8) }
    }

    fn populate(&self, dir: Direction) {
        let capacity = self.layout.capacity(dir);
        sys::populate(self.at(self.layout.data_offset(dir), capacity), capacity);
    }
}

/// The typed views over a created segment, natively and under Miri (which
/// checks every access through them: alignment, bounds, provenance).
#[cfg(all(test, any(target_os = "linux", target_os = "android", miri)))]
mod views {
    use super::*;
    use crate::ring::{Consumer, Producer};
    use std::sync::Arc;

    #[test]
    fn records_of_every_size_cross_a_created_segment_s_rings_both_ways() {
        let segment = Arc::new(Segment::create(Layout::new(4096, 4096).unwrap()).unwrap());
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut tx = Producer::new(segment.clone(), dir);
            let mut rx = Consumer::new(segment.clone(), dir);
            let mut out = Vec::new();
            // Lengths from empty to the largest record, several laps of
            // the ring, in two parts gathered into one record (fewer under
            // Miri, where each access through a view costs the view's length).
            let step = if cfg!(miri) { 97 } else { 7 };
            for len in (0..=rx.max_record()).step_by(step).chain([rx.max_record()]) {
                let body: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
                let (a, b) = body.split_at(len / 3);
                assert!(tx.push(&[a, b]).unwrap(), "room for {len} bytes");
                assert!(rx.try_pop(&mut out).unwrap(), "a record of {len} bytes");
                assert_eq!(out, body);
            }
            assert!(!rx.try_pop(&mut out).unwrap(), "nothing more");
        }
    }
}

#[cfg(all(test, target_os = "linux", not(miri)))]
mod tests {
    use super::*;
    use crate::ring::{Consumer, Producer};
    use std::sync::Arc;

    /// The kilobytes of `segment`'s mapping that are resident in this
    /// process (its `Rss` in `/proc/self/smaps`).
    fn resident_kib(segment: &Segment) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", segment.base.as_ptr() as usize);
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        assert!(lines.next().is_some(), "the mapping is in smaps");
        let rss = lines
            .find_map(|l| l.strip_prefix("Rss:"))
            .expect("every mapping has an Rss line");
        rss.trim().trim_end_matches("kB").trim().parse().unwrap()
    }

    /// A server's segment with rings of `ring` bytes and a client's mapping
    /// of it (both in this process, as two mappings).
    fn pair(ring: usize) -> (Arc<Segment>, Arc<Segment>) {
        let server = Segment::create(Layout::new(ring, ring).unwrap()).unwrap();
        let fd = server.fd().unwrap().try_clone_to_owned().unwrap();
        let client = Segment::open(fd).unwrap();
        (Arc::new(server), Arc::new(client))
    }

    /// Pushes 64-byte records from `tx` and pops them on `rx` until `tx`
    /// has written `bytes`.
    fn carry(tx: &mut Producer<Segment>, rx: &mut Consumer<Segment>, bytes: usize) {
        let mut out = Vec::new();
        for _ in 0..bytes / 64 {
            assert!(tx.push(&[&[7u8; 56]]).unwrap());
            assert!(rx.try_pop(&mut out).unwrap());
        }
    }

    #[test]
    fn a_fresh_segment_has_nothing_of_its_rings_resident() {
        let (server, client) = pair(256 * 1024);
        assert!(resident_kib(&server) <= 4, "at most the header page");
        assert!(resident_kib(&client) <= 4, "at most the header page");
    }

    #[test]
    fn a_ring_is_populated_in_both_mappings_once_its_first_lap_passes_16_kib() {
        let ring = 256 * 1024;
        let (server, client) = pair(ring);
        let mut tx = Producer::new(client.clone(), Direction::ClientToServer);
        let mut rx = Consumer::new(server.clone(), Direction::ClientToServer);
        carry(&mut tx, &mut rx, 8 * 1024);
        assert!(
            resident_kib(&client) < 64,
            "8 KiB in: only the pages touched"
        );
        carry(&mut tx, &mut rx, 8 * 1024);
        let whole = (ring / 1024) as u64;
        assert!(resident_kib(&client) >= whole, "the producer's mapping");
        assert!(resident_kib(&server) >= whole, "the consumer's mapping");
    }

    #[test]
    fn a_ring_above_a_mebibyte_is_never_populated_ahead() {
        let ring = 4 << 20;
        let (server, client) = pair(ring);
        let mut tx = Producer::new(client.clone(), Direction::ClientToServer);
        let mut rx = Consumer::new(server.clone(), Direction::ClientToServer);
        carry(&mut tx, &mut rx, 32 * 1024);
        assert!(resident_kib(&client) < 64);
        assert!(resident_kib(&server) < 64);
    }
}
