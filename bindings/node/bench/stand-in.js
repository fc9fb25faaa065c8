'use strict';
// A stand-in for many Node clients taking turns, without hearth: what
// `bench/processes.js --stand-in` sets beside hearth's sixteen-against-one,
// in the same run. N clients pass a token round a ring, each to the next
// — processes through a ring of FIFOs, or (`threads`) worker threads of
// one process through a ring of words in shared memory
// (`Atomics.wait`/`notify`) — so that a change of turn is one wake-up of
// one blocked thread, the cheapest there is. The holder makes calls for a
// slice (8 ms, as a Node client's turn on the server: TURN_SLICE ×
// BUDGETED_SLICES in crates/hearth-ipc/src/server/turns.rs), each a get's
// JavaScript — a key, a fresh JSON text parsed, a settled promise awaited
// — and a spin of SPIN_US for the round trip; a process spinning for ever
// holds the other core, as the server's poller does. With one client the
// token comes back to its holder at once. Its sixteen ÷ one is what turns
// alone cost sixteen V8 clients on this machine: whatever hearth's
// sixteen lose beyond it is the protocol's.
// Nothing here talks to hearth, and nothing fails on time.
//
// Used as a module (`standIn`); run as `node stand-in.js --child DIR I N`
// or `--spin` it is one of the processes, and as a worker thread one of
// the threads.

const { execFileSync, fork } = require('node:child_process');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** How long a holder keeps the token. */
const SLICE_MS = 8;
/** How long a call spins in place of the round trip (µs). */
const SPIN_US = 1;
/** The warm-up: this many 1 ms slices before the clock starts. */
const WARM_SLICES = 200;
const DOCS = 100;

/** FIFO `i` of the ring in `dir`: client `i` waits on it for the token. */
const tokenPath = (dir, i) => path.join(dir, `token-${i}`);

/**
 * One stand-in client: warms up, says so (`send`), waits for the end
 * instant (`onStart`), then takes its turns — `take` blocks until the
 * token is its, `pass` hands it to the next client — and sends how many
 * calls it made.
 */
function client({ take, pass, send, onStart }) {
  let n = 0;
  const get = (i) => {
    const key = `doc:${i % DOCS}`;
    const t0 = performance.now();
    while (performance.now() - t0 < SPIN_US / 1000);
    return Promise.resolve(JSON.parse(`{"id":"${key}","n":${i % DOCS},"name":"document"}`));
  };
  const slice = async (end) => {
    do {
      for (let j = 0; j < 64; j++) await get(n++);
    } while (performance.now() < end);
  };
  // Every client takes at least one turn, even one whose first comes
  // after the end (a loaded machine): it then still reports a rate.
  const turns = async (until) => {
    for (let taken = 0; ; taken++) {
      take();
      const over = taken > 0 && Date.now() >= until;
      if (!over) await slice(performance.now() + SLICE_MS);
      pass();
      if (over) break;
    }
    send({ n });
  };
  (async () => {
    for (let i = 0; i < WARM_SLICES; i++) await slice(performance.now() + 1);
    n = 0;
    onStart(turns);
    send({ ready: true });
  })();
}

/** Stand-in client process `i` of `count`, its ring of FIFOs in `dir`. */
function processClient(dir, i, count) {
  // Both ends open read-write: neither open blocks, and a write to a
  // client that has already gone never fails.
  const mine = fs.openSync(tokenPath(dir, i), 'r+');
  const next = fs.openSync(tokenPath(dir, (i + 1) % count), 'r+');
  const token = Buffer.alloc(1);
  client({
    take: () => fs.readSync(mine, token, 0, 1, null),
    pass: () => fs.writeSync(next, token),
    send: (m) => process.send(m, () => m.n !== undefined && process.exit(0)),
    onStart: (turns) => process.once('message', (m) => turns(m.until)),
  });
}

/** Stand-in client thread `i` of `count`: word `i` of `ring` is 1 while the token is its. */
function threadClient(ring, i, count) {
  const next = (i + 1) % count;
  client({
    take: () => {
      Atomics.wait(ring, i, 0);
      Atomics.store(ring, i, 0);
    },
    pass: () => {
      Atomics.store(ring, next, 1);
      Atomics.notify(ring, next, 1);
    },
    send: (m) => parentPort.postMessage(m),
    onStart: (turns) => parentPort.once('message', (m) => turns(m.until)),
  });
}

/**
 * Runs `count` stand-in clients — processes, or with `threads` worker
 * threads of this process — for `secs` seconds (after every one has
 * warmed up) beside a spinning process; resolves with their calls a
 * second in all and each one's.
 */
async function standIn(count, secs, { threads = false } = {}) {
  const spinner = fork(__filename, ['--spin'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let dir = null;
  let first = null;
  let kids;
  let start;
  if (threads) {
    const ring = new Int32Array(new SharedArrayBuffer(4 * count));
    kids = Array.from({ length: count }, (_, i) => new Worker(__filename, { workerData: { ring, i, count } }));
    start = () => {
      Atomics.store(ring, 0, 1);
      Atomics.notify(ring, 0, 1);
    };
  } else {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-stand-in-'));
    execFileSync('mkfifo', Array.from({ length: count }, (_, i) => tokenPath(dir, i)));
    kids = Array.from({ length: count }, (_, i) =>
      fork(__filename, ['--child', dir, String(i), String(count)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
    );
    first = fs.openSync(tokenPath(dir, 0), 'r+');
    start = () => fs.writeSync(first, Buffer.from('t'));
  }
  const tell = (k, m) => (threads ? k.postMessage(m) : k.send(m));
  try {
    const failed = new Promise((_, reject) => {
      for (const k of kids) {
        k.once('error', reject);
        k.once('exit', (code) => code !== 0 && reject(new Error(`a stand-in client exited with ${code}`)));
      }
    });
    await Promise.race([Promise.all(kids.map((k) => new Promise((ok) => k.once('message', ok)))), failed]);
    const done = kids.map((k) => new Promise((ok) => k.once('message', (m) => ok(m.n))));
    const until = Date.now() + secs * 1000;
    for (const k of kids) tell(k, { until });
    start();
    const each = await Promise.race([Promise.all(done), failed]);
    return { total: each.reduce((a, b) => a + b, 0) / secs, each: each.map((x) => x / secs) };
  } finally {
    spinner.kill('SIGKILL');
    for (const k of kids) {
      if (threads) k.terminate();
      else if (k.exitCode === null) k.kill('SIGKILL');
    }
    if (first !== null) fs.closeSync(first);
    if (dir !== null) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (!isMainThread && workerData?.ring) threadClient(workerData.ring, workerData.i, workerData.count);
else if (require.main === module) {
  if (process.argv[2] === '--child') processClient(process.argv[3], Number(process.argv[4]), Number(process.argv[5]));
  else if (process.argv[2] === '--spin') for (;;);
}

module.exports = { standIn, SLICE_MS, SPIN_US };
