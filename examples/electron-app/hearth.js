'use strict';
// Loads the hearth package: the installed one (`npm install` here links
// ../../bindings/node), or, inside the hearth repository without an
// install, the package's directory itself.

try {
  module.exports = require('hearth');
} catch (e) {
  if (e.code !== 'MODULE_NOT_FOUND') throw e;
  module.exports = require('../../bindings/node');
}
