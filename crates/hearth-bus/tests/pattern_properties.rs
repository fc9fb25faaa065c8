//! Topic and pattern rules: examples, and properties checked against a
//! simple reference matcher.
//!
//! Owns: the topic/pattern syntax contract. Must never: share code with the
//! matcher under test; the reference is written independently.

use hearth_bus::{
    BusError, MAX_NAME_BYTES, is_wildcard, matches, validate_pattern, validate_topic,
};
use proptest::prelude::*;

/// The matching rules written as plainly as possible: split both into
/// segments; a final `*` in the pattern stands for one or more segments,
/// every other `*` for exactly one.
fn reference_matches(pattern: &str, topic: &str) -> bool {
    let p: Vec<&str> = pattern.split(':').collect();
    let t: Vec<&str> = topic.split(':').collect();
    let segment_ok = |(ps, ts): (&&str, &&str)| *ps == "*" || ps == ts;
    if p.last() == Some(&"*") {
        let fixed = p.len() - 1;
        t.len() > fixed && p[..fixed].iter().zip(&t[..fixed]).all(segment_ok)
    } else {
        t.len() == p.len() && p.iter().zip(&t).all(segment_ok)
    }
}

fn segment() -> impl Strategy<Value = String> {
    // A small alphabet so that patterns and topics often share segments.
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("user".to_string()),
        Just("one-core".to_string()),
        "[a-z0-9_.-]{1,4}",
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..6).prop_map(|s| s.join(":"))
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![3 => segment(), 1 => Just("*".to_string())],
        1..6,
    )
    .prop_map(|s| s.join(":"))
}

/// A pattern built from `topic` that must match it: some segments replaced
/// by `*`, optionally cut short and ended with a trailing `*`.
fn matching_pattern() -> impl Strategy<Value = (String, String)> {
    prop::collection::vec(segment(), 1..6).prop_flat_map(move |segments| {
        let n = segments.len();
        (
            Just(segments),
            prop::collection::vec(any::<bool>(), n),
            0..=n,
        )
            .prop_map(move |(segments, stars, keep)| {
                let topic = segments.join(":");
                let mut p: Vec<String> = segments
                    .iter()
                    .zip(&stars)
                    .map(|(s, star)| if *star { "*".into() } else { s.clone() })
                    .collect();
                if keep < n {
                    p.truncate(keep);
                    p.push("*".into());
                }
                (p.join(":"), topic)
            })
    })
}

proptest! {
    #[test]
    fn the_matcher_agrees_with_the_reference(p in pattern(), t in topic()) {
        prop_assert!(validate_pattern(&p).is_ok());
        prop_assert!(validate_topic(&t).is_ok());
        prop_assert_eq!(matches(&p, &t), reference_matches(&p, &t), "pattern {} topic {}", p, t);
    }

    #[test]
    fn a_pattern_derived_from_a_topic_matches_it((p, t) in matching_pattern()) {
        prop_assert!(matches(&p, &t), "pattern {} topic {}", p, t);
        prop_assert!(reference_matches(&p, &t));
    }

    #[test]
    fn every_topic_matches_itself_and_star(t in topic()) {
        prop_assert!(matches(&t, &t));
        prop_assert!(matches("*", &t));
        prop_assert!(!is_wildcard(&t));
    }

    #[test]
    fn a_trailing_star_never_matches_its_bare_prefix(t in topic()) {
        let p = format!("{t}:*");
        let deeper = format!("{t}:x");
        prop_assert!(!matches(&p, &t));
        prop_assert!(matches(&p, &deeper));
    }

    #[test]
    fn validation_and_matching_never_panic_on_any_string(a in ".{0,300}", b in ".{0,300}") {
        let _ = validate_topic(&a);
        let _ = validate_pattern(&a);
        let _ = matches(&a, &b);
        let _ = is_wildcard(&a);
    }

    #[test]
    fn a_valid_topic_is_also_a_valid_pattern(t in ".{1,40}") {
        if validate_topic(&t).is_ok() {
            prop_assert!(validate_pattern(&t).is_ok());
        }
    }
}

#[test]
fn names_up_to_256_bytes_are_accepted() {
    let name = "a".repeat(MAX_NAME_BYTES);
    assert!(validate_topic(&name).is_ok());
    assert!(matches!(
        validate_topic(&format!("{name}b")),
        Err(BusError::TooLong {
            len: 257,
            max: 256,
            ..
        })
    ));
}

#[test]
fn empty_names_are_refused() {
    assert!(matches!(validate_topic(""), Err(BusError::Empty { .. })));
    assert!(matches!(validate_pattern(""), Err(BusError::Empty { .. })));
}

#[test]
fn leading_trailing_and_doubled_separators_are_refused() {
    for name in [":a", "a:", "a::b", ":", "::"] {
        assert!(
            matches!(validate_topic(name), Err(BusError::EmptySegment { .. })),
            "{name}"
        );
        assert!(
            matches!(validate_pattern(name), Err(BusError::EmptySegment { .. })),
            "{name}"
        );
    }
}

#[test]
fn nul_is_refused() {
    assert!(matches!(
        validate_topic("a\0b"),
        Err(BusError::Nul { at: 1, .. })
    ));
}

#[test]
fn star_is_only_a_whole_segment_of_a_pattern() {
    assert!(validate_pattern("*").is_ok());
    assert!(validate_pattern("*:login").is_ok());
    assert!(validate_pattern("user:*:created").is_ok());
    for bad in ["**", "user*", "user:*x", "a:b*c:d"] {
        assert!(
            matches!(validate_pattern(bad), Err(BusError::PartialWildcard { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        validate_topic("user:*"),
        Err(BusError::WildcardInTopic { .. })
    ));
}

#[test]
fn topics_from_the_reference_systems_are_valid() {
    for topic in [
        "user:login",
        "app:ready",
        "plugin:registered",
        "one-core:event:objectCreated",
        "one-core:event:syncProgress",
        "one-core:storage:get",
    ] {
        assert!(validate_topic(topic).is_ok(), "{topic}");
    }
}

#[test]
fn worked_examples() {
    let cases = [
        ("user:login", "user:login", true),
        ("user:login", "user:logout", false),
        ("*", "anything:at:all", true),
        ("one-core:event:*", "one-core:event:objectCreated", true),
        ("one-core:event:*", "one-core:event:a:b", true),
        ("one-core:event:*", "one-core:event", false),
        ("one-core:event:*", "one-core:storage:get", false),
        ("user:*:created", "user:1:created", true),
        ("user:*:created", "user:created", false),
        ("user:*:created", "user:1:2:created", false),
        ("*:login", "user:login", true),
        ("*:login", "login", false),
    ];
    for (p, t, want) in cases {
        assert_eq!(matches(p, t), want, "pattern {p} topic {t}");
        assert_eq!(
            reference_matches(p, t),
            want,
            "reference: pattern {p} topic {t}"
        );
    }
}
