//! SIGTERM and SIGINT as something a long-running command waits for.
//!
//! Owns: installing the handlers (tokio's, so that `serve`, `watch` and
//! `subscribe` can wait for a signal beside their other work with
//! `tokio::select!`) and naming the signal that arrived. Must never: exit
//! the process from a handler — the command decides how to stop cleanly —
//! or be installed after a command announced it is ready (a signal sent
//! right after the announcement must be caught).

use crate::error::{CliError, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The stop signals, installed. From the moment it exists, SIGTERM and
/// SIGINT no longer kill the process; they are queued here.
pub(crate) struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs handlers for SIGTERM and SIGINT. Call it inside a tokio
    /// runtime (or with one entered) whose I/O driver is enabled.
    pub(crate) fn install() -> Result<StopSignals> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|source| CliError::Io {
                action: "install a handler for",
                path: name.into(),
                source,
                hint: "the process cannot stop cleanly without it",
            })
        };
        Ok(StopSignals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT; its name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// A runtime on this thread for a command that waits on a server or on
/// signals: timers and I/O enabled.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            action: "start",
            path: "the async runtime".into(),
            source,
            hint: "the system may be out of threads or file descriptors",
        })
}
