//! Admission policy with no I/O: who may connect, how many requests a
//! connection may have in flight, and how fast a rate-limited handler may be
//! called.
//!
//! Owns: the peer-uid rule, the per-connection in-flight table (request-id
//! reuse and the in-flight limit), and token buckets. Time is a parameter
//! (an [`Instant`] the caller passes in) so every rule is unit-tested
//! without sockets, threads or sleeps. Must never: read the clock, block,
//! or do I/O.

use hearth_proto::{ErrorBody, ErrorCode, HandshakeError, HandshakeStatus};
use std::collections::HashMap;
use std::time::Instant;

/// Who is on the other end of a socket, from `SO_PEERCRED`.
///
/// ```
/// use hearth_ipc::PeerCredentials;
/// let me = PeerCredentials { uid: 1000, gid: 1000, pid: Some(4242) };
/// assert_eq!(me.pid, Some(4242));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
    /// The peer's process id, where the platform reports it.
    pub pid: Option<i32>,
}

/// The peer rule: a connection is accepted only from the server's own uid
/// or a uid in `also_allowed`; a peer whose credentials cannot be read is
/// refused. The refusal is a handshake error with status
/// `permission_denied` and a reason naming both uids.
///
/// ```
/// use hearth_ipc::{check_peer, PeerCredentials};
/// let peer = |uid| PeerCredentials { uid, gid: uid, pid: Some(1) };
/// assert!(check_peer(1000, &[], Some(&peer(1000))).is_ok());
/// assert!(check_peer(1000, &[], Some(&peer(1001))).is_err());
/// assert!(check_peer(1000, &[1001], Some(&peer(1001))).is_ok());
/// assert!(check_peer(1000, &[], None).is_err());
/// ```
pub fn check_peer(
    server_uid: u32,
    also_allowed: &[u32],
    peer: Option<&PeerCredentials>,
) -> Result<(), HandshakeError> {
    let refuse = |reason: String| HandshakeError::Refused {
        status: HandshakeStatus::PermissionDenied,
        reason,
    };
    match peer {
        None => Err(refuse(
            "the server cannot read the peer's credentials (SO_PEERCRED), so it refuses the connection".into(),
        )),
        Some(p) if p.uid == server_uid || also_allowed.contains(&p.uid) => Ok(()),
        Some(p) => Err(refuse(format!(
            "this channel belongs to uid {server_uid}; the connecting process (uid {}{}) is another user and may not use it",
            p.uid,
            p.pid.map(|pid| format!(", pid {pid}")).unwrap_or_default()
        ))),
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`, one token per
/// call. Time is passed in.
///
/// ```
/// use hearth_ipc::TokenBucket;
/// use std::time::{Duration, Instant};
/// let t0 = Instant::now();
/// let mut bucket = TokenBucket::new(1.0, 2, t0);
/// assert!(bucket.try_take(t0));
/// assert!(bucket.try_take(t0));
/// assert!(!bucket.try_take(t0));                          // burst used up
/// assert!(bucket.try_take(t0 + Duration::from_secs(1)));  // one refilled
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket holding `burst` tokens (at least 1), refilled at
    /// `per_second` tokens per second (negative or NaN counts as 0).
    pub fn new(per_second: f64, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            0.0
        };
        TokenBucket {
            per_second,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A `now` earlier than the last one (clocks passed out of order by
        // concurrent callers) refills nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        if now > self.last {
            self.last = now;
        }
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Seconds until a token will be available (0 if one is now).
    ///
    /// ```
    /// use hearth_ipc::TokenBucket;
    /// use std::time::Instant;
    /// let t0 = Instant::now();
    /// let mut b = TokenBucket::new(2.0, 1, t0);
    /// assert!(b.try_take(t0));
    /// assert_eq!(b.wait_secs(t0), 0.5);
    /// ```
    pub fn wait_secs(&mut self, now: Instant) -> f64 {
        self.refill(now);
        if self.tokens >= 1.0 {
            0.0
        } else if self.per_second == 0.0 {
            f64::INFINITY
        } else {
            (1.0 - self.tokens) / self.per_second
        }
    }
}

/// Rate limits by operation or handler name, one bucket per name shared by
/// every connection (a client cannot escape a login limit by opening more
/// connections).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    config: HashMap<String, (f64, u32)>,
    buckets: HashMap<String, TokenBucket>,
}

impl RateLimiter {
    pub(crate) fn new(config: HashMap<String, (f64, u32)>) -> RateLimiter {
        RateLimiter {
            config,
            buckets: HashMap::new(),
        }
    }

    /// `Ok` if `name` is not limited or has a token; the `rate_limited`
    /// error otherwise.
    pub(crate) fn check(&mut self, name: &str, now: Instant) -> Result<(), ErrorBody> {
        let Some(&(per_second, burst)) = self.config.get(name) else {
            return Ok(());
        };
        let bucket = self
            .buckets
            .entry(name.to_string())
            .or_insert_with(|| TokenBucket::new(per_second, burst, now));
        if bucket.try_take(now) {
            return Ok(());
        }
        let wait = bucket.wait_secs(now);
        Err(ErrorBody::new(
            ErrorCode::RateLimited,
            format!(
                "{name} is limited to {per_second} calls per second (burst {burst}); retry in {}",
                if wait.is_finite() {
                    format!("{:.0} ms", (wait * 1000.0).ceil())
                } else {
                    "never (the limit is 0 per second)".to_string()
                }
            ),
        ))
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The request id is already in flight on this connection.
    Duplicate,
    /// The connection already has `limit` requests in flight.
    Busy {
        /// The limit.
        limit: usize,
    },
}

impl Refusal {
    pub(crate) fn to_body(&self, request_id: u64) -> ErrorBody {
        match self {
            Refusal::Duplicate => ErrorBody::new(
                ErrorCode::InvalidInput,
                format!(
                    "request id {request_id} is already in flight on this connection; the first request with it goes on, this one is refused — use a new id for each request"
                ),
            ),
            Refusal::Busy { limit } => ErrorBody::new(
                ErrorCode::RateLimited,
                format!(
                    "busy: this connection already has {limit} requests in flight, the negotiated max_in_flight; wait for answers before sending more"
                ),
            ),
        }
    }
}

/// The requests in flight on one connection, each with a value `T` (the
/// server keeps a handle to cancel the work).
///
/// Exactly one of `finish` and `cancel` wins for an id, so each request gets
/// exactly one final frame.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    limit: usize,
    /// Keyed by the client's request ids (a peer's choice): foldhash,
    /// seeded per process, costs a few nanoseconds where SipHash cost a
    /// good share of a shared-memory round trip (three lookups per
    /// request); the table never holds more than `limit` ids, so even
    /// collisions chosen by a client that learnt the seed would cost at
    /// most `limit` probes per request of its own.
    live: HashMap<u64, Option<T>, foldhash::fast::RandomState>,
}

impl<T> InFlight<T> {
    pub(crate) fn new(limit: usize) -> InFlight<T> {
        InFlight {
            limit: limit.max(1),
            live: HashMap::default(),
        }
    }

    /// Admits `id`, or says why not. A duplicate is checked first: a reused
    /// id is refused as such even when the connection is also at its limit.
    pub(crate) fn begin(&mut self, id: u64) -> Result<(), Refusal> {
        self.would_admit(id)?;
        self.live.insert(id, None);
        Ok(())
    }

    /// Whether [`begin`](Self::begin) would admit `id` now, without
    /// admitting it: for a request answered before anything else of its
    /// connection is read (so that nothing can cancel it or reuse its id
    /// while it runs), checked as every other request is.
    pub(crate) fn would_admit(&self, id: u64) -> Result<(), Refusal> {
        if self.live.contains_key(&id) {
            return Err(Refusal::Duplicate);
        }
        if self.live.len() >= self.limit {
            return Err(Refusal::Busy { limit: self.limit });
        }
        Ok(())
    }

    /// Attaches a value (a cancel handle) to an admitted id. Returns false
    /// (and drops nothing) if the id is no longer in flight.
    pub(crate) fn attach(&mut self, id: u64, value: T) -> Result<(), T> {
        match self.live.get_mut(&id) {
            Some(slot) => {
                *slot = Some(value);
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Ends `id` normally. True if it was in flight (the caller sends the
    /// final frame); false if it was cancelled meanwhile.
    pub(crate) fn finish(&mut self, id: u64) -> bool {
        self.live.remove(&id).is_some()
    }

    /// Cancels `id`: returns its value if it was in flight (the caller stops
    /// the work and answers `cancelled`).
    pub(crate) fn cancel(&mut self, id: u64) -> Option<Option<T>> {
        self.live.remove(&id)
    }

    /// Whether `id` is in flight.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.live.contains_key(&id)
    }

    /// How many are in flight.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Removes everything (the connection is closing), returning the values.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.live.drain().filter_map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn another_users_peer_is_refused_with_permission_denied() {
        let peer = PeerCredentials {
            uid: 1001,
            gid: 1001,
            pid: Some(77),
        };
        let e = check_peer(1000, &[], Some(&peer)).unwrap_err();
        assert_eq!(e.status(), HandshakeStatus::PermissionDenied);
        assert_eq!(e.code(), ErrorCode::PermissionDenied);
        let msg = e.to_string();
        assert!(
            msg.contains("1001") && msg.contains("1000") && msg.contains("pid 77"),
            "{msg}"
        );
    }

    #[test]
    fn root_is_another_user_too_unless_allowed() {
        let root = PeerCredentials {
            uid: 0,
            gid: 0,
            pid: None,
        };
        assert!(check_peer(1000, &[], Some(&root)).is_err());
        assert!(check_peer(1000, &[0], Some(&root)).is_ok());
    }

    #[test]
    fn a_bucket_refills_at_its_rate_and_never_above_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        // An hour later the bucket holds only `burst`.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1000.0, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
    }

    #[test]
    fn a_zero_rate_bucket_gives_its_burst_then_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 2, t0);
        assert!(b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(1000)));
        assert!(b.wait_secs(t0).is_infinite());
    }

    #[test]
    fn the_limiter_limits_only_configured_names() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(HashMap::from([("one-core:login".to_string(), (1.0, 1))]));
        assert!(l.check("one-core:login", t0).is_ok());
        let e = l.check("one-core:login", t0).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("one-core:login"), "{}", e.message);
        for _ in 0..100 {
            assert!(l.check("get", t0).is_ok());
        }
        assert!(
            l.check("one-core:login", t0 + Duration::from_secs(1))
                .is_ok()
        );
    }

    #[test]
    fn a_reused_id_is_refused_and_the_first_keeps_going() {
        let mut f: InFlight<&str> = InFlight::new(4);
        f.begin(7).unwrap();
        f.attach(7, "first").unwrap();
        assert_eq!(f.begin(7), Err(Refusal::Duplicate));
        assert!(f.contains(7));
        assert_eq!(f.cancel(7), Some(Some("first")));
    }

    #[test]
    fn the_limit_refuses_as_busy_and_frees_on_finish() {
        let mut f: InFlight<()> = InFlight::new(2);
        f.begin(1).unwrap();
        f.begin(2).unwrap();
        assert_eq!(f.begin(3), Err(Refusal::Busy { limit: 2 }));
        assert_eq!(
            Refusal::Busy { limit: 2 }.to_body(3).code,
            ErrorCode::RateLimited
        );
        assert!(f.finish(1));
        f.begin(3).unwrap();
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn would_admit_refuses_what_begin_refuses_and_admits_nothing() {
        let mut f: InFlight<u8> = InFlight::new(2);
        assert_eq!(f.would_admit(1), Ok(()));
        assert_eq!(f.len(), 0);
        f.begin(1).unwrap();
        assert_eq!(f.would_admit(1), Err(Refusal::Duplicate));
        f.begin(2).unwrap();
        assert_eq!(f.would_admit(3), Err(Refusal::Busy { limit: 2 }));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn finish_and_cancel_race_has_exactly_one_winner() {
        let mut f: InFlight<u8> = InFlight::new(8);
        f.begin(5).unwrap();
        assert!(f.cancel(5).is_some());
        assert!(!f.finish(5));
        f.begin(6).unwrap();
        assert!(f.finish(6));
        assert!(f.cancel(6).is_none());
        assert_eq!(f.attach(6, 1), Err(1));
    }
}
