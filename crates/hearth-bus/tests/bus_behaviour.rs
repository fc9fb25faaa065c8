//! How an `EventBus` behaves, one behaviour per test.
//!
//! Owns: the bus's observable contract (delivery, once, off, wildcards,
//! panics, re-entrancy, threads). Must never: sleep or depend on timing.

use hearth_bus::{BusError, EventBus, global};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

/// A handler that appends `label` to a shared log, and the log.
fn recorder() -> (Arc<Mutex<Vec<String>>>, impl Fn(&str) -> RecordFn) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let make = {
        let log = Arc::clone(&log);
        move |label: &str| -> RecordFn {
            let log = Arc::clone(&log);
            let label = label.to_owned();
            Box::new(move |_topic: &str, _payload: &Value| log.lock().unwrap().push(label.clone()))
        }
    };
    (log, make)
}

type RecordFn = Box<dyn Fn(&str, &Value) + Send + Sync>;

fn counter() -> (
    Arc<AtomicUsize>,
    impl Fn(&str, &Value) + Send + Sync + 'static,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    (count, move |_: &str, _: &Value| {
        c.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn a_handler_receives_the_emitted_topic_and_payload() {
    let bus = EventBus::new();
    let got = Arc::new(Mutex::new(None));
    let g = Arc::clone(&got);
    bus.on("user:login", move |topic, payload| {
        *g.lock().unwrap() = Some((topic.to_owned(), payload.clone()));
    })
    .unwrap();
    bus.emit("user:login", &json!({"userId": "123"}));
    assert_eq!(
        *got.lock().unwrap(),
        Some(("user:login".to_owned(), json!({"userId": "123"})))
    );
}

#[test]
fn emit_returns_how_many_listeners_were_called() {
    let bus = EventBus::new();
    bus.on("a:b", |_, _| {}).unwrap();
    bus.on("a:*", |_, _| {}).unwrap();
    bus.on("x", |_, _| {}).unwrap();
    assert_eq!(bus.emit("a:b", &Value::Null), 2);
    assert_eq!(bus.emit("nobody:listens", &Value::Null), 0);
}

#[test]
fn a_listener_that_does_not_match_is_not_called() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    bus.on("user:login", handler).unwrap();
    bus.emit("user:logout", &Value::Null);
    bus.emit("user:login:extra", &Value::Null);
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[test]
fn once_fires_once() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    bus.once("app:ready", handler).unwrap();
    assert_eq!(bus.emit("app:ready", &Value::Null), 1);
    assert_eq!(bus.emit("app:ready", &Value::Null), 0);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(bus.listener_count("app:ready"), 0);
}

#[test]
fn once_fires_once_even_when_its_handler_re_emits_the_topic() {
    let bus = EventBus::new();
    let count = Arc::new(AtomicUsize::new(0));
    let (b, c) = (bus.clone(), Arc::clone(&count));
    bus.once("app:ready", move |topic, payload| {
        c.fetch_add(1, Ordering::SeqCst);
        b.emit(topic, payload);
    })
    .unwrap();
    bus.emit("app:ready", &Value::Null);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_once_listener_fires_exactly_once_under_concurrent_emits() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    bus.once("race", handler).unwrap();
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (bus, start) = (bus.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                bus.emit("race", &Value::Null)
            })
        })
        .collect();
    let delivered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(delivered, 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn off_stops_delivery() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    let sub = bus.on("user:login", handler).unwrap();
    bus.emit("user:login", &Value::Null);
    assert!(sub.off());
    bus.emit("user:login", &Value::Null);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn off_by_id_on_the_bus_stops_delivery() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    let id = bus.on("user:login", handler).unwrap().id();
    assert!(bus.off(id));
    bus.emit("user:login", &Value::Null);
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[test]
fn unsubscribing_twice_is_harmless_like_the_javascript_unsubscribe_function() {
    let bus = EventBus::new();
    let sub = bus.on("a", |_, _| {}).unwrap();
    assert!(sub.off());
    assert!(!sub.off());
    assert!(!bus.off(sub.id()));
}

#[test]
fn off_only_removes_the_one_listener() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    let first = bus.on("a", |_, _| {}).unwrap();
    bus.on("a", handler).unwrap();
    first.off();
    assert_eq!(bus.emit("a", &Value::Null), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn an_id_from_another_bus_removes_nothing() {
    let one = EventBus::new();
    let two = EventBus::new();
    let id = one.on("a", |_, _| {}).unwrap().id();
    two.on("a", |_, _| {}).unwrap();
    assert!(!two.off(id));
    assert_eq!(two.listener_count("a"), 1);
}

#[test]
fn dropping_a_subscription_keeps_the_listener() {
    let bus = EventBus::new();
    drop(bus.on("a", |_, _| {}).unwrap());
    assert_eq!(bus.emit("a", &Value::Null), 1);
}

#[test]
fn a_subscription_guard_unsubscribes_when_dropped() {
    let bus = EventBus::new();
    let guard = bus.on("a", |_, _| {}).unwrap().into_guard();
    assert_eq!(bus.emit("a", &Value::Null), 1);
    drop(guard);
    assert_eq!(bus.emit("a", &Value::Null), 0);
}

#[test]
fn wildcard_star_sees_everything() {
    let bus = EventBus::new();
    let (log, make) = recorder();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on("*", move |topic, _| {
        s.lock().unwrap().push(topic.to_owned())
    })
    .unwrap();
    bus.on("unrelated", make("unrelated")).unwrap();
    for topic in ["a", "user:login", "one-core:event:objectCreated", "x:y:z:w"] {
        bus.emit(topic, &Value::Null);
    }
    assert_eq!(
        *seen.lock().unwrap(),
        ["a", "user:login", "one-core:event:objectCreated", "x:y:z:w"]
    );
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn a_trailing_wildcard_sees_every_topic_below_its_prefix_but_not_the_prefix() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    bus.on("one-core:event:*", handler).unwrap();
    bus.emit("one-core:event:objectCreated", &Value::Null);
    bus.emit("one-core:event:syncProgress", &Value::Null);
    bus.emit("one-core:event:channel:message", &Value::Null);
    bus.emit("one-core:event", &Value::Null);
    bus.emit("one-core:storage:get", &Value::Null);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn a_middle_wildcard_matches_exactly_one_segment() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    bus.on("user:*:created", handler).unwrap();
    bus.emit("user:42:created", &Value::Null);
    bus.emit("user:42:deleted", &Value::Null);
    bus.emit("user:created", &Value::Null);
    bus.emit("user:a:b:created", &Value::Null);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn listeners_are_called_in_registration_order_whatever_their_pattern() {
    let bus = EventBus::new();
    let (log, make) = recorder();
    bus.on("*", make("1:*")).unwrap();
    bus.on("user:login", make("2:exact")).unwrap();
    bus.on("user:*", make("3:user:*")).unwrap();
    bus.on("user:login", make("4:exact")).unwrap();
    bus.on("*:login", make("5:*:login")).unwrap();
    bus.emit("user:login", &Value::Null);
    assert_eq!(
        *log.lock().unwrap(),
        ["1:*", "2:exact", "3:user:*", "4:exact", "5:*:login"]
    );
}

#[test]
fn a_panicking_handler_does_not_stop_the_others() {
    let bus = EventBus::new();
    let (log, make) = recorder();
    bus.on("job:done", make("before")).unwrap();
    bus.on("job:done", |_, _| panic!("handler bug")).unwrap();
    bus.on("job:*", make("after")).unwrap();
    assert_eq!(bus.emit("job:done", &Value::Null), 3);
    assert_eq!(*log.lock().unwrap(), ["before", "after"]);
}

#[test]
fn the_bus_keeps_working_after_a_handler_panicked() {
    let bus = EventBus::new();
    bus.on("boom", |_, _| panic!("handler bug")).unwrap();
    bus.emit("boom", &Value::Null);
    let (count, handler) = counter();
    bus.on("after", handler).unwrap();
    assert_eq!(bus.emit("after", &Value::Null), 1);
    assert_eq!(bus.emit("boom", &Value::Null), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_handler_can_emit_on_the_same_bus() {
    let bus = EventBus::new();
    let (log, make) = recorder();
    let inner = bus.clone();
    bus.on("order:placed", move |_, payload| {
        inner.emit("invoice:requested", payload);
    })
    .unwrap();
    bus.on("invoice:requested", make("invoice")).unwrap();
    assert_eq!(bus.emit("order:placed", &json!({"order": 1})), 1);
    assert_eq!(*log.lock().unwrap(), ["invoice"]);
}

#[test]
fn a_handler_can_subscribe_during_an_emit_but_the_new_listener_waits_for_the_next_emit() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    let inner = bus.clone();
    let handler = Arc::new(Mutex::new(Some(handler)));
    bus.once("a", move |_, _| {
        if let Some(h) = handler.lock().unwrap().take() {
            inner.on("a", h).unwrap();
        }
    })
    .unwrap();
    assert_eq!(bus.emit("a", &Value::Null), 1);
    assert_eq!(count.load(Ordering::SeqCst), 0);
    assert_eq!(bus.emit("a", &Value::Null), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_listener_removed_during_an_emit_is_still_called_by_that_emit_only() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    let victim: Arc<Mutex<Option<hearth_bus::Subscription>>> = Arc::new(Mutex::new(None));
    let v = Arc::clone(&victim);
    bus.on("a", move |_, _| {
        if let Some(sub) = v.lock().unwrap().as_ref() {
            sub.off();
        }
    })
    .unwrap();
    *victim.lock().unwrap() = Some(bus.on("a", handler).unwrap());
    assert_eq!(bus.emit("a", &Value::Null), 2);
    assert_eq!(bus.emit("a", &Value::Null), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn remove_all_listeners_without_a_pattern_removes_every_listener() {
    let bus = EventBus::new();
    bus.on("a", |_, _| {}).unwrap();
    bus.on("*", |_, _| {}).unwrap();
    bus.once("b:*", |_, _| {}).unwrap();
    assert_eq!(bus.remove_all_listeners(None), 3);
    assert_eq!(bus.emit("a", &Value::Null), 0);
    assert!(bus.event_names().is_empty());
}

#[test]
fn remove_all_listeners_with_a_pattern_removes_only_that_pattern() {
    let bus = EventBus::new();
    bus.on("user:*", |_, _| {}).unwrap();
    bus.on("user:*", |_, _| {}).unwrap();
    bus.on("user:login", |_, _| {}).unwrap();
    assert_eq!(bus.remove_all_listeners(Some("user:*")), 2);
    assert_eq!(bus.remove_all_listeners(Some("no:such")), 0);
    assert_eq!(bus.event_names(), ["user:login"]);
}

#[test]
fn a_subscription_removed_by_remove_all_listeners_is_inactive() {
    let bus = EventBus::new();
    let sub = bus.on("a", |_, _| {}).unwrap();
    bus.remove_all_listeners(Some("a"));
    assert!(!sub.is_active());
    assert!(!sub.off());
}

#[test]
fn listener_count_counts_every_listener_an_emit_would_call() {
    let bus = EventBus::new();
    bus.on("user:login", |_, _| {}).unwrap();
    bus.on("user:*", |_, _| {}).unwrap();
    bus.on("*", |_, _| {}).unwrap();
    bus.on("order:*", |_, _| {}).unwrap();
    assert_eq!(bus.listener_count("user:login"), 3);
    assert_eq!(bus.listener_count("order:placed"), 2);
    assert_eq!(bus.listener_count("user::bad"), 0);
}

#[test]
fn pattern_listener_count_counts_listeners_under_exactly_that_pattern() {
    let bus = EventBus::new();
    bus.on("user:*", |_, _| {}).unwrap();
    bus.on("user:*", |_, _| {}).unwrap();
    bus.on("user:login", |_, _| {}).unwrap();
    assert_eq!(bus.pattern_listener_count("user:*"), 2);
    assert_eq!(bus.pattern_listener_count("user:login"), 1);
}

#[test]
fn event_names_lists_each_pattern_with_listeners_once_sorted() {
    let bus = EventBus::new();
    bus.on("user:login", |_, _| {}).unwrap();
    bus.on("user:login", |_, _| {}).unwrap();
    bus.on("one-core:event:*", |_, _| {}).unwrap();
    let gone = bus.on("gone", |_, _| {}).unwrap();
    gone.off();
    assert_eq!(bus.event_names(), ["one-core:event:*", "user:login"]);
}

#[test]
fn an_invalid_pattern_is_refused_with_a_message_that_says_what_to_do() {
    let bus = EventBus::new();
    let err = bus.on("user:log*", |_, _| {}).unwrap_err();
    assert!(matches!(err, BusError::PartialWildcard { .. }));
    assert!(err.to_string().contains("`user:*`"), "{err}");
    assert!(matches!(bus.on("", |_, _| {}), Err(BusError::Empty { .. })));
    assert!(bus.event_names().is_empty());
}

#[test]
fn an_invalid_topic_delivers_nothing_and_try_emit_says_why() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    bus.on("*", handler).unwrap();
    assert_eq!(bus.emit("user:", &Value::Null), 0);
    assert!(matches!(
        bus.try_emit("user:", &Value::Null),
        Err(BusError::EmptySegment { .. })
    ));
    assert!(matches!(
        bus.try_emit("user:*", &Value::Null),
        Err(BusError::WildcardInTopic { .. })
    ));
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[test]
fn clones_are_handles_to_the_same_bus() {
    let bus = EventBus::new();
    let clone = bus.clone();
    let (count, handler) = counter();
    clone.on("a", handler).unwrap();
    assert_eq!(bus.emit("a", &Value::Null), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn emits_from_many_threads_are_all_delivered() {
    let bus = EventBus::new();
    let (count, handler) = counter();
    bus.on("work:*", handler).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let bus = bus.clone();
            thread::spawn(move || {
                for i in 0..250 {
                    bus.emit(&format!("work:{t}"), &json!(i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 1000);
}

#[test]
fn subscribing_and_emitting_concurrently_does_not_deadlock() {
    let bus = EventBus::new();
    let inner = bus.clone();
    // Every delivery subscribes and unsubscribes from inside the handler.
    bus.on("tick", move |_, _| {
        let sub = inner.on("tock", |_, _| {}).unwrap();
        inner.emit("tock", &Value::Null);
        sub.off();
    })
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let bus = bus.clone();
            thread::spawn(move || {
                for _ in 0..200 {
                    bus.emit("tick", &Value::Null);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(bus.listener_count("tock"), 0);
}

#[test]
fn the_global_bus_is_shared_by_every_caller() {
    let (count, handler) = counter();
    let sub = global().on("spec:global-bus-is-shared", handler).unwrap();
    let from_elsewhere = thread::spawn(|| global().emit("spec:global-bus-is-shared", &json!(1)));
    assert_eq!(from_elsewhere.join().unwrap(), 1);
    sub.off();
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
