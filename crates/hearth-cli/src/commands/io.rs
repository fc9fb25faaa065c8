//! `import` and `export`: documents to and from JSON Lines.
//!
//! Owns: the line format (`{"id": "…", "data": {…}}`, one per line), reading
//! and writing it in constant memory for any file size, batching imports
//! (each batch atomic, locally or in one request over a channel), the
//! progress bars and the summaries. Must never: hold a whole file in
//! memory, skip a bad line silently, or leave the lines before a bad line
//! unwritten.

use crate::args::GlobalArgs;
use crate::db::{self, Db};
use crate::error::{CliError, Result};
use crate::output::{Output, progress, shows_progress, stdout_error, write_doc_json};
use hearth_proto::{DocumentError, ErrorCode, Limits, MAX_ID_BYTES, kind_of, validate_id};
use hearth_store::{ListOptions, WriteOp};
use serde_json::{Value, json};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Most operations per `store.batch` during an import.
const IMPORT_BATCH: usize = 512;

/// A batch is written once its documents reach this many bytes, so that
/// memory stays bounded and a batch stays far below the store's record
/// limit even with large documents.
const IMPORT_BATCH_BYTES: usize = 32 << 20;

/// What one line of an import file must look like, for messages.
const LINE_SHAPE: &str = r#"each line must be {"id": "…", "data": {…}}"#;

/// `hearth import FILE`.
pub(crate) fn import(g: &GlobalArgs, out: &mut Output, file: &Path) -> Result<()> {
    let (reader, size, name): (Box<dyn BufRead>, Option<u64>, String) = if file == Path::new("-") {
        (
            Box::new(std::io::stdin().lock()),
            None,
            "standard input".into(),
        )
    } else {
        let f = File::open(file).map_err(|source| open_input_error(file, source))?;
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(CliError::input(format!(
                "{} is a directory; give the path of a JSON Lines file, or - for standard input",
                file.display()
            )));
        }
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (
            Box::new(BufReader::with_capacity(256 << 10, f)),
            size,
            file.display().to_string(),
        )
    };
    let store = db::open(g)?;
    let bar = progress(out.is_json(), size, true, "importing");
    let result = import_lines(&store, reader, &g.limits(), &name, |bytes| {
        bar.set_position(bytes)
    });
    bar.finish_and_clear();
    let imported = result?;
    out.result(
        &json!({ "imported": imported, "file": name }),
        format_args!("imported {} from {name}", documents(imported)),
    )
}

/// Reads JSON Lines from `reader` into the store in batches. Returns the
/// number of documents imported; on a bad line, everything before it is
/// imported and the error names the line.
fn import_lines(
    store: &Db,
    mut reader: impl BufRead,
    limits: &Limits,
    name: &str,
    mut on_progress: impl FnMut(u64),
) -> Result<u64> {
    // A line holding a document at the limit may be longer than the limit in
    // its escaped form (`\u0041` is 6 bytes for 1); past this it is refused.
    let max_line = limits
        .max_doc_bytes
        .saturating_mul(6)
        .saturating_add(MAX_ID_BYTES * 6 + 1024);
    let max_batch_bytes = store.batch_bytes(IMPORT_BATCH_BYTES);
    let mut buf = Vec::with_capacity(4096);
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut batch_bytes = 0usize;
    let mut imported = 0u64;
    let mut bytes = 0u64;
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut buf);
        line_no += 1;
        let parsed = match read {
            Ok(0) => break,
            Ok(n) if n > max_line && buf.last() != Some(&b'\n') => Err(CliError::Input {
                code: ErrorCode::TooLarge,
                message: format!(
                    "the line is over {max_line} bytes, too long for a document of at most {} bytes",
                    limits.max_doc_bytes
                ),
            }),
            Ok(n) => {
                bytes += n as u64;
                parse_line(&buf, limits)
            }
            Err(source) => Err(CliError::Io {
                action: "read",
                path: PathBuf::from(name),
                source,
                hint: "check the file and the disk it is on",
            }),
        };
        match parsed {
            Ok(None) => {}
            Ok(Some((op, len))) => {
                batch.push(op);
                batch_bytes += len;
                if batch.len() >= IMPORT_BATCH || batch_bytes >= max_batch_bytes {
                    imported += write_batch(store, &mut batch, imported, line_no)?;
                    batch_bytes = 0;
                    on_progress(bytes);
                }
            }
            Err(e) => {
                // Everything before the bad line goes in first.
                if !batch.is_empty() {
                    imported += write_batch(store, &mut batch, imported, line_no - 1)?;
                }
                on_progress(bytes);
                return Err(e.context_with(
                    format!("line {line_no} of {name}"),
                    format!(
                        ". Imported {} before it; fix the line and import again (a document imported again is replaced, not duplicated)",
                        documents(imported)
                    ),
                ));
            }
        }
    }
    if !batch.is_empty() {
        imported += write_batch(store, &mut batch, imported, line_no - 1)?;
    }
    on_progress(bytes);
    Ok(imported)
}

/// Writes and empties `batch`; returns how many documents it held.
fn write_batch(store: &Db, batch: &mut Vec<WriteOp>, imported: u64, line_no: u64) -> Result<u64> {
    let n = batch.len() as u64;
    store.batch(std::mem::take(batch)).map_err(|e| {
        e.context_with(
            format!("writing the documents up to line {line_no}"),
            format!(". Imported {} before them", documents(imported)),
        )
    })?;
    Ok(n)
}

/// Parses one line: `None` for a blank line, else the put it asks for and
/// the size of its document.
fn parse_line(raw: &[u8], limits: &Limits) -> Result<Option<(WriteOp, usize)>> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        CliError::input(format!(
            "the line is not UTF-8 (invalid byte at offset {}); JSON Lines files are UTF-8",
            e.valid_up_to()
        ))
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let reason = e.to_string();
        let reason = reason
            .rfind(" at line ")
            .map_or(reason.as_str(), |i| &reason[..i]);
        CliError::input(format!(
            "invalid JSON at column {}: {reason}; {LINE_SHAPE}",
            e.column()
        ))
    })?;
    let Value::Object(mut line) = value else {
        return Err(CliError::input(format!(
            "the line is {}, not an object; {LINE_SHAPE}",
            kind_of(&value)
        )));
    };
    let id = match line.remove("id") {
        Some(Value::String(id)) => id,
        None => return Err(CliError::input(format!("\"id\" is missing; {LINE_SHAPE}"))),
        Some(other) => {
            return Err(CliError::input(format!(
                "\"id\" is {}, not a string; {LINE_SHAPE}",
                kind_of(&other)
            )));
        }
    };
    validate_id(&id)?;
    let data = match line.remove("data") {
        Some(Value::Object(data)) => data,
        None => {
            return Err(CliError::input(format!(
                "\"data\" is missing for {id:?}; {LINE_SHAPE}"
            )));
        }
        Some(other) => {
            return Err(CliError::input(format!(
                "\"data\" of {id:?} is {}, not an object; {LINE_SHAPE}",
                kind_of(&other)
            )));
        }
    };
    // The store measures a document by its compact JSON text; so do we, to
    // name the line instead of failing a whole batch.
    let len = serde_json::to_string(&data)
        .map_err(|e| CliError::input(format!("the document {id:?} cannot be encoded: {e}")))?
        .len();
    if len > limits.max_doc_bytes {
        return Err(DocumentError::TooLarge {
            len,
            max: limits.max_doc_bytes,
        }
        .into());
    }
    Ok(Some((
        WriteOp::Put {
            id,
            data: Value::Object(data),
        },
        len,
    )))
}

/// `hearth export [FILE]`.
pub(crate) fn export(g: &GlobalArgs, out: &mut Output, file: Option<&Path>) -> Result<()> {
    let file = file.filter(|f| *f != Path::new("-"));
    let store = db::open(g)?;
    let json = out.is_json();
    // Counting costs a query; only done when the bar is shown.
    let total = if shows_progress(json) {
        Some(store.document_count()?)
    } else {
        None
    };
    let bar = progress(json, total, false, "exporting");
    let exported = match file {
        None => {
            let n = export_to(&store, out.writer(), &bar).map_err(|e| match e {
                ExportError::Write(e) => stdout_error(e),
                ExportError::Store(e) => e,
            })?;
            out.flush()?;
            n
        }
        Some(path) => {
            let f = File::create(path).map_err(|source| CliError::Io {
                action: "create",
                path: path.to_path_buf(),
                source,
                hint: "check that the directory exists and is writable",
            })?;
            let mut w = BufWriter::with_capacity(256 << 10, f);
            let write_error = |source| CliError::Io {
                action: "write",
                path: path.to_path_buf(),
                source,
                hint: "check disk space; the file is incomplete",
            };
            let n = export_to(&store, &mut w, &bar).map_err(|e| match e {
                ExportError::Write(e) => write_error(e),
                ExportError::Store(e) => e,
            })?;
            w.flush().map_err(write_error)?;
            n
        }
    };
    bar.finish_and_clear();
    match file {
        Some(path) => out.result(
            &json!({ "exported": exported, "file": path }),
            format_args!("exported {} to {}", documents(exported), path.display()),
        ),
        None => {
            if !json {
                eprintln!("exported {}", documents(exported));
            }
            Ok(())
        }
    }
}

/// Why an export stopped.
enum ExportError {
    Write(std::io::Error),
    Store(CliError),
}

/// Streams every document to `w` as JSON Lines. Returns the count.
fn export_to(
    store: &Db,
    w: &mut impl Write,
    bar: &indicatif::ProgressBar,
) -> Result<u64, ExportError> {
    let mut n = 0u64;
    let list = store
        .list(ListOptions::default())
        .map_err(ExportError::Store)?;
    for doc in list {
        let doc = doc
            .map_err(|e| ExportError::Store(e.context(format!("after {n} exported documents"))))?;
        write_doc_json(w, doc.id(), &doc.json(), None).map_err(ExportError::Write)?;
        n += 1;
        if n.is_multiple_of(1024) {
            bar.set_position(n);
        }
    }
    bar.set_position(n);
    Ok(n)
}

/// "1 document", "2 documents".
fn documents(n: u64) -> String {
    if n == 1 {
        "1 document".into()
    } else {
        format!("{n} documents")
    }
}

/// An error opening the input file: a missing file is a bad argument.
fn open_input_error(path: &Path, source: std::io::Error) -> CliError {
    if source.kind() == std::io::ErrorKind::NotFound {
        return CliError::input(format!(
            "cannot open {}: no such file; give the path of a JSON Lines file, or - for standard input",
            path.display()
        ));
    }
    CliError::Io {
        action: "open",
        path: path.to_path_buf(),
        source,
        hint: "check that the file exists and is readable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(line: &str) -> Result<Option<WriteOp>> {
        parse_line(line.as_bytes(), &Limits::default()).map(|o| o.map(|(op, _)| op))
    }

    fn message(line: &str) -> String {
        match op(line) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("expected an error for {line:?}, got {v:?}"),
        }
    }

    #[test]
    fn a_good_line_is_a_put() {
        let got = op(r#"{"id":"a","data":{"x":1}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got,
            Some(WriteOp::Put {
                id: "a".into(),
                data: json!({"x":1})
            })
        );
    }

    #[test]
    fn blank_lines_and_crlf_are_fine() {
        assert!(matches!(op("   \r\n"), Ok(None)));
        assert!(matches!(op("{\"id\":\"a\",\"data\":{}}\r\n"), Ok(Some(_))));
    }

    #[test]
    fn each_kind_of_bad_line_is_named() {
        assert!(message("{nope").contains("invalid JSON at column"));
        assert!(message("[1]").contains("an array, not an object"));
        assert!(message(r#"{"data":{}}"#).contains("\"id\" is missing"));
        assert!(message(r#"{"id":5,"data":{}}"#).contains("not a string"));
        assert!(message(r#"{"id":"a"}"#).contains("\"data\" is missing"));
        assert!(message(r#"{"id":"a","data":[1]}"#).contains("not an object"));
        assert!(message(r#"{"id":"","data":{}}"#).contains("empty"));
        assert!(message(r#"{"id":"a\u0000b","data":{}}"#).contains("NUL"));
    }

    #[test]
    fn a_line_over_the_limit_is_too_large() {
        let limits = Limits {
            max_doc_bytes: 8,
            ..Limits::default()
        };
        let err = parse_line(br#"{"id":"a","data":{"x":"0123456789"}}"#, &limits);
        assert!(matches!(
            err,
            Err(CliError::Input {
                code: ErrorCode::TooLarge,
                ..
            })
        ));
    }
}
