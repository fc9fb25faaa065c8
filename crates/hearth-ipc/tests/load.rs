//! Many clients, stuck clients, killed clients, slow subscribers and writes
//! under back-pressure, over real sockets and real processes.
//!
//! Owns: the promise that one client never stalls the others and that a
//! client's resources are freed when it goes. Must never: sleep to wait or
//! assert on elapsed time; waits are on signalled counters
//! (`Server::wait_for`) with generous failsafe limits.

mod common;

use common::{Fx, child_ready, park_forever, spawn_child};
use hearth_ipc::{AsyncClient, Client, ConnectOptions, Subscription};
use hearth_proto::{FrameKind, Operation};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// The child side of the process tests; a no-op in a normal run.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var("HEARTH_IPC_TEST_CHILD") else {
        return;
    };
    assert_eq!(mode, "subscribe");
    let dir = std::env::var("SOCK_DIR").unwrap();
    let channel = std::env::var("CHANNEL").unwrap();
    let client = Client::connect_with(ConnectOptions::new(channel).socket_dir(dir)).unwrap();
    let _changes = client.subscribe(Subscription::all()).unwrap();
    let _events = client.subscribe_topic("*").unwrap();
    child_ready("");
    // Killed in the middle of this request.
    let _ = client.call("test:sleep", json!({"ms": 600_000}));
    park_forever();
}

#[test]
fn two_hundred_fifty_six_clients_at_once() {
    let fx = Fx::socket(|b| b);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = fx.options();
    let clients: Vec<AsyncClient> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..256 {
            let options = options.clone();
            tasks.spawn(async move { AsyncClient::connect_with(options).await.unwrap() });
        }
        let mut clients = Vec::new();
        while let Some(c) = tasks.join_next().await {
            clients.push(c.unwrap());
        }
        clients
    });
    assert!(fx.server.wait_for(LONG, |s| s.connections == 256));
    let ok = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, c) in clients.iter().enumerate() {
            let c = c.clone();
            tasks.spawn(async move {
                let id = format!("many:{i}");
                c.put(&id, json!({"i": i})).await.unwrap();
                assert_eq!(c.get(&id).await.unwrap(), Some(json!({"i": i})));
            });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
            ok += 1;
        }
        ok
    });
    assert_eq!(ok, 256);
    drop(clients);
    assert!(fx.server.wait_for(LONG, |s| s.connections == 0));
    fx.server.shutdown().unwrap();
}

#[test]
fn a_client_that_never_reads_is_disconnected_while_another_keeps_getting_answers() {
    // Long enough that the other client, which reads its big answers,
    // is never cut off for being slow to be scheduled on a busy machine.
    let fx = Fx::socket(|b| {
        b.stall_timeout(Duration::from_secs(2))
            .output_queue_bytes(1 << 20)
    });
    let client = fx.client();
    client
        .put("big", json!({"blob": "b".repeat(256 * 1024)}))
        .unwrap();

    // The stuck client asks for the big document again and again and never
    // reads: its socket and output queue fill, the server stops reading it,
    // and after the stall timeout it is cut off.
    let mut stuck = fx.raw();
    let mut requests = Vec::new();
    for id in 1..=400u64 {
        hearth_proto::encode_frame(
            &mut requests,
            FrameKind::Request,
            hearth_proto::FrameFlags::JSON,
            Some(Operation::Get),
            id,
            br#"{"id":"big"}"#,
        )
        .unwrap();
    }
    let mut stuck_writer = stuck.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // Fails with a broken pipe once the server cuts the client off.
        let _ = stuck_writer.write_all(&requests);
    });

    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let other = {
        let client = client.clone();
        let done = done.clone();
        let answered = answered.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                assert_eq!(
                    client.get("big").unwrap().unwrap()["blob"]
                        .as_str()
                        .unwrap()
                        .len(),
                    256 * 1024
                );
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    assert!(fx.server.wait_for(LONG, |s| s.stalled_disconnects == 1));
    // The other client was answered meanwhile (and was not cut off: each
    // of its gets unwraps).
    common::until(LONG, "the other client got no answer", || {
        answered.load(Ordering::Relaxed) > 0
    });
    done.store(true, Ordering::Release);
    other.join().unwrap();
    assert_eq!(fx.server.stats().stalled_disconnects, 1);
    writer.join().unwrap();
    // What the stuck client can still read ends in EOF: it was disconnected.
    let frames = stuck.read_to_eof();
    assert!(frames.len() < 400);
    assert!(fx.server.wait_for(LONG, |s| s.connections == 1));
    client.ping().unwrap();
    fx.server.shutdown().unwrap();
}

#[test]
fn killing_a_client_mid_request_frees_its_connection_and_subscriptions() {
    let fx = Fx::socket(|b| b.stall_timeout(Duration::from_millis(200)));
    let dir = fx.sock_dir.to_string_lossy().to_string();
    let (mut child, _) = spawn_child(
        "subscribe",
        &[("SOCK_DIR", &dir), ("CHANNEL", &fx.channel)],
        &[],
    );
    assert!(fx.server.wait_for(LONG, |s| {
        s.connections == 1
            && s.change_subscriptions == 1
            && s.topic_subscriptions == 1
            && s.requests >= 3
    }));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(fx.server.wait_for(LONG, |s| {
        s.connections == 0 && s.change_subscriptions == 0 && s.topic_subscriptions == 0
    }));
    // The server carries on.
    let client = fx.client();
    client.put("after", json!({})).unwrap();
    assert_eq!(fx.server.publish("x:y", &json!(1)).unwrap(), 0);
    fx.server.shutdown().unwrap();
}

#[test]
fn a_subscriber_whose_output_backs_up_gets_lagged_with_the_exact_resume_point() {
    let fx = Fx::socket(|b| {
        b.subscription_buffer(8)
            .output_queue_bytes(4096)
            .stall_timeout(Duration::from_millis(500))
    });
    let mut raw = fx.raw();
    raw.request(Operation::Subscribe, 1, json!({}));
    let (kind, id, reply) = raw.read_json();
    assert_eq!((kind, id), (FrameKind::Response, 1));
    let subscription = reply["subscription"].as_u64().unwrap();
    let first = reply["from_seq"].as_u64().unwrap();

    // Far more than the socket, the output queue and the buffer hold,
    // written while the subscriber reads nothing.
    let writer = fx.client();
    let writes: Vec<hearth_ipc::WriteOp> = (0..3000)
        .map(|i| hearth_ipc::WriteOp::Put {
            id: format!("lag:{i}"),
            data: json!({"pad": "p".repeat(1000)}),
        })
        .collect();
    for chunk in writes.chunks(500) {
        writer.batch(chunk.to_vec()).unwrap();
    }

    let mut expected = first;
    let resume_from = loop {
        let (kind, id, event) = raw.read_json();
        assert_eq!((kind, id), (FrameKind::Event, 1), "{event}");
        assert_eq!(event["subscription"], subscription);
        if let Some(lagged) = event.get("lagged") {
            break lagged["resume_from"].as_u64().unwrap();
        }
        assert_eq!(
            event["change"]["seq"], expected,
            "changes arrive in order without gaps"
        );
        expected += 1;
    };
    assert_eq!(
        resume_from, expected,
        "it resumes exactly after the last change it got"
    );
    assert!(
        resume_from < first + 3000,
        "the subscriber must have lagged"
    );
    assert!(fx.server.wait_for(LONG, |s| s.change_subscriptions == 0));

    // Resuming from there delivers the rest, in order.
    raw.request(Operation::Subscribe, 2, json!({"from_seq": resume_from}));
    let (kind, _, _) = raw.read_json();
    assert_eq!(kind, FrameKind::Response);
    let (_, _, event) = raw.read_json();
    assert_eq!(event["change"]["seq"], resume_from);
    let _: Value = event;
    fx.server.shutdown().unwrap();
}

/// Writes from `clients` threads of `fx`, 100 each with one read after
/// each, against a store whose applier backlog holds four writes: every
/// write is acknowledged and read back whether the server answers it
/// where it reads the connection (room in the backlog) or elsewhere
/// (back-pressure).
fn writes_under_back_pressure(fx: &Fx, clients: usize) {
    common::clients_write_and_read_back(fx, clients, 100, 7, |_| {});
}

fn tiny_backlog(builder: hearth_ipc::ServerBuilder) -> hearth_ipc::ServerBuilder {
    builder.store_options(hearth_store::Options {
        max_pending_ops: 4,
        ..hearth_store::Options::default()
    })
}

#[test]
fn writes_over_the_socket_under_back_pressure_are_all_acknowledged() {
    writes_under_back_pressure(&Fx::socket(tiny_backlog), 6);
}

#[cfg(target_os = "linux")]
#[test]
fn writes_over_shared_memory_under_back_pressure_are_all_acknowledged() {
    writes_under_back_pressure(&Fx::start(common::Kind::Shm, tiny_backlog), 6);
}

/// Documents in `lists_fixture`: each `list {}` of them is five chunks
/// (256 documents a chunk), more than a stream's producer can hand off
/// before it has to wait for the client to read.
const LISTED_DOCS: usize = 1100;

/// A socket server whose stall timeout outlasts every wait of the tests
/// below (so that no stuck client is cut off while they wait), with a
/// small output queue, holding [`LISTED_DOCS`] small documents of type `T`.
fn lists_fixture() -> Fx {
    lists_fixture_with(|b| b)
}

/// [`lists_fixture`] with more settings.
fn lists_fixture_with(
    more: impl FnOnce(hearth_ipc::ServerBuilder) -> hearth_ipc::ServerBuilder,
) -> Fx {
    let fx = Fx::socket(|b| {
        more(
            b.stall_timeout(Duration::from_secs(300))
                .shutdown_timeout(Duration::from_secs(5))
                .output_queue_bytes(256 * 1024),
        )
    });
    let writes: Vec<hearth_ipc::WriteOp> = (0..LISTED_DOCS)
        .map(|i| hearth_ipc::WriteOp::Put {
            id: format!("d:{i:04}"),
            data: json!({"type": "T", "i": i}),
        })
        .collect();
    fx.client().batch(writes).unwrap();
    fx
}

/// `n` `list {}` requests, ids 1..=n, in one buffer.
fn pipelined_lists(n: u64) -> Vec<u8> {
    let mut requests = Vec::new();
    for id in 1..=n {
        hearth_proto::encode_frame(
            &mut requests,
            FrameKind::Request,
            hearth_proto::FrameFlags::JSON,
            Some(Operation::List),
            id,
            b"{}",
        )
        .unwrap();
    }
    requests
}

/// Reads `n` whole `list {}` streams of [`LISTED_DOCS`] documents from
/// `raw`: every stream's documents arrive complete and in id order, and
/// each ends with its summary. Returns the request ids in the order their
/// streams ended.
fn read_whole_lists(raw: &mut common::Raw, n: u64) -> Vec<u64> {
    let mut next = vec![0usize; n as usize + 1];
    let mut ended = Vec::new();
    while ended.len() < n as usize {
        let frame = raw.read_frame().expect("a frame, not EOF");
        let id = frame.header.request_id;
        assert!((1..=n).contains(&id), "an answer to request {id}");
        let value: Value = serde_json::from_slice(&frame.payload).unwrap();
        match frame.header.kind {
            FrameKind::StreamChunk => {
                for doc in value.as_array().unwrap() {
                    let i = next[id as usize];
                    assert_eq!(doc["id"], format!("d:{i:04}"), "stream {id}");
                    next[id as usize] += 1;
                }
            }
            FrameKind::StreamEnd => {
                assert_eq!(next[id as usize], LISTED_DOCS, "stream {id} complete");
                assert_eq!(value, json!({"count": LISTED_DOCS, "cursor": null}));
                ended.push(id);
            }
            kind => panic!("stream {id}: a {kind:?} frame: {value}"),
        }
    }
    ended
}

#[test]
fn a_connection_that_never_reads_its_lists_does_not_starve_another_clients_query() {
    const LISTS: u64 = 1024;
    let fx = lists_fixture();
    // A normal client, which gives up on a call after 30 s.
    let client = fx.client_with(|o| o.timeout(Duration::from_secs(30)));
    let before = fx.server.stats().requests;

    // One connection pipelines as many unlimited lists as it may have in
    // flight and reads none of their answers: its socket and output queue
    // fill, and every list it asked for waits for it to read.
    let mut stuck = fx.raw();
    stuck.send_bytes(&pipelined_lists(LISTS));
    assert!(fx.server.wait_for(LONG, |s| s.requests >= before + LISTS));

    // The other client's queries are answered meanwhile (each within its
    // 30 s timeout; not a measure of speed, only that they are answered at
    // all while the stuck connection holds its streams).
    for _ in 0..3 {
        let page = client.query(json!({"type": "T"}), Some(5), None).unwrap();
        assert_eq!(page.docs.len(), 5);
    }
    client.ping().unwrap();
    // All but the stuck connection's first few lists waited for a slot.
    assert!(fx.server.stats().streams_waited >= LISTS - 8);

    // Once it reads, every one of its streams completes, each in order.
    let ended = read_whole_lists(&mut stuck, LISTS);
    assert_eq!(ended.len() as u64, LISTS);
    assert!(fx.server.wait_for(LONG, |s| s.connections == 2));
    fx.server.shutdown().unwrap();
}

#[test]
fn unread_streams_of_many_connections_leave_half_the_pool_to_writes() {
    // A pool of eight threads: the server's streams may hold four. Three
    // connections each pipeline 64 lists (more than their socket and
    // output queue hold) and read none; each could run four, twelve in
    // all, which would hold every thread and queue the rest behind them
    // until the stall timeout.
    let fx = lists_fixture_with(|b| {
        b.max_blocking_threads(8)
            .max_running_streams_per_process(64)
    });
    let client = fx.client_with(|o| o.timeout(Duration::from_secs(30)));
    let before = fx.server.stats().requests;
    let mut stuck: Vec<common::Raw> = (0..3).map(|_| fx.raw()).collect();
    for raw in &mut stuck {
        raw.send_bytes(&pipelined_lists(64));
    }
    assert!(fx.server.wait_for(LONG, |s| s.requests >= before + 3 * 64));
    // Four connection slots each pass twelve streams on; the server's four
    // slots run four of them and the other eight wait, holding no thread.
    assert!(fx.server.wait_for(LONG, |s| s.streams_waited_server >= 8));
    // Once their output is full, four hold their threads for good.
    assert!(fx.server.wait_for(LONG, |s| s.streams_running == 4));

    // Writes and publishes run on the pool too, and still have threads:
    // answered within the client's timeout (not a measure of speed, only
    // that they are answered at all while the streams hold theirs). Deletes
    // of absent documents, so that the lists still to run see the same
    // documents.
    for i in 0..16 {
        assert_eq!(client.delete(&format!("absent:{i}")).unwrap(), None);
        client.publish("t", json!({"i": i})).unwrap();
    }
    client.ping().unwrap();
    assert!(fx.server.stats().streams_running <= 4);

    // Once the connections read, every stream completes.
    read_all_lists_together(fx, stuck, 64);
}

#[test]
fn one_processs_connections_share_its_stream_slots() {
    // Every connection of this test is one process's (its pid). With two
    // slots for the process, two connections pipelining 64 lists each (more
    // than their sockets and output queues hold) and reading none run two
    // between them, though each connection has four slots of its own.
    let fx = lists_fixture_with(|b| b.max_running_streams_per_process(2));
    let before = fx.server.stats().requests;
    let mut a = fx.raw();
    let mut b = fx.raw();
    a.send_bytes(&pipelined_lists(64));
    b.send_bytes(&pipelined_lists(64));
    assert!(fx.server.wait_for(LONG, |s| s.requests >= before + 128));
    // Eight have their connection's slot; two of them run and six wait for
    // the process's.
    assert!(fx.server.wait_for(LONG, |s| s.streams_waited_process >= 6));
    for _ in 0..100 {
        assert!(fx.server.stats().streams_running <= 2);
    }
    // Once their output is full, two hold their threads for good.
    assert!(fx.server.wait_for(LONG, |s| s.streams_running == 2));

    // Read together (a stream of one may wait for the other's to end),
    // every stream completes.
    read_all_lists_together(fx, vec![a, b], 64);
}

/// Reads `n` whole lists from each of `raws` at once, each on a thread of
/// its own; then no stream runs any more, and the server shuts down.
fn read_all_lists_together(fx: Fx, raws: Vec<common::Raw>, n: u64) {
    let readers: Vec<_> = raws
        .into_iter()
        .map(|mut raw| std::thread::spawn(move || read_whole_lists(&mut raw, n).len()))
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap() as u64, n);
    }
    assert!(fx.server.wait_for(LONG, |s| s.streams_running == 0));
    fx.server.shutdown().unwrap();
}

#[test]
fn lists_pipelined_and_read_late_end_in_the_order_they_were_sent() {
    // Streams of one connection run four at a time, taking their turns in
    // the order they were sent, and a stream gives its turn up only once
    // its end is queued: so at least `id - 4` streams end before stream
    // `id`. (Without turns, all of them produce at once and end in
    // whatever order their producers happen to be woken in.)
    const LISTS: u64 = 64;
    const RUNNING: usize = 4;
    let fx = lists_fixture();
    let before = fx.server.stats().requests;
    let mut late = fx.raw();
    late.send_bytes(&pipelined_lists(LISTS));
    assert!(fx.server.wait_for(LONG, |s| s.requests >= before + LISTS));
    let ended = read_whole_lists(&mut late, LISTS);
    for (position, &id) in ended.iter().enumerate() {
        assert!(
            id as usize <= position + RUNNING,
            "stream {id} ended {}th, before streams it was sent after: {ended:?}",
            position + 1
        );
    }
    fx.server.shutdown().unwrap();
}

/// Subscribes `raw` `n` times with requests 1..=n of `op` (payload
/// `body(id)`), and reads the `n` responses.
fn subscribe_many(raw: &mut common::Raw, n: u64, op: Operation, body: impl Fn(u64) -> Value) {
    for id in 1..=n {
        raw.request(op, id, body(id));
    }
    for _ in 1..=n {
        let (kind, id, value) = raw.read_json();
        assert_eq!(kind, FrameKind::Response, "request {id}: {value}");
    }
}

/// The events `raw`'s subscriptions 1..=n get, by request id, in arrival
/// order, until each has had one that `is_last`.
fn events_until(
    raw: &mut common::Raw,
    n: u64,
    is_last: impl Fn(&Value) -> bool,
) -> std::collections::BTreeMap<u64, Vec<Value>> {
    let mut got: std::collections::BTreeMap<u64, Vec<Value>> = Default::default();
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < n as usize {
        let (kind, id, value) = raw.read_json();
        assert_eq!(kind, FrameKind::Event, "{value}");
        assert!((1..=n).contains(&id), "an event for request {id}");
        assert!(!ended.contains(&id), "an event after the last: {value}");
        if is_last(&value) {
            ended.insert(id);
        }
        got.entry(id).or_default().push(value);
    }
    got
}

#[test]
fn an_event_published_to_many_subscriptions_reaches_each_once_with_its_payload() {
    let fx = Fx::socket(|b| b);
    let patterns = ["*", "fan:*", "fan:out:*", "fan:out:event"];
    let mut raws: Vec<_> = (0..4).map(|_| fx.raw()).collect();
    for raw in &mut raws {
        subscribe_many(
            raw,
            8,
            Operation::SubscribeTopic,
            |id| json!({"pattern": patterns[id as usize % patterns.len()]}),
        );
    }
    let payloads = [
        json!({"blob": "x".repeat(4096), "quoted": "a\"b\\c\n", "n": 1}),
        json!([1, 2.5, null, "é", {"deep": [[]]}]),
        json!("plain"),
        json!(null),
    ];
    let publisher = fx.client();
    for payload in &payloads {
        assert_eq!(
            publisher.publish("fan:out:event", payload.clone()).unwrap(),
            32
        );
    }
    assert_eq!(
        fx.server.publish("fan:out:event", &json!("end")).unwrap(),
        32
    );

    for raw in &mut raws {
        let got = events_until(raw, 8, |v| v["payload"] == "end");
        assert_eq!(got.len(), 8);
        for events in got.values() {
            let subscription = &events[0]["subscription"];
            let seen: Vec<&Value> = events.iter().map(|e| &e["payload"]).collect();
            let end = json!("end");
            let expected: Vec<&Value> = payloads.iter().chain([&end]).collect();
            assert_eq!(seen, expected, "each event once, in order, as published");
            assert!(
                events
                    .iter()
                    .all(|e| e["subscription"] == *subscription && e["topic"] == "fan:out:event")
            );
        }
    }
}

#[test]
fn a_change_to_many_subscriptions_reaches_each_once_in_order() {
    let fx = Fx::socket(|b| b);
    let mut raws: Vec<_> = (0..4).map(|_| fx.raw()).collect();
    for raw in &mut raws {
        subscribe_many(raw, 8, Operation::Subscribe, |id| {
            if id % 2 == 0 {
                json!({})
            } else {
                json!({"prefix": "fan:"})
            }
        });
    }
    let writer = fx.client();
    writer
        .put("fan:1", json!({"text": "y".repeat(4096)}))
        .unwrap();
    writer.patch("fan:1", json!({"quoted": "a\"b"})).unwrap();
    writer.delete("fan:1").unwrap();
    writer.put("fan:end", json!({})).unwrap();

    let mut first: Option<Vec<Value>> = None;
    for raw in &mut raws {
        let got = events_until(raw, 8, |v| v["change"]["id"] == "fan:end");
        for events in got.values() {
            let changes: Vec<Value> = events.iter().map(|e| e["change"].clone()).collect();
            let kinds: Vec<&str> = changes
                .iter()
                .map(|c| c["kind"].as_str().unwrap())
                .collect();
            assert_eq!(kinds, ["put", "patch", "delete", "put"]);
            assert!(
                changes
                    .windows(2)
                    .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
            );
            // Every subscription got the same changes.
            match &first {
                None => first = Some(changes),
                Some(first) => assert_eq!(first, &changes),
            }
        }
    }
}
