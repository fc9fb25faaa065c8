//! The JSON shapes JavaScript sees: documents, changes, hits, topic events,
//! and the argument objects `index.js` sends.
//!
//! Owns: turning hearth-ipc's typed values into the JSON text handed to
//! JavaScript (which parses it with `JSON.parse`, faster than building
//! objects through napi), and reading the JSON arguments JavaScript sends.
//! 64-bit clock stamps and replica ids travel as decimal strings: a
//! JavaScript number would round them. Must never: do I/O, or accept an
//! argument object with a field it does not know (a typo would otherwise
//! be ignored silently).

use crate::error::NodeError;
use hearth_ipc::{Change, Document, Hit, ListOptions, Metadata, TopicEvent, WriteOp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Refuses JSON text from JavaScript that holds a key the parser would give
/// another meaning (`hearth_proto::RESERVED_KEY_PREFIX`), rather than read
/// it as something else; `what` names the text in the error.
fn no_reserved_key(text: &str, what: &str) -> Result<(), NodeError> {
    hearth_proto::check_reserved_keys(text)
        .map_err(|e| NodeError::InvalidInput(format!("{what}: {e}")))
}

/// Parses JSON text from JavaScript; `what` names it in the error.
pub fn parse(text: &str, what: &str) -> Result<Value, NodeError> {
    no_reserved_key(text, what)?;
    serde_json::from_str(text)
        .map_err(|e| NodeError::InvalidInput(format!("{what} is not valid JSON: {e}")))
}

/// Parses an argument object into `T`, refusing unknown fields.
pub fn args<T: for<'de> Deserialize<'de>>(text: &str, op: &str) -> Result<T, NodeError> {
    no_reserved_key(text, &format!("the arguments of {op}"))?;
    serde_json::from_str(text)
        .map_err(|e| NodeError::InvalidInput(format!("bad arguments for {op}: {e}")))
}

/// Serialises a value to JSON text (infallible for `Value`).
pub fn text(value: &Value) -> String {
    // Serialising a `Value` cannot fail: its map keys are strings and it
    // holds no non-finite floats.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

fn metadata(m: &Metadata) -> Value {
    json!({
        "seq": m.seq,
        "hlc": m.hlc.to_string(),
        "replica": m.replica.to_string(),
        "updatedAt": m.updated_at_ms,
        "deleted": m.deleted,
    })
}

/// `{id, data}` (and `metadata` when present).
pub fn document(doc: Document) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(doc.id));
    m.insert("data".into(), doc.data);
    if let Some(meta) = &doc.metadata {
        m.insert("metadata".into(), metadata(meta));
    }
    Value::Object(m)
}

/// `{id, data, score}`.
pub fn hit(hit: Hit) -> Value {
    let mut v = document(hit.doc);
    if let Value::Object(m) = &mut v {
        m.insert("score".into(), json!(hit.score));
    }
    v
}

/// `{seq, id, kind, hlc, replica, data}`.
pub fn change(c: Change) -> Value {
    json!({
        "seq": c.seq,
        "id": c.id,
        "kind": c.kind.as_str(),
        "hlc": c.hlc.to_string(),
        "replica": c.replica.to_string(),
        "data": c.data,
    })
}

/// `{topic, payload}`.
pub fn topic_event(e: TopicEvent) -> Value {
    json!({"topic": e.topic, "payload": e.payload})
}

/// Arguments naming one document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// The document id.
    pub id: String,
}

/// `put` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutArgs {
    /// The document id.
    pub id: String,
    /// The document.
    pub data: Value,
}

/// `patch` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchArgs {
    /// The document id.
    pub id: String,
    /// The fields to merge.
    pub fields: Value,
}

/// `list` arguments, as the JavaScript API names them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Only ids starting with this.
    pub prefix: Option<String>,
    /// Only documents whose `type` field is this.
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Continue after this id (the `cursor` of the previous page).
    pub cursor: Option<String>,
}

impl From<ListArgs> for ListOptions {
    fn from(a: ListArgs) -> ListOptions {
        ListOptions {
            prefix: a.prefix,
            type_name: a.type_name,
            limit: a.limit,
            after: a.cursor,
        }
    }
}

/// `query` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// Top-level fields that must be equal.
    pub filter: Value,
    /// At most this many.
    pub limit: Option<usize>,
    /// Continue after this id.
    pub cursor: Option<String>,
}

/// `search` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// The words to find.
    pub text: String,
    /// At most this many hits (default 20).
    pub limit: Option<usize>,
}

/// `call` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallArgs {
    /// The handler name.
    pub name: String,
    /// Its payload.
    #[serde(default)]
    pub payload: Value,
}

/// `publish` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    /// The topic.
    pub topic: String,
    /// The event payload.
    #[serde(default)]
    pub payload: Value,
}

/// `changesSince` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesArgs {
    /// Changes after this sequence number.
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 1000).
    pub limit: Option<usize>,
}

/// One operation of a `batch`, as JavaScript writes it.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum BatchOp {
    Put { id: String, data: Value },
    Patch { id: String, fields: Value },
    Delete { id: String },
}

/// `batch` arguments: `{ops: [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchArgs {
    ops: Vec<Value>,
}

impl BatchArgs {
    /// The operations, each checked; an error names the bad one's index.
    pub fn writes(self) -> Result<Vec<WriteOp>, NodeError> {
        self.ops
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let op: BatchOp = serde_json::from_value(v).map_err(|e| {
                    NodeError::InvalidInput(format!(
                        "batch operation {i}: {e} (each is {{op: \"put\", id, data}}, {{op: \"patch\", id, fields}} or {{op: \"delete\", id}})"
                    ))
                })?;
                Ok(match op {
                    BatchOp::Put { id, data } => WriteOp::Put { id, data },
                    BatchOp::Patch { id, fields } => WriteOp::Patch { id, fields },
                    BatchOp::Delete { id } => WriteOp::Delete { id },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_ipc::ChangeKind;

    #[test]
    fn stamps_travel_as_strings() {
        let c = Change {
            seq: 3,
            id: "user:1".into(),
            kind: ChangeKind::Patch,
            hlc: u64::MAX,
            replica: 7,
            data: Some(json!({"a": 1})),
        };
        let v = change(c);
        assert_eq!(v["hlc"], json!(u64::MAX.to_string()));
        assert_eq!(v["kind"], "patch");
        assert_eq!(v["seq"], 3);
    }

    #[test]
    fn batch_ops_are_checked_with_their_index() {
        let ok: BatchArgs = args(
            r#"{"ops":[{"op":"put","id":"a","data":{}},{"op":"delete","id":"b"}]}"#,
            "batch",
        )
        .unwrap();
        assert_eq!(ok.writes().unwrap().len(), 2);
        let bad: BatchArgs = args(
            r#"{"ops":[{"op":"put","id":"a","data":{}},{"op":"zap","id":"b"}]}"#,
            "batch",
        )
        .unwrap();
        let e = bad.writes().unwrap_err().to_string();
        assert!(e.contains("batch operation 1"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = args::<ListArgs>(r#"{"prefx":"a"}"#, "list").unwrap_err();
        assert!(e.to_string().contains("prefx"), "{e}");
        let l: ListArgs = args(r#"{"type":"User","cursor":"u:1"}"#, "list").unwrap();
        let o: ListOptions = l.into();
        assert_eq!(o.type_name.as_deref(), Some("User"));
        assert_eq!(o.after.as_deref(), Some("u:1"));
    }
}
