#!/usr/bin/env node
'use strict';
// Many Node clients, one server: the throughput of sequential
// `await db.get(...)` and `await db.put(...)` calls made by 1, 4 and 16
// client processes at once (each one connection, one call in flight), as
// the windows, workers and helper processes of an app would make them —
// or, with --threads, by as many worker threads of one process (each its
// own connection), as an app's worker pool would. Every client connects,
// warms up (both phases' own code: WARM_BATCHES), and starts at the same
// instant; gets run for --secs seconds,
// then puts. As in `hearth bench` (hearth_ipc::bench), the puts rewrite
// the same 1000 ids whatever the number of clients, split among them, and
// every count starts with the store's applier caught up (a query waits for
// it), so that the store does the same work per put with 1 or 16 clients
// and no count materialises the backlog of the one before or of its
// warm-up: the ratios
// compare the clients and the transport, not the store's applier. Prints
// the total per phase, each count's ratio to one client, and the slowest
// and fastest client's rate.
// --budget MS gives every client that fastPathBudget (default: the
// client's own, 1 ms): how long a call waits on the client's thread before
// its answer comes through the event loop instead; --turn-wait MS that
// fastPathTurnWait (default: 50 ms in a worker thread, 0 in a process's
// main thread): how long past the budget it goes on waiting there while
// the server answers it only in its turn.
//
// --rounds R runs the whole list of counts R times over (1, 16, 1, 16, …)
// and gives each count's medians, its ratio to one client as the median of
// the rounds' own ratios (each against the one-client row of its round, a
// few seconds apart) and their range: on a shared machine one run's rates
// move by a sixth from run to run, and a ratio whose two sides ran seconds
// apart is steadier than two rows minutes apart.
//
// --latency also times every call and prints, per count, the median
// client's p50, p99 and p99.9 and the slowest call of any client: what
// waiting for a turn among many busy clients costs a call (timing each
// call costs the clients a little throughput, so compare rates without it).
//
// --turns records when each answer came (one clock for all the clients)
// and prints, per count and phase, how the answers came in turns (a turn:
// 50 or more answers in a row to one client): the turns a second and
// their median length, the share of the phase between turns and the
// median change, the share in pauses of 50 µs or more within turns, and a
// call's mean time within a turn — the parts a 16 ÷ 1 below 1 is made of
// (bench/common.js, turnSpread). Recording costs the clients a little
// throughput, as --latency does.
//
// --stand-in also runs, after each count's clients, as many clients of
// bench/stand-in.js (processes, or with --threads worker threads) —
// clients taking 8 ms turns without hearth, a token passed between them,
// a get's JavaScript and a 1 µs spin per call — and prints their calls a
// second and their own 16 ÷ 1: what turns alone cost that many V8
// clients on this machine, in the same run.
//
// Usage: node bench/processes.js [--procs 1,4,16] [--secs 3] [--rounds R] [--threads] [--budget MS] [--turn-wait MS] [--latency] [--turns] [--stand-in] [--json]
// Set HEARTH_TRANSPORT=socket to measure the socket transport instead.
// Informational: nothing here fails on time.

const { fork } = require('node:child_process');
const { Worker, isMainThread, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const { PAUSE_MS, TURN_ANSWERS, Times, machine, median, numberOption, putShare, runtimeDir, turnSpread } = require('./common');
const { SLICE_MS, SPIN_US, standIn } = require('./stand-in');

const args = process.argv.slice(2);
function option(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
}
const PROCS = option('--procs', '1,4,16')
  .split(',')
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0);
const SECS = Number(option('--secs', 3));
const JSON_OUT = args.includes('--json');
const THREADS = args.includes('--threads');
const KIND = THREADS ? 'threads' : 'processes';
const BUDGET = args.includes('--budget') ? msOption('--budget', 'fastPathBudget') : undefined;
const TURN_WAIT = args.includes('--turn-wait') ? msOption('--turn-wait', 'fastPathTurnWait') : undefined;
const ROUNDS = args.includes('--rounds') ? roundsOption() : 1;
const LATENCY = args.includes('--latency');
const TURNS = args.includes('--turns');
const STAND_IN = args.includes('--stand-in');
const DOCS = 100;
// Each client's warm-up: this many batches of 256 calls of each phase's
// own code (the phase loop and its call), so that V8 has compiled them
// before the clock starts. Warmed with 2000 gets through other code, each
// of sixteen processes compiled its loops during its first turns of the
// measured seconds, sixteen times what one process pays: sixteen of
// bench/stand-in.js's processes made 0.87–0.90× of one's calls with their
// loops left cold the same way, ~0.97× with them warmed
// (docs/performance.md).
const WARM_BATCHES = 40;

/** --rounds: a whole number of rounds, 1 or more, else exit 2. */
function roundsOption() {
  return numberOption(args, '--rounds', (n) => Number.isInteger(n) && n >= 1, 'a whole number of rounds, 1 or more (each runs every count of --procs once)');
}

/** An option's value: a non-negative number of milliseconds, else exit 2. */
function msOption(name, what) {
  return numberOption(args, name, (ms) => Number.isFinite(ms) && ms >= 0, `a non-negative number of milliseconds (the clients' ${what})`);
}

/**
 * A child: one connection, a warm-up, then — once `ready` (told the
 * parent it is warm) resolves with the instant every client starts at —
 * gets and puts for SECS each.
 */
async function child(channel, who, count, ready) {
  const { LocalFirst } = require('..');
  const db = new LocalFirst({ mode: 'ipc', channelName: channel, fastPathBudget: BUDGET, fastPathTurnWait: TURN_WAIT });
  await db.connect();
  // Every client makes at least one batch of 256 calls, even one kept off
  // its core until after the phase's end (a loaded machine): it then still
  // reports a rate, made of at most one batch past the end.
  const phase = async (until, call) => {
    let n = 0;
    if (TURNS) {
      let ends = new Float64Array(1 << 16);
      do {
        for (let j = 0; j < 256; j++) {
          await call(n);
          if (n === ends.length) {
            const more = new Float64Array(ends.length * 2);
            more.set(ends);
            ends = more;
          }
          ends[n++] = performance.now();
        }
      } while (Date.now() < until);
      return { n, latency: null, ends: ends.slice(0, n) };
    }
    if (!LATENCY) {
      do {
        for (let j = 0; j < 256; j++) await call(n++);
      } while (Date.now() < until);
      return { n, latency: null };
    }
    const took = new Times();
    do {
      for (let j = 0; j < 256; j++) {
        const t = performance.now();
        await call(n++);
        took.add((performance.now() - t) * 1000);
      }
    } while (Date.now() < until);
    return { n, latency: took.latency() };
  };
  const getOne = (n) => db.get(`doc:${n % DOCS}`);
  const ids = putShare(who, count);
  const putOne = (n) => db.put(ids[n % ids.length], { value: n });
  // Warm-up: both phases' own code, WARM_BATCHES batches each, so that V8
  // has compiled it before the clock starts (phase(0, …) is one batch).
  for (let i = 0; i < WARM_BATCHES; i++) await phase(0, getOne);
  for (let i = 0; i < WARM_BATCHES; i++) await phase(0, putOne);
  const startAt = await ready();
  while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
  const got = await phase(startAt + SECS * 1000, getOne);
  // Puts start together too: the slowest child's last get batch ends a
  // little after the get phase.
  const putAt = startAt + SECS * 1000 + 200;
  while (Date.now() < putAt) await new Promise((r) => setTimeout(r, 1));
  const put = await phase(putAt + SECS * 1000, putOne);
  const transport = db.transport;
  // What the client took (LocalFirst's own fields: what it applies).
  const budget = db._budgetMs;
  const turnWait = db._connect.turnWaitMs;
  await db.close();
  const ends = TURNS ? { origin: performance.timeOrigin, gets: got.ends, puts: put.ends } : undefined;
  return { gets: got.n, puts: put.n, getLatency: got.latency, putLatency: put.latency, transport, budget, turnWait, ends };
}

/**
 * How one phase's answers came in turns (turnSpread), from each client's
 * answer times on its own clock (`performance.now()` from its
 * `timeOrigin`) brought onto one.
 */
function turnsOf(results, key) {
  const base = Math.min(...results.map((r) => r.ends.origin));
  return turnSpread(results.map((r) => r.ends[key].map((t) => t + (r.ends.origin - base))));
}

/**
 * Many rounds' turn spreads as one: each figure the median of the rounds'
 * (null where no round had one).
 */
function turnsOfMany(each) {
  const known = each.filter((s) => s !== null);
  if (known.length === 0) return null;
  const mid = (k) => {
    const xs = known.map((s) => s[k]).filter((x) => x !== null);
    return xs.length === 0 ? null : median(xs);
  };
  return Object.fromEntries(Object.keys(known[0]).map((k) => [k, mid(k)]));
}

/**
 * Many clients' (or rounds') call times as one figure: the median one's
 * p50, p99 and p99.9, and the slowest call of any (null without any).
 */
function latencyOfMany(each) {
  const known = each.filter((l) => l !== null);
  if (known.length === 0) return null;
  const mid = (k) => median(known.map((l) => l[k]));
  return { p50: mid('p50'), p99: mid('p99'), p999: mid('p999'), max: Math.max(...known.map((l) => l.max)) };
}

/**
 * Waits until the server's applier has materialised every earlier write
 * (a query waits for that; a list or get would not), on a connection of
 * its own, closed before the clients start. Resolves with the operations
 * still pending then (the store's `pending_ops`: 0 unless something else
 * writes).
 */
async function drain(LocalFirst, channel) {
  const db = new LocalFirst({ mode: 'ipc', channelName: channel });
  await db.connect();
  try {
    await db.query({ 'bench:drain': true }, { limit: 1 });
    return (await db.stats()).store.pending_ops;
  } finally {
    await db.close();
  }
}

/**
 * Runs `n` clients (child processes, or with --threads worker threads):
 * once every one has connected and warmed up — however long a loaded
 * machine takes for that — and the store has materialised every earlier
 * write, all start at one instant. Resolves with their results and the
 * store's pending operations at the start.
 */
function runClients(LocalFirst, channel, n) {
  const childArgs = (who) => {
    const a = ['--child', channel, String(who), '--count', String(n), '--secs', String(SECS)];
    if (BUDGET !== undefined) a.push('--budget', String(BUDGET));
    if (TURN_WAIT !== undefined) a.push('--turn-wait', String(TURN_WAIT));
    if (LATENCY) a.push('--latency');
    if (TURNS) a.push('--turns');
    return a;
  };
  const clients = [];
  let warm = 0;
  let pendingOpsAtStart = null;
  const results = Array.from({ length: n }, (_, who) => new Promise((resolve, reject) => {
    const c = THREADS
      ? new Worker(__filename, { argv: childArgs(who) })
      : fork(__filename, childArgs(who), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...(TURNS && { serialization: 'advanced' }) });
    clients.push(c);
    c.on('message', (m) => {
      if (m.error) reject(new Error(m.error));
      else if (m.ready) {
        warm += 1;
        if (warm === n) {
          // Every earlier write (the warm-ups' puts, the count before's)
          // materialised before anyone starts.
          drain(LocalFirst, channel).then((pending) => {
            pendingOpsAtStart = pending;
            const startAt = Date.now() + 100;
            for (const other of clients) (THREADS ? other.postMessage({ startAt }) : other.send({ startAt }));
          }, reject);
        }
      } else resolve(m);
    });
    c.once('error', reject);
    c.once('exit', (code) => {
      if (code !== 0) reject(new Error(`client ${THREADS ? 'thread' : 'process'} exited with ${code}`));
    });
  }));
  return Promise.all(results).then((each) => ({ results: each, pendingOpsAtStart }));
}

async function main() {
  const { startServer, LocalFirst } = require('..');
  const runtime = runtimeDir();
  const channel = `bench-procs-${process.pid}`;
  const m = machine();
  const rows = [];
  const server = await startServer({ channel, dataDir: path.join(runtime, 'data'), logs: 'ignore' });
  try {
    const db = new LocalFirst({ mode: 'ipc', channelName: channel });
    await db.connect();
    for (let i = 0; i < DOCS; i++) await db.put(`doc:${i}`, { type: 'Doc', name: `document ${i}`, value: i });
    await db.close();
    for (let round = 0; round < ROUNDS; round++) {
      for (const n of PROCS) {
        const { results, pendingOpsAtStart } = await runClients(LocalFirst, channel, n);
        rows.push({
          round,
          clients: n,
          pendingOpsAtStart,
          transport: results[0].transport,
          budgets: [...new Set(results.map((r) => r.budget))],
          turnWaits: [...new Set(results.map((r) => r.turnWait))],
          gets: results.reduce((a, r) => a + r.gets, 0) / SECS,
          puts: results.reduce((a, r) => a + r.puts, 0) / SECS,
          getsEach: results.map((r) => r.gets / SECS),
          putsEach: results.map((r) => r.puts / SECS),
          ...(LATENCY && {
            getLatency: latencyOfMany(results.map((r) => r.getLatency)),
            putLatency: latencyOfMany(results.map((r) => r.putLatency)),
          }),
          ...(TURNS && { getTurns: turnsOf(results, 'gets'), putTurns: turnsOf(results, 'puts') }),
        });
        if (STAND_IN) {
          const s = await standIn(n, SECS, { threads: THREADS });
          Object.assign(rows[rows.length - 1], { standIn: s.total, standInEach: s.each });
        }
      }
    }
  } finally {
    await server.stop();
    fs.rmSync(runtime, { recursive: true, force: true });
  }
  const summary = summarise(rows);
  if (JSON_OUT) {
    process.stdout.write(
      `${JSON.stringify({ machine: m, secs: SECS, rounds: ROUNDS, kind: KIND, budget: BUDGET ?? null, turnWait: TURN_WAIT ?? null, latency: LATENCY, turns: TURNS, standIn: STAND_IN, rows, summary }, null, 2)}\n`,
    );
    return;
  }
  const f = (x) => Math.round(x).toLocaleString('en-US').padStart(9);
  const range = (xs) => `${Math.round(Math.min(...xs)).toLocaleString('en-US')}–${Math.round(Math.max(...xs)).toLocaleString('en-US')}`;
  const who = THREADS ? 'worker threads of one process' : 'client processes';
  const budget =
    (BUDGET === undefined ? '' : `, fastPathBudget ${BUDGET} ms`) + (TURN_WAIT === undefined ? '' : `, fastPathTurnWait ${TURN_WAIT} ms`);
  const rounds = ROUNDS > 1 ? `; ${ROUNDS} rounds, medians` : '';
  console.log(`${who} against one server: sequential await get, then await put, ${SECS} s each, all clients at once${budget}${rounds}`);
  console.log(`machine: ${m.cpu} · nproc ${m.nproc} · Linux ${m.kernel} · Node ${m.node} · load ${m.load}`);
  console.log('');
  const each = THREADS ? 'per thread' : 'per process';
  console.log(`${KIND.padStart(9)} ${'transport'.padEnd(9)} ${'gets/s'.padStart(9)} ${'÷ 1'.padStart(8)} ${each.padStart(17)}  ${'puts/s'.padStart(9)} ${'÷ 1'.padStart(8)} ${each.padStart(17)}`);
  const ratio = (x) => (x === null ? '       ?' : `${x.toFixed(2)}×`.padStart(8));
  const spread = (xs) => (xs === null ? '' : ` (rounds ${xs[0].toFixed(2)}–${xs[1].toFixed(2)}×)`);
  for (const c of summary) {
    console.log(
      `${String(c.clients).padStart(9)} ${String(c.transport).padEnd(9)} ${f(c.gets)} ${ratio(c.getsRatio)} ${range(c.getsEach).padStart(17)}  ${f(c.puts)} ${ratio(c.putsRatio)} ${range(c.putsEach).padStart(17)}`,
    );
  }
  if (LATENCY) {
    const us = (x) => (x >= 1000 ? `${(x / 1000).toFixed(1)} ms` : `${x.toFixed(1)} µs`).padStart(9);
    const cells = (l) => (l == null ? '-'.padStart(39) : `${us(l.p50)} ${us(l.p99)} ${us(l.p999)} ${us(l.max)}`);
    console.log('');
    console.log(`call times: the median ${each.replace('per ', '')}'s p50, p99 and p99.9, and the slowest call of any${ROUNDS > 1 ? ' (medians of the rounds; the slowest of all)' : ''}`);
    console.log(`${KIND.padStart(9)}  ${'get p50'.padStart(9)} ${'p99'.padStart(9)} ${'p99.9'.padStart(9)} ${'slowest'.padStart(9)}  ${'put p50'.padStart(9)} ${'p99'.padStart(9)} ${'p99.9'.padStart(9)} ${'slowest'.padStart(9)}`);
    for (const c of summary) {
      console.log(`${String(c.clients).padStart(9)}  ${cells(c.getLatency)}  ${cells(c.putLatency)}`);
    }
  }
  if (TURNS) {
    const cell = (x, digits, unit, width) => (x === null ? '-' : `${x.toFixed(digits)}${unit}`).padStart(width);
    console.log('');
    console.log(
      `how the answers came in turns (a turn: ${TURN_ANSWERS} or more in a row to one client; a pause: ${PAUSE_MS * 1000} µs or more between two of them)${ROUNDS > 1 ? ', medians of the rounds' : ''}`,
    );
    console.log(`${KIND.padStart(9)} phase  ${'turns/s'.padStart(8)} ${'turn p50'.padStart(9)}  ${'between turns'.padStart(13)} ${'change p50'.padStart(10)}  ${'pauses'.padStart(7)} ${'pauses/s'.padStart(8)}  ${'call in a turn'.padStart(14)}`);
    for (const c of summary) {
      for (const [phase, s] of [['gets', c.getTurns], ['puts', c.putTurns]]) {
        const row = s === null
          ? '-'.padStart(8)
          : `${cell(s.turnsPerSec, s.turnsPerSec < 10 ? 1 : 0, '', 8)} ${cell(s.turnP50Ms, 1, ' ms', 9)}  ${cell(s.betweenPct, 1, ' %', 13)} ${cell(s.changeP50Us, 0, ' µs', 10)}  ${cell(s.pausePct, 1, ' %', 7)} ${cell(s.pausesPerSec, 0, '', 8)}  ${cell(s.callUs, 2, ' µs', 14)}`;
        console.log(`${String(c.clients).padStart(9)} ${phase.padEnd(5)}  ${row}`);
      }
    }
  }
  if (STAND_IN) {
    console.log('');
    console.log(`the stand-in without hearth (bench/stand-in.js: ${KIND} taking ${SLICE_MS} ms turns, a get's JavaScript and a ${SPIN_US} µs spin a call)`);
    console.log(`${KIND.padStart(9)} ${'calls/s'.padStart(9)} ${'÷ 1'.padStart(8)} ${each.padStart(17)}`);
    for (const c of summary) console.log(`${String(c.clients).padStart(9)} ${f(c.standIn)} ${ratio(c.standInRatio)} ${range(c.standInEach).padStart(17)}`);
  }
  if (ROUNDS > 1) {
    console.log('');
    for (const c of summary.filter((c) => c.clients !== 1 && c.getsRatio !== null)) {
      const beside = STAND_IN ? `; the stand-in ${ratio(c.standInRatio).trim()}${spread(c.standInRatioRange)}` : '';
      console.log(`${c.clients} ÷ 1: gets ${ratio(c.getsRatio).trim()}${spread(c.getsRatioRange)}, puts ${ratio(c.putsRatio).trim()}${spread(c.putsRatioRange)}${beside}`);
    }
  }
}

/**
 * Each count's figures over the rounds: the medians of its rates, every
 * client's rate of every round (for the slowest and fastest), and its
 * ratio to one client — the median of each round's own ratio, against
 * that round's one-client row, with the rounds' lowest and highest (null
 * without a one-client count).
 */
function summarise(rows) {
  const counts = [...new Set(rows.map((r) => r.clients))];
  return counts.map((clients) => {
    const mine = rows.filter((r) => r.clients === clients);
    const ratios = (key) => {
      const each = mine
        .map((r) => [r, rows.find((o) => o.round === r.round && o.clients === 1)])
        .filter(([, one]) => one && one[key] > 0)
        .map(([r, one]) => r[key] / one[key]);
      return each.length === 0 ? [null, null] : [median(each), [Math.min(...each), Math.max(...each)]];
    };
    const [getsRatio, getsRatioRange] = ratios('gets');
    const [putsRatio, putsRatioRange] = ratios('puts');
    const [standInRatio, standInRatioRange] = STAND_IN ? ratios('standIn') : [null, null];
    return {
      clients,
      rounds: mine.length,
      transport: mine[0].transport,
      gets: median(mine.map((r) => r.gets)),
      puts: median(mine.map((r) => r.puts)),
      getsEach: mine.flatMap((r) => r.getsEach),
      putsEach: mine.flatMap((r) => r.putsEach),
      getsRatio,
      getsRatioRange,
      putsRatio,
      putsRatioRange,
      ...(LATENCY && {
        getLatency: latencyOfMany(mine.map((r) => r.getLatency)),
        putLatency: latencyOfMany(mine.map((r) => r.putLatency)),
      }),
      ...(STAND_IN && {
        standIn: median(mine.map((r) => r.standIn)),
        standInEach: mine.flatMap((r) => r.standInEach),
        standInRatio,
        standInRatioRange,
      }),
      ...(TURNS && {
        getTurns: turnsOfMany(mine.map((r) => r.getTurns)),
        putTurns: turnsOfMany(mine.map((r) => r.putTurns)),
      }),
    };
  });
}

if (args[0] === '--child') {
  // A child process answers over its IPC channel, a worker thread to its
  // parent port (and then ends on its own: its connection is closed).
  const reply = (m, code) => {
    if (isMainThread) process.send(m, () => process.exit(code));
    else {
      parentPort.postMessage(m);
      if (code !== 0) process.exit(code);
    }
  };
  const port = isMainThread ? process : parentPort;
  const ready = () =>
    new Promise((resolve) => {
      port.once('message', (m) => resolve(m.startAt));
      if (isMainThread) process.send({ ready: true });
      else parentPort.postMessage({ ready: true });
    });
  child(args[1], Number(args[2]), Number(option('--count', 1)), ready).then(
    (r) => reply(r, 0),
    (e) => reply({ error: e.stack || String(e) }, 1),
  );
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
