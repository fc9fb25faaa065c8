#!/usr/bin/env bash
# The main job: builds `hearth`, runs the quickstart against a fresh data
# directory, then starts a server on a channel and exercises it from clients
# (shared memory on Linux), and ends with a short transport benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p hearth-cli
hearth() { "${CARGO_TARGET_DIR:-target}/release/hearth" "$@"; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/hearth-demo.XXXXXX")
trap 'rm -rf "$dir"' EXIT
export HEARTH_DATA_DIR="$dir"
set -x
hearth put user:1 '{"type":"User","name":"Alice","email":"alice@example.com"}'
hearth put user:2 '{"type":"User","name":"Bob","email":"bob@example.com"}'
hearth put note:1 '{"type":"Note","text":"Alice likes local-first software"}'
hearth patch user:1 '{"email":"alice@example.org"}'
hearth get user:1
hearth list --prefix user:
hearth list --type Note
hearth query name=Bob
hearth search alice
hearth delete user:2
hearth get user:2 || echo "(exit $?: not found, as expected)"
hearth export "$dir/backup.jsonl"
hearth --json stats

set +x
echo
echo "== a server on a channel, and clients talking to it"
export HEARTH_SOCKET_DIR="$dir/sockets"
coproc SERVER { exec "${CARGO_TARGET_DIR:-target}/release/hearth" serve --channel demo --data-dir "$dir/server" --exit-with-parent 2>"$dir/server.log"; }
read -r ready <&"${SERVER[0]}" || { cat "$dir/server.log"; exit 1; }
echo "$ready"
set -x
hearth --channel demo put user:1 '{"type":"User","name":"Alice"}'
hearth --channel demo patch user:1 '{"email":"alice@example.org"}'
hearth --channel demo get user:1
hearth --channel demo list --prefix user:
hearth --channel demo watch --from-seq 0 --timeout 1s >"$dir/watch.out" & watcher=$!
hearth --channel demo put user:2 '{"type":"User","name":"Bob"}'
hearth --channel demo --json stats
kill -TERM "$SERVER_PID"; wait "$SERVER_PID"
wait "$watcher" || true
cat "$dir/watch.out"
set +x
echo
echo "== get and put round trips: shared memory vs the socket (short run; see docs/performance.md)"
hearth bench --transport both --ops 20000 --idle-clients 0 --no-redis 2>/dev/null
