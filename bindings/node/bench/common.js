'use strict';
// What the benchmarks in this directory share: a description of the
// machine, a private runtime directory for the servers' sockets, a median.
// Informational helpers only: nothing here measures or fails on time.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function sh(cmd, cmdArgs) {
  try {
    return execFileSync(cmd, cmdArgs, { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

/** The CPU model, core count, kernel, Node version and load average. */
function machine() {
  const lscpu = sh('lscpu', []);
  const model = (/^Model name:\s*(.+)$/m.exec(lscpu) || [])[1] || os.cpus()[0]?.model || '?';
  return { nproc: sh('nproc', []), cpu: model.trim(), kernel: sh('uname', ['-r']), node: process.version, load: os.loadavg().map((l) => l.toFixed(2)).join(' ') };
}

/** The median: of an even count, the mean of the middle two (as `hearth bench`). */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** A private runtime directory for the servers' sockets (the caller removes it). */
function runtimeDir() {
  const runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-'));
  fs.chmodSync(runtime, 0o700);
  process.env.XDG_RUNTIME_DIR = runtime;
  return runtime;
}

/**
 * The ids client `who` of `count` rewrites in a put phase of
 * bench/processes.js: the same `total` ids whatever the count, each client
 * its own share (as hearth_ipc::bench's put_share), so that the store does
 * the same work per put with 1 or 16 clients. With more clients than ids,
 * each client gets one id of its own.
 */
function putShare(who, count, total = 1000) {
  const ids = [];
  for (let j = 0; j < Math.max(total, count); j++) if (j % count === who) ids.push(`put:${j}`);
  return ids;
}

/**
 * One client's call times, in buckets 2 % wide (a few KiB, whatever the
 * number of calls: a big array of every time would itself bring the
 * garbage collector into the calls it times) and the slowest exactly.
 */
class Times {
  static STEP = Math.log(1.02);

  constructor() {
    this.buckets = new Uint32Array(1200); // 1.02^1200 µs: hours
    this.count = 0;
    this.max = 0;
  }

  /** Adds a call that took `us` microseconds. */
  add(us) {
    const b = us <= 1 ? 0 : Math.min(this.buckets.length - 1, Math.ceil(Math.log(us) / Times.STEP));
    this.buckets[b] += 1;
    this.count += 1;
    if (us > this.max) this.max = us;
  }

  /** The time under which a share `q` of the calls took (to 2 %). */
  quantile(q) {
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let b = 0; b < this.buckets.length; b++) {
      seen += this.buckets[b];
      if (seen >= rank) return Math.min(this.max, Math.exp(b * Times.STEP));
    }
    return this.max;
  }

  /** p50, p99, p99.9 and the slowest, in µs, or null without any call. */
  latency() {
    if (this.count === 0) return null;
    return { p50: this.quantile(0.5), p99: this.quantile(0.99), p999: this.quantile(0.999), max: this.max };
  }
}

/** A turn: at least this many answers in a row to one client. */
const TURN_ANSWERS = 50;
/** A gap between two answers in a turn this long or longer is a pause (ms). */
const PAUSE_MS = 0.05;

/**
 * One phase's clients, taken together: how their answers came in turns.
 * `ends` holds each client's answer times (ms, one clock for all, in
 * order). Over the window in which every client was calling (from the
 * latest first answer to the earliest last one), the answers of all the
 * clients in the order they came fall into *turns* — runs of
 * `TURN_ANSWERS` or more in a row to one client — and the time between
 * turns (the answers in between, fewer in a row, with it). Within a turn
 * a gap of `PAUSE_MS` or more from one answer to the next is a *pause*
 * (the client's event loop, a garbage collection, a core taken away);
 * the rest are calls. Gives the turns a second and their median length
 * (ms), the share of the window between turns and the median change
 * (µs), the share in pauses and the pauses a second, and the mean time
 * of a call within a turn (µs); null when the window is empty. With one
 * client the window is one turn. Pure: no clock, no I/O.
 */
function turnSpread(ends) {
  const from = Math.max(...ends.map((e) => e[0]));
  const to = Math.min(...ends.map((e) => e[e.length - 1]));
  if (!(to > from)) return null;
  const at = [];
  const who = [];
  ends.forEach((e, c) => {
    for (const t of e) {
      if (t >= from && t <= to) {
        at.push(t);
        who.push(c);
      }
    }
  });
  const order = at.map((_, i) => i).sort((a, b) => at[a] - at[b]);
  const t = order.map((i) => at[i]);
  const w = order.map((i) => who[i]);
  const turns = [];
  for (let i = 0; i < t.length; ) {
    let j = i + 1;
    while (j < t.length && w[j] === w[i]) j++;
    if (j - i >= TURN_ANSWERS) turns.push([i, j - 1]);
    i = j;
  }
  if (turns.length === 0) return null;
  const window = to - from;
  const changes = [];
  for (let k = 1; k < turns.length; k++) changes.push(t[turns[k][0]] - t[turns[k - 1][1]]);
  let pauses = 0;
  let paused = 0;
  let calls = 0;
  let calling = 0;
  for (const [a, b] of turns) {
    for (let i = a + 1; i <= b; i++) {
      const gap = t[i] - t[i - 1];
      if (gap >= PAUSE_MS) {
        pauses += 1;
        paused += gap;
      } else {
        calls += 1;
        calling += gap;
      }
    }
  }
  const secs = window / 1000;
  return {
    turnsPerSec: turns.length / secs,
    turnP50Ms: median(turns.map(([a, b]) => t[b] - t[a])),
    betweenPct: (changes.reduce((x, y) => x + y, 0) / window) * 100,
    changeP50Us: changes.length === 0 ? null : median(changes) * 1000,
    pausePct: (paused / window) * 100,
    pausesPerSec: pauses / secs,
    callUs: calls === 0 ? null : (calling / calls) * 1000,
  };
}

/**
 * Option `name`'s value in `args` (a script's arguments) as a number that
 * passes `ok`; else says it `must` be, and exits 2.
 */
function numberOption(args, name, ok, must) {
  const i = args.indexOf(name);
  const v = i >= 0 ? args[i + 1] : undefined;
  const n = Number(v);
  if (v === undefined || v.trim() === '' || !ok(n)) {
    console.error(`${name} must be ${must}, not ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

module.exports = { PAUSE_MS, TURN_ANSWERS, Times, machine, median, numberOption, putShare, runtimeDir, turnSpread };
