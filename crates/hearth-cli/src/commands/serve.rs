//! `hearth serve`: the data directory served on a channel until a stop
//! signal.
//!
//! Owns: turning the flags into a [`Server`], announcing readiness (one
//! `ready channel=… socket=… pid=…` line on stdout, and on `--ready-fd`),
//! and stopping in order on SIGTERM/SIGINT: announce the shutdown on the
//! `hearth:server:shutdown` topic, stop accepting, finish in-flight
//! requests, flush the store, remove the socket, exit 0. Must never:
//! announce readiness before the socket accepts, miss a signal sent right
//! after the announcement, or exit 0 when the shutdown failed.

use crate::args::{GlobalArgs, ServeArgs};
use crate::error::{CliError, Result};
use crate::open::report_recovery;
use crate::signals::{self, StopSignals};
use hearth_ipc::{Server, ServerBuilder};
use serde_json::json;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// A `ServerBuilder` setter of a size or count.
type SetSize = fn(ServerBuilder, usize) -> ServerBuilder;

/// The topic `serve` publishes on just before it shuts down, so that a
/// client following the server (`watch`, `subscribe`) can tell a shutdown
/// from a crash. Payload: `{"channel", "pid", "signal"}`.
pub(crate) const SHUTDOWN_TOPIC: &str = "hearth:server:shutdown";

/// `hearth serve`.
pub(crate) fn serve(g: &GlobalArgs, args: &ServeArgs) -> Result<()> {
    // First, while every descriptor above 2 is still one we inherited.
    let mut ready_fd = args.ready_fd.map(ReadyFd::adopt).transpose()?;
    let channel = g.resolve_channel()?.ok_or_else(|| {
        CliError::input(
            "`hearth serve` needs a channel to serve: give --channel NAME (or set HEARTH_CHANNEL), e.g. `hearth serve --channel my-app --data-dir ./data`",
        )
    })?;
    note_ipc_mode(args.ipc);
    raise_descriptor_limit();
    // Absolute, so that clients (stats) and logs name it wherever they run.
    let data_dir = g.resolve_data_dir();
    let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
    let rt = signals::runtime()?;
    // Before the server starts: a signal from now on is queued, not fatal.
    let mut stop = {
        let _enter = rt.enter();
        StopSignals::install()?
    };

    if args.exit_with_parent {
        exit_with_parent()?;
    }

    let mut builder = Server::builder()
        .channel(&channel)
        .data_dir(&data_dir)
        .store_options(g.store_options());
    if let Some(dir) = g.resolve_socket_dir() {
        builder = builder.socket_dir(dir);
    }
    if let Some(n) = args.max_frame_bytes {
        builder = builder.max_frame_bytes(n);
    }
    // The size and count flags, each set only when given (a value too
    // large for this machine is the most there is).
    let sizes: [(Option<u64>, SetSize); 11] = [
        (args.max_message_bytes, ServerBuilder::max_message_bytes),
        (args.max_partial_bytes, ServerBuilder::max_partial_bytes),
        (args.max_connections, ServerBuilder::max_connections),
        (
            args.max_connections_per_process,
            ServerBuilder::max_connections_per_process,
        ),
        (
            args.max_handshakes_per_process,
            ServerBuilder::max_handshakes_per_process,
        ),
        (args.max_handshakes, ServerBuilder::max_handshakes),
        (
            args.max_subscriptions_per_process,
            ServerBuilder::max_subscriptions_per_process,
        ),
        (
            args.max_server_subscriptions,
            ServerBuilder::max_server_subscriptions,
        ),
        (args.max_running_streams, ServerBuilder::max_running_streams),
        (
            args.max_running_streams_per_process,
            ServerBuilder::max_running_streams_per_process,
        ),
        (
            args.max_server_running_streams,
            ServerBuilder::max_server_running_streams,
        ),
    ];
    for (given, set) in sizes {
        if let Some(n) = given {
            builder = set(builder, usize::try_from(n).unwrap_or(usize::MAX));
        }
    }
    if let Some(n) = args.max_in_flight {
        builder = builder.max_in_flight(n);
    }
    for limit in &args.rate_limit {
        builder = builder.rate_limit(&limit.name, limit.per_second, limit.burst);
    }
    if let Some(bytes) = args.shm_ring_bytes {
        builder = builder.shm_ring_bytes(bytes);
    }
    if args.no_shm {
        builder = builder.shared_memory(false);
    }
    tracing::debug!(?builder, "starting the server");
    let server = builder.start()?;
    report_recovery(g.json, server.store());

    let pid = std::process::id();
    let socket = server
        .socket_path()
        .map_or_else(|| "?".into(), |p| p.display().to_string());
    let line = format!("ready channel={channel} socket={socket} pid={pid}");
    announce_on_stdout(&line);
    if let Some(fd) = ready_fd.take() {
        fd.announce(&line)?;
    }
    tracing::info!(
        %channel,
        %socket,
        data_dir = %data_dir.display(),
        pid,
        "serving"
    );

    let signal = rt.block_on(stop.recv());
    tracing::info!(
        signal,
        "stopping: no new connections, finishing the requests in flight"
    );
    let announced = json!({"channel": channel, "pid": pid, "signal": signal});
    if let Err(e) = server.publish(SHUTDOWN_TOPIC, &announced) {
        tracing::warn!(error = %e, "could not announce the shutdown to subscribers");
    }
    server.shutdown()?;
    tracing::info!("stopped: the store is flushed and the socket removed");
    Ok(())
}

/// Raises this process's soft limit of open file descriptors
/// (`RLIMIT_NOFILE`) to its hard limit. Each connection holds a socket
/// (and, over shared memory, a segment's memfd until it is mapped), the
/// store holds its files, and sockets still in the handshake hold theirs:
/// at the defaults (1024 connections, 1024 in the handshake) that is over
/// 2048, while the usual soft limit is 1024 and the hard one far higher.
/// Done by the `hearth serve` binary, not the library: an embedding app
/// owns its process's limits. Failing (a hard limit of "unlimited" that
/// the kernel will not take as a soft one) keeps the limit as it is.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        tracing::debug!(limit = soft, "open file descriptor limit");
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::debug!(
            from = soft,
            to = hard,
            "raised the open file descriptor limit"
        ),
        Err(e) => tracing::debug!(
            limit = soft,
            hard,
            error = %e,
            "could not raise the open file descriptor limit; keeping it"
        ),
    }
}

/// `--exit-with-parent`: asks the kernel to send SIGTERM when the parent
/// dies, which then stops the server like any SIGTERM. Called after the
/// stop signals are installed, so the signal is never fatal. A parent that
/// died before the request is caught by comparing the parent pid.
#[cfg(target_os = "linux")]
fn exit_with_parent() -> Result<()> {
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(|e| {
        CliError::Io {
            action: "ask for a signal on the death of",
            path: "the parent process".into(),
            source: e.into(),
            hint: "run without --exit-with-parent and stop the server yourself",
        }
    })?;
    if nix::unistd::getppid() != parent {
        // The parent is already gone: stop now, as the signal would have.
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).map_err(|e| CliError::Io {
            action: "signal",
            path: "this process".into(),
            source: e.into(),
            hint: "the parent that started the server has exited",
        })?;
    }
    Ok(())
}

/// `--exit-with-parent` needs the Linux parent-death signal.
#[cfg(not(target_os = "linux"))]
fn exit_with_parent() -> Result<()> {
    Err(CliError::input(
        "--exit-with-parent works on Linux only; stop the server yourself with SIGTERM",
    ))
}

/// Logs how `--ipc`, `HEARTH_IPC` and `PLURESDB_IPC` were taken: `serve`
/// always serves its channel, so they change nothing; a value that is not
/// a boolean is reported (and ignored) rather than silently misread.
fn note_ipc_mode(flag: bool) {
    for var in ["HEARTH_IPC", "PLURESDB_IPC"] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => {
                tracing::debug!(var, "IPC requested by the environment");
            }
            "" | "0" | "false" | "no" | "off" => tracing::info!(
                var,
                %value,
                "serve always serves its channel over IPC; this setting changes nothing"
            ),
            _ => tracing::warn!(
                var,
                %value,
                "not a boolean (true/false); ignored — serve always serves its channel over IPC"
            ),
        }
    }
    if flag {
        tracing::debug!("--ipc given (serve always serves its channel over IPC)");
    }
}

/// Prints the ready line on stdout and flushes it. A stdout nobody reads
/// (closed pipe) is logged, not fatal: the server still serves.
fn announce_on_stdout(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "could not print the ready line on standard output");
    }
}

/// The `--ready-fd` descriptor, taken over at start.
struct ReadyFd {
    fd: i32,
    file: File,
}

impl ReadyFd {
    /// Opens descriptor `fd` for appending through `/proc/self/fd` (no
    /// `unsafe` needed), then closes the inherited number: from here on the
    /// opened file is the only reference this process holds. Non-blocking,
    /// so a pipe whose reader is gone fails instead of hanging.
    fn adopt(fd: i32) -> Result<ReadyFd> {
        let path = format!("/proc/self/fd/{fd}");
        let file = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| {
                CliError::input(format!(
                    "--ready-fd {fd}: descriptor {fd} cannot be opened for writing ({e}); pass the write end of a pipe, a FIFO or a file open on descriptor {fd}"
                ))
            })?;
        // The descriptor number was inherited and nothing else in this
        // process uses it: closing it cannot pull a file from under anyone.
        if let Err(e) = nix::unistd::close(fd) {
            tracing::warn!(fd, error = %e, "could not close the inherited --ready-fd descriptor");
        }
        Ok(ReadyFd { fd, file })
    }

    /// Writes the ready line and closes the descriptor, so a supervisor
    /// reading it sees the line and then end of file.
    fn announce(mut self, line: &str) -> Result<()> {
        let fd = self.fd;
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|source| CliError::Io {
                action: "write the ready line to",
                path: format!("--ready-fd {fd}").into(),
                source,
                hint: "the supervisor may have closed its end",
            })
    }
}
