'use strict';
// Electron main process: starts hearth through app-core.js and answers the
// window's requests. The renderer never talks to hearth itself (see
// README.md: why).

const path = require('node:path');
const { app, BrowserWindow, ipcMain } = require('electron');
const { createAppCore, IPC } = require('./app-core');

let core = null;
let stopWatching = null;

function createWindow() {
  const win = new BrowserWindow({
    width: 900,
    height: 700,
    webPreferences: {
      preload: path.join(__dirname, 'preload.js'),
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: true,
    },
  });
  win.loadFile(path.join(__dirname, 'index.html'));
  return win;
}

async function start() {
  core = await createAppCore({
    channel: 'electron-app',
    dataDir: path.join(app.getPath('userData'), 'hearth'),
    log: (line) => console.log(`[hearth] ${line}`),
  });
  // Each handler returns plain data; an Error thrown here reaches the
  // renderer as a rejected promise with its message.
  ipcMain.handle(IPC.list, () => core.api.listUsers());
  ipcMain.handle(IPC.add, (_event, user) => core.api.addUser(user));
  ipcMain.handle(IPC.remove, (_event, id) => core.api.deleteUser(id));
  const win = createWindow();
  stopWatching = core.onUsersChanged((change) => {
    if (!win.isDestroyed()) win.webContents.send(IPC.changed, change);
  });
}

let quitting = false;
app.on('before-quit', (event) => {
  if (quitting || core === null) return;
  // Stop hearth gracefully (it flushes) before the app exits.
  event.preventDefault();
  quitting = true;
  if (stopWatching) stopWatching();
  core.close().finally(() => app.quit());
});

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit();
});

const started = app.whenReady().then(start).catch((e) => {
  console.error('could not start hearth:', e);
  app.exit(1);
});

module.exports = { started };
