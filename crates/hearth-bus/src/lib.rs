//! hearth-bus: an in-process event bus with wildcard topics.
//!
//! Owns: topic/pattern syntax and matching ([`matches()`]), the [`EventBus`]
//! (on/once/off/emit, synchronous delivery, panic isolation, a payload
//! serialized once per emit for every listener that forwards it) and the
//! process-global bus ([`global`]). It is shared by hearth's pub/sub and its
//! plugins. Must never: do I/O other than `tracing` logs, spawn threads,
//! hold a lock while a handler runs, or let a handler's panic escape `emit`.
//!
//! The API follows the shape of the JavaScript event bus hearth's users
//! know (`on`, `once`, `off`, `emit`, `removeAllListeners`, `listenerCount`,
//! `eventNames`, `maxListeners`), with `:`-separated topics such as
//! `user:login` or `one-core:event:objectCreated` and `*` wildcards.
//!
//! ```
//! use hearth_bus::EventBus;
//! use serde_json::json;
//!
//! let bus = EventBus::new();
//! let sub = bus.on("one-core:event:*", |topic, payload| {
//!     println!("{topic}: {payload}");
//! }).unwrap();
//! assert_eq!(bus.emit("one-core:event:objectCreated", &json!({"id": "user:1"})), 1);
//! sub.off();
//! ```

mod bus;
mod error;
mod pattern;

pub use bus::{BusOptions, Emitted, EventBus, ListenerId, Subscription, SubscriptionGuard};
pub use error::{BusError, NameKind};
pub use pattern::{MAX_NAME_BYTES, is_wildcard, matches, validate_pattern, validate_topic};

use std::sync::OnceLock;

/// The process-wide bus, created with default options on first use.
///
/// Every call returns the same bus, so independent parts of a program can
/// meet on it without passing a handle around.
///
/// ```
/// use hearth_bus::global;
/// use serde_json::json;
/// let sub = global().on("docs:global-example", |_, _| {}).unwrap();
/// assert_eq!(global().emit("docs:global-example", &json!(null)), 1);
/// sub.off();
/// ```
pub fn global() -> &'static EventBus {
    static GLOBAL: OnceLock<EventBus> = OnceLock::new();
    GLOBAL.get_or_init(EventBus::new)
}

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<crate::EventBus>();
        assert_send_sync::<crate::BusOptions>();
        assert_send_sync::<crate::Emitted<'static>>();
        assert_send_sync::<crate::ListenerId>();
        assert_send_sync::<crate::Subscription>();
        assert_send_sync::<crate::SubscriptionGuard>();
        assert_send_sync::<crate::BusError>();
        assert_send_sync::<crate::NameKind>();
    }

    #[test]
    fn the_global_bus_is_one_bus() {
        assert!(std::ptr::eq(crate::global(), crate::global()));
    }
}
