'use strict';
// watch() iterators and db.on("change"): every change after the call, in
// order, exactly once; prefix filters; replay from a sequence number; ending
// with break, close() and AbortSignal.

const test = require('node:test');
const assert = require('node:assert/strict');
const { hearth, server, client, channel, once, afterReconnect, needsServe } = require('./helpers');

test('watch yields every change after the call, in order', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.put('user:0', { before: true });
  const changes = db.watch({ prefix: 'user:' });
  await db.put('user:1', { name: 'Alice' });
  await db.put('other:1', { skipped: true });
  await db.patch('user:1', { email: 'a@example.com' });
  await db.delete('user:1');
  const got = [];
  for await (const c of changes) {
    got.push(c);
    if (got.length === 3) break;
  }
  assert.deepEqual(got.map((c) => [c.id, c.kind]), [['user:1', 'put'], ['user:1', 'patch'], ['user:1', 'delete']]);
  assert.deepEqual(got[0].data, { name: 'Alice' });
  assert.deepEqual(got[1].data, { email: 'a@example.com' });
  assert.equal(got[2].data, null);
  assert.ok(got[0].seq < got[1].seq && got[1].seq < got[2].seq);
  assert.match(got[0].hlc, /^\d+$/);
});

test('watch from a sequence number replays the change log', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  for (let i = 0; i < 5; i++) await db.put(`r:${i}`, { i });
  const w = db.watch({ fromSeq: 0 });
  const ids = [];
  for await (const c of w) {
    ids.push(c.id);
    if (ids.length === 5) break;
  }
  assert.deepEqual(ids, ['r:0', 'r:1', 'r:2', 'r:3', 'r:4']);
});

test('a burst of writes arrives complete and in order', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const w = db.watch({ prefix: 'burst:' });
  const n = 3000;
  const writes = (async () => {
    for (let i = 0; i < n; i++) await db.put(`burst:${i}`, { i });
  })();
  let expect = 0;
  for await (const c of w) {
    assert.equal(c.data.i, expect);
    expect += 1;
    if (expect === n) break;
  }
  await writes;
});

test('close() ends a pending watch', needsServe, async (t) => {
  const s = await server(t);
  const db = new hearth.LocalFirst({ channelName: s.channel });
  const w = db.watch();
  const pending = w.next();
  await db.close();
  assert.deepEqual(await pending, { value: undefined, done: true });
});

test('an AbortSignal ends a watch with AbortError', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const ac = new AbortController();
  const w = db.watch({ signal: ac.signal });
  const pending = w.next();
  ac.abort(new Error('user left'));
  await assert.rejects(pending, (e) => e.name === 'AbortError' && e.code === 'ABORT_ERR' && e.cause.message === 'user left');
  assert.deepEqual(await w.next(), { value: undefined, done: true });
});

test('on("change") delivers changes; removing the last listener stops the feed', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const seen = [];
  const listener = (c) => seen.push(c.id);
  db.on('change', listener);
  const first = once(db, 'change');
  await db.put('ev:1', { a: 1 });
  await first;
  const second = once(db, 'change');
  await db.put('ev:2', { a: 2 });
  await second;
  assert.deepEqual(seen, ['ev:1', 'ev:2']);
  db.off('change', listener);
  assert.equal(db._feed, null);
  await db.put('ev:3', { a: 3 });
  // Listening again starts from now: ev:3 is not replayed.
  const third = once(db, 'change');
  db.on('change', () => {});
  await db.put('ev:4', { a: 4 });
  const [change] = await third;
  assert.equal(change.id, 'ev:4');
});

test('on("change") outlives an outage longer than its resume timeout: reported once, then every later change, none twice', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { resumeTimeout: 200 });
  const seen = [];
  let wake = null;
  db.on('change', (c) => {
    seen.push(c.id);
    if (wake) wake();
  });
  const errors = [];
  const failed = once(db, 'error');
  db.on('error', (e) => errors.push(e.code));
  const arrived = (n) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${n} changes did not arrive within 20 s: ${seen}`)), 20_000);
      wake = () => seen.length >= n && (clearTimeout(timer), resolve());
      wake();
    });
  await db.put('out:1', { n: 1 });
  await arrived(1);
  await s.stop();
  await failed;
  // Down for a while longer, through a few failed restarts of the feed.
  await new Promise((r) => setTimeout(r, 1000));
  const again = await hearth.startServer({ channel: s.channel, dataDir: s.dataDir, logs: 'events' });
  t.after(() => again.stop());
  const writer = client(t, s.channel);
  await writer.put('out:2', { n: 2 });
  await writer.put('out:3', { n: 3 });
  await arrived(3);
  assert.deepEqual(seen, ['out:1', 'out:2', 'out:3']);
  assert.equal(errors.length, 1, `reported once: ${errors}`);
  assert.equal(db.listenerCount('change'), 1);
});

test('on("change") added before any server runs reports that once, then follows the server when it comes', needsServe, async (t) => {
  const ch = channel('early');
  const db = client(t, ch);
  const errors = [];
  const failed = once(db, 'error');
  db.on('error', (e) => errors.push(e.code));
  const seen = [];
  const arrived = new Promise((resolve) =>
    db.on('change', (c) => {
      seen.push(c.id);
      resolve();
    }),
  );
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('no "error" event within 20 s')), 20_000);
  });
  await Promise.race([failed, late]);
  clearTimeout(timer);
  assert.deepEqual(errors, ['ECHANNEL_NOT_FOUND']);
  const s = await server(t, { channel: ch });
  // The feed starts again on its own (250 ms, then longer); a write made
  // after it is in place reaches it.
  const writer = client(t, ch);
  for (let i = 0; seen.length === 0 && i < 400; i++) {
    await writer.put(`early:${i}`, { i });
    await Promise.race([arrived, new Promise((r) => setTimeout(r, 50))]);
  }
  assert.ok(seen.length > 0, 'a change arrived');
  assert.equal(errors.length, 1, `reported once: ${errors}`);
  assert.equal(s.channel, ch);
});

test('each change reaches on("change") as it comes, after idle gaps', needsServe, async (t) => {
  // After an idle gap a put's answer takes long enough that the JavaScript
  // thread sleeps for it; the reader that stepped aside for it must get
  // the ring back, or the change waits for the reader's 5 s safety net.
  const s = await server(t);
  const db = client(t, s.channel);
  let seen = null;
  db.on('change', (c) => seen && seen(c));
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const arrived = new Promise((resolve) => (seen = resolve));
    await db.put(`gap:${i}`, { i });
    let timer;
    const late = new Promise((resolve) => (timer = setTimeout(() => resolve(null), 4000)));
    const c = await Promise.race([arrived, late]);
    clearTimeout(timer);
    assert.ok(c, `change ${i} did not arrive within 4 s`);
    assert.equal(c.id, `gap:${i}`);
  }
});

test('watch resumes after the server restarts, without gaps', needsServe, async (t) => {
  const s = await server(t, { backoff: { initial: 10 } });
  const db = client(t, s.channel);
  const w = db.watch({ prefix: 'res:' });
  await db.put('res:1', { n: 1 });
  const it = w[Symbol.asyncIterator]();
  assert.equal((await it.next()).value.id, 'res:1');
  const restarted = once(s, 'restart');
  process.kill(s.pid, 'SIGKILL');
  await restarted;
  await afterReconnect(() => db.get('res:none'));
  await db.put('res:2', { n: 2 });
  assert.equal((await it.next()).value.id, 'res:2');
});

test('a topic subscription comes back after the server restarts', needsServe, async (t) => {
  const s = await server(t, { backoff: { initial: 10 } });
  const db = client(t, s.channel);
  const got = [];
  let wake = null;
  const sub = await db.subscribe('app:*', (payload, topic) => {
    got.push([topic, payload]);
    if (wake) wake();
  });
  const next = () =>
    new Promise((r) => {
      wake = r;
    });
  let arrived = next();
  assert.equal(await db.publish('app:one', 1), 1);
  await arrived;
  const lost = once(sub, 'lost');
  const back = once(sub, 'resubscribed');
  process.kill(s.pid, 'SIGKILL');
  const [why] = await lost;
  assert.equal(why.code, 'EDISCONNECTED');
  await back;
  arrived = next();
  await db.publish('app:two', 2);
  await arrived;
  assert.deepEqual(got.at(-1), ['app:two', 2]);
  assert.deepEqual(got[0], ['app:one', 1]);
  await sub.unsubscribe();
  assert.equal(await db.publish('app:three', 3), 0);
});
