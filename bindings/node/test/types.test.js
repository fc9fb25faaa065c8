'use strict';
// index.d.ts is hand-written: check it declares every runtime export (and
// nothing the runtime lacks), that the ES module entries match the
// CommonJS ones, and that TypeScript accepts a program using the whole API
// through it and refuses its misuses (test/fixtures/usage.mts).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
require('./helpers');
const hearth = require('..');

function declaredValues(file) {
  const text = fs.readFileSync(path.join(__dirname, '..', file), 'utf8');
  const names = new Set();
  for (const m of text.matchAll(/^export (?:declare )?(?:class|function|const) (\w+)/gm)) names.add(m[1]);
  for (const m of text.matchAll(/^export \{ (\w+) as (\w+) \}/gm)) names.add(m[2]);
  for (const m of text.matchAll(/^export \{ ([\w, ]+?)(?: as \w+)?(?:, (\w+) as (\w+))? \} from/gm)) {
    names.add(m[1].split(',')[0].trim());
    if (m[3]) names.add(m[3]);
  }
  return names;
}

test('index.d.ts declares exactly the runtime exports', () => {
  const declared = declaredValues('index.d.ts');
  assert.deepEqual([...declared].sort(), Object.keys(hearth).sort());
});

test('local-first.d.ts declares the runtime exports of hearth/local-first', () => {
  const declared = declaredValues('local-first.d.ts');
  assert.deepEqual([...declared].sort(), Object.keys(require('hearth/local-first')).sort());
});

test('the ES module entries export the same objects', async () => {
  const esm = await import('hearth');
  for (const name of Object.keys(hearth)) assert.equal(esm[name], hearth[name], name);
  assert.equal(esm.default, hearth);
  const lf = await import('hearth/local-first');
  assert.equal(lf.PluresDBLocalFirst, hearth.LocalFirst);
});

// scripts/test-node.sh installs TypeScript and @types/node (pinned) and
// names its tsc in HEARTH_TSC; run alone, set it to any TypeScript 5 tsc
// with @types/node beside it.
function typescript(t) {
  const tsc = process.env.HEARTH_TSC;
  if (!tsc) {
    t.skip('HEARTH_TSC is not set (scripts/test-node.sh installs TypeScript and sets it)');
    return null;
  }
  // <modules>/typescript/bin/tsc
  const modules = path.dirname(path.dirname(path.dirname(fs.realpathSync(tsc))));
  return { tsc, modules };
}

test('TypeScript type-checks a program using the whole API, and refuses its misuses', (t) => {
  const ts = typescript(t);
  if (!ts) return;
  const r = spawnSync(
    ts.tsc,
    [
      '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(ts.modules, '@types'),
      path.join(__dirname, 'fixtures', 'usage.mts'),
    ],
    { cwd: path.join(__dirname, '..'), encoding: 'utf8' },
  );
  assert.equal(r.error, undefined, `could not run ${ts.tsc}: ${r.error}`);
  assert.equal(r.status, 0, `tsc reported:\n${r.stdout}${r.stderr}`);
});

test('each exported class declares exactly the methods its prototype has', (t) => {
  const found = typescript(t);
  if (!found) return;
  const ts = require(path.join(found.modules, 'typescript'));
  const file = path.join(__dirname, '..', 'index.d.ts');
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const declared = {};
  source.forEachChild((node) => {
    if (!ts.isClassDeclaration(node) || !node.name) return;
    const methods = node.members
      .filter((m) => ts.isMethodDeclaration(m))
      .filter((m) => !(ts.getCombinedModifierFlags(m) & ts.ModifierFlags.Static))
      .map((m) => m.name.getText(source))
      // `on` overloads narrow EventEmitter's own.
      .filter((name) => name !== 'on');
    declared[node.name.text] = [...new Set(methods)].sort();
  });
  assert.deepEqual(Object.keys(declared).sort(), ['HearthError', 'HearthServer', 'Host', 'LocalFirst']);
  for (const [name, methods] of Object.entries(declared)) {
    const proto = hearth[name].prototype;
    const runtime = Object.getOwnPropertyNames(proto)
      .filter((k) => k !== 'constructor' && !k.startsWith('_'))
      .filter((k) => typeof Object.getOwnPropertyDescriptor(proto, k).value === 'function')
      .sort();
    assert.deepEqual(methods, runtime, `${name}: declared methods against the prototype's`);
  }
});
