//! Messages larger than a frame: splitting on send and joining on receive
//! with the `MORE` flag.
//!
//! Owns: the rule that a message whose payload does not fit the receiver's
//! `max_frame_bytes` travels as consecutive frames of the same kind and
//! request id, all but the last flagged `MORE`, and the bounded buffer that
//! joins them. Must never: do I/O, or buffer more than the configured
//! message limit for one peer (a peer that tries is refused with
//! `too_large`).

use hearth_proto::{ErrorBody, ErrorCode, Frame, FrameFlags, FrameHeader, FrameKind, HEADER_LEN};
use std::collections::HashMap;

/// Splits `frame` into frames no larger than `max_frame_bytes` (header
/// included). A frame that fits is returned alone, unchanged.
pub(crate) fn split(frame: Frame, max_frame_bytes: usize) -> Vec<Frame> {
    let room = max_frame_bytes.saturating_sub(HEADER_LEN).max(1);
    if frame.payload.len() <= room {
        return vec![frame];
    }
    let base = frame.header.flags.bits() & !FrameFlags::MORE.bits();
    let count = frame.payload.len().div_ceil(room);
    let mut out = Vec::with_capacity(count);
    for (i, part) in frame.payload.chunks(room).enumerate() {
        let more = if i + 1 < count {
            FrameFlags::MORE.bits()
        } else {
            0
        };
        out.push(Frame {
            header: FrameHeader {
                payload_len: part.len() as u32,
                kind: frame.header.kind,
                flags: FrameFlags::from_bits(base | more).unwrap_or(FrameFlags::JSON),
                operation: frame.header.operation,
                request_id: frame.header.request_id,
            },
            payload: part.to_vec(),
        });
    }
    out
}

/// Joins `MORE`-split messages, bounded in memory.
#[derive(Debug)]
pub(crate) struct Reassembler {
    max_message_bytes: usize,
    partial: HashMap<(FrameKind, u64), Frame>,
    buffered: usize,
}

impl Reassembler {
    pub(crate) fn new(max_message_bytes: usize) -> Reassembler {
        Reassembler {
            max_message_bytes,
            partial: HashMap::new(),
            buffered: 0,
        }
    }

    /// Whether no split message is half joined.
    pub(crate) fn is_idle(&self) -> bool {
        self.partial.is_empty()
    }

    /// Takes one frame; returns a whole message when one is complete. An
    /// error (over the limit) is fatal for the connection.
    pub(crate) fn push(&mut self, frame: Frame) -> Result<Option<Frame>, ErrorBody> {
        let key = (frame.header.kind, frame.header.request_id);
        let more = frame.header.flags.has_more();
        if !more && self.partial.is_empty() {
            return Ok(Some(frame));
        }
        let Some(mut acc) = self.partial.remove(&key) else {
            if !more {
                return Ok(Some(frame));
            }
            self.add(frame.payload.len())?;
            self.partial.insert(key, frame);
            return Ok(None);
        };
        self.add(frame.payload.len())?;
        acc.payload.extend_from_slice(&frame.payload);
        if more {
            self.partial.insert(key, acc);
            return Ok(None);
        }
        self.buffered -= acc.payload.len();
        let flags = acc.header.flags.bits() & !FrameFlags::MORE.bits();
        acc.header.flags = FrameFlags::from_bits(flags).unwrap_or(FrameFlags::JSON);
        acc.header.payload_len = u32::try_from(acc.payload.len()).unwrap_or(u32::MAX);
        Ok(Some(acc))
    }

    fn add(&mut self, n: usize) -> Result<(), ErrorBody> {
        self.buffered += n;
        if self.buffered > self.max_message_bytes {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                format!(
                    "split messages (frames flagged MORE) add up to more than {} bytes, the largest message this side accepts",
                    self.max_message_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::Operation;

    fn frame(kind: FrameKind, id: u64, payload: Vec<u8>) -> Frame {
        Frame::new(kind, FrameFlags::JSON, Some(Operation::Put), id, payload).unwrap()
    }

    #[test]
    fn a_frame_that_fits_is_not_split() {
        let f = frame(FrameKind::Request, 1, b"{}".to_vec());
        assert_eq!(split(f.clone(), 1024), vec![f]);
    }

    #[test]
    fn split_then_join_gives_the_message_back() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let f = frame(FrameKind::Response, 9, payload);
        let parts = split(f.clone(), HEADER_LEN + 1000);
        assert_eq!(parts.len(), 10);
        assert!(parts[..9].iter().all(|p| p.header.flags.has_more()));
        assert!(!parts[9].header.flags.has_more());
        assert!(
            parts
                .iter()
                .all(|p| p.header.frame_len() <= HEADER_LEN + 1000)
        );
        let mut r = Reassembler::new(1 << 20);
        let mut out = None;
        for p in parts {
            if let Some(m) = r.push(p).unwrap() {
                out = Some(m);
            }
        }
        assert_eq!(out, Some(f));
        assert_eq!(r.buffered, 0);
    }

    #[test]
    fn interleaved_messages_of_different_requests_are_kept_apart() {
        let a = frame(FrameKind::Response, 1, vec![b'a'; 300]);
        let b = frame(FrameKind::Response, 2, vec![b'b'; 300]);
        let pa = split(a.clone(), HEADER_LEN + 100);
        let pb = split(b.clone(), HEADER_LEN + 100);
        let mut r = Reassembler::new(1 << 20);
        let mut done = Vec::new();
        for (x, y) in pa.into_iter().zip(pb) {
            done.extend(r.push(x).unwrap());
            done.extend(r.push(y).unwrap());
        }
        assert_eq!(done, vec![a, b]);
    }

    #[test]
    fn a_peer_sending_endless_more_frames_is_refused() {
        let mut r = Reassembler::new(1000);
        let mut part = frame(FrameKind::Request, 1, vec![0; 400]);
        part.header.flags = FrameFlags::JSON | FrameFlags::MORE;
        assert_eq!(r.push(part.clone()), Ok(None));
        assert_eq!(r.push(part.clone()), Ok(None));
        let e = r.push(part).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
    }
}
