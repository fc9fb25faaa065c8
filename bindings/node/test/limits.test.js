'use strict';
// The longest request a client sends is the server's: `hearth serve
// --max-message-bytes` raises it, the server says it in the handshake, and
// a client with nothing set sends up to it. Past it, a request is refused
// before anything is sent (`too_large`, naming the server's limit) and the
// connection goes on.

const test = require('node:test');
const assert = require('node:assert/strict');
const { hearth, server, client, needsServe } = require('./helpers');

const MiB = 1024 * 1024;

function hasCode(code, pattern) {
  return (e) => {
    assert.ok(e instanceof hearth.HearthError, `a HearthError: ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

test('a server started with --max-message-bytes 40 MiB takes 33 MiB publishes, calls and documents from a client with nothing set', needsServe, async (t) => {
  const s = await server(t, { args: ['--max-message-bytes', String(40 * MiB), '--max-doc-bytes', String(40 * MiB)] });
  const db = client(t, s.channel);
  const blob = 'n'.repeat(33 * MiB);

  let delivered;
  const arrived = new Promise((resolve) => {
    delivered = resolve;
  });
  const sub = await db.subscribe('big:*', (payload) => delivered(payload));
  t.after(() => sub.unsubscribe());
  assert.equal(await db.publish('big:one', { blob }), 1);
  assert.equal((await arrived).blob.length, 33 * MiB, 'the 33 MiB event came back');

  // The call reaches the server, which has no such handler: not too_large.
  await assert.rejects(db.call('no:handler', { blob }), hasCode('unknown_operation', /no handler named "no:handler"/));

  await db.put('big:doc', { blob });
  assert.equal((await db.get('big:doc')).blob.length, 33 * MiB);

  // Past the server's limit: refused before sending, naming it.
  const over = 'o'.repeat(40 * MiB);
  await assert.rejects(db.publish('big:two', { blob: over }), hasCode('too_large', /40 MiB .*the server takes.*nothing was sent/));
  await db.put('after', { ok: 1 });
  assert.deepEqual(await db.get('after'), { ok: 1 });
});

test('a default server still takes no more than 32 MiB: a 33 MiB publish is too_large before anything is sent', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const blob = 'd'.repeat(33 * MiB);
  await assert.rejects(db.publish('big:one', { blob }), hasCode('too_large', /32 MiB .*the server takes.*nothing was sent.*--max-message-bytes/));
  await assert.rejects(db.put('big:doc', { blob }), hasCode('too_large', /32 MiB/));
  assert.equal(await db.publish('big:small', { n: 1 }), 0);
});
