'use strict';
// The example's main-process logic, without Electron: starts hearth
// (startServer, restarted if it crashes), opens the database, and offers
// the few operations the window may ask for. Everything the renderer sends
// is untrusted input and checked here. main.js wires this to ipcMain;
// the tests drive it under plain Node.

const path = require('node:path');
const { LocalFirst, startServer } = require('./hearth');

const USER_PREFIX = 'user:';
const MAX_FIELD = 200;

function field(value, name, { required }) {
  if (value === undefined || value === null || value === '') {
    if (required) throw new Error(`${name} is required`);
    return undefined;
  }
  if (typeof value !== 'string') throw new Error(`${name} must be text`);
  const v = value.trim();
  if (v.length > MAX_FIELD) throw new Error(`${name} is longer than ${MAX_FIELD} characters`);
  return v;
}

/**
 * @param {{channel?: string, dataDir: string, log?: (line: string) => void}} options
 */
async function createAppCore({ channel = 'electron-app', dataDir, log = () => {} }) {
  const server = await startServer({ channel, dataDir: path.resolve(dataDir), maxRestarts: 5, logs: 'events' });
  server.on('log', ({ line }) => log(line));
  server.on('restart', (n) => log(`hearth restarted (${n})`));
  const db = new LocalFirst({ mode: 'ipc', channelName: channel });
  await db.connect();
  let next = Date.now();

  const api = {
    /** Every user: [{id, name, email, createdAt}]. */
    async listUsers() {
      const users = await db.list({ prefix: USER_PREFIX, type: 'User' });
      return users.map((u) => ({ id: u.id, name: u.data.name, email: u.data.email, createdAt: u.data.createdAt }));
    },

    /** Adds a user from the form; returns its id. */
    async addUser(input) {
      if (input === null || typeof input !== 'object') throw new Error('expected {name, email}');
      const name = field(input.name, 'name', { required: true });
      const email = field(input.email, 'email', { required: false });
      if (email !== undefined && !/^[^@\s]+@[^@\s]+$/.test(email)) throw new Error('email does not look like an address');
      let id = field(input.id, 'id', { required: false });
      if (id === undefined) {
        next += 1;
        id = `${USER_PREFIX}${next}`;
      } else if (!id.startsWith(USER_PREFIX)) {
        id = `${USER_PREFIX}${id}`;
      }
      await db.put(id, { type: 'User', name, email: email || null, createdAt: new Date().toISOString() });
      return id;
    },

    /** Removes a user; true if there was one. */
    async deleteUser(id) {
      if (typeof id !== 'string' || !id.startsWith(USER_PREFIX)) throw new Error('not a user id');
      return db.delete(id);
    },
  };

  /** Calls `fn({id, kind})` after every change to a user, until close(). */
  function onUsersChanged(fn) {
    const changes = db.watch({ prefix: USER_PREFIX });
    (async () => {
      try {
        for await (const c of changes) fn({ id: c.id, kind: c.kind });
      } catch (e) {
        log(`watching users stopped: ${e.message}`);
      }
    })();
    return () => changes.close();
  }

  async function close() {
    await db.close();
    await server.stop();
  }

  return { api, onUsersChanged, close, server, db };
}

/** The names of the ipcMain handlers, shared with main.js (preload.js repeats them: a sandboxed preload cannot require files). */
const IPC = Object.freeze({
  list: 'users:list',
  add: 'users:add',
  remove: 'users:remove',
  changed: 'users:changed',
});

module.exports = { createAppCore, IPC };
