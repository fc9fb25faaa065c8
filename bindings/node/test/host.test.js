'use strict';
// serve(): Node as the host. JavaScript handlers answer calls from another
// Node process (and from this one), thrown errors become error replies,
// the context names the caller, events reach subscribers across processes.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { fork } = require('node:child_process');
const { hearth, channel, tempDir, client, once } = require('./helpers');

/** Forks test/fixtures/peer.js on `ch`; `ask(cmd)` sends a command and resolves with its answer. */
async function peer(t, ch) {
  const child = fork(path.join(__dirname, 'fixtures', 'peer.js'), [ch], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map();
  let next = 0;
  child.on('message', (m) => {
    if (m.id === undefined) return;
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(Object.assign(new Error(m.error.message), m.error));
  });
  const [hello] = await once(child, 'message');
  assert.equal(hello.ready, true);
  const ask = (cmd) =>
    new Promise((resolve, reject) => {
      next += 1;
      pending.set(next, { resolve, reject });
      child.send({ ...cmd, id: next });
    });
  t.after(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      await ask({ cmd: 'exit' }).catch(() => child.kill());
      await exited;
    }
  });
  return { ask, pid: hello.pid };
}

test('handlers and events across two Node processes', async (t) => {
  const ch = channel('host');
  const host = await hearth.serve({
    channel: ch,
    dataDir: tempDir(),
    handlers: {
      'one-core:login': async ({ username, password }) => {
        if (password !== 'secret') throw new Error(`wrong password for ${username}`);
        return { success: true, instanceId: `inst-${username}` };
      },
    },
  });
  t.after(() => host.close());
  await host.handle('one-core:whoami', async function whoami(payload, ctx) {
    assert.equal(this, ctx);
    return { callerId: this.callerId, pid: ctx.pid, transport: ctx.transport, name: ctx.name, payload };
  });
  await host.handle('one-core:notFound', () => {
    const e = new Error('no object with that hash');
    e.code = 'not_found';
    throw e;
  });

  const other = await peer(t, ch);
  assert.deepEqual(await other.ask({ cmd: 'call', name: 'one-core:login', payload: { username: 'alice', password: 'secret' } }), {
    success: true,
    instanceId: 'inst-alice',
  });
  await assert.rejects(other.ask({ cmd: 'call', name: 'one-core:login', payload: { username: 'bob', password: 'nope' } }), (e) => {
    assert.equal(e.code, 'internal');
    assert.match(e.message, /wrong password for bob/);
    return true;
  });
  await assert.rejects(other.ask({ cmd: 'call', name: 'one-core:notFound', payload: {} }), { code: 'not_found', message: /no object with that hash/ });
  await assert.rejects(other.ask({ cmd: 'call', name: 'one-core:nothing', payload: {} }), { code: 'unknown_operation' });
  const me = await other.ask({ cmd: 'call', name: 'one-core:whoami', payload: [1] });
  assert.equal(me.pid, other.pid);
  assert.equal(typeof me.callerId, 'number');
  assert.equal(me.name, 'one-core:whoami');
  assert.deepEqual(me.payload, [1]);

  // Events: host.emit → the other process's subscription.
  await other.ask({ cmd: 'subscribe', pattern: 'one-core:event:*' });
  assert.equal(host.emit('one-core:event:objectCreated', { hash: 'h1', type: 'Note' }), 1);
  host.emit('one-core:event:syncProgress', { progress: 1, total: 2 });
  host.emit('other:event', { not: 'delivered' });
  const events = await other.ask({ cmd: 'events', n: 2 });
  assert.deepEqual(events, [
    { topic: 'one-core:event:objectCreated', payload: { hash: 'h1', type: 'Note' } },
    { topic: 'one-core:event:syncProgress', payload: { progress: 1, total: 2 } },
  ]);

  // The other way: the other process publishes, a client here receives.
  const db = client(t, ch);
  const got = [];
  let gotOne;
  const first = new Promise((r) => {
    gotOne = r;
  });
  await db.subscribe('app:*', (payload, topic) => {
    got.push([topic, payload]);
    gotOne();
  });
  assert.equal(await other.ask({ cmd: 'publish', topic: 'app:ping', payload: { n: 1 } }), 1);
  await first;
  assert.deepEqual(got, [['app:ping', { n: 1 }]]);

  // The host's store serves documents to both processes.
  await other.ask({ cmd: 'put', key: 'doc:1', data: { from: 'peer' } });
  assert.deepEqual(await db.get('doc:1'), { from: 'peer' });
});

test('a host without dataDir serves handlers; closing it ends pending calls', async (t) => {
  const ch = channel('nodata');
  let release;
  let entered;
  const inSlow = new Promise((r) => {
    entered = r;
  });
  const host = await hearth.serve({
    channel: ch,
    handlers: {
      'svc:add': ({ a, b }) => a + b,
      'svc:slow': () =>
        new Promise((r) => {
          release = r;
          entered();
        }),
      'svc:undefined': () => undefined,
      'svc:bigint': () => ({ n: 1n }),
    },
    // Long enough that the call in flight is answered before the host
    // gives up on it, however busy the machine.
    shutdownTimeout: 5000,
  });
  const db = client(t, ch);
  assert.equal(await db.call('svc:add', { a: 2, b: 3 }), 5);
  assert.equal(await db.call('svc:undefined'), null);
  await assert.rejects(db.call('svc:bigint'), { code: 'internal', message: /cannot be serialised/ });
  const slow = db.call('svc:slow', {});
  await inSlow;
  const closing = host.close();
  // Calls in flight finish during shutdown.
  release({ done: true });
  assert.deepEqual(await slow, { done: true });
  await closing;
  await assert.rejects(db.call('svc:add', { a: 1, b: 1 }), (e) => e.protocolCode === 'unavailable');
  await assert.rejects(host.handle('svc:more', () => 1), { code: 'ECLOSED' });
});

test('handler names and channels are checked; a taken channel is ECHANNEL_IN_USE', async (t) => {
  const ch = channel('checks');
  await assert.rejects(hearth.serve({ channel: ch, handlers: { 'bad*name': () => 1 } }), { code: 'invalid_input' });
  await assert.rejects(hearth.serve({ channel: 'no/slash' }), { code: 'EINVALID_CHANNEL' });
  const host = await hearth.serve({ channel: ch });
  t.after(() => host.close());
  await assert.rejects(host.handle('a::b', () => 1), { code: 'invalid_input' });
  await assert.rejects(hearth.serve({ channel: ch }), (e) => e.code === 'ECHANNEL_IN_USE' && e.protocolCode === 'locked');
  assert.throws(() => host.emit('a:*', {}), { code: 'invalid_input' });
});

test('replacing a served handler is immediate; a new name is added to the running server', async (t) => {
  const ch = channel('swap');
  const host = await hearth.serve({ channel: ch, handlers: { 'v:get': () => 1 } });
  t.after(() => host.close());
  const db = client(t, ch);
  assert.equal(await db.call('v:get'), 1);
  await host.handle('v:get', () => 2);
  assert.equal(await db.call('v:get'), 2);
  await db.put('kept', { ok: true });
  const events = [];
  await db.subscribe('v:*', (payload) => events.push(payload));
  const before = host.stats();
  await host.handle('v:new', () => 'new');
  assert.equal(await db.call('v:new'), 'new');
  assert.equal(await db.call('v:get'), 2);
  assert.deepEqual(await db.get('kept'), { ok: true });
  // The same server went on: its counters kept counting, the client's
  // connection and its subscription were never interrupted.
  const after = host.stats();
  assert.ok(after.requests >= before.requests + 3, `${before.requests} -> ${after.requests}`);
  assert.equal(after.connections, before.connections);
  assert.equal(host.emit('v:news', 7), 1);
  for (let i = 0; i < 2000 && events.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.deepEqual(events, [7]);
});
