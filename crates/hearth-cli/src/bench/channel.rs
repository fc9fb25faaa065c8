//! `hearth bench channel`: get and put over a server's channel, from one
//! client to many, one request at a time and pipelined, with Redis over a
//! Unix socket beside it when `redis-server` is installed.
//!
//! Owns: the channel workloads (round trips timed one by one; throughput
//! with N clients, each its own connection, each with 1 or `--pipeline`
//! requests in flight), starting and stopping the benchmark's own server
//! process when no `--channel` is given, and the report (ops/s,
//! percentiles, the server's and everyone else's CPU share, hearth/Redis
//! ratios from the same run). Must never: assert a time, leave a server it
//! started running, or leave `bench:` documents in a server it did not
//! start.
//!
//! Transports: every hearth row belongs to a [`Transport`] section. Only the
//! socket transport exists today; when hearth-ipc can select the shared
//! memory transport, a `--transport shm|socket|both` option adds a variant
//! here, [`Transport::options`] selects it, and each chosen transport gets
//! its own section and its own ratios against Redis.

use super::redis::{self, RedisServer};
use super::{
    Measure, Rng, elapsed_ns, fmt_ns, fmt_rate, machine, machine_ticks, make_doc, percentiles,
    process_ticks, progress, round3, vocabulary,
};
use crate::args::GlobalArgs;
use crate::error::CliError;
use clap::Args;
use hearth_ipc::{
    AsyncClient, Client, ConnectOptions, IpcError, ListOptions, TransportPreference, WriteOp,
};
use hearth_store::Durability;
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The caller's work between two calls of the "work between calls" row.
const THINK: Duration = Duration::from_micros(60);

/// Documents a list row asks for at a time.
const LIST_PAGE: usize = 10;

/// Arguments of `hearth bench channel` (`--channel` and `--json` are the
/// global flags).
#[derive(Debug, Args)]
pub(crate) struct ChannelArgs {
    /// Client counts for the throughput rows, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16, 64])]
    pub(crate) clients: Vec<usize>,
    /// Operations per row.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) ops: usize,
    /// Requests each client keeps in flight in the pipelined rows (1 runs
    /// only the one-at-a-time rows).
    #[arg(long, value_name = "DEPTH", default_value_t = 32)]
    pub(crate) pipeline: usize,
    /// Documents written first; gets read them at random, puts replace
    /// them in turn.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) docs: usize,
    /// Skip the Redis baseline even when redis-server is installed.
    #[arg(long)]
    pub(crate) no_redis: bool,
    /// Which of hearth's transports to measure.
    #[arg(long, value_enum, default_value_t = TransportArg::Socket)]
    pub(crate) transport: TransportArg,
}

/// What a row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BenchOp {
    /// Read a document (Redis: GET).
    Get,
    /// Replace a document (Redis: SET).
    Put,
}

impl BenchOp {
    fn name(self) -> &'static str {
        match self {
            BenchOp::Get => "get",
            BenchOp::Put => "put",
        }
    }

    pub(super) fn redis_name(self) -> &'static str {
        match self {
            BenchOp::Get => "GET",
            BenchOp::Put => "SET",
        }
    }
}

/// How hearth's rows reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// The channel's Unix socket, framed as `docs/protocol.md` says.
    Socket,
    /// The shared-memory rings (Linux), after the socket handshake.
    SharedMemory,
}

impl Transport {
    /// The key of its section in `--json` output.
    fn key(self) -> &'static str {
        match self {
            Transport::Socket => "hearth_socket",
            Transport::SharedMemory => "hearth_shm",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Transport::Socket => "hearth over the socket transport",
            Transport::SharedMemory => "hearth over shared memory",
        }
    }

    /// Connection options that select this transport (and fail rather
    /// than measure the other one).
    fn options(self, base: ConnectOptions) -> ConnectOptions {
        match self {
            Transport::Socket => base.transport(TransportPreference::Socket),
            Transport::SharedMemory => base.transport(TransportPreference::SharedMemory),
        }
    }
}

/// `--transport` of `hearth bench` and `hearth bench channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportArg {
    /// The Unix socket only.
    Socket,
    /// Shared memory only (Linux).
    Shm,
    /// Shared memory, then the socket, with their ratios.
    Both,
}

impl TransportArg {
    fn transports(self) -> Vec<Transport> {
        match self {
            TransportArg::Socket => vec![Transport::Socket],
            TransportArg::Shm => vec![Transport::SharedMemory],
            TransportArg::Both => vec![Transport::SharedMemory, Transport::Socket],
        }
    }
}

/// The pipeline depths of the throughput rows: 1, and `depth` when larger.
pub(super) fn depths(depth: usize) -> Vec<usize> {
    if depth > 1 { vec![1, depth] } else { vec![1] }
}

/// The key of a throughput row, the same for hearth and Redis.
pub(super) fn throughput_key(op: BenchOp, clients: usize, depth: usize) -> String {
    format!("{}_c{clients}_d{depth}", op.name())
}

/// The label of a throughput row.
pub(super) fn throughput_label(op: &str, clients: usize, depth: usize) -> String {
    let who = if clients == 1 {
        "1 client".to_string()
    } else {
        format!("{clients} clients")
    };
    if depth == 1 {
        format!("{op}, {who}, 1 in flight each")
    } else {
        format!("{op}, {who} × {depth} in flight (pipelined)")
    }
}

// ---------------------------------------------------------------------------
// CPU shares

/// CPU counters at the start of a row: the machine's, this process's and
/// the server process's (when known).
pub(super) struct Probe {
    machine: Option<(u64, u64)>,
    own: Option<u64>,
    server: Option<(String, u64)>,
}

impl Probe {
    pub(super) fn start(server_pid: Option<u32>) -> Probe {
        let server = server_pid.and_then(|pid| {
            let pid = pid.to_string();
            process_ticks(&pid).map(|t| (pid, t))
        });
        Probe {
            machine: machine_ticks(),
            own: process_ticks("self"),
            server,
        }
    }

    /// The shares of all CPU time since the start that went to everything
    /// but this process and the server (`others`), and to the server, in %.
    fn shares(&self) -> (Option<f64>, Option<f64>) {
        let (Some((busy0, total0)), Some((busy1, total1))) = (self.machine, machine_ticks()) else {
            return (None, None);
        };
        let total = total1.saturating_sub(total0);
        // Ticks are 10 ms: below ~0.2 s of machine time the share is noise.
        if total < 40 {
            return (None, None);
        }
        let pct = |ticks: u64| 100.0 * ticks as f64 / total as f64;
        let own = match (self.own, process_ticks("self")) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        let server = self
            .server
            .as_ref()
            .and_then(|(pid, t0)| process_ticks(pid).map(|t1| t1.saturating_sub(*t0)));
        let busy = busy1.saturating_sub(busy0);
        let others = busy.saturating_sub(own).saturating_sub(server.unwrap_or(0));
        (Some(pct(others)), server.map(pct))
    }

    /// A row's measure from its per-operation latencies and wall time, and
    /// the server's CPU share.
    pub(super) fn measure(self, ns: Vec<u32>, wall: Duration) -> (Measure, Option<f64>) {
        let (others, server) = self.shares();
        let m = Measure {
            ops: ns.len() as u64,
            secs: wall.as_secs_f64(),
            lat: percentiles(ns),
            others_cpu: others,
        };
        (m, server)
    }
}

// ---------------------------------------------------------------------------
// Rows and sections

/// One result line.
pub(super) struct Row {
    key: String,
    label: String,
    m: Measure,
    /// Share of all CPU time the server process used during the row, in %.
    server_cpu: Option<f64>,
}

impl Row {
    pub(super) fn new(
        key: &str,
        label: impl Into<String>,
        m: Measure,
        server_cpu: Option<f64>,
    ) -> Row {
        Row {
            key: key.into(),
            label: label.into(),
            m,
            server_cpu,
        }
    }
}

/// The rows of one system (hearth over one transport, or Redis).
pub(super) struct Section {
    key: String,
    title: String,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Section {
    pub(super) fn new(key: &str, title: impl Into<String>) -> Section {
        Section {
            key: key.into(),
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    fn get(&self, key: &str) -> Option<&Measure> {
        self.rows.iter().find(|r| r.key == key).map(|r| &r.m)
    }
}

// ---------------------------------------------------------------------------
// The server under test

/// The server the hearth rows talk to.
struct Target {
    channel: String,
    /// Its pid, when known (the benchmark started it).
    pid: Option<u32>,
    /// The benchmark's own server process and its data directory.
    own: Option<OwnServer>,
}

/// The budget of the AsyncClient row with a fast path
/// (`AsyncClient::with_fast_path`).
const ASYNC_FAST_PATH: Duration = Duration::from_micros(20);

/// A `hearth serve` the benchmark started; killed if still running when
/// dropped.
struct OwnServer {
    child: Child,
    socket: PathBuf,
    data: PathBuf,
}

impl OwnServer {
    /// Starts this executable's `serve` on a fresh channel and data
    /// directory under `dir`; returns once its ready line arrived.
    fn start(
        dir: &std::path::Path,
        durability: Durability,
    ) -> Result<(OwnServer, String), CliError> {
        let exe = std::env::current_exe().map_err(|source| CliError::Io {
            action: "find",
            path: "the hearth executable".into(),
            source,
            hint: "run the benchmark with --channel NAME against a running server",
        })?;
        let channel = format!("hearth-bench-{}", std::process::id());
        let data = dir.join("data");
        let mut child = Command::new(&exe)
            .args(["serve", "--channel", &channel, "--durability"])
            .arg(durability.name())
            .arg("--data-dir")
            .arg(&data)
            .env("HEARTH_LOG", "warn")
            .env_remove("HEARTH_CHANNEL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| CliError::Io {
                action: "start",
                path: exe.clone(),
                source,
                hint: "run the benchmark with --channel NAME against a running server",
            })?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => std::io::BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let socket = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("socket="))
            .map(PathBuf::from);
        match (read, socket) {
            (Ok(_), Some(socket)) if line.starts_with("ready ") => Ok((
                OwnServer {
                    child,
                    socket,
                    data,
                },
                channel,
            )),
            _ => {
                let _ = child.kill();
                let status = child.wait();
                Err(CliError::input(format!(
                    "the benchmark's server did not start ({status:?}; it printed {line:?}); its messages are above"
                )))
            }
        }
    }

    /// Stops it with SIGTERM and waits; an unclean exit is reported.
    fn stop(mut self) -> Result<(), CliError> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().map_err(|source| CliError::Io {
            action: "wait for",
            path: "the benchmark's server".into(),
            source,
            hint: "it may still be running",
        })?;
        if !status.success() {
            return Err(CliError::input(format!(
                "the benchmark's server exited with {status} on SIGTERM; its messages are above"
            )));
        }
        // The server leaves its channel's lock file; the channel was this
        // run's alone, so nothing else can hold it.
        let _ = std::fs::remove_file(self.socket.with_extension("lock"));
        Ok(())
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// The run

/// What every hearth row works on.
struct Work {
    ids: Arc<Vec<String>>,
    docs: Arc<Vec<Value>>,
    ops: usize,
    clients: Vec<usize>,
    depth: usize,
}

/// Runs `hearth bench channel`.
pub(super) fn run(args: &ChannelArgs, g: &GlobalArgs) -> Result<(), CliError> {
    if args.ops < 100 {
        return Err(CliError::input(format!(
            "--ops {} is too small for meaningful numbers; use at least 100",
            args.ops
        )));
    }
    if args.docs == 0 || args.clients.contains(&0) || args.pipeline == 0 {
        return Err(CliError::input(
            "--docs, every --clients count and --pipeline must be at least 1",
        ));
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("hearth-bench-")
        .tempdir()
        .map_err(|source| CliError::Io {
            action: "create",
            path: std::env::temp_dir(),
            source,
            hint: "check that the temporary directory is writable",
        })?;
    let mach = machine(tmp.path());
    let words = vocabulary();
    let docs: Vec<Value> = (0..args.docs).map(|i| make_doc(i, &words)).collect();
    let ids: Vec<String> = (0..args.docs)
        .map(|i| format!("bench:item:{i:08}"))
        .collect();

    let mut target = match g.resolve_channel()? {
        Some(channel) => Target {
            channel,
            pid: None,
            own: None,
        },
        None => {
            progress("starting a server (hearth serve) on a temporary data directory");
            let (own, channel) = OwnServer::start(tmp.path(), g.durability.into())?;
            Target {
                channel,
                pid: Some(own.child.id()),
                own: Some(own),
            }
        }
    };
    let server_desc = match &target.own {
        Some(own) => format!(
            "its own `hearth serve` (pid {}, {} durability) on channel {}, socket {}, data {}",
            own.child.id(),
            Durability::from(g.durability).name(),
            target.channel,
            own.socket.display(),
            own.data.display()
        ),
        None => format!(
            "the running server on channel {} (its CPU share is counted in `others`)",
            target.channel
        ),
    };
    let work = Work {
        ids: Arc::new(ids),
        docs: Arc::new(docs),
        ops: args.ops,
        clients: args.clients.clone(),
        depth: args.pipeline,
    };
    let mut sections = Vec::new();
    let transports = args.transport.transports();
    let result = transports
        .iter()
        .try_for_each(|&t| hearth_section(&target, t, &work).map(|s| sections.push(s)));
    let cleanup = if target.own.is_none() {
        remove_bench_docs(&target, &work)
    } else {
        Ok(())
    };
    if let Some(own) = target.own.take() {
        own.stop()?;
    }
    result?;
    cleanup?;

    let redis = if args.no_redis {
        Err("skipped (--no-redis)".to_string())
    } else {
        match redis::find() {
            None => Err("redis-server not installed; skipped".to_string()),
            Some(exe) => redis_section(&exe, tmp.path(), &work),
        }
    };
    let mut ratios = Vec::new();
    let redis = match redis {
        Ok(sec) => {
            for hearth in &sections {
                ratios.extend(compare(hearth, &sec));
            }
            sections.push(sec);
            None
        }
        Err(why) => Some(why),
    };
    let report = Report {
        machine: mach,
        server: server_desc,
        doc_bytes: work
            .docs
            .iter()
            .take(1000)
            .map(|d| d.to_string().len())
            .sum::<usize>() as f64
            / work.docs.len().min(1000) as f64,
        docs: work.ids.len(),
        ops: work.ops,
        depth: work.depth,
        sections,
        ratios,
        redis_skipped: redis,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let text = if g.json {
        let mut t = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        t.push('\n');
        t
    } else {
        report.to_table()
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(crate::output::stdout_error)
}

/// The options to reach the target over `t`.
fn options(target: &Target, t: Transport) -> ConnectOptions {
    t.options(ConnectOptions::new(&target.channel))
}

/// Every hearth row over one transport.
fn hearth_section(target: &Target, t: Transport, work: &Work) -> Result<Section, CliError> {
    let mut sec = Section::new(t.key(), t.title());
    let pid = target.pid;
    let client = Client::connect_with(options(target, t))?;
    progress(&format!(
        "{}: writing {} documents",
        t.title(),
        fmt_rate(work.ids.len() as f64)
    ));
    let batch: Vec<WriteOp> = work
        .ids
        .iter()
        .zip(work.docs.iter())
        .map(|(id, d)| WriteOp::Put {
            id: id.clone(),
            data: d.clone(),
        })
        .collect();
    for chunk in batch.chunks(500) {
        client.batch(chunk.to_vec())?;
    }

    progress(&format!("{}: round trips", t.title()));
    let n = work.ids.len();
    let mut rng = Rng(0x6368_616e);
    let mut missing = 0usize;
    let get = |_| {
        let doc = client.get(&work.ids[rng.below(n)])?;
        missing += usize::from(doc.is_none());
        Ok(())
    };
    let (m, cpu) = one_by_one(pid, work.ops, get, || {})?;
    sec.push(Row::new(
        "get_rt",
        "get round trip, 1 client (blocking Client)",
        m,
        cpu,
    ));
    if missing > 0 {
        sec.notes
            .push(format!("{missing} gets found no document (expected none)"));
    }

    // The same gets with the caller busy between them, as an app that does
    // something with each answer: the server's wait for the next request
    // is then tens of microseconds, not one (a spin budget that could not
    // grow back once shrunk left every such call to two futex wake-ups).
    let get = |_| {
        black_box(client.get(&work.ids[rng.below(n)])?);
        Ok(())
    };
    let work_between = || {
        let busy = Instant::now();
        while busy.elapsed() < THINK {
            std::hint::spin_loop();
        }
    };
    let (m, cpu) = one_by_one(pid, work.ops, get, work_between)?;
    sec.push(Row::new(
        "get_rt_think",
        format!(
            "get round trip, 1 client, {} µs of work between calls",
            THINK.as_micros()
        ),
        m,
        cpu,
    ));

    // A page of documents (list, as an app's view asks for one), after a
    // random id: a streamed call, whose chunks come before its end. First
    // the store's applier catches up with the writes above (a query waits
    // for that), so that the row measures lists, not the applier beside them.
    client.query(json!({"bench:drain": true}), Some(1), None)?;
    let mut short = 0usize;
    let list = |_| {
        let page = client.list(ListOptions {
            prefix: Some("bench:item:".into()),
            limit: Some(LIST_PAGE),
            after: Some(work.ids[rng.below(n)].clone()),
            ..ListOptions::default()
        })?;
        short += usize::from(page.docs.len() < LIST_PAGE);
        black_box(page);
        Ok(())
    };
    let (m, cpu) = one_by_one(pid, work.ops, list, || {})?;
    sec.push(Row::new(
        "list_rt",
        format!("list of {LIST_PAGE} round trip, 1 client (blocking Client)"),
        m,
        cpu,
    ));
    if short == work.ops {
        sec.notes
            .push("every list came back short of a page (expected a few at the end)".into());
    }

    let rt = crate::signals::runtime()?;
    for (key, label, fast_path) in [
        (
            "get_rt_async",
            "get round trip, 1 client (AsyncClient, current-thread runtime)",
            Duration::ZERO,
        ),
        (
            "get_rt_async_fast",
            "get round trip, 1 client (AsyncClient, 20 µs fast path)",
            ASYNC_FAST_PATH,
        ),
    ] {
        let (m, cpu) = rt.block_on(async {
            let client = AsyncClient::connect_with(options(target, t))
                .await?
                .with_fast_path(fast_path);
            let probe = Probe::start(pid);
            let start = Instant::now();
            let mut lat = Vec::with_capacity(work.ops);
            for _ in 0..work.ops {
                let id = &work.ids[rng.below(n)];
                let t0 = Instant::now();
                black_box(client.get(id).await?);
                lat.push(elapsed_ns(t0));
            }
            Ok::<_, IpcError>(probe.measure(lat, start.elapsed()))
        })?;
        sec.push(Row::new(key, label, m, cpu));
    }

    let put = |i: usize| {
        client
            .put(&work.ids[i % n], work.docs[i % n].clone())
            .map(drop)
    };
    let (m, cpu) = one_by_one(pid, work.ops, put, || {})?;
    sec.push(Row::new(
        "put_rt",
        "put round trip, 1 client (blocking Client)",
        m,
        cpu,
    ));
    drop(client);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            action: "start",
            path: "the benchmark's client runtime".into(),
            source,
            hint: "the system may be out of threads",
        })?;
    for op in [BenchOp::Get, BenchOp::Put] {
        for &clients in &work.clients {
            for depth in depths(work.depth) {
                progress(&format!(
                    "{}: {} with {clients} clients, {depth} in flight each",
                    t.title(),
                    op.name()
                ));
                let (m, cpu) = rt.block_on(throughput(target, t, work, op, clients, depth))?;
                sec.push(Row::new(
                    &throughput_key(op, clients, depth),
                    throughput_label(op.name(), clients, depth),
                    m,
                    cpu,
                ));
            }
        }
    }
    Ok(sec)
}

/// Times `ops` calls made one after another by `call` (given each call's
/// number), each from just before it to its return; `between` runs after
/// each, untimed. The row's measure and the server's CPU share.
fn one_by_one(
    pid: Option<u32>,
    ops: usize,
    mut call: impl FnMut(usize) -> Result<(), IpcError>,
    mut between: impl FnMut(),
) -> Result<(Measure, Option<f64>), IpcError> {
    let probe = Probe::start(pid);
    let start = Instant::now();
    let mut lat = Vec::with_capacity(ops);
    for i in 0..ops {
        let t0 = Instant::now();
        call(i)?;
        lat.push(elapsed_ns(t0));
        between();
    }
    Ok(probe.measure(lat, start.elapsed()))
}

/// `clients` connections, each with `depth` tasks doing requests one after
/// another, sharing `work.ops`.
async fn throughput(
    target: &Target,
    t: Transport,
    work: &Work,
    op: BenchOp,
    clients: usize,
    depth: usize,
) -> Result<(Measure, Option<f64>), IpcError> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(AsyncClient::connect_with(options(target, t)).await?);
    }
    let per_lane = (work.ops / (clients * depth)).max(1);
    let probe = Probe::start(target.pid);
    let start = Instant::now();
    let mut lanes = Vec::with_capacity(clients * depth);
    for (ci, client) in conns.iter().enumerate() {
        for d in 0..depth {
            let lane = ci * depth + d;
            lanes.push(tokio::spawn(run_lane(
                client.clone(),
                op,
                work.ids.clone(),
                work.docs.clone(),
                lane * per_lane,
                per_lane,
                lane as u64,
            )));
        }
    }
    let mut all = Vec::with_capacity(per_lane * lanes.len());
    for lane in lanes {
        let lat = lane
            .await
            .map_err(|e| IpcError::Protocol(format!("a benchmark task failed: {e}")))??;
        all.extend(lat);
    }
    Ok(probe.measure(all, start.elapsed()))
}

/// One lane: `n` requests, one after another, each timed.
async fn run_lane(
    client: AsyncClient,
    op: BenchOp,
    ids: Arc<Vec<String>>,
    docs: Arc<Vec<Value>>,
    first: usize,
    n: usize,
    seed: u64,
) -> Result<Vec<u32>, IpcError> {
    let mut rng = Rng(seed ^ 0x6c61_6e65);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        match op {
            BenchOp::Get => {
                black_box(client.get(&ids[rng.below(ids.len())]).await?);
            }
            BenchOp::Put => {
                let k = (first + i) % ids.len();
                client.put(&ids[k], docs[k].clone()).await?;
            }
        }
        lat.push(elapsed_ns(t0));
    }
    Ok(lat)
}

/// Deletes the benchmark's documents from a server it did not start (their
/// tombstones stay, as every delete's do).
fn remove_bench_docs(target: &Target, work: &Work) -> Result<(), CliError> {
    progress(&format!(
        "deleting the {} bench:item:… documents from channel {}",
        work.ids.len(),
        target.channel
    ));
    let client = Client::connect_with(ConnectOptions::new(&target.channel))?;
    let listed = client.list(ListOptions {
        prefix: Some("bench:item:".into()),
        ..ListOptions::default()
    })?;
    for chunk in listed.docs.chunks(500) {
        let deletes = chunk
            .iter()
            .map(|d| WriteOp::Delete { id: d.id.clone() })
            .collect();
        client.batch(deletes)?;
    }
    Ok(())
}

/// The Redis rows, or why there are none.
fn redis_section(
    exe: &std::path::Path,
    dir: &std::path::Path,
    work: &Work,
) -> Result<Section, String> {
    progress(&format!("starting {} on a Unix socket", exe.display()));
    let server = RedisServer::start(exe, dir)?;
    let values: Vec<String> = work.docs.iter().map(Value::to_string).collect();
    let data = redis::Data {
        keys: &work.ids,
        values: &values,
    };
    redis::section(&server, &data, work.ops, &work.clients, work.depth)
        .map_err(|e| format!("the Redis baseline failed: {e}"))
}

/// One hearth row against the Redis row with the same key.
struct Ratio {
    /// `{section}_vs_redis_{row}`.
    key: String,
    /// The hearth section's title.
    section: String,
    /// The hearth row's label.
    label: String,
    /// hearth ops/s ÷ Redis ops/s.
    ratio: f64,
}

/// hearth ÷ Redis in ops/s for every row both have.
fn compare(hearth: &Section, redis: &Section) -> Vec<Ratio> {
    hearth
        .rows
        .iter()
        .filter_map(|r| {
            let theirs = redis.get(&r.key)?;
            (theirs.rate() > 0.0).then(|| Ratio {
                key: format!("{}_vs_redis_{}", hearth.key, r.key),
                section: hearth.title.clone(),
                label: r.label.clone(),
                ratio: r.m.rate() / theirs.rate(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The report

struct Report {
    machine: super::Machine,
    server: String,
    doc_bytes: f64,
    docs: usize,
    ops: usize,
    depth: usize,
    sections: Vec<Section>,
    /// hearth ÷ Redis, row by row.
    ratios: Vec<Ratio>,
    /// Why there is no Redis section.
    redis_skipped: Option<String>,
    total_secs: f64,
}

fn pct(x: Option<f64>) -> String {
    x.map_or(String::new(), |o| format!("{o:.0}%"))
}

impl Report {
    fn to_table(&self) -> String {
        use std::fmt::Write;
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "hearth bench channel — {}", m.date_utc);
        let _ = writeln!(
            s,
            "machine:   {} · {} CPUs (nproc) · Linux {}",
            m.cpu, m.nproc, m.kernel
        );
        let _ = writeln!(s, "server:    {}", self.server);
        let _ = writeln!(
            s,
            "documents: {} of ~{:.0} bytes of JSON (ids bench:item:…); gets read them at random, puts replace them in turn",
            fmt_rate(self.docs as f64),
            self.doc_bytes
        );
        let _ = writeln!(
            s,
            "rows:      {} operations each; clients have their own connection; pipelined rows keep {} requests in flight per client",
            fmt_rate(self.ops as f64),
            self.depth
        );
        let _ = writeln!(
            s,
            "timing:    each op timed with Instant (a pair costs ~{:.0} ns, included); rates are wall-clock; server = the server process's share of all CPU time, others = everything but it and this process",
            m.timer_ns
        );
        for sec in &self.sections {
            let _ = writeln!(s);
            let _ = writeln!(s, "== {}", sec.title);
            let _ = writeln!(
                s,
                "{:<64} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}",
                "", "count", "rate/s", "p50", "p99", "p99.9", "max", "server", "others"
            );
            for r in &sec.rows {
                let (p50, p99, p999, max) = match r.m.lat {
                    Some(l) => (fmt_ns(l.p50), fmt_ns(l.p99), fmt_ns(l.p999), fmt_ns(l.max)),
                    None => Default::default(),
                };
                let _ = writeln!(
                    s,
                    "{:<64} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}",
                    r.label,
                    fmt_rate(r.m.ops as f64),
                    fmt_rate(r.m.rate()),
                    p50,
                    p99,
                    p999,
                    max,
                    pct(r.server_cpu),
                    pct(r.m.others_cpu),
                );
            }
            for n in &sec.notes {
                let _ = writeln!(s, "NOTE: {n}");
            }
        }
        let _ = writeln!(s);
        match &self.redis_skipped {
            Some(why) => {
                let _ = writeln!(s, "== Redis baseline: {why}");
            }
            None => {
                let mut section = "";
                for r in &self.ratios {
                    if r.section != section {
                        section = &r.section;
                        let _ = writeln!(
                            s,
                            "== ratios: {section} ÷ Redis, ops/s (same run; above 1 = hearth faster)"
                        );
                    }
                    let _ = writeln!(s, "{:<64} {:>7.2}×", r.label, r.ratio);
                }
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "total time: {:.1} s", self.total_secs);
        // Rows without CPU shares end in blanks.
        s.lines().map(|l| format!("{}\n", l.trim_end())).collect()
    }

    fn to_json(&self) -> Value {
        let m = &self.machine;
        let mut sections = Map::new();
        for sec in &self.sections {
            let mut results = Map::new();
            for r in &sec.rows {
                let mut v = r.m.to_json();
                if let Value::Object(o) = &mut v {
                    o.insert("label".into(), json!(r.label));
                    o.insert("server_cpu_pct".into(), json!(r.server_cpu.map(f64::round)));
                }
                results.insert(r.key.clone(), v);
            }
            sections.insert(
                sec.key.clone(),
                json!({
                    "title": sec.title,
                    "order": sec.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
                    "results": results,
                    "notes": sec.notes,
                }),
            );
        }
        let ratios: Map<String, Value> = self
            .ratios
            .iter()
            .map(|r| (r.key.clone(), json!((r.ratio * 100.0).round() / 100.0)))
            .collect();
        json!({
            "benchmark": "channel",
            "date_utc": m.date_utc,
            "unix_time": m.unix_time,
            "machine": {"nproc": m.nproc, "cpu": m.cpu, "kernel": m.kernel},
            "server": self.server,
            "config": {
                "docs": self.docs,
                "ops_per_row": self.ops,
                "pipeline": self.depth,
                "doc_bytes_avg": self.doc_bytes,
                "timer_pair_ns": (m.timer_ns * 10.0).round() / 10.0,
            },
            "sections": sections,
            "ratios_hearth_over_redis": ratios,
            "redis_skipped": self.redis_skipped,
            "total_seconds": round3(self.total_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_rows_are_keyed_alike_for_hearth_and_redis() {
        assert_eq!(throughput_key(BenchOp::Get, 16, 32), "get_c16_d32");
        assert_eq!(
            throughput_label("get", 1, 1),
            "get, 1 client, 1 in flight each"
        );
        assert_eq!(
            throughput_label("SET", 4, 32),
            "SET, 4 clients × 32 in flight (pipelined)"
        );
        assert_eq!(depths(1), [1]);
        assert_eq!(depths(32), [1, 32]);
    }

    #[test]
    fn ratios_pair_rows_by_key() {
        let m = |ops: u64| Measure {
            ops,
            secs: 1.0,
            lat: None,
            others_cpu: None,
        };
        let mut h = Section::new("hearth_socket", "hearth");
        h.push(Row::new("get_rt", "get", m(50), None));
        h.push(Row::new("get_rt_async", "get async", m(70), None));
        let mut r = Section::new("redis", "redis");
        r.push(Row::new("get_rt", "GET", m(100), None));
        let ratios = compare(&h, &r);
        assert_eq!(ratios.len(), 1);
        assert_eq!(ratios[0].key, "hearth_socket_vs_redis_get_rt");
        assert!((ratios[0].ratio - 0.5).abs() < 1e-9);
    }
}
