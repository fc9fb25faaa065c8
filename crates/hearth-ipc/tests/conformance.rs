//! The conformance suite: every operation's round trip, pipelining, errors,
//! subscriptions, handlers and events — run once per transport (Unix
//! socket, shared memory, in-process) through the same public client API.
//!
//! Owns: the behaviour every transport must share. Must never: depend on
//! timing (no sleeps for readiness, no wall-clock assertions).

mod common;

use common::{Fx, Kind};
use hearth_ipc::{
    AsyncClient, ChangeKind, IpcError, LimitSource, ListOptions, Page, Subscription, Within,
    WriteOp,
};
use hearth_proto::ErrorCode;
use serde_json::{Value, json};
use std::time::Duration;

fn remote_code(e: &IpcError) -> ErrorCode {
    match e {
        IpcError::Remote(body) => body.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

fn ping_answers(fx: &Fx) {
    let client = fx.client();
    client.ping().unwrap();
    let info = client.link_info().unwrap();
    let expected = match fx.kind {
        Kind::Socket => "socket",
        Kind::Shm => "shm",
        Kind::InProcess => "in-process",
    };
    assert_eq!(info.kind.name(), expected);
    assert_eq!(info.negotiated.version, 2);
    assert_eq!(info.negotiated.server_max_message_bytes, Some(32 << 20));
}

/// `Duration::MAX` (or any timeout too long to add to the clock) means no
/// timeout in practice: calls, streams and budgets work as with any other.
fn a_timeout_too_long_for_the_clock_is_kept_as_the_longest(fx: &Fx) {
    let client = fx.client_with(|o| {
        o.timeout(Duration::MAX)
            .connect_timeout(Duration::MAX)
            .resume_timeout(Duration::MAX)
    });
    client.put("long:1", json!({"v": 1})).unwrap();
    assert_eq!(client.get("long:1").unwrap(), Some(json!({"v": 1})));
    let forever = client.with_timeout(Duration::MAX);
    assert_eq!(forever.get("long:1").unwrap(), Some(json!({"v": 1})));
    assert!(matches!(
        forever.get_within("long:1", Duration::MAX),
        Within::Ready(Ok(Some(_)))
    ));
    let listed = forever.list(ListOptions::default()).unwrap();
    assert_eq!(listed.docs.len(), 1);
    let mut changes = forever
        .subscribe(Subscription::prefix("long:").from_seq(0))
        .unwrap();
    let change = changes.next_timeout(Duration::MAX).unwrap().unwrap();
    assert_eq!(change.id, "long:1");
    let mut events = forever.subscribe_topic("long:*").unwrap();
    forever.publish("long:event", json!({"n": 1})).unwrap();
    assert!(events.next_timeout(Duration::MAX).unwrap().is_some());
    assert_eq!(hearth_ipc::MAX_TIMEOUT.as_secs(), 100 * 365 * 24 * 3600);
}

fn put_then_get_round_trips(fx: &Fx) {
    let client = fx.client();
    let seq = client
        .put("user:1", json!({"name": "Alice", "tags": ["a", "é"]}))
        .unwrap();
    assert!(seq > 0);
    assert_eq!(
        client.get("user:1").unwrap(),
        Some(json!({"name": "Alice", "tags": ["a", "é"]}))
    );
    assert_eq!(client.get("user:missing").unwrap(), None);
    let odd_id = "ünïcode:\"quoted\"\\slash";
    client.put(odd_id, json!({"x": 1})).unwrap();
    assert_eq!(client.get(odd_id).unwrap(), Some(json!({"x": 1})));
    let seq2 = client.put("user:1", json!({"name": "Bob"})).unwrap();
    assert!(seq2 > seq);
    assert_eq!(client.get("user:1").unwrap(), Some(json!({"name": "Bob"})));
}

fn get_json_gives_the_documents_text(fx: &Fx) {
    let client = fx.client();
    let doc = json!({"name": "Zoë \"Z\"", "n": [1, 2.5, null], "nested": {"k": true}});
    client.put("text:1", doc.clone()).unwrap();
    let text = client.get_json("text:1").unwrap().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
    assert_eq!(client.get_json("text:missing").unwrap(), None);
    client.delete("text:1").unwrap();
    assert_eq!(client.get_json("text:1").unwrap(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut later = 0;
    client.put("text:2", json!({"a": 1})).unwrap();
    let text = settle(
        client.get_json_within("text:2", Duration::ZERO),
        &rt,
        &mut later,
    );
    assert_eq!(text.as_deref(), Some(r#"{"a":1}"#));
}

fn put_json_sends_the_text_as_it_is(fx: &Fx) {
    let client = fx.client();
    let seq = client
        .put_json("raw:1", r#" {"name":"Zoë","n":[1,2.5],"o":{"k":null}} "#)
        .unwrap();
    assert!(seq > 0);
    assert_eq!(
        client.get("raw:1").unwrap(),
        Some(json!({"name": "Zoë", "n": [1, 2.5], "o": {"k": null}}))
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut later = 0;
    let seq2 = settle(
        client.put_json_within("raw:1", r#"{"v":2}"#, Duration::ZERO),
        &rt,
        &mut later,
    );
    assert!(seq2 > seq);
    assert_eq!(client.get("raw:1").unwrap(), Some(json!({"v": 2})));
}

fn put_json_refuses_what_is_not_one_json_object(fx: &Fx) {
    let client = fx.client();
    client.put("raw:kept", json!({"kept": true})).unwrap();
    for bad in [
        "",
        "[1]",
        "\"s\"",
        "null",
        "42",
        "{\"a\":1",
        "{\"a\":1} {\"b\":2}",
        "{\"a\":1},\"id\":\"raw:kept\"",
    ] {
        let e = client.put_json("raw:kept", bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{bad:?}: {e}");
        match client.put_json_within("raw:kept", bad, Duration::ZERO) {
            Within::Ready(Err(e)) => assert_eq!(e.code(), ErrorCode::InvalidInput),
            other => panic!("{bad:?} was not refused at once: {other:?}"),
        }
    }
    // Nothing stored was touched.
    assert_eq!(client.get("raw:kept").unwrap(), Some(json!({"kept": true})));
}

fn patch_merges_and_null_removes(fx: &Fx) {
    let client = fx.client();
    client.put("p:1", json!({"a": 1, "b": 2})).unwrap();
    client.patch("p:1", json!({"b": null, "c": 3})).unwrap();
    assert_eq!(client.get("p:1").unwrap(), Some(json!({"a": 1, "c": 3})));
    client.patch("p:new", json!({"z": true})).unwrap();
    assert_eq!(client.get("p:new").unwrap(), Some(json!({"z": true})));
}

fn get_with_metadata_shows_tombstones(fx: &Fx) {
    let client = fx.client();
    let seq = client.put("m:1", json!({"v": 1})).unwrap();
    let doc = client.get_with_metadata("m:1").unwrap().unwrap();
    let meta = doc.metadata.unwrap();
    assert_eq!((meta.seq, meta.deleted), (seq, false));
    assert_eq!(doc.data, json!({"v": 1}));
    let del = client.delete("m:1").unwrap().unwrap();
    let doc = client.get_with_metadata("m:1").unwrap().unwrap();
    assert_eq!(doc.data, Value::Null);
    assert!(doc.metadata.unwrap().deleted);
    assert_eq!(doc.metadata.unwrap().seq, del);
    assert_eq!(client.get("m:1").unwrap(), None);
    assert_eq!(client.get_with_metadata("m:never").unwrap(), None);
}

fn delete_reports_whether_anything_was_deleted(fx: &Fx) {
    let client = fx.client();
    client.put("d:1", json!({})).unwrap();
    assert!(client.delete("d:1").unwrap().is_some());
    assert_eq!(client.delete("d:1").unwrap(), None);
    assert_eq!(client.delete("d:never").unwrap(), None);
}

fn list_filters_pages_and_streams(fx: &Fx) {
    let client = fx.client();
    let writes: Vec<WriteOp> = (0..1000)
        .map(|i| WriteOp::Put {
            id: format!("l:{i:04}"),
            data: json!({"type": if i % 2 == 0 { "Even" } else { "Odd" }, "i": i, "pad": "x".repeat(100)}),
        })
        .collect();
    client.batch(writes).unwrap();
    client.put("other:1", json!({"type": "Even"})).unwrap();

    let all = client
        .list(ListOptions {
            prefix: Some("l:".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.docs.len(), 1000);
    assert!(all.cursor.is_none());
    assert!(all.docs.windows(2).all(|w| w[0].id < w[1].id));

    let evens = client
        .list(ListOptions {
            prefix: Some("l:".into()),
            type_name: Some("Even".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(evens.docs.len(), 500);

    // Paging with the cursor visits every document once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .list(ListOptions {
                prefix: Some("l:".into()),
                limit: Some(300),
                after: after.clone(),
                ..Default::default()
            })
            .unwrap();
        seen.extend(page.docs.iter().map(|d| d.id.clone()));
        match page.cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    seen.dedup();
    assert_eq!(seen.len(), 1000);

    // Streamed: documents arrive chunk by chunk, in order.
    let stream = client
        .list_stream(ListOptions {
            prefix: Some("l:".into()),
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<String> = stream.map(|d| d.unwrap().id).collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids[0], "l:0000");

    // Abandoning a stream halfway leaves the connection usable.
    let mut stream = client
        .list_stream(ListOptions {
            prefix: Some("l:".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(stream.next().unwrap().is_ok());
    drop(stream);
    client.ping().unwrap();
}

fn short_pages_come_back_whole_in_order_with_their_cursors(fx: &Fx) {
    // Pages of at most a hundred without a type filter: over the socket the
    // reading loop answers those itself while their answer is small, and
    // leaves bigger ones (the 2 KiB documents) to the blocking pool.
    let client = fx.client();
    for (prefix, pad) in [("short:", 10), ("wide:", 2048)] {
        let writes: Vec<WriteOp> = (0..250)
            .map(|i| WriteOp::Put {
                id: format!("{prefix}{i:03}"),
                data: json!({"type": "Row", "i": i, "pad": "w".repeat(pad)}),
            })
            .collect();
        client.batch(writes).unwrap();
        for limit in [1, 10, 100] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = client
                    .list(ListOptions {
                        prefix: Some(prefix.into()),
                        limit: Some(limit),
                        after: after.clone(),
                        ..Default::default()
                    })
                    .unwrap();
                assert!(page.docs.len() <= limit);
                for d in &page.docs {
                    assert_eq!(d.data["pad"].as_str().map(str::len), Some(pad));
                }
                seen.extend(page.docs.iter().map(|d| d.data["i"].as_u64().unwrap()));
                match page.cursor {
                    Some(c) => {
                        assert_eq!(page.docs.len(), limit);
                        assert_eq!(Some(&c), page.docs.last().map(|d| &d.id));
                        after = Some(c);
                    }
                    None => break,
                }
            }
            assert_eq!(seen, (0..250).collect::<Vec<u64>>(), "{prefix} by {limit}");
        }
    }
}

fn query_and_search(fx: &Fx) {
    let client = fx.client();
    client
        .put(
            "q:1",
            json!({"type": "User", "name": "Alice Smith", "age": 30}),
        )
        .unwrap();
    client
        .put(
            "q:2",
            json!({"type": "User", "name": "Bob Jones", "age": 40}),
        )
        .unwrap();
    client
        .put(
            "q:3",
            json!({"type": "Order", "name": "alice order", "age": 30}),
        )
        .unwrap();
    let users = client.query(json!({"type": "User"}), None, None).unwrap();
    assert_eq!(
        users.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["q:1", "q:2"]
    );
    let thirty = client.query(json!({"age": 30}), Some(1), None).unwrap();
    assert_eq!(thirty.docs.len(), 1);
    assert_eq!(thirty.cursor.as_deref(), Some("q:1"));
    let rest = client
        .query(json!({"age": 30}), Some(1), thirty.cursor.as_deref())
        .unwrap();
    assert_eq!(rest.docs[0].id, "q:3");
    let hits = client.search("alice", 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| {
        h.doc.data["name"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("alice")
    }));
    let e = client.search("   ", 10).unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::InvalidInput);
}

fn batch_is_atomic(fx: &Fx) {
    let client = fx.client();
    let (first, last) = client
        .batch(vec![
            WriteOp::Put {
                id: "b:1".into(),
                data: json!({"n": 1}),
            },
            WriteOp::Patch {
                id: "b:1".into(),
                fields: json!({"m": 2}),
            },
            WriteOp::Put {
                id: "b:2".into(),
                data: json!({}),
            },
            WriteOp::Delete { id: "b:2".into() },
        ])
        .unwrap();
    assert_eq!(last - first, 3);
    assert_eq!(client.get("b:1").unwrap(), Some(json!({"n": 1, "m": 2})));
    assert_eq!(client.get("b:2").unwrap(), None);
    // One bad operation refuses the whole batch.
    let e = client
        .batch(vec![
            WriteOp::Put {
                id: "b:3".into(),
                data: json!({}),
            },
            WriteOp::Put {
                id: String::new(),
                data: json!({}),
            },
        ])
        .unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::InvalidInput);
    assert_eq!(client.get("b:3").unwrap(), None);
}

fn changes_since_and_stats(fx: &Fx) {
    let client = fx.client();
    let s1 = client.put("c:1", json!({"a": 1})).unwrap();
    let s2 = client.delete("c:1").unwrap().unwrap();
    let changes = client.changes_since(s1 - 1, 10).unwrap();
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![s1, s2]
    );
    assert_eq!(changes[0].kind, ChangeKind::Put);
    assert_eq!(changes[0].data, Some(json!({"a": 1})));
    assert_eq!(changes[1].kind, ChangeKind::Delete);
    assert_eq!(changes[1].data, None);
    let stats = client.stats().unwrap();
    assert_eq!(stats["store"]["last_seq"], s2);
    assert!(stats["server"]["connections"].as_u64().unwrap() >= 1);
}

fn errors_carry_stable_codes(fx: &Fx) {
    let client = fx.client();
    let e = client.put("", json!({})).unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::InvalidInput);
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    let e = client.put("x", json!([1, 2])).unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::InvalidInput);
    let e = client.put(&"x".repeat(600), json!({})).unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::InvalidInput);
    // The connection is fine after errors.
    client.ping().unwrap();
}

fn large_documents_round_trip_and_oversized_ones_are_refused(fx: &Fx) {
    let client = fx.client();
    let big = "y".repeat(3 << 20);
    client.put("big:1", json!({"blob": big})).unwrap();
    assert_eq!(
        client.get("big:1").unwrap().unwrap()["blob"]
            .as_str()
            .unwrap()
            .len(),
        3 << 20
    );
    let too_big = "z".repeat(17 << 20);
    let e = client.put("big:2", json!({"blob": too_big})).unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::TooLarge);
    client.ping().unwrap();
}

/// A request over the 32 MiB one message may hold on a default server
/// (its hello says so) is refused by a default client before anything is
/// sent (a server closes the connection that sends one): unary calls,
/// with a budget or without, and streamed ones. The connection, and a
/// subscription on it, go on.
fn a_request_over_the_message_limit_is_refused_before_it_is_sent(fx: &Fx) {
    let client = fx.client();
    assert_eq!(
        client.max_request_bytes(),
        Some(hearth_proto::DEFAULT_MAX_PAYLOAD_BYTES)
    );
    let mut events = client.subscribe_topic("big:*").unwrap();
    let blob = "x".repeat(hearth_proto::DEFAULT_MAX_PAYLOAD_BYTES + 1);
    let too_large = |what: &str, e: IpcError| {
        assert!(
            matches!(&e, IpcError::TooLarge { max, limit: LimitSource::Server, .. } if *max == hearth_proto::DEFAULT_MAX_PAYLOAD_BYTES),
            "{what}: {e:?}"
        );
        assert_eq!(e.code(), ErrorCode::TooLarge, "{what}");
        let message = e.to_string();
        assert!(message.contains("nothing was sent"), "{what}: {message}");
        assert!(
            message.contains("the 32 MiB (33554432 bytes) the server takes in one message"),
            "{what}: {message}"
        );
    };
    too_large(
        "publish",
        client
            .publish("big:one", json!({"blob": blob}))
            .unwrap_err(),
    );
    too_large(
        "call",
        client.call("test:echo", json!({"blob": blob})).unwrap_err(),
    );
    too_large("get", client.get(&blob).unwrap_err());
    let Within::Ready(Err(e)) = client.get_within(&blob, Duration::from_secs(10)) else {
        panic!("a get with a budget was not refused at once");
    };
    too_large("get_within", e);
    too_large(
        "batch",
        client
            .batch(vec![WriteOp::Put {
                id: "big:doc".into(),
                data: json!({"blob": blob}),
            }])
            .unwrap_err(),
    );
    too_large(
        "query",
        client.query(json!({"blob": blob}), None, None).unwrap_err(),
    );
    assert_eq!(client.publish("big:small", json!({"n": 1})).unwrap(), 1);
    let event = events.next().unwrap().unwrap();
    assert_eq!(
        (event.topic.as_str(), event.payload),
        ("big:small", json!({"n": 1}))
    );
    assert_eq!(client.get("big:doc").unwrap(), None);
    client.ping().unwrap();
}

/// Threads sharing one blocking client (over the socket each writes its
/// own request when nothing else is being written, a big one cut short by
/// a full socket and finished by the connection's writer) all get their
/// own answers, whole.
fn threads_sharing_a_blocking_client_get_their_own_answers(fx: &Fx) {
    let client = fx.client();
    std::thread::scope(|s| {
        for t in 0..6u32 {
            let client = client.clone();
            s.spawn(move || {
                for i in 0..40u32 {
                    let id = format!("shared:{t}:{i}");
                    // Every fourth write of the even threads is ~1 MiB.
                    let size = if t % 2 == 0 && i % 4 == 0 {
                        1 << 20
                    } else {
                        64
                    };
                    let blob = format!("{t}-{i}-").repeat(size / 4);
                    client.put(&id, json!({"blob": blob})).unwrap();
                    let got = client.get(&id).unwrap().unwrap();
                    assert_eq!(got["blob"].as_str(), Some(blob.as_str()), "{id}");
                }
            });
        }
    });
    client.ping().unwrap();
}

/// Threads sharing one blocking client, each listing, querying and
/// searching its own documents between writes and reads (over shared
/// memory each thread reads the ring for its call, or has its chunks
/// routed by the thread that does), all get their own streams, whole and
/// in order.
fn threads_sharing_a_blocking_client_get_their_own_streams(fx: &Fx) {
    let client = fx.client();
    std::thread::scope(|s| {
        for t in 0..6u32 {
            let client = client.clone();
            s.spawn(move || {
                let mine = format!("streams:{t}:");
                for i in 0..30u32 {
                    let id = format!("{mine}{i:02}");
                    let word = format!("word{t}x{i}");
                    client
                        .put(&id, json!({"owner": t, "i": i, "text": word}))
                        .unwrap();
                    let listed = client
                        .list(ListOptions {
                            prefix: Some(mine.clone()),
                            limit: Some(100),
                            ..Default::default()
                        })
                        .unwrap();
                    let order: Vec<u64> = listed
                        .docs
                        .iter()
                        .map(|d| d.data["i"].as_u64().unwrap())
                        .collect();
                    assert_eq!(order, (0..=u64::from(i)).collect::<Vec<_>>(), "{id}");
                    let queried = client.query(json!({"owner": t}), Some(100), None).unwrap();
                    assert_eq!(queried.docs.len(), i as usize + 1, "{id}");
                    assert!(queried.docs.iter().all(|d| d.id.starts_with(&mine)));
                    let hits = client.search(&word, 10).unwrap();
                    assert_eq!(hits.len(), 1, "{id}");
                    assert_eq!(hits[0].doc.id, id);
                    assert_eq!(client.get(&id).unwrap().unwrap()["i"], i);
                }
            });
        }
    });
    client.ping().unwrap();
}

fn many_requests_in_flight_on_one_connection(fx: &Fx) {
    let client = fx.client();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let client = client.clone();
            scope.spawn(move || {
                for i in 0..100 {
                    let id = format!("pipe:{t}:{i}");
                    client.put(&id, json!({"t": t, "i": i})).unwrap();
                    assert_eq!(client.get(&id).unwrap().unwrap()["i"], i);
                }
            });
        }
    });
    // The async client: 500 gets pipelined at once.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = fx.options();
    let async_client = match fx.kind {
        Kind::Socket | Kind::Shm => rt.block_on(AsyncClient::connect_with(options)).unwrap(),
        Kind::InProcess => rt.block_on(fx.server.connect_in_process_async()).unwrap(),
    };
    let results = rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500 {
            let c = async_client.clone();
            tasks.spawn(async move { c.get(&format!("pipe:{}:{}", i % 8, i % 100)).await });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            assert!(r.unwrap().unwrap().is_some());
            ok += 1;
        }
        ok
    });
    assert_eq!(results, 500);
}

fn handlers_answer_by_name_with_typed_errors(fx: &Fx) {
    let client = fx.client();
    assert_eq!(
        client.call("test:echo", json!({"a": [1, 2]})).unwrap(),
        json!({"a": [1, 2]})
    );
    let e = client
        .call("test:fail", json!({"name": "zed"}))
        .unwrap_err();
    match &e {
        IpcError::Remote(body) => {
            assert_eq!(body.code, ErrorCode::NotFound);
            assert_eq!(body.message, "nothing called zed");
        }
        other => panic!("{other:?}"),
    }
    let e = client.call("test:nope", json!({})).unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::UnknownOperation);
    assert!(e.to_string().contains("test:echo"), "{e}");
    let typed: Vec<u32> = client.call_as("test:echo", json!([1, 2, 3])).unwrap();
    assert_eq!(typed, vec![1, 2, 3]);
    let env = hearth_ipc::envelope(client.call("test:fail", json!({})));
    assert_eq!(env["success"], false);
    assert_eq!(env["error"]["code"], "not_found");
}

fn a_handler_added_to_a_running_server_answers_on_open_connections(fx: &Fx) {
    let client = fx.client();
    let before = client.call("test:whoami", json!({})).unwrap()["connection"].clone();
    let mut events = client.subscribe_topic("late:*").unwrap();
    let e = client
        .call("late:add", json!({"a": 1, "b": 2}))
        .unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::UnknownOperation);

    fx.server
        .handler("late:add", |_ctx, p| {
            Ok(json!(
                p["a"].as_i64().unwrap_or(0) + p["b"].as_i64().unwrap_or(0)
            ))
        })
        .unwrap();
    assert_eq!(client.call("late:add", json!({"a": 1, "b": 2})).unwrap(), 3);
    // Replacing is immediate too; async handlers as well.
    fx.server
        .async_handler("late:add", |_ctx, _p| async { Ok(json!("replaced")) })
        .unwrap();
    assert_eq!(
        client.call("late:add", json!({})).unwrap(),
        json!("replaced")
    );
    // The same connection throughout, and its subscription still delivers.
    let after = client.call("test:whoami", json!({})).unwrap()["connection"].clone();
    assert_eq!(before, after);
    fx.server.publish("late:news", &json!(1)).unwrap();
    assert_eq!(events.next().unwrap().unwrap().topic, "late:news");
    // A bad name is refused and changes nothing.
    let e = fx.server.handler("bad*name", |_c, p| Ok(p)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    let e = client.call("test:nope", json!({})).unwrap_err();
    assert!(e.to_string().contains("late:add"), "{e}");
}

fn a_panicking_handler_is_internal_and_the_server_lives(fx: &Fx) {
    let client = fx.client();
    for _ in 0..3 {
        let e = client.call("test:panic", json!({})).unwrap_err();
        assert_eq!(remote_code(&e), ErrorCode::Internal);
        assert!(e.to_string().contains("panicked on purpose"), "{e}");
    }
    client.ping().unwrap();
    fx.client().ping().unwrap();
}

fn rate_limited_handlers_refuse_past_their_burst(fx: &Fx) {
    let client = fx.client();
    // test:login: 0 per second, burst 2 — deterministic without a clock.
    assert_eq!(
        client
            .call("test:login", json!({"password": "pw"}))
            .unwrap()["success"],
        true
    );
    assert_eq!(
        client
            .call("test:login", json!({"password": "no"}))
            .unwrap()["success"],
        false
    );
    let e = client
        .call("test:login", json!({"password": "pw"}))
        .unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::RateLimited);
    // Another connection shares the limit.
    let e = fx.client().call("test:login", json!({})).unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::RateLimited);
    // Other handlers are not limited.
    client.call("test:echo", json!(1)).unwrap();
}

fn the_handler_context_names_the_caller(fx: &Fx) {
    let a = fx.client();
    let b = fx.client();
    let who_a = a.call("test:whoami", json!({})).unwrap();
    let who_b = b.call("test:whoami", json!({})).unwrap();
    assert_ne!(who_a["connection"], who_b["connection"]);
    assert_eq!(who_a["name"], "test:whoami");
    match fx.kind {
        Kind::Socket => {
            assert_eq!(who_a["pid"], std::process::id());
            assert_eq!(who_a["transport"], "socket");
        }
        Kind::Shm => {
            assert_eq!(who_a["pid"], std::process::id());
            assert_eq!(who_a["transport"], "shm");
        }
        Kind::InProcess => {
            assert_eq!(who_a["pid"], Value::Null);
            assert_eq!(who_a["transport"], "in-process");
        }
    }
}

fn a_timed_out_call_is_cancelled_and_the_connection_goes_on(fx: &Fx) {
    let client = fx.client();
    let short = client.with_timeout(Duration::from_millis(50));
    let e = short
        .call("test:sleep", json!({"ms": 600_000}))
        .unwrap_err();
    assert!(matches!(e, IpcError::Timeout { .. }), "{e:?}");
    assert_eq!(e.code(), ErrorCode::Timeout);
    client.ping().unwrap();
    assert_eq!(
        client.call("test:sleep", json!({"ms": 1})).unwrap()["slept"],
        1
    );
}

/// The answer of a call with a budget, now or after waiting for the rest.
fn settle<T>(within: Within<T>, rt: &tokio::runtime::Runtime, later: &mut usize) -> T {
    if matches!(within, Within::Later(_)) {
        *later += 1;
    }
    outcome(within, rt).unwrap()
}

/// What a call with a budget gave, at once or after waiting for the rest.
fn outcome<T>(within: Within<T>, rt: &tokio::runtime::Runtime) -> Result<T, IpcError> {
    match within {
        Within::Ready(result) => result,
        Within::Later(rest) => rt.block_on(rest.wait()),
    }
}

fn calls_with_a_zero_budget_hand_over_without_losing_an_answer(fx: &Fx) {
    // A zero budget makes nearly every call hand its wait over while the
    // server is answering: the race between routing and hand-over, 300
    // times per operation.
    let client = fx.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let zero = Duration::ZERO;
    let mut later = 0;
    for i in 0..300u64 {
        let id = format!("within:{i}");
        let seq = settle(
            client.put_within(&id, json!({"n": i}), zero),
            &rt,
            &mut later,
        );
        assert!(seq > 0);
        let seq2 = settle(
            client.patch_within(&id, json!({"m": i}), zero),
            &rt,
            &mut later,
        );
        assert!(seq2 > seq);
        let doc = settle(client.get_within(&id, zero), &rt, &mut later);
        assert_eq!(doc, Some(json!({"n": i, "m": i})));
        settle(client.ping_within(zero), &rt, &mut later);
        if i % 2 == 0 {
            let deleted = settle(client.delete_within(&id, zero), &rt, &mut later);
            assert!(deleted.is_some());
        }
        if i % 50 == 0 {
            // A megabyte document takes the server far longer than the
            // client's spin, so at least these calls are handed over.
            let big = json!({"blob": "x".repeat(1 << 20), "n": i});
            let big_id = format!("within:big:{i}");
            let seq = settle(client.put_within(&big_id, big, zero), &rt, &mut later);
            assert!(seq > 0);
        }
    }
    assert!(later > 0, "a zero budget never handed a call over");
    // Blocking calls still work on the same connection afterwards.
    assert_eq!(
        client.get("within:1").unwrap(),
        Some(json!({"n": 1, "m": 1}))
    );
    assert_eq!(client.get("within:0").unwrap(), None);
}

fn the_other_unary_calls_with_a_budget_give_what_their_plain_forms_give(fx: &Fx) {
    let client = fx.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut later = 0;
    for budget in [Duration::ZERO, Duration::from_secs(20)] {
        let writes = vec![
            WriteOp::Put {
                id: "unary:1".into(),
                data: json!({"a": 1}),
            },
            WriteOp::Put {
                id: "unary:2".into(),
                data: json!({"b": 2}),
            },
        ];
        let (first, last) = settle(client.batch_within(writes, budget), &rt, &mut later);
        assert_eq!(last, first + 1);
        let doc = settle(
            client.get_with_metadata_within("unary:1", budget),
            &rt,
            &mut later,
        )
        .unwrap();
        assert_eq!(doc, client.get_with_metadata("unary:1").unwrap().unwrap());
        assert_eq!(doc.metadata.as_ref().map(|m| m.seq), Some(first));
        assert_eq!(
            settle(
                client.get_with_metadata_within("unary:never", budget),
                &rt,
                &mut later
            ),
            None
        );
        assert_eq!(
            settle(
                client.call_within("test:echo", json!([1, "é"]), budget),
                &rt,
                &mut later
            ),
            json!([1, "é"])
        );
        assert_eq!(
            settle(
                client.publish_within("unary:topic", json!({}), budget),
                &rt,
                &mut later
            ),
            0,
            "nobody subscribes"
        );
    }
    // A handler's typed error comes back the same way, at once or later.
    let e = outcome(
        client.call_within("test:fail", json!({"name": "zed"}), Duration::ZERO),
        &rt,
    )
    .unwrap_err();
    assert_eq!(remote_code(&e), ErrorCode::NotFound);
}

fn streamed_calls_with_a_budget_give_what_their_plain_forms_give(fx: &Fx) {
    let client = fx.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut later = 0;
    // Enough documents for several chunks.
    let writes: Vec<WriteOp> = (0..600)
        .map(|i| WriteOp::Put {
            id: format!("streamed:{i:04}"),
            data: json!({"type": "Row", "i": i, "text": format!("row number {i}")}),
        })
        .collect();
    client.batch(writes).unwrap();
    let all = ListOptions {
        prefix: Some("streamed:".into()),
        ..ListOptions::default()
    };
    let plain = client.list(all.clone()).unwrap();
    assert_eq!(plain.docs.len(), 600);
    let limited = ListOptions {
        limit: Some(7),
        ..all.clone()
    };
    let plain_limited = client.list(limited.clone()).unwrap();
    let plain_query = client
        .query(json!({"type": "Row", "i": 5}), None, None)
        .unwrap();
    let plain_search = client.search("number", 5).unwrap();
    for budget in [Duration::ZERO, Duration::from_secs(20)] {
        // A zero budget hands most of these over mid-stream, some chunks
        // already read here, the rest to come.
        for _ in 0..20 {
            let page = settle(client.list_within(all.clone(), budget), &rt, &mut later);
            assert_eq!(page.docs, plain.docs);
            assert_eq!(page.cursor, None);
        }
        let page = settle(client.list_within(limited.clone(), budget), &rt, &mut later);
        assert_eq!(page.docs, plain_limited.docs);
        assert_eq!(page.cursor, plain_limited.cursor);
        assert!(page.cursor.is_some(), "a limited list says where to go on");
        let page = settle(
            client.query_within(json!({"type": "Row", "i": 5}), None, None, budget),
            &rt,
            &mut later,
        );
        assert_eq!(page.docs, plain_query.docs);
        let hits = settle(client.search_within("number", 5, budget), &rt, &mut later);
        assert_eq!(hits.len(), plain_search.len());
    }
    // Bad input fails the same way, at once or later.
    let e = outcome(
        client.query_within(json!("not an object"), None, None, Duration::ZERO),
        &rt,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    // The connection goes on as before.
    assert_eq!(client.list(limited).unwrap().docs, plain_limited.docs);
}

fn pages_and_matches_as_json_text_are_what_their_plain_forms_give(fx: &Fx) {
    let client = fx.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut later = 0;
    // Several chunks' worth, and ids and data that JSON must escape.
    let mut writes: Vec<WriteOp> = (0..300)
        .map(|i| WriteOp::Put {
            id: format!("text:{i:04}"),
            data: json!({"type": "Row", "i": i, "f": 0.5 + f64::from(i), "s": "é\"\\\n\u{1F600}", "text": format!("text number {i}")}),
        })
        .collect();
    writes.push(WriteOp::Put {
        id: "text:\"quoted\\\u{e9}".into(),
        data: json!({"type": "Odd", "nested": {"a": [1, null, true, {"b": "</script>"}]}}),
    });
    client.batch(writes).unwrap();
    let as_text = |page: &Page| {
        let docs: Vec<Value> = page
            .docs
            .iter()
            .map(|d| json!({"id": d.id, "data": d.data}))
            .collect();
        json!({"docs": docs, "cursor": page.cursor})
    };
    let all = ListOptions {
        prefix: Some("text:".into()),
        ..ListOptions::default()
    };
    let limited = ListOptions {
        limit: Some(7),
        ..all.clone()
    };
    let plain = as_text(&client.list(all.clone()).unwrap());
    let plain_limited = as_text(&client.list(limited.clone()).unwrap());
    let odd = json!({"type": "Odd"});
    let plain_query = as_text(&client.query(odd.clone(), None, None).unwrap());
    assert_eq!(plain["docs"].as_array().unwrap().len(), 301);
    assert_eq!(plain_query["docs"].as_array().unwrap().len(), 1);
    let plain_search: Vec<Value> = client
        .search("number", 25)
        .unwrap()
        .into_iter()
        .map(|h| json!({"id": h.doc.id, "data": h.doc.data, "score": h.score}))
        .collect();
    assert_eq!(plain_search.len(), 25);
    let parsed = |text: String| -> Value { serde_json::from_str(&text).unwrap() };
    for budget in [Duration::ZERO, Duration::from_secs(20)] {
        for _ in 0..10 {
            let text = settle(
                client.list_json_within(all.clone(), budget),
                &rt,
                &mut later,
            );
            assert_eq!(parsed(text), plain);
        }
        let text = settle(
            client.list_json_within(limited.clone(), budget),
            &rt,
            &mut later,
        );
        assert_eq!(parsed(text), plain_limited);
        assert!(plain_limited["cursor"].is_string());
        let text = settle(
            client.query_json_within(odd.clone(), None, None, budget),
            &rt,
            &mut later,
        );
        assert_eq!(parsed(text), plain_query);
        let text = settle(
            client.search_json_within("number", 25, budget),
            &rt,
            &mut later,
        );
        assert_eq!(parsed(text), Value::Array(plain_search.clone()));
    }
    // Bad input fails as the plain form does.
    let e = outcome(
        client.query_json_within(json!("not an object"), None, None, Duration::ZERO),
        &rt,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert_eq!(
        parsed(settle(
            client.list_json_within(limited, Duration::from_secs(20)),
            &rt,
            &mut later
        )),
        plain_limited
    );
}

fn a_call_within_its_budget_is_ready(fx: &Fx) {
    let client = fx.client();
    client.put("ready:1", json!({"a": 1})).unwrap();
    // A generous budget: the answer comes on the calling thread.
    match client.get_within("ready:1", Duration::from_secs(20)) {
        Within::Ready(doc) => assert_eq!(doc.unwrap(), Some(json!({"a": 1}))),
        Within::Later(_) => panic!("a budget as long as the timeout handed over"),
    }
    // Bad input fails at once, with its code, whatever the budget.
    match client.put_within("", json!({}), Duration::ZERO) {
        Within::Ready(Err(e)) => assert_eq!(e.code(), ErrorCode::InvalidInput),
        Within::Ready(Ok(_)) => panic!("an empty id was accepted"),
        Within::Later(rest) => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let e = rt.block_on(rest.wait()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidInput);
        }
    }
}

fn subscriptions_deliver_history_then_live_changes_in_order(fx: &Fx) {
    let client = fx.client();
    let first = client.put("s:1", json!({"n": 1})).unwrap();
    client.put("other:1", json!({"n": 0})).unwrap();
    client.patch("s:1", json!({"m": 2})).unwrap();
    let mut changes = client
        .subscribe(Subscription::prefix("s:").from_seq(first))
        .unwrap();
    let writer = fx.client();
    writer.delete("s:1").unwrap();
    writer.put("s:2", json!({"n": 2})).unwrap();
    writer.put("zzz", json!({})).unwrap();
    let got: Vec<_> = (0..4).map(|_| changes.next().unwrap().unwrap()).collect();
    assert_eq!(
        got.iter()
            .map(|c| (c.id.as_str(), c.kind))
            .collect::<Vec<_>>(),
        vec![
            ("s:1", ChangeKind::Put),
            ("s:1", ChangeKind::Patch),
            ("s:1", ChangeKind::Delete),
            ("s:2", ChangeKind::Put),
        ]
    );
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(got[1].data, Some(json!({"m": 2})));
    assert_eq!(changes.position(), got[3].seq + 1);
}

fn a_subscription_from_now_sees_only_new_changes(fx: &Fx) {
    let client = fx.client();
    client.put("now:old", json!({})).unwrap();
    let mut changes = client.subscribe(Subscription::all()).unwrap();
    client.put("now:new", json!({})).unwrap();
    assert_eq!(changes.next().unwrap().unwrap().id, "now:new");
    assert_eq!(
        changes.next_timeout(Duration::from_millis(1)).unwrap(),
        None
    );
}

fn a_slow_subscriber_resumes_and_sees_every_change_once(fx: &Fx) {
    // A client buffer of 2 events overflows at once; the stream resubscribes
    // from the last change it handed out.
    let client = fx.client_with(|o| o.event_buffer(2));
    let mut changes = client
        .subscribe(Subscription::prefix("slow:").from_seq(0))
        .unwrap();
    let writer = fx.client();
    let mut expected = Vec::new();
    for i in 0..300 {
        expected.push(writer.put(&format!("slow:{i}"), json!({"i": i})).unwrap());
    }
    // Read only once the buffer has overflowed: a reader that starts while
    // the changes are still on their way can keep pace with them (on a busy
    // machine the two threads take turns) and never fall behind.
    common::until(
        Duration::from_secs(10),
        "300 changes never overflowed a buffer of 2",
        || changes.overflowed(),
    );
    let got: Vec<u64> = (0..300)
        .map(|_| changes.next().unwrap().unwrap().seq)
        .collect();
    assert_eq!(got, expected);
    assert!(
        changes.resumes() > 0,
        "the small buffer must have forced a resume"
    );
    assert_eq!(
        changes.next_timeout(Duration::from_millis(1)).unwrap(),
        None
    );
    assert!(
        !changes.overflowed(),
        "the resumed subscription has kept up"
    );
}

fn topics_are_delivered_by_pattern(fx: &Fx) {
    let client = fx.client();
    let mut events = client.subscribe_topic("one-core:event:*").unwrap();
    let mut everything = client.subscribe_topic("*").unwrap();
    let other = fx.client();
    assert_eq!(
        other
            .publish("one-core:event:objectCreated", json!({"hash": "h"}))
            .unwrap(),
        2
    );
    assert_eq!(other.publish("user:login", json!({"u": 1})).unwrap(), 1);
    assert_eq!(
        fx.server
            .publish("one-core:event:syncProgress", &json!({"progress": 5}))
            .unwrap(),
        2
    );
    assert_eq!(
        other
            .call(
                "test:publish",
                json!({"topic": "one-core:event:fromHandler", "payload": 7})
            )
            .unwrap()["delivered"],
        2
    );
    let e1 = events.next().unwrap().unwrap();
    assert_eq!(
        (e1.topic.as_str(), e1.payload.clone()),
        ("one-core:event:objectCreated", json!({"hash": "h"}))
    );
    assert_eq!(
        events.next().unwrap().unwrap().topic,
        "one-core:event:syncProgress"
    );
    assert_eq!(events.next().unwrap().unwrap().payload, json!(7));
    let topics: Vec<String> = (0..4)
        .map(|_| everything.next().unwrap().unwrap().topic)
        .collect();
    assert_eq!(topics[1], "user:login");
    assert_eq!(events.dropped(), 0);
    let e = client.publish("bad:*", json!(null)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(client.subscribe_topic("bad*").is_err());
}

/// One event, many subscriptions on several connections: each gets it
/// once, with the payload as published.
fn an_event_to_many_subscriptions_reaches_each_once(fx: &Fx) {
    let clients: Vec<_> = (0..3).map(|_| fx.client()).collect();
    let mut streams = Vec::new();
    for client in &clients {
        for pattern in ["*", "many:*", "many:event"] {
            streams.push(client.subscribe_topic(pattern).unwrap());
        }
    }
    let payloads = [json!({"big": "z".repeat(3000), "q": "\"\\"}), json!("end")];
    let publisher = fx.client();
    for payload in &payloads {
        assert_eq!(publisher.publish("many:event", payload.clone()).unwrap(), 9);
    }
    for events in &mut streams {
        // The last is "end": a duplicate of the first would come before it.
        for payload in &payloads {
            let event = events.next().unwrap().unwrap();
            assert_eq!(
                (event.topic.as_str(), &event.payload),
                ("many:event", payload)
            );
        }
        assert_eq!(events.dropped(), 0);
    }
}

fn dropping_a_topic_stream_unsubscribes(fx: &Fx) {
    let client = fx.client();
    let events = client.subscribe_topic("drop:*").unwrap();
    assert_eq!(client.publish("drop:x", json!(1)).unwrap(), 1);
    drop(events);
    // Dropping sends the unsubscribe; requests on one connection may be
    // executed concurrently (a fast-path publish can overtake it), so the
    // server's count is the signal that it took effect.
    assert!(
        fx.server
            .wait_for(Duration::from_secs(20), |s| s.topic_subscriptions == 0)
    );
    assert_eq!(client.publish("drop:x", json!(2)).unwrap(), 0);
}

fn clients_see_each_others_writes(fx: &Fx) {
    let a = fx.client();
    let b = fx.client();
    a.put("shared:1", json!({"by": "a"})).unwrap();
    assert_eq!(b.get("shared:1").unwrap(), Some(json!({"by": "a"})));
}

/// The message limit a server of [`raised`]'s tests is started with.
const RAISED: usize = 40 << 20;

/// A server whose message limit was raised (to 40 MiB) says so in its
/// hello, so a client with nothing set sends a 33 MiB call, which the
/// server joins and echoes. Past the server's limit the client still
/// refuses before sending, naming that limit, and the connection goes on.
fn a_default_client_sends_what_a_raised_server_takes(fx: &Fx) {
    let client = fx.client();
    assert_eq!(client.max_request_bytes(), Some(RAISED));
    let info = client.link_info().unwrap();
    assert_eq!(
        info.negotiated.server_max_message_bytes,
        Some(RAISED as u64)
    );
    let blob = "b".repeat(33 << 20);
    let echoed = client
        .call("test:echo", json!({"blob": blob}))
        .expect("a 33 MiB call within the server's raised limit");
    assert_eq!(echoed["blob"].as_str().map(str::len), Some(33 << 20));
    drop((blob, echoed));
    let over = "o".repeat(RAISED);
    let e = client.call("test:echo", json!({"blob": over})).unwrap_err();
    assert!(
        matches!(
            &e,
            IpcError::TooLarge {
                max: RAISED,
                limit: LimitSource::Server,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("the 40 MiB (41943040 bytes) the server takes"),
        "{e}"
    );
    client.ping().unwrap();
}

/// A client may keep a lower limit of its own: a request above it is
/// refused before sending (`too_large`, naming the client's limit and the
/// server's) and the connection goes on. A limit above the server's is
/// the server's.
fn a_client_keeps_a_lower_limit_of_its_own(fx: &Fx) {
    let careful = fx.client_with(|o| o.max_request_bytes(1 << 20));
    assert_eq!(careful.max_request_bytes(), Some(1 << 20));
    let e = careful
        .publish("big:x", json!({"blob": "c".repeat(1 << 20)}))
        .unwrap_err();
    assert!(
        matches!(
            &e,
            IpcError::TooLarge { max, limit: LimitSource::Client { server_max: Some(RAISED) }, .. }
                if *max == 1 << 20
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::TooLarge);
    assert!(e.to_string().contains("the server takes 40 MiB"), "{e}");
    let within = "c".repeat(512 << 10);
    let echoed = careful.call("test:echo", json!({"blob": within})).unwrap();
    assert_eq!(echoed["blob"].as_str().map(str::len), Some(512 << 10));
    let eager = fx.client_with(|o| o.max_request_bytes(64 << 20));
    assert_eq!(eager.max_request_bytes(), Some(RAISED));
}

/// The message limit of [`raised_far`]'s server: past the 64 MiB a client
/// takes in one answer from a server whose limit is no larger.
const RAISED_FAR: usize = 72 << 20;

/// A client takes answers as long as the server's message limit, so a
/// 65 MiB call to a server at 72 MiB comes back echoed (the connection is
/// not ended for an answer over 64 MiB).
fn what_a_client_sends_can_come_back(fx: &Fx) {
    let client = fx.client();
    assert_eq!(client.max_request_bytes(), Some(RAISED_FAR));
    let blob = "e".repeat(65 << 20);
    let echoed = client
        .call("test:echo", json!({"blob": blob}))
        .expect("a 65 MiB call and its 65 MiB answer");
    assert_eq!(echoed["blob"].as_str().map(str::len), Some(65 << 20));
    client.ping().unwrap();
}

macro_rules! conformance {
    (@on $configure:expr; $($name:ident),* $(,)?) => {
        mod socket {
            $(
                #[test]
                fn $name() {
                    let fx = super::Fx::start(super::Kind::Socket, $configure);
                    super::$name(&fx);
                    fx.server.shutdown().unwrap();
                }
            )*
        }
        mod shm {
            $(
                #[test]
                fn $name() {
                    let fx = super::Fx::start(super::Kind::Shm, $configure);
                    super::$name(&fx);
                    fx.server.shutdown().unwrap();
                }
            )*
        }
        mod in_process {
            $(
                #[test]
                fn $name() {
                    let fx = super::Fx::start(super::Kind::InProcess, $configure);
                    super::$name(&fx);
                    fx.server.shutdown().unwrap();
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        conformance!(@on |b| b; $($name),*);
    };
}

/// The suite's cases for a server whose `max_message_bytes` was raised
/// to [`RAISED`].
mod raised {
    use super::*;

    conformance!(
        @on |b| b.max_message_bytes(crate::RAISED);
        a_default_client_sends_what_a_raised_server_takes,
        a_client_keeps_a_lower_limit_of_its_own,
    );
}

/// The suite's case for a server whose `max_message_bytes` is past the
/// 64 MiB a client takes in an answer by default ([`RAISED_FAR`]).
mod raised_far {
    use super::*;

    conformance!(
        @on |b| b.max_message_bytes(crate::RAISED_FAR);
        what_a_client_sends_can_come_back,
    );
}

conformance!(
    ping_answers,
    a_timeout_too_long_for_the_clock_is_kept_as_the_longest,
    put_then_get_round_trips,
    get_json_gives_the_documents_text,
    put_json_sends_the_text_as_it_is,
    put_json_refuses_what_is_not_one_json_object,
    patch_merges_and_null_removes,
    get_with_metadata_shows_tombstones,
    delete_reports_whether_anything_was_deleted,
    list_filters_pages_and_streams,
    short_pages_come_back_whole_in_order_with_their_cursors,
    query_and_search,
    batch_is_atomic,
    changes_since_and_stats,
    errors_carry_stable_codes,
    large_documents_round_trip_and_oversized_ones_are_refused,
    a_request_over_the_message_limit_is_refused_before_it_is_sent,
    threads_sharing_a_blocking_client_get_their_own_answers,
    threads_sharing_a_blocking_client_get_their_own_streams,
    many_requests_in_flight_on_one_connection,
    handlers_answer_by_name_with_typed_errors,
    a_handler_added_to_a_running_server_answers_on_open_connections,
    a_panicking_handler_is_internal_and_the_server_lives,
    rate_limited_handlers_refuse_past_their_burst,
    the_handler_context_names_the_caller,
    a_timed_out_call_is_cancelled_and_the_connection_goes_on,
    calls_with_a_zero_budget_hand_over_without_losing_an_answer,
    the_other_unary_calls_with_a_budget_give_what_their_plain_forms_give,
    streamed_calls_with_a_budget_give_what_their_plain_forms_give,
    pages_and_matches_as_json_text_are_what_their_plain_forms_give,
    a_call_within_its_budget_is_ready,
    subscriptions_deliver_history_then_live_changes_in_order,
    a_subscription_from_now_sees_only_new_changes,
    a_slow_subscriber_resumes_and_sees_every_change_once,
    topics_are_delivered_by_pattern,
    an_event_to_many_subscriptions_reaches_each_once,
    dropping_a_topic_stream_unsubscribes,
    clients_see_each_others_writes,
);
