//! Everything `hearth` prints: results on stdout, errors and notices on stderr.
//!
//! Owns: the readable and the `--json` form of results, errors and notices,
//! buffering of stdout, and the decision to show progress bars (only when
//! stderr is a terminal and never in `--json` mode). Must never: mix a notice
//! or a progress bar into stdout, or print a non-JSON line to stderr in
//! `--json` mode.

use crate::db::Doc;
use crate::error::{CliError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::time::Duration;

/// Where results go.
pub(crate) struct Output {
    json: bool,
    out: BufWriter<Stdout>,
}

impl Output {
    /// Results on stdout, in `--json` form when `json`.
    pub(crate) fn new(json: bool) -> Output {
        Output {
            json,
            out: BufWriter::with_capacity(64 << 10, std::io::stdout()),
        }
    }

    /// Whether `--json` is in force.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one result: `value` in `--json` mode, else `human`.
    pub(crate) fn result(&mut self, value: &Value, human: impl std::fmt::Display) -> Result<()> {
        if self.json {
            writeln!(self.out, "{value}").map_err(stdout_error)
        } else {
            writeln!(self.out, "{human}").map_err(stdout_error)
        }
    }

    /// Prints a document as one line: `{"id":…,"data":…}` (plus `extra`
    /// fields) in `--json` mode, else `id  {json}`.
    pub(crate) fn doc_line(&mut self, doc: &Doc, extra: Option<(&str, Value)>) -> Result<()> {
        if self.json {
            write_doc_json(&mut self.out, doc.id(), &doc.json(), extra).map_err(stdout_error)
        } else {
            writeln!(self.out, "{}  {}", doc.id(), doc.json()).map_err(stdout_error)
        }
    }

    /// Prints one line and writes it out at once (for streams a reader
    /// follows as they happen: `watch`, `subscribe`).
    pub(crate) fn live_line(&mut self, value: &Value, human: impl std::fmt::Display) -> Result<()> {
        self.result(value, human)?;
        self.flush()
    }

    /// The raw stdout writer (buffered), for streaming output.
    pub(crate) fn writer(&mut self) -> &mut BufWriter<Stdout> {
        &mut self.out
    }

    /// Writes out everything buffered.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(stdout_error)
    }
}

/// Writes `{"id":…,"data":…}` and a newline, using the document's JSON
/// text as is.
pub(crate) fn write_doc_json(
    w: &mut impl Write,
    id: &str,
    json: &str,
    extra: Option<(&str, Value)>,
) -> std::io::Result<()> {
    let id = Value::String(id.to_string());
    write!(w, "{{\"id\":{id},\"data\":{json}")?;
    if let Some((key, value)) = extra {
        write!(w, ",{}:{value}", Value::String(key.to_string()))?;
    }
    w.write_all(b"}\n")
}

/// An error writing to stdout.
pub(crate) fn stdout_error(source: std::io::Error) -> CliError {
    CliError::Io {
        action: "write to",
        path: "standard output".into(),
        source,
        hint: "check where the output is redirected (disk space, permissions)",
    }
}

/// Whether the error is stdout's reader going away (`hearth list | head`),
/// which is not a failure worth reporting.
pub(crate) fn is_broken_pipe(e: &CliError) -> bool {
    match e {
        CliError::Io { source, path, .. } => {
            source.kind() == std::io::ErrorKind::BrokenPipe && path.as_os_str() == "standard output"
        }
        CliError::Context { inner, .. } => is_broken_pipe(inner),
        _ => false,
    }
}

/// Prints an error on stderr: `hearth: error: …`, or
/// `{"error":{"code":…,"message":…}}` in `--json` mode.
pub(crate) fn print_error(json: bool, e: &CliError) {
    let body = e.to_body();
    let mut err = std::io::stderr().lock();
    // Nothing useful can be done if stderr itself is gone.
    let _ = if json {
        writeln!(err, "{}", json!({ "error": body }))
    } else {
        writeln!(err, "hearth: error: {}", body.message)
    };
}

/// Prints a notice on stderr: `hearth: notice: …`, or
/// `{"notice":{"code":…,"message":…, …details}}` in `--json` mode.
pub(crate) fn print_notice(json: bool, code: &str, message: &str, details: Value) {
    let mut err = std::io::stderr().lock();
    let _ = if json {
        let mut notice = json!({ "code": code, "message": message });
        if let (Some(n), Value::Object(d)) = (notice.as_object_mut(), details) {
            n.extend(d);
        }
        writeln!(err, "{}", json!({ "notice": notice }))
    } else {
        writeln!(err, "hearth: notice: {message}")
    };
}

/// Whether progress bars are shown: stderr is a terminal and `--json` is off.
pub(crate) fn shows_progress(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A progress bar on stderr when it is a terminal and `--json` is off;
/// otherwise a hidden one. `len` is the total (bytes or documents) when
/// known; without it a spinner counts.
pub(crate) fn progress(json: bool, len: Option<u64>, bytes: bool, what: &str) -> ProgressBar {
    if !shows_progress(json) {
        return ProgressBar::hidden();
    }
    let (bar, template) = match (len, bytes) {
        (Some(n), true) => (
            ProgressBar::new(n),
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ),
        (Some(n), false) => (
            ProgressBar::new(n),
            "{msg} [{bar:30}] {human_pos}/{human_len} ({eta})",
        ),
        (None, true) => (ProgressBar::new_spinner(), "{spinner} {msg} {bytes}"),
        (None, false) => (ProgressBar::new_spinner(), "{spinner} {msg} {human_pos}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
