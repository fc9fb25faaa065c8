//! The channel benchmark's client processes (`Options::client_processes`):
//! each client a process of its own, as the windows, workers and helpers of
//! several apps are, instead of a thread of the benchmark.
//!
//! Owns: starting the client processes (this program again, with
//! [`CLIENT_ENV`](super::CLIENT_ENV) set), the line protocol on their stdin
//! and stdout, starting a phase in all of them at one instant of the
//! machine's monotonic clock, and turning what they measured back into the
//! benchmark's [`Spent`]. Must never: assert anything about time, or leave a
//! client process behind (each exits when its stdin closes, and is killed
//! when [`Children`] is dropped).
//!
//! The protocol, one line each way per step:
//! - the child connects, then prints `HEARTH_BENCH_READY` (or
//!   `HEARTH_BENCH_FAILED <why>` and exits 2);
//! - the parent sends `<get|put> <calls> <who> <of> <start>`: `<calls>`
//!   calls as client `who` of `of` (its share of the put ids), from
//!   `<start>`, nanoseconds of `CLOCK_MONOTONIC` (one clock for every
//!   process of the machine);
//! - the child answers `DONE <cpu seconds> <first call's start>` as soon
//!   as its calls are over (or `ERR <why>`);
//! - once every child has, the parent sends each `send`, and the child
//!   answers a line with its calling thread's context switches over the
//!   phase (or `-`), one of each call's latency and one of each answer's
//!   time (nanoseconds, space-separated). (Sent as each child finished, a
//!   100,000-call phase's megabytes went through the pipe 64 KiB at a
//!   time while the other clients still called, the parent and that
//!   child waking each other a thousand times a second on their cores;
//!   rendered, or the switches read from `/proc`, as it finished, they
//!   took the core its successor's turn began on: see [`Figures`].)

use super::{Calls, check_transport, nanos, put_share, thread_switches};
use super::{Op, OpStats, Spent, Target, Transport, Watch, grown, self_cpu};
use crate::error::IpcError;
use crate::{Client, ConnectOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const READY: &str = "HEARTH_BENCH_READY";
const FAILED: &str = "HEARTH_BENCH_FAILED";

/// What the parent sends a child once every child has finished a phase's
/// calls: now its figures.
const SEND: &str = "send";

/// How far ahead of now a phase starts: time for every child to read its
/// line and go to sleep until then.
const START_AHEAD: Duration = Duration::from_millis(30);

/// Nanoseconds of the machine's monotonic clock (what [`Instant`] reads on
/// Linux), comparable between processes.
fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // A monotonic clock is never negative; u64 nanoseconds last 584 years.
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// Turns the monotonic clock's nanoseconds into [`Instant`]s of this
/// process, through one reading of both.
struct Clock {
    at: Instant,
    ns: u64,
}

impl Clock {
    /// Reads both, the monotonic clock on either side of the instant: off
    /// by at most half the time between the two readings.
    fn now() -> Clock {
        let before = mono_ns();
        let at = Instant::now();
        let after = mono_ns();
        Clock {
            at,
            ns: before + (after - before) / 2,
        }
    }

    fn instant(&self, ns: u64) -> Instant {
        if ns >= self.ns {
            self.at + Duration::from_nanos(ns - self.ns)
        } else {
            self.at
                .checked_sub(Duration::from_nanos(self.ns - ns))
                .unwrap_or(self.at)
        }
    }
}

/// One client process.
struct Kid {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Kid {
    fn line(&mut self) -> Result<String, IpcError> {
        let mut line = String::new();
        let n = self
            .out
            .read_line(&mut line)
            .map_err(|e| IpcError::io("reading from a benchmark client process", e))?;
        if n == 0 {
            return Err(IpcError::Protocol(
                "a benchmark client process ended (does the program call bench::serve_if_child first thing?)"
                    .into(),
            ));
        }
        Ok(line.trim_end().to_string())
    }
}

/// The client processes of one client count.
pub(super) struct Children {
    kids: Vec<Kid>,
}

impl Children {
    /// Starts `n` client processes of `program` on `target`'s channel over
    /// `transport`, and returns once each has connected.
    pub(super) fn spawn(
        program: &Path,
        target: &Target,
        transport: Transport,
        n: usize,
        doc_bytes: usize,
    ) -> Result<Children, IpcError> {
        let mut children = Children { kids: Vec::new() };
        for _ in 0..n {
            let mut child = Command::new(program)
                .env(super::CLIENT_ENV, "1")
                .env_remove(super::SERVE_ENV)
                .env("HEARTH_BENCH_CHANNEL", &target.channel)
                .env("HEARTH_BENCH_SOCKET_DIR", &target.socket_dir)
                .env("HEARTH_BENCH_TRANSPORT", transport.name())
                .env("HEARTH_BENCH_DOC_BYTES", doc_bytes.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| IpcError::io("starting a benchmark client process", e))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(IpcError::Protocol(
                    "a benchmark client process has no stdin or stdout".into(),
                ));
            };
            children.kids.push(Kid {
                child,
                stdin,
                out: BufReader::new(stdout),
            });
        }
        // Connecting in parallel; each says when it is done.
        for kid in &mut children.kids {
            let line = kid.line()?;
            if let Some(why) = line.strip_prefix(FAILED) {
                return Err(IpcError::Protocol(format!(
                    "a benchmark client process could not start:{why}"
                )));
            }
            if line != READY {
                return Err(IpcError::Protocol(format!(
                    "a benchmark client process said {line:?} instead of {READY}"
                )));
            }
        }
        Ok(children)
    }

    /// Every child makes `per_client` calls of `op`, all starting at one
    /// instant.
    pub(super) fn phase(
        &mut self,
        op: Op,
        per_client: usize,
        server_pid: Option<u32>,
    ) -> Result<OpStats, IpcError> {
        let n = self.kids.len();
        let start = mono_ns() + nanos(START_AHEAD);
        for (who, kid) in self.kids.iter_mut().enumerate() {
            writeln!(kid.stdin, "{} {per_client} {who} {n} {start}", op.name())
                .and_then(|()| kid.stdin.flush())
                .map_err(|e| IpcError::io("writing to a benchmark client process", e))?;
        }
        let watch = Watch::start(server_pid);
        let clock = Clock::now();
        // Each child's `DONE` line as it finishes (one short line: the
        // others still calling lose nothing to it) ...
        let mut heads = Vec::with_capacity(n);
        for kid in &mut self.kids {
            heads.push(done_line(&kid.line()?)?);
        }
        let watched = watch.stop(heads.iter().map(|h| h.0).sum());
        // ... and only then the figures, every child's calls over.
        let mut spent = Vec::with_capacity(n);
        for (kid, (_, began)) in self.kids.iter_mut().zip(heads) {
            writeln!(kid.stdin, "{SEND}")
                .and_then(|()| kid.stdin.flush())
                .map_err(|e| IpcError::io("writing to a benchmark client process", e))?;
            let switched = switches_line(&kid.line()?)?;
            let samples = numbers(&kid.line()?)?;
            let ends = numbers(&kid.line()?)?;
            spent.push(Spent {
                samples,
                switched,
                began: clock.instant(began),
                ends: ends.into_iter().map(|ns| clock.instant(ns)).collect(),
            });
        }
        Ok(watched.finish(spent))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for kid in &mut self.kids {
            let _ = kid.child.kill();
            let _ = kid.child.wait();
        }
    }
}

/// A child's `DONE <cpu seconds> <began>` line (or its `ERR <why>`): its
/// CPU time and its first call's start.
fn done_line(head: &str) -> Result<(f64, u64), IpcError> {
    if let Some(why) = head.strip_prefix("ERR ") {
        return Err(IpcError::Protocol(format!(
            "a benchmark client process failed: {why}"
        )));
    }
    let bad = || IpcError::Protocol(format!("a benchmark client process said {head:?}"));
    let mut fields = head.strip_prefix("DONE ").ok_or_else(bad)?.split(' ');
    let mut field = || fields.next().ok_or_else(bad);
    let secs: f64 = field()?.parse().map_err(|_| bad())?;
    let began: u64 = field()?.parse().map_err(|_| bad())?;
    if fields.next().is_some() {
        return Err(bad());
    }
    Ok((secs, began))
}

/// A child's line of context switches: a count, or `-` where its system
/// cannot say.
fn switches_line(line: &str) -> Result<Option<u64>, IpcError> {
    match line.trim() {
        "-" => Ok(None),
        n => n.parse().map(Some).map_err(|_| {
            IpcError::Protocol(format!(
                "a benchmark client process sent {line:?} for its context switches"
            ))
        }),
    }
}

fn numbers(line: &str) -> Result<Vec<u64>, IpcError> {
    line.split_ascii_whitespace()
        .map(|n| {
            n.parse()
                .map_err(|_| IpcError::Protocol(format!("a benchmark client process sent {n:?}")))
        })
        .collect()
}

/// The client process's side: connects, then runs the phases it is told
/// to until its stdin closes. Exits 2 if it cannot connect.
pub(super) fn client_main() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let transport = match var("HEARTH_BENCH_TRANSPORT").as_str() {
        "socket" => Transport::Socket,
        _ => Transport::Shm,
    };
    let connected = Client::connect_with(
        ConnectOptions::new(var("HEARTH_BENCH_CHANNEL"))
            .socket_dir(var("HEARTH_BENCH_SOCKET_DIR"))
            .transport(transport.preference()),
    )
    .and_then(|client| check_transport(&client, transport).map(|()| client));
    let client = match connected {
        Ok(client) => client,
        Err(e) => {
            println!("{FAILED} {e}");
            std::process::exit(2);
        }
    };
    let doc_bytes = var("HEARTH_BENCH_DOC_BYTES").parse().unwrap_or(200);
    let calls = Calls::new(doc_bytes);
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{READY}").and_then(|()| out.flush()).is_err() {
        return;
    }
    let mut lines = std::io::stdin().lock().lines();
    let mut say = |text: &str| out.write_all(text.as_bytes()).and_then(|()| out.flush());
    while let Some(Ok(line)) = lines.next() {
        let said = match run_phase(&client, &line, &calls) {
            // The head now; the figures once the parent asks, when every
            // client has finished its calls (a pipe's worth at a time,
            // they would take the cores from the clients still calling).
            Ok((head, figures)) => {
                say(&head).is_ok()
                    && matches!(lines.next(), Some(Ok(send)) if send == SEND)
                    && say(&figures.lines()).is_ok()
            }
            Err(e) => say(&format!("ERR {e}\n")).is_ok(),
        };
        if !said {
            return;
        }
    }
}

/// A phase as the parent asks for it.
#[derive(Debug, PartialEq, Eq)]
struct Phase {
    op: Op,
    calls: usize,
    who: usize,
    of: usize,
    /// When to start: nanoseconds of the monotonic clock.
    start: u64,
}

impl Phase {
    /// Reads `<get|put> <calls> <who> <of> <start>`.
    fn parse(line: &str) -> Result<Phase, IpcError> {
        let bad = || IpcError::Protocol(format!("a phase line the client cannot read: {line:?}"));
        let mut fields = line.split(' ');
        let op = Op::parse(fields.next().unwrap_or("")).ok_or_else(bad)?;
        let mut number = || -> Result<u64, IpcError> {
            fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)
        };
        let mut count = || usize::try_from(number()?).map_err(|_| bad());
        let (calls, who, of) = (count()?, count()?, count()?);
        let start = number()?;
        if who >= of || fields.next().is_some() {
            return Err(bad());
        }
        Ok(Phase {
            op,
            calls,
            who,
            of,
            start,
        })
    }
}

/// Runs the phase `line` asks for; what to answer: the `DONE` line, then
/// the figures.
fn run_phase(client: &Client, line: &str, calls: &Calls) -> Result<(String, Figures), IpcError> {
    let Phase {
        op,
        calls: n,
        who,
        of,
        start,
    } = Phase::parse(line)?;
    let share = put_share(who, of);
    let mut samples = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    let now = mono_ns();
    if start > now {
        std::thread::sleep(Duration::from_nanos(start - now));
    }
    let sw0 = thread_switches();
    let cpu0 = self_cpu();
    let began = mono_ns();
    for i in 0..n {
        let t = mono_ns();
        calls.call(client, op, &share, i)?;
        let ended = mono_ns();
        samples.push(ended - t);
        ends.push(ended);
    }
    let cpu = self_cpu() - cpu0;
    Ok((
        format!("DONE {cpu} {began}\n"),
        Figures { sw0, samples, ends },
    ))
}

/// A client process's figures of a phase, kept as numbers until the
/// parent asks for them, every client's calls over. Rendered right after
/// the last call, a 100,000-call phase's lines took the client ~1 ms of
/// its core while the next client's turn began there (each of fifteen
/// finishing client processes cost its successor 300–600 µs, ~10 % of a
/// 16-process get phase); its context switches, a `/proc` read of 20–80
/// µs, are read then too, as a client thread reads its own once every
/// thread has finished.
struct Figures {
    /// The calling thread's context switches before the phase.
    sw0: Option<u64>,
    samples: Vec<u64>,
    ends: Vec<u64>,
}

impl Figures {
    /// The three lines: the calling thread's context switches since the
    /// phase began (or `-`), each call's latency, each answer's time.
    fn lines(&self) -> String {
        let switched =
            grown(thread_switches(), self.sw0).map_or("-".to_string(), |n| n.to_string());
        let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        format!(
            "{switched}\n{}\n{}\n",
            join(&self.samples),
            join(&self.ends)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_maps_onto_this_processs_instants() {
        let clock = Clock::now();
        let later = clock.instant(clock.ns + 1_500);
        assert_eq!(later - clock.at, Duration::from_nanos(1_500));
        let earlier = clock.instant(clock.ns - 700);
        assert_eq!(clock.at - earlier, Duration::from_nanos(700));
        // One clock: what the monotonic clock says now is now, give or take
        // the moment between the clock's two readings (a second here is
        // only a bound a different clock would miss by years).
        let before = Instant::now();
        let now = clock.instant(mono_ns());
        let after = Instant::now();
        let slack = Duration::from_secs(1);
        assert!(now + slack >= before && now <= after + slack);
    }

    #[test]
    fn a_done_line_gives_cpu_and_start_and_an_err_line_the_reason() {
        assert_eq!(done_line("DONE 0.25 12345").unwrap(), (0.25, 12345));
        let err = done_line("ERR the server went away").unwrap_err();
        assert!(err.to_string().contains("the server went away"), "{err}");
        for bad in [
            "",
            "DONE",
            "DONE x 1",
            "DONE 0.1",
            "DONE 0.1 - 5",
            "DONE 0.1 1 2",
            "READY",
        ] {
            assert!(done_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_line_of_switches_is_a_count_or_a_dash_and_nothing_else() {
        assert_eq!(switches_line("17").unwrap(), Some(17));
        assert_eq!(switches_line("-").unwrap(), None);
        for bad in ["", "x", "-3", "1 2"] {
            let err = switches_line(bad).unwrap_err();
            assert!(
                err.to_string().contains("context switches"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn a_line_of_numbers_that_is_not_one_is_an_error() {
        assert_eq!(numbers("1 22 333").unwrap(), [1, 22, 333]);
        assert_eq!(numbers("").unwrap(), Vec::<u64>::new());
        assert!(numbers("1 x 3").is_err());
        assert!(numbers("-4").is_err());
    }

    #[test]
    fn figures_are_lines_the_parent_reads_back_as_they_were() {
        let figures = Figures {
            sw0: thread_switches(),
            samples: vec![812, 9_031, 77],
            ends: vec![1_000_000_001, 1_000_010_000, 1_000_010_100],
        };
        let text = figures.lines();
        let mut lines = text.lines();
        // A count where /proc says, else "-": either reads back.
        switches_line(lines.next().unwrap()).unwrap();
        assert_eq!(numbers(lines.next().unwrap()).unwrap(), figures.samples);
        assert_eq!(numbers(lines.next().unwrap()).unwrap(), figures.ends);
        assert_eq!(lines.next(), None);
        assert!(text.ends_with('\n'), "{text:?}");
    }

    #[test]
    fn a_phase_line_is_read_as_the_parent_writes_it() {
        assert_eq!(
            Phase::parse("put 625 3 16 123456789").unwrap(),
            Phase {
                op: Op::Put,
                calls: 625,
                who: 3,
                of: 16,
                start: 123_456_789
            }
        );
    }

    #[test]
    fn a_phase_line_the_client_cannot_read_is_refused() {
        for line in [
            "",
            "fetch 1 0 1 0",
            "get x 0 1 0",
            "get 1 0 1",
            "put 1 0 1 -5",
            "get 1 2 2 0",
            "get 1 0 1 0 extra",
        ] {
            let err = Phase::parse(line).unwrap_err();
            assert!(err.to_string().contains("cannot read"), "{line:?}: {err}");
        }
    }
}
