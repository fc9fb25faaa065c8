//! Whether the thread of a peer process is running: its id as the peer
//! reports it, and its scheduler state as the kernel reports it.
//!
//! Owns: [`this_thread_id`] (the calling thread's kernel id, asked once
//! per thread), [`ThreadProbe`] (a peer thread's `/proc/PID/task/TID/stat`,
//! opened once and read again at offset 0 for each look) and
//! [`thread_state`], the pure parser of that file's state letter. The
//! server uses them to tell a turn holder that stopped calling because it
//! went to sleep outside hearth (finished its work, blocked on something
//! else) from one that was preempted or computes (docs/design.md H3g).
//!
//! Must never: look at a thread outside the process it was asked about
//! (the path names the peer's pid, from the socket's credentials, and the
//! thread id is looked up under it only: a forged id names, at worst,
//! another thread of the same process, or nothing), or be taken for more
//! than a hint (a thread's state changes the moment after it is read).

use std::fs::File;
use std::io;

/// The calling thread's kernel thread id, where the platform has one
/// (asked once per thread).
///
/// ```
/// # #[cfg(target_os = "linux")]
/// assert!(hearth_shm::this_thread_id().is_some());
/// ```
pub fn this_thread_id() -> Option<u32> {
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
    {
        thread_local! {
            static TID: u32 = u32::try_from(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap_or(0);
        }
        Some(TID.with(|t| *t)).filter(|&t| t != 0)
    }
    #[cfg(any(not(any(target_os = "linux", target_os = "android")), miri))]
    {
        None
    }
}

/// The state letter of a `/proc/…/stat` line (`R` running or runnable,
/// `S` asleep, `D` in uninterruptible sleep, …): the first field after the
/// command name, which is in parentheses and may itself contain `)` and
/// spaces — so the last `)` ends it (no later field has one). `None` for
/// anything else.
///
/// ```
/// use hearth_shm::thread_state;
/// assert_eq!(thread_state(b"4242 (worker) S 1 4242 4242 0 -1"), Some(b'S'));
/// assert_eq!(thread_state(b"7 (a) b) c) R 1"), Some(b'R'));
/// assert_eq!(thread_state(b"no parenthesis"), None);
/// ```
pub fn thread_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    match stat.get(close + 1..close + 3)? {
        [b' ', state] if state.is_ascii_alphabetic() => Some(*state),
        _ => None,
    }
}

/// One thread of a peer process, looked at again and again: its
/// `/proc/PID/task/TID/stat`, kept open.
///
/// ```
/// use hearth_shm::{ThreadProbe, this_thread_id};
/// # #[cfg(target_os = "linux")]
/// # {
/// let me = this_thread_id().unwrap();
/// let probe = ThreadProbe::open(std::process::id(), me)?;
/// assert_eq!(probe.thread(), me);
/// assert!(probe.running()?, "the thread asking is running");
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ThreadProbe {
    thread: u32,
    file: File,
}

/// Bytes read of a stat line: the pid, the command name (at most 15 bytes
/// on Linux, in parentheses) and the state fit well within them.
const STAT_PREFIX: usize = 96;

impl ThreadProbe {
    /// Opens thread `thread` of process `pid`. Fails when it does not
    /// exist (or is not a thread of `pid`), `/proc` is not there or closed
    /// to this process, or off Linux.
    pub fn open(pid: u32, thread: u32) -> io::Result<ThreadProbe> {
        if cfg!(any(target_os = "linux", target_os = "android")) {
            let file = File::open(format!("/proc/{pid}/task/{thread}/stat"))?;
            Ok(ThreadProbe { thread, file })
        } else {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    /// The thread this probe looks at.
    pub fn thread(&self) -> u32 {
        self.thread
    }

    /// Whether the thread is running or waiting for a core (`R`), as of
    /// now; false when it sleeps, is stopped, or has exited (its stat can
    /// no longer be read: `ESRCH`, or nothing).
    pub fn running(&self) -> io::Result<bool> {
        let mut buf = [0u8; STAT_PREFIX];
        match read_at_start(&self.file, &mut buf) {
            Ok(n) => Ok(thread_state(&buf[..n]) == Some(b'R')),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Reads the start of `file` again (a `/proc` file renders anew from
/// offset 0).
fn read_at_start(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_at(buf, 0)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, buf);
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_state_after_a_command_name_with_parentheses_and_spaces_is_found() {
        assert_eq!(thread_state(b"1 (x) (y) D 0"), Some(b'D'));
        assert_eq!(thread_state(b"1 (tokio-rt worker) R"), Some(b'R'));
        assert_eq!(thread_state(b"1 (x)"), None, "cut before the state");
        assert_eq!(thread_state(b"1 (x)S"), None);
        assert_eq!(thread_state(b"1 (x) 7"), None);
    }

    /// Looks at `probe`'s thread until it is not running; fails with
    /// `never` after 10 s.
    fn until_not_running(probe: &ThreadProbe, never: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe.running().unwrap() {
            assert!(Instant::now() < deadline, "{never}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_thread_blocked_on_a_channel_is_not_running_and_a_busy_one_is() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let sleeper = std::thread::spawn(move || {
            tid_tx.send(this_thread_id().unwrap()).unwrap();
            go_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let probe = ThreadProbe::open(std::process::id(), tid).unwrap();
        assert_eq!(probe.thread(), tid);
        // It blocks on the channel within moments of sending its id.
        until_not_running(&probe, "the thread never went to sleep");
        go_tx.send(()).unwrap();
        sleeper.join().unwrap();
        // `join` returns once the kernel clears the thread's id word, on
        // its way out: for a moment after, its stat still reads `R` (it
        // runs its own exit). Then the stat is gone.
        until_not_running(&probe, "an exited thread is not running (its stat is gone)");
        let me = ThreadProbe::open(std::process::id(), this_thread_id().unwrap()).unwrap();
        for _ in 0..3 {
            assert!(me.running().unwrap(), "each look reads the state anew");
        }
    }

    #[test]
    fn a_thread_of_another_process_cannot_be_opened_as_ours() {
        // Thread 1 is init's, never a thread of this process.
        let err = ThreadProbe::open(std::process::id(), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
