//! The in-process transport: two bounded channels of frames, one each way.
//!
//! Owns: a link pair for tests and for embedding a server in the program
//! that uses it, with the same behaviour as a socket where it matters:
//! bounded buffering, the stall timeout, EOF when the other side goes.
//! Must never: grow without bound or block a thread.

use super::{BoxFuture, FrameReader, FrameWriter, Link, LinkError, LinkInfo, TransportKind};
use hearth_proto::{Frame, Negotiated};
use std::time::Duration;
use tokio::sync::mpsc;

/// Frames buffered each way.
const CAPACITY: usize = 256;

struct MemReader {
    rx: mpsc::Receiver<Frame>,
}

impl FrameReader for MemReader {
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, LinkError>> {
        Box::pin(async move { Ok(self.rx.recv().await) })
    }
}

struct MemWriter {
    tx: Option<mpsc::Sender<Frame>>,
    stall: Option<Duration>,
}

impl FrameWriter for MemWriter {
    fn write_frames<'a>(&'a mut self, frames: &'a [Frame]) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(async move {
            let tx = self.tx.as_ref().ok_or(LinkError::Closed)?;
            for frame in frames {
                let send = tx.send(frame.clone());
                match self.stall {
                    Some(after) => tokio::time::timeout(after, send)
                        .await
                        .map_err(|_| LinkError::Stalled { after })?
                        .map_err(|_| LinkError::Closed)?,
                    None => send.await.map_err(|_| LinkError::Closed)?,
                }
            }
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.tx = None;
        Box::pin(async {})
    }
}

/// A connected pair of in-process links: `(client side, server side)`.
/// The server side's writer gives up on a client that does not read for
/// `stall`.
///
/// ```
/// use hearth_ipc::transport::memory;
/// use hearth_proto::{negotiate, ClientHello, ServerLimits};
/// use std::time::Duration;
/// let agreed = negotiate(&ClientHello::default(), &ServerLimits::default()).unwrap();
/// let (client, server) = memory::pair(agreed, Duration::from_secs(10));
/// assert_eq!(client.info.negotiated, server.info.negotiated);
/// ```
pub fn pair(negotiated: Negotiated, stall: Duration) -> (Link, Link) {
    let (to_server, from_client) = mpsc::channel(CAPACITY);
    let (to_client, from_server) = mpsc::channel(CAPACITY);
    let info = LinkInfo {
        kind: TransportKind::InProcess,
        negotiated,
        peer: None,
    };
    let client = Link {
        info,
        reader: Box::new(MemReader { rx: from_server }),
        writer: Box::new(MemWriter {
            tx: Some(to_server),
            stall: None,
        }),
    };
    let server = Link {
        info,
        reader: Box::new(MemReader { rx: from_client }),
        writer: Box::new(MemWriter {
            tx: Some(to_client),
            stall: Some(stall),
        }),
    };
    (client, server)
}
