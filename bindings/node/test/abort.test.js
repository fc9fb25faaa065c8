'use strict';
// Per-call {timeout, signal}: a call that outlives its timeout fails with
// code "timeout"; an aborted call rejects at once with an AbortError; the
// connection is usable afterwards.

const test = require('node:test');
const assert = require('node:assert/strict');
const { hearth, channel, tempDir, client } = require('./helpers');

async function slowHost(t) {
  const ch = channel('abort');
  const pending = [];
  const host = await hearth.serve({
    channel: ch,
    dataDir: tempDir(),
    handlers: {
      // Answers only when the test lets it.
      'test:hang': () => new Promise((resolve) => pending.push(resolve)),
      'test:echo': (p) => p,
    },
    shutdownTimeout: 100,
  });
  t.after(async () => {
    for (const r of pending) r(null);
    await host.close();
  });
  return { ch, host };
}

test('a call past its timeout fails with code timeout', async (t) => {
  const { ch } = await slowHost(t);
  const db = client(t, ch);
  const started = Date.now();
  await assert.rejects(db.call('test:hang', {}, { timeout: 50 }), (e) => {
    assert.equal(e.code, 'timeout');
    assert.equal(e.protocolCode, 'timeout');
    assert.match(e.message, /call got no answer within 50ms/);
    return true;
  });
  assert.ok(Date.now() - started < 5000);
  assert.deepEqual(await db.call('test:echo', { ok: 1 }), { ok: 1 });
});

test('the client-wide timeout applies when a call gives none', async (t) => {
  const { ch } = await slowHost(t);
  const db = client(t, ch, { timeout: 40 });
  await assert.rejects(db.call('test:hang', {}), { code: 'timeout' });
});

test('aborting a call rejects it at once with an AbortError carrying the reason', async (t) => {
  const { ch } = await slowHost(t);
  const db = client(t, ch);
  const ac = new AbortController();
  const call = db.call('test:hang', {}, { signal: ac.signal });
  setImmediate(() => ac.abort(new Error('navigated away')));
  await assert.rejects(call, (e) => {
    assert.equal(e.name, 'AbortError');
    assert.equal(e.code, 'ABORT_ERR');
    assert.equal(e.protocolCode, 'cancelled');
    assert.equal(e.cause.message, 'navigated away');
    return true;
  });
  assert.deepEqual(await db.call('test:echo', [1, 2]), [1, 2]);
});

test('an already-aborted signal rejects before anything is sent', async (t) => {
  const { ch } = await slowHost(t);
  const db = client(t, ch);
  const signal = AbortSignal.abort('gone');
  for (const p of [db.put('a', {}, { signal }), db.get('a', { signal }), db.list({ signal }), db.call('test:echo', 1, { signal })]) {
    await assert.rejects(p, { name: 'AbortError', code: 'ABORT_ERR' });
  }
  assert.equal(await db.get('a'), null);
});

test('AbortSignal.timeout works on every kind of call', async (t) => {
  const { ch } = await slowHost(t);
  const db = client(t, ch);
  await assert.rejects(db.call('test:hang', {}, { signal: AbortSignal.timeout(30) }), { code: 'ABORT_ERR' });
  // A signal that does not fire changes nothing.
  const signal = AbortSignal.timeout(60000);
  await db.put('p', { v: 1 }, { signal });
  assert.deepEqual(await db.get('p', { signal }), { v: 1 });
  assert.equal((await db.list({ signal })).length, 1);
  assert.equal(await db.delete('p', { signal }), true);
});
