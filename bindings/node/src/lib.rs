//! hearth-node: the napi-rs addon under the `hearth` npm package.
//!
//! Owns: the native half of the Node API — [`client::NativeClient`] (a
//! connection to a channel: point operations synchronously on the
//! JavaScript thread, everything else on a tokio runtime),
//! [`streams`] (watch, topic and list streams pulled in batches),
//! [`host::NativeHost`] (a hearth server embedded in Node whose handlers
//! are JavaScript functions) and [`rt::CancelToken`] (AbortSignal support).
//! `index.js` wraps these in the public JavaScript API (`LocalFirst`,
//! `serve`, `startServer`); nothing here is called by users directly.
//!
//! Must never: hold logic hearth-ipc already has (this crate only converts
//! and schedules), block the JavaScript thread for longer than one point
//! operation's round trip (or the setup of a subscription), or panic
//! across the FFI boundary.
//!
//! Values cross as JSON text (`JSON.stringify` / `JSON.parse` on the
//! JavaScript side, serde_json here): for documents that is faster than
//! building objects property by property through napi.
//!
//! The crate relaxes the workspace's `unsafe_code = "forbid"` to `deny`
//! (see `Cargo.toml`): napi-derive's expansion carries its own
//! `#[allow(unsafe_code)]`. No hand-written `unsafe` is here.

pub mod client;
pub mod error;
pub mod host;
pub mod json;
pub mod rt;
pub mod streams;

use napi_derive::napi;

/// The version of this addon (the workspace version).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
