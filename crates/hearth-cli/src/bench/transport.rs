//! `hearth bench --transport shm|socket|both`: the transports side by side.
//!
//! Owns: the flags of the transport benchmark and printing its report;
//! the measuring (get and put latency percentiles, ops/s, CPU time, the
//! ratios between transports and to Redis, gets after a pause, idle-client
//! CPU, server memory)
//! is `hearth_ipc::bench`, whose server runs as this same binary started
//! again with `HEARTH_BENCH_SERVE` set (see `main`). Must never: assert on
//! time, or leave its server or data behind.

use super::channel::TransportArg;
use crate::error::{CliError, Result};
use clap::Args;
use hearth_ipc::bench::{Options, ServerMode, Transport, run};
use hearth_store::Durability;

/// Flags of `hearth bench` without a subcommand.
#[derive(Debug, Args)]
pub(crate) struct TransportBenchArgs {
    /// Which transports to measure (shared memory first with `both`).
    #[arg(long, value_enum, default_value_t = TransportArg::Both)]
    transport: TransportArg,
    /// Concurrent clients (threads, one connection each; processes with
    /// `--client-processes`); several counts, comma-separated (`1,16`), are
    /// measured in turn and compared (`16 ÷ 1 clients`).
    #[arg(long, default_value = "1", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: Vec<u64>,
    /// How many times the client counts are measured in turn, alternated;
    /// their ratios are the median of the rounds'.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// Calls per phase (get, then put), split across the clients.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    ops: u64,
    /// Approximate bytes of each document's JSON (at most the server's
    /// default document limit, 16 MiB).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=hearth_proto::DEFAULT_MAX_DOC_BYTES as u64))]
    doc_bytes: u64,
    /// Idle clients kept connected to measure idle CPU and server memory
    /// (0 skips).
    #[arg(long, default_value_t = 64)]
    idle_clients: usize,
    /// Seconds the idle clients are watched.
    #[arg(long, default_value_t = 10.0)]
    idle_secs: f64,
    /// Bytes of each shared-memory ring, as `hearth serve
    /// --shm-ring-bytes` takes them: a power of two from 4096 to 67108864
    /// [default: the server's, 262144].
    #[arg(long, value_name = "BYTES", alias = "shm-ring-bytes", value_parser = crate::args::parse_ring_bytes)]
    ring_bytes: Option<usize>,
    /// Measure gets only.
    #[arg(long)]
    no_put: bool,
    /// Skip Redis even when redis-server is installed.
    #[arg(long)]
    no_redis: bool,
    /// Run the server on threads of this process instead of a child process
    /// (server CPU and memory are then not separable).
    #[arg(long)]
    in_process: bool,
    /// Make each client a process of its own (this program run again),
    /// as the windows, workers and helpers of several apps are, instead of
    /// a thread of the benchmark. Each process's phase starts at one
    /// instant of the machine's clock.
    #[arg(long)]
    client_processes: bool,
    /// Gets made one at a time after a pause, on each transport and Redis:
    /// what a desktop app's calls cost when they come now and then, the
    /// server's thread asleep and the machine idle before each (0 skips).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    paused_gets: u64,
    /// Milliseconds the machine is left idle before each of the
    /// `--paused-gets`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pause_ms: u64,
}

/// Runs the transport benchmark; progress on stderr, the report on stdout
/// (one JSON object with the global `--json`); the server it starts keeps
/// writes at the global `--durability`.
pub(crate) fn run_transport(
    args: &TransportBenchArgs,
    json: bool,
    durability: Durability,
) -> Result<()> {
    if !(args.idle_secs.is_finite() && args.idle_secs >= 0.0)
        || std::time::Duration::try_from_secs_f64(args.idle_secs).is_err()
    {
        return Err(CliError::input(format!(
            "--idle-secs {} is not a number of seconds hearth can wait; give e.g. 10 or 0.5",
            args.idle_secs
        )));
    }
    let mut opts = Options {
        transports: match args.transport {
            TransportArg::Shm => vec![Transport::Shm],
            TransportArg::Socket => vec![Transport::Socket],
            TransportArg::Both => vec![Transport::Shm, Transport::Socket],
        },
        // At most 1024 each and 100 rounds (checked by clap): they fit.
        clients: args
            .clients
            .iter()
            .map(|&n| usize::try_from(n).unwrap_or(usize::MAX))
            .collect(),
        rounds: usize::try_from(args.rounds).unwrap_or(1),
        ops: usize::try_from(args.ops).unwrap_or(usize::MAX),
        // At most 16 MiB (checked by clap), so it fits a usize.
        doc_bytes: usize::try_from(args.doc_bytes).unwrap_or(usize::MAX),
        idle_clients: args.idle_clients,
        idle_secs: args.idle_secs,
        redis: !args.no_redis,
        ring_bytes: args.ring_bytes,
        puts: !args.no_put,
        client_processes: args.client_processes,
        durability,
        // At most 100 000 (checked by clap): it fits.
        paused_gets: usize::try_from(args.paused_gets).unwrap_or(usize::MAX),
        pause: std::time::Duration::from_millis(args.pause_ms),
        ..Options::default()
    };
    if args.in_process {
        opts.server = ServerMode::InProcess;
    }
    let report = run(&opts, |line| eprintln!("… {line}"))?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
