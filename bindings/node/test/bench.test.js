'use strict';
// The benchmark scripts run end to end (tiny sizes): the reference's three
// configurations and its --fresh mode, and the many-processes benchmark,
// produce well-formed figures over the transports they name. Nothing here
// looks at speed: the numbers only have to be positive and finite.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { needsServe } = require('./helpers');

const SCRIPT = path.join(__dirname, '..', 'bench', 'reference.js');
const PROCESSES = path.join(__dirname, '..', 'bench', 'processes.js');
const { standIn } = require('../bench/stand-in');

function bench(args, script = SCRIPT) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args, '--json'], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

/** Runs `script` with `args` for its text (not --json): stdout. */
function benchText(args, script) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Runs `script` with `args`, for the exit code and stderr of a refusal. */
function benchFails(args, script) {
  return new Promise((resolve) => {
    execFile(process.execPath, [script, ...args], { timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stderr });
    });
  });
}

const rate = (x) => typeof x === 'number' && Number.isFinite(x) && x > 0;

test('the median of an even count is the mean of the middle two, as hearth bench says', () => {
  const { median } = require('../bench/common');
  assert.equal(median([109, 123, 131, 134, 161, 167, 173, 179]), (134 + 161) / 2);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([2, 1]), 1.5);
});

test('the reference benchmark measures all three configurations', needsServe, async () => {
  const out = await bench(['--ops', '50', '--rounds', '2', '--paused', '3', '--pause-ms', '1']);
  assert.equal(out.ops, 50);
  assert.deepEqual(
    out.results.map((r) => r.name),
    ['hearth (default transport)', 'hearth (HEARTH_TRANSPORT=socket)', 'Node child_process IPC baseline'],
  );
  assert.equal(out.results[1].transport, 'socket', 'HEARTH_TRANSPORT=socket is honoured');
  for (const r of out.results) {
    assert.equal(r.rounds.length, 2);
    for (const round of r.rounds) assert.ok(rate(round.put) && rate(round.get), JSON.stringify(round));
    const p = r.paused;
    assert.equal(p.calls, 3, `${r.name}: the gets after a pause`);
    assert.equal(p.pauseMs, 1);
    assert.ok(rate(p.p50) && p.p50 <= p.p90 && p.p90 <= p.max, JSON.stringify(p));
  }
});

test('the reference benchmark prints the gets after a pause, and skips them with --paused 0', needsServe, async () => {
  const text = await benchText(['--ops', '50', '--rounds', '1', '--paused', '2', '--pause-ms', '1'], SCRIPT);
  assert.match(text, /gets after a pause: 2 awaited gets, each after 1 ms of idle/);
  for (const name of ['hearth (default transport)', 'hearth (HEARTH_TRANSPORT=socket)', 'Node child_process IPC baseline']) {
    assert.ok(text.split('\n').filter((l) => l.startsWith(name)).length === 2, `${name}: a row in each table\n${text}`);
  }
  const none = await bench(['--ops', '50', '--rounds', '1', '--paused', '0']);
  for (const r of none.results) assert.equal(r.paused, null, r.name);
});

for (const [flag, value] of [['--paused', '-1'], ['--paused', '1.5'], ['--pause-ms', '0'], ['--pause-ms', 'soon']]) {
  test(`the reference benchmark refuses ${flag} ${value} and says what it takes`, async () => {
    const { code, stderr } = await benchFails([flag, value], SCRIPT);
    assert.equal(code, 2);
    assert.match(stderr, new RegExp(`^${flag} must be `));
  });
}

test('--fresh N measures N first rounds, each in a fresh process', needsServe, async () => {
  const out = await bench(['--fresh', '2', '--ops', '50']);
  assert.equal(out.fresh, 2);
  assert.equal(out.runs.length, 2);
  for (const run of out.runs) {
    assert.ok(rate(run.put) && rate(run.get), JSON.stringify(run));
    assert.equal(typeof run.transport, 'string');
  }
});

for (const [kind, extra] of [['processes', []], ['threads', ['--threads']]]) {
  test(`the processes benchmark measures each count of client ${kind}`, needsServe, async () => {
    const out = await bench(['--procs', '1,3', '--secs', '0.3', ...extra], PROCESSES);
    assert.equal(out.kind, kind);
    assert.equal(out.budget, null, 'the clients keep their own fast-path budget unless --budget is given');
    for (const r of out.rows) assert.deepEqual(r.budgets, [1], 'the default budget, 1 ms');
    const turnWait = kind === 'threads' ? 50 : 0;
    for (const r of out.rows) assert.deepEqual(r.turnWaits, [turnWait], `the default turn wait of a client in a ${kind === 'threads' ? 'worker' : 'main'} thread`);
    assert.deepEqual(out.rows.map((r) => r.clients), [1, 3]);
    for (const r of out.rows) {
      assert.ok(rate(r.gets) && rate(r.puts), JSON.stringify(r));
      assert.equal(r.getsEach.length, r.clients);
      assert.ok(r.getsEach.every(rate) && r.putsEach.every(rate), JSON.stringify(r));
      assert.equal(typeof r.transport, 'string');
    }
  });
}

test('call times come back within 2 % at every quantile, the slowest exactly', () => {
  const { Times } = require('../bench/common');
  const times = new Times();
  assert.equal(times.latency(), null, 'no call, no figures');
  const all = Array.from({ length: 10_000 }, (_, i) => 0.5 + i * 1.37);
  for (const us of all) times.add(us);
  times.add(123_456.7);
  all.push(123_456.7);
  const exact = (q) => all[Math.ceil(q * all.length) - 1];
  const l = times.latency();
  for (const [q, got] of [[0.5, l.p50], [0.99, l.p99], [0.999, l.p999]]) {
    assert.ok(got >= exact(q) && got <= exact(q) * 1.02, `p${q * 100}: ${got} for ${exact(q)}`);
  }
  assert.equal(l.max, 123_456.7);
});

/**
 * A client's answer times (ms): `runs` of [count, at] — `count` answers
 * 2 µs apart from `at` — with `pauses` of [after the nth answer, ms] added.
 */
function answers(runs, pauses = []) {
  const out = [];
  for (const [count, at] of runs) {
    let t = at;
    for (let i = 0; i < count; i++) {
      out.push(t);
      const pause = pauses.find(([n]) => n === out.length);
      t += pause ? pause[1] : 0.002;
    }
  }
  return out;
}

test('answers in turns: the time between turns, the pauses within them and a call\'s time are told apart', () => {
  const { turnSpread } = require('../bench/common');
  // A, then B from 0.4 ms (with a 0.1 ms pause after its 50th answer:
  // its turn ends at 0.696), A again from 0.896 ms, B again from 1.3 ms.
  const a = answers([[100, 0], [100, 0.896]]);
  const b = answers([[100, 0.4], [100, 1.3]], [[50, 0.1]]);
  const s = turnSpread([a, b]);
  // The window runs from B's first answer (0.4) to A's last (0.896 +
  // 0.198): B's first turn, a change of 0.2 ms, A's second turn.
  const window = 0.896 + 0.198 - 0.4;
  const close = (got, want, what) => assert.ok(Math.abs(got - want) < 1e-6, `${what}: ${got}, not ${want}`);
  close(s.turnsPerSec, 2 / (window / 1000), 'turns a second');
  close(s.turnP50Ms, (0.296 + 0.198) / 2, 'the median turn');
  close(s.betweenPct, (0.2 / window) * 100, 'between turns');
  close(s.changeP50Us, 200, 'a change');
  close(s.pausePct, (0.1 / window) * 100, 'pauses');
  close(s.pausesPerSec, 1 / (window / 1000), 'pauses a second');
  close(s.callUs, 2, 'a call within a turn');
});

test('a few answers in a row to one client are no turn: they count as time between turns', () => {
  const { turnSpread } = require('../bench/common');
  // A's turn, then (0.1 ms later) three stray answers to B, then A's next
  // turn 0.1 ms after those; B's own turn comes at the end.
  const a = answers([[100, 0], [100, 0.404]]);
  const b = answers([[3, 0.298], [100, 0.8]]);
  const s = turnSpread([a, b]);
  // Window: B's first answer (0.298) to A's last (0.404 + 0.198): only A's
  // second turn is a turn in it, and no change of turn is.
  assert.equal(s.changeP50Us, null);
  assert.ok(Math.abs(s.betweenPct) < 1e-9, `${s.betweenPct}`);
  assert.ok(Math.abs(s.turnsPerSec - 1 / ((0.404 + 0.198 - 0.298) / 1000)) < 1e-6);
  const c = turnSpread([answers([[100, 0], [100, 0.404]]), answers([[3, 0.298], [100, 0.8]]), answers([[100, 0.01]])]);
  assert.equal(c, null, 'no window in which every client was answered: nothing to tell');
});

test('one client\'s answers are one turn, with no time between turns', () => {
  const { turnSpread } = require('../bench/common');
  const s = turnSpread([answers([[1000, 0]], [[500, 0.3]])]);
  assert.equal(s.changeP50Us, null);
  assert.equal(s.betweenPct, 0);
  assert.ok(Math.abs(s.pausePct - (0.3 / (0.3 + 998 * 0.002)) * 100) < 1e-6, `${s.pausePct}`);
});

for (const [kind, extra] of [['processes', []], ['threads', ['--threads']]]) {
  test(`--turns tells, for each count of client ${kind} and each phase, how the answers came in turns`, needsServe, async () => {
    const out = await bench(['--procs', '1,2', '--secs', '0.3', '--rounds', '2', '--turns', ...extra], PROCESSES);
    assert.equal(out.turns, true);
    const part = (x) => typeof x === 'number' && Number.isFinite(x) && x >= 0;
    for (const r of [...out.rows, ...out.summary]) {
      for (const key of ['getTurns', 'putTurns']) {
        const s = r[key];
        assert.ok(s && [s.turnsPerSec, s.turnP50Ms, s.betweenPct, s.pausePct, s.pausesPerSec].every(part), `${r.clients} clients' ${key}: ${JSON.stringify(s)}`);
        // A call in a turn is a gap under PAUSE_MS between two answers: on
        // a machine that slow for the whole phase (a VM's host busy: once
        // 5.5k gets a second from one client in CI) there is none, and the
        // figure is null, every gap in the turns a pause.
        assert.ok(part(s.callUs) || (s.callUs === null && s.pausePct > 0), `${r.clients} clients' ${key}: ${JSON.stringify(s)}`);
        assert.ok(s.betweenPct + s.pausePct <= 100, JSON.stringify(s));
        if (r.clients === 1) assert.equal(s.betweenPct, 0, 'one client: no time between turns');
      }
    }
  });
}

test('--turns prints a line a count and phase', needsServe, async () => {
  const stdout = await benchText(['--procs', '1,2', '--secs', '0.2', '--turns'], PROCESSES);
  const lines = stdout.split('\n');
  const head = lines.findIndex((l) => l.startsWith('how the answers came in turns'));
  assert.ok(head > 0, stdout);
  assert.match(lines[head + 1], /turns\/s +turn p50 +between turns +change p50 +pauses +pauses\/s +call in a turn/);
  for (const [i, n, phase] of [[2, 1, 'gets'], [3, 1, 'puts'], [4, 2, 'gets'], [5, 2, 'puts']]) {
    assert.match(lines[head + i], new RegExp(`^ +${n} ${phase} `), lines[head + i]);
  }
});

test('the put phases of every count rewrite the same 1000 ids, split among the clients', () => {
  const { putShare } = require('../bench/common');
  const all = putShare(0, 1);
  assert.equal(all.length, 1000);
  assert.equal(new Set(all).size, 1000);
  for (const count of [3, 16]) {
    const shares = Array.from({ length: count }, (_, who) => putShare(who, count));
    assert.deepEqual(shares.flat().sort(), [...all].sort(), `${count} clients' shares are the one client's ids`);
    assert.equal(new Set(shares.flat()).size, 1000, `no id is in two of ${count} clients' shares`);
    assert.ok(Math.max(...shares.map((s) => s.length)) - Math.min(...shares.map((s) => s.length)) <= 1, 'the shares are even');
  }
  const many = Array.from({ length: 1200 }, (_, who) => putShare(who, 1200));
  assert.ok(many.every((s) => s.length === 1), 'with more clients than ids, each client has one id of its own');
  assert.equal(new Set(many.flat()).size, 1200);
});

test('every count of the processes benchmark starts with the store applier caught up', needsServe, async () => {
  const out = await bench(['--procs', '1,2', '--secs', '0.3'], PROCESSES);
  for (const r of out.rows) {
    assert.equal(r.pendingOpsAtStart, 0, `${r.clients} clients started with ${r.pendingOpsAtStart} operations still to apply`);
  }
});

test('--rounds runs every count once a round and gives its ratio to one client as the median of the rounds\' own', needsServe, async () => {
  const out = await bench(['--procs', '1,2', '--secs', '0.2', '--rounds', '2'], PROCESSES);
  assert.equal(out.rounds, 2);
  assert.deepEqual(
    out.rows.map((r) => [r.round, r.clients]),
    [[0, 1], [0, 2], [1, 1], [1, 2]],
    'the whole list of counts, once a round',
  );
  assert.deepEqual(out.summary.map((c) => [c.clients, c.rounds]), [[1, 2], [2, 2]]);
  const [one, two] = out.summary;
  assert.equal(one.getsRatio, 1);
  for (const key of ['gets', 'puts']) {
    const own = [0, 1].map((round) => {
      const at = (n) => out.rows.find((r) => r.round === round && r.clients === n)[key];
      return at(2) / at(1);
    });
    assert.ok(Math.abs(two[`${key}Ratio`] - (own[0] + own[1]) / 2) < 1e-9, `${key}: the median of the rounds' ratios`);
    assert.deepEqual(two[`${key}RatioRange`], [Math.min(...own), Math.max(...own)]);
  }
  assert.equal(two.getsEach.length, 4, 'every client of every round');
});

test('--latency gives each count its median client\'s p50, p99 and p99.9 and the slowest call of any', needsServe, async () => {
  const out = await bench(['--procs', '1,2', '--secs', '0.2', '--rounds', '2', '--latency'], PROCESSES);
  assert.equal(out.latency, true);
  const ordered = (l, what) => {
    assert.ok(l && [l.p50, l.p99, l.p999, l.max].every(rate), `${what}: ${JSON.stringify(l)}`);
    assert.ok(l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, `${what} in order: ${JSON.stringify(l)}`);
  };
  for (const r of out.rows) {
    ordered(r.getLatency, `round ${r.round}, ${r.clients} clients' gets`);
    ordered(r.putLatency, `round ${r.round}, ${r.clients} clients' puts`);
  }
  for (const c of out.summary) {
    for (const key of ['getLatency', 'putLatency']) {
      const mine = out.rows.filter((r) => r.clients === c.clients).map((r) => r[key]);
      ordered(c[key], `${c.clients} clients' ${key}`);
      assert.equal(c[key].max, Math.max(...mine.map((l) => l.max)), 'the slowest call of all the rounds');
      assert.equal(c[key].p99, (mine[0].p99 + mine[1].p99) / 2, 'the median of the rounds\' p99');
    }
  }
});

test('--latency prints a table of call times, one line a count', needsServe, async () => {
  const stdout = await benchText(['--procs', '1,2', '--secs', '0.2', '--latency'], PROCESSES);
  const lines = stdout.split('\n');
  const head = lines.findIndex((l) => l.startsWith('call times:'));
  assert.ok(head > 0, stdout);
  assert.match(lines[head + 1], /get p50 +p99 +p99\.9 +slowest +put p50/);
  for (const [i, n] of [[2, 1], [3, 2]]) {
    assert.match(lines[head + i], new RegExp(`^ +${n}( +[0-9.]+ (µs|ms)){8}$`), lines[head + i]);
  }
});

test('without --latency no call is timed, without --turns no answer time is kept, and without --stand-in no stand-in runs', needsServe, async () => {
  const out = await bench(['--procs', '1', '--secs', '0.2'], PROCESSES);
  assert.equal(out.latency, false);
  assert.ok(out.rows.every((r) => !('getLatency' in r) && !('putLatency' in r)));
  assert.ok(out.summary.every((c) => !('getLatency' in c)));
  assert.equal(out.turns, false);
  assert.ok([...out.rows, ...out.summary].every((r) => !('getTurns' in r) && !('putTurns' in r)));
  assert.equal(out.standIn, false);
  assert.ok([...out.rows, ...out.summary].every((r) => !('standIn' in r)), 'no stand-in without --stand-in');
});

for (const [kind, threads] of [['processes', false], ['worker threads', true]]) {
  test(`the stand-in's ${kind} pass their token round every one of them: each makes calls, and the total is theirs`, async () => {
    const { total, each } = await standIn(3, 0.2, { threads });
    assert.equal(each.length, 3);
    assert.ok(each.every(rate), `every client took turns: ${each}`);
    assert.ok(Math.abs(each.reduce((a, b) => a + b, 0) - total) <= 1e-9 * total);
  });
}

test('--stand-in runs as many stand-in clients after each count\'s and gives their own ratio to one', needsServe, async () => {
  const out = await bench(['--procs', '1,2', '--secs', '0.2', '--rounds', '2', '--stand-in'], PROCESSES);
  assert.equal(out.standIn, true);
  for (const r of out.rows) {
    assert.ok(rate(r.standIn), `round ${r.round}, ${r.clients}: ${r.standIn}`);
    assert.equal(r.standInEach.length, r.clients, 'one stand-in client for each client');
  }
  const two = out.summary.find((c) => c.clients === 2);
  const own = [0, 1].map((round) => {
    const at = (n) => out.rows.find((r) => r.round === round && r.clients === n).standIn;
    return at(2) / at(1);
  });
  assert.ok(Math.abs(two.standInRatio - (own[0] + own[1]) / 2) < 1e-9, 'the median of the rounds\' ratios');
  assert.deepEqual(two.standInRatioRange, [Math.min(...own), Math.max(...own)]);
  assert.equal(two.standInEach.length, 4, 'every stand-in client of every round');
});

test('--stand-in prints its table and its ratio beside hearth\'s', needsServe, async () => {
  const stdout = await benchText(['--procs', '1,2', '--secs', '0.2', '--rounds', '2', '--stand-in'], PROCESSES);
  const lines = stdout.split('\n');
  const head = lines.findIndex((l) => l.startsWith('the stand-in without hearth'));
  assert.ok(head > 0, stdout);
  for (const [i, n] of [[2, 1], [3, 2]]) {
    assert.match(lines[head + i], new RegExp(`^ +${n} +[0-9,]+ +[0-9.]+× +[0-9,]+–[0-9,]+$`), lines[head + i]);
  }
  assert.match(stdout, /^2 ÷ 1: gets [0-9.]+×.*; the stand-in [0-9.]+× \(rounds [0-9.]+–[0-9.]+×\)$/m);
});

test('--stand-in beside --threads runs the stand-in as worker threads', needsServe, async () => {
  const stdout = await benchText(['--procs', '1,2', '--secs', '0.2', '--threads', '--stand-in'], PROCESSES);
  assert.match(stdout, /^the stand-in without hearth \(bench\/stand-in\.js: threads taking 8 ms turns/m);
  assert.match(stdout, /^ +2 +[0-9,]+ +[0-9.]+× +[0-9,]+–[0-9,]+$/m);
});

test('--rounds refuses what is not a whole number of rounds, before any client starts', async () => {
  for (const [args, said] of [
    [['--rounds', '0'], '"0"'],
    [['--rounds', '1.5'], '"1.5"'],
    [['--rounds', 'many'], '"many"'],
    [['--rounds'], 'nothing'],
  ]) {
    const { code, stderr } = await benchFails(args, PROCESSES);
    assert.equal(code, 2, `exit code for ${args.join(' ')}`);
    assert.match(stderr, /--rounds must be a whole number of rounds, 1 or more/);
    assert.ok(stderr.includes(`not ${said}`), stderr);
  }
});

test('--budget and --turn-wait give every client of the processes benchmark that fast-path budget and turn wait', needsServe, async () => {
  const out = await bench(['--procs', '2', '--secs', '0.2', '--threads', '--budget', '20', '--turn-wait', '0'], PROCESSES);
  assert.equal(out.budget, 20);
  assert.equal(out.turnWait, 0);
  assert.deepEqual(out.rows[0].budgets, [20], 'every client took the budget');
  assert.deepEqual(out.rows[0].turnWaits, [0], 'every client took the turn wait');
  assert.ok(out.rows[0].getsEach.every(rate), JSON.stringify(out.rows[0]));
});

test('--budget and --turn-wait refuse what is not a non-negative number of milliseconds, before any client starts', async () => {
  for (const [args, said] of [
    [['--budget', '-1'], '"-1"'],
    [['--budget', 'soon'], '"soon"'],
    [['--budget'], 'nothing'],
    [['--turn-wait', '-5'], '"-5"'],
    [['--turn-wait'], 'nothing'],
  ]) {
    const { code, stderr } = await benchFails(args, PROCESSES);
    assert.equal(code, 2, `exit code for ${args.join(' ')}`);
    assert.match(stderr, new RegExp(`${args[0]} must be a non-negative number of milliseconds`));
    assert.ok(stderr.includes(`not ${said}`), stderr);
  }
});
