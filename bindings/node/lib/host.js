'use strict';
// serve(): Node as the host. A hearth server runs inside this process (the
// addon embeds hearth-ipc's Server); its custom handlers are JavaScript
// async functions and `host.emit` publishes events to subscribers.
//
// Owns: the table of JavaScript handlers, calling them when the addon's
// dispatcher asks, and turning their results and thrown errors into
// replies. Must never: let a handler's exception escape (it becomes the
// caller's error), or leave a temporary data directory behind after close().

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const native = require('./native');
const { HearthError, PROTOCOL_CODES, fromNative, fromInfo } = require('./errors');

function handlerCode(err) {
  return err && typeof err.code === 'string' && PROTOCOL_CODES.includes(err.code) ? err.code : 'internal';
}

function handlerMessage(err) {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

class Host {
  constructor(channel, tempDir) {
    /** The channel served. */
    this.channel = channel;
    this._fns = new Map();
    this._native = null;
    this._tempDir = tempDir;
    this._closed = false;
    // The addon passes its arguments as one array: [token, name, payloadJson, contextJson].
    this._dispatch = (args) => this._call(args[0], args[1], args[2], args[3]);
  }

  _call(token, name, payloadJson, contextJson) {
    const host = this._native;
    const fn = this._fns.get(name);
    if (!fn) {
      host.reject(token, 'unknown_operation', `no handler named ${JSON.stringify(name)} on channel ${this.channel}`);
      return;
    }
    const ctx = JSON.parse(contextJson);
    ctx.emit = (topic, payload) => this.emit(topic, payload);
    let result;
    try {
      result = fn.call(ctx, JSON.parse(payloadJson), ctx);
    } catch (e) {
      host.reject(token, handlerCode(e), handlerMessage(e));
      return;
    }
    Promise.resolve(result).then(
      (value) => {
        let json;
        try {
          json = value === undefined ? undefined : JSON.stringify(value);
        } catch (e) {
          host.reject(token, 'internal', `handler ${name} returned a value that cannot be serialised to JSON: ${e.message}`);
          return;
        }
        host.resolve(token, json === undefined ? null : json);
      },
      (e) => host.reject(token, handlerCode(e), handlerMessage(e)),
    );
  }

  /**
   * Serves `name` with `fn(payload, ctx)` (also called with `this` = ctx:
   * `{callerId, connectionId, pid, uid, transport, name, emit}`). Its result
   * is the caller's reply; a thrown error becomes the caller's error (its
   * `code` is kept when it is a protocol code, else `internal`). Resolves
   * once clients can call it. Replacing the function of a served name is
   * immediate; a new name is added to the running server (connected
   * clients keep their connections).
   */
  async handle(name, fn) {
    if (typeof name !== 'string') throw new HearthError('invalid_input', 'handle: the name must be a string');
    if (typeof fn !== 'function') throw new HearthError('invalid_input', 'handle: the handler must be a function');
    if (this._closed) throw new HearthError('ECLOSED', 'this host is closed');
    const had = this._fns.get(name);
    this._fns.set(name, fn);
    if (this._native.handlers().includes(name)) return;
    let r;
    try {
      r = await this._native.addHandler(name);
    } catch (e) {
      r = { code: fromNative(e).code, message: e.message };
    }
    if (r !== null && typeof r === 'object') {
      if (had) this._fns.set(name, had);
      else this._fns.delete(name);
      throw fromInfo(r);
    }
  }

  /** Stops serving `name` to new calls (the listener keeps the name; calls get unknown_operation). */
  unhandle(name) {
    this._fns.delete(name);
  }

  /** Publishes `payload` on `topic` to every matching subscription; returns how many received it. */
  emit(topic, payload) {
    if (typeof topic !== 'string') throw new HearthError('invalid_input', 'emit: the topic must be a string');
    let json;
    try {
      json = payload === undefined ? 'null' : JSON.stringify(payload);
    } catch (e) {
      throw new HearthError('invalid_input', `emit(${JSON.stringify(topic)}): the payload cannot be serialised to JSON (${e.message})`);
    }
    try {
      return this._native.emit(topic, json);
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** The socket clients connect to. */
  get socketPath() {
    return this._native ? this._native.socketPath : null;
  }

  /** Server counters (connections, subscriptions, requests). */
  stats() {
    const json = this._native ? this._native.stats() : null;
    return json === null ? null : JSON.parse(json);
  }

  /** Stops: no new connections, calls in flight finish, the store is flushed, the socket removed. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    const r = await this._native.close();
    if (this._tempDir) fs.rmSync(this._tempDir, { recursive: true, force: true });
    if (r !== null && typeof r === 'object') throw fromInfo(r);
  }
}

/**
 * Starts a hearth server inside this Node process on `channel`.
 * `dataDir` holds the documents (a temporary directory, removed on close,
 * when absent: a handlers-only channel). `handlers`: `{name: fn}` served
 * from the start.
 */
async function serve(options) {
  if (options === null || typeof options !== 'object') throw new HearthError('invalid_input', 'serve: options must be an object');
  const { channel, dataDir, socketDir, durability, handlers = {}, shutdownTimeout } = options;
  if (typeof channel !== 'string') throw new HearthError('EINVALID_CHANNEL', 'serve: options.channel must be a string');
  const names = Object.keys(handlers);
  for (const name of names) {
    if (typeof handlers[name] !== 'function') throw new HearthError('invalid_input', `serve: handler ${name} must be a function`);
  }
  const tempDir = dataDir ? null : fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-host-'));
  const host = new Host(channel, tempDir);
  for (const name of names) host._fns.set(name, handlers[name]);
  const args = JSON.stringify({
    channel,
    dataDir: dataDir ? path.resolve(dataDir) : tempDir,
    socketDir,
    durability,
    handlers: names,
    shutdownTimeoutMs: shutdownTimeout,
  });
  let r;
  try {
    r = await native.NativeHost.start(args, host._dispatch);
  } catch (e) {
    r = { code: fromNative(e).code, message: e.message };
  }
  if (!(r instanceof native.NativeHost)) {
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
    throw fromInfo(r);
  }
  host._native = r;
  return host;
}

module.exports = { serve, Host };
