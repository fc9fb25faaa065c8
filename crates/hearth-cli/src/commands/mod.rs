//! The subcommands: one function per command, dispatched from here.
//!
//! Owns: which command runs and with what. Must never: print errors or choose
//! exit codes (`main` does), or open the store for a command that failed
//! validation of its own input.

mod admin;
mod docs;
mod io;
mod read;

use crate::args::{Cli, Command};
use crate::error::{CliError, Result};
use crate::output::Output;

/// Runs the command the command line names.
pub(crate) fn run(cli: Cli, out: &mut Output) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Put { id, document } => docs::put(g, out, &id, &document),
        Command::Patch { id, document } => docs::patch(g, out, &id, &document),
        Command::Get { id } => docs::get(g, out, &id),
        Command::Delete { id } => docs::delete(g, out, &id),
        Command::List {
            prefix,
            type_name,
            limit,
            after,
        } => read::list(
            g,
            out,
            hearth_store::ListOptions {
                prefix,
                type_name,
                limit,
                after,
            },
        ),
        Command::Query { filters, limit } => read::query(g, out, &filters, limit),
        Command::Search { text, limit } => read::search(g, out, &text.join(" "), limit),
        Command::Import { file } => io::import(g, out, &file),
        Command::Export { file } => io::export(g, out, file.as_deref()),
        Command::Stats => admin::stats(g, out),
        Command::Repair => admin::repair(g, out),
        Command::Bench(args) => crate::bench::run(args).map_err(CliError::from),
    }
}
