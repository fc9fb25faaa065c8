//! The router: each parsed request to its work — a store call, a custom
//! handler, a subscription — and the JSON of its answer.
//!
//! Owns: which operations run inline (point reads, microseconds; writes
//! too while they wait only for the journal, `conn::answered`), which run
//! on the blocking pool (other writes, scans, handlers), streaming of `list`,
//! `query` and `search` in chunks, and turning handler failures and panics
//! into error replies. Must never: run a handler or a scan on the
//! connection's reading task, or let a handler panic take the server down.

use super::conn::{self, Conn, SubKind};
use super::slots::Admission;
use crate::handler::{Handler, HandlerError};
use crate::ops::{self, Request};
use hearth_proto::{ErrorBody, ErrorCode, Operation};
use hearth_store::{ListOptions, Store, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Documents per stream chunk.
const CHUNK_DOCS: usize = 256;
/// Bytes after which a stream chunk is sent even if not full.
const CHUNK_BYTES: usize = 256 * 1024;
/// Connections listed in a `stats` answer at most.
const MAX_LISTED_CONNECTIONS: usize = 1024;

fn store_err(e: StoreError) -> ErrorBody {
    e.to_body()
}

fn internal(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, message)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Whether the request is answered inline on the reading task: it cannot
/// block (no writes, no scans, no waiting on the applier).
pub(super) fn is_quick(request: &Request) -> bool {
    matches!(
        request,
        Request::Ping
            | Request::Get { .. }
            | Request::GetWithMetadata { .. }
            | Request::Unsubscribe { .. }
            | Request::UnsubscribeTopic { .. }
    )
}

/// Answers a quick request.
pub(super) fn quick(conn: &Conn, request: Request) -> Result<Vec<u8>, ErrorBody> {
    let store = &conn.shared.store;
    match request {
        Request::Ping => Ok(br#"{"pong":true}"#.to_vec()),
        Request::Get { id } => match store.get(&id).map_err(store_err)? {
            Some(doc) => {
                let mut out = String::with_capacity(doc.json().len() + id.len() + 20);
                ops::encode_doc(&mut out, doc.id(), doc.json());
                Ok(out.into_bytes())
            }
            None => Ok(b"null".to_vec()),
        },
        Request::GetWithMetadata { id } => match store.get_with_metadata(&id).map_err(store_err)? {
            Some(doc) => Ok(ops::encode_doc_with_metadata(&doc).into_bytes()),
            None => Ok(b"null".to_vec()),
        },
        Request::Unsubscribe { subscription } => conn.unsubscribe(SubKind::Change, subscription),
        Request::UnsubscribeTopic { subscription } => {
            conn.unsubscribe(SubKind::Topic, subscription)
        }
        other => Err(internal(format!("{other:?} is not a quick operation"))),
    }
}

/// Answers an inline request (see `conn::answered`) on the calling
/// thread: point reads, and writes that wait only for the journal. A panic
/// in the store becomes `internal` for this request.
pub(super) fn inline(conn: &Conn, request: Request) -> Result<Vec<u8>, ErrorBody> {
    let run = || match request {
        Request::Put { .. }
        | Request::PutJson { .. }
        | Request::Patch { .. }
        | Request::Delete { .. } => write(&conn.shared.store, request),
        other => quick(conn, other),
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(panic) => Err(internal(format!(
            "the operation failed unexpectedly: {}",
            panic_message(panic)
        ))),
    }
}

/// Whether the request is answered as a stream (`list`, `query`,
/// `search`).
pub(super) fn is_streamed(request: &Request) -> bool {
    matches!(
        request,
        Request::List { .. } | Request::Query { .. } | Request::Search { .. }
    )
}

/// Runs a request as its own task and sends its final frame; `slot`, for a
/// streamed request, is its place among the connection's stream slots.
pub(super) async fn run(
    conn: Arc<Conn>,
    op: Operation,
    id: u64,
    request: Request,
    slot: Option<Admission>,
) {
    match request {
        Request::List { .. } | Request::Query { .. } | Request::Search { .. } => {
            // The reading loop admits every streamed request, in the order
            // sent (`is_streamed`); were one to come without, it is
            // admitted now rather than run without a slot.
            let admission = slot.unwrap_or_else(|| conn.admit_stream());
            stream(conn, op, id, request, admission).await;
        }
        Request::Subscribe { prefix, from_seq } => {
            conn::subscribe_changes(&conn, op, id, prefix, from_seq).await;
        }
        Request::SubscribeTopic { pattern } => {
            conn::subscribe_topic(&conn, op, id, pattern).await;
        }
        Request::Call { name, payload } => {
            let result = call(&conn, &name, payload).await;
            conn.reply(id, op, result).await;
        }
        Request::Publish { topic, payload } => {
            let bus = conn.shared.bus.clone();
            let result = blocking(move || {
                bus.try_emit(&topic, &payload)
                    .map(|n| to_bytes(&json!({"delivered": n})))
                    .map_err(|e| ErrorBody::new(ErrorCode::InvalidInput, e.to_string()))
            })
            .await;
            conn.reply(id, op, result).await;
        }
        Request::Stats => {
            let store = conn.shared.store.clone();
            let server = conn.shared.stats();
            let mut connections = conn.shared.connections();
            connections.truncate(MAX_LISTED_CONNECTIONS);
            let caller = conn.id;
            let result = blocking(move || {
                let stats = store.stats().map_err(store_err)?;
                Ok(to_bytes(&json!({
                    "store": stats,
                    "server": server,
                    "connections": connections,
                    "connection": caller,
                })))
            })
            .await;
            conn.reply(id, op, result).await;
        }
        other => {
            let store = conn.shared.store.clone();
            let result = blocking(move || write(&store, other)).await;
            conn.reply(id, op, result).await;
        }
    }
}

/// Runs `f` on the blocking pool; a panic becomes `internal`.
async fn blocking<F>(f: F) -> Result<Vec<u8>, ErrorBody>
where
    F: FnOnce() -> Result<Vec<u8>, ErrorBody> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(internal(format!("the operation failed unexpectedly: {e}"))),
    }
}

/// `{"seq":N}`, written directly (the answer to every put and patch).
fn seq_reply(seq: u64) -> Vec<u8> {
    format!("{{\"seq\":{seq}}}").into_bytes()
}

/// Writes and log reads, on the blocking pool.
fn write(store: &Store, request: Request) -> Result<Vec<u8>, ErrorBody> {
    match request {
        Request::Put { id, data } => {
            let seq = store.put(&id, data).map_err(store_err)?;
            Ok(seq_reply(seq))
        }
        Request::PutJson { id, json } => {
            let seq = store.put_compact(&id, &json).map_err(store_err)?;
            Ok(seq_reply(seq))
        }
        Request::Patch { id, fields } => {
            let seq = store.patch(&id, fields).map_err(store_err)?;
            Ok(seq_reply(seq))
        }
        Request::Delete { id } => {
            let seq = store.delete(&id).map_err(store_err)?;
            Ok(to_bytes(&json!({"deleted": seq.is_some(), "seq": seq})))
        }
        Request::Batch { ops } => {
            let (first, last) = store.batch(ops).map_err(store_err)?;
            Ok(to_bytes(&json!({"first_seq": first, "last_seq": last})))
        }
        Request::ChangesSince { after, limit } => {
            let changes = store.changes_since(after, limit).map_err(store_err)?;
            let mut out = String::from("{\"changes\":[");
            for (i, c) in changes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ops::encode_change(&mut out, c);
            }
            out.push_str("],\"last_seq\":");
            out.push_str(&store.last_seq().to_string());
            out.push('}');
            Ok(out.into_bytes())
        }
        other => Err(internal(format!("{other:?} is not a write"))),
    }
}

/// Collects encoded documents into chunk payloads (`[…]`).
struct Chunker<F: FnMut(Vec<u8>) -> bool> {
    buf: String,
    docs: usize,
    /// Takes a chunk; false when nobody wants more (cancelled).
    send: F,
}

impl<F: FnMut(Vec<u8>) -> bool> Chunker<F> {
    fn new(send: F) -> Chunker<F> {
        Chunker {
            buf: String::from("["),
            docs: 0,
            send,
        }
    }

    /// Adds one element; false if the receiver is gone (cancelled).
    fn add(&mut self, encode: impl FnOnce(&mut String)) -> bool {
        if self.docs > 0 {
            self.buf.push(',');
        }
        encode(&mut self.buf);
        self.docs += 1;
        if self.docs >= CHUNK_DOCS || self.buf.len() >= CHUNK_BYTES {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.docs == 0 {
            return true;
        }
        self.buf.push(']');
        let chunk = std::mem::replace(&mut self.buf, String::from("["));
        self.docs = 0;
        (self.send)(chunk.into_bytes())
    }
}

fn cancelled() -> ErrorBody {
    ErrorBody::new(ErrorCode::Cancelled, "the stream was abandoned")
}

/// Produces a streamed result (on the blocking pool, or on a shared-memory
/// ring thread for a small one): chunks through `send` (false: stop, the
/// stream was abandoned), the stream-end summary as the return value.
pub(super) fn produce(
    store: Store,
    request: Request,
    send: impl FnMut(Vec<u8>) -> bool,
) -> Result<Vec<u8>, ErrorBody> {
    let mut chunker = Chunker::new(send);
    match request {
        Request::List {
            prefix,
            type_name,
            limit,
            after,
        } => {
            let list = store
                .list(ListOptions {
                    prefix,
                    type_name,
                    limit,
                    after,
                })
                .map_err(store_err)?;
            let mut count = 0usize;
            let mut last: Option<String> = None;
            for doc in list {
                let doc = doc.map_err(store_err)?;
                if !chunker.add(|out| ops::encode_doc(out, doc.id(), doc.json())) {
                    return Err(cancelled());
                }
                count += 1;
                last = Some(doc.id().to_string());
            }
            if !chunker.flush() {
                return Err(cancelled());
            }
            let cursor = match limit {
                Some(limit) if count >= limit => last,
                _ => None,
            };
            Ok(to_bytes(&json!({"count": count, "cursor": cursor})))
        }
        Request::Query {
            filter,
            limit,
            after,
        } => {
            let docs = store
                .query(&filter, limit, after.as_deref())
                .map_err(store_err)?;
            for doc in &docs {
                if !chunker.add(|out| ops::encode_doc(out, doc.id(), doc.json())) {
                    return Err(cancelled());
                }
            }
            if !chunker.flush() {
                return Err(cancelled());
            }
            let cursor = (docs.len() >= limit && limit > 0)
                .then(|| docs.last().map(|d| d.id().to_string()))
                .flatten();
            Ok(to_bytes(&json!({"count": docs.len(), "cursor": cursor})))
        }
        Request::Search { text, limit } => {
            let hits = store.search(&text, limit).map_err(store_err)?;
            for hit in &hits {
                let encoded = chunker.add(|out| {
                    ops::encode_doc(out, hit.doc.id(), hit.doc.json());
                    out.pop();
                    out.push_str(",\"score\":");
                    out.push_str(&Value::from(hit.score).to_string());
                    out.push('}');
                });
                if !encoded {
                    return Err(cancelled());
                }
            }
            if !chunker.flush() {
                return Err(cancelled());
            }
            Ok(to_bytes(&json!({"count": hits.len()})))
        }
        other => Err(internal(format!("{other:?} is not a streamed operation"))),
    }
}

/// A stream's chunks, gathered, and its end (the summary, or the error).
pub(super) type Gathered = (Vec<Vec<u8>>, Result<Vec<u8>, ErrorBody>);

/// The largest `limit` of a list the socket's reading loop answers itself
/// ([`small_list`]).
const SMALL_LIST_LIMIT: usize = 100;

/// The most bytes of chunks a list answered on the socket's reading loop
/// may make ([`small_list`]).
const SMALL_LIST_BYTES: usize = 64 * 1024;

/// A list small enough for the socket's reading loop to answer itself
/// rather than hop to the blocking pool and back (three wake-ups of
/// sleeping threads, most of a ~120 µs round trip): a limit of at most
/// [`SMALL_LIST_LIMIT`] and no `type` filter (SQLite then reads at most
/// `limit` rows past the prefix, whatever the store holds). Its chunks are
/// gathered first: `Some((chunks, end))` when they came to at most
/// [`SMALL_LIST_BYTES`]; `None` when the request is not such a list, or
/// its answer turned out bigger — nothing has been sent then, and the
/// caller streams it from the blocking pool as any other (what was
/// gathered is dropped: at most one chunk, `CHUNK_BYTES` and a document).
pub(super) fn small_list(store: &Store, request: &Request) -> Option<Gathered> {
    let Request::List {
        limit: Some(limit),
        type_name: None,
        ..
    } = request
    else {
        return None;
    };
    if *limit > SMALL_LIST_LIMIT {
        return None;
    }
    let (mut chunks, mut bytes, mut too_big) = (Vec::new(), 0usize, false);
    let gather = |chunk: Vec<u8>| {
        bytes += chunk.len();
        if bytes > SMALL_LIST_BYTES {
            too_big = true;
            return false;
        }
        chunks.push(chunk);
        true
    };
    let end = produce_caught(store.clone(), request.clone(), Operation::List, gather);
    (!too_big).then_some((chunks, end))
}

/// [`produce`] on the calling thread, a panic in it an `internal` error
/// of the `op` stream rather than the end of the thread that answers.
pub(super) fn produce_caught(
    store: Store,
    request: Request,
    op: Operation,
    send: impl FnMut(Vec<u8>) -> bool,
) -> Result<Vec<u8>, ErrorBody> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        produce(store, request, send)
    }))
    .unwrap_or_else(|panic| {
        Err(internal(format!(
            "the {} stream failed unexpectedly: {}",
            op.name(),
            panic_message(panic)
        )))
    })
}

/// Streams a list, query or search: stream-chunk frames, then stream-end.
/// The producer runs on the blocking pool once the stream has one of its
/// connection's slots (`admission`), then one of its process's and one of
/// the server's (`slots.rs`), and keeps its thread while the client does
/// not read (`blocking_send`); so one connection's, one process's and all
/// streams hold at most that many threads, and the rest wait here,
/// holding none.
async fn stream(conn: Arc<Conn>, op: Operation, id: u64, request: Request, admission: Admission) {
    let Some(slot) = conn.stream_places(admission).await else {
        let gone = ErrorBody::new(ErrorCode::Cancelled, "the connection is closing");
        return conn.reply_end(id, op, Err(gone)).await;
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(2);
    let shared = conn.shared.clone();
    let store = conn.shared.store.clone();
    // The places go with the producer and come back with its result: a
    // stream cancelled (its task aborted) while its producer still runs —
    // a query scans the whole table before its first chunk — keeps them
    // until that thread is done, so that a connection cancelling streams
    // one after another still holds no more pool threads than its slots.
    let producer = tokio::task::spawn_blocking(move || {
        let _running = super::producers::Producing::start(shared);
        let end = produce(store, request, move |c| tx.blocking_send(c).is_ok());
        (end, slot)
    });
    while let Some(chunk) = rx.recv().await {
        if !conn.chunk(id, op, chunk).await {
            break;
        }
    }
    drop(rx);
    let (end, slot) = match producer.await {
        Ok((end, slot)) => (end, Some(slot)),
        Err(e) => (
            Err(internal(format!(
                "the {} stream failed unexpectedly: {e}",
                op.name()
            ))),
            None,
        ),
    };
    conn.reply_end(id, op, end).await;
    // Only now, so that the connection's streams end in the order they got
    // their slots, give or take the slots' number.
    drop(slot);
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

/// Calls a custom handler off the I/O path, catching its panic.
async fn call(conn: &Arc<Conn>, name: &str, payload: Value) -> Result<Vec<u8>, ErrorBody> {
    let shared = &conn.shared;
    let found = {
        let handlers = shared.handlers.read();
        handlers.get(name).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = handlers.keys().map(String::as_str).collect();
            known.sort_unstable();
            let list = if known.is_empty() {
                "this server has no handlers".to_string()
            } else {
                let shown: Vec<&str> = known.iter().take(20).copied().collect();
                format!(
                    "this server has: {}{}",
                    shown.join(", "),
                    if known.len() > 20 { ", …" } else { "" }
                )
            };
            ErrorBody::new(
                ErrorCode::UnknownOperation,
                format!("no handler named {name:?}; {list}"),
            )
        })
    };
    let handler = found?;
    let ctx = shared.handler_context(name, conn.id, &conn.info);
    let joined = match handler {
        Handler::Sync(f) => tokio::task::spawn_blocking(move || f(&ctx, payload)).await,
        Handler::Async(f) => tokio::spawn(f(ctx, payload)).await,
    };
    match joined {
        Ok(Ok(value)) => Ok(to_bytes(&value)),
        Ok(Err(HandlerError(body))) => Err(body),
        Err(e) if e.is_panic() => {
            let message = panic_message(e.into_panic());
            tracing::error!(handler = name, "handler panicked: {message}");
            Err(internal(format!(
                "handler {name:?} panicked: {message}; the server goes on (this is a bug in the handler)"
            )))
        }
        Err(_) => Err(ErrorBody::new(
            ErrorCode::Cancelled,
            format!("handler {name:?} was cancelled"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_of(docs: usize, pad: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), hearth_store::Options::default()).unwrap();
        for i in 0..docs {
            let data = json!({"type": "Row", "i": i, "pad": "p".repeat(pad)});
            store.put(&format!("r:{i:03}"), data).unwrap();
        }
        (dir, store)
    }

    fn list(limit: Option<usize>, type_name: Option<&str>) -> Request {
        Request::List {
            prefix: Some("r:".into()),
            type_name: type_name.map(Into::into),
            limit,
            after: Some("r:004".into()),
        }
    }

    #[test]
    fn a_small_list_is_answered_in_full_with_its_cursor() {
        let (_dir, store) = store_of(30, 10);
        let (chunks, end) = small_list(&store, &list(Some(10), None)).unwrap();
        let docs: Vec<Value> = chunks
            .iter()
            .flat_map(|c| serde_json::from_slice::<Vec<Value>>(c).unwrap())
            .collect();
        let ids: Vec<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            (5..15).map(|i| format!("r:{i:03}")).collect::<Vec<_>>()
        );
        let end: Value = serde_json::from_slice(&end.unwrap()).unwrap();
        assert_eq!(end, json!({"count": 10, "cursor": "r:014"}));
    }

    #[test]
    fn a_list_whose_answer_outgrows_the_small_size_is_left_to_the_blocking_pool() {
        // 20 documents of ~4 KiB: more than `SMALL_LIST_BYTES`.
        let (_dir, store) = store_of(30, 4096);
        assert!(small_list(&store, &list(Some(20), None)).is_none());
        assert!(small_list(&store, &list(Some(5), None)).is_some());
    }

    #[test]
    fn long_unlimited_or_filtered_lists_are_not_small() {
        let (_dir, store) = store_of(3, 10);
        assert!(small_list(&store, &list(Some(SMALL_LIST_LIMIT + 1), None)).is_none());
        assert!(small_list(&store, &list(None, None)).is_none());
        assert!(small_list(&store, &list(Some(10), Some("Row"))).is_none());
        let query = Request::Query {
            filter: serde_json::Map::new(),
            limit: 10,
            after: None,
        };
        assert!(small_list(&store, &query).is_none());
    }

    #[test]
    fn the_seq_reply_is_what_serde_would_write() {
        for seq in [0, 1, 42, u64::MAX] {
            assert_eq!(seq_reply(seq), to_bytes(&json!({ "seq": seq })));
        }
    }
}
