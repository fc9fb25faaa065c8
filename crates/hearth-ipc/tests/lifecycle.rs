//! A server's life on its channel: where the socket lives, one server per
//! channel, stale sockets, graceful shutdown, a server that goes away, and
//! change subscriptions resuming across a restart. Real sockets and real
//! (killed) processes.
//!
//! Another user: the tests run as root, so a copy of this binary runs a
//! client as `nobody` (uid 65534) against root's server — refused by the
//! client's own check of the socket directory, by the directory's mode,
//! and, with directory and socket opened to everyone, by the server's
//! peer-uid check; and it finds no shared-memory segment to open (none in
//! /dev/shm, the server's descriptors and mappings under /proc closed to
//! it). Where the tests do not run as root they say so on stderr and
//! check nothing; the rule itself is also unit-tested through the pure
//! `check_peer` policy function.
//!
//! Owns: lifecycle promises. Must never: sleep to wait for readiness or
//! assert on elapsed time.

mod common;

use common::{Fx, child_ready, park_forever, spawn_child, unique_channel, with_test_handlers};
use hearth_ipc::{Client, ConnectOptions, IpcError, Server, Subscription, TransportPreference};
use hearth_proto::ErrorCode;
use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// The child side of the process tests; a no-op in a normal run.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var("HEARTH_IPC_TEST_CHILD") else {
        return;
    };
    if mode == "connect" {
        return connect_and_report();
    }
    if mode == "look_for_segments" {
        return look_for_segments();
    }
    assert_eq!(mode, "serve");
    let channel = std::env::var("CHANNEL").unwrap();
    let data = std::env::var("DATA_DIR").unwrap();
    let mut builder = with_test_handlers(Server::builder().channel(&channel).data_dir(&data));
    if let Ok(dir) = std::env::var("SOCK_DIR") {
        builder = builder.socket_dir(dir);
    }
    let server = builder.start().unwrap();
    child_ready(&server.socket_path().unwrap().display().to_string());
    park_forever();
}

/// The child side of the other-user tests: connects by `SOCK_PATH`, or by
/// `CHANNEL` in `SOCK_DIR`, and reports `ok` or the error's code and
/// message on its READY line.
fn connect_and_report() {
    let options = match std::env::var("SOCK_PATH") {
        Ok(path) => ConnectOptions::new("other-user").socket_path(path),
        Err(_) => ConnectOptions::new(std::env::var("CHANNEL").unwrap())
            .socket_dir(std::env::var("SOCK_DIR").unwrap()),
    };
    let outcome = Client::connect_with(options.connect_timeout(Duration::from_secs(10)))
        .and_then(|client| client.get("secret"));
    match outcome {
        Ok(_) => child_ready("ok"),
        Err(e) => child_ready(&format!("{}|{e}", e.code().as_str())),
    }
}

/// The child side of the segment test: where another user could find a
/// shared-memory segment of the server `SERVER_PID` — its descriptors and
/// its mapped files under /proc, and /dev/shm — reported on the READY
/// line.
fn look_for_segments() {
    let pid = std::env::var("SERVER_PID").unwrap();
    let fds = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => format!("listed {}", entries.count()),
        Err(e) => format!("fds: {:?}", e.kind()),
    };
    let mapped = match std::fs::read_dir(format!("/proc/{pid}/map_files")) {
        Ok(entries) => format!("listed {}", entries.count()),
        Err(e) => format!("map_files: {:?}", e.kind()),
    };
    let shm: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains("hearth"))
                .collect()
        })
        .unwrap_or_default();
    child_ready(&format!("{fds}|{mapped}|dev/shm {shm:?}"));
}

fn serve_in_child(
    channel: &str,
    data: &std::path::Path,
    sock_dir: Option<&std::path::Path>,
    xdg: Option<&std::path::Path>,
) -> (std::process::Child, String) {
    let data = data.display().to_string();
    let sock = sock_dir.map(|d| d.display().to_string());
    let xdg = xdg.map(|d| d.display().to_string());
    let mut envs = vec![("CHANNEL", channel), ("DATA_DIR", data.as_str())];
    if let Some(sock) = &sock {
        envs.push(("SOCK_DIR", sock.as_str()));
    }
    let mut remove = vec![];
    match &xdg {
        Some(x) => envs.push(("XDG_RUNTIME_DIR", x.as_str())),
        None => remove.push("XDG_RUNTIME_DIR"),
    }
    spawn_child("serve", &envs, &remove)
}

#[test]
fn the_socket_lives_in_xdg_runtime_dir_or_tmp_with_private_modes() {
    let xdg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let channel = unique_channel("xdg");
    let (mut child, path) = serve_in_child(&channel, data.path(), None, Some(xdg.path()));
    let expected = xdg.path().join("hearth").join(format!("{channel}.sock"));
    assert_eq!(std::path::PathBuf::from(&path), expected);
    let dir_mode = std::fs::metadata(xdg.path().join("hearth"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let sock_meta = std::fs::symlink_metadata(&expected).unwrap();
    assert_eq!(dir_mode, 0o700);
    assert!(sock_meta.file_type().is_socket());
    assert_eq!(sock_meta.permissions().mode() & 0o777, 0o600);
    let client =
        Client::connect_with(ConnectOptions::new(&channel).socket_dir(xdg.path().join("hearth")))
            .unwrap();
    client.ping().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    // Without XDG_RUNTIME_DIR: /tmp/hearth-$UID.
    let channel = unique_channel("tmp");
    let data = tempfile::tempdir().unwrap();
    let (mut child, path) = serve_in_child(&channel, data.path(), None, None);
    let uid = std::fs::metadata(data.path())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    assert_eq!(path, format!("/tmp/hearth-{uid}/{channel}.sock"));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(format!("/tmp/hearth-{uid}/{channel}.lock"));
}

#[test]
fn a_second_server_on_the_same_channel_fails_naming_the_first_ones_pid() {
    let fx = Fx::socket(|b| b);
    let data = tempfile::tempdir().unwrap();
    let second = Server::builder()
        .channel(&fx.channel)
        .socket_dir(&fx.sock_dir)
        .data_dir(data.path())
        .start();
    match second {
        Err(e @ IpcError::ChannelInUse { pid, .. }) => {
            assert_eq!(pid, std::process::id());
            assert!(
                e.to_string()
                    .contains(&format!("process {}", std::process::id())),
                "{e}"
            );
            assert_eq!(e.code(), ErrorCode::Locked);
        }
        other => panic!("expected ChannelInUse, got {other:?}"),
    }
    // The first server is untouched.
    fx.client().ping().unwrap();
    // The same data directory is refused by the store, naming the pid too.
    let third = Server::builder().data_dir(&fx.data_dir).start();
    match third {
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::Locked);
            assert!(
                e.to_string().contains(&std::process::id().to_string()),
                "{e}"
            );
        }
        Ok(_) => panic!("a second server opened the same data directory"),
    }
    fx.server.shutdown().unwrap();
}

#[test]
fn a_killed_servers_stale_socket_is_detected_and_replaced() {
    let sock = tempfile::tempdir().unwrap();
    let sock_dir = sock.path().join("s");
    let data = tempfile::tempdir().unwrap();
    let channel = unique_channel("stale");
    let (mut child, path) = serve_in_child(&channel, data.path(), Some(&sock_dir), None);
    let options = ConnectOptions::new(&channel)
        .socket_dir(&sock_dir)
        .timeout(Duration::from_secs(20));
    let client = Client::connect_with(options.clone()).unwrap();
    client.put("before", json!({"n": 1})).unwrap();

    // A request in flight when the server dies ends with an error, not a hang.
    let mut started = client.subscribe_topic("test:started").unwrap();
    let slow = {
        let client = client.clone();
        std::thread::spawn(move || client.call("test:announce_and_sleep", json!({"ms": 600_000})))
    };
    // The handler runs: the call is in flight on the server (a thread that
    // called only after the kill would find no server, not lose its call).
    started.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let e = slow.join().unwrap().unwrap_err();
    assert!(matches!(e, IpcError::Disconnected { .. }), "{e:?}");

    // The socket file is still there, but nobody listens.
    assert!(std::path::Path::new(&path).exists());
    let e = Client::connect_with(options.clone()).unwrap_err();
    match &e {
        IpcError::ChannelNotFound { detail, .. } => {
            assert!(detail.contains("nobody listens"), "{detail}")
        }
        other => panic!("expected ChannelNotFound, got {other:?}"),
    }
    // The old client reconnects lazily and reports the same.
    assert!(matches!(
        client.ping().unwrap_err(),
        IpcError::ChannelNotFound { .. }
    ));

    // A new server takes the channel over (the lock died with the process).
    let server = with_test_handlers(
        Server::builder()
            .channel(&channel)
            .socket_dir(&sock_dir)
            .data_dir(data.path()),
    )
    .start()
    .unwrap();
    assert_eq!(client.get("before").unwrap(), Some(json!({"n": 1})));
    server.shutdown().unwrap();
    assert!(
        !std::path::Path::new(&path).exists(),
        "shutdown removes the socket"
    );
}

#[test]
fn no_server_means_channel_not_found_with_advice() {
    let sock = tempfile::tempdir().unwrap();
    let channel = unique_channel("none");
    // The directory does not exist.
    let e =
        Client::connect_with(ConnectOptions::new(&channel).socket_dir(sock.path().join("missing")))
            .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, IpcError::ChannelNotFound { .. }), "{e:?}");
    assert!(
        msg.contains(&format!(
            "hearth serve --ipc --channel {channel} --data-dir DIR"
        )),
        "{msg}"
    );
    // The directory exists (private) but holds no socket.
    let dir = sock.path().join("empty");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let e = Client::connect_with(ConnectOptions::new(&channel).socket_dir(&dir)).unwrap_err();
    assert!(e.to_string().contains("no socket file"), "{e}");
    // Invalid names are refused before anything is tried.
    assert!(matches!(
        Client::connect("../etc/passwd"),
        Err(IpcError::InvalidChannelName { .. })
    ));
}

#[test]
fn unsafe_socket_directories_and_overlong_paths_are_refused_clearly() {
    let base = tempfile::tempdir().unwrap();
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let e = Server::builder()
        .channel("x")
        .socket_dir(&open)
        .data_dir(data.path())
        .start()
        .unwrap_err();
    assert!(matches!(e, IpcError::UnsafeDirectory { .. }), "{e:?}");
    assert!(e.to_string().contains("chmod 700"), "{e}");
    let e = Client::connect_with(ConnectOptions::new("x").socket_dir(&open)).unwrap_err();
    assert!(matches!(e, IpcError::UnsafeDirectory { .. }), "{e:?}");

    let deep = base.path().join("d".repeat(60)).join("e".repeat(60));
    let e = Server::builder()
        .channel("x")
        .socket_dir(&deep)
        .data_dir(data.path())
        .start()
        .unwrap_err();
    assert!(e.to_string().contains("at most 107"), "{e}");
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests_then_removes_the_socket() {
    shutdown_finishes_in_flight(Fx::socket(|b| b));
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests_over_shared_memory_too() {
    // Shutdown stops the connection's ring thread, which ends its reader:
    // that must not read as a broken link that aborts what is in flight.
    for _ in 0..5 {
        shutdown_finishes_in_flight(Fx::start(common::Kind::Shm, |b| b));
    }
}

#[test]
fn an_answer_that_finishes_as_shutdown_begins_is_still_delivered() {
    // An async handler is released just as shutdown starts, as a Node
    // host's handler is: its answer leaves the in-flight table while
    // shutdown looks for idle connections, and the ring thread's end may
    // reach the connection before the shutdown signal does. Either way the
    // caller must get its answer, in every round.
    for round in 0..40u64 {
        let gate = common::Gate::new();
        let fx = Fx::start(common::Kind::Shm, |b| gate.register(b));
        let client = fx.client();
        let call = {
            let client = client.clone();
            std::thread::spawn(move || client.call("test:gate", json!({})))
        };
        gate.entered();
        let Fx { server, .. } = fx;
        let stopping = std::thread::spawn(move || server.shutdown());
        std::thread::sleep(Duration::from_micros(100 * (round % 5)));
        gate.release();
        stopping.join().unwrap().unwrap();
        let answer = call.join().unwrap();
        assert_eq!(answer.unwrap(), json!({"released": true}), "round {round}");
    }
}

fn shutdown_finishes_in_flight(fx: Fx) {
    let client = fx.client();
    let path = fx.socket_path();
    let call = {
        let client = client.clone();
        std::thread::spawn(move || client.call("test:sleep", json!({"ms": 200})))
    };
    assert!(fx.server.wait_for(LONG, |s| s.requests >= 1));
    let Fx { server, .. } = fx;
    server.shutdown().unwrap();
    assert_eq!(call.join().unwrap().unwrap(), json!({"slept": 200}));
    assert!(!path.exists());
    // Afterwards: the server is gone, within the call timeout.
    let e = client
        .with_timeout(Duration::from_secs(5))
        .ping()
        .unwrap_err();
    assert!(
        matches!(
            e,
            IpcError::ChannelNotFound { .. } | IpcError::Disconnected { .. }
        ),
        "{e:?}"
    );
}

#[test]
fn an_in_process_client_of_a_shut_down_server_is_told_so() {
    let fx = Fx::start(common::Kind::InProcess, |b| b);
    let client = fx.client();
    client.ping().unwrap();
    let Fx { server, .. } = fx;
    server.shutdown().unwrap();
    let e = client.ping().unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e:?}");
}

#[test]
fn a_change_stream_resumes_across_a_server_restart_with_every_change_once() {
    let sock = tempfile::tempdir().unwrap();
    let sock_dir = sock.path().join("s");
    let data = tempfile::tempdir().unwrap();
    let channel = unique_channel("resume");
    let start = || {
        Server::builder()
            .channel(&channel)
            .socket_dir(&sock_dir)
            .data_dir(data.path())
            .start()
            .unwrap()
    };
    let options = ConnectOptions::new(&channel)
        .socket_dir(&sock_dir)
        .timeout(Duration::from_secs(20))
        .resume_timeout(Duration::from_secs(60));
    let server = start();
    let client = Client::connect_with(options.clone()).unwrap();
    let mut changes = client
        .subscribe(Subscription::prefix("r:").from_seq(0))
        .unwrap();
    let writer = Client::connect_with(options.clone()).unwrap();
    let mut expected = Vec::new();
    for i in 0..50 {
        expected.push(writer.put(&format!("r:{i}"), json!({"i": i})).unwrap());
    }
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(changes.next().unwrap().unwrap().seq);
    }
    server.shutdown().unwrap();
    // The writer sees its connection end on its own time; a put sent on it
    // before then would fail as disconnected (a sent request is never
    // tried again), not reach the next server.
    common::until(
        Duration::from_secs(10),
        "the writer never saw the server go",
        || writer.transport().is_none(),
    );

    let server = start();
    for i in 50..100 {
        expected.push(writer.put(&format!("r:{i}"), json!({"i": i})).unwrap());
    }
    for _ in 20..100 {
        got.push(changes.next().unwrap().unwrap().seq);
    }
    assert_eq!(got, expected, "every change exactly once, in order");
    assert!(changes.resumes() >= 1);
    assert_eq!(
        changes.next_timeout(Duration::from_millis(1)).unwrap(),
        None
    );
    server.shutdown().unwrap();
}

#[test]
fn server_timeouts_too_long_for_the_clock_are_kept_as_the_longest() {
    let fx = Fx::socket(|b| {
        b.stall_timeout(Duration::MAX)
            .handshake_timeout(Duration::MAX)
            .shutdown_timeout(Duration::MAX)
    });
    let client = fx.client();
    client.put("long:1", json!({"v": 1})).unwrap();
    assert!(fx.server.wait_for(Duration::MAX, |s| s.requests >= 1));
    drop(client);
    fx.server.shutdown().unwrap();
}

/// `nobody`: the other user the next tests run a client as.
const NOBODY: (u32, u32) = (65534, 65534);

/// A copy of this test binary that `nobody` may run (the original may sit
/// under a directory only root can enter), or `None` when the tests do
/// not run as root, who alone can start a process as another user.
fn binary_for_another_user() -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::tempdir().unwrap();
    if std::fs::metadata(probe.path()).unwrap().uid() != 0 {
        eprintln!("not root: a client cannot be started as another user here; skipped");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("client");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((dir, exe))
}

/// A server run by root with its socket directory in a directory that
/// anyone may enter (so that what stops another user is the socket
/// directory's own mode and the server, not a parent's), and the binary
/// its other user runs.
struct AnotherUser {
    exe: std::path::PathBuf,
    server: Server,
    channel: String,
    sock_dir: std::path::PathBuf,
    _dirs: [tempfile::TempDir; 3],
}

impl AnotherUser {
    /// `None` when the tests do not run as root.
    fn start() -> Option<AnotherUser> {
        let (exe_dir, exe) = binary_for_another_user()?;
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let sock_dir = root.path().join("sock");
        let channel = unique_channel("other-user");
        let server = with_test_handlers(
            Server::builder()
                .channel(&channel)
                .data_dir(data.path())
                .socket_dir(&sock_dir),
        )
        .start()
        .unwrap();
        Some(AnotherUser {
            exe,
            server,
            channel,
            sock_dir,
            _dirs: [exe_dir, root, data],
        })
    }

    fn socket_path(&self) -> &std::path::Path {
        self.server.socket_path().unwrap()
    }
}

/// Runs the other user's client in `envs` and returns what it reported.
fn connect_as_nobody(exe: &std::path::Path, envs: &[(&str, &str)]) -> String {
    let (mut child, said) = common::spawn_child_with(exe, Some(NOBODY), "connect", envs, &[]);
    child.wait().unwrap();
    said
}

#[test]
fn another_user_cannot_reach_a_channel_through_its_private_directory() {
    let Some(other) = AnotherUser::start() else {
        return;
    };
    let (exe, channel) = (&other.exe, &other.channel);
    let dir = other.sock_dir.display().to_string();

    // By the channel's name: the client's own check of the directory
    // refuses a directory that another user owns.
    let said = connect_as_nobody(exe, &[("CHANNEL", channel), ("SOCK_DIR", &dir)]);
    assert!(said.starts_with("permission_denied|"), "{said}");
    assert!(said.contains("owned by uid 0"), "{said}");
    assert!(said.contains("a socket directory of your own"), "{said}");

    // Straight at the socket: the directory's mode 0700 stops the connect.
    let path = other.socket_path().display().to_string();
    let said = connect_as_nobody(exe, &[("SOCK_PATH", &path)]);
    assert!(said.starts_with("permission_denied|"), "{said}");
    assert!(
        said.contains("os error 13"),
        "refused by the system: {said}"
    );

    assert_eq!(
        other.server.stats().requests,
        0,
        "nothing reached the server"
    );
}

#[test]
fn the_server_refuses_another_user_even_when_its_socket_is_reachable() {
    let Some(other) = AnotherUser::start() else {
        return;
    };
    let sock_path = other.socket_path();
    let owner = Client::connect_with(ConnectOptions::new("owner").socket_path(sock_path)).unwrap();
    owner.put("secret", json!({"pin": 1234})).unwrap();
    // Someone opened the directory and the socket to everyone.
    std::fs::set_permissions(&other.sock_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();

    let path = sock_path.display().to_string();
    let said = connect_as_nobody(&other.exe, &[("SOCK_PATH", &path)]);
    assert!(said.starts_with("permission_denied|"), "{said}");
    assert!(
        said.contains("uid 65534"),
        "the refusal names the other user: {said}"
    );

    // The owner's connection and data are untouched.
    assert_eq!(owner.get("secret").unwrap(), Some(json!({"pin": 1234})));
    let requests = other.server.stats().requests;
    assert_eq!(requests, 2, "only the owner's put and get were served");
}

#[test]
fn another_user_finds_no_shared_memory_segment_to_open() {
    let Some(other) = AnotherUser::start() else {
        return;
    };
    let owner = Client::connect_with(
        ConnectOptions::new("owner")
            .socket_path(other.socket_path())
            .transport(TransportPreference::SharedMemory),
    )
    .unwrap();
    owner.put("secret", json!({"pin": 1234})).unwrap();
    // There is a segment to find: this process (server and client both)
    // maps it, a memfd.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.lines().any(|l| l.contains("/memfd:hearth-shm")),
        "the shared-memory connection maps a memfd"
    );

    let pid = std::process::id().to_string();
    let (mut child, said) = common::spawn_child_with(
        &other.exe,
        Some(NOBODY),
        "look_for_segments",
        &[("SERVER_PID", &pid)],
        &[],
    );
    child.wait().unwrap();
    assert_eq!(
        said,
        "fds: PermissionDenied|map_files: PermissionDenied|dev/shm []"
    );
    assert_eq!(owner.get("secret").unwrap(), Some(json!({"pin": 1234})));
}
