//! The shared-memory upgrade: three 16-byte messages on the socket right
//! after an accepted handshake that agreed `SHARED_MEMORY`.
//!
//! Owns: the byte layout of the attach request (client), the offer (server;
//! the segment's descriptor rides on its bytes with `SCM_RIGHTS`) and the
//! confirmation (client), and telling an attach request apart from a frame
//! as early as possible. Must never: do I/O, panic on any input, or mistake
//! a valid frame for an attach request.
//!
//! # Flow
//!
//! 1. The client, if it wants shared memory, sends an [`AttachRequest`] as
//!    its first bytes after the server hello, and sends nothing else until
//!    the offer arrives. A client that does not want it just sends frames:
//!    the server sees the first bytes are not an attach request
//!    ([`probe_attach`]) and goes on with the socket.
//! 2. The server answers with an [`AttachOffer`]: status 0 with the memfd
//!    attached, or a non-zero status without one (then the connection stays
//!    on the socket).
//! 3. After an accepted offer the client checks and maps the segment and
//!    sends an [`AttachConfirm`]: status 0 moves both sides to the rings
//!    (the socket then carries no byte either way and is kept open only as
//!    the liveness signal); non-zero keeps the connection on the socket.
//!
//! Every message: bytes 0..8 magic `"HEARTH\0"` plus a role byte (3
//! request, 4 offer, 5 confirm), 8..12 a `u32` status (in a request: the
//! client's flags, [`ATTACH_HANDOFF`]; 0 from clients before flags),
//! 12..16 a `u32` value (request: ring bytes wanted each way, 0 for the
//! server's default; offer: the segment's size in bytes; confirm: 0). No
//! frame can start like an attach request: a frame's byte 4 is its kind
//! (1..=7), an attach request's is `'T'` (0x54).

/// Bytes of each upgrade message.
///
/// ```
/// assert_eq!(hearth_proto::UPGRADE_MESSAGE_LEN, 16);
/// ```
pub const UPGRADE_MESSAGE_LEN: usize = 16;

/// Magic of the client's attach request.
///
/// ```
/// assert_eq!(&hearth_proto::ATTACH_REQUEST_MAGIC, b"HEARTH\0\x03");
/// ```
pub const ATTACH_REQUEST_MAGIC: [u8; 8] = *b"HEARTH\0\x03";

/// Magic of the server's offer.
pub const ATTACH_OFFER_MAGIC: [u8; 8] = *b"HEARTH\0\x04";

/// Magic of the client's confirmation.
pub const ATTACH_CONFIRM_MAGIC: [u8; 8] = *b"HEARTH\0\x05";

/// Offer or confirmation status: attached.
pub const ATTACH_OK: u32 = 0;

/// Offer status: the server cannot offer shared memory now (stay on the
/// socket). Confirmation status: the client could not map the segment.
pub const ATTACH_UNAVAILABLE: u32 = 1;

fn encode(magic: [u8; 8], status: u32, value: u32) -> [u8; UPGRADE_MESSAGE_LEN] {
    let mut out = [0u8; UPGRADE_MESSAGE_LEN];
    out[0..8].copy_from_slice(&magic);
    out[8..12].copy_from_slice(&status.to_le_bytes());
    out[12..16].copy_from_slice(&value.to_le_bytes());
    out
}

/// Why upgrade bytes could not be read.
///
/// ```
/// use hearth_proto::{AttachOffer, UpgradeError};
/// assert_eq!(AttachOffer::decode(b"HEARTH"), Err(UpgradeError::Incomplete));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// Fewer than 16 bytes so far.
    #[error("the shared-memory upgrade message is incomplete (16 bytes are needed)")]
    Incomplete,
    /// The bytes are not the expected message.
    #[error("expected a shared-memory {expected} message, found bytes {found:02x?}")]
    Unexpected {
        /// Which message was expected.
        expected: &'static str,
        /// The first bytes received.
        found: Vec<u8>,
    },
}

fn decode(
    bytes: &[u8],
    magic: [u8; 8],
    expected: &'static str,
) -> Result<(u32, u32), UpgradeError> {
    let Some(b) = bytes.first_chunk::<UPGRADE_MESSAGE_LEN>() else {
        return Err(UpgradeError::Incomplete);
    };
    if b[0..8] != magic {
        return Err(UpgradeError::Unexpected {
            expected,
            found: b[0..8].to_vec(),
        });
    }
    Ok((
        u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
    ))
}

/// The client asks to move the connection to shared memory.
///
/// ```
/// use hearth_proto::{AttachRequest, ATTACH_HANDOFF};
/// let request = AttachRequest { ring_bytes: 0, flags: ATTACH_HANDOFF };
/// let bytes = request.encode();
/// assert_eq!(&bytes[..8], b"HEARTH\0\x03");
/// assert_eq!(AttachRequest::decode(&bytes), Ok(request));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttachRequest {
    /// Bytes wanted for each ring; 0 for the server's default. The server
    /// may round or clamp it.
    pub ring_bytes: u32,
    /// What the client does ([`ATTACH_HANDOFF`]); bits it does not know a
    /// server ignores, and clients from before flags send 0.
    pub flags: u32,
}

/// Attach request flag: when its turn on the server's shared poller ends,
/// this client wakes the connection of its own process that the server
/// names in the ring's hint word, on its own core, before it sleeps
/// (docs/protocol.md, "Turns"). A server hands turns over that way only
/// to clients that set it.
///
/// ```
/// assert_eq!(hearth_proto::ATTACH_HANDOFF, 1);
/// ```
pub const ATTACH_HANDOFF: u32 = 1;

impl AttachRequest {
    /// The 16 bytes to send.
    pub fn encode(&self) -> [u8; UPGRADE_MESSAGE_LEN] {
        encode(ATTACH_REQUEST_MAGIC, self.flags, self.ring_bytes)
    }

    /// Reads a request from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<AttachRequest, UpgradeError> {
        let (flags, ring_bytes) = decode(bytes, ATTACH_REQUEST_MAGIC, "attach request")?;
        Ok(AttachRequest { ring_bytes, flags })
    }

    /// Whether the client hands its turn over itself ([`ATTACH_HANDOFF`]).
    ///
    /// ```
    /// use hearth_proto::{AttachRequest, ATTACH_HANDOFF};
    /// assert!(!AttachRequest::default().hands_off());
    /// assert!(AttachRequest { ring_bytes: 0, flags: ATTACH_HANDOFF | 8 }.hands_off());
    /// ```
    pub fn hands_off(&self) -> bool {
        self.flags & ATTACH_HANDOFF != 0
    }
}

/// What the first bytes after the handshake are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachProbe {
    /// A whole attach request.
    Request(AttachRequest),
    /// Not an attach request: frames (or garbage) follow; hand every byte
    /// to the frame decoder.
    NotRequest,
    /// A prefix of an attach request so far: read more.
    Incomplete,
}

/// Classifies the first bytes a client sent after the server hello,
/// deciding as soon as one byte differs from the request magic.
///
/// ```
/// use hearth_proto::{probe_attach, AttachProbe, AttachRequest};
/// let request = AttachRequest { ring_bytes: 65536, flags: 0 };
/// let req = request.encode();
/// assert_eq!(probe_attach(&req[..5]), AttachProbe::Incomplete);
/// assert_eq!(probe_attach(&req), AttachProbe::Request(request));
/// assert_eq!(probe_attach(&[0x0f, 0, 0, 0, 1]), AttachProbe::NotRequest);
/// ```
pub fn probe_attach(bytes: &[u8]) -> AttachProbe {
    let n = bytes.len().min(ATTACH_REQUEST_MAGIC.len());
    if bytes[..n] != ATTACH_REQUEST_MAGIC[..n] {
        return AttachProbe::NotRequest;
    }
    match AttachRequest::decode(bytes) {
        Ok(request) => AttachProbe::Request(request),
        Err(_) => AttachProbe::Incomplete,
    }
}

/// The server's answer to an attach request.
///
/// ```
/// use hearth_proto::{AttachOffer, ATTACH_OK};
/// let offer = AttachOffer { status: ATTACH_OK, segment_bytes: 4096 + 2 * 262144 };
/// assert_eq!(AttachOffer::decode(&offer.encode()), Ok(offer));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOffer {
    /// [`ATTACH_OK`] (the descriptor is attached) or non-zero (stay on the
    /// socket).
    pub status: u32,
    /// The segment's size in bytes (the client checks the descriptor
    /// against it); 0 when not offered.
    pub segment_bytes: u32,
}

impl AttachOffer {
    /// The 16 bytes to send (with the descriptor, when offered).
    pub fn encode(&self) -> [u8; UPGRADE_MESSAGE_LEN] {
        encode(ATTACH_OFFER_MAGIC, self.status, self.segment_bytes)
    }

    /// Reads an offer from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<AttachOffer, UpgradeError> {
        let (status, segment_bytes) = decode(bytes, ATTACH_OFFER_MAGIC, "offer")?;
        Ok(AttachOffer {
            status,
            segment_bytes,
        })
    }
}

/// The client's last word on the socket: attached, or staying.
///
/// ```
/// use hearth_proto::{AttachConfirm, ATTACH_UNAVAILABLE};
/// let c = AttachConfirm { status: ATTACH_UNAVAILABLE };
/// assert_eq!(AttachConfirm::decode(&c.encode()), Ok(c));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachConfirm {
    /// [`ATTACH_OK`]: frames move to the rings; non-zero: they stay on the
    /// socket.
    pub status: u32,
}

impl AttachConfirm {
    /// The 16 bytes to send.
    pub fn encode(&self) -> [u8; UPGRADE_MESSAGE_LEN] {
        encode(ATTACH_CONFIRM_MAGIC, self.status, 0)
    }

    /// Reads a confirmation from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<AttachConfirm, UpgradeError> {
        let (status, _) = decode(bytes, ATTACH_CONFIRM_MAGIC, "confirmation")?;
        Ok(AttachConfirm { status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameFlags, FrameKind, Operation, encode_frame};
    use proptest::prelude::*;

    #[test]
    fn an_empty_prefix_is_incomplete() {
        assert_eq!(probe_attach(&[]), AttachProbe::Incomplete);
    }

    #[test]
    fn a_request_from_before_flags_has_none() {
        let mut bytes = AttachRequest {
            ring_bytes: 4096,
            flags: ATTACH_HANDOFF,
        }
        .encode();
        bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
        let request = AttachRequest::decode(&bytes).unwrap();
        assert_eq!(request.ring_bytes, 4096);
        assert!(!request.hands_off());
    }

    #[test]
    fn a_confirmation_is_not_an_offer() {
        let bytes = AttachConfirm { status: 0 }.encode();
        assert!(matches!(
            AttachOffer::decode(&bytes),
            Err(UpgradeError::Unexpected { .. })
        ));
    }

    proptest! {
        #[test]
        fn no_frame_is_taken_for_an_attach_request(
            kind in prop::sample::select(FrameKind::ALL.to_vec()),
            id in any::<u64>(),
            payload in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = Vec::new();
            encode_frame(&mut bytes, kind, FrameFlags::JSON, Some(Operation::Get), id, &payload).unwrap();
            for end in 0..bytes.len() {
                prop_assert_ne!(
                    matches!(probe_attach(&bytes[..end]), AttachProbe::Request(_)),
                    true
                );
            }
            prop_assert_eq!(probe_attach(&bytes), AttachProbe::NotRequest);
        }
    }
}
