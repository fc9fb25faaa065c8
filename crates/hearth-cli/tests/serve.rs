//! `hearth serve` and the commands that talk to it over a channel,
//! specified by running the real binary: real server processes, real
//! sockets, temporary data directories, a runtime directory
//! (`XDG_RUNTIME_DIR`) private to each test.
//!
//! Owns: the observable contract of the server process (ready line,
//! `--ready-fd`, one server per channel and data directory, stale sockets,
//! clean stop on SIGTERM/SIGINT, nothing acknowledged lost to `kill -9`)
//! and of the channel commands (same output and exit codes as on a data
//! directory, `watch`, `wait`, `call`, `publish`, `subscribe`, exit 4 when
//! no server answers). Must never: sleep to wait for a server or a stream
//! (ready lines, printed lines and log lines are the signals), or assert on
//! elapsed time.

mod support;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::mpsc;
use support::server::{Site, signal};

/// Exit code for "no server answers on the channel".
const UNAVAILABLE: i32 = 4;

// ------------------------------------------------------------- the server

#[test]
fn serve_prints_one_ready_line_naming_channel_socket_and_pid() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let socket = site.socket("app");
    assert_eq!(
        server.ready,
        format!(
            "ready channel=app socket={} pid={}",
            socket.display(),
            server.pid()
        )
    );
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    server.terminate();
}

/// A server never faults in a 2 MiB huge page on a request's path (see
/// `no_huge_pages` in main.rs): the kernel reports THP off for its process.
#[cfg(target_os = "linux")]
#[test]
fn a_server_runs_with_transparent_huge_pages_off() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("a running server's /proc status is readable");
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    // Kernels before 5.0 do not report the flag; every other one must say 0.
    if let Some(thp) = thp {
        assert_eq!(
            thp, "0",
            "the server's /proc status says THP_enabled: {thp}"
        );
    }
    server.terminate();
}

#[test]
fn ready_fd_gets_the_same_line_and_is_closed_after_it() {
    let site = Site::new();
    let data = site.data("d");
    // fd 3 is the pipe the test reads; stdout goes nowhere. End of file on
    // the pipe proves the server closed fd 3 while it still runs.
    let mut cmd = std::process::Command::new("sh");
    support::clean_env(&mut cmd);
    cmd.env("XDG_RUNTIME_DIR", site.runtime_dir())
        .arg("-c")
        .arg(r#"exec "$0" serve --channel app --data-dir "$1" --ready-fd 3 3>&1 1>/dev/null"#)
        .arg(env!("CARGO_BIN_EXE_hearth"))
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("sh starts");
    let mut ready = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut ready)
        .expect("reading fd 3 to its end");
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the server still runs"
    );
    assert_eq!(
        ready,
        format!(
            "ready channel=app socket={} pid={}\n",
            site.socket("app").display(),
            child.id()
        )
    );
    signal(&child, Signal::SIGTERM);
    assert!(child.wait().expect("waited").success());
}

#[test]
fn a_second_server_on_the_same_channel_fails_at_once_naming_the_first_pid() {
    let site = Site::new();
    let first = site.serve("app", &site.data("d1"));
    let d2 = site.data("d2");
    let second = site.hearth(&[
        "serve",
        "--channel",
        "app",
        "--data-dir",
        d2.to_str().unwrap(),
    ]);
    assert_eq!(second.code, 3, "{second:#?}");
    assert!(
        second.stderr.contains(&first.pid().to_string()),
        "{second:#?}"
    );
    first.terminate();
}

#[test]
fn a_second_server_on_the_same_data_dir_fails_at_once_naming_the_first_pid() {
    let site = Site::new();
    let data = site.data("d");
    let first = site.serve("one", &data);
    let second = site.hearth(&[
        "serve",
        "--channel",
        "two",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(second.code, 3, "{second:#?}");
    assert!(
        second.stderr.contains(&first.pid().to_string()),
        "{second:#?}"
    );
    first.terminate();
}

#[test]
fn sigterm_stops_the_server_exit_0_removing_the_socket_and_keeping_the_data() {
    let site = Site::new();
    let data = site.data("d");
    let server = site.serve("app", &data);
    site.client("app", &["put", "a", r#"{"x":1}"#]).ok();
    server.terminate();
    assert!(!site.socket("app").exists(), "the socket is removed");
    let got = site
        .hearth(&["--data-dir", data.to_str().unwrap(), "get", "a"])
        .ok();
    assert_eq!(
        serde_json::from_str::<Value>(&got.stdout).unwrap(),
        json!({"x": 1})
    );
}

#[test]
fn exit_with_parent_stops_the_server_cleanly_when_its_parent_is_killed() {
    let site = Site::new();
    let data = site.data("d");
    // A shell is the parent: it starts the server in the background and
    // waits; the server inherits the shell's stdout pipe.
    let mut parent = site.spawn_under_shell(&[
        "serve",
        "--channel",
        "app",
        "--data-dir",
        data.to_str().unwrap(),
        "--exit-with-parent",
    ]);
    let mut out = std::io::BufReader::new(parent.stdout.take().unwrap());
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut out, &mut ready).unwrap();
    assert!(ready.starts_with("ready channel=app"), "{ready:?}");
    site.client("app", &["put", "a", r#"{"x":1}"#]).ok();

    signal(&parent, Signal::SIGKILL);
    parent.wait().unwrap();
    // End of file on the pipe: the server, its last writer, has exited.
    // (A bound only so that a regression fails instead of hanging.)
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the server exits after its parent is killed");
    assert!(
        !site.socket("app").exists(),
        "a clean stop removes the socket"
    );
    let got = site
        .hearth(&["--data-dir", data.to_str().unwrap(), "get", "a"])
        .ok();
    assert_eq!(
        serde_json::from_str::<Value>(&got.stdout).unwrap(),
        json!({"x": 1})
    );
}

#[test]
fn socket_dir_puts_the_socket_where_the_server_and_its_clients_agree() {
    let site = Site::new();
    let dir = site.file("s");
    let dir = dir.to_str().unwrap();
    let server = site.serve_plus("app", &site.data("d"), &["--socket-dir", dir]);
    assert!(
        server.ready.contains(&format!("socket={dir}/app.sock")),
        "{}",
        server.ready
    );
    site.hearth(&["--socket-dir", dir, "--channel", "app", "put", "a", "{}"])
        .ok();
    let mut cmd = site.command();
    cmd.env("HEARTH_SOCKET_DIR", dir)
        .args(["--channel", "app", "get", "a"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let waited = site
        .hearth(&["--socket-dir", dir, "--json", "wait", "--channel", "app"])
        .ok();
    let waited: Value = serde_json::from_str(&waited.stdout).unwrap();
    assert_eq!(waited["socket"], format!("{dir}/app.sock"), "{waited}");
    // Without it, a client looks in the default place and finds nothing.
    site.client("app", &["get", "a"]).fails_with(UNAVAILABLE);
    server.terminate();
    assert!(!std::path::Path::new(dir).join("app.sock").exists());
}

#[test]
fn sigint_stops_the_server_like_sigterm() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let (status, err) = server.stop(Signal::SIGINT);
    assert!(status.success(), "{status:?} {err}");
    assert!(!site.socket("app").exists());
}

#[test]
fn a_stale_socket_left_by_a_killed_server_is_replaced() {
    let site = Site::new();
    let data = site.data("d");
    let server = site.serve("app", &data);
    site.client("app", &["put", "a", r#"{"x":1}"#]).ok();
    server.kill9();
    assert!(site.socket("app").exists(), "kill -9 leaves the socket");
    site.client("app", &["get", "a"]).fails_with(UNAVAILABLE);
    let again = site.serve("app", &data);
    site.client("app", &["get", "a"]).ok();
    again.terminate();
}

#[test]
fn an_invalid_channel_name_exits_2_saying_what_names_may_hold() {
    let site = Site::new();
    let d = site.data("d");
    let r = site
        .hearth(&[
            "serve",
            "--channel",
            "a/b",
            "--data-dir",
            d.to_str().unwrap(),
        ])
        .fails_with(2);
    assert!(r.stderr.contains("invalid channel name"), "{r:#?}");
    assert!(r.stderr.contains("A-Z a-z 0-9 . _ -"), "{r:#?}");
    assert!(!d.exists(), "nothing was created");
    site.client("a b", &["get", "x"]).fails_with(2);
}

// ---------------------------------------------------------- shared memory

/// The server's counters, from `hearth --json stats` over `channel` (whose
/// own connection is one of them).
#[cfg(target_os = "linux")]
fn server_stats(site: &Site, channel: &str) -> Value {
    stats_when(site, channel, |_| true)["server"].clone()
}

/// `hearth --json stats` over `channel`, asked again until `settled` holds
/// of it (at most 30 s). A client that just exited is still counted until
/// the server has seen its end of the socket, on its own time.
fn stats_when(site: &Site, channel: &str, settled: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = site.client(channel, &["--json", "stats"]).ok();
        let v: Value = serde_json::from_str(&r.stdout).expect("stats prints JSON");
        if settled(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never settled: {v}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_server_moves_its_clients_to_shared_memory_with_256_kib_rings_by_default() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let s = server_stats(&site, "app");
    assert_eq!(s["shm_connections"], 1, "{s}");
    assert_eq!(s["shm_ring_bytes"], 256 * 1024, "{s}");
    server.terminate();
}

#[cfg(target_os = "linux")]
#[test]
fn shm_ring_bytes_sizes_the_rings_and_a_document_larger_than_a_ring_still_round_trips() {
    let site = Site::new();
    let server = site.serve_plus("app", &site.data("d"), &["--shm-ring-bytes", "4096"]);
    let s = server_stats(&site, "app");
    assert_eq!(s["shm_ring_bytes"], 4096, "{s}");
    assert_eq!(s["shm_connections"], 1, "{s}");
    // 100 KB: twenty-five times a ring, in pieces both ways.
    let text = "x".repeat(100_000);
    let doc = json!({ "text": text }).to_string();
    let mut cmd = site.command();
    cmd.args(["--channel", "app", "put", "doc:big", "-"]);
    support::run_as_is(cmd, Some(doc.as_bytes())).ok();
    let got = site.client("app", &["get", "doc:big"]).ok();
    let got: Value = serde_json::from_str(&got.stdout).expect("get prints the document");
    assert_eq!(got["text"], text);
    server.terminate();
}

/// A `HEARTH_TRANSPORT` that names no transport is refused as bad input
/// before connecting, naming the values it takes, instead of being
/// ignored (a typo of `socket` kept shared memory without a word).
#[test]
fn a_hearth_transport_that_names_no_transport_is_refused() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let mut cmd = site.command();
    cmd.env("HEARTH_TRANSPORT", "sockets")
        .args(["--channel", "app", "get", "a"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HEARTH_TRANSPORT=\"sockets\"") && stderr.contains("auto, socket or shm"),
        "{stderr}"
    );
    server.terminate();
}

/// Over a channel, `stats` lists every connection with its transport and
/// its client's pid, and marks its own, in text and in JSON.
#[cfg(target_os = "linux")]
#[test]
fn stats_over_a_channel_lists_each_connection_with_its_transport() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    site.client("app", &["put", "a", r#"{"n":1}"#]).ok();
    let mut watch = site.follow_with(
        "app",
        &["watch", "--from-seq", "0"],
        &[("HEARTH_TRANSPORT", "socket")],
    );
    // Its first line: it is connected.
    assert_eq!(watch.line(), r#"1 put a  {"n":1}"#);
    let watcher = format!("socket, pid {}", watch.child.id());

    let text = site.client("app", &["stats"]).ok().stdout;
    let own: Vec<&str> = text.lines().filter(|l| l.contains("(this one)")).collect();
    assert_eq!(own.len(), 1, "{text}");
    assert!(
        own[0].starts_with("connection ") && own[0].contains("  shm, pid "),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("connection ") && l.ends_with(&watcher)),
        "{text}"
    );

    // The watcher and this one, once the text `stats` client is gone.
    let v = stats_when(&site, "app", |v| {
        v["connections"].as_array().map(Vec::len) == Some(2)
    });
    let listed = v["connections"].as_array().expect("a list of connections");
    let mine = listed
        .iter()
        .find(|c| c["id"] == v["connection"])
        .expect("its own connection is listed");
    assert_eq!(mine["transport"], "shm", "{v}");
    assert!(
        listed
            .iter()
            .any(|c| c["transport"] == "socket" && c["peer_pid"] == u64::from(watch.child.id())),
        "{v}"
    );
    server.terminate();
}

/// The child side of `Site::serve_without_memfd`; a no-op in a normal run.
#[cfg(target_os = "linux")]
#[test]
fn sandbox_exec_entry() {
    support::server::sandbox_exec_entry();
}

/// A server whose sandbox forbids memfd serves every client over the
/// socket, as `--no-shm` would, and says why once in its log, not once a
/// connection.
#[cfg(target_os = "linux")]
#[test]
fn a_server_in_a_sandbox_without_memfd_keeps_clients_on_the_socket_and_says_so_once() {
    let site = Site::new();
    let data = site.data("d");
    let data = data.to_str().expect("a UTF-8 path");
    let server = site.serve_without_memfd(&["serve", "--channel", "app", "--data-dir", data]);
    site.client("app", &["put", "user:1", r#"{"name":"Alice"}"#])
        .ok();
    let got = site.client("app", &["get", "user:1"]).ok();
    let got: Value = serde_json::from_str(&got.stdout).expect("get prints the document");
    assert_eq!(got, json!({"name": "Alice"}));
    // Only this one, once the `put` and `get` clients are gone.
    let stats = stats_when(&site, "app", |v| {
        v["connections"].as_array().map(Vec::len) == Some(1)
    });
    assert_eq!(stats["server"]["shm_connections"], 0, "{stats}");
    let connections = stats["connections"].as_array().expect("a list");
    assert_eq!(connections[0]["transport"], "socket", "{stats}");
    let (status, err) = server.stop(Signal::SIGTERM);
    assert!(status.success(), "server exit {status:?}: {err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("shared memory cannot be made here"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("Operation not permitted"),
        "{err}"
    );
}

#[test]
fn no_shm_keeps_every_connection_on_the_socket() {
    let site = Site::new();
    let server = site.serve_plus("app", &site.data("d"), &["--no-shm"]);
    site.client("app", &["put", "user:1", r#"{"name":"Alice"}"#])
        .ok();
    // Only this one, once the `put` client is gone.
    let s = stats_when(&site, "app", |v| v["server"]["connections"] == 1)["server"].clone();
    assert_eq!(s["shm_connections"], 0, "{s}");
    assert_eq!(s["shm_ring_bytes"], 0, "{s}");
    let got = site.client("app", &["get", "user:1"]).ok();
    assert!(got.stdout.contains("Alice"), "{got:#?}");
    server.terminate();
}

#[test]
fn a_ring_size_that_is_no_power_of_two_in_range_exits_2_saying_what_is() {
    let site = Site::new();
    let d = site.data("d");
    let d = d.to_str().unwrap();
    let serve = |extra: &[&str]| {
        let line = [&["serve", "--channel", "app", "--data-dir", d], extra].concat();
        site.hearth(&line).fails_with(2)
    };
    for bad in ["5000", "2048", "134217728", "1MiB"] {
        let r = serve(&["--shm-ring-bytes", bad]);
        assert!(
            r.stderr.contains("power of two from 4096 to 67108864"),
            "{bad}: {r:#?}"
        );
    }
    let r = serve(&["--no-shm", "--shm-ring-bytes", "4096"]);
    assert!(r.stderr.contains("cannot be used with"), "{r:#?}");
    assert!(!std::path::Path::new(d).exists(), "nothing was created");
}

#[test]
fn serve_without_a_channel_exits_2_saying_how_to_give_one() {
    let site = Site::new();
    let r = site
        .hearth(&["serve", "--data-dir", "/nonexistent"])
        .fails_with(2);
    assert!(r.stderr.contains("--channel NAME"), "{r:#?}");
}

#[test]
fn the_pluresdb_launch_line_and_environment_are_accepted() {
    let site = Site::new();
    let d = site.data("d");
    let mut cmd = site.command();
    cmd.env("PLURESDB_IPC", "true")
        .env("HEARTH_IPC", "true")
        .env("HEARTH_CHANNEL", "app")
        .args(["serve", "--ipc", "--data-dir", d.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("starts");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready channel=app "), "{line:?}");
    signal(&child, Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
}

// -------------------------------------------- commands over the channel

/// The same command line run on a data directory and over a channel to a
/// server on an equal data directory.
struct Twins {
    site: Site,
    local: std::path::PathBuf,
    server: Option<support::server::Served>,
}

impl Twins {
    fn new() -> Twins {
        let site = Site::new();
        let server = site.serve("twin", &site.data("served"));
        Twins {
            local: site.data("local"),
            site,
            server: Some(server),
        }
    }

    fn local(&self, args: &[&str], stdin: Option<&[u8]>) -> support::Run {
        let mut cmd = self.site.command();
        cmd.arg("--data-dir").arg(&self.local).args(args);
        support::run_as_is(cmd, stdin)
    }

    fn remote(&self, args: &[&str], stdin: Option<&[u8]>) -> support::Run {
        let args = [&["--channel", "twin"], args].concat();
        match stdin {
            Some(input) => self.site.hearth_stdin(&args, input),
            None => self.site.hearth(&args),
        }
    }

    /// Runs both; checks they print the same and exit alike.
    #[track_caller]
    fn same(&self, args: &[&str]) -> support::Run {
        self.same_stdin(args, None)
    }

    #[track_caller]
    fn same_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> support::Run {
        let l = self.local(args, stdin);
        let r = self.remote(args, stdin);
        assert_eq!(l.code, r.code, "exit codes of {args:?}: {l:#?} {r:#?}");
        assert_eq!(l.stdout, r.stdout, "stdout of {args:?}");
        assert_eq!(l.stderr, r.stderr, "stderr of {args:?}");
        r
    }
}

impl Drop for Twins {
    fn drop(&mut self) {
        if let Some(s) = self.server.take()
            && !std::thread::panicking()
        {
            s.terminate();
        }
    }
}

#[test]
fn put_get_patch_delete_over_a_channel_print_what_they_print_on_a_data_dir() {
    let t = Twins::new();
    t.same(&["put", "user:1", r#"{"name":"Alice","age":30}"#])
        .ok();
    t.same(&["--json", "put", "user:2", r#"{"name":"Bob"}"#])
        .ok();
    t.same(&["get", "user:1"]).ok();
    t.same(&["patch", "user:1", r#"{"age":null,"email":"a@x"}"#])
        .ok();
    t.same(&["get", "user:1"]).ok();
    t.same(&["delete", "user:2"]).ok();
    t.same_stdin(&["put", "user:3", "-"], Some(br#"{"from":"stdin"}"#))
        .ok();
    t.same(&["get", "user:3"]).ok();
}

#[test]
fn get_json_over_a_channel_carries_the_same_fields() {
    let t = Twins::new();
    t.same(&["put", "a", r#"{"x":[1,2.5,"é"]}"#]).ok();
    let mut l: Value =
        serde_json::from_str(&t.local(&["--json", "get", "a"], None).ok().stdout).unwrap();
    let mut r: Value =
        serde_json::from_str(&t.remote(&["--json", "get", "a"], None).ok().stdout).unwrap();
    // The write times differ; everything else is equal.
    assert!(l["updated_at_ms"].is_u64() && r["updated_at_ms"].is_u64());
    l["updated_at_ms"].take();
    r["updated_at_ms"].take();
    assert_eq!(l, r);
}

#[test]
fn failures_over_a_channel_exit_like_on_a_data_dir() {
    let t = Twins::new();
    t.same(&["get", "missing"]).fails_with(1);
    t.same(&["delete", "missing"]).fails_with(1);
    t.same(&["put", "a", "{nope"]).fails_with(2);
    t.same(&["put", "a", "[1]"]).fails_with(2);
    t.same(&["put", "", "{}"]).fails_with(2);
    t.same(&["--json", "get", "missing"]).fails_with(1);
    t.same(&["search", "!!!"]).fails_with(2);
}

fn people() -> String {
    [
        (
            "user:1",
            r#"{"type":"User","name":"Alice","age":30,"admin":true}"#,
        ),
        (
            "user:2",
            r#"{"type":"User","name":"Bob","age":25,"admin":false}"#,
        ),
        (
            "user:3",
            r#"{"type":"User","name":"Carol","age":30,"admin":false}"#,
        ),
        ("org:1", r#"{"type":"Org","name":"Acme"}"#),
        ("note:1", r#"{"type":"Note","text":"Alice met Bob"}"#),
    ]
    .iter()
    .map(|(id, data)| format!("{{\"id\":\"{id}\",\"data\":{data}}}\n"))
    .collect()
}

#[test]
fn list_query_and_search_over_a_channel_print_what_they_print_on_a_data_dir() {
    let t = Twins::new();
    t.same_stdin(&["import", "-"], Some(people().as_bytes()))
        .ok();
    for args in [
        &["list"][..],
        &["--json", "list"],
        &["list", "--prefix", "user:"],
        &["list", "--type", "User", "--limit", "2"],
        &["list", "--prefix", "user:", "--after", "user:1"],
        &["query", "age=30"],
        &["--json", "query", "age=30", "admin=false"],
        &["query", "type=User", "--limit", "1"],
        &["search", "alice"],
        &["--json", "search", "bob"],
    ] {
        t.same(args).ok();
    }
}

#[test]
fn import_and_export_over_a_channel_round_trip_like_on_a_data_dir() {
    let t = Twins::new();
    let lines: String = (0..1500)
        .map(|i| format!("{{\"id\":\"n:{i:05}\",\"data\":{{\"i\":{i},\"s\":\"v{i}\"}}}}\n"))
        .collect();
    let file = t.site.file("in.jsonl");
    std::fs::write(&file, &lines).unwrap();
    let r = t.same(&["--json", "import", file.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("\"imported\":1500"), "{r:#?}");
    let exported = t.same(&["export"]).ok();
    let mut expected: Vec<&str> = lines.lines().collect();
    expected.sort_unstable();
    assert_eq!(exported.stdout.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn a_bad_import_line_over_a_channel_stops_there_keeping_the_lines_before() {
    let t = Twins::new();
    let input = b"{\"id\":\"a\",\"data\":{}}\n{oops\n{\"id\":\"b\",\"data\":{}}\n";
    let r = t.same_stdin(&["import", "-"], Some(input)).fails_with(2);
    assert!(r.stderr.contains("line 2"), "{r:#?}");
    t.same(&["list"]).ok();
}

#[test]
fn stats_over_a_channel_prints_the_store_rows_then_the_servers() {
    let t = Twins::new();
    t.same_stdin(&["import", "-"], Some(people().as_bytes()))
        .ok();
    t.same(&["delete", "org:1"]).ok();
    let l = t.local(&["stats"], None).ok();
    let r = t.remote(&["stats"], None).ok();
    let labels = |run: &support::Run| -> Vec<String> {
        run.stdout
            .lines()
            .map(|l| l.split("  ").next().unwrap_or_default().to_string())
            .collect()
    };
    let (l, r) = (labels(&l), labels(&r));
    assert_eq!(r[..l.len()], l[..], "the store rows come first, alike");
    for row in [
        "server connections",
        "shm connections",
        "shm ring bytes",
        "shm served by the poller",
        "shm requests polled",
        "shm turns handed over",
        "shm handoffs missed",
        "shm turns ended asleep",
        "closed: half-sent messages",
    ] {
        assert!(r[l.len()..].iter().any(|x| x == row), "{row}: {r:?}");
    }
    let v: Value = serde_json::from_str(&t.remote(&["--json", "stats"], None).ok().stdout).unwrap();
    assert_eq!(v["documents"], 4);
    assert_eq!(v["tombstones"], 1);
    assert!(v["server"]["connections"].as_u64() >= Some(1), "{v}");
    assert!(v["server"]["shm_handoffs"].is_u64(), "{v}");
    assert!(v["server"]["shm_handoffs_missed"].is_u64(), "{v}");
    assert_eq!(v["server"]["partial_disconnects"], 0, "{v}");
    assert!(v["server"]["shm_holders_asleep"].is_u64(), "{v}");
    assert!(v["server"]["shm_turn_waits"].is_u64(), "{v}");
    assert!(v["server"]["shm_answers_queued"].is_u64(), "{v}");
}

#[test]
fn the_channel_comes_from_hearth_channel_when_no_flag_is_given() {
    let site = Site::new();
    let server = site.serve("env", &site.data("d"));
    let mut cmd = site.command();
    cmd.env("HEARTH_CHANNEL", "env").args(["put", "a", "{}"]);
    support::run_as_is(cmd, None).ok();
    site.client("env", &["get", "a"]).ok();
    server.terminate();
}

#[test]
fn repair_over_a_channel_is_refused_with_exit_2() {
    let site = Site::new();
    let r = site.client("app", &["repair"]).fails_with(2);
    assert!(r.stderr.contains("stop the server"), "{r:#?}");
}

// ------------------------------------------------------ no server there

#[test]
fn a_command_without_a_server_exits_4_naming_channel_socket_and_how_to_start_one() {
    let site = Site::new();
    let r = site.client("nobody", &["get", "x"]).fails_with(UNAVAILABLE);
    assert!(r.stderr.contains("\"nobody\""), "{r:#?}");
    assert!(
        r.stderr
            .contains(&site.socket("nobody").display().to_string()),
        "{r:#?}"
    );
    assert!(
        r.stderr
            .contains("hearth serve --ipc --channel nobody --data-dir DIR"),
        "{r:#?}"
    );
}

#[test]
fn a_command_without_a_server_in_json_mode_says_unavailable() {
    let site = Site::new();
    let r = site
        .client("nobody", &["--json", "put", "a", "{}"])
        .fails_with(UNAVAILABLE);
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "unavailable");
}

#[test]
fn wait_exits_0_once_the_server_answers() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let r = site
        .hearth(&["wait", "--channel", "app", "--timeout", "60s"])
        .ok();
    assert!(r.stdout.contains("answers"), "{r:#?}");
    server.terminate();
}

#[test]
fn wait_started_before_the_server_returns_once_it_is_up() {
    let site = Site::new();
    let waiting = site.spawn(&["wait", "--channel", "late", "--timeout", "60s"]);
    let server = site.serve("late", &site.data("d"));
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    server.terminate();
}

#[test]
fn wait_without_a_server_times_out_with_exit_4_and_says_how_to_start_one() {
    let site = Site::new();
    let r = site
        .hearth(&["wait", "--channel", "nobody", "--timeout", "200ms"])
        .fails_with(UNAVAILABLE);
    assert!(r.stderr.contains("within 200ms"), "{r:#?}");
    assert!(
        r.stderr
            .contains("hearth serve --channel nobody --data-dir DIR"),
        "{r:#?}"
    );
}

// ------------------------------------------------------------------ watch

#[test]
fn watch_prints_every_change_in_commit_order_and_ends_0_when_the_server_stops() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    site.client("app", &["put", "a", r#"{"n":1}"#]).ok();
    site.client("app", &["put", "b", r#"{"n":2}"#]).ok();
    let mut watch = site.follow("app", &["watch", "--from-seq", "0"]);
    assert_eq!(watch.line(), r#"1 put a  {"n":1}"#);
    assert_eq!(watch.line(), r#"2 put b  {"n":2}"#);
    site.client("app", &["patch", "a", r#"{"m":3}"#]).ok();
    assert_eq!(watch.line(), r#"3 patch a  {"m":3}"#);
    site.client("app", &["delete", "b"]).ok();
    assert_eq!(watch.line(), "4 delete b");
    server.terminate();
    let (status, rest, err) = watch.finish();
    assert!(status.success(), "{status:?} {err}");
    assert_eq!(rest, "");
    assert!(err.contains("shut down"), "{err}");
    assert!(err.contains("watch --from-seq 5"), "{err}");
}

#[test]
fn watch_json_prints_one_change_object_per_line() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    site.client("app", &["put", "user:1", r#"{"name":"Alice"}"#])
        .ok();
    site.client("app", &["put", "org:1", r#"{"name":"Acme"}"#])
        .ok();
    site.client("app", &["delete", "user:1"]).ok();
    let mut watch = site.follow(
        "app",
        &["--json", "watch", "--prefix", "user:", "--from-seq", "0"],
    );
    let first: Value = serde_json::from_str(&watch.line()).unwrap();
    assert_eq!(
        (&first["seq"], &first["id"], &first["kind"], &first["data"]),
        (
            &json!(1),
            &json!("user:1"),
            &json!("put"),
            &json!({"name": "Alice"})
        )
    );
    let second: Value = serde_json::from_str(&watch.line()).unwrap();
    assert_eq!(
        (&second["seq"], &second["kind"]),
        (&json!(3), &json!("delete"))
    );
    assert_eq!(second["data"], Value::Null);
    server.terminate();
}

#[test]
fn watch_exits_0_on_sigterm_and_on_sigint() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    site.client("app", &["put", "a", "{}"]).ok();
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut watch = site.follow("app", &["watch", "--from-seq", "0"]);
        watch.line();
        signal(&watch.child, sig);
        let (status, _, err) = watch.finish();
        assert!(status.success(), "{sig}: {status:?} {err}");
    }
    server.terminate();
}

#[test]
fn watch_exits_4_saying_where_to_resume_when_the_server_is_killed() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    site.client("app", &["put", "a", "{}"]).ok();
    site.client("app", &["put", "b", "{}"]).ok();
    let mut watch = site.follow("app", &["watch", "--from-seq", "0"]);
    watch.line();
    watch.line();
    server.kill9();
    let (status, _, err) = watch.finish();
    assert_eq!(status.code(), Some(UNAVAILABLE), "{err}");
    assert!(err.contains("without a shutdown announcement"), "{err}");
    assert!(err.contains("watch --from-seq 3"), "{err}");
}

#[test]
fn watch_without_a_channel_exits_2() {
    let site = Site::new();
    let r = site.hearth(&["watch"]).fails_with(2);
    assert!(r.stderr.contains("--channel NAME"), "{r:#?}");
}

#[test]
fn killing_a_watch_mid_stream_leaves_the_server_serving_the_others() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    site.client("app", &["put", "a", r#"{"n":1}"#]).ok();
    let mut doomed = site.follow("app", &["watch", "--from-seq", "0"]);
    let mut other = site.follow("app", &["watch", "--from-seq", "0"]);
    doomed.line();
    other.line();
    signal(&doomed.child, Signal::SIGKILL);
    let _ = doomed.finish();
    site.client("app", &["put", "b", r#"{"n":2}"#]).ok();
    assert_eq!(other.line(), r#"2 put b  {"n":2}"#);
    site.client("app", &["get", "b"]).ok();
    server.terminate();
    assert!(other.finish().0.success());
}

// ----------------------------------------- handlers, topics and events

#[test]
fn calling_a_handler_the_server_does_not_have_exits_2_naming_it() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let r = site
        .client("app", &["call", "one-core:login", r#"{"username":"a"}"#])
        .fails_with(2);
    assert!(
        r.stderr.contains("no handler named \"one-core:login\""),
        "{r:#?}"
    );
    let r = site
        .client("app", &["--json", "call", "one-core:login"])
        .fails_with(2);
    assert!(
        r.stderr.contains("\"code\":\"unknown_operation\""),
        "{r:#?}"
    );
    server.terminate();
}

#[test]
fn a_published_event_reaches_a_subscriber_with_its_payload() {
    let site = Site::new();
    let server = site.serve("app", &site.data("d"));
    let mut sub = site.follow_with(
        "app",
        &["subscribe", "one-core:event:*"],
        &[("HEARTH_LOG", "info")],
    );
    sub.stderr_until("subscribed");
    let r = site
        .client(
            "app",
            &[
                "--json",
                "publish",
                "one-core:event:syncProgress",
                r#"{"progress":1}"#,
            ],
        )
        .ok();
    assert_eq!(
        serde_json::from_str::<Value>(r.stdout.trim()).unwrap(),
        json!({"topic": "one-core:event:syncProgress", "delivered": 1})
    );
    assert_eq!(sub.line(), r#"one-core:event:syncProgress  {"progress":1}"#);
    server.terminate();
    assert!(sub.finish().0.success(), "a shutdown ends subscribe with 0");
}

/// `--max-message-bytes` raises the longest request the server takes, and
/// its clients learn it in the handshake: `hearth publish` with a 33 MiB
/// payload goes to a server started with 40 MiB; the same to a default
/// server is refused before sending (`too_large`, exit 2), naming the
/// server's 32 MiB and the flag.
#[test]
fn max_message_bytes_raises_what_clients_send_without_their_own_flag() {
    let site = Site::new();
    let raised = site.serve_plus("big", &site.data("b"), &["--max-message-bytes", "41943040"]);
    let plain = site.serve("plain", &site.data("p"));
    let payload = json!({"blob": "p".repeat(33 << 20)}).to_string();
    let publish = |channel: &str| {
        site.hearth_stdin(
            &[
                "--channel",
                channel,
                "--json",
                // What `hearth` reads from standard input, not a limit of the server.
                "--max-doc-bytes",
                "41943040",
                "publish",
                "big:event",
                "-",
            ],
            payload.as_bytes(),
        )
    };
    let r = publish("big").ok();
    assert_eq!(
        serde_json::from_str::<Value>(r.stdout.trim()).unwrap(),
        json!({"topic": "big:event", "delivered": 0})
    );
    let r = publish("plain").fails_with(2);
    assert!(r.stderr.contains("\"too_large\""), "{r:#?}");
    assert!(
        r.stderr
            .contains("the 32 MiB (33554432 bytes) the server takes"),
        "{r:#?}"
    );
    assert!(r.stderr.contains("--max-message-bytes"), "{r:#?}");
    raised.terminate();
    plain.terminate();
}

#[test]
fn a_payload_that_is_not_json_exits_2() {
    let site = Site::new();
    let r = site
        .client("app", &["publish", "a:b", "{nope"])
        .fails_with(2);
    assert!(r.stderr.contains("not valid JSON"), "{r:#?}");
}

// ------------------------------------------------------------ kill -9

/// A small deterministic generator for kill points; the seed is printed
/// so a failing round can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Every document the server holds under prefix `w:`.
fn stored(site: &Site, channel: &str) -> BTreeMap<String, Value> {
    let r = site
        .client(channel, &["--json", "list", "--prefix", "w:"])
        .ok();
    r.json_lines()
        .into_iter()
        .map(|l| (l["id"].as_str().unwrap().to_string(), l["data"].clone()))
        .collect()
}

#[test]
fn no_acknowledged_write_is_lost_when_the_server_is_killed_while_four_clients_write() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    eprintln!("kill points seed: {seed}");
    let mut rng = Lcg(seed);
    let site = Site::new();
    let data = site.data("d");
    let mut acked: BTreeMap<String, Value> = BTreeMap::new();
    for round in 0..5 {
        let server = site.serve("crash", &data);
        // Whatever the last kill interrupted, every acknowledged write is here.
        let held = stored(&site, "crash");
        for (id, doc) in &acked {
            assert_eq!(held.get(id), Some(doc), "round {round}, seed {seed}: {id}");
        }
        let kill_after = 4 + rng.below(30) as usize;
        let (tx, rx) = mpsc::channel::<(String, Value)>();
        std::thread::scope(|s| {
            for client in 0..4 {
                let tx = tx.clone();
                let site = &site;
                s.spawn(move || {
                    // Each client writes until the server is gone; it
                    // reports a write only once `put` acknowledged it.
                    for i in 0..500 {
                        let id = format!("w:{round}:{client}:{i:03}");
                        let doc = json!({"round": round, "client": client, "i": i, "pad": "x".repeat(i % 64)});
                        let r = site.client("crash", &["put", &id, &doc.to_string()]);
                        if r.code != 0 {
                            assert_eq!(r.code, UNAVAILABLE, "only a lost server may fail a put: {r:#?}");
                            return;
                        }
                        if tx.send((id, doc)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut server = Some(server);
            let mut this_round = 0;
            for (id, doc) in rx.iter() {
                acked.insert(id, doc);
                this_round += 1;
                if this_round >= kill_after
                    && let Some(s) = server.take()
                {
                    s.kill9();
                }
            }
            // Never leave it running (500 writes each always reach the
            // kill point first).
            if let Some(s) = server.take() {
                s.kill9();
            }
        });
    }
    let server = site.serve("crash", &data);
    let held = stored(&site, "crash");
    for (id, doc) in &acked {
        assert_eq!(
            held.get(id),
            Some(doc),
            "after the last kill, seed {seed}: {id}"
        );
    }
    server.terminate();
}

// ------------------------------------------------------------------ bench

#[test]
fn bench_channel_runs_against_its_own_server_and_stops_it() {
    let site = Site::new();
    let r = site
        .hearth(&[
            "bench",
            "channel",
            "--ops",
            "100",
            "--clients",
            "1,2",
            "--pipeline",
            "2",
            "--docs",
            "20",
            "--no-redis",
        ])
        .ok();
    assert!(r.stdout.contains("get round trip, 1 client"), "{r:#?}");
    assert!(r.stdout.contains("put, 2 clients × 2 in flight"), "{r:#?}");
    assert!(r.stdout.contains("skipped (--no-redis)"), "{r:#?}");
    let left: Vec<_> = std::fs::read_dir(site.runtime_dir().join("hearth"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "its server stopped and left nothing: {left:?}"
    );
}

/// `hearth bench channel` at its smallest, one client, JSON out.
const CHANNEL_BENCH: [&str; 12] = [
    "bench",
    "channel",
    "--ops",
    "100",
    "--clients",
    "1",
    "--pipeline",
    "1",
    "--docs",
    "20",
    "--no-redis",
    "--json",
];

#[test]
fn bench_channel_starts_its_server_at_the_durability_asked_for() {
    let site = Site::new();
    for (durability, extra) in [
        ("journal", &[][..]),
        ("fsync", &["--durability", "fsync"][..]),
    ] {
        let r = site.hearth(&[&CHANNEL_BENCH[..], extra].concat()).ok();
        let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
        let server = report["server"].as_str().unwrap_or_default();
        assert!(
            server.contains(&format!("{durability} durability")),
            "{durability}: {report:#}"
        );
    }
}

#[test]
fn bench_channel_measures_shared_memory_and_the_socket_side_by_side() {
    let site = Site::new();
    let r = site
        .hearth(&[&CHANNEL_BENCH[..], &["--transport", "both"]].concat())
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
    assert!(report["sections"]["hearth_shm"].is_object(), "{report:#}");
    assert!(
        report["sections"]["hearth_socket"].is_object(),
        "{report:#}"
    );
}

#[test]
fn bench_transport_compares_shm_with_the_socket_and_reports_idle_cost() {
    let site = Site::new();
    let r = site
        .hearth(&[
            "bench",
            "--transport",
            "both",
            "--ops",
            "200",
            "--idle-clients",
            "2",
            "--idle-secs",
            "0.1",
            "--paused-gets",
            "0",
            "--no-redis",
        ])
        .ok();
    for needle in [
        "shm ",
        "socket ",
        "get p50: socket / shm",
        "sw/op",
        "idle shm clients",
        "server RSS",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} missing: {r:#?}");
    }
}

/// `hearth bench` over shared memory alone: 200 calls, no idle clients,
/// no gets after a pause, no Redis.
const SHM_BENCH: [&str; 10] = [
    "bench",
    "--transport",
    "shm",
    "--ops",
    "200",
    "--idle-clients",
    "0",
    "--paused-gets",
    "0",
    "--no-redis",
];

#[test]
fn bench_transport_times_gets_after_a_pause_on_each_transport() {
    let site = Site::new();
    let args = [
        "bench",
        "--transport",
        "both",
        "--ops",
        "200",
        "--idle-clients",
        "0",
        "--no-put",
        "--no-redis",
        "--paused-gets",
        "5",
        "--pause-ms",
        "2",
    ];
    let r = site.hearth(&[&args[..], &["--json"]].concat()).ok();
    let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
    let paused = report["paused"].as_array().expect("paused");
    let transports: Vec<&str> = paused
        .iter()
        .map(|p| p["transport"].as_str().expect("a transport"))
        .collect();
    assert_eq!(transports, ["shm", "socket"], "{report:#}");
    for p in paused {
        assert_eq!(
            (p["calls"].as_u64(), p["pause_ms"].as_f64()),
            (Some(5), Some(2.0)),
            "{p:#}"
        );
        let at = |k: &str| p[k].as_u64().expect("nanoseconds");
        assert!(at("p50_ns") > 0, "{p:#}");
        assert!(
            at("p50_ns") <= at("p90_ns") && at("p90_ns") <= at("max_ns"),
            "{p:#}"
        );
    }
    let ratio = report["ratios"]
        .as_array()
        .expect("ratios")
        .iter()
        .find(|r| r["what"] == "paused get p50: socket / shm");
    assert!(
        ratio.is_some_and(|r| r["times"].as_f64().is_some_and(|t| t > 0.0)),
        "{report:#}"
    );
    let text = site.hearth(&args).ok();
    assert!(
        text.stdout
            .contains("gets after a pause: one client, each get after 2 ms")
            && text.stdout.contains("paused get p50: socket / shm"),
        "{text:#?}"
    );
}

#[test]
fn bench_transport_skips_gets_after_a_pause_when_told_and_refuses_a_pause_of_nothing() {
    let site = Site::new();
    let r = site
        .hearth(&[&SHM_BENCH[..], &["--no-put", "--json"]].concat())
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
    assert_eq!(report["paused"], serde_json::json!([]), "{report:#}");
    let refused = site
        .hearth(&[&SHM_BENCH[..], &["--pause-ms", "0"]].concat())
        .fails_with(2);
    assert!(
        refused.stderr.contains("invalid value '0' for '--pause-ms"),
        "{refused:#?}"
    );
}

#[test]
fn bench_transport_keeps_writes_at_the_durability_asked_for() {
    let site = Site::new();
    for (durability, extra) in [
        ("journal", &[][..]),
        ("fsync", &["--durability", "fsync"][..]),
    ] {
        let r = site
            .hearth(&[&SHM_BENCH[..], extra, &["--json"]].concat())
            .ok();
        let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
        assert_eq!(report["durability"], durability, "{report:#}");
    }
}

#[test]
fn bench_transport_counts_context_switches_per_call() {
    let site = Site::new();
    let r = site.hearth(&[&SHM_BENCH[..], &["--json"]].concat()).ok();
    let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
    let run = &report["runs"][0];
    for op in ["get", "put"] {
        let switches = run[op]["switches_per_op"].as_f64();
        assert!(
            switches.is_some_and(|n| n >= 0.0),
            "{op}: switches_per_op is a count per call: {report:#}"
        );
    }
}

#[test]
fn bench_transport_reports_the_machines_core_to_core_floor() {
    let site = Site::new();
    let args = [&SHM_BENCH[..], &["--no-put"]].concat();
    let two_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    // The floor needs both cores free at once for a moment: on a machine
    // this busy (other tests, other processes) a run may find none, and
    // says so with null. Runs again for up to two minutes.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let report = loop {
        let json = site.hearth(&[&args[..], &["--json"]].concat()).ok();
        let report: Value = serde_json::from_str(&json.stdout).expect("one JSON object");
        if !two_cores
            || report["machine"]["core_round_trip_ns"].is_u64()
            || std::time::Instant::now() > give_up
        {
            break report;
        }
    };
    let floor = &report["machine"]["core_round_trip_ns"];
    if two_cores {
        assert!(
            floor.as_u64().is_some_and(|ns| ns > 0),
            "two cores: a round trip in nanoseconds: {report:#}"
        );
        // The text run may find the cores busy too (so again, as long).
        let shows_floor = |stdout: &str| {
            stdout.contains("floor: a cache line's round trip between two cores")
                && stdout.contains("shm get p50 =")
        };
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let text = loop {
            let text = site.hearth(&args).ok();
            if shows_floor(&text.stdout) || std::time::Instant::now() > give_up {
                break text;
            }
        };
        assert!(shows_floor(&text.stdout), "{text:#?}");
    } else {
        assert!(floor.is_null(), "one core: no floor: {report:#}");
    }
}

#[test]
fn bench_transport_runs_each_client_in_a_process_of_its_own_when_asked() {
    let site = Site::new();
    let args = [&SHM_BENCH[..], &["--clients", "1,3", "--client-processes"]].concat();
    let r = site.hearth(&[&args[..], &["--json"]].concat()).ok();
    let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
    assert_eq!(report["client_processes"], true, "{report:#}");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report:#}");
    for (run, clients) in runs.iter().zip([1u64, 3]) {
        assert_eq!(run["clients"], clients, "{report:#}");
        for op in ["get", "put"] {
            // 200 calls split among the clients, every one answered.
            assert_eq!(run[op]["ops"], 200 / clients * clients, "{run:#}");
            assert!(
                run[op]["client_cpu_secs"].as_f64().is_some_and(|s| s > 0.0),
                "the client processes' CPU time is counted: {run:#}"
            );
            assert!(
                run[op]["switches_per_op"].is_number(),
                "the client processes' context switches are counted: {run:#}"
            );
        }
    }
    let text = site.hearth(&args).ok();
    assert!(
        text.stdout.contains("clients are processes")
            && text.stdout.contains("shm gets/s: 3 ÷ 1 clients"),
        "{text:#?}"
    );
}

#[test]
fn a_bench_client_process_that_cannot_connect_says_why_and_exits_2() {
    let site = Site::new();
    let r = site
        .command()
        .env("HEARTH_BENCH_CLIENT", "1")
        .env("HEARTH_BENCH_CHANNEL", "no-such-channel")
        .env("HEARTH_BENCH_SOCKET_DIR", site.file("nowhere"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    let said = String::from_utf8_lossy(&r.stdout);
    assert!(said.starts_with("HEARTH_BENCH_FAILED "), "{said}");
}

#[test]
fn bench_transport_measures_several_client_counts_in_turn_and_compares_them() {
    let site = Site::new();
    let args = [&SHM_BENCH[..], &["--clients", "1,2", "--rounds", "2"]].concat();
    let r = site.hearth(&[&args[..], &["--json"]].concat()).ok();
    let report: Value = serde_json::from_str(&r.stdout).expect("one JSON object");
    let counts: Vec<u64> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| run["clients"].as_u64().expect("a count"))
        .collect();
    assert_eq!(
        counts,
        [1, 2, 1, 2],
        "alternated, round by round: {report:#}"
    );
    // How each phase's answers were spread among its clients: one client's
    // never changed hands, and no phase changed more often than it answered.
    for run in report["runs"].as_array().expect("runs") {
        for op in ["get", "put"] {
            let spread = &run[op]["spread"];
            let changes = spread["changes"].as_u64().expect("a count of changes");
            assert!(changes < run[op]["ops"].as_u64().expect("ops"), "{run:#}");
            assert!(
                spread["changes_pct"]
                    .as_f64()
                    .is_some_and(|p| (0.0..=100.0).contains(&p)),
                "{run:#}"
            );
            if run["clients"] == 1 {
                assert_eq!(changes, 0, "one client: {run:#}");
                assert!(
                    spread["run_call_ns"].as_f64().is_some_and(|ns| ns > 0.0),
                    "{run:#}"
                );
            }
        }
    }
    let ratios = report["ratios"].as_array().expect("ratios");
    for what in [
        "shm gets/s: 2 ÷ 1 clients (median of 2 rounds)",
        "shm puts/s: 2 ÷ 1 clients (median of 2 rounds)",
    ] {
        let ratio = ratios.iter().find(|r| r["what"] == what);
        assert!(
            ratio.is_some_and(|r| r["times"].as_f64().is_some_and(|t| t > 0.0)),
            "{what}: {report:#}"
        );
    }
    let text = site.hearth(&args).ok();
    assert!(
        text.stdout.contains("shm gets/s: 2 ÷ 1 clients"),
        "{text:#?}"
    );
}

#[test]
fn bench_transport_refuses_a_client_count_of_zero() {
    let site = Site::new();
    let r = site
        .hearth(&[&SHM_BENCH[..], &["--clients", "1,0"]].concat())
        .fails_with(2);
    assert!(r.stderr.contains("--clients"), "{r:#?}");
}

#[test]
fn bench_transport_refuses_an_unknown_transport() {
    let site = Site::new();
    let r = site
        .hearth(&["bench", "--transport", "carrier-pigeon"])
        .fails_with(2);
    assert!(r.stderr.contains("shm"), "{r:#?}");
}

#[test]
fn bench_transport_refuses_a_ring_size_serve_would_refuse() {
    let site = Site::new();
    for bad in ["0", "5000", "134217728"] {
        let flag = format!("--ring-bytes={bad}");
        let r = site
            .hearth(&[&SHM_BENCH[..], &[flag.as_str()]].concat())
            .fails_with(2);
        assert!(
            r.stderr.contains("power of two from 4096 to 67108864"),
            "{bad}: {r:#?}"
        );
    }
}

#[test]
fn bench_transport_refuses_idle_seconds_it_cannot_wait() {
    let site = Site::new();
    for bad in ["-1", "1e300", "NaN"] {
        let flag = format!("--idle-secs={bad}");
        let r = site
            .hearth(&[&SHM_BENCH[..], &[flag.as_str()]].concat())
            .fails_with(2);
        assert!(r.stderr.contains("--idle-secs"), "{bad}: {r:#?}");
    }
}

#[test]
fn bench_transport_refuses_documents_past_the_servers_limit() {
    let site = Site::new();
    let r = site
        .hearth(&[&SHM_BENCH[..], &["--doc-bytes", "18446744073709551615"]].concat())
        .fails_with(2);
    assert!(r.stderr.contains("--doc-bytes"), "{r:#?}");
}

#[test]
fn a_half_sent_budget_that_cannot_join_one_whole_message_exits_2_naming_the_least_value() {
    let site = Site::new();
    let d = site.data("d");
    let r = site
        .hearth(&[
            "serve",
            "--channel",
            "app",
            "--data-dir",
            d.to_str().unwrap(),
            "--max-message-bytes",
            "4194304",
            "--max-partial-bytes",
            "1048576",
        ])
        .fails_with(2);
    assert!(r.stderr.contains("invalid input"), "{r:#?}");
    assert!(r.stderr.contains("4194432"), "{r:#?}");
    assert!(r.stderr.contains("--max-partial-bytes"), "{r:#?}");
    assert!(!d.exists(), "nothing was created");
}

#[test]
fn stream_limits_take_a_positive_count() {
    let site = Site::new();
    let d = site.data("d");
    let d = d.to_str().unwrap();
    for flag in [
        "--max-running-streams",
        "--max-running-streams-per-process",
        "--max-server-running-streams",
    ] {
        let r = site
            .hearth(&["serve", "--channel", "app", "--data-dir", d, flag, "0"])
            .fails_with(2);
        assert!(r.stderr.contains(flag), "{flag}: {r:#?}");
    }
}
