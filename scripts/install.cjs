#!/usr/bin/env node
// npm "install" hook for node-lws.
//  1. A usable prebuilt binary (prebuilds/ or an existing build/: it loads in this node) ->
//     nothing to do. One that does not load (another C library, an older glibc than the one it
//     was built against) is reported in one line and a source build follows. Not for a Node
//     built without OpenSSL: the prebuild uses Node's.
//  2. libwebsockets development files missing -> one clear line on stderr, exit 1.
//  3. Native sources listed in native/sources.txt not all present (early development,
//     or a partial checkout) -> warning, exit 0 so `npm ci` still completes.
//  4. Otherwise build from source with node-gyp, inheriting stdio.
// NODE_LWS_FORCE_BUILD=1 skips step 1 (always build from source).
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const LWS_MISSING =
  'node-lws: libwebsockets headers not found. Install them: apt-get install libwebsockets-dev ' +
  '(Debian/Ubuntu) or brew install libwebsockets (macOS), then reinstall.';

function hasPrebuild() {
  if (process.env.NODE_LWS_FORCE_BUILD) return false;
  // The prebuild takes OpenSSL and zlib from Node (scripts/node-libs.cjs): a Node built without
  // OpenSSL needs a source build against the system's.
  if (!process.versions.openssl) return false;
  let file;
  try {
    file = require('node-gyp-build').path(root);
  } catch {
    return false;
  }
  // Found is not enough: it must load here (in a child, so that a failure cannot take this
  // process with it).
  const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status === 0) return true;
  const why = (r.stderr || '').split('\n').find((l) => /Error/.test(l)) || `exit ${r.status}`;
  process.stderr.write(
    `node-lws: the prebuilt addon ${path.relative(root, file)} does not load here (${why.trim()}); ` +
      'building from source.\n',
  );
  return false;
}

function hasLibwebsockets() {
  const r = spawnSync('pkg-config', ['--exists', 'libwebsockets'], { stdio: 'ignore' });
  return r.status === 0;
}

function missingSources() {
  const list = path.join(root, 'native', 'sources.txt');
  if (!fs.existsSync(list)) return ['native/sources.txt'];
  return fs
    .readFileSync(list, 'utf8')
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .filter((s) => !fs.existsSync(path.join(root, s)));
}

// node-gyp: the project's own (devDependency), else the one bundled with npm, else npx.
function nodeGypCommand() {
  const bin = process.platform === 'win32' ? 'node-gyp.cmd' : 'node-gyp';
  const local = path.join(root, 'node_modules', '.bin', bin);
  if (fs.existsSync(local)) return { cmd: local, args: [] };
  const bundled = process.env.npm_config_node_gyp;
  if (bundled && fs.existsSync(bundled)) return { cmd: process.execPath, args: [bundled] };
  return { cmd: process.platform === 'win32' ? 'npx.cmd' : 'npx', args: ['--yes', 'node-gyp'] };
}

// Build against the running Node's own headers when they are installed next to it
// (e.g. /usr/include/node), so no header download is needed; npm's `nodedir` wins.
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
    return [`--nodedir=${prefix}`];
  }
  return [];
}

function main() {
  if (hasPrebuild()) return 0;

  if (!hasLibwebsockets()) {
    process.stderr.write(`${LWS_MISSING}\n`);
    return 1;
  }

  const missing = missingSources();
  if (missing.length > 0) {
    process.stderr.write(
      `node-lws: warning: native sources not present yet (${missing.join(', ')}); ` +
        'skipping the native build. Run `npm run build:native` once they exist.\n',
    );
    return 0;
  }

  const { cmd, args } = nodeGypCommand();
  const r = spawnSync(cmd, [...args, 'rebuild', ...nodedirArgs()], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.error) {
    process.stderr.write(`node-lws: could not run node-gyp: ${r.error.message}\n`);
    return 1;
  }
  return r.status === null ? 1 : r.status;
}

process.exitCode = main();
