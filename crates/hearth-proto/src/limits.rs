//! Size limits and document validation.
//!
//! Owns: the default limits and the check that a document is a JSON object
//! within them. Must never: truncate or alter a document to make it fit; a
//! document over the limit is refused whole.

use serde_json::{Map, Value};
use thiserror::Error;

/// The default largest document, in bytes of its JSON text: 16 MiB.
pub const DEFAULT_MAX_DOC_BYTES: usize = 16 * 1024 * 1024;

/// Limits a store or server enforces.
///
/// ```
/// use hearth_proto::Limits;
/// let limits = Limits { max_doc_bytes: 1024, ..Limits::default() };
/// assert_eq!(limits.max_doc_bytes, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document, in bytes of its JSON text.
    pub max_doc_bytes: usize,
    /// Most operations in one atomic batch.
    pub max_batch_ops: usize,
    /// Largest page a `list`, `query` or `search` returns at once.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_doc_bytes: DEFAULT_MAX_DOC_BYTES,
            max_batch_ops: 10_000,
            max_page: 10_000,
        }
    }
}

/// The deepest nesting of arrays and objects a document may have (the
/// document object itself is level 1). Deeper values are refused when
/// written, so everything stored can be read back by any JSON parser with the
/// usual 128-level limit.
pub const MAX_DEPTH: usize = 100;

/// Checks that `value` nests arrays and objects at most [`MAX_DEPTH`] deep,
/// without recursion (so hostile values cannot exhaust the stack).
///
/// ```
/// use hearth_proto::check_depth;
/// assert!(check_depth(&serde_json::json!({"a": [1, {"b": 2}]})).is_ok());
/// ```
pub fn check_depth(value: &Value) -> Result<(), DocumentError> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if depth > MAX_DEPTH {
            return Err(DocumentError::TooDeep { max: MAX_DEPTH });
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DocumentError {
    /// The text is not valid JSON.
    #[error(
        "invalid JSON at line {line}, column {column}: {reason}; documents are JSON objects such as {{\"name\":\"Alice\"}}"
    )]
    InvalidJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser found wrong.
        reason: String,
    },
    /// The JSON value is not an object.
    #[error("a document must be a JSON object, not {found}; wrap the value, e.g. {{\"value\": …}}")]
    NotAnObject {
        /// The kind of value found (`array`, `string`, …).
        found: &'static str,
    },
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("document nests arrays and objects more than {max} levels deep; flatten it")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The document's JSON text is over the limit.
    #[error(
        "document is {len} bytes; the limit is {max} bytes (raise it with the max-document-size option or split the document)"
    )]
    TooLarge {
        /// The size of the document's JSON text.
        len: usize,
        /// The limit in force.
        max: usize,
    },
}

/// The name of a JSON value's kind, for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `text` as a document: a JSON object no larger than
/// `limits.max_doc_bytes`.
///
/// Nesting deeper than 128 levels is refused as invalid JSON (the parser's
/// recursion limit), so hostile input cannot exhaust the stack.
///
/// ```
/// use hearth_proto::{validate_document, Limits, DocumentError};
/// let doc = validate_document(r#"{"name":"Alice"}"#, &Limits::default()).unwrap();
/// assert_eq!(doc["name"], "Alice");
/// assert!(matches!(validate_document("[1]", &Limits::default()),
///                  Err(DocumentError::NotAnObject { .. })));
/// ```
pub fn validate_document(text: &str, limits: &Limits) -> Result<Map<String, Value>, DocumentError> {
    if text.len() > limits.max_doc_bytes {
        return Err(DocumentError::TooLarge {
            len: text.len(),
            max: limits.max_doc_bytes,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| DocumentError::InvalidJson {
        line: e.line(),
        column: e.column(),
        reason: strip_position(&e.to_string()),
    })?;
    check_depth(&value)?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(DocumentError::NotAnObject {
            found: kind_of(&other),
        }),
    }
}

/// serde_json appends " at line L column C" to its messages; we report the
/// position separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_object_is_a_document() {
        let doc = validate_document(r#"{"a":1}"#, &Limits::default()).unwrap();
        assert_eq!(doc["a"], 1);
    }

    #[test]
    fn invalid_json_reports_line_and_column() {
        let err = validate_document("{\n  \"a\": }", &Limits::default()).unwrap_err();
        match err {
            DocumentError::InvalidJson { line, column, .. } => {
                assert_eq!(line, 2);
                assert!(column > 0);
            }
            other => panic!("expected InvalidJson, got {other:?}"),
        }
    }

    #[test]
    fn each_non_object_value_is_refused_and_named() {
        for (text, found) in [
            ("[]", "an array"),
            ("1", "a number"),
            ("\"s\"", "a string"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            assert_eq!(
                validate_document(text, &Limits::default()),
                Err(DocumentError::NotAnObject { found })
            );
        }
    }

    #[test]
    fn a_document_over_the_limit_is_refused_with_both_sizes() {
        let limits = Limits {
            max_doc_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            validate_document(r#"{"a":"0123456789"}"#, &limits),
            Err(DocumentError::TooLarge { len: 18, max: 10 })
        );
    }

    #[test]
    fn nesting_100000_deep_is_refused_without_overflowing_the_stack() {
        let text = "[".repeat(100_000) + &"]".repeat(100_000);
        let wrapped = format!("{{\"a\":{text}}}");
        assert!(matches!(
            validate_document(&wrapped, &Limits::default()),
            Err(DocumentError::InvalidJson { .. })
        ));
    }
}
