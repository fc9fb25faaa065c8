'use strict';
// Runs in the renderer's isolated preload context: exposes a narrow API —
// four functions, plain data in and out — and nothing of Node, Electron or
// hearth. The channel names repeat app-core.js's IPC (a sandboxed preload
// cannot require local files).

const { contextBridge, ipcRenderer } = require('electron');

contextBridge.exposeInMainWorld('users', {
  list: () => ipcRenderer.invoke('users:list'),
  add: (user) => ipcRenderer.invoke('users:add', { id: user?.id, name: user?.name, email: user?.email }),
  remove: (id) => ipcRenderer.invoke('users:remove', String(id)),
  onChanged: (fn) => {
    const listener = (_event, change) => fn({ id: change.id, kind: change.kind });
    ipcRenderer.on('users:changed', listener);
    return () => ipcRenderer.removeListener('users:changed', listener);
  },
});
