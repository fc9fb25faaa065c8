//! Where a command's documents are: the data directory opened in this
//! process, or a hearth server reached over its channel.
//!
//! Owns: choosing between the two (`--channel` / `HEARTH_CHANNEL` means the
//! server), connecting with the per-call `--timeout`, and giving both the
//! same shape ([`Db`], [`Doc`]) so that every command prints through one
//! code path whichever it talks to. Must never: print anything, fall back
//! from a channel to opening the data directory (a server holds it), or
//! retry a write.

use crate::args::GlobalArgs;
use crate::error::Result;
use crate::open::open_store;
use hearth_ipc::{Client, ConnectOptions};
use hearth_store::{ListOptions, Store, WriteOp};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::time::Duration;

/// The longest a connection attempt may take, whatever the call timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The documents a command works on.
pub(crate) enum Db {
    /// The data directory, opened here.
    Local(Store),
    /// A server on a channel.
    Channel(Client),
}

/// A document read by [`Db::get`], with what `get` prints about it.
pub(crate) struct Got {
    /// The document's data (a JSON object).
    pub(crate) data: Value,
    /// Sequence number of its latest change.
    pub(crate) seq: u64,
    /// Milliseconds since the epoch of its latest change.
    pub(crate) updated_at_ms: u64,
}

/// A document from a list, query or search.
pub(crate) enum Doc {
    /// Read from the local store: its JSON text is printed as stored.
    Local(hearth_store::Document),
    /// Read over the channel.
    Remote(hearth_ipc::Document),
}

impl Doc {
    /// The document id.
    pub(crate) fn id(&self) -> &str {
        match self {
            Doc::Local(d) => d.id(),
            Doc::Remote(d) => &d.id,
        }
    }

    /// The document's data as compact JSON text. Both sides hold the same
    /// text: the store keeps `serde_json`'s compact form of the object
    /// (keys sorted), and re-encoding the parsed object gives it back.
    pub(crate) fn json(&self) -> Cow<'_, str> {
        match self {
            Doc::Local(d) => Cow::Borrowed(d.json()),
            Doc::Remote(d) => Cow::Owned(d.data.to_string()),
        }
    }
}

/// The documents of a `list`, one at a time (pages from the store, or
/// chunks from the server as they arrive).
pub(crate) enum Docs {
    /// From the local store.
    Local(hearth_store::List),
    /// From the server.
    Remote(hearth_ipc::DocStream),
}

impl Iterator for Docs {
    type Item = Result<Doc>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Docs::Local(it) => it.next().map(|d| d.map(Doc::Local).map_err(Into::into)),
            Docs::Remote(it) => it.next().map(|d| d.map(Doc::Remote).map_err(Into::into)),
        }
    }
}

/// The connection options for `channel` from the global flags.
pub(crate) fn connect_options(g: &GlobalArgs, channel: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(channel);
    if let Some(dir) = g.resolve_socket_dir() {
        options = options.socket_dir(dir);
    }
    if let Some(timeout) = g.timeout {
        options = options
            .timeout(timeout)
            .connect_timeout(timeout.min(CONNECT_TIMEOUT));
    }
    options
}

/// Opens what the flags name: the server on the channel when there is one
/// (`--data-dir`, `--durability` are then the server's business), else the
/// data directory.
pub(crate) fn open(g: &GlobalArgs) -> Result<Db> {
    match g.resolve_channel()? {
        Some(channel) => {
            tracing::debug!(%channel, "connecting to the server");
            Ok(Db::Channel(Client::connect_with(connect_options(
                g, &channel,
            ))?))
        }
        None => Ok(Db::Local(open_store(g, false)?)),
    }
}

impl Db {
    /// Replaces a document; its sequence number.
    pub(crate) fn put(&self, id: &str, data: Map<String, Value>) -> Result<u64> {
        match self {
            Db::Local(s) => Ok(s.put(id, Value::Object(data))?),
            Db::Channel(c) => Ok(c.put(id, Value::Object(data))?),
        }
    }

    /// Merges top-level fields; the change's sequence number.
    pub(crate) fn patch(&self, id: &str, fields: Map<String, Value>) -> Result<u64> {
        match self {
            Db::Local(s) => Ok(s.patch(id, Value::Object(fields))?),
            Db::Channel(c) => Ok(c.patch(id, Value::Object(fields))?),
        }
    }

    /// A live document; `None` when absent or deleted.
    pub(crate) fn get(&self, id: &str) -> Result<Option<Got>> {
        match self {
            Db::Local(s) => Ok(s.get(id)?.map(|doc| {
                let meta = doc.metadata();
                Got {
                    data: doc.to_value(),
                    seq: meta.seq,
                    updated_at_ms: meta.updated_at_ms,
                }
            })),
            Db::Channel(c) => Ok(c.get_with_metadata(id)?.and_then(|doc| {
                // A deleted document comes back with its metadata; `get`
                // treats it as absent, like the local store does.
                let meta = doc.metadata.filter(|m| !m.deleted)?;
                Some(Got {
                    data: doc.data,
                    seq: meta.seq,
                    updated_at_ms: meta.updated_at_ms,
                })
            })),
        }
    }

    /// Deletes a document; the change's sequence number, `None` if there
    /// was no such document.
    pub(crate) fn delete(&self, id: &str) -> Result<Option<u64>> {
        match self {
            Db::Local(s) => Ok(s.delete(id)?),
            Db::Channel(c) => Ok(c.delete(id)?),
        }
    }

    /// Documents in id order, streamed.
    pub(crate) fn list(&self, opts: ListOptions) -> Result<Docs> {
        match self {
            Db::Local(s) => Ok(Docs::Local(s.list(opts)?)),
            Db::Channel(c) => Ok(Docs::Remote(c.list_stream(opts)?)),
        }
    }

    /// One page of documents whose fields equal `filters`.
    pub(crate) fn query(
        &self,
        filters: &Map<String, Value>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<Doc>> {
        match self {
            Db::Local(s) => Ok(s
                .query(filters, limit, after)?
                .into_iter()
                .map(Doc::Local)
                .collect()),
            Db::Channel(c) => Ok(c
                .query(Value::Object(filters.clone()), Some(limit), after)?
                .docs
                .into_iter()
                .map(Doc::Remote)
                .collect()),
        }
    }

    /// Full-text search, best first, with scores.
    pub(crate) fn search(&self, text: &str, limit: usize) -> Result<Vec<(Doc, f64)>> {
        match self {
            Db::Local(s) => Ok(s
                .search(text, limit)?
                .into_iter()
                .map(|h| (Doc::Local(h.doc), h.score))
                .collect()),
            Db::Channel(c) => Ok(c
                .search(text, limit)?
                .into_iter()
                .map(|h| (Doc::Remote(h.doc), h.score))
                .collect()),
        }
    }

    /// Applies the writes atomically.
    pub(crate) fn batch(&self, ops: Vec<WriteOp>) -> Result<()> {
        match self {
            Db::Local(s) => s.batch(ops).map(drop).map_err(Into::into),
            Db::Channel(c) => c.batch(ops).map(drop).map_err(Into::into),
        }
    }

    /// Most bytes of documents one import batch should carry: a whole
    /// batch goes in one request over a channel, whose messages are
    /// limited (32 MiB by default), so batches stay well below that with
    /// room for one more document at the limit.
    pub(crate) fn batch_bytes(&self, local: usize) -> usize {
        match self {
            Db::Local(_) => local,
            Db::Channel(_) => local.min(8 << 20),
        }
    }

    /// The store's counters as JSON (the fields of `hearth_store::Stats`)
    /// and, over a channel, the rest of the server's reply: its counters
    /// (`server`), its connections (`connections`) and this one's id
    /// (`connection`).
    pub(crate) fn stats(&self) -> Result<(Value, Option<Value>)> {
        match self {
            Db::Local(s) => {
                let stats = s.stats()?;
                let value = serde_json::to_value(&stats).map_err(|e| {
                    crate::error::CliError::input(format!("the statistics cannot be encoded: {e}"))
                })?;
                Ok((value, None))
            }
            Db::Channel(c) => {
                let mut reply = c.stats()?;
                let store = reply.get_mut("store").map(Value::take).ok_or_else(|| {
                    hearth_ipc::IpcError::Protocol(format!(
                        "the stats reply has no \"store\" object: {reply}"
                    ))
                })?;
                // The rest: `server` (its counters), `connections` (each
                // connection's id, transport and pid) and `connection` (this
                // command's own).
                Ok((store, Some(reply)))
            }
        }
    }

    /// How many live documents there are.
    pub(crate) fn document_count(&self) -> Result<u64> {
        match self {
            Db::Local(s) => Ok(s.stats()?.documents),
            Db::Channel(_) => Ok(self.stats()?.0["documents"].as_u64().unwrap_or(0)),
        }
    }
}
