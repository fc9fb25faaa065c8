//! The server's end of a shared-memory connection: the ring thread that
//! reads the client's ring, answers quick requests itself, and hands the
//! rest to the connection's async machinery.
//!
//! Owns: one OS thread per shared-memory connection that spins briefly
//! (not at all while the client's thread last ran on this core), then
//! sleeps on the ring's futex; copying each record out of the segment
//! and checking it as a frame before anything decodes it; answering `ping`,
//! `get`, `get_with_metadata`, `put`, `patch` and `delete` on that thread
//! through the router's synchronous path (no task wake-ups on the hot
//! path) and writing the answer straight onto the client's ring; forwarding
//! every other frame, in order, to the connection loop (`conn.rs`) through
//! a bounded channel; and the link's reader, which also watches the socket:
//! its EOF is the client's death.
//!
//! Must never: read the segment except through hearth-shm's checked
//! consumer, sleep without a waker (the socket's EOF, shutdown and the end
//! of the connection all wake it), keep running after the connection ends
//! (the connection's ticket is released only once the thread has exited),
//! or let one client's ring corruption reach another connection (it ends
//! this connection with an `invalid_input` error frame, best effort).

use super::conn::{self, Conn};
use super::{Shared, Ticket};
use crate::message::Reassembler;
use crate::rt::block_on;
use crate::transport::shm::{Pushed, ShmOut, ShmSide, ShmWriter};
use crate::transport::{BoxFuture, FrameReader, Link, LinkError};
use hearth_proto::{ErrorBody, ErrorCode, Frame, FrameError, FrameHeader, FrameKind, HEADER_LEN};
use hearth_shm::{Consumer, Direction, Segment, ShmError, Spinner, Waker};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// Frames forwarded to the connection loop before the ring thread waits.
const FORWARD_BUFFER: usize = 64;

/// Longest the ring thread spins for the next request before sleeping.
const SPIN: Duration = Duration::from_micros(100);

/// Safety net on the ring thread's futex sleep; every real wake-up (a
/// request, the socket's EOF, shutdown) comes through the futex.
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// What the ring thread hands to the connection loop.
enum Inbound {
    /// A whole message (joined from `MORE` frames) to route.
    Frame(Frame),
    /// A bad frame header: the loop answers it (and closes if fatal).
    Error(FrameError),
    /// The connection is over (corruption, an error frame already queued,
    /// or the client closed its ring).
    End,
}

/// The link's reader: frames the ring thread forwarded, and the socket's
/// EOF.
struct ShmReader {
    rx: mpsc::Receiver<Inbound>,
    stream: UnixStream,
    stop: Arc<AtomicBool>,
    waker: Waker<Segment>,
}

impl ShmReader {
    fn stop_ring(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
    }

    async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        let mut probe = [0u8; 1];
        tokio::select! {
            biased;
            inbound = self.rx.recv() => match inbound {
                Some(Inbound::Frame(frame)) => Ok(Some(frame)),
                Some(Inbound::Error(e)) => Err(LinkError::Frame(e)),
                Some(Inbound::End) | None => {
                    self.stop_ring();
                    Err(LinkError::Closed)
                }
            },
            read = self.stream.read(&mut probe) => {
                // EOF (or any byte: nothing may come on the socket after
                // the upgrade) means the client is gone.
                self.stop_ring();
                match read {
                    Ok(0) => Err(LinkError::Closed),
                    Ok(_) => Err(LinkError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the client wrote on the socket after moving to shared memory",
                    ))),
                    Err(e) => Err(LinkError::Io(e)),
                }
            }
        }
    }
}

impl FrameReader for ShmReader {
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, LinkError>> {
        Box::pin(self.next())
    }
}

impl Drop for ShmReader {
    fn drop(&mut self) {
        self.stop_ring();
    }
}

/// Serves one connection that moved to shared memory until it ends, then
/// waits for its ring thread to exit before releasing the ticket.
pub(crate) async fn serve(shared: Arc<Shared>, side: ShmSide, ticket: Ticket) {
    let ShmSide {
        stream,
        segment,
        info,
    } = side;
    let out = Arc::new(ShmOut::new(&segment, Direction::ServerToClient));
    let consumer = Consumer::new(segment.clone(), Direction::ClientToServer);
    let stop = Arc::new(AtomicBool::new(false));
    let waker = consumer.waker();
    let (fwd, rx) = mpsc::channel(FORWARD_BUFFER);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let reader = ShmReader {
        rx,
        stream,
        stop: stop.clone(),
        waker: waker.clone(),
    };
    let writer = ShmWriter {
        out: out.clone(),
        stall: Some(shared.config.stall_timeout),
        abort: stop.clone(),
    };
    let link = Link {
        info,
        reader: Box::new(reader),
        writer: Box::new(writer),
    };
    // Shutdown stops the ring thread from taking new requests at once.
    let down = {
        let mut signal = shared.shutdown_signal();
        let stop = stop.clone();
        let waker = waker.clone();
        tokio::spawn(async move {
            super::until_down(&mut signal).await;
            stop.store(true, Ordering::Release);
            waker.wake();
        })
    };
    let handle = shared.handle.clone();
    let ring_stop = stop.clone();
    let start = move |conn: Arc<Conn>| {
        let ring = RingThread {
            conn,
            rx: consumer,
            out,
            fwd,
            stop: ring_stop,
            handle,
        };
        let spawned = std::thread::Builder::new()
            .name("hearth-shm-conn".into())
            .spawn(move || {
                ring.run();
                drop(done_tx);
            });
        if let Err(e) = spawned {
            // The closure (and with it `fwd`) is gone: the reader sees the
            // channel closed and the connection ends.
            tracing::warn!(error = %e, "could not start a shared-memory connection thread");
        }
    };
    shared.shm_opened();
    let ticket = conn::serve_with(shared.clone(), link, ticket, Some(Box::new(start))).await;
    stop.store(true, Ordering::Release);
    waker.wake();
    down.abort();
    let _ = done_rx.await;
    shared.shm_closed();
    drop(ticket);
}

/// The per-connection thread reading the client's ring.
struct RingThread {
    conn: Arc<Conn>,
    rx: Consumer<Segment>,
    out: Arc<ShmOut>,
    fwd: mpsc::Sender<Inbound>,
    stop: Arc<AtomicBool>,
    handle: Handle,
}

impl RingThread {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.conn.shared.is_shutting_down()
    }

    fn run(mut self) {
        let mut record = Vec::with_capacity(4096);
        let mut reassembler = Reassembler::new(self.conn.shared.config.max_message_bytes);
        let mut spinner = Spinner::new(SPIN);
        loop {
            if self.stopped() {
                return;
            }
            match self.rx.try_pop(&mut record) {
                Ok(true) => {
                    if !self.on_record(&record, &mut reassembler) {
                        return;
                    }
                }
                Ok(false) => {
                    if self.rx.is_closed() {
                        // The client closed its ring: it is leaving.
                        let _ = self.fwd.blocking_send(Inbound::End);
                        return;
                    }
                    let rx = &self.rx;
                    let stop = &self.stop;
                    // Spinning while the client's thread shares this core
                    // only keeps it from sending: sleep at once then.
                    let here = rx.note_cpu();
                    if spinner.spin_unless_shared(
                        || rx.peer_on(here),
                        || rx.has_data().unwrap_or(true) || stop.load(Ordering::Relaxed),
                    ) {
                        continue;
                    }
                    let abort = || self.stopped();
                    if let Err(e) = self.rx.wait_for_data(Some(IDLE_WAKE), &abort) {
                        self.corrupt(&e);
                        return;
                    }
                }
                Err(e) => {
                    self.corrupt(&e);
                    return;
                }
            }
        }
    }

    /// Ends the connection because the client broke the ring protocol: an
    /// error frame (best effort: the ring may be unusable), then the end.
    fn corrupt(&self, e: &ShmError) {
        tracing::warn!(conn = self.conn.id, error = %e, "closing a shared-memory client that corrupted its segment");
        self.fatal(ErrorBody::new(ErrorCode::InvalidInput, e.to_string()));
    }

    fn fatal(&self, body: ErrorBody) {
        let frame = Frame::error(0, None, &body);
        if !matches!(self.out.try_send(&frame), Ok(Pushed::Done)) {
            block_on(&self.handle, self.conn.send(frame));
        }
        let _ = self.fwd.blocking_send(Inbound::End);
    }

    fn forward(&self, inbound: Inbound) -> bool {
        self.fwd.blocking_send(inbound).is_ok()
    }

    /// Checks one record as a frame and routes it; false ends the thread.
    fn on_record(&mut self, record: &[u8], reassembler: &mut Reassembler) -> bool {
        let Some(head) = record.first_chunk::<HEADER_LEN>() else {
            self.fatal(ErrorBody::new(
                ErrorCode::InvalidInput,
                format!(
                    "a shared-memory record of {} bytes is shorter than a frame header",
                    record.len()
                ),
            ));
            return false;
        };
        let header = match FrameHeader::decode(head) {
            Ok(header) => header,
            Err(e) => {
                let fatal = e.is_fatal();
                return self.forward(Inbound::Error(e)) && !fatal;
            }
        };
        let max = self.conn.shared.config.max_frame_bytes as usize;
        if record.len() > max {
            self.forward(Inbound::Error(FrameError::TooLarge {
                len: record.len() as u64,
                max,
            }));
            return false;
        }
        if header.payload_len as usize != record.len() - HEADER_LEN {
            self.fatal(ErrorBody::new(
                ErrorCode::InvalidInput,
                format!(
                    "a frame header says {} payload bytes but its shared-memory record holds {}",
                    header.payload_len,
                    record.len() - HEADER_LEN
                ),
            ));
            return false;
        }
        let frame = Frame {
            header,
            payload: record[HEADER_LEN..].to_vec(),
        };
        match reassembler.push(frame) {
            Ok(Some(message)) => self.dispatch(message),
            Ok(None) => true,
            Err(body) => {
                self.fatal(body);
                false
            }
        }
    }

    /// Answers a quick request here, or forwards the message in order.
    fn dispatch(&mut self, message: Frame) -> bool {
        let inline = message.header.kind == FrameKind::Request
            && message.header.operation.is_some_and(conn::is_inline_op);
        if !inline {
            return self.forward(Inbound::Frame(message));
        }
        match conn::answer_inline(&self.conn, message) {
            // The guard lives until the answer is on the ring or queued.
            Some((reply, _sending)) => self.reply(reply),
            None => true,
        }
    }

    /// Writes a final answer straight onto the client's ring when it fits
    /// now; otherwise queues it for the writer task (which splits and
    /// waits for room).
    fn reply(&self, frame: Frame) -> bool {
        if HEADER_LEN + frame.payload.len() <= self.out.max_frame() {
            match self.out.try_send(&frame) {
                Ok(Pushed::Done) => return true,
                Ok(Pushed::Full { .. }) => {}
                Err(e) => {
                    self.corrupt(&e);
                    return false;
                }
            }
        }
        block_on(&self.handle, self.conn.send(frame))
    }
}
