#!/usr/bin/env node
// Flags for lws's libev event loop, read by binding.gyp and CMakeLists.txt.
//
//   node scripts/libev-flags.cjs --cflags  ->  -DNLWS_WITH_LIBEV=1 when the libwebsockets found by
//                                            pkg-config was built with libev (LWS_WITH_LIBEV in
//                                            its lws_config.h) and ev.h is on its include path
//   node scripts/libev-flags.cjs --libs    ->  -lev when that libwebsockets loads libev as a
//                                            plugin (LWS_WITH_EVLIB_PLUGINS, Debian's build):
//                                            node-lws creates the loop itself, so it links the
//                                            system libev.so too
//   node scripts/libev-flags.cjs --explain ->  one line saying what was found
//
// A libwebsockets with libev compiled in (scripts/build-lws-static.sh) brings libev itself
// through its pkg-config file (Libs: .../libev.a, Cflags: -I<libev headers>): --libs prints
// nothing then. Without libev anywhere both print nothing and node-lws uses lws's poll() loop.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

function run(cmd, args) {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return '';
  }
}

function includeDirs() {
  const dirs = run('pkg-config', ['--cflags-only-I', 'libwebsockets'])
    .split(/\s+/)
    .filter((f) => f.startsWith('-I'))
    .map((f) => f.slice(2));
  return [...dirs, '/usr/local/include', '/usr/include'];
}

function find(dirs, name) {
  for (const d of dirs) {
    const p = path.join(d, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

function probe() {
  const dirs = includeDirs();
  const config = find(dirs, 'lws_config.h');
  if (!config) return { ok: false, why: 'lws_config.h not found' };
  const text = fs.readFileSync(config, 'utf8');
  const defined = (name) => new RegExp(`^\\s*#define\\s+${name}\\b`, 'm').test(text);
  if (!defined('LWS_WITH_LIBEV')) return { ok: false, why: `${config}: no LWS_WITH_LIBEV` };
  const evh = find(dirs, 'ev.h');
  if (!evh) return { ok: false, why: 'ev.h not found (Debian: apt-get install libev-dev)' };
  const plugin = defined('LWS_WITH_EVLIB_PLUGINS');
  if (plugin) {
    // The system libev must be linkable: `cc -print-file-name` echoes the bare name when not.
    const so = run(process.env.CC || 'cc', ['-print-file-name=libev.so']);
    if (!so || !path.isAbsolute(so)) return { ok: false, why: 'libev.so not found (libev-dev)' };
  }
  return {
    ok: true,
    plugin,
    why: `${config}${plugin ? ' (evlib plugin)' : ' (built in)'}, ${evh}`,
  };
}

const r = probe();
const arg = process.argv[2];
if (arg === '--cflags') process.stdout.write(r.ok ? '-DNLWS_WITH_LIBEV=1\n' : '\n');
else if (arg === '--libs') process.stdout.write(r.ok && r.plugin ? '-lev\n' : '\n');
else if (arg === '--explain') process.stdout.write(`libev: ${r.ok ? 'yes' : 'no'}: ${r.why}\n`);
else {
  process.stderr.write('usage: node scripts/libev-flags.cjs --cflags|--libs|--explain\n');
  process.exit(2);
}
