'use strict';
// `require("hearth/local-first")`: the client alone, under the name PluresDB
// users import (PluresDBLocalFirst) and its own (LocalFirst).

const { LocalFirst, PluresDBLocalFirst } = require('./lib/local-first');

module.exports = { LocalFirst, PluresDBLocalFirst };
