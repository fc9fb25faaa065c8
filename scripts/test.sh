#!/usr/bin/env bash
# The whole test suite: format check, clippy with warnings as errors, every test.
# Installs what the tests need (nothing beyond the Rust toolchain yet).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc
