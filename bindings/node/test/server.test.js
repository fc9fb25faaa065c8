'use strict';
// startServer: readiness from the ready line, logs, graceful stop and the
// SIGKILL fallback, restarts with backoff after a crash, no lost
// acknowledged writes when the server is killed with SIGKILL mid-writes,
// and the shared-memory options (off, ring size).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const net = require('node:net');
const { hearth, server, client, channel, tempDir, once, needsServe } = require('./helpers');

test('startServer resolves once the server accepts connections; stop() is graceful', needsServe, async (t) => {
  const logs = [];
  const s = await server(t, { logs: 'events' });
  s.on('log', (l) => logs.push(l));
  assert.equal(typeof s.pid, 'number');
  assert.ok(s.running);
  assert.ok(s.socketPath.endsWith(`${s.channel}.sock`), s.socketPath);
  assert.ok(fs.existsSync(s.socketPath));
  // Ready means ready: the first call succeeds without any wait.
  const db = client(t, s.channel);
  await db.put('k', { v: 1 });
  const exits = [];
  s.on('exit', (e) => exits.push(e));
  const result = await s.stop();
  assert.equal(result.code, 0, JSON.stringify(result));
  assert.equal(result.expected, true);
  assert.equal(s.running, false);
  assert.equal(exits.length, 1);
  assert.ok(!fs.existsSync(s.socketPath), 'the socket is removed');
  assert.ok(logs.some((l) => l.stream === 'stderr'), 'logs are forwarded as events');
  // Stopping twice is fine.
  await s.stop();
});

test('a server killed with SIGKILL during writes is restarted and no acknowledged write is lost', needsServe, async (t) => {
  const s = await server(t, { maxRestarts: 3, backoff: { initial: 20 } });
  const db = client(t, s.channel);
  const acked = new Map();
  let failures = 0;
  let killed = false;
  let restarted = null;
  for (let i = 0; i < 4000; i++) {
    const id = `w:${i}`;
    try {
      const data = { i, text: `document ${i}` };
      await db.put(id, data);
      acked.set(id, data);
    } catch (e) {
      assert.ok(['EDISCONNECTED', 'ECHANNEL_NOT_FOUND'].includes(e.code), `${e.code}: ${e.message}`);
      failures += 1;
      // Wait for the supervisor to bring the server back (signalled, not slept).
      await restarted;
    }
    if (i === 1500 && !killed) {
      killed = true;
      restarted = once(s, 'restart');
      process.kill(s.pid, 'SIGKILL');
    }
  }
  assert.ok(killed);
  assert.equal(s.restarts, 1);
  assert.ok(failures >= 1 && failures <= 3, `acknowledged ${acked.size}, failed ${failures}`);
  for (const [id, data] of acked) assert.deepEqual(await db.get(id), data, id);
  // The list agrees too.
  const all = await db.list({ prefix: 'w:' });
  assert.ok(all.length >= acked.size);
});

test('restarts back off and stop after maxRestarts', needsServe, async (t) => {
  const s = await server(t, { maxRestarts: 2, backoff: { initial: 5, max: 10 } });
  const errors = [];
  s.on('error', (e) => errors.push(e));
  const restarts = [];
  s.on('restart', (n) => restarts.push(n));
  for (let n = 1; n <= 2; n++) {
    const r = once(s, 'restart');
    process.kill(s.pid, 'SIGKILL');
    await r;
  }
  assert.deepEqual(restarts, [1, 2]);
  const gaveUp = once(s, 'error');
  process.kill(s.pid, 'SIGKILL');
  const [e] = await gaveUp;
  assert.equal(e.code, 'ESERVER_STOPPED');
  assert.match(e.message, /maxRestarts 2/);
  assert.equal(s.running, false);
});

test('stop() force-kills a server that does not exit in time', needsServe, async (t) => {
  const s = await server(t);
  process.kill(s.pid, 'SIGSTOP');
  const started = Date.now();
  const r = await s.stop({ timeout: 100 });
  assert.equal(r.signal, 'SIGKILL');
  assert.ok(Date.now() - started < 5000);
});

test('a second server on the same channel fails with the first one named', needsServe, async (t) => {
  const s = await server(t);
  await assert.rejects(
    hearth.startServer({ channel: s.channel, dataDir: tempDir(), logs: 'events', maxRestarts: 0 }),
    (e) => {
      assert.equal(e.code, 'ESERVER_START');
      assert.match(e.message, new RegExp(`already served by process ${s.pid}`));
      return true;
    },
  );
});

test('delays past what setTimeout can wait are kept as the longest, not fired at once', needsServe, async (t) => {
  // setTimeout fires a delay over 2^31 - 1 ms after 1 ms: a ready timeout
  // of 3e9 ms must not fail the start, nor a stop grace kill at once.
  const s = await server(t, { readyTimeout: 3e9, stopTimeout: Infinity, backoff: { initial: 1e12, max: 1e12 } });
  const db = client(t, s.channel);
  await db.put('d:1', { v: 1 });
  await db.close();
  const exit = await s.stop({ timeout: 1e300 });
  assert.equal(exit.signal, null, 'a graceful exit, not SIGKILL');
});

test('delay options that are not non-negative numbers are invalid_input', async () => {
  for (const bad of [{ readyTimeout: -1 }, { stopTimeout: 'soon' }, { backoff: { initial: NaN } }, { backoff: { max: null } }]) {
    await assert.rejects(
      hearth.startServer({ channel: channel(), dataDir: tempDir(), ...bad }),
      (e) => e.code === 'invalid_input' && /non-negative number of milliseconds/.test(e.message),
    );
  }
});

test('HEARTH_SOCKET_DIR places the socket for the server it starts and for clients alike', needsServe, async (t) => {
  const dir = path.join(tempDir('sockets'), 's');
  process.env.HEARTH_SOCKET_DIR = dir;
  t.after(() => delete process.env.HEARTH_SOCKET_DIR);
  const s = await server(t);
  assert.ok(fs.existsSync(path.join(dir, `${s.channel}.sock`)), 'the socket is in HEARTH_SOCKET_DIR');
  const db = client(t, s.channel);
  await db.put('here', { ok: true });
  assert.deepEqual(await db.get('here'), { ok: true });
});

test('sharedMemory: false keeps clients on the socket', needsServe, async (t) => {
  const s = await server(t, { sharedMemory: false });
  const db = client(t, s.channel);
  await db.put('k', { v: 1 });
  assert.equal(db.transport, 'socket');
  assert.deepEqual(await db.get('k'), { v: 1 });
});

test('shmRingBytes sizes the rings; a document larger than a ring still round-trips', { skip: process.platform !== 'linux' || needsServe.skip }, async (t) => {
  const s = await server(t, { shmRingBytes: 4096 });
  const db = client(t, s.channel);
  const text = 'x'.repeat(100000);
  await db.put('big', { text });
  assert.equal(db.transport, 'shm');
  assert.equal((await db.get('big')).text, text);
  const bin = require('../lib/server').hearthBinary();
  const stats = JSON.parse(execFileSync(bin, ['--channel', s.channel, '--json', 'stats'], { encoding: 'utf8' }));
  assert.equal(stats.server.shm_ring_bytes, 4096);
});

test('an shmRingBytes that is no power of two from 4096 to 64 MiB is invalid_input', async () => {
  for (const bad of [5000, 2048, 2 ** 27, '4096', 4096.5, null]) {
    await assert.rejects(
      hearth.startServer({ channel: channel(), dataDir: tempDir(), shmRingBytes: bad }),
      (e) => e.code === 'invalid_input' && /power of two from 4096 to 67108864/.test(e.message),
      String(bad),
    );
  }
});

test('a missing binary is ESERVER_START saying how to build it', async () => {
  await assert.rejects(
    hearth.startServer({ channel: channel(), dataDir: tempDir(), binary: '/nonexistent/hearth' }),
    (e) => e.code === 'ESERVER_START' && /npm install/.test(e.message),
  );
  assert.throws(() => new hearth.HearthServer({ channel: 'x' }), { code: 'invalid_input' });
});

/**
 * Starts a child Node process that starts a server on a new channel and
 * reports `{ pid, socket }`; it exits when sent any message. Resolves with
 * the child, the server's info, and a promise of the server's socket
 * closing (a connection to it is held open).
 */
async function starterWithServer(name) {
  const script = `
    const { startServer } = require(${JSON.stringify(path.join(__dirname, '..'))});
    startServer({ channel: ${JSON.stringify(channel(name))}, dataDir: ${JSON.stringify(tempDir())}, logs: 'ignore' })
      .then((s) => {
        process.send({ pid: s.pid, socket: s.socketPath });
        process.on('message', () => process.exit(0));
      });
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const [info] = await once(child, 'message');
  const conn = net.connect(info.socket);
  await once(conn, 'connect');
  const closed = new Promise((resolve) => conn.on('close', resolve));
  conn.on('error', () => {});
  return { child, info, closed };
}

test('the server is stopped when the Node process exits', needsServe, async () => {
  // The child's exit hook sends the server SIGTERM; the kernel closes our
  // connection when the server process is gone.
  const { child, info, closed } = await starterWithServer('exit');
  const exited = once(child, 'exit');
  child.send('exit');
  const [code] = await exited;
  assert.equal(code, 0);
  await closed;
  await gone(info.pid);
});

// Resolves once process `pid` has exited (gone or a zombie). The closed
// connection says the server is stopping; its exit follows the flush.
async function gone(pid) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const stat = fs.existsSync(`/proc/${pid}/stat`) ? fs.readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
    if (stat === '' || /\) [ZX] /.test(stat)) return;
    assert.ok(Date.now() < deadline, `server ${pid} still running: ${stat}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('the server stops itself when the Node process that started it is killed with SIGKILL', { skip: process.platform !== 'linux' || needsServe.skip }, async () => {
  // No exit hook runs on SIGKILL: the server's parent-death signal
  // (`--exit-with-parent`, on by default on Linux) must stop it.
  const { child, info, closed } = await starterWithServer('pdeath');
  child.kill('SIGKILL');
  await once(child, 'exit');
  await closed;
  await gone(info.pid);
  assert.ok(!fs.existsSync(info.socket), 'a clean stop removes the socket');
});
