//! The memfd segment across a real descriptor: creation, the checks a
//! receiver makes, passing it over a Unix socket, and two mappings of one
//! segment talking through its rings.
//!
//! Owns: the promises `Segment::open` makes to a client that receives a
//! descriptor from someone else. Must never: depend on timing.
#![cfg(all(target_os = "linux", not(loom)))]

use hearth_shm::{
    Consumer, Direction, HEADER_BYTES, Layout, Producer, Segment, recv_with_fd, send_with_fd,
    write_raw,
};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

fn layout() -> Layout {
    Layout::new(4096, 8192).unwrap()
}

fn dup(seg: &Segment) -> OwnedFd {
    seg.fd().unwrap().try_clone_to_owned().unwrap()
}

#[test]
fn a_created_segment_opens_with_the_same_layout() {
    let seg = Segment::create(layout()).unwrap();
    let other = Segment::open(dup(&seg)).unwrap();
    assert_eq!(other.layout(), layout());
    assert_eq!(other.len(), HEADER_BYTES + 4096 + 8192);
}

#[test]
fn records_cross_between_two_mappings_both_ways() {
    let server = Segment::create(layout()).unwrap();
    let client = Arc::new(Segment::open(dup(&server)).unwrap());
    let server = Arc::new(server);
    let mut c_tx = Producer::new(client.clone(), Direction::ClientToServer);
    let mut s_rx = Consumer::new(server.clone(), Direction::ClientToServer);
    let mut s_tx = Producer::new(server, Direction::ServerToClient);
    let mut c_rx = Consumer::new(client, Direction::ServerToClient);
    let mut out = Vec::new();
    for i in 0..1000u32 {
        assert!(c_tx.push(&[&i.to_le_bytes(), b"request"]).unwrap());
        assert!(s_rx.try_pop(&mut out).unwrap());
        assert_eq!(&out[..4], i.to_le_bytes());
        assert!(s_tx.push(&[&out]).unwrap());
        assert!(c_rx.try_pop(&mut out).unwrap());
        assert_eq!(&out[4..], b"request");
    }
}

#[test]
fn a_plain_file_is_refused() {
    let file = tempfile_fd();
    let e = Segment::open(file).unwrap_err();
    assert!(e.to_string().contains("seals"), "{e}");
}

fn tempfile_fd() -> OwnedFd {
    let path = std::env::temp_dir().join(format!("hearth-shm-test-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(HEADER_BYTES as u64 + 8192).unwrap();
    std::fs::remove_file(&path).unwrap();
    file.into()
}

#[test]
fn an_unsealed_memfd_is_refused() {
    // A peer that skipped the seals: the same header, no F_SEAL_SHRINK.
    let fd = rustix::fs::memfd_create(
        "unsealed",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&fd, layout().segment_bytes() as u64).unwrap();
    write_raw(fd.as_fd(), 0, &layout().encode_header()).unwrap();
    let e = Segment::open(fd).unwrap_err();
    assert!(e.to_string().contains("do not forbid shrinking"), "{e}");
}

#[test]
fn a_segment_whose_header_is_scribbled_is_refused() {
    let seg = Segment::create(layout()).unwrap();
    write_raw(seg.fd().unwrap(), 0, b"NOTHEARTH").unwrap();
    let e = Segment::open(dup(&seg)).unwrap_err();
    assert!(e.to_string().contains("magic"), "{e}");
}

#[test]
fn a_segment_cannot_be_shrunk_by_the_peer() {
    let seg = Segment::create(layout()).unwrap();
    let fd = dup(&seg);
    let file = std::fs::File::from(fd);
    assert!(file.set_len(100).is_err());
    assert!(file.set_len(1 << 30).is_err());
}

#[test]
fn the_descriptor_crosses_a_unix_socket() {
    let seg = Segment::create(layout()).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    assert_eq!(
        send_with_fd(a.as_fd(), b"offer", seg.fd().unwrap()).unwrap(),
        5
    );
    let mut buf = [0u8; 16];
    let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"offer");
    let mapped = Segment::open(fd.unwrap()).unwrap();
    assert_eq!(mapped.layout(), layout());
}

#[test]
fn plain_bytes_arrive_without_a_descriptor() {
    use std::io::Write;
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"plain").unwrap();
    let mut buf = [0u8; 16];
    let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
    assert_eq!((n, fd.is_none()), (5, true));
}

#[test]
fn a_receive_on_an_empty_socket_would_block() {
    let (_a, b) = UnixStream::pair().unwrap();
    let e = recv_with_fd(b.as_fd(), &mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
}
