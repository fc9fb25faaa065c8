//! The channel benchmark from the command line: get and put over shared
//! memory and the socket, idle cost, server memory, Redis when present.
//!
//! ```text
//! cargo bench -p hearth-ipc --bench channel -- [--transport shm|socket|both]
//!     [--clients N[,N…]] [--rounds N] [--ops N] [--doc-bytes N] [--idle-clients N]
//!     [--idle-secs S] [--ring-bytes N] [--no-put] [--no-redis] [--in-process]
//!     [--client-processes] [--json]
//! ```
//!
//! Owns: argument parsing and printing only; the measuring is
//! `hearth_ipc::bench`. Must never: assert on time. Under `cargo test` (no
//! `--bench` argument) it runs a tiny smoke configuration.

use hearth_ipc::bench::{Options, ServerMode, Transport, run, serve_if_child};

fn main() {
    if serve_if_child() {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Options::default();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test` runs bench targets without `--bench`: a smoke run.
        opts.ops = 200;
        opts.idle_clients = 2;
        opts.idle_secs = 0.1;
        opts.redis = false;
        opts.paused_gets = 3;
        opts.pause = std::time::Duration::from_millis(1);
    }
    let mut json = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .cloned()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--transport" => {
                opts.transports = Transport::parse_list(&value("--transport"))
                    .expect("--transport is shm, socket or both");
            }
            "--clients" => {
                opts.clients = value("--clients")
                    .split(',')
                    .map(|n| n.parse().expect("numbers, comma-separated"))
                    .collect();
            }
            "--rounds" => opts.rounds = value("--rounds").parse().expect("a number"),
            "--ops" => opts.ops = value("--ops").parse().expect("a number"),
            "--doc-bytes" => opts.doc_bytes = value("--doc-bytes").parse().expect("a number"),
            "--idle-clients" => {
                opts.idle_clients = value("--idle-clients").parse().expect("a number");
            }
            "--idle-secs" => opts.idle_secs = value("--idle-secs").parse().expect("seconds"),
            "--ring-bytes" => {
                opts.ring_bytes = Some(value("--ring-bytes").parse().expect("a number"));
            }
            "--paused-gets" => {
                opts.paused_gets = value("--paused-gets").parse().expect("a number");
            }
            "--pause-ms" => {
                opts.pause = std::time::Duration::from_millis(
                    value("--pause-ms").parse().expect("milliseconds"),
                );
            }
            "--no-redis" => opts.redis = false,
            "--no-put" => opts.puts = false,
            "--in-process" => opts.server = ServerMode::InProcess,
            "--client-processes" => opts.client_processes = true,
            "--json" => json = true,
            _ => {}
        }
    }
    match run(&opts, |line| eprintln!("… {line}")) {
        Ok(report) if json => println!("{}", report.to_json()),
        Ok(report) => print!("{}", report.to_text()),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
