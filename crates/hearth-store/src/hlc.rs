//! The hybrid logical clock and write stamps.
//!
//! Owns: issuing unique, increasing stamps. Must never: read the wall clock
//! itself (time is a parameter, so tests need no sleeps) or issue a stamp at or
//! below one it has seen.

use serde::{Deserialize, Serialize};

/// The largest clock value accepted from another replica: 2^62 (the year
/// ~4200), far above any real clock and safely inside SQLite's i64.
pub(crate) const MAX_HLC: u64 = 1 << 62;

/// Bits of an hlc value that hold the logical counter.
const COUNTER_BITS: u32 = 16;
#[cfg(test)]
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// The stamp of one write: a hybrid logical clock value and the writing
/// replica. Stamps are totally ordered (clock first, then replica) and unique.
///
/// ```
/// use hearth_store::Stamp;
/// let a = Stamp { hlc: Stamp::hlc_from_parts(1000, 0), replica: 7 };
/// let b = Stamp { hlc: Stamp::hlc_from_parts(1000, 1), replica: 1 };
/// assert!(a < b);
/// assert_eq!(b.physical_ms(), 1000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Milliseconds since the epoch in the high 48 bits, a counter in the low 16.
    pub hlc: u64,
    /// The id of the replica that made the write.
    pub replica: u64,
}

impl Stamp {
    /// Builds an hlc value from milliseconds and a counter.
    pub const fn hlc_from_parts(ms: u64, counter: u16) -> u64 {
        (ms << COUNTER_BITS) | counter as u64
    }

    /// The wall-clock part of the stamp, in milliseconds since the epoch.
    pub const fn physical_ms(&self) -> u64 {
        self.hlc >> COUNTER_BITS
    }
}

/// A hybrid logical clock for one replica.
#[derive(Debug, Clone)]
pub(crate) struct Hlc {
    last: u64,
    replica: u64,
}

impl Hlc {
    pub(crate) fn new(replica: u64, last: u64) -> Self {
        Hlc { last, replica }
    }

    /// Issues a stamp above every stamp issued or observed so far.
    pub(crate) fn tick(&mut self, now_ms: u64) -> Stamp {
        let wall = Stamp::hlc_from_parts(now_ms, 0);
        self.last = if wall > self.last {
            wall
        } else {
            // Remote stamps are bounded by `MAX_HLC` (apply_remote refuses
            // larger ones), so this saturating add never actually saturates.
            self.last.saturating_add(1)
        };
        Stamp {
            hlc: self.last,
            replica: self.replica,
        }
    }

    /// Records a stamp seen from elsewhere so later ticks are above it.
    pub(crate) fn observe(&mut self, hlc: u64) {
        if hlc > self.last {
            self.last = hlc;
        }
    }
}

/// Milliseconds since the Unix epoch from the system clock.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_increase_even_when_the_wall_clock_stands_still() {
        let mut c = Hlc::new(1, 0);
        let a = c.tick(1000);
        let b = c.tick(1000);
        assert!(b > a);
        assert_eq!(b.physical_ms(), 1000);
        assert_eq!(b.hlc & COUNTER_MASK, 1);
    }

    #[test]
    fn ticks_increase_when_the_wall_clock_goes_backwards() {
        let mut c = Hlc::new(1, 0);
        let a = c.tick(5000);
        let b = c.tick(10);
        assert!(b > a);
    }

    #[test]
    fn a_tick_after_observing_a_future_stamp_is_above_it() {
        let mut c = Hlc::new(1, 0);
        let remote = Stamp::hlc_from_parts(99_999, 5);
        c.observe(remote);
        assert!(c.tick(1).hlc > remote);
    }

    #[test]
    fn the_wall_clock_wins_when_it_is_ahead() {
        let mut c = Hlc::new(1, Stamp::hlc_from_parts(10, 3));
        assert_eq!(c.tick(20).hlc, Stamp::hlc_from_parts(20, 0));
    }
}
