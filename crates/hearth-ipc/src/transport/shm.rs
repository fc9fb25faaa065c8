//! The shared-memory transport: the upgrade step on a handshaken socket
//! (both sides) and the frame writer onto a ring.
//!
//! Owns: the attach request / offer / confirmation exchange
//! (`docs/protocol.md`, "Shared memory"), creating the segment for a
//! connection (server) and checking the received one (client), falling
//! back to the socket whenever anything in the upgrade fails (unless the
//! client required shared memory), the link's lowered frame limits (a frame
//! must fit a ring record), and `ShmOut`, the outbound ring behind a lock
//! shared by everyone who writes to the peer. Must never: block a runtime
//! thread (waiting for ring room runs on the blocking pool, bounded by the
//! stall timeout), send anything on the socket after the confirmation, or
//! trust a ring index (hearth-shm checks them; a violation ends the link
//! with `InvalidData`).

use super::socket::Handshaken;
use super::{BoxFuture, FrameWriter, LinkError, LinkInfo, TransportKind};
use crate::error::IpcError;
use hearth_proto::{
    ATTACH_HANDOFF, ATTACH_OK, ATTACH_UNAVAILABLE, AttachConfirm, AttachOffer, AttachProbe,
    AttachRequest, Frame, FrameHeader, HEADER_LEN, UPGRADE_MESSAGE_LEN, probe_attach,
};
use hearth_shm::{
    Direction, Layout, MIN_SEGMENT_CAPACITY, Producer, RoomWaiter, Segment, ShmError, Waker,
    max_record,
};
use parking_lot::Mutex;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

/// Default bytes of each ring (client→server and server→client).
///
/// ```
/// assert_eq!(hearth_ipc::transport::shm::DEFAULT_RING_BYTES, 256 * 1024);
/// ```
pub const DEFAULT_RING_BYTES: usize = 256 * 1024;

/// The largest ring a client may ask for or a server be configured with.
///
/// ```
/// assert_eq!(hearth_ipc::transport::shm::MAX_RING_BYTES, 64 << 20);
/// ```
pub const MAX_RING_BYTES: usize = 64 << 20;

/// The ring size to use: a power of two within 4 KiB..=64 MiB.
///
/// ```
/// use hearth_ipc::transport::shm::ring_bytes;
/// assert_eq!(ring_bytes(100_000), 131_072);
/// assert_eq!(ring_bytes(1), 4096);
/// assert_eq!(ring_bytes(usize::MAX), 64 << 20);
/// ```
pub fn ring_bytes(wanted: usize) -> usize {
    wanted
        .clamp(MIN_SEGMENT_CAPACITY, MAX_RING_BYTES)
        .next_power_of_two()
        .min(MAX_RING_BYTES)
}

/// A connection that moved to shared memory: the segment, the socket kept
/// for liveness, and what was agreed.
pub(crate) struct ShmSide {
    pub(crate) stream: UnixStream,
    pub(crate) segment: Arc<Segment>,
    pub(crate) info: LinkInfo,
    /// The client hands its turn over itself (its attach request's
    /// `ATTACH_HANDOFF`; always true on the client's own side).
    pub(crate) hands_off: bool,
}

/// The link information of a shared-memory connection: frames are limited
/// to what one ring record carries.
fn shm_info(info: LinkInfo, layout: Layout) -> LinkInfo {
    let mut negotiated = info.negotiated;
    let to_server = max_record(layout.capacity(Direction::ClientToServer)) as u32;
    let to_client = max_record(layout.capacity(Direction::ServerToClient)) as u32;
    negotiated.server_max_frame_bytes = negotiated.server_max_frame_bytes.min(to_server);
    negotiated.client_max_frame_bytes = negotiated.client_max_frame_bytes.min(to_client);
    LinkInfo {
        kind: TransportKind::SharedMemory,
        negotiated,
        peer: info.peer,
    }
}

/// A client that requires shared memory and cannot have it: `what` went
/// wrong, `why`, and the advice every such case shares (use the socket).
/// The `Unsupported` kind gives the stable code `unavailable`.
pub(crate) fn shm_unavailable(what: &str, why: impl std::fmt::Display) -> IpcError {
    IpcError::io(
        "moving the connection to shared memory",
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "{what}: {why}; to use the socket instead, set HEARTH_TRANSPORT to \
                 auto or socket (TransportPreference::Auto or Socket in Rust)"
            ),
        ),
    )
}

/// Reads exactly `UPGRADE_MESSAGE_LEN` bytes, keeping the first descriptor
/// that arrives with them. Never reads past the message.
async fn read_message_with_fd(
    stream: &UnixStream,
) -> std::io::Result<([u8; UPGRADE_MESSAGE_LEN], Option<std::os::fd::OwnedFd>)> {
    let mut got = [0u8; UPGRADE_MESSAGE_LEN];
    let mut n = 0;
    let mut fd = None;
    while n < UPGRADE_MESSAGE_LEN {
        stream.readable().await?;
        let received = stream.try_io(Interest::READABLE, || {
            hearth_shm::recv_with_fd(stream.as_fd(), &mut got[n..])
        });
        match received {
            Ok((0, _)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok((k, received_fd)) => {
                n += k;
                if fd.is_none() {
                    fd = received_fd;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok((got, fd))
}

/// The client's side of the upgrade on a handshake that agreed shared
/// memory. Falls back to the socket (returns it) when the server declines
/// or the segment cannot be used, unless `required`.
pub(crate) async fn client_upgrade(
    mut hs: Handshaken,
    required: bool,
) -> Result<Result<ShmSide, Handshaken>, IpcError> {
    let disconnected = |e: std::io::Error| IpcError::Disconnected {
        reason: format!("the connection failed while moving to shared memory: {e}"),
    };
    hs.stream
        .write_all(
            &AttachRequest {
                ring_bytes: 0,
                // This client wakes the connection named on its ring when
                // its turn ends (`client::shm`, `Handoffs`).
                flags: ATTACH_HANDOFF,
            }
            .encode(),
        )
        .await
        .map_err(disconnected)?;
    let (bytes, fd) = read_message_with_fd(&hs.stream)
        .await
        .map_err(disconnected)?;
    let offer = AttachOffer::decode(&bytes).map_err(|e| IpcError::Protocol(e.to_string()))?;
    if offer.status != ATTACH_OK {
        if required {
            return Err(shm_unavailable(
                "the server could not make a shared-memory segment for this connection",
                format!(
                    "offer status {}; its system or sandbox refuses memfd or shared mappings \
                     (the server's log says which)",
                    offer.status
                ),
            ));
        }
        return Ok(Err(hs));
    }
    let mapped = match fd {
        None => Err(ShmError::BadSegment {
            detail: "the offer arrived without a descriptor".into(),
        }),
        Some(fd) => Segment::open(fd).and_then(|segment| {
            if segment.len() as u64 == u64::from(offer.segment_bytes) {
                Ok(segment)
            } else {
                Err(ShmError::BadSegment {
                    detail: format!(
                        "the segment is {} bytes, the offer said {}",
                        segment.len(),
                        offer.segment_bytes
                    ),
                })
            }
        }),
    };
    let status = if mapped.is_ok() {
        ATTACH_OK
    } else {
        ATTACH_UNAVAILABLE
    };
    hs.stream
        .write_all(&AttachConfirm { status }.encode())
        .await
        .map_err(disconnected)?;
    match mapped {
        Ok(segment) => {
            let info = shm_info(hs.info, segment.layout());
            Ok(Ok(ShmSide {
                stream: hs.stream,
                segment: Arc::new(segment),
                info,
                hands_off: true,
            }))
        }
        Err(e) if required => Err(shm_unavailable(
            "the server's segment cannot be used in this process",
            e,
        )),
        Err(e) => {
            tracing::debug!(error = %e, "shared memory unusable; staying on the socket");
            Ok(Err(hs))
        }
    }
}

/// How the server's side of the upgrade ended.
pub(crate) enum ServerUpgrade {
    /// The client attached.
    Shm(ShmSide),
    /// The connection goes on over the socket (the client sent frames, or
    /// the upgrade was declined); its `leftover` holds bytes already read.
    Socket(Handshaken),
    /// The client went away, stalled, or the server is shutting down.
    Gone,
}

/// Whether this process has failed to make a segment before (the first
/// failure is logged as a warning, later ones quietly).
static SEGMENTS_REFUSED: AtomicBool = AtomicBool::new(false);

/// The server's side: waits for the client's first bytes; an attach
/// request gets a segment of `ring` bytes each way, or of the smaller size
/// the client asked for (when one can be made) — never more: a client's
/// request above `ring` is capped to it and counted in `capped`, so that
/// no client can make the server keep 128 MiB of shared memory a
/// connection alive. Anything else goes on as frames on the socket.
/// `until_down` ends the wait when the server shuts down; `deadline`
/// bounds each step after the request.
pub(crate) async fn server_upgrade<F>(
    mut hs: Handshaken,
    ring: usize,
    capped: &AtomicU64,
    deadline: Duration,
    until_down: F,
) -> ServerUpgrade
where
    F: std::future::Future<Output = ()>,
{
    tokio::pin!(until_down);
    let mut buf = Vec::with_capacity(UPGRADE_MESSAGE_LEN);
    let request = loop {
        match probe_attach(&buf) {
            AttachProbe::Request(request) => break request,
            AttachProbe::NotRequest => {
                hs.leftover = buf;
                return ServerUpgrade::Socket(hs);
            }
            AttachProbe::Incomplete => {}
        }
        let mut chunk = [0u8; 256];
        let read = tokio::select! {
            () = &mut until_down => return ServerUpgrade::Gone,
            read = hs.stream.read(&mut chunk) => read,
        };
        match read {
            Ok(0) => {
                // EOF: the socket path reports a clean close or a
                // truncated frame, as for any connection.
                hs.leftover = buf;
                return ServerUpgrade::Socket(hs);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return ServerUpgrade::Gone,
        }
    };
    let extra = buf.split_off(UPGRADE_MESSAGE_LEN);
    let segment = if extra.is_empty() {
        let size = match request.ring_bytes {
            0 => ring,
            n => ring_bytes(n as usize),
        };
        let size = if size > ring {
            // Relaxed: a statistic.
            capped.fetch_add(1, Ordering::Relaxed);
            ring
        } else {
            size
        };
        Layout::new(size, size).and_then(Segment::create)
    } else {
        Err(ShmError::BadConfig {
            detail: "the client sent bytes after its attach request without waiting".into(),
        })
    };
    let offered = async {
        match &segment {
            Ok(segment) => {
                let offer = AttachOffer {
                    status: ATTACH_OK,
                    segment_bytes: u32::try_from(segment.len()).unwrap_or(u32::MAX),
                }
                .encode();
                let Some(fd) = segment.fd() else {
                    return Err(std::io::Error::other("the new segment has no descriptor"));
                };
                let mut sent = 0;
                while sent == 0 {
                    hs.stream.writable().await?;
                    match hs.stream.try_io(Interest::WRITABLE, || {
                        hearth_shm::send_with_fd(hs.stream.as_fd(), &offer, fd)
                    }) {
                        Ok(n) => sent = n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                hs.stream.write_all(&offer[sent..]).await
            }
            Err(e) => {
                if matches!(e, ShmError::BadConfig { .. })
                    || SEGMENTS_REFUSED.swap(true, Ordering::Relaxed)
                {
                    tracing::debug!(error = %e, "no shared memory for this connection; staying on the socket");
                } else {
                    // Said once a process: the cause (a sandbox, a system
                    // without memfd) is the machine's, not the client's.
                    tracing::warn!(
                        error = %e,
                        "shared memory cannot be made here; clients stay on the socket \
                         (slower, otherwise the same)"
                    );
                }
                let offer = AttachOffer {
                    status: ATTACH_UNAVAILABLE,
                    segment_bytes: 0,
                };
                hs.stream.write_all(&offer.encode()).await
            }
        }
    };
    match tokio::time::timeout(deadline, offered).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => return ServerUpgrade::Gone,
    }
    let Ok(mut segment) = segment else {
        hs.leftover = extra;
        return ServerUpgrade::Socket(hs);
    };
    segment.close_fd();
    let mut confirm = [0u8; UPGRADE_MESSAGE_LEN];
    let read = tokio::select! {
        () = &mut until_down => return ServerUpgrade::Gone,
        read = tokio::time::timeout(deadline, hs.stream.read_exact(&mut confirm)) => read,
    };
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return ServerUpgrade::Gone,
    }
    match AttachConfirm::decode(&confirm) {
        Ok(AttachConfirm { status: ATTACH_OK }) => {
            let info = shm_info(hs.info, segment.layout());
            ServerUpgrade::Shm(ShmSide {
                stream: hs.stream,
                segment: Arc::new(segment),
                info,
                hands_off: request.hands_off(),
            })
        }
        Ok(_) => {
            hs.leftover = Vec::new();
            ServerUpgrade::Socket(hs)
        }
        Err(e) => {
            tracing::debug!(error = %e, "bad attach confirmation; closing the connection");
            ServerUpgrade::Gone
        }
    }
}

/// Whether a push found room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The frame is on the ring and the reader was woken if it slept.
    Done {
        /// The reader slept and this push woke it: it is not running yet
        /// (its thread may be queued on this very core).
        woke: bool,
    },
    /// No room; wait with [`ShmOut::wait_room`] passing `head_seen`.
    Full {
        /// The reader's position when the ring was found full.
        head_seen: u64,
    },
}

/// The outbound ring of a connection, shared by every writer of this side
/// (the ring thread's inline answers and the writer task on the server;
/// calling threads and the writer task on the client). The lock is held
/// only to copy one frame in, never while waiting.
pub(crate) struct ShmOut {
    producer: Mutex<Producer<Segment>>,
    room: RoomWaiter<Segment>,
    max_frame: usize,
}

impl ShmOut {
    /// The producer of the ring going `dir` in `segment`.
    pub(crate) fn new(segment: &Arc<Segment>, dir: Direction) -> ShmOut {
        let producer = Producer::new(segment.clone(), dir);
        let room = producer.room_waiter();
        let max_frame = producer.max_record();
        ShmOut {
            producer: Mutex::new(producer),
            room,
            max_frame,
        }
    }

    /// The largest frame (header included) the ring carries.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// A handle that wakes a writer waiting for room
    /// ([`wait_room`](Self::wait_room)): to make it look at its abort
    /// condition at once.
    pub(crate) fn room_waker(&self) -> Waker<Segment> {
        self.producer.lock().waker()
    }

    /// Puts `frame` (at most [`max_frame`](Self::max_frame) bytes) on the
    /// ring and wakes the reader if it sleeps.
    pub(crate) fn try_send(&self, frame: &Frame) -> Result<Pushed, ShmError> {
        self.push(frame, true)
    }

    /// [`try_send`](Self::try_send), waking the reader only if `wake`
    /// (see [`try_send_whole`](Self::try_send_whole)).
    pub(crate) fn push(&self, frame: &Frame, wake: bool) -> Result<Pushed, ShmError> {
        let header = FrameHeader {
            payload_len: u32::try_from(frame.payload.len()).unwrap_or(u32::MAX),
            ..frame.header
        }
        .encode();
        let mut producer = self.producer.lock();
        if producer.try_push(&[&header, &frame.payload])? {
            let woke = wake && producer.notify();
            // After the notify: its fence would wait for these stores.
            producer.own_ahead();
            Ok(Pushed::Done { woke })
        } else {
            Ok(Pushed::Full {
                head_seen: producer.head_seen(),
            })
        }
    }

    /// Puts `frame` on the ring now, when it fits in one record and the
    /// ring has room for it: true; false otherwise (the writer task then
    /// sends it, in pieces if need be, waiting for room). Wakes the reader
    /// if it sleeps and `wake`; without, someone else will (a turn handed
    /// over by the client itself), or [`notify`](Self::notify) later.
    pub(crate) fn try_send_whole(&self, frame: &Frame, wake: bool) -> Result<bool, ShmError> {
        Ok(self.send_whole(frame, wake)?.is_some())
    }

    /// [`try_send_whole`](Self::try_send_whole), saying whether the frame
    /// went (`Some`) and whether it woke the reader (`Some(true)`).
    pub(crate) fn send_whole(&self, frame: &Frame, wake: bool) -> Result<Option<bool>, ShmError> {
        if HEADER_LEN + frame.payload.len() > self.max_frame {
            return Ok(None);
        }
        Ok(match self.push(frame, wake)? {
            Pushed::Done { woke } => Some(woke),
            Pushed::Full { .. } => None,
        })
    }

    /// Whether the reader sleeps now (what [`notify`](Self::notify)
    /// would wake).
    pub(crate) fn reader_asleep(&self) -> bool {
        self.producer.lock().consumer_asleep()
    }

    /// Wakes the reader if it sleeps.
    pub(crate) fn notify(&self) {
        let _ = self.producer.lock().notify();
    }

    /// Whether the reader has moved past `head_seen` (a push may find room
    /// now); never blocks: for a writer that spins for room.
    pub(crate) fn room_since(&self, head_seen: u64) -> bool {
        self.room.moved(head_seen)
    }

    /// Sleeps (at most `timeout`) until the reader moves past `head_seen`
    /// or `abort()` holds. Blocks the thread: not on a runtime thread.
    pub(crate) fn wait_room(&self, head_seen: u64, timeout: Duration, abort: &dyn Fn() -> bool) {
        self.room.wait(head_seen, Some(timeout), abort);
    }

    /// Tells the reader nothing more comes (after what is on the ring).
    pub(crate) fn close(&self) {
        self.producer.lock().close();
    }
}

/// How long one wait for ring room sleeps before re-checking the stall
/// timeout and the abort flag.
const ROOM_SLICE: Duration = Duration::from_millis(50);

/// Frames onto a ring: the writer task's end of a shared-memory link.
pub(crate) struct ShmWriter {
    pub(crate) out: Arc<ShmOut>,
    /// Give up when the reader makes no room for this long.
    pub(crate) stall: Option<Duration>,
    /// Set when the connection ends: stop waiting for room.
    pub(crate) abort: Arc<AtomicBool>,
}

impl ShmWriter {
    async fn write_all(&mut self, frames: &[Frame]) -> Result<(), LinkError> {
        for frame in frames {
            let mut progress = Instant::now();
            let mut last_head = None;
            loop {
                let pushed = self.out.try_send(frame).map_err(|e| {
                    LinkError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e.to_string(),
                    ))
                })?;
                let Pushed::Full { head_seen } = pushed else {
                    break;
                };
                if self.abort.load(Ordering::Acquire) {
                    return Err(LinkError::Closed);
                }
                if last_head != Some(head_seen) {
                    last_head = Some(head_seen);
                    progress = Instant::now();
                }
                if let Some(after) = self.stall
                    && progress.elapsed() >= after
                {
                    return Err(LinkError::Stalled { after });
                }
                let out = self.out.clone();
                let abort = self.abort.clone();
                let waited = tokio::task::spawn_blocking(move || {
                    out.wait_room(head_seen, ROOM_SLICE, &|| abort.load(Ordering::Acquire));
                })
                .await;
                if waited.is_err() {
                    return Err(LinkError::Closed);
                }
            }
        }
        Ok(())
    }
}

impl FrameWriter for ShmWriter {
    fn write_frames<'a>(&'a mut self, frames: &'a [Frame]) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(self.write_all(frames))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.out.close();
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A get request of `payload_len` bytes.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn request(id: u64, payload_len: usize) -> Frame {
        use hearth_proto::{FrameFlags, FrameKind, Operation};
        // A payload this small always has a length.
        Frame::new(
            FrameKind::Request,
            FrameFlags::JSON,
            Some(Operation::Get),
            id,
            vec![b' '; payload_len],
        )
        .expect("a small payload")
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_whole_send_says_whether_it_went_and_whether_it_woke_a_sleeping_reader() {
        let segment = Arc::new(Layout::new(4096, 4096).and_then(Segment::create).unwrap());
        let out = ShmOut::new(&segment, Direction::ClientToServer);
        let reader = hearth_shm::Consumer::new(segment.clone(), Direction::ClientToServer);
        let sleeper = std::thread::spawn(move || {
            // One long sleep: woken by the send below (a lost wake-up
            // fails the test after a minute rather than hanging it).
            reader
                .wait_for_data(Some(Duration::from_secs(60)), &|| false)
                .unwrap()
        });
        // Readiness, not time: the reader says it sleeps.
        while !out.reader_asleep() {
            std::thread::yield_now();
        }
        assert_eq!(out.send_whole(&request(1, 16), true).unwrap(), Some(true));
        assert!(sleeper.join().unwrap());
        assert_eq!(
            out.send_whole(&request(2, 16), true).unwrap(),
            Some(false),
            "nobody sleeps now"
        );
        assert_eq!(
            out.send_whole(&request(3, out.max_frame()), true).unwrap(),
            None,
            "longer than a record: not sent whole"
        );
        assert!(out.try_send_whole(&request(4, 16), false).unwrap());
    }

    #[test]
    fn ring_sizes_are_powers_of_two_in_range() {
        assert_eq!(ring_bytes(DEFAULT_RING_BYTES), DEFAULT_RING_BYTES);
        assert_eq!(ring_bytes(0), MIN_SEGMENT_CAPACITY);
        assert_eq!(ring_bytes(MAX_RING_BYTES - 1), MAX_RING_BYTES);
    }

    #[test]
    fn a_shm_link_lowers_the_frame_limits_to_a_ring_record() {
        use hearth_proto::{ClientHello, ServerLimits, negotiate};
        let negotiated = negotiate(&ClientHello::default(), &ServerLimits::default()).unwrap();
        let info = LinkInfo {
            kind: TransportKind::Socket,
            negotiated,
            peer: None,
        };
        let layout = Layout::new(4096, 1 << 20).unwrap();
        let shm = shm_info(info, layout);
        assert_eq!(shm.kind, TransportKind::SharedMemory);
        assert_eq!(shm.negotiated.server_max_frame_bytes, 2040);
        assert_eq!(shm.negotiated.client_max_frame_bytes, (1 << 19) - 8);
    }
}
