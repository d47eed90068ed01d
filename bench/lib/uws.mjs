// Where uWebSockets.js comes from: the npm package @trufflesuite/uws-js-unofficial (a registry
// build of uWebSockets.js), an optional peer of the bench. Its loader silently falls back to a
// JavaScript implementation (built on ws) when the native binary does not load; the bench must
// never measure that, so it loads the binary for this platform, arch and Node ABI directly.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export const UWS_PACKAGE = '@trufflesuite/uws-js-unofficial';

/**
 * { ok: true, version, binary } when the package and the native binary for this Node are
 * present, else { ok: false, reason }. Does not load the binary.
 */
export function locateUws() {
  const require = createRequire(import.meta.url);
  let pkgJson;
  try {
    pkgJson = require.resolve(`${UWS_PACKAGE}/package.json`);
  } catch {
    return {
      ok: false,
      reason: `${UWS_PACKAGE} is not installed (a dev dependency: npm ci installs it)`,
    };
  }
  const version = JSON.parse(fs.readFileSync(pkgJson, 'utf8')).version;
  const name = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  const binary = path.join(path.dirname(pkgJson), 'binaries', name);
  if (!fs.existsSync(binary))
    return {
      ok: false,
      reason: `${UWS_PACKAGE} ${version} has no native binary ${name} for Node ${process.version} on ${process.platform}-${process.arch}`,
    };
  return { ok: true, version, binary };
}
