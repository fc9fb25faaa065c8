//! Streamed calls cancelled while their producer still runs on the
//! server's blocking pool, over a real socket.
//!
//! Owns: the promise that a connection's streams, and all streams, hold no
//! more producer threads than their slots (`ServerBuilder::max_running_streams`,
//! `max_server_running_streams`), streams cancelled or whose connection
//! closed before their producer is done included: a `query` scans its
//! whole table before its first chunk, and its thread runs on after the
//! stream's task is aborted. Must never: sleep to wait or assert on
//! elapsed time; the producers are counted by the server
//! (`Server::stream_producers`) and waited on with `Server::wait_for`,
//! with generous failsafe limits.

mod common;

use common::{Fx, Raw};
use hearth_ipc::{StreamProducers, WriteOp};
use hearth_proto::{ErrorCode, FrameKind, Operation, decode_error_payload};
use serde_json::json;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

/// Documents in the store: enough that a query matching none of them
/// scans for far longer than a cancel and the next query take to arrive.
const DOCS: usize = 60_000;

/// Query-and-cancel pairs sent on one connection.
const PAIRS: u64 = 40;

/// A server whose connections each have one stream slot, holding
/// [`DOCS`] documents.
fn one_slot_server_with_many_documents() -> Fx {
    one_slot_server_with_many_documents_and(|b| b)
}

/// [`one_slot_server_with_many_documents`] with more settings.
fn one_slot_server_with_many_documents_and(
    more: impl FnOnce(hearth_ipc::ServerBuilder) -> hearth_ipc::ServerBuilder,
) -> Fx {
    let fx = Fx::socket(|b| more(b.max_running_streams(1)));
    let client = fx.client_with(|o| o.timeout(LONG));
    let ids: Vec<usize> = (0..DOCS).collect();
    for chunk in ids.chunks(10_000) {
        let writes = chunk
            .iter()
            .map(|i| WriteOp::Put {
                id: format!("doc:{i:06}"),
                data: json!({"type": "T", "i": i}),
            })
            .collect();
        client.batch(writes).unwrap();
    }
    fx
}

/// Waits until the server's stream producers satisfy `pred`.
fn wait_for_producers(fx: &Fx, what: &str, pred: impl Fn(StreamProducers) -> bool) {
    let server = &fx.server;
    assert!(
        server.wait_for(LONG, |_| pred(server.stream_producers())),
        "{what}: {:?}",
        server.stream_producers()
    );
}

/// Waits until `started` producers have started and all have ended, then
/// checks that no two ran at once (`who`: what had one stream slot).
fn ended_one_at_a_time(fx: &Fx, started: u64, who: &str) {
    wait_for_producers(fx, "every producer ended", |p| {
        p.started == started && p.running == 0
    });
    let producers = fx.server.stream_producers();
    assert_eq!(
        producers.most, 1,
        "{who} with one stream slot ran {} producers at once",
        producers.most
    );
}

/// Reads the last frame of each of requests `1..=n`: a `cancelled` error
/// for a stream cancelled in flight, or the stream's end for one whose
/// scan was done first (no chunks: its query matches nothing).
fn read_every_ending(raw: &mut Raw, n: u64) {
    let mut ended = vec![false; n as usize + 1];
    for _ in 0..n {
        let (kind, id, value) = raw.read_json();
        assert!((1..=n).contains(&id), "a frame for request {id}: {value}");
        match kind {
            FrameKind::Error => {
                let body = decode_error_payload(value.to_string().as_bytes()).unwrap();
                assert_eq!(body.code, ErrorCode::Cancelled, "request {id}: {value}");
            }
            FrameKind::StreamEnd => assert_eq!(value["count"], 0, "request {id}: {value}"),
            kind => panic!("request {id}: a {kind:?} frame: {value}"),
        }
        assert!(
            !std::mem::replace(&mut ended[id as usize], true),
            "request {id} ended twice"
        );
    }
}

#[test]
fn streams_cancelled_while_their_query_scans_run_no_more_producers_than_their_slots() {
    let fx = one_slot_server_with_many_documents();
    let mut raw = fx.raw();
    for id in 1..=PAIRS {
        // A query that matches nothing scans every document before its
        // first (and only) frame.
        raw.request(Operation::Query, id, json!({"filter": {"absent": "x"}}));
        // Cancelled once its producer has started — while it scans: its
        // stream's task ends, its thread does not.
        wait_for_producers(&fx, "the query's producer started", |p| p.started >= id);
        raw.send(FrameKind::Cancel, None, id, b"");
    }
    read_every_ending(&mut raw, PAIRS);
    wait_for_producers(&fx, "every producer ended", |p| p.running == 0);

    let producers = fx.server.stream_producers();
    assert_eq!(producers.started, PAIRS, "{producers:?}");
    assert_eq!(
        producers.most, 1,
        "a connection with one stream slot ran {} producers at once",
        producers.most
    );
    raw.request(Operation::Ping, PAIRS + 1, json!({}));
    let (kind, id, _) = raw.read_json();
    assert_eq!((kind, id), (FrameKind::Response, PAIRS + 1));
    fx.server.shutdown().unwrap();
}

#[test]
fn connections_that_close_while_their_query_scans_run_no_more_producers_than_the_servers_slots() {
    const CONNECTIONS: u64 = 10;
    let fx = one_slot_server_with_many_documents_and(|b| b.max_server_running_streams(1));
    for n in 1..=CONNECTIONS {
        let mut raw = fx.raw();
        raw.request(Operation::Query, 1, json!({"filter": {"absent": "x"}}));
        // Closed once its producer has started — while it scans: the
        // connection's tasks end, the producer's thread does not, and it
        // keeps the server's one slot until it is done.
        wait_for_producers(&fx, "the query's producer started", |p| p.started >= n);
        drop(raw);
    }
    ended_one_at_a_time(&fx, CONNECTIONS, "a server");
    fx.server.shutdown().unwrap();
}

#[test]
fn a_process_that_reconnects_while_its_cancelled_query_scans_keeps_its_stream_slots() {
    // One stream slot for the process. Each round its connection cancels
    // its scanning query (the producer scans on) and closes, so that the
    // process has no connection left; its next connection must still wait
    // for the slot the old producer holds.
    const ROUNDS: u64 = 6;
    let fx = one_slot_server_with_many_documents_and(|b| b.max_running_streams_per_process(1));
    for n in 1..=ROUNDS {
        let mut raw = fx.raw();
        raw.request(Operation::Query, 1, json!({"filter": {"absent": "x"}}));
        wait_for_producers(&fx, "the query's producer started", |p| p.started >= n);
        raw.send(FrameKind::Cancel, None, 1, b"");
        read_every_ending(&mut raw, 1);
        drop(raw);
        assert!(fx.server.wait_for(LONG, |s| s.connections == 0));
    }
    ended_one_at_a_time(&fx, ROUNDS, "a process");
    fx.server.shutdown().unwrap();
}
