//! A connection's output: a queue bounded in bytes, and the writer task that
//! drains it onto the link.
//!
//! Owns: the byte budget of frames waiting to be written (producers either
//! wait for room — replies — or are told the queue is full at once —
//! events), batching, splitting messages to the peer's `max_frame_bytes`,
//! a frame written onto a socket by its sender's own thread when nothing
//! waits in the queue (`try_send_now`: no hop to the writer task), and ending
//! the connection when the writer fails or stalls. Must never:
//! let one connection's unread output grow past its budget, or make anyone
//! but that connection's own tasks wait for it.

use crate::message;
use crate::transport::socket::{Direct, DirectWrite};
use crate::transport::{FrameWriter, LinkError};
use hearth_proto::{Frame, HEADER_LEN};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Frames gathered into one write.
const BATCH_FRAMES: usize = 64;

pub(crate) enum Out {
    Frame(Frame, Option<OwnedSemaphorePermit>),
    /// A direct write left the end of its frame for the writer, which
    /// writes it before anything else (counted as one queued frame until
    /// then).
    Rest,
    /// Write what came before, then close the link.
    Close,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// No room now (only from `try_send`).
    Full,
    /// The connection is closing.
    Closed,
}

/// The sending side of a connection's output, cheap to clone.
#[derive(Clone)]
pub(crate) struct OutQueue {
    tx: mpsc::UnboundedSender<Out>,
    budget: Option<Arc<Semaphore>>,
    max: usize,
    /// Frames queued and not yet handed to the link.
    queued: Arc<AtomicUsize>,
    /// Writes onto the socket from a sender's thread, and the peer's frame
    /// limit (a larger frame goes through the queue, to be split).
    direct: Option<(DirectWrite, usize)>,
}

impl OutQueue {
    /// A queue holding at most `max_bytes` of frames (a single larger frame
    /// takes the whole budget). `None` for an unbounded queue (the client's:
    /// its in-flight limit bounds it).
    pub(crate) fn new(max_bytes: Option<usize>) -> (OutQueue, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let max = max_bytes.unwrap_or(usize::MAX).clamp(1, u32::MAX as usize);
        let budget = max_bytes.map(|_| Arc::new(Semaphore::new(max)));
        let queued = Arc::new(AtomicUsize::new(0));
        (
            OutQueue {
                tx,
                budget,
                max,
                queued,
                direct: None,
            },
            rx,
        )
    }

    /// Whether every frame queued so far has been handed to the link (so a
    /// frame written to the link directly now cannot overtake one of them).
    pub(crate) fn is_drained(&self) -> bool {
        // Acquire pairs with the Release decrement in `run_writer`: the
        // frames counted out are on the link.
        self.queued.load(Ordering::Acquire) == 0
    }

    fn enqueue(&self, out: Out) -> Result<(), QueueError> {
        let counted = matches!(out, Out::Frame(..));
        if counted {
            self.queued.fetch_add(1, Ordering::AcqRel);
        }
        self.tx.send(out).map_err(|_| {
            if counted {
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
            QueueError::Closed
        })
    }

    fn cost(&self, frame: &Frame) -> u32 {
        // `max` is clamped to u32 range in `new`.
        (frame.payload.len() + HEADER_LEN).clamp(1, self.max) as u32
    }

    /// Queues `frame`, waiting for room.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), QueueError> {
        let permit = match &self.budget {
            Some(b) => Some(
                b.clone()
                    .acquire_many_owned(self.cost(&frame))
                    .await
                    .map_err(|_| QueueError::Closed)?,
            ),
            None => None,
        };
        self.enqueue(Out::Frame(frame, permit))
    }

    /// Queues `frame` if there is room now.
    pub(crate) fn try_send(&self, frame: Frame) -> Result<(), QueueError> {
        let permit = match &self.budget {
            Some(b) => Some(
                b.clone()
                    .try_acquire_many_owned(self.cost(&frame))
                    .map_err(|e| match e {
                        tokio::sync::TryAcquireError::NoPermits => QueueError::Full,
                        tokio::sync::TryAcquireError::Closed => QueueError::Closed,
                    })?,
            ),
            None => None,
        };
        self.enqueue(Out::Frame(frame, permit))
    }

    /// The same queue, whose [`try_send_now`](Self::try_send_now) writes
    /// onto the socket through `direct` when nothing queued waits;
    /// `max_frame`: the peer's frame limit.
    pub(crate) fn with_direct(mut self, direct: DirectWrite, max_frame: usize) -> OutQueue {
        self.direct = Some((direct, max_frame));
        self
    }

    /// Whether frames may be written on the sender's thread.
    pub(crate) fn writes_directly(&self) -> bool {
        self.direct.is_some()
    }

    /// Writes `frame` onto the socket from the calling thread when nothing
    /// queued waits to be written (so it overtakes nothing); gives it back
    /// otherwise.
    fn write_now(&self, frame: Frame) -> Option<Frame> {
        let Some((direct, max_frame)) = &self.direct else {
            return Some(frame);
        };
        let handover = || {
            // Counted before the write lock is released: a direct write
            // after this one sees the queue busy until the rest is written.
            self.queued.fetch_add(1, Ordering::AcqRel);
            // A closed queue: the writer is gone, and so is the link.
            let _ = self.tx.send(Out::Rest);
        };
        match direct.try_write(&frame, *max_frame, || self.is_drained(), handover) {
            Direct::Written | Direct::HandedOver => None,
            Direct::NotNow => Some(frame),
        }
    }

    /// [`try_send`](Self::try_send), written on the calling thread when it
    /// can be (see [`with_direct`](Self::with_direct)).
    pub(crate) fn try_send_now(&self, frame: Frame) -> Result<(), QueueError> {
        match self.write_now(frame) {
            None => Ok(()),
            Some(frame) => self.try_send(frame),
        }
    }

    /// Asks the writer to close the link after what is queued.
    pub(crate) fn finish(&self) {
        let _ = self.tx.send(Out::Close);
    }

    /// Refuses further frames and wakes producers waiting for room.
    pub(crate) fn shut(&self) {
        if let Some(b) = &self.budget {
            b.close();
        }
    }
}

/// Drains `rx` onto `writer`, splitting frames to `peer_max_frame` bytes,
/// until a `Close` (or every sender is gone), or a write fails. On return
/// the queue is shut.
pub(crate) async fn run_writer(
    mut writer: Box<dyn FrameWriter>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    peer_max_frame: usize,
    queue: OutQueue,
) -> Result<(), LinkError> {
    let mut batch: Vec<Frame> = Vec::with_capacity(BATCH_FRAMES);
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::with_capacity(BATCH_FRAMES);
    let result = 'outer: loop {
        let Some(first) = rx.recv().await else {
            break Ok(());
        };
        let mut closing = false;
        let mut taken = 0usize;
        let mut take = |out: Out, batch: &mut Vec<Frame>| match out {
            Out::Frame(frame, permit) => {
                batch.extend(message::split(frame, peer_max_frame));
                permits.extend(permit);
                taken += 1;
                false
            }
            Out::Rest => {
                // `write_frames` writes the rest first, even with no frame.
                taken += 1;
                false
            }
            Out::Close => true,
        };
        closing |= take(first, &mut batch);
        while !closing && batch.len() < BATCH_FRAMES {
            match rx.try_recv() {
                Ok(out) => closing |= take(out, &mut batch),
                Err(_) => break,
            }
        }
        if taken > 0 {
            let written = writer.write_frames(&batch).await;
            // Release pairs with the Acquire load in `is_drained`.
            queue.queued.fetch_sub(taken, Ordering::Release);
            if let Err(e) = written {
                break 'outer Err(e);
            }
            batch.clear();
            permits.clear();
        }
        if closing {
            break Ok(());
        }
    };
    queue.shut();
    rx.close();
    writer.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::{OutQueue, run_writer};
    use crate::transport::socket::{on_socket_pair, read_frames};
    use hearth_proto::{DEFAULT_MAX_FRAME_BYTES, Frame, Operation};
    use serde_json::json;
    use std::os::unix::net::UnixStream as StdStream;

    fn request(id: u64) -> Frame {
        Frame::json_request(Operation::Get, id, &json!({"id": format!("doc:{id}")}))
    }

    /// The ids of the next `n` frames on `peer`.
    fn ids(peer: &mut StdStream, n: usize) -> Vec<u64> {
        let frames = read_frames(peer, n);
        frames.iter().map(|f| f.header.request_id).collect()
    }

    #[test]
    fn a_frame_sent_now_goes_on_the_socket_without_the_writer_task() {
        on_socket_pair(|_, _writer, direct, mut peer| {
            let (out, _rx) = OutQueue::new(None);
            let out = out.with_direct(direct, DEFAULT_MAX_FRAME_BYTES);
            // No writer task runs at all.
            out.try_send_now(request(1)).unwrap();
            assert_eq!(ids(&mut peer, 1), vec![1]);
            assert!(out.is_drained());
        });
    }

    #[test]
    fn a_frame_sent_now_waits_behind_frames_already_queued() {
        on_socket_pair(|rt, writer, direct, mut peer| {
            let (out, rx) = OutQueue::new(None);
            let out = out.with_direct(direct, DEFAULT_MAX_FRAME_BYTES);
            out.try_send(request(1)).unwrap();
            out.try_send_now(request(2)).unwrap();
            assert!(!out.is_drained(), "2 went into the queue, behind 1");
            out.finish();
            rt.block_on(run_writer(writer, rx, DEFAULT_MAX_FRAME_BYTES, out.clone()))
                .unwrap();
            assert_eq!(ids(&mut peer, 2), vec![1, 2]);
            assert!(out.is_drained());
        });
    }
}
