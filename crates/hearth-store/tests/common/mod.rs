//! Helpers shared by the store's integration tests that run child processes.
//!
//! Owns: [`Guarded`], a spawned child with a watchdog that kills it if the
//! test has not finished with it within a limit. Must never: decide whether
//! a test passes (the watchdog only turns a hang into a failure).

use std::io::Read;
use std::process::{Child, ChildStdout};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A child with a watchdog that kills it if the test has not finished with
/// it within `limit`, so a hang fails the test instead of blocking it.
pub(crate) struct Guarded {
    child: Arc<Mutex<Child>>,
    done: Option<mpsc::Sender<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl Guarded {
    /// Watches `child` (spawned with stdout and stderr piped) and hands out
    /// its stdout.
    pub(crate) fn watch(mut child: Child, limit: Duration) -> (Guarded, ChildStdout) {
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let child = Arc::new(Mutex::new(child));
        let (done, rx) = mpsc::channel::<()>();
        let watched = child.clone();
        let watchdog = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                let _ = watched.lock().unwrap().kill();
            }
        });
        (
            Guarded {
                child,
                done: Some(done),
                watchdog: Some(watchdog),
            },
            stdout,
        )
    }

    /// SIGKILLs the child (`Child::kill`), reaps it and returns what it
    /// wrote to stderr.
    pub(crate) fn kill(mut self) -> String {
        drop(self.done.take());
        if let Some(w) = self.watchdog.take() {
            w.join().unwrap();
        }
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}
