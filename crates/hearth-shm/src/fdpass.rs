//! Passing a descriptor over a Unix stream socket (`SCM_RIGHTS`).
//!
//! Owns: sending bytes with one descriptor attached and receiving bytes
//! with at most one descriptor, both non-blocking (the caller's event loop
//! waits for readiness and retries on `WouldBlock`). Must never: block,
//! raise `SIGPIPE`, leak a received descriptor into a child process (they
//! arrive close-on-exec), or keep more than one received descriptor (extra
//! ones are closed).
//!
//! On Linux and Android the kernel keeps the `SIGPIPE` and close-on-exec
//! promises for us (`MSG_NOSIGNAL`, `MSG_CMSG_CLOEXEC`). Elsewhere (the
//! BSDs and macOS, where hearth uses no shared memory but this module
//! still builds) a received descriptor is marked close-on-exec just after
//! it arrives, and `SIGPIPE` is left to the process's disposition, which
//! Rust programs and Node both set to ignore.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::{IoSlice, IoSliceMut};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::mem::MaybeUninit;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT.union(SendFlags::NOSIGNAL);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT;

#[cfg(any(target_os = "linux", target_os = "android"))]
const RECV_FLAGS: RecvFlags = RecvFlags::DONTWAIT.union(RecvFlags::CMSG_CLOEXEC);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const RECV_FLAGS: RecvFlags = RecvFlags::DONTWAIT;

/// The kernel marked it close-on-exec on arrival (`RECV_FLAGS`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn mark_cloexec(_fd: &OwnedFd) -> std::io::Result<()> {
    Ok(())
}

/// No `MSG_CMSG_CLOEXEC` here: mark it now, before the caller can spawn.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn mark_cloexec(fd: &OwnedFd) -> std::io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(())
}

/// Sends `bytes` on the connected stream socket `socket` with `fd` attached
/// to them. Returns how many bytes were sent (the descriptor travels with
/// the first of them; send the rest plainly). `WouldBlock` when the socket
/// buffer is full.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use hearth_shm::{recv_with_fd, send_with_fd};
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// let (a, b) = UnixStream::pair().unwrap();
/// let file = std::fs::File::open("/dev/null").unwrap();
/// assert_eq!(send_with_fd(a.as_fd(), b"hi", file.as_fd()).unwrap(), 2);
/// let mut buf = [0u8; 8];
/// let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
/// assert_eq!((&buf[..n], fd.is_some()), (&b"hi"[..], true));
/// # }
/// ```
pub fn send_with_fd(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> std::io::Result<usize> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other(
            "the control buffer has no room for one descriptor",
        ));
    }
    let n = rustix::net::sendmsg(socket, &[IoSlice::new(bytes)], &mut control, SEND_FLAGS)?;
    Ok(n)
}

/// Receives bytes into `buf` from `socket`, with the first descriptor
/// attached to them if there is one (any others are closed). `Ok((0, _))`
/// means end of stream; `WouldBlock` when nothing is waiting.
pub fn recv_with_fd(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RECV_FLAGS,
    )?;
    let mut received = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                if received.is_none() {
                    mark_cloexec(&fd)?;
                    received = Some(fd);
                }
                // Any further descriptor is dropped (closed) here.
            }
        }
    }
    Ok((msg.bytes, received))
}
