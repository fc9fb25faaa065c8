'use strict';
// The errors the hearth package throws: an `Error` with a stable `code`
// (ECHANNEL_NOT_FOUND-style for conditions of the channel or the package
// itself, the protocol's codes such as `not_found` or `too_large`
// otherwise) and `protocolCode` (always one of the protocol's codes), built
// from what the addon reports, and how a bad argument is named in a
// message. Owns only the shapes and the mapping; never swallows an error or
// rewrites a server's message.

/** The protocol code of every package-level code. */
const PROTOCOL_CODE = Object.freeze({
  ECHANNEL_NOT_FOUND: 'unavailable',
  ECHANNEL_IN_USE: 'locked',
  EINVALID_CHANNEL: 'invalid_input',
  EUNSAFE_DIRECTORY: 'permission_denied',
  EDISCONNECTED: 'unavailable',
  ECLOSED: 'unavailable',
  EPROTOCOL: 'internal',
  ESERVER_START: 'unavailable',
  ESERVER_STOPPED: 'unavailable',
  EADDON_MISSING: 'unavailable',
  ABORT_ERR: 'cancelled',
});

/** Every protocol error code (docs/protocol.md, "Error codes"). */
const PROTOCOL_CODES = Object.freeze([
  'not_found', 'invalid_input', 'too_large', 'conflict', 'unavailable', 'timeout',
  'permission_denied', 'internal', 'unknown_operation', 'corrupt', 'locked',
  'rate_limited', 'cancelled', 'lagged', 'storage_full',
]);

class HearthError extends Error {
  /**
   * @param {string} code stable code
   * @param {string} message what happened and what to do
   * @param {{cause?: unknown}} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = code === 'ABORT_ERR' ? 'AbortError' : 'HearthError';
    this.code = code;
    this.protocolCode = PROTOCOL_CODE[code] || (PROTOCOL_CODES.includes(code) ? code : 'internal');
  }
}

/** An error thrown by a synchronous addon call, as a HearthError. */
function fromNative(e) {
  if (e instanceof HearthError) return e;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    // napi's own argument errors have codes like "InvalidArg": those are
    // bad input from the caller.
    const known = e.code in PROTOCOL_CODE || PROTOCOL_CODES.includes(e.code);
    const code = known ? e.code : 'invalid_input';
    return new HearthError(code, e.message);
  }
  return new HearthError('internal', String(e && e.message ? e.message : e), { cause: e });
}

/** An `{code, message}` an asynchronous addon call settled with. */
function fromInfo(info, signal) {
  if (info.code === 'ABORT_ERR') return abortError(signal);
  return new HearthError(info.code, info.message);
}

/** The error of an aborted call (Node's convention: name AbortError, code ABORT_ERR). */
function abortError(signal) {
  const reason = signal && signal.reason;
  return new HearthError('ABORT_ERR', 'The operation was aborted', reason === undefined ? undefined : { cause: reason });
}

/** Throws if `signal` is already aborted; checks that it is an AbortSignal. */
function checkSignal(signal) {
  if (signal === undefined || signal === null) return;
  if (typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    throw new HearthError('invalid_input', 'options.signal must be an AbortSignal');
  }
  if (signal.aborted) throw abortError(signal);
}

/** What a bad argument was, for error messages: "null", "an array", "a string"… */
function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

module.exports = { HearthError, PROTOCOL_CODE, PROTOCOL_CODES, fromNative, fromInfo, abortError, checkSignal, describe };
