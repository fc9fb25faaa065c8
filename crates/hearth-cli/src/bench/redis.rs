//! Redis over a Unix socket: the baseline `hearth bench channel` prints
//! beside hearth's own numbers.
//!
//! Owns: finding `redis-server`, running a private one (its own Unix socket
//! in the benchmark's scratch directory, persistence off), a minimal RESP2
//! client for GET and SET over std's `UnixStream` (one request at a time or
//! pipelined in batches), and the Redis rows, keyed like the hearth rows
//! they are compared with. Must never: talk to a Redis the user runs, leave
//! its server running, or wait for it with a sleep (its "Ready to accept
//! connections" log line is the signal).
//!
//! A hand-written client rather than a crate: GET and SET need about sixty
//! lines of RESP, a crate would bring its own connection management and
//! buffering into what is measured, and the baseline should be as thin as
//! the protocol allows.

use super::channel::{BenchOp, Probe, Row, Section};
use super::{Measure, Rng, elapsed_ns, progress};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// The `redis-server` executable on `PATH`, if any.
pub(super) fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// How long redis-server may take to say it is ready.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A line of redis-server's log.
enum LogLine {
    /// It accepts connections.
    Ready,
    /// Anything else.
    Other(String),
}

/// A `redis-server` started for the benchmark; killed when dropped.
pub(super) struct RedisServer {
    child: Child,
    socket: PathBuf,
    /// The version its log announced.
    pub(super) version: String,
}

impl RedisServer {
    /// Starts `exe` on `DIR/redis.sock` with persistence off and returns
    /// once its log says it accepts connections.
    pub(super) fn start(exe: &Path, dir: &Path) -> Result<RedisServer, String> {
        let socket = dir.join("redis.sock");
        let mut child = Command::new(exe)
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("redis-server's output was not captured".into());
        };
        // Its log says when it accepts connections ("Ready to accept
        // connections" or "The server is now ready to accept connections",
        // by version). A thread reads the log (and keeps reading it, so
        // that redis never blocks on a full pipe); a version that words it
        // otherwise is given up on after READY_WAIT rather than waited for
        // forever.
        let (tx, rx) = std::sync::mpsc::channel::<LogLine>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let event = if line
                    .to_ascii_lowercase()
                    .contains("ready to accept connections")
                {
                    LogLine::Ready
                } else {
                    LogLine::Other(line.clone())
                };
                // Nobody listens once it is ready: keep draining.
                let _ = tx.send(event);
            }
        });
        let mut version = String::from("?");
        let mut log = String::new();
        let deadline = Instant::now() + READY_WAIT;
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(LogLine::Ready) => break true,
                Ok(LogLine::Other(line)) => {
                    if let Some(v) = line.split("version=").nth(1) {
                        version = v.split([',', ' ']).next().unwrap_or("?").to_string();
                    }
                    log.push_str(&line);
                }
                Err(_) => break false,
            }
        };
        if !ready {
            let _ = child.kill();
            let status = child.wait();
            return Err(format!(
                "redis-server did not say it was ready within {READY_WAIT:?} ({status:?}); its log:\n{log}"
            ));
        }
        Ok(RedisServer {
            child,
            socket,
            version,
        })
    }

    /// Its process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection.
    pub(super) fn connect(&self) -> std::io::Result<Resp> {
        Resp::connect(&self.socket)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Nothing to keep: persistence is off.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One RESP2 connection.
pub(super) struct Resp {
    r: BufReader<UnixStream>,
    w: BufWriter<UnixStream>,
    line: Vec<u8>,
    bulk: Vec<u8>,
}

impl Resp {
    fn connect(path: &Path) -> std::io::Result<Resp> {
        let stream = UnixStream::connect(path)?;
        Ok(Resp {
            r: BufReader::with_capacity(64 << 10, stream.try_clone()?),
            w: BufWriter::with_capacity(64 << 10, stream),
            line: Vec::with_capacity(64),
            bulk: Vec::with_capacity(512),
        })
    }

    fn arg(&mut self, a: &[u8]) -> std::io::Result<()> {
        write!(self.w, "${}\r\n", a.len())?;
        self.w.write_all(a)?;
        self.w.write_all(b"\r\n")
    }

    /// Queues `GET key` (sent by [`flush`](Self::flush)).
    pub(super) fn queue_get(&mut self, key: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b"*2\r\n$3\r\nGET\r\n")?;
        self.arg(key)
    }

    /// Queues `SET key value`.
    pub(super) fn queue_set(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b"*3\r\n$3\r\nSET\r\n")?;
        self.arg(key)?;
        self.arg(value)
    }

    /// Sends what is queued.
    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }

    /// Reads one reply: `Some(len)` for a bulk string of `len` bytes (read
    /// and kept), `Some(0)` for a simple string or integer, `None` for nil;
    /// an error reply is an error.
    pub(super) fn read_reply(&mut self) -> std::io::Result<Option<usize>> {
        self.line.clear();
        self.r.read_until(b'\n', &mut self.line)?;
        let bad = |what: &str| std::io::Error::other(format!("redis: {what}"));
        let text = self
            .line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| bad("a reply line without CRLF (connection closed?)"))?;
        match text.split_first() {
            Some((b'+' | b':', _)) => Ok(Some(0)),
            Some((b'-', msg)) => Err(bad(&String::from_utf8_lossy(msg))),
            Some((b'$', len)) => {
                let len: i64 = std::str::from_utf8(len)
                    .ok()
                    .and_then(|l| l.parse().ok())
                    .ok_or_else(|| bad("a bad bulk length"))?;
                let Ok(len) = usize::try_from(len) else {
                    return Ok(None);
                };
                self.bulk.resize(len + 2, 0);
                self.r.read_exact(&mut self.bulk)?;
                Ok(Some(len))
            }
            _ => Err(bad("an unexpected reply type")),
        }
    }
}

/// What the Redis rows work on: the same keys and values as hearth's.
pub(super) struct Data<'a> {
    pub(super) keys: &'a [String],
    pub(super) values: &'a [String],
}

/// Every Redis row: preload, round trips, then throughput for each client
/// count, one request at a time and pipelined (`-P`-style batches of
/// `depth`).
pub(super) fn section(
    server: &RedisServer,
    data: &Data<'_>,
    ops: usize,
    clients: &[usize],
    depth: usize,
) -> std::io::Result<Section> {
    let mut sec = Section::new(
        "redis",
        format!(
            "Redis {} over a Unix socket (baseline; persistence off)",
            server.version
        ),
    );
    let mut c = server.connect()?;
    for (chunk_keys, chunk_values) in data.keys.chunks(100).zip(data.values.chunks(100)) {
        for (k, v) in chunk_keys.iter().zip(chunk_values) {
            c.queue_set(k.as_bytes(), v.as_bytes())?;
        }
        c.flush()?;
        for _ in chunk_keys {
            c.read_reply()?;
        }
    }
    let pid = Some(server.pid());
    progress("redis: round trips");
    let (m, cpu) = one_client(&mut c, BenchOp::Get, data, ops, pid)?;
    sec.push(Row::new("get_rt", "GET round trip, 1 client", m, cpu));
    let (m, cpu) = one_client(&mut c, BenchOp::Put, data, ops, pid)?;
    sec.push(Row::new("put_rt", "SET round trip, 1 client", m, cpu));
    drop(c);
    for op in [BenchOp::Get, BenchOp::Put] {
        for &n in clients {
            for d in super::channel::depths(depth) {
                progress(&format!(
                    "redis: {} with {n} clients, {d} in flight each",
                    op.redis_name()
                ));
                let (m, cpu) = many_clients(server, op, data, ops, n, d, pid)?;
                sec.push(Row::new(
                    &super::channel::throughput_key(op, n, d),
                    super::channel::throughput_label(op.redis_name(), n, d),
                    m,
                    cpu,
                ));
            }
        }
    }
    Ok(sec)
}

/// Sequential round trips on one connection, each timed.
fn one_client(
    c: &mut Resp,
    op: BenchOp,
    data: &Data<'_>,
    ops: usize,
    pid: Option<u32>,
) -> std::io::Result<(Measure, Option<f64>)> {
    let mut rng = Rng(0x0072_6564_6973);
    let mut lat = Vec::with_capacity(ops);
    let probe = Probe::start(pid);
    let start = Instant::now();
    let n = data.keys.len();
    for i in 0..ops {
        let k = match op {
            BenchOp::Get => rng.below(n),
            BenchOp::Put => i % n,
        };
        let t = Instant::now();
        match op {
            BenchOp::Get => c.queue_get(data.keys[k].as_bytes())?,
            BenchOp::Put => c.queue_set(data.keys[k].as_bytes(), data.values[k].as_bytes())?,
        }
        c.flush()?;
        std::hint::black_box(c.read_reply()?);
        lat.push(elapsed_ns(t));
    }
    Ok(probe.measure(lat, start.elapsed()))
}

/// `clients` threads, each with its own connection, sharing `ops`.
fn many_clients(
    server: &RedisServer,
    op: BenchOp,
    data: &Data<'_>,
    ops: usize,
    clients: usize,
    depth: usize,
    pid: Option<u32>,
) -> std::io::Result<(Measure, Option<f64>)> {
    let per_client = (ops / clients).max(1);
    let mut conns = (0..clients)
        .map(|_| server.connect())
        .collect::<std::io::Result<Vec<_>>>()?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let n = data.keys.len();
    std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(ci, c)| {
                let barrier = barrier.clone();
                s.spawn(move || -> std::io::Result<Vec<u32>> {
                    let mut rng = Rng(ci as u64 ^ 0x0072_6564_6973);
                    let mut lat = Vec::with_capacity(per_client);
                    let first = ci * per_client;
                    barrier.wait();
                    let mut done = 0;
                    while done < per_client {
                        let batch = depth.min(per_client - done);
                        let t = Instant::now();
                        for i in done..done + batch {
                            match op {
                                BenchOp::Get => {
                                    c.queue_get(data.keys[rng.below(n)].as_bytes())?;
                                }
                                BenchOp::Put => {
                                    let k = (first + i) % n;
                                    c.queue_set(
                                        data.keys[k].as_bytes(),
                                        data.values[k].as_bytes(),
                                    )?;
                                }
                            }
                        }
                        c.flush()?;
                        for _ in 0..batch {
                            std::hint::black_box(c.read_reply()?);
                            lat.push(elapsed_ns(t));
                        }
                        done += batch;
                    }
                    Ok(lat)
                })
            })
            .collect();
        let probe = Probe::start(pid);
        let start = Instant::now();
        barrier.wait();
        let mut all = Vec::with_capacity(per_client * clients);
        for h in handles {
            let lat = h
                .join()
                .map_err(|_| std::io::Error::other("a Redis client thread panicked"))??;
            all.extend(lat);
        }
        Ok(probe.measure(all, start.elapsed()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake Redis that answers the bytes given, for the parser.
    fn replying(bytes: &'static [u8]) -> (Resp, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(bytes).unwrap();
        });
        (Resp::connect(&path).unwrap(), dir)
    }

    #[test]
    fn replies_of_each_kind_are_read() {
        let (mut r, _dir) = replying(b"+OK\r\n$5\r\nhello\r\n$-1\r\n:7\r\n-ERR nope\r\n");
        assert_eq!(r.read_reply().unwrap(), Some(0));
        assert_eq!(r.read_reply().unwrap(), Some(5));
        assert_eq!(&r.bulk[..5], b"hello");
        assert_eq!(r.read_reply().unwrap(), None);
        assert_eq!(r.read_reply().unwrap(), Some(0));
        let e = r.read_reply().unwrap_err();
        assert!(e.to_string().contains("ERR nope"), "{e}");
    }

    #[test]
    fn a_closed_connection_is_an_error_not_a_hang() {
        let (mut r, _dir) = replying(b"");
        assert!(r.read_reply().is_err());
    }
}
