#!/usr/bin/env bash
# Miri over hearth-shm's ring protocol on plain memory (HeapMemory): the
# ring, layout and spin unit tests and the hostile-memory property test,
# with every memory access checked for undefined behaviour. The loom models
# check the orderings; this checks that no index a peer wrote is ever read
# or written out of bounds, even where a native run would not crash.
#
# Runs where a nightly toolchain is installed (Miri exists only there); adds
# its `miri` component if missing. Where there is no nightly toolchain (the
# project's CI machines have only the stable one and cannot fetch another),
# it says so and skips: nothing else in the suite depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLCHAIN=${HEARTH_MIRI_TOOLCHAIN:-nightly}
skip() {
  echo "Miri: SKIPPED — $1"
  echo "  (to run it: rustup toolchain install $TOOLCHAIN --component miri,rust-src; then ./scripts/miri.sh)"
  exit 0
}
if ! RUSTUP_AUTO_INSTALL=0 rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  skip "no $TOOLCHAIN toolchain on this machine"
fi
if ! cargo +"$TOOLCHAIN" miri --version >/dev/null 2>&1; then
  echo "adding the miri component to $TOOLCHAIN"
  timeout 120 rustup component add --toolchain "$TOOLCHAIN" miri rust-src >/dev/null 2>&1 \
    || skip "the miri component could not be installed for $TOOLCHAIN"
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
export CARGO_TARGET_DIR="$TARGET_DIR/miri"
# rustix's futex call passes its timeout as an integer cast to a pointer:
# allowed (Miri then cannot vouch for that one pointer's provenance).
export MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-permissive-provenance"
cargo +"$TOOLCHAIN" miri setup >/dev/null
# The unit tests that need the operating system (a memfd segment, a mapped
# file, which core a thread runs on) are left out or ignored under Miri.
cargo +"$TOOLCHAIN" miri test --locked -p hearth-shm --lib -- ring:: layout:: spin:: segment::
cargo +"$TOOLCHAIN" miri test --locked -p hearth-shm --test hostile_ring
