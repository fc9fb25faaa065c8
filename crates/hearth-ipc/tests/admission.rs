//! Who gets in: the limits that keep one client process from taking the
//! whole server — its connections, its sockets still in the handshake,
//! the shared memory its connections may ask for, and its subscriptions
//! (and those of all processes together).
//!
//! Owns: the promise that a process over its own limits is refused or
//! closed while other processes still connect and are served. Must never:
//! sleep to wait or assert on elapsed time; waits are on signalled
//! counters (`Server::wait_for`) with generous failsafe limits.

mod common;

#[cfg(target_os = "linux")]
use common::RawShm;
use common::{Fx, Raw, child_ready, spawn_child};
use hearth_ipc::{
    Client, ConnectOptions, HANDSHAKE_LIMIT_PREFIX, PROCESS_LIMIT_PREFIX, Subscription,
};
use hearth_proto::{ClientHello, ErrorCode, FrameKind, HandshakeStatus, Operation};
use serde_json::{Value, json};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
/// A handshake timeout no test outlives: a silent socket the server does
/// not close at once stays open.
const FOREVER: Duration = Duration::from_secs(24 * 3600);

/// The child side of the process tests; a no-op in a normal run.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var("HEARTH_IPC_TEST_CHILD") else {
        return;
    };
    match mode.as_str() {
        "connect" => connect_and_report(),
        "subscribe" => subscribe_and_report(),
        "serve" => serve_with_few_descriptors(),
        other => panic!("unknown child mode {other}"),
    }
}

/// The child side of the descriptor test: a server on `CHANNEL` in
/// `SOCK_DIR` whose process may open only `NOFILE` descriptors, with a
/// handshake timeout no test outlives.
fn serve_with_few_descriptors() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let nofile: u64 = std::env::var("NOFILE").unwrap().parse().unwrap();
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = Some(nofile);
    setrlimit(Resource::Nofile, limit).unwrap();
    let server = common::with_test_handlers(
        hearth_ipc::Server::builder()
            .channel(std::env::var("CHANNEL").unwrap())
            .socket_dir(std::env::var("SOCK_DIR").unwrap())
            .data_dir(std::env::var("DATA_DIR").unwrap()),
    )
    .handshake_timeout(FOREVER)
    .start()
    .unwrap();
    child_ready(&server.socket_path().unwrap().display().to_string());
    common::park_forever();
}

/// Connects to `CHANNEL` in `SOCK_DIR`, pings, and reports `ok` or the
/// error's code and message on its READY line.
fn connect_and_report() {
    let options = ConnectOptions::new(std::env::var("CHANNEL").unwrap())
        .socket_dir(std::env::var("SOCK_DIR").unwrap())
        .connect_timeout(Duration::from_secs(30));
    match Client::connect_with(options).and_then(|client| client.ping()) {
        Ok(_) => child_ready("ok"),
        Err(e) => child_ready(&format!("{}|{e}", e.code().as_str())),
    }
}

/// Connects to `CHANNEL` in `SOCK_DIR`, subscribes to every topic and to
/// every change, and reports `ok` or the first error's code and message on
/// its READY line.
fn subscribe_and_report() {
    let options = ConnectOptions::new(std::env::var("CHANNEL").unwrap())
        .socket_dir(std::env::var("SOCK_DIR").unwrap())
        .connect_timeout(Duration::from_secs(30));
    let subscribed = Client::connect_with(options).and_then(|client| {
        let topics = client.subscribe_topic("*")?;
        let changes = client.subscribe(Subscription::all())?;
        Ok((client, topics, changes))
    });
    match subscribed {
        Ok(_) => child_ready("ok"),
        Err(e) => child_ready(&format!("{}|{e}", e.code().as_str())),
    }
}

/// What a client in another process of `fx` reports after subscribing to
/// a topic and to changes: `ok`, or the code and message of its error.
fn subscribe_from_another_process(fx: &Fx) -> String {
    let sock_dir = fx.sock_dir.display().to_string();
    let (mut child, outcome) = spawn_child(
        "subscribe",
        &[("CHANNEL", fx.channel.as_str()), ("SOCK_DIR", &sock_dir)],
        &[],
    );
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// Sends a `subscribe_topic` (odd `id`) or a `subscribe` (even `id`) on
/// `raw` and returns its answer: the response's payload, or the error's.
fn subscribe_raw(raw: &mut Raw, id: u64) -> Result<Value, Value> {
    if id % 2 == 1 {
        raw.request(Operation::SubscribeTopic, id, json!({"pattern": "*"}));
    } else {
        raw.request(Operation::Subscribe, id, json!({}));
    }
    let (kind, got, value) = raw.read_json();
    assert_eq!(got, id, "{value}");
    match kind {
        FrameKind::Response => Ok(value),
        FrameKind::Error => Err(value),
        other => panic!("a response or an error, not {other:?}: {value}"),
    }
}

/// What a client in another process of `fx` reports: `ok`, or the code
/// and message of its error.
fn connect_from_another_process(fx: &Fx) -> String {
    connect_from_a_child(&fx.channel, &fx.sock_dir)
}

/// What a client in a child process reports for `channel` in `sock_dir`.
fn connect_from_a_child(channel: &str, sock_dir: &Path) -> String {
    let sock_dir = sock_dir.display().to_string();
    let (mut child, outcome) = spawn_child(
        "connect",
        &[("CHANNEL", channel), ("SOCK_DIR", &sock_dir)],
        &[],
    );
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

#[test]
fn a_process_over_its_connection_limit_is_refused_while_another_process_connects() {
    let fx = Fx::socket(|b| b.max_connections_per_process(4));
    let ours: Vec<Raw> = (0..4).map(|_| fx.raw()).collect();
    assert!(fx.server.wait_for(LONG, |s| s.connections == 4));

    // The fifth from this process: refused in the handshake, saying why.
    let mut fifth = Raw::connect_bare(&fx.socket_path());
    fifth.send_bytes(&ClientHello::default().encode());
    let hello = fifth.read_server_hello();
    assert_eq!(hello.status, HandshakeStatus::Unavailable);
    assert!(
        hello.reason.starts_with(PROCESS_LIMIT_PREFIX),
        "{}",
        hello.reason
    );
    assert!(
        hello.reason.contains(&std::process::id().to_string()),
        "{}",
        hello.reason
    );
    // The Rust client reports it with the stable code.
    let e = Client::connect_with(fx.options()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(e.to_string().contains(PROCESS_LIMIT_PREFIX), "{e}");

    // Another process is not affected.
    assert_eq!(connect_from_another_process(&fx), "ok");
    let stats = fx.server.stats();
    assert_eq!(stats.refused_process_limit, 2);
    assert_eq!(stats.refused_server_full, 0);
    drop(ours);
}

#[test]
fn a_connection_a_process_closes_gives_its_place_back() {
    let fx = Fx::socket(|b| b.max_connections_per_process(2));
    let mut ours: Vec<Raw> = (0..2).map(|_| fx.raw()).collect();
    assert!(fx.server.wait_for(LONG, |s| s.connections == 2));
    assert_eq!(
        Client::connect_with(fx.options()).unwrap_err().code(),
        ErrorCode::Unavailable
    );
    ours.pop();
    assert!(fx.server.wait_for(LONG, |s| s.connections == 1));
    fx.client().ping().unwrap();
}

/// A socket that connects and never says a word.
fn silent(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    // A failsafe: a socket the server keeps open fails the test instead of
    // hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Whether the server has closed `stream` (non-blocking; bytes it sent
/// first, such as a refusing hello, are left unread).
fn closed_by_server(stream: &UnixStream) -> bool {
    use rustix::net::{RecvFlags, recv};
    let mut buf = [0u8; 4096];
    loop {
        match recv(stream, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return true,
            Ok(_) => {}
            Err(e) => return e == rustix::io::Errno::CONNRESET,
        }
    }
}

/// Reads the refusing hello a silent socket closed at once was sent.
fn refusal_of(stream: UnixStream) -> hearth_proto::ServerHello {
    Raw::from_stream(stream).read_server_hello()
}

#[test]
fn silent_sockets_over_a_process_limit_are_refused_after_a_short_grace() {
    let fx = Fx::socket(|b| b.max_handshakes_per_process(4).handshake_timeout(FOREVER));
    let held: Vec<UnixStream> = (0..4).map(|_| silent(&fx.socket_path())).collect();
    assert!(fx.server.wait_for(LONG, |s| s.handshakes == 4));
    // Over the limit: refused once their short grace for the hello is
    // over, though the handshake timeout is a day.
    let over: Vec<UnixStream> = (0..20).map(|_| silent(&fx.socket_path())).collect();
    for stream in over {
        // Blocks (30 s failsafe) until the server sends its refusal.
        let hello = refusal_of(stream);
        assert_eq!(hello.status, HandshakeStatus::Unavailable);
        assert!(
            hello.reason.starts_with(HANDSHAKE_LIMIT_PREFIX),
            "{}",
            hello.reason
        );
    }
    assert!(fx.server.wait_for(LONG, |s| s.handshakes == 4));
    let stats = fx.server.stats();
    assert_eq!(stats.refused_process_handshakes, 20);
    assert_eq!(stats.handshakes, 4);
    // The first four are still waiting for their hellos.
    assert!(held.iter().all(|s| !closed_by_server(s)));
    // Another process connects and is served meanwhile.
    assert_eq!(connect_from_another_process(&fx), "ok");
}

/// The grace over a process's limit has a limit of its own: as many again.
/// Beyond it a silent socket is closed at once, so that one process
/// cannot fill the server's places with sockets in their grace.
#[test]
fn silent_sockets_beyond_twice_a_process_limit_are_closed_at_once() {
    let fx = Fx::socket(|b| {
        b.max_handshakes_per_process(2)
            .handshake_timeout(FOREVER)
            .handshake_grace(FOREVER)
    });
    let held: Vec<UnixStream> = (0..4).map(|_| silent(&fx.socket_path())).collect();
    // Two within the limit, two in their (here endless) grace.
    assert!(fx.server.wait_for(LONG, |s| s.handshakes == 4));
    // Blocks (30 s failsafe) until the server sends its refusal.
    let hello = refusal_of(silent(&fx.socket_path()));
    assert!(
        hello.reason.starts_with(HANDSHAKE_LIMIT_PREFIX),
        "{}",
        hello.reason
    );
    let stats = fx.server.stats();
    assert_eq!(stats.refused_process_handshakes, 1);
    assert_eq!(stats.handshakes, 4);
    assert!(held.iter().all(|s| !closed_by_server(s)));
}

/// A socket over its process's limit that sends its hello in its grace
/// and is then refused for another reason (here: its process has its
/// most connections) is counted as that refusal only.
#[test]
fn a_socket_in_its_grace_refused_for_another_reason_is_not_counted_as_a_handshake_refusal() {
    let fx = Fx::socket(|b| {
        b.max_handshakes_per_process(1)
            .max_connections_per_process(1)
            .handshake_timeout(FOREVER)
    });
    let _admitted = Client::connect_with(fx.options()).unwrap();
    let _silent = silent(&fx.socket_path());
    assert!(fx.server.wait_for(LONG, |s| s.handshakes == 1));
    let late = silent(&fx.socket_path());
    assert!(fx.server.wait_for(LONG, |s| s.handshakes == 2));
    assert!(!hello_answered_ok_on(late));
    let stats = fx.server.stats();
    assert_eq!(stats.refused_process_limit, 1);
    assert_eq!(stats.refused_process_handshakes, 0);
}

#[test]
fn a_socket_over_the_servers_handshake_limit_is_closed_at_once() {
    let fx = Fx::socket(|b| {
        b.max_handshakes(3)
            .max_handshakes_per_process(100)
            .handshake_timeout(FOREVER)
    });
    let _held: Vec<UnixStream> = (0..3).map(|_| silent(&fx.socket_path())).collect();
    assert!(fx.server.wait_for(LONG, |s| s.handshakes == 3));
    let hello = refusal_of(silent(&fx.socket_path()));
    assert_eq!(hello.status, HandshakeStatus::Unavailable);
    assert!(
        hello.reason.starts_with(HANDSHAKE_LIMIT_PREFIX),
        "{}",
        hello.reason
    );
    assert_eq!(fx.server.stats().refused_server_handshakes, 1);
}

#[test]
fn a_socket_whose_hello_comes_just_after_the_accept_is_served_over_the_handshake_limit() {
    let fx = Fx::socket(|b| b.max_handshakes_per_process(2).handshake_timeout(FOREVER));
    let _held: Vec<UnixStream> = (0..2).map(|_| silent(&fx.socket_path())).collect();
    assert!(fx.server.wait_for(LONG, |s| s.handshakes == 2));
    // A client thread preempted between its connect and its hello: the
    // server has accepted the socket, over the limit, before the hello.
    let late = silent(&fx.socket_path());
    assert!(fx.server.wait_for(LONG, |s| {
        s.handshakes == 3 || s.refused_process_handshakes > 0
    }));
    // The preempted thread runs again a little later (a simulated
    // preemption, well within the server's grace, not a wait for it).
    std::thread::sleep(Duration::from_millis(100));
    assert!(hello_answered_ok_on(late));
    // And one whose hello is there when the server accepts it.
    assert!(hello_answered_ok(&fx.socket_path()));
    assert_eq!(fx.server.stats().refused_process_handshakes, 0);
}

/// Connects, sends a hello at once and reads the answer: whether the
/// server accepted (false if it refused, or closed the socket first).
fn hello_answered_ok(path: &Path) -> bool {
    hello_answered_ok_on(silent(path))
}

/// Sends a hello on `stream` and reads the answer: whether the server
/// accepted (false if it refused, or closed the socket first).
fn hello_answered_ok_on(mut stream: UnixStream) -> bool {
    use hearth_proto::ServerHello;
    use std::io::{Read, Write};
    if stream.write_all(&ClientHello::default().encode()).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match ServerHello::decode(&got) {
            Ok((hello, _)) => return hello.status.is_ok(),
            Err(e) if e.is_incomplete() => {}
            Err(e) => panic!("bad server hello: {e}"),
        }
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return false,
            Err(e) => panic!("reading the server hello: {e}"),
        }
    }
}

/// The audit's attack: with a descriptor limit, one process's silent
/// sockets made every other client wait for the handshake timeout. Here
/// the server (a child process) may open 128 descriptors and never times
/// a handshake out; 150 silent sockets from this process must not keep
/// another process from connecting and pinging.
#[test]
fn silent_sockets_of_one_process_cannot_use_up_the_servers_descriptors() {
    let sock = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let channel = common::unique_channel("fds");
    let sock_dir = sock.path().join("s");
    let (mut server, path) = spawn_child(
        "serve",
        &[
            ("CHANNEL", &channel),
            ("SOCK_DIR", &sock_dir.display().to_string()),
            ("DATA_DIR", &data.path().display().to_string()),
            ("NOFILE", "128"),
        ],
        &[],
    );
    // Fewer than the listen backlog holds, so that connecting never blocks
    // even when the server cannot accept.
    let silent: Vec<UnixStream> = (0..150).map(|_| silent(Path::new(&path))).collect();
    let outcome = connect_from_a_child(&channel, &sock_dir);
    let _ = server.kill();
    let _ = server.wait();
    drop(silent);
    assert_eq!(outcome, "ok");
}

/// A client may not make the server keep more shared memory for its
/// connection than the server's own ring size: asked for 64 MiB rings, a
/// server configured with 64 KiB gives 64 KiB, and the connection works.
#[cfg(target_os = "linux")]
#[test]
fn a_client_asking_for_bigger_rings_gets_the_servers_size() {
    use hearth_proto::{FrameKind, Operation};
    use hearth_shm::Direction;
    let fx = Fx::socket(|b| b.shm_ring_bytes(64 << 10));
    let mut shm = RawShm::connect_asking(&fx.socket_path(), 64 << 20);
    let layout = shm.segment.layout();
    assert_eq!(layout.capacity(Direction::ClientToServer), 64 << 10);
    assert_eq!(layout.capacity(Direction::ServerToClient), 64 << 10);
    assert_eq!(shm.segment.len(), 4096 + 2 * (64 << 10));
    assert_eq!(fx.server.stats().shm_rings_capped, 1);
    assert!(shm.request(Operation::Ping, 1, serde_json::json!({})));
    shm.wake_server();
    let frame = shm.read_frame().expect("an answer");
    assert_eq!(frame.header.kind, FrameKind::Response);
    assert_eq!(frame.header.request_id, 1);
}

#[cfg(target_os = "linux")]
#[test]
fn a_client_may_ask_for_smaller_rings() {
    use hearth_shm::Direction;
    let fx = Fx::socket(|b| b.shm_ring_bytes(64 << 10));
    let shm = RawShm::connect_asking(&fx.socket_path(), 8 << 10);
    assert_eq!(
        shm.segment.layout().capacity(Direction::ClientToServer),
        8 << 10
    );
    assert_eq!(fx.server.stats().shm_rings_capped, 0);
}

#[test]
fn a_process_at_its_subscription_limit_is_refused_while_another_process_subscribes() {
    let fx = Fx::socket(|b| b.max_subscriptions_per_process(4));
    // Four subscriptions, topic and change, over two connections of this
    // process: the limit is the process's, not a connection's.
    let mut a = fx.raw();
    let mut b = fx.raw();
    for id in 1..=2 {
        subscribe_raw(&mut a, id).unwrap();
        subscribe_raw(&mut b, id).unwrap();
    }
    // A fifth, of either kind, on either connection: refused, saying why.
    for (raw, id) in [(&mut a, 3), (&mut b, 4)] {
        let refused = subscribe_raw(raw, id).unwrap_err();
        assert_eq!(refused["code"], "rate_limited", "{refused}");
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains("max_subscriptions_per_process"),
            "{message}"
        );
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
    }

    // Another process subscribes to topics and changes as usual.
    assert_eq!(subscribe_from_another_process(&fx), "ok");
    let stats = fx.server.stats();
    assert_eq!(stats.refused_process_subscriptions, 2);
    assert_eq!(stats.refused_server_subscriptions, 0);
}

#[test]
fn beyond_the_servers_subscription_limit_every_process_is_refused_with_unavailable() {
    let fx = Fx::socket(|b| b.max_server_subscriptions(3));
    let mut a = fx.raw();
    let mut b = fx.raw();
    subscribe_raw(&mut a, 1).unwrap();
    subscribe_raw(&mut a, 2).unwrap();
    subscribe_raw(&mut b, 1).unwrap();
    let refused = subscribe_raw(&mut b, 2).unwrap_err();
    assert_eq!(refused["code"], "unavailable", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("max_server_subscriptions"), "{message}");

    // Not a limit of this process: another one is refused too.
    let outcome = subscribe_from_another_process(&fx);
    assert!(outcome.starts_with("unavailable|"), "{outcome}");
    assert_eq!(fx.server.stats().refused_server_subscriptions, 2);
    assert_eq!(fx.server.stats().refused_process_subscriptions, 0);
}

#[test]
fn subscriptions_that_end_give_their_places_back() {
    let fx = Fx::socket(|b| {
        b.max_subscriptions_per_process(2)
            .max_server_subscriptions(2)
    });
    let mut a = fx.raw();
    let topic = subscribe_raw(&mut a, 1).unwrap()["subscription"].clone();
    subscribe_raw(&mut a, 2).unwrap();
    assert!(subscribe_raw(&mut a, 3).is_err());

    // Unsubscribing frees one place.
    a.request(
        Operation::UnsubscribeTopic,
        4,
        json!({"subscription": topic}),
    );
    assert_eq!(a.read_json().0, FrameKind::Response);
    subscribe_raw(&mut a, 5).unwrap();

    // Closing the connection frees all of its places.
    drop(a);
    assert!(fx.server.wait_for(LONG, |s| s.connections == 0
        && s.topic_subscriptions + s.change_subscriptions == 0));
    let mut b = fx.raw();
    subscribe_raw(&mut b, 1).unwrap();
    subscribe_raw(&mut b, 2).unwrap();
}

/// A stand-in for a server over its handshake limits: it closes the first
/// `closed` sockets it accepts at `path` without reading or answering
/// them, then answers the next one's hello (with no shared memory on
/// offer) and hands it back, open.
fn closes_then_answers(
    listener: std::os::unix::net::UnixListener,
    closed: usize,
) -> std::thread::JoinHandle<UnixStream> {
    use hearth_proto::{CLIENT_HELLO_LEN, Capabilities, ServerHello, ServerLimits};
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        for _ in 0..closed {
            let (first, _) = listener.accept().unwrap();
            drop(first);
        }
        let (mut answered, _) = listener.accept().unwrap();
        let mut hello = [0u8; CLIENT_HELLO_LEN];
        answered.read_exact(&mut hello).unwrap();
        let (client, _) = ClientHello::decode(&hello).unwrap();
        let limits = ServerLimits {
            capabilities: Capabilities::CHUNKED_STREAMS | Capabilities::EVENTS,
            ..ServerLimits::default()
        };
        let (reply, _) = ServerHello::respond(&client, &limits);
        answered.write_all(&reply.encode()).unwrap();
        answered
    })
}

#[test]
fn a_client_whose_socket_is_closed_before_the_servers_hello_connects_again() {
    // A burst of connects from one process can find the server over its
    // handshake limits, which then closes a socket whose hello had not
    // come when it was accepted: the client tries again, within its
    // connect timeout.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closing.sock");
    let server = closes_then_answers(std::os::unix::net::UnixListener::bind(&path).unwrap(), 3);
    let client = Client::connect_with(
        ConnectOptions::new("closing")
            .socket_path(&path)
            .connect_timeout(LONG),
    )
    .expect("connected on the fourth socket");
    let _open = server.join().unwrap();
    assert_eq!(client.transport().map(|t| t.name()), Some("socket"));
}
