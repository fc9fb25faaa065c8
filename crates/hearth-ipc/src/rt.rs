//! Runtimes for the blocking API: the shared background runtime of blocking
//! clients and a `block_on` that is safe to call from any thread.
//!
//! Owns: the process-wide client runtime (two worker threads, created on
//! first use) and parking the calling thread until a future completes.
//! Must never: panic because the caller is inside another runtime (unlike
//! `Runtime::block_on`), or spin.

use crate::error::IpcError;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use tokio::runtime::{Handle, Runtime};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` to completion on the calling thread, with `handle`'s runtime
/// as the context for timers and spawned tasks. The I/O the future waits on
/// is driven by that runtime's threads.
///
/// Blocks the calling thread: do not call it on a thread of the runtime
/// `handle` belongs to.
pub(crate) fn block_on<F: Future>(handle: &Handle, fut: F) -> F::Output {
    let _enter = handle.enter();
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The runtime blocking clients run their connections on.
pub(crate) fn client_runtime() -> Result<Handle, IpcError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hearth-client")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt.handle().clone()),
        Err(e) => Err(IpcError::io(
            "starting the client runtime",
            std::io::Error::other(e.clone()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn block_on_waits_for_timers_and_spawned_tasks() {
        let handle = client_runtime().unwrap();
        let out = block_on(&handle, async {
            let task = tokio::spawn(async { 41 });
            tokio::time::sleep(Duration::from_millis(1)).await;
            task.await.unwrap() + 1
        });
        assert_eq!(out, 42);
    }

    #[test]
    fn block_on_works_inside_another_runtime() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = client_runtime().unwrap();
        let out = outer.block_on(async move { block_on(&handle, async { 7 }) });
        assert_eq!(out, 7);
    }
}
