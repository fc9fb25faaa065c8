//! `hearth bench`: benchmarks that print numbers (never pass/fail on time).
//!
//! Owns: the benchmark workloads, their percentiles and the baselines run
//! beside them in the same process. Must never: assert a wall-clock time.
//!
//! `hearth bench channel` (module [`channel`]) measures the same documents
//! over a server's channel, with Redis over a Unix socket beside it when
//! `redis-server` is installed.
//!
//! `hearth bench store` measures the embedded store in both durability modes
//! (puts from one and from several threads, the applier catching up, hot and
//! cold point reads, list, query and search) and, in the same run, plain
//! SQLite doing one commit per put — the baseline the targets in
//! `DESIGN.md` ("Performance targets") are stated against. Targets are marked
//! PASS/BELOW for information only; the command always exits 0 when the
//! workload itself ran.

mod channel;
mod redis;
mod transport;

use crate::args::GlobalArgs;
use crate::error::CliError;
use clap::{Args, Subcommand};
use hearth_store::{Durability, ListOptions, Options, Store, StoreError};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Arguments of `hearth bench`: a subcommand, or with none the transport
/// benchmark (`hearth bench --transport shm|socket|both …`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) what: Option<BenchWhat>,
    #[command(flatten)]
    pub(crate) transport: transport::TransportBenchArgs,
}

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchWhat {
    /// The embedded store: put, get, list, query, search, both durability modes.
    Store {
        /// Number of documents (journal durability mode).
        #[arg(long, default_value_t = 100_000)]
        docs: usize,
        /// Number of documents in fsync durability mode, where every put waits
        /// for an fdatasync (0 skips fsync mode).
        #[arg(long, default_value_t = 10_000)]
        fsync_docs: usize,
        /// Writer threads for the concurrent put.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// In fsync mode, also put from this many writers to show how group
        /// commit scales (0 skips).
        #[arg(long, default_value_t = 32)]
        fsync_wide_writers: usize,
        /// Create the scratch directory under DIR (a fresh subdirectory,
        /// removed afterwards) instead of the system temp directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A server's channel: round trips and throughput of get and put, from
    /// 1 to many clients, pipelined and not; Redis beside it when
    /// `redis-server` is installed. Uses the server on --channel (writing
    /// ids `bench:…` there and deleting them afterwards), else starts its
    /// own on a temporary data directory.
    Channel(channel::ChannelArgs),
}

/// Runs a benchmark.
pub(crate) fn run(args: BenchArgs, g: &GlobalArgs) -> Result<(), CliError> {
    match args.what {
        None => transport::run_transport(&args.transport, g.json, g.durability.into()),
        Some(BenchWhat::Channel(args)) => channel::run(&args, g),
        Some(BenchWhat::Store { .. }) => run_store(args).map_err(CliError::from),
    }
}

/// Runs `hearth bench store`.
fn run_store(args: BenchArgs) -> Result<(), hearth_store::StoreError> {
    match args.what {
        None | Some(BenchWhat::Channel(_)) => Ok(()),
        Some(BenchWhat::Store {
            docs,
            fsync_docs,
            threads,
            fsync_wide_writers,
            dir,
            json,
        }) => {
            if docs < 1_000 {
                return Err(StoreError::InvalidInput(format!(
                    "--docs {docs} is too small for meaningful numbers; use at least 1000"
                )));
            }
            if fsync_docs != 0 && fsync_docs < 1_000 {
                return Err(StoreError::InvalidInput(format!(
                    "--fsync-docs {fsync_docs} is too small; use at least 1000, or 0 to skip fsync mode"
                )));
            }
            if threads == 0 {
                return Err(StoreError::InvalidInput(
                    "--threads must be at least 1".into(),
                ));
            }
            let cfg = StoreBench {
                docs,
                fsync_docs,
                threads,
                wide_writers: fsync_wide_writers,
            };
            let report = store_bench(&cfg, dir.as_deref())?;
            let text = if json {
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
                .map_err(|e| io_err(Path::new("<stdout>"), e))
        }
    }
}

// ---------------------------------------------------------------------------
// Measurements

/// Latency percentiles, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Lat {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: u64,
}

/// One measured workload: how many operations in how long, and (when each
/// operation was timed) their latency distribution.
#[derive(Debug, Clone)]
struct Measure {
    ops: u64,
    secs: f64,
    lat: Option<Lat>,
    /// Share of the machine's CPU time used by everything else (other
    /// processes, kernel threads, hypervisor steal) while this ran, in %.
    others_cpu: Option<f64>,
}

impl Measure {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    fn plain(ops: usize, wall: Duration, since: Option<CpuSnap>) -> Measure {
        Measure {
            ops: ops as u64,
            secs: wall.as_secs_f64(),
            lat: None,
            others_cpu: others_cpu(since),
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("ops".into(), json!(self.ops));
        m.insert("seconds".into(), json!(round3(self.secs)));
        m.insert("per_sec".into(), json!(self.rate().round()));
        if let Some(l) = self.lat {
            m.insert("p50_ns".into(), json!(l.p50));
            m.insert("p99_ns".into(), json!(l.p99));
            m.insert("p999_ns".into(), json!(l.p999));
            m.insert("max_ns".into(), json!(l.max));
            m.insert("mean_ns".into(), json!(l.mean));
        }
        if let Some(o) = self.others_cpu {
            m.insert("others_cpu_pct".into(), json!(o.round()));
        }
        Value::Object(m)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn elapsed_ns(t: Instant) -> u32 {
    u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX)
}

/// Sorts the per-operation samples and summarises them.
fn percentiles(mut ns: Vec<u32>) -> Option<Lat> {
    if ns.is_empty() {
        return None;
    }
    ns.sort_unstable();
    let n = ns.len();
    let at = |q: f64| -> u64 {
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        u64::from(ns[i])
    };
    let sum: u64 = ns.iter().map(|&x| u64::from(x)).sum();
    Some(Lat {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: u64::from(ns[n - 1]),
        mean: sum / n as u64,
    })
}

/// Collects per-operation latencies.
struct Rec {
    ns: Vec<u32>,
    start: Instant,
    cpu: Option<CpuSnap>,
}

impl Rec {
    fn new(capacity: usize) -> Rec {
        let ns = Vec::with_capacity(capacity);
        let cpu = cpu_snap();
        Rec {
            ns,
            start: Instant::now(),
            cpu,
        }
    }

    #[inline]
    fn push(&mut self, t: Instant) {
        self.ns.push(elapsed_ns(t));
    }

    /// Ends the measurement: wall time since `new`.
    fn finish(self) -> Measure {
        let secs = self.start.elapsed().as_secs_f64();
        Measure {
            ops: self.ns.len() as u64,
            secs,
            lat: percentiles(self.ns),
            others_cpu: others_cpu(self.cpu),
        }
    }
}

/// Machine-wide and own CPU time, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CpuSnap {
    busy: u64,
    total: u64,
    own: u64,
}

/// Reads /proc/stat (all CPUs) and /proc/self/stat (this process, all
/// threads). `None` where /proc is not there.
fn cpu_snap() -> Option<CpuSnap> {
    let (busy, total) = machine_ticks()?;
    let own = process_ticks("self")?;
    Some(CpuSnap { busy, total, own })
}

/// Busy and total clock ticks of all CPUs since boot (/proc/stat).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    Some((busy, busy + field(3) + field(4)))
}

/// User + system clock ticks of process `pid` (`self` for this one), all
/// threads (/proc/PID/stat).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The share of all CPU time since `since` that went to anything but this
/// process, in %.
fn others_cpu(since: Option<CpuSnap>) -> Option<f64> {
    let a = since?;
    let b = cpu_snap()?;
    let total = b.total.checked_sub(a.total)?;
    // Ticks are 10 ms: below ~0.2 s of machine time the share is noise.
    if total < 40 {
        return None;
    }
    let busy = b.busy.saturating_sub(a.busy);
    let own = b.own.saturating_sub(a.own);
    Some(100.0 * busy.saturating_sub(own) as f64 / total as f64)
}

// ---------------------------------------------------------------------------
// The workload's data: deterministic documents of about 200 bytes.

/// Target size of one document's JSON text.
const DOC_BYTES: usize = 200;

const FILLER: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod \
    tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud \
    exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat duis aute irure dolor";

/// Distinct words in document names (and what `search` looks for).
const VOCAB: usize = 1024;

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n ≤ 2^32).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// The `i`-th vocabulary word: three consonant-vowel syllables, six letters,
/// all distinct (so that no word is a prefix of another).
fn word(i: usize) -> String {
    const C: &[u8] = b"bdfgklmnprstvz";
    const V: &[u8] = b"aeiou";
    const SYLLABLES: u64 = 70;
    // A bijection on 0..70^3 (the multiplier is coprime to 343,000).
    let mut j = (i as u64).wrapping_mul(2_654_435_761) % (SYLLABLES * SYLLABLES * SYLLABLES);
    let mut w = String::with_capacity(6);
    for _ in 0..3 {
        let s = (j % SYLLABLES) as usize;
        j /= SYLLABLES;
        w.push(C[s / 5] as char);
        w.push(V[s % 5] as char);
    }
    w
}

fn doc_id(n: usize) -> String {
    format!("item:{n:08}")
}

/// Document `n`: `{"type":"Item","name":"item N w1 w2 w3","value":N,
/// "tags":["a","b"],"text":"…padding to ~200 bytes…"}`.
fn make_doc(n: usize, words: &[String]) -> Value {
    let mut rng = Rng(n as u64 ^ 0x6865_6172_7468);
    let name = format!(
        "item {n} {} {} {}",
        words[rng.below(words.len())],
        words[rng.below(words.len())],
        words[rng.below(words.len())]
    );
    let mut doc = json!({
        "type": "Item",
        "name": name,
        "value": n,
        "tags": ["a", "b"],
        "text": "",
    });
    let base = serde_json::to_string(&doc).map_or(0, |s| s.len());
    let pad = DOC_BYTES.saturating_sub(base).min(FILLER.len());
    doc["text"] = Value::String(FILLER[..pad].to_string());
    doc
}

fn vocabulary() -> Vec<String> {
    (0..VOCAB).map(word).collect()
}

// ---------------------------------------------------------------------------
// The machine

struct Machine {
    nproc: usize,
    cpu: String,
    kernel: String,
    fs: String,
    /// The block device under the scratch directory, for I/O counters.
    device: Option<String>,
    dir: PathBuf,
    date_utc: String,
    unix_time: u64,
    /// Cost of one `Instant::now()` pair (what per-op timing adds).
    timer_ns: f64,
}

fn machine(dir: &Path) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = Instant::now();
    const PAIRS: u32 = 200_000;
    for _ in 0..PAIRS {
        black_box(elapsed_ns(black_box(Instant::now())));
    }
    let timer_ns = t.elapsed().as_nanos() as f64 / f64::from(PAIRS);
    let fs = filesystem_of(dir).unwrap_or_else(|| ("unknown".into(), None));
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        kernel,
        fs: fs.0,
        device: fs.1,
        dir: dir.to_path_buf(),
        date_utc: utc_date(unix_time),
        unix_time,
        timer_ns,
    }
}

/// The type of the file system holding `dir`: the longest mount point in
/// /proc/self/mounts that contains it.
/// The type and the block device (`vda`, when it is a `/dev/` device) of
/// the file system holding `dir`: the longest mount point in
/// /proc/self/mounts that contains it.
fn filesystem_of(dir: &Path) -> Option<(String, Option<String>)> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<(usize, String, Option<String>)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(mnt), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let mnt = mnt.replace("\\040", " ");
        if dir.starts_with(&mnt) && best.as_ref().is_none_or(|(len, ..)| mnt.len() >= *len) {
            let dev = dev.strip_prefix("/dev/").map(str::to_string);
            best = Some((mnt.len(), fstype.to_string(), dev));
        }
    }
    best.map(|(_, t, d)| (t, d))
}

/// Block device counters: writes completed, sectors written, flushes
/// completed (/proc/diskstats).
#[derive(Debug, Clone, Copy)]
struct DiskSnap {
    writes: u64,
    sectors: u64,
    flushes: u64,
}

fn disk_snap(dev: Option<&str>) -> Option<DiskSnap> {
    let dev = dev?;
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let line = stats
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(dev))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some(DiskSnap {
        writes: *f.get(4)?,
        sectors: *f.get(6)?,
        // Kernels before 5.5 have no flush counters.
        flushes: *f.get(15)?,
    })
}

/// Device work per operation between two snapshots.
#[derive(Debug, Clone, Copy)]
struct DiskPerOp {
    writes: f64,
    kib: f64,
    flushes: f64,
}

fn disk_per_op(a: Option<DiskSnap>, b: Option<DiskSnap>, ops: u64) -> Option<DiskPerOp> {
    let (a, b) = (a?, b?);
    if ops == 0 {
        return None;
    }
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / ops as f64;
    Some(DiskPerOp {
        writes: per(a.writes, b.writes),
        kib: per(a.sectors, b.sectors) / 2.0,
        flushes: per(a.flushes, b.flushes),
    })
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds.
fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3_600,
        (rem % 3_600) / 60
    )
}

/// Writes dirty pages out so one phase's write-back does not land in the
/// next phase's measurement.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn progress(msg: &str) {
    eprintln!("hearth bench: {msg}");
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------
// The store benchmark

struct StoreBench {
    docs: usize,
    fsync_docs: usize,
    threads: usize,
    wide_writers: usize,
}

/// One result line.
struct Row {
    key: String,
    label: String,
    /// What `ops` counts: "ops" or "docs".
    unit: &'static str,
    m: Measure,
    note: Option<String>,
    /// Block-device work per operation (fsync mode).
    disk: Option<DiskPerOp>,
}

struct ModeReport {
    mode: Durability,
    docs: usize,
    rows: Vec<Row>,
    warnings: Vec<String>,
}

impl ModeReport {
    fn get(&self, key: &str) -> Option<&Measure> {
        self.rows.iter().find(|r| r.key == key).map(|r| &r.m)
    }

    fn push(&mut self, key: &str, label: impl Into<String>, unit: &'static str, m: Measure) {
        self.rows.push(Row {
            key: key.into(),
            label: label.into(),
            unit,
            m,
            note: None,
            disk: None,
        });
    }

    fn set_disk(&mut self, io: Option<DiskPerOp>) {
        if let Some(r) = self.rows.last_mut() {
            r.disk = io;
        }
    }

    /// Attaches device counters to the last row.
    fn disk(&mut self, before: Option<DiskSnap>, dev: Option<&str>) {
        if let Some(r) = self.rows.last_mut() {
            r.disk = disk_per_op(before, disk_snap(dev), r.m.ops);
        }
    }

    fn note(&mut self, note: impl Into<String>) {
        if let Some(r) = self.rows.last_mut() {
            r.note = Some(note.into());
        }
    }
}

struct Target {
    what: String,
    source: &'static str,
    /// The figure as text, e.g. "≥ 300,000/s".
    target: String,
    measured: Option<f64>,
    /// Shown after the measured figure: "/s" or "×".
    unit: &'static str,
    threshold: f64,
}

impl Target {
    fn met(&self) -> Option<bool> {
        self.measured.map(|m| m >= self.threshold)
    }
}

struct Report {
    machine: Machine,
    cfg_docs: usize,
    cfg_fsync_docs: usize,
    threads: usize,
    doc_bytes_avg: f64,
    modes: Vec<ModeReport>,
    targets: Vec<Target>,
    ratios: Vec<(String, String, Option<f64>)>,
    total_secs: f64,
    others_cpu: Option<f64>,
}

fn store_bench(cfg: &StoreBench, under: Option<&Path>) -> Result<Report> {
    let started = Instant::now();
    let cpu = cpu_snap();
    let tmp = match under {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
            tempfile::Builder::new()
                .prefix("hearth-bench-")
                .tempdir_in(d)
                .map_err(|e| io_err(d, e))?
        }
        None => tempfile::Builder::new()
            .prefix("hearth-bench-")
            .tempdir()
            .map_err(|e| io_err(&std::env::temp_dir(), e))?,
    };
    let root = tmp.path();
    let machine = machine(root);
    let words = vocabulary();
    let sample = (0..1000)
        .map(|i| serde_json::to_string(&make_doc(i * 97, &words)).map_or(0, |s| s.len()))
        .sum::<usize>() as f64
        / 1000.0;
    progress(&format!(
        "scratch directory {} ({}); {} docs in journal mode, {} in fsync mode",
        root.display(),
        machine.fs,
        cfg.docs,
        cfg.fsync_docs
    ));

    let dev = machine.device.as_deref();
    let mut modes = vec![bench_mode(
        root,
        Durability::Journal,
        cfg.docs,
        cfg,
        &words,
        dev,
    )?];
    if cfg.fsync_docs > 0 {
        modes.push(bench_mode(
            root,
            Durability::Fsync,
            cfg.fsync_docs,
            cfg,
            &words,
            dev,
        )?);
    }

    let journal = &modes[0];
    let fsync = modes.get(1);
    let ratio = |a: Option<&Measure>, b: Option<&Measure>| -> Option<f64> {
        match (a, b) {
            (Some(a), Some(b)) if b.rate() > 0.0 => Some(a.rate() / b.rate()),
            _ => None,
        }
    };
    let seq_vs_sqlite = ratio(journal.get("put_seq"), journal.get("sqlite_put"));
    let fsync_mt_vs_sqlite = fsync.and_then(|f| ratio(f.get("put_threads"), f.get("sqlite_put")));
    let mut ratios = vec![
        (
            "journal_put_seq_vs_sqlite_normal".to_string(),
            "journal: sequential put / SQLite synchronous=NORMAL commit-per-put".to_string(),
            seq_vs_sqlite,
        ),
        (
            "journal_put_threads_vs_sqlite_normal".to_string(),
            format!(
                "journal: put from {} threads / SQLite synchronous=NORMAL commit-per-put",
                cfg.threads
            ),
            ratio(journal.get("put_threads"), journal.get("sqlite_put")),
        ),
    ];
    if let Some(f) = fsync {
        ratios.push((
            "fsync_put_seq_vs_sqlite_full".into(),
            "fsync: sequential put / SQLite synchronous=FULL commit-per-put".into(),
            ratio(f.get("put_seq"), f.get("sqlite_put")),
        ));
        ratios.push((
            "fsync_put_threads_vs_sqlite_full".into(),
            format!(
                "fsync: put from {} threads / SQLite synchronous=FULL commit-per-put",
                cfg.threads
            ),
            fsync_mt_vs_sqlite,
        ));
        if cfg.wide_writers > 0 {
            ratios.push((
                "fsync_put_wide_vs_sqlite_full".into(),
                format!(
                    "fsync: put from {} threads / SQLite synchronous=FULL commit-per-put",
                    cfg.wide_writers
                ),
                ratio(f.get("put_wide"), f.get("sqlite_put")),
            ));
        }
    }

    let targets = vec![
        Target {
            what: "in-process sequential acknowledged put (journal mode)".into(),
            source: "DESIGN.md",
            target: "≥ 300,000/s".into(),
            measured: journal.get("put_seq").map(Measure::rate),
            unit: "/s",
            threshold: 300_000.0,
        },
        Target {
            what: "sequential put vs one SQLite commit per put (journal vs NORMAL)".into(),
            source: "DESIGN.md",
            target: "≥ 10×".into(),
            measured: seq_vs_sqlite,
            unit: "×",
            threshold: 10.0,
        },
        Target {
            what: "get of a hot document, one thread".into(),
            source: "issue",
            target: "≥ 2,000,000/s".into(),
            measured: journal.get("get_hot").map(Measure::rate),
            unit: "/s",
            threshold: 2_000_000.0,
        },
        Target {
            what: format!(
                "fsync mode, {} writers vs one SQLite fsync per put (FULL)",
                cfg.threads
            ),
            source: "issue",
            target: "≥ 20×".into(),
            measured: fsync_mt_vs_sqlite,
            unit: "×",
            threshold: 20.0,
        },
    ];

    let total_secs = started.elapsed().as_secs_f64();
    let others_cpu = others_cpu(cpu);
    drop(tmp);
    Ok(Report {
        machine,
        cfg_docs: cfg.docs,
        cfg_fsync_docs: cfg.fsync_docs,
        threads: cfg.threads,
        doc_bytes_avg: sample,
        modes,
        targets,
        ratios,
        total_secs,
        others_cpu,
    })
}

/// `put_json` of each `(id, text)` in order, each timed.
fn timed_put_json(store: &Store, docs: &[(String, String)]) -> Result<Rec> {
    let mut rec = Rec::new(docs.len());
    for (id, text) in docs {
        let t = Instant::now();
        store.put_json(id, text)?;
        rec.push(t);
    }
    Ok(rec)
}

fn store_options(mode: Durability) -> Options {
    Options {
        durability: mode,
        ..Options::default()
    }
}

/// Every workload for one durability mode, on `n` documents.
fn bench_mode(
    root: &Path,
    mode: Durability,
    n: usize,
    cfg: &StoreBench,
    words: &[String],
    device: Option<&str>,
) -> Result<ModeReport> {
    let name = mode.name();
    let fsync = mode == Durability::Fsync;
    // Device counters only mean something when each operation waits for
    // the device; in journal mode write-back happens later.
    let dev = if fsync { device } else { None };
    let mut rep = ModeReport {
        mode,
        docs: n,
        rows: Vec::new(),
        warnings: Vec::new(),
    };
    let mut rng = Rng(0x5eed ^ n as u64 ^ u64::from(fsync));

    if fsync {
        settle();
        progress("fsync: raw append + fdatasync (the floor under any durable write)");
        let d0 = disk_snap(dev);
        let m = raw_append_fdatasync(&root.join("raw-fdatasync.bin"), 500)?;
        rep.push("raw_fdatasync", "raw 260-byte append + fdatasync", "ops", m);
        rep.disk(d0, dev);
    }

    // Baseline: plain SQLite, one commit per put.
    settle();
    let sync = if fsync { "FULL" } else { "NORMAL" };
    progress(&format!(
        "{name}: SQLite baseline, {n} puts, one commit each (synchronous={sync})"
    ));
    let (m, io) = sqlite_baseline(
        &root.join(format!("sqlite-{name}.db")),
        n,
        fsync,
        words,
        dev,
    )?;
    rep.push(
        "sqlite_put",
        format!("SQLite put, commit per put (WAL, synchronous={sync})"),
        "ops",
        m,
    );
    rep.set_disk(io);

    // Sequential put, then the applier catching up.
    settle();
    progress(&format!("{name}: sequential put of {n} documents"));
    let dir = root.join(format!("{name}-seq"));
    let store = Store::open(&dir, store_options(mode))?;
    {
        let docs: Vec<(String, Value)> = (0..n).map(|i| (doc_id(i), make_doc(i, words))).collect();
        let d0 = disk_snap(dev);
        let mut rec = Rec::new(n);
        for (id, doc) in docs {
            let t = Instant::now();
            store.put(&id, doc)?;
            rec.push(t);
        }
        let (start, cpu) = (rec.start, rec.cpu);
        let put = rec.finish();
        let io = disk_per_op(d0, disk_snap(dev), n as u64);
        store.flush()?;
        let applied = start.elapsed();
        rep.push("put_seq", "put, sequential (1 thread)", "ops", put);
        rep.set_disk(io);
        rep.push(
            "put_seq_applied",
            "  … applied to SQLite (put start → flush done)",
            "docs",
            Measure::plain(n, applied, cpu),
        );
        rep.note(format!(
            "sustained puts run at this rate: writers wait once {} operations are not yet written to SQLite",
            fmt_rate(Options::default().max_pending_ops as f64)
        ));
    }

    // Sequential put of the same documents as JSON text (`put_json`), as
    // the SQLite baseline is given pre-serialised text and as clients send
    // them: compact text is stored without a JSON tree.
    settle();
    progress(&format!("{name}: sequential put_json of {n} documents"));
    {
        let store = Store::open(root.join(format!("{name}-json")), store_options(mode))?;
        let docs: Vec<(String, String)> = (0..n)
            .map(|i| (doc_id(i), make_doc(i, words).to_string()))
            .collect();
        let rec = timed_put_json(&store, &docs)?;
        rep.push(
            "put_json_seq",
            "put_json, sequential (JSON text, 1 thread)",
            "ops",
            rec.finish(),
        );
        store.flush()?;

        // Every document rewritten with other words, in random order: the
        // applier updates rows and their search index instead of inserting.
        settle();
        progress(&format!("{name}: rewrite of {n} documents in random order"));
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let docs: Vec<(String, String)> = order
            .iter()
            .map(|&i| (doc_id(i), make_doc(i + n, words).to_string()))
            .collect();
        let rec = timed_put_json(&store, &docs)?;
        let (start, cpu) = (rec.start, rec.cpu);
        rep.push(
            "rewrite_seq",
            "rewrite, sequential (put_json, random order)",
            "ops",
            rec.finish(),
        );
        store.flush()?;
        rep.push(
            "rewrite_seq_applied",
            "  … applied to SQLite (put start → flush done)",
            "docs",
            Measure::plain(n, start.elapsed(), cpu),
        );
    }

    // Concurrent put, each thread its own id range, on a fresh store.
    settle();
    progress(&format!(
        "{name}: put of {n} documents from {} threads",
        cfg.threads
    ));
    let (put, applied, io) = put_threads(
        &root.join(format!("{name}-mt")),
        mode,
        n,
        cfg.threads,
        words,
        dev,
    )?;
    rep.push(
        "put_threads",
        format!("put, {} threads (total)", cfg.threads),
        "ops",
        put,
    );
    rep.set_disk(io);
    rep.push(
        "put_threads_applied",
        "  … applied to SQLite (put start → flush done)",
        "docs",
        applied,
    );
    if fsync && cfg.wide_writers > 0 {
        settle();
        progress(&format!(
            "{name}: put of {n} documents from {} threads (group commit scaling)",
            cfg.wide_writers
        ));
        let (put, _, io) = put_threads(
            &root.join(format!("{name}-wide")),
            mode,
            n,
            cfg.wide_writers,
            words,
            dev,
        )?;
        rep.push(
            "put_wide",
            format!("put, {} threads (total)", cfg.wide_writers),
            "ops",
            put,
        );
        rep.set_disk(io);
    }

    // Reads, on the store written sequentially.
    settle();
    progress(&format!("{name}: reads"));
    reads(&store, n, words, &mut rng, &mut rep)?;
    drop(store);

    // Cold reads: reopen, so the store's cache is empty (the OS page cache
    // and SQLite's page cache warm up as the run goes).
    progress(&format!("{name}: cold get after reopening"));
    let store = Store::open(&dir, store_options(mode))?;
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let ids: Vec<String> = order.iter().map(|&i| doc_id(i)).collect();
    let mut found = 0usize;
    let mut rec = Rec::new(n);
    for id in &ids {
        let t = Instant::now();
        let d = store.get(id)?;
        rec.push(t);
        found += usize::from(d.is_some());
    }
    rep.push(
        "get_cold",
        "get, cold (reopened, random ids, 1 thread)",
        "ops",
        rec.finish(),
    );
    if found != n {
        rep.warnings
            .push(format!("cold get found {found} of {n} documents"));
    }
    drop(store);
    Ok(rep)
}

/// Puts `n` documents from `threads` threads (thread t writes its own id
/// range) into a fresh store. Returns the put measurement and the time until
/// the applier had caught up.
fn put_threads(
    dir: &Path,
    mode: Durability,
    n: usize,
    threads: usize,
    words: &[String],
    dev: Option<&str>,
) -> Result<(Measure, Measure, Option<DiskPerOp>)> {
    let store = Store::open(dir, store_options(mode))?;
    let chunks: Vec<Vec<(String, Value)>> = (0..threads)
        .map(|t| {
            (t * n / threads..(t + 1) * n / threads)
                .map(|i| (doc_id(i), make_doc(i, words)))
                .collect()
        })
        .collect();
    let barrier = Barrier::new(threads + 1);
    let cpu = cpu_snap();
    let d0 = disk_snap(dev);
    let (start, wall, lats) = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let store = store.clone();
                let barrier = &barrier;
                s.spawn(move || -> Result<Vec<u32>> {
                    let mut ns = Vec::with_capacity(chunk.len());
                    barrier.wait();
                    for (id, doc) in chunk {
                        let t = Instant::now();
                        store.put(&id, doc)?;
                        ns.push(elapsed_ns(t));
                    }
                    Ok(ns)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut all = Vec::with_capacity(n);
        let mut err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(ns)) => all.extend(ns),
                Ok(Err(e)) => err = Some(e),
                Err(_) => {
                    err = Some(StoreError::Internal(
                        "a benchmark writer thread panicked".into(),
                    ))
                }
            }
        }
        let wall = start.elapsed();
        match err {
            Some(e) => Err(e),
            None => Ok((start, wall, all)),
        }
    })?;
    let put_others = others_cpu(cpu);
    let io = disk_per_op(d0, disk_snap(dev), n as u64);
    store.flush()?;
    let applied = Measure::plain(n, start.elapsed(), cpu);
    drop(store);
    Ok((
        Measure {
            ops: lats.len() as u64,
            secs: wall.as_secs_f64(),
            lat: percentiles(lats),
            others_cpu: put_others,
        },
        applied,
        io,
    ))
}

/// Runs `op` up to `max_ops` times but stops after `budget` (at least
/// `min_ops` runs), timing each.
fn timed_loop(
    max_ops: usize,
    min_ops: usize,
    budget: Duration,
    mut op: impl FnMut() -> Result<()>,
) -> Result<Measure> {
    let mut rec = Rec::new(max_ops);
    for i in 0..max_ops {
        if i >= min_ops && rec.start.elapsed() > budget {
            break;
        }
        let t = Instant::now();
        op()?;
        rec.push(t);
    }
    Ok(rec.finish())
}

fn reads(
    store: &Store,
    n: usize,
    words: &[String],
    rng: &mut Rng,
    rep: &mut ModeReport,
) -> Result<()> {
    // Hot get: the most recently written documents, all in the cache
    // (the store's cache holds 64 MiB; ~75k of these documents).
    let hot_n = n.min(50_000);
    let hot_ids: Vec<String> = (n - hot_n..n).map(doc_id).collect();
    for id in &hot_ids {
        black_box(store.get(id)?);
    }
    let ops = (n * 10).clamp(200_000, 1_000_000);
    let order: Vec<u32> = (0..ops).map(|_| rng.below(hot_n) as u32).collect();
    // Throughput from a pass without per-op timing, percentiles from a
    // second, timed pass.
    let cpu = cpu_snap();
    let start = Instant::now();
    let mut found = 0usize;
    for &i in &order {
        found += usize::from(store.get(&hot_ids[i as usize])?.is_some());
    }
    let untimed = start.elapsed();
    let untimed_others = others_cpu(cpu);
    let mut rec = Rec::new(ops);
    for &i in &order {
        let t = Instant::now();
        let d = store.get(&hot_ids[i as usize])?;
        rec.push(t);
        black_box(d);
    }
    let timed = rec.finish();
    let timed_rate = timed.rate();
    rep.push(
        "get_hot",
        format!("get, hot ({hot_n} cached docs, random, 1 thread)"),
        "ops",
        Measure {
            ops: ops as u64,
            secs: untimed.as_secs_f64(),
            lat: timed.lat,
            others_cpu: untimed_others,
        },
    );
    rep.note(format!(
        "rate from an untimed pass; the timed pass ran at {}/s",
        fmt_rate(timed_rate)
    ));
    if found != ops {
        rep.warnings
            .push(format!("hot get found {found} of {ops} documents"));
    }

    // Full scan through the list iterator.
    let mut rec = Rec::new(n);
    let mut it = store.list(ListOptions::default())?;
    loop {
        let t = Instant::now();
        match it.next() {
            None => break,
            Some(d) => {
                black_box(d?);
                rec.push(t);
            }
        }
    }
    let m = rec.finish();
    if m.ops != n as u64 {
        rep.warnings
            .push(format!("a full list returned {} of {n} documents", m.ops));
    }
    rep.push("list_all", "list, full scan (per document)", "docs", m);

    // Prefix + limit 100: `item:000123` matches exactly 100 ids.
    let pages = n / 100;
    let mut listed = 0usize;
    let m = timed_loop(2_000, 50, Duration::from_secs(5), || {
        let prefix = format!("item:{:06}", rng.below(pages));
        let docs = store
            .list(ListOptions {
                prefix: Some(prefix),
                limit: Some(100),
                ..ListOptions::default()
            })?
            .collect::<Result<Vec<_>>>()?;
        listed += docs.len();
        Ok(())
    })?;
    if listed as u64 != m.ops * 100 {
        rep.warnings.push(format!(
            "list with a prefix returned {listed} documents over {} calls, expected 100 each",
            m.ops
        ));
    }
    rep.push("list_prefix", "list, prefix + limit 100", "ops", m);

    // Equality on `type` (indexed), a page of 100 after a random id.
    let mut by_type = Map::new();
    by_type.insert("type".into(), json!("Item"));
    let m = timed_loop(2_000, 50, Duration::from_secs(5), || {
        let after = doc_id(rng.below(n - 100));
        black_box(store.query(&by_type, 100, Some(&after))?);
        Ok(())
    })?;
    rep.push(
        "query_type",
        "query type = \"Item\" (indexed), limit 100",
        "ops",
        m,
    );

    // Equality on `value` (not indexed: a scan of every row).
    let mut misses = 0usize;
    let m = timed_loop(20, 3, Duration::from_secs(5), || {
        let v = rng.below(n);
        let mut f = Map::new();
        f.insert("value".into(), json!(v));
        let docs = store.query(&f, 100, None)?;
        misses += usize::from(docs.len() != 1);
        Ok(())
    })?;
    if misses > 0 {
        rep.warnings
            .push(format!("query on value missed {misses} times"));
    }
    rep.push(
        "query_value",
        "query value = N (unindexed scan), limit 100",
        "ops",
        m,
    );

    // Full-text search for one word (each matches ~3n/1024 documents).
    let m = timed_loop(2_000, 50, Duration::from_secs(5), || {
        let w = &words[rng.below(words.len())];
        black_box(store.search(w, 10)?);
        Ok(())
    })?;
    rep.push("search", "search one word, limit 10", "ops", m);
    Ok(())
}

/// Plain rusqlite: WAL, a two-column table, one autocommitted
/// `INSERT OR REPLACE` per put.
fn sqlite_baseline(
    path: &Path,
    n: usize,
    full: bool,
    words: &[String],
    dev: Option<&str>,
) -> Result<(Measure, Option<DiskPerOp>)> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={};
         CREATE TABLE docs (id TEXT PRIMARY KEY, data TEXT);",
        if full { "FULL" } else { "NORMAL" }
    ))?;
    let rows: Vec<(String, String)> = (0..n)
        .map(|i| {
            serde_json::to_string(&make_doc(i, words))
                .map(|text| (doc_id(i), text))
                .map_err(|e| StoreError::Internal(format!("cannot encode a document: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut stmt = conn.prepare("INSERT OR REPLACE INTO docs (id, data) VALUES (?1, ?2)")?;
    let d0 = disk_snap(dev);
    let mut rec = Rec::new(n);
    for (id, data) in &rows {
        let t = Instant::now();
        stmt.execute(rusqlite::params![id, data])?;
        rec.push(t);
    }
    let m = rec.finish();
    Ok((m, disk_per_op(d0, disk_snap(dev), n as u64)))
}

/// O_APPEND write of 260 bytes + fdatasync, `n` times.
fn raw_append_fdatasync(path: &Path, n: usize) -> Result<Measure> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let buf = [b'x'; 260];
    let mut rec = Rec::new(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf).map_err(|e| io_err(path, e))?;
        f.sync_data().map_err(|e| io_err(path, e))?;
        rec.push(t);
    }
    Ok(rec.finish())
}

// ---------------------------------------------------------------------------
// Output

fn fmt_rate(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 10_000 {
        format!("{:.2} µs", f / 1e3)
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

fn mode_title(mode: Durability) -> &'static str {
    match mode {
        Durability::Journal => {
            "durability: journal (acknowledged after the journal write(); survives kill -9)"
        }
        Durability::Fsync => {
            "durability: fsync (acknowledged after a group fdatasync; survives power loss)"
        }
    }
}

impl Report {
    fn to_table(&self) -> String {
        use std::fmt::Write;
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "hearth bench store — {}", m.date_utc);
        let _ = writeln!(
            s,
            "machine:   {} · {} CPUs (nproc) · Linux {} · {}{} ({})",
            m.cpu,
            m.nproc,
            m.kernel,
            m.fs,
            m.device
                .as_deref()
                .map_or(String::new(), |d| format!(" on {d}")),
            m.dir.display()
        );
        let _ = writeln!(
            s,
            "documents: ~{:.0} bytes of JSON each, ids item:00000000…; journal mode {} docs; fsync mode {}",
            self.doc_bytes_avg,
            fmt_rate(self.cfg_docs as f64),
            if self.cfg_fsync_docs == 0 {
                "skipped (--fsync-docs 0)".to_string()
            } else {
                format!(
                    "{} docs (--fsync-docs: each fsync-mode put waits for an fdatasync)",
                    fmt_rate(self.cfg_fsync_docs as f64)
                )
            }
        );
        let _ = writeln!(
            s,
            "timing:    each op timed with Instant (a pair costs ~{:.0} ns, included); rates are wall-clock",
            m.timer_ns
        );
        let _ = writeln!(
            s,
            "others:    share of all CPU time used by other processes, kernel threads and steal while a row ran{}",
            self.others_cpu
                .map_or(String::new(), |o| format!(" (whole run: {o:.0}%)"))
        );
        for mode in &self.modes {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "== {} — {} documents",
                mode_title(mode.mode),
                fmt_rate(mode.docs as f64)
            );
            let _ = writeln!(
                s,
                "{:<52} {:>13} {:>11} {:>9} {:>9} {:>9} {:>9} {:>6}",
                "", "count", "rate/s", "p50", "p99", "p99.9", "max", "others"
            );
            for r in &mode.rows {
                let (p50, p99, p999, max) = match r.m.lat {
                    Some(l) => (fmt_ns(l.p50), fmt_ns(l.p99), fmt_ns(l.p999), fmt_ns(l.max)),
                    None => Default::default(),
                };
                let _ = writeln!(
                    s,
                    "{:<52} {:>13} {:>11} {:>9} {:>9} {:>9} {:>9} {:>6}",
                    r.label,
                    format!("{} {}", fmt_rate(r.m.ops as f64), r.unit),
                    fmt_rate(r.m.rate()),
                    p50,
                    p99,
                    p999,
                    max,
                    r.m.others_cpu.map_or(String::new(), |o| format!("{o:.0}%"))
                );
                if let Some(d) = r.disk {
                    let _ = writeln!(
                        s,
                        "{:<52}   (device per op: {:.2} writes, {:.1} KiB, {:.2} cache flushes)",
                        "", d.writes, d.kib, d.flushes
                    );
                }
                if let Some(n) = &r.note {
                    let _ = writeln!(s, "{:<52}   ({n})", "");
                }
            }
            for w in &mode.warnings {
                let _ = writeln!(s, "WARNING: {w}");
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "== ratios (same run)");
        for (_, label, v) in &self.ratios {
            let _ = writeln!(
                s,
                "{:<78} {:>8}",
                label,
                v.map_or("n/a".into(), |v| format!("{v:.1}×"))
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "== targets (informational; nothing here fails the command)"
        );
        for t in &self.targets {
            let measured = match t.measured {
                Some(v) if t.unit == "×" => format!("{v:.1}×"),
                Some(v) => format!("{}/s", fmt_rate(v)),
                None => "not run".into(),
            };
            let verdict = match t.met() {
                Some(true) => "PASS",
                Some(false) => "BELOW",
                None => "-",
            };
            let _ = writeln!(
                s,
                "{:<66} {:>14} {:>14}  {:<5} [{}]",
                t.what, t.target, measured, verdict, t.source
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "total time: {:.1} s", self.total_secs);
        s
    }

    fn to_json(&self) -> Value {
        let m = &self.machine;
        let mut modes = Map::new();
        for mode in &self.modes {
            let mut results = Map::new();
            for r in &mode.rows {
                let mut v = r.m.to_json();
                if let Value::Object(o) = &mut v {
                    o.insert(
                        "label".into(),
                        json!(r.label.trim_start_matches([' ', '…'])),
                    );
                    o.insert("unit".into(), json!(r.unit));
                    if let Some(n) = &r.note {
                        o.insert("note".into(), json!(n));
                    }
                    if let Some(d) = r.disk {
                        o.insert(
                            "device_per_op".into(),
                            json!({
                                "writes": (d.writes * 100.0).round() / 100.0,
                                "kib": (d.kib * 10.0).round() / 10.0,
                                "flushes": (d.flushes * 1000.0).round() / 1000.0,
                            }),
                        );
                    }
                }
                results.insert(r.key.clone(), v);
            }
            modes.insert(
                mode.mode.name().into(),
                json!({
                    "docs": mode.docs,
                    "order": mode.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
                    "results": results,
                    "warnings": mode.warnings,
                }),
            );
        }
        let ratios: Map<String, Value> = self
            .ratios
            .iter()
            .map(|(k, _, v)| (k.clone(), json!(v.map(|v| (v * 100.0).round() / 100.0))))
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "what": t.what,
                    "source": t.source,
                    "target": t.target,
                    "threshold": t.threshold,
                    "measured": t.measured.map(|v| (v * 100.0).round() / 100.0),
                    "met": t.met(),
                })
            })
            .collect();
        json!({
            "benchmark": "store",
            "date_utc": m.date_utc,
            "unix_time": m.unix_time,
            "machine": {
                "nproc": m.nproc,
                "cpu": m.cpu,
                "kernel": m.kernel,
                "filesystem": m.fs,
                "device": m.device,
                "dir": m.dir,
            },
            "config": {
                "docs": self.cfg_docs,
                "fsync_docs": self.cfg_fsync_docs,
                "threads": self.threads,
                "doc_bytes_avg": self.doc_bytes_avg,
                "timer_pair_ns": (m.timer_ns * 10.0).round() / 10.0,
            },
            "others_cpu_pct": self.others_cpu.map(f64::round),
            "modes": modes,
            "ratios": ratios,
            "targets": targets,
            "total_seconds": round3(self.total_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_about_200_bytes_and_words_distinct() {
        let words = vocabulary();
        let set: std::collections::HashSet<_> = words.iter().collect();
        assert_eq!(set.len(), VOCAB);
        for i in [0, 7, 99_999, 12_345_678] {
            let len = serde_json::to_string(&make_doc(i, &words)).unwrap().len();
            assert!((190..=210).contains(&len), "doc {i} is {len} bytes");
        }
        assert_eq!(make_doc(42, &words), make_doc(42, &words));
    }

    #[test]
    fn percentiles_pick_the_right_samples() {
        let l = percentiles((1..=1000).rev().collect()).unwrap();
        assert_eq!((l.p50, l.p99, l.p999, l.max), (500, 990, 999, 1000));
        assert!(percentiles(Vec::new()).is_none());
    }

    #[test]
    fn dates_and_numbers_format() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(1_795_392_000), "2026-11-23 00:00 UTC");
        assert_eq!(fmt_rate(1_234_567.4), "1,234,567");
        assert_eq!(fmt_ns(850), "850 ns");
        assert_eq!(fmt_ns(1_940), "1.94 µs");
    }

    /// The whole benchmark runs end to end at a small size (a smoke test,
    /// not a timing; `HEARTH_BENCH_DOCS=N` makes it bigger).
    #[test]
    fn store_bench_runs() {
        let docs = std::env::var("HEARTH_BENCH_DOCS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000usize);
        let docs = docs.to_string();
        let cli = <crate::args::Cli as clap::Parser>::try_parse_from([
            "hearth",
            "bench",
            "store",
            "--docs",
            docs.as_str(),
            "--fsync-docs",
            "1000",
            "--threads",
            "4",
            "--fsync-wide-writers",
            "8",
        ])
        .unwrap();
        let crate::args::Command::Bench(args) = cli.command else {
            panic!("`hearth bench store` parses as the bench command");
        };
        run_store(args).unwrap();
    }
}
