// Where things are: the repository root, the built library, the artifacts folder.
//
// Layer 0 of test/support/: imports nothing from the suite.

import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Absolute path of the built library entry point. */
export const DIST_PATH = path.join(ROOT, 'dist', 'index.mjs');
/** file: URL of the built library entry point (for `import()` in child processes and workers). */
export const DIST_URL = pathToFileURL(DIST_PATH).href;
/** Screenshots and logs the tests leave for a person to look at (git-ignored). */
export const ARTIFACTS = path.join(ROOT, 'test-artifacts');
