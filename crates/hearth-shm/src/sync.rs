//! The one door to atomics, fences and futexes.
//!
//! Owns: which atomic types the ring protocol uses — `std`'s normally,
//! `loom`'s when built with `--cfg loom` so the model checker sees every
//! access — and the two futex operations the wake protocol needs: wait while
//! a word holds a value, and wake every waiter on a word. Under loom the
//! futex is emulated with a loom mutex and condition variable with the same
//! semantics (a wait only sleeps if the word still holds the expected value
//! when checked under the lock; a wake after changing the word always ends
//! it), so a lost wake-up shows up as a loom deadlock.
//!
//! Also the one process-local count kept in an atomic ([`LocalCount`]).
//!
//! Must never: be bypassed (no other module names `std::sync::atomic` or
//! `loom` directly), or use a process-private futex (the words live in a
//! segment shared between processes).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use std::time::Duration;

/// Whether [`store_streaming`] bypasses the cache on this build (x86-64,
/// not under Miri or loom, which model plain atomics only).
pub(crate) const STREAMING: bool = cfg!(all(target_arch = "x86_64", not(miri), not(loom)));

/// Stores `value` into `word` with a non-temporal store (`movnti`) where
/// [`STREAMING`], a Relaxed store elsewhere: the line goes towards memory
/// instead of into this core's cache, so the store does not first wait
/// for another core to give the line up. For a big record that another
/// core reads next: stores into lines that core holds commit one after
/// another, each waiting for its line, and a non-temporal store waits for
/// none. Unordered with later stores until [`streaming_fence`]: call that
/// before publishing what was stored.
#[inline]
pub(crate) fn store_streaming(word: &AtomicU64, value: u64) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    // SAFETY: `word.as_ptr()` points to an 8-byte-aligned u64 that lives
    // for the borrow; `movnti` writes exactly those 8 bytes, in one piece
    // (an aligned 8-byte store is single-copy atomic on x86-64, as the
    // Relaxed store it stands for), touches no stack and no flags. Its only
    // difference from a Relaxed atomic store is that later stores may
    // become visible before it; `streaming_fence` (an `sfence`) before the
    // Release store that publishes it restores the order the ring protocol
    // relies on, so the pair acts as Relaxed stores followed by that
    // Release store.
    unsafe {
        std::arch::asm!(
            "movnti [{ptr}], {value}",
            ptr = in(reg) word.as_ptr(),
            value = in(reg) value,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(loom))))]
    word.store(value, Ordering::Relaxed);
}

/// Orders every [`store_streaming`] before the stores after it (`sfence`
/// where [`STREAMING`]; nothing to do elsewhere).
#[inline]
pub(crate) fn streaming_fence() {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    // SAFETY: `sfence` only orders this thread's earlier stores before its
    // later ones; it reads and writes no memory, stack or flags.
    unsafe {
        std::arch::asm!("sfence", options(nostack, preserves_flags));
    }
}

/// A process-local count that no ordering of the ring protocol depends on
/// (every access Relaxed: a heuristic, nothing is published through it),
/// such as the number of spinning threads. Always `std`'s atomic, under
/// loom too: it lives in a `static`, which loom's atomics cannot, and loom
/// has nothing to check in it.
#[derive(Debug)]
pub(crate) struct LocalCount(std::sync::atomic::AtomicUsize);

impl LocalCount {
    /// A count at zero.
    pub(crate) const fn new() -> LocalCount {
        LocalCount(std::sync::atomic::AtomicUsize::new(0))
    }

    /// The count now.
    pub(crate) fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds one; the count after it.
    pub(crate) fn up(&self) -> usize {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// Takes one away (after an `up`).
    pub(crate) fn down(&self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Sleeps while `word` holds `expected`, at most `timeout` (`None`: until
/// woken). May return early (a wake, a signal, a changed value): callers
/// re-check their condition.
#[inline]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    imp::wait(word, expected, timeout);
}

/// Wakes every thread sleeping in [`futex_wait`] on `word`, in any
/// process. The caller changes `word` first.
#[inline]
pub(crate) fn futex_wake(word: &AtomicU32) {
    imp::wake(word);
}

#[cfg(all(not(loom), any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::AtomicU32;
    use rustix::thread::futex;
    use std::time::Duration;

    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let ts = timeout.map(|t| futex::Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        });
        // Shared (not PRIVATE): the word is in a segment other processes map.
        // EAGAIN (the value changed), EINTR and ETIMEDOUT all mean "re-check".
        let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
    }

    pub(super) fn wake(word: &AtomicU32) {
        let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
    }
}

#[cfg(all(not(loom), not(any(target_os = "linux", target_os = "android"))))]
mod imp {
    //! No futex: a short sleep stands in (the segment itself is Linux-only;
    //! this keeps the ring logic usable over heap memory elsewhere).
    use super::{AtomicU32, Ordering};
    use std::time::Duration;

    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        // Acquire pairs with the waker's Release bump of the word before
        // `futex_wake` (ring.rs), as the kernel's futex check would.
        if word.load(Ordering::Acquire) == expected {
            let nap = Duration::from_micros(200);
            std::thread::sleep(timeout.map_or(nap, |t| t.min(nap)));
        }
    }

    pub(super) fn wake(_word: &AtomicU32) {}
}

#[cfg(loom)]
mod imp {
    use super::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};
    use std::time::Duration;

    loom::lazy_static! {
        static ref PARK: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub(super) fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
        // Timeouts are not modelled: a wait that only a timeout would end is
        // a deadlock loom reports, which is what the tests look for.
        // The loom mutex is never poisoned in a model run (no panics while
        // it is held), so unwrap cannot fail short of a test failure.
        let mut guard = PARK.0.lock().unwrap();
        // Acquire pairs with the waker's Release bump of the word before
        // `futex_wake` (ring.rs).
        while word.load(Ordering::Acquire) == expected {
            guard = PARK.1.wait(guard).unwrap();
        }
    }

    pub(super) fn wake(_word: &AtomicU32) {
        let _guard = PARK.0.lock().unwrap();
        PARK.1.notify_all();
    }
}
