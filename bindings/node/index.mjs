// The hearth npm package (ES module entry): the same objects as index.js.
import hearth from './index.js';

export const {
  LocalFirst,
  PluresDBLocalFirst,
  startServer,
  serve,
  HearthServer,
  Host,
  HearthError,
  PROTOCOL_CODES,
  setMaxSyncMs,
  version,
} = hearth;
export default hearth;
