#!/usr/bin/env bash
# The Node package's tests: `npm install` in bindings/node (builds the addon
# and the hearth binary with cargo; no npm dependencies, so no network), then
# `npm test` (node --test). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../bindings/node"
echo "== npm install (bindings/node)"
npm install --no-audit --no-fund --offline
echo "== npm test (bindings/node)"
npm test
