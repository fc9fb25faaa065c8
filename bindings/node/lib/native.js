'use strict';
// Loads the addon that `npm install` built (hearth.node, beside package.json)
// and says how to build it when it is missing. Owns nothing else.

const path = require('node:path');
const { HearthError } = require('./errors');

const file = process.env.HEARTH_NODE_ADDON || path.join(__dirname, '..', 'hearth.node');

let native;
try {
  native = require(file);
} catch (e) {
  throw new HearthError(
    'EADDON_MISSING',
    `the hearth addon could not be loaded from ${file}: ${e.message}. ` +
      'Build it with `npm install` in bindings/node (it runs `cargo build --release -p hearth-node -p hearth-cli`).',
    { cause: e },
  );
}

module.exports = native;
