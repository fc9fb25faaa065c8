//! Who gets in: the limits that keep one client process from taking the
//! whole server — its connections, its sockets still in the handshake,
//! and the shared memory its connections may ask for.
//!
//! Owns: the promise that a process over its own limits is refused or
//! closed while other processes still connect and are served. Must never:
//! sleep to wait or assert on elapsed time; waits are on signalled
//! counters (`Server::wait_for`) with generous failsafe limits.

mod common;

use common::{Fx, Raw, child_ready, spawn_child};
use hearth_ipc::{Client, ConnectOptions, PROCESS_LIMIT_PREFIX};
use hearth_proto::{ClientHello, ErrorCode, HandshakeStatus};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// The child side of the process tests; a no-op in a normal run.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var("HEARTH_IPC_TEST_CHILD") else {
        return;
    };
    assert_eq!(mode, "connect");
    connect_and_report();
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

/// What a client in another process of `fx` reports: `ok`, or the code
/// and message of its error.
fn connect_from_another_process(fx: &Fx) -> String {
    let sock_dir = fx.sock_dir.display().to_string();
    let (mut child, outcome) = spawn_child(
        "connect",
        &[("CHANNEL", &fx.channel), ("SOCK_DIR", &sock_dir)],
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
