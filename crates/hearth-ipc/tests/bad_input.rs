//! Hostile and broken input over a real socket, one case per test, from a
//! raw `UnixStream` that speaks bytes. Each case gets an error reply or the
//! close of that connection only; the server and other clients carry on.
//!
//! Owns: the server's robustness promises. Must never: sleep or time
//! anything; a read timeout on the raw socket is only a failsafe.

mod common;

use common::{Fx, Raw};
use hearth_proto::{
    ClientHello, ErrorCode, FrameKind, HEADER_LEN, HandshakeStatus, Operation, decode_error_payload,
};
use serde_json::{Value, json};
use std::time::Duration;

fn server() -> Fx {
    Fx::socket(|b| b.max_frame_bytes(64 * 1024).max_in_flight(4))
}

/// Another client still gets answers.
fn others_carry_on(fx: &Fx) {
    let client = fx.client();
    client.put("alive", json!({"ok": true})).unwrap();
    assert_eq!(client.get("alive").unwrap(), Some(json!({"ok": true})));
}

fn error_code(value: &Value) -> ErrorCode {
    decode_error_payload(value.to_string().as_bytes())
        .unwrap()
        .code
}

/// Expects one error frame (request id 0 with `code`), then EOF.
fn expect_fatal(raw: &mut Raw, code: ErrorCode) -> String {
    let (kind, id, body) = raw.read_json();
    assert_eq!((kind, id), (FrameKind::Error, 0), "{body}");
    assert_eq!(error_code(&body), code, "{body}");
    assert!(
        raw.read_frame().is_none(),
        "the connection should be closed"
    );
    body["message"].as_str().unwrap().to_string()
}

/// Expects an error frame answering `id` with `code`.
fn expect_error(raw: &mut Raw, id: u64, code: ErrorCode) -> String {
    let (kind, got, body) = raw.read_json();
    assert_eq!((kind, got), (FrameKind::Error, id), "{body}");
    assert_eq!(error_code(&body), code, "{body}");
    body["message"].as_str().unwrap().to_string()
}

fn expect_pong(raw: &mut Raw, id: u64) {
    raw.request(Operation::Ping, id, json!({}));
    assert_eq!(
        raw.read_json(),
        (FrameKind::Response, id, json!({"pong": true}))
    );
}

#[test]
fn garbage_instead_of_a_hello_is_refused_and_closed() {
    let fx = server();
    let mut raw = Raw::connect_bare(&fx.socket_path());
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let hello = raw.read_server_hello();
    assert_eq!(hello.status, HandshakeStatus::InvalidHello);
    assert!(
        hello.reason.contains("does not speak the hearth protocol"),
        "{}",
        hello.reason
    );
    assert!(raw.read_frame().is_none());
    others_carry_on(&fx);
}

#[test]
fn a_hello_with_a_bad_version_range_is_refused() {
    let fx = server();
    let mut raw = Raw::connect_bare(&fx.socket_path());
    let hello = ClientHello {
        min_version: 5,
        max_version: 9,
        ..ClientHello::default()
    };
    raw.send_bytes(&hello.encode());
    let reply = raw.read_server_hello();
    assert_eq!(reply.status, HandshakeStatus::VersionMismatch);
    assert!(
        reply.reason.contains("upgrade the server"),
        "{}",
        reply.reason
    );
    assert!(raw.read_frame().is_none());
    others_carry_on(&fx);
}

#[test]
fn garbage_after_the_handshake_gets_an_error_frame_and_a_close() {
    let fx = server();
    let mut raw = fx.raw();
    raw.send_bytes(&[
        0x10, 0, 0, 0, 0xee, 0xff, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9,
    ]);
    expect_fatal(&mut raw, ErrorCode::InvalidInput);
    others_carry_on(&fx);
}

#[test]
fn an_unknown_frame_kind_is_fatal() {
    let fx = server();
    let mut raw = fx.raw();
    let mut header = [0u8; HEADER_LEN];
    header[4] = 9;
    raw.send_bytes(&header);
    let message = expect_fatal(&mut raw, ErrorCode::InvalidInput);
    assert!(message.contains("unknown frame kind 9"), "{message}");
    others_carry_on(&fx);
}

#[test]
fn a_truncated_frame_then_eof_is_answered_and_closed() {
    let fx = server();
    let mut raw = fx.raw();
    let mut bytes = Vec::new();
    hearth_proto::encode_frame(
        &mut bytes,
        FrameKind::Request,
        hearth_proto::FrameFlags::JSON,
        Some(Operation::Get),
        1,
        br#"{"id":"user:1"}"#,
    )
    .unwrap();
    raw.send_bytes(&bytes[..bytes.len() - 5]);
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let message = expect_fatal(&mut raw, ErrorCode::InvalidInput);
    assert!(message.contains("middle of a frame"), "{message}");
    others_carry_on(&fx);
}

#[test]
fn a_length_past_the_limit_is_refused_before_reading_the_payload() {
    let fx = server();
    let mut raw = fx.raw();
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    header[4] = 1;
    header[5] = 1;
    header[6] = Operation::Put.code() as u8;
    raw.send_bytes(&header);
    let message = expect_fatal(&mut raw, ErrorCode::TooLarge);
    assert!(message.contains("over the limit of 65536"), "{message}");
    others_carry_on(&fx);
}

#[test]
fn invalid_utf8_in_a_payload_is_invalid_input_and_the_connection_goes_on() {
    let fx = server();
    let mut raw = fx.raw();
    raw.send(
        FrameKind::Request,
        Some(Operation::Get),
        3,
        b"{\"id\":\"\xff\xfe\"}",
    );
    expect_error(&mut raw, 3, ErrorCode::InvalidInput);
    expect_pong(&mut raw, 4);
    others_carry_on(&fx);
}

#[test]
fn invalid_json_is_invalid_input_and_the_connection_goes_on() {
    let fx = server();
    let mut raw = fx.raw();
    raw.send(
        FrameKind::Request,
        Some(Operation::Put),
        5,
        b"{\"id\":\"a\",\"data\":",
    );
    let message = expect_error(&mut raw, 5, ErrorCode::InvalidInput);
    assert!(message.contains("not valid JSON"), "{message}");
    raw.send(FrameKind::Request, Some(Operation::Put), 6, b"[1,2]");
    expect_error(&mut raw, 6, ErrorCode::InvalidInput);
    expect_pong(&mut raw, 7);
    others_carry_on(&fx);
}

#[test]
fn json_nested_100000_deep_is_refused_without_harm() {
    // The frame limit here is 64 KiB; 100,000 levels need a bigger one.
    let fx = Fx::socket(|b| b.max_frame_bytes(1 << 20));
    let mut raw = fx.raw();
    let deep = format!(
        "{{\"id\":\"a\",\"data\":{{\"x\":{}{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    raw.send(FrameKind::Request, Some(Operation::Put), 8, deep.as_bytes());
    expect_error(&mut raw, 8, ErrorCode::InvalidInput);
    expect_pong(&mut raw, 9);
    others_carry_on(&fx);
}

#[test]
fn an_unknown_operation_code_is_answered_for_its_request_id() {
    let fx = server();
    let mut raw = fx.raw();
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&2u32.to_le_bytes());
    header[4] = 1;
    header[5] = 1;
    header[6..8].copy_from_slice(&999u16.to_le_bytes());
    header[8..16].copy_from_slice(&42u64.to_le_bytes());
    raw.send_bytes(&header);
    raw.send_bytes(b"{}");
    let message = expect_error(&mut raw, 42, ErrorCode::UnknownOperation);
    assert!(message.contains("999"), "{message}");
    expect_pong(&mut raw, 43);
    others_carry_on(&fx);
}

#[test]
fn an_unknown_handler_name_is_unknown_operation() {
    let fx = server();
    let mut raw = fx.raw();
    raw.request(
        Operation::Call,
        1,
        json!({"name": "no:such:handler", "payload": {}}),
    );
    expect_error(&mut raw, 1, ErrorCode::UnknownOperation);
    raw.request(Operation::Get, 2, json!({"id": "a", "extra": 1}));
    expect_error(&mut raw, 2, ErrorCode::InvalidInput);
    expect_pong(&mut raw, 3);
}

#[test]
fn a_frame_kind_only_servers_send_is_refused_for_its_id() {
    let fx = server();
    let mut raw = fx.raw();
    raw.send(FrameKind::Response, None, 11, b"{}");
    expect_error(&mut raw, 11, ErrorCode::InvalidInput);
    expect_pong(&mut raw, 12);
}

#[test]
fn a_reused_request_id_is_refused_and_the_first_request_goes_on() {
    let fx = server();
    let mut raw = fx.raw();
    // Request 7 stays in flight until cancelled.
    raw.request(
        Operation::Call,
        7,
        json!({"name": "test:sleep", "payload": {"ms": 600_000}}),
    );
    raw.request(Operation::Ping, 7, json!({}));
    let message = expect_error(&mut raw, 7, ErrorCode::InvalidInput);
    assert!(message.contains("already in flight"), "{message}");
    raw.send(FrameKind::Cancel, None, 7, b"");
    expect_error(&mut raw, 7, ErrorCode::Cancelled);
    expect_pong(&mut raw, 7);
}

#[test]
fn a_flood_past_the_in_flight_limit_gets_busy_errors() {
    let fx = server();
    let mut raw = fx.raw();
    for id in 1..=4 {
        raw.request(
            Operation::Call,
            id,
            json!({"name": "test:sleep", "payload": {"ms": 600_000}}),
        );
    }
    for id in 5..=20 {
        raw.request(Operation::Ping, id, json!({}));
    }
    for id in 5..=20 {
        let message = expect_error(&mut raw, id, ErrorCode::RateLimited);
        assert!(message.contains("busy"), "{message}");
    }
    for id in 1..=4 {
        raw.send(FrameKind::Cancel, None, id, b"");
        expect_error(&mut raw, id, ErrorCode::Cancelled);
    }
    expect_pong(&mut raw, 21);
    others_carry_on(&fx);
}

#[test]
fn a_huge_flood_of_pipelined_requests_is_answered_in_full() {
    let fx = server();
    let mut raw = fx.raw();
    // 4 in flight at most: the server stops reading (backpressure) rather
    // than refusing, because quick requests finish before the next is read.
    let mut bytes = Vec::new();
    for id in 1..=5000u64 {
        hearth_proto::encode_frame(
            &mut bytes,
            FrameKind::Request,
            hearth_proto::FrameFlags::JSON,
            Some(Operation::Get),
            id,
            br#"{"id":"nothing"}"#,
        )
        .unwrap();
    }
    let writer = {
        let mut stream = raw.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            stream.write_all(&bytes).unwrap();
        })
    };
    for id in 1..=5000u64 {
        assert_eq!(raw.read_json(), (FrameKind::Response, id, Value::Null));
    }
    writer.join().unwrap();
    others_carry_on(&fx);
}

/// A failsafe for waits on the server's counters (never reached when the
/// server works).
const LONG: Duration = Duration::from_secs(30);

/// What became of a connection that left a put split into `MORE` frames
/// half sent, then pinged.
enum HalfSent {
    /// The server holds its message and answered the ping.
    Held(Raw),
    /// The server refused it: an error frame for request 0 with this
    /// code and message, then the close.
    Refused(ErrorCode, String),
}

/// Opens a raw connection that sends `frames` frames of 1 MiB of request
/// 1's put, all flagged `MORE`, never the last, then a ping.
fn leave_half_sent(fx: &Fx, frames: usize) -> HalfSent {
    let mut raw = fx.raw();
    let part = vec![b' '; 1 << 20];
    for _ in 0..frames {
        // Fails once the server has closed the socket.
        if !raw.send_part(Operation::Put, 1, &part, true) {
            break;
        }
    }
    raw.send_part(Operation::Ping, 2, b"{}", false);
    let (kind, id, body) = raw.read_json();
    if (kind, id) == (FrameKind::Response, 2) {
        return HalfSent::Held(raw);
    }
    assert_eq!((kind, id), (FrameKind::Error, 0), "{body}");
    assert!(
        raw.read_frame().is_none(),
        "the connection should be closed"
    );
    let message = body["message"].as_str().unwrap().to_string();
    HalfSent::Refused(error_code(&body), message)
}

#[test]
fn half_sent_messages_of_many_connections_are_cut_off_at_the_server_budget() {
    // 8 MiB for all; each connection's own limit (4 MiB) is far off.
    let fx = Fx::socket(|b| b.max_message_bytes(4 << 20).max_partial_bytes(8 << 20));
    let mut held = Vec::new();
    let refused = loop {
        assert!(held.len() < 8, "no connection was refused");
        match leave_half_sent(&fx, 2) {
            HalfSent::Held(raw) => held.push(raw),
            HalfSent::Refused(code, message) => break (code, message),
        }
    };
    assert_eq!(refused.0, ErrorCode::Unavailable, "{}", refused.1);
    assert!(refused.1.contains("max_partial_bytes"), "{}", refused.1);
    assert!(held.len() >= 2, "only {} held", held.len());
    assert_eq!(fx.server.stats().partial_disconnects, 1);
    // The connections that hold their messages go on.
    for (i, raw) in held.iter_mut().enumerate() {
        expect_pong(raw, 10 + i as u64);
    }
    // Another client's whole 2 MiB put takes nothing from the budget.
    let client = fx.client();
    let doc = json!({"text": "x".repeat(2 << 20)});
    client.put("big", doc.clone()).unwrap();
    assert_eq!(client.get("big").unwrap(), Some(doc));
}

#[test]
fn a_split_message_left_half_sent_is_ended_after_the_stall_timeout() {
    let fx = Fx::socket(|b| b.stall_timeout(Duration::from_millis(300)));
    let mut raw = fx.raw();
    assert!(raw.send_part(Operation::Put, 1, br#"{"id":"a","da"#, true));
    assert!(fx.server.wait_for(LONG, |s| s.partial_disconnects == 1));
    let message = expect_fatal(&mut raw, ErrorCode::Timeout);
    assert!(message.contains("request id 1"), "{message}");
    others_carry_on(&fx);
}

/// A server whose message limit was raised takes a request that long from
/// a client with nothing set: the server's hello says its limit. A client
/// that set a lower limit of its own refuses it, and a default client of a
/// default server refuses it too, both before anything goes; their
/// connections go on.
#[test]
fn a_request_past_32_mib_goes_where_the_server_takes_it() {
    let fx = Fx::socket(|b| b.max_message_bytes(40 << 20));
    let blob = "b".repeat(33 << 20);
    let default = fx.client();
    let echoed = default
        .call("test:echo", json!({"blob": blob}))
        .expect("a 33 MiB call within the server's raised limit");
    assert_eq!(echoed["blob"].as_str().map(str::len), Some(33 << 20));
    let capped = fx.client_with(|o| o.max_request_bytes(32 << 20));
    let e = capped.call("test:echo", json!({"blob": blob})).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    assert!(
        e.to_string().contains("this client set as its own limit"),
        "{e}"
    );
    capped.ping().unwrap();

    let plain = Fx::socket(|b| b);
    let default = plain.client();
    let e = default
        .call("test:echo", json!({"blob": blob}))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    assert!(e.to_string().contains("32 MiB"), "{e}");
    default.ping().unwrap();
}

/// A client of protocol 1 (a hello made by hand, offering 1..1) gets the
/// 29-byte hello of protocol 1 — no `max_message_bytes` after it — from a
/// server that speaks 1..2 and raised its limit, and is served: the first
/// bytes after those 29 are the answer to its first request.
#[test]
fn a_protocol_1_client_gets_the_29_byte_hello_and_is_served() {
    use std::io::{Read, Write};
    let fx = Fx::socket(|b| b.max_message_bytes(40 << 20));
    let mut stream = std::os::unix::net::UnixStream::connect(fx.socket_path()).unwrap();
    // A failsafe only: nothing waits on it for readiness.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut hello = b"HEARTH\0\x01".to_vec();
    hello.extend_from_slice(&1u16.to_le_bytes()); // max_version
    hello.extend_from_slice(&1u16.to_le_bytes()); // min_version
    hello.extend_from_slice(&0x6u32.to_le_bytes()); // streams, events
    hello.extend_from_slice(&(64u32 << 10).to_le_bytes()); // max_frame_bytes
    hello.extend_from_slice(&16u32.to_le_bytes()); // max_in_flight
    stream.write_all(&hello).unwrap();
    let mut reply = [0u8; 29];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..8], b"HEARTH\0\x02");
    assert_eq!(reply[8..12], [2, 0, 1, 0], "the server speaks 1..2");
    assert_eq!(reply[24..29], [1, 0, 0, 0, 0], "version 1, ok, no reason");
    let (decoded, used) = hearth_proto::ServerHello::decode(&reply).unwrap();
    assert_eq!((used, decoded.max_message_bytes), (29, None));
    let mut raw = Raw::from_stream(stream);
    expect_pong(&mut raw, 7);
    others_carry_on(&fx);
}

#[test]
fn a_server_whose_half_sent_budget_cannot_hold_one_whole_message_refuses_to_start() {
    // It would tell clients they may send 4 MiB, then close every
    // connection that sends more than 1 MiB in frames.
    let dir = tempfile::tempdir().unwrap();
    let started = hearth_ipc::Server::builder()
        .data_dir(dir.path())
        .max_message_bytes(4 << 20)
        .max_partial_bytes(1 << 20)
        .start();
    let Err(e) = started else {
        panic!("a server started whose budget cannot join one whole message");
    };
    assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
    let message = e.to_string();
    assert!(
        message.contains("max_partial_bytes") && message.contains("4194432"),
        "{message}"
    );
}
