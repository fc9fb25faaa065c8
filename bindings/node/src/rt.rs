//! Where the addon's asynchronous work runs, and the cancel token an
//! AbortSignal drives.
//!
//! Owns: running a future on napi-rs's tokio runtime (off the JavaScript
//! thread) — either handing JavaScript a promise, or, for the few setup
//! steps that must finish before a call returns (opening a subscription),
//! waiting for it on the calling thread — and [`CancelToken`]. Must never:
//! wait on the JavaScript thread for anything but a setup step bounded by
//! the call's timeout.

use crate::error::NodeError;
use napi_derive::napi;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs `fut` on the addon's runtime and waits for it on this thread.
pub fn run_sync<F>(fut: F) -> Result<F::Output, NodeError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    napi::bindgen_prelude::spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| NodeError::Internal("a setup task ended without an answer".into()))
}

/// A per-call timeout from JavaScript (milliseconds); `None` when absent,
/// refused when negative or not a number. `Infinity`, like anything
/// longer than 100 years, is 100 years ([`millis`]).
pub fn timeout(ms: Option<f64>) -> Result<Option<Duration>, NodeError> {
    match ms {
        None => Ok(None),
        Some(ms) if !ms.is_nan() && ms >= 0.0 => Ok(Some(millis(ms))),
        Some(ms) => Err(NodeError::InvalidInput(format!(
            "timeout must be a non-negative number of milliseconds, not {ms}"
        ))),
    }
}

/// Resolves once `rx` holds `true`; never, if its sender is dropped
/// without setting it (a token collected by the GC cancels nothing).
pub async fn until_set(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Cancels an asynchronous call: JavaScript makes one per call that has an
/// AbortSignal and calls [`cancel`](CancelToken::cancel) when it fires. A
/// cancelled call stops waiting at once and settles with `ABORT_ERR`; the
/// request it abandoned is cancelled on the server when hearth-ipc drops
/// it.
#[napi]
#[derive(Debug, Clone)]
pub struct CancelToken {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken::new()
    }
}

#[napi]
impl CancelToken {
    /// A token not yet cancelled.
    #[napi(constructor)]
    pub fn new() -> CancelToken {
        CancelToken {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Cancels every call holding this token.
    #[napi]
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        *self.tx.borrow()
    }
}

impl CancelToken {
    /// A receiver that turns `true` when the token is cancelled.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// Runs `op` unless `cancel` fires first.
pub async fn cancellable<T>(
    op: impl Future<Output = Result<T, NodeError>>,
    cancel: Option<watch::Receiver<bool>>,
) -> Result<T, NodeError> {
    match cancel {
        None => op.await,
        Some(rx) => {
            if *rx.borrow() {
                return Err(NodeError::Aborted);
            }
            tokio::select! {
                biased;
                () = until_set(rx) => Err(NodeError::Aborted),
                r = op => r,
            }
        }
    }
}

/// A finite, non-negative number of milliseconds as a duration, at most
/// [`hearth_ipc::MAX_TIMEOUT`]: a larger one (up to `Number.MAX_VALUE`)
/// means "no timeout in practice", not an overflow.
pub fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1000.0)
        .unwrap_or(hearth_ipc::MAX_TIMEOUT)
        .min(hearth_ipc::MAX_TIMEOUT)
}
