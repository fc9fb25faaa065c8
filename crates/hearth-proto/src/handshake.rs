//! The handshake: the first bytes each side sends after connecting.
//!
//! Owns: the byte layout of the client and server hellos, version and
//! capability negotiation, and the refusal reasons. Must never: do I/O,
//! read past the bytes it is given, panic on any input, or accept a hello
//! that would leave the connection with unusable limits.
//!
//! # Flow
//!
//! The client sends a [`ClientHello`] (24 bytes). The server decodes it,
//! calls [`negotiate`] with its own [`ServerLimits`] and answers with a
//! [`ServerHello`] (29 bytes plus a reason, plus 8 when it accepts with
//! protocol 2 or later) — [`ServerHello::respond`] does both. On refusal
//! the server closes the connection after its hello. The client checks the
//! answer with [`conclude`]. Frames follow on success.
//!
//! # Versions
//!
//! | version | adds |
//! |---|---|
//! | 1 | everything below except `max_message_bytes` |
//! | 2 | the server's `max_message_bytes` (u64) after the reason of an accepting hello |
//!
//! This build speaks 1..=2 on both sides. A version-1 client gets exactly
//! the 29-byte accepting hello of version 1; refusals are the same in both.
//!
//! # Client hello (24 bytes, little-endian)
//!
//! | bytes | type | field |
//! |---|---|---|
//! | 0..8 | bytes | magic `48 45 41 52 54 48 00 01` (`"HEARTH\0"`, role 1 = client) |
//! | 8..10 | u16 | highest protocol version the client speaks |
//! | 10..12 | u16 | lowest protocol version the client speaks (≥ 1, ≤ highest) |
//! | 12..16 | u32 | capabilities offered: bit 0 shared memory, bit 1 chunked streams, bit 2 events |
//! | 16..20 | u32 | largest frame (header + payload) the client accepts, ≥ [`MIN_FRAME_LIMIT`] |
//! | 20..24 | u32 | most requests the client will have in flight, ≥ 1 |
//!
//! # Server hello (29 bytes + reason, little-endian)
//!
//! | bytes | type | field |
//! |---|---|---|
//! | 0..8 | bytes | magic `48 45 41 52 54 48 00 02` (role 2 = server) |
//! | 8..10 | u16 | highest protocol version the server speaks |
//! | 10..12 | u16 | lowest protocol version the server speaks |
//! | 12..16 | u32 | accepted: the capabilities both sides have; refused: the server's |
//! | 16..20 | u32 | largest frame the server accepts |
//! | 20..24 | u32 | accepted: requests the client may have in flight (the smaller of both); refused: the server's |
//! | 24..26 | u16 | the negotiated version; 0 when refused |
//! | 26 | u8 | status: 0 ok, 1 version mismatch, 2 invalid hello, 3 permission denied, 4 unavailable, other non-zero: refused |
//! | 27..29 | u16 | reason length in bytes; 0 when ok |
//! | 29.. | UTF-8 | reason, for humans; at most [`MAX_REASON_BYTES`], a longer length is refused |
//! | 29..37 | u64 | only when status is 0 and version ≥ [`MESSAGE_LIMIT_VERSION`] (the reason is then empty): the server's `max_message_bytes`, ≥ [`MIN_MESSAGE_LIMIT`] |

use crate::ErrorCode;
use crate::frame::{DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PAYLOAD_BYTES};
use std::fmt;
use thiserror::Error;

/// The protocol version this build speaks best.
///
/// ```
/// assert_eq!(hearth_proto::PROTOCOL_VERSION, 2);
/// ```
pub const PROTOCOL_VERSION: u16 = 2;

/// The oldest protocol version this build still speaks.
///
/// ```
/// assert!(hearth_proto::MIN_PROTOCOL_VERSION <= hearth_proto::PROTOCOL_VERSION);
/// ```
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The first protocol version whose accepting server hello carries the
/// server's `max_message_bytes` ([`ServerHello::max_message_bytes`]).
///
/// ```
/// assert_eq!(hearth_proto::MESSAGE_LIMIT_VERSION, 2);
/// ```
pub const MESSAGE_LIMIT_VERSION: u16 = 2;

/// The first seven magic bytes, shared by both hellos: `"HEARTH\0"`.
const MAGIC_PREFIX: [u8; 7] = *b"HEARTH\0";

/// The magic that starts a client hello.
///
/// ```
/// assert_eq!(&hearth_proto::CLIENT_MAGIC, b"HEARTH\0\x01");
/// ```
pub const CLIENT_MAGIC: [u8; 8] = *b"HEARTH\0\x01";

/// The magic that starts a server hello.
///
/// ```
/// assert_eq!(&hearth_proto::SERVER_MAGIC, b"HEARTH\0\x02");
/// ```
pub const SERVER_MAGIC: [u8; 8] = *b"HEARTH\0\x02";

/// Bytes in a client hello.
///
/// ```
/// assert_eq!(hearth_proto::ClientHello::default().encode().len(), hearth_proto::CLIENT_HELLO_LEN);
/// ```
pub const CLIENT_HELLO_LEN: usize = 24;

/// Bytes of the `max_message_bytes` field that ends an accepting server
/// hello of version [`MESSAGE_LIMIT_VERSION`] or later (a u64).
///
/// ```
/// use hearth_proto::{ClientHello, ServerHello, ServerLimits, MESSAGE_LIMIT_LEN, SERVER_HELLO_FIXED_LEN};
/// let (hello, _) = ServerHello::respond(&ClientHello::default(), &ServerLimits::default());
/// assert_eq!(hello.encode().len(), SERVER_HELLO_FIXED_LEN + MESSAGE_LIMIT_LEN);
/// ```
pub const MESSAGE_LIMIT_LEN: usize = 8;

/// Bytes in a server hello before its reason: all of an accepting hello
/// of version 1.
///
/// ```
/// use hearth_proto::{ClientHello, ServerHello, ServerLimits, SERVER_HELLO_FIXED_LEN};
/// let v1 = ClientHello { max_version: 1, ..ClientHello::default() };
/// let (hello, _) = ServerHello::respond(&v1, &ServerLimits::default());
/// assert_eq!(hello.encode().len(), SERVER_HELLO_FIXED_LEN);
/// ```
pub const SERVER_HELLO_FIXED_LEN: usize = 29;

/// The longest refusal reason a server sends; longer ones are cut at a
/// character boundary.
///
/// ```
/// assert_eq!(hearth_proto::MAX_REASON_BYTES, 1024);
/// ```
pub const MAX_REASON_BYTES: usize = 1024;

/// The smallest `max_frame_bytes` a hello may declare: 64 KiB.
///
/// ```
/// assert_eq!(hearth_proto::MIN_FRAME_LIMIT, 65_536);
/// ```
pub const MIN_FRAME_LIMIT: u32 = 64 * 1024;

/// The smallest `max_message_bytes` a server hello may declare: 64 KiB.
/// A client refuses a hello that declares less.
///
/// ```
/// assert_eq!(hearth_proto::MIN_MESSAGE_LIMIT, 65_536);
/// ```
pub const MIN_MESSAGE_LIMIT: u64 = 64 * 1024;

/// The default number of requests in flight on one connection.
///
/// ```
/// assert_eq!(hearth_proto::DEFAULT_MAX_IN_FLIGHT, 1024);
/// ```
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;

/// Which side sent a hello.
///
/// ```
/// use hearth_proto::HelloRole;
/// assert_eq!(HelloRole::Client.to_string(), "client");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelloRole {
    /// The side that connected (magic byte 7 = 1).
    Client,
    /// The side that listens (magic byte 7 = 2).
    Server,
}

impl HelloRole {
    const fn byte(self) -> u8 {
        match self {
            HelloRole::Client => 1,
            HelloRole::Server => 2,
        }
    }

    const fn other(self) -> HelloRole {
        match self {
            HelloRole::Client => HelloRole::Server,
            HelloRole::Server => HelloRole::Client,
        }
    }
}

impl fmt::Display for HelloRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HelloRole::Client => "client",
            HelloRole::Server => "server",
        })
    }
}

/// Optional features, as a bitset. Unknown bits (from a newer peer) are
/// kept when decoding and dropped by [`intersection`](Capabilities::intersection).
///
/// ```
/// use hearth_proto::Capabilities;
/// let offered = Capabilities::SHARED_MEMORY | Capabilities::EVENTS;
/// let agreed = offered.intersection(Capabilities::EVENTS | Capabilities::CHUNKED_STREAMS);
/// assert_eq!(agreed, Capabilities::EVENTS);
/// assert!(Capabilities::ALL.contains(Capabilities::SHARED_MEMORY));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u32);

impl Capabilities {
    /// Nothing optional.
    pub const NONE: Capabilities = Capabilities(0);
    /// Bit 0: can move to shared-memory rings.
    pub const SHARED_MEMORY: Capabilities = Capabilities(1);
    /// Bit 1: understands stream-chunk / stream-end frames.
    pub const CHUNKED_STREAMS: Capabilities = Capabilities(1 << 1);
    /// Bit 2: understands pushed event frames.
    pub const EVENTS: Capabilities = Capabilities(1 << 2);
    /// Every capability this build knows.
    pub const ALL: Capabilities = Capabilities(0b111);

    /// From raw bits (unknown bits are kept).
    ///
    /// ```
    /// use hearth_proto::Capabilities;
    /// assert_eq!(Capabilities::from_bits(0x8000_0004).bits(), 0x8000_0004);
    /// ```
    pub const fn from_bits(bits: u32) -> Capabilities {
        Capabilities(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The capabilities both have.
    pub const fn intersection(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;

    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = [
            (Capabilities::SHARED_MEMORY, "SHARED_MEMORY"),
            (Capabilities::CHUNKED_STREAMS, "CHUNKED_STREAMS"),
            (Capabilities::EVENTS, "EVENTS"),
        ]
        .into_iter()
        .filter(|(c, _)| self.contains(*c))
        .map(|(_, name)| name.to_string())
        .collect();
        let unknown = self.0 & !Capabilities::ALL.0;
        if unknown != 0 {
            parts.push(format!("{unknown:#x}"));
        }
        if parts.is_empty() {
            parts.push("NONE".into());
        }
        write!(f, "Capabilities({})", parts.join(" | "))
    }
}

/// The server's answer, byte 26 of the server hello.
///
/// ```
/// use hearth_proto::HandshakeStatus;
/// assert_eq!(HandshakeStatus::from_code(1), HandshakeStatus::VersionMismatch);
/// assert_eq!(HandshakeStatus::from_code(200), HandshakeStatus::Other(200));
/// assert_eq!(HandshakeStatus::PermissionDenied.code(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeStatus {
    /// 0: accepted; frames follow.
    Ok,
    /// 1: no protocol version both sides speak.
    VersionMismatch,
    /// 2: the client hello was malformed.
    InvalidHello,
    /// 3: this client may not connect (for example another user).
    PermissionDenied,
    /// 4: the server cannot take the connection now (shutting down, full).
    Unavailable,
    /// Any other non-zero code (from a newer server): refused.
    Other(u8),
}

impl HandshakeStatus {
    /// The status byte.
    pub const fn code(self) -> u8 {
        match self {
            HandshakeStatus::Ok => 0,
            HandshakeStatus::VersionMismatch => 1,
            HandshakeStatus::InvalidHello => 2,
            HandshakeStatus::PermissionDenied => 3,
            HandshakeStatus::Unavailable => 4,
            HandshakeStatus::Other(code) => code,
        }
    }

    /// The status for a byte.
    pub const fn from_code(code: u8) -> HandshakeStatus {
        match code {
            0 => HandshakeStatus::Ok,
            1 => HandshakeStatus::VersionMismatch,
            2 => HandshakeStatus::InvalidHello,
            3 => HandshakeStatus::PermissionDenied,
            4 => HandshakeStatus::Unavailable,
            other => HandshakeStatus::Other(other),
        }
    }

    /// Whether the connection was accepted.
    pub const fn is_ok(self) -> bool {
        self.code() == 0
    }
}

impl fmt::Display for HandshakeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeStatus::Ok => f.write_str("ok"),
            HandshakeStatus::VersionMismatch => f.write_str("version mismatch"),
            HandshakeStatus::InvalidHello => f.write_str("invalid hello"),
            HandshakeStatus::PermissionDenied => f.write_str("permission denied"),
            HandshakeStatus::Unavailable => f.write_str("unavailable"),
            HandshakeStatus::Other(code) => write!(f, "status {code}"),
        }
    }
}

/// Why a handshake did not (or not yet) succeed.
///
/// ```
/// use hearth_proto::{ClientHello, HandshakeError};
/// assert_eq!(ClientHello::decode(b"HEAR"), Err(HandshakeError::Incomplete { needed: 24 }));
/// assert!(matches!(ClientHello::decode(b"GET / HTTP/1.1\r\n"), Err(HandshakeError::BadMagic { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// More bytes are needed: at least `needed` in all.
    #[error(
        "the handshake is incomplete: {needed} bytes are needed; the peer sent a short hello or closed the connection"
    )]
    Incomplete {
        /// Total bytes needed for the hello.
        needed: usize,
    },
    /// The bytes do not start with the hearth magic.
    #[error(
        "the peer does not speak the hearth protocol: its first bytes are {found:02x?}, a hearth hello starts with \"HEARTH\\0\" (48 45 41 52 54 48 00); connect hearth clients to a hearth socket (see docs/protocol.md)"
    )]
    BadMagic {
        /// Up to the first 8 bytes received.
        found: Vec<u8>,
    },
    /// The hello came from the wrong side (client to client, server to server).
    #[error(
        "expected a {expected} hello but received a {found} hello; a hearth client must connect to a hearth server"
    )]
    WrongRole {
        /// The role this decoder reads.
        expected: HelloRole,
        /// The role the bytes claim.
        found: HelloRole,
    },
    /// A field of the hello is out of range.
    #[error("invalid hello: {reason}")]
    InvalidHello {
        /// Which field and why.
        reason: String,
    },
    /// No protocol version is spoken by both sides.
    #[error(
        "client speaks protocol {client_min}..{client_max}, server {server_min}..{server_max}; upgrade the {}",
        upgrade_side(*.client_max, *.server_min)
    )]
    VersionMismatch {
        /// Lowest version the client speaks.
        client_min: u16,
        /// Highest version the client speaks.
        client_max: u16,
        /// Lowest version the server speaks.
        server_min: u16,
        /// Highest version the server speaks.
        server_max: u16,
    },
    /// The server refused the connection.
    #[error("the server refused the connection ({status}): {reason}")]
    Refused {
        /// The status byte's meaning.
        status: HandshakeStatus,
        /// The server's reason.
        reason: String,
    },
}

fn upgrade_side(client_max: u16, server_min: u16) -> &'static str {
    if client_max < server_min {
        "client"
    } else {
        "server"
    }
}

impl HandshakeError {
    /// Whether more bytes could complete the hello.
    ///
    /// ```
    /// use hearth_proto::ClientHello;
    /// assert!(ClientHello::decode(b"").unwrap_err().is_incomplete());
    /// ```
    pub fn is_incomplete(&self) -> bool {
        matches!(self, HandshakeError::Incomplete { .. })
    }

    /// The protocol error code for this failure.
    ///
    /// ```
    /// use hearth_proto::{ErrorCode, HandshakeError, HandshakeStatus};
    /// let refused = HandshakeError::Refused { status: HandshakeStatus::PermissionDenied, reason: "uid 1001".into() };
    /// assert_eq!(refused.code(), ErrorCode::PermissionDenied);
    /// ```
    pub fn code(&self) -> ErrorCode {
        match self {
            HandshakeError::Refused {
                status: HandshakeStatus::PermissionDenied,
                ..
            } => ErrorCode::PermissionDenied,
            HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                ..
            } => ErrorCode::Unavailable,
            _ => ErrorCode::InvalidInput,
        }
    }

    /// The status a server sends when refusing because of this error.
    ///
    /// ```
    /// use hearth_proto::{HandshakeError, HandshakeStatus};
    /// let e = HandshakeError::VersionMismatch { client_min: 1, client_max: 1, server_min: 2, server_max: 3 };
    /// assert_eq!(e.status(), HandshakeStatus::VersionMismatch);
    /// ```
    pub fn status(&self) -> HandshakeStatus {
        match self {
            HandshakeError::VersionMismatch { .. } => HandshakeStatus::VersionMismatch,
            HandshakeError::Refused { status, .. } => *status,
            HandshakeError::Incomplete { .. }
            | HandshakeError::BadMagic { .. }
            | HandshakeError::WrongRole { .. }
            | HandshakeError::InvalidHello { .. } => HandshakeStatus::InvalidHello,
        }
    }
}

/// Checks the magic of a (possibly partial) hello. Mismatching bytes are
/// refused as soon as they arrive.
fn check_magic(bytes: &[u8], expected: HelloRole) -> Result<(), HandshakeError> {
    let n = bytes.len().min(MAGIC_PREFIX.len());
    let bad_magic = || HandshakeError::BadMagic {
        found: bytes[..bytes.len().min(8)].to_vec(),
    };
    if bytes[..n] != MAGIC_PREFIX[..n] {
        return Err(bad_magic());
    }
    match bytes.get(7) {
        None => Ok(()),
        Some(&b) if b == expected.byte() => Ok(()),
        Some(&b) if b == expected.other().byte() => Err(HandshakeError::WrongRole {
            expected,
            found: expected.other(),
        }),
        Some(_) => Err(bad_magic()),
    }
}

fn invalid(reason: impl Into<String>) -> HandshakeError {
    HandshakeError::InvalidHello {
        reason: reason.into(),
    }
}

fn check_versions(min: u16, max: u16) -> Result<(), HandshakeError> {
    if min == 0 {
        return Err(invalid(
            "the lowest protocol version is 0; versions start at 1",
        ));
    }
    if min > max {
        return Err(invalid(format!(
            "the lowest protocol version {min} is above the highest {max}"
        )));
    }
    Ok(())
}

fn check_limits(max_frame_bytes: u32, max_in_flight: u32) -> Result<(), HandshakeError> {
    if max_frame_bytes < MIN_FRAME_LIMIT {
        return Err(invalid(format!(
            "max_frame_bytes is {max_frame_bytes}; it must be at least {MIN_FRAME_LIMIT}"
        )));
    }
    if max_in_flight == 0 {
        return Err(invalid("max_in_flight is 0; it must be at least 1"));
    }
    Ok(())
}

fn check_message_limit(max_message_bytes: u64) -> Result<(), HandshakeError> {
    if max_message_bytes < MIN_MESSAGE_LIMIT {
        return Err(invalid(format!(
            "max_message_bytes is {max_message_bytes}; it must be at least {MIN_MESSAGE_LIMIT}"
        )));
    }
    Ok(())
}

/// Whether an accepting hello of `version` carries `max_message_bytes`.
const fn carries_message_limit(status: HandshakeStatus, version: u16) -> bool {
    status.is_ok() && version >= MESSAGE_LIMIT_VERSION
}

/// The 24-byte prefix both hellos share, after the magic.
struct Prefix {
    max_version: u16,
    min_version: u16,
    capabilities: Capabilities,
    max_frame_bytes: u32,
    max_in_flight: u32,
}

fn encode_prefix(magic: [u8; 8], p: &Prefix) -> [u8; CLIENT_HELLO_LEN] {
    let mut out = [0u8; CLIENT_HELLO_LEN];
    out[0..8].copy_from_slice(&magic);
    out[8..10].copy_from_slice(&p.max_version.to_le_bytes());
    out[10..12].copy_from_slice(&p.min_version.to_le_bytes());
    out[12..16].copy_from_slice(&p.capabilities.bits().to_le_bytes());
    out[16..20].copy_from_slice(&p.max_frame_bytes.to_le_bytes());
    out[20..24].copy_from_slice(&p.max_in_flight.to_le_bytes());
    out
}

fn decode_prefix(b: &[u8; CLIENT_HELLO_LEN]) -> Prefix {
    Prefix {
        max_version: u16::from_le_bytes([b[8], b[9]]),
        min_version: u16::from_le_bytes([b[10], b[11]]),
        capabilities: Capabilities(u32::from_le_bytes([b[12], b[13], b[14], b[15]])),
        max_frame_bytes: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
        max_in_flight: u32::from_le_bytes([b[20], b[21], b[22], b[23]]),
    }
}

/// The first 24 bytes a client sends.
///
/// ```
/// use hearth_proto::ClientHello;
/// let hello = ClientHello::default();
/// let bytes = hello.encode();
/// assert_eq!(&bytes[..8], b"HEARTH\0\x01");
/// assert_eq!(ClientHello::decode(&bytes), Ok((hello, 24)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello {
    /// Highest protocol version the client speaks.
    pub max_version: u16,
    /// Lowest protocol version the client speaks.
    pub min_version: u16,
    /// Capabilities the client offers.
    pub capabilities: Capabilities,
    /// Largest frame the client accepts (header + payload).
    pub max_frame_bytes: u32,
    /// Most requests the client will have in flight.
    pub max_in_flight: u32,
}

impl Default for ClientHello {
    /// This build's versions, every capability, the default limits.
    fn default() -> Self {
        ClientHello {
            max_version: PROTOCOL_VERSION,
            min_version: MIN_PROTOCOL_VERSION,
            capabilities: Capabilities::ALL,
            max_frame_bytes: default_frame_limit(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

fn default_frame_limit() -> u32 {
    u32::try_from(DEFAULT_MAX_FRAME_BYTES).unwrap_or(u32::MAX)
}

impl ClientHello {
    /// The 24 bytes to send.
    pub fn encode(&self) -> [u8; CLIENT_HELLO_LEN] {
        encode_prefix(
            CLIENT_MAGIC,
            &Prefix {
                max_version: self.max_version,
                min_version: self.min_version,
                capabilities: self.capabilities,
                max_frame_bytes: self.max_frame_bytes,
                max_in_flight: self.max_in_flight,
            },
        )
    }

    /// Reads a client hello from the start of `bytes`; returns it and the
    /// number of bytes it took (frames may follow in the same buffer).
    ///
    /// Wrong magic is refused from the first mismatching byte;
    /// [`HandshakeError::Incomplete`] means: read more and call again.
    ///
    /// ```
    /// use hearth_proto::{ClientHello, HandshakeError};
    /// let bytes = ClientHello::default().encode();
    /// assert!(ClientHello::decode(&bytes[..10]).unwrap_err().is_incomplete());
    /// let mut bad = bytes;
    /// bad[10..12].copy_from_slice(&0u16.to_le_bytes());
    /// assert!(matches!(ClientHello::decode(&bad), Err(HandshakeError::InvalidHello { .. })));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<(ClientHello, usize), HandshakeError> {
        check_magic(bytes, HelloRole::Client)?;
        let Some(fixed) = bytes.first_chunk::<CLIENT_HELLO_LEN>() else {
            return Err(HandshakeError::Incomplete {
                needed: CLIENT_HELLO_LEN,
            });
        };
        let p = decode_prefix(fixed);
        check_versions(p.min_version, p.max_version)?;
        check_limits(p.max_frame_bytes, p.max_in_flight)?;
        Ok((
            ClientHello {
                max_version: p.max_version,
                min_version: p.min_version,
                capabilities: p.capabilities,
                max_frame_bytes: p.max_frame_bytes,
                max_in_flight: p.max_in_flight,
            },
            CLIENT_HELLO_LEN,
        ))
    }
}

/// What a server offers; its side of [`negotiate`].
///
/// ```
/// use hearth_proto::{Capabilities, ServerLimits};
/// let limits = ServerLimits { capabilities: Capabilities::EVENTS, ..ServerLimits::default() };
/// assert_eq!(limits.max_version, hearth_proto::PROTOCOL_VERSION);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Highest protocol version the server speaks.
    pub max_version: u16,
    /// Lowest protocol version the server speaks.
    pub min_version: u16,
    /// Capabilities the server offers.
    pub capabilities: Capabilities,
    /// Largest frame the server accepts (header + payload).
    pub max_frame_bytes: u32,
    /// Most requests the server lets one client have in flight.
    pub max_in_flight: u32,
    /// Longest message the server joins from `MORE` frames: the longest
    /// request a client may send. Told to clients of protocol
    /// [`MESSAGE_LIMIT_VERSION`] or later; at least [`MIN_MESSAGE_LIMIT`],
    /// or clients refuse the hello.
    pub max_message_bytes: u64,
}

impl Default for ServerLimits {
    /// This build's versions, every capability, the default limits.
    fn default() -> Self {
        ServerLimits {
            max_version: PROTOCOL_VERSION,
            min_version: MIN_PROTOCOL_VERSION,
            capabilities: Capabilities::ALL,
            max_frame_bytes: default_frame_limit(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_message_bytes: DEFAULT_MAX_PAYLOAD_BYTES as u64,
        }
    }
}

/// What both sides agreed on.
///
/// ```
/// use hearth_proto::{negotiate, ClientHello, ServerLimits};
/// let agreed = negotiate(&ClientHello::default(), &ServerLimits::default()).unwrap();
/// assert_eq!(agreed.version, 2);
/// assert_eq!(agreed.server_max_message_bytes, Some(32 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol version both speak: the highest one in both ranges.
    pub version: u16,
    /// Capabilities both have.
    pub capabilities: Capabilities,
    /// Largest frame the client accepts: what the server may send.
    pub client_max_frame_bytes: u32,
    /// Largest frame the server accepts: what the client may send.
    pub server_max_frame_bytes: u32,
    /// Requests the client may have in flight (the smaller of both limits).
    pub max_in_flight: u32,
    /// Longest message the server joins, so the longest request the client
    /// may send: the server's `max_message_bytes` when the version is
    /// [`MESSAGE_LIMIT_VERSION`] or later; `None` under protocol 1, whose
    /// hello does not say it (a client then assumes
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`](crate::DEFAULT_MAX_PAYLOAD_BYTES)).
    pub server_max_message_bytes: Option<u64>,
}

/// The server's decision on a client hello.
///
/// The version is the smaller of the two highest versions, provided it is
/// at least both lowest versions; otherwise the client is refused with a
/// [`HandshakeError::VersionMismatch`] that says which side to upgrade.
///
/// ```
/// use hearth_proto::{negotiate, ClientHello, ServerLimits};
/// let client = ClientHello { max_version: 1, min_version: 1, ..ClientHello::default() };
/// let server = ServerLimits { max_version: 3, min_version: 2, ..ServerLimits::default() };
/// let err = negotiate(&client, &server).unwrap_err();
/// assert_eq!(err.to_string(), "client speaks protocol 1..1, server 2..3; upgrade the client");
/// ```
pub fn negotiate(
    client: &ClientHello,
    server: &ServerLimits,
) -> Result<Negotiated, HandshakeError> {
    let lowest = client.min_version.max(server.min_version);
    let highest = client.max_version.min(server.max_version);
    if lowest > highest || highest == 0 {
        return Err(HandshakeError::VersionMismatch {
            client_min: client.min_version,
            client_max: client.max_version,
            server_min: server.min_version,
            server_max: server.max_version,
        });
    }
    Ok(Negotiated {
        version: highest,
        capabilities: client.capabilities.intersection(server.capabilities),
        client_max_frame_bytes: client.max_frame_bytes,
        server_max_frame_bytes: server.max_frame_bytes,
        max_in_flight: client.max_in_flight.min(server.max_in_flight),
        server_max_message_bytes: (highest >= MESSAGE_LIMIT_VERSION)
            .then_some(server.max_message_bytes),
    })
}

/// The client's reading of the server hello: the agreement, or why the
/// server refused.
///
/// Under protocol [`MESSAGE_LIMIT_VERSION`] or later the hello must carry
/// the server's `max_message_bytes`, at least [`MIN_MESSAGE_LIMIT`]
/// ([`ServerHello::decode`] checks that too); under protocol 1 any value
/// in `reply` is ignored, as the wire has none.
///
/// ```
/// use hearth_proto::{conclude, ClientHello, ServerHello, ServerLimits};
/// let client = ClientHello::default();
/// let (reply, server_side) = ServerHello::respond(&client, &ServerLimits::default());
/// assert_eq!(conclude(&client, &reply), server_side);
/// ```
pub fn conclude(client: &ClientHello, reply: &ServerHello) -> Result<Negotiated, HandshakeError> {
    if !reply.status.is_ok() {
        return Err(HandshakeError::Refused {
            status: reply.status,
            reason: reply.reason.clone(),
        });
    }
    if reply.version < client.min_version || reply.version > client.max_version {
        return Err(invalid(format!(
            "the server chose protocol {}, outside the {}..{} this client speaks",
            reply.version, client.min_version, client.max_version
        )));
    }
    let server_max_message_bytes = if reply.version >= MESSAGE_LIMIT_VERSION {
        let Some(max) = reply.max_message_bytes else {
            return Err(invalid(format!(
                "the server accepted with protocol {} but did not say its max_message_bytes",
                reply.version
            )));
        };
        check_message_limit(max)?;
        Some(max)
    } else {
        None
    };
    Ok(Negotiated {
        version: reply.version,
        capabilities: client.capabilities.intersection(reply.capabilities),
        client_max_frame_bytes: client.max_frame_bytes,
        server_max_frame_bytes: reply.max_frame_bytes,
        max_in_flight: client.max_in_flight.min(reply.max_in_flight),
        server_max_message_bytes,
    })
}

/// The server's answer to a client hello.
///
/// ```
/// use hearth_proto::{ClientHello, HandshakeStatus, ServerHello, ServerLimits};
/// let (hello, outcome) = ServerHello::respond(&ClientHello::default(), &ServerLimits::default());
/// assert!(outcome.is_ok());
/// assert_eq!(hello.status, HandshakeStatus::Ok);
/// let bytes = hello.encode();
/// assert_eq!(ServerHello::decode(&bytes), Ok((hello, bytes.len())));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Highest protocol version the server speaks.
    pub max_version: u16,
    /// Lowest protocol version the server speaks.
    pub min_version: u16,
    /// Accepted: the agreed capabilities; refused: the server's.
    pub capabilities: Capabilities,
    /// Largest frame the server accepts.
    pub max_frame_bytes: u32,
    /// Accepted: the agreed in-flight limit; refused: the server's.
    pub max_in_flight: u32,
    /// The agreed version; 0 when refused.
    pub version: u16,
    /// Accepted or why not.
    pub status: HandshakeStatus,
    /// Why the server refused; empty when accepted.
    pub reason: String,
    /// The server's `max_message_bytes`: the longest request the client
    /// may send. On the wire exactly when `status` is ok and `version` is
    /// [`MESSAGE_LIMIT_VERSION`] or later, so `Some` then and `None`
    /// otherwise in a decoded hello.
    pub max_message_bytes: Option<u64>,
}

impl ServerHello {
    /// The hello that accepts `agreed`.
    ///
    /// ```
    /// use hearth_proto::{negotiate, ClientHello, ServerHello, ServerLimits};
    /// let limits = ServerLimits::default();
    /// let agreed = negotiate(&ClientHello::default(), &limits).unwrap();
    /// assert!(ServerHello::accept(&limits, &agreed).status.is_ok());
    /// ```
    pub fn accept(limits: &ServerLimits, agreed: &Negotiated) -> ServerHello {
        ServerHello {
            max_version: limits.max_version,
            min_version: limits.min_version,
            capabilities: agreed.capabilities,
            max_frame_bytes: limits.max_frame_bytes,
            max_in_flight: agreed.max_in_flight,
            version: agreed.version,
            status: HandshakeStatus::Ok,
            reason: String::new(),
            max_message_bytes: agreed.server_max_message_bytes,
        }
    }

    /// The hello that refuses a client because of `error`; the status comes
    /// from [`HandshakeError::status`] and the reason is its message.
    ///
    /// To refuse for a reason of the server's own, pass a
    /// [`HandshakeError::Refused`] with a non-zero status.
    ///
    /// ```
    /// use hearth_proto::{HandshakeError, HandshakeStatus, ServerHello, ServerLimits};
    /// let e = HandshakeError::Refused { status: HandshakeStatus::PermissionDenied,
    ///                                   reason: "uid 1001 may not use this channel".into() };
    /// let hello = ServerHello::refuse(&ServerLimits::default(), &e);
    /// assert_eq!(hello.status, HandshakeStatus::PermissionDenied);
    /// assert_eq!(hello.reason, "uid 1001 may not use this channel");
    /// ```
    pub fn refuse(limits: &ServerLimits, error: &HandshakeError) -> ServerHello {
        let reason = match error {
            HandshakeError::Refused { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        ServerHello {
            max_version: limits.max_version,
            min_version: limits.min_version,
            capabilities: limits.capabilities,
            max_frame_bytes: limits.max_frame_bytes,
            max_in_flight: limits.max_in_flight,
            version: 0,
            status: error.status(),
            reason: truncate_reason(&reason).to_string(),
            max_message_bytes: None,
        }
    }

    /// Negotiates and builds the reply in one step: the hello to send and
    /// the outcome for the server.
    ///
    /// ```
    /// use hearth_proto::{ClientHello, HandshakeStatus, ServerHello, ServerLimits};
    /// let old = ClientHello { max_version: 1, min_version: 1, ..ClientHello::default() };
    /// let server = ServerLimits { max_version: 3, min_version: 2, ..ServerLimits::default() };
    /// let (hello, outcome) = ServerHello::respond(&old, &server);
    /// assert!(outcome.is_err());
    /// assert_eq!(hello.status, HandshakeStatus::VersionMismatch);
    /// assert!(hello.reason.ends_with("upgrade the client"));
    /// ```
    pub fn respond(
        client: &ClientHello,
        limits: &ServerLimits,
    ) -> (ServerHello, Result<Negotiated, HandshakeError>) {
        let outcome = negotiate(client, limits);
        let hello = match &outcome {
            Ok(agreed) => ServerHello::accept(limits, agreed),
            Err(error) => ServerHello::refuse(limits, error),
        };
        (hello, outcome)
    }

    /// The bytes to send: 29 fixed bytes, the reason (cut to
    /// [`MAX_REASON_BYTES`]) and, when `status` is ok and `version` is
    /// [`MESSAGE_LIMIT_VERSION`] or later, `max_message_bytes` (0 when
    /// it is `None`, which a client refuses).
    ///
    /// ```
    /// use hearth_proto::{ClientHello, ServerHello, ServerLimits};
    /// let limits = ServerLimits { max_message_bytes: 64 << 20, ..ServerLimits::default() };
    /// let (hello, _) = ServerHello::respond(&ClientHello::default(), &limits);
    /// let bytes = hello.encode();
    /// assert_eq!(bytes.len(), 37);
    /// assert_eq!(bytes[29..37], (64u64 << 20).to_le_bytes());
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let reason = truncate_reason(&self.reason);
        let mut out = Vec::with_capacity(SERVER_HELLO_FIXED_LEN + reason.len() + MESSAGE_LIMIT_LEN);
        out.extend_from_slice(&encode_prefix(
            SERVER_MAGIC,
            &Prefix {
                max_version: self.max_version,
                min_version: self.min_version,
                capabilities: self.capabilities,
                max_frame_bytes: self.max_frame_bytes,
                max_in_flight: self.max_in_flight,
            },
        ));
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.status.code());
        // `truncate_reason` keeps it within MAX_REASON_BYTES < u16::MAX.
        out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
        out.extend_from_slice(reason.as_bytes());
        if carries_message_limit(self.status, self.version) {
            out.extend_from_slice(&self.max_message_bytes.unwrap_or(0).to_le_bytes());
        }
        out
    }

    /// Reads a server hello from the start of `bytes`; returns it and the
    /// number of bytes it took: 29 and the reason, and 8 more
    /// (`max_message_bytes`) when it accepts with protocol 2 or later.
    /// The first 29 bytes tell the whole length, so
    /// [`HandshakeError::Incomplete`] names it once they have come.
    ///
    /// ```
    /// use hearth_proto::{ClientHello, HandshakeError, ServerHello, ServerLimits};
    /// assert_eq!(ServerHello::decode(b"HEARTH\0\x02"), Err(HandshakeError::Incomplete { needed: 29 }));
    /// assert!(matches!(ServerHello::decode(b"HEARTH\0\x01"), Err(HandshakeError::WrongRole { .. })));
    /// let (hello, _) = ServerHello::respond(&ClientHello::default(), &ServerLimits::default());
    /// let bytes = hello.encode();
    /// assert_eq!(ServerHello::decode(&bytes[..29]), Err(HandshakeError::Incomplete { needed: 37 }));
    /// assert_eq!(ServerHello::decode(&bytes).unwrap().0.max_message_bytes, Some(32 << 20));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<(ServerHello, usize), HandshakeError> {
        check_magic(bytes, HelloRole::Server)?;
        let Some(fixed) = bytes.first_chunk::<SERVER_HELLO_FIXED_LEN>() else {
            return Err(HandshakeError::Incomplete {
                needed: SERVER_HELLO_FIXED_LEN,
            });
        };
        let reason_len = u16::from_le_bytes([fixed[27], fixed[28]]) as usize;
        if reason_len > MAX_REASON_BYTES {
            return Err(invalid(format!(
                "the reason is {reason_len} bytes; a server sends at most {MAX_REASON_BYTES}"
            )));
        }
        let version = u16::from_le_bytes([fixed[24], fixed[25]]);
        let status = HandshakeStatus::from_code(fixed[26]);
        let reason_end = SERVER_HELLO_FIXED_LEN + reason_len;
        let total = if carries_message_limit(status, version) {
            reason_end + MESSAGE_LIMIT_LEN
        } else {
            reason_end
        };
        let (Some(reason), true) = (
            bytes.get(SERVER_HELLO_FIXED_LEN..reason_end),
            bytes.len() >= total,
        ) else {
            return Err(HandshakeError::Incomplete { needed: total });
        };
        let max_message_bytes = bytes
            .get(reason_end..total)
            .and_then(|b| b.first_chunk::<MESSAGE_LIMIT_LEN>())
            .map(|b| u64::from_le_bytes(*b));
        let Some(prefix) = bytes.first_chunk::<CLIENT_HELLO_LEN>() else {
            return Err(HandshakeError::Incomplete {
                needed: CLIENT_HELLO_LEN,
            });
        };
        let p = decode_prefix(prefix);
        let reason = std::str::from_utf8(reason)
            .map_err(|e| invalid(format!("the reason is not UTF-8 ({e})")))?
            .to_string();
        check_versions(p.min_version, p.max_version)?;
        if status.is_ok() {
            if !reason.is_empty() {
                return Err(invalid("an accepting server hello carries a reason"));
            }
            if version < p.min_version || version > p.max_version {
                return Err(invalid(format!(
                    "the server accepted with protocol {version}, outside its own {}..{}",
                    p.min_version, p.max_version
                )));
            }
            check_limits(p.max_frame_bytes, p.max_in_flight)?;
            if let Some(max) = max_message_bytes {
                check_message_limit(max)?;
            }
        } else if version != 0 {
            return Err(invalid(format!(
                "a refusing server hello names protocol {version}; it must be 0"
            )));
        }
        Ok((
            ServerHello {
                max_version: p.max_version,
                min_version: p.min_version,
                capabilities: p.capabilities,
                max_frame_bytes: p.max_frame_bytes,
                max_in_flight: p.max_in_flight,
                version,
                status,
                reason,
                max_message_bytes,
            },
            total,
        ))
    }
}

/// `reason` cut to at most [`MAX_REASON_BYTES`] at a character boundary.
fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::{doc_example, hex};
    use proptest::prelude::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Capabilities>();
        assert_send_sync::<ClientHello>();
        assert_send_sync::<HandshakeError>();
        assert_send_sync::<HandshakeStatus>();
        assert_send_sync::<HelloRole>();
        assert_send_sync::<Negotiated>();
        assert_send_sync::<ServerHello>();
        assert_send_sync::<ServerLimits>();
    }

    #[test]
    fn the_client_hello_example_in_the_protocol_doc_is_what_the_encoder_writes() {
        let bytes = ClientHello::default().encode();
        assert_eq!(
            doc_example("client-hello"),
            bytes,
            "docs/protocol.md should show:\n{}",
            hex(&bytes)
        );
    }

    #[test]
    fn the_server_hello_examples_in_the_protocol_doc_are_what_the_encoder_writes() {
        let (accept, _) = ServerHello::respond(&ClientHello::default(), &ServerLimits::default());
        let bytes = accept.encode();
        assert_eq!(
            doc_example("server-hello-accept"),
            bytes,
            "docs/protocol.md should show:\n{}",
            hex(&bytes)
        );
        let v1 = ClientHello {
            max_version: 1,
            ..ClientHello::default()
        };
        let (accept_v1, _) = ServerHello::respond(&v1, &ServerLimits::default());
        let bytes = accept_v1.encode();
        assert_eq!(
            doc_example("server-hello-accept-v1"),
            bytes,
            "docs/protocol.md should show:\n{}",
            hex(&bytes)
        );
        let old = ClientHello::default();
        let newer = ServerLimits {
            max_version: 4,
            min_version: 3,
            ..ServerLimits::default()
        };
        let (refuse, _) = ServerHello::respond(&old, &newer);
        let bytes = refuse.encode();
        assert_eq!(
            doc_example("server-hello-refuse"),
            bytes,
            "docs/protocol.md should show:\n{}",
            hex(&bytes)
        );
    }

    #[test]
    fn the_client_hello_layout_is_the_documented_one() {
        let hello = ClientHello {
            max_version: 0x0201,
            min_version: 0x0001,
            capabilities: Capabilities::from_bits(0x0403_0201),
            max_frame_bytes: 0x0807_0605,
            max_in_flight: 0x0c0b_0a09,
        };
        assert_eq!(
            hello.encode(),
            [
                b'H', b'E', b'A', b'R', b'T', b'H', 0, 1, // magic
                1, 2, // max version
                1, 0, // min version
                1, 2, 3, 4, // capabilities
                5, 6, 7, 8, // max frame bytes
                9, 10, 11, 12, // max in flight
            ]
        );
    }

    #[test]
    fn http_on_the_socket_is_refused_as_bad_magic_from_the_first_byte() {
        let err = ClientHello::decode(b"G").unwrap_err();
        assert_eq!(
            err,
            HandshakeError::BadMagic {
                found: b"G".to_vec()
            }
        );
        assert!(
            err.to_string()
                .contains("does not speak the hearth protocol")
        );
        assert_eq!(err.code(), ErrorCode::InvalidInput);
        assert_eq!(err.status(), HandshakeStatus::InvalidHello);
    }

    #[test]
    fn an_unknown_role_byte_is_bad_magic() {
        assert!(matches!(
            ClientHello::decode(b"HEARTH\0\x07xxxxxxxxxxxxxxxxx"),
            Err(HandshakeError::BadMagic { .. })
        ));
    }

    #[test]
    fn a_server_hello_sent_to_a_server_is_the_wrong_role() {
        let (hello, _) = ServerHello::respond(&ClientHello::default(), &ServerLimits::default());
        assert_eq!(
            ClientHello::decode(&hello.encode()),
            Err(HandshakeError::WrongRole {
                expected: HelloRole::Client,
                found: HelloRole::Server
            })
        );
        assert!(matches!(
            ServerHello::decode(&ClientHello::default().encode()),
            Err(HandshakeError::WrongRole {
                expected: HelloRole::Server,
                ..
            })
        ));
    }

    #[test]
    fn every_proper_prefix_of_a_hello_is_incomplete() {
        let client = ClientHello::default().encode();
        for n in 0..client.len() {
            assert_eq!(
                ClientHello::decode(&client[..n]),
                Err(HandshakeError::Incomplete { needed: 24 })
            );
        }
        let refused = ServerHello::refuse(
            &ServerLimits::default(),
            &HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                reason: "shutting down".into(),
            },
        )
        .encode();
        for n in 0..refused.len() {
            let err = ServerHello::decode(&refused[..n]).unwrap_err();
            match err {
                HandshakeError::Incomplete { needed } => assert!(needed > n),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn bytes_after_a_hello_are_left_for_the_frames() {
        let mut bytes = ClientHello::default().encode().to_vec();
        bytes.extend_from_slice(b"frames...");
        assert_eq!(ClientHello::decode(&bytes).unwrap().1, CLIENT_HELLO_LEN);
    }

    #[test]
    fn a_version_range_starting_at_zero_or_reversed_is_invalid() {
        for (min, max) in [(0, 1), (3, 2)] {
            let hello = ClientHello {
                min_version: min,
                max_version: max,
                ..ClientHello::default()
            };
            assert!(matches!(
                ClientHello::decode(&hello.encode()),
                Err(HandshakeError::InvalidHello { .. })
            ));
        }
    }

    #[test]
    fn unusable_limits_are_invalid() {
        let tiny = ClientHello {
            max_frame_bytes: 100,
            ..ClientHello::default()
        };
        let err = ClientHello::decode(&tiny.encode()).unwrap_err();
        assert!(err.to_string().contains("max_frame_bytes is 100"), "{err}");
        let none = ClientHello {
            max_in_flight: 0,
            ..ClientHello::default()
        };
        assert!(matches!(
            ClientHello::decode(&none.encode()),
            Err(HandshakeError::InvalidHello { .. })
        ));
    }

    #[test]
    fn an_old_client_is_told_to_upgrade_itself() {
        let err = negotiate(
            &ClientHello {
                max_version: 1,
                ..ClientHello::default()
            },
            &ServerLimits {
                max_version: 3,
                min_version: 2,
                ..ServerLimits::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "client speaks protocol 1..1, server 2..3; upgrade the client"
        );
        assert_eq!(err.status(), HandshakeStatus::VersionMismatch);
    }

    #[test]
    fn a_newer_client_is_told_to_upgrade_the_server() {
        let err = negotiate(
            &ClientHello {
                max_version: 5,
                min_version: 4,
                ..ClientHello::default()
            },
            &ServerLimits::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "client speaks protocol 4..5, server 1..2; upgrade the server"
        );
    }

    #[test]
    fn the_highest_common_version_and_the_common_capabilities_are_chosen() {
        let client = ClientHello {
            max_version: 4,
            min_version: 1,
            capabilities: Capabilities::SHARED_MEMORY | Capabilities::EVENTS,
            max_in_flight: 10,
            ..ClientHello::default()
        };
        let server = ServerLimits {
            max_version: 3,
            min_version: 2,
            capabilities: Capabilities::EVENTS | Capabilities::CHUNKED_STREAMS,
            max_in_flight: 100,
            ..ServerLimits::default()
        };
        let agreed = negotiate(&client, &server).unwrap();
        assert_eq!(agreed.version, 3);
        assert_eq!(agreed.capabilities, Capabilities::EVENTS);
        assert_eq!(agreed.max_in_flight, 10);
    }

    #[test]
    fn a_refusal_reaches_the_client_with_its_reason() {
        let client = ClientHello::default();
        let hello = ServerHello::refuse(
            &ServerLimits::default(),
            &HandshakeError::Refused {
                status: HandshakeStatus::PermissionDenied,
                reason: "uid 1001 may not use channel main".into(),
            },
        );
        let (decoded, _) = ServerHello::decode(&hello.encode()).unwrap();
        let err = conclude(&client, &decoded).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PermissionDenied);
        assert_eq!(
            err.to_string(),
            "the server refused the connection (permission denied): uid 1001 may not use channel main"
        );
    }

    #[test]
    fn a_server_choosing_a_version_the_client_does_not_speak_is_invalid() {
        let client = ClientHello::default();
        let (mut hello, _) = ServerHello::respond(&client, &ServerLimits::default());
        hello.version = 3;
        hello.max_version = 3;
        assert!(matches!(
            conclude(&client, &hello),
            Err(HandshakeError::InvalidHello { .. })
        ));
    }

    #[test]
    fn inconsistent_server_hellos_are_invalid() {
        let (ok, _) = ServerHello::respond(&ClientHello::default(), &ServerLimits::default());
        let with_reason = ServerHello {
            reason: "hm".into(),
            ..ok.clone()
        };
        let refused_with_version = ServerHello {
            status: HandshakeStatus::Unavailable,
            ..ok.clone()
        };
        let version_outside = ServerHello {
            version: 9,
            ..ok.clone()
        };
        for hello in [with_reason, refused_with_version, version_outside] {
            assert!(
                matches!(
                    ServerHello::decode(&hello.encode()),
                    Err(HandshakeError::InvalidHello { .. })
                ),
                "{hello:?}"
            );
        }
    }

    #[test]
    fn a_reason_that_is_not_utf8_is_invalid() {
        let mut bytes = ServerHello::refuse(
            &ServerLimits::default(),
            &HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                reason: "ab".into(),
            },
        )
        .encode();
        let n = bytes.len();
        bytes[n - 1] = 0xff;
        let err = ServerHello::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let hello = ServerHello::refuse(
            &ServerLimits::default(),
            &HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                reason,
            },
        );
        assert_eq!(hello.reason.len(), MAX_REASON_BYTES);
        let (decoded, used) = ServerHello::decode(&hello.encode()).unwrap();
        assert_eq!(used, SERVER_HELLO_FIXED_LEN + MAX_REASON_BYTES);
        assert_eq!(decoded.reason, hello.reason);
    }

    #[test]
    fn a_reason_length_over_the_limit_is_refused_before_the_reason_arrives() {
        let mut bytes = ServerHello::refuse(
            &ServerLimits::default(),
            &HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                reason: String::new(),
            },
        )
        .encode();
        bytes[27..29].copy_from_slice(&(MAX_REASON_BYTES as u16 + 1).to_le_bytes());
        let err = ServerHello::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("at most 1024"), "{err}");
    }

    #[test]
    fn an_unknown_refusal_status_is_still_a_refusal() {
        let hello = ServerHello::refuse(
            &ServerLimits::default(),
            &HandshakeError::Refused {
                status: HandshakeStatus::Other(77),
                reason: "new reason".into(),
            },
        );
        let (decoded, _) = ServerHello::decode(&hello.encode()).unwrap();
        assert_eq!(decoded.status, HandshakeStatus::Other(77));
        assert!(matches!(
            conclude(&ClientHello::default(), &decoded),
            Err(HandshakeError::Refused { .. })
        ));
    }

    fn v1_client() -> ClientHello {
        ClientHello {
            max_version: 1,
            ..ClientHello::default()
        }
    }

    fn raised(max_message_bytes: u64) -> ServerLimits {
        ServerLimits {
            max_message_bytes,
            ..ServerLimits::default()
        }
    }

    #[test]
    fn this_build_offers_and_speaks_versions_1_and_2() {
        let hello = ClientHello::default();
        assert_eq!((hello.min_version, hello.max_version), (1, 2));
        let limits = ServerLimits::default();
        assert_eq!((limits.min_version, limits.max_version), (1, 2));
        assert_eq!(limits.max_message_bytes, 32 << 20);
    }

    #[test]
    fn a_version_2_acceptance_ends_with_the_servers_message_limit() {
        let (hello, agreed) = ServerHello::respond(&ClientHello::default(), &raised(40 << 20));
        let agreed = agreed.unwrap();
        assert_eq!(agreed.version, 2);
        assert_eq!(agreed.server_max_message_bytes, Some(40 << 20));
        assert_eq!(hello.max_message_bytes, Some(40 << 20));
        let bytes = hello.encode();
        assert_eq!(bytes.len(), SERVER_HELLO_FIXED_LEN + MESSAGE_LIMIT_LEN);
        assert_eq!(bytes[24..26], [2, 0], "version 2");
        assert_eq!(bytes[27..29], [0, 0], "no reason");
        assert_eq!(
            bytes[29..37],
            [0, 0, 0x80, 0x02, 0, 0, 0, 0],
            "40 MiB, u64 LE"
        );
        let (decoded, used) = ServerHello::decode(&bytes).unwrap();
        assert_eq!((decoded.clone(), used), (hello, 37));
        assert_eq!(conclude(&ClientHello::default(), &decoded), Ok(agreed));
    }

    #[test]
    fn a_version_1_client_gets_exactly_the_29_byte_hello() {
        let (hello, agreed) = ServerHello::respond(&v1_client(), &raised(40 << 20));
        let agreed = agreed.unwrap();
        assert_eq!(agreed.version, 1);
        assert_eq!(agreed.server_max_message_bytes, None);
        assert_eq!(hello.max_message_bytes, None);
        let bytes = hello.encode();
        assert_eq!(bytes.len(), SERVER_HELLO_FIXED_LEN);
        assert_eq!(
            bytes[8..10],
            [2, 0],
            "the server still says it speaks up to 2"
        );
        assert_eq!(bytes[24..26], [1, 0], "version 1");
        // Frames right after it are left for the frame decoder.
        let mut stream = bytes.clone();
        stream.extend_from_slice(b"frame");
        let (decoded, used) = ServerHello::decode(&stream).unwrap();
        assert_eq!(used, SERVER_HELLO_FIXED_LEN);
        assert_eq!(decoded.max_message_bytes, None);
        assert_eq!(conclude(&v1_client(), &decoded), Ok(agreed));
    }

    #[test]
    fn a_version_2_client_of_a_version_1_server_learns_no_message_limit() {
        let old_server = ServerLimits {
            max_version: 1,
            ..ServerLimits::default()
        };
        let (hello, _) = ServerHello::respond(&ClientHello::default(), &old_server);
        let bytes = hello.encode();
        assert_eq!(bytes.len(), SERVER_HELLO_FIXED_LEN);
        let (decoded, _) = ServerHello::decode(&bytes).unwrap();
        let agreed = conclude(&ClientHello::default(), &decoded).unwrap();
        assert_eq!(agreed.version, 1);
        assert_eq!(agreed.server_max_message_bytes, None);
    }

    #[test]
    fn a_refusal_is_the_same_for_every_version_and_carries_no_message_limit() {
        let newer = ServerLimits {
            max_version: 4,
            min_version: 3,
            ..raised(40 << 20)
        };
        let (hello, _) = ServerHello::respond(&ClientHello::default(), &newer);
        assert_eq!(hello.max_message_bytes, None);
        let bytes = hello.encode();
        assert_eq!(bytes.len(), SERVER_HELLO_FIXED_LEN + hello.reason.len());
        let (decoded, used) = ServerHello::decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert!(matches!(
            conclude(&v1_client(), &decoded),
            Err(HandshakeError::Refused {
                status: HandshakeStatus::VersionMismatch,
                ..
            })
        ));
    }

    #[test]
    fn a_message_limit_below_64_kib_is_refused() {
        for bad in [0, 1, MIN_MESSAGE_LIMIT - 1] {
            let (hello, _) = ServerHello::respond(&ClientHello::default(), &raised(bad));
            let err = ServerHello::decode(&hello.encode()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid hello: max_message_bytes is {bad}; it must be at least 65536")
            );
            assert_eq!(err.status(), HandshakeStatus::InvalidHello);
            // Built by hand, not decoded: conclude checks too.
            assert!(matches!(
                conclude(&ClientHello::default(), &hello),
                Err(HandshakeError::InvalidHello { .. })
            ));
        }
        for good in [MIN_MESSAGE_LIMIT, u64::MAX] {
            let (hello, _) = ServerHello::respond(&ClientHello::default(), &raised(good));
            let (decoded, _) = ServerHello::decode(&hello.encode()).unwrap();
            assert_eq!(decoded.max_message_bytes, Some(good));
        }
    }

    #[test]
    fn a_version_2_acceptance_without_a_message_limit_is_invalid() {
        let (mut hello, _) =
            ServerHello::respond(&ClientHello::default(), &ServerLimits::default());
        hello.max_message_bytes = None;
        let err = conclude(&ClientHello::default(), &hello).unwrap_err();
        assert!(
            err.to_string()
                .contains("did not say its max_message_bytes"),
            "{err}"
        );
        // On the wire a missing value is written as 0, which is refused.
        assert!(matches!(
            ServerHello::decode(&hello.encode()),
            Err(HandshakeError::InvalidHello { .. })
        ));
    }

    #[test]
    fn a_message_limit_in_a_version_1_hello_is_not_on_the_wire() {
        let (mut hello, _) = ServerHello::respond(&v1_client(), &ServerLimits::default());
        hello.max_message_bytes = Some(1);
        assert_eq!(hello.encode().len(), SERVER_HELLO_FIXED_LEN);
        assert_eq!(
            conclude(&v1_client(), &hello)
                .unwrap()
                .server_max_message_bytes,
            None
        );
    }

    #[test]
    fn every_proper_prefix_of_an_accepting_hello_is_incomplete_and_names_its_length() {
        for (client, len) in [(ClientHello::default(), 37), (v1_client(), 29)] {
            let (hello, _) = ServerHello::respond(&client, &ServerLimits::default());
            let bytes = hello.encode();
            assert_eq!(bytes.len(), len);
            for n in 0..len {
                let needed = if n < SERVER_HELLO_FIXED_LEN {
                    SERVER_HELLO_FIXED_LEN
                } else {
                    len
                };
                assert_eq!(
                    ServerHello::decode(&bytes[..n]),
                    Err(HandshakeError::Incomplete { needed }),
                    "prefix {n} of {len}"
                );
            }
        }
    }

    #[test]
    fn capabilities_debug_names_known_and_unknown_bits() {
        assert_eq!(format!("{:?}", Capabilities::NONE), "Capabilities(NONE)");
        assert_eq!(
            format!("{:?}", Capabilities::from_bits(0x11)),
            "Capabilities(SHARED_MEMORY | 0x10)"
        );
    }

    fn arb_client() -> impl Strategy<Value = ClientHello> {
        (1u16..6, 0u16..3, any::<u32>(), MIN_FRAME_LIMIT.., 1u32..).prop_map(
            |(min, span, caps, frame, flight)| ClientHello {
                min_version: min,
                max_version: min + span,
                capabilities: Capabilities::from_bits(caps),
                max_frame_bytes: frame,
                max_in_flight: flight,
            },
        )
    }

    fn arb_limits() -> impl Strategy<Value = ServerLimits> {
        (arb_client(), MIN_MESSAGE_LIMIT..).prop_map(|(c, message)| ServerLimits {
            max_version: c.max_version,
            min_version: c.min_version,
            capabilities: c.capabilities,
            max_frame_bytes: c.max_frame_bytes,
            max_in_flight: c.max_in_flight,
            max_message_bytes: message,
        })
    }

    proptest! {
        #[test]
        fn any_valid_client_hello_round_trips(hello in arb_client()) {
            prop_assert_eq!(ClientHello::decode(&hello.encode()), Ok((hello, CLIENT_HELLO_LEN)));
        }

        #[test]
        fn any_server_reply_round_trips_and_both_sides_agree(client in arb_client(), limits in arb_limits()) {
            let (hello, server_side) = ServerHello::respond(&client, &limits);
            let bytes = hello.encode();
            let (decoded, used) = ServerHello::decode(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(&decoded, &hello);
            let client_side = conclude(&client, &decoded);
            match (server_side, client_side) {
                (Ok(s), Ok(c)) => prop_assert_eq!(s, c),
                (Err(_), Err(HandshakeError::Refused { status, .. })) => {
                    prop_assert_eq!(status, HandshakeStatus::VersionMismatch)
                }
                (s, c) => prop_assert!(false, "server {:?} client {:?}", s, c),
            }
        }

        #[test]
        fn the_negotiated_version_is_the_highest_both_speak(client in arb_client(), limits in arb_limits()) {
            let common: Vec<u16> = (client.min_version..=client.max_version)
                .filter(|v| (limits.min_version..=limits.max_version).contains(v))
                .collect();
            match negotiate(&client, &limits) {
                Ok(agreed) => prop_assert_eq!(Some(&agreed.version), common.last()),
                Err(_) => prop_assert!(common.is_empty()),
            }
        }

        #[test]
        fn the_hello_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = ClientHello::decode(&bytes);
            let _ = ServerHello::decode(&bytes);
        }

        #[test]
        fn the_hello_decoders_never_panic_on_the_magic_followed_by_garbage(
            role in 1u8..3,
            rest in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = b"HEARTH\0".to_vec();
            bytes.push(role);
            bytes.extend(rest);
            for n in 0..=bytes.len() {
                if let Ok((_, used)) = ClientHello::decode(&bytes[..n]) {
                    prop_assert!(used <= n);
                }
                if let Ok((_, used)) = ServerHello::decode(&bytes[..n]) {
                    prop_assert!(used <= n);
                }
            }
        }
    }
}
