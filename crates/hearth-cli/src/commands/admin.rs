//! `stats` and `repair`: looking after a data directory.
//!
//! Owns: printing the store's counters (from the data directory or from the
//! server on a channel, in one format) and running the journal repair with a
//! report of what was set aside. Must never: delete anything — a repair sets
//! damaged data aside beside the journal, where it can still be inspected.

use crate::args::GlobalArgs;
use crate::db;
use crate::error::Result;
use crate::open::open_store;
use crate::output::Output;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// The store's counters, as printed: (label, field of `hearth_store::Stats`).
const STORE_ROWS: [(&str, &str); 13] = [
    ("data dir", "data_dir"),
    ("replica id", "replica_id"),
    ("durability", "durability"),
    ("documents", "documents"),
    ("tombstones", "tombstones"),
    ("last seq", "last_seq"),
    ("applied seq", "applied_seq"),
    ("pending ops", "pending_ops"),
    ("cache entries", "cache_entries"),
    ("cache bytes", "cache_bytes"),
    ("journal segments", "journal_segments"),
    ("journal bytes", "journal_bytes"),
    ("database bytes", "database_bytes"),
];

/// The server's counters, printed after the store's over a channel.
const SERVER_ROWS: [(&str, &str); 27] = [
    ("server connections", "connections"),
    ("shm connections", "shm_connections"),
    ("shm ring bytes", "shm_ring_bytes"),
    ("shm rings capped", "shm_rings_capped"),
    ("shm served by the poller", "shm_lent"),
    ("shm requests polled", "shm_polled"),
    ("shm turns handed over", "shm_handoffs"),
    ("shm handoffs missed", "shm_handoffs_missed"),
    ("shm turns ended asleep", "shm_holders_asleep"),
    ("shm waits for a turn", "shm_turn_waits"),
    ("shm answers queued for room", "shm_answers_queued"),
    ("change subscriptions", "change_subscriptions"),
    ("topic subscriptions", "topic_subscriptions"),
    (
        "refused: process subscriptions",
        "refused_process_subscriptions",
    ),
    (
        "refused: server subscriptions",
        "refused_server_subscriptions",
    ),
    ("server requests", "requests"),
    ("stalled disconnects", "stalled_disconnects"),
    ("closed: half-sent messages", "partial_disconnects"),
    ("refused: server full", "refused_server_full"),
    ("refused: process limit", "refused_process_limit"),
    ("in the handshake", "handshakes"),
    ("closed: process handshakes", "refused_process_handshakes"),
    ("closed: server handshakes", "refused_server_handshakes"),
    ("streams waited for a slot", "streams_waited"),
    ("streams waited: process", "streams_waited_process"),
    ("streams waited: server", "streams_waited_server"),
    ("streams running", "streams_running"),
];

/// `hearth stats`: the store's counters, from the data directory or from
/// the server; over a channel the server's own counters follow, then each
/// connection with its transport and pid (in `--json` mode a `server`
/// object, a `connections` list and `connection`, this command's own id).
pub(crate) fn stats(g: &GlobalArgs, out: &mut Output) -> Result<()> {
    let (mut value, reply) = db::open(g)?.stats()?;
    let mut rows: Vec<(String, String)> = STORE_ROWS
        .iter()
        .map(|(label, field)| (label.to_string(), cell(&value, field)))
        .collect();
    if let Some(Value::Object(mut reply)) = reply {
        let server = reply.remove("server").unwrap_or(Value::Null);
        let connections = reply.remove("connections").unwrap_or(Value::Null);
        let me = reply.remove("connection").unwrap_or(Value::Null);
        rows.extend(
            SERVER_ROWS
                .iter()
                .map(|(label, field)| (label.to_string(), cell(&server, field))),
        );
        rows.extend(connection_rows(&connections, &me, &server["connections"]));
        if let Value::Object(m) = &mut value {
            m.insert("server".into(), server);
            m.insert("connections".into(), connections);
            m.insert("connection".into(), me);
        }
    }
    out.result(&value, table(&rows))
}

/// One row a connection the server listed: `connection 7 (this one)  shm,
/// pid 4242`; then how many it did not list, if any (it lists up to 1024).
fn connection_rows(listed: &Value, me: &Value, total: &Value) -> Vec<(String, String)> {
    let listed = listed.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut rows: Vec<(String, String)> = listed
        .iter()
        .map(|c| {
            let mut label = format!("connection {}", cell(c, "id"));
            if c["id"] == *me {
                label.push_str(" (this one)");
            }
            let mut what = cell(c, "transport");
            if let Some(pid) = c["peer_pid"].as_i64() {
                let _ = write!(what, ", pid {pid}");
            }
            (label, what)
        })
        .collect();
    let unlisted = total
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(listed.len() as u64);
    if unlisted > 0 {
        rows.push(("connections not listed".into(), unlisted.to_string()));
    }
    rows
}

/// One field as printed: strings bare, the replica id in hex, numbers as
/// they are.
fn cell(stats: &Value, field: &str) -> String {
    match (field, &stats[field]) {
        ("replica_id", Value::Number(n)) => n
            .as_u64()
            .map_or_else(|| n.to_string(), |id| format!("{id:016x}")),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// `hearth repair`.
pub(crate) fn repair(g: &GlobalArgs, out: &mut Output) -> Result<()> {
    let store = open_store(g, true)?;
    // Apply whatever was replayed, so the database is whole again.
    store.flush()?;
    let r = store.recovery().clone();
    let dir = store.dir().to_path_buf();
    let value = json!({
        "data_dir": dir,
        "set_aside": r.set_aside,
        "torn_tail_bytes": r.torn_tail_bytes,
        "replayed_ops": r.replayed_ops,
    });
    let mut human = String::new();
    if r.set_aside.is_empty() && r.torn_tail_bytes == 0 {
        let _ = write!(
            human,
            "nothing to repair in {}: the journal is intact",
            dir.display()
        );
    } else {
        let _ = write!(human, "repaired {}", dir.display());
        for p in &r.set_aside {
            let _ = write!(
                human,
                "\n  set aside {} (hearth no longer reads it; keep it for inspection or delete it)",
                p.display()
            );
        }
        if r.torn_tail_bytes > 0 {
            let _ = write!(
                human,
                "\n  dropped an incomplete last record of {} bytes (never acknowledged)",
                r.torn_tail_bytes
            );
        }
    }
    if r.replayed_ops > 0 {
        let _ = write!(
            human,
            "\n  replayed {} journaled operations into the database",
            r.replayed_ops
        );
    }
    out.result(&value, human)
}

/// Two columns, the first padded to its widest entry.
fn table(rows: &[(impl AsRef<str>, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.as_ref().len())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{:<width$}  {v}", k.as_ref()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_cells_print_strings_bare_and_the_replica_id_in_hex() {
        let v = json!({"data_dir": "/d", "replica_id": 255, "documents": 4});
        assert_eq!(cell(&v, "data_dir"), "/d");
        assert_eq!(cell(&v, "replica_id"), "00000000000000ff");
        assert_eq!(cell(&v, "documents"), "4");
    }

    #[test]
    fn each_listed_connection_is_a_row_with_its_transport_and_pid_and_the_own_one_marked() {
        let listed = json!([
            {"id": 3, "transport": "socket", "peer_pid": 1001},
            {"id": 7, "transport": "shm", "peer_pid": 4242},
            {"id": 9, "transport": "in-process", "peer_pid": null},
        ]);
        let rows = connection_rows(&listed, &json!(7), &json!(3));
        assert_eq!(
            rows,
            vec![
                ("connection 3".to_string(), "socket, pid 1001".to_string()),
                ("connection 7 (this one)".into(), "shm, pid 4242".into()),
                ("connection 9".into(), "in-process".into()),
            ]
        );
    }

    #[test]
    fn connections_past_the_servers_list_are_counted_in_one_row() {
        let listed = json!([{"id": 1, "transport": "shm", "peer_pid": 5}]);
        let rows = connection_rows(&listed, &json!(1), &json!(1500));
        assert_eq!(
            rows.last(),
            Some(&("connections not listed".to_string(), "1499".to_string()))
        );
    }

    #[test]
    fn the_table_aligns_the_second_column() {
        let t = table(&[("a", "1".into()), ("long key", "2".into())]);
        assert_eq!(t, "a         1\nlong key  2");
    }
}
