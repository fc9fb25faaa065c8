//! The command line of `hearth`: every flag, subcommand and default.
//!
//! Owns: the clap definitions and the resolution of the data directory and
//! store options from them. Must never: open the store, read documents or
//! print anything; parsing has no side effects.

use crate::bench::BenchArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hearth_proto::{DEFAULT_MAX_DOC_BYTES, Limits};
use hearth_store::{Durability, Options};
use std::path::PathBuf;

/// hearth: a local-first document database.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The data directory [default: $HEARTH_DATA_DIR, else the platform data
    /// directory + /hearth, else ./hearth-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON value per result (JSON Lines for
    /// list, query, search and export); errors as JSON on stderr.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// How durable an acknowledged write is: `journal` survives a crash of
    /// the process, `fsync` also a power loss.
    #[arg(long, global = true, value_enum, default_value_t = DurabilityArg::Journal)]
    pub(crate) durability: DurabilityArg,
    /// The largest document accepted, in bytes of its JSON text.
    #[arg(
        long,
        global = true,
        value_name = "BYTES",
        visible_alias = "max-document-size",
        default_value_t = DEFAULT_MAX_DOC_BYTES,
        value_parser = parse_max_doc_bytes
    )]
    pub(crate) max_doc_bytes: usize,
}

/// `--durability` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Acknowledge once the journal write returns (survives kill -9).
    Journal,
    /// Also fdatasync before acknowledging (survives power loss).
    Fsync,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Store a document, replacing any document with the same id.
    Put {
        /// Document id (1..=512 bytes, no NUL), e.g. `user:1`.
        id: String,
        /// The document: a JSON object, or `-` to read it from stdin.
        #[arg(value_name = "JSON")]
        document: String,
    },
    /// Merge top-level fields into a document (a `null` field removes it).
    Patch {
        /// Document id.
        id: String,
        /// The fields: a JSON object, or `-` to read it from stdin.
        #[arg(value_name = "JSON")]
        document: String,
    },
    /// Print a document.
    Get {
        /// Document id.
        id: String,
    },
    /// Delete a document.
    Delete {
        /// Document id.
        id: String,
    },
    /// List documents in id order.
    List {
        /// Only ids starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only documents whose `type` field is this string.
        #[arg(long = "type", value_name = "TYPE")]
        type_name: Option<String>,
        /// At most this many documents.
        #[arg(long)]
        limit: Option<usize>,
        /// Only ids after this one (the last id of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// Documents whose top-level fields equal the given values.
    Query {
        /// `FIELD=VALUE` filters, all of which must match; VALUE is parsed as
        /// JSON when it parses (`age=30`, `active=true`), else taken as a
        /// string (`name=Alice`).
        #[arg(required = true, value_name = "FIELD=VALUE")]
        filters: Vec<String>,
        /// At most this many documents.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Full-text search over string values, best matches first.
    Search {
        /// The words to search for (all must match; the last also as a prefix).
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<String>,
        /// At most this many results.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Import documents from JSON Lines: one `{"id": "…", "data": {…}}` per line.
    Import {
        /// The file to read, or `-` for stdin.
        file: PathBuf,
    },
    /// Export every document as JSON Lines: one `{"id": "…", "data": {…}}` per line.
    Export {
        /// The file to write (replaced if it exists); stdout when omitted.
        file: Option<PathBuf>,
    },
    /// Counters and sizes of the data directory.
    Stats,
    /// Open a damaged data directory, keeping everything before the damage
    /// and setting the rest of the journal aside.
    Repair,
    /// Run benchmarks.
    Bench(BenchArgs),
}

/// Parses `--max-doc-bytes`: 1 byte to 1 GiB.
fn parse_max_doc_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if n == 0 || n > 1 << 30 {
        return Err(format!(
            "{n} is out of range; give 1 to {} bytes",
            1u64 << 30
        ));
    }
    Ok(n)
}

impl GlobalArgs {
    /// The data directory: `--data-dir`, else `$HEARTH_DATA_DIR`, else the
    /// platform data directory + `/hearth`, else `./hearth-data`.
    pub(crate) fn resolve_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        if let Some(dir) = std::env::var_os("HEARTH_DATA_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        match dirs::data_dir() {
            Some(base) => base.join("hearth"),
            None => PathBuf::from("hearth-data"),
        }
    }

    /// Store options from the flags.
    pub(crate) fn store_options(&self) -> Options {
        Options {
            durability: match self.durability {
                DurabilityArg::Journal => Durability::Journal,
                DurabilityArg::Fsync => Durability::Fsync,
            },
            limits: self.limits(),
            ..Options::default()
        }
    }

    /// Document limits from the flags.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_doc_bytes: self.max_doc_bytes,
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["hearth", "get", "a", "--json", "--data-dir", "/x"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.global.json);
        assert_eq!(cli.global.data_dir, Some(PathBuf::from("/x")));
    }

    #[test]
    fn json_flag_and_json_argument_of_put_do_not_collide() {
        let cli = Cli::try_parse_from(["hearth", "--json", "put", "a", "{}"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.global.json);
        assert!(matches!(cli.command, Command::Put { document, .. } if document == "{}"));
    }

    #[test]
    fn an_explicit_data_dir_wins_over_everything() {
        let cli = Cli::try_parse_from(["hearth", "--data-dir", "/d", "stats"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.global.resolve_data_dir(), PathBuf::from("/d"));
    }

    #[test]
    fn max_doc_bytes_zero_is_refused() {
        assert!(Cli::try_parse_from(["hearth", "--max-doc-bytes", "0", "stats"]).is_err());
    }
}
