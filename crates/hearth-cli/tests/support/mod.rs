//! Helpers for running the real `hearth` binary against temporary data
//! directories (and, in [`server`], servers on private channels).
//!
//! Owns: spawning the binary with a clean environment and capturing its
//! exit code and output. Must never: touch a data directory outside the
//! test's temporary directory.

#![allow(dead_code, unreachable_pub)]

pub mod server;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temporary directory holding one data directory (`DIR/data`) and any
/// input files a test writes.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics unless the run exited 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    /// Panics unless the run exited with `code`.
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Run {
        assert_eq!(self.code, code, "expected exit code {code}, got {self:#?}");
        self
    }

    /// Each stdout line parsed as JSON.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }

    /// The ids at the start of each readable `id  {json}` line.
    pub fn ids(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.split("  ").next().unwrap_or_default().to_string())
            .collect()
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The data directory the commands use.
    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// A path for a test file.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Runs `hearth --data-dir DATA ARGS…`.
    pub fn hearth(&self, args: &[&str]) -> Run {
        self.hearth_in(&self.data(), args, None)
    }

    /// Runs `hearth --data-dir DATA ARGS…` with `stdin` on standard input.
    pub fn hearth_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.hearth_in(&self.data(), args, Some(stdin))
    }

    /// Runs `hearth --data-dir DIR ARGS…`.
    pub fn hearth_in(&self, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.arg("--data-dir").arg(dir).args(args);
        run(cmd, stdin)
    }

    /// Puts a document the test expects to survive, and checks it is there.
    pub fn seed(&self) {
        self.hearth(&["put", "keep:1", r#"{"keep":true}"#]).ok();
        self.assert_seed_kept();
    }

    /// Checks that the seeded document is still there, unchanged.
    #[track_caller]
    pub fn assert_seed_kept(&self) {
        let got = self.hearth(&["--json", "get", "keep:1"]).ok();
        let v: Value = serde_json::from_str(got.stdout.trim()).expect("get --json is JSON");
        assert_eq!(v["data"], serde_json::json!({"keep": true}));
    }
}

/// Removes every variable the binary reads from a command's environment.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "HEARTH_DATA_DIR",
        "HEARTH_LOG",
        "RUST_LOG",
        "HEARTH_CHANNEL",
        "HEARTH_IPC",
        "PLURESDB_IPC",
        "HEARTH_TRANSPORT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a prepared command with a clean environment.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Run {
    clean_env(&mut cmd);
    run_as_is(cmd, stdin)
}

/// Runs a prepared command with the environment it was given.
pub fn run_as_is(mut cmd: Command, stdin: Option<&[u8]>) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the hearth binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // The binary may stop reading early (a bad line); ignore EPIPE.
        let _ = pipe.write_all(input);
    }
    let out = child
        .wait_with_output()
        .expect("the hearth binary finishes");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
