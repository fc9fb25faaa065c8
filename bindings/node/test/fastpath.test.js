'use strict';
// The fast path never holds the event loop for a stalled server: point
// operations wait on the JavaScript thread only for a small budget, then
// come back as a pending promise, which the call's signal can still end.
// The server is frozen with SIGSTOP (a real process, not a mock) and thawed
// with SIGCONT. A long run of answers within the budget still lets the
// event loop turn every few milliseconds.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { hearth, server, client, needsServe } = require('./helpers');

/** The freezing needs procfs (Linux) and `hearth serve`. */
const LINUX = fs.existsSync('/proc/self/task') ? needsServe : { skip: 'needs /proc to see a frozen process' };

/** Resolves after `ms` on a timer: only if the event loop turns. */
const tick = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Freezes process `pid` and resolves once every one of its threads is
 * stopped (a signal reaches a thread running on another CPU a little
 * later), so that nothing it answers afterwards can come before the thaw.
 */
async function freeze(t, pid) {
  process.kill(pid, 'SIGSTOP');
  t.after(() => thaw(pid));
  const stopped = () =>
    fs.readdirSync(`/proc/${pid}/task`).every((tid) => {
      let stat;
      try {
        stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      } catch (e) {
        // A thread that ended since the listing runs no more.
        if (e.code === 'ENOENT' || e.code === 'ESRCH') return true;
        throw e;
      }
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
    });
  while (!stopped()) await tick(1);
}

function thaw(pid) {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // Already gone.
  }
}

/**
 * Awaits `call(i)` for i = 0, 1, … until a 0 ms timer set before the first
 * has fired (only if the event loop turned) or 100,000 calls were made;
 * whether it fired, and how many calls.
 */
async function callsUntilATimer(call) {
  let fired = false;
  setTimeout(() => (fired = true), 0);
  let calls = 0;
  while (!fired && calls < 100_000) {
    await call(calls);
    calls += 1;
  }
  return { fired, calls };
}

/** Tracks whether `promise` has settled. */
function track(promise) {
  const state = { settled: false, promise };
  promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

test('a call to a frozen server leaves the event loop turning and settles once it thaws', LINUX, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { timeout: 20_000 });
  await db.put('frozen:1', { a: 1 });
  await freeze(t, s.pid);
  // Were the call holding the thread until an answer, nothing below would
  // run before the 20 s timeout, and the call would fail with it.
  const get = track(db.get('frozen:1'));
  await tick(50);
  await tick(50);
  assert.equal(get.settled, false, 'a frozen server cannot have answered');
  thaw(s.pid);
  assert.deepEqual(await get.promise, { a: 1 });
});

test('subscribe() to a frozen server leaves the event loop turning while it waits, and settles once it thaws', LINUX, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { timeout: 20_000 });
  await db.ping();
  await freeze(t, s.pid);
  const got = [];
  const pending = track(db.subscribe('frozen:*', (payload) => got.push(payload)));
  // The subscription is set up off the JavaScript thread: timers run.
  await tick(0);
  assert.equal(pending.settled, false, 'subscribe() waits for the frozen server');
  thaw(s.pid);
  const sub = await pending.promise;
  assert.equal(await db.publish('frozen:one', 1), 1);
  for (let i = 0; got.length === 0 && i < 2000; i++) await tick(5);
  assert.deepEqual(got, [1]);
  await sub.unsubscribe();
});

test('connect() to a frozen server leaves the event loop turning while it waits, and resolves once it thaws', LINUX, async (t) => {
  const s = await server(t);
  await freeze(t, s.pid);
  const db = client(t, s.channel, { connectTimeout: 20_000 });
  const connecting = track(db.connect());
  await tick(0);
  assert.equal(connecting.settled, false, 'connect() waits for the frozen server');
  thaw(s.pid);
  await connecting.promise;
  assert.notEqual(db.transport, null);
  await db.put('thawed', { ok: true });
  assert.deepEqual(await db.get('thawed'), { ok: true });
});

test('calls made before the client connected connect off the thread: a frozen server leaves the event loop turning', LINUX, async (t) => {
  const s = await server(t);
  await freeze(t, s.pid);
  const db = client(t, s.channel, { connectTimeout: 20_000, timeout: 20_000 });
  // No connect(): each of these opens the connection (one for all of them).
  const put = track(db.put('first', { n: 1 }));
  const get = track(db.get('first'));
  const list = track(db.list({ prefix: 'fir' }));
  const docs = db.iterate({ prefix: 'fir' });
  const firstDoc = track(docs.next());
  await tick(0);
  for (const [name, p] of Object.entries({ put, get, list, firstDoc })) {
    assert.equal(p.settled, false, `${name} waits for the frozen server`);
  }
  assert.equal(db.transport, null, 'not connected yet');
  thaw(s.pid);
  assert.equal(typeof (await put.promise), 'number');
  // Sent in order on the one connection: the get and the list see the put.
  assert.deepEqual(await get.promise, { n: 1 });
  assert.deepEqual((await list.promise).map((d) => d.id), ['first']);
  assert.equal((await firstDoc.promise).value.id, 'first');
  await docs.return();
  assert.notEqual(db.transport, null);
});

test('a call made before connecting to a channel no server serves fails with ECHANNEL_NOT_FOUND, as a promise', needsServe, async (t) => {
  const db = client(t, `nobody-${process.pid}-${Date.now()}`, { connectTimeout: 200 });
  const put = db.put('x', { n: 1 });
  assert.ok(put instanceof Promise);
  await assert.rejects(put, (e) => e.code === 'ECHANNEL_NOT_FOUND');
  const docs = db.iterate();
  await assert.rejects(docs.next(), (e) => e.code === 'ECHANNEL_NOT_FOUND');
});

test('a call made once connected never overtakes one made before, still waiting for the connection', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const ready = db.connect();
  const first = db.put('k', { v: 1 }); // not connected yet: waits for it
  await ready;
  const second = db.put('k', { v: 2 }); // connected, but the first is not sent yet
  const read = db.get('k');
  const [s1, s2] = await Promise.all([first, second]);
  assert.ok(s1 < s2, `the first put was applied second (seq ${s1}, then ${s2})`);
  assert.deepEqual(await read, { v: 2 });
  assert.deepEqual(await db.get('k'), { v: 2 });
});

test('a watch() set up between two calls made before connecting leaves them in order', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  const first = db.put('k', { v: 1 });
  const changes = db.watch(); // connects on the thread, at once
  const second = db.put('k', { v: 2 });
  const read = db.get('k');
  const [s1, s2] = await Promise.all([first, second]);
  assert.ok(s1 < s2, `reordered: seq ${s1}, then ${s2}`);
  assert.deepEqual(await read, { v: 2 });
  await changes.return();
});

test('an iterate() made before connecting ends when the client closes while it connects', LINUX, async (t) => {
  const s = await server(t);
  await freeze(t, s.pid);
  const db = client(t, s.channel, { connectTimeout: 20_000 });
  const docs = db.iterate();
  const pending = track(docs.next());
  await tick(10);
  assert.equal(pending.settled, false, 'connecting to the frozen server');
  await db.close();
  thaw(s.pid);
  assert.deepEqual(await pending.promise, { value: undefined, done: true });
});

test("a call waiting for the connection keeps its own timeout and signal, and is never sent once it gave up", LINUX, async (t) => {
  const s = await server(t);
  await freeze(t, s.pid);
  const db = client(t, s.channel, { connectTimeout: 20_000 });
  const timedOut = track(db.put('late', { n: 1 }, { timeout: 50 }));
  const controller = new AbortController();
  const aborted = track(db.put('aborted', { n: 1 }, { signal: controller.signal }));
  const kept = track(db.put('kept', { n: 1 }));
  controller.abort();
  await assert.rejects(aborted.promise, (e) => e.code === 'ABORT_ERR');
  await assert.rejects(timedOut.promise, (e) => e.code === 'timeout' && /connection to the server was still opening/.test(e.message));
  assert.equal(kept.settled, false, 'a call with no timeout of its own still waits');
  thaw(s.pid);
  assert.equal(typeof (await kept.promise), 'number');
  // Neither of the calls that gave up was sent once the server thawed.
  assert.equal(await db.get('late'), null);
  assert.equal(await db.get('aborted'), null);
  assert.deepEqual(await db.get('kept'), { n: 1 });
});

test('every point operation that outlives its budget gives its usual result', LINUX, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { timeout: 20_000 });
  await db.put('gone', { x: 0 });
  await freeze(t, s.pid);
  // Issued in order on one connection while the server is frozen.
  const put = db.put('p', { n: 1 });
  const patch = db.patch('p', { m: 2 });
  const get = db.get('p');
  const missing = db.get('nobody');
  const del = db.delete('gone');
  const delMissing = db.delete('nobody');
  await tick(20);
  thaw(s.pid);
  const seq = await put;
  assert.equal(typeof seq, 'number');
  assert.ok((await patch) > seq);
  assert.deepEqual(await get, { n: 1, m: 2 });
  assert.equal(await missing, null);
  assert.equal(await del, true);
  assert.equal(await delMissing, false);
  // The connection goes on on the fast path.
  assert.deepEqual(await db.get('p'), { n: 1, m: 2 });
});

test('the other calls that outlive their budget give their usual results', LINUX, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { timeout: 20_000 });
  await db.put('m', { a: 1, text: 'findable words' });
  await freeze(t, s.pid);
  // Tracked at once: the call's rejection must find its handler in place.
  const [meta, batch, call, published, list, query, search] = [
    db.getWithMetadata('m'),
    db.batch([{ op: 'put', id: 'b1', data: { b: 1 } }]),
    db.call('no:such:handler', {}),
    db.publish('frozen:topic', { x: 1 }),
    db.list({ prefix: 'm' }),
    db.query({ a: 1 }),
    db.search('findable'),
  ].map(track);
  await tick(20);
  assert.equal(meta.settled, false, 'a frozen server cannot have answered');
  thaw(s.pid);
  const doc = await meta.promise;
  assert.deepEqual(doc.data, { a: 1, text: 'findable words' });
  assert.equal(typeof doc.metadata.seq, 'number');
  assert.deepEqual((await list.promise).map((d) => d.id), ['m']);
  assert.deepEqual((await query.promise).map((d) => d.id), ['m']);
  assert.deepEqual((await search.promise).map((h) => h.id), ['m']);
  const { firstSeq, lastSeq } = await batch.promise;
  assert.equal(firstSeq, lastSeq);
  await assert.rejects(call.promise, { code: 'unknown_operation' });
  assert.equal(await published.promise, 0);
  // And on the fast path again, answered at once.
  assert.deepEqual((await db.getWithMetadata('b1')).data, { b: 1 });
  assert.equal(await db.getWithMetadata('never'), null);
});

test('a call to a frozen server still ends at its timeout, with code timeout', LINUX, async (t) => {
  const s = await server(t);
  // Only the call under test is impatient: a loaded machine may keep a
  // fresh server from answering the setup within 300 ms.
  const db = client(t, s.channel, { timeout: 20_000 });
  await db.put('a', { a: 1 });
  await freeze(t, s.pid);
  await assert.rejects(db.get('a', { timeout: 300 }), (e) => e instanceof hearth.HearthError && e.protocolCode === 'timeout');
  thaw(s.pid);
  assert.deepEqual(await db.get('a'), { a: 1 });
});

test('closing the client ends a call that is waiting on a frozen server with ECLOSED', LINUX, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { timeout: 20_000 });
  await db.put('a', { a: 1 });
  await freeze(t, s.pid);
  const put = track(db.put('b', { b: 2 }));
  await tick(20);
  assert.equal(put.settled, false, 'a frozen server cannot have answered');
  await db.close();
  await assert.rejects(put.promise, (e) => e.code === 'ECLOSED');
  thaw(s.pid);
});

test('aborting the signal of calls waiting on a frozen server ends every one of them at once', LINUX, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel, { timeout: 20_000 });
  await db.put('a', { a: 1 });
  await freeze(t, s.pid);
  const ac = new AbortController();
  // One signal for all: each call went past its budget and waits off the
  // main thread.
  const calls = [
    db.get('a', { signal: ac.signal }),
    db.put('b', { b: 2 }, { signal: ac.signal }),
    db.delete('a', { signal: ac.signal }),
    db.getWithMetadata('a', { signal: ac.signal }),
    db.call('no:such:handler', {}, { signal: ac.signal }),
    db.list({ signal: ac.signal }),
  ].map(track);
  await tick(20);
  assert.ok(calls.every((c) => !c.settled), 'a frozen server cannot have answered');
  ac.abort(new Error('navigated away'));
  // Still frozen: only the abort can end them (else they would fail at
  // the 20 s timeout, with another error).
  for (const c of calls) {
    await assert.rejects(c.promise, (e) => e.name === 'AbortError' && e.code === 'ABORT_ERR' && e.cause.message === 'navigated away');
  }
  thaw(s.pid);
  assert.deepEqual(await db.get('b'), { b: 2 }, 'the put reached the server before the abort: it is applied');
});

test('a point call with a signal answered within its budget resolves, whatever the signal does next', needsServe, async (t) => {
  const s = await server(t);
  // A budget no answer can miss, even on a loaded machine.
  const db = client(t, s.channel, { fastPathBudget: 10_000 });
  await db.put('a', { a: 1 });
  const ac = new AbortController();
  const get = db.get('a', { signal: ac.signal });
  const put = db.put('b', { b: 2 }, { signal: ac.signal });
  ac.abort();
  assert.deepEqual(await get, { a: 1 });
  assert.equal(typeof (await put), 'number');
  // The signal is aborted now: a new call with it rejects before sending.
  await assert.rejects(db.get('a', { signal: ac.signal }), { name: 'AbortError' });
});

for (const [option, numeric] of [['fastPathBudget', '1'], ['fastPathTurnWait', '50']]) {
  test(`${option} must be a non-negative number of milliseconds`, () => {
    for (const bad of [-1, Number.NaN, Infinity, numeric, null]) {
      assert.throws(
        () => new hearth.LocalFirst({ mode: 'ipc', channelName: 'x', [option]: bad }),
        (e) => e.code === 'invalid_input' && new RegExp(option).test(e.message),
      );
    }
    // Zero is allowed: for the budget, every call that is not answered at
    // once goes async; for the turn wait, none waits past the budget.
    assert.doesNotThrow(() => new hearth.LocalFirst({ mode: 'ipc', channelName: 'x', [option]: 0 }));
  });
}

test('a call waits for its turn on the thread past the budget in a worker, never on the main thread', async () => {
  // The main thread's event loop is never held past the budget; a worker
  // thread's waits for its connection's turn stay on the thread (50 ms).
  const turnWait = (options) => new hearth.LocalFirst({ mode: 'ipc', channelName: 'x', ...options })._connect.turnWaitMs;
  assert.equal(turnWait({}), 0);
  assert.equal(turnWait({ fastPathTurnWait: 20 }), 20);
  const { Worker } = require('node:worker_threads');
  const inWorker = await new Promise((resolve, reject) => {
    const w = new Worker(
      `const { parentPort } = require('node:worker_threads');
       const hearth = require(${JSON.stringify(require.resolve('..'))});
       const db = new hearth.LocalFirst({ mode: 'ipc', channelName: 'x' });
       parentPort.postMessage(db._connect.turnWaitMs);`,
      { eval: true },
    );
    w.once('message', resolve);
    w.once('error', reject);
  });
  assert.equal(inWorker, 50);
});

test('point calls never throw: bad arguments and a closed client come back as rejected promises', needsServe, async (t) => {
  const s = await server(t);
  const db = client(t, s.channel);
  await db.put('ok', { a: 1 });
  /** Calls `f` and checks that it returned a promise (instead of throwing). */
  const settlesAs = async (f, code) => {
    let p;
    assert.doesNotThrow(() => {
      p = f();
    });
    assert.ok(p instanceof Promise, 'a promise');
    await assert.rejects(p, (e) => e.code === code);
  };
  for (const call of [
    () => db.put(5, {}),
    () => db.put('x', [1]),
    () => db.put('x', {}, 'options'),
    () => db.put('x', {}, { timeout: -1 }),
    () => db.patch('x', 'fields'),
    () => db.get(null),
    () => db.get('x', { timeout: 'soon' }),
    () => db.delete({}),
    () => db.delete('x', 7),
  ]) {
    await settlesAs(call, 'invalid_input');
  }
  // The good calls still work after the bad ones, with options or without.
  assert.deepEqual(await db.get('ok', { timeout: 1000 }), { a: 1 });
  assert.equal(typeof (await db.patch('ok', { b: 2 })), 'number');
  assert.equal(await db.delete('ok'), true);
  assert.equal(await db.get('ok'), null);
  await db.close();
  for (const call of [() => db.put('x', {}), () => db.patch('x', {}), () => db.get('x'), () => db.delete('x')]) {
    await settlesAs(call, 'ECLOSED');
  }
});

test('a long loop of awaited puts and gets lets timers run while it goes on', needsServe, async (t) => {
  const s = await server(t);
  // A budget no answer misses: no call comes back as a pending promise
  // (whose settling would turn the event loop by itself).
  const db = client(t, s.channel, { fastPathBudget: 10_000 });
  // Fast-path answers settle at once, so such a loop runs only microtasks
  // unless the calls themselves give the event loop a turn now and then
  // (every 2 ms of back-to-back calls by default).
  for (const [name, call] of [
    ['put', (i) => db.put(`loop:${i % 100}`, { i })],
    ['get', (i) => db.get(`loop:${i % 100}`)],
  ]) {
    const { fired, calls } = await callsUntilATimer(call);
    assert.ok(fired, `a timer fired during ${calls} awaited ${name} calls`);
  }
});

test('a subclass that wraps put and get sees each call once, across the turns the calls give the event loop', needsServe, async (t) => {
  const s = await server(t);
  class Counting extends hearth.LocalFirst {
    constructor(options) {
      super(options);
      this.calls = { put: 0, get: 0 };
    }
    put(id, data, options) {
      this.calls.put += 1;
      return super.put(id, data, options);
    }
    get(id, options) {
      this.calls.get += 1;
      return super.get(id, options);
    }
  }
  const db = new Counting({ mode: 'ipc', channelName: s.channel, fastPathBudget: 10_000 });
  t.after(() => db.close());
  for (const name of ['put', 'get']) {
    const { fired, calls } = await callsUntilATimer((i) => (name === 'put' ? db.put(`sub:${i % 100}`, { i }) : db.get(`sub:${i % 100}`)));
    assert.ok(fired, 'the event loop turned');
    assert.equal(db.calls[name], calls);
  }
});
