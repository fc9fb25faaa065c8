//! Servers for tests: `hearth serve` processes on channels private to one
//! test, and clients run against them.
//!
//! Owns: a per-test runtime directory (`XDG_RUNTIME_DIR`, short enough for
//! a socket path), starting a server and waiting for its ready line (never
//! a sleep), stopping it with a signal, and killing whatever a failed test
//! left running. Must never: reach a channel outside the test's own
//! runtime directory.

use super::{Run, clean_env, run_as_is};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

/// One test's world: its runtime directory (sockets) and data directories.
pub struct Site {
    pub tmp: tempfile::TempDir,
}

impl Site {
    /// A fresh site under /tmp, so that socket paths stay short.
    pub fn new() -> Site {
        Site {
            tmp: tempfile::Builder::new()
                .prefix("hs")
                .tempdir_in("/tmp")
                .expect("a temporary directory"),
        }
    }

    /// The `XDG_RUNTIME_DIR` every process of this site gets.
    pub fn runtime_dir(&self) -> PathBuf {
        self.tmp.path().join("x")
    }

    /// A data directory of this site.
    pub fn data(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A file of this site.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Where `channel`'s socket lives.
    pub fn socket(&self, channel: &str) -> PathBuf {
        self.runtime_dir()
            .join("hearth")
            .join(format!("{channel}.sock"))
    }

    /// The binary with a clean environment and this site's runtime
    /// directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        clean_env(&mut cmd);
        cmd.env("XDG_RUNTIME_DIR", self.runtime_dir());
        cmd
    }

    /// Runs `hearth ARGS…` to completion.
    pub fn hearth(&self, args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        run_as_is(cmd, None)
    }

    /// Runs `hearth ARGS…` with `stdin` on standard input.
    pub fn hearth_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        run_as_is(cmd, Some(stdin))
    }

    /// Runs `hearth --channel CHANNEL ARGS…` to completion.
    pub fn client(&self, channel: &str, args: &[&str]) -> Run {
        self.hearth(&[&["--channel", channel], args].concat())
    }

    /// Starts `hearth serve --channel CHANNEL --data-dir DATA` and returns
    /// once it printed its ready line.
    pub fn serve(&self, channel: &str, data: &Path) -> Served {
        self.serve_plus(channel, data, &[])
    }

    /// Like [`serve`](Self::serve), with `extra` arguments after the data
    /// directory.
    pub fn serve_plus(&self, channel: &str, data: &Path, extra: &[&str]) -> Served {
        let data = data.to_str().expect("a UTF-8 path");
        self.serve_with(&[&["serve", "--channel", channel, "--data-dir", data], extra].concat())
    }

    /// Starts `hearth ARGS…` (a `serve` command line) and returns once it
    /// printed its ready line; panics with its stderr if it exits first.
    pub fn serve_with(&self, args: &[&str]) -> Served {
        let mut child = self.spawn(args);
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut ready = String::new();
        stdout
            .read_line(&mut ready)
            .expect("reading the ready line");
        if ready.is_empty() {
            exited_before_ready(child, "the server");
        }
        Served {
            child,
            ready: ready.trim_end().to_string(),
            _stdout: stdout,
        }
    }

    /// Starts `hearth ARGS…` (a `serve` command line) in a seccomp sandbox
    /// where `memfd_create` fails with `EPERM`, as some desktop sandboxes
    /// make it: the test binary runs its `sandbox_exec_entry`, which enters
    /// the sandbox and becomes `hearth` (`exec`; a filter outlives it).
    /// Returns once the server printed its ready line.
    #[cfg(target_os = "linux")]
    pub fn serve_without_memfd(&self, args: &[&str]) -> Served {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
        clean_env(&mut cmd);
        cmd.env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env(SANDBOX_EXEC, env!("CARGO_BIN_EXE_hearth"))
            .env(SANDBOX_ARGS, args.join("\u{1f}"))
            .args([
                "sandbox_exec_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the test binary starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        // The test harness prints its own lines before the `exec`.
        let ready = loop {
            let mut line = String::new();
            let n = stdout.read_line(&mut line).expect("reading stdout");
            if let Some(rest) = line.trim_end().strip_prefix("ready ") {
                break Some(format!("ready {rest}"));
            }
            if n == 0 {
                break None;
            }
        };
        let Some(ready) = ready else {
            exited_before_ready(child, "the sandboxed server");
        };
        Served {
            child,
            ready,
            _stdout: stdout,
        }
    }

    /// Spawns `hearth ARGS…` with stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("the hearth binary starts")
    }

    /// Spawns `sh`, which starts `hearth ARGS…` in the background and waits
    /// for it: the shell is the server's parent. Stdout is piped (the
    /// server inherits it), stderr is discarded.
    pub fn spawn_under_shell(&self, args: &[&str]) -> Child {
        let mut cmd = Command::new("sh");
        clean_env(&mut cmd);
        cmd.env("XDG_RUNTIME_DIR", self.runtime_dir())
            .arg("-c")
            .arg("\"$0\" \"$@\" & wait")
            .arg(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.spawn().expect("sh starts")
    }

    /// Spawns `hearth --channel CHANNEL ARGS…` (a stream: `watch`,
    /// `subscribe`) and hands out its stdout line by line.
    pub fn follow(&self, channel: &str, args: &[&str]) -> Follower {
        self.follow_with(channel, args, &[])
    }

    /// Like [`follow`](Self::follow), with extra environment variables.
    pub fn follow_with(&self, channel: &str, args: &[&str], env: &[(&str, &str)]) -> Follower {
        let mut cmd = self.command();
        cmd.args(["--channel", channel])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the hearth binary starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
        Follower {
            child,
            stdout,
            stderr,
        }
    }
}

/// Waits for `child`, which closed its stdout before its ready line, and
/// panics with its exit status and stderr.
fn exited_before_ready(mut child: Child, what: &str) -> ! {
    let status = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    panic!("{what} exited before it was ready ({status:?}): {err}");
}

/// Sends `signal` to a child.
pub fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits i32"));
    kill(pid, signal).expect("the signal is delivered");
}

/// A running `hearth serve`; killed (SIGKILL) if still running when dropped.
pub struct Served {
    pub child: Child,
    /// Its ready line, without the newline.
    pub ready: String,
    _stdout: BufReader<ChildStdout>,
}

impl Served {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with `sig` and waits: its exit status and stderr.
    pub fn stop(mut self, sig: Signal) -> (ExitStatus, String) {
        signal(&self.child, sig);
        let status = self.child.wait().expect("the server is waited for");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }

    /// Stops it with SIGTERM and checks that it exited 0.
    #[track_caller]
    pub fn terminate(self) {
        let (status, err) = self.stop(Signal::SIGTERM);
        assert!(status.success(), "server exit {status:?}: {err}");
    }

    /// Kills it with SIGKILL (no chance to clean up) and waits.
    pub fn kill9(self) {
        let _ = self.stop(Signal::SIGKILL);
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A streaming client (`watch`, `subscribe`); killed if still running when
/// dropped.
pub struct Follower {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    pub stderr: BufReader<std::process::ChildStderr>,
}

impl Follower {
    /// The next line of its stdout (without the newline); panics at end of
    /// output, with its stderr.
    #[track_caller]
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading stdout");
        if line.is_empty() {
            let mut err = String::new();
            let _ = self.stderr.read_to_string(&mut err);
            panic!("the stream ended early; its stderr: {err}");
        }
        line.trim_end().to_string()
    }

    /// Reads stderr until a line containing `needle` (a log line announcing
    /// readiness); panics if stderr ends first.
    #[track_caller]
    pub fn stderr_until(&mut self, needle: &str) {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            self.stderr.read_line(&mut line).expect("reading stderr");
            if line.is_empty() {
                panic!("stderr ended before {needle:?}: {seen}");
            }
            if line.contains(needle) {
                return;
            }
            seen.push_str(&line);
        }
    }

    /// Waits for it to exit: its status, the rest of its stdout, its
    /// stderr.
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let mut out = String::new();
        let _ = self.stdout.read_to_string(&mut out);
        let mut err = String::new();
        let _ = self.stderr.read_to_string(&mut err);
        let status = self.child.wait().expect("the stream is waited for");
        (status, out, err)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The binary [`Site::serve_without_memfd`] runs in its sandbox.
#[cfg(target_os = "linux")]
const SANDBOX_EXEC: &str = "HEARTH_TEST_SANDBOX_EXEC";
/// Its arguments, separated by U+001F.
#[cfg(target_os = "linux")]
const SANDBOX_ARGS: &str = "HEARTH_TEST_SANDBOX_ARGS";

/// The child side of [`Site::serve_without_memfd`], called from a test
/// named `sandbox_exec_entry`: a no-op in a normal run. Makes
/// `memfd_create` fail with `EPERM` in this process and whatever it
/// executes (a seccomp filter, with `no_new_privs`), then becomes the
/// binary it was given.
#[cfg(target_os = "linux")]
pub fn sandbox_exec_entry() {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::var(SANDBOX_EXEC) else {
        return;
    };
    let args = std::env::var(SANDBOX_ARGS).expect("the arguments come with the binary");
    let filter = SeccompFilter::new(
        // No condition: every call of memfd_create matches.
        [(libc::SYS_memfd_create, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH
            .try_into()
            .expect("seccompiler knows this architecture"),
    )
    .expect("a one-rule filter");
    let program: BpfProgram = filter.try_into().expect("a one-rule filter compiles");
    seccompiler::apply_filter_all_threads(&program).expect("an unprivileged filter applies");
    // End the harness's `test NAME ... ` line: the server's ready line
    // must start a line of its own.
    let mut out = std::io::stdout().lock();
    writeln!(out).expect("stdout is a pipe the parent reads");
    out.flush().expect("stdout is a pipe the parent reads");
    drop(out);
    let err = Command::new(exe)
        .args(args.split('\u{1f}'))
        .env_remove(SANDBOX_EXEC)
        .env_remove(SANDBOX_ARGS)
        .exec();
    panic!("exec failed: {err}");
}
