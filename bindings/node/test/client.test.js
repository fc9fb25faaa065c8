'use strict';
// Round trips of every LocalFirst operation against a real `hearth serve`.

const test = require('node:test');
const assert = require('node:assert/strict');
const { hearth, server, client, channel, needsServe } = require('./helpers');

test('put, get, patch, delete, getWithMetadata', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const seq = await db.put('user:1', { type: 'User', name: 'Alice', email: 'alice@example.com' });
  assert.equal(typeof seq, 'number');
  assert.ok(seq >= 1);
  assert.deepEqual(await db.get('user:1'), { type: 'User', name: 'Alice', email: 'alice@example.com' });
  assert.equal(await db.get('user:404'), null);

  const seq2 = await db.patch('user:1', { email: 'alice@example.org', type: null });
  assert.ok(seq2 > seq);
  assert.deepEqual(await db.get('user:1'), { name: 'Alice', email: 'alice@example.org' });

  const meta = await db.getWithMetadata('user:1');
  assert.equal(meta.id, 'user:1');
  assert.equal(meta.metadata.seq, seq2);
  assert.equal(meta.metadata.deleted, false);
  assert.equal(typeof meta.metadata.hlc, 'string');
  assert.match(meta.metadata.hlc, /^\d+$/);

  assert.equal(await db.delete('user:1'), true);
  assert.equal(await db.delete('user:1'), false);
  assert.equal(await db.get('user:1'), null);
  const tomb = await db.getWithMetadata('user:1');
  assert.equal(tomb.data, null);
  assert.equal(tomb.metadata.deleted, true);
  assert.equal(await db.getWithMetadata('never'), null);
  assert.ok(['socket', 'shm'].includes(db.transport), db.transport);
});

test('the reference usage: list() gives [{id, data}] so users[0].data.name works', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { mode: 'auto' });
  await db.put('user:1', { type: 'User', name: 'Alice' });
  await db.put('user:2', { type: 'User', name: 'Bob' });
  await db.put('note:1', { type: 'Note', text: 'alice likes local-first software' });
  const users = await db.list({ prefix: 'user:' });
  assert.equal(users.length, 2);
  assert.equal(users[0].data.name, 'Alice');
  assert.deepEqual(users.map((u) => u.id), ['user:1', 'user:2']);
  assert.equal(users.cursor, null);
  assert.equal((await db.list()).length, 3);
  const notes = await db.list({ type: 'Note' });
  assert.deepEqual(notes.map((d) => d.id), ['note:1']);
});

test('list pages with limit and cursor', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  for (let i = 0; i < 25; i++) await db.put(`n:${String(i).padStart(2, '0')}`, { i });
  const seen = [];
  let cursor = null;
  for (;;) {
    const page = await db.list({ prefix: 'n:', limit: 10, cursor });
    seen.push(...page.map((d) => d.data.i));
    if (page.cursor === null) break;
    cursor = page.cursor;
  }
  assert.deepEqual(seen, [...Array(25).keys()]);
});

test('iterate streams a list in chunks', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.batch([...Array(600).keys()].map((i) => ({ op: 'put', id: `it:${String(i).padStart(4, '0')}`, data: { i } })));
  let count = 0;
  let last = -1;
  for await (const doc of db.iterate({ prefix: 'it:' })) {
    assert.equal(doc.data.i, last + 1);
    last = doc.data.i;
    count += 1;
  }
  assert.equal(count, 600);
  const limited = db.iterate({ prefix: 'it:', limit: 5 });
  const ids = [];
  for await (const doc of limited) ids.push(doc.id);
  assert.equal(ids.length, 5);
  assert.equal(limited.cursor, 'it:0004');
  // Breaking out early ends the stream.
  for await (const doc of db.iterate({ prefix: 'it:' })) {
    assert.ok(doc);
    break;
  }
});

test('query and search', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.put('u:1', { type: 'User', name: 'Alice Smith', age: 30 });
  await db.put('u:2', { type: 'User', name: 'Bob Jones', age: 30 });
  await db.put('u:3', { type: 'User', name: 'Carol Smith', age: 41 });
  const thirty = await db.query({ type: 'User', age: 30 });
  assert.deepEqual(thirty.map((d) => d.id), ['u:1', 'u:2']);
  const one = await db.query({ age: 30 }, { limit: 1 });
  assert.equal(one.length, 1);
  assert.equal(one.cursor, 'u:1');
  const hits = await db.search('smith');
  assert.deepEqual(hits.map((h) => h.id).sort(), ['u:1', 'u:3']);
  assert.ok(hits.every((h) => typeof h.score === 'number' && h.data.name.includes('Smith')));
  assert.equal((await db.search('smith', { limit: 1 })).length, 1);
  assert.deepEqual(await db.search('nobody'), []);
});

test('batch applies all writes atomically', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.put('b:gone', { x: 1 });
  const r = await db.batch([
    { op: 'put', id: 'b:1', data: { n: 1 } },
    { op: 'patch', id: 'b:1', fields: { m: 2 } },
    { op: 'delete', id: 'b:gone' },
  ]);
  assert.equal(r.lastSeq - r.firstSeq, 2);
  assert.deepEqual(await db.get('b:1'), { n: 1, m: 2 });
  assert.equal(await db.get('b:gone'), null);
  await assert.rejects(db.batch([{ op: 'put', id: 'b:2', data: {} }, { op: 'zap', id: 'b:3' }]), (e) => {
    assert.equal(e.code, 'invalid_input');
    assert.match(e.message, /batch operation 1/);
    return true;
  });
  assert.equal(await db.get('b:2'), null);
});

test('stats, ping, changesSince', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.ping();
  await db.put('c:1', { a: 1 });
  await db.patch('c:1', { b: 2 });
  const stats = await db.stats();
  assert.ok(stats.store && stats.server);
  assert.ok(stats.server.connections >= 1);
  const changes = await db.changesSince(0);
  assert.deepEqual(changes.map((c) => [c.id, c.kind]), [['c:1', 'put'], ['c:1', 'patch']]);
  assert.deepEqual(changes[1].data, { b: 2 });
});

test('point operations also run off the main thread (fastPath: false) and with large documents', needsServe, async (t) => {
  const s = await server(t);
  const slow = client(t, s.channel, { fastPath: false });
  await slow.put('s:1', { v: 1 });
  assert.deepEqual(await slow.get('s:1'), { v: 1 });
  await slow.patch('s:1', { w: 2 });
  assert.equal(await slow.delete('s:1'), true);
  const db = client(t, s.channel);
  const big = { text: 'x'.repeat(1024 * 1024) };
  await db.put('big:1', big);
  assert.deepEqual(await db.get('big:1'), big);
});

test('two clients see each other\'s writes', needsServe, async (t) => {
  const s = await server(t);
  const a = client(t, s.channel);
  const b = client(t, s.channel);
  await a.put('shared:1', { from: 'a' });
  assert.deepEqual(await b.get('shared:1'), { from: 'a' });
});

test('mode "network" fails with unavailable naming the missing piece', async () => {
  const db = new hearth.LocalFirst({ mode: 'network', channelName: channel() });
  await assert.rejects(db.get('x'), (e) => {
    assert.equal(e.code, 'unavailable');
    assert.equal(e.protocolCode, 'unavailable');
    assert.match(e.message, /hearth-http/);
    return true;
  });
  await db.close();
});

test('mode "auto" with no server says no server answered on the channel', async () => {
  const ch = channel();
  const db = new hearth.LocalFirst({ mode: 'auto', channelName: ch });
  await assert.rejects(db.put('x', {}), (e) => {
    assert.equal(e.code, 'ECHANNEL_NOT_FOUND');
    assert.equal(e.protocolCode, 'unavailable');
    assert.match(e.message, new RegExp(`no hearth server answered on channel "${ch}"`));
    assert.match(e.message, /hearth serve/);
    return true;
  });
  await db.close();
});

test('mode "ipc" with no server: ECHANNEL_NOT_FOUND saying how to start one', async () => {
  const db = new hearth.LocalFirst({ mode: 'ipc', channelName: channel() });
  await assert.rejects(db.get('x'), { code: 'ECHANNEL_NOT_FOUND', name: 'HearthError' });
  await assert.rejects(db.connect(), /hearth serve --ipc --channel/);
  await db.close();
});

test('bad options are refused at once', () => {
  assert.throws(() => new hearth.LocalFirst({ mode: 'fast' }), { code: 'invalid_input' });
  assert.throws(() => new hearth.LocalFirst(null), { code: 'invalid_input' });
});

test('a bad channel name is EINVALID_CHANNEL', async () => {
  const db = new hearth.LocalFirst({ mode: 'ipc', channelName: '../etc' });
  await assert.rejects(db.get('x'), { code: 'EINVALID_CHANNEL', protocolCode: 'invalid_input' });
});

test('PluresDBLocalFirst from hearth/local-first is LocalFirst', () => {
  const lf = require('hearth/local-first');
  assert.equal(lf.PluresDBLocalFirst, hearth.LocalFirst);
  assert.equal(lf.LocalFirst, hearth.LocalFirst);
});

test('shared memory by default on Linux; HEARTH_TRANSPORT=socket forces the socket', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.connect();
  if (process.platform === 'linux') assert.equal(db.transport, 'shm');
  const saved = process.env.HEARTH_TRANSPORT;
  process.env.HEARTH_TRANSPORT = 'socket';
  try {
    const viaSocket = client(t, s.channel);
    await viaSocket.put('t:1', { v: 1 });
    assert.equal(viaSocket.transport, 'socket');
    assert.deepEqual(await db.get('t:1'), { v: 1 });
  } finally {
    if (saved === undefined) delete process.env.HEARTH_TRANSPORT;
    else process.env.HEARTH_TRANSPORT = saved;
  }
});
