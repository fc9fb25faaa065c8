// `import { PluresDBLocalFirst } from "hearth/local-first"`.
import lf from './local-first.js';

export const { LocalFirst, PluresDBLocalFirst } = lf;
export default lf;
