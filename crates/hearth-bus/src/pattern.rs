//! Topic and pattern syntax: validation and matching.
//!
//! Owns: what a valid topic and a valid pattern are, and whether a pattern
//! matches a topic. Must never: allocate on the matching path, keep state,
//! or know about listeners — everything here is a pure function.
//!
//! # Syntax
//!
//! A *topic* is a `:`-separated name such as `user:login` or
//! `one-core:event:objectCreated`: 1..=256 bytes, no NUL, no empty segment
//! (no leading, trailing or doubled `:`), and no `*`.
//!
//! A *pattern* is a topic in which whole segments may be `*`:
//!
//! | pattern | matches |
//! |---|---|
//! | `user:login` | exactly `user:login` |
//! | `*` | every topic |
//! | `one-core:event:*` | `one-core:event:` followed by one or more segments |
//! | `user:*:created` | `user:`, exactly one segment, `:created` |
//!
//! In general: a `*` that is the *last* segment matches one or more
//! segments; a `*` anywhere else matches exactly one segment; any other
//! segment matches itself.

use crate::error::{BusError, NameKind};

/// The longest topic or pattern, in bytes.
///
/// ```
/// use hearth_bus::{validate_topic, MAX_NAME_BYTES};
/// assert!(validate_topic(&"a".repeat(MAX_NAME_BYTES)).is_ok());
/// assert!(validate_topic(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
/// ```
pub const MAX_NAME_BYTES: usize = 256;

/// The wildcard segment.
const STAR: &str = "*";

/// Checks that `topic` is a valid topic to emit.
///
/// ```
/// use hearth_bus::{validate_topic, BusError};
/// assert!(validate_topic("one-core:event:objectCreated").is_ok());
/// assert!(matches!(validate_topic("user::login"), Err(BusError::EmptySegment { at: 5, .. })));
/// assert!(matches!(validate_topic("user:*"), Err(BusError::WildcardInTopic { .. })));
/// ```
pub fn validate_topic(topic: &str) -> Result<(), BusError> {
    validate_common(topic, NameKind::Topic)?;
    if topic.contains('*') {
        return Err(BusError::WildcardInTopic {
            name: topic.to_owned(),
        });
    }
    Ok(())
}

/// Checks that `pattern` is a valid subscription pattern.
///
/// ```
/// use hearth_bus::validate_pattern;
/// assert!(validate_pattern("*").is_ok());
/// assert!(validate_pattern("user:*:created").is_ok());
/// assert!(validate_pattern("one-core:event:*").is_ok());
/// assert!(validate_pattern("user:log*").is_err());
/// assert!(validate_pattern(":user").is_err());
/// ```
pub fn validate_pattern(pattern: &str) -> Result<(), BusError> {
    validate_common(pattern, NameKind::Pattern)?;
    if let Some(segment) = pattern.split(':').find(|s| *s != STAR && s.contains('*')) {
        return Err(BusError::PartialWildcard {
            name: pattern.to_owned(),
            segment: segment.to_owned(),
        });
    }
    Ok(())
}

/// The checks topics and patterns share: length, NUL, empty segments.
fn validate_common(name: &str, what: NameKind) -> Result<(), BusError> {
    if name.is_empty() {
        return Err(BusError::Empty { what });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(BusError::TooLong {
            what,
            len: name.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if let Some(at) = name.find('\0') {
        return Err(BusError::Nul {
            what,
            name: name.to_owned(),
            at,
        });
    }
    let mut start = 0;
    for segment in name.split(':') {
        if segment.is_empty() {
            return Err(BusError::EmptySegment {
                what,
                name: name.to_owned(),
                at: start,
            });
        }
        start += segment.len() + 1;
    }
    Ok(())
}

/// Whether `pattern` contains a `*` segment (and so cannot be looked up by
/// exact name).
///
/// ```
/// use hearth_bus::is_wildcard;
/// assert!(is_wildcard("*"));
/// assert!(is_wildcard("user:*:created"));
/// assert!(!is_wildcard("user:login"));
/// ```
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.split(':').any(|s| s == STAR)
}

/// Whether `pattern` matches `topic`.
///
/// Both are assumed valid (see [`validate_pattern`], [`validate_topic`]);
/// for other input the answer follows the same segment rules and the
/// function still never panics.
///
/// ```
/// use hearth_bus::matches;
/// assert!(matches("*", "user:login"));
/// assert!(matches("user:login", "user:login"));
/// assert!(matches("one-core:event:*", "one-core:event:objectCreated"));
/// assert!(matches("one-core:event:*", "one-core:event:sync:progress"));
/// assert!(!matches("one-core:event:*", "one-core:event"));
/// assert!(matches("user:*:created", "user:42:created"));
/// assert!(!matches("user:*:created", "user:42:x:created"));
/// ```
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut pattern_segments = pattern.split(':').peekable();
    let mut topic_segments = topic.split(':');
    loop {
        match (pattern_segments.next(), topic_segments.next()) {
            (None, None) => return true,
            (Some(p), Some(t)) => {
                if p == STAR {
                    if pattern_segments.peek().is_none() {
                        // A trailing `*` takes this segment and all the rest.
                        return true;
                    }
                } else if p != t {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_segment_offsets_point_at_the_gap() {
        for (name, at) in [(":a", 0), ("a:", 2), ("a::b", 2), (":", 0)] {
            match validate_topic(name) {
                Err(BusError::EmptySegment { at: got, .. }) => assert_eq!(got, at, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn nul_is_refused_before_segments_are_checked() {
        assert!(matches!(
            validate_pattern("a\0::"),
            Err(BusError::Nul { at: 1, .. })
        ));
    }

    #[test]
    fn too_long_is_reported_with_both_sizes() {
        let long = "a".repeat(300);
        assert_eq!(
            validate_pattern(&long),
            Err(BusError::TooLong {
                what: NameKind::Pattern,
                len: 300,
                max: MAX_NAME_BYTES
            })
        );
    }

    #[test]
    fn star_star_pattern_needs_at_least_two_segments() {
        assert!(!matches("*:*", "a"));
        assert!(matches("*:*", "a:b"));
        assert!(matches("*:*", "a:b:c"));
    }
}
