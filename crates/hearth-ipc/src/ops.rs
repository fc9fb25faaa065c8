//! Operation payloads: requests parsed from untrusted JSON into typed
//! values, and the JSON of responses, stream chunks and events.
//!
//! Owns: the JSON shape of every operation (documented in
//! `docs/protocol.md`, "Operations") on both sides — the server's parser and
//! encoders, the client's decoders. Must never: do I/O, trust a field's
//! presence or type, accept an unknown field silently, or re-serialise a
//! stored document (its JSON text is spliced in as is).

use hearth_proto::{CompactDocument, ErrorBody, ErrorCode, Limits, Operation, validate_id};
use hearth_store::{ChangeKind, WriteOp};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The default number of hits `search` returns.
pub(crate) const DEFAULT_SEARCH_LIMIT: usize = 20;
/// The default number of changes `changes_since` returns.
pub(crate) const DEFAULT_CHANGES_LIMIT: usize = 1000;

/// A parsed, validated request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Ping,
    Put {
        id: String,
        data: Value,
    },
    /// A put whose `data` is compact JSON text, kept as the client wrote
    /// it (the quick decoder's form; the store stores it as it is).
    PutJson {
        id: String,
        json: CompactDocument,
    },
    Patch {
        id: String,
        fields: Value,
    },
    Get {
        id: String,
    },
    GetWithMetadata {
        id: String,
    },
    Delete {
        id: String,
    },
    List {
        prefix: Option<String>,
        type_name: Option<String>,
        limit: Option<usize>,
        after: Option<String>,
    },
    Query {
        filter: Map<String, Value>,
        limit: usize,
        after: Option<String>,
    },
    Search {
        text: String,
        limit: usize,
    },
    Batch {
        ops: Vec<WriteOp>,
    },
    Subscribe {
        prefix: Option<String>,
        from_seq: Option<u64>,
    },
    Unsubscribe {
        subscription: u64,
    },
    Publish {
        topic: String,
        payload: Value,
    },
    SubscribeTopic {
        pattern: String,
    },
    UnsubscribeTopic {
        subscription: u64,
    },
    Call {
        name: String,
        payload: Value,
    },
    Stats,
    ChangesSince {
        after: u64,
        limit: usize,
    },
}

impl Request {
    /// The name rate limits are keyed on: the handler name for `call`, the
    /// operation name otherwise.
    pub(crate) fn limit_name(&self, op: Operation) -> &str {
        match self {
            Request::Call { name, .. } => name,
            _ => op.name(),
        }
    }
}

fn invalid(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidInput, message)
}

/// Reads a request's fields, refusing unknown ones and wrong types.
struct Fields<'a> {
    op: Operation,
    map: Map<String, Value>,
    known: &'a [&'a str],
}

impl<'a> Fields<'a> {
    fn new(op: Operation, value: Value, known: &'a [&'a str]) -> Result<Fields<'a>, ErrorBody> {
        let map = match value {
            Value::Object(map) => map,
            other => {
                return Err(invalid(format!(
                    "the {} request must be a JSON object, not {}",
                    op.name(),
                    hearth_proto::kind_of(&other)
                )));
            }
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown field {unknown:?} in the {} request; its fields are: {}",
                op.name(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        Ok(Fields { op, map, known })
    }

    /// The field, with `null` treated as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        debug_assert!(self.known.contains(&name));
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn missing(&self, name: &str, example: &str) -> ErrorBody {
        invalid(format!(
            "the {} request needs the field {name:?}, e.g. {example}",
            self.op.name()
        ))
    }

    fn wrong(&self, name: &str, want: &str, got: &Value) -> ErrorBody {
        invalid(format!(
            "field {name:?} of the {} request must be {want}, not {}",
            self.op.name(),
            hearth_proto::kind_of(got)
        ))
    }

    fn opt_str(&mut self, name: &str) -> Result<Option<String>, ErrorBody> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(name, "a string", &other)),
        }
    }

    fn str(&mut self, name: &str, example: &str) -> Result<String, ErrorBody> {
        self.opt_str(name)?
            .ok_or_else(|| self.missing(name, example))
    }

    fn id(&mut self) -> Result<String, ErrorBody> {
        let id = self.str("id", r#"{"id":"user:1"}"#)?;
        validate_id(&id).map_err(|e| invalid(e.to_string()))?;
        Ok(id)
    }

    fn opt_u64(&mut self, name: &str) -> Result<Option<u64>, ErrorBody> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(name, "a non-negative integer", &v)),
        }
    }

    fn opt_usize(&mut self, name: &str) -> Result<Option<usize>, ErrorBody> {
        Ok(self
            .opt_u64(name)?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
    }

    fn object(&mut self, name: &str, example: &str) -> Result<Value, ErrorBody> {
        match self.take(name) {
            None => Err(self.missing(name, example)),
            Some(v @ Value::Object(_)) => Ok(v),
            Some(other) => Err(self.wrong(name, "a JSON object", &other)),
        }
    }

    fn any(&mut self, name: &str) -> Value {
        self.map.remove(name).unwrap_or(Value::Null)
    }
}

/// Parses the payload of a request for `op`. An empty payload counts as
/// `{}`. Invalid UTF-8, invalid JSON and nesting deeper than 128 levels are
/// refused as `invalid_input` without risk to the stack.
pub(crate) fn parse_request(
    op: Operation,
    payload: &[u8],
    limits: &Limits,
) -> Result<Request, ErrorBody> {
    match quick_parse(op, payload) {
        Some(request) => Ok(request),
        None => parse_general(op, payload, limits),
    }
}

/// The hot point operations in their usual shape, decoded straight into
/// their fields (no tree for the request object): `{"id":…}` for get,
/// get_with_metadata and delete, `{"id":…,"data":{…}}` for put. It accepts
/// exactly what [`parse_general`] accepts in that shape and gives the same
/// request; anything else (another shape, a bad id, an error to explain)
/// is left to [`parse_general`] and its messages.
fn quick_parse(op: Operation, payload: &[u8]) -> Option<Request> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Put<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    // serde's derived structs also accept an array of the fields in
    // order; a request is an object.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let request = match op {
        Operation::Get | Operation::GetWithMetadata | Operation::Delete => {
            let id = match split_id_only(payload) {
                Some(id) => id.to_string(),
                None => {
                    let IdOnly { id } = serde_json::from_slice(payload).ok()?;
                    id.into_owned()
                }
            };
            validate_id(&id).ok()?;
            match op {
                Operation::Get => Request::Get { id },
                Operation::GetWithMetadata => Request::GetWithMetadata { id },
                _ => Request::Delete { id },
            }
        }
        Operation::Put => {
            let (id, json) = match split_put(payload) {
                Some((id, data)) => (id.to_string(), CompactDocument::new(data)?),
                None => {
                    let Put { id, data } = serde_json::from_slice(payload).ok()?;
                    // Only compact objects: anything else (including nesting
                    // past the parser's limit) is the general parser's.
                    (id.into_owned(), CompactDocument::new(data.get())?)
                }
            };
            validate_id(&id).ok()?;
            Request::PutJson { id, json }
        }
        _ => return None,
    };
    Some(request)
}

/// Whether byte `b` cannot stand between JSON quotes as it is.
fn needs_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Whether `s` can stand between JSON quotes as it is (nothing to escape).
fn is_plain_json_str(s: &[u8]) -> bool {
    !s.iter().any(|&b| needs_escape(b))
}

/// Appends `s` as a JSON string: quoted as it is when nothing needs
/// escaping (ids almost always), else as serde_json writes it.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    if is_plain_json_str(s.as_bytes()) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&json_string(s));
    }
}

/// `{"id":"<plain>"` at the start of `payload`, as the hearth clients and
/// server write it: the id (no escape in it) and what follows.
pub(crate) fn split_leading_id(payload: &[u8]) -> Option<(&str, &[u8])> {
    let rest = payload.strip_prefix(b"{\"id\":\"")?;
    let end = rest.iter().position(|&b| needs_escape(b))?;
    if rest[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&rest[..end]).ok()?, &rest[end + 1..]))
}

/// `{"id":"…"}` exactly as the clients write it, without a parser.
fn split_id_only(payload: &[u8]) -> Option<&str> {
    match split_leading_id(payload)? {
        (id, b"}") => Some(id),
        _ => None,
    }
}

/// A put exactly as the clients write it, `{"id":"…","data":…}` with no
/// whitespace and no escape in the id: the id and the data's text, without
/// a parser. The data is still to be checked (it may run past its object).
fn split_put(payload: &[u8]) -> Option<(&str, &str)> {
    let (id, rest) = split_leading_id(payload)?;
    let data = rest.strip_prefix(b",\"data\":")?.strip_suffix(b"}")?;
    Some((id, std::str::from_utf8(data).ok()?))
}

/// The quick decoder keeps a put's document as text; the general one
/// parses it. The same request either way once the text is parsed.
#[cfg(any(test, feature = "fuzzing"))]
fn as_tree(request: Request) -> Request {
    match request {
        Request::PutJson { id, json } => match serde_json::from_str(json.as_str()) {
            Ok(data) => Request::Put { id, data },
            Err(_) => Request::PutJson { id, json },
        },
        other => other,
    }
}

/// Decodes `payload` for `op` with the quick decoder and the general one
/// and panics where they disagree: where the quick one answers, its request
/// (a put's text compared as its tree) is the general one's; where it does
/// not, the decoder the server runs answers as the general one. True when
/// the quick decoder answered. For the tests and the request fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
fn assert_decoders_agree(op: Operation, payload: &[u8]) -> bool {
    let limits = Limits::default();
    let general = parse_general(op, payload, &limits);
    let shown = || format!("{op:?} {}", String::from_utf8_lossy(payload));
    match quick_parse(op, payload) {
        Some(quick) => {
            assert_eq!(Ok(as_tree(quick)), general, "{}", shown());
            true
        }
        None => {
            assert_eq!(parse_request(op, payload, &limits), general, "{}", shown());
            false
        }
    }
}

/// For the request fuzz target (feature `fuzzing`, not an API): decodes
/// `payload` as a request for operation `code` with the quick decoder and
/// the general one, and panics if they disagree or either panics.
#[cfg(feature = "fuzzing")]
pub fn fuzz_request(code: u16, payload: &[u8]) {
    if let Some(op) = Operation::from_code(code) {
        assert_decoders_agree(op, payload);
    }
}

/// Parses any request through a JSON tree, with a precise message for
/// every way it can be wrong.
fn parse_general(op: Operation, payload: &[u8], limits: &Limits) -> Result<Request, ErrorBody> {
    // Before the parse, which would give a reserved key its other meaning
    // (a document would be stored as something other than what was sent).
    if let Ok(text) = std::str::from_utf8(payload) {
        hearth_proto::check_reserved_keys(text)
            .map_err(|e| invalid(format!("the {} request: {e}", op.name())))?;
    }
    let value: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(payload).map_err(|e| {
            invalid(format!(
                "the {} request payload is not valid JSON: {e}",
                op.name()
            ))
        })?
    };
    let max_page = limits.max_page;
    Ok(match op {
        Operation::Ping => {
            Fields::new(op, value, &[])?;
            Request::Ping
        }
        Operation::Stats => {
            Fields::new(op, value, &[])?;
            Request::Stats
        }
        Operation::Put => {
            let mut f = Fields::new(op, value, &["id", "data"])?;
            Request::Put {
                id: f.id()?,
                data: f.object("data", r#"{"id":"user:1","data":{"name":"Alice"}}"#)?,
            }
        }
        Operation::Patch => {
            let mut f = Fields::new(op, value, &["id", "fields"])?;
            Request::Patch {
                id: f.id()?,
                fields: f.object("fields", r#"{"id":"user:1","fields":{"email":"a@b"}}"#)?,
            }
        }
        Operation::Get => {
            let mut f = Fields::new(op, value, &["id"])?;
            Request::Get { id: f.id()? }
        }
        Operation::GetWithMetadata => {
            let mut f = Fields::new(op, value, &["id"])?;
            Request::GetWithMetadata { id: f.id()? }
        }
        Operation::Delete => {
            let mut f = Fields::new(op, value, &["id"])?;
            Request::Delete { id: f.id()? }
        }
        Operation::List => {
            let mut f = Fields::new(op, value, &["prefix", "type", "limit", "after"])?;
            Request::List {
                prefix: f.opt_str("prefix")?,
                type_name: f.opt_str("type")?,
                limit: f.opt_usize("limit")?,
                after: f.opt_str("after")?,
            }
        }
        Operation::Query => {
            let mut f = Fields::new(op, value, &["filter", "limit", "after"])?;
            let filter = match f.object("filter", r#"{"filter":{"type":"User"}}"#)? {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            Request::Query {
                filter,
                limit: f.opt_usize("limit")?.unwrap_or(max_page).min(max_page),
                after: f.opt_str("after")?,
            }
        }
        Operation::Search => {
            let mut f = Fields::new(op, value, &["text", "limit"])?;
            Request::Search {
                text: f.str("text", r#"{"text":"alice"}"#)?,
                limit: f
                    .opt_usize("limit")?
                    .unwrap_or(DEFAULT_SEARCH_LIMIT)
                    .min(max_page),
            }
        }
        Operation::Batch => {
            let mut f = Fields::new(op, value, &["ops"])?;
            let ops = match f.take("ops") {
                Some(Value::Array(ops)) => ops,
                Some(other) => return Err(f.wrong("ops", "an array", &other)),
                None => {
                    return Err(f.missing(
                        "ops",
                        r#"{"ops":[{"op":"put","id":"a","data":{}},{"op":"delete","id":"b"}]}"#,
                    ));
                }
            };
            if ops.len() > limits.max_batch_ops {
                return Err(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!(
                        "a batch holds at most {} operations, this one has {}; split it",
                        limits.max_batch_ops,
                        ops.len()
                    ),
                ));
            }
            let ops = ops
                .into_iter()
                .enumerate()
                .map(|(i, op)| parse_write_op(i, op))
                .collect::<Result<Vec<_>, _>>()?;
            if ops.is_empty() {
                return Err(invalid("a batch needs at least one operation"));
            }
            Request::Batch { ops }
        }
        Operation::Subscribe => {
            let mut f = Fields::new(op, value, &["prefix", "from_seq"])?;
            Request::Subscribe {
                prefix: f.opt_str("prefix")?,
                from_seq: f.opt_u64("from_seq")?,
            }
        }
        Operation::Unsubscribe | Operation::UnsubscribeTopic => {
            let mut f = Fields::new(op, value, &["subscription"])?;
            let subscription = f
                .opt_u64("subscription")?
                .ok_or_else(|| f.missing("subscription", r#"{"subscription":1}"#))?;
            if op == Operation::Unsubscribe {
                Request::Unsubscribe { subscription }
            } else {
                Request::UnsubscribeTopic { subscription }
            }
        }
        Operation::Publish => {
            let mut f = Fields::new(op, value, &["topic", "payload"])?;
            let topic = f.str(
                "topic",
                r#"{"topic":"one-core:event:syncProgress","payload":{}}"#,
            )?;
            hearth_bus::validate_topic(&topic).map_err(|e| invalid(e.to_string()))?;
            Request::Publish {
                topic,
                payload: f.any("payload"),
            }
        }
        Operation::SubscribeTopic => {
            let mut f = Fields::new(op, value, &["pattern"])?;
            let pattern = f.str("pattern", r#"{"pattern":"one-core:event:*"}"#)?;
            hearth_bus::validate_pattern(&pattern).map_err(|e| invalid(e.to_string()))?;
            Request::SubscribeTopic { pattern }
        }
        Operation::Call => {
            let mut f = Fields::new(op, value, &["name", "payload"])?;
            let name = f.str("name", r#"{"name":"one-core:login","payload":{}}"#)?;
            Request::Call {
                name,
                payload: f.any("payload"),
            }
        }
        Operation::ChangesSince => {
            let mut f = Fields::new(op, value, &["after", "limit"])?;
            Request::ChangesSince {
                after: f.opt_u64("after")?.unwrap_or(0),
                limit: f
                    .opt_usize("limit")?
                    .unwrap_or(DEFAULT_CHANGES_LIMIT)
                    .min(max_page),
            }
        }
    })
}

fn parse_write_op(index: usize, value: Value) -> Result<WriteOp, ErrorBody> {
    let at = |msg: String| invalid(format!("batch operation {index}: {msg}"));
    let Value::Object(mut map) = value else {
        return Err(at(format!(
            "must be an object such as {{\"op\":\"put\",\"id\":\"a\",\"data\":{{}}}}, not {}",
            hearth_proto::kind_of(&value)
        )));
    };
    let kind = match map.remove("op") {
        Some(Value::String(s)) => s,
        _ => return Err(at("needs \"op\": \"put\", \"patch\" or \"delete\"".into())),
    };
    let id = match map.remove("id") {
        Some(Value::String(s)) => s,
        _ => return Err(at("needs a string \"id\"".into())),
    };
    validate_id(&id).map_err(|e| at(e.to_string()))?;
    let (field, op) = match kind.as_str() {
        "put" => ("data", None),
        "patch" => ("fields", None),
        "delete" => ("", Some(WriteOp::Delete { id: id.clone() })),
        other => {
            return Err(at(format!(
                "unknown op {other:?}; use \"put\", \"patch\" or \"delete\""
            )));
        }
    };
    let allowed: &[&str] = if field.is_empty() { &[] } else { &[field] };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(at(format!("unknown field {unknown:?} for a {kind}")));
    }
    if let Some(op) = op {
        return Ok(op);
    }
    match map.remove(field) {
        Some(data @ Value::Object(_)) if kind == "put" => Ok(WriteOp::Put { id, data }),
        Some(fields @ Value::Object(_)) => Ok(WriteOp::Patch { id, fields }),
        Some(other) => Err(at(format!(
            "\"{field}\" must be a JSON object, not {}",
            hearth_proto::kind_of(&other)
        ))),
        None => Err(at(format!("a {kind} needs \"{field}\""))),
    }
}

/// A JSON string literal for `s`.
pub(crate) fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// `{"id":…,"data":…}` with the stored JSON text spliced in.
pub(crate) fn encode_doc(out: &mut String, id: &str, json: &str) {
    out.push_str("{\"id\":");
    push_json_str(out, id);
    out.push_str(",\"data\":");
    out.push_str(json);
    out.push('}');
}

/// The metadata object of a stored document.
pub(crate) fn metadata_json(m: &hearth_store::Metadata) -> String {
    format!(
        "{{\"seq\":{},\"hlc\":{},\"replica\":{},\"updated_at_ms\":{},\"deleted\":{}}}",
        m.seq, m.stamp.hlc, m.stamp.replica, m.updated_at_ms, m.deleted
    )
}

/// `{"id","data","metadata"}` for `get_with_metadata` (`data` is `null`
/// for a tombstone).
pub(crate) fn encode_doc_with_metadata(doc: &hearth_store::Document) -> String {
    let meta = doc.metadata();
    let mut out = String::with_capacity(doc.json().len() + 128);
    out.push_str("{\"id\":");
    out.push_str(&json_string(doc.id()));
    out.push_str(",\"data\":");
    out.push_str(if meta.deleted { "null" } else { doc.json() });
    out.push_str(",\"metadata\":");
    out.push_str(&metadata_json(&meta));
    out.push('}');
    out
}

/// The `change` object of a change event, the same shape as
/// `hearth_store::Change::to_json`, built without re-parsing the data.
pub(crate) fn encode_change(out: &mut String, c: &hearth_store::Change) {
    out.push_str("{\"seq\":");
    out.push_str(&c.seq.to_string());
    out.push_str(",\"id\":");
    out.push_str(&json_string(&c.id));
    out.push_str(",\"kind\":\"");
    out.push_str(c.kind.as_str());
    out.push_str("\",\"hlc\":");
    out.push_str(&c.stamp.hlc.to_string());
    out.push_str(",\"replica\":");
    out.push_str(&c.stamp.replica.to_string());
    out.push_str(",\"data\":");
    out.push_str(c.data.as_deref().unwrap_or("null"));
    out.push('}');
}

/// The `change` object of a change event ([`encode_change`]), encoded once
/// for every subscription it goes to ([`change_event_json`]).
pub(crate) fn change_json(c: &hearth_store::Change) -> Arc<str> {
    let mut out = String::with_capacity(80 + c.id.len() + c.data.as_deref().map_or(4, str::len));
    encode_change(&mut out, c);
    Arc::from(out)
}

/// `{"subscription":n,"change":{…}}`.
pub(crate) fn change_event(subscription: u64, c: &hearth_store::Change) -> Vec<u8> {
    change_event_json(subscription, &change_json(c))
}

/// `{"subscription":n,"change":…}` around a change already encoded by
/// [`change_json`]: a copy of its bytes, no encoding.
pub(crate) fn change_event_json(subscription: u64, change: &str) -> Vec<u8> {
    event_around(subscription, &[",\"change\":", change, "}"])
}

/// `{"subscription":n` followed by `parts`, in one allocation of the exact
/// size: what an event frame costs per subscription once the shared part
/// is encoded.
fn event_around(subscription: u64, parts: &[&str]) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"subscription\":";
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = subscription;
    loop {
        at -= 1;
        // n % 10 < 10: the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let number = &digits[at..];
    let len = HEAD.len() + number.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(number);
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// `{"subscription":n,"lagged":{"resume_from":s}}`.
pub(crate) fn lagged_event(subscription: u64, resume_from: u64) -> Vec<u8> {
    format!("{{\"subscription\":{subscription},\"lagged\":{{\"resume_from\":{resume_from}}}}}")
        .into_bytes()
}

/// `{"subscription":n,"topic":…,"payload":…}`, `payload` the payload's
/// JSON text, encoded once for every subscription the event goes to
/// (`hearth_bus::Emitted::payload_json`).
pub(crate) fn topic_event(subscription: u64, topic: &str, payload: &str) -> Vec<u8> {
    let mut quoted = String::with_capacity(topic.len() + 2);
    push_json_str(&mut quoted, topic);
    event_around(
        subscription,
        &[",\"topic\":", &quoted, ",\"payload\":", payload, "}"],
    )
}

/// `{"subscription":n,"dropped":k}`: `k` topic events did not fit in the
/// connection's output queue.
pub(crate) fn dropped_event(subscription: u64, dropped: u64) -> Vec<u8> {
    format!("{{\"subscription\":{subscription},\"dropped\":{dropped}}}").into_bytes()
}

// ---- client side: decoding replies -------------------------------------

fn protocol(what: &str, v: &Value) -> crate::IpcError {
    let mut text = v.to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    crate::IpcError::Protocol(format!(
        "the server sent {what} that does not parse: {text}"
    ))
}

/// Reads `{"id","data"[,"metadata"][,"score"]}`.
pub(crate) fn decode_doc(v: Value) -> Result<crate::Document, crate::IpcError> {
    let Value::Object(mut m) = v else {
        return Err(protocol("a document", &v));
    };
    let id = match m.remove("id") {
        Some(Value::String(s)) => s,
        _ => return Err(protocol("a document", &Value::Object(m))),
    };
    let data = m.remove("data").unwrap_or(Value::Null);
    let metadata = match m.remove("metadata") {
        Some(meta) => Some(decode_metadata(&meta).ok_or_else(|| protocol("metadata", &meta))?),
        None => None,
    };
    Ok(crate::Document { id, data, metadata })
}

fn decode_metadata(v: &Value) -> Option<crate::Metadata> {
    Some(crate::Metadata {
        seq: v.get("seq")?.as_u64()?,
        hlc: v.get("hlc")?.as_u64()?,
        replica: v.get("replica")?.as_u64()?,
        updated_at_ms: v.get("updated_at_ms")?.as_u64()?,
        deleted: v.get("deleted")?.as_bool()?,
    })
}

/// Reads a change object.
pub(crate) fn decode_change(v: &Value) -> Result<crate::Change, crate::IpcError> {
    let parse = || -> Option<crate::Change> {
        let kind = match v.get("kind")?.as_str()? {
            "put" => ChangeKind::Put,
            "patch" => ChangeKind::Patch,
            "delete" => ChangeKind::Delete,
            _ => return None,
        };
        Some(crate::Change {
            seq: v.get("seq")?.as_u64()?,
            id: v.get("id")?.as_str()?.to_string(),
            kind,
            hlc: v.get("hlc")?.as_u64()?,
            replica: v.get("replica")?.as_u64()?,
            data: match v.get("data") {
                None | Some(Value::Null) => None,
                Some(d) => Some(d.clone()),
            },
        })
    };
    parse().ok_or_else(|| protocol("a change", v))
}

/// Reads a `u64` field of a reply object.
pub(crate) fn u64_field(v: &Value, name: &str) -> Result<u64, crate::IpcError> {
    v.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| protocol(&format!("a reply without a numeric \"{name}\""), v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    mod generated {
        use super::super::*;
        use proptest::prelude::*;

        /// A JSON value as text: the shapes a request's fields come in,
        /// good and bad.
        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("null".to_string()),
                Just("true".to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                Just("1.5e3".to_string()),
                Just("\"user:1\"".to_string()),
                Just("\"\"".to_string()),
                Just("\"a\\u0000b\"".to_string()),
                Just("\"é\\\"q\\\\\"".to_string()),
                "[a-z:]{1,12}".prop_map(|s| format!("\"{s}\"")),
                Just(format!("\"{}\"", "x".repeat(513))),
            ];
            leaf.prop_recursive(3, 12, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3)
                        .prop_map(|v| format!("[{}]", v.join(","))),
                    prop::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|kv| {
                        let fields: Vec<String> =
                            kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                        format!("{{{}}}", fields.join(","))
                    }),
                ]
            })
        }

        /// A request payload: an object of `id`, `data` and stray fields
        /// (duplicates allowed), sometimes wrapped, padded or cut.
        fn payload() -> impl Strategy<Value = String> {
            // Ids are mostly strings, good and bad (empty, NUL, too long).
            let id = prop_oneof![
                2 => "[a-z:]{1,12}".prop_map(|s| format!("\"{s}\"")),
                1 => Just("\"\"".to_string()),
                1 => Just("\"a\\u0000b\"".to_string()),
                1 => Just(format!("\"{}\"", "x".repeat(513))),
                1 => value(),
            ];
            let field = prop_oneof![
                3 => id.prop_map(|v| ("id".to_string(), v)),
                3 => value().prop_map(|v| ("data".to_string(), v)),
                1 => value().prop_map(|v| ("x".to_string(), v)),
            ];
            (
                prop::collection::vec(field, 0..4),
                0..6u8,
                prop_oneof![Just(""), Just(" "), Just("\n\t")],
            )
                .prop_map(|(fields, form, pad)| {
                    let body: Vec<String> =
                        fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    let object = format!("{pad}{{{pad}{}{pad}}}{pad}", body.join(","));
                    match form {
                        0 => format!(
                            "[{}]",
                            fields
                                .iter()
                                .map(|(_, v)| v.clone())
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                        1 => format!("{object} 1"),
                        2 => {
                            // Cut in the middle, on a character boundary.
                            let cut = (0..=object.len() / 2)
                                .rev()
                                .find(|&i| object.is_char_boundary(i))
                                .unwrap_or(0);
                            object[..cut].to_string()
                        }
                        _ => object,
                    }
                })
        }

        proptest! {
            #[test]
            fn quick_and_general_decoders_agree(p in payload()) {
                for op in [Operation::Get, Operation::GetWithMetadata, Operation::Delete, Operation::Put] {
                    assert_decoders_agree(op, p.as_bytes());
                }
            }
        }
    }

    #[test]
    fn the_quick_decoder_agrees_with_the_general_one_wherever_it_answers() {
        let long_id = format!("\"{}\"", "x".repeat(600));
        let payloads: Vec<String> = vec![
            r#"{"id":"user:1"}"#.into(),
            r#" { "id" : "ünï\"code\u0041" } "#.into(),
            r#"{"id":""}"#.into(),
            r#"{"id":"a\u0000b"}"#.into(),
            format!(r#"{{"id":{long_id}}}"#),
            r#"{"id":null}"#.into(),
            r#"{"id":1}"#.into(),
            r#"{"id":"a","id":"b"}"#.into(),
            r#"{"id":"a","x":1}"#.into(),
            r#"{}"#.into(),
            r#"[]"#.into(),
            r#"["user:1"]"#.into(),
            r#"["a",{"n":1}]"#.into(),
            r#" ["a"]"#.into(),
            r#"{"id":"a"} trailing"#.into(),
            r#"{"id":"a","data":{"n":1,"s":"é","o":{"k":[1,null]}}}"#.into(),
            r#"{"data":{"n":1},"id":"a"}"#.into(),
            r#"{"id":"a","data":null}"#.into(),
            r#"{"id":"a","data":[1]}"#.into(),
            r#"{"id":"a","data":{}}"#.into(),
            r#"{"id":"a","data":{"n":1},"more":2}"#.into(),
            r#"{"id":"a","data":{"n":1,"n":2}}"#.into(),
            format!(
                r#"{{"id":"a","data":{}{}}}"#,
                "{\"k\":".repeat(200),
                "1".to_string() + &"}".repeat(200)
            ),
            // Around the parser's recursion limit, strings with brackets.
            format!(
                r#"{{"id":"a","data":{}{}}}"#,
                "{\"k\":".repeat(127),
                "1".to_string() + &"}".repeat(127)
            ),
            format!(
                r#"{{"id":"a","data":{}{}}}"#,
                "{\"k\":".repeat(126),
                "\"[{\\\"\"".to_string() + &"}".repeat(126)
            ),
            String::new(),
            "not json".into(),
        ];
        let ops = [
            Operation::Get,
            Operation::GetWithMetadata,
            Operation::Delete,
            Operation::Put,
        ];
        let mut answered = 0;
        for op in ops {
            for p in &payloads {
                if assert_decoders_agree(op, p.as_bytes()) {
                    answered += 1;
                }
            }
        }
        assert!(
            answered >= 5,
            "the quick decoder answered only {answered} times"
        );
    }

    #[test]
    fn split_id_only_takes_the_exact_client_shape_only() {
        assert_eq!(split_id_only(br#"{"id":"user:1"}"#), Some("user:1"));
        assert_eq!(split_id_only(br#"{"id":""}"#), Some(""));
        assert_eq!(split_id_only(br#"{"id":"a\u0041"}"#), None);
        assert_eq!(split_id_only(br#"{"id":"a"} "#), None);
        assert_eq!(split_id_only(br#"{"id":"a","x":1}"#), None);
        assert_eq!(split_id_only(br#"{ "id":"a"}"#), None);
        assert_eq!(split_id_only(b"{\"id\":\"\xff\"}"), None);
    }

    #[test]
    fn a_plain_id_is_written_as_serde_would_write_it() {
        for id in ["user:1", "", "é ü", "a\"b", "a\\b", "tab\there", "nul\u{0}"] {
            let mut out = String::new();
            encode_doc(&mut out, id, "{}");
            let expected = format!("{{\"id\":{},\"data\":{{}}}}", json_string(id));
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn split_put_takes_the_exact_client_shape_only() {
        let split = |p: &str| split_put(p.as_bytes()).map(|(i, d)| (i.to_string(), d.to_string()));
        assert_eq!(
            split(r#"{"id":"user:1","data":{"a":"}"}}"#),
            Some(("user:1".into(), r#"{"a":"}"}"#.into()))
        );
        // The data may run on; the compact check refuses it later.
        assert_eq!(
            split(r#"{"id":"a","data":{},"x":{}}"#),
            Some(("a".into(), r#"{},"x":{}"#.into()))
        );
        assert_eq!(split(r#"{"id":"a\"b","data":{}}"#), None);
        assert_eq!(split("{\"id\":\"a\tb\",\"data\":{}}"), None);
        assert_eq!(split(r#"{"id": "a","data":{}}"#), None);
        assert_eq!(split(r#"{"data":{},"id":"a"}"#), None);
        assert_eq!(split(r#"{"id":"a","data":{}]"#), None);
        // A cut object splits, and the compact check refuses its data.
        assert_eq!(
            split(r#"{"id":"a","data":{}"#),
            Some(("a".into(), "{".into()))
        );
        assert_eq!(CompactDocument::new("{"), None);
    }

    fn parse(op: Operation, v: Value) -> Result<Request, ErrorBody> {
        parse_request(op, v.to_string().as_bytes(), &Limits::default())
    }

    #[test]
    fn every_operation_parses_its_documented_example() {
        let cases = [
            (Operation::Ping, json!({})),
            (
                Operation::Put,
                json!({"id": "user:1", "data": {"name": "Alice"}}),
            ),
            (
                Operation::Patch,
                json!({"id": "user:1", "fields": {"a": 1}}),
            ),
            (Operation::Get, json!({"id": "user:1"})),
            (Operation::GetWithMetadata, json!({"id": "user:1"})),
            (Operation::Delete, json!({"id": "user:1"})),
            (
                Operation::List,
                json!({"prefix": "user:", "type": "User", "limit": 10, "after": "user:1"}),
            ),
            (
                Operation::Query,
                json!({"filter": {"type": "User"}, "limit": 5}),
            ),
            (Operation::Search, json!({"text": "alice"})),
            (
                Operation::Batch,
                json!({"ops": [{"op": "put", "id": "a", "data": {}}, {"op": "patch", "id": "a", "fields": {"x": 1}}, {"op": "delete", "id": "b"}]}),
            ),
            (
                Operation::Subscribe,
                json!({"prefix": "user:", "from_seq": 0}),
            ),
            (Operation::Unsubscribe, json!({"subscription": 1})),
            (
                Operation::Publish,
                json!({"topic": "one-core:event:x", "payload": {"a": 1}}),
            ),
            (
                Operation::SubscribeTopic,
                json!({"pattern": "one-core:event:*"}),
            ),
            (Operation::UnsubscribeTopic, json!({"subscription": 2})),
            (
                Operation::Call,
                json!({"name": "one-core:login", "payload": {"username": "a"}}),
            ),
            (Operation::Stats, json!({})),
            (Operation::ChangesSince, json!({"after": 0, "limit": 10})),
        ];
        for (op, v) in cases {
            assert!(parse(op, v.clone()).is_ok(), "{} {v}", op.name());
        }
        assert_eq!(
            Operation::ALL.len(),
            18,
            "a new operation needs a case here"
        );
    }

    #[test]
    fn an_empty_payload_is_an_empty_object() {
        assert_eq!(
            parse_request(Operation::Ping, b"", &Limits::default()),
            Ok(Request::Ping)
        );
        assert!(parse_request(Operation::Get, b"", &Limits::default()).is_err());
    }

    #[test]
    fn bad_json_invalid_utf8_and_deep_nesting_are_invalid_input() {
        let deep = "[".repeat(100_000);
        for payload in [
            &b"{"[..],
            b"\xff\xfe",
            deep.as_bytes(),
            b"{\"id\":\"\xc3\x28\"}",
        ] {
            let e = parse_request(Operation::Get, payload, &Limits::default()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidInput, "{}", e.message);
        }
    }

    /// serde_json reads an object whose first key is
    /// `$serde_json::private::RawValue` as the JSON in its string: parsed
    /// into a tree, this put would store `{"admin":true}`.
    #[test]
    fn a_reserved_key_anywhere_in_a_payload_is_refused_before_it_is_parsed() {
        for (op, payload) in [
            (
                Operation::Put,
                &br#"{"id":"u:1","data":{"$serde_json::private::RawValue":"{\"admin\":true}"}}"#[..],
            ),
            (
                Operation::Put,
                br#"{"id":"u:1","data":{"a":[{"\u0024serde_json::private::RawValue":"1"}]}}"#,
            ),
            (
                Operation::Patch,
                br#"{"id":"u:1","fields":{"$serde_json::private::RawValue":"1"}}"#,
            ),
            (
                Operation::Call,
                br#"{"name":"h","payload":{"$serde_json::private::RawValue":"1"}}"#,
            ),
        ] {
            let e = parse_request(op, payload, &Limits::default()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidInput, "{}", e.message);
            assert!(e.message.contains("is reserved"), "{}", e.message);
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_named() {
        let e = parse(Operation::Get, json!({"id": "a", "idd": 1})).unwrap_err();
        assert!(
            e.message.contains("\"idd\"") && e.message.contains("id"),
            "{}",
            e.message
        );
        let e = parse(Operation::Put, json!({"id": "a", "data": [1]})).unwrap_err();
        assert!(
            e.message.contains("JSON object") && e.message.contains("array"),
            "{}",
            e.message
        );
        let e = parse(Operation::Get, json!({"id": ""})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        let e = parse(Operation::Get, json!(["id"])).unwrap_err();
        assert!(e.message.contains("must be a JSON object"), "{}", e.message);
        let e = parse(Operation::List, json!({"limit": -1})).unwrap_err();
        assert!(e.message.contains("non-negative integer"), "{}", e.message);
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        assert_eq!(
            parse(Operation::List, json!({"prefix": null, "type": null})).unwrap(),
            Request::List {
                prefix: None,
                type_name: None,
                limit: None,
                after: None
            }
        );
    }

    #[test]
    fn batch_operations_are_checked_one_by_one() {
        let e = parse(
            Operation::Batch,
            json!({"ops": [{"op": "put", "id": "a", "data": {}}, {"op": "zap", "id": "b"}]}),
        )
        .unwrap_err();
        assert!(
            e.message.contains("batch operation 1") && e.message.contains("zap"),
            "{}",
            e.message
        );
        let e = parse(Operation::Batch, json!({"ops": []})).unwrap_err();
        assert!(e.message.contains("at least one"));
        let e = parse(
            Operation::Batch,
            json!({"ops": [{"op": "delete", "id": "a", "data": {}}]}),
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field"));
        let too_many = vec![json!({"op": "delete", "id": "a"}); 10_001];
        let e = parse(Operation::Batch, json!({"ops": too_many})).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
    }

    #[test]
    fn topics_and_patterns_are_validated_with_the_bus_rules() {
        assert!(parse(Operation::Publish, json!({"topic": "a:*"})).is_err());
        assert!(parse(Operation::SubscribeTopic, json!({"pattern": "a*"})).is_err());
        assert!(parse(Operation::SubscribeTopic, json!({"pattern": "*"})).is_ok());
    }

    #[test]
    fn limits_are_capped_at_the_page_limit() {
        let limits = Limits {
            max_page: 50,
            ..Limits::default()
        };
        let r = parse_request(Operation::Query, br#"{"filter":{},"limit":1000}"#, &limits).unwrap();
        assert!(matches!(r, Request::Query { limit: 50, .. }));
        let r = parse_request(Operation::Search, br#"{"text":"a"}"#, &limits).unwrap();
        assert!(matches!(r, Request::Search { limit: 20, .. }));
    }

    #[test]
    fn a_change_event_matches_the_stores_json_shape() {
        use hearth_store::{Change, Stamp};
        use std::sync::Arc;
        let c = Change {
            seq: 12,
            id: "user:\"1\"".into(),
            kind: ChangeKind::Patch,
            stamp: Stamp {
                hlc: 99,
                replica: 7,
            },
            data: Some(Arc::from(r#"{"a":1}"#)),
        };
        let ev: Value = serde_json::from_slice(&change_event(3, &c)).unwrap();
        assert_eq!(ev["subscription"], 3);
        assert_eq!(ev["change"], c.to_json());
        assert_eq!(decode_change(&ev["change"]).unwrap().seq, 12);
        let deleted = Change {
            kind: ChangeKind::Delete,
            data: None,
            ..c
        };
        let ev: Value = serde_json::from_slice(&change_event(3, &deleted)).unwrap();
        assert_eq!(ev["change"], deleted.to_json());
    }

    #[test]
    fn event_payloads_are_valid_json() {
        let v: Value = serde_json::from_slice(&lagged_event(1, 40)).unwrap();
        assert_eq!(v, json!({"subscription": 1, "lagged": {"resume_from": 40}}));
        let v: Value =
            serde_json::from_slice(&topic_event(2, "a:b", &json!({"x": [1]}).to_string())).unwrap();
        assert_eq!(
            v,
            json!({"subscription": 2, "topic": "a:b", "payload": {"x": [1]}})
        );
        let v: Value = serde_json::from_slice(&dropped_event(2, 5)).unwrap();
        assert_eq!(v, json!({"subscription": 2, "dropped": 5}));
    }

    #[test]
    fn events_around_shared_json_carry_any_subscription_number_and_topic() {
        for n in [0, 7, 10, 1234, u64::MAX] {
            let v: Value =
                serde_json::from_slice(&topic_event(n, "a:\"b\\", r#"{"x":[1]}"#)).unwrap();
            assert_eq!(
                v,
                json!({"subscription": n, "topic": "a:\"b\\", "payload": {"x": [1]}})
            );
            let v: Value = serde_json::from_slice(&change_event_json(n, r#"{"seq":1}"#)).unwrap();
            assert_eq!(v, json!({"subscription": n, "change": {"seq": 1}}));
        }
    }

    #[test]
    fn documents_decode_with_and_without_metadata() {
        let mut s = String::new();
        encode_doc(&mut s, "a\"b", r#"{"n":1}"#);
        let d = decode_doc(serde_json::from_str(&s).unwrap()).unwrap();
        assert_eq!((d.id.as_str(), d.data.clone()), ("a\"b", json!({"n": 1})));
        assert!(d.metadata.is_none());
        let with = json!({"id": "a", "data": null, "metadata": {"seq": 1, "hlc": 2, "replica": 3, "updated_at_ms": 4, "deleted": true}});
        assert!(decode_doc(with).unwrap().metadata.unwrap().deleted);
        assert!(decode_doc(json!({"data": 1})).is_err());
    }
}
