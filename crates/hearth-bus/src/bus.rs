//! The event bus: listeners, subscriptions and synchronous delivery.
//!
//! Owns: the listener registry (exact patterns indexed by name, wildcard
//! patterns in a list), delivery order, once-semantics, panic isolation,
//! the max-listener warning, and an emit's payload serialized to JSON at
//! most once however many listeners ask for it ([`Emitted::payload_json`]). Must never: hold a lock while a handler runs
//! (handlers may call back into the bus), let one handler's panic stop the
//! others or poison the bus, or do I/O other than `tracing` logs.

use crate::error::BusError;
use crate::pattern::{is_wildcard, matches, validate_pattern, validate_topic};
use parking_lot::RwLock;
use serde_json::Value;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// What a listener calls: the whole emit (a handler of [`EventBus::on`],
/// which takes the topic and the payload, is wrapped in one).
type Handler = dyn Fn(&Emitted<'_>) + Send + Sync + 'static;

/// A handler of [`EventBus::on`] (the topic and the payload) as a listener.
fn plain<F>(handler: F) -> Box<Handler>
where
    F: Fn(&str, &Value) + Send + Sync + 'static,
{
    Box::new(move |e: &Emitted<'_>| handler(e.topic(), e.payload()))
}

/// One emit, as a listener added with [`EventBus::on_emitted`] sees it:
/// the topic, the payload, and the payload as JSON text, serialized at most
/// once for the whole emit and shared by every listener that asks for it.
/// A listener that forwards events to many peers (one per subscriber of a
/// server) pays for one serialization per emit, not one per listener.
///
/// ```
/// use hearth_bus::EventBus;
/// use serde_json::json;
/// use std::sync::{Arc, Mutex};
///
/// let bus = EventBus::new();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// for _ in 0..3 {
///     let seen = Arc::clone(&seen);
///     bus.on_emitted("user:*", move |e| seen.lock().unwrap().push(e.payload_json()))
///         .unwrap();
/// }
/// assert_eq!(bus.emit("user:login", &json!({"userId": "123"})), 3);
/// let seen = seen.lock().unwrap();
/// assert_eq!(&*seen[0], r#"{"userId":"123"}"#);
/// // The same bytes, shared: serialized once.
/// assert!(Arc::ptr_eq(&seen[0], &seen[2]));
/// ```
pub struct Emitted<'a> {
    topic: &'a str,
    payload: &'a Value,
    json: OnceLock<Arc<str>>,
}

impl<'a> Emitted<'a> {
    fn new(topic: &'a str, payload: &'a Value) -> Self {
        Emitted {
            topic,
            payload,
            json: OnceLock::new(),
        }
    }

    /// The topic emitted.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// The payload emitted.
    pub fn payload(&self) -> &'a Value {
        self.payload
    }

    /// The payload as compact JSON text (as `Value`'s `Display` writes it),
    /// serialized on the first call of this emit; later calls, from any
    /// listener of the same emit, share it.
    pub fn payload_json(&self) -> Arc<str> {
        Arc::clone(
            self.json
                .get_or_init(|| Arc::from(self.payload.to_string())),
        )
    }
}

impl fmt::Debug for Emitted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitted")
            .field("topic", &self.topic)
            .field("payload", self.payload)
            .finish()
    }
}

/// Listener ids are unique in the whole process, so an id from one bus
/// never removes a listener of another.
static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

/// Options for an [`EventBus`], mirroring Node's `EventEmitter` limits.
///
/// ```
/// use hearth_bus::{BusOptions, EventBus};
/// let bus = EventBus::with_options(BusOptions { max_listeners: 100, ..BusOptions::default() });
/// assert_eq!(bus.options().max_listeners, 100);
/// assert!(bus.options().warn_on_max_listeners);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusOptions {
    /// Listeners one pattern may have before a possible leak is reported
    /// (default 10; 0 means no limit). Exceeding it never refuses a listener.
    pub max_listeners: usize,
    /// Whether exceeding `max_listeners` logs one `tracing` warning for that
    /// pattern (default true).
    pub warn_on_max_listeners: bool,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            max_listeners: 10,
            warn_on_max_listeners: true,
        }
    }
}

/// Identifies one registered listener; pass it to [`EventBus::off`].
///
/// ```
/// use hearth_bus::EventBus;
/// let bus = EventBus::new();
/// let id = bus.on("user:login", |_, _| {}).unwrap().id();
/// assert!(bus.off(id));
/// assert!(!bus.off(id));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(u64);

impl ListenerId {
    /// The raw number, unique within the process.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// let a = bus.on("a", |_, _| {}).unwrap().id();
    /// let b = bus.on("a", |_, _| {}).unwrap().id();
    /// assert!(a.get() < b.get());
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener#{}", self.0)
    }
}

/// One registered handler.
struct Listener {
    id: u64,
    pattern: Arc<str>,
    handler: Box<Handler>,
    once: bool,
    /// For `once` listeners: set by the one emit that gets to call it.
    fired: AtomicBool,
}

impl Listener {
    fn is_live(&self) -> bool {
        !(self.once && self.fired.load(Ordering::Acquire))
    }
}

/// The listeners of one pattern, in registration order.
struct Entry {
    pattern: Arc<str>,
    listeners: Vec<Arc<Listener>>,
    /// Whether the max-listener warning was already logged for this pattern.
    warned: bool,
}

impl Entry {
    fn new(pattern: Arc<str>) -> Self {
        Entry {
            pattern,
            listeners: Vec::new(),
            warned: false,
        }
    }

    fn live_count(&self) -> usize {
        self.listeners.iter().filter(|l| l.is_live()).count()
    }
}

/// Every listener of a bus. Exact patterns are found by hash lookup; only
/// wildcard patterns are scanned on emit.
#[derive(Default)]
struct Registry {
    exact: HashMap<Arc<str>, Entry>,
    wildcard: Vec<Entry>,
    /// Which pattern each listener is registered under, for `off`.
    pattern_of: HashMap<u64, Arc<str>>,
}

impl Registry {
    fn entry(&self, pattern: &str) -> Option<&Entry> {
        if is_wildcard(pattern) {
            self.wildcard.iter().find(|e| &*e.pattern == pattern)
        } else {
            self.exact.get(pattern)
        }
    }

    fn entry_or_insert(&mut self, pattern: &str) -> &mut Entry {
        if is_wildcard(pattern) {
            let index = match self.wildcard.iter().position(|e| &*e.pattern == pattern) {
                Some(index) => index,
                None => {
                    self.wildcard.push(Entry::new(Arc::from(pattern)));
                    self.wildcard.len() - 1
                }
            };
            &mut self.wildcard[index]
        } else {
            self.exact
                .entry(Arc::from(pattern))
                .or_insert_with_key(|key| Entry::new(Arc::clone(key)))
        }
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(pattern) = self.pattern_of.remove(&id) else {
            return false;
        };
        if is_wildcard(&pattern) {
            if let Some(index) = self.wildcard.iter().position(|e| e.pattern == pattern) {
                let entry = &mut self.wildcard[index];
                entry.listeners.retain(|l| l.id != id);
                if entry.listeners.is_empty() {
                    self.wildcard.remove(index);
                }
            }
        } else if let Some(entry) = self.exact.get_mut(&pattern) {
            entry.listeners.retain(|l| l.id != id);
            if entry.listeners.is_empty() {
                self.exact.remove(&pattern);
            }
        }
        true
    }

    fn remove_pattern(&mut self, pattern: &str) -> usize {
        let entry = if is_wildcard(pattern) {
            self.wildcard
                .iter()
                .position(|e| &*e.pattern == pattern)
                .map(|index| self.wildcard.remove(index))
        } else {
            self.exact.remove(pattern)
        };
        let Some(entry) = entry else { return 0 };
        for listener in &entry.listeners {
            self.pattern_of.remove(&listener.id);
        }
        entry.listeners.len()
    }

    /// Calls `f` for every listener whose pattern matches `topic`.
    fn for_each_match(&self, topic: &str, mut f: impl FnMut(&Arc<Listener>)) {
        if let Some(entry) = self.exact.get(topic) {
            entry.listeners.iter().for_each(&mut f);
        }
        for entry in &self.wildcard {
            if matches(&entry.pattern, topic) {
                entry.listeners.iter().for_each(&mut f);
            }
        }
    }
}

struct Inner {
    registry: RwLock<Registry>,
    options: BusOptions,
}

/// An in-process publish/subscribe bus with wildcard patterns.
///
/// Cloning is cheap and every clone is a handle to the same bus. Delivery
/// is synchronous: [`emit`](EventBus::emit) calls each matching handler on
/// the caller's thread, in registration order, and returns how many it
/// called. Handlers may call back into the bus (subscribe, unsubscribe,
/// emit); no lock is held while a handler runs. The set of handlers an emit
/// calls is fixed when it starts: a handler added during an emit is not
/// called by it, and one removed during an emit is still called by it (as
/// in Node's `EventEmitter`).
///
/// ```
/// use hearth_bus::EventBus;
/// use serde_json::json;
/// use std::sync::{Arc, Mutex};
///
/// let bus = EventBus::new();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let sub = bus
///     .on("user:*", move |topic, payload| {
///         log.lock().unwrap().push(format!("{topic} {}", payload["userId"]));
///     })
///     .unwrap();
/// assert_eq!(bus.emit("user:login", &json!({"userId": "123"})), 1);
/// sub.off();
/// assert_eq!(bus.emit("user:login", &json!({"userId": "456"})), 0);
/// assert_eq!(*seen.lock().unwrap(), vec![r#"user:login "123""#]);
/// ```
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.inner.registry.read();
        f.debug_struct("EventBus")
            .field("options", &self.inner.options)
            .field("exact_patterns", &registry.exact.len())
            .field("wildcard_patterns", &registry.wildcard.len())
            .field("listeners", &registry.pattern_of.len())
            .finish()
    }
}

impl EventBus {
    /// A new, empty bus with default [`BusOptions`].
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// assert!(bus.event_names().is_empty());
    /// ```
    pub fn new() -> Self {
        EventBus::with_options(BusOptions::default())
    }

    /// A new, empty bus with the given options.
    ///
    /// ```
    /// use hearth_bus::{BusOptions, EventBus};
    /// let quiet = EventBus::with_options(BusOptions { warn_on_max_listeners: false, ..Default::default() });
    /// assert!(!quiet.options().warn_on_max_listeners);
    /// ```
    pub fn with_options(options: BusOptions) -> Self {
        EventBus {
            inner: Arc::new(Inner {
                registry: RwLock::new(Registry::default()),
                options,
            }),
        }
    }

    /// The options this bus was made with.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// assert_eq!(EventBus::new().options().max_listeners, 10);
    /// ```
    pub fn options(&self) -> BusOptions {
        self.inner.options
    }

    /// Calls `handler` for every emitted topic that `pattern` matches, until
    /// the returned [`Subscription`] (or its id) is turned off.
    ///
    /// Dropping the `Subscription` does *not* unsubscribe (as ignoring the
    /// unsubscribe function in JavaScript does not); use
    /// [`Subscription::into_guard`] for that.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// use serde_json::json;
    /// let bus = EventBus::new();
    /// let sub = bus.on("one-core:event:*", |topic, _| println!("{topic}")).unwrap();
    /// assert_eq!(bus.emit("one-core:event:objectCreated", &json!({})), 1);
    /// assert!(sub.off());
    /// assert!(bus.on("one-core:event*", |_, _| {}).is_err());
    /// ```
    pub fn on<F>(&self, pattern: &str, handler: F) -> Result<Subscription, BusError>
    where
        F: Fn(&str, &Value) + Send + Sync + 'static,
    {
        self.add(pattern, plain(handler), false)
    }

    /// Like [`on`](EventBus::on), but the handler gets the whole
    /// [`Emitted`] event, whose [`payload_json`](Emitted::payload_json) is
    /// serialized once per emit and shared by every listener that asks:
    /// for listeners that pass the payload on as JSON.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// use serde_json::json;
    /// let bus = EventBus::new();
    /// let sub = bus
    ///     .on_emitted("one-core:event:*", |e| println!("{} {}", e.topic(), e.payload_json()))
    ///     .unwrap();
    /// assert_eq!(bus.emit("one-core:event:objectCreated", &json!({"id": 1})), 1);
    /// sub.off();
    /// ```
    pub fn on_emitted<F>(&self, pattern: &str, handler: F) -> Result<Subscription, BusError>
    where
        F: Fn(&Emitted<'_>) + Send + Sync + 'static,
    {
        self.add(pattern, Box::new(handler), false)
    }

    /// Like [`on`](EventBus::on), but the handler is called at most once:
    /// it is removed by the first emit that matches it, even when several
    /// threads emit at the same moment.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// use serde_json::Value;
    /// let bus = EventBus::new();
    /// bus.once("app:ready", |_, _| println!("App is ready!")).unwrap();
    /// assert_eq!(bus.emit("app:ready", &Value::Null), 1);
    /// assert_eq!(bus.emit("app:ready", &Value::Null), 0);
    /// ```
    pub fn once<F>(&self, pattern: &str, handler: F) -> Result<Subscription, BusError>
    where
        F: Fn(&str, &Value) + Send + Sync + 'static,
    {
        self.add(pattern, plain(handler), true)
    }

    fn add(
        &self,
        pattern: &str,
        handler: Box<Handler>,
        once: bool,
    ) -> Result<Subscription, BusError> {
        validate_pattern(pattern)?;
        let id = NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed);
        let BusOptions {
            max_listeners,
            warn_on_max_listeners,
        } = self.inner.options;
        let over_limit = {
            let mut registry = self.inner.registry.write();
            let entry = registry.entry_or_insert(pattern);
            let pattern = Arc::clone(&entry.pattern);
            entry.listeners.push(Arc::new(Listener {
                id,
                pattern: Arc::clone(&pattern),
                handler,
                once,
                fired: AtomicBool::new(false),
            }));
            let count = entry.listeners.len();
            let warn = warn_on_max_listeners
                && max_listeners != 0
                && count > max_listeners
                && !entry.warned;
            if warn {
                entry.warned = true;
            }
            registry.pattern_of.insert(id, pattern);
            warn.then_some(count)
        };
        // Logged after the lock is released: a tracing subscriber may itself
        // use the bus.
        if let Some(count) = over_limit {
            tracing::warn!(
                pattern,
                count,
                max_listeners,
                "possible listener leak: {count} listeners on pattern `{pattern}`, more than \
                 max_listeners ({max_listeners}); turn off subscriptions you no longer need or \
                 raise BusOptions::max_listeners"
            );
        }
        Ok(Subscription {
            id: ListenerId(id),
            bus: Arc::downgrade(&self.inner),
        })
    }

    /// Removes one listener. Returns whether it was still registered.
    ///
    /// An emit already under way still calls it.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// use serde_json::Value;
    /// let bus = EventBus::new();
    /// let id = bus.on("a", |_, _| {}).unwrap().id();
    /// assert!(bus.off(id));
    /// assert_eq!(bus.emit("a", &Value::Null), 0);
    /// ```
    pub fn off(&self, id: ListenerId) -> bool {
        self.inner.registry.write().remove(id.0)
    }

    /// Delivers `payload` to every listener whose pattern matches `topic` and
    /// returns how many were called (a handler that panicked counts: it was
    /// called).
    ///
    /// An invalid topic delivers nothing, logs a warning and returns 0; use
    /// [`try_emit`](EventBus::try_emit) to get the reason as an error.
    /// A panicking handler is caught, logged with `tracing::warn`, and the
    /// remaining handlers still run (this needs the default `panic=unwind`).
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// use serde_json::json;
    /// let bus = EventBus::new();
    /// bus.on("user:login", |_, _| {}).unwrap();
    /// bus.on("*", |_, _| {}).unwrap();
    /// assert_eq!(bus.emit("user:login", &json!({"userId": "123"})), 2);
    /// assert_eq!(bus.emit("user:logout", &json!({})), 1);
    /// assert_eq!(bus.emit("user::bad", &json!({})), 0);
    /// ```
    pub fn emit(&self, topic: &str, payload: &Value) -> usize {
        match self.try_emit(topic, payload) {
            Ok(called) => called,
            Err(error) => {
                tracing::warn!(%error, "event not delivered");
                0
            }
        }
    }

    /// Like [`emit`](EventBus::emit), but an invalid topic is an error.
    ///
    /// ```
    /// use hearth_bus::{BusError, EventBus};
    /// use serde_json::Value;
    /// let bus = EventBus::new();
    /// assert_eq!(bus.try_emit("user:login", &Value::Null), Ok(0));
    /// assert!(matches!(bus.try_emit("user:*", &Value::Null), Err(BusError::WildcardInTopic { .. })));
    /// ```
    pub fn try_emit(&self, topic: &str, payload: &Value) -> Result<usize, BusError> {
        validate_topic(topic)?;
        let mut snapshot: Vec<Arc<Listener>> = Vec::new();
        let mut claimed_once = false;
        {
            let registry = self.inner.registry.read();
            registry.for_each_match(topic, |listener| {
                if listener.once {
                    // Exactly one emit wins the right to call a once-listener.
                    if listener.fired.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    claimed_once = true;
                }
                snapshot.push(Arc::clone(listener));
            });
        }
        if claimed_once {
            let mut registry = self.inner.registry.write();
            for listener in snapshot.iter().filter(|l| l.once) {
                registry.remove(listener.id);
            }
        }
        // Exact and wildcard listeners were gathered separately; deliver in
        // registration order.
        snapshot.sort_unstable_by_key(|l| l.id);
        let emitted = Emitted::new(topic, payload);
        for listener in &snapshot {
            let outcome = catch_unwind(AssertUnwindSafe(|| (listener.handler)(&emitted)));
            if let Err(panic) = outcome {
                tracing::warn!(
                    topic,
                    pattern = &*listener.pattern,
                    listener = listener.id,
                    "event handler panicked: {}; the other handlers still ran",
                    panic_message(panic.as_ref())
                );
            }
        }
        Ok(snapshot.len())
    }

    /// Removes every listener (`None`) or every listener registered under
    /// exactly `pattern` (`Some`); returns how many were removed.
    ///
    /// `Some("user:*")` removes the listeners added with `on("user:*", …)`,
    /// not those of `user:login`.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// bus.on("user:*", |_, _| {}).unwrap();
    /// bus.on("user:login", |_, _| {}).unwrap();
    /// assert_eq!(bus.remove_all_listeners(Some("user:*")), 1);
    /// assert_eq!(bus.remove_all_listeners(None), 1);
    /// assert!(bus.event_names().is_empty());
    /// ```
    pub fn remove_all_listeners(&self, pattern: Option<&str>) -> usize {
        let mut registry = self.inner.registry.write();
        match pattern {
            Some(pattern) => registry.remove_pattern(pattern),
            None => {
                let removed = registry.pattern_of.len();
                *registry = Registry::default();
                removed
            }
        }
    }

    /// How many listeners an emit of `topic` would call now (exact and
    /// wildcard). An invalid topic has none.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// bus.on("user:login", |_, _| {}).unwrap();
    /// bus.on("user:*", |_, _| {}).unwrap();
    /// assert_eq!(bus.listener_count("user:login"), 2);
    /// assert_eq!(bus.listener_count("user:logout"), 1);
    /// ```
    pub fn listener_count(&self, topic: &str) -> usize {
        if validate_topic(topic).is_err() {
            return 0;
        }
        let mut count = 0;
        self.inner
            .registry
            .read()
            .for_each_match(topic, |listener| count += usize::from(listener.is_live()));
        count
    }

    /// How many listeners are registered under exactly `pattern`.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// bus.on("user:*", |_, _| {}).unwrap();
    /// assert_eq!(bus.pattern_listener_count("user:*"), 1);
    /// assert_eq!(bus.pattern_listener_count("user:login"), 0);
    /// ```
    pub fn pattern_listener_count(&self, pattern: &str) -> usize {
        self.inner
            .registry
            .read()
            .entry(pattern)
            .map_or(0, Entry::live_count)
    }

    /// The patterns that have at least one listener, sorted.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// bus.on("user:login", |_, _| {}).unwrap();
    /// bus.on("*", |_, _| {}).unwrap();
    /// assert_eq!(bus.event_names(), vec!["*".to_string(), "user:login".to_string()]);
    /// ```
    pub fn event_names(&self) -> Vec<String> {
        let registry = self.inner.registry.read();
        let mut names: Vec<String> = registry
            .exact
            .values()
            .chain(&registry.wildcard)
            .filter(|e| e.live_count() > 0)
            .map(|e| e.pattern.to_string())
            .collect();
        names.sort_unstable();
        names
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(a panic payload that is not a string)"
    }
}

/// The handle [`EventBus::on`] and [`EventBus::once`] return: the
/// equivalent of the unsubscribe function the JavaScript API returns.
///
/// It does not keep the bus alive, and dropping it leaves the listener in
/// place; call [`off`](Subscription::off), or turn it into a
/// [`SubscriptionGuard`] to unsubscribe on drop.
///
/// ```
/// use hearth_bus::EventBus;
/// let bus = EventBus::new();
/// let subs = vec![
///     bus.on("user:login", |_, _| {}).unwrap(),
///     bus.on("user:logout", |_, _| {}).unwrap(),
/// ];
/// subs.iter().for_each(|s| { s.off(); });
/// assert!(bus.event_names().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Subscription {
    id: ListenerId,
    bus: Weak<Inner>,
}

impl Subscription {
    /// The listener's id, usable with [`EventBus::off`].
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// let sub = bus.on("a", |_, _| {}).unwrap();
    /// assert!(bus.off(sub.id()));
    /// ```
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// Unsubscribes. Returns whether the listener was still registered;
    /// calling it again is harmless.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// let sub = bus.on("a", |_, _| {}).unwrap();
    /// assert!(sub.off());
    /// assert!(!sub.off());
    /// ```
    pub fn off(&self) -> bool {
        match self.bus.upgrade() {
            Some(inner) => inner.registry.write().remove(self.id.0),
            None => false,
        }
    }

    /// Whether the listener is still registered (a `once` listener that has
    /// fired is not).
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// use serde_json::Value;
    /// let bus = EventBus::new();
    /// let sub = bus.once("a", |_, _| {}).unwrap();
    /// assert!(sub.is_active());
    /// bus.emit("a", &Value::Null);
    /// assert!(!sub.is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        self.bus
            .upgrade()
            .is_some_and(|inner| inner.registry.read().pattern_of.contains_key(&self.id.0))
    }

    /// Turns this into a guard that unsubscribes when dropped.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// use serde_json::Value;
    /// let bus = EventBus::new();
    /// {
    ///     let _guard = bus.on("a", |_, _| {}).unwrap().into_guard();
    ///     assert_eq!(bus.emit("a", &Value::Null), 1);
    /// }
    /// assert_eq!(bus.emit("a", &Value::Null), 0);
    /// ```
    pub fn into_guard(self) -> SubscriptionGuard {
        SubscriptionGuard(self)
    }
}

/// A [`Subscription`] that unsubscribes when dropped.
///
/// ```
/// use hearth_bus::EventBus;
/// let bus = EventBus::new();
/// let guard = bus.on("a", |_, _| {}).unwrap().into_guard();
/// assert_eq!(bus.listener_count("a"), 1);
/// drop(guard);
/// assert_eq!(bus.listener_count("a"), 0);
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard unsubscribes at once"]
pub struct SubscriptionGuard(Subscription);

impl SubscriptionGuard {
    /// The listener's id.
    ///
    /// ```
    /// use hearth_bus::EventBus;
    /// let bus = EventBus::new();
    /// let guard = bus.on("a", |_, _| {}).unwrap().into_guard();
    /// assert!(guard.id().get() > 0);
    /// ```
    pub fn id(&self) -> ListenerId {
        self.0.id
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.off();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_listeners_live_in_separate_indexes() {
        let bus = EventBus::new();
        bus.on("a:b", |_, _| {}).unwrap();
        bus.on("a:*", |_, _| {}).unwrap();
        bus.on("a:*", |_, _| {}).unwrap();
        let registry = bus.inner.registry.read();
        assert_eq!(registry.exact.len(), 1);
        assert_eq!(registry.wildcard.len(), 1);
        assert_eq!(registry.wildcard[0].listeners.len(), 2);
        assert_eq!(registry.pattern_of.len(), 3);
    }

    #[test]
    fn removing_the_last_listener_drops_the_pattern_entry() {
        let bus = EventBus::new();
        let a = bus.on("a", |_, _| {}).unwrap();
        let w = bus.on("a:*", |_, _| {}).unwrap();
        a.off();
        w.off();
        let registry = bus.inner.registry.read();
        assert!(registry.exact.is_empty());
        assert!(registry.wildcard.is_empty());
        assert!(registry.pattern_of.is_empty());
    }

    #[test]
    fn a_subscription_does_not_keep_the_bus_alive() {
        let bus = EventBus::new();
        let sub = bus.on("a", |_, _| {}).unwrap();
        drop(bus);
        assert!(!sub.is_active());
        assert!(!sub.off());
    }

    #[test]
    fn each_emit_serializes_its_own_payload_once_for_all_its_listeners() {
        let bus = EventBus::new();
        let seen: Arc<parking_lot::Mutex<Vec<Arc<str>>>> = Arc::default();
        for _ in 0..2 {
            let seen = Arc::clone(&seen);
            bus.on_emitted("a:*", move |e| seen.lock().push(e.payload_json()))
                .unwrap();
        }
        bus.emit("a:b", &serde_json::json!({"n": 1}));
        bus.emit("a:b", &serde_json::json!({"n": 2}));
        let seen = seen.lock();
        assert!(Arc::ptr_eq(&seen[0], &seen[1]));
        assert!(Arc::ptr_eq(&seen[2], &seen[3]));
        assert_eq!((&*seen[1], &*seen[2]), (r#"{"n":1}"#, r#"{"n":2}"#));
    }

    #[test]
    fn panic_messages_are_extracted_from_str_and_string() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert!(panic_message(&42_u8).contains("not a string"));
    }
}
