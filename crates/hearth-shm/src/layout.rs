//! The segment's layout: where the header, the two ring control blocks and
//! the two data areas sit, and the header's bytes.
//!
//! Owns: the numbers another implementation needs to map a hearth segment
//! (written out in `docs/protocol.md`, "Shared memory"), encoding the
//! 64-byte header and checking one read from an untrusted file. Must never:
//! do I/O or accept a layout whose areas overlap, are misaligned, or do not
//! fit the segment.
//!
//! ```text
//! offset                 size   what
//! 0                      64     header (below)
//! 64                     64     reserved, zero
//! 128                    256    client→server ring control block
//! 384                    256    server→client ring control block
//! 640                    3456   reserved, zero
//! 4096                   C      client→server data (C = c2s capacity)
//! 4096 + C               S      server→client data (S = s2c capacity)
//! ```

use crate::error::ShmError;

/// The header's first eight bytes: `"HEARTHSM"`.
///
/// ```
/// assert_eq!(&hearth_shm::MAGIC, b"HEARTHSM");
/// ```
pub const MAGIC: [u8; 8] = *b"HEARTHSM";

/// The layout version this build writes and reads.
///
/// ```
/// assert_eq!(hearth_shm::LAYOUT_VERSION, 1);
/// ```
pub const LAYOUT_VERSION: u32 = 1;

/// Bytes before the first data area: the header, both control blocks, and
/// reserved room, one page.
///
/// ```
/// assert_eq!(hearth_shm::HEADER_BYTES, 4096);
/// ```
pub const HEADER_BYTES: usize = 4096;

/// Bytes of the encoded header.
pub const HEADER_LEN: usize = 64;

/// Offset of the client→server ring's control block.
pub const C2S_CTRL_OFFSET: usize = 128;

/// Offset of the server→client ring's control block.
pub const S2C_CTRL_OFFSET: usize = 384;

/// Bytes of one ring control block.
pub const CTRL_BYTES: usize = 256;

/// Smallest data area of a ring in a segment (one page).
pub const MIN_SEGMENT_CAPACITY: usize = 4096;

/// Largest data area of a ring (1 GiB).
pub const MAX_CAPACITY: usize = 1 << 30;

/// Smallest data area of a ring over plain memory (tests, models).
pub const MIN_CAPACITY: usize = 64;

/// Which way a ring carries records.
///
/// ```
/// use hearth_shm::Direction;
/// assert_eq!(Direction::ClientToServer.name(), "client→server");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Requests and cancels: the client produces, the server consumes.
    ClientToServer,
    /// Answers and events: the server produces, the client consumes.
    ServerToClient,
}

impl Direction {
    /// The other direction.
    ///
    /// ```
    /// use hearth_shm::Direction;
    /// assert_eq!(Direction::ClientToServer.reverse(), Direction::ServerToClient);
    /// ```
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client→server",
            Direction::ServerToClient => "server→client",
        }
    }
}

/// The sizes of a segment's two rings; everything else follows from them.
///
/// ```
/// use hearth_shm::{Direction, Layout};
/// let layout = Layout::new(64 * 1024, 256 * 1024)?;
/// assert_eq!(layout.segment_bytes(), 4096 + 64 * 1024 + 256 * 1024);
/// assert_eq!(layout.data_offset(Direction::ServerToClient), 4096 + 64 * 1024);
/// # Ok::<(), hearth_shm::ShmError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    c2s_capacity: usize,
    s2c_capacity: usize,
}

fn check_capacity(what: &str, capacity: usize, min: usize) -> Result<(), ShmError> {
    if !capacity.is_power_of_two() || !(min..=MAX_CAPACITY).contains(&capacity) {
        return Err(ShmError::BadConfig {
            detail: format!(
                "the {what} ring capacity {capacity} is not a power of two between {min} and {MAX_CAPACITY} bytes"
            ),
        });
    }
    Ok(())
}

impl Layout {
    /// A segment layout; each capacity a power of two from 4 KiB to 1 GiB.
    pub fn new(c2s_capacity: usize, s2c_capacity: usize) -> Result<Layout, ShmError> {
        check_capacity("client→server", c2s_capacity, MIN_SEGMENT_CAPACITY)?;
        check_capacity("server→client", s2c_capacity, MIN_SEGMENT_CAPACITY)?;
        Ok(Layout {
            c2s_capacity,
            s2c_capacity,
        })
    }

    /// A layout for rings over plain memory, which may be as small as 64
    /// bytes (loom models and tests use tiny rings to force wrap-around).
    pub fn for_memory(c2s_capacity: usize, s2c_capacity: usize) -> Result<Layout, ShmError> {
        check_capacity("client→server", c2s_capacity, MIN_CAPACITY)?;
        check_capacity("server→client", s2c_capacity, MIN_CAPACITY)?;
        Ok(Layout {
            c2s_capacity,
            s2c_capacity,
        })
    }

    /// The data bytes of the ring going `dir`.
    pub fn capacity(&self, dir: Direction) -> usize {
        match dir {
            Direction::ClientToServer => self.c2s_capacity,
            Direction::ServerToClient => self.s2c_capacity,
        }
    }

    /// Total bytes of the segment.
    pub fn segment_bytes(&self) -> usize {
        HEADER_BYTES + self.c2s_capacity + self.s2c_capacity
    }

    /// Offset of the control block of the ring going `dir`.
    pub fn ctrl_offset(&self, dir: Direction) -> usize {
        match dir {
            Direction::ClientToServer => C2S_CTRL_OFFSET,
            Direction::ServerToClient => S2C_CTRL_OFFSET,
        }
    }

    /// Offset of the data area of the ring going `dir`.
    pub fn data_offset(&self, dir: Direction) -> usize {
        match dir {
            Direction::ClientToServer => HEADER_BYTES,
            Direction::ServerToClient => HEADER_BYTES + self.c2s_capacity,
        }
    }

    /// The 64 header bytes (little-endian):
    ///
    /// | bytes | field |
    /// |---|---|
    /// | 0..8 | magic `"HEARTHSM"` |
    /// | 8..12 | layout version (1) |
    /// | 12..16 | header bytes: offset of the first data area (4096) |
    /// | 16..24 | segment bytes |
    /// | 24..32 | client→server capacity |
    /// | 32..40 | server→client capacity |
    /// | 40..64 | zero |
    ///
    /// ```
    /// use hearth_shm::Layout;
    /// let layout = Layout::new(4096, 8192)?;
    /// assert_eq!(Layout::decode_header(&layout.encode_header())?, layout);
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn encode_header(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        out[16..24].copy_from_slice(&(self.segment_bytes() as u64).to_le_bytes());
        out[24..32].copy_from_slice(&(self.c2s_capacity as u64).to_le_bytes());
        out[32..40].copy_from_slice(&(self.s2c_capacity as u64).to_le_bytes());
        out
    }

    /// Checks and reads a header from an untrusted segment.
    ///
    /// ```
    /// use hearth_shm::Layout;
    /// let mut bytes = Layout::new(4096, 4096)?.encode_header();
    /// bytes[0] = b'X';
    /// assert!(Layout::decode_header(&bytes).unwrap_err().to_string().contains("magic"));
    /// # Ok::<(), hearth_shm::ShmError>(())
    /// ```
    pub fn decode_header(bytes: &[u8; HEADER_LEN]) -> Result<Layout, ShmError> {
        let bad = |detail: String| ShmError::BadSegment { detail };
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if bytes[0..8] != MAGIC {
            return Err(bad(format!(
                "the header magic is {:02x?}, not \"HEARTHSM\"",
                &bytes[0..8]
            )));
        }
        let version = u32_at(8);
        if version != LAYOUT_VERSION {
            return Err(bad(format!(
                "layout version {version}; this build reads version {LAYOUT_VERSION}"
            )));
        }
        let header = u32_at(12);
        if header as usize != HEADER_BYTES {
            return Err(bad(format!(
                "header bytes {header}; layout version 1 has {HEADER_BYTES}"
            )));
        }
        if bytes[40..64].iter().any(|&b| b != 0) {
            return Err(bad("reserved header bytes 40..64 are not zero".into()));
        }
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let layout = Layout::new(to_usize(u64_at(24)), to_usize(u64_at(32)))
            .map_err(|e| bad(e.to_string()))?;
        let declared = u64_at(16);
        if declared != layout.segment_bytes() as u64 {
            return Err(bad(format!(
                "the header says {declared} segment bytes; its capacities make {}",
                layout.segment_bytes()
            )));
        }
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_do_not_overlap_and_are_page_aligned() {
        let l = Layout::new(4096, 1 << 20).unwrap();
        const {
            assert!(C2S_CTRL_OFFSET >= HEADER_LEN);
            assert!(C2S_CTRL_OFFSET + CTRL_BYTES <= S2C_CTRL_OFFSET);
            assert!(S2C_CTRL_OFFSET + CTRL_BYTES <= HEADER_BYTES);
        }
        assert_eq!(l.data_offset(Direction::ClientToServer) % 4096, 0);
        assert_eq!(l.data_offset(Direction::ServerToClient) % 4096, 0);
        assert_eq!(
            l.data_offset(Direction::ServerToClient) + l.capacity(Direction::ServerToClient),
            l.segment_bytes()
        );
    }

    #[test]
    fn capacities_must_be_powers_of_two_in_range() {
        assert!(Layout::new(4096 + 8, 4096).is_err());
        assert!(Layout::new(2048, 4096).is_err());
        assert!(Layout::new(4096, MAX_CAPACITY * 2).is_err());
        assert!(Layout::for_memory(64, 128).is_ok());
        assert!(Layout::for_memory(32, 128).is_err());
    }

    #[test]
    fn a_header_whose_size_disagrees_is_refused() {
        let mut bytes = Layout::new(4096, 4096).unwrap().encode_header();
        bytes[16] ^= 1;
        assert!(Layout::decode_header(&bytes).is_err());
    }

    #[test]
    fn a_header_with_a_bad_capacity_is_refused() {
        let mut bytes = Layout::new(4096, 4096).unwrap().encode_header();
        bytes[24..32].copy_from_slice(&3u64.to_le_bytes());
        assert!(Layout::decode_header(&bytes).is_err());
    }

    #[test]
    fn a_header_from_a_newer_layout_is_refused() {
        let mut bytes = Layout::new(4096, 4096).unwrap().encode_header();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let e = Layout::decode_header(&bytes).unwrap_err();
        assert!(e.to_string().contains("layout version 2"), "{e}");
    }
}
