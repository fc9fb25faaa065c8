'use strict';
// A stand-in for sixteen Node clients taking turns, without hearth: what
// `bench/processes.js --stand-in` sets beside hearth's sixteen-against-one,
// in the same run. N processes pass a one-byte token round a ring of
// FIFOs, each to the next (a change of turn is one wake-up of one blocked
// thread: the cheapest there is between processes); the holder makes calls for a slice (8 ms, as a
// Node client's turn on the server: TURN_SLICE × BUDGETED_SLICES in
// crates/hearth-ipc/src/server/turns.rs), each a get's JavaScript — a
// key, a fresh JSON text parsed, a settled promise awaited — and a spin of
// SPIN_US for the round trip; a process spinning for ever holds the other
// core, as the server's poller does. With one process the token comes
// back to its holder at once. Its sixteen ÷ one is what turns alone cost
// sixteen V8 processes on this machine: whatever hearth's sixteen lose
// beyond it is the protocol's.
// Nothing here talks to hearth, and nothing fails on time.
//
// Used as a module (`standIn`); run as `node stand-in.js --child DIR I N`
// or `--spin` it is one of the processes.

const { execFileSync, fork } = require('node:child_process');
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
 * Stand-in client `i` of `count`: warms up, tells the parent, waits for
 * the end instant, then takes its turns — the token from its own FIFO,
 * passed on to the next client's.
 */
function child(dir, i, count) {
  // Both ends open read-write: neither open blocks, and a write to a
  // client that has already gone never fails.
  const mine = fs.openSync(tokenPath(dir, i), 'r+');
  const next = fs.openSync(tokenPath(dir, (i + 1) % count), 'r+');
  const token = Buffer.alloc(1);
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
      fs.readSync(mine, token, 0, 1, null);
      const over = taken > 0 && Date.now() >= until;
      if (!over) await slice(performance.now() + SLICE_MS);
      fs.writeSync(next, token);
      if (over) break;
    }
    process.send({ n }, () => process.exit(0));
  };
  (async () => {
    for (let i = 0; i < WARM_SLICES; i++) await slice(performance.now() + 1);
    n = 0;
    process.once('message', (m) => turns(m.until));
    process.send({ ready: true });
  })();
}

/**
 * Runs `count` stand-in clients for `secs` seconds (after every one has
 * warmed up) beside a spinning process; resolves with their calls a
 * second in all and each one's.
 */
async function standIn(count, secs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-stand-in-'));
  execFileSync('mkfifo', Array.from({ length: count }, (_, i) => tokenPath(dir, i)));
  const spinner = fork(__filename, ['--spin'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const kids = Array.from({ length: count }, (_, i) =>
    fork(__filename, ['--child', dir, String(i), String(count)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  const first = fs.openSync(tokenPath(dir, 0), 'r+');
  try {
    const failed = new Promise((_, reject) => {
      for (const k of kids) k.once('exit', (code) => code !== 0 && reject(new Error(`a stand-in client exited with ${code}`)));
    });
    await Promise.race([Promise.all(kids.map((k) => new Promise((ok) => k.once('message', ok)))), failed]);
    const done = kids.map((k) => new Promise((ok) => k.once('message', (m) => ok(m.n))));
    const until = Date.now() + secs * 1000;
    for (const k of kids) k.send({ until });
    fs.writeSync(first, Buffer.from('t'));
    const each = await Promise.race([Promise.all(done), failed]);
    return { total: each.reduce((a, b) => a + b, 0) / secs, each: each.map((x) => x / secs) };
  } finally {
    spinner.kill('SIGKILL');
    for (const k of kids) if (k.exitCode === null) k.kill('SIGKILL');
    fs.closeSync(first);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  if (process.argv[2] === '--child') child(process.argv[3], Number(process.argv[4]), Number(process.argv[5]));
  else if (process.argv[2] === '--spin') for (;;);
}

module.exports = { standIn, SLICE_MS, SPIN_US };
