//! Shared test helpers: servers on private temporary directories with the
//! test handlers, and a raw socket client that speaks bytes.
//!
//! Owns: fixtures only. Must never: sleep to wait for readiness (a started
//! server is ready; counters are waited on with `Server::wait_for`).
#![allow(dead_code, unreachable_pub)]

use hearth_ipc::{
    Client, ConnectOptions, HandlerError, Server, ServerBuilder, TransportPreference,
};
use hearth_proto::{
    ClientHello, Frame, FrameDecoder, FrameFlags, FrameKind, Operation, ServerHello, encode_frame,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tempfile::TempDir;

/// A channel name unique in this test run.
pub fn unique_channel(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Which transport a fixture's clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The Unix socket, forced.
    Socket,
    /// Shared memory, required.
    Shm,
    InProcess,
}

/// Waits until `done()` holds, looking every millisecond; fails with
/// `what` if it does not within `within`. For a state no counter of
/// `Server::wait_for` signals.
pub fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A handler, `test:gate`, that answers `{"released": true}` only once
/// the test releases it: a call surely in flight on the server.
pub struct Gate {
    release: std::sync::Arc<tokio::sync::Notify>,
    entered_tx: std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Sender<()>>>,
    entered: std::sync::mpsc::Receiver<()>,
}

impl Gate {
    pub fn new() -> Gate {
        let (entered_tx, entered) = std::sync::mpsc::channel();
        Gate {
            release: Default::default(),
            entered_tx: std::sync::Arc::new(std::sync::Mutex::new(entered_tx)),
            entered,
        }
    }

    /// Registers `test:gate` on `builder`.
    pub fn register(&self, builder: ServerBuilder) -> ServerBuilder {
        let (release, entered_tx) = (self.release.clone(), self.entered_tx.clone());
        builder.async_handler("test:gate", move |_, _| {
            let (release, entered_tx) = (release.clone(), entered_tx.clone());
            async move {
                let _ = entered_tx.lock().unwrap().send(());
                release.notified().await;
                Ok(json!({"released": true}))
            }
        })
    }

    /// Waits (at most 60 s) until a call has entered the handler.
    pub fn entered(&self) {
        self.entered
            .recv_timeout(Duration::from_secs(60))
            .expect("a call entered the gate");
    }

    /// Lets the call in the handler answer.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// Registers the handlers the tests call.
pub fn with_test_handlers(builder: ServerBuilder) -> ServerBuilder {
    builder
        .handler("test:echo", |_ctx, payload| Ok(payload))
        .handler("test:fail", |_ctx, payload| {
            Err(HandlerError::not_found(format!(
                "nothing called {}",
                payload["name"].as_str().unwrap_or("?")
            )))
        })
        .handler(
            "test:panic",
            |_ctx, _payload| -> Result<Value, HandlerError> {
                panic!("the test handler panicked on purpose")
            },
        )
        .handler("test:whoami", |ctx, _payload| {
            Ok(json!({
                "connection": ctx.connection_id(),
                "pid": ctx.peer_pid(),
                "uid": ctx.peer_uid(),
                "transport": ctx.transport().name(),
                "name": ctx.handler_name(),
            }))
        })
        .handler("test:publish", |ctx, payload| {
            let n = ctx.publish(
                payload["topic"].as_str().unwrap_or("x"),
                &payload["payload"],
            )?;
            Ok(json!({"delivered": n}))
        })
        .async_handler("test:sleep", |_ctx, payload| async move {
            let ms = payload["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({"slept": ms}))
        })
        .async_handler("test:announce_and_sleep", |ctx, payload| async move {
            // Tells `test:started` subscribers the call is in flight, then
            // sleeps: a request that is surely being worked on.
            ctx.publish("test:started", &payload)?;
            let ms = payload["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({"slept": ms}))
        })
        .handler("test:login", |_ctx, payload| {
            Ok(json!({"success": payload["password"] == "pw"}))
        })
        .rate_limit("test:login", 0.0, 2)
}

/// A running server on temporary directories.
pub struct Fx {
    pub server: Server,
    pub kind: Kind,
    pub channel: String,
    pub sock_dir: PathBuf,
    pub data_dir: PathBuf,
    _dirs: Vec<TempDir>,
}

impl Fx {
    /// A server with the test handlers, configured further by `configure`.
    pub fn start(kind: Kind, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Fx {
        let sock = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let channel = unique_channel("c");
        // The server creates the private (0700) directory itself.
        let sock_dir = sock.path().join("s");
        let builder = Server::builder()
            .channel(&channel)
            .socket_dir(&sock_dir)
            .data_dir(data.path());
        let server = configure(with_test_handlers(builder)).start().unwrap();
        Fx {
            server,
            kind,
            channel,
            sock_dir,
            data_dir: data.path().to_path_buf(),
            _dirs: vec![sock, data],
        }
    }

    pub fn socket(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Fx {
        Fx::start(Kind::Socket, configure)
    }

    pub fn options(&self) -> ConnectOptions {
        let transport = match self.kind {
            Kind::Socket => TransportPreference::Socket,
            Kind::Shm => TransportPreference::SharedMemory,
            Kind::InProcess => TransportPreference::Auto,
        };
        ConnectOptions::new(&self.channel)
            .socket_dir(&self.sock_dir)
            .timeout(Duration::from_secs(20))
            .transport(transport)
    }

    pub fn client(&self) -> Client {
        self.client_with(|o| o)
    }

    pub fn client_with(&self, f: impl FnOnce(ConnectOptions) -> ConnectOptions) -> Client {
        let options = f(self.options());
        match self.kind {
            Kind::Socket | Kind::Shm => Client::connect_with(options).unwrap(),
            Kind::InProcess => self.server.connect_in_process_with(options).unwrap(),
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.sock_dir.join(format!("{}.sock", self.channel))
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(&self.socket_path())
    }
}

/// Has `clients` threads, each with its own client of `fx` (`check`ed
/// first), write `puts` documents over `keys` ids of their own
/// (`w{c}:{i % keys}`), reading each write back at once; then checks that
/// every client's last write is what a fresh client reads.
pub fn clients_write_and_read_back(
    fx: &Fx,
    clients: usize,
    puts: usize,
    keys: usize,
    check: impl Fn(&Client) + Sync,
) {
    std::thread::scope(|s| {
        for c in 0..clients {
            let client = fx.client();
            let check = &check;
            s.spawn(move || {
                check(&client);
                for i in 0..puts {
                    let id = format!("w{c}:{}", i % keys);
                    client.put(&id, json!({"c": c, "i": i})).unwrap();
                    assert_eq!(client.get(&id).unwrap(), Some(json!({"c": c, "i": i})));
                }
            });
        }
    });
    let client = fx.client();
    let last = puts - 1;
    for c in 0..clients {
        assert_eq!(
            client.get(&format!("w{c}:{}", last % keys)).unwrap(),
            Some(json!({"c": c, "i": last}))
        );
    }
}

/// One frame of a request split into `MORE` frames, encoded (`more`: not
/// its last).
fn part_frame(op: Operation, id: u64, payload: &[u8], more: bool) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        FrameKind::Request,
        part_flags(more),
        Some(op),
        id,
        payload,
    )
    .unwrap();
    out
}

/// The flags of a frame of a split message: `MORE` on all but the last.
fn part_flags(more: bool) -> FrameFlags {
    if more {
        FrameFlags::JSON | FrameFlags::MORE
    } else {
        FrameFlags::JSON
    }
}

/// A client that speaks raw bytes on the socket.
pub struct Raw {
    pub stream: UnixStream,
    decoder: FrameDecoder,
    pending: Vec<u8>,
}

impl Raw {
    /// Connects without a handshake.
    pub fn connect_bare(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).unwrap();
        // A failsafe so a broken server fails the test instead of hanging
        // it; nothing waits on this for readiness.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Raw::from_stream(stream)
    }

    /// A raw client on a socket already connected.
    pub fn from_stream(stream: UnixStream) -> Raw {
        Raw {
            stream,
            decoder: FrameDecoder::new(),
            pending: Vec::new(),
        }
    }

    /// Connects and completes the handshake.
    pub fn connect(path: &Path) -> Raw {
        let mut raw = Raw::connect_bare(path);
        raw.stream
            .write_all(&ClientHello::default().encode())
            .unwrap();
        let hello = raw.read_server_hello();
        assert!(hello.status.is_ok(), "refused: {}", hello.reason);
        raw
    }

    pub fn read_server_hello(&mut self) -> ServerHello {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match ServerHello::decode(&got) {
                Ok((hello, used)) => {
                    self.pending.extend_from_slice(&got[used..]);
                    return hello;
                }
                Err(e) if e.is_incomplete() => {}
                Err(e) => panic!("bad server hello: {e}"),
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed during the handshake");
            got.extend_from_slice(&buf[..n]);
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, kind: FrameKind, op: Option<Operation>, id: u64, payload: &[u8]) {
        let mut out = Vec::new();
        encode_frame(&mut out, kind, FrameFlags::JSON, op, id, payload).unwrap();
        self.send_bytes(&out);
    }

    /// Sends one frame of a request split into `MORE` frames (`more`: not
    /// its last); false if the server had closed the socket.
    pub fn send_part(&mut self, op: Operation, id: u64, payload: &[u8], more: bool) -> bool {
        self.stream
            .write_all(&part_frame(op, id, payload, more))
            .is_ok()
    }

    pub fn request(&mut self, op: Operation, id: u64, payload: Value) {
        self.send(
            FrameKind::Request,
            Some(op),
            id,
            payload.to_string().as_bytes(),
        );
    }

    /// The next frame, or `None` at EOF.
    pub fn read_frame(&mut self) -> Option<Frame> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(frame);
            }
            if !self.pending.is_empty() {
                let taken = self.decoder.push(&self.pending);
                self.pending.drain(..taken);
                continue;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading the raw socket: {e}"),
            }
        }
    }

    /// The next frame's JSON, with its kind and id.
    pub fn read_json(&mut self) -> (FrameKind, u64, Value) {
        let frame = self.read_frame().expect("a frame, not EOF");
        let value = if frame.payload.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&frame.payload).unwrap()
        };
        (frame.header.kind, frame.header.request_id, value)
    }

    /// Reads until EOF, returning the frames seen.
    pub fn read_to_eof(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.read_frame() {
            frames.push(frame);
        }
        frames
    }
}

/// A client that attached to shared memory by hand (hearth-shm's raw API)
/// and can write anything into its segment.
pub struct RawShm {
    pub stream: UnixStream,
    /// A duplicate of the segment's descriptor, for `write_raw`.
    pub fd: std::os::fd::OwnedFd,
    pub segment: std::sync::Arc<hearth_shm::Segment>,
    pub tx: hearth_shm::Producer<hearth_shm::Segment>,
    pub rx: hearth_shm::Consumer<hearth_shm::Segment>,
}

impl RawShm {
    /// Handshake, attach request, offer (with the descriptor), confirm.
    pub fn connect(path: &Path) -> RawShm {
        RawShm::connect_asking(path, 0)
    }

    /// [`RawShm::connect`] asking for rings of `ring_bytes` each (0: the
    /// server's size).
    pub fn connect_asking(path: &Path, ring_bytes: u32) -> RawShm {
        use hearth_proto::{ATTACH_OK, AttachConfirm, AttachOffer, AttachRequest};
        use hearth_shm::{Consumer, Direction, Producer, Segment, recv_with_fd};
        use std::os::fd::AsFd;
        let mut raw = Raw::connect(path);
        raw.send_bytes(
            &AttachRequest {
                ring_bytes,
                flags: 0,
            }
            .encode(),
        );
        let mut got = Vec::new();
        let mut fd = None;
        while got.len() < 16 {
            // Blocks until bytes are there; the descriptor rides on them.
            wait_readable(&raw.stream);
            let mut buf = vec![0u8; 16 - got.len()];
            let (n, received) = recv_with_fd(raw.stream.as_fd(), &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            fd = fd.or(received);
        }
        let offer = AttachOffer::decode(&got).unwrap();
        assert_eq!(offer.status, ATTACH_OK, "the server declined shared memory");
        let fd = fd.expect("the offer carries the segment");
        let dup = fd.try_clone().unwrap();
        let segment = std::sync::Arc::new(Segment::open(fd).unwrap());
        raw.send_bytes(&AttachConfirm { status: ATTACH_OK }.encode());
        RawShm {
            stream: raw.stream,
            fd: dup,
            tx: Producer::new(segment.clone(), Direction::ClientToServer),
            rx: Consumer::new(segment.clone(), Direction::ServerToClient),
            segment,
        }
    }

    /// Puts one frame on the client→server ring (true if it fit).
    pub fn send(
        &mut self,
        kind: FrameKind,
        op: Option<Operation>,
        id: u64,
        payload: &[u8],
    ) -> bool {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, kind, FrameFlags::JSON, op, id, payload).unwrap();
        self.tx.push(&[&bytes]).unwrap_or(false)
    }

    /// Puts one frame of a request split into `MORE` frames on the ring
    /// (`more`: not its last); true if it fit.
    pub fn send_part(&mut self, op: Operation, id: u64, payload: &[u8], more: bool) -> bool {
        let bytes = part_frame(op, id, payload, more);
        self.tx.push(&[&bytes]).unwrap_or(false)
    }

    pub fn request(&mut self, op: Operation, id: u64, payload: Value) -> bool {
        self.send(
            FrameKind::Request,
            Some(op),
            id,
            payload.to_string().as_bytes(),
        )
    }

    /// Writes `bytes` at `offset` of the segment, as a hostile peer would.
    pub fn scribble(&self, offset: u64, bytes: &[u8]) {
        use std::os::fd::AsFd;
        hearth_shm::write_raw(self.fd.as_fd(), offset, bytes).unwrap();
    }

    /// Wakes the server's ring thread (as a push would).
    pub fn wake_server(&self) {
        self.tx.consumer_waker().wake();
    }

    /// The next frame from the server→client ring; `None` once the server
    /// closed the socket and nothing more is on the ring. A 30 s failsafe
    /// turns a hang into a test failure.
    pub fn read_frame(&mut self) -> Option<Frame> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut record = Vec::new();
        loop {
            match self.rx.try_pop(&mut record) {
                Ok(true) => return Some(record_frame(&record)),
                Ok(false) => {}
                Err(e) => panic!("the server's ring is corrupt: {e}"),
            }
            if self.socket_closed() {
                // One more look: the server writes before it closes.
                return match self.rx.try_pop(&mut record) {
                    Ok(true) => Some(record_frame(&record)),
                    _ => None,
                };
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no frame and no close within 30 s"
            );
            let _ = self
                .rx
                .wait_for_data(Some(Duration::from_millis(20)), &|| false);
        }
    }

    /// Whether the server closed its end of the socket (non-blocking).
    pub fn socket_closed(&self) -> bool {
        use rustix::net::{RecvFlags, recv};
        let mut one = [0u8; 1];
        match recv(
            &self.stream,
            &mut one,
            RecvFlags::PEEK | RecvFlags::DONTWAIT,
        ) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => e == rustix::io::Errno::CONNRESET,
        }
    }

    /// Blocks until the server closes the socket (30 s failsafe).
    pub fn wait_closed(&self) {
        let mut one = [0u8; 1];
        match (&self.stream).read(&mut one) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the server to close the socket, got {other:?}"),
        }
    }
}

/// The frame in a ring record from the server (trusted in tests).
fn record_frame(record: &[u8]) -> Frame {
    let header: &[u8; hearth_proto::HEADER_LEN] =
        record[..hearth_proto::HEADER_LEN].try_into().unwrap();
    Frame {
        header: hearth_proto::FrameHeader::decode(header).unwrap(),
        payload: record[hearth_proto::HEADER_LEN..].to_vec(),
    }
}

/// Blocks until `stream` is readable (data or EOF), 30 s at most.
fn wait_readable(stream: &UnixStream) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(stream, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    let n = poll(&mut fds, Some(&timeout)).unwrap();
    assert!(n > 0, "nothing readable within 30 s");
}

/// Runs this test binary again as a child process in `mode` (see each
/// test file's `child_process_entry`), with `envs`. Returns the child and
/// what it printed after `READY` (it prints that line once it is set up).
pub fn spawn_child(
    mode: &str,
    envs: &[(&str, &str)],
    remove: &[&str],
) -> (std::process::Child, String) {
    let exe = std::env::current_exe().unwrap();
    spawn_child_with(&exe, None, mode, envs, remove)
}

/// [`spawn_child`] running `exe` (a copy of this test binary), as the
/// user and group `user` when given (the caller must be root).
pub fn spawn_child_with(
    exe: &Path,
    user: Option<(u32, u32)>,
    mode: &str,
    envs: &[(&str, &str)],
    remove: &[&str],
) -> (std::process::Child, String) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(exe);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd.args([
        "child_process_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HEARTH_IPC_TEST_CHILD", mode)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                // libtest prints `test NAME ... ` without a newline first.
                if let Some((_, rest)) = line.split_once("READY") {
                    // Keep draining the pipe so the child never blocks on it.
                    std::thread::spawn(move || for _ in lines {});
                    return (child, rest.trim().to_string());
                }
            }
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!("the child process ended before it was ready: {other:?} ({status:?})");
            }
        }
    }
}

/// Tells a child process it is set up.
pub fn child_ready(detail: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {detail}").unwrap();
    out.flush().unwrap();
}

/// Blocks a child process until it is killed.
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// The fields of a `/proc/.../stat` line after the command name (which may
/// hold spaces and ends at the last `)`): index 0 is the state, 36 the CPU
/// the task last ran on.
pub fn stat_fields(stat_path: &Path) -> Vec<String> {
    let stat = std::fs::read_to_string(stat_path).unwrap();
    stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .map(str::to_string)
        .collect()
}

/// What a sandboxed child process may not do ([`enter_sandbox`]).
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// `memfd_create` fails with `EPERM`, as in sandboxes that forbid
    /// anonymous files: such a server cannot make a segment.
    NoMemfd,
    /// `mmap` of a shared mapping fails with `EPERM` (private mappings,
    /// which the allocator and thread stacks use, still work): such a
    /// client cannot map the segment it is sent.
    NoSharedMappings,
}

#[cfg(target_os = "linux")]
impl Sandbox {
    /// The sandbox named by `name` (`no-memfd`, `no-shared-mappings`).
    pub fn named(name: &str) -> Sandbox {
        match name {
            "no-memfd" => Sandbox::NoMemfd,
            "no-shared-mappings" => Sandbox::NoSharedMappings,
            other => panic!("unknown sandbox {other}"),
        }
    }
}

/// Confines this whole process, every thread and every thread it starts
/// later, with a seccomp filter that makes the calls `sandbox` forbids fail
/// with `EPERM` (and sets `no_new_privs`, which an unprivileged filter
/// needs). There is no way back: call it only in a child process.
#[cfg(target_os = "linux")]
pub fn enter_sandbox(sandbox: Sandbox) {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    use std::collections::BTreeMap;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    match sandbox {
        Sandbox::NoMemfd => {
            // No condition: every call matches.
            rules.insert(libc::SYS_memfd_create, vec![]);
        }
        Sandbox::NoSharedMappings => {
            // mmap(addr, len, prot, flags, fd, off): flags is argument 3;
            // MAP_SHARED's bit is also set in MAP_SHARED_VALIDATE.
            let shared = libc::MAP_SHARED as u64;
            let condition = SeccompCondition::new(
                3,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(shared),
                shared,
            )
            .unwrap();
            rules.insert(
                libc::SYS_mmap,
                vec![SeccompRule::new(vec![condition]).unwrap()],
            );
        }
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH
            .try_into()
            .expect("seccompiler knows this architecture"),
    )
    .unwrap();
    let program: BpfProgram = filter.try_into().unwrap();
    seccompiler::apply_filter_all_threads(&program).unwrap();
}
