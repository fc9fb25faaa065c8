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

/// Object keys that begin with this are refused in documents, at any depth.
///
/// serde_json, which every hearth process parses documents with, gives an
/// object whose first key is `$serde_json::private::RawValue` a meaning of
/// its own: parsing it into a JSON value yields the *string* under that key
/// parsed as JSON instead of the object. A document holding such a key
/// would read back as something other than what was written (or fail to
/// parse at all, breaking every `list` that meets it), so it is refused
/// when written, with the rest of that reserved prefix.
pub const RESERVED_KEY_PREFIX: &str = "$serde_json::private::";

/// Whether `key` is reserved ([`RESERVED_KEY_PREFIX`]).
///
/// ```
/// use hearth_proto::is_reserved_key;
/// assert!(is_reserved_key("$serde_json::private::RawValue"));
/// assert!(!is_reserved_key("$ref"));
/// ```
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with(RESERVED_KEY_PREFIX)
}

/// Refuses the JSON `text` if it holds a reserved key
/// ([`RESERVED_KEY_PREFIX`]) at any depth, however its characters are
/// escaped, naming the first one; text that does not parse passes (its
/// parse error is for the caller's parser to give). Check before parsing
/// JSON from a peer into a value: the parser gives such a key its other
/// meaning as it reads.
///
/// ```
/// use hearth_proto::{check_reserved_keys, DocumentError};
/// let escaped = r#"{"a":[{"\u0024serde_json::private::RawValue":"1"}]}"#;
/// assert!(matches!(check_reserved_keys(escaped),
///     Err(DocumentError::ReservedKey { key }) if key == "$serde_json::private::RawValue"));
/// assert!(check_reserved_keys(r#"{"name":"Alice"}"#).is_ok());
/// ```
pub fn check_reserved_keys(text: &str) -> Result<(), DocumentError> {
    // Only where one could be: the prefix as written, or an escape.
    if !text.contains(RESERVED_KEY_PREFIX) && !text.contains("\\u") {
        return Ok(());
    }
    match compact::reserved_key(text) {
        Some(key) => Err(DocumentError::ReservedKey { key }),
        None => Ok(()),
    }
}

/// Checks a document given as a value: arrays and objects nested at most
/// [`MAX_DEPTH`] deep ([`check_depth`]) and no reserved key at any depth
/// ([`RESERVED_KEY_PREFIX`]), without recursion.
///
/// ```
/// use hearth_proto::{check_document_value, DocumentError};
/// assert!(check_document_value(&serde_json::json!({"a": [1, {"b": 2}]})).is_ok());
/// let bad = serde_json::json!({"a": {"$serde_json::private::RawValue": "1"}});
/// assert!(matches!(check_document_value(&bad), Err(DocumentError::ReservedKey { .. })));
/// ```
pub fn check_document_value(value: &Value) -> Result<(), DocumentError> {
    check_depth(value)?;
    let mut stack: Vec<&Value> = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => {
                if let Some(key) = o.keys().find(|k| is_reserved_key(k)) {
                    return Err(DocumentError::ReservedKey { key: key.clone() });
                }
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    Ok(())
}

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
    /// An object key begins with [`RESERVED_KEY_PREFIX`].
    #[error(
        "the key {key:?} is reserved: keys beginning with \"$serde_json::private::\" mean something else to the JSON parser hearth uses; rename the field"
    )]
    ReservedKey {
        /// The key found.
        key: String,
    },
    /// The document's JSON text is over the limit.
    #[error(
        "document is {len} bytes; the limit is {max} bytes, the store's (split the document, or raise the limit where the store is opened: hearth serve --max-doc-bytes for a server, --max-doc-bytes on a command that opens a data directory itself)"
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
    // Parsing into a value would already have given a reserved key its
    // other meaning: look for one first, in the text (only where one could
    // be: the prefix as written, or any escaped character in a key).
    check_reserved_keys(text)?;
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

/// Whether `text` is a document that can be stored exactly as written: a
/// JSON object within `limits` and [`MAX_DEPTH`], with no whitespace outside
/// strings and no key repeated within an object.
///
/// It checks without building a JSON tree, so the common case (a client's
/// compact text) costs one pass. `false` says nothing about why: the text may
/// be invalid, or valid but in need of normalising (spaces, a repeated key,
/// whose last value wins). Callers then use [`validate_document`], which gives
/// the precise error or the parsed fields.
///
/// ```
/// use hearth_proto::{is_compact_document, Limits};
/// let limits = Limits::default();
/// assert!(is_compact_document(r#"{"name":"Alice","tags":["a b"]}"#, &limits));
/// assert!(!is_compact_document(r#"{"name": "Alice"}"#, &limits)); // a space
/// assert!(!is_compact_document(r#"{"a":1,"a":2}"#, &limits)); // a repeated key
/// assert!(!is_compact_document("[1]", &limits)); // not an object
/// ```
pub fn is_compact_document(text: &str, limits: &Limits) -> bool {
    text.len() <= limits.max_doc_bytes && compact::check(text)
}

/// JSON text known to pass [`is_compact_document`]'s checks, size aside
/// (the size limit is the store's): what a decoder hands on so that the
/// store need not check the text again.
///
/// ```
/// use hearth_proto::CompactDocument;
/// let doc = CompactDocument::new(r#"{"name":"Alice"}"#).unwrap();
/// assert_eq!(doc.as_str(), r#"{"name":"Alice"}"#);
/// assert!(CompactDocument::new(r#"{"name": "Alice"}"#).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactDocument(String);

impl CompactDocument {
    /// A copy of `text` if it is a compact document, else `None`.
    pub fn new(text: &str) -> Option<CompactDocument> {
        compact::check(text).then(|| CompactDocument(text.to_string()))
    }

    /// Whether `text` passes [`is_compact_document`]'s checks, size aside
    /// (what [`new`](Self::new) would accept), without copying it.
    ///
    /// ```
    /// use hearth_proto::CompactDocument;
    /// assert!(CompactDocument::accepts(r#"{"name":"Alice"}"#));
    /// assert!(!CompactDocument::accepts(r#"{"name": "Alice"}"#));
    /// ```
    pub fn accepts(text: &str) -> bool {
        compact::check(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The tree-free walk behind [`is_compact_document`].
mod compact {
    use super::MAX_DEPTH;
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    /// A JSON object, compact, no repeated key, at most [`MAX_DEPTH`] deep.
    pub(super) fn check(text: &str) -> bool {
        if text.as_bytes().first() != Some(&b'{') || !no_space_outside_strings(text.as_bytes()) {
            return false;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        Check { depth: 1 }.deserialize(&mut de).is_ok() && de.end().is_ok()
    }

    /// True when no JSON whitespace byte appears outside a string. Assumes
    /// nothing about validity: an unbalanced quote only makes the answer
    /// meaningless for text the parser then refuses anyway. Inside a
    /// string it jumps from one quote or backslash to the next (`memchr2`,
    /// many bytes at a time): a byte-by-byte walk cost a 256 KiB string
    /// ~250 µs, six times what parsing it does.
    pub(super) fn no_space_outside_strings(text: &[u8]) -> bool {
        let mut i = 0;
        while let Some(&b) = text.get(i) {
            i += 1;
            match b {
                b'"' => loop {
                    let Some(k) = text
                        .get(i..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    else {
                        // An unterminated string (or an escape at the very end).
                        return true;
                    };
                    i += k + 1;
                    // `memchr2` found a quote or backslash at `i - 1`.
                    if text[i - 1] == b'"' {
                        break;
                    }
                    // A backslash: the byte after it is escaped, whatever it is.
                    i += 1;
                },
                b' ' | b'\t' | b'\n' | b'\r' => return false,
                _ => {}
            }
        }
        true
    }

    /// The visitor methods of a walk that accepts every scalar as it is.
    macro_rules! accept_scalars {
        () => {
            fn visit_bool<E>(self, _: bool) -> Result<(), E> {
                Ok(())
            }
            fn visit_i64<E>(self, _: i64) -> Result<(), E> {
                Ok(())
            }
            fn visit_u64<E>(self, _: u64) -> Result<(), E> {
                Ok(())
            }
            fn visit_f64<E>(self, _: f64) -> Result<(), E> {
                Ok(())
            }
            fn visit_str<E>(self, _: &str) -> Result<(), E> {
                Ok(())
            }
            fn visit_unit<E>(self) -> Result<(), E> {
                Ok(())
            }
        };
    }

    /// Visits one value at `depth` (the document object is 1), refusing
    /// containers deeper than [`MAX_DEPTH`] and objects with a repeated key.
    pub(super) struct Check {
        pub(super) depth: usize,
    }

    impl Check {
        fn enter<E: de::Error>(&self) -> Result<Check, E> {
            if self.depth > MAX_DEPTH {
                return Err(E::custom("too deep"));
            }
            Ok(Check {
                depth: self.depth + 1,
            })
        }
    }

    impl<'de> DeserializeSeed<'de> for Check {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            if self.depth == 1 {
                d.deserialize_map(self)
            } else {
                d.deserialize_any(self)
            }
        }
    }

    impl<'de> Visitor<'de> for Check {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        accept_scalars!();
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let inner = self.enter()?;
            while seq
                .next_element_seed(Check { depth: inner.depth })?
                .is_some()
            {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = self.enter()?;
            let mut keys: Vec<Key<'de>> = Vec::new();
            while let Some(key) = map.next_key::<Key<'de>>()? {
                if super::is_reserved_key(&key.0) {
                    return Err(de::Error::custom("reserved key"));
                }
                map.next_value_seed(Check { depth: inner.depth })?;
                keys.push(key);
            }
            if has_repeat(&mut keys) {
                return Err(de::Error::custom("repeated key"));
            }
            Ok(())
        }
    }

    /// Whether any key appears twice (reorders `keys`).
    fn has_repeat(keys: &mut [Key<'_>]) -> bool {
        if keys.len() <= 8 {
            return keys
                .iter()
                .enumerate()
                .any(|(i, k)| keys[i + 1..].iter().any(|o| o.0 == k.0));
        }
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        keys.windows(2).any(|w| w[0].0 == w[1].0)
    }

    /// An object key, borrowed from the text unless it has escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> de::Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(KeyVisitor)
        }
    }

    /// The first reserved key in `text` (at any depth, as decoded), if
    /// any; text that does not parse has none (its parse error is reported
    /// elsewhere).
    pub(super) fn reserved_key(text: &str) -> Option<String> {
        let found = std::cell::RefCell::new(None);
        let mut de = serde_json::Deserializer::from_str(text);
        let _ = Scan { found: &found }.deserialize(&mut de);
        found.into_inner()
    }

    /// Visits one value looking only at object keys; stops at the first
    /// reserved one, noting it in `found`.
    struct Scan<'a> {
        found: &'a std::cell::RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Scan<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Scan<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        accept_scalars!();
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Scan { found: self.found })?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Key<'de>>()? {
                if super::is_reserved_key(&key.0) {
                    *self.found.borrow_mut() = Some(key.0.into_owned());
                    return Err(de::Error::custom("reserved key"));
                }
                map.next_value_seed(Scan { found: self.found })?;
            }
            Ok(())
        }
    }

    struct KeyVisitor;

    impl<'de> Visitor<'de> for KeyVisitor {
        type Value = Key<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
            Ok(Key(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
            Ok(Key(Cow::Owned(v.to_string())))
        }
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

    /// Documents with a reserved key: top level, nested in an object and an
    /// array, escaped, with spaces (not compact), and with other keys.
    const RESERVED: [&str; 6] = [
        r#"{"$serde_json::private::RawValue":"{\"admin\":true}"}"#,
        r#"{"a":{"$serde_json::private::RawValue":"1"}}"#,
        r#"{"a":[1,{"b":2,"$serde_json::private::RawValue":"[\\\"}]}"#,
        r#"{"\u0024serde_json::private::RawValue":"1"}"#,
        r#"{ "a" : { "$serde_json::private::Number" : "1" } }"#,
        r#"{"$serde_json::private::RawValue":"1","x":2}"#,
    ];

    #[test]
    fn a_reserved_key_at_any_depth_is_refused_naming_it() {
        for text in RESERVED {
            assert!(!is_compact_document(text, &Limits::default()), "{text}");
            assert!(CompactDocument::new(text).is_none(), "{text}");
            match validate_document(text, &Limits::default()) {
                Err(DocumentError::ReservedKey { key }) => {
                    assert!(key.starts_with(RESERVED_KEY_PREFIX), "{text}: {key}");
                    let message = DocumentError::ReservedKey { key }.to_string();
                    assert!(message.contains("rename the field"), "{message}");
                }
                other => panic!("{text}: expected ReservedKey, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_reserved_key_in_a_value_is_refused() {
        // As a Rust caller builds it: the key as an ordinary map key.
        let mut inner = Map::new();
        inner.insert(format!("{RESERVED_KEY_PREFIX}RawValue"), Value::from(1));
        let value = serde_json::json!({"a": [Value::Object(inner)]});
        assert!(matches!(
            check_document_value(&value),
            Err(DocumentError::ReservedKey { .. })
        ));
        assert!(check_document_value(&serde_json::json!({"a": [{"b": 1}]})).is_ok());
    }

    #[test]
    fn keys_that_only_resemble_the_reserved_prefix_are_ordinary() {
        for text in [
            r#"{"$serde_json":1}"#,
            r#"{"x$serde_json::private::RawValue":1}"#,
            r#"{"a":"$serde_json::private::RawValue"}"#,
            r#"{"\u0041":"\u0024serde_json::private::RawValue"}"#,
        ] {
            assert!(is_compact_document(text, &Limits::default()), "{text}");
            assert!(
                validate_document(text, &Limits::default()).is_ok(),
                "{text}"
            );
            assert!(check_reserved_keys(text).is_ok(), "{text}");
        }
    }

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

    fn compact(text: &str) -> bool {
        is_compact_document(text, &Limits::default())
    }

    #[test]
    fn compact_objects_are_storable_as_written() {
        for text in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"name":"Alice Smith","tags":["a b","c"],"n":-1.5e3,"ok":true,"none":null}"#,
            r#"{"nested":{"a":{"b":[1,{"c":2}]}},"a":{"a":1}}"#,
            r#"{"s":"quote \" backslash \\ tab \t unicode \u00e9 \ud83d\ude00"}"#,
            r#"{"a\u0041":1,"aA":2}"#.replace("\\u0041", "B").as_str(),
        ] {
            assert!(compact(text), "{text}");
            assert!(validate_document(text, &Limits::default()).is_ok());
        }
    }

    #[test]
    fn whitespace_inside_strings_is_compact_whatever_they_escape() {
        for text in [
            r#"{"a":"x y"}"#,
            r#"{"a":"\" y"}"#,
            r#"{"a":"\\","b":"\" \\"}"#,
            r#"{"a \"":"\u0022 "}"#,
        ] {
            assert!(compact(text), "{text:?}");
        }
        assert!(!compact(r#"{"a":"\\" ,"b":1}"#));
    }

    #[test]
    fn whitespace_outside_strings_needs_normalising() {
        for text in [
            r#"{"a": 1}"#,
            "{\"a\":1}\n",
            " {\"a\":1}",
            "{\"a\":[1,\t2]}",
            "{\r\"a\":1}",
        ] {
            assert!(!compact(text), "{text:?}");
        }
    }

    #[test]
    fn a_repeated_key_needs_normalising_at_any_depth_and_any_width() {
        assert!(!compact(r#"{"a":1,"a":2}"#));
        assert!(!compact(r#"{"x":{"b":1,"c":2,"b":3}}"#));
        assert!(!compact(r#"{"x":[{"k":1,"k":1}]}"#));
        // The same key spelled with an escape is the same key.
        assert!(!compact(r#"{"a":1,"\u0061":2}"#));
        let wide: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        let unique = format!("{{{}}}", wide.join(","));
        assert!(compact(&unique));
        let repeated = format!("{{{},\"k7\":0}}", wide.join(","));
        assert!(!compact(&repeated));
    }

    #[test]
    fn anything_validate_document_refuses_is_not_compact() {
        let text_100 = format!("{{\"a\":{}{}}}", "[".repeat(99), "]".repeat(99));
        let text_101 = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(validate_document(&text_100, &Limits::default()).is_ok());
        assert!(compact(&text_100));
        assert!(validate_document(&text_101, &Limits::default()).is_err());
        assert!(!compact(&text_101));
        for bad in [
            "",
            "[1]",
            "1",
            "\"s\"",
            "null",
            "{",
            r#"{"a":1}x"#,
            r#"{"a":1}{}"#,
            r#"{"a":01}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"raw\ncontrol\"}",
            r#"{"a":1,}"#,
            r#"{"a":1e999}"#,
        ] {
            assert!(
                validate_document(bad, &Limits::default()).is_err(),
                "{bad:?}"
            );
            assert!(!compact(bad), "{bad:?}");
        }
        let limits = Limits {
            max_doc_bytes: 10,
            ..Limits::default()
        };
        assert!(!is_compact_document(r#"{"a":"0123456789"}"#, &limits));
    }

    mod generated {
        use super::super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                ".{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,6}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The whitespace scan's reference: one byte at a time.
        fn walk_every_byte(text: &[u8]) -> bool {
            let (mut in_string, mut escaped) = (false, false);
            for &b in text {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else if b == b'"' {
                    in_string = true;
                } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    return false;
                }
            }
            true
        }

        fn document() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::btree_map(".{0,6}", json_value(), 0..8)
                .prop_map(|m| m.into_iter().collect())
        }

        proptest! {
            /// What serde_json writes for any object is storable as written.
            #[test]
            fn every_compactly_printed_object_is_compact(doc in document()) {
                let text = serde_json::to_string(&doc).unwrap();
                prop_assert!(is_compact_document(&text, &Limits::default()), "{}", text);
            }

            /// The whitespace scan says what a byte-by-byte walk says, for
            /// any bytes (quotes and backslashes made common).
            #[test]
            fn the_whitespace_scan_agrees_with_a_walk_of_every_byte(
                bytes in prop::collection::vec(
                    prop_oneof![4 => Just(b'"'), 4 => Just(b'\\'), 1 => Just(b' '), 1 => Just(b'\n'), 4 => any::<u8>()],
                    0..200,
                ),
            ) {
                prop_assert_eq!(
                    compact::no_space_outside_strings(&bytes),
                    walk_every_byte(&bytes),
                    "{:?}", String::from_utf8_lossy(&bytes)
                );
            }

            /// The check never accepts text the full validator refuses, and
            /// what it accepts parses to the same document.
            #[test]
            fn accepted_text_is_a_valid_document(doc in document(), cut in 0usize..64, byte in any::<u8>()) {
                let mut bytes = serde_json::to_string(&doc).unwrap().into_bytes();
                let at = cut.min(bytes.len());
                bytes.insert(at, byte);
                let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
                if is_compact_document(&text, &Limits::default()) {
                    prop_assert!(validate_document(&text, &Limits::default()).is_ok(), "{}", text);
                }
            }
        }
    }
}
