//! Feeds arbitrary bytes to the document checks a server runs on a client's
//! put: the one-pass compact check and the full validator.
//!
//! Checks: no panic, no stack overflow on any nesting; the compact check
//! never accepts what the full validator refuses (the store keeps accepted
//! text as it is, so it must parse); `CompactDocument::new` agrees with
//! `is_compact_document` under the default limits; and text the check
//! accepts parses to an object that serde_json prints back as compact text
//! the check accepts again; and text the check accepts has no JSON
//! whitespace outside its strings (a byte-by-byte walk, the reference for
//! the check's `memchr2` scan).

#![no_main]

use hearth_proto::{CompactDocument, Limits, is_compact_document, validate_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    let compact = is_compact_document(text, &limits);
    let validated = validate_document(text, &limits);
    assert_eq!(CompactDocument::new(text).is_some(), compact);
    assert_eq!(CompactDocument::accepts(text), compact);
    if compact {
        assert!(no_space_outside_strings(text.as_bytes()), "{text:?}");
        let map = validated.expect("compact text is a valid document");
        let printed = serde_json::to_string(&map).expect("a parsed object prints");
        assert!(is_compact_document(&printed, &limits));
    }
});

/// Whether no JSON whitespace byte appears outside a string, one byte at a
/// time.
fn no_space_outside_strings(text: &[u8]) -> bool {
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
