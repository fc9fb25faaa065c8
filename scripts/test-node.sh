#!/usr/bin/env bash
# The Node package's tests: `npm install` in bindings/node (builds the addon
# and the hearth binary with cargo; no npm dependencies, so no network), then
# `npm test` (node --test). Honours CARGO_TARGET_DIR.
#
# The type declarations are checked by compiling a program against them
# with TypeScript (test/types.test.js): this installs TypeScript and Node's
# types from the npm registry, pinned, into the target directory (once;
# reused after). If the registry cannot be reached, that one test says it
# skipped; everything else runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT/bindings/node"
echo "== npm install (bindings/node)"
npm install --no-audit --no-fund --offline
TOOLS="${CARGO_TARGET_DIR:-$ROOT/target}/node-tools"
case "$TOOLS" in /*) ;; *) TOOLS="$ROOT/$TOOLS" ;; esac
TS_VERSIONS=(typescript@5.9.3 @types/node@20.19.43)
if [ ! -x "$TOOLS/node_modules/.bin/tsc" ]; then
  echo "== TypeScript for the declarations' check (into $TOOLS)"
  mkdir -p "$TOOLS"
  timeout 180 npm install --prefix "$TOOLS" --no-save --no-audit --no-fund "${TS_VERSIONS[@]}" >/dev/null 2>&1 \
    || echo "could not install ${TS_VERSIONS[*]} from the npm registry: the TypeScript check will be skipped"
fi
if [ -x "$TOOLS/node_modules/.bin/tsc" ]; then
  export HEARTH_TSC="$TOOLS/node_modules/.bin/tsc"
fi
echo "== npm test (bindings/node)"
npm test
