//! The `hearth` binary: parse the command line, run one command, exit.
//!
//! Owns: process setup (logging to stderr, filtered by `HEARTH_LOG`, else
//! `RUST_LOG`), the mapping of every failure to a message and an exit code
//! (0 ok, 1 not found, 2 bad input, 3 store or I/O failure, 4 no server
//! answering on the channel). Must never: panic on anything the user, the
//! disk or a server can cause, or exit 0 after a failure.

mod args;
mod bench;
mod commands;
mod db;
mod error;
mod open;
mod output;
mod signals;

use args::{Cli, Command};
use clap::Parser;
use clap::error::ErrorKind;
use error::{CliError, EXIT_BAD_INPUT};
use std::io::IsTerminal;
use std::process::ExitCode;

/// The process's allocator: mimalloc. A server allocates a request on one
/// thread and frees it on another (ring thread → applier, runtime →
/// writer); glibc's per-thread arenas handle that producer-consumer
/// pattern poorly (slow `_int_malloc` on fragmented bins, arena trimming
/// churn), mimalloc's per-thread free lists are built for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (and its children),
/// before the first request can fault one in.
///
/// mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`),
/// so a heap that grows by 2 MiB faults in, and zeroes, a whole huge page
/// at once, on whichever thread allocates: a server's ring thread growing a
/// queue stalled for 0.2 ms (memory the kernel had handed out before) to
/// 2.7 ms (fresh memory on a VM, faulted in on the host too) in the middle
/// of a microsecond round trip. Small pages spread that cost over many
/// 2–3 µs faults.
fn no_huge_pages() {
    // Ignored on failure (a kernel without the flag): huge pages only cost
    // latency, and logging is not set up yet to say so.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

fn main() -> ExitCode {
    no_huge_pages();
    // `hearth bench --transport …` runs its server as this binary started
    // again with HEARTH_BENCH_SERVE set: serve and stop here in that case.
    if hearth_ipc::bench::serve_if_child() {
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let json = cli.global.json;
    // A server's log is its running commentary; other commands only warn.
    let default_log = match (&cli.command, json) {
        (_, true) => "off",
        (Command::Serve(_), false) => "info",
        (_, false) => "warn",
    };
    init_logging(json, default_log);
    let mut out = output::Output::new(json);
    let result = commands::run(cli, &mut out).and_then(|()| out.flush());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`hearth list | head`): not an error.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::debug!(error = ?e, "command failed");
            output::print_error(json, &e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Reports a command-line error: clap's own text (exit 2), or a JSON error
/// when `--json` was given; help and version print normally.
fn usage_error(e: clap::Error) -> ExitCode {
    let wants_json = std::env::args_os().any(|a| a == "--json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !wants_json || informational {
        e.exit();
    }
    let rendered = e.render().to_string();
    let message = rendered
        .trim()
        .strip_prefix("error: ")
        .unwrap_or(rendered.trim())
        .replace('\n', " ");
    output::print_error(true, &CliError::input(message));
    ExitCode::from(EXIT_BAD_INPUT)
}

/// Logs to stderr, filtered by `HEARTH_LOG`, else `RUST_LOG`, else
/// `default` (`warn`, `info` for `serve`, `off` in `--json` mode so that
/// stderr carries only JSON).
fn init_logging(json: bool, default: &str) {
    use tracing_subscriber::EnvFilter;
    let spec = ["HEARTH_LOG", "RUST_LOG"].into_iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| (var, s))
    });
    let filter = match spec {
        Some((var, spec)) => match EnvFilter::try_new(&spec) {
            Ok(f) => f,
            Err(e) => {
                output::print_notice(
                    json,
                    "bad_log_filter",
                    &format!("{var}={spec:?} is not a valid filter ({e}); using {default:?}"),
                    serde_json::Value::Null,
                );
                EnvFilter::new(default)
            }
        },
        None => EnvFilter::new(default),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
