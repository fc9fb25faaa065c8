'use strict';
// Shared test setup: a private XDG_RUNTIME_DIR per test file (node --test
// runs each file in its own process), unique channel names, temporary data
// directories, and a started `hearth serve` that is stopped after the test.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-node-test-'));
fs.chmodSync(runtime, 0o700);
process.env.XDG_RUNTIME_DIR = runtime;
delete process.env.HEARTH_IPC;
delete process.env.PLURESDB_IPC;
delete process.env.HEARTH_CHANNEL;
process.on('exit', () => fs.rmSync(runtime, { recursive: true, force: true }));

const hearth = require('..');

let n = 0;
/** A channel name no other test uses. */
function channel(label = 't') {
  n += 1;
  return `${label}-${process.pid}-${n}`;
}

/** A fresh directory, removed when the process exits. */
function tempDir(label = 'data') {
  const dir = fs.mkdtempSync(path.join(runtime, `${label}-`));
  return dir;
}

/** Whether the built `hearth` binary has the `serve` command. */
function hasServe() {
  const bin = hearth.HearthServer && require('../lib/server').hearthBinary();
  if (!bin || !fs.existsSync(bin)) return false;
  const r = spawnSync(bin, ['serve', '--help'], { encoding: 'utf8' });
  return r.status === 0;
}
const SERVE = hasServe();
/** `{skip}` for tests that need `hearth serve`. */
const needsServe = SERVE ? {} : { skip: 'the built hearth binary has no `serve` command' };

/** Starts `hearth serve` on a new channel; stopped after test `t`. */
async function server(t, options = {}) {
  const ch = options.channel || channel(options.label);
  const dataDir = options.dataDir || tempDir();
  const s = await hearth.startServer({ logs: 'events', ...options, channel: ch, dataDir });
  t.after(() => s.stop());
  return s;
}

/** A LocalFirst on `ch`, closed after test `t`. */
function client(t, ch, options = {}) {
  const db = new hearth.LocalFirst({ mode: 'ipc', channelName: ch, ...options });
  t.after(() => db.close());
  return db;
}

/** Resolves with the first `event` emitted by `emitter` (with its arguments as an array). */
function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

/**
 * Calls `fn` until it does not fail with EDISCONNECTED (at most 10 s): after
 * a server restart, a client learns that its old connection is gone on its
 * own time, and a call sent on it before then fails once (a call is never
 * sent twice); the next one connects to the new server.
 */
async function afterReconnect(fn) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (e.code !== 'EDISCONNECTED' || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

module.exports = { hearth, runtime, channel, tempDir, server, client, once, afterReconnect, needsServe, SERVE };
