//! `list`, `query` and `search`: reading many documents.
//!
//! Owns: turning `FIELD=VALUE` arguments into filters, paging through the
//! store (or the server) so that any number of results streams in constant
//! memory, and printing one line per document. Must never: write to the
//! store.

use crate::args::GlobalArgs;
use crate::db;
use crate::error::{CliError, Result};
use crate::output::Output;
use hearth_store::ListOptions;
use serde_json::{Map, Value, json};

/// How many documents a `query` asks the store for at a time.
const QUERY_PAGE: usize = 1000;

/// `hearth list`.
pub(crate) fn list(g: &GlobalArgs, out: &mut Output, opts: ListOptions) -> Result<()> {
    for doc in db::open(g)?.list(opts)? {
        out.doc_line(&doc?, None)?;
    }
    Ok(())
}

/// `hearth query FIELD=VALUE…`.
pub(crate) fn query(
    g: &GlobalArgs,
    out: &mut Output,
    filters: &[String],
    limit: Option<usize>,
) -> Result<()> {
    let filters = parse_filters(filters)?;
    let store = db::open(g)?;
    let mut remaining = limit.unwrap_or(usize::MAX);
    let mut after: Option<String> = None;
    while remaining > 0 {
        let want = remaining.min(QUERY_PAGE);
        let page = store.query(&filters, want, after.as_deref())?;
        for doc in &page {
            out.doc_line(doc, None)?;
        }
        remaining -= page.len().min(remaining);
        match page.last() {
            Some(last) if page.len() == want => after = Some(last.id().to_string()),
            _ => break,
        }
    }
    Ok(())
}

/// `hearth search TEXT`.
pub(crate) fn search(g: &GlobalArgs, out: &mut Output, text: &str, limit: usize) -> Result<()> {
    for (doc, score) in db::open(g)?.search(text, limit)? {
        out.doc_line(&doc, Some(("score", json!(score))))?;
    }
    Ok(())
}

/// Parses `FIELD=VALUE` arguments: VALUE is JSON when it parses, else a
/// string.
fn parse_filters(args: &[String]) -> Result<Map<String, Value>> {
    let mut filters = Map::new();
    for arg in args {
        let Some((field, raw)) = arg.split_once('=') else {
            return Err(CliError::input(format!(
                "query filter {arg:?} has no '='; write FIELD=VALUE, e.g. name=Alice or age=30"
            )));
        };
        if field.is_empty() {
            return Err(CliError::input(format!(
                "query filter {arg:?} has no field name before '='; write FIELD=VALUE"
            )));
        }
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        if let Some(previous) = filters.insert(field.to_string(), value) {
            return Err(CliError::input(format!(
                "query field {field:?} is given twice (first as {previous}); a document field has one value"
            )));
        }
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Map<String, Value>> {
        parse_filters(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn values_are_json_when_they_parse_and_strings_otherwise() {
        let f = parsed(&[
            "age=30",
            "active=true",
            "name=Alice",
            "tag=\"30\"",
            "x=null",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f["age"], json!(30));
        assert_eq!(f["active"], json!(true));
        assert_eq!(f["name"], json!("Alice"));
        assert_eq!(f["tag"], json!("30"));
        assert_eq!(f["x"], Value::Null);
    }

    #[test]
    fn only_the_first_equals_sign_splits() {
        let f = parsed(&["expr=a=b"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f["expr"], json!("a=b"));
    }

    #[test]
    fn a_filter_without_equals_or_field_is_bad_input() {
        assert!(parsed(&["name"]).is_err());
        assert!(parsed(&["=x"]).is_err());
        assert!(parsed(&["a=1", "a=2"]).is_err());
    }
}
