//! The commands that exist only over a channel: `watch`, `subscribe`,
//! `wait`, `call` and `publish`.
//!
//! Owns: following changes and topic events as they happen (one flushed
//! line each), telling a server that shut down (it announces it on
//! [`SHUTDOWN_TOPIC`] first: exit 0) from one that vanished (exit 4, with
//! where to resume), waiting for a server to answer, and calling handlers
//! and publishing events. Must never: sleep to wait for something that is
//! signalled, retry a call (only `wait`'s connection attempts are retried),
//! or end a stream silently.

use super::docs::read_stdin;
use super::serve::SHUTDOWN_TOPIC;
use crate::args::GlobalArgs;
use crate::db::connect_options;
use crate::error::{CliError, Result, no_server};
use crate::output::Output;
use crate::signals::{self, StopSignals};
use hearth_ipc::{
    AsyncClient, AsyncTopicStream, Change, ChangeKind, Client, IpcError, Subscription,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long `wait` waits when no `--timeout` is given.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// First and largest pause between `wait`'s connection attempts.
const WAIT_BACKOFF: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(100));

/// `hearth watch`.
pub(crate) fn watch(
    g: &GlobalArgs,
    out: &mut Output,
    prefix: Option<String>,
    from_seq: Option<u64>,
) -> Result<()> {
    let channel = g.require_channel("watch")?;
    let mut spec = match prefix {
        Some(p) => Subscription::prefix(p),
        None => Subscription::all(),
    };
    if let Some(seq) = from_seq {
        spec = spec.from_seq(seq);
    }
    let rt = signals::runtime()?;
    rt.block_on(async {
        let mut stop = StopSignals::install()?;
        // The stream must not reconnect by itself: when the server goes,
        // `watch` ends and says so.
        let options = connect_options(g, &channel).resume_timeout(Duration::ZERO);
        let client = AsyncClient::connect_with(options).await?;
        let mut farewell = Farewell::subscribe(&client).await?;
        let mut changes = client.subscribe(spec).await?;
        tracing::info!(%channel, from_seq = changes.position(), "watching");
        loop {
            tokio::select! {
                biased;
                signal = stop.recv() => {
                    tracing::debug!(signal, "stopping");
                    return Ok(());
                }
                change = changes.next() => match change {
                    Ok(change) => print_change(out, &change)?,
                    Err(e) => {
                        let next = changes.position();
                        return farewell.judge(e, &channel, Some(next), out.is_json()).await;
                    }
                },
                () = farewell.heard(), if farewell.listening() => {}
            }
        }
    })
}

/// `hearth subscribe PATTERN`.
pub(crate) fn subscribe(g: &GlobalArgs, out: &mut Output, pattern: &str) -> Result<()> {
    let channel = g.require_channel("subscribe")?;
    let rt = signals::runtime()?;
    rt.block_on(async {
        let mut stop = StopSignals::install()?;
        let client = AsyncClient::connect_with(connect_options(g, &channel)).await?;
        let mut farewell = Farewell::subscribe(&client).await?;
        let mut events = client.subscribe_topic(pattern).await?;
        tracing::info!(%channel, pattern, "subscribed");
        let mut dropped = 0;
        loop {
            tokio::select! {
                biased;
                signal = stop.recv() => {
                    tracing::debug!(signal, "stopping");
                    return Ok(());
                }
                event = events.next() => match event {
                    Ok(event) => {
                        if events.dropped() > dropped {
                            dropped = events.dropped();
                            crate::output::print_notice(
                                out.is_json(),
                                "dropped",
                                &format!("{dropped} events were dropped so far (this subscriber or the server's output queue was full)"),
                                json!({"dropped": dropped}),
                            );
                        }
                        let value = json!({"topic": event.topic, "payload": event.payload});
                        out.live_line(&value, format_args!("{}  {}", event.topic, event.payload))?;
                    }
                    Err(e) => return farewell.judge(e, &channel, None, out.is_json()).await,
                },
                () = farewell.heard(), if farewell.listening() => {}
            }
        }
    })
}

/// Prints one change: `SEQ KIND ID  {json}` (no JSON for a delete), or
/// the change as a JSON object in `--json` mode.
fn print_change(out: &mut Output, c: &Change) -> Result<()> {
    let kind = match c.kind {
        ChangeKind::Put => "put",
        ChangeKind::Patch => "patch",
        ChangeKind::Delete => "delete",
    };
    let value = json!({
        "seq": c.seq,
        "id": c.id,
        "kind": kind,
        "hlc": c.hlc,
        "replica": c.replica,
        "data": c.data,
    });
    match &c.data {
        Some(data) => out.live_line(&value, format_args!("{} {kind} {}  {data}", c.seq, c.id)),
        None => out.live_line(&value, format_args!("{} {kind} {}", c.seq, c.id)),
    }
}

/// Listens for the server's shutdown announcement beside a stream, to tell
/// a shutdown from a server that vanished.
struct Farewell {
    events: Option<AsyncTopicStream>,
    heard: bool,
}

impl Farewell {
    async fn subscribe(client: &AsyncClient) -> Result<Farewell> {
        Ok(Farewell {
            events: Some(client.subscribe_topic(SHUTDOWN_TOPIC).await?),
            heard: false,
        })
    }

    /// Whether it still waits for the announcement.
    fn listening(&self) -> bool {
        self.events.is_some() && !self.heard
    }

    /// Waits for the announcement (or for the connection to end, which the
    /// main stream reports).
    async fn heard(&mut self) {
        let Some(events) = self.events.as_mut() else {
            return std::future::pending().await;
        };
        match events.next().await {
            Ok(_) => {
                tracing::debug!("the server announced its shutdown");
                self.heard = true;
            }
            Err(_) => self.events = None,
        }
    }

    /// The end of a stream that failed with `e`: 0 when the server had
    /// announced its shutdown (the announcement may still sit unread beside
    /// the stream), else the error, said as a lost server when it is one.
    /// Either way a change stream says where to resume (`next`: the first
    /// sequence number not printed) — a shutdown may end it before every
    /// change committed before it was delivered.
    async fn judge(
        &mut self,
        e: IpcError,
        channel: &str,
        next: Option<u64>,
        json: bool,
    ) -> Result<()> {
        if !no_server(&e) {
            return Err(e.into());
        }
        if !self.heard
            && let Some(events) = self.events.as_mut()
        {
            // Whatever arrived before the connection ended is already
            // buffered: a zero wait reads it without waiting.
            self.heard = matches!(events.next_timeout(Duration::ZERO).await, Ok(Some(_)));
        }
        let resume = next.map_or(String::new(), |next| {
            format!(
                "; every change before seq {next} was printed: resume with `hearth --channel {channel} watch --from-seq {next}`"
            )
        });
        if self.heard {
            crate::output::print_notice(
                json,
                "server_shut_down",
                &format!("the server on channel {channel:?} shut down{resume}"),
                json!({"channel": channel, "resume_from": next}),
            );
            return Ok(());
        }
        Err(CliError::from(e).context_with(
            format!("lost the server on channel {channel:?} without a shutdown announcement (killed or crashed?)"),
            resume,
        ))
    }
}

/// `hearth wait`: connects and pings until the server answers or the
/// timeout passes. Nothing tells a process that a server in another one
/// has started, so it retries with a short backoff (2 ms doubling to
/// 100 ms).
pub(crate) fn wait(g: &GlobalArgs, out: &mut Output) -> Result<()> {
    let channel = g.require_channel("wait")?;
    let waited = g.timeout.unwrap_or(DEFAULT_WAIT);
    let deadline = Instant::now() + waited;
    let socket = match g.resolve_socket_dir() {
        Some(dir) => dir.join(format!("{channel}.sock")),
        None => hearth_ipc::socket_path(&channel)?,
    };
    let mut backoff = WAIT_BACKOFF.0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let options = connect_options(g, &channel)
            .timeout(left)
            .connect_timeout(left);
        let last = match Client::connect_with(options).and_then(|c| c.ping()) {
            Ok(()) => {
                let value = json!({"channel": channel, "socket": socket, "ready": true});
                return out.result(
                    &value,
                    format_args!(
                        "server on channel {channel} answers (socket {})",
                        socket.display()
                    ),
                );
            }
            Err(e) if not_there_yet(&e) => e,
            Err(e) => return Err(e.into()),
        };
        if Instant::now() + backoff >= deadline {
            let last = match last {
                IpcError::ChannelNotFound { detail, .. } => detail,
                other => other.to_string(),
            };
            return Err(CliError::WaitTimedOut {
                channel,
                socket,
                waited,
                last,
            });
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(WAIT_BACKOFF.1);
    }
}

/// Whether an error means "no server answers yet" (worth another attempt)
/// rather than something waiting will not fix.
fn not_there_yet(e: &IpcError) -> bool {
    no_server(e)
}

/// `hearth call NAME [JSON]`.
pub(crate) fn call(
    g: &GlobalArgs,
    out: &mut Output,
    name: &str,
    payload: Option<&str>,
) -> Result<()> {
    let channel = g.require_channel("call")?;
    let payload = json_arg(payload, g)?;
    let client = Client::connect_with(connect_options(g, &channel))?;
    let result = client.call(name, payload)?;
    let pretty = serde_json::to_string_pretty(&result)
        .map_err(|e| CliError::input(format!("the result of {name:?} cannot be printed: {e}")))?;
    out.result(&result, pretty)
}

/// `hearth publish TOPIC [JSON]`.
pub(crate) fn publish(
    g: &GlobalArgs,
    out: &mut Output,
    topic: &str,
    payload: Option<&str>,
) -> Result<()> {
    let channel = g.require_channel("publish")?;
    let payload = json_arg(payload, g)?;
    let client = Client::connect_with(connect_options(g, &channel))?;
    let delivered = client.publish(topic, payload)?;
    let subscribers = if delivered == 1 {
        "1 subscriber".to_string()
    } else {
        format!("{delivered} subscribers")
    };
    out.result(
        &json!({"topic": topic, "delivered": delivered}),
        format_args!("published {topic} to {subscribers}"),
    )
}

/// A JSON payload argument: any JSON value, `-` for stdin, absent for
/// `null`.
fn json_arg(arg: Option<&str>, g: &GlobalArgs) -> Result<Value> {
    let text = match arg {
        None => return Ok(Value::Null),
        Some("-") => read_stdin(&g.limits())?,
        Some(text) => text.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::input(format!(
            "the payload is not valid JSON (line {}, column {}): {e}; quote it for the shell, e.g. '{{\"key\":\"value\"}}'",
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_is_not_there_yet_is_worth_another_attempt() {
        let missing = IpcError::ChannelNotFound {
            channel: "c".into(),
            path: "/x/c.sock".into(),
            detail: "there is no socket file".into(),
        };
        assert!(not_there_yet(&missing));
        assert!(not_there_yet(&IpcError::ShutDown("stopping".into())));
    }

    #[test]
    fn a_refusal_that_waiting_will_not_fix_ends_the_wait() {
        let bad = IpcError::InvalidChannelName {
            name: "a/b".into(),
            reason: "it contains '/'".into(),
        };
        assert!(!not_there_yet(&bad));
        let unsafe_dir = IpcError::UnsafeDirectory {
            path: "/x".into(),
            reason: "mode 777".into(),
        };
        assert!(!not_there_yet(&unsafe_dir));
    }
}
