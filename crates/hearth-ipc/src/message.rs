//! Messages larger than a frame: splitting on send and joining on receive
//! with the `MORE` flag.
//!
//! Owns: the rule that a message whose payload does not fit the receiver's
//! `max_frame_bytes` travels as consecutive frames of the same kind and
//! request id, all but the last flagged `MORE`, and the bounded buffer that
//! joins them, and the server's bounds on half-joined messages: a budget
//! shared by all its connections and an age limit. Must never: do I/O or
//! read a clock (the time is a parameter), buffer more than the configured
//! message limit for one peer (a peer that tries is refused with
//! `too_large`), more than the server's budget for all its peers together
//! (`unavailable`), or keep a half-joined message past the server's age
//! limit (`timeout`) once it is asked.

use hearth_proto::{ErrorBody, ErrorCode, Frame, FrameFlags, FrameHeader, FrameKind, HEADER_LEN};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Half-joined messages one connection may hold at once, whatever their
/// size: as many requests as a connection may have in flight by default
/// (`DEFAULT_MAX_IN_FLIGHT`). It bounds the bookkeeping a peer can make
/// this side keep with empty `MORE` frames of ever new request ids, and
/// the work of finding the oldest half-joined message.
pub(crate) const MAX_PARTIAL_MESSAGES: usize = 1024;

/// What one half-joined message costs beyond its payload's buffer (the map
/// entry, the frame header, the allocation), charged to the
/// [`PartialBudget`] so that empty `MORE` frames are not free.
pub(crate) const PARTIAL_ENTRY_BYTES: usize = 128;

/// Bytes that every connection's [`Reassembler`] together may hold in
/// half-joined messages: shared by all the connections of a server, so
/// that many connections each holding a message just under the message
/// limit cannot add up to more memory than this.
#[derive(Debug)]
pub(crate) struct PartialBudget {
    limit: usize,
    held: AtomicUsize,
}

impl PartialBudget {
    pub(crate) fn new(limit: usize) -> PartialBudget {
        PartialBudget {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// The most it lends.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes lent now.
    pub(crate) fn held(&self) -> usize {
        // Relaxed: a count; `take` is the only check against the limit.
        self.held.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if that stays within the limit.
    fn take(&self, n: usize) -> bool {
        // Relaxed: one read-modify-write on one counter keeps the total
        // within the limit; nothing else is ordered by it.
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        // Relaxed: as in `take`.
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One message being joined.
#[derive(Debug)]
struct Partial {
    /// Its frames so far, joined.
    frame: Frame,
    /// When its first frame came.
    started: Instant,
    /// What it took from the budget: its buffer's capacity and
    /// [`PARTIAL_ENTRY_BYTES`].
    charged: usize,
}

/// Joins `MORE`-split messages, bounded in memory and, on a server, in
/// time.
///
/// Bounds: one connection's half-joined payloads add up to at most
/// `max_message_bytes` (`too_large`), in at most [`MAX_PARTIAL_MESSAGES`]
/// messages (`too_large`); with a [`PartialBudget`] (the server's), every
/// connection's together stay within its limit (`unavailable`: the
/// server's state, not the message, refuses it); with a `max_age` (the
/// server's stall timeout), a message not completed within it of its first
/// frame is refused (`timeout`). Each refusal is fatal for the connection.
/// What a message took from the budget is given back as it completes, and
/// what the connection still holds when the reassembler is dropped (the
/// connection ended).
#[derive(Debug)]
pub(crate) struct Reassembler {
    max_message_bytes: usize,
    partial: HashMap<(FrameKind, u64), Partial>,
    /// Payload bytes held (against `max_message_bytes`).
    buffered: usize,
    /// Bytes taken from `budget` (the sum of the parts' `charged`).
    charged: usize,
    budget: Option<Arc<PartialBudget>>,
    max_age: Option<Duration>,
    /// When the oldest half-joined message started.
    oldest: Option<Instant>,
}

impl Reassembler {
    /// A reassembler bounded by `max_message_bytes` alone (a client's:
    /// its one server is trusted more, and it has no budget to share).
    pub(crate) fn new(max_message_bytes: usize) -> Reassembler {
        Reassembler {
            max_message_bytes,
            partial: HashMap::new(),
            buffered: 0,
            charged: 0,
            budget: None,
            max_age: None,
            oldest: None,
        }
    }

    /// A server connection's reassembler: also within `budget`, shared
    /// with the server's other connections, and refusing a message not
    /// completed within `max_age` of its first frame.
    pub(crate) fn bounded(
        max_message_bytes: usize,
        budget: Arc<PartialBudget>,
        max_age: Duration,
    ) -> Reassembler {
        let mut r = Reassembler::new(max_message_bytes);
        r.budget = Some(budget);
        r.max_age = Some(max_age);
        r
    }

    /// Whether no split message is half joined.
    pub(crate) fn is_idle(&self) -> bool {
        self.partial.is_empty()
    }

    /// When the oldest half-joined message falls due (its first frame's
    /// time plus `max_age`); `None` when none is half joined or there is
    /// no age limit. A connection loop wakes then to call
    /// [`overdue`](Self::overdue).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let (oldest, age) = (self.oldest?, self.max_age?);
        Some(oldest.checked_add(age).unwrap_or(oldest))
    }

    /// The error that ends the connection if a split message was not
    /// completed within `max_age` of its first frame, at `now`.
    pub(crate) fn overdue(&self, now: Instant) -> Option<ErrorBody> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        let age = self.max_age.unwrap_or_default();
        let (kind, id) = self
            .partial
            .iter()
            .min_by_key(|(_, p)| p.started)
            .map(|(key, _)| *key)?;
        Some(ErrorBody::new(
            ErrorCode::Timeout,
            format!(
                "the {kind} message with request id {id}, split into frames flagged MORE, was not completed within {age:?} of its first frame (the server's stall timeout); this connection is closed: send all of a message's frames without pausing"
            ),
        ))
    }

    /// Takes one frame; returns a whole message when one is complete. An
    /// error (over a limit, or a split message overdue at the time `now`
    /// gives) is fatal for the connection. `now` is called only while a
    /// message is split (this frame or one half joined), so that a whole
    /// frame costs no clock read.
    pub(crate) fn push(
        &mut self,
        frame: Frame,
        now: impl FnOnce() -> Instant,
    ) -> Result<Option<Frame>, ErrorBody> {
        let key = (frame.header.kind, frame.header.request_id);
        let more = frame.header.flags.has_more();
        if !more && self.partial.is_empty() {
            return Ok(Some(frame));
        }
        let now = now();
        if let Some(body) = self.overdue(now) {
            return Err(body);
        }
        let Some(mut part) = self.partial.remove(&key) else {
            if !more {
                return Ok(Some(frame));
            }
            self.start(key, frame, now)?;
            return Ok(None);
        };
        let extended = self.extend(&mut part, &frame.payload);
        if more || extended.is_err() {
            self.partial.insert(key, part);
            return extended.map(|()| None);
        }
        self.finished(&part);
        let mut acc = part.frame;
        let flags = acc.header.flags.bits() & !FrameFlags::MORE.bits();
        acc.header.flags = FrameFlags::from_bits(flags).unwrap_or(FrameFlags::JSON);
        acc.header.payload_len = u32::try_from(acc.payload.len()).unwrap_or(u32::MAX);
        Ok(Some(acc))
    }

    /// Begins joining a message with its first frame.
    fn start(
        &mut self,
        key: (FrameKind, u64),
        frame: Frame,
        now: Instant,
    ) -> Result<(), ErrorBody> {
        if self.partial.len() >= MAX_PARTIAL_MESSAGES {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                format!(
                    "more than {MAX_PARTIAL_MESSAGES} messages split into frames flagged MORE are half joined at once on this connection; finish sending one message's frames before starting many others"
                ),
            ));
        }
        self.check_message(frame.payload.len())?;
        let charged = frame.payload.capacity() + PARTIAL_ENTRY_BYTES;
        self.charge(charged)?;
        self.buffered += frame.payload.len();
        self.oldest = Some(self.oldest.map_or(now, |o| o.min(now)));
        self.partial.insert(
            key,
            Partial {
                frame,
                started: now,
                charged,
            },
        );
        Ok(())
    }

    /// Appends `more` to a message being joined, growing its buffer as a
    /// `Vec` would (doubling, here no further than the message limit) but
    /// charging the budget for the growth before allocating it.
    fn extend(&mut self, part: &mut Partial, more: &[u8]) -> Result<(), ErrorBody> {
        self.check_message(more.len())?;
        let buf = &mut part.frame.payload;
        let need = buf.len() + more.len();
        if need > buf.capacity() {
            let doubled = buf.capacity().saturating_mul(2).min(self.max_message_bytes);
            let want = need.max(doubled);
            let extra = want - buf.capacity();
            self.charge(extra)?;
            part.charged += extra;
            buf.reserve_exact(want - buf.len());
        }
        buf.extend_from_slice(more);
        self.buffered += more.len();
        Ok(())
    }

    /// A message is whole (and out of the map): its bytes stop counting.
    fn finished(&mut self, part: &Partial) {
        self.buffered -= part.frame.payload.len();
        self.uncharge(part.charged);
        self.oldest = self.partial.values().map(|p| p.started).min();
        // A map that once held many half-joined messages keeps its
        // capacity after they complete: let it go once it is empty.
        if self.partial.is_empty() && self.partial.capacity() > 16 {
            self.partial = HashMap::new();
        }
    }

    fn check_message(&self, n: usize) -> Result<(), ErrorBody> {
        if self.buffered.saturating_add(n) > self.max_message_bytes {
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

    fn charge(&mut self, n: usize) -> Result<(), ErrorBody> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if !budget.take(n) {
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                format!(
                    "the server already holds {} of its {} bytes for messages split into frames flagged MORE whose last frame has not come, from all its connections (max_partial_bytes); this connection is closed: send the message again later, or ask the server's operator to raise the limit",
                    budget.held(),
                    budget.limit()
                ),
            ));
        }
        self.charged += n;
        Ok(())
    }

    fn uncharge(&mut self, n: usize) {
        if let Some(budget) = &self.budget {
            budget.give_back(n);
            self.charged -= n;
        }
    }
}

impl Drop for Reassembler {
    fn drop(&mut self) {
        // The connection ended: what its half-joined messages took goes
        // back to the server's budget.
        if let Some(budget) = &self.budget {
            budget.give_back(self.charged);
        }
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
            if let Some(m) = r.push(p, Instant::now).unwrap() {
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
            done.extend(r.push(x, Instant::now).unwrap());
            done.extend(r.push(y, Instant::now).unwrap());
        }
        assert_eq!(done, vec![a, b]);
    }

    #[test]
    fn a_peer_sending_endless_more_frames_is_refused() {
        let mut r = Reassembler::new(1000);
        let part = part(1, 400);
        assert_eq!(r.push(part.clone(), Instant::now), Ok(None));
        assert_eq!(r.push(part.clone(), Instant::now), Ok(None));
        let e = r.push(part, Instant::now).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
    }

    /// A request frame of `len` bytes flagged `MORE`.
    fn part(id: u64, len: usize) -> Frame {
        let mut f = frame(FrameKind::Request, id, vec![0; len]);
        f.header.flags = FrameFlags::JSON | FrameFlags::MORE;
        f
    }

    /// The last frame of request `id`'s split message.
    fn last(id: u64, len: usize) -> Frame {
        frame(FrameKind::Request, id, vec![0; len])
    }

    const AGE: Duration = Duration::from_secs(10);

    fn bounded(budget: &Arc<PartialBudget>) -> Reassembler {
        Reassembler::bounded(1 << 20, budget.clone(), AGE)
    }

    #[test]
    fn a_whole_frame_reads_no_clock() {
        let mut r = bounded(&Arc::new(PartialBudget::new(1 << 20)));
        let f = last(1, 10);
        let clock = || -> Instant { panic!("a whole frame read the clock") };
        assert_eq!(r.push(f.clone(), clock), Ok(Some(f)));
    }

    #[test]
    fn two_reassemblers_share_one_budget() {
        // Each first part takes 400 bytes of buffer and the entry's cost.
        let budget = Arc::new(PartialBudget::new(2 * (400 + PARTIAL_ENTRY_BYTES) - 1));
        let (mut a, mut b) = (bounded(&budget), bounded(&budget));
        let t = Instant::now();
        assert_eq!(a.push(part(1, 400), || t), Ok(None));
        assert_eq!(budget.held(), 400 + PARTIAL_ENTRY_BYTES);
        let e = b.push(part(1, 400), || t).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable, "{}", e.message);
        assert!(e.message.contains("max_partial_bytes"), "{}", e.message);
        assert_eq!(budget.held(), 400 + PARTIAL_ENTRY_BYTES);
    }

    #[test]
    fn a_completed_message_gives_its_bytes_back() {
        let budget = Arc::new(PartialBudget::new(1 << 20));
        let mut r = bounded(&budget);
        let t = Instant::now();
        assert_eq!(r.push(part(1, 400), || t), Ok(None));
        assert_eq!(r.push(part(1, 400), || t), Ok(None));
        assert!(budget.held() >= 800);
        let whole = r.push(last(1, 100), || t).unwrap().unwrap();
        assert_eq!(whole.payload.len(), 900);
        assert!(!whole.header.flags.has_more());
        assert_eq!(budget.held(), 0);
        assert!(r.is_idle());
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn a_dropped_reassembler_gives_its_bytes_back() {
        let budget = Arc::new(PartialBudget::new(1 << 20));
        let mut r = bounded(&budget);
        let t = Instant::now();
        assert_eq!(r.push(part(1, 400), || t), Ok(None));
        assert_eq!(r.push(part(2, 300), || t), Ok(None));
        assert!(budget.held() >= 700);
        drop(r);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_refused_frame_leaves_the_budget_as_it_was_until_the_drop() {
        let budget = Arc::new(PartialBudget::new(400 + PARTIAL_ENTRY_BYTES));
        let mut r = bounded(&budget);
        let t = Instant::now();
        assert_eq!(r.push(part(1, 400), || t), Ok(None));
        assert!(r.push(part(1, 400), || t).is_err());
        assert_eq!(budget.held(), 400 + PARTIAL_ENTRY_BYTES);
        drop(r);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_growing_buffer_is_charged_for_its_capacity() {
        let budget = Arc::new(PartialBudget::new(1 << 20));
        let mut r = bounded(&budget);
        let t = Instant::now();
        assert_eq!(r.push(part(1, 400), || t), Ok(None));
        // 500 bytes do not fit 400: the buffer doubles to 800 first.
        assert_eq!(r.push(part(1, 100), || t), Ok(None));
        assert_eq!(budget.held(), 800 + PARTIAL_ENTRY_BYTES);
    }

    #[test]
    fn empty_more_frames_are_not_free() {
        let budget = Arc::new(PartialBudget::new(7 * PARTIAL_ENTRY_BYTES));
        let mut r = bounded(&budget);
        let t = Instant::now();
        for id in 0..7 {
            assert_eq!(r.push(part(id, 0), || t), Ok(None));
        }
        let e = r.push(part(7, 0), || t).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
    }

    #[test]
    fn half_joined_messages_of_one_connection_are_counted() {
        let mut r = Reassembler::new(1 << 20);
        for id in 0..MAX_PARTIAL_MESSAGES as u64 {
            assert_eq!(r.push(part(id, 0), Instant::now), Ok(None));
        }
        let e = r
            .push(part(MAX_PARTIAL_MESSAGES as u64, 0), Instant::now)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
    }

    #[test]
    fn the_map_lets_its_room_go_once_every_message_completed() {
        let mut r = Reassembler::new(1 << 20);
        for id in 0..100 {
            assert_eq!(r.push(part(id, 1), Instant::now), Ok(None));
        }
        assert!(r.partial.capacity() >= 100);
        for id in 0..100 {
            assert!(r.push(last(id, 1), Instant::now).unwrap().is_some());
        }
        assert_eq!(r.partial.capacity(), 0);
        assert_eq!(r.buffered, 0);
    }

    #[test]
    fn a_split_message_falls_due_its_age_after_its_first_frame() {
        let mut r = bounded(&Arc::new(PartialBudget::new(1 << 20)));
        let t = Instant::now();
        assert_eq!(r.push(part(1, 10), || t), Ok(None));
        assert_eq!(r.push(part(1, 10), || t + AGE / 2), Ok(None));
        assert_eq!(r.deadline(), Some(t + AGE));
        assert_eq!(r.overdue(t + AGE - Duration::from_millis(1)), None);
        let e = r.overdue(t + AGE).unwrap();
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(e.message.contains("request id 1"), "{}", e.message);
    }

    #[test]
    fn a_frame_after_a_message_fell_due_is_refused() {
        let mut r = bounded(&Arc::new(PartialBudget::new(1 << 20)));
        let t = Instant::now();
        assert_eq!(r.push(part(1, 10), || t), Ok(None));
        // Another request's whole frame finds the split one overdue.
        let e = r.push(last(2, 10), || t + AGE).unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout);
    }

    #[test]
    fn the_deadline_follows_the_oldest_message_left() {
        let mut r = bounded(&Arc::new(PartialBudget::new(1 << 20)));
        let t = Instant::now();
        let later = t + Duration::from_secs(3);
        assert_eq!(r.push(part(1, 10), || t), Ok(None));
        assert_eq!(r.push(part(2, 10), || later), Ok(None));
        assert!(r.push(last(1, 10), || later).unwrap().is_some());
        assert_eq!(r.deadline(), Some(later + AGE));
        assert_eq!(r.overdue(t + AGE), None);
    }

    #[test]
    fn a_client_reassembler_has_no_age_limit() {
        let mut r = Reassembler::new(1 << 20);
        let t = Instant::now();
        assert_eq!(r.push(part(1, 10), || t), Ok(None));
        assert_eq!(r.deadline(), None);
        assert_eq!(r.overdue(t + Duration::from_secs(3600)), None);
    }
}
