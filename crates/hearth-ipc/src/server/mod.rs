//! The server: its builder, the running [`Server`] handle, the accept loop,
//! the change pump, and graceful shutdown.
//!
//! Owns: the server's lifetime — locking the channel, opening (or adopting)
//! the store, binding the socket (mode 0600 in the private directory),
//! accepting connections with the peer check, counting them — in all and
//! per client process, from the moment a socket is accepted (sockets still
//! in the handshake have limits of their own, so that one process's
//! silent sockets cannot use up the descriptors) — following the
//! store's change log into the [`ChangeHub`], the budget for half-joined
//! split messages that every connection shares (`max_partial_bytes`; a
//! connection never holds more than its share past the stall timeout),
//! counting subscriptions — in all and per client process, since every
//! change and every topic event costs the server work for each one — and
//! shutting down in order:
//! stop accepting, finish in-flight requests, flush the store, remove the
//! socket. Must never: let one connection stall another or the accept
//! loop, let one client process take every connection, descriptor or
//! subscription,
//! remove a socket it does not own (the channel lock decides), or
//! return from `shutdown` while a connection task still runs.

mod conn;
mod poller;
mod producers;
mod router;
mod shm;
mod slots;
mod turns;

use crate::channel::{self, ChannelLock};
use crate::client::{AsyncClient, Client, Connector};
use crate::error::IpcError;
use crate::handler::{Handler, HandlerContext, HandlerError};
use crate::message::{PartialBudget, Reassembler};
use crate::policy::{PeerCredentials, RateLimiter, check_peer};
use crate::rt::block_on;
use crate::subs::ChangeHub;
use crate::transport::{
    HANDSHAKE_LIMIT_PREFIX, Link, LinkInfo, PROCESS_LIMIT_PREFIX, TransportKind, memory,
    shm as shm_transport, socket,
};
use crate::types::ConnectOptions;
use hearth_bus::{BusOptions, EventBus};
use hearth_proto::{
    Capabilities, ClientHello, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_PAYLOAD_BYTES, ErrorBody, ErrorCode, HandshakeError, HandshakeStatus, Limits,
    MIN_FRAME_LIMIT, ServerLimits, negotiate,
};
use hearth_store::{Durability, Event, Options, Store};
use parking_lot::{Condvar, Mutex, RwLock};
#[doc(hidden)]
pub use producers::StreamProducers;
use serde_json::Value;
use slots::{Levels, StreamSlots};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

/// Threads of the blocking pool of the runtime [`ServerBuilder::start`]
/// creates, at most. Tokio's own default, chosen here on purpose: the pool
/// runs what may wait — writes waiting for an `fdatasync` (many share one
/// sync, so the more wait together the fewer syncs), blocking handlers
/// (user code, which may wait on anything), scans — and a smaller pool
/// would queue well-behaved work behind slow handlers sooner. One client
/// cannot take much of it by not reading: its streams hold at most
/// `max_running_streams` threads (4) meanwhile, its process's at most
/// `max_running_streams_per_process` (32), everyone's at most half the
/// pool (`slots.rs`), and every
/// other use of the pool hands its answer to a task rather than wait for
/// the client's room (docs/design.md L8). Threads start
/// on demand and end after 10 s idle, so the number costs nothing until
/// used.
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// Tunable limits of a server. Every field has a builder method.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_frame_bytes: u32,
    pub(crate) max_message_bytes: usize,
    /// `None`: [`partial_budget`] of the message limit.
    pub(crate) max_partial_bytes: Option<usize>,
    pub(crate) max_in_flight: u32,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_process: usize,
    pub(crate) max_handshakes: usize,
    pub(crate) max_handshakes_per_process: usize,
    pub(crate) max_subscriptions: usize,
    pub(crate) max_subscriptions_per_process: usize,
    pub(crate) max_server_subscriptions: usize,
    pub(crate) output_queue_bytes: usize,
    pub(crate) stall_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) handshake_grace: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) subscription_buffer: usize,
    pub(crate) worker_threads: usize,
    pub(crate) max_blocking_threads: usize,
    pub(crate) max_running_streams: usize,
    pub(crate) max_running_streams_per_process: usize,
    /// `None`: [`slots::default_server_running_streams`] of the pool.
    pub(crate) max_server_running_streams: Option<usize>,
    pub(crate) shared_memory: bool,
    pub(crate) shm_ring_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES as u32,
            max_message_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_partial_bytes: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_connections: 1024,
            max_connections_per_process: DEFAULT_MAX_CONNECTIONS_PER_PROCESS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_process: DEFAULT_MAX_HANDSHAKES_PER_PROCESS,
            max_subscriptions: 1024,
            max_subscriptions_per_process: DEFAULT_MAX_SUBSCRIPTIONS_PER_PROCESS,
            max_server_subscriptions: DEFAULT_MAX_SERVER_SUBSCRIPTIONS,
            output_queue_bytes: 8 << 20,
            stall_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            handshake_grace: OVER_LIMIT_HELLO_WAIT,
            shutdown_timeout: Duration::from_secs(30),
            subscription_buffer: 1024,
            worker_threads: 2,
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
            max_running_streams: slots::DEFAULT_RUNNING_STREAMS,
            max_running_streams_per_process: slots::DEFAULT_RUNNING_STREAMS_PER_PROCESS,
            max_server_running_streams: None,
            shared_memory: true,
            shm_ring_bytes: shm_transport::DEFAULT_RING_BYTES,
        }
    }
}

/// The default of [`ServerBuilder::max_connections_per_process`]: a quarter
/// of the default `max_connections`, so that one client process can never
/// take more than a quarter of the server, and far above what an app
/// needs (a worker pool of a few dozen threads with a client each, plus
/// subscriptions).
///
/// ```
/// assert_eq!(hearth_ipc::DEFAULT_MAX_CONNECTIONS_PER_PROCESS, 256);
/// ```
pub const DEFAULT_MAX_CONNECTIONS_PER_PROCESS: usize = 256;

/// The default of [`ServerBuilder::max_partial_bytes`]: 256 MiB, enough
/// for 8 clients each sending a 16 MiB document (the default document
/// limit) split into `MORE` frames at the same time, twice over (a
/// joining buffer grows by doubling, so it may hold up to twice its
/// payload while it grows). Without it, 16 sockets each holding 31 MiB of
/// a message they never finished took a server from 13 MB to 634 MB of
/// memory (hostile-client audit); at 1024 connections that would be tens
/// of GiB.
///
/// ```
/// assert_eq!(hearth_ipc::DEFAULT_MAX_PARTIAL_BYTES, 256 << 20);
/// ```
pub const DEFAULT_MAX_PARTIAL_BYTES: usize = 256 << 20;

/// The default of [`ServerBuilder::max_handshakes_per_process`]. A client
/// sends its hello right after connecting, so its socket is in the
/// handshake for microseconds; sixteen at once from one process is a
/// burst of connects from many threads, or sockets that will never speak.
///
/// ```
/// assert_eq!(hearth_ipc::DEFAULT_MAX_HANDSHAKES_PER_PROCESS, 16);
/// ```
pub const DEFAULT_MAX_HANDSHAKES_PER_PROCESS: usize = 16;

/// The default of [`ServerBuilder::max_handshakes`]: as many as the
/// default `max_connections`, so that at the defaults the server's sockets
/// stay below 2048 descriptors (`hearth serve` raises its descriptor
/// limit to the hard limit at start).
///
/// ```
/// assert_eq!(hearth_ipc::DEFAULT_MAX_HANDSHAKES, 1024);
/// ```
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// The default of [`ServerBuilder::max_server_subscriptions`]: change and
/// topic subscriptions of all connections together. Every committed change
/// and every published event costs the server work for each live
/// subscription that wants it (an event frame built and queued; for a
/// change, a forwarder woken), on the thread that commits or publishes and
/// on the two runtime workers. Measured with a 1 KiB event to 16 384
/// subscriptions, a publish costs a few milliseconds; at the old
/// unbounded 131 072 it cost hundreds, and every client waited with it.
/// Sixteen times the per-connection limit, and hundreds of times what a
/// desktop app's windows and workers subscribe.
///
/// ```
/// assert_eq!(hearth_ipc::DEFAULT_MAX_SERVER_SUBSCRIPTIONS, 16384);
/// ```
pub const DEFAULT_MAX_SERVER_SUBSCRIPTIONS: usize = 16384;

/// The default of [`ServerBuilder::max_subscriptions_per_process`]: a
/// quarter of [`DEFAULT_MAX_SERVER_SUBSCRIPTIONS`], as one process may have
/// a quarter of the connections, so that one client process — leaking
/// subscriptions, or hostile — can neither take them all nor make every
/// change and event cost more than a quarter of the most the server allows.
///
/// ```
/// assert_eq!(hearth_ipc::DEFAULT_MAX_SUBSCRIPTIONS_PER_PROCESS, 4096);
/// ```
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_PROCESS: usize = 4096;

/// The budget for half-joined messages ([`ServerBuilder::max_partial_bytes`]):
/// as set, or the larger of [`DEFAULT_MAX_PARTIAL_BYTES`] and room for two
/// messages at the message limit; refused when set too small to join one message as large
/// as the server tells its clients they may send.
fn partial_budget(config: &Config) -> Result<usize, IpcError> {
    let message = config.max_message_bytes;
    // One message as long as the longest, with its entry.
    let least = message.saturating_add(crate::message::PARTIAL_ENTRY_BYTES);
    let Some(set) = config.max_partial_bytes else {
        // Two of them at once.
        return Ok(DEFAULT_MAX_PARTIAL_BYTES.max(least.saturating_mul(2)));
    };
    if set < least {
        return Err(IpcError::InvalidInput(format!(
            "max_partial_bytes is {set} but max_message_bytes is {message}: a request as long \
             as the server tells clients they may send could never be joined from its frames; \
             set max_partial_bytes to at least {least} (hearth serve --max-partial-bytes), or \
             lower max_message_bytes"
        )));
    }
    Ok(set)
}

/// The server's stream slots ([`ServerBuilder::max_server_running_streams`]):
/// as set, or half the pool; refused when set to the pool's size or more,
/// where streams nobody reads could hold every thread again.
fn server_streams(config: &Config) -> Result<usize, IpcError> {
    let pool = config.max_blocking_threads;
    let Some(set) = config.max_server_running_streams else {
        return Ok(slots::default_server_running_streams(pool));
    };
    if set >= pool && pool > 1 {
        return Err(IpcError::InvalidInput(format!(
            "max_server_running_streams is {set} but the thread pool has {pool} threads \
             (max_blocking_threads): streams whose clients do not read would hold every \
             thread, and writes, publishes and handlers would wait for them; set it below \
             {pool} (hearth serve --max-server-running-streams; by default half the pool)"
        )));
    }
    Ok(set)
}

/// Counters of a running server.
///
/// ```
/// use hearth_ipc::ServerStats;
/// let s = ServerStats::default();
/// assert_eq!(s.connections, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ServerStats {
    /// Open connections (socket and in-process).
    pub connections: usize,
    /// Live change subscriptions.
    pub change_subscriptions: usize,
    /// Live topic subscriptions.
    pub topic_subscriptions: usize,
    /// `subscribe` and `subscribe_topic` requests refused (`rate_limited`)
    /// because the client's process had `max_subscriptions_per_process`
    /// subscriptions.
    pub refused_process_subscriptions: u64,
    /// `subscribe` and `subscribe_topic` requests refused (`unavailable`)
    /// because the server had `max_server_subscriptions` subscriptions.
    pub refused_server_subscriptions: u64,
    /// Requests received since start.
    pub requests: u64,
    /// Connections closed because their client stopped reading.
    pub stalled_disconnects: u64,
    /// Connections closed because of a message they split into `MORE`
    /// frames and left half sent: not completed within the stall timeout
    /// of its first frame (`timeout`), past the server's budget for
    /// half-joined messages of all connections
    /// ([`ServerBuilder::max_partial_bytes`], `unavailable`), or over the
    /// message limit or the 1024 half-joined messages of one connection
    /// (`too_large`).
    pub partial_disconnects: u64,
    /// Handshakes refused because the server had `max_connections` open.
    pub refused_server_full: u64,
    /// Handshakes refused because the client's process had
    /// `max_connections_per_process` open (reason `process_limit:`).
    pub refused_process_limit: u64,
    /// Accepted sockets that have not finished their handshake yet.
    pub handshakes: usize,
    /// Sockets closed without a complete hello because their process had
    /// `max_handshakes_per_process` sockets in the handshake: once their
    /// grace (`ServerBuilder::handshake_grace`) was over, or at once
    /// beyond twice that many.
    pub refused_process_handshakes: u64,
    /// Sockets closed as soon as they were accepted, without a complete
    /// hello, because the server had `max_handshakes` sockets in the
    /// handshake.
    pub refused_server_handshakes: u64,
    /// Open connections that moved to shared memory (included in
    /// `connections`).
    pub shm_connections: usize,
    /// Requests the shared poller answered: it serves busy shared-memory
    /// connections together once they outnumber the cores.
    pub shm_polled: u64,
    /// Turns on the shared poller that the outgoing client handed to the
    /// next one itself, waking it on its own core (docs/protocol.md,
    /// "Turns").
    pub shm_handoffs: u64,
    /// Handed-over turns the next client did not take within 30 µs (the
    /// outgoing one was not running to wake it): the poller woke it.
    pub shm_handoffs_missed: u64,
    /// Turns on the shared poller that ended early because the holder's
    /// calling thread was found asleep outside hearth (it finished its
    /// work, or blocks on something else) instead of after 50 µs of
    /// silence (docs/design.md H3g).
    pub shm_holders_asleep: u64,
    /// Times a busy shared-memory connection was told to wait while
    /// another of its turn group had the turn: another connection of its
    /// process, or — for clients whose calls wait for their turn on their
    /// own thread — of any process (docs/protocol.md, "Turns").
    pub shm_turn_waits: u64,
    /// Shared-memory connections the shared poller serves now (their own
    /// threads wait meanwhile).
    pub shm_lent: usize,
    /// Answers (or pieces of a big one) that a shared-memory connection's
    /// thread found no room for on the client's ring, even after waiting
    /// briefly, and queued for the connection's writer task, which waits
    /// for room off that thread. A steady rise means rings small for the
    /// documents (`--shm-ring-bytes`) or clients slow to read.
    pub shm_answers_queued: u64,
    /// Bytes of each of a new shared-memory connection's two rings; 0 when
    /// the server offers no shared memory (turned off, or not Linux).
    pub shm_ring_bytes: usize,
    /// Attach requests that asked for rings larger than `shm_ring_bytes`
    /// and got `shm_ring_bytes` (a client may ask for less, never more).
    pub shm_rings_capped: u64,
    /// Streamed calls (`list`, `query`, `search` not answered on a fast
    /// path) that found every one of their connection's stream slots taken
    /// (`ServerBuilder::max_running_streams`) and waited their turn,
    /// without a thread, until one of that connection's streams ended. A
    /// steady rise means clients that pipeline many streams, or read them
    /// slowly.
    pub streams_waited: u64,
    /// Streamed calls that had a slot of their connection but found every
    /// one of their client process's taken
    /// (`ServerBuilder::max_running_streams_per_process`) and waited,
    /// without a thread, for one of that process's streams to end.
    pub streams_waited_process: u64,
    /// Streamed calls that found every one of the server's stream slots
    /// taken (`ServerBuilder::max_server_running_streams`, by default half
    /// the blocking pool) and waited, without a thread.
    pub streams_waited_server: u64,
    /// Streams whose producer runs on the blocking pool now, each holding
    /// a thread (never more than `max_server_running_streams`; a stream
    /// cancelled while its producer runs counts until the producer ends).
    pub streams_running: usize,
}

/// One open connection, as [`Server::connections`] lists it.
///
/// ```
/// use hearth_ipc::ConnectionInfo;
/// use hearth_ipc::transport::TransportKind;
/// let c = ConnectionInfo { id: 1, transport: TransportKind::SharedMemory, peer_pid: Some(42) };
/// assert_eq!(c.transport.name(), "shm");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The connection's number (as handlers see it).
    pub id: u64,
    /// The transport it runs over.
    pub transport: TransportKind,
    /// The client's pid, when the transport knows it.
    pub peer_pid: Option<i32>,
}

impl serde::Serialize for ConnectionInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ConnectionInfo", 3)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("transport", self.transport.name())?;
        st.serialize_field("peer_pid", &self.peer_pid)?;
        st.end()
    }
}

/// State shared by the accept loop, every connection and the handle.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) bus: EventBus,
    pub(crate) hub: ChangeHub,
    /// By name; a running server may gain or replace handlers.
    pub(crate) handlers: RwLock<HashMap<String, Handler>>,
    pub(crate) limiter: Option<Mutex<RateLimiter>>,
    pub(crate) config: Config,
    pub(crate) store_limits: Limits,
    pub(crate) proto_limits: ServerLimits,
    pub(crate) uid: u32,
    pub(crate) allowed_uids: Vec<u32>,
    pub(crate) handle: Handle,
    next_conn: AtomicU64,
    connections: AtomicUsize,
    /// What each client process holds, by the pid its socket reported
    /// (SO_PEERCRED); an entry lives while it holds anything.
    processes: Mutex<HashMap<i32, ProcessSlots>>,
    /// `ServerStats::refused_server_full`.
    refused_full: AtomicU64,
    /// `ServerStats::refused_process_limit`.
    refused_process: AtomicU64,
    /// Accepted sockets in the handshake (`ServerStats::handshakes`).
    handshakes: AtomicUsize,
    /// `ServerStats::refused_process_handshakes`.
    refused_process_hs: AtomicU64,
    /// `ServerStats::refused_server_handshakes`.
    refused_server_hs: AtomicU64,
    /// Whether closing sockets at `max_handshakes` was logged since the
    /// server last had none in the handshake.
    warned_handshakes: AtomicBool,
    pub(crate) change_subs: AtomicUsize,
    pub(crate) topic_subs: AtomicUsize,
    /// Subscriptions held (reserved or live), of every connection: what
    /// `max_server_subscriptions` bounds.
    subscriptions: AtomicUsize,
    /// `ServerStats::refused_process_subscriptions`.
    refused_process_subs: AtomicU64,
    /// `ServerStats::refused_server_subscriptions`.
    refused_server_subs: AtomicU64,
    /// Whether refusing subscriptions at `max_server_subscriptions` was
    /// logged since the server last had none.
    warned_subscriptions: AtomicBool,
    pub(crate) requests: AtomicU64,
    pub(crate) stalled: AtomicU64,
    /// `ServerStats::partial_disconnects`.
    partial_disconnects: AtomicU64,
    /// Bytes of half-joined messages, shared by every connection's
    /// `Reassembler` ([`ServerBuilder::max_partial_bytes`]).
    pub(crate) partial_budget: Arc<PartialBudget>,
    /// `ServerStats::shm_answers_queued`.
    pub(crate) shm_queued: AtomicU64,
    /// `ServerStats::shm_rings_capped`.
    shm_rings_capped: AtomicU64,
    /// `ServerStats::streams_waited`.
    pub(crate) streams_waited: AtomicU64,
    /// `ServerStats::streams_waited_process`.
    pub(crate) streams_waited_process: AtomicU64,
    /// `ServerStats::streams_waited_server`.
    pub(crate) streams_waited_server: AtomicU64,
    /// The server's stream slots, and each client process's.
    streams: StreamSlots,
    process_streams: slots::ByProcess,
    shm_connections: AtomicUsize,
    /// Serves busy shared-memory rings when they outnumber the cores.
    pub(crate) poller: Arc<poller::Poller>,
    /// The streams' producers running on the blocking pool, counted
    /// (`Server::stream_producers`).
    producers: producers::Producers,
    listed: Mutex<HashMap<u64, ConnectionInfo>>,
    shutting_down: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
    generation: Mutex<u64>,
    changed: Condvar,
    /// Threads in `Server::wait_for`; counters only signal when non-zero.
    waiters: AtomicUsize,
}

/// A connection's entry in the server's list; dropping it removes it.
pub(crate) struct Listed {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.shared.listed.lock().remove(&self.id);
    }
}

/// What one client process holds on the server.
#[derive(Debug, Default)]
struct ProcessSlots {
    /// Admitted connections.
    connections: usize,
    /// Whether its refusal at the per-process limit was logged (once
    /// while the entry lives, not once a connection).
    warned_connections: bool,
    /// Accepted sockets still in the handshake.
    handshakes: usize,
    /// Whether closing its sockets at the handshake limit was logged.
    warned_handshakes: bool,
    /// Subscriptions of all its connections.
    subscriptions: usize,
    /// Whether refusing its subscriptions at the per-process limit was
    /// logged.
    warned_subscriptions: bool,
}

impl ProcessSlots {
    fn is_empty(&self) -> bool {
        self.connections == 0 && self.handshakes == 0 && self.subscriptions == 0
    }
}

/// One subscription counted against the server's and its process's limits
/// ([`Shared::reserve_subscription`]); dropping it uncounts it.
pub(crate) struct SubSlot {
    shared: Arc<Shared>,
    pid: Option<i32>,
}

impl Drop for SubSlot {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.give_back(
            self.pid,
            |slots| slots.subscriptions -= 1,
            &shared.subscriptions,
            &shared.warned_subscriptions,
        );
    }
}

/// A counted socket in the handshake (of its process, when the pid is
/// known); dropping it uncounts it.
pub(crate) struct Handshaking {
    shared: Arc<Shared>,
    pid: Option<i32>,
    /// Over its process's limit: the refusal it gets unless its hello
    /// comes within [`OVER_LIMIT_HELLO_WAIT`].
    over_process: Option<HandshakeError>,
}

impl Handshaking {
    /// How long its hello may take, and the refusal if it does not come
    /// in time (`None`: the handshake timeout, then a plain close).
    fn hello_wait(&self, config: &Config) -> (Duration, Option<HandshakeError>) {
        let timeout = config.handshake_timeout;
        match &self.over_process {
            Some(refusal) => (timeout.min(config.handshake_grace), Some(refusal.clone())),
            None => (timeout, None),
        }
    }

    /// Counts a socket over its process's limit that was refused.
    fn refused(&self) {
        if self.over_process.is_some() {
            self.shared
                .refused_process_hs
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How long a socket accepted over its process's limit of sockets in the
/// handshake ([`ServerBuilder::max_handshakes_per_process`]) may take to
/// send its hello before it is refused and closed, by default
/// ([`ServerBuilder::handshake_grace`]). A client sends it with
/// its connect; one preempted in between on a loaded machine gets its
/// hello there within this, while one process's silent sockets each hold
/// a descriptor for no longer (the server-wide limit bounds them all).
const OVER_LIMIT_HELLO_WAIT: Duration = Duration::from_secs(1);

impl Drop for Handshaking {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.give_back(
            self.pid,
            |slots| slots.handshakes -= 1,
            &shared.handshakes,
            &shared.warned_handshakes,
        );
        self.shared.bump();
    }
}

/// A counted, admitted connection; dropping it uncounts it (and from its
/// process's count, when the peer's pid is known).
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    pub(crate) id: u64,
    pid: Option<i32>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            self.shared
                .release_process(pid, |slots| slots.connections -= 1);
        }
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        self.shared.bump();
    }
}

/// The pid a process limit applies to: known and not 0 (0 is what
/// SO_PEERCRED reports for a peer outside the server's pid namespace).
fn countable_pid(pid: Option<i32>) -> Option<i32> {
    pid.filter(|&p| p > 0)
}

impl Shared {
    /// Every write waits for an `fdatasync` ([`Durability::Fsync`]): no
    /// shared-memory ring thread or poller answers one itself
    /// (`conn::answered`).
    pub(crate) fn writes_sync(&self) -> bool {
        self.store.durability() == Durability::Fsync
    }

    /// Wakes whoever waits on the counters.
    pub(crate) fn bump(&self) {
        // SeqCst pairs with `wait_for`: either the waiter is counted here, or
        // it registered after this counter changed and sees the new value.
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        *self.generation.lock() += 1;
        self.changed.notify_all();
    }

    /// A reassembler for a new connection: within the server's budget for
    /// half-joined messages, and refusing one not completed within the
    /// stall timeout.
    pub(crate) fn reassembler(&self) -> Reassembler {
        Reassembler::bounded(
            self.config.max_message_bytes,
            self.partial_budget.clone(),
            self.config.stall_timeout,
        )
    }

    /// Counts a connection ended because of a half-sent split message
    /// (`ServerStats::partial_disconnects`).
    pub(crate) fn count_partial_disconnect(&self) {
        self.partial_disconnects.fetch_add(1, Ordering::SeqCst);
        self.bump();
    }

    /// Counts a request (signalled only while someone waits on counters).
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.bump();
    }

    pub(crate) fn stats(&self) -> ServerStats {
        ServerStats {
            connections: self.connections.load(Ordering::SeqCst),
            change_subscriptions: self.change_subs.load(Ordering::SeqCst),
            topic_subscriptions: self.topic_subs.load(Ordering::SeqCst),
            // Relaxed: statistics.
            refused_process_subscriptions: self.refused_process_subs.load(Ordering::Relaxed),
            refused_server_subscriptions: self.refused_server_subs.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::SeqCst),
            stalled_disconnects: self.stalled.load(Ordering::SeqCst),
            partial_disconnects: self.partial_disconnects.load(Ordering::SeqCst),
            // Relaxed: statistics.
            refused_server_full: self.refused_full.load(Ordering::Relaxed),
            refused_process_limit: self.refused_process.load(Ordering::Relaxed),
            handshakes: self.handshakes.load(Ordering::SeqCst),
            refused_process_handshakes: self.refused_process_hs.load(Ordering::Relaxed),
            refused_server_handshakes: self.refused_server_hs.load(Ordering::Relaxed),
            shm_connections: self.shm_connections.load(Ordering::SeqCst),
            shm_polled: self.poller.polled(),
            shm_handoffs: self.poller.handoffs().0,
            shm_handoffs_missed: self.poller.handoffs().1,
            shm_holders_asleep: self.poller.holders_asleep(),
            shm_turn_waits: self.poller.turn_waits(),
            shm_lent: self.poller.lent(),
            // Relaxed: a statistic.
            shm_answers_queued: self.shm_queued.load(Ordering::Relaxed),
            shm_rings_capped: self.shm_rings_capped.load(Ordering::Relaxed),
            shm_ring_bytes: if self
                .proto_limits
                .capabilities
                .contains(Capabilities::SHARED_MEMORY)
            {
                self.config.shm_ring_bytes
            } else {
                0
            },
            // Relaxed: a statistic.
            streams_waited: self.streams_waited.load(Ordering::Relaxed),
            // SeqCst: counters `wait_for` waits on (`bump`).
            streams_waited_process: self.streams_waited_process.load(Ordering::SeqCst),
            streams_waited_server: self.streams_waited_server.load(Ordering::SeqCst),
            streams_running: self.producers.counts().running,
        }
    }

    /// Open connections with their transports, by id.
    pub(crate) fn connections(&self) -> Vec<ConnectionInfo> {
        let mut list: Vec<ConnectionInfo> = self.listed.lock().values().copied().collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// Lists a connection until the returned guard is dropped.
    pub(crate) fn list_connection(self: &Arc<Self>, id: u64, info: &LinkInfo) -> Listed {
        self.listed.lock().insert(
            id,
            ConnectionInfo {
                id,
                transport: info.kind,
                peer_pid: info.peer.and_then(|p| p.pid),
            },
        );
        Listed {
            shared: self.clone(),
            id,
        }
    }

    /// The levels above its own at which a connection of process `pid`
    /// takes its streams' places (`slots.rs`): its process's slots (shared
    /// with every connection and running stream of the process,
    /// [`slots::ByProcess`]), then the server's.
    pub(crate) fn stream_levels(&self, pid: Option<i32>) -> Levels {
        let max = self.config.max_running_streams_per_process;
        Levels {
            process: countable_pid(pid).map(|pid| self.process_streams.slots(pid, max)),
            server: self.streams.clone(),
        }
    }

    pub(crate) fn shm_opened(&self) {
        self.shm_connections.fetch_add(1, Ordering::SeqCst);
        self.bump();
    }

    pub(crate) fn shm_closed(&self) {
        self.shm_connections.fetch_sub(1, Ordering::SeqCst);
        self.bump();
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Gives back one place counted in `total` and, when the pid is known,
    /// in its process's entry (`mine`); once nothing holds a place, a
    /// limit reached again is logged again (`warned`).
    fn give_back(
        &self,
        pid: Option<i32>,
        mine: impl FnOnce(&mut ProcessSlots),
        total: &AtomicUsize,
        warned: &AtomicBool,
    ) {
        if let Some(pid) = pid {
            self.release_process(pid, mine);
        }
        if total.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Relaxed: whether a warning was logged; nothing else is
            // published through it.
            warned.store(false, Ordering::Relaxed);
        }
    }

    /// Changes `pid`'s entry with `change` and forgets the entry once it
    /// holds nothing.
    fn release_process(&self, pid: i32, change: impl FnOnce(&mut ProcessSlots)) {
        let mut processes = self.processes.lock();
        if let Some(slots) = processes.get_mut(&pid) {
            change(slots);
            if slots.is_empty() {
                processes.remove(&pid);
            }
        }
    }

    /// Counts a socket just accepted from `pid` as in the handshake, or,
    /// when the server has its most sockets in the handshake and the
    /// socket's whole hello has not arrived yet, closes it at once (with a
    /// refusing hello if the socket takes it without waiting) and returns
    /// `None`. Over its process's limit, such a socket is counted but has
    /// [`OVER_LIMIT_HELLO_WAIT`] for its hello, then is refused. A socket
    /// whose hello already waits is counted whatever the limits: it does
    /// not wait for its peer, and a burst of connects from one process's
    /// threads is not refused.
    fn begin_handshake(
        self: &Arc<Self>,
        stream: &tokio::net::UnixStream,
        pid: Option<i32>,
    ) -> Option<Handshaking> {
        let pid = countable_pid(pid);
        let mut processes = self.processes.lock();
        let per_process = self.config.max_handshakes_per_process;
        let mine = pid
            .and_then(|pid| processes.get(&pid))
            .map_or(0, |slots| slots.handshakes);
        let process_full = mine >= per_process;
        // As many again in their grace: past that, even they are closed at
        // once, so that one process cannot fill the server's places.
        let process_flooding = mine >= per_process.saturating_mul(2);
        let max = self.config.max_handshakes;
        let server_full = self.handshakes.load(Ordering::SeqCst) >= max;
        let waiting = (process_full || server_full) && socket::hello_waiting(stream);
        // Over its process's limit (not the server's) a socket without its
        // hello yet gets a short grace rather than being closed at once: a
        // client thread preempted between its connect and its hello (a
        // loaded machine, a burst of connects) is not refused for it.
        let mut over_process = match pid {
            Some(pid) if process_full && !waiting => {
                if let Some(slots) = processes.get_mut(&pid)
                    && !std::mem::replace(&mut slots.warned_handshakes, true)
                {
                    tracing::warn!(
                        pid,
                        limit = per_process,
                        grace = ?self.config.handshake_grace,
                        "a client process has as many connections in the handshake (no hello \
                         yet) as one process may have; its further ones are closed unless \
                         their hello comes within the grace (logged once)"
                    );
                }
                Some(HandshakeError::Refused {
                    status: HandshakeStatus::Unavailable,
                    reason: format!(
                        "{HANDSHAKE_LIMIT_PREFIX} process {pid} has {per_process} connections \
                         that have not sent their hello, the most one process may have; send \
                         the hello as soon as a connection is made, or raise the server's \
                         max_handshakes_per_process (hearth serve --max-handshakes-per-process)"
                    ),
                })
            }
            _ => None,
        };
        // Closed at once: beyond twice its process's limit (`over_process`
        // is then set), or beyond the server's.
        let closed_now = if waiting {
            None
        } else if process_flooding && over_process.is_some() {
            self.refused_process_hs.fetch_add(1, Ordering::Relaxed);
            over_process.take()
        } else if server_full {
            self.refused_server_hs.fetch_add(1, Ordering::Relaxed);
            if !self.warned_handshakes.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit = max,
                    "the server has as many connections in the handshake as it may; \
                     closing further ones at once until some finish (logged once)"
                );
            }
            Some(HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                reason: format!(
                    "{HANDSHAKE_LIMIT_PREFIX} the server has {max} connections that have not \
                     sent their hello, its limit; retry shortly, or raise the server's \
                     max_handshakes (hearth serve --max-handshakes)"
                ),
            })
        } else {
            None
        };
        if let Some(refusal) = closed_now {
            drop(processes);
            socket::refuse_now(stream, &self.proto_limits, &refusal);
            self.bump();
            return None;
        }
        if let Some(pid) = pid {
            processes.entry(pid).or_default().handshakes += 1;
        }
        drop(processes);
        self.handshakes.fetch_add(1, Ordering::SeqCst);
        self.bump();
        Some(Handshaking {
            shared: self.clone(),
            pid,
            over_process,
        })
    }

    /// Counts one more subscription of a connection whose peer is `pid`
    /// (when known), or refuses it: `rate_limited` when that process has
    /// `max_subscriptions_per_process`, `unavailable` when the server has
    /// `max_server_subscriptions` — each with what to do about it.
    pub(crate) fn reserve_subscription(
        self: &Arc<Self>,
        pid: Option<i32>,
    ) -> Result<SubSlot, ErrorBody> {
        let pid = countable_pid(pid);
        let mut processes = self.processes.lock();
        if let Some(pid) = pid {
            let max = self.config.max_subscriptions_per_process;
            // An entry is made only when a subscription is counted, so that
            // a refusal leaves no empty one behind.
            if let Some(slots) = processes.get_mut(&pid)
                && slots.subscriptions >= max
            {
                self.refused_process_subs.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut slots.warned_subscriptions, true) {
                    tracing::warn!(
                        pid,
                        limit = max,
                        "a client process has as many subscriptions as one process may have; \
                         refusing its further ones until it ends some (logged once)"
                    );
                }
                return Err(ErrorBody::new(
                    ErrorCode::RateLimited,
                    format!(
                        "process {pid} has {max} subscriptions, the most one client process may \
                         have; unsubscribe those it no longer needs (one subscription with a \
                         broader prefix or pattern can replace many), or raise the server's \
                         max_subscriptions_per_process (hearth serve \
                         --max-subscriptions-per-process)"
                    ),
                ));
            }
        }
        let max = self.config.max_server_subscriptions;
        let taken = self
            .subscriptions
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            drop(processes);
            self.refused_server_subs.fetch_add(1, Ordering::Relaxed);
            if !self.warned_subscriptions.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit = max,
                    "the server has as many subscriptions as it may; refusing further ones \
                     until some end (logged once)"
                );
            }
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                format!(
                    "the server has {max} subscriptions, its limit; retry after others end, \
                     or raise the server's max_server_subscriptions (hearth serve \
                     --max-server-subscriptions)"
                ),
            ));
        }
        if let Some(pid) = pid {
            processes.entry(pid).or_default().subscriptions += 1;
        }
        Ok(SubSlot {
            shared: self.clone(),
            pid,
        })
    }

    /// Admits one more connection, or refuses (shutting down, full, or
    /// its process — `pid`, when known — has its most connections).
    fn admit(self: &Arc<Self>, pid: Option<i32>) -> Result<Ticket, HandshakeError> {
        if self.is_shutting_down() {
            return Err(HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                reason: "the server is shutting down".into(),
            });
        }
        let pid = countable_pid(pid);
        if let Some(pid) = pid {
            let max = self.config.max_connections_per_process;
            let mut processes = self.processes.lock();
            let slots = processes.entry(pid).or_default();
            if slots.connections >= max {
                self.refused_process.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut slots.warned_connections, true) {
                    tracing::warn!(
                        pid,
                        limit = max,
                        "a client process has as many connections as one process may have; \
                         refusing its further connections until it closes some (logged once)"
                    );
                }
                return Err(HandshakeError::Refused {
                    status: HandshakeStatus::Unavailable,
                    reason: format!(
                        "{PROCESS_LIMIT_PREFIX} process {pid} has {max} connections open, the \
                         most one process may have; close connections it no longer uses (one \
                         client can be shared by many threads), or raise the server's \
                         max_connections_per_process (hearth serve \
                         --max-connections-per-process)"
                    ),
                });
            }
            slots.connections += 1;
        }
        // From here the process's count is held: a refusal gives it back.
        let max = self.config.max_connections;
        let prev = self.connections.fetch_add(1, Ordering::SeqCst);
        if prev >= max {
            self.connections.fetch_sub(1, Ordering::SeqCst);
            if let Some(pid) = pid {
                self.release_process(pid, |slots| slots.connections -= 1);
            }
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(HandshakeError::Refused {
                status: HandshakeStatus::Unavailable,
                reason: format!(
                    "the server has {max} connections, its limit; close idle clients or raise max_connections"
                ),
            });
        }
        self.bump();
        Ok(Ticket {
            shared: self.clone(),
            id: self.next_conn.fetch_add(1, Ordering::Relaxed) + 1,
            pid,
        })
    }

    /// A new in-process connection: the client's end of a memory link; the
    /// server's end is served on the server's runtime.
    pub(crate) fn connect_in_process(
        self: &Arc<Self>,
        hello: ClientHello,
    ) -> Result<Link, IpcError> {
        let ticket = self.admit(None).map_err(IpcError::Handshake)?;
        let negotiated = negotiate(&hello, &self.proto_limits)?;
        let (client, server) = memory::pair(negotiated, self.config.stall_timeout);
        self.handle.spawn(conn::serve(self.clone(), server, ticket));
        Ok(client)
    }

    pub(crate) fn handler_context(
        &self,
        name: &str,
        conn_id: u64,
        link: &crate::transport::LinkInfo,
    ) -> HandlerContext {
        HandlerContext {
            connection_id: conn_id,
            peer_pid: link.peer.and_then(|p| p.pid),
            peer_uid: link.peer.map(|p| p.uid),
            transport: link.kind,
            name: Arc::from(name),
            store: self.store.clone(),
            bus: self.bus.clone(),
        }
    }
}

/// Configures and starts a [`Server`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use hearth_ipc::{HandlerError, Server};
/// use serde_json::json;
/// let server = Server::builder()
///     .data_dir(dir.path())
///     .handler("one-core:storage:get", |ctx, payload| {
///         let hash = payload["hash"].as_str().ok_or_else(|| HandlerError::invalid_input("hash is required"))?;
///         Ok(match ctx.store().get(hash)? {
///             Some(doc) => json!({"data": doc.to_value()}),
///             None => json!(null),
///         })
///     })
///     .rate_limit("one-core:login", 5.0, 10)
///     .start()?;
/// let client = server.connect_in_process()?;
/// client.put("h1", json!({"x": 1}))?;
/// assert_eq!(client.call("one-core:storage:get", json!({"hash": "h1"}))?, json!({"data": {"x": 1}}));
/// server.shutdown()?;
/// # Ok::<(), hearth_ipc::IpcError>(())
/// ```
#[must_use = "a builder does nothing until start()"]
pub struct ServerBuilder {
    channel: Option<String>,
    socket_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    store: Option<Store>,
    store_options: Options,
    handlers: HashMap<String, Handler>,
    rate_limits: HashMap<String, (f64, u32)>,
    config: Config,
    bus: Option<EventBus>,
    allowed_uids: Vec<u32>,
    errors: Vec<String>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("channel", &self.channel)
            .field("data_dir", &self.data_dir)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    fn new() -> ServerBuilder {
        ServerBuilder {
            channel: None,
            socket_dir: None,
            data_dir: None,
            store: None,
            store_options: Options::default(),
            handlers: HashMap::new(),
            rate_limits: HashMap::new(),
            config: Config::default(),
            bus: None,
            allowed_uids: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Serve on this channel's Unix socket. Without a channel the server is
    /// reachable in process only ([`Server::connect_in_process`]).
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channel = Some(name.into());
        self
    }

    /// Put the channel's socket in this directory instead of
    /// `$XDG_RUNTIME_DIR/hearth` (else `/tmp/hearth-$UID`). It is created
    /// with mode 0700 if missing and refused if another user owns it or it
    /// is open to group or others.
    pub fn socket_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.socket_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Open (creating if needed) the store in this directory.
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.data_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Options for opening the store in [`data_dir`](Self::data_dir).
    pub fn store_options(mut self, options: Options) -> Self {
        self.store_options = options;
        self
    }

    /// Serve an already open store instead of a data directory.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Use this event bus for topics (share it with in-process listeners);
    /// by default the server has its own.
    pub fn bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    fn add_handler(mut self, name: &str, handler: Handler) -> Self {
        if let Err(e) = hearth_bus::validate_topic(name) {
            self.errors.push(format!("handler name {name:?}: {e}"));
        } else if self.handlers.insert(name.to_string(), handler).is_some() {
            self.errors
                .push(format!("two handlers are registered as {name:?}; keep one"));
        }
        self
    }

    /// Registers a blocking handler under a namespaced name such as
    /// `one-core:storage:get` (`:`-separated, no `*`). It runs on the
    /// server's blocking pool, off the I/O path; a panic becomes an
    /// `internal` error for that call.
    pub fn handler<F>(self, name: &str, handler: F) -> Self
    where
        F: Fn(&HandlerContext, Value) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        self.add_handler(name, Handler::blocking(handler))
    }

    /// Registers an async handler; it runs as a task on the server's
    /// runtime and must not block.
    pub fn async_handler<F, Fut>(self, name: &str, handler: F) -> Self
    where
        F: Fn(HandlerContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
    {
        self.add_handler(name, Handler::future(handler))
    }

    /// Limits calls of a handler (or of a built-in operation, by its name
    /// such as `put`) to `per_second`, with bursts of `burst`, across all
    /// connections. Over the limit a call gets `rate_limited`.
    pub fn rate_limit(mut self, name: &str, per_second: f64, burst: u32) -> Self {
        self.rate_limits
            .insert(name.to_string(), (per_second, burst));
        self
    }

    /// Largest frame accepted from a client, header included (default
    /// 32 MiB + 24; at least 64 KiB).
    pub fn max_frame_bytes(mut self, bytes: u32) -> Self {
        self.config.max_frame_bytes = bytes.max(MIN_FRAME_LIMIT);
        self
    }

    /// Largest message (a request joined from `MORE` frames) accepted
    /// (default 32 MiB; at least 64 KiB, `hearth_proto::MIN_MESSAGE_LIMIT`).
    /// The server says it in its hello (protocol 2), so hearth's clients,
    /// Rust and Node, send requests up to it with nothing to set, and
    /// refuse longer ones before sending (`IpcError::TooLarge`). A client
    /// of protocol 1 is not told and assumes 32 MiB.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        let min = usize::try_from(hearth_proto::MIN_MESSAGE_LIMIT).unwrap_or(usize::MAX);
        self.config.max_message_bytes = bytes.max(min);
        self
    }

    /// Most bytes that all connections together may hold in messages they
    /// split into `MORE` frames whose last frame has not come yet (default
    /// [`DEFAULT_MAX_PARTIAL_BYTES`], 256 MiB). Each connection's share is
    /// also bounded by [`max_message_bytes`](Self::max_message_bytes); this
    /// bounds their sum, so that many connections each leaving a message
    /// just under that limit half sent cannot take the server's memory. A
    /// message's joining buffer counts with its capacity (up to twice its
    /// payload while it grows) plus 128 bytes; it stops counting once the
    /// message is whole, or its connection ends. A frame that would take
    /// the total past the limit ends its connection with an error frame
    /// (request id 0, `unavailable`: the server's state refuses it, not the
    /// message, which may be within every limit) saying to send it again
    /// later. Unset, it is the larger of the default and room for two
    /// messages of `max_message_bytes` (128 bytes more each); set below `max_message_bytes` plus 128 bytes
    /// (a message as large as the server says it takes could never be
    /// joined), [`start`](Self::start) refuses the configuration
    /// (`invalid_input`).
    ///
    /// A split message must also be completed within the
    /// [stall timeout](Self::stall_timeout) of its first frame, or its
    /// connection is ended (`timeout`). `ServerStats::partial_disconnects`
    /// counts the connections ended either way.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// // Many clients sending messages of up to 32 MiB at once: room for
    /// // eight being joined together, twice over.
    /// let server = Server::builder()
    ///     .data_dir(dir.path())
    ///     .max_partial_bytes(512 << 20)
    ///     .start()?;
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn max_partial_bytes(mut self, bytes: usize) -> Self {
        self.config.max_partial_bytes = Some(bytes);
        self
    }

    /// Most requests one connection may have in flight (default 1024);
    /// more get `rate_limited`.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.config.max_in_flight = n.max(1);
        self
    }

    /// Most open connections (default 1024); more are refused in the
    /// handshake with status `unavailable`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n.max(1);
        self
    }

    /// Most open connections of one client process (default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_PROCESS`], 256; at least 1), so that
    /// one process — leaking clients, or hostile — cannot take every one
    /// of [`max_connections`](Self::max_connections) and lock the other
    /// apps out. More are refused in the handshake with status
    /// `unavailable` and a reason that starts with
    /// [`PROCESS_LIMIT_PREFIX`] (`process_limit:`); the process's other
    /// connections, and every other process, are unaffected.
    ///
    /// The process is the one the socket's peer credentials
    /// (`SO_PEERCRED`) name: the process that connected. Connections
    /// whose peer has no pid (in-process clients, [`Server::serve_link`],
    /// a peer in another pid namespace) count only against
    /// `max_connections`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// // A server for an app that runs one pool of up to 64 workers, each
    /// // with a client and a subscription.
    /// let server = Server::builder()
    ///     .data_dir(dir.path())
    ///     .max_connections_per_process(128)
    ///     .start()?;
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn max_connections_per_process(mut self, n: usize) -> Self {
        self.config.max_connections_per_process = n.max(1);
        self
    }

    /// Most sockets of one client process that may be in the handshake at
    /// once — accepted, their client hello not yet complete (default
    /// [`DEFAULT_MAX_HANDSHAKES_PER_PROCESS`], 16; at least 1). A socket
    /// accepted beyond it whose hello has not arrived has the
    /// [grace](Self::handshake_grace) (1 s) for it — a client thread
    /// preempted between its connect and its hello — then is closed, after
    /// a refusing hello (status `unavailable`, reason starting with
    /// [`HANDSHAKE_LIMIT_PREFIX`]) when the socket takes it without
    /// waiting; beyond twice the limit it is closed so at once. The first
    /// of a process is logged at warn. So one
    /// process's silent sockets, which would otherwise each hold a
    /// descriptor until the [handshake timeout](Self::handshake_timeout),
    /// cannot use up the server's descriptors and lock the other
    /// processes out. A socket whose whole hello has already arrived
    /// when it is accepted is never closed for this. Sockets whose peer
    /// has no pid count only against [`max_handshakes`](Self::max_handshakes).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// let server = Server::builder()
    ///     .data_dir(dir.path())
    ///     .max_handshakes_per_process(64)
    ///     .max_handshakes(4096)
    ///     .start()?;
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn max_handshakes_per_process(mut self, n: usize) -> Self {
        self.config.max_handshakes_per_process = n.max(1);
        self
    }

    /// How long a socket accepted over its process's
    /// [`max_handshakes_per_process`](Self::max_handshakes_per_process)
    /// may take to send its hello before it is refused (default 1 s, and
    /// never longer than the [handshake timeout](Self::handshake_timeout)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// let server = hearth_ipc::Server::builder()
    ///     .data_dir(dir.path())
    ///     .handshake_grace(Duration::from_millis(250))
    ///     .start()?;
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn handshake_grace(mut self, grace: Duration) -> Self {
        self.config.handshake_grace = crate::types::clamp_timeout(grace);
        self
    }

    /// Most sockets of all processes that may be in the handshake at once
    /// (default [`DEFAULT_MAX_HANDSHAKES`], 1024; at least 1); beyond it a
    /// socket whose hello has not arrived is closed at once, after a
    /// refusing hello as
    /// [`max_handshakes_per_process`](Self::max_handshakes_per_process)
    /// describes (no grace). With [`max_connections`](Self::max_connections) it
    /// bounds the descriptors the server's sockets can take, so that many
    /// processes' silent sockets cannot take the descriptors the store
    /// and shared memory need.
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.config.max_handshakes = n.max(1);
        self
    }

    /// Most subscriptions (change and topic) per connection (default 1024).
    /// More are refused with `rate_limited`. See also
    /// [`max_subscriptions_per_process`](Self::max_subscriptions_per_process)
    /// and [`max_server_subscriptions`](Self::max_server_subscriptions).
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.config.max_subscriptions = n.max(1);
        self
    }

    /// Most subscriptions (change and topic together) of all the
    /// connections of one client process (default
    /// [`DEFAULT_MAX_SUBSCRIPTIONS_PER_PROCESS`], 4096; at least 1), so
    /// that one process cannot make every change and every published event
    /// cost the server, and every other client, work for thousands of its
    /// subscriptions. One more is refused with `rate_limited` and a
    /// message saying so; that process's existing subscriptions, and every
    /// other process's, go on. The process is the one the socket's peer
    /// credentials name, as for
    /// [`max_connections_per_process`](Self::max_connections_per_process);
    /// connections whose peer has no pid (in-process clients) count only
    /// against [`max_server_subscriptions`](Self::max_server_subscriptions).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// // An app whose 200 workers each watch a few prefixes.
    /// let server = Server::builder()
    ///     .data_dir(dir.path())
    ///     .max_subscriptions_per_process(8192)
    ///     .max_server_subscriptions(32768)
    ///     .start()?;
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn max_subscriptions_per_process(mut self, n: usize) -> Self {
        self.config.max_subscriptions_per_process = n.max(1);
        self
    }

    /// Most subscriptions (change and topic together) of all connections
    /// (default [`DEFAULT_MAX_SERVER_SUBSCRIPTIONS`], 16384; at least 1).
    /// One more is refused with `unavailable` (the server has no room now;
    /// the Rust client's change stream retries resuming on it) and a
    /// message saying so. Every change and published event costs work for
    /// each subscription, so this bounds what one commit or one publish
    /// can cost.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// let server = Server::builder()
    ///     .data_dir(dir.path())
    ///     .max_server_subscriptions(4096)
    ///     .start()?;
    /// assert_eq!(server.stats().refused_server_subscriptions, 0);
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn max_server_subscriptions(mut self, n: usize) -> Self {
        self.config.max_server_subscriptions = n.max(1);
        self
    }

    /// Bytes of output a connection may have waiting (default 8 MiB).
    /// Replies wait for room; events that do not fit are reported as lag.
    pub fn output_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.output_queue_bytes = bytes.max(1);
        self
    }

    /// A client whose socket accepts no bytes for this long is disconnected
    /// (default 10 s; at most [`MAX_TIMEOUT`](crate::MAX_TIMEOUT)); so is
    /// one that has not completed a message split into `MORE` frames this
    /// long after its first frame
    /// ([`max_partial_bytes`](Self::max_partial_bytes)).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.stall_timeout = crate::types::clamp_timeout(timeout);
        self
    }

    /// How long a new connection has to complete its hello (default 10 s;
    /// at most [`MAX_TIMEOUT`](crate::MAX_TIMEOUT)).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = crate::types::clamp_timeout(timeout);
        self
    }

    /// How long shutdown waits for in-flight requests (default 30 s; at
    /// most [`MAX_TIMEOUT`](crate::MAX_TIMEOUT)).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = crate::types::clamp_timeout(timeout);
        self
    }

    /// Changes buffered per subscription before it is cut off with `lagged`
    /// (default 1024).
    pub fn subscription_buffer(mut self, n: usize) -> Self {
        self.config.subscription_buffer = n.max(1);
        self
    }

    /// Worker threads of the runtime [`start`](Self::start) creates
    /// (default 2).
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.config.worker_threads = n.max(1);
        self
    }

    /// Most threads of the blocking pool of the runtime
    /// [`start`](Self::start) creates (default 512, tokio's own): writes
    /// that wait for a sync or for the applier, blocking handlers, scans.
    /// [`start_async`](Self::start_async) runs on the caller's runtime,
    /// whose pool its builder sets.
    pub fn max_blocking_threads(mut self, n: usize) -> Self {
        self.config.max_blocking_threads = n.max(1);
        self
    }

    /// Most `list`, `query` and `search` streams of one connection that
    /// produce on the blocking pool at once (default 4). The connection's
    /// other streams wait their turn, in the order the client sent them,
    /// holding no thread: a producer keeps its thread while the client does
    /// not read its chunks, so without this one client that pipelines
    /// streams and reads none could hold every thread of the pool. Small
    /// lists and small streams over shared memory, answered without the
    /// pool, do not count.
    pub fn max_running_streams(mut self, n: usize) -> Self {
        self.config.max_running_streams = n.max(1);
        self
    }

    /// Most streams of all of one client process's connections (by the
    /// socket peer's pid) that produce on the blocking pool at once
    /// (default 32). Like [`max_running_streams`](Self::max_running_streams)
    /// one level up: without it, one process opening its most connections
    /// (`max_connections_per_process`) and reading none of their streams
    /// could hold that many times four threads. A stream waits for its
    /// connection's slot first, then its process's, in the order it got the
    /// one before. Clients whose pid is unknown are bounded by their
    /// connections' and the server's slots alone.
    ///
    /// ```
    /// let builder = hearth_ipc::Server::builder().max_running_streams_per_process(64);
    /// # drop(builder);
    /// ```
    pub fn max_running_streams_per_process(mut self, n: usize) -> Self {
        self.config.max_running_streams_per_process = n.max(1);
        self
    }

    /// Most streams of all clients that produce on the blocking pool at
    /// once (default: half of [`max_blocking_threads`](Self::max_blocking_threads),
    /// 256), so that however many processes stream and read nothing, the
    /// rest of the pool is left for writes waiting for their sync, point
    /// calls over the socket and handlers. A stream takes its place here
    /// last, after its connection's and its process's. "Half the pool" is
    /// half of `max_blocking_threads` as set here: a server started with
    /// [`start_async`](Self::start_async) runs on the caller's runtime,
    /// whose pool its own builder sizes, so set this to half of that.
    ///
    /// ```
    /// let builder = hearth_ipc::Server::builder().max_server_running_streams(128);
    /// # drop(builder);
    /// ```
    pub fn max_server_running_streams(mut self, n: usize) -> Self {
        self.config.max_server_running_streams = Some(n.max(1));
        self
    }

    /// Whether clients may move their connection to shared memory after
    /// the handshake (default true; shared memory exists on Linux only).
    /// Clients choose for themselves with
    /// [`ConnectOptions::transport`](crate::ConnectOptions::transport) or
    /// `HEARTH_TRANSPORT`.
    pub fn shared_memory(mut self, enabled: bool) -> Self {
        self.config.shared_memory = enabled;
        self
    }

    /// Bytes of each of a shared-memory connection's two rings (default
    /// 256 KiB; rounded to a power of two from 4 KiB to 64 MiB). Messages
    /// larger than half a ring travel in several frames.
    ///
    /// It is also the most a client gets: an attach request for larger
    /// rings gets rings of this size (the offer says the segment's size,
    /// which the client checks and uses), so that the shared memory the
    /// server keeps alive is at most `2 × bytes` (plus a 4 KiB header) a
    /// connection, times [`max_connections`](Self::max_connections). A
    /// client may ask for smaller rings.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// // Rings of 1 MiB for large documents: at most 2 MiB of shared
    /// // memory a connection, whatever a client asks for.
    /// let server = Server::builder()
    ///     .data_dir(dir.path())
    ///     .shm_ring_bytes(1 << 20)
    ///     .start()?;
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn shm_ring_bytes(mut self, bytes: usize) -> Self {
        self.config.shm_ring_bytes = shm_transport::ring_bytes(bytes);
        self
    }

    /// Also accept socket peers running as `uid` (by default only the
    /// server's own user may connect).
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allowed_uids.push(uid);
        self
    }

    /// Starts the server on a runtime of its own and returns once it is
    /// ready: the store is open and the socket accepts connections. For
    /// programs that are not async (an async program may call it too, from
    /// a blocking context, or use [`start_async`](Self::start_async)).
    pub fn start(self) -> Result<Server, IpcError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.config.worker_threads)
            .max_blocking_threads(self.config.max_blocking_threads)
            .thread_name("hearth-server")
            .enable_all()
            .build()
            .map_err(|e| IpcError::io("starting the server runtime", e))?;
        let handle = runtime.handle().clone();
        let mut server = self.launch(handle)?;
        server.runtime = Some(runtime);
        Ok(server)
    }

    /// Starts the server on the current tokio runtime; opening the store
    /// runs on its blocking pool, so the caller's runtime is not blocked.
    pub async fn start_async(self) -> Result<Server, IpcError> {
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || self.launch(handle))
            .await
            .map_err(|e| IpcError::Protocol(format!("starting the server panicked: {e}")))?
    }

    fn launch(self, handle: Handle) -> Result<Server, IpcError> {
        if let Some(first) = self.errors.first() {
            return Err(IpcError::InvalidInput(first.clone()));
        }
        // Before anything is opened or created.
        let partial_bytes = partial_budget(&self.config)?;
        let server_streams = server_streams(&self.config)?;
        let uid = channel::current_uid()?;
        // The channel first: a second server fails here, naming the first.
        let mut socket = None;
        let mut lock = None;
        if let Some(name) = &self.channel {
            channel::validate_channel_name(name)?;
            let dir = match &self.socket_dir {
                Some(dir) => dir.clone(),
                None => channel::socket_dir()?,
            };
            channel::ensure_private_dir(&dir, true)?;
            let path = dir.join(format!("{name}.sock"));
            channel::check_path_len(&path)?;
            lock = Some(ChannelLock::acquire(&dir, name)?);
            socket = Some(path);
        }
        let store = match (self.store, &self.data_dir) {
            (Some(store), None) => store,
            (None, Some(dir)) => Store::open(dir, self.store_options.clone())?,
            (Some(_), Some(_)) => {
                return Err(IpcError::InvalidInput(
                    "give the server either a data_dir or a store, not both".into(),
                ));
            }
            (None, None) => {
                return Err(IpcError::InvalidInput(
                    "the server needs a data_dir (or an open store)".into(),
                ));
            }
        };
        let config = self.config;
        let mut capabilities = Capabilities::CHUNKED_STREAMS | Capabilities::EVENTS;
        if config.shared_memory && cfg!(target_os = "linux") {
            capabilities = capabilities | Capabilities::SHARED_MEMORY;
        }
        let proto_limits = ServerLimits {
            capabilities,
            max_frame_bytes: config.max_frame_bytes,
            max_in_flight: config.max_in_flight,
            max_message_bytes: u64::try_from(config.max_message_bytes).unwrap_or(u64::MAX),
            ..ServerLimits::default()
        };
        let (shutdown_tx, _) = watch::channel(false);
        let bus = self.bus.unwrap_or_else(|| {
            EventBus::with_options(BusOptions {
                max_listeners: 0,
                warn_on_max_listeners: false,
            })
        });
        let partial_budget = Arc::new(PartialBudget::new(partial_bytes));
        let shared = Arc::new(Shared {
            hub: ChangeHub::new(store.last_seq()),
            store_limits: self.store_options.limits,
            store,
            bus,
            handlers: RwLock::new(self.handlers),
            limiter: (!self.rate_limits.is_empty())
                .then(|| Mutex::new(RateLimiter::new(self.rate_limits))),
            config,
            proto_limits,
            uid,
            allowed_uids: self.allowed_uids,
            handle: handle.clone(),
            next_conn: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            processes: Mutex::new(HashMap::new()),
            refused_full: AtomicU64::new(0),
            refused_process: AtomicU64::new(0),
            handshakes: AtomicUsize::new(0),
            refused_process_hs: AtomicU64::new(0),
            refused_server_hs: AtomicU64::new(0),
            warned_handshakes: AtomicBool::new(false),
            change_subs: AtomicUsize::new(0),
            topic_subs: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            refused_process_subs: AtomicU64::new(0),
            refused_server_subs: AtomicU64::new(0),
            warned_subscriptions: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            partial_disconnects: AtomicU64::new(0),
            partial_budget,
            shm_queued: AtomicU64::new(0),
            shm_rings_capped: AtomicU64::new(0),
            streams_waited: AtomicU64::new(0),
            streams_waited_process: AtomicU64::new(0),
            streams_waited_server: AtomicU64::new(0),
            streams: StreamSlots::new(server_streams),
            process_streams: slots::ByProcess::default(),
            shm_connections: AtomicUsize::new(0),
            poller: Arc::default(),
            producers: producers::Producers::default(),
            listed: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            shutdown_tx,
            generation: Mutex::new(0),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
        });
        let pump_stop = Arc::new(AtomicBool::new(false));
        let pump = {
            let store = shared.store.clone();
            let stop = pump_stop.clone();
            let shared = shared.clone();
            let start = shared.hub.delivered() + 1;
            std::thread::Builder::new()
                .name("hearth-changes".into())
                .spawn(move || pump(store, shared, stop, start))
                .map_err(|e| IpcError::io("starting the change pump thread", e))?
        };
        let mut server = Server {
            shared,
            handle: handle.clone(),
            runtime: None,
            accept: None,
            pump: Some(pump),
            pump_stop,
            socket: None,
            lock: None,
            finished: false,
        };
        if let Some(path) = socket {
            channel::remove_stale_socket(&path)?;
            let listener = {
                let _enter = handle.enter();
                UnixListener::bind(&path)
                    .map_err(|e| IpcError::io(format!("binding socket {}", path.display()), e))?
            };
            channel::restrict_socket(&path)?;
            server.socket = Some(path);
            server.lock = lock;
            server.accept = Some(handle.spawn(accept_loop(server.shared.clone(), listener)));
        }
        Ok(server)
    }
}

/// Follows the store's change log into the hub while anyone subscribes.
/// Runs on its own thread because the store's subscription blocks; wakes
/// at least every 50 ms to notice shutdown. With no subscription it stops
/// following the store (so writes do not wake it) and marks what it
/// skipped as dispatched; a new subscription reads older changes from the
/// change log and wakes it.
fn pump(store: Store, shared: Arc<Shared>, stop: Arc<AtomicBool>, start: u64) {
    let tick = Duration::from_millis(50);
    let mut sub = None;
    let _ = start;
    while !stop.load(Ordering::Acquire) {
        if shared.hub.skip_if_idle(store.last_seq()) {
            sub = None;
            shared.hub.wait_for_subscribers(tick);
            continue;
        }
        let following = sub.get_or_insert_with(|| store.subscribe(shared.hub.delivered() + 1));
        match following.next_timeout(tick) {
            Some(Ok(Event::Change(change))) => shared.hub.dispatch(&change),
            // The store reads the change log itself after a lag; nothing is
            // skipped, so there is nothing to do.
            Some(Ok(Event::Lagged { .. })) | None => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading the change log failed; retrying");
                // Back off on a failing store rather than spin.
                std::thread::park_timeout(Duration::from_millis(100));
            }
        }
    }
}

/// Returns once shutdown has been signalled.
pub(crate) async fn until_down(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|down| *down).await.map(|_| ());
}

async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    let mut shutdown = shared.shutdown_signal();
    // Whether the last accept failed (logged at warn once a run of
    // failures, not every 20 ms).
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            () = until_down(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                failing = false;
                let peer = socket::peer_of(&stream);
                // Counted from the moment it is accepted: its descriptor
                // is held from now on.
                let Some(handshaking) = shared.begin_handshake(&stream, peer.and_then(|p| p.pid))
                else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let admit_shared = shared.clone();
                    let admit = move |peer: Option<&PeerCredentials>| {
                        check_peer(admit_shared.uid, &admit_shared.allowed_uids, peer)?;
                        admit_shared.admit(peer.and_then(|p| p.pid))
                    };
                    let (wait, late) = handshaking.hello_wait(&shared.config);
                    let accepted =
                        socket::accept(stream, peer, shared.proto_limits, admit, wait, late).await;
                    if let Err(socket::AcceptError::Refused(e)) = &accepted
                        && crate::transport::handshake_limit_refusal(e)
                    {
                        handshaking.refused();
                    }
                    drop(handshaking);
                    match accepted {
                        Ok((handshaken, ticket)) => serve_socket(shared, handshaken, ticket).await,
                        Err(socket::AcceptError::Refused(e)) => {
                            tracing::debug!(reason = %e, "connection refused in the handshake");
                        }
                        Err(socket::AcceptError::Io(e)) => {
                            tracing::debug!(reason = %e, "connection dropped in the handshake");
                        }
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors or similar: log and keep serving
                // the connections we have; try again shortly.
                if std::mem::replace(&mut failing, true) {
                    tracing::debug!(error = %e, "accepting a connection failed again");
                } else {
                    tracing::warn!(
                        error = %e,
                        "accepting a connection failed; retrying every 20 ms (logged once until \
                         one succeeds)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Serves an accepted, handshaken socket: over shared memory if the client
/// attaches, else over the socket.
async fn serve_socket(shared: Arc<Shared>, handshaken: socket::Handshaken, ticket: Ticket) {
    let stall = Some(shared.config.stall_timeout);
    let offered = handshaken
        .info
        .negotiated
        .capabilities
        .contains(Capabilities::SHARED_MEMORY);
    if !offered {
        return conn::serve(shared, handshaken.into_link(stall).0, ticket).await;
    }
    let mut signal = shared.shutdown_signal();
    let upgrade = shm_transport::server_upgrade(
        handshaken,
        shared.config.shm_ring_bytes,
        &shared.shm_rings_capped,
        shared.config.handshake_timeout,
        async move { until_down(&mut signal).await },
    )
    .await;
    match upgrade {
        shm_transport::ServerUpgrade::Shm(side) => shm::serve(shared, side, ticket).await,
        shm_transport::ServerUpgrade::Socket(handshaken) => {
            conn::serve(shared, handshaken.into_link(stall).0, ticket).await;
        }
        shm_transport::ServerUpgrade::Gone => drop(ticket),
    }
}

/// A running server. [`shutdown`](Server::shutdown) stops it gracefully;
/// dropping it stops it abruptly (in-flight requests are abandoned).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let sock = tempfile::tempdir().unwrap();
/// use hearth_ipc::{Client, ConnectOptions, Server};
/// use serde_json::json;
/// let server = Server::builder()
///     .channel("doc-example")
///     .socket_dir(sock.path().join("hearth"))
///     .data_dir(dir.path())
///     .start()?;
/// let client = Client::connect_with(
///     ConnectOptions::new("doc-example").socket_dir(sock.path().join("hearth")))?;
/// client.put("user:1", json!({"name": "Alice"}))?;
/// assert_eq!(server.stats().connections, 1);
/// server.shutdown()?;
/// # Ok::<(), hearth_ipc::IpcError>(())
/// ```
pub struct Server {
    shared: Arc<Shared>,
    handle: Handle,
    runtime: Option<Runtime>,
    accept: Option<tokio::task::JoinHandle<()>>,
    pump: Option<std::thread::JoinHandle<()>>,
    pump_stop: Arc<AtomicBool>,
    socket: Option<PathBuf>,
    lock: Option<ChannelLock>,
    finished: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.socket)
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Registers (or replaces) a blocking handler on the running server,
    /// as [`ServerBuilder::handler`] does before start: calls that arrive
    /// afterwards use it; connections, subscriptions and calls in flight
    /// are untouched. Fails with [`IpcError::InvalidInput`] for a name that
    /// is not a valid topic.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// use serde_json::json;
    /// let server = Server::builder().data_dir(dir.path()).start()?;
    /// server.handler("app:version", |_ctx, _payload| Ok(json!("1.2.0")))?;
    /// let client = server.connect_in_process()?;
    /// assert_eq!(client.call("app:version", json!({}))?, json!("1.2.0"));
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn handler<F>(&self, name: &str, handler: F) -> Result<(), IpcError>
    where
        F: Fn(&HandlerContext, Value) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        self.register(name, Handler::blocking(handler))
    }

    /// Registers (or replaces) an async handler on the running server; see
    /// [`Server::handler`].
    pub fn async_handler<F, Fut>(&self, name: &str, handler: F) -> Result<(), IpcError>
    where
        F: Fn(HandlerContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
    {
        self.register(name, Handler::future(handler))
    }

    fn register(&self, name: &str, handler: Handler) -> Result<(), IpcError> {
        hearth_bus::validate_topic(name)
            .map_err(|e| IpcError::InvalidInput(format!("handler name {name:?}: {e}")))?;
        self.shared
            .handlers
            .write()
            .insert(name.to_string(), handler);
        Ok(())
    }

    /// A builder; see [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// The socket path, when serving a channel.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// The store being served.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The event bus topic subscriptions listen on.
    pub fn bus(&self) -> &EventBus {
        &self.shared.bus
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// The open connections and the transport each uses.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// use hearth_ipc::transport::TransportKind;
    /// let server = Server::builder().data_dir(dir.path()).start()?;
    /// let client = server.connect_in_process()?;
    /// client.ping()?;
    /// assert_eq!(server.connections()[0].transport, TransportKind::InProcess);
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared.connections()
    }

    /// The streams' producers on the blocking pool: running now, started,
    /// and the most at once, since the server started. For tests (each
    /// change is signalled to [`wait_for`](Self::wait_for)); not a stable
    /// API.
    #[doc(hidden)]
    pub fn stream_producers(&self) -> StreamProducers {
        self.shared.producers.counts()
    }

    /// Waits (blocking) until `pred` holds for the counters or `timeout`
    /// passes; returns whether it holds. Each change of a counter is
    /// signalled, so this never polls.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&ServerStats) -> bool) -> bool {
        let deadline = crate::types::deadline_after(Instant::now(), timeout);
        let shared = &self.shared;
        shared.waiters.fetch_add(1, Ordering::SeqCst);
        let mut generation = shared.generation.lock();
        let held = loop {
            if pred(&shared.stats()) {
                break true;
            }
            if shared
                .changed
                .wait_until(&mut generation, deadline)
                .timed_out()
            {
                break pred(&shared.stats());
            }
        };
        drop(generation);
        shared.waiters.fetch_sub(1, Ordering::SeqCst);
        held
    }

    /// Publishes an event from the server side to every matching topic
    /// subscription; returns how many received it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use hearth_ipc::Server;
    /// use serde_json::json;
    /// let server = Server::builder().data_dir(dir.path()).start()?;
    /// let client = server.connect_in_process()?;
    /// let mut events = client.subscribe_topic("one-core:event:*")?;
    /// assert_eq!(server.publish("one-core:event:syncProgress", &json!({"progress": 1}))?, 1);
    /// assert_eq!(events.next().unwrap()?.payload, json!({"progress": 1}));
    /// # server.shutdown()?;
    /// # Ok::<(), hearth_ipc::IpcError>(())
    /// ```
    pub fn publish(&self, topic: &str, payload: &Value) -> Result<usize, IpcError> {
        self.shared
            .bus
            .try_emit(topic, payload)
            .map_err(|e| IpcError::InvalidInput(e.to_string()))
    }

    /// A blocking client connected in process (no socket).
    pub fn connect_in_process(&self) -> Result<Client, IpcError> {
        self.connect_in_process_with(ConnectOptions::new("in-process"))
    }

    /// A blocking client connected in process, with options (timeouts,
    /// limits; the channel and socket settings are ignored).
    pub fn connect_in_process_with(&self, options: ConnectOptions) -> Result<Client, IpcError> {
        let handle = self.handle.clone();
        let connector = Connector::InProcess {
            shared: Arc::downgrade(&self.shared),
            options,
        };
        let client = block_on(&handle, AsyncClient::connect_with_connector(connector))?;
        Ok(Client::from_async(client, handle))
    }

    /// An async client connected in process (no socket).
    pub async fn connect_in_process_async(&self) -> Result<AsyncClient, IpcError> {
        let connector = Connector::InProcess {
            shared: Arc::downgrade(&self.shared),
            options: ConnectOptions::new("in-process"),
        };
        AsyncClient::connect_with_connector(connector).await
    }

    /// Serves a link established by another transport (for example a
    /// network bridge that did its own handshake and authentication).
    pub fn serve_link(&self, link: Link) -> Result<(), IpcError> {
        let ticket = self.shared.admit(None).map_err(IpcError::Handshake)?;
        self.handle
            .spawn(conn::serve(self.shared.clone(), link, ticket));
        Ok(())
    }

    /// Stops gracefully (blocking): stops accepting, lets in-flight requests
    /// finish (up to the shutdown timeout), flushes the store, removes the
    /// socket. Call it from a blocking context; async code uses
    /// [`shutdown_async`](Server::shutdown_async).
    pub fn shutdown(mut self) -> Result<(), IpcError> {
        let handle = self.handle.clone();
        let result = block_on(&handle, self.stop());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        result
    }

    /// Stops gracefully; see [`shutdown`](Server::shutdown).
    pub async fn shutdown_async(mut self) -> Result<(), IpcError> {
        self.stop().await
    }

    async fn stop(&mut self) -> Result<(), IpcError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let shared = self.shared.clone();
        // The signal before the flag: a ring thread that sees the flag
        // stops, which ends its connection's reader, and the connection
        // must already see the signal then, or it takes the reader's end
        // for a broken link and aborts the requests shutdown lets finish.
        shared.shutdown_tx.send_replace(true);
        shared.shutting_down.store(true, Ordering::Release);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        // Connections stop reading, finish their requests and close.
        let grace = shared.config.shutdown_timeout + shared.config.stall_timeout;
        let waiter = shared.clone();
        let drained = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + grace;
            waiter.waiters.fetch_add(1, Ordering::SeqCst);
            let mut generation = waiter.generation.lock();
            let mut drained = true;
            while waiter.connections.load(Ordering::SeqCst) > 0 {
                if waiter
                    .changed
                    .wait_until(&mut generation, deadline)
                    .timed_out()
                {
                    drained = false;
                    break;
                }
            }
            drop(generation);
            waiter.waiters.fetch_sub(1, Ordering::SeqCst);
            drained
        })
        .await
        .unwrap_or(false);
        if !drained {
            tracing::warn!("connections still open after the shutdown timeout; closing anyway");
        }
        shared.hub.close();
        self.pump_stop.store(true, Ordering::Release);
        let pump = self.pump.take();
        let store = shared.store.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            if let Some(p) = pump {
                let _ = p.join();
            }
            store.flush()
        })
        .await
        .map_err(|e| IpcError::Protocol(format!("flushing the store panicked: {e}")))?;
        self.remove_socket();
        flushed.map_err(IpcError::from)
    }

    fn remove_socket(&mut self) {
        if let Some(path) = self.socket.take() {
            let _ = std::fs::remove_file(&path);
        }
        self.lock = None;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            // The signal before the flag, as in `stop`.
            self.shared.shutdown_tx.send_replace(true);
            self.shared.shutting_down.store(true, Ordering::Release);
            self.shared.hub.close();
            self.pump_stop.store(true, Ordering::Release);
            if let Some(pump) = self.pump.take() {
                let _ = pump.join();
            }
            if let Some(accept) = self.accept.take() {
                accept.abort();
            }
            self.remove_socket();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(message: usize, partial: Option<usize>) -> Config {
        Config {
            max_message_bytes: message,
            max_partial_bytes: partial,
            ..Config::default()
        }
    }

    #[test]
    fn the_half_sent_budget_unset_is_the_default_or_room_for_two_of_the_longest_messages() {
        assert_eq!(
            partial_budget(&config(32 << 20, None)).unwrap(),
            DEFAULT_MAX_PARTIAL_BYTES
        );
        let entry = crate::message::PARTIAL_ENTRY_BYTES;
        assert_eq!(
            partial_budget(&config(300 << 20, None)).unwrap(),
            2 * ((300 << 20) + entry)
        );
    }

    #[test]
    fn the_servers_stream_slots_must_leave_part_of_the_pool() {
        let with = |streams: Option<usize>| Config {
            max_blocking_threads: 512,
            max_server_running_streams: streams,
            ..Config::default()
        };
        assert_eq!(server_streams(&with(None)).unwrap(), 256);
        assert_eq!(server_streams(&with(Some(511))).unwrap(), 511);
        let e = server_streams(&with(Some(512))).unwrap_err().to_string();
        assert!(e.contains("below 512"), "{e}");
    }

    #[test]
    fn a_half_sent_budget_set_must_hold_one_whole_message() {
        let least = (4 << 20) + crate::message::PARTIAL_ENTRY_BYTES;
        assert_eq!(
            partial_budget(&config(4 << 20, Some(least))).unwrap(),
            least
        );
        assert!(partial_budget(&config(4 << 20, Some(least - 1))).is_err());
    }
}
