//! What the bus logs: one warning per pattern over `max_listeners`, and one
//! per panicking handler.
//!
//! Owns: the log contract, observed through a scoped `tracing` subscriber.
//! Must never: install a global subscriber (other tests share the process).

use hearth_bus::{BusOptions, EventBus};
use serde_json::Value;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// A tracing subscriber that keeps the message of every WARN event.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn taken(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn capture(f: impl FnOnce()) -> Vec<String> {
    let warnings = Warnings::default();
    tracing::subscriber::with_default(warnings.clone(), f);
    warnings.taken()
}

#[test]
fn exceeding_max_listeners_warns_once_per_pattern() {
    let warnings = capture(|| {
        let bus = EventBus::with_options(BusOptions {
            max_listeners: 2,
            ..BusOptions::default()
        });
        for _ in 0..5 {
            bus.on("user:login", |_, _| {}).unwrap();
        }
        for _ in 0..3 {
            bus.on("user:*", |_, _| {}).unwrap();
        }
    });
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("`user:login`"), "{warnings:?}");
    assert!(warnings[0].contains("max_listeners (2)"), "{warnings:?}");
    assert!(warnings[1].contains("`user:*`"), "{warnings:?}");
}

#[test]
fn ten_listeners_on_one_pattern_is_within_the_default_limit() {
    let warnings = capture(|| {
        let bus = EventBus::new();
        for _ in 0..10 {
            bus.on("a", |_, _| {}).unwrap();
        }
    });
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn the_eleventh_listener_on_one_pattern_warns_by_default() {
    let warnings = capture(|| {
        let bus = EventBus::new();
        for _ in 0..11 {
            bus.on("a", |_, _| {}).unwrap();
        }
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn the_max_listener_warning_can_be_turned_off() {
    let warnings = capture(|| {
        let bus = EventBus::with_options(BusOptions {
            max_listeners: 1,
            warn_on_max_listeners: false,
        });
        for _ in 0..5 {
            bus.on("a", |_, _| {}).unwrap();
        }
    });
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn max_listeners_zero_means_no_limit() {
    let warnings = capture(|| {
        let bus = EventBus::with_options(BusOptions {
            max_listeners: 0,
            ..BusOptions::default()
        });
        for _ in 0..50 {
            bus.on("a", |_, _| {}).unwrap();
        }
    });
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn exceeding_max_listeners_never_refuses_a_listener() {
    let bus = EventBus::with_options(BusOptions {
        max_listeners: 1,
        warn_on_max_listeners: false,
    });
    for _ in 0..3 {
        bus.on("a", |_, _| {}).unwrap();
    }
    assert_eq!(bus.emit("a", &Value::Null), 3);
}

#[test]
fn a_panicking_handler_is_logged_with_its_message() {
    let warnings = capture(|| {
        let bus = EventBus::new();
        bus.on("job:done", |_, _| panic!("handler bug 42")).unwrap();
        bus.emit("job:done", &Value::Null);
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("handler bug 42"), "{warnings:?}");
}

#[test]
fn emitting_an_invalid_topic_is_logged() {
    let warnings = capture(|| {
        EventBus::new().emit("a::b", &Value::Null);
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}
