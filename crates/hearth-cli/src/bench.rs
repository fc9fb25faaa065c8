//! `hearth bench`: benchmarks that print numbers (never pass/fail on time).
//!
//! Owns: the benchmark workloads, their percentiles and the baselines run
//! beside them in the same process. Must never: assert a wall-clock time.

use clap::{Args, Subcommand};

/// Arguments of `hearth bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) what: BenchWhat,
}

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchWhat {
    /// The embedded store: put, get, list, query, search, both durability modes.
    Store {
        /// Number of documents.
        #[arg(long, default_value_t = 100_000)]
        docs: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a benchmark.
pub(crate) fn run(args: BenchArgs) -> Result<(), hearth_store::StoreError> {
    match args.what {
        BenchWhat::Store { .. } => Err(hearth_store::StoreError::Unavailable(
            "the store benchmark is not written yet".into(),
        )),
    }
}
