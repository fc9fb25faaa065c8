'use strict';
// examples/electron-app under plain Node (Electron cannot be downloaded
// here): its main-process logic (app-core.js) against a real `hearth
// serve`, and main.js / preload.js wired to a stand-in `electron` module
// that records what they ask of it.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const Module = require('node:module');
const { channel, tempDir, once, afterReconnect, needsServe } = require('./helpers');

const example = path.join(__dirname, '..', '..', '..', 'examples', 'electron-app');
const { createAppCore, IPC } = require(path.join(example, 'app-core.js'));

/** Loads `file` with `require('electron')` answered by `fake`. */
function loadWithElectron(file, fake) {
  const original = Module._load;
  Module._load = function load(request, parent, isMain) {
    if (request === 'electron') return fake;
    return original.call(this, request, parent, isMain);
  };
  try {
    delete require.cache[require.resolve(file)];
    return require(file);
  } finally {
    Module._load = original;
  }
}

test('app core: add, list, remove users; changes are pushed; input is checked', needsServe, async (t) => {
  const core = await createAppCore({ channel: channel('electron'), dataDir: tempDir() });
  t.after(() => core.close());
  const changes = [];
  let changed;
  const stop = core.onUsersChanged((c) => {
    changes.push(c);
    if (changed) changed();
  });
  const id = await core.api.addUser({ name: ' Alice ', email: 'alice@example.com' });
  assert.match(id, /^user:/);
  await core.api.addUser({ id: 'bob', name: 'Bob' });
  const users = await core.api.listUsers();
  // In id order: user:<number> sorts before user:bob.
  assert.deepEqual(users.map((u) => [u.id === id ? 'new' : u.id, u.name, u.email]), [
    ['new', 'Alice', 'alice@example.com'],
    ['user:bob', 'Bob', null],
  ]);
  await assert.rejects(core.api.addUser({ name: '' }), /name is required/);
  await assert.rejects(core.api.addUser({ name: 'X', email: 'not-an-address' }), /email/);
  await assert.rejects(core.api.addUser({ name: { $gt: '' } }), /name must be text/);
  await assert.rejects(core.api.addUser(null), /expected/);
  await assert.rejects(core.api.deleteUser('config:1'), /not a user id/);
  assert.equal(await core.api.deleteUser('user:bob'), true);
  if (changes.length < 3) {
    await new Promise((r) => {
      changed = () => changes.length >= 3 && r();
    });
  }
  assert.deepEqual(changes.map((c) => c.kind), ['put', 'put', 'delete']);
  stop();
  assert.deepEqual((await core.api.listUsers()).map((u) => u.name), ['Alice']);
});

test('app core: a crashed hearth is restarted and the data is still there', needsServe, async (t) => {
  const core = await createAppCore({ channel: channel('electron'), dataDir: tempDir() });
  t.after(() => core.close());
  await core.api.addUser({ id: 'carol', name: 'Carol' });
  const back = once(core.server, 'restart');
  process.kill(core.server.pid, 'SIGKILL');
  await back;
  const users = await afterReconnect(() => core.api.listUsers());
  assert.deepEqual(users.map((u) => u.id), ['user:carol']);
});

test('main.js: a safe window, the three handlers, hearth stopped before quitting', needsServe, async (t) => {
  const handlers = new Map();
  const appEvents = new Map();
  const windows = [];
  let pushed;
  const firstPush = new Promise((r) => {
    pushed = r;
  });
  let quit;
  const quitCalled = new Promise((r) => {
    quit = r;
  });
  const dataRoot = tempDir('userdata');
  class BrowserWindow {
    constructor(options) {
      this.options = options;
      this.webContents = { send: (ch, msg) => pushed([ch, msg]) };
      windows.push(this);
    }
    loadFile(file) {
      this.file = file;
    }
    isDestroyed() {
      return false;
    }
  }
  const fake = {
    app: {
      getPath: (name) => (assert.equal(name, 'userData'), dataRoot),
      on: (ev, fn) => appEvents.set(ev, fn),
      whenReady: () => Promise.resolve(),
      quit: () => quit(),
      exit: (code) => assert.fail(`app.exit(${code})`),
    },
    BrowserWindow,
    ipcMain: { handle: (ch, fn) => handlers.set(ch, fn) },
  };
  const main = loadWithElectron(path.join(example, 'main.js'), fake);
  await main.started;
  assert.deepEqual([...handlers.keys()].sort(), [IPC.add, IPC.list, IPC.remove].sort());
  assert.equal(windows.length, 1);
  const prefs = windows[0].options.webPreferences;
  assert.equal(prefs.contextIsolation, true);
  assert.equal(prefs.nodeIntegration, false);
  assert.equal(prefs.sandbox, true);
  assert.ok(prefs.preload.endsWith('preload.js'));
  assert.ok(windows[0].file.endsWith('index.html'));

  const id = await handlers.get(IPC.add)({}, { name: 'Dana', email: 'dana@example.com' });
  assert.deepEqual((await handlers.get(IPC.list)({})).map((u) => u.name), ['Dana']);
  assert.deepEqual(await firstPush, [IPC.changed, { id, kind: 'put' }]);
  assert.equal(await handlers.get(IPC.remove)({}, id), true);

  // Quitting: before-quit is held until hearth has stopped, then quit again.
  let prevented = false;
  appEvents.get('before-quit')({ preventDefault: () => (prevented = true) });
  assert.ok(prevented);
  await quitCalled;
  appEvents.get('before-quit')({ preventDefault: () => assert.fail('second before-quit is not held') });
});

test('preload.js exposes four functions and nothing else', () => {
  const exposed = {};
  const invoked = [];
  const listeners = new Map();
  const fake = {
    contextBridge: { exposeInMainWorld: (key, api) => (exposed[key] = api) },
    ipcRenderer: {
      invoke: (ch, ...args) => (invoked.push([ch, ...args]), Promise.resolve(null)),
      on: (ch, fn) => listeners.set(ch, fn),
      removeListener: (ch) => listeners.delete(ch),
    },
  };
  loadWithElectron(path.join(example, 'preload.js'), fake);
  assert.deepEqual(Object.keys(exposed), ['users']);
  assert.deepEqual(Object.keys(exposed.users).sort(), ['add', 'list', 'onChanged', 'remove']);
  exposed.users.list();
  exposed.users.add({ name: 'E', email: 'e@x', extra: 'dropped', __proto__: { evil: 1 } });
  exposed.users.remove(7);
  assert.deepEqual(invoked, [
    [IPC.list],
    [IPC.add, { id: undefined, name: 'E', email: 'e@x' }],
    [IPC.remove, '7'],
  ]);
  const seen = [];
  const off = exposed.users.onChanged((c) => seen.push(c));
  listeners.get(IPC.changed)({ sender: 'event object is not passed on' }, { id: 'user:1', kind: 'put', secret: 'x' });
  assert.deepEqual(seen, [{ id: 'user:1', kind: 'put' }]);
  off();
  assert.equal(listeners.size, 0);
});
