#!/usr/bin/env bash
# The whole test suite: format check, clippy with warnings as errors, every
# test, rustdoc with warnings as errors.
# Installs what the tests need: the Node package's tests build it with npm
# (no npm dependencies, so nothing is downloaded).
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
echo "== cargo doc -D warnings (broken or private intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== loom (hearth-shm ring protocol)"
# --cfg loom swaps hearth-shm's atomics for loom's model checker; its own
# target directory keeps the normal build cache intact.
TARGET_DIR=${CARGO_TARGET_DIR:-target}
CARGO_TARGET_DIR="$TARGET_DIR/loom" RUSTFLAGS="--cfg loom" \
  cargo test -p hearth-shm --test loom --release --locked
echo "== Miri (hearth-shm's ring over plain memory; where a nightly toolchain is installed)"
./scripts/miri.sh
echo "== the macOS build (socket transport only; type-checked, not run)"
./scripts/cross-check.sh
echo "== Node package (bindings/node)"
# A debug build reuses what `cargo test` just compiled.
HEARTH_NODE_PROFILE=debug ./scripts/test-node.sh
