//! The command line of `hearth`: every flag, subcommand and default.
//!
//! Owns: the clap definitions and the resolution of the data directory, the
//! channel (`--channel`, else `HEARTH_CHANNEL`), timeouts and store options
//! from them. Must never: open the store, connect to a server, read
//! documents or print anything; parsing has no side effects.

use crate::bench::BenchArgs;
use crate::error::{CliError, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hearth_proto::{DEFAULT_MAX_DOC_BYTES, Limits};
use hearth_store::{Durability, Options};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Talk to the hearth server on this channel instead of opening the data
    /// directory [default: $HEARTH_CHANNEL]. `serve` serves it.
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) channel: Option<String>,
    /// How long to wait for the server: per call for commands over a
    /// channel (default 30s), in total for `wait` (default 10s). `500ms`,
    /// `5s`, `2m`; a bare number is seconds.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// The directory of channel sockets, for servers and clients that do
    /// not share `$XDG_RUNTIME_DIR` [default: $HEARTH_SOCKET_DIR, else
    /// `$XDG_RUNTIME_DIR/hearth`, else `/tmp/hearth-$UID`]. Created 0700;
    /// refused when another user owns it or others can open it.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) socket_dir: Option<PathBuf>,
}

/// `--durability` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Acknowledge once the journal write returns (survives kill -9).
    Journal,
    /// Also fdatasync before acknowledging (survives power loss).
    Fsync,
}

impl From<DurabilityArg> for Durability {
    fn from(arg: DurabilityArg) -> Durability {
        match arg {
            DurabilityArg::Journal => Durability::Journal,
            DurabilityArg::Fsync => Durability::Fsync,
        }
    }
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
    /// Serve the data directory on a channel until SIGTERM or SIGINT.
    ///
    /// Prints one line `ready channel=NAME socket=PATH pid=PID` on standard
    /// output once it accepts connections. Logs go to standard error
    /// (`HEARTH_LOG` or `RUST_LOG`, default `info`).
    Serve(ServeArgs),
    /// Print each change as it commits (needs --channel); stops on
    /// SIGINT/SIGTERM, or when the server shuts down.
    Watch {
        /// Only ids starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Start at this sequence number instead of now (0: the whole
        /// change log).
        #[arg(long, value_name = "SEQ")]
        from_seq: Option<u64>,
    },
    /// Wait until the server on --channel answers (exit 0), or --timeout
    /// passes (exit 4).
    Wait,
    /// Call a custom handler of the server by name (needs --channel).
    Call {
        /// The handler, e.g. `one-core:storage:get`.
        name: String,
        /// Its payload: any JSON value, or `-` to read it from stdin
        /// [default: null].
        #[arg(value_name = "JSON")]
        payload: Option<String>,
    },
    /// Publish an event on a topic (needs --channel).
    Publish {
        /// The topic, e.g. `one-core:event:syncProgress`.
        topic: String,
        /// Its payload: any JSON value, or `-` to read it from stdin
        /// [default: null].
        #[arg(value_name = "JSON")]
        payload: Option<String>,
    },
    /// Print events published on topics matching a pattern (needs
    /// --channel); stops like `watch`.
    Subscribe {
        /// A topic pattern: `one-core:event:*`, or `*` for every topic.
        pattern: String,
    },
}

/// Arguments of `hearth serve`. The channel (`--channel` or
/// `HEARTH_CHANNEL`), `--data-dir`, `--durability` and `--max-doc-bytes`
/// are the global flags.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Serve over IPC. Accepted for PluresDB launch scripts: `serve` always
    /// serves its channel (so do `HEARTH_IPC=true` and `PLURESDB_IPC=true`).
    #[arg(long)]
    pub(crate) ipc: bool,
    /// Also write the ready line to this file descriptor (3 or more), then
    /// close it; for supervisors.
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(3..))]
    pub(crate) ready_fd: Option<i32>,
    /// Largest frame accepted from a client, header included [default:
    /// 32 MiB + 24; at least 64 KiB].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_frame_bytes: Option<u32>,
    /// Longest message (a request, joined from frames flagged MORE) accepted
    /// [default: 32 MiB; at least 64 KiB]. Clients are told in the
    /// handshake (protocol 2): hearth's Rust and Node clients then send
    /// requests up to it and refuse longer ones before sending (`too_large`).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(65536..))]
    pub(crate) max_message_bytes: Option<u64>,
    /// Most bytes all connections together may hold in messages split into
    /// frames flagged MORE whose last frame has not come [default: 256 MiB,
    /// or room for two requests of --max-message-bytes if more; at least --max-message-bytes
    /// plus 128]; a frame past it ends its connection (`unavailable`). A
    /// split message must also be completed within the stall timeout (10 s).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_partial_bytes: Option<u64>,
    /// Most requests one connection may have in flight [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_in_flight: Option<u32>,
    /// Most open connections [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: Option<u64>,
    /// Most open connections of one client process (by the pid the socket
    /// reports), so that one process cannot take them all [default: 256].
    /// More are refused with `unavailable` (`process_limit: …`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections_per_process: Option<u64>,
    /// Most connections of one client process that may be in the
    /// handshake at once (accepted, hello not complete) [default: 16]; a
    /// further one has 1 s for its hello, then is closed (at once beyond
    /// twice the limit), so that sockets that never speak cannot use up
    /// the server's file descriptors.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_handshakes_per_process: Option<u64>,
    /// Most connections of all processes that may be in the handshake at
    /// once [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_handshakes: Option<u64>,
    /// Most subscriptions (change and topic) of all the connections of one
    /// client process [default: 4096]; more are refused with
    /// `rate_limited`. Every change and published event costs the server
    /// work for each subscription.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_subscriptions_per_process: Option<u64>,
    /// Most subscriptions (change and topic) of all connections [default:
    /// 16384]; more are refused with `unavailable`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_server_subscriptions: Option<u64>,
    /// Most `list`, `query` and `search` streams of one connection that
    /// produce on the server's thread pool at once [default: 4]; the others
    /// wait, holding no thread. A producer holds its thread while its
    /// client does not read.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_running_streams: Option<u64>,
    /// The same for all the connections of one client process [default:
    /// 32].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_running_streams_per_process: Option<u64>,
    /// The same for all connections [default: 256, half the thread pool,
    /// so that writes, publishes and handlers keep the other half].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_server_running_streams: Option<u64>,
    /// Limit calls of a handler or operation: `NAME=PER_SEC[/BURST]`, e.g.
    /// `one-core:login=5/10` or `put=1000`; repeatable. BURST defaults to
    /// PER_SEC rounded up.
    #[arg(long, value_name = "NAME=PER_SEC[/BURST]", value_parser = parse_rate_limit)]
    pub(crate) rate_limit: Vec<RateLimit>,
    /// Stop (as on SIGTERM) when the process that started this server dies,
    /// even by SIGKILL, so that a crashed app leaves no server behind
    /// (Linux: the parent-death signal; the parent is the thread that
    /// spawned the server).
    #[arg(long)]
    pub(crate) exit_with_parent: bool,
    /// Bytes of each of a shared-memory connection's two rings: a power of
    /// two from 4096 to 67108864 [default: 262144]. Larger rings take more
    /// pipelined requests and larger messages in one piece; each connection
    /// maps two (resident once used). Also the most a client may ask for.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_bytes)]
    pub(crate) shm_ring_bytes: Option<usize>,
    /// Offer no shared memory: every connection stays on the Unix socket
    /// (clients choose the same for themselves with HEARTH_TRANSPORT=socket).
    #[arg(long, conflicts_with = "shm_ring_bytes")]
    pub(crate) no_shm: bool,
}

/// Parses `--shm-ring-bytes` (and `hearth bench --ring-bytes`): a power of
/// two within the rings' range.
pub(crate) fn parse_ring_bytes(s: &str) -> std::result::Result<usize, String> {
    use hearth_ipc::transport::shm::{DEFAULT_RING_BYTES, MAX_RING_BYTES, ring_bytes};
    let min = ring_bytes(0);
    let advice = format!(
        "give a power of two from {min} to {MAX_RING_BYTES} bytes, e.g. {} (1 MiB); the default is {DEFAULT_RING_BYTES}",
        1 << 20
    );
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes; {advice}"))?;
    if !(min..=MAX_RING_BYTES).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} bytes cannot be a ring; {advice}"));
    }
    Ok(n)
}

/// One `--rate-limit NAME=PER_SEC[/BURST]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateLimit {
    /// The handler or operation name.
    pub(crate) name: String,
    /// Calls per second, on average.
    pub(crate) per_second: f64,
    /// Calls allowed at once after a quiet spell.
    pub(crate) burst: u32,
}

/// Parses `NAME=PER_SEC[/BURST]`.
fn parse_rate_limit(s: &str) -> std::result::Result<RateLimit, String> {
    let shape = "write NAME=PER_SEC[/BURST], e.g. one-core:login=5/10";
    let Some((name, rate)) = s.rsplit_once('=') else {
        return Err(format!("{s:?} has no '='; {shape}"));
    };
    if name.is_empty() {
        return Err(format!("{s:?} has no name before '='; {shape}"));
    }
    let (per_sec, burst) = match rate.split_once('/') {
        Some((p, b)) => (p, Some(b)),
        None => (rate, None),
    };
    let per_second: f64 = per_sec
        .parse()
        .ok()
        .filter(|p: &f64| p.is_finite() && *p > 0.0)
        .ok_or_else(|| {
            format!("{per_sec:?} is not a positive number of calls per second; {shape}")
        })?;
    let burst = match burst {
        Some(b) => b
            .parse::<u32>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("{b:?} is not a positive whole burst; {shape}"))?,
        // Truncation is intended: the rate is positive and finite, and any
        // rate above u32::MAX saturates.
        None => per_second.ceil().min(f64::from(u32::MAX)) as u32,
    };
    Ok(RateLimit {
        name: name.to_string(),
        per_second,
        burst: burst.max(1),
    })
}

/// Parses a duration: `250ms`, `5s`, `1.5s`, `2m`, `1h`; a bare number is
/// seconds. Longer than [`hearth_ipc::MAX_TIMEOUT`] (100 years) counts as
/// that, like every timeout hearth keeps, so that no deadline overflows the
/// clock.
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{s:?} has an unknown unit {other:?}; write e.g. 500ms, 5s, 2m or 1h"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 500ms, 5s, 2m or 1h"))?;
    Duration::try_from_secs_f64(n * scale)
        .map(|d| d.min(hearth_ipc::MAX_TIMEOUT))
        .map_err(|_| format!("{s:?} is out of range; write e.g. 500ms, 5s, 2m or 1h"))
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
    /// The channel to talk to: `--channel`, else `$HEARTH_CHANNEL`; `None`
    /// means "open the data directory here". The name is checked.
    pub(crate) fn resolve_channel(&self) -> Result<Option<String>> {
        let name = match &self.channel {
            Some(name) => name.clone(),
            None => match std::env::var("HEARTH_CHANNEL") {
                Ok(name) if !name.is_empty() => name,
                Ok(_) | Err(std::env::VarError::NotPresent) => return Ok(None),
                Err(std::env::VarError::NotUnicode(raw)) => {
                    return Err(CliError::input(format!(
                        "HEARTH_CHANNEL={raw:?} is not a valid channel name; channel names are 1 to 100 characters from A-Z a-z 0-9 . _ -"
                    )));
                }
            },
        };
        hearth_ipc::validate_channel_name(&name)?;
        Ok(Some(name))
    }

    /// The channel, for a command that only works over one.
    pub(crate) fn require_channel(&self, command: &str) -> Result<String> {
        self.resolve_channel()?.ok_or_else(|| {
            CliError::input(format!(
                "`hearth {command}` talks to a server: give --channel NAME (or set HEARTH_CHANNEL), and start the server with `hearth serve --channel NAME --data-dir DIR`"
            ))
        })
    }

    /// The socket directory: `--socket-dir`, else `$HEARTH_SOCKET_DIR`, else
    /// `None` (hearth-ipc's default).
    pub(crate) fn resolve_socket_dir(&self) -> Option<PathBuf> {
        self.socket_dir.clone().or_else(|| {
            std::env::var_os("HEARTH_SOCKET_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        })
    }

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
            durability: self.durability.into(),
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

    #[test]
    fn durations_take_a_unit_or_default_to_seconds() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("10000000000000000000s"),
            Ok(hearth_ipc::MAX_TIMEOUT),
            "past 100 years: kept at the longest timeout"
        );
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn a_duration_without_a_number_or_with_an_unknown_unit_is_refused() {
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn rate_limits_take_a_name_a_rate_and_an_optional_burst() {
        let r = parse_rate_limit("one-core:login=5/10").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.name.as_str(), r.per_second, r.burst),
            ("one-core:login", 5.0, 10)
        );
        let r = parse_rate_limit("put=2.5").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.per_second, r.burst), (2.5, 3));
    }

    #[test]
    fn ring_sizes_are_powers_of_two_within_the_rings_range() {
        assert_eq!(parse_ring_bytes("4096"), Ok(4096));
        assert_eq!(parse_ring_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_ring_bytes("67108864"), Ok(64 << 20));
        for bad in ["", "1MiB", "-4096", "5000", "2048", "134217728", "0"] {
            let e = parse_ring_bytes(bad).unwrap_err();
            assert!(e.contains("power of two from 4096"), "{bad}: {e}");
        }
    }

    #[test]
    fn malformed_rate_limits_are_refused() {
        for bad in [
            "put", "=5", "put=0", "put=x", "put=5/0", "put=5/x", "put=-1",
        ] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serve_takes_the_pluresdb_flags_in_any_order() {
        let cli = Cli::try_parse_from([
            "hearth",
            "serve",
            "--ipc",
            "--channel",
            "my-app",
            "--data-dir",
            "./data",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.global.channel.as_deref(), Some("my-app"));
        assert!(matches!(
            cli.command,
            Command::Serve(ServeArgs { ipc: true, .. })
        ));
    }

    #[test]
    fn the_ready_fd_must_not_be_a_standard_stream() {
        for fd in ["0", "1", "2"] {
            assert!(Cli::try_parse_from(["hearth", "serve", "--ready-fd", fd]).is_err());
        }
        assert!(Cli::try_parse_from(["hearth", "serve", "--ready-fd", "3"]).is_ok());
    }
}
