#!/usr/bin/env bash
# The main job: builds `hearth` and runs the quickstart against a fresh data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p hearth-cli
hearth() { ./target/release/hearth "$@"; }
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
