'use strict';
// index.d.ts is hand-written: check it declares every runtime export (and
// nothing the runtime lacks), and that the ES module entries match the
// CommonJS ones.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
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
