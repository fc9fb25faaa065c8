#!/usr/bin/env node
'use strict';
// `npm install` (and `npm run build`): builds the addon and the `hearth`
// binary from this repository's Rust sources, copies the addon next to
// package.json as hearth.node, and records where the binary is
// (build-info.json). Downloads nothing prebuilt.
//
// Environment: CARGO (the cargo to run), CARGO_TARGET_DIR (honoured; else
// the workspace's own target directory, from `cargo metadata`),
// HEARTH_NODE_PROFILE (`release`, the default, or `debug`),
// HEARTH_SKIP_BUILD=1 (only copy what an earlier build left).

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');
const root = path.resolve(pkgDir, '..', '..');
const cargo = process.env.CARGO || 'cargo';
const profile = process.env.HEARTH_NODE_PROFILE || 'release';

function die(message) {
  process.stderr.write(`hearth: ${message}\n`);
  process.exit(1);
}

function run(args, capture) {
  const r = spawnSync(cargo, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.error) {
    die(`could not run ${cargo} (${r.error.message}); building hearth needs a Rust toolchain (https://rustup.rs) and this package inside the hearth repository`);
  }
  if (r.status !== 0) die(`\`${cargo} ${args.join(' ')}\` failed (exit ${r.status})`);
  return r.stdout;
}

if (!fs.existsSync(path.join(root, 'Cargo.toml'))) {
  die(`no Cargo workspace at ${root}; the hearth package builds from the hearth repository's sources`);
}

const meta = JSON.parse(run(['metadata', '--format-version', '1', '--no-deps'], true));
// `cargo metadata` already reflects CARGO_TARGET_DIR when it is set.
const targetDir = meta.target_directory;
const outDir = path.join(targetDir, profile === 'debug' ? 'debug' : profile);

if (!process.env.HEARTH_SKIP_BUILD) {
  const args = ['build', '-p', 'hearth-node', '-p', 'hearth-cli'];
  if (profile === 'release') args.push('--release');
  else if (profile !== 'debug') args.push('--profile', profile);
  process.stderr.write(`hearth: cargo ${args.join(' ')} (target ${targetDir})\n`);
  run(args, false);
}

const libName = { darwin: 'libhearth_node.dylib', win32: 'hearth_node.dll' }[process.platform] || 'libhearth_node.so';
const lib = path.join(outDir, libName);
const bin = path.join(outDir, process.platform === 'win32' ? 'hearth.exe' : 'hearth');
if (!fs.existsSync(lib)) die(`the build did not produce ${lib}`);
if (!fs.existsSync(bin)) die(`the build did not produce ${bin}`);

// Copy then rename: a process that has the old addon loaded keeps its
// mapping, and nobody ever loads a half-written file.
const dest = path.join(pkgDir, 'hearth.node');
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(lib, tmp);
fs.renameSync(tmp, dest);

const info = { addon: dest, hearth: bin, profile, targetDir, builtFrom: root };
fs.writeFileSync(path.join(pkgDir, 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);
process.stderr.write(`hearth: addon ${dest}\nhearth: server binary ${bin}\n`);
