// Types of `hearth/local-first`.
export { LocalFirst, LocalFirst as PluresDBLocalFirst } from './index';
