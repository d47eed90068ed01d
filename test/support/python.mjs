// Debian's python3 with the `websockets` package, for the interoperability tests.
//
// Layer 2 of test/support/: imports wait.mjs and proc.mjs.

import { spawnProcess } from './proc.mjs';
import { withTimeout } from './wait.mjs';

/**
 * The Python interpreter that has the `websockets` package (Debian's
 * python3-websockets installs it for /usr/bin/python3, which may not be the
 * first python3 in PATH). Resolves `{ python, version }`; rejects with a
 * message that says how to install it when there is none.
 */
export async function findPythonWebsockets() {
  const tried = [];
  for (const python of ['/usr/bin/python3', 'python3']) {
    const child = spawnProcess(python, [
      '-c',
      'import websockets, sys; print(websockets.__version__); print(sys.version.split()[0])',
    ]);
    const { code, error } = await withTimeout(
      child.exited,
      20000,
      `${python} -c import websockets`,
    );
    if (code === 0) {
      const [version, pyVersion] = child.stdoutText.trim().split('\n');
      return { python, version: version.trim(), pythonVersion: pyVersion?.trim() };
    }
    tried.push(
      `${python}: ${error ? error.message : child.stderrText.trim().split('\n').pop() || `exit ${code}`}`,
    );
  }
  throw new Error(
    `python3 with the 'websockets' package not found (tried ${tried.join('; ')}). ` +
      'Install it with `apt-get install python3-websockets` or run `bash scripts/bootstrap.sh`.',
  );
}
