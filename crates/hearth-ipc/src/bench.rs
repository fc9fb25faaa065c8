//! The channel benchmark: get and put round trips over shared memory and
//! over the socket, side by side, with CPU time, idle cost and server
//! memory. Called by `hearth bench` (the CLI wires its flags to
//! [`Options`]) and by `cargo bench -p hearth-ipc --bench channel`.
//!
//! Owns: measuring — sequential calls from `clients` threads (one
//! connection each), per-call latency percentiles, throughput, CPU time of
//! the client process (`clock_gettime` of the process CPU clock, what
//! `getrusage` sums) and of the server process (`/proc`), context
//! switches of the calling threads and the server's threads (`/proc`),
//! CPU of idle connected clients over a period, the server's resident
//! memory with 1 and many clients, gets one at a time after a pause (each
//! finding the server's thread asleep); optionally Redis `GET` over a Unix
//! socket as a baseline when `redis-server` is installed, measured right
//! after the first transport so that the two are compared within seconds;
//! and, first, the machine's floor (a cache line's round trip between two
//! cores). Must never:
//! assert anything about time (it reports; people judge), or leave a server
//! or a Redis process behind (children die with their stdin).
//!
//! The server runs in a child process by default (so its CPU and memory are
//! its own): the benchmark re-executes the current program with
//! `HEARTH_BENCH_SERVE=1`, and that program must call [`serve_if_child`]
//! first thing in `main`.
//!
//! ```no_run
//! use hearth_ipc::bench::{Options, run, serve_if_child};
//! if serve_if_child() {
//!     return;
//! }
//! let report = run(&Options::default(), |line| eprintln!("{line}")).unwrap();
//! println!("{}", report.to_text());
//! ```

use crate::error::IpcError;
use crate::transport::TransportKind;
use crate::types::TransportPreference;
use crate::{Client, ConnectOptions, Server};
use hearth_store::Durability;
use serde::Serialize;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Environment variable that turns a program into the benchmark's server.
pub const SERVE_ENV: &str = "HEARTH_BENCH_SERVE";

/// Environment variable that turns a program into one of the benchmark's
/// client processes ([`Options::client_processes`]).
pub const CLIENT_ENV: &str = "HEARTH_BENCH_CLIENT";

mod processes;

const READY: &str = "HEARTH_BENCH_READY";

/// Keys read and written.
const KEYS: usize = 1000;

/// A transport to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Shared memory (required: the run fails if it is not available).
    Shm,
    /// The Unix socket (forced).
    Socket,
}

impl Transport {
    /// `shm`, `socket` or `both` (→ both, shared memory first).
    ///
    /// ```
    /// use hearth_ipc::bench::Transport;
    /// assert_eq!(Transport::parse_list("both"), Some(vec![Transport::Shm, Transport::Socket]));
    /// assert_eq!(Transport::parse_list("socket"), Some(vec![Transport::Socket]));
    /// ```
    pub fn parse_list(name: &str) -> Option<Vec<Transport>> {
        match name {
            "shm" | "shared-memory" => Some(vec![Transport::Shm]),
            "socket" => Some(vec![Transport::Socket]),
            "both" => Some(vec![Transport::Shm, Transport::Socket]),
            _ => None,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Shm => "shm",
            Transport::Socket => "socket",
        }
    }

    fn kind(self) -> TransportKind {
        match self {
            Transport::Shm => TransportKind::SharedMemory,
            Transport::Socket => TransportKind::Socket,
        }
    }

    fn preference(self) -> TransportPreference {
        match self {
            Transport::Shm => TransportPreference::SharedMemory,
            Transport::Socket => TransportPreference::Socket,
        }
    }
}

/// Where the server runs.
#[derive(Debug)]
pub enum ServerMode {
    /// A child process: this command (normally the current program) run
    /// with [`SERVE_ENV`] set; it must call [`serve_if_child`].
    Child(Command),
    /// Threads of this process: server CPU and memory are not separable
    /// from the clients'.
    InProcess,
}

/// What to measure.
#[derive(Debug)]
pub struct Options {
    /// Transports, in order.
    pub transports: Vec<Transport>,
    /// Client counts (threads, one connection each), each measured in
    /// turn on every transport for get and put. With several, every other
    /// count's throughput is also given as a ratio to the first's,
    /// measured minutes apart at most (`16 ÷ 1 clients`).
    pub clients: Vec<usize>,
    /// How many times the counts are measured in turn, alternated (at
    /// least once): each count ratio is then the median of the rounds'
    /// ratios, for a machine whose speed moves from minute to minute.
    pub rounds: usize,
    /// Calls per phase (get, then put), split across the clients.
    pub ops: usize,
    /// Approximate bytes of each document's JSON.
    pub doc_bytes: usize,
    /// Idle clients connected for the idle-CPU and memory measurement (0:
    /// skip it).
    pub idle_clients: usize,
    /// How long the idle clients are watched.
    pub idle_secs: f64,
    /// Measure Redis `GET` over a Unix socket too, if `redis-server` is on
    /// the `PATH`.
    pub redis: bool,
    /// Where the server runs.
    pub server: ServerMode,
    /// Bytes of each shared-memory ring (`None`: the server's default).
    pub ring_bytes: Option<usize>,
    /// Measure puts too (gets always).
    pub puts: bool,
    /// Each client a process of its own (this program run again with
    /// [`CLIENT_ENV`] set: it must call [`serve_if_child`] first thing)
    /// instead of a thread of this one: the clients of several apps.
    pub client_processes: bool,
    /// How durable the server's acknowledged writes are: with
    /// [`Durability::Fsync`] every put waits for an `fdatasync`.
    pub durability: Durability,
    /// Gets made one at a time, each after [`pause`](Self::pause), on each
    /// transport (and Redis): what a desktop app's calls cost, made now
    /// and then rather than back to back (0: skip them).
    pub paused_gets: usize,
    /// How long the machine is left idle before each of the
    /// [`paused_gets`](Self::paused_gets).
    pub pause: Duration,
}

impl Default for Options {
    /// Both transports, one client, 100 000 calls, ~200-byte documents, 64
    /// idle clients for 10 s, Redis if present, the server in a child
    /// process (this program).
    fn default() -> Self {
        Options {
            transports: vec![Transport::Shm, Transport::Socket],
            clients: vec![1],
            rounds: 1,
            ops: 100_000,
            doc_bytes: 200,
            idle_clients: 64,
            idle_secs: 10.0,
            redis: true,
            server: match std::env::current_exe() {
                Ok(exe) => ServerMode::Child(Command::new(exe)),
                Err(_) => ServerMode::InProcess,
            },
            ring_bytes: None,
            puts: true,
            client_processes: false,
            durability: Durability::Journal,
            paused_gets: 100,
            pause: Duration::from_millis(10),
        }
    }
}

/// Latency and cost of one kind of call.
#[derive(Debug, Clone, Serialize)]
pub struct OpStats {
    /// Calls measured.
    pub ops: u64,
    /// Wall time of the phase.
    pub secs: f64,
    /// Calls per second, all clients together.
    pub ops_per_sec: f64,
    /// Calls per second while every client was busy (from the moment
    /// the last of them began its first call to the last answer of the
    /// first to finish): the rate of *N busy clients*, without the start,
    /// when some have not called yet, and the end, when some are done.
    /// `None` when there was no such moment (a client finished before
    /// another began).
    pub busy_ops_per_sec: Option<f64>,
    /// Median latency, nanoseconds.
    pub p50_ns: u64,
    /// 90th percentile, nanoseconds.
    pub p90_ns: u64,
    /// 99th percentile, nanoseconds.
    pub p99_ns: u64,
    /// 99.9th percentile, nanoseconds.
    pub p999_ns: u64,
    /// Slowest call, nanoseconds.
    pub max_ns: u64,
    /// CPU seconds of the client process (user + system).
    pub client_cpu_secs: f64,
    /// CPU seconds of the server process (`None` in process).
    pub server_cpu_secs: Option<f64>,
    /// CPU microseconds per call, client and server together.
    pub cpu_us_per_op: f64,
    /// Context switches per call: the calling threads' and every thread
    /// of the server process, voluntary and not (`/proc/…/status`); `None`
    /// where `/proc` cannot say. More sequential clients than cores cost
    /// at least one per call; one client on a free machine, almost none.
    pub switches_per_op: Option<f64>,
    /// Share of the machine's CPU (all cores) used by everything else
    /// while the phase ran, % (other processes, kernel threads, steal): a
    /// busy machine makes every number worse.
    pub others_pct: Option<f64>,
    /// The machine's floor ([`Machine::core_round_trip_ns`]) around this
    /// phase, nanoseconds: measured just before and just after it, the
    /// larger of the two when they agree within 25 %; `None` when they do
    /// not (the machine changed speed while the phase ran) or it could not
    /// be measured. Phases are only comparable at one speed.
    pub floor_ns: Option<u64>,
    /// How the answers were spread among the clients; `None` without an
    /// answer.
    pub spread: Option<Spread>,
}

/// How a phase's answers were spread among its clients, taken in the
/// order they came (by the clients' clocks): in runs to one client at a
/// time — busy clients of one process taking turns on the server's
/// poller (docs/design.md, H3e) — or mixed. It says where a phase of
/// several clients lost against one client's: in the changes from one
/// client to another, or in the calls themselves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Answers that went to another client than the answer before them.
    pub changes: u64,
    /// The time from an answer to the next one when that went to another
    /// client, all together, as a share of the phase, %.
    pub changes_pct: f64,
    /// The median of those times, nanoseconds.
    pub change_p50_ns: u64,
    /// The changes that took [`LONG_CHANGE`] or more: the tail the median
    /// hides (a finishing client's work on the core the next turn began on
    /// once cost ~10 % of a get phase in 15 such changes while the median
    /// stayed ~40 µs).
    pub long_changes: u64,
    /// Those long changes' time, all together, as a share of the phase, %.
    pub long_changes_pct: f64,
    /// Answers that came [`LONG_CHANGE`] or more after the answer before
    /// them, whichever clients the two went to: the phase's pauses — a
    /// slow request on the server (the journal's first write into each
    /// freshly reserved megabyte once took 0.3–1 ms), a thread kept off
    /// its core — with one client as with many.
    pub pauses: u64,
    /// Those pauses' time, all together, as a share of the phase, %.
    pub pauses_pct: f64,
    /// The mean time from an answer to the next when both went to one
    /// client, nanoseconds: a call plus the client's own time before it,
    /// as the client makes them while it runs on its own (with one client,
    /// every call). `None` when no two answers in a row went to one client.
    pub run_call_ns: Option<f64>,
}

/// One transport's results.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `shm`, `socket` or `redis-unix`.
    pub transport: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Gets (Redis: `GET`).
    pub get: OpStats,
    /// Acknowledged puts (Redis: `SET`); `None` if not measured.
    pub put: Option<OpStats>,
}

/// Gets made one at a time after a pause ([`Options::paused_gets`]): the
/// server's thread has gone to sleep and its core idle by then, so each
/// call pays for waking them, as a desktop app's calls mostly do.
#[derive(Debug, Clone, Serialize)]
pub struct Paused {
    /// `shm`, `socket` or `redis-unix`.
    pub transport: String,
    /// Gets measured.
    pub calls: usize,
    /// The pause before each, milliseconds.
    pub pause_ms: f64,
    /// Median latency, nanoseconds.
    pub p50_ns: u64,
    /// 90th percentile, nanoseconds (no 99th: with the default 100 calls
    /// it would be the slowest).
    pub p90_ns: u64,
    /// Slowest call, nanoseconds.
    pub max_ns: u64,
}

/// Idle cost and memory with many connected clients.
#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    /// The transport of the idle clients.
    pub transport: String,
    /// Connected clients.
    pub clients: usize,
    /// Seconds watched.
    pub secs: f64,
    /// CPU of the server process over the period, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// CPU of the client process over the period, % of one core.
    pub client_cpu_pct: f64,
    /// Both, as % of all cores of the machine.
    pub total_pct_of_machine: f64,
    /// What everything else used meanwhile, % of all cores.
    pub others_pct: Option<f64>,
    /// Server resident memory with one client connected, bytes.
    pub server_rss_1: Option<u64>,
    /// Server resident memory with all of them connected, bytes.
    pub server_rss_n: Option<u64>,
}

/// A ratio between two runs.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What is compared.
    pub what: String,
    /// `slower / faster` (for latency) or `faster / slower` (throughput):
    /// how many times better the first is.
    pub times: f64,
    /// For a median of several rounds' ratios: the lowest and the highest
    /// of them (`None` for a single measurement), so that a reader sees how
    /// far one run's rounds disagree before trusting the median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds_range: Option<[f64; 2]>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores available.
    pub cores: usize,
    /// CPU model (from /proc/cpuinfo).
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// A cache line's round trip between two threads spinning on two
    /// cores, measured just before the transports (nanoseconds; none on one
    /// core or when the second thread could not be scheduled): the floor
    /// under any shared-memory call on this machine at that moment. On a
    /// virtual machine it moves with where the host runs the vCPUs.
    pub core_round_trip_ns: Option<u64>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Document size used.
    pub doc_bytes: usize,
    /// Whether the server ran in its own process.
    pub server_in_child: bool,
    /// The server's durability ([`Options::durability`]; `journal` or
    /// `fsync` in JSON).
    pub durability: Durability,
    /// Whether each client was a process of its own (else a thread of the
    /// benchmark's).
    pub client_processes: bool,
    /// Per transport.
    pub runs: Vec<Run>,
    /// Ratios between transports.
    pub ratios: Vec<Ratio>,
    /// Idle clients and memory, per transport.
    pub idle: Vec<Idle>,
    /// Gets after a pause, per transport and Redis (empty when skipped).
    pub paused: Vec<Paused>,
}

/// If this process was started as the benchmark's server, serves until
/// its stdin closes and returns true (then return from `main`); as one of
/// its client processes, makes the calls it is told to until its stdin
/// closes and returns true; otherwise returns false at once.
pub fn serve_if_child() -> bool {
    if std::env::var_os(CLIENT_ENV).is_some() {
        processes::client_main();
        return true;
    }
    if std::env::var_os(SERVE_ENV).is_none() {
        return false;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let mut builder = Server::builder()
        .channel(var("HEARTH_BENCH_CHANNEL"))
        .socket_dir(var("HEARTH_BENCH_SOCKET_DIR"))
        .data_dir(var("HEARTH_BENCH_DATA_DIR"));
    if let Ok(bytes) = var("HEARTH_BENCH_RING_BYTES").parse::<usize>() {
        builder = builder.shm_ring_bytes(bytes);
    }
    if var(DURABILITY_ENV) == Durability::Fsync.name() {
        builder = builder.store_options(store_options(Durability::Fsync));
    }
    let server = match builder.start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("benchmark server: {e}");
            std::process::exit(2);
        }
    };
    println!("{READY}");
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let _ = server.shutdown();
    true
}

/// The environment variable that tells the benchmark's server process its
/// durability (`Durability::name`).
const DURABILITY_ENV: &str = "HEARTH_BENCH_DURABILITY";

/// The benchmark server's store options: the defaults, at `durability`.
fn store_options(durability: Durability) -> hearth_store::Options {
    hearth_store::Options {
        durability,
        ..hearth_store::Options::default()
    }
}

/// A running benchmark server (child or in process) and how to reach it.
struct Target {
    channel: String,
    socket_dir: PathBuf,
    child: Option<(Child, ChildStdin)>,
    in_process: Option<Server>,
    _dirs: Vec<tempfile_dir::Dir>,
}

impl Target {
    fn start(
        mode: &mut ServerMode,
        ring_bytes: Option<usize>,
        durability: Durability,
    ) -> Result<Target, IpcError> {
        let sock = tempfile_dir::Dir::new("sock")?;
        let data = tempfile_dir::Dir::new("data")?;
        let channel = format!("bench-{}", std::process::id());
        let socket_dir = sock.path().join("s");
        match mode {
            ServerMode::InProcess => {
                let mut builder = Server::builder()
                    .channel(&channel)
                    .socket_dir(&socket_dir)
                    .data_dir(data.path())
                    .store_options(store_options(durability));
                if let Some(bytes) = ring_bytes {
                    builder = builder.shm_ring_bytes(bytes);
                }
                let server = builder.start()?;
                Ok(Target {
                    channel,
                    socket_dir,
                    child: None,
                    in_process: Some(server),
                    _dirs: vec![sock, data],
                })
            }
            ServerMode::Child(command) => {
                command
                    .env(SERVE_ENV, "1")
                    .env("HEARTH_BENCH_CHANNEL", &channel)
                    .env("HEARTH_BENCH_SOCKET_DIR", &socket_dir)
                    .env("HEARTH_BENCH_DATA_DIR", data.path())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                if let Some(bytes) = ring_bytes {
                    command.env("HEARTH_BENCH_RING_BYTES", bytes.to_string());
                }
                command.env(DURABILITY_ENV, durability.name());
                let mut child = command
                    .spawn()
                    .map_err(|e| IpcError::io("starting the benchmark server", e))?;
                let stdin = child.stdin.take().ok_or_else(|| {
                    IpcError::Protocol("the benchmark server has no stdin".into())
                })?;
                let stdout = child.stdout.take().ok_or_else(|| {
                    IpcError::Protocol("the benchmark server has no stdout".into())
                })?;
                let mut lines = BufReader::new(stdout).lines();
                loop {
                    match lines.next() {
                        Some(Ok(line)) if line.trim() == READY => break,
                        Some(Ok(_)) => {}
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(IpcError::Protocol(
                                "the benchmark server exited before it was ready (does the program call bench::serve_if_child?)".into(),
                            ));
                        }
                    }
                }
                std::thread::spawn(move || for _ in lines {});
                Ok(Target {
                    channel,
                    socket_dir,
                    child: Some((child, stdin)),
                    in_process: None,
                    _dirs: vec![sock, data],
                })
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|(c, _)| c.id())
    }

    fn connect(&self, transport: Transport) -> Result<Client, IpcError> {
        Client::connect_with(
            ConnectOptions::new(&self.channel)
                .socket_dir(&self.socket_dir)
                .transport(transport.preference()),
        )
    }

    fn stop(mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.wait();
        }
        if let Some(server) = self.in_process.take() {
            let _ = server.shutdown();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Temporary directories without a dev-dependency.
mod tempfile_dir {
    use crate::error::IpcError;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(super) struct Dir(PathBuf);

    impl Dir {
        pub(super) fn new(tag: &str) -> Result<Dir, IpcError> {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "hearth-bench-{}-{tag}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path)
                .map_err(|e| IpcError::io("creating a benchmark directory", e))?;
            Ok(Dir(path))
        }

        pub(super) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// CPU time of this process (user + system, every thread), from
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`: the sum `getrusage` reports,
/// to the nanosecond.
fn self_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU time of another process (user + system) from `/proc/PID/stat`, in
/// USER_HZ (100 per second on Linux).
fn proc_cpu(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // After the command: state is field 3; utime 14 and stime 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Context switches (voluntary and involuntary) in a `/proc/…/status`.
fn switches_in(status: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// How much a counter grew between two readings (`None` if either is
/// missing; never negative: a thread that ended takes its count along).
fn grown(now: Option<u64>, before: Option<u64>) -> Option<u64> {
    now.zip(before).map(|(b, a)| b.saturating_sub(a))
}

/// Context switches of the calling thread so far.
fn thread_switches() -> Option<u64> {
    switches_in(&std::fs::read_to_string("/proc/thread-self/status").ok()?)
}

/// Context switches of every thread of a process so far (threads that
/// ended are not counted: the server's stay for the whole phase).
fn proc_switches(pid: Option<u32>) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", pid?)).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            total += switches_in(&status)?;
        }
    }
    Some(total)
}

/// Busy CPU seconds of the whole machine (all cores), from `/proc/stat`.
fn machine_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy / 100.0)
}

/// What everything but `ours` (CPU seconds) used of the machine over
/// `secs`, in % of all cores.
fn others_pct(busy_before: Option<f64>, ours: f64, secs: f64) -> Option<f64> {
    let busy = machine_busy()? - busy_before?;
    let cores = hearth_shm::cores() as f64;
    Some(((busy - ours).max(0.0) * 100.0 / (secs * cores)).min(100.0))
}

/// Resident memory of a process, bytes.
fn proc_rss(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cores: hearth_shm::cores(),
        cpu,
        kernel,
        core_round_trip_ns: None,
    }
}

/// A 64-byte line written by one side only.
#[repr(align(64))]
struct Line(AtomicU64);

/// Round trips per sample of [`core_round_trip`]: short, so that a
/// sample fits in a moment when both threads have a core even on a busy
/// machine.
const FLOOR_TRIPS: u32 = 2_000;
/// Samples of [`core_round_trip`]; the fastest is reported.
const FLOOR_SAMPLES: usize = 10;
/// Beyond this, a sample is given up and the next one tried: the echoing
/// thread is not running (one free core, or a busy machine).
const FLOOR_PATIENCE: Duration = Duration::from_millis(50);
/// How long [`core_round_trip`] keeps trying for its samples: under the
/// test suite's other spinning processes, a single sample given 250 ms
/// stalled in one CI run and the floor went unreported.
const FLOOR_BUDGET: Duration = Duration::from_secs(2);
/// The same around each phase: an answer in a few tens of milliseconds or
/// none (the phase is then left out of comparisons at one speed).
const PHASE_FLOOR_BUDGET: Duration = Duration::from_millis(200);
/// Two floors further apart than this ratio are two speeds of the
/// machine: here 0.09–0.13 µs and 0.35–0.54 µs (docs/performance.md, "The
/// machine"), within a speed a few percent apart.
const SAME_SPEED: f64 = 1.25;

/// The floor of a phase from the floors measured just `before` and just
/// `after` it, nanoseconds: the larger when they agree within
/// [`SAME_SPEED`], else none (the speed changed while it ran).
fn phase_floor(before: Option<Duration>, after: Option<Duration>) -> Option<u64> {
    let (a, b) = (nanos(before?), nanos(after?));
    same_speed(Some(a), Some(b)).then(|| a.max(b))
}

/// `d` in whole nanoseconds (saturating: u64 nanoseconds last 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether two phases ran at one speed of the machine: both floors known
/// and within [`SAME_SPEED`] of each other.
fn same_speed(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (lo, hi) = (a.min(b), a.max(b));
            lo > 0 && hi as f64 <= lo as f64 * SAME_SPEED
        }
        _ => false,
    }
}

/// The time for one value to go to another thread and come back, each way
/// in its own cache line (the shape of a request and its answer), both
/// threads spinning: the fastest of a few samples, those that stalled left
/// out; none with one core or when every sample stalled. What any
/// shared-memory call costs at least.
fn core_round_trip() -> Option<Duration> {
    core_round_trip_within(FLOOR_BUDGET)
}

/// [`core_round_trip`] given up after `budget`.
fn core_round_trip_within(budget: Duration) -> Option<Duration> {
    if hearth_shm::cores() < 2 {
        return None;
    }
    let lines = std::sync::Arc::new([Line(AtomicU64::new(0)), Line(AtomicU64::new(0))]);
    let echo = {
        let lines = lines.clone();
        std::thread::Builder::new()
            .name("hearth-bench-echo".into())
            .spawn(move || {
                let mut seen = 0;
                loop {
                    // Acquire/Release: only ordering between the two
                    // threads' own values; no other data rides on them.
                    let v = lines[0].0.load(Ordering::Acquire);
                    if v == u64::MAX {
                        return;
                    }
                    if v != seen {
                        seen = v;
                        lines[1].0.store(v, Ordering::Release);
                    } else {
                        std::hint::spin_loop();
                    }
                }
            })
            .ok()?
    };
    let mut best: Option<Duration> = None;
    let mut sent = 0u64;
    let mut taken = 0;
    let began = Instant::now();
    'samples: while taken < FLOOR_SAMPLES && began.elapsed() < budget {
        let start = Instant::now();
        for _ in 0..FLOOR_TRIPS {
            sent += 1;
            lines[0].0.store(sent, Ordering::Release);
            let mut polls = 0u32;
            while lines[1].0.load(Ordering::Acquire) != sent {
                std::hint::spin_loop();
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(4096) && start.elapsed() > FLOOR_PATIENCE {
                    // The echo answers the next value whenever it runs
                    // again (it echoes whatever it last saw).
                    continue 'samples;
                }
            }
        }
        let per = start.elapsed() / FLOOR_TRIPS;
        best = Some(best.map_or(per, |b| b.min(per)));
        taken += 1;
    }
    lines[0].0.store(u64::MAX, Ordering::Release);
    let _ = echo.join();
    best
}

fn document(i: usize, bytes: usize) -> Value {
    let pad = bytes.saturating_sub(90);
    json!({
        "type": "User",
        "name": format!("user {i}"),
        "email": format!("user{i}@example.com"),
        "n": i,
        "pad": "x".repeat(pad),
    })
}

/// How many documents of ~`doc_bytes` one loading batch carries: 250,
/// fewer for big documents, so that a batch stays near 4 MiB — well
/// under the 32 MiB message limit (at least one document a batch).
fn load_batch(doc_bytes: usize) -> usize {
    const BATCH_BYTES: usize = 4 << 20;
    (BATCH_BYTES / doc_bytes.max(1)).clamp(1, 250)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[at]
}

/// Runs `per_client` calls of `call` on each client thread at once;
/// latencies and costs.
fn phase(
    clients: &[Client],
    per_client: usize,
    server_pid: Option<u32>,
    call: impl Fn(&Client, usize, usize) -> Result<(), IpcError> + Sync,
) -> Result<OpStats, IpcError> {
    let barrier = Barrier::new(clients.len() + 1);
    // Each client thread's own bookkeeping (a `/proc` read for its context
    // switches, ~20–80 µs here) happens before the start and after every
    // client has finished: done while others still call, it took the core
    // a finished thread's successor needed, so that the phases with more
    // clients (whose threads start and finish at different times) paid
    // for it and one client's never did.
    let finished = Barrier::new(clients.len());
    let call = &call;
    let barrier = &barrier;
    let finished = &finished;
    let measured = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, client)| {
                scope.spawn(move || -> Result<Spent, IpcError> {
                    let mut samples = Vec::with_capacity(per_client);
                    let mut ends = Vec::with_capacity(per_client);
                    let sw0 = thread_switches();
                    barrier.wait();
                    let began = Instant::now();
                    let calls = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        (0..per_client).try_for_each(|i| {
                            let t = Instant::now();
                            call(client, c, i)?;
                            let ended = Instant::now();
                            samples.push(ended.duration_since(t).as_nanos() as u64);
                            ends.push(ended);
                            Ok::<(), IpcError>(())
                        })
                    }));
                    // Every thread gets here, failed or not: the others wait.
                    finished.wait();
                    calls.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                    let switched = grown(thread_switches(), sw0);
                    Ok(Spent {
                        samples,
                        switched,
                        began,
                        ends,
                    })
                })
            })
            .collect();
        let cpu0 = self_cpu();
        let watch = Watch::start(server_pid);
        barrier.wait();
        let mut spent = Vec::with_capacity(clients.len());
        let mut failed = None;
        for h in handles {
            match h.join() {
                Ok(Ok(one)) => spent.push(one),
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some(IpcError::Protocol("a benchmark client panicked".into())),
            }
        }
        let cpu = self_cpu() - cpu0;
        match failed {
            Some(e) => Err(e),
            None => Ok(watch.stop(cpu).finish(spent)),
        }
    })?;
    Ok(measured)
}

/// What is read around a phase besides the clients' own figures: the
/// server's CPU time and context switches, and the machine's load.
pub(crate) struct Watch {
    server_pid: Option<u32>,
    server0: Option<f64>,
    server_sw0: Option<u64>,
    busy0: Option<f64>,
    start: Instant,
}

impl Watch {
    /// Starts watching, just before the clients start.
    pub(crate) fn start(server_pid: Option<u32>) -> Watch {
        Watch {
            server_pid,
            server0: proc_cpu(server_pid),
            server_sw0: proc_switches(server_pid),
            busy0: machine_busy(),
            start: Instant::now(),
        }
    }

    /// Stops watching as the clients finish: reads the server's CPU time
    /// and switches and the machine's load now, given the CPU time the
    /// clients used together (`client_cpu`, seconds).
    pub(crate) fn stop(self, client_cpu: f64) -> Watched {
        let watched = self.start.elapsed();
        let server = match (self.server0, proc_cpu(self.server_pid)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let server_sw = grown(proc_switches(self.server_pid), self.server_sw0);
        Watched {
            watched,
            client_cpu,
            server,
            server_sw: self.server_pid.map(|_| server_sw),
            others: others_pct(
                self.busy0,
                client_cpu + server.unwrap_or(0.0),
                watched.as_secs_f64(),
            ),
        }
    }
}

/// What [`Watch::stop`] read, waiting for the clients' own figures.
pub(crate) struct Watched {
    watched: Duration,
    client_cpu: f64,
    server: Option<f64>,
    /// The server's switches when it runs in its own process (`Some`).
    server_sw: Option<Option<u64>>,
    others: Option<f64>,
}

impl Watched {
    /// The phase's figures, with what each client `spent`.
    pub(crate) fn finish(self, spent: Vec<Spent>) -> OpStats {
        let mut all = Vec::with_capacity(spent.iter().map(|s| s.samples.len()).sum());
        let mut client_sw = Some(0);
        let mut calls = Vec::with_capacity(spent.len());
        for one in spent {
            all.extend(one.samples);
            client_sw = client_sw.zip(one.switched).map(|(a, b)| a + b);
            calls.push((one.began, one.ends));
        }
        // The phase lasts from the first client's first call to the last
        // client's last answer, as the clients' own clocks saw them (as the
        // Redis rows time their loop): not until this thread, asleep in
        // `join`, is scheduled again — on 2 busy cores that took 1–8 ms,
        // more with 16 clients than with one, and counted against them.
        // (The machine's load and the CPU times are read over this
        // thread's interval, as they were taken.)
        let secs = work_span(&calls).unwrap_or(self.watched).as_secs_f64();
        let switches = switches_total(client_sw, self.server_sw);
        OpStats {
            busy_ops_per_sec: busy_rate(&calls),
            spread: spread(&calls),
            ..OpStats::from_samples(
                all,
                secs,
                self.client_cpu,
                self.server,
                self.others,
                switches,
            )
        }
    }
}

/// How long `clients` — each as when its first call began and when each
/// of its answers came — worked together: from the earliest start to the
/// latest answer (a client without one ends where it began); `None`
/// without any client.
fn work_span(clients: &[(Instant, Vec<Instant>)]) -> Option<Duration> {
    let began = clients.iter().map(|c| c.0).min()?;
    let ended = clients
        .iter()
        .map(|c| c.1.last().copied().unwrap_or(c.0))
        .max()?;
    Some(ended.saturating_duration_since(began))
}

/// Calls per second while every one of the `clients` — each as when its
/// first call began and when each of its answers came — was busy: from
/// the moment the last of them began to the last answer of the first to
/// finish, the answers in between over that time. `None` when there was
/// no such moment or no answer in it.
///
/// Sixteen threads do not all begin at once (0.5–5 ms apart here) nor end
/// at once (each finishing thread holds the server's turn until it has
/// been silent a while, docs/design.md H3e): the phase's own rate counts
/// both; this one is the rate of all of them busy, which is what "16 busy
/// clients" means. With one client it is the phase's rate.
fn busy_rate(clients: &[(Instant, Vec<Instant>)]) -> Option<f64> {
    let from = clients.iter().map(|c| c.0).max()?;
    let to = clients.iter().map(|c| c.1.last().copied()).min()??;
    if to <= from {
        return None;
    }
    let answers = clients
        .iter()
        .flat_map(|c| &c.1)
        .filter(|&&t| t > from && t <= to)
        .count();
    (answers > 0).then(|| answers as f64 / to.duration_since(from).as_secs_f64())
}

/// How the answers of `clients` — each as when its first call began and
/// when each of its answers came — were spread among them ([`Spread`]):
/// each answer is set against the one before it in time. `None` without
/// an answer.
fn spread(clients: &[(Instant, Vec<Instant>)]) -> Option<Spread> {
    let mut answers: Vec<(Instant, usize)> = clients
        .iter()
        .enumerate()
        .flat_map(|(c, (_, ends))| ends.iter().map(move |&t| (t, c)))
        .collect();
    if answers.is_empty() {
        return None;
    }
    answers.sort_unstable();
    let span = work_span(clients)?.as_nanos().max(1) as f64;
    let mut changes: Vec<u64> = Vec::new();
    let mut pauses: Vec<u64> = Vec::new();
    let (mut runs, mut run_ns) = (0u64, 0u128);
    for pair in answers.windows(2) {
        let ((before, from), (after, to)) = (pair[0], pair[1]);
        let took = nanos(after.duration_since(before));
        if took >= nanos(LONG_CHANGE) {
            pauses.push(took);
        }
        if from == to {
            runs += 1;
            run_ns += u128::from(took);
        } else {
            changes.push(took);
        }
    }
    // The time `took` all together, as a share of the phase, %.
    let pct =
        |took: &[u64]| took.iter().map(|&n| u128::from(n)).sum::<u128>() as f64 * 100.0 / span;
    changes.sort_unstable();
    let long = &changes[changes.partition_point(|&n| n < nanos(LONG_CHANGE))..];
    Some(Spread {
        changes: changes.len() as u64,
        changes_pct: pct(&changes),
        change_p50_ns: percentile(&changes, 0.5),
        long_changes: long.len() as u64,
        long_changes_pct: pct(long),
        pauses: pauses.len() as u64,
        pauses_pct: pct(&pauses),
        run_call_ns: (runs > 0).then(|| run_ns as f64 / runs as f64),
    })
}

/// A change from one client to another this long or longer counts as
/// long ([`Spread::long_changes`]): ten times what a change of turn
/// between two threads takes on the project's machine.
pub const LONG_CHANGE: Duration = Duration::from_micros(200);

/// What one benchmark client (thread or process) measured in a phase.
pub(crate) struct Spent {
    /// Each call's latency in nanoseconds.
    pub(crate) samples: Vec<u64>,
    /// Its context switches, where the platform counts them.
    pub(crate) switched: Option<u64>,
    /// When its first call began.
    pub(crate) began: Instant,
    /// When each answer came.
    pub(crate) ends: Vec<Instant>,
}

/// The clients' switches plus the server's when it runs in its own
/// process (`Some`); unknown if any part that should be there is not.
fn switches_total(clients: Option<u64>, server: Option<Option<u64>>) -> Option<u64> {
    match server {
        Some(server) => clients.zip(server).map(|(a, b)| a + b),
        None => clients,
    }
}

impl OpStats {
    /// Its [`Spread`] if its answers came in runs to one client at a time
    /// (at most one in ten went to another client than the one before:
    /// clients taking turns); `None` if they were mixed, as with clients
    /// served at once, where a run's calls and the changes mean nothing.
    fn in_runs(&self) -> Option<&Spread> {
        self.spread
            .as_ref()
            .filter(|s| s.changes.saturating_mul(10) <= self.ops)
    }

    /// The figures of one phase: per-call latencies in nanoseconds (any
    /// order), its wall time, and the CPU the client and server used.
    fn from_samples(
        mut samples: Vec<u64>,
        secs: f64,
        client_cpu: f64,
        server_cpu: Option<f64>,
        others: Option<f64>,
        switches: Option<u64>,
    ) -> OpStats {
        samples.sort_unstable();
        let ops = samples.len() as u64;
        let total_cpu = client_cpu + server_cpu.unwrap_or(0.0);
        OpStats {
            ops,
            secs,
            ops_per_sec: ops as f64 / secs.max(1e-9),
            busy_ops_per_sec: None,
            spread: None,
            p50_ns: percentile(&samples, 0.50),
            p90_ns: percentile(&samples, 0.90),
            p99_ns: percentile(&samples, 0.99),
            p999_ns: percentile(&samples, 0.999),
            max_ns: samples.last().copied().unwrap_or(0),
            client_cpu_secs: client_cpu,
            server_cpu_secs: server_cpu,
            cpu_us_per_op: total_cpu * 1e6 / ops.max(1) as f64,
            switches_per_op: switches.map(|n| n as f64 / ops.max(1) as f64),
            others_pct: others,
            floor_ns: None,
        }
    }
}

fn measure_transport(
    target: &Target,
    transport: Transport,
    count: usize,
    opts: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<Run, IpcError> {
    let count = count.max(1);
    let mut callers = if opts.client_processes {
        Callers::Processes(processes::Children::spawn(
            &client_program(&opts.server)?,
            target,
            transport,
            count,
            opts.doc_bytes,
        )?)
    } else {
        Callers::Threads(
            (0..count)
                .map(|_| target.connect(transport))
                .collect::<Result<_, _>>()?,
            Calls::new(opts.doc_bytes),
        )
    };
    // Both phases start with the applier caught up (the gets write
    // nothing, so one wait serves both): a backlog of the loading or of
    // the put phase before (another count's, another round's) would be
    // materialised during the gets, by a background thread that, once on
    // a core, kept it until the scheduler's next tick (up to 4 ms here);
    // and a put phase should be a burst the journal absorbs, as the first
    // one is, not the applier's sustained rate. A connection of this
    // process checks the transport and waits: the first client thread's,
    // or beside client processes (which check their own transport) one of
    // its own, closed before they call, so that the server has exactly
    // the clients' connections during the phases, as with threads.
    match &callers {
        Callers::Threads(clients, _) => check_and_drain(&clients[0], transport)?,
        Callers::Processes(_) => check_and_drain(&target.connect(transport)?, transport)?,
    }
    let per_client = (opts.ops / count).max(1);
    log(&format!(
        "{}: {count} client {}, warming up",
        transport.name(),
        callers.kind()
    ));
    let warm = per_client.min(2000);
    callers.phase(Op::Get, warm, None)?;
    log(&format!(
        "{}: {} gets",
        transport.name(),
        per_client * count
    ));
    let before = core_round_trip_within(PHASE_FLOOR_BUDGET);
    let mut get = callers.phase(Op::Get, per_client, target.pid())?;
    // The floor after the gets is also the one before the puts.
    let between = core_round_trip_within(PHASE_FLOOR_BUDGET);
    get.floor_ns = phase_floor(before, between);
    let put = if opts.puts {
        log(&format!(
            "{}: {} puts",
            transport.name(),
            per_client * count
        ));
        let mut put = callers.phase(Op::Put, per_client, target.pid())?;
        put.floor_ns = phase_floor(between, core_round_trip_within(PHASE_FLOOR_BUDGET));
        Some(put)
    } else {
        None
    };
    Ok(Run {
        transport: transport.name().into(),
        clients: count,
        get,
        put,
    })
}

/// The program a client process runs: the server's ([`ServerMode::Child`])
/// or else this one; it must call [`serve_if_child`] first thing.
fn client_program(server: &ServerMode) -> Result<PathBuf, IpcError> {
    match server {
        ServerMode::Child(command) => Ok(PathBuf::from(command.get_program())),
        ServerMode::InProcess => std::env::current_exe()
            .map_err(|e| IpcError::io("finding this program to run its client processes", e)),
    }
}

/// What a phase calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `get_json` of the loaded documents, `bench:0` to `bench:999` in
    /// turn. The document as JSON text, as Redis's GET gives its value as
    /// bytes: a round trip, not a client-side parse into a tree.
    Get,
    /// `put_json` of the client's share of `bench:put:0` to
    /// `bench:put:999` ([`put_share`]), each a ~`doc_bytes` document
    /// rendered before the clock starts, as Redis's SET is given its
    /// value as bytes.
    Put,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Op> {
        match name {
            "get" => Some(Op::Get),
            "put" => Some(Op::Put),
            _ => None,
        }
    }
}

/// The ids client `who` of `n` rewrites in a put phase, each with the
/// document (of [`KEYS`]) it writes: the same 1000 ids whatever the number
/// of clients, split among them (each client rewrites its own share), so
/// that the store does the same work per put with 1 or 16 clients (with
/// 1000 ids per client, sixteen clients made the applier write sixteen
/// times the rows, and the comparison measured SQLite, not the transport).
pub(crate) fn put_share(who: usize, n: usize) -> Vec<(String, usize)> {
    let n = n.max(1);
    (0..KEYS.max(n))
        .filter(|j| j % n == who)
        .map(|j| (format!("bench:put:{j}"), j % KEYS))
        .collect()
}

/// What a client calls in a phase, rendered before the clock starts (as
/// the Redis rows build each request before theirs): the ids a get phase
/// reads, and the documents a put phase writes, as JSON text.
pub(crate) struct Calls {
    keys: Vec<String>,
    texts: Vec<String>,
}

impl Calls {
    pub(crate) fn new(doc_bytes: usize) -> Calls {
        Calls {
            keys: (0..KEYS).map(|i| format!("bench:{i}")).collect(),
            texts: (0..KEYS)
                .map(|i| document(i, doc_bytes).to_string())
                .collect(),
        }
    }

    /// The `i`th call of `op` on `c`, by a client that rewrites `share` of
    /// the put ids ([`put_share`]).
    pub(crate) fn call(
        &self,
        c: &Client,
        op: Op,
        share: &[(String, usize)],
        i: usize,
    ) -> Result<(), IpcError> {
        match op {
            Op::Get => c.get_json(&self.keys[i % KEYS]).map(drop),
            Op::Put => {
                let (id, text) = &share[i % share.len()];
                c.put_json(id, &self.texts[*text]).map(drop)
            }
        }
    }
}

/// The clients of one count: threads of this process (and what they call),
/// or processes.
enum Callers {
    Threads(Vec<Client>, Calls),
    Processes(processes::Children),
}

impl Callers {
    fn kind(&self) -> &'static str {
        match self {
            Callers::Threads(..) => "thread(s)",
            Callers::Processes(_) => "process(es)",
        }
    }

    /// Every client makes `per_client` calls of `op`, all at once.
    fn phase(
        &mut self,
        op: Op,
        per_client: usize,
        server_pid: Option<u32>,
    ) -> Result<OpStats, IpcError> {
        match self {
            Callers::Processes(children) => children.phase(op, per_client, server_pid),
            Callers::Threads(clients, calls) => {
                let n = clients.len();
                let shares: Vec<_> = (0..n).map(|who| put_share(who, n)).collect();
                phase(clients, per_client, server_pid, |c, who, i| {
                    calls.call(c, op, &shares[who], i)
                })
            }
        }
    }
}

/// Checks that `c` uses `transport`: a connection that fell back to
/// another would measure the wrong thing.
fn check_transport(c: &Client, transport: Transport) -> Result<(), IpcError> {
    if c.transport() == Some(transport.kind()) {
        Ok(())
    } else {
        Err(IpcError::Protocol(format!(
            "asked for {} but the connection uses {:?}",
            transport.name(),
            c.transport()
        )))
    }
}

/// Checks that `c` uses `transport` ([`check_transport`]), then
/// [`drain`]s.
fn check_and_drain(c: &Client, transport: Transport) -> Result<(), IpcError> {
    check_transport(c, transport)?;
    drain(c)
}

/// Waits until the store's applier has materialised every earlier write:
/// a query waits for that (the applier defers during bursts; a list would
/// not wait, it reads unapplied writes from memory).
fn drain(c: &Client) -> Result<(), IpcError> {
    c.query(serde_json::json!({"bench:drain": true}), Some(1), None)
        .map(drop)
}

/// [`Options::paused_gets`] calls of `get` (given the call's number), each
/// after [`Options::pause`], timed one by one.
fn after_pauses<E>(
    transport: &str,
    opts: &Options,
    mut get: impl FnMut(usize) -> Result<(), E>,
) -> Result<Paused, E> {
    let mut samples = Vec::with_capacity(opts.paused_gets);
    for i in 0..opts.paused_gets {
        std::thread::sleep(opts.pause);
        let t = Instant::now();
        get(i)?;
        samples.push(nanos(t.elapsed()));
    }
    samples.sort_unstable();
    Ok(Paused {
        transport: transport.into(),
        calls: samples.len(),
        pause_ms: opts.pause.as_secs_f64() * 1e3,
        p50_ns: percentile(&samples, 0.5),
        p90_ns: percentile(&samples, 0.9),
        max_ns: samples.last().copied().unwrap_or(0),
    })
}

/// Gets after a pause over `transport`, from a connection of their own
/// (as the phases', `get_json` of the loaded documents). A failed call
/// fails the run, as in every hearth phase; Redis's only lose their row
/// (Redis is a baseline, not what is measured).
fn measure_paused(
    target: &Target,
    transport: Transport,
    opts: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<Paused, IpcError> {
    let c = target.connect(transport)?;
    check_and_drain(&c, transport)?;
    let calls = Calls::new(opts.doc_bytes);
    log(&format!(
        "{}: {} gets, each after {} ms idle",
        transport.name(),
        opts.paused_gets,
        opts.pause.as_secs_f64() * 1e3
    ));
    after_pauses(transport.name(), opts, |i| calls.call(&c, Op::Get, &[], i))
}

fn measure_idle(
    target: &Target,
    transport: Transport,
    opts: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<Idle, IpcError> {
    let first = target.connect(transport)?;
    first.get("bench:0")?;
    // Idle means no work pending.
    drain(&first)?;
    let rss_1 = proc_rss(target.pid());
    let mut clients = vec![first];
    for i in 1..opts.idle_clients {
        let c = target.connect(transport)?;
        c.get(&format!("bench:{}", i % KEYS))?;
        c.put(&format!("bench:idle:{i}"), document(i, opts.doc_bytes))?;
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        c.get(&format!("bench:{}", i % KEYS))?;
    }
    drain(&clients[0])?;
    let rss_n = proc_rss(target.pid());
    // Let spinning end (budgets are microseconds) before watching.
    std::thread::sleep(Duration::from_millis(200));
    log(&format!(
        "{}: {} idle clients for {:.0} s",
        transport.name(),
        clients.len(),
        opts.idle_secs
    ));
    let cpu0 = self_cpu();
    let server0 = proc_cpu(target.pid());
    let busy0 = machine_busy();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(opts.idle_secs));
    let secs = start.elapsed().as_secs_f64();
    let client_cpu = self_cpu() - cpu0;
    let server_cpu = match (server0, proc_cpu(target.pid())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let cores = machine().cores as f64;
    let total = client_cpu + server_cpu.unwrap_or(0.0);
    drop(clients);
    Ok(Idle {
        transport: transport.name().into(),
        clients: opts.idle_clients,
        secs,
        server_cpu_pct: server_cpu.map(|s| s * 100.0 / secs),
        client_cpu_pct: client_cpu * 100.0 / secs,
        total_pct_of_machine: total * 100.0 / secs / cores,
        others_pct: others_pct(busy0, total, secs),
        server_rss_1: rss_1,
        server_rss_n: rss_n,
    })
}

/// Redis `GET`/`SET` over a Unix socket, one client, when `redis-server`
/// runs here; and its `GET`s after a pause when [`Options::paused_gets`]
/// asks for them.
fn measure_redis(opts: &Options, log: &mut dyn FnMut(&str)) -> Option<(Run, Option<Paused>)> {
    let dir = tempfile_dir::Dir::new("redis").ok()?;
    let sock = dir.path().join("redis.sock");
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    // "Ready to accept connections" (TCP) or "…ready to accept connections
    // at PATH" (Unix socket only), depending on the version and listeners.
    let ready = lines.by_ref().any(|l| {
        l.map(|l| {
            l.to_ascii_lowercase()
                .contains("ready to accept connections")
        })
        .unwrap_or(false)
    });
    std::thread::spawn(move || for _ in lines {});
    let result = if ready {
        log("redis-unix: GET and SET");
        redis_run(&sock, opts, child.id())
    } else {
        None
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn redis_run(sock: &Path, opts: &Options, pid: u32) -> Option<(Run, Option<Paused>)> {
    use std::os::unix::net::UnixStream;
    let mut stream = UnixStream::connect(sock).ok()?;
    let value = document(1, opts.doc_bytes).to_string();
    let set = |key: &str| {
        format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        )
    };
    let get = |key: &str| format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    let mut buf = vec![0u8; 64 * 1024];
    // One reply: a status line (+OK) or a bulk string ($len\r\n…\r\n).
    let mut round_trip = |request: &str| -> Option<()> {
        stream.write_all(request.as_bytes()).ok()?;
        let mut got = 0;
        loop {
            let n = stream.read(&mut buf[got..]).ok()?;
            if n == 0 {
                return None;
            }
            got += n;
            let text = &buf[..got];
            if text.first() == Some(&b'+') && text.ends_with(b"\r\n") {
                return Some(());
            }
            if text.first() == Some(&b'$')
                && let Some(end) = text.windows(2).position(|w| w == b"\r\n")
            {
                let len: i64 = std::str::from_utf8(&text[1..end]).ok()?.parse().ok()?;
                let want = end + 2 + if len < 0 { 0 } else { len as usize + 2 };
                if got >= want {
                    return Some(());
                }
            }
        }
    };
    for i in 0..KEYS {
        round_trip(&set(&format!("bench:{i}")))?;
    }
    let ops = opts.ops;
    let mut measure = |make: &dyn Fn(usize) -> String| -> Option<OpStats> {
        let mut samples = Vec::with_capacity(ops);
        let cpu0 = self_cpu();
        let server0 = proc_cpu(Some(pid));
        let sw0 = thread_switches();
        let server_sw0 = proc_switches(Some(pid));
        let busy0 = machine_busy();
        let start = Instant::now();
        for i in 0..ops {
            let request = make(i);
            let t = Instant::now();
            round_trip(&request)?;
            samples.push(t.elapsed().as_nanos() as u64);
        }
        let secs = start.elapsed().as_secs_f64();
        let client = self_cpu() - cpu0;
        let server = proc_cpu(Some(pid)).zip(server0).map(|(b, a)| b - a);
        let switches = switches_total(
            grown(thread_switches(), sw0),
            Some(grown(proc_switches(Some(pid)), server_sw0)),
        );
        let others = others_pct(busy0, client + server.unwrap_or(0.0), secs);
        Some(OpStats::from_samples(
            samples, secs, client, server, others, switches,
        ))
    };
    let get_stats = measure(&|i| get(&format!("bench:{}", i % KEYS)))?;
    let set_stats = measure(&|i| set(&format!("bench:put:{}", i % KEYS)))?;
    let paused = if opts.paused_gets > 0 {
        let gets: Vec<String> = (0..KEYS).map(|i| get(&format!("bench:{i}"))).collect();
        // A failed round trip loses this row only, not the others'.
        after_pauses("redis-unix", opts, |i| {
            round_trip(&gets[i % KEYS]).ok_or(())
        })
        .ok()
    } else {
        None
    };
    Some((
        Run {
            transport: "redis-unix".into(),
            clients: 1,
            get: get_stats,
            put: Some(set_stats),
        },
        paused,
    ))
}

fn ratios(runs: &[Run]) -> Vec<Ratio> {
    let find = |name: &str| runs.iter().find(|r| r.transport == name);
    let mut out = Vec::new();
    let Some(shm) = find("shm") else {
        return out;
    };
    for other in ["socket", "redis-unix"] {
        let Some(o) = find(other) else { continue };
        out.push(Ratio {
            what: format!("get p50: {other} / shm"),
            times: o.get.p50_ns as f64 / shm.get.p50_ns.max(1) as f64,
            rounds_range: None,
        });
        out.push(Ratio {
            what: format!("get ops/s: shm / {other}"),
            times: shm.get.ops_per_sec / o.get.ops_per_sec.max(1e-9),
            rounds_range: None,
        });
        if let (Some(sp), Some(op)) = (&shm.put, &o.put) {
            out.push(Ratio {
                what: format!("put p50: {other} / shm"),
                times: op.p50_ns as f64 / sp.p50_ns.max(1) as f64,
                rounds_range: None,
            });
            out.push(Ratio {
                what: format!("put ops/s: shm / {other}"),
                times: sp.ops_per_sec / op.ops_per_sec.max(1e-9),
                rounds_range: None,
            });
        }
    }
    out
}

/// How many times longer a get after a pause takes over the socket and
/// Redis than over shared memory (p50).
fn paused_ratios(paused: &[Paused]) -> Vec<Ratio> {
    let Some(shm) = paused.iter().find(|p| p.transport == "shm") else {
        return Vec::new();
    };
    paused
        .iter()
        .filter(|p| p.transport != "shm")
        .map(|p| Ratio {
            what: format!("paused get p50: {} / shm", p.transport),
            times: p.p50_ns as f64 / shm.p50_ns.max(1) as f64,
            rounds_range: None,
        })
        .collect()
}

/// The client counts to measure, in order (one client if none given).
fn client_counts(opts: &Options) -> Vec<usize> {
    if opts.clients.is_empty() {
        vec![1]
    } else {
        opts.clients.iter().map(|&n| n.max(1)).collect()
    }
}

/// A run's get phase.
fn gets(r: &Run) -> Option<&OpStats> {
    Some(&r.get)
}

/// A run's put phase, if it had one.
fn puts(r: &Run) -> Option<&OpStats> {
    r.put.as_ref()
}

/// Each transport's throughput at every count after the first, as a
/// ratio to the first count's in the same round; the median over rounds.
/// When some rounds' two phases ran at different speeds of the machine
/// ([`same_speed`] of their floors), also the median over the rest.
fn count_ratios(runs: &[Run], counts: &[usize]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let Some((&base, others)) = counts.split_first() else {
        return out;
    };
    for transport in ["shm", "socket"] {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.transport == transport).collect();
        let rounds: Vec<&[&Run]> = mine.chunks(counts.len()).collect();
        for (j, &count) in others.iter().enumerate() {
            // Each round's ratio, and whether its two phases ran at one speed.
            let pick = |op: fn(&Run) -> Option<&OpStats>,
                        rate: fn(&OpStats) -> Option<f64>|
             -> Vec<(f64, bool)> {
                rounds
                    .iter()
                    .filter_map(|round| {
                        let first = op(round.first()?)?;
                        let this = op(round.get(j + 1)?)?;
                        Some((
                            rate(this)? / rate(first)?.max(1e-9),
                            same_speed(first.floor_ns, this.floor_ns),
                        ))
                    })
                    .collect()
            };
            let n = rounds.len();
            let of = if n > 1 {
                format!(" (median of {n} rounds)")
            } else {
                String::new()
            };
            let phase = |s: &OpStats| Some(s.ops_per_sec);
            let busy = |s: &OpStats| s.busy_ops_per_sec;
            let in_runs = |s: &OpStats| s.in_runs()?.run_call_ns.map(|ns| 1e9 / ns.max(1e-9));
            let measures = [
                ("gets/s", pick(gets, phase)),
                ("puts/s", pick(puts, phase)),
                ("gets/s while all busy", pick(gets, busy)),
                ("puts/s while all busy", pick(puts, busy)),
                ("gets/s within a client's run", pick(gets, in_runs)),
                ("puts/s within a client's run", pick(puts, in_runs)),
            ];
            for (op, ratios) in measures {
                let all: Vec<f64> = ratios.iter().map(|r| r.0).collect();
                let rounds_range = range(&all);
                if let Some(times) = median(all) {
                    out.push(Ratio {
                        what: format!("{transport} {op}: {count} ÷ {base} clients{of}"),
                        times,
                        rounds_range,
                    });
                }
                let alike: Vec<f64> = ratios.iter().filter(|r| r.1).map(|r| r.0).collect();
                let kept = alike.len();
                let rounds_range = range(&alike);
                if kept < ratios.len()
                    && let Some(times) = median(alike)
                {
                    out.push(Ratio {
                        what: format!(
                            "{transport} {op}: {count} ÷ {base} clients, the {kept} of {} rounds at one machine speed",
                            ratios.len()
                        ),
                        times,
                        rounds_range,
                    });
                }
            }
        }
    }
    out
}

/// The lowest and highest of `values` when there are two or more (a
/// median of one value has no range to show).
fn range(values: &[f64]) -> Option<[f64; 2]> {
    (values.len() > 1).then(|| {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        [low, high]
    })
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Runs the benchmark; `log` gets a line per step (for progress output).
pub fn run(opts: &Options, mut log: impl FnMut(&str)) -> Result<Report, IpcError> {
    let mut mode = match &opts.server {
        ServerMode::InProcess => ServerMode::InProcess,
        ServerMode::Child(command) => {
            let mut copy = Command::new(command.get_program());
            copy.args(command.get_args());
            for (k, v) in command.get_envs() {
                match v {
                    Some(v) => copy.env(k, v),
                    None => copy.env_remove(k),
                };
            }
            ServerMode::Child(copy)
        }
    };
    let target = Target::start(&mut mode, opts.ring_bytes, opts.durability)?;
    let server_in_child = target.pid().is_some();
    log("loading documents");
    {
        let loader = target.connect(
            opts.transports
                .first()
                .copied()
                .unwrap_or(Transport::Socket),
        )?;
        for chunk in (0..KEYS)
            .collect::<Vec<_>>()
            .chunks(load_batch(opts.doc_bytes))
        {
            let writes = chunk
                .iter()
                .map(|&i| hearth_store::WriteOp::Put {
                    id: format!("bench:{i}"),
                    data: document(i, opts.doc_bytes),
                })
                .collect();
            loader.batch(writes)?;
        }
    }
    log("a cache line's round trip between two cores");
    let floor = core_round_trip();
    let mut runs = Vec::new();
    let mut paused = Vec::new();
    let mut redis = None;
    let counts = client_counts(opts);
    for (k, &transport) in opts.transports.iter().enumerate() {
        for _ in 0..opts.rounds.max(1) {
            for &count in &counts {
                runs.push(measure_transport(
                    &target, transport, count, opts, &mut log,
                )?);
            }
        }
        // Redis right after the first transport (shared memory with
        // `both`): the machine's speed moves from one minute to the next
        // (where the host runs the vCPUs), and the ratio should compare
        // the two within seconds, not across the socket and idle phases.
        if k == 0 && opts.redis {
            redis = measure_redis(opts, &mut log);
        }
        if opts.paused_gets > 0 {
            paused.push(measure_paused(&target, transport, opts, &mut log)?);
        }
    }
    let mut idle = Vec::new();
    if opts.idle_clients > 0 {
        for &transport in &opts.transports {
            idle.push(measure_idle(&target, transport, opts, &mut log)?);
        }
    }
    target.stop();
    if let Some((run, redis_paused)) = redis {
        runs.push(run);
        paused.extend(redis_paused);
    }
    let mut ratios = ratios(&runs);
    ratios.extend(paused_ratios(&paused));
    ratios.extend(count_ratios(&runs, &counts));
    Ok(Report {
        machine: Machine {
            core_round_trip_ns: floor.map(nanos),
            ..machine()
        },
        doc_bytes: opts.doc_bytes,
        server_in_child,
        durability: opts.durability,
        client_processes: opts.client_processes,
        runs,
        ratios,
        idle,
        paused,
    })
}

/// One phase of a run, `None` when not measured.
type PhaseOf = fn(&Run) -> Option<&OpStats>;

/// The phases a run has, by name: gets, and puts when measured.
const PHASES: [(&str, PhaseOf); 2] = [("gets", gets), ("puts", puts)];

fn us(ns: u64) -> String {
    if ns >= 10_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} µs", ns as f64 / 1e3)
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

impl Report {
    /// The report as a table for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "machine: {} cores, {}, Linux {}; server in {} ({} durability); clients are {}; documents ~{} B; get returns the JSON text (Client::get_json)\n\n",
            self.machine.cores,
            self.machine.cpu,
            self.machine.kernel,
            if self.server_in_child {
                "its own process"
            } else {
                "this process"
            },
            self.durability.name(),
            if self.client_processes {
                "processes"
            } else {
                "threads of this process"
            },
            self.doc_bytes
        ));
        if let Some(floor) = self.machine.core_round_trip_ns {
            let shm_get = self
                .runs
                .iter()
                .find(|r| r.transport == "shm" && r.clients == 1)
                .map(|r| r.get.p50_ns);
            out.push_str(&format!(
                "floor: a cache line's round trip between two cores takes {} on this machine now{}\n\n",
                us(floor),
                match shm_get {
                    Some(p50) if floor > 0 => format!(
                        " (shm get p50 = {:.1} of them)",
                        p50 as f64 / floor as f64
                    ),
                    _ => String::new(),
                }
            ));
        }
        out.push_str(&format!(
            "{:<11} {:>7} {:<4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>6} {:>7} {:>9}\n",
            "transport",
            "clients",
            "op",
            "ops/s",
            "all busy",
            "p50",
            "p90",
            "p99",
            "p999",
            "max",
            "cpu/op",
            "sw/op",
            "others",
            "floor"
        ));
        for run in &self.runs {
            let rows = [("get", Some(&run.get)), ("put", run.put.as_ref())];
            for (op, stats) in rows {
                let Some(s) = stats else { continue };
                out.push_str(&format!(
                    "{:<11} {:>7} {:<4} {:>10.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>6} {:>7} {:>9}\n",
                    run.transport,
                    run.clients,
                    op,
                    s.ops_per_sec,
                    s.busy_ops_per_sec.map_or("-".into(), |r| format!("{r:.0}")),
                    us(s.p50_ns),
                    us(s.p90_ns),
                    us(s.p99_ns),
                    us(s.p999_ns),
                    us(s.max_ns),
                    format!("{:.2} µs", s.cpu_us_per_op),
                    s.switches_per_op.map_or("-".into(), |n| format!("{n:.2}")),
                    s.others_pct.map_or("-".into(), |p| format!("{p:.0} %")),
                    s.floor_ns.map_or("-".into(), us),
                ));
            }
        }
        if !self.ratios.is_empty() {
            out.push('\n');
            let fmt = |t: f64| {
                if t < 10.0 {
                    format!("{t:.2}")
                } else {
                    format!("{t:.1}")
                }
            };
            for r in &self.ratios {
                let range = r.rounds_range.map_or(String::new(), |[low, high]| {
                    format!("   (rounds {}–{}×)", fmt(low), fmt(high))
                });
                out.push_str(&format!("{:<28} {:>7}×{range}\n", r.what, fmt(r.times)));
            }
        }
        out.push_str(&self.turns_text());
        out.push_str(&self.pauses_text());
        out.push_str(&self.paused_text());
        for idle in &self.idle {
            out.push_str(&format!(
                "\n{} idle {} clients over {:.0} s: server {} of a core, clients {:.3} % of a core, {:.3} % of the machine (others: {})\nserver RSS: {} with 1 client, {} with {}\n",
                idle.clients,
                idle.transport,
                idle.secs,
                idle.server_cpu_pct
                    .map_or("-".into(), |p| format!("{p:.3} %")),
                idle.client_cpu_pct,
                idle.total_pct_of_machine,
                idle.others_pct.map_or("-".into(), |p| format!("{p:.1} %")),
                mib(idle.server_rss_1),
                mib(idle.server_rss_n),
                idle.clients,
            ));
        }
        out
    }

    /// For each transport and count of several clients whose answers came
    /// in runs to one client at a time ([`OpStats::in_runs`]): the share
    /// of the phase that went to the changes from one client to another,
    /// the median over rounds.
    fn turns_text(&self) -> String {
        let mut out = String::new();
        for (transport, clients, runs) in self.rounds_by_count() {
            if clients < 2 {
                continue;
            }
            let rounds = runs.len();
            let of = if rounds > 1 {
                format!("; median of {rounds} rounds")
            } else {
                String::new()
            };
            for (op, phase) in PHASES {
                let spreads: Vec<&Spread> =
                    runs.iter().filter_map(|r| phase(r)?.in_runs()).collect();
                if spreads.is_empty() {
                    continue;
                }
                let mid = |f: fn(&Spread) -> f64| median(spreads.iter().map(|s| f(s)).collect());
                let (Some(pct), Some(n), Some(each), Some(long), Some(long_pct)) = (
                    mid(|s| s.changes_pct),
                    mid(|s| s.changes as f64),
                    mid(|s| s.change_p50_ns as f64),
                    mid(|s| s.long_changes as f64),
                    mid(|s| s.long_changes_pct),
                ) else {
                    continue;
                };
                out.push_str(&format!(
                    "{transport} {op}, {clients} clients taking turns: {pct:.2} % of the phase went to changes from one client to another ({n:.0} changes, median {} each; {long:.0} of {} or more, {long_pct:.2} %{of})\n",
                    us(each as u64),
                    us(nanos(LONG_CHANGE)),
                ));
            }
        }
        if !out.is_empty() {
            out.insert(0, '\n');
        }
        out
    }

    /// Each transport's and client count's phases that had pauses (answers
    /// [`LONG_CHANGE`] or more after the one before): how many and their
    /// share of the phase, the median over rounds. Not a phase whose median
    /// call takes that long itself (fsync-mode puts, each waiting for a
    /// disk's sync): nearly every answer is such a "pause" there, and the
    /// line would only repeat its latency.
    fn pauses_text(&self) -> String {
        let mut out = String::new();
        for (transport, clients, runs) in self.rounds_by_count() {
            for (op, phase) in PHASES {
                let p50 = median(
                    runs.iter()
                        .filter_map(|r| Some(phase(r)?.p50_ns as f64))
                        .collect(),
                );
                if p50.is_some_and(|p50| p50 >= nanos(LONG_CHANGE) as f64) {
                    continue;
                }
                let spreads: Vec<&Spread> = runs
                    .iter()
                    .filter_map(|r| phase(r)?.spread.as_ref())
                    .collect();
                let (Some(n), Some(pct)) = (
                    median(spreads.iter().map(|s| s.pauses as f64).collect()),
                    median(spreads.iter().map(|s| s.pauses_pct).collect()),
                ) else {
                    continue;
                };
                if n == 0.0 {
                    continue;
                }
                let of = match spreads.len() {
                    1 => String::new(),
                    rounds => format!(" (median of {rounds} rounds)"),
                };
                let who = if clients == 1 { "client" } else { "clients" };
                let pauses = if n == 1.0 { "pause" } else { "pauses" };
                out.push_str(&format!(
                    "{transport} {op}, {clients} {who}: {n:.0} {pauses} of {} or more between two answers, {pct:.2} % of the phase{of}\n",
                    us(nanos(LONG_CHANGE)),
                ));
            }
        }
        if !out.is_empty() {
            out.insert(0, '\n');
        }
        out
    }

    /// The gets after a pause, a row per transport.
    fn paused_text(&self) -> String {
        let Some(first) = self.paused.first() else {
            return String::new();
        };
        let mut out = format!(
            "\ngets after a pause: one client, each get after {} ms with the machine idle (the server's thread asleep), as a desktop app's calls come; {} calls\n{:<11} {:>10} {:>10} {:>10}\n",
            first.pause_ms, first.calls, "transport", "p50", "p90", "max"
        );
        for p in &self.paused {
            out.push_str(&format!(
                "{:<11} {:>10} {:>10} {:>10}\n",
                p.transport,
                us(p.p50_ns),
                us(p.p90_ns),
                us(p.max_ns)
            ));
        }
        out
    }

    /// The runs of each transport and client count (its rounds), in the
    /// order they were first measured.
    fn rounds_by_count(&self) -> Vec<(&str, usize, Vec<&Run>)> {
        let mut groups: Vec<(&str, usize, Vec<&Run>)> = Vec::new();
        for r in &self.runs {
            match groups
                .iter_mut()
                .find(|(t, c, _)| *t == r.transport && *c == r.clients)
            {
                Some((_, _, runs)) => runs.push(r),
                None => groups.push((r.transport.as_str(), r.clients, vec![r])),
            }
        }
        groups
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Options for [`after_pauses`]: `n` gets, no pause (the pause itself
    /// is a sleep; these tests look at what is counted, not at time).
    fn paused_opts(n: usize) -> Options {
        Options {
            paused_gets: n,
            pause: Duration::ZERO,
            server: ServerMode::InProcess,
            ..Options::default()
        }
    }

    #[test]
    fn gets_after_a_pause_are_each_made_once_and_timed_in_order() {
        let mut made = Vec::new();
        let paused = after_pauses("shm", &paused_opts(7), |i| {
            made.push(i);
            Ok::<(), ()>(())
        })
        .expect("no call fails");
        assert_eq!(made, (0..7).collect::<Vec<_>>());
        assert_eq!((paused.transport.as_str(), paused.calls), ("shm", 7));
        assert_eq!(paused.pause_ms, 0.0);
        assert!(
            paused.p50_ns <= paused.p90_ns && paused.p90_ns <= paused.max_ns,
            "{paused:?}"
        );
    }

    #[test]
    fn a_failed_get_after_a_pause_ends_the_measurement_with_its_error() {
        let mut made = 0;
        let got = after_pauses("redis-unix", &paused_opts(5), |i| {
            made += 1;
            if i == 2 { Err("refused") } else { Ok(()) }
        });
        assert_eq!(got.map(|p| p.calls), Err("refused"));
        assert_eq!(made, 3, "no call after the failed one");
    }

    fn paused(transport: &str, p50_ns: u64) -> Paused {
        Paused {
            transport: transport.into(),
            calls: 100,
            pause_ms: 10.0,
            p50_ns,
            p90_ns: p50_ns,
            max_ns: p50_ns,
        }
    }

    #[test]
    fn gets_after_a_pause_compare_each_other_transport_with_shared_memory() {
        let ratios = paused_ratios(&[
            paused("shm", 50_000),
            paused("socket", 150_000),
            paused("redis-unix", 40_000),
        ]);
        let got: Vec<(&str, f64)> = ratios.iter().map(|r| (r.what.as_str(), r.times)).collect();
        assert_eq!(
            got,
            [
                ("paused get p50: socket / shm", 3.0),
                ("paused get p50: redis-unix / shm", 0.8)
            ]
        );
        assert!(
            paused_ratios(&[paused("socket", 1), paused("redis-unix", 1)]).is_empty(),
            "nothing to compare with without shared memory"
        );
    }

    #[test]
    fn a_loading_batch_of_big_documents_stays_far_under_the_message_limit() {
        assert_eq!(load_batch(200), 250);
        for doc_bytes in [1, 90, 20_000, 100_000, 1 << 20, 3 << 20, 16 << 20] {
            let n = load_batch(doc_bytes);
            assert!(n >= 1, "{doc_bytes}");
            assert!(
                n == 1 || n * doc_bytes <= 4 << 20,
                "{n} documents of {doc_bytes} bytes"
            );
        }
    }

    fn stats(ops_per_sec: f64) -> OpStats {
        OpStats::from_samples(vec![1000], 1.0 / ops_per_sec, 0.0, None, None, None)
    }

    fn run(transport: &str, clients: usize, gets: f64, puts: Option<f64>) -> Run {
        Run {
            transport: transport.into(),
            clients,
            get: stats(gets),
            put: puts.map(stats),
        }
    }

    fn find<'a>(ratios: &'a [Ratio], what: &str) -> Option<&'a Ratio> {
        ratios.iter().find(|r| r.what == what)
    }

    /// Runs one phase of four socket clients against an in-process
    /// server, `call` as each call; what it returned, or `None` if it did
    /// not return within a minute (the phase waits for a client that never
    /// comes).
    fn phase_of_four(
        call: impl Fn(&Client, usize, usize) -> Result<(), IpcError> + Send + Sync + 'static,
    ) -> Option<Result<OpStats, IpcError>> {
        let mut mode = ServerMode::InProcess;
        let target = Target::start(&mut mode, None, Durability::Journal)
            .expect("an in-process server starts");
        let clients: Vec<Client> = (0..4)
            .map(|_| {
                target
                    .connect(Transport::Socket)
                    .expect("a client connects")
            })
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(phase(&clients, 20, None, call));
        });
        let result = rx.recv_timeout(Duration::from_secs(60)).ok();
        if result.is_some() {
            target.stop();
        }
        result
    }

    #[test]
    fn a_client_that_fails_ends_the_phase_with_its_error_once_the_others_are_done() {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let result = phase_of_four(move |c, who, i| {
            if who == 1 && i == 3 {
                return Err(IpcError::Protocol("client 1 gives up".into()));
            }
            c.get_json("missing")?;
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .expect("the phase returned: the other clients did not wait for the one that failed");
        match result {
            Err(IpcError::Protocol(m)) => assert_eq!(m, "client 1 gives up"),
            other => panic!("expected the failing client's error, got {other:?}"),
        }
        assert_eq!(
            calls.load(Ordering::Relaxed),
            3 * 20 + 3,
            "the other clients made all their calls"
        );
    }

    #[test]
    fn a_client_that_panics_ends_the_phase_with_an_error() {
        let result = phase_of_four(|c, who, i| {
            assert!(!(who == 2 && i == 5), "client 2 breaks");
            c.get_json("missing").map(drop)
        })
        .expect("the phase returned: the other clients did not wait for the one that panicked");
        match result {
            Err(IpcError::Protocol(m)) => assert!(m.contains("panicked"), "{m}"),
            other => panic!("expected an error for the panic, got {other:?}"),
        }
    }

    #[test]
    fn a_phase_s_floor_is_the_larger_of_two_that_agree_and_none_when_the_speed_changed() {
        let us = |n: u64| Some(Duration::from_nanos(n));
        assert_eq!(phase_floor(us(100), us(110)), Some(110));
        assert_eq!(phase_floor(us(120), us(100)), Some(120));
        assert_eq!(
            phase_floor(us(100), us(400)),
            None,
            "the two speeds of the machine"
        );
        assert_eq!(phase_floor(None, us(100)), None);
        assert_eq!(phase_floor(us(100), None), None);
        assert_eq!(phase_floor(us(0), us(0)), None);
    }

    #[test]
    fn two_phases_ran_at_one_speed_when_their_floors_are_close() {
        assert!(same_speed(Some(100), Some(120)));
        assert!(same_speed(Some(420), Some(380)));
        assert!(!same_speed(Some(100), Some(400)));
        assert!(!same_speed(None, Some(100)));
        assert!(!same_speed(Some(100), None));
    }

    fn at_floor(mut r: Run, floor: Option<u64>) -> Run {
        r.get.floor_ns = floor;
        if let Some(p) = r.put.as_mut() {
            p.floor_ns = floor;
        }
        r
    }

    #[test]
    fn rounds_whose_phases_ran_at_two_speeds_are_left_out_of_a_second_median() {
        let runs = vec![
            at_floor(run("shm", 1, 1000.0, None), Some(100)),
            at_floor(run("shm", 16, 950.0, None), Some(110)),
            // One client slow, sixteen fast: 2.0× says nothing.
            at_floor(run("shm", 1, 500.0, None), Some(400)),
            at_floor(run("shm", 16, 1000.0, None), Some(100)),
            at_floor(run("shm", 1, 1000.0, None), Some(100)),
            at_floor(run("shm", 16, 970.0, None), Some(100)),
        ];
        let ratios = count_ratios(&runs, &[1, 16]);
        let all = find(&ratios, "shm gets/s: 16 ÷ 1 clients (median of 3 rounds)")
            .expect("the median of every round");
        assert!((all.times - 0.97).abs() < 1e-9, "{}", all.times);
        let alike = find(
            &ratios,
            "shm gets/s: 16 ÷ 1 clients, the 2 of 3 rounds at one machine speed",
        )
        .expect("the median of the rounds at one speed");
        assert!((alike.times - 0.96).abs() < 1e-9, "{}", alike.times);
    }

    #[test]
    fn a_median_of_rounds_shows_their_lowest_and_highest_ratio() {
        let runs = vec![
            run("shm", 1, 1000.0, None),
            run("shm", 16, 950.0, None),
            run("shm", 1, 500.0, None),
            run("shm", 16, 1000.0, None),
            run("shm", 1, 1000.0, None),
            run("shm", 16, 970.0, None),
        ];
        let ratios = count_ratios(&runs, &[1, 16]);
        let gets = find(&ratios, "shm gets/s: 16 ÷ 1 clients (median of 3 rounds)")
            .expect("the median of every round");
        let [low, high] = gets.rounds_range.expect("three rounds: a range");
        assert!(
            (low - 0.95).abs() < 1e-9 && (high - 2.0).abs() < 1e-9,
            "{gets:?}"
        );
        let text = report_text(runs, ratios);
        assert!(
            text.contains("0.97×   (rounds 0.95–2.00×)"),
            "the text shows the range beside the median: {text}"
        );
    }

    #[test]
    fn a_single_round_has_no_range_to_show() {
        let runs = vec![run("shm", 1, 1000.0, None), run("shm", 16, 950.0, None)];
        let ratios = count_ratios(&runs, &[1, 16]);
        let gets = find(&ratios, "shm gets/s: 16 ÷ 1 clients").expect("one round's ratio");
        assert_eq!(gets.rounds_range, None);
        let json = serde_json::to_value(gets).expect("a ratio serializes");
        assert!(json.get("rounds_range").is_none(), "{json}");
        assert!(!report_text(runs, ratios).contains("(rounds"));
    }

    #[test]
    fn no_second_median_when_every_round_ran_at_one_speed_or_none_did() {
        let same = vec![
            at_floor(run("shm", 1, 1000.0, None), Some(100)),
            at_floor(run("shm", 16, 950.0, None), Some(100)),
        ];
        let unknown = vec![run("shm", 1, 1000.0, None), run("shm", 16, 950.0, None)];
        for runs in [same, unknown] {
            let ratios = count_ratios(&runs, &[1, 16]);
            assert_eq!(ratios.len(), 1, "{ratios:?}");
        }
    }

    #[test]
    fn a_phase_lasts_from_the_first_client_s_start_to_the_last_client_s_end() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let clients = [
            (t + ms(2), vec![t + ms(50), t + ms(90)]),
            (t, vec![t + ms(100)]),
            (t + ms(1), vec![t + ms(95)]),
        ];
        assert_eq!(work_span(&clients), Some(ms(100)));
        assert_eq!(work_span(&[(t + ms(5), vec![t + ms(7)])]), Some(ms(2)));
        assert_eq!(work_span(&[]), None);
    }

    #[test]
    fn the_busy_rate_counts_the_answers_between_the_last_start_and_the_first_finish() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        // One began at 0 and answered at 1..=10 ms; another began at 4 and
        // answered at 5..=8: both were busy from 4 to 8 ms, and the
        // answers at 5, 6, 7 and 8 ms (each of both) came in between.
        let clients = [
            (ms(0), (1..=10).map(ms).collect::<Vec<_>>()),
            (ms(4), (5..=8).map(ms).collect()),
        ];
        let rate = busy_rate(&clients).expect("both were busy for 4 ms");
        assert!((rate - 8.0 / 0.004).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn one_client_s_busy_rate_is_its_own_and_none_without_a_moment_when_all_were_busy() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let alone = [(ms(0), (1..=4).map(ms).collect::<Vec<_>>())];
        let rate = busy_rate(&alone).expect("one client is busy on its own");
        assert!((rate - 1000.0).abs() < 1e-6, "{rate}");
        let apart = [(ms(0), vec![ms(1), ms(2)]), (ms(3), vec![ms(4), ms(5)])];
        assert_eq!(
            busy_rate(&apart),
            None,
            "the first finished before the second began"
        );
        assert_eq!(busy_rate(&[(ms(0), Vec::new())]), None, "no answer at all");
        assert_eq!(busy_rate(&[]), None);
    }

    #[test]
    fn the_rate_while_all_were_busy_is_compared_as_the_phase_s_is() {
        let mut runs = vec![run("shm", 1, 1000.0, None), run("shm", 16, 950.0, None)];
        runs[0].get.busy_ops_per_sec = Some(1000.0);
        runs[1].get.busy_ops_per_sec = Some(1020.0);
        let ratios = count_ratios(&runs, &[1, 16]);
        let busy = find(&ratios, "shm gets/s while all busy: 16 ÷ 1 clients")
            .expect("a ratio of the busy rates");
        assert!((busy.times - 1.02).abs() < 1e-9, "{busy:?}");
        assert!(
            find(&ratios, "shm puts/s while all busy: 16 ÷ 1 clients").is_none(),
            "no puts measured"
        );
    }

    /// One client answered at 1, 2 and 3 ms, another at 5 and 6 ms, the
    /// first again at 8 ms; both began at 0.
    fn two_taking_turns() -> [(Instant, Vec<Instant>); 2] {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        [
            (ms(0), vec![ms(1), ms(2), ms(3), ms(8)]),
            (ms(0), vec![ms(5), ms(6)]),
        ]
    }

    #[test]
    fn the_spread_counts_each_answer_to_another_client_than_the_one_before() {
        let s = spread(&two_taking_turns()).expect("there were answers");
        // 3 → 5 and 6 → 8 ms: two changes, 4 of the phase's 8 ms.
        assert_eq!(s.changes, 2);
        assert!((s.changes_pct - 50.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.change_p50_ns, 2_000_000);
        // Both of them long.
        assert_eq!(s.long_changes, 2);
        assert!((s.long_changes_pct - 50.0).abs() < 1e-9, "{s:?}");
        // 1 → 2, 2 → 3 and 5 → 6 ms: a millisecond a call within a run.
        let run = s.run_call_ns.expect("answers in a row to one client");
        assert!((run - 1e6).abs() < 1e-3, "{s:?}");
    }

    #[test]
    fn only_changes_of_200_us_or_more_count_as_long() {
        let t = Instant::now();
        let us = |n: u64| t + Duration::from_micros(n);
        // Changes 1,000 → 1,199 µs (just short), 1,300 → 1,500 (just
        // long) and 1,600 → 2,000 (long), in a phase of 2,000 µs.
        let s = spread(&[
            (us(0), vec![us(1_000), us(1_300), us(1_600)]),
            (us(0), vec![us(1_199), us(1_500), us(2_000)]),
        ])
        .expect("answers");
        assert_eq!((s.changes, s.long_changes), (5, 2), "{s:?}");
        assert!((s.long_changes_pct - 30.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn pauses_count_every_answer_200_us_or_more_after_the_one_before() {
        let t = Instant::now();
        let us = |n: u64| t + Duration::from_micros(n);
        // One client waits 1,000 → 1,300 µs for its own next answer (a
        // pause, not a change), then 1,300 → 1,499 (just short); the
        // other's answer comes 1,499 → 1,700 (a pause and a long
        // change); a phase of 1,700 µs.
        let s = spread(&[
            (us(0), vec![us(1_000), us(1_300), us(1_499)]),
            (us(0), vec![us(1_700)]),
        ])
        .expect("answers");
        assert_eq!((s.pauses, s.changes, s.long_changes), (2, 1, 1), "{s:?}");
        let want = (300.0 + 201.0) * 100.0 / 1_700.0;
        assert!((s.pauses_pct - want).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn one_client_s_spread_has_no_change_and_its_calls_are_its_run() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let s = spread(&[(ms(0), vec![ms(1), ms(3), ms(5)])]).expect("answers");
        assert_eq!((s.changes, s.change_p50_ns, s.long_changes), (0, 0, 0));
        assert_eq!((s.changes_pct, s.long_changes_pct), (0.0, 0.0));
        assert_eq!(s.run_call_ns, Some(2e6));
        let single = spread(&[(ms(0), vec![ms(1)])]).expect("one answer");
        assert_eq!(single.run_call_ns, None, "no two answers in a row");
        assert_eq!(spread(&[(ms(0), Vec::new())]), None);
        assert_eq!(spread(&[]), None);
    }

    /// `stats` with the spread of a phase of `ops` answers, `changes` of
    /// them to another client than the one before, each call in a run
    /// taking `run_ns`.
    fn spread_stats(ops: u64, changes: u64, run_ns: f64) -> OpStats {
        OpStats {
            ops,
            spread: Some(Spread {
                changes,
                changes_pct: 2.5,
                change_p50_ns: 20_000,
                long_changes: 3,
                long_changes_pct: 0.75,
                pauses: 3,
                pauses_pct: 0.75,
                run_call_ns: Some(run_ns),
            }),
            ..stats(1000.0)
        }
    }

    /// The text of a report of `runs` and their `ratios` (no idle phase).
    fn report_text(runs: Vec<Run>, ratios: Vec<Ratio>) -> String {
        Report {
            machine: machine(),
            doc_bytes: 200,
            server_in_child: true,
            durability: Durability::Journal,
            client_processes: false,
            runs,
            ratios,
            idle: Vec::new(),
            paused: Vec::new(),
        }
        .to_text()
    }

    #[test]
    fn the_text_gives_a_row_of_gets_after_a_pause_per_transport_and_none_when_skipped() {
        let mut report = Report {
            machine: machine(),
            doc_bytes: 200,
            server_in_child: true,
            durability: Durability::Journal,
            client_processes: false,
            runs: Vec::new(),
            ratios: Vec::new(),
            idle: Vec::new(),
            paused: vec![paused("shm", 75_000), paused("socket", 133_000)],
        };
        let text = report.to_text();
        assert!(
            text.contains("gets after a pause: one client, each get after 10 ms")
                && text.contains("; 100 calls"),
            "{text}"
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("shm ") || l.starts_with("socket "))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].contains("75.00 µs") && rows[1].contains("133.00 µs"),
            "{text}"
        );
        report.paused.clear();
        assert!(!report.to_text().contains("after a pause"));
    }

    #[test]
    fn the_report_names_the_servers_durability() {
        assert!(
            report_text(Vec::new(), Vec::new())
                .contains("server in its own process (journal durability)")
        );
    }

    #[test]
    fn the_benchmark_server_keeps_writes_at_the_durability_asked_for() {
        for durability in [Durability::Journal, Durability::Fsync] {
            let target = Target::start(&mut ServerMode::InProcess, None, durability)
                .expect("an in-process server starts");
            let server = target.in_process.as_ref().expect("in process");
            assert_eq!(server.store().durability(), durability);
        }
    }

    #[test]
    fn calls_within_runs_are_compared_only_where_the_clients_took_turns() {
        let mut runs = vec![run("shm", 1, 1000.0, None), run("shm", 16, 950.0, None)];
        runs[0].get = spread_stats(1000, 0, 1000.0);
        runs[1].get = spread_stats(1000, 100, 800.0);
        let ratios = count_ratios(&runs, &[1, 16]);
        let within = find(&ratios, "shm gets/s within a client's run: 16 ÷ 1 clients")
            .expect("one answer in ten to another client: runs");
        assert!((within.times - 1.25).abs() < 1e-9, "{within:?}");
        let text = report_text(runs.clone(), ratios);
        assert!(
            text.contains("shm gets, 16 clients taking turns: 2.50 % of the phase went to changes from one client to another (100 changes, median 20.00 µs each; 3 of 200.00 µs or more, 0.75 %)"),
            "{text}"
        );
        // Mixed answers (clients served at once) have no runs to compare.
        runs[1].get = spread_stats(1000, 101, 800.0);
        let ratios = count_ratios(&runs, &[1, 16]);
        assert!(find(&ratios, "shm gets/s within a client's run: 16 ÷ 1 clients").is_none());
        let text = report_text(runs, ratios);
        assert!(!text.contains("taking turns"), "{text}");
    }

    #[test]
    fn a_phase_whose_calls_take_a_pause_s_length_themselves_lists_no_pauses() {
        // One client's put phase with 2,261 pauses, its calls' p50 `p50_ns`.
        let text_with_p50 = |p50_ns: u64| {
            let mut r = run("shm", 1, 1000.0, Some(4000.0));
            let mut put = spread_stats(3000, 0, p50_ns as f64);
            put.p50_ns = p50_ns;
            if let Some(s) = put.spread.as_mut() {
                s.pauses = 2261;
                s.pauses_pct = 82.33;
            }
            r.put = Some(put);
            report_text(vec![r], Vec::new())
        };
        // fsync-mode puts: every call ~230 µs, so nearly every answer
        // comes 200 µs or more after the one before.
        let text = text_with_p50(230_000);
        assert!(!text.contains("shm puts, 1 client:"), "{text}");
        // The same pauses among calls of 199 µs are listed.
        let text = text_with_p50(199_000);
        assert!(text.contains("shm puts, 1 client: 2261 pauses"), "{text}");
    }

    #[test]
    fn the_text_gives_each_phase_s_pauses_with_one_client_as_with_many() {
        let mut runs = vec![
            run("shm", 1, 1000.0, Some(500.0)),
            run("shm", 16, 950.0, Some(480.0)),
            run("shm", 1, 1000.0, Some(500.0)),
            run("shm", 16, 950.0, Some(480.0)),
        ];
        for (r, pauses) in runs.iter_mut().zip([26, 0, 28, 0]) {
            let mut put = spread_stats(1000, 0, 1000.0);
            if let Some(s) = put.spread.as_mut() {
                s.pauses = pauses;
                s.pauses_pct = pauses as f64 / 4.0;
            }
            r.put = Some(put);
        }
        // Sixteen clients' gets: 3 pauses, 0.75 % (`spread_stats`).
        runs[1].get = spread_stats(1000, 100, 800.0);
        runs[3].get = spread_stats(1000, 100, 800.0);
        let text = report_text(runs, Vec::new());
        assert!(
            text.contains("shm puts, 1 client: 27 pauses of 200.00 µs or more between two answers, 6.75 % of the phase (median of 2 rounds)"),
            "{text}"
        );
        assert!(
            !text.contains("shm puts, 16 clients:"),
            "a phase without pauses is not listed: {text}"
        );
        assert!(
            text.contains("shm gets, 16 clients: 3 pauses of 200.00 µs or more between two answers, 0.75 % of the phase (median of 2 rounds)"),
            "every count, not only one: {text}"
        );
        assert!(
            !text.contains("shm gets, 1 client:"),
            "a phase without a spread is not listed: {text}"
        );
    }

    #[test]
    fn each_count_is_compared_with_the_first_in_its_own_round() {
        let runs = [
            run("shm", 1, 1000.0, Some(300.0)),
            run("shm", 16, 800.0, Some(240.0)),
            run("shm", 1, 500.0, Some(200.0)),
            run("shm", 16, 600.0, Some(100.0)),
            run("shm", 1, 900.0, Some(300.0)),
            run("shm", 16, 900.0, Some(150.0)),
        ];
        let ratios = count_ratios(&runs, &[1, 16]);
        let gets =
            find(&ratios, "shm gets/s: 16 ÷ 1 clients (median of 3 rounds)").expect("a gets ratio");
        // Rounds: 0.8, 1.2, 1.0 — the median, not the ratio of sums.
        assert!((gets.times - 1.0).abs() < 1e-9, "{gets:?}");
        let puts =
            find(&ratios, "shm puts/s: 16 ÷ 1 clients (median of 3 rounds)").expect("a puts ratio");
        assert!((puts.times - 0.5).abs() < 1e-9, "{puts:?}");
    }

    #[test]
    fn one_count_gives_no_count_ratio_and_one_round_says_no_median() {
        let runs = [run("shm", 1, 1000.0, None)];
        assert!(count_ratios(&runs, &[1]).is_empty());
        let runs = [run("socket", 4, 100.0, None), run("socket", 8, 50.0, None)];
        let ratios = count_ratios(&runs, &[4, 8]);
        let gets = find(&ratios, "socket gets/s: 8 ÷ 4 clients").expect("a gets ratio");
        assert!((gets.times - 0.5).abs() < 1e-9, "{gets:?}");
        assert!(
            find(&ratios, "socket puts/s: 8 ÷ 4 clients").is_none(),
            "no puts measured"
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
