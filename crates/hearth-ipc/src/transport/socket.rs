//! The Unix-socket transport: the handshake on both sides, then frames on
//! the byte stream.
//!
//! Owns: connecting and accepting (with the handshake and its deadline),
//! reading frames through the bounded incremental [`FrameDecoder`],
//! writing frames with a stall timeout, and writing a frame from a
//! caller's own thread when nothing else is being written
//! (`DirectWrite`). Must never: read past the client hello before
//! answering it, allocate for a length before the decoder accepted it,
//! wait on a peer that does not read for longer than the stall timeout,
//! or let the bytes of two frames interleave on the socket.

use super::{
    BoxFuture, FrameReader, FrameWriter, Link, LinkError, LinkInfo, TransportKind,
    handshake_limit_refusal,
};
use crate::error::{CONNECTING, IpcError};
use crate::policy::PeerCredentials;
use hearth_proto::{
    CLIENT_HELLO_LEN, ClientHello, Frame, FrameDecoder, FrameHeader, HEADER_LEN, HandshakeError,
    MAX_REASON_BYTES, SERVER_HELLO_FIXED_LEN, ServerHello, ServerLimits, conclude, encode_frame,
};
use parking_lot::Mutex;
use std::io::IoSlice;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

const READ_BUF: usize = 64 * 1024;
/// Frames at least this large are written straight from their payload
/// instead of being copied into the write buffer.
const DIRECT_WRITE: usize = 64 * 1024;

/// The peer's credentials (`SO_PEERCRED`: the process that connected).
pub(crate) fn peer_of(stream: &UnixStream) -> Option<PeerCredentials> {
    stream.peer_cred().ok().map(|c| PeerCredentials {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid(),
    })
}

/// Frames from a socket.
struct SocketReader {
    half: OwnedReadHalf,
    decoder: FrameDecoder,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl SocketReader {
    fn new(half: OwnedReadHalf, max_frame_bytes: usize, leftover: &[u8]) -> SocketReader {
        let mut buf = vec![0u8; READ_BUF.max(leftover.len())].into_boxed_slice();
        buf[..leftover.len()].copy_from_slice(leftover);
        SocketReader {
            half,
            decoder: FrameDecoder::with_max_frame_bytes(max_frame_bytes),
            buf,
            start: 0,
            end: leftover.len(),
        }
    }

    async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            if self.start < self.end {
                let taken = self.decoder.push(&self.buf[self.start..self.end]);
                self.start += taken;
                continue;
            }
            let n = self.half.read(&mut self.buf).await?;
            if n == 0 {
                let buffered = self.decoder.buffered();
                return if buffered > 0 {
                    Err(LinkError::Truncated { buffered })
                } else {
                    Ok(None)
                };
            }
            self.start = 0;
            self.end = n;
        }
    }
}

impl FrameReader for SocketReader {
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, LinkError>> {
        Box::pin(self.next())
    }
}

/// The sending half of a socket, shared by the connection's writer task
/// and [`DirectWrite`].
struct WriteSide {
    half: OwnedWriteHalf,
    /// Held across every write call on the socket, so that the bytes of
    /// one writer never land in the middle of another's; holds what a
    /// direct write could not put on a full socket, which the writer task
    /// writes before anything else.
    rest: Mutex<Vec<u8>>,
}

impl WriteSide {
    /// A link's writer onto `half` (`stall`: how long a write may make no
    /// progress) and a [`DirectWrite`] sharing it.
    fn writers(half: OwnedWriteHalf, stall: Option<Duration>) -> (SocketWriter, DirectWrite) {
        let side = Arc::new(WriteSide {
            half,
            rest: Mutex::new(Vec::new()),
        });
        let writer = SocketWriter {
            side: side.clone(),
            buf: Vec::new(),
            stall,
        };
        (writer, DirectWrite { side })
    }

    /// One non-blocking write of `parts` (in order), under the lock.
    fn try_write(&self, parts: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let _turn = self.rest.lock();
        self.half.try_write_vectored(parts)
    }
}

/// Frames to a socket.
struct SocketWriter {
    side: Arc<WriteSide>,
    buf: Vec<u8>,
    stall: Option<Duration>,
}

impl SocketWriter {
    async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let mut off = 0;
        while off < bytes.len() {
            match self.side.try_write(&[IoSlice::new(&bytes[off..])]) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let writable = self.side.half.writable();
                    match self.stall {
                        Some(after) => tokio::time::timeout(after, writable)
                            .await
                            .map_err(|_| LinkError::Stalled { after })??,
                        None => writable.await?,
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn flush_buf(&mut self) -> Result<(), LinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let result = self.write_bytes(&buf).await;
        self.buf = buf;
        self.buf.clear();
        if self.buf.capacity() > 4 * DIRECT_WRITE {
            self.buf.shrink_to(DIRECT_WRITE);
        }
        result
    }

    async fn write_all_frames(&mut self, frames: &[Frame]) -> Result<(), LinkError> {
        // What a direct write left goes first: it is the end of a frame
        // already begun on the socket.
        let rest = std::mem::take(&mut *self.side.rest.lock());
        if !rest.is_empty() {
            self.write_bytes(&rest).await?;
        }
        for frame in frames {
            if frame.payload.len() >= DIRECT_WRITE {
                self.flush_buf().await?;
                let header = header_of(frame)?;
                self.write_bytes(&header.encode()).await?;
                self.write_bytes(&frame.payload).await?;
            } else {
                encode_frame(
                    &mut self.buf,
                    frame.header.kind,
                    frame.header.flags,
                    frame.header.operation,
                    frame.header.request_id,
                    &frame.payload,
                )?;
            }
        }
        self.flush_buf().await
    }
}

/// `frame`'s header with the length of its payload.
fn header_of(frame: &Frame) -> Result<FrameHeader, LinkError> {
    let mut header = frame.header;
    header.payload_len = u32::try_from(frame.payload.len())
        .map_err(|_| LinkError::Io(std::io::Error::other("a frame payload over 4 GiB")))?;
    Ok(header)
}

impl FrameWriter for SocketWriter {
    fn write_frames<'a>(&'a mut self, frames: &'a [Frame]) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(self.write_all_frames(frames))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The half is shared with `DirectWrite`s, so it cannot be shut
            // through `&mut`: the socket's sending direction is shut
            // directly (the peer reads EOF), under the write lock, so that
            // a direct write is never cut in two.
            let _turn = self.side.rest.lock();
            let _ = rustix::net::shutdown(self.side.half.as_ref(), rustix::net::Shutdown::Write);
        })
    }
}

/// Writes a frame onto a socket from the calling thread, without the
/// connection's writer task (and the thread hop to it): what a blocking
/// call does when nothing else is being written.
#[derive(Clone)]
pub(crate) struct DirectWrite {
    side: Arc<WriteSide>,
}

/// What [`DirectWrite::try_write`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direct {
    /// The whole frame is on the socket.
    Written,
    /// Its first bytes are on the socket; the rest waits for the writer
    /// task, which writes it before anything else (`handover` was called).
    HandedOver,
    /// Nothing written: other frames wait to be written, the frame is
    /// larger than `max_frame`, or the socket failed. Queue it instead.
    NotNow,
}

impl DirectWrite {
    /// Writes `frame` (whole: at most `max_frame` bytes with its header,
    /// the peer's limit) if `idle()` — asked while no other write can
    /// begin — says no frame waits for the writer task. When a full
    /// socket takes only part of it, the rest is left for the writer task
    /// and `handover()` (still under the lock) must make the writer task
    /// run.
    pub(crate) fn try_write(
        &self,
        frame: &Frame,
        max_frame: usize,
        idle: impl FnOnce() -> bool,
        handover: impl FnOnce(),
    ) -> Direct {
        if frame.payload.len().saturating_add(HEADER_LEN) > max_frame {
            // The writer task splits it.
            return Direct::NotNow;
        }
        let Ok(header) = header_of(frame) else {
            return Direct::NotNow;
        };
        let header = header.encode();
        let mut rest = self.side.rest.lock();
        if !rest.is_empty() || !idle() {
            return Direct::NotNow;
        }
        let total = header.len() + frame.payload.len();
        let parts = [IoSlice::new(&header), IoSlice::new(&frame.payload)];
        let written = loop {
            // The system call itself, not tokio's `try_write_vectored`,
            // which declines without trying until the runtime has polled
            // the socket writable (and again after each full write). A
            // full socket here leaves tokio's view alone: the writer task
            // learns it from its own write and waits for room then.
            match rustix::io::writev(self.side.half.as_ref(), &parts) {
                Err(rustix::io::Errno::INTR) => {}
                Ok(n) => break n,
                // Full, or failing: the writer task meets the same socket
                // and reports what is wrong with it.
                Err(_) => break 0,
            }
        };
        if written == total {
            return Direct::Written;
        }
        if written == 0 {
            return Direct::NotNow;
        }
        let (head, tail) = (
            written.min(header.len()),
            written.saturating_sub(header.len()),
        );
        rest.extend_from_slice(&header[head..]);
        rest.extend_from_slice(&frame.payload[tail..]);
        handover();
        Direct::HandedOver
    }
}

/// Runs `test` inside a fresh current-thread runtime with one end of a
/// socket pair as a link's writer and a [`DirectWrite`], the other end
/// as a plain blocking socket (for tests here and of the output queue).
#[cfg(test)]
pub(crate) fn on_socket_pair<T>(
    test: impl FnOnce(
        &tokio::runtime::Runtime,
        Box<dyn FrameWriter>,
        DirectWrite,
        std::os::unix::net::UnixStream,
    ) -> T,
) -> T {
    // Invariants: a test machine can start a runtime and make a socket
    // pair, which a runtime can register.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _in = rt.enter();
    let (ours, peer) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    ours.set_nonblocking(true).expect("a non-blocking socket");
    let stream = UnixStream::from_std(ours).expect("registered with the runtime");
    let (_read, write) = stream.into_split();
    let (writer, direct) = WriteSide::writers(write, None);
    test(&rt, Box::new(writer), direct, peer)
}

/// Reads `n` frames (or more, if they came in the same reads) from `peer`,
/// blocking (for tests).
#[cfg(test)]
pub(crate) fn read_frames(peer: &mut std::os::unix::net::UnixStream, n: usize) -> Vec<Frame> {
    use std::io::Read;
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Invariant (a test's): what the socket carries decodes.
        while let Some(frame) = decoder.next_frame().expect("a valid frame") {
            frames.push(frame);
        }
        if frames.len() >= n {
            return frames;
        }
        let got = peer.read(&mut buf).expect("the socket reads");
        assert!(got > 0, "the socket closed after {} frames", frames.len());
        let mut at = 0;
        while at < got {
            at += decoder.push(&buf[at..got]);
            while let Some(frame) = decoder.next_frame().expect("a valid frame") {
                frames.push(frame);
            }
        }
    }
}

/// A socket whose handshake succeeded, before it becomes a [`Link`] (or
/// moves to shared memory).
pub(crate) struct Handshaken {
    pub(crate) stream: UnixStream,
    pub(crate) info: LinkInfo,
    /// Bytes read past the hello (frames the peer already sent).
    pub(crate) leftover: Vec<u8>,
    /// The largest frame this side accepts.
    pub(crate) own_max_frame: usize,
}

impl Handshaken {
    /// The socket as a link of frames, and a [`DirectWrite`] onto it;
    /// `stall`: how long a write of the link's writer may make no progress.
    pub(crate) fn into_link(self, stall: Option<Duration>) -> (Link, DirectWrite) {
        let (read, write) = self.stream.into_split();
        let (writer, direct) = WriteSide::writers(write, stall);
        let link = Link {
            info: self.info,
            reader: Box::new(SocketReader::new(read, self.own_max_frame, &self.leftover)),
            writer: Box::new(writer),
        };
        (link, direct)
    }
}

/// Connects to the socket at `path` and performs the client handshake.
pub(crate) async fn connect(
    channel: &str,
    path: &Path,
    hello: ClientHello,
    deadline: Duration,
) -> Result<Handshaken, IpcError> {
    let not_found = |detail: String| IpcError::ChannelNotFound {
        channel: channel.to_string(),
        path: path.to_path_buf(),
        detail,
    };
    let attempt = || async {
        // The hello goes out in the same breath as the connect: a server
        // counts a socket without its hello against the process's few
        // sockets allowed in the handshake, and a burst of connects from
        // one process must not look like sockets that never speak. So the
        // socket is made and connected by the system calls themselves
        // (tokio's connect waits a turn of the runtime for the socket to
        // be reported writable, and so would its first write), and a
        // fresh socket's buffer takes the 24 bytes at once; whatever it
        // does not take is written the ordinary way below.
        let bytes = hello.encode();
        let (mut stream, sent) = match connect_and_send(path, &bytes) {
            Ok(done) => done,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failed::Final(not_found("there is no socket file".into())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(Failed::Final(not_found(
                    "the socket file exists but nobody listens on it (the server stopped or was killed)".into(),
                )));
            }
            Err(e) => {
                let retry = e.kind() == std::io::ErrorKind::WouldBlock;
                return Err(Failed::new(connect_failed(path, e), retry));
            }
        };
        let peer = peer_of(&stream);
        stream
            .write_all(&bytes[sent..])
            .await
            .map_err(|e| Failed::Retry(disconnected_in_handshake(&e)))?;
        let mut got = Vec::with_capacity(SERVER_HELLO_FIXED_LEN);
        let mut chunk = [0u8; 512];
        let (reply, used) = loop {
            match ServerHello::decode(&got) {
                Ok(done) => break done,
                Err(e) if e.is_incomplete() => {}
                Err(e) => return Err(Failed::Final(IpcError::Handshake(e))),
            }
            // Closed (or reset) before a whole hello came: a server over
            // its handshake limits closes a socket whose hello had not come
            // when it was accepted, sometimes before its refusal can be
            // read.
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| Failed::Retry(disconnected_in_handshake(&e)))?;
            if n == 0 {
                return Err(Failed::Retry(IpcError::Disconnected {
                    reason: "the server closed the connection during the handshake".into(),
                }));
            }
            got.extend_from_slice(&chunk[..n]);
            if got.len() > SERVER_HELLO_FIXED_LEN + MAX_REASON_BYTES + chunk.len() {
                return Err(Failed::Final(IpcError::Protocol(
                    "the server hello is longer than the protocol allows".into(),
                )));
            }
        };
        let negotiated = conclude(&hello, &reply).map_err(|e| {
            let retry = handshake_limit_refusal(&e);
            Failed::new(IpcError::Handshake(e), retry)
        })?;
        let info = LinkInfo {
            kind: TransportKind::Socket,
            negotiated,
            peer,
        };
        Ok(Handshaken {
            stream,
            info,
            leftover: got[used..].to_vec(),
            own_max_frame: hello.max_frame_bytes as usize,
        })
    };
    // Attempts until one succeeds, fails for good, or the deadline is near.
    let attempts = async {
        let start = Instant::now();
        let mut backoff = RETRY_FIRST;
        loop {
            match attempt().await {
                Ok(done) => return Ok(done),
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Retry(e)) => {
                    if start.elapsed() + backoff >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MOST);
                }
            }
        }
    };
    match tokio::time::timeout(deadline, attempts).await {
        Ok(result) => result,
        Err(_) => Err(IpcError::Timeout {
            operation: format!("{CONNECTING} {channel:?}"),
            timeout: deadline,
        }),
    }
}

/// How a connection attempt failed: for good, or in a way that a new
/// attempt a moment later may not (the server's accept queue was full,
/// or it closed the socket before its hello: over its handshake limits,
/// which a burst of connects from one process can reach).
enum Failed {
    Final(IpcError),
    Retry(IpcError),
}

impl Failed {
    fn new(e: IpcError, retry: bool) -> Failed {
        if retry {
            Failed::Retry(e)
        } else {
            Failed::Final(e)
        }
    }
}

/// The wait before a connection's second attempt, doubled before each
/// next one up to [`RETRY_MOST`], all within the connect timeout.
const RETRY_FIRST: Duration = Duration::from_millis(1);
/// The longest wait between two attempts.
const RETRY_MOST: Duration = Duration::from_millis(100);

/// A non-blocking socket connected to `path` (a Unix socket connects at
/// once, or fails with `WouldBlock` when the server's accept queue is
/// full) with as much of `first` sent as its buffer took at once.
fn connect_and_send(path: &Path, first: &[u8]) -> std::io::Result<(UnixStream, usize)> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, connect, send};
    let fd = new_socket(AddressFamily::UNIX, SocketType::STREAM)?;
    let addr = SocketAddrUnix::new(path)?;
    loop {
        match connect(&fd, &addr) {
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
            Ok(()) => break,
        }
    }
    let sent = loop {
        match send(&fd, first, SEND_NOW) {
            Err(rustix::io::Errno::INTR) => {}
            Ok(n) => break n,
            // The ordinary write reports what is wrong with the socket.
            Err(_) => break 0,
        }
    };
    let stream = UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))?;
    Ok((stream, sent))
}

/// A send that never blocks and never raises SIGPIPE (where the platform
/// has the flag: elsewhere Rust programs and Node ignore SIGPIPE anyway).
#[cfg(not(target_vendor = "apple"))]
const SEND_NOW: rustix::net::SendFlags =
    rustix::net::SendFlags::DONTWAIT.union(rustix::net::SendFlags::NOSIGNAL);
#[cfg(target_vendor = "apple")]
const SEND_NOW: rustix::net::SendFlags = rustix::net::SendFlags::DONTWAIT;

/// A non-blocking, close-on-exec socket.
#[cfg(not(target_vendor = "apple"))]
fn new_socket(
    family: rustix::net::AddressFamily,
    kind: rustix::net::SocketType,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::SocketFlags;
    Ok(rustix::net::socket_with(
        family,
        kind,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

/// A non-blocking, close-on-exec socket (two more calls where `socket`
/// takes no flags).
#[cfg(target_vendor = "apple")]
fn new_socket(
    family: rustix::net::AddressFamily,
    kind: rustix::net::SocketType,
) -> std::io::Result<std::os::fd::OwnedFd> {
    let fd = rustix::net::socket(family, kind, None)?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(fd)
}

/// Classifies a failed `connect` other than "no socket" and "nobody
/// listens": a server dying under us (reset, abort, broken pipe) or one
/// whose accept queue is full (`EAGAIN` on a Unix socket) is a transient
/// `Disconnected` that a caller may retry, not an internal error.
fn connect_failed(path: &Path, e: std::io::Error) -> IpcError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            IpcError::Disconnected {
                reason: format!(
                    "the server at {} went away while we connected ({e}); retry once it is back",
                    path.display()
                ),
            }
        }
        ErrorKind::WouldBlock => IpcError::Disconnected {
            reason: format!(
                "the server at {} is not accepting connections fast enough (its accept queue is full); retry shortly",
                path.display()
            ),
        },
        _ => IpcError::io(format!("connecting to {}", path.display()), e),
    }
}

fn disconnected_in_handshake(e: &std::io::Error) -> IpcError {
    IpcError::Disconnected {
        reason: format!("the connection failed during the handshake: {e}"),
    }
}

/// Why an accepted socket did not become a link.
#[derive(Debug)]
pub(crate) enum AcceptError {
    /// The client was refused (a refusing hello was sent when possible).
    Refused(HandshakeError),
    /// The client went away or said nothing in time.
    Io(String),
}

/// Performs the server side of the handshake on an accepted socket whose
/// peer is `peer` ([`peer_of`]): reads the client hello (refusing bad
/// magic as soon as it arrives), asks `admit` about the peer, answers, and
/// returns the handshaken socket.
pub(crate) async fn accept<T>(
    mut stream: UnixStream,
    peer: Option<PeerCredentials>,
    limits: ServerLimits,
    admit: impl FnOnce(Option<&PeerCredentials>) -> Result<T, HandshakeError>,
    deadline: Duration,
    late: Option<HandshakeError>,
) -> Result<(Handshaken, T), AcceptError> {
    let mut got = [0u8; CLIENT_HELLO_LEN];
    let mut n = 0;
    let read_hello = async {
        loop {
            match ClientHello::decode(&got[..n]) {
                Ok((hello, _)) => return Ok(hello),
                Err(e) if e.is_incomplete() => {}
                Err(e) => return Err(Some(e)),
            }
            match stream.read(&mut got[n..]).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(k) => n += k,
            }
        }
    };
    let hello = match tokio::time::timeout(deadline, read_hello).await {
        Err(_) => {
            if let Some(e) = late {
                refuse_now(&stream, &limits, &e);
                return Err(AcceptError::Refused(e));
            }
            return Err(AcceptError::Io(format!(
                "no client hello within {deadline:?}"
            )));
        }
        Ok(Err(None)) => {
            return Err(AcceptError::Io(
                "the client closed before finishing its hello".into(),
            ));
        }
        Ok(Err(Some(e))) => {
            refuse(&mut stream, &limits, &e).await;
            return Err(AcceptError::Refused(e));
        }
        Ok(Ok(hello)) => hello,
    };
    let admitted = match admit(peer.as_ref()) {
        Ok(admitted) => admitted,
        Err(e) => {
            refuse(&mut stream, &limits, &e).await;
            return Err(AcceptError::Refused(e));
        }
    };
    let (reply, outcome) = ServerHello::respond(&hello, &limits);
    let write = tokio::time::timeout(deadline, stream.write_all(&reply.encode())).await;
    match (write, outcome) {
        (Ok(Ok(())), Ok(negotiated)) => Ok((
            Handshaken {
                stream,
                info: LinkInfo {
                    kind: TransportKind::Socket,
                    negotiated,
                    peer,
                },
                leftover: Vec::new(),
                own_max_frame: limits.max_frame_bytes as usize,
            },
            admitted,
        )),
        (_, Err(e)) => {
            let _ = stream.shutdown().await;
            Err(AcceptError::Refused(e))
        }
        (Ok(Err(e)), _) => Err(AcceptError::Io(format!("writing the server hello: {e}"))),
        (Err(_), _) => Err(AcceptError::Io(
            "the client does not read its server hello".into(),
        )),
    }
}

/// Whether a whole client hello already waits on `stream` (a look that
/// neither blocks nor consumes it): such a socket finishes its handshake
/// without waiting for its peer.
pub(crate) fn hello_waiting(stream: &UnixStream) -> bool {
    use rustix::net::{RecvFlags, recv};
    let mut hello = [0u8; CLIENT_HELLO_LEN];
    matches!(
        recv(stream, &mut hello, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((n, _)) if n == CLIENT_HELLO_LEN
    )
}

/// Writes a refusing server hello for `e` on a socket about to be closed
/// without reading its hello, if the socket takes it at once: one
/// non-blocking write, so a peer that never reads cannot hold the caller.
pub(crate) fn refuse_now(stream: &UnixStream, limits: &ServerLimits, e: &HandshakeError) {
    use rustix::net::send;
    let bytes = ServerHello::refuse(limits, e).encode();
    let _ = send(stream, &bytes, SEND_NOW);
}

async fn refuse(stream: &mut UnixStream, limits: &ServerLimits, e: &HandshakeError) {
    let hello = ServerHello::refuse(limits, e);
    let bytes = hello.encode();
    let write = stream.write_all(&bytes);
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::{Direct, connect_failed, on_socket_pair, read_frames};
    use crate::IpcError;
    use hearth_proto::{DEFAULT_MAX_FRAME_BYTES, Frame, Operation};
    use serde_json::json;
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::net::UnixStream as StdStream;

    fn request(id: u64, bytes: usize) -> Frame {
        Frame::json_request(Operation::Put, id, &json!({"blob": "x".repeat(bytes)}))
    }

    fn nothing_to_read(peer: &mut StdStream) -> bool {
        peer.set_nonblocking(true).unwrap();
        let read = peer.read(&mut [0u8; 1]);
        let empty = matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        peer.set_nonblocking(false).unwrap();
        empty
    }

    #[test]
    fn a_direct_write_puts_the_whole_frame_on_the_socket_at_once() {
        on_socket_pair(|_, _writer, direct, mut peer| {
            let frame = request(1, 100);
            let done = direct.try_write(&frame, DEFAULT_MAX_FRAME_BYTES, || true, || panic!());
            assert_eq!(done, Direct::Written);
            // No writer task ran: the frame is on the socket already.
            assert_eq!(read_frames(&mut peer, 1), vec![frame]);
        });
    }

    #[test]
    fn a_direct_write_never_goes_ahead_of_frames_waiting_for_the_writer() {
        on_socket_pair(|_, _writer, direct, mut peer| {
            let frame = request(1, 10);
            let done = direct.try_write(&frame, DEFAULT_MAX_FRAME_BYTES, || false, || panic!());
            assert_eq!(done, Direct::NotNow);
            assert!(nothing_to_read(&mut peer));
        });
    }

    #[test]
    fn a_frame_over_the_peers_limit_is_left_to_the_writer_to_split() {
        on_socket_pair(|_, _writer, direct, mut peer| {
            let done = direct.try_write(&request(1, 4096), 1024, || true, || panic!());
            assert_eq!(done, Direct::NotNow);
            assert!(nothing_to_read(&mut peer));
        });
    }

    #[test]
    fn what_a_full_socket_leaves_of_a_direct_write_goes_out_before_the_next_frame() {
        on_socket_pair(|rt, mut writer, direct, mut peer| {
            // Far more than a socket buffer holds, so the write is cut short.
            let big = request(1, 4 << 20);
            let mut handed = 0;
            let done = direct.try_write(&big, DEFAULT_MAX_FRAME_BYTES, || true, || handed += 1);
            assert_eq!(done, Direct::HandedOver);
            assert_eq!(handed, 1);
            // While the rest waits, nothing else is written directly.
            let small = request(2, 10);
            let again = direct.try_write(&small, DEFAULT_MAX_FRAME_BYTES, || true, || panic!());
            assert_eq!(again, Direct::NotNow);
            let reader = std::thread::spawn(move || read_frames(&mut peer, 2));
            rt.block_on(writer.write_frames(std::slice::from_ref(&small)))
                .unwrap();
            assert_eq!(reader.join().unwrap(), vec![big, small]);
        });
    }

    use std::path::Path;

    #[test]
    fn a_server_dying_while_we_connect_is_a_retryable_disconnect() {
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::BrokenPipe,
        ] {
            let e = connect_failed(Path::new("/run/x.sock"), Error::from(kind));
            assert!(
                matches!(e, IpcError::Disconnected { .. }),
                "{kind:?}: {e:?}"
            );
            assert!(e.to_string().contains("/run/x.sock"), "{e}");
        }
    }

    #[test]
    fn a_full_accept_queue_is_a_retryable_disconnect_that_says_so() {
        let e = connect_failed(Path::new("/run/x.sock"), Error::from(ErrorKind::WouldBlock));
        assert!(matches!(e, IpcError::Disconnected { .. }), "{e:?}");
        assert!(e.to_string().contains("accept queue is full"), "{e}");
    }

    #[test]
    fn other_connect_failures_stay_io_errors_with_the_path() {
        let e = connect_failed(
            Path::new("/run/x.sock"),
            Error::from(ErrorKind::PermissionDenied),
        );
        assert!(matches!(e, IpcError::Io { .. }), "{e:?}");
    }
}
