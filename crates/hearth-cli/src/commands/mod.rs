//! The subcommands: one function per command, dispatched from here.
//!
//! Owns: which command runs and with what. Must never: print errors or choose
//! exit codes (`main` does), open the store for a command that failed
//! validation of its own input, or open the data directory when a channel
//! names the server that holds it.

mod admin;
mod channel;
mod docs;
mod io;
mod read;
mod serve;

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
        Command::Repair => {
            if let Some(channel) = g.resolve_channel()? {
                return Err(CliError::input(format!(
                    "repair works on the data directory itself, not over a channel; stop the server on channel {channel:?}, then run `hearth repair --data-dir DIR` without --channel (and with HEARTH_CHANNEL unset)"
                )));
            }
            admin::repair(g, out)
        }
        Command::Bench(args) => crate::bench::run(args, g),
        Command::Serve(args) => serve::serve(g, &args),
        Command::Watch { prefix, from_seq } => channel::watch(g, out, prefix, from_seq),
        Command::Wait => channel::wait(g, out),
        Command::Call { name, payload } => channel::call(g, out, &name, payload.as_deref()),
        Command::Publish { topic, payload } => channel::publish(g, out, &topic, payload.as_deref()),
        Command::Subscribe { pattern } => channel::subscribe(g, out, &pattern),
    }
}
