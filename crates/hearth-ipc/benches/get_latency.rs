//! Round-trip latency of `get` over the socket and in process, one client,
//! sequential (informational; `hearth bench` owns the published numbers).
//!
//! Owns: a quick measurement only. Must never: assert on time. Under
//! `cargo test` (no `--bench` argument) it runs a few iterations as a smoke
//! test.

use hearth_ipc::{Client, ConnectOptions, Server};
use serde_json::json;
use std::time::{Duration, Instant};

fn measure(label: &str, client: &Client, n: usize) {
    for _ in 0..n.min(1000) {
        client.get("user:1").unwrap();
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let doc = client.get("user:1").unwrap();
        samples.push(t.elapsed());
        assert!(doc.is_some());
    }
    let total = start.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{label:<12} get x{n}: p50 {:?}  p99 {:?}  max {:?}  ({:.0} gets/s)",
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1],
        n as f64 / total.as_secs_f64()
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = if bench { 20_000 } else { 20 };
    let sock = tempfile::tempdir().unwrap();
    let sock_dir = sock.path().join("s");
    let data = tempfile::tempdir().unwrap();
    let channel = format!("bench-{}", std::process::id());
    let server = Server::builder()
        .channel(&channel)
        .socket_dir(&sock_dir)
        .data_dir(data.path())
        .start()
        .unwrap();
    let client = Client::connect_with(ConnectOptions::new(&channel).socket_dir(&sock_dir)).unwrap();
    client
        .put(
            "user:1",
            json!({"type": "User", "name": "Alice", "email": "alice@example.com", "n": 12345}),
        )
        .unwrap();
    measure("socket", &client, n);
    let local = server.connect_in_process().unwrap();
    measure("in-process", &local, n);
    drop((client, local));
    server.shutdown().unwrap();
}
