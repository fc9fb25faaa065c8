'use strict';
// LocalFirst: the client API users already write against (PluresDB's
// `PluresDBLocalFirst`), over a hearth channel.
//
// Owns: argument checks and JSON encoding, choosing the synchronous fast
// path (point operations, done on this thread by the addon and handed back
// as settled promises) or the asynchronous one (everything that may take
// long), letting the event loop turn during long runs of fast-path calls,
// watch iterators, `on("change")`, topic subscriptions, AbortSignal and
// per-call timeouts, and `mode`. Must never: block the event loop for
// longer than one point operation's round trip (plus the setup of a
// subscription), lose an error's code, or keep the process alive after
// close().

const { EventEmitter } = require('node:events');
const { performance } = require('node:perf_hooks');
const { isMainThread } = require('node:worker_threads');
const native = require('./native');
const { HearthError, fromNative, fromInfo, abortError, checkSignal, describe } = require('./errors');

const MODES = ['auto', 'ipc', 'network'];
const NO_OPTIONS = Object.freeze({});

/**
 * Documents larger than this (JSON characters) go the asynchronous way.
 * How long a request may be is the addon's to check: the server says its
 * limit in the handshake (32 MiB by default, `hearth serve
 * --max-message-bytes`), and a longer request is refused there with
 * `too_large` before anything is sent.
 */
const LARGE_JSON = 256 * 1024;
/** The longest delay a timer takes (setTimeout fires at once past it). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Items fetched per pull of a stream. */
const BATCH = 256;

// --- letting the event loop turn -----------------------------------------
//
// A fast-path call settles at once, so `for (...) await db.put(...)` only
// ever runs microtasks: timers and I/O would wait until the loop ends. After
// MAX_SYNC_MS of back-to-back fast-path calls with no turn of the event
// loop, the next call first waits for one (setImmediate), then goes on.
let maxSyncMs = 2;
let armed = false;
let streakStart = 0;
let streakOps = 0;
function disarm() {
  armed = false;
}
function mustYield() {
  return (!armed || (++streakOps & 63) === 0) && streakOver();
}
/** mustYield's rare part (out of line: a streak's first call, then one in 64). */
function streakOver() {
  if (!armed) {
    armed = true;
    streakOps = 0;
    streakStart = performance.now();
    setImmediate(disarm);
    return false;
  }
  return performance.now() - streakStart > maxSyncMs;
}
function nextTurn() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The addon's CancelToken that `signal` cancels when it aborts: one per
 * signal, shared by every call made with it (a call subscribes to the
 * token only if it goes on asynchronously), so that a call costs no new
 * token and no listener of its own.
 */
const tokens = new WeakMap();
function tokenFor(signal) {
  let token = tokens.get(signal);
  if (token === undefined) {
    const t = new native.CancelToken();
    if (signal.aborted) t.cancel();
    else signal.addEventListener('abort', () => t.cancel(), { once: true });
    tokens.set(signal, t);
    token = t;
  }
  return token;
}

/**
 * The token for a fast-path call with `signal`: undefined without one,
 * null when it fired while the event loop turned (see mustYield).
 */
function fastToken(signal) {
  if (!signal) return undefined;
  return signal.aborted ? null : tokenFor(signal);
}

const same = (v) => v;
const parseOrNull = (json) => (json === null ? null : JSON.parse(json));

/** The parsed result of an addon promise settling with an outcome (`signal`: the call's, for an AbortError's reason). */
function settle(promise, signal) {
  return promise.then(
    (r) => {
      if (r === null) return null;
      if (typeof r === 'string') return JSON.parse(r);
      throw fromInfo(r, signal);
    },
    (e) => {
      throw fromNative(e);
    },
  );
}

// --- argument checks -------------------------------------------------------

/**
 * How long (ms) a fast-path call may hold the JavaScript thread waiting for
 * its answer. Over shared memory answers take microseconds; a busy or
 * stalled server's answer past this comes as a promise instead, so the
 * event loop is never held longer than this per call.
 */
const FAST_PATH_BUDGET_MS = 1;

/** The first and the longest wait before on("change")'s failed watch is started again. */
const FEED_RETRY_MIN_MS = 250;
const FEED_RETRY_MAX_MS = 30_000;

/**
 * How long (ms) a fast-path call may go on waiting on its thread, past the
 * budget, while the server answers it only in its turn (other connections
 * of this process are busy: the server takes them by turns of ~4 ms and
 * says so). In a worker thread, 50: a wait for a turn handed to the event
 * loop costs several thread wake-ups; on the main thread, 0 (its event
 * loop is never held past the budget).
 */
const FAST_PATH_TURN_WAIT_MS = isMainThread ? 0 : 50;

/** Option `name`'s value `v`: `dflt` when absent, else a non-negative number of ms. */
function millisOption(name, v, dflt) {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new HearthError('invalid_input', `${name} must be a non-negative number of milliseconds, not ${describe(v)}`);
  }
  return v;
}

/**
 * A client-wide timeout option `name` (ms) as the addon reads it from
 * JSON: undefined when absent; Infinity, like anything past 100 years,
 * the longest (JSON has no Infinity); refused unless a non-negative number.
 */
function timeoutOption(name, v) {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
    throw new HearthError('invalid_input', `${name} must be a non-negative number of milliseconds, not ${describe(v)}`);
  }
  return v === Infinity ? Number.MAX_VALUE : v;
}

/** A count option `name`: undefined when absent, else a non-negative integer. */
function countOption(name, v) {
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(v) || v < 0) throw new HearthError('invalid_input', `${name} must be a non-negative integer, not ${describe(v)}`);
  return v;
}

function checkId(id, op) {
  if (typeof id !== 'string') {
    throw new HearthError('invalid_input', `${op}: the id must be a string, not ${describe(id)}`);
  }
  wellFormed(id, op);
}

/**
 * Refuses an id with half a UTF-16 surrogate pair: UTF-8 cannot hold it,
 * and the conversion would make it U+FFFD, so two such ids would name one
 * document.
 */
function wellFormed(id, op) {
  if (!id.isWellFormed()) {
    throw new HearthError(
      'invalid_input',
      `${op}(${JSON.stringify(id)}): the id holds a lone UTF-16 surrogate (half of a character), which UTF-8 cannot store; ids are text of whole characters`,
    );
  }
}

/** JSON text of a document (a plain object), with clear errors. */
function objectJson(value, op, id, what) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new HearthError('invalid_input', `${op}(${JSON.stringify(id)}): ${what} must be a JSON object, not ${describe(value)}`);
  }
  let json;
  try {
    json = JSON.stringify(value);
  } catch (e) {
    throw new HearthError(
      'invalid_input',
      `${op}(${JSON.stringify(id)}): ${what} cannot be serialised to JSON (${e.message}); ` +
        'documents hold JSON values only (no BigInt, no circular references)',
      { cause: e },
    );
  }
  if (typeof json !== 'string' || json.charCodeAt(0) !== 123 /* { */) {
    throw new HearthError('invalid_input', `${op}(${JSON.stringify(id)}): ${what} must serialise to a JSON object (its toJSON() returned something else)`);
  }
  return json;
}

function anyJson(value, what) {
  if (value === undefined) return 'null';
  try {
    const json = JSON.stringify(value);
    return json === undefined ? 'null' : json;
  } catch (e) {
    throw new HearthError('invalid_input', `${what} cannot be serialised to JSON (${e.message})`, { cause: e });
  }
}

function callOptions(options) {
  if (options === undefined || options === null) return NO_OPTIONS;
  if (typeof options !== 'object') throw new HearthError('invalid_input', `options must be an object, not ${describe(options)}`);
  if (options.timeout !== undefined && !(typeof options.timeout === 'number' && options.timeout >= 0)) {
    throw new HearthError('invalid_input', `options.timeout must be a non-negative number of milliseconds, not ${options.timeout}`);
  }
  checkSignal(options.signal);
  return options;
}

function ipcForcedByEnv() {
  const on = (v) => typeof v === 'string' && /^(1|true|yes|on)$/i.test(v.trim());
  return on(process.env.HEARTH_IPC) || on(process.env.PLURESDB_IPC);
}

// --- streams ---------------------------------------------------------------

/** Pulls JSON batches from a native stream; the base of the iterators below. */
class Pull {
  constructor(open, signal, onFinish) {
    this._stream = null;
    this._error = null;
    this._buf = [];
    this._at = 0;
    this._last = false;
    this._done = false;
    this._signal = signal || null;
    this._aborted = false;
    this._onFinish = onFinish || null;
    this._chain = Promise.resolve();
    try {
      this._stream = open();
    } catch (e) {
      this._error = fromNative(e);
    }
    if (this._signal) {
      this._onAbort = () => {
        this._aborted = true;
        this.close();
      };
      if (this._signal.aborted) this._onAbort();
      else this._signal.addEventListener('abort', this._onAbort, { once: true });
    }
  }

  /** Items of one batch from the native JSON; overridden. */
  _items(parsed) {
    return parsed;
  }

  _next() {
    if (this._at < this._buf.length) {
      const value = this._buf[this._at++];
      return Promise.resolve({ value, done: false });
    }
    return this._fetch();
  }

  async _fetch() {
    for (;;) {
      if (this._error) {
        const e = this._error;
        this._error = null;
        this._finish();
        throw e;
      }
      if (this._last) this._finish();
      if (this._done) {
        if (this._aborted) {
          this._aborted = false;
          throw abortError(this._signal);
        }
        return { value: undefined, done: true };
      }
      const r = await this._stream.next(BATCH);
      if (r === null) {
        this._finish();
        continue;
      }
      if (typeof r !== 'string') {
        this._error = fromInfo(r, this._signal);
        continue;
      }
      this._buf = this._items(JSON.parse(r));
      this._at = 0;
      if (this._buf.length > 0) return { value: this._buf[this._at++], done: false };
    }
  }

  next() {
    const p = this._chain.then(() => this._next());
    this._chain = p.catch(() => {});
    return p;
  }

  return() {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  _finish() {
    if (this._done) return;
    this._done = true;
    if (this._stream) this._stream.close();
    if (this._signal && this._onAbort) this._signal.removeEventListener('abort', this._onAbort);
    if (this._onFinish) this._onFinish(this);
  }

  /** Ends the stream; a pending next() settles with done (or AbortError when a signal ended it). */
  close() {
    this._finish();
  }
}

/**
 * A native stream for `db` that is opened (by `open`) on its first next(),
 * once `db.connect()` has connected off the JavaScript thread: what
 * iterate() gives before the client is connected.
 */
function lazyStream(db, open) {
  let stream = null;
  let closed = false;
  return {
    async next(n) {
      if (stream === null) {
        // Opened in its turn among the calls made before it; errors go
        // back as the native stream gives them ({code, message}), and a
        // stream or client closed meanwhile just ends.
        try {
          stream = await db._afterConnect(() => (closed || db._closed ? null : open()), undefined, 'iterate');
        } catch (e) {
          if (closed || db._closed) return null;
          const err = fromNative(e);
          return { code: err.code, message: err.message };
        }
        if (stream === null) return null;
      }
      return stream.next(n);
    },
    close() {
      closed = true;
      if (stream !== null) stream.close();
    },
  };
}

/** Whether an asynchronous addon call gave a native stream (else an `{code, message}`). */
function isStream(r) {
  return r !== null && typeof r === 'object' && typeof r.next === 'function';
}

/** `for await (const change of db.watch({prefix}))`. */
class ChangeStream extends Pull {
  /** Whether the watch could not be put in place (its error comes with the first next()). */
  get failed() {
    return this._error !== null;
  }

  /** The sequence number of the next change it hands out; null while a next() pulls. */
  _position() {
    return this._stream === null ? null : this._stream.position();
  }
}

/** `for await (const doc of db.iterate({prefix}))`; `cursor` is set at the end. */
class DocStream extends Pull {
  _items(parsed) {
    if (parsed.done) {
      this.cursor = parsed.cursor;
      this._last = true;
    }
    return parsed.docs;
  }
}

/**
 * A live topic subscription; see LocalFirst#subscribe. Events: "lost"
 * (the connection went away; events published until "resubscribed" are
 * missed — topic events are not stored) and "resubscribed".
 */
class TopicSubscription extends EventEmitter {
  constructor(db, pattern, fn, stream) {
    super();
    this.pattern = pattern;
    this.dropped = 0;
    this._db = db;
    this._fn = fn;
    this._stream = stream;
    this._closed = false;
    this._wake = null;
    this._done = this._run();
  }

  async _run() {
    let backoff = 50;
    while (!this._closed) {
      let r;
      try {
        r = await this._stream.next(BATCH);
      } catch (e) {
        r = { code: 'internal', message: String(e && e.message) };
      }
      if (r === null) return;
      if (typeof r === 'string') {
        backoff = 50;
        const { events, dropped } = JSON.parse(r);
        this.dropped = dropped;
        for (const ev of events) {
          if (this._closed) return;
          try {
            this._fn(ev.payload, ev.topic);
          } catch (e) {
            this._db._report(e);
          }
        }
        continue;
      }
      // The connection went away: topic events are not stored, so the ones
      // published while it was down are gone. Subscribe again.
      const lost = fromInfo(r);
      if (r.code !== 'EDISCONNECTED' && r.code !== 'ECHANNEL_NOT_FOUND') this._db._report(lost);
      this.emit('lost', lost);
      for (;;) {
        if (this._closed) return;
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, backoff);
          this._wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this._wake = null;
        backoff = Math.min(backoff * 2, 2000);
        if (this._closed) return;
        let stream;
        try {
          stream = await this._db._client().topicsAsync(this.pattern);
        } catch (e) {
          if (fromNative(e).code === 'ECLOSED') return;
          continue;
        }
        if (!isStream(stream)) {
          if (stream.code === 'ECLOSED') return;
          continue;
        }
        if (this._closed) {
          stream.close();
          return;
        }
        this._stream = stream;
        this.emit('resubscribed');
        break;
      }
    }
  }

  /** Stops receiving events. */
  async unsubscribe() {
    this._closed = true;
    this._stream.close();
    if (this._wake) this._wake();
    this._db._topics.delete(this);
    await this._done;
  }
}

// --- the client ------------------------------------------------------------

class LocalFirst extends EventEmitter {
  /**
   * @param {object} [options]
   * @param {"auto"|"ipc"|"network"} [options.mode]
   * @param {string} [options.channelName] the channel (default $HEARTH_CHANNEL or "hearth")
   */
  constructor(options = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw new HearthError('invalid_input', `LocalFirst options must be an object, not ${describe(options)}`);
    }
    const mode = options.mode === undefined ? 'auto' : options.mode;
    if (!MODES.includes(mode)) {
      throw new HearthError('invalid_input', `mode must be one of ${MODES.map((m) => `"${m}"`).join(', ')}, not ${JSON.stringify(mode)}`);
    }
    // An empty name is refused (EINVALID_CHANNEL), not taken for the default.
    const given = options.channelName !== undefined ? options.channelName : options.channel;
    const channel = given !== undefined ? given : process.env.HEARTH_CHANNEL || 'hearth';
    if (typeof channel !== 'string') throw new HearthError('EINVALID_CHANNEL', `channelName must be a string, not ${describe(channel)}`);
    this.mode = mode;
    this.channelName = channel;
    this._connect = {
      channel,
      socketDir: options.socketDir,
      socketPath: options.socketPath,
      timeoutMs: timeoutOption('timeout', options.timeout),
      connectTimeoutMs: timeoutOption('connectTimeout', options.connectTimeout),
      resumeTimeoutMs: timeoutOption('resumeTimeout', options.resumeTimeout),
      eventBuffer: countOption('eventBuffer', options.eventBuffer),
      turnWaitMs: millisOption('fastPathTurnWait', options.fastPathTurnWait, FAST_PATH_TURN_WAIT_MS),
    };
    this._fastPath = options.fastPath !== false;
    this._budgetMs = millisOption('fastPathBudget', options.fastPathBudget, FAST_PATH_BUDGET_MS);
    this._native = null;
    this._closed = false;
    this._feed = null;
    this._feedRetry = null;
    this._connecting = null;
    // Calls waiting for the connection to open (`_afterConnect`).
    this._gate = null;
    this._queued = 0;
    this._sending = false;
    this._topics = new Set();
    this._streams = new Set();
    this._untrack = (stream) => this._streams.delete(stream);
    this.on('newListener', (event) => {
      if (event === 'change' && this._feed === null && this._feedRetry === null) this._startFeed();
    });
    this.on('removeListener', (event) => {
      if (event === 'change' && this.listenerCount('change') === 0) this._stopFeed();
    });
  }

  /**
   * The connection, opened on this thread if there is none yet (see
   * connect()). Only watch() and the pieces that run once connected use
   * it so: a call made before the connection is open opens it off the
   * thread first (`_afterConnect`).
   */
  _client() {
    if (this._native !== null) return this._native;
    this._connectable();
    try {
      this._native = native.NativeClient.connect(JSON.stringify(this._connect));
    } catch (e) {
      throw this._connectError(fromNative(e));
    }
    return this._native;
  }

  /**
   * `send()` (which sends a call and returns the promise of its outcome)
   * once the connection is open — opened off the JavaScript thread
   * (connect()) if it is not — and after every call queued so before it:
   * calls made while a connection opens are sent in the order they were
   * made, and a call made once it is open but before those were sent
   * (`_queued`) waits its turn behind them rather than overtake them on
   * the fast path. Every queued call gets the connection's failure.
   *
   * The call's own timeout (`o.timeout`, else the client's) and signal
   * (`o.signal`) count from when it is made, the wait for the connection
   * included: past them it fails (`timeout`, `ABORT_ERR`) and is never
   * sent. `op` names it in the timeout's message.
   */
  _afterConnect(send, o, op) {
    if (this._gate === null) this._gate = this.connect();
    this._queued++;
    const done = () => {
      if (--this._queued === 0) this._gate = null;
    };
    const signal = o ? o.signal : undefined;
    const ms = o && o.timeout !== undefined ? o.timeout : this._connect.timeoutMs;
    const timed = typeof ms === 'number' && ms <= MAX_TIMER_MS;
    return new Promise((resolve, reject) => {
      let over = false;
      let timer = null;
      const onAbort = () => giveUp(abortError(signal));
      const stop = () => {
        over = true;
        if (timer !== null) clearTimeout(timer);
        if (signal) signal.removeEventListener('abort', onAbort);
      };
      const giveUp = (e) => {
        if (over) return;
        stop();
        reject(e);
      };
      if (signal) {
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
      if (timed && !over) {
        timer = setTimeout(
          () => giveUp(new HearthError('timeout', `${op}: no answer within ${ms} ms: the connection to the server was still opening (it waits up to connectTimeout)`)),
          ms,
        );
      }
      // Handlers of one promise run in the order they were added.
      this._gate.then(
        () => {
          done();
          // Given up while it waited: never sent.
          if (over) return;
          stop();
          // Sent now, in its turn: not queued again behind those after it.
          this._sending = true;
          try {
            resolve(send());
          } catch (e) {
            reject(e);
          } finally {
            this._sending = false;
          }
        },
        (e) => {
          done();
          giveUp(e);
        },
      );
    });
  }

  /** Whether a call made now must wait in `_afterConnect`'s queue. */
  _mustQueue() {
    return this._native === null || (this._queued > 0 && !this._sending);
  }

  /** Throws if this client cannot connect: closed, or the network mode. */
  _connectable() {
    if (this._closed) throw new HearthError('ECLOSED', 'this LocalFirst is closed; create a new one to reconnect');
    if (this.mode === 'network') {
      throw new HearthError(
        'unavailable',
        'mode "network" is not available yet: hearth\'s network mode (HTTP/WebSocket on loopback, the hearth-http crate) is not built. ' +
          `Use mode "ipc" (or "auto") with a hearth server on channel "${this.channelName}": ` +
          `startServer({ channel: "${this.channelName}", dataDir }) or \`hearth serve --channel ${this.channelName} --data-dir DIR\`.`,
      );
    }
  }

  /** A connection's failure, worded for this client's mode. */
  _connectError(err) {
    if (this.mode === 'auto' && !ipcForcedByEnv() && err.code === 'ECHANNEL_NOT_FOUND') {
      err.message =
        `mode "auto": no hearth server answered on channel "${this.channelName}", and the network fallback ` +
        `(hearth-http) is not available yet. ${err.message}`;
    }
    return err;
  }

  /** Connects now (instead of on the first call); resolves once connected. */
  async connect() {
    if (this._native !== null) return;
    this._connectable();
    if (this._connecting === null) {
      // Off the JavaScript thread: a slow or frozen server does not hold
      // the event loop while the connection opens.
      this._connecting = native.NativeClient.connectAsync(JSON.stringify(this._connect)).then((r) => {
        this._connecting = null;
        if (r === null || typeof r !== 'object' || typeof r.transport !== 'function') throw this._connectError(fromInfo(r));
        if (this._closed) {
          r.close();
          throw new HearthError('ECLOSED', 'this LocalFirst was closed while connect() was connecting');
        }
        // A call made meanwhile may have connected on its own.
        if (this._native === null) this._native = r;
        else r.close();
      }, (e) => {
        this._connecting = null;
        throw fromNative(e);
      });
    }
    await this._connecting;
  }

  /** The transport in use ("shm", "socket"…), or null when not connected. */
  get transport() {
    return this._native === null ? null : this._native.transport();
  }

  /** Runs `op` off the JavaScript thread; resolves with the parsed result. */
  _request(op, args, options) {
    if (this._mustQueue()) return this._afterConnect(() => this._request(op, args, options), options, op);
    const client = this._client();
    const signal = options.signal;
    const token = signal ? tokenFor(signal) : null;
    let promise;
    try {
      promise = client.request(op, args, options.timeout, token);
    } catch (e) {
      throw fromNative(e);
    }
    return settle(promise, signal);
  }

  /**
   * The promise for a fast-path call's outcome `r`: settled with `now(r)`
   * when the answer came within the budget (numbers, booleans, strings or
   * null), else the parsed outcome of the promise the addon returned for
   * the rest of a slow call (the only object it returns), which aborting
   * `signal` ends (through its token, `tokenFor`). A call answered within
   * the budget has nothing left to abort: the signal could not fire while
   * it ran.
   */
  _settled(r, now, signal) {
    if (r !== null && typeof r === 'object') return settle(r, signal);
    try {
      return Promise.resolve(now(r));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // The point calls (put, patch, get, delete) are not `async`: a fresh
  // process runs them in V8's interpreter for its first thousands of
  // calls, where an async frame, a closure per call and the helpers'
  // calls cost more than the round trip itself. A bad argument still
  // comes back as a rejected promise, never as a throw.
  //
  // put and get, the calls an application makes most, do their common
  // case — no options, a string id, for put a document whose JSON is an
  // object — in their own body, with no closure and no helper called on
  // every call; anything else goes the general way (_write, _point), which
  // also words the errors. V8 optimises each small helper once it is hot
  // and then again inlined into its caller: in the first 10,000 puts of a
  // fresh process its compiler threads took about a third less CPU this
  // way, time they take from the server's thread on a two-core machine
  // (docs/performance-log.md, "Node").

  /** Replaces document `id` with `data`; resolves with its sequence number once durable. */
  put(id, data, options) {
    if (options === undefined && typeof id === 'string' && typeof data === 'object' && data !== null && this._native !== null && this._queued === 0 && this._fastPath && id.isWellFormed()) {
      if (mustYield()) return this._afterTurn('put', id, data);
      let json, r;
      try {
        json = JSON.stringify(data);
        // Not an object's JSON (an array, a toJSON's other value): the
        // general way says why.
        if (json.charCodeAt(0) !== 123 /* { */) return this._write('put', 'data', 'the document', id, data, options);
        if (json.length > LARGE_JSON) return this._writeLater('put', 'data', id, json, NO_OPTIONS);
        r = this._native.put(id, json, undefined, this._budgetMs, undefined);
      } catch (e) {
        // JSON.stringify threw (or gave undefined): the general way makes
        // the error (calling toJSON again). Else the addon's error.
        return json === undefined ? this._write('put', 'data', 'the document', id, data, options) : Promise.reject(fromNative(e));
      }
      return typeof r === 'number' ? Promise.resolve(r) : settle(r, undefined);
    }
    return this._write('put', 'data', 'the document', id, data, options);
  }

  /** Merges top-level `fields` into document `id` (`null` removes a field). */
  patch(id, fields, options) {
    return this._write('patch', 'fields', 'the fields', id, fields, options);
  }

  /**
   * put and patch: `value` (a JSON object, sent as `field`) for document
   * `id`, on the fast path unless it is large or the fast path is off;
   * resolves with the change's sequence number.
   */
  _write(op, field, what, id, value, options) {
    let o, json;
    try {
      o = callOptions(options);
      checkId(id, op);
      json = objectJson(value, op, id, what);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._writeJson(op, field, id, json, o);
  }

  /** _write once `json` is checked: connected first (off the thread) if need be. */
  _writeJson(op, field, id, json, o) {
    if (this._mustQueue()) return this._afterConnect(() => this._writeJson(op, field, id, json, o), o, op);
    // Connected: not queued means there is a connection.
    const client = this._native;
    if (!this._fastPath || json.length > LARGE_JSON) return this._writeLater(op, field, id, json, o);
    if (mustYield()) return nextTurn().then(() => this._writeNow(client, op, id, json, o));
    return this._writeNow(client, op, id, json, o);
  }

  /**
   * put and patch off the JavaScript thread (a large document, or the fast
   * path off); one longer than the server takes is refused by the addon.
   */
  _writeLater(op, field, id, json, o) {
    return this._requestLater(op, `{"id":${JSON.stringify(id)},"${field}":${json}}`, o);
  }

  /**
   * put's or get's common case after a turn of the event loop (see
   * mustYield), the general way (never through `this.put`/`this.get`,
   * which a subclass may have wrapped).
   */
  _afterTurn(op, id, data) {
    return nextTurn().then(() =>
      op === 'put' ? this._write('put', 'data', 'the document', id, data, undefined) : this._point('get', id, undefined, parseOrNull),
    );
  }

  _writeNow(client, op, id, json, o) {
    const token = fastToken(o.signal);
    if (token === null) return Promise.reject(abortError(o.signal));
    let r;
    try {
      r = op === 'put' ? client.put(id, json, o.timeout, this._budgetMs, token) : client.patch(id, json, o.timeout, this._budgetMs, token);
    } catch (e) {
      return Promise.reject(fromNative(e));
    }
    return this._settled(r, same, o.signal);
  }

  /** The document, or null when absent or deleted. */
  get(id, options) {
    if (options === undefined && typeof id === 'string' && this._native !== null && this._queued === 0 && this._fastPath && id.isWellFormed()) {
      if (mustYield()) return this._afterTurn('get', id);
      let r;
      try {
        r = this._native.get(id, undefined, this._budgetMs, undefined);
      } catch (e) {
        return Promise.reject(fromNative(e));
      }
      if (r === null) return Promise.resolve(null);
      if (typeof r !== 'string') return settle(r, undefined);
      try {
        return Promise.resolve(JSON.parse(r));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this._point('get', id, options, parseOrNull);
  }

  /** Deletes document `id`; resolves true if it existed. */
  delete(id, options) {
    return this._point('delete', id, options, same);
  }

  /** get and delete: on the fast path unless it is off. */
  _point(op, id, options, now) {
    let o, client;
    try {
      o = callOptions(options);
      checkId(id, op);
      if (this._mustQueue()) return this._afterConnect(() => this._point(op, id, options, now), o, op);
      client = this._client();
    } catch (e) {
      return Promise.reject(e);
    }
    if (!this._fastPath) return this._requestLater(op, `{"id":${JSON.stringify(id)}}`, o);
    if (mustYield()) return nextTurn().then(() => this._pointNow(client, op, id, o, now));
    return this._pointNow(client, op, id, o, now);
  }

  _pointNow(client, op, id, o, now) {
    const token = fastToken(o.signal);
    if (token === null) return Promise.reject(abortError(o.signal));
    let r;
    try {
      r = op === 'get' ? client.get(id, o.timeout, this._budgetMs, token) : client.delete(id, o.timeout, this._budgetMs, token);
    } catch (e) {
      return Promise.reject(fromNative(e));
    }
    return this._settled(r, now, o.signal);
  }

  /**
   * getWithMetadata, batch, call, publish, list, query and search (`args`:
   * their JSON arguments): on the fast path like the point calls unless it
   * is off or the arguments are large; the parsed result.
   */
  _unary(op, args, o) {
    if (this._mustQueue()) return this._afterConnect(() => this._unary(op, args, o), o, op);
    const client = this._client();
    if (!this._fastPath || args.length > LARGE_JSON) return this._request(op, args, o);
    if (mustYield()) return nextTurn().then(() => this._unaryNow(client, op, args, o));
    return this._unaryNow(client, op, args, o);
  }

  _unaryNow(client, op, args, o) {
    const token = fastToken(o.signal);
    if (token === null) return Promise.reject(abortError(o.signal));
    let r;
    try {
      r = client.unary(op, args, o.timeout, this._budgetMs, token);
    } catch (e) {
      return Promise.reject(fromNative(e));
    }
    return this._settled(r, parseOrNull, o.signal);
  }

  /** [`_request`](#_request) as a promise, rejected rather than thrown. */
  _requestLater(op, args, options) {
    try {
      return this._request(op, args, options);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `{id, data, metadata: {seq, hlc, replica, updatedAt, deleted}}`, deleted documents included; null if it never existed. */
  async getWithMetadata(id, options) {
    const o = callOptions(options);
    checkId(id, 'getWithMetadata');
    return this._unary('getWithMetadata', `{"id":${JSON.stringify(id)}}`, o);
  }

  /**
   * Documents in id order: `[{id, data}]`, filtered by id `prefix` and `type`
   * field, at most `limit`, after `cursor`. The array's `cursor` property is
   * set when the list stopped at `limit` (pass it back for the next page).
   */
  async list(options) {
    const o = callOptions(options);
    const args = listArgs(o);
    const page = await this._unary('list', args, o);
    return withCursor(page);
  }

  /** Like list(), one document at a time as they stream in: `for await (const doc of db.iterate({prefix}))`. */
  iterate(options) {
    const o = callOptions(options);
    const args = listArgs(o);
    const open = () => this._client().listStream(args, o.timeout);
    // Not connected yet: the stream connects off the thread on its first
    // next(), and opens then.
    return this._track(new DocStream(this._mustQueue() ? () => lazyStream(this, open) : open, o.signal, this._untrack));
  }

  /** Documents whose top-level fields equal every value in `filter`: `[{id, data}]` (+ `cursor`). */
  async query(filter, options) {
    const o = callOptions(options);
    if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) {
      throw new HearthError('invalid_input', `query: the filter must be an object of top-level fields, not ${describe(filter)}`);
    }
    const args = anyJson({ filter, limit: o.limit, cursor: o.cursor }, 'query: the filter');
    return withCursor(await this._unary('query', args, o));
  }

  /** Full-text search: `[{id, data, score}]`, best first (`limit` default 20). */
  async search(text, options) {
    const o = callOptions(options);
    if (typeof text !== 'string') throw new HearthError('invalid_input', `search: the text must be a string, not ${describe(text)}`);
    return this._unary('search', JSON.stringify({ text, limit: o.limit }), o);
  }

  /**
   * Applies writes atomically: `[{op: "put", id, data}, {op: "patch", id, fields}, {op: "delete", id}]`.
   * Resolves with `{firstSeq, lastSeq}`.
   */
  async batch(ops, options) {
    const o = callOptions(options);
    if (!Array.isArray(ops)) throw new HearthError('invalid_input', `batch: expected an array of operations, not ${describe(ops)}`);
    const json = anyJson({ ops }, 'batch: the operations');
    return this._unary('batch', json, o);
  }

  /** Calls the server's handler `name` with `payload`; resolves with its result. */
  async call(name, payload, options) {
    const o = callOptions(options);
    if (typeof name !== 'string') throw new HearthError('invalid_input', `call: the handler name must be a string, not ${describe(name)}`);
    return this._unary('call', `{"name":${JSON.stringify(name)},"payload":${anyJson(payload, `call(${JSON.stringify(name)}): the payload`)}}`, o);
  }

  /** Publishes an event on `topic`; resolves with how many subscriptions received it. */
  async publish(topic, payload, options) {
    const o = callOptions(options);
    if (typeof topic !== 'string') throw new HearthError('invalid_input', `publish: the topic must be a string, not ${describe(topic)}`);
    return this._unary('publish', `{"topic":${JSON.stringify(topic)},"payload":${anyJson(payload, `publish(${JSON.stringify(topic)}): the payload`)}}`, o);
  }

  /**
   * Calls `fn(payload, topic)` for every event published on a topic matching
   * `pattern` (`*` matches a segment; a last `*` matches the rest). Resolves
   * once the subscription is in place with `{unsubscribe()}`.
   */
  async subscribe(pattern, fn) {
    if (typeof pattern !== 'string') throw new HearthError('invalid_input', `subscribe: the pattern must be a string, not ${describe(pattern)}`);
    if (typeof fn !== 'function') throw new HearthError('invalid_input', 'subscribe: the listener must be a function');
    let stream;
    // Connected off the JavaScript thread, and put in place off it too: a
    // slow or frozen server does not hold the event loop meanwhile.
    try {
      stream = await this._afterConnect(() => this._client().topicsAsync(pattern), undefined, 'subscribe');
    } catch (e) {
      throw fromNative(e);
    }
    if (!isStream(stream)) throw fromInfo(stream);
    if (this._closed) {
      stream.close();
      throw new HearthError('ECLOSED', 'this LocalFirst was closed while subscribe() was putting its subscription in place');
    }
    const sub = new TopicSubscription(this, pattern, fn, stream);
    this._topics.add(sub);
    return sub;
  }

  /**
   * Committed changes to ids starting with `prefix`, from now (or from
   * sequence number `fromSeq`), in order, each exactly once:
   * `for await (const change of db.watch({prefix}))`. The subscription is in
   * place when watch() returns. End it with `break`, `close()` or `signal`.
   */
  watch(options) {
    const o = callOptions(options);
    const prefix = o.prefix === undefined ? undefined : o.prefix;
    if (prefix !== undefined && typeof prefix !== 'string') throw new HearthError('invalid_input', 'watch: prefix must be a string');
    const fromSeq = o.fromSeq;
    return this._track(new ChangeStream(() => this._client().watch(prefix, fromSeq), o.signal, this._untrack));
  }

  /** Server and store counters. */
  async stats(options) {
    return this._request('stats', '{}', callOptions(options));
  }

  /** Changes after sequence number `after` (at most `limit`, default 1000). */
  async changesSince(after, options) {
    const o = callOptions(options);
    return this._request('changesSince', JSON.stringify({ after: after || 0, limit: o.limit }), o);
  }

  /** Resolves once the server answers. */
  async ping(options) {
    return this._request('ping', '{}', callOptions(options)).then(() => undefined);
  }

  /** Closes the connection: open streams end, later calls fail with ECLOSED. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    this._stopFeed();
    const topics = [...this._topics];
    for (const s of [...this._streams]) s.close();
    if (this._native !== null) {
      this._native.close();
      this._native = null;
    }
    await Promise.all(topics.map((t) => t.unsubscribe()));
  }

  _track(stream) {
    if (!stream._done) this._streams.add(stream);
    return stream;
  }

  /** Reports an error from a background loop: an "error" event when someone listens, else a process warning. */
  _report(e) {
    if (this.listenerCount('error') > 0) this.emit('error', e);
    else process.emitWarning(e instanceof Error ? e : new Error(String(e)), { code: e && e.code });
  }

  /**
   * The watch behind on("change"), from now or from `fromSeq`. A watch
   * that fails (no server for longer than the resume timeout) is reported
   * ("error"), and, while listeners remain, started again from the change
   * after the last one delivered — after 250 ms, then twice as long each
   * time it cannot be put in place, up to 30 s — so that no change is
   * missed or repeated.
   */
  _startFeed(fromSeq, delay = FEED_RETRY_MIN_MS, retrying = false) {
    const feed = this.watch(fromSeq === undefined ? undefined : { fromSeq });
    this._feed = feed;
    const opened = !feed.failed;
    let resume = opened ? feed._position() : fromSeq;
    (async () => {
      try {
        for await (const change of feed) {
          resume = change.seq + 1;
          try {
            this.emit('change', change);
          } catch (e) {
            this._report(e);
          }
        }
      } catch (e) {
        if (this._feed !== feed || this._closed) return;
        // The first failure is reported (a feed that ran, or one that
        // could not start); retries that fail again are not.
        if (opened || !retrying) this._report(e);
        this._feed = null;
        this._retryFeed(resume === null ? fromSeq : resume, opened ? FEED_RETRY_MIN_MS : delay);
      } finally {
        if (this._feed === feed) this._feed = null;
      }
    })();
  }

  _retryFeed(fromSeq, delay) {
    if (this.listenerCount('change') === 0) return;
    this._feedRetry = setTimeout(() => {
      this._feedRetry = null;
      if (this._closed || this._feed !== null || this.listenerCount('change') === 0) return;
      this._startFeed(fromSeq, Math.min(delay * 2, FEED_RETRY_MAX_MS), true);
    }, delay);
  }

  _stopFeed() {
    if (this._feedRetry !== null) {
      clearTimeout(this._feedRetry);
      this._feedRetry = null;
    }
    if (this._feed !== null) {
      const feed = this._feed;
      this._feed = null;
      feed.close();
    }
  }
}

function listArgs(o) {
  if (o.prefix !== undefined && typeof o.prefix !== 'string') throw new HearthError('invalid_input', 'list: prefix must be a string');
  if (o.type !== undefined && typeof o.type !== 'string') throw new HearthError('invalid_input', 'list: type must be a string');
  if (o.limit !== undefined && !(Number.isInteger(o.limit) && o.limit >= 0)) throw new HearthError('invalid_input', 'list: limit must be a non-negative integer');
  if (o.cursor !== undefined && o.cursor !== null && typeof o.cursor !== 'string') throw new HearthError('invalid_input', 'list: cursor must be a string');
  return JSON.stringify({ prefix: o.prefix, type: o.type, limit: o.limit, cursor: o.cursor });
}

function withCursor(page) {
  const docs = page.docs;
  Object.defineProperty(docs, 'cursor', { value: page.cursor === undefined ? null : page.cursor, enumerable: false });
  return docs;
}

/** Sets how long (ms) fast-path calls may run back to back before the event loop gets a turn (default 2). */
function setMaxSyncMs(ms) {
  if (!(typeof ms === 'number' && ms >= 0)) throw new HearthError('invalid_input', 'maxSyncMs must be a non-negative number');
  maxSyncMs = ms;
}

module.exports = { LocalFirst, PluresDBLocalFirst: LocalFirst, setMaxSyncMs, ChangeStream, DocStream, TopicSubscription };
