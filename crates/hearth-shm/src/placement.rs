//! Where a waiting thread runs: moving off the core its peer uses.
//!
//! Owns: [`move_off`], which moves the calling thread to another core it is
//! allowed on. Two threads that hand requests back and forth can end up on
//! one core while another idles: each wake-up places the woken thread near
//! its waker, and as only one of the two is ever runnable, the kernel's
//! load balancer sees nothing to balance. Neither can then spin for the
//! other (the peer needs the very core the spinner holds), so every round
//! trip costs two sleeps and two wake-ups instead of two cache-line
//! transfers: 4–8 µs instead of ~1 µs on the project's 2-core machine.
//! Moving one of them breaks that equilibrium.
//!
//! Must never: leave the thread restricted (it narrows its allowed set only
//! for the moment of the move, then restores the set it had), move a
//! thread that may run on one core only, or be called on a thread the
//! caller does not own (hearth moves only its own server threads, never a
//! user's).

/// Moves the calling thread off `cpu` (the core its peer runs on) to another
/// core it is allowed to run on, then gives it back its whole allowed set:
/// the scheduler keeps it where it landed until there is a reason to move
/// it. True if the thread moved; false where it may run on `cpu` alone, on
/// platforms that cannot say or do it, or if the system refused.
///
/// ```
/// if let Some(here) = hearth_shm::this_cpu() {
///     if hearth_shm::move_off(here) {
///         // The thread left `here` (where it runs from now on is the
///         // scheduler's choice again).
///     }
/// }
/// ```
pub fn move_off(cpu: u32) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
        let Ok(allowed) = sched_getaffinity(None) else {
            return false;
        };
        let cpu = cpu as usize;
        if cpu >= CpuSet::MAX_CPU || !allowed.is_set(cpu) || allowed.count() < 2 {
            return false;
        }
        let mut elsewhere = allowed;
        elsewhere.unset(cpu);
        // Narrowing the set migrates the thread before the call returns.
        if sched_setaffinity(None, &elsewhere).is_err() {
            return false;
        }
        // Restoring cannot fail where narrowing just worked (same thread,
        // a superset of a set it accepted); if it ever does, the thread
        // still runs, on one core fewer.
        let _ = sched_setaffinity(None, &allowed);
        true
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = cpu;
        false
    }
}

// The tests read and narrow the allowed set, which only Linux offers.
#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    fn allowed() -> Option<Vec<usize>> {
        let set = rustix::thread::sched_getaffinity(None).ok()?;
        Some(
            (0..rustix::thread::CpuSet::MAX_CPU)
                .filter(|&c| set.is_set(c))
                .collect(),
        )
    }

    #[test]
    fn a_move_leaves_the_core_and_keeps_the_allowed_set() {
        // A thread of its own, so that the test's narrowing cannot leak.
        std::thread::spawn(|| {
            let Some(before) = allowed() else { return };
            let Some(here) = crate::this_cpu() else {
                return;
            };
            let moved = move_off(here);
            // Where the thread runs after the call is the scheduler's
            // business again (the set is restored); the kernel moved it
            // off `here` when the narrowed set was accepted.
            assert_eq!(
                moved,
                before.len() >= 2,
                "moves iff another core is allowed"
            );
            assert_eq!(allowed(), Some(before), "the allowed set is restored");
        })
        .join()
        .expect("the test thread panicked");
    }

    #[test]
    fn a_thread_allowed_one_core_stays_there() {
        std::thread::spawn(|| {
            let Some(here) = crate::this_cpu() else {
                return;
            };
            let mut only = rustix::thread::CpuSet::new();
            only.set(here as usize);
            if rustix::thread::sched_setaffinity(None, &only).is_err() {
                return;
            }
            assert!(!move_off(here));
            assert_eq!(crate::this_cpu(), Some(here));
            assert_eq!(allowed(), Some(vec![here as usize]));
        })
        .join()
        .expect("the test thread panicked");
    }

    #[test]
    fn a_core_outside_the_allowed_set_is_no_reason_to_move() {
        std::thread::spawn(|| {
            assert!(!move_off(u32::MAX));
        })
        .join()
        .expect("the test thread panicked");
    }
}
