'use strict';
// The hearth npm package (CommonJS entry): the LocalFirst client, Node as
// the host (serve), and the server manager (startServer). See README.md.

const { LocalFirst, PluresDBLocalFirst, setMaxSyncMs } = require('./lib/local-first');
const { serve, Host } = require('./lib/host');
const { startServer, HearthServer } = require('./lib/server');
const { HearthError, PROTOCOL_CODES } = require('./lib/errors');
const native = require('./lib/native');

module.exports = {
  LocalFirst,
  PluresDBLocalFirst,
  startServer,
  serve,
  HearthServer,
  Host,
  HearthError,
  PROTOCOL_CODES,
  setMaxSyncMs,
  version: native.version(),
};
