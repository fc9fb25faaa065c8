'use strict';
// More busy client processes than cores against one server (the shape of
// an app with windows, workers and helper processes): every process reads
// its own writes back, and one killed mid-run hurts none of the others.
// On Linux they share the server's poller over shared memory. Nothing here
// looks at speed.

const test = require('node:test');
const assert = require('node:assert/strict');
const os = require('node:os');
const path = require('node:path');
const { fork } = require('node:child_process');
const { server, client, needsServe } = require('./helpers');

const WRITER = path.join(__dirname, 'fixtures', 'writer.js');
/** More than the cores (twice, between 4 and 16 processes). */
const PROCESSES = Math.min(16, Math.max(4, 2 * os.availableParallelism()));

/** Forks a writer; `connected` resolves once it is connected, `result` with its report. */
function writer(ch, who, rounds) {
  const child = fork(WRITER, [ch, String(who), String(rounds)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let connected;
  const isConnected = new Promise((resolve) => (connected = resolve));
  const result = new Promise((resolve, reject) => {
    child.on('message', (m) => {
      if (m.connected) connected();
      else if (m.error) reject(new Error(`writer ${who}: ${m.error}`));
      else resolve(m);
    });
    child.once('exit', (code, signal) => resolve({ exited: code, signal }));
  });
  return { child, connected: isConnected, result };
}

test('client processes beyond the cores each read their own writes back', needsServe, async (t) => {
  const s = await server(t);
  const writers = Array.from({ length: PROCESSES }, (_, who) => writer(s.channel, who, 1500));
  const results = await Promise.all(writers.map((w) => w.result));
  for (const [who, r] of results.entries()) {
    assert.equal(r.done, 1500, `writer ${who}: ${JSON.stringify(r)}`);
    if (process.platform === 'linux') assert.equal(r.transport, 'shm', `writer ${who}`);
  }
  const db = client(t, s.channel);
  assert.deepEqual(await db.get(`w${PROCESSES - 1}:49`), { who: PROCESSES - 1, i: 1499 });
});

test('a client process killed among busy ones hurts none of the others', needsServe, async (t) => {
  const s = await server(t);
  const victim = writer(s.channel, 0, 1_000_000);
  const others = Array.from({ length: PROCESSES - 1 }, (_, i) => writer(s.channel, i + 1, 1500));
  await victim.connected;
  await Promise.all(others.map((w) => w.connected));
  victim.child.kill('SIGKILL');
  assert.equal((await victim.result).signal, 'SIGKILL');
  for (const r of await Promise.all(others.map((w) => w.result))) assert.equal(r.done, 1500, JSON.stringify(r));
  const db = client(t, s.channel);
  assert.deepEqual(await db.get('w1:49'), { who: 1, i: 1499 }, 'the server still answers');
});
