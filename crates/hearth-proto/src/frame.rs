//! Frames: the fixed header, its encoder, and an incremental decoder.
//!
//! Owns: the byte layout of a frame, the rules a header must follow, and
//! the bound on how much a decoder buffers. Must never: do I/O, trust a
//! length before checking it against the limit, allocate memory for bytes
//! that have not arrived, or panic on any input.
//!
//! # Layout
//!
//! Every frame is a 24-byte header followed by `payload_len` bytes of
//! payload. All integers are little-endian.
//!
//! | bytes | type | field | rule |
//! |---|---|---|---|
//! | 0..4 | u32 | `payload_len` | payload bytes after the header; header + payload ≤ the receiver's `max_frame_bytes` |
//! | 4 | u8 | `kind` | 1 request, 2 response, 3 error, 4 event, 5 cancel, 6 stream-chunk, 7 stream-end |
//! | 5 | u8 | `flags` | bit 0 `JSON`: payload is JSON; bit 1 `MORE`: the payload continues in the next frame; bits 2..8 must be 0 |
//! | 6..8 | u16 | `operation` | an [`Operation`] code; required on requests, 0 or the request's code on other kinds |
//! | 8..16 | u64 | `request_id` | chosen by the requester, echoed by every frame that answers it |
//! | 16..24 | u64 | reserved | must be 0 |
//!
//! A *stream-chunk* carries one part of a streamed result (for example a
//! page of `list`), and *stream-end* closes the stream. The `MORE` flag is
//! lower level: it splits one message that is too large for a single frame
//! (or ring) into consecutive frames of the same kind and request id, the
//! last one without `MORE`; the receiver concatenates the payloads.
//!
//! # Errors
//!
//! A length over the limit ([`FrameError::TooLarge`]) is refused as soon as
//! the first four bytes arrive. An unknown kind, reserved flag bits or
//! non-zero reserved bytes are refused when the header is complete. These
//! are fatal: the byte stream cannot be trusted any more, and the
//! connection should be answered with an error frame and closed. An unknown
//! operation code is not fatal: the decoder skips that frame's payload
//! without buffering it and goes on, so the server can answer
//! `unknown_operation` for that request id.

use crate::{ErrorBody, ErrorCode, Operation};
use serde_json::Value;
use std::fmt;
use thiserror::Error;

/// Bytes in a frame header.
///
/// ```
/// assert_eq!(hearth_proto::HEADER_LEN, 24);
/// ```
pub const HEADER_LEN: usize = 24;

/// The default largest payload a receiver accepts: 32 MiB (twice the
/// default document limit, so a largest document fits with its envelope).
///
/// ```
/// assert_eq!(hearth_proto::DEFAULT_MAX_PAYLOAD_BYTES, 32 * 1024 * 1024);
/// ```
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 32 * 1024 * 1024;

/// The default largest frame, header included: 32 MiB + 24 bytes.
///
/// ```
/// use hearth_proto::{DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PAYLOAD_BYTES, HEADER_LEN};
/// assert_eq!(DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PAYLOAD_BYTES + HEADER_LEN);
/// ```
pub const DEFAULT_MAX_FRAME_BYTES: usize = DEFAULT_MAX_PAYLOAD_BYTES + HEADER_LEN;

/// When the decoder's buffer is empty and holds more capacity than this
/// (after a large frame), it gives the memory back.
const SHRINK_ABOVE: usize = 1024 * 1024;
/// What an emptied buffer keeps.
const SHRINK_TO: usize = 64 * 1024;

/// What a frame is.
///
/// ```
/// use hearth_proto::FrameKind;
/// assert_eq!(FrameKind::from_code(1), Some(FrameKind::Request));
/// assert_eq!(FrameKind::StreamEnd.code(), 7);
/// assert_eq!(FrameKind::from_code(0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A request; the operation field says which.
    Request = 1,
    /// The (last) successful answer to a request.
    Response = 2,
    /// A failed answer; the payload is a JSON [`ErrorBody`].
    Error = 3,
    /// An event pushed by the server (subscriptions, topics).
    Event = 4,
    /// The requester no longer wants the answer to `request_id`.
    Cancel = 5,
    /// One part of a streamed answer.
    StreamChunk = 6,
    /// The end of a streamed answer.
    StreamEnd = 7,
}

impl FrameKind {
    /// Every kind, in code order.
    pub const ALL: [FrameKind; 7] = [
        FrameKind::Request,
        FrameKind::Response,
        FrameKind::Error,
        FrameKind::Event,
        FrameKind::Cancel,
        FrameKind::StreamChunk,
        FrameKind::StreamEnd,
    ];

    /// The numeric code in the header.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The kind with this code, if any.
    pub fn from_code(code: u8) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The name used in logs and docs (`request`, `stream-chunk`, …).
    ///
    /// ```
    /// assert_eq!(hearth_proto::FrameKind::StreamChunk.name(), "stream-chunk");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            FrameKind::Request => "request",
            FrameKind::Response => "response",
            FrameKind::Error => "error",
            FrameKind::Event => "event",
            FrameKind::Cancel => "cancel",
            FrameKind::StreamChunk => "stream-chunk",
            FrameKind::StreamEnd => "stream-end",
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The flag bits of a frame header. Only known bits can be set.
///
/// ```
/// use hearth_proto::FrameFlags;
/// let flags = FrameFlags::JSON | FrameFlags::MORE;
/// assert_eq!(flags.bits(), 0b11);
/// assert!(flags.is_json() && flags.has_more());
/// assert_eq!(FrameFlags::from_bits(0b100), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flags: a binary payload, complete in this frame.
    pub const NONE: FrameFlags = FrameFlags(0);
    /// Bit 0: the payload is JSON.
    pub const JSON: FrameFlags = FrameFlags(1);
    /// Bit 1: the message continues in the next frame.
    pub const MORE: FrameFlags = FrameFlags(2);
    const KNOWN: u8 = 0b11;

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags from raw bits, or `None` if a reserved bit is set.
    pub const fn from_bits(bits: u8) -> Option<FrameFlags> {
        if bits & !Self::KNOWN == 0 {
            Some(FrameFlags(bits))
        } else {
            None
        }
    }

    /// Whether every bit of `other` is set here.
    ///
    /// ```
    /// use hearth_proto::FrameFlags;
    /// assert!((FrameFlags::JSON | FrameFlags::MORE).contains(FrameFlags::MORE));
    /// assert!(!FrameFlags::JSON.contains(FrameFlags::MORE));
    /// ```
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the payload is JSON.
    pub const fn is_json(self) -> bool {
        self.contains(FrameFlags::JSON)
    }

    /// Whether the message continues in the next frame.
    pub const fn has_more(self) -> bool {
        self.contains(FrameFlags::MORE)
    }
}

impl std::ops::BitOr for FrameFlags {
    type Output = FrameFlags;

    fn bitor(self, rhs: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for FrameFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        if self.is_json() {
            names.push("JSON");
        }
        if self.has_more() {
            names.push("MORE");
        }
        if names.is_empty() {
            names.push("NONE");
        }
        write!(f, "FrameFlags({})", names.join(" | "))
    }
}

/// Why bytes from a peer are not a valid frame.
///
/// ```
/// use hearth_proto::{ErrorCode, FrameError};
/// let e = FrameError::TooLarge { len: 1 << 40, max: 1024 };
/// assert_eq!(e.code(), ErrorCode::TooLarge);
/// assert!(e.is_fatal());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The frame (header + claimed payload) is over the receiver's limit.
    #[error(
        "frame of {len} bytes (24-byte header + payload) is over the limit of {max} bytes; split the message into frames flagged MORE, or agree on a larger max_frame_bytes in the handshake"
    )]
    TooLarge {
        /// Header plus claimed payload length.
        len: u64,
        /// The receiver's `max_frame_bytes`.
        max: usize,
    },
    /// The kind byte is not one of 1..=7.
    #[error(
        "unknown frame kind {kind}; kinds are 1 request, 2 response, 3 error, 4 event, 5 cancel, 6 stream-chunk, 7 stream-end (is the peer speaking another protocol version?)"
    )]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// A flag bit other than bits 0 and 1 is set.
    #[error(
        "frame flags {flags:#04x} set reserved bits; only bit 0 (JSON) and bit 1 (MORE) are defined, the others must be 0"
    )]
    ReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// Header bytes 16..24 are not zero.
    #[error("reserved header bytes 16..24 hold {value:#x}; they must be 0")]
    ReservedNotZero {
        /// The reserved field as a little-endian u64.
        value: u64,
    },
    /// The operation code is not known (or is 0 on a request). Not fatal:
    /// answer `unknown_operation` for `request_id` and go on.
    #[error(
        "unknown operation code {code} in {kind} frame for request {request_id}; this server does not know it (a request must name an operation; upgrade the server or check the client)"
    )]
    UnknownOperation {
        /// The operation field.
        code: u16,
        /// The frame's kind.
        kind: FrameKind,
        /// The frame's request id.
        request_id: u64,
    },
    /// An error frame's payload is not a JSON error body.
    #[error(
        "error frame payload is not a JSON error body ({reason}); expected {{\"code\":\"not_found\",\"message\":\"…\"}}"
    )]
    BadErrorPayload {
        /// What was wrong with it.
        reason: String,
    },
}

impl FrameError {
    /// The protocol error code to answer with.
    ///
    /// ```
    /// use hearth_proto::{ErrorCode, FrameError, FrameKind};
    /// assert_eq!(FrameError::UnknownKind { kind: 9 }.code(), ErrorCode::InvalidInput);
    /// let e = FrameError::UnknownOperation { code: 999, kind: FrameKind::Request, request_id: 7 };
    /// assert_eq!(e.code(), ErrorCode::UnknownOperation);
    /// ```
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::TooLarge,
            FrameError::UnknownOperation { .. } => ErrorCode::UnknownOperation,
            FrameError::UnknownKind { .. }
            | FrameError::ReservedFlags { .. }
            | FrameError::ReservedNotZero { .. }
            | FrameError::BadErrorPayload { .. } => ErrorCode::InvalidInput,
        }
    }

    /// Whether the byte stream is unusable after this error (close the
    /// connection after answering). Only an unknown operation is not.
    ///
    /// ```
    /// use hearth_proto::{FrameError, FrameKind};
    /// assert!(FrameError::ReservedFlags { flags: 0x80 }.is_fatal());
    /// assert!(!FrameError::UnknownOperation { code: 999, kind: FrameKind::Request, request_id: 7 }.is_fatal());
    /// ```
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FrameError::UnknownOperation { .. })
    }

    /// The request this error concerns, when the header got that far.
    ///
    /// ```
    /// use hearth_proto::{FrameError, FrameKind};
    /// let e = FrameError::UnknownOperation { code: 999, kind: FrameKind::Request, request_id: 7 };
    /// assert_eq!(e.request_id(), Some(7));
    /// assert_eq!(FrameError::UnknownKind { kind: 0 }.request_id(), None);
    /// ```
    pub fn request_id(&self) -> Option<u64> {
        match self {
            FrameError::UnknownOperation { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }

    /// The error body to send back to the peer.
    ///
    /// ```
    /// use hearth_proto::{ErrorCode, FrameError};
    /// let body = FrameError::UnknownKind { kind: 9 }.to_error_body();
    /// assert_eq!(body.code, ErrorCode::InvalidInput);
    /// assert!(body.message.contains("unknown frame kind 9"));
    /// ```
    pub fn to_error_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

/// A decoded frame header (the reserved bytes are always 0 and not kept).
///
/// ```
/// use hearth_proto::{FrameFlags, FrameHeader, FrameKind, Operation};
/// let header = FrameHeader {
///     payload_len: 15,
///     kind: FrameKind::Request,
///     flags: FrameFlags::JSON,
///     operation: Some(Operation::Get),
///     request_id: 1,
/// };
/// let bytes = header.encode();
/// assert_eq!(FrameHeader::decode(&bytes), Ok(header));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Payload bytes after the header.
    pub payload_len: u32,
    /// What the frame is.
    pub kind: FrameKind,
    /// Flag bits.
    pub flags: FrameFlags,
    /// The operation; `None` is written as 0.
    pub operation: Option<Operation>,
    /// The request this frame belongs to.
    pub request_id: u64,
}

impl FrameHeader {
    /// The 24 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.payload_len.to_le_bytes());
        out[4] = self.kind.code();
        out[5] = self.flags.bits();
        out[6..8].copy_from_slice(&self.operation.map_or(0, Operation::code).to_le_bytes());
        out[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        // 16..24 reserved, zero.
        out
    }

    /// Decodes and checks 24 header bytes. Checks, in order: kind, flags,
    /// reserved bytes, operation. The length is not checked against a
    /// limit here; [`FrameDecoder`] does that.
    ///
    /// ```
    /// use hearth_proto::{FrameError, FrameHeader};
    /// let mut bytes = [0u8; 24];
    /// bytes[4] = 42;
    /// assert_eq!(FrameHeader::decode(&bytes), Err(FrameError::UnknownKind { kind: 42 }));
    /// ```
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<FrameHeader, FrameError> {
        let b = bytes;
        let payload_len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let kind = FrameKind::from_code(b[4]).ok_or(FrameError::UnknownKind { kind: b[4] })?;
        let flags = FrameFlags::from_bits(b[5]).ok_or(FrameError::ReservedFlags { flags: b[5] })?;
        let op_code = u16::from_le_bytes([b[6], b[7]]);
        let request_id = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        let reserved = u64::from_le_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
        if reserved != 0 {
            return Err(FrameError::ReservedNotZero { value: reserved });
        }
        let operation = match op_code {
            0 => None,
            code => Operation::from_code(code),
        };
        if operation.is_none() && (op_code != 0 || kind == FrameKind::Request) {
            return Err(FrameError::UnknownOperation {
                code: op_code,
                kind,
                request_id,
            });
        }
        Ok(FrameHeader {
            payload_len,
            kind,
            flags,
            operation,
            request_id,
        })
    }

    /// Header plus payload, in bytes.
    ///
    /// ```
    /// use hearth_proto::{FrameFlags, FrameHeader, FrameKind};
    /// let h = FrameHeader { payload_len: 10, kind: FrameKind::Response, flags: FrameFlags::JSON,
    ///                       operation: None, request_id: 1 };
    /// assert_eq!(h.frame_len(), 34);
    /// ```
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }
}

/// A whole frame: its header and payload.
///
/// When encoding, the payload's real length is written; `header.payload_len`
/// is what the decoder read.
///
/// ```
/// use hearth_proto::{ErrorBody, ErrorCode, Frame, FrameKind};
/// let frame = Frame::error(9, None, &ErrorBody::new(ErrorCode::NotFound, "no document user:1"));
/// assert_eq!(frame.header.kind, FrameKind::Error);
/// assert_eq!(frame.error_body().unwrap().code, ErrorCode::NotFound);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub header: FrameHeader,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame of the given kind and payload.
    ///
    /// ```
    /// use hearth_proto::{Frame, FrameFlags, FrameKind, Operation};
    /// let f = Frame::new(FrameKind::Request, FrameFlags::JSON, Some(Operation::Get), 1,
    ///                    br#"{"id":"user:1"}"#.to_vec()).unwrap();
    /// assert_eq!(f.header.payload_len, 15);
    /// ```
    pub fn new(
        kind: FrameKind,
        flags: FrameFlags,
        operation: Option<Operation>,
        request_id: u64,
        payload: Vec<u8>,
    ) -> Result<Frame, FrameError> {
        let payload_len = payload_len_u32(payload.len())?;
        Ok(Frame {
            header: FrameHeader {
                payload_len,
                kind,
                flags,
                operation,
                request_id,
            },
            payload,
        })
    }

    /// A request whose payload is `body` as JSON.
    ///
    /// ```
    /// use hearth_proto::{Frame, Operation};
    /// use serde_json::json;
    /// let f = Frame::json_request(Operation::Get, 1, &json!({"id": "user:1"}));
    /// assert!(f.header.flags.is_json());
    /// assert_eq!(f.payload, br#"{"id":"user:1"}"#);
    /// ```
    pub fn json_request(operation: Operation, request_id: u64, body: &Value) -> Frame {
        let payload = body.to_string().into_bytes();
        Frame {
            header: FrameHeader {
                // A serde_json::Value built in memory cannot approach 4 GiB in
                // practice; saturate rather than panic if it ever does, and
                // let `encode` refuse it.
                payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                kind: FrameKind::Request,
                flags: FrameFlags::JSON,
                operation: Some(operation),
                request_id,
            },
            payload,
        }
    }

    /// An error frame answering `request_id`, carrying `body` as JSON
    /// (`{"code":"not_found","message":"…"}`).
    ///
    /// ```
    /// use hearth_proto::{ErrorBody, ErrorCode, Frame};
    /// let f = Frame::error(3, None, &ErrorBody::new(ErrorCode::NotFound, "no document user:1"));
    /// assert_eq!(f.payload, br#"{"code":"not_found","message":"no document user:1"}"#);
    /// ```
    pub fn error(request_id: u64, operation: Option<Operation>, body: &ErrorBody) -> Frame {
        let payload = error_payload(body);
        Frame {
            header: FrameHeader {
                payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                kind: FrameKind::Error,
                flags: FrameFlags::JSON,
                operation,
                request_id,
            },
            payload,
        }
    }

    /// The error body of an error frame; see [`decode_error_payload`].
    pub fn error_body(&self) -> Result<ErrorBody, FrameError> {
        decode_error_payload(&self.payload)
    }

    /// Appends the encoded frame to `out`.
    ///
    /// ```
    /// use hearth_proto::{Frame, FrameDecoder, Operation};
    /// use serde_json::json;
    /// let frame = Frame::json_request(Operation::Put, 5, &json!({"id": "a", "data": {}}));
    /// let mut bytes = Vec::new();
    /// frame.encode(&mut bytes).unwrap();
    /// let mut decoder = FrameDecoder::new();
    /// assert_eq!(decoder.push(&bytes), bytes.len());
    /// assert_eq!(decoder.next_frame(), Ok(Some(frame)));
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        encode_frame(
            out,
            self.header.kind,
            self.header.flags,
            self.header.operation,
            self.header.request_id,
            &self.payload,
        )
    }
}

fn payload_len_u32(len: usize) -> Result<u32, FrameError> {
    u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len: (len as u64).saturating_add(HEADER_LEN as u64),
        max: HEADER_LEN + u32::MAX as usize,
    })
}

/// Appends one frame to `out`. Fails only if the payload is 4 GiB or more
/// (the receiver's own, smaller limit is the caller's to respect).
///
/// ```
/// use hearth_proto::{encode_frame, FrameFlags, FrameKind, Operation};
/// let mut out = Vec::new();
/// encode_frame(&mut out, FrameKind::Request, FrameFlags::JSON, Some(Operation::Ping), 1, b"{}").unwrap();
/// assert_eq!(out.len(), 24 + 2);
/// assert_eq!(&out[..4], &2u32.to_le_bytes());
/// ```
pub fn encode_frame(
    out: &mut Vec<u8>,
    kind: FrameKind,
    flags: FrameFlags,
    operation: Option<Operation>,
    request_id: u64,
    payload: &[u8],
) -> Result<(), FrameError> {
    let header = FrameHeader {
        payload_len: payload_len_u32(payload.len())?,
        kind,
        flags,
        operation,
        request_id,
    };
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(())
}

/// The JSON payload of an error frame: `{"code":"…","message":"…"}`.
///
/// ```
/// use hearth_proto::{error_payload, ErrorBody, ErrorCode};
/// let bytes = error_payload(&ErrorBody::new(ErrorCode::TooLarge, "too big"));
/// assert_eq!(bytes, br#"{"code":"too_large","message":"too big"}"#);
/// ```
pub fn error_payload(body: &ErrorBody) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("code".into(), Value::from(body.code.as_str()));
    map.insert("message".into(), Value::from(body.message.as_str()));
    Value::Object(map).to_string().into_bytes()
}

/// Reads an error frame's payload. A code this side does not know (sent by
/// a newer peer) becomes [`ErrorCode::Internal`] with the code kept at the
/// start of the message.
///
/// ```
/// use hearth_proto::{decode_error_payload, ErrorCode};
/// let body = decode_error_payload(br#"{"code":"not_found","message":"no document user:1"}"#).unwrap();
/// assert_eq!(body.code, ErrorCode::NotFound);
/// let newer = decode_error_payload(br#"{"code":"quota_exceeded","message":"x"}"#).unwrap();
/// assert_eq!((newer.code, newer.message.as_str()), (ErrorCode::Internal, "quota_exceeded: x"));
/// assert!(decode_error_payload(b"nope").is_err());
/// ```
pub fn decode_error_payload(payload: &[u8]) -> Result<ErrorBody, FrameError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| FrameError::BadErrorPayload {
            reason: e.to_string(),
        })?;
    let field = |name: &str| -> Result<&str, FrameError> {
        value
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| FrameError::BadErrorPayload {
                reason: format!("no string field `{name}`"),
            })
    };
    let code = field("code")?;
    let message = field("message")?;
    Ok(match code.parse::<ErrorCode>() {
        Ok(code) => ErrorBody::new(code, message),
        Err(()) => ErrorBody::new(ErrorCode::Internal, format!("{code}: {message}")),
    })
}

/// Turns a byte stream into frames, with no I/O and bounded memory.
///
/// Feed it bytes with [`push`](FrameDecoder::push) and take frames with
/// [`next_frame`](FrameDecoder::next_frame). It never holds more than
/// `max_frame_bytes` bytes: `push` takes only what fits and returns how
/// many bytes it took, so the caller drains frames and pushes the rest.
/// Memory is only allocated for bytes that have arrived, never for a
/// claimed length.
///
/// ```
/// use hearth_proto::{encode_frame, FrameDecoder, FrameFlags, FrameKind, Operation};
/// let mut bytes = Vec::new();
/// encode_frame(&mut bytes, FrameKind::Request, FrameFlags::JSON, Some(Operation::Get), 1,
///              br#"{"id":"user:1"}"#).unwrap();
/// encode_frame(&mut bytes, FrameKind::Cancel, FrameFlags::NONE, None, 1, b"").unwrap();
///
/// let mut decoder = FrameDecoder::new();
/// let mut frames = Vec::new();
/// for chunk in bytes.chunks(7) {
///     let mut rest = chunk;
///     while !rest.is_empty() {
///         let taken = decoder.push(rest);
///         rest = &rest[taken..];
///         while let Some(frame) = decoder.next_frame()? {
///             frames.push(frame);
///         }
///     }
/// }
/// assert_eq!(frames.len(), 2);
/// assert_eq!(frames[0].payload, br#"{"id":"user:1"}"#);
/// assert_eq!(frames[1].header.kind, FrameKind::Cancel);
/// # Ok::<(), hearth_proto::FrameError>(())
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes received; `buf[start..]` are not yet consumed.
    buf: Vec<u8>,
    start: usize,
    max_frame_bytes: usize,
    /// Payload bytes still to discard after a non-fatal error.
    skip: usize,
    /// The fatal error, once there is one.
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder with the default limit, [`DEFAULT_MAX_FRAME_BYTES`].
    ///
    /// ```
    /// use hearth_proto::{FrameDecoder, DEFAULT_MAX_FRAME_BYTES};
    /// assert_eq!(FrameDecoder::new().max_frame_bytes(), DEFAULT_MAX_FRAME_BYTES);
    /// ```
    pub fn new() -> Self {
        FrameDecoder::with_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES)
    }

    /// A decoder refusing frames (header + payload) over `max_frame_bytes`.
    /// A limit below [`HEADER_LEN`] is raised to it.
    ///
    /// ```
    /// use hearth_proto::FrameDecoder;
    /// assert_eq!(FrameDecoder::with_max_frame_bytes(4096).max_frame_bytes(), 4096);
    /// assert_eq!(FrameDecoder::with_max_frame_bytes(0).max_frame_bytes(), 24);
    /// ```
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_frame_bytes: max_frame_bytes.max(HEADER_LEN),
            skip: 0,
            failed: None,
        }
    }

    /// The limit this decoder enforces.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Bytes received and not yet returned as frames (never more than
    /// `max_frame_bytes`).
    ///
    /// ```
    /// use hearth_proto::FrameDecoder;
    /// let mut d = FrameDecoder::new();
    /// assert_eq!(d.push(&[1, 0, 0]), 3);
    /// assert_eq!(d.buffered(), 3);
    /// ```
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The fatal error this decoder stopped on, if any.
    ///
    /// ```
    /// use hearth_proto::FrameDecoder;
    /// let mut d = FrameDecoder::with_max_frame_bytes(100);
    /// let _ = d.push(&u32::MAX.to_le_bytes());
    /// assert!(d.next_frame().is_err());
    /// assert!(d.failed().is_some());
    /// ```
    pub fn failed(&self) -> Option<&FrameError> {
        self.failed.as_ref()
    }

    /// Offers bytes; returns how many were taken (all of them, unless the
    /// buffer would exceed `max_frame_bytes` — then take frames with
    /// [`next_frame`](FrameDecoder::next_frame) and push the rest). After a
    /// fatal error every byte is taken and discarded.
    ///
    /// Whenever `push` takes fewer bytes than offered, `next_frame` has a
    /// frame or an error ready, so a push/drain loop always makes progress.
    ///
    /// ```
    /// use hearth_proto::FrameDecoder;
    /// let mut d = FrameDecoder::with_max_frame_bytes(30);
    /// assert_eq!(d.push(&[0u8; 100]), 30);
    /// ```
    #[must_use = "push may take only part of the bytes; push the rest after draining frames"]
    pub fn push(&mut self, mut bytes: &[u8]) -> usize {
        let offered = bytes.len();
        if self.failed.is_some() {
            return offered;
        }
        let mut taken = 0;
        if self.skip > 0 && self.buffered() == 0 {
            // Discard a skipped payload straight from the input.
            let n = self.skip.min(bytes.len());
            self.skip -= n;
            taken += n;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return taken;
        }
        self.compact();
        let room = self.max_frame_bytes.saturating_sub(self.buf.len());
        let n = room.min(bytes.len());
        self.grow_for(n);
        self.buf.extend_from_slice(&bytes[..n]);
        taken + n
    }

    /// Moves unconsumed bytes to the front and gives back memory held
    /// after a large frame.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(SHRINK_TO);
        }
    }

    /// Makes room for `additional` bytes, growing geometrically but never
    /// past `max_frame_bytes`.
    fn grow_for(&mut self, additional: usize) {
        let needed = self.buf.len() + additional;
        if needed > self.buf.capacity() {
            let target = needed
                .max(self.buf.capacity().saturating_mul(2))
                .min(self.max_frame_bytes)
                .max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    fn fail(&mut self, error: FrameError) -> Result<Option<Frame>, FrameError> {
        self.failed = Some(error.clone());
        self.buf = Vec::new();
        self.start = 0;
        self.skip = 0;
        Err(error)
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an
    /// error. After a fatal error (see [`FrameError::is_fatal`]) it returns
    /// that error forever; after [`FrameError::UnknownOperation`] it skips
    /// that frame's payload and carries on.
    ///
    /// ```
    /// use hearth_proto::{FrameDecoder, FrameError};
    /// let mut d = FrameDecoder::with_max_frame_bytes(1024);
    /// // A header claiming a 1 MiB payload is refused from its first 4 bytes.
    /// let _ = d.push(&(1u32 << 20).to_le_bytes());
    /// assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    /// ```
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.skip > 0 {
            let n = self.skip.min(self.buffered());
            self.start += n;
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let pending = &self.buf[self.start..];
        let Some(len_bytes) = pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let payload_len = u32::from_le_bytes(*len_bytes) as usize;
        let frame_len = HEADER_LEN as u64 + payload_len as u64;
        if frame_len > self.max_frame_bytes as u64 {
            return self.fail(FrameError::TooLarge {
                len: frame_len,
                max: self.max_frame_bytes,
            });
        }
        let Some(header_bytes) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        match FrameHeader::decode(header_bytes) {
            Ok(header) => {
                let frame_len = HEADER_LEN + payload_len;
                let Some(payload) = pending.get(HEADER_LEN..frame_len) else {
                    return Ok(None);
                };
                let frame = Frame {
                    header,
                    payload: payload.to_vec(),
                };
                self.start += frame_len;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(frame))
            }
            Err(error) if !error.is_fatal() => {
                self.start += HEADER_LEN;
                self.skip = payload_len;
                let n = self.skip.min(self.buffered());
                self.start += n;
                self.skip -= n;
                Err(error)
            }
            Err(error) => self.fail(error),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Pushes `chunks` through `decoder`, draining after every push, and
    /// returns every frame and error up to and including the first fatal
    /// one. Checks the buffering bound after every push.
    pub(crate) fn drive<'a>(
        decoder: &mut FrameDecoder,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<Result<Frame, FrameError>> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = chunk;
            loop {
                let taken = decoder.push(rest);
                assert!(taken <= rest.len());
                assert!(decoder.buffered() <= decoder.max_frame_bytes);
                assert!(decoder.buf.capacity() <= decoder.max_frame_bytes);
                rest = &rest[taken..];
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => out.push(Ok(frame)),
                        Ok(None) => break,
                        Err(e) if e.is_fatal() => {
                            out.push(Err(e));
                            return out;
                        }
                        Err(e) => out.push(Err(e)),
                    }
                }
                if rest.is_empty() {
                    break;
                }
                assert!(taken > 0, "push took nothing and next_frame had nothing");
            }
        }
        out
    }

    /// The hex bytes of the example named `name` in docs/protocol.md: the
    /// fenced block after the line `<!-- example: NAME -->`.
    pub(crate) fn doc_example(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
        let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
        let marker = format!("<!-- example: {name} -->");
        let after = doc
            .split_once(&marker)
            .unwrap_or_else(|| panic!("no {marker} in docs/protocol.md"))
            .1;
        let block = after
            .split("```")
            .nth(1)
            .unwrap_or_else(|| panic!("no fenced block after {marker}"));
        block
            .lines()
            .skip(1) // the info string, e.g. `text`
            .flat_map(str::split_whitespace)
            .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|_| panic!("bad hex {h:?}")))
            .collect()
    }

    pub(crate) fn hex(bytes: &[u8]) -> String {
        bytes
            .chunks(16)
            .map(|line| {
                line.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn get_user_1() -> Vec<u8> {
        let mut out = Vec::new();
        Frame::json_request(Operation::Get, 1, &json!({"id": "user:1"}))
            .encode(&mut out)
            .unwrap();
        out
    }

    fn header(kind: FrameKind, op: Option<Operation>) -> FrameHeader {
        FrameHeader {
            payload_len: 0,
            kind,
            flags: FrameFlags::NONE,
            operation: op,
            request_id: 77,
        }
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Frame>();
        assert_send_sync::<FrameDecoder>();
        assert_send_sync::<FrameError>();
        assert_send_sync::<FrameFlags>();
        assert_send_sync::<FrameHeader>();
        assert_send_sync::<FrameKind>();
    }

    #[test]
    fn the_get_example_in_the_protocol_doc_is_what_the_encoder_writes() {
        let bytes = get_user_1();
        assert_eq!(
            doc_example("get-request"),
            bytes,
            "docs/protocol.md should show:\n{}",
            hex(&bytes)
        );
    }

    #[test]
    fn every_error_code_is_described_in_the_protocol_doc() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let section = doc.split_once("## Error codes").unwrap().1;
        for code in ErrorCode::ALL {
            assert!(
                section.contains(&format!("`{}`", code.as_str())),
                "{code} missing from the Error codes section"
            );
        }
    }

    #[test]
    fn the_header_layout_is_the_documented_one() {
        let h = FrameHeader {
            payload_len: 0x0403_0201,
            kind: FrameKind::Event,
            flags: FrameFlags::JSON | FrameFlags::MORE,
            operation: Some(Operation::Publish),
            request_id: 0x0807_0605_0403_0201,
        };
        assert_eq!(
            h.encode(),
            [
                1, 2, 3, 4, // length
                4, // kind
                3, // flags
                13, 0, // operation
                1, 2, 3, 4, 5, 6, 7, 8, // request id
                0, 0, 0, 0, 0, 0, 0, 0, // reserved
            ]
        );
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        for kind in [0u8, 8, 255] {
            let mut b = header(FrameKind::Response, None).encode();
            b[4] = kind;
            assert_eq!(
                FrameHeader::decode(&b),
                Err(FrameError::UnknownKind { kind })
            );
        }
    }

    #[test]
    fn reserved_flag_bits_are_refused() {
        for flags in [0b100u8, 0x80, 0xff] {
            let mut b = header(FrameKind::Response, None).encode();
            b[5] = flags;
            let err = FrameHeader::decode(&b).unwrap_err();
            assert_eq!(err, FrameError::ReservedFlags { flags });
            assert_eq!(err.code(), ErrorCode::InvalidInput);
        }
    }

    #[test]
    fn non_zero_reserved_bytes_are_refused() {
        let mut b = header(FrameKind::Response, None).encode();
        b[23] = 1;
        assert_eq!(
            FrameHeader::decode(&b),
            Err(FrameError::ReservedNotZero { value: 1 << 56 })
        );
    }

    #[test]
    fn a_request_without_an_operation_is_an_unknown_operation() {
        let b = header(FrameKind::Request, None).encode();
        let err = FrameHeader::decode(&b).unwrap_err();
        assert_eq!(
            err,
            FrameError::UnknownOperation {
                code: 0,
                kind: FrameKind::Request,
                request_id: 77
            }
        );
        assert_eq!(err.code(), ErrorCode::UnknownOperation);
        assert!(!err.is_fatal());
    }

    #[test]
    fn an_unknown_operation_code_is_refused_on_any_kind() {
        for kind in FrameKind::ALL {
            let mut b = header(kind, None).encode();
            b[6..8].copy_from_slice(&999u16.to_le_bytes());
            assert!(matches!(
                FrameHeader::decode(&b),
                Err(FrameError::UnknownOperation { code: 999, .. })
            ));
        }
    }

    #[test]
    fn non_request_kinds_may_omit_or_echo_the_operation() {
        for kind in FrameKind::ALL
            .into_iter()
            .filter(|k| *k != FrameKind::Request)
        {
            for op in [None, Some(Operation::Get)] {
                let h = header(kind, op);
                assert_eq!(FrameHeader::decode(&h.encode()), Ok(h));
            }
        }
    }

    #[test]
    fn too_large_is_refused_from_the_first_four_bytes() {
        let mut d = FrameDecoder::with_max_frame_bytes(1000);
        assert_eq!(d.push(&977u32.to_le_bytes()), 4);
        let err = d.next_frame().unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: 1001,
                max: 1000
            }
        );
        assert_eq!(err.code(), ErrorCode::TooLarge);
        // The error sticks and input is discarded.
        assert_eq!(d.push(&[0; 10]), 10);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.next_frame(), Err(err));
    }

    #[test]
    fn a_frame_exactly_at_the_limit_is_accepted() {
        let mut bytes = Vec::new();
        encode_frame(
            &mut bytes,
            FrameKind::Response,
            FrameFlags::NONE,
            None,
            1,
            &[7; 76],
        )
        .unwrap();
        let mut d = FrameDecoder::with_max_frame_bytes(100);
        let out = drive(&mut d, [bytes.as_slice()]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap().payload, vec![7; 76]);
    }

    #[test]
    fn the_largest_claimed_length_does_not_allocate() {
        let mut d = FrameDecoder::new();
        let mut b = header(FrameKind::Response, None).encode();
        b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let _ = d.push(&b);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        assert!(d.buf.capacity() < 1024);
    }

    #[test]
    fn a_claimed_length_below_the_limit_allocates_only_what_arrives() {
        let mut d = FrameDecoder::new();
        let mut b = header(FrameKind::Response, None).encode();
        b[0..4].copy_from_slice(&(30u32 << 20).to_le_bytes());
        assert_eq!(d.push(&b), HEADER_LEN);
        assert_eq!(d.next_frame(), Ok(None));
        assert!(d.buf.capacity() < 1024);
    }

    #[test]
    fn an_unknown_operation_skips_its_payload_and_decoding_goes_on() {
        let mut bytes = Vec::new();
        let mut bad = header(FrameKind::Request, Some(Operation::Get));
        bad.payload_len = 5;
        let mut bad = bad.encode().to_vec();
        bad[6..8].copy_from_slice(&999u16.to_le_bytes());
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(b"HELLO");
        bytes.extend_from_slice(&get_user_1());
        for split in 0..bytes.len() {
            let (a, b) = bytes.split_at(split);
            let out = drive(&mut FrameDecoder::new(), [a, b]);
            assert_eq!(out.len(), 2, "split at {split}: {out:?}");
            assert!(matches!(
                out[0],
                Err(FrameError::UnknownOperation {
                    code: 999,
                    request_id: 77,
                    ..
                })
            ));
            assert_eq!(
                out[1].as_ref().unwrap().header.operation,
                Some(Operation::Get)
            );
        }
    }

    #[test]
    fn the_buffer_is_given_back_after_a_large_frame() {
        let mut bytes = Vec::new();
        encode_frame(
            &mut bytes,
            FrameKind::Response,
            FrameFlags::NONE,
            None,
            1,
            &[1; 4 << 20],
        )
        .unwrap();
        let mut d = FrameDecoder::new();
        let out = drive(&mut d, [bytes.as_slice()]);
        assert_eq!(out.len(), 1);
        let _ = d.push(b"\x00");
        assert!(d.buf.capacity() <= SHRINK_TO);
    }

    #[test]
    fn error_frames_carry_the_error_body_as_json() {
        let body = ErrorBody::new(ErrorCode::NotFound, "no document \"user:1\"");
        let frame = Frame::error(4, Some(Operation::Get), &body);
        assert!(frame.header.flags.is_json());
        assert_eq!(frame.error_body(), Ok(body));
    }

    #[test]
    fn a_malformed_error_payload_is_a_bad_error_payload() {
        for payload in [
            &b"not json"[..],
            br#"{"code":1,"message":"x"}"#,
            br#"{"code":"not_found"}"#,
            b"[]",
        ] {
            let err = decode_error_payload(payload).unwrap_err();
            assert!(matches!(err, FrameError::BadErrorPayload { .. }), "{err:?}");
            assert_eq!(err.code(), ErrorCode::InvalidInput);
        }
    }

    #[test]
    fn flags_debug_names_the_bits() {
        assert_eq!(format!("{:?}", FrameFlags::NONE), "FrameFlags(NONE)");
        assert_eq!(
            format!("{:?}", FrameFlags::JSON | FrameFlags::MORE),
            "FrameFlags(JSON | MORE)"
        );
    }

    #[test]
    fn every_error_maps_to_a_protocol_error_body() {
        let errors = [
            FrameError::TooLarge { len: 10, max: 5 },
            FrameError::UnknownKind { kind: 0 },
            FrameError::ReservedFlags { flags: 4 },
            FrameError::ReservedNotZero { value: 1 },
            FrameError::UnknownOperation {
                code: 0,
                kind: FrameKind::Request,
                request_id: 1,
            },
            FrameError::BadErrorPayload { reason: "x".into() },
        ];
        for e in errors {
            let body = e.to_error_body();
            assert_eq!(body.code, e.code());
            assert_eq!(body.message, e.to_string());
        }
    }

    fn arb_kind() -> impl Strategy<Value = FrameKind> {
        prop::sample::select(FrameKind::ALL.to_vec())
    }

    fn arb_header_fields() -> impl Strategy<Value = (FrameKind, FrameFlags, Option<Operation>, u64)>
    {
        (
            arb_kind(),
            0u8..4,
            prop::option::of(prop::sample::select(Operation::ALL.to_vec())),
            any::<u64>(),
        )
            .prop_map(|(kind, flags, op, id)| {
                let op = if kind == FrameKind::Request {
                    Some(op.unwrap_or(Operation::Ping))
                } else {
                    op
                };
                (kind, FrameFlags(flags), op, id)
            })
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            arb_header_fields(),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|((kind, flags, op, id), payload)| {
                Frame::new(kind, flags, op, id, payload).unwrap()
            })
    }

    /// A stream of valid frames, with some headers corrupted at random.
    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            (
                arb_frame(),
                prop::option::weighted(0.1, (0usize..24, any::<u8>())),
            ),
            0..8,
        )
        .prop_map(|frames| {
            let mut out = Vec::new();
            for (frame, corrupt) in frames {
                let at = out.len();
                frame.encode(&mut out).unwrap();
                if let Some((i, b)) = corrupt {
                    out[at + i] = b;
                }
            }
            out
        })
    }

    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[prev..c].to_vec());
            prev = c;
        }
        chunks
    }

    proptest! {
        #[test]
        fn any_header_round_trips((kind, flags, op, id) in arb_header_fields(), len in any::<u32>()) {
            let h = FrameHeader { payload_len: len, kind, flags, operation: op, request_id: id };
            prop_assert_eq!(FrameHeader::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn any_frames_encode_and_decode_back(frames in prop::collection::vec(arb_frame(), 0..8)) {
            let mut bytes = Vec::new();
            for f in &frames {
                f.encode(&mut bytes).unwrap();
            }
            let out = drive(&mut FrameDecoder::new(), [bytes.as_slice()]);
            let decoded: Vec<Frame> = out.into_iter().map(|r| r.unwrap()).collect();
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn a_split_stream_decodes_like_the_whole_stream(
            bytes in arb_stream(),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            max in 24usize..400,
        ) {
            let whole = drive(&mut FrameDecoder::with_max_frame_bytes(max), [bytes.as_slice()]);
            let chunks = split(&bytes, &cuts);
            let pieces = drive(
                &mut FrameDecoder::with_max_frame_bytes(max),
                chunks.iter().map(Vec::as_slice),
            );
            prop_assert_eq!(pieces, whole);
        }

        #[test]
        fn garbage_never_panics_and_stays_within_the_limit(
            bytes in prop::collection::vec(any::<u8>(), 0..2000),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
            max in 0usize..600,
        ) {
            // `drive` asserts the buffering bound after every push.
            let chunks = split(&bytes, &cuts);
            let mut d = FrameDecoder::with_max_frame_bytes(max);
            let out = drive(&mut d, chunks.iter().map(Vec::as_slice));
            for r in out {
                match r {
                    Ok(frame) => prop_assert!(frame.header.frame_len() <= d.max_frame_bytes()),
                    Err(e) => { let _ = e.to_error_body(); }
                }
            }
        }

        #[test]
        fn decode_error_payload_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_error_payload(&bytes);
        }

        #[test]
        fn error_bodies_round_trip(code in prop::sample::select(ErrorCode::ALL.to_vec()), message in ".*") {
            let body = ErrorBody::new(code, message);
            prop_assert_eq!(decode_error_payload(&error_payload(&body)), Ok(body));
        }
    }
}
