//! hearth-ipc: the channel between a hearth server and its clients.
//!
//! Owns: the [`Server`] (socket and in-process, built-in operations routed
//! to the store, custom handlers by namespaced name, change and topic
//! subscriptions, limits and rate limits, graceful shutdown), the [`Client`]
//! (blocking) and [`AsyncClient`] (tokio), channel naming and the private
//! socket directory, the handshake and peer-uid check, and the transport
//! seam ([`transport`]) that the socket, in-process and (later)
//! shared-memory transports implement. The wire format is
//! `docs/protocol.md`. Must never: trust a peer's bytes, let one client
//! stall the server or another client, or lose a change silently.
//!
//! Pure policy — request parsing, routing decisions, in-flight accounting,
//! token buckets, subscription filtering and lag — lives in modules without
//! I/O that take time as a parameter (`ops`, `policy`, `subs`, `message`).
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use hearth_ipc::{Server, Subscription};
//! use serde_json::json;
//!
//! let server = Server::builder()
//!     .data_dir(dir.path())
//!     .handler("one-core:login", |_ctx, payload| {
//!         Ok(json!({"success": payload["password"] == "secret"}))
//!     })
//!     .start()?;
//! let client = server.connect_in_process()?;
//! client.put("user:1", json!({"name": "Alice"}))?;
//! assert_eq!(client.get("user:1")?, Some(json!({"name": "Alice"})));
//! let reply = client.call("one-core:login", json!({"username": "a", "password": "secret"}))?;
//! assert_eq!(reply["success"], true);
//! let mut changes = client.subscribe(Subscription::prefix("user:").from_seq(0))?;
//! assert_eq!(changes.next().unwrap()?.id, "user:1");
//! server.shutdown()?;
//! # Ok::<(), hearth_ipc::IpcError>(())
//! ```

#[doc(hidden)]
pub mod bench;
mod channel;
mod client;
mod error;
mod handler;
mod message;
mod ops;
mod outq;
mod policy;
mod rt;
mod server;
mod subs;
pub mod transport;
mod types;
mod waiters;

pub use channel::{
    MAX_CHANNEL_NAME, MAX_SOCKET_PATH, socket_dir, socket_path, validate_channel_name,
};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use client::fuzz_page_text;
pub use client::{
    AsyncChangeStream, AsyncClient, AsyncDocStream, AsyncTopicStream, ChangeStream, Client,
    DocStream, Later, TopicStream, Within,
};
pub use error::{IpcError, envelope};
pub use handler::{HandlerContext, HandlerError};
pub use hearth_store::{ChangeKind, ListOptions, WriteOp};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use ops::fuzz_request;
pub use policy::{PeerCredentials, TokenBucket, check_peer};
#[doc(hidden)]
pub use server::StreamProducers;
pub use server::{
    ConnectionInfo, DEFAULT_MAX_CONNECTIONS_PER_PROCESS, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_HANDSHAKES_PER_PROCESS, DEFAULT_MAX_PARTIAL_BYTES,
    DEFAULT_MAX_SERVER_SUBSCRIPTIONS, DEFAULT_MAX_SUBSCRIPTIONS_PER_PROCESS, Server, ServerBuilder,
    ServerStats,
};
pub use transport::{HANDSHAKE_LIMIT_PREFIX, PROCESS_LIMIT_PREFIX};
pub use types::{
    Change, ConnectOptions, DEFAULT_TIMEOUT, Document, Hit, LimitSource, MAX_TIMEOUT, Metadata,
    Page, Subscription, TopicEvent, TransportPreference,
};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<crate::Client>();
        assert_send_sync::<crate::AsyncClient>();
        assert_send_sync::<crate::Server>();
        assert_send_sync::<crate::ServerBuilder>();
        assert_send_sync::<crate::ServerStats>();
        assert_send_sync::<crate::IpcError>();
        assert_send_sync::<crate::HandlerContext>();
        assert_send_sync::<crate::HandlerError>();
        assert_send_sync::<crate::Document>();
        assert_send_sync::<crate::Change>();
        assert_send_sync::<crate::Page>();
        assert_send_sync::<crate::Hit>();
        assert_send_sync::<crate::TopicEvent>();
        assert_send_sync::<crate::Subscription>();
        assert_send_sync::<crate::ConnectOptions>();
        assert_send_sync::<crate::PeerCredentials>();
        assert_send_sync::<crate::TokenBucket>();
        assert_send_sync::<crate::transport::LinkInfo>();
        assert_send_sync::<crate::transport::LinkError>();
        assert_send_sync::<crate::ChangeStream>();
        assert_send_sync::<crate::TopicStream>();
        assert_send_sync::<crate::DocStream>();
        assert_send::<crate::transport::Link>();
        // A call's rest is a future: sent to another thread, not shared.
        assert_send::<crate::Within<u64>>();
        assert_send::<crate::Later<Option<serde_json::Value>>>();
    }
}
