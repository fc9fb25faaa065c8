//! `put`, `patch`, `get` and `delete`: one document at a time.
//!
//! Owns: reading a document argument (inline or `-` for stdin), validating it
//! before the store is opened (or the server is asked), and printing the
//! outcome — the same whether the documents are local or behind a channel.
//! Must never: write a document that failed validation, or open the store
//! or connect before the input is known to be valid.

use crate::args::GlobalArgs;
use crate::db;
use crate::error::{CliError, Result};
use crate::output::Output;
use hearth_proto::{Limits, validate_document, validate_id};
use serde_json::{Map, Value, json};
use std::io::Read;

/// `hearth put ID JSON`.
pub(crate) fn put(g: &GlobalArgs, out: &mut Output, id: &str, arg: &str) -> Result<()> {
    let data = document_arg(id, arg, &g.limits())?;
    let seq = db::open(g)?.put(id, data)?;
    out.result(
        &json!({ "id": id, "seq": seq }),
        format_args!("ok {id} (seq {seq})"),
    )
}

/// `hearth patch ID JSON`.
pub(crate) fn patch(g: &GlobalArgs, out: &mut Output, id: &str, arg: &str) -> Result<()> {
    let fields = document_arg(id, arg, &g.limits())?;
    let seq = db::open(g)?.patch(id, fields)?;
    out.result(
        &json!({ "id": id, "seq": seq }),
        format_args!("ok {id} (seq {seq})"),
    )
}

/// `hearth get ID`.
pub(crate) fn get(g: &GlobalArgs, out: &mut Output, id: &str) -> Result<()> {
    validate_id(id)?;
    let doc = db::open(g)?
        .get(id)?
        .ok_or_else(|| CliError::NotFound { id: id.into() })?;
    let value = json!({
        "id": id,
        "data": doc.data,
        "seq": doc.seq,
        "updated_at_ms": doc.updated_at_ms,
    });
    let pretty = serde_json::to_string_pretty(&doc.data)
        .map_err(|e| CliError::input(format!("document {id:?} cannot be printed: {e}")))?;
    out.result(&value, pretty)
}

/// `hearth delete ID`.
pub(crate) fn delete(g: &GlobalArgs, out: &mut Output, id: &str) -> Result<()> {
    validate_id(id)?;
    let seq = db::open(g)?
        .delete(id)?
        .ok_or_else(|| CliError::NotFound { id: id.into() })?;
    out.result(
        &json!({ "id": id, "deleted": true, "seq": seq }),
        format_args!("deleted {id} (seq {seq})"),
    )
}

/// Validates the id, reads the JSON argument (`-` = stdin) and checks that
/// it is an object within the limit.
fn document_arg(id: &str, arg: &str, limits: &Limits) -> Result<Map<String, Value>> {
    validate_id(id)?;
    let text = if arg == "-" {
        read_stdin(limits)?
    } else {
        arg.to_string()
    };
    Ok(validate_document(&text, limits)?)
}

/// Reads stdin, refusing more than the document limit without reading it all.
pub(crate) fn read_stdin(limits: &Limits) -> Result<String> {
    let mut buf = Vec::new();
    let cap = limits.max_doc_bytes as u64 + 1;
    std::io::stdin()
        .lock()
        .take(cap)
        .read_to_end(&mut buf)
        .map_err(|source| CliError::Io {
            action: "read",
            path: "standard input".into(),
            source,
            hint: "pass the document as an argument instead",
        })?;
    if buf.len() > limits.max_doc_bytes {
        // The exact size is unknown without reading everything; say "over".
        return Err(CliError::Input {
            code: hearth_proto::ErrorCode::TooLarge,
            message: format!(
                "standard input holds more than the limit of {} bytes for a document or payload read there (--max-doc-bytes); split it or raise --max-doc-bytes",
                limits.max_doc_bytes
            ),
        });
    }
    String::from_utf8(buf).map_err(|e| {
        CliError::input(format!(
            "the document on standard input is not UTF-8 (invalid byte at offset {}); documents are JSON text",
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_document_is_validated_before_anything_else() {
        let limits = Limits::default();
        assert!(document_arg("a", r#"{"x":1}"#, &limits).is_ok());
        assert!(matches!(
            document_arg("a", "[1]", &limits),
            Err(CliError::Input { .. })
        ));
        assert!(document_arg("", r#"{"x":1}"#, &limits).is_err());
    }

    #[test]
    fn a_document_over_the_limit_is_too_large() {
        let limits = Limits {
            max_doc_bytes: 4,
            ..Limits::default()
        };
        let err = document_arg("a", r#"{"x":12345}"#, &limits);
        assert!(matches!(
            err,
            Err(CliError::Input {
                code: hearth_proto::ErrorCode::TooLarge,
                ..
            })
        ));
    }
}
