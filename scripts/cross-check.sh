#!/usr/bin/env bash
# The non-Linux build: type-checks and lints the whole workspace for macOS
# (x86_64-apple-darwin), where hearth has no shared memory and every
# channel runs on the socket transport. Linux-only calls (memfd, futexes,
# MSG_CMSG_CLOEXEC, MADV_DONTNEED's Linux meaning, CPU affinity) must stay
# behind their cfg gates; this catches one that slips out, which no test on
# Linux can.
#
# Nothing is linked or run: `cargo clippy` stops before code generation for
# our crates. The bundled SQLite's build script would compile C for the
# target, which needs a macOS SDK this machine lacks; CC/AR set to `true`
# let the script finish without compiling (no object is needed to check).
#
# Adds the target's standard library with rustup if missing; where it
# cannot be fetched, says so and skips: nothing else depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${HEARTH_CROSS_TARGET:-x86_64-apple-darwin}
skip() {
  echo "cross-check ($TARGET): SKIPPED — $1"
  echo "  (to run it: rustup target add $TARGET; then ./scripts/cross-check.sh)"
  exit 0
}
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  echo "adding the $TARGET standard library"
  timeout 120 rustup target add "$TARGET" >/dev/null 2>&1 \
    || skip "its standard library could not be installed"
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
export "CC_${TARGET//-/_}=true" "AR_${TARGET//-/_}=true"
export CARGO_TARGET_DIR="$TARGET_DIR/cross"
cargo clippy --locked --target "$TARGET" --workspace --all-targets -- -D warnings
echo "cross-check ($TARGET): OK"
