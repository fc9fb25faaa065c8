'use strict';
// The window: no Node, no Electron, no hearth — only `window.users` from
// preload.js. Renders the list and refreshes it when users change (also
// when another process changes them).

const list = document.getElementById('userList');
const error = document.getElementById('error');

async function render() {
  const users = await window.users.list();
  list.replaceChildren(
    ...users.map((u) => {
      const li = document.createElement('li');
      li.textContent = u.email ? `${u.name} (${u.email})` : u.name;
      const remove = document.createElement('button');
      remove.className = 'remove';
      remove.textContent = 'Remove';
      remove.addEventListener('click', () => window.users.remove(u.id).catch(show));
      li.append(remove);
      return li;
    }),
  );
}

function show(e) {
  error.textContent = e ? String(e.message || e).replace(/^Error invoking remote method '[^']+': (Error: )?/, '') : '';
}

document.getElementById('add').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = document.getElementById('userName');
  const email = document.getElementById('userEmail');
  try {
    await window.users.add({ name: name.value, email: email.value });
    name.value = '';
    email.value = '';
    show(null);
  } catch (e) {
    show(e);
  }
});

window.users.onChanged(() => render().catch(show));
render().catch(show);
