// Type checks as a package consumer sees them: consumer files in a temporary folder that
// installs this checkout as `node-lws`, run through the repository's own tsc.
//
// Layer 1 of test/support/: imports only paths.mjs.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { ROOT } from './paths.mjs';

/**
 * Type-check `files` (`{ 'consumer.mts': source, … }`) under tsc --strict (ES2022, NodeNext,
 * node types) in a temporary folder whose node_modules links this checkout as `node-lws`, plus
 * `@types` and each of `links` from this checkout's node_modules. A type error fails the test
 * with tsc's output; the folder is removed afterwards.
 */
export function assertConsumerTypechecks(files, { prefix = 'node-lws-types-', links = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  try {
    const nm = path.join(dir, 'node_modules');
    fs.mkdirSync(nm);
    fs.symlinkSync(ROOT, path.join(nm, 'node-lws'));
    for (const m of ['@types', ...links])
      fs.symlinkSync(path.join(ROOT, 'node_modules', m), path.join(nm, m));
    for (const [name, source] of Object.entries(files))
      fs.writeFileSync(path.join(dir, name), source);
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = ['--noEmit', '--strict', '--target', 'ES2022', '--module', 'NodeNext'];
    args.push('--moduleResolution', 'NodeNext', '--types', 'node', ...Object.keys(files));
    try {
      execFileSync(process.execPath, [tsc, ...args], { cwd: dir, stdio: 'pipe' });
    } catch (err) {
      assert.unreachable(`tsc failed:\n${err.stdout}${err.stderr}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
