//! The Unix-socket transport: the handshake on both sides, then frames on
//! the byte stream.
//!
//! Owns: connecting and accepting (with the handshake and its deadline),
//! reading frames through the bounded incremental [`FrameDecoder`], and
//! writing frames with a stall timeout. Must never: read past the client
//! hello before answering it, allocate for a length before the decoder
//! accepted it, or wait on a peer that does not read for longer than the
//! stall timeout.

use super::{BoxFuture, FrameReader, FrameWriter, Link, LinkError, LinkInfo, TransportKind};
use crate::error::IpcError;
use crate::policy::PeerCredentials;
use hearth_proto::{
    CLIENT_HELLO_LEN, ClientHello, Frame, FrameDecoder, HandshakeError, MAX_REASON_BYTES,
    SERVER_HELLO_FIXED_LEN, ServerHello, ServerLimits, conclude, encode_frame,
};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

const READ_BUF: usize = 64 * 1024;
/// Frames at least this large are written straight from their payload
/// instead of being copied into the write buffer.
const DIRECT_WRITE: usize = 64 * 1024;

fn peer_of(stream: &UnixStream) -> Option<PeerCredentials> {
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

/// Frames to a socket.
struct SocketWriter {
    half: OwnedWriteHalf,
    buf: Vec<u8>,
    stall: Option<Duration>,
}

impl SocketWriter {
    async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let mut off = 0;
        while off < bytes.len() {
            let write = self.half.write(&bytes[off..]);
            let n = match self.stall {
                Some(after) => tokio::time::timeout(after, write)
                    .await
                    .map_err(|_| LinkError::Stalled { after })??,
                None => write.await?,
            };
            if n == 0 {
                return Err(LinkError::Closed);
            }
            off += n;
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
        for frame in frames {
            if frame.payload.len() >= DIRECT_WRITE {
                self.flush_buf().await?;
                let mut header = frame.header;
                header.payload_len = u32::try_from(frame.payload.len()).map_err(|_| {
                    LinkError::Io(std::io::Error::other("a frame payload over 4 GiB"))
                })?;
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

impl FrameWriter for SocketWriter {
    fn write_frames<'a>(&'a mut self, frames: &'a [Frame]) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(self.write_all_frames(frames))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.half.shutdown().await;
        })
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
    /// The socket as a link of frames; `stall`: how long a write may make
    /// no progress.
    pub(crate) fn into_link(self, stall: Option<Duration>) -> Link {
        let (read, write) = self.stream.into_split();
        Link {
            info: self.info,
            reader: Box::new(SocketReader::new(read, self.own_max_frame, &self.leftover)),
            writer: Box::new(SocketWriter {
                half: write,
                buf: Vec::new(),
                stall,
            }),
        }
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
    let attempt = async {
        let mut stream = match UnixStream::connect(path).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_found("there is no socket file".into()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(not_found(
                    "the socket file exists but nobody listens on it (the server stopped or was killed)".into(),
                ));
            }
            Err(e) => return Err(connect_failed(path, e)),
        };
        let peer = peer_of(&stream);
        stream
            .write_all(&hello.encode())
            .await
            .map_err(|e| disconnected_in_handshake(&e))?;
        let mut got = Vec::with_capacity(SERVER_HELLO_FIXED_LEN);
        let mut chunk = [0u8; 512];
        let (reply, used) = loop {
            match ServerHello::decode(&got) {
                Ok(done) => break done,
                Err(e) if e.is_incomplete() => {}
                Err(e) => return Err(IpcError::Handshake(e)),
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| disconnected_in_handshake(&e))?;
            if n == 0 {
                return Err(IpcError::Disconnected {
                    reason: "the server closed the connection during the handshake".into(),
                });
            }
            got.extend_from_slice(&chunk[..n]);
            if got.len() > SERVER_HELLO_FIXED_LEN + MAX_REASON_BYTES + chunk.len() {
                return Err(IpcError::Protocol(
                    "the server hello is longer than the protocol allows".into(),
                ));
            }
        };
        let negotiated = conclude(&hello, &reply)?;
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
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(IpcError::Timeout {
            operation: format!("connecting to channel {channel:?}"),
            timeout: deadline,
        }),
    }
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

/// Performs the server side of the handshake on an accepted socket:
/// reads the client hello (refusing bad magic as soon as it arrives), asks
/// `admit` about the peer, answers, and returns the handshaken socket.
pub(crate) async fn accept<T>(
    mut stream: UnixStream,
    limits: ServerLimits,
    admit: impl FnOnce(Option<&PeerCredentials>) -> Result<T, HandshakeError>,
    deadline: Duration,
) -> Result<(Handshaken, T), AcceptError> {
    let peer = peer_of(&stream);
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

async fn refuse(stream: &mut UnixStream, limits: &ServerLimits, e: &HandshakeError) {
    let hello = ServerHello::refuse(limits, e);
    let bytes = hello.encode();
    let write = stream.write_all(&bytes);
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::connect_failed;
    use crate::IpcError;
    use std::io::{Error, ErrorKind};
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
