'use strict';
// startServer(): runs the `hearth` binary this package built as a child
// process serving a channel — the lifecycle manager the reference writes by
// hand with `sleep(1000)`, done with a readiness signal instead.
//
// Owns: spawning `hearth serve`, waiting for its ready line, forwarding its
// logs, restarting it with backoff after a crash (up to maxRestarts),
// stopping it gracefully (SIGTERM, then SIGKILL after a grace period), and
// stopping it when this Node process exits. Must never: guess readiness
// with a sleep, leave a child running after stop() resolves, or restart a
// server that was asked to stop.

const { spawn } = require('node:child_process');
const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { HearthError, describe } = require('./errors');

const READY = /^ready channel=(\S+) socket=(.*) pid=(\d+)$/;

/** The longest delay `setTimeout` keeps (2^31 - 1 ms, ~24.8 days): a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** `shmRingBytes`, checked: a power of two from 4 KiB to 64 MiB. */
function ringBytes(value) {
  if (!Number.isInteger(value) || value < 4096 || value > 64 * 1024 * 1024 || (value & (value - 1)) !== 0) {
    throw new HearthError('invalid_input', `startServer: options.shmRingBytes must be a power of two from 4096 to 67108864 (e.g. 1048576 for 1 MiB; the default is 262144), not ${String(value)}`);
  }
  return value;
}

/**
 * A delay option in milliseconds: a non-negative number (Infinity allowed),
 * kept within what `setTimeout` can wait — longer means "no limit in
 * practice", not "at once" as `setTimeout` itself would take it.
 */
function delayMs(v, dflt, what) {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
    const shown = typeof v === 'number' ? String(v) : describe(v);
    throw new HearthError('invalid_input', `${what} must be a non-negative number of milliseconds, not ${shown}`);
  }
  return Math.min(v, MAX_TIMER_MS);
}

/** Where the `hearth` binary is: options.binary, $HEARTH_BIN, or what `npm install` recorded. */
function hearthBinary(explicit) {
  if (explicit) return explicit;
  if (process.env.HEARTH_BIN) return process.env.HEARTH_BIN;
  const info = path.join(__dirname, '..', 'build-info.json');
  try {
    return JSON.parse(fs.readFileSync(info, 'utf8')).hearth;
  } catch {
    return null;
  }
}

// --- stopping children when Node exits ------------------------------------

const live = new Set();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const onSignal = {};
let hooked = false;
let exitHooked = false;

function killAll(signal) {
  for (const s of live) s._kill(signal);
}

function hook() {
  if (hooked) return;
  hooked = true;
  // Added once for the life of the process (unhook keeps it).
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => killAll('SIGTERM'));
  }
  for (const sig of SIGNALS) {
    onSignal[sig] = () => {
      killAll('SIGTERM');
      // With no handler of the program's own, keep Node's default: exit by
      // the same signal.
      if (process.listenerCount(sig) === 1) {
        unhook();
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal[sig]);
  }
}

function unhook() {
  if (!hooked) return;
  for (const sig of SIGNALS) process.removeListener(sig, onSignal[sig]);
  hooked = false;
  // The 'exit' listener stays: it is cheap and does nothing with no child.
}

class HearthServer extends EventEmitter {
  constructor(options) {
    super();
    if (options === null || typeof options !== 'object') throw new HearthError('invalid_input', 'startServer: options must be an object');
    const { channel, dataDir } = options;
    if (typeof channel !== 'string' || channel === '') throw new HearthError('EINVALID_CHANNEL', 'startServer: options.channel must be a non-empty string');
    if (typeof dataDir !== 'string' || dataDir === '') throw new HearthError('invalid_input', 'startServer: options.dataDir must be a directory path');
    /** The channel served. */
    this.channel = channel;
    /** The data directory. */
    this.dataDir = path.resolve(dataDir);
    /** How many times the server was restarted after a crash. */
    this.restarts = 0;
    /** The socket path from the last ready line. */
    this.socketPath = null;
    this._binary = hearthBinary(options.binary);
    this._args = Array.isArray(options.args) ? options.args.map(String) : [];
    if (options.durability) this._args.push('--durability', String(options.durability));
    if (options.socketDir) this._args.push('--socket-dir', path.resolve(String(options.socketDir)));
    if (options.sharedMemory === false) this._args.push('--no-shm');
    else if (options.shmRingBytes !== undefined) this._args.push('--shm-ring-bytes', String(ringBytes(options.shmRingBytes)));
    // The server stops itself when this process dies, even by SIGKILL (Linux
    // parent-death signal); elsewhere only the 'exit' hook below stops it.
    if (process.platform === 'linux' && options.exitWithParent !== false) this._args.push('--exit-with-parent');
    this._env = { ...process.env, HEARTH_IPC: 'true', ...(options.env || {}) };
    this._maxRestarts = options.maxRestarts === undefined ? 5 : options.maxRestarts;
    const backoff = options.backoff || {};
    this._backoffInitial = delayMs(backoff.initial, 100, 'startServer: options.backoff.initial');
    this._backoffMax = delayMs(backoff.max, 5000, 'startServer: options.backoff.max');
    this._readyTimeout = delayMs(options.readyTimeout, 30000, 'startServer: options.readyTimeout');
    this._stopTimeout = delayMs(options.stopTimeout, 5000, 'startServer: options.stopTimeout');
    this._logs = options.logs === undefined ? 'forward' : options.logs;
    if (!['forward', 'events', 'ignore'].includes(this._logs)) {
      throw new HearthError('invalid_input', 'startServer: options.logs must be "forward", "events" or "ignore"');
    }
    this._child = null;
    this._stopping = false;
    this._restartTimer = null;
    this._exited = null;
    this._started = false;
  }

  /** The server's pid, or null while it is not running. */
  get pid() {
    return this._child ? this._child.pid : null;
  }

  /** Whether a server process is running. */
  get running() {
    return this._child !== null;
  }

  _log(stream, line) {
    if (this._logs === 'ignore') return;
    this.emit('log', { stream, line });
    if (this._logs === 'forward') process.stderr.write(`[hearth ${this.channel}] ${line}\n`);
  }

  _kill(signal) {
    if (this._child) {
      try {
        this._child.kill(signal);
      } catch {
        // already gone
      }
    }
  }

  /** Spawns one server process; resolves once it printed its ready line. */
  _spawn() {
    if (!this._binary || !fs.existsSync(this._binary)) {
      return Promise.reject(
        new HearthError(
          'ESERVER_START',
          `the hearth binary was not found${this._binary ? ` at ${this._binary}` : ''}: run \`npm install\` in the hearth package ` +
            '(it builds the binary), or pass startServer({ binary }) or set HEARTH_BIN',
        ),
      );
    }
    const args = ['serve', '--channel', this.channel, '--data-dir', this.dataDir, ...this._args];
    return new Promise((resolve, reject) => {
      let ready = false;
      const tail = [];
      const child = spawn(this._binary, args, { env: this._env, stdio: ['ignore', 'pipe', 'pipe'] });
      this._child = child;
      live.add(this);
      hook();
      const timer =
        this._readyTimeout > 0
          ? setTimeout(() => {
              if (ready) return;
              child.kill('SIGKILL');
              fail(`it did not report ready within ${this._readyTimeout} ms`);
            }, this._readyTimeout)
          : null;
      const fail = (why) => {
        if (ready) return;
        ready = true;
        if (timer) clearTimeout(timer);
        const log = tail.length ? `; its last output:\n${tail.join('\n')}` : '';
        reject(new HearthError('ESERVER_START', `hearth serve --channel ${this.channel} failed to start: ${why}${log}`));
      };
      const remember = (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
      };
      readline.createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
        const m = !ready && READY.exec(line);
        if (m) {
          ready = true;
          this._started = true;
          if (timer) clearTimeout(timer);
          this.socketPath = m[2];
          this.emit('ready', { channel: m[1], socket: m[2], pid: Number(m[3]) });
          resolve();
          return;
        }
        remember(line);
        this._log('stdout', line);
      });
      readline.createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => {
        remember(line);
        this._log('stderr', line);
      });
      child.on('error', (e) => fail(e.message));
      this._exited = new Promise((done) => {
        child.on('exit', (code, signal) => {
          if (this._child === child) this._child = null;
          live.delete(this);
          if (live.size === 0) unhook();
          fail(`it exited (${signal ? `signal ${signal}` : `code ${code}`}) before it was ready`);
          const info = { code, signal, expected: this._stopping };
          done(info);
          this.emit('exit', info);
          if (!this._stopping && this._started) this._crashed();
        });
      });
    });
  }

  _crashed() {
    if (this.restarts >= this._maxRestarts) {
      const e = new HearthError(
        'ESERVER_STOPPED',
        `hearth serve --channel ${this.channel} crashed and was restarted ${this.restarts} times (maxRestarts ${this._maxRestarts}); giving up`,
      );
      if (this.listenerCount('error') > 0) this.emit('error', e);
      else process.emitWarning(e);
      return;
    }
    const delay = Math.min(this._backoffInitial * 2 ** this.restarts, this._backoffMax);
    this.restarts += 1;
    const n = this.restarts;
    this._restartTimer = setTimeout(() => {
      this._restartTimer = null;
      if (this._stopping) return;
      this._spawn().then(
        () => this.emit('restart', n),
        // A failed start shows as another exit, which schedules the next try.
        () => {},
      );
    }, delay);
  }

  /**
   * Stops the server: SIGTERM (it finishes in-flight requests and flushes),
   * SIGKILL if it has not exited after `timeout` ms. Resolves with
   * `{code, signal}` once it has exited. No restart follows.
   */
  async stop({ timeout } = {}) {
    const grace = delayMs(timeout, this._stopTimeout, 'stop: options.timeout');
    this._stopping = true;
    if (this._restartTimer) {
      clearTimeout(this._restartTimer);
      this._restartTimer = null;
    }
    if (!this._child) return this._exited ? this._exited : { code: null, signal: null };
    const exited = this._exited;
    this._kill('SIGTERM');
    const killer = setTimeout(() => this._kill('SIGKILL'), grace);
    try {
      return await exited;
    } finally {
      clearTimeout(killer);
    }
  }
}

/**
 * Starts `hearth serve --channel NAME --data-dir DIR` and resolves once it
 * accepts connections. See the README for the options and events.
 */
async function startServer(options) {
  const server = new HearthServer(options);
  try {
    await server._spawn();
  } catch (e) {
    server._stopping = true;
    throw e;
  }
  return server;
}

module.exports = { startServer, HearthServer, hearthBinary };
