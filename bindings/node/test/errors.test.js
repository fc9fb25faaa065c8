'use strict';
// Bad input gives clear errors with stable codes: values that are not JSON,
// ids too long, documents too large, reserved keys, a closed client,
// unknown handlers.

const test = require('node:test');
const assert = require('node:assert/strict');
const { hearth, server, client, needsServe } = require('./helpers');

function hasCode(code, pattern) {
  return (e) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.ok(e instanceof hearth.HearthError, 'a HearthError');
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

test('values that are not JSON objects are refused before anything is sent', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const circular = { a: 1 };
  circular.self = circular;
  await assert.rejects(db.put('bad:1', circular), hasCode('invalid_input', /cannot be serialised to JSON.*circular/i));
  await assert.rejects(db.put('bad:2', { n: 10n }), hasCode('invalid_input', /BigInt/));
  await assert.rejects(db.put('bad:3', [1, 2]), hasCode('invalid_input', /must be a JSON object, not an array/));
  await assert.rejects(db.put('bad:4', 'text'), hasCode('invalid_input', /not a string/));
  await assert.rejects(db.put('bad:5', null), hasCode('invalid_input', /not null/));
  await assert.rejects(db.put('bad:6', undefined), hasCode('invalid_input'));
  await assert.rejects(db.put('bad:7', new Date()), hasCode('invalid_input', /toJSON/));
  await assert.rejects(db.patch('bad:8', 5), hasCode('invalid_input', /fields must be a JSON object/));
  await assert.rejects(db.call('x:y', { n: 1n }), hasCode('invalid_input', /payload cannot be serialised/));
  await assert.rejects(db.publish('x:y', circular), hasCode('invalid_input'));
  await assert.rejects(db.batch([{ op: 'put', id: 'b', data: { n: 1n } }]), hasCode('invalid_input'));
  // Nothing was written.
  assert.equal((await db.list({ prefix: 'bad:' })).length, 0);
});

test('ids: not a string, empty, too long, with NUL', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await assert.rejects(db.put(42, {}), hasCode('invalid_input', /id must be a string/));
  await assert.rejects(db.get(undefined), hasCode('invalid_input', /id must be a string/));
  await assert.rejects(db.put('', {}), hasCode('invalid_input'));
  await assert.rejects(db.put('x'.repeat(513), {}), hasCode('invalid_input', /513|512/));
  await assert.rejects(db.get('x'.repeat(513)), hasCode('invalid_input'));
  await assert.rejects(db.put('a\u0000b', {}), hasCode('invalid_input'));
  // 512 bytes is fine.
  await db.put('y'.repeat(512), { ok: true });
  assert.deepEqual(await db.get('y'.repeat(512)), { ok: true });
  // And the connection is still good after the errors.
  await db.put('after', { ok: 1 });
});

test('documents over the limit are too_large, never truncated', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const over16 = { blob: 'x'.repeat(17 * 1024 * 1024) };
  await assert.rejects(db.put('huge:1', over16), hasCode('too_large'));
  const over32 = { blob: 'y'.repeat(33 * 1024 * 1024) };
  await assert.rejects(db.put('huge:2', over32), hasCode('too_large', /32 MiB/));
  assert.equal(await db.get('huge:1'), null);
  assert.equal(await db.get('huge:2'), null);
  await db.put('small', { ok: 1 });
  assert.deepEqual(await db.get('small'), { ok: 1 });
});

test('arguments over the 32 MiB a message holds are too_large before anything is sent; the connection goes on', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const events = [];
  const sub = await db.subscribe('big:*', (payload) => events.push(payload));
  const lost = [];
  sub.on('lost', (e) => lost.push(e.code));
  const blob = 'z'.repeat(33 * 1024 * 1024);
  await assert.rejects(db.call('no:handler', { blob }), hasCode('too_large', /nothing was sent/));
  await assert.rejects(db.publish('big:one', { blob }), hasCode('too_large'));
  await assert.rejects(db.query({ blob }), hasCode('too_large'));
  await assert.rejects(db.search(blob), hasCode('too_large'));
  await assert.rejects(db.get(blob), hasCode('too_large'));
  await assert.rejects(db.get(blob, { timeout: 10_000 }), hasCode('too_large'));
  await assert.rejects(db.delete(blob), hasCode('too_large'));
  assert.equal(await db.publish('big:small', { n: 1 }), 1);
  for (let i = 0; events.length === 0 && i < 1000; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(events, [{ n: 1 }], 'the subscription lived through the refusals');
  assert.deepEqual(lost, []);
});

test('an id with half a surrogate pair is refused, not stored under U+FFFD', needsServe, async (t) => {
  const s = await server(t);
  for (const fastPath of [true, false]) {
    const db = client(t, s.channel, { fastPath });
    for (const id of ['u:\ud800', 'u:\udfff', '\udbff']) {
      await assert.rejects(db.put(id, { v: 1 }), hasCode('invalid_input', /lone UTF-16 surrogate/));
      await assert.rejects(db.get(id), hasCode('invalid_input', /lone UTF-16 surrogate/));
      await assert.rejects(db.patch(id, { v: 1 }), hasCode('invalid_input', /lone UTF-16 surrogate/));
      await assert.rejects(db.delete(id), hasCode('invalid_input', /lone UTF-16 surrogate/));
      await assert.rejects(db.getWithMetadata(id), hasCode('invalid_input', /lone UTF-16 surrogate/));
    }
    // A whole pair is one character, and fine.
    await db.put('u:\ud83d\ude00', { fastPath });
    assert.deepEqual(await db.get('u:\ud83d\ude00'), { fastPath });
  }
  const db = client(t, s.channel);
  assert.deepEqual((await db.list({ prefix: 'u:' })).map((d) => d.id), ['u:\ud83d\ude00']);
});

test('a query filter that is not JSON is invalid_input', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const circular = { a: 1 };
  circular.self = circular;
  await assert.rejects(db.query({ a: circular }), hasCode('invalid_input', /filter cannot be serialised/));
  await assert.rejects(db.query({ a: 1n }), hasCode('invalid_input', /BigInt/));
});

test('an empty channel name is refused, not taken for the default channel', () => {
  for (const options of [{ channelName: '' }, { channel: '' }]) {
    const db = new hearth.LocalFirst({ mode: 'ipc', ...options });
    assert.throws(() => db._client(), hasCode('EINVALID_CHANNEL'));
  }
});

test('client timeouts: Infinity is the longest; what is not a non-negative number is refused', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { timeout: Infinity, connectTimeout: Infinity, resumeTimeout: Infinity });
  await db.put('inf:1', { v: 1 }, { timeout: Infinity });
  assert.deepEqual(await db.get('inf:1', { timeout: Infinity }), { v: 1 });
  assert.deepEqual(await db.get('inf:1'), { v: 1 });
  for (const name of ['timeout', 'connectTimeout', 'resumeTimeout']) {
    for (const bad of ['10', -1, NaN, null]) {
      assert.throws(() => new hearth.LocalFirst({ mode: 'ipc', channelName: s.channel, [name]: bad }), hasCode('invalid_input', new RegExp(name)));
    }
  }
  assert.throws(() => new hearth.LocalFirst({ mode: 'ipc', channelName: s.channel, eventBuffer: 1.5 }), hasCode('invalid_input', /eventBuffer/));
});

test('a key the JSON parser of the server reserves is refused in puts, patches and batches; nothing else is hurt', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const key = '$serde_json::private::RawValue';
  await db.put('good', { name: 'Alice' });
  // Read back as stored it would be {"admin":true}, and a list that met it failed.
  await assert.rejects(db.put('evil:1', { [key]: '{"admin":true}' }), hasCode('invalid_input', /reserved.*rename the field/));
  await assert.rejects(db.put('evil:2', { a: [{ [key]: '[\\' }] }), hasCode('invalid_input', /reserved/));
  await assert.rejects(db.patch('good', { [key]: '1' }), hasCode('invalid_input', /reserved/));
  await assert.rejects(db.batch([{ op: 'put', id: 'evil:3', data: { [key]: '1' } }]), hasCode('invalid_input', /reserved/));
  assert.equal(await db.get('evil:1'), null);
  assert.deepEqual(await db.get('good'), { name: 'Alice' });
  assert.deepEqual((await db.list()).map((d) => d.id), ['good']);
});

test('a closed client fails with ECLOSED', needsServe, async (t) => {
  const s = await server(t);
  const db = new hearth.LocalFirst({ mode: 'ipc', channelName: s.channel });
  await db.put('c:1', { a: 1 });
  await db.close();
  await db.close(); // idempotent
  for (const p of [db.get('c:1'), db.put('c:2', {}), db.list(), db.call('a:b'), db.subscribe('a:*', () => {})]) {
    await assert.rejects(p, hasCode('ECLOSED', /closed/));
  }
  const w = db.watch();
  await assert.rejects(w.next(), hasCode('ECLOSED'));
});

test('a timeout too long for the clock means no timeout in practice, not a crash', needsServe, async (t) => {
  const s = await server(t);
  // Number.MAX_VALUE ms overflows a Rust Duration; 1e15 ms overflows
  // nothing but is 31,000 years. Both are kept as the longest timeout.
  const db = client(t, s.channel, { timeout: Number.MAX_VALUE, connectTimeout: 1e300 });
  await db.put('long:1', { v: 1 }, { timeout: 1e300 });
  assert.deepEqual(await db.get('long:1', { timeout: Number.MAX_VALUE }), { v: 1 });
  assert.deepEqual(await db.get('long:1', { timeout: 1e15 }), { v: 1 });
  const fast = client(t, s.channel, { fastPathBudget: 1e300 });
  assert.deepEqual(await fast.get('long:1'), { v: 1 });
});

test('an unknown handler is unknown_operation; bad options are invalid_input', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await assert.rejects(db.call('no:such:handler', {}), hasCode('unknown_operation'));
  await assert.rejects(db.get('x', { timeout: -1 }), hasCode('invalid_input', /timeout/));
  await assert.rejects(db.get('x', { signal: {} }), hasCode('invalid_input', /AbortSignal/));
  await assert.rejects(db.list({ limit: -3 }), hasCode('invalid_input', /limit/));
  await assert.rejects(db.query('type=User'), hasCode('invalid_input', /filter/));
  await assert.rejects(db.search(5), hasCode('invalid_input'));
  await assert.rejects(db.subscribe('a:*', 'not a function'), hasCode('invalid_input'));
  await assert.rejects(db.subscribe('a:**:b', () => {}), hasCode('invalid_input'));
  await assert.rejects(db.publish('a:*', {}), hasCode('invalid_input'));
});

test('the server going away is EDISCONNECTED; the client reconnects when it is back', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.put('k', { v: 1 });
  await s.stop();
  await assert.rejects(db.get('k'), (e) => ['EDISCONNECTED', 'ECHANNEL_NOT_FOUND'].includes(e.code) && e.protocolCode === 'unavailable');
  const again = await hearth.startServer({ channel: s.channel, dataDir: s.dataDir, logs: 'events' });
  t.after(() => again.stop());
  assert.deepEqual(await db.get('k'), { v: 1 });
});

test('every error is an Error with code and protocolCode', () => {
  const e = new hearth.HearthError('ECHANNEL_NOT_FOUND', 'no server');
  assert.ok(e instanceof Error);
  assert.equal(e.protocolCode, 'unavailable');
  assert.equal(new hearth.HearthError('too_large', 'x').protocolCode, 'too_large');
  assert.equal(new hearth.HearthError('ABORT_ERR', 'x').name, 'AbortError');
  assert.ok(hearth.PROTOCOL_CODES.includes('not_found'));
});
