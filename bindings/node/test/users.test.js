'use strict';
// Who may use a channel, as the package reports it: a socket directory that
// others can open is refused by the client and by the server, with the fix
// in the message; and a client running as another user (`nobody`, started
// by root from a copy of this package) is refused at every wall — its own
// check of the directory, the directory's mode, and the server's peer-uid
// check once directory and socket are opened to everyone. The second test
// needs root to start a process as another user; elsewhere it is skipped
// with the reason.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { hearth, channel, tempDir, client, server, needsServe } = require('./helpers');

const NOBODY = 65534;

/** A directory anyone may enter and read, removed after test `t`. */
function openDir(t, mode) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-users-'));
  fs.chmodSync(dir, mode);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a socket directory others can open is refused, with the fix in the message', needsServe, async (t) => {
  const dir = openDir(t, 0o777);
  const db = client(t, channel('open'), { socketDir: dir });
  await assert.rejects(db.get('a'), (e) => {
    assert.equal(e.code, 'EUNSAFE_DIRECTORY');
    assert.equal(e.protocolCode, 'permission_denied');
    assert.match(e.message, /mode is 777.*chmod 700/);
    return true;
  });
  await assert.rejects(
    hearth.startServer({ channel: channel('open'), dataDir: tempDir(), socketDir: dir, logs: 'ignore' }),
    (e) => {
      assert.equal(e.code, 'ESERVER_START');
      assert.match(e.message, /chmod 700/);
      return true;
    },
  );
});

/** Runs `script` with `node` as `nobody`, this package copied where it can read it. */
function runAsNobody(t, script, env) {
  const dir = openDir(t, 0o755);
  const pkg = path.join(dir, 'hearth');
  const root = path.join(__dirname, '..');
  fs.mkdirSync(pkg);
  for (const name of ['package.json', 'index.js', 'local-first.js', 'hearth.node']) {
    fs.copyFileSync(path.join(root, name), path.join(pkg, name));
  }
  fs.cpSync(path.join(root, 'lib'), path.join(pkg, 'lib'), { recursive: true });
  const file = path.join(dir, 'probe.js');
  fs.writeFileSync(file, script);
  fs.chmodSync(pkg, 0o755);
  for (const f of fs.readdirSync(pkg, { recursive: true })) fs.chmodSync(path.join(pkg, f), 0o755);
  fs.chmodSync(file, 0o644);
  const r = spawnSync(process.execPath, [file], {
    uid: NOBODY,
    gid: NOBODY,
    cwd: dir,
    env: { PATH: process.env.PATH, HEARTH_PKG: pkg, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `the probe failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

const PROBE = `
const { LocalFirst } = require(process.env.HEARTH_PKG);
(async () => {
  for (const options of JSON.parse(process.env.ATTEMPTS)) {
    const db = new LocalFirst({ mode: 'ipc', connectTimeout: 10000, ...options });
    try {
      await db.get('secret');
      console.log(JSON.stringify({ ok: true }));
    } catch (e) {
      console.log(JSON.stringify({ code: e.code, message: e.message }));
    }
    await db.close().catch(() => {});
  }
})();
`;

const isRoot = process.getuid && process.getuid() === 0;

test(
  "another user's client is refused at every wall, and told why",
  isRoot ? needsServe : { skip: 'needs root to start a client as another user' },
  async (t) => {
    const parent = openDir(t, 0o755);
    const socketDir = path.join(parent, 'sock');
    const s = await server(t, { socketDir });
    const owner = client(t, s.channel, { socketDir });
    await owner.put('secret', { pin: 1234 });

    const [byName, byPath] = runAsNobody(t, PROBE, {
      ATTEMPTS: JSON.stringify([{ channelName: s.channel, socketDir }, { socketPath: s.socketPath }]),
    });
    assert.equal(byName.code, 'EUNSAFE_DIRECTORY', byName.message);
    assert.match(byName.message, /owned by uid 0, not by this user \(uid 65534\).*a socket directory of your own/);
    assert.equal(byPath.code, 'permission_denied', byPath.message);
    assert.match(byPath.message, /os error 13/);

    // Someone opened the directory and the socket to everyone: the server
    // still refuses, naming both users.
    fs.chmodSync(socketDir, 0o755);
    fs.chmodSync(s.socketPath, 0o666);
    const [opened] = runAsNobody(t, PROBE, { ATTEMPTS: JSON.stringify([{ socketPath: s.socketPath }]) });
    assert.equal(opened.code, 'permission_denied', opened.message);
    assert.match(opened.message, /belongs to uid 0.*uid 65534/);

    assert.deepEqual(await owner.get('secret'), { pin: 1234 });
  },
);
