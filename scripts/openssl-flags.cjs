#!/usr/bin/env node
// Where the addon's OpenSSL comes from, read by binding.gyp.
//
//   node scripts/openssl-flags.cjs --libs     ->  -lssl -lcrypto, unless the libwebsockets found
//                                               by pkg-config is a static library
//   node scripts/openssl-flags.cjs --explain  ->  one line saying which and why
//
// Node exports the OpenSSL 3 it is built with, for addons (scripts/prebuild.sh checks that it
// defines every symbol the prebuild leaves to the loader). A shared libwebsockets (the system's,
// for source builds) needs the system's libssl.so.3 and libcrypto.so.3 whatever the addon does, so
// the addon links them too. A static one (the prebuild's, scripts/build-lws-static.sh) needs
// nothing more: the addon leaves its OpenSSL symbols undefined and the loader binds them to Node's
// own. The process then has one OpenSSL, and the prebuild loads where no libssl.so.3 is installed.
// The system's copy would not have been used anyway: Node's exported symbols come first in the
// loader's search, so lws's OpenSSL calls went to Node's OpenSSL already (LD_DEBUG=bindings); the
// system copy was loaded, relocated and initialised for nothing (1.7 MB of RSS).
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

function libdir() {
  try {
    return execFileSync('pkg-config', ['--variable=libdir', 'libwebsockets'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return '';
  }
}

function probe() {
  const dir = libdir();
  if (!dir) return { node: false, why: 'pkg-config gives no libdir for libwebsockets' };
  let names;
  try {
    names = fs.readdirSync(dir);
  } catch {
    return { node: false, why: `${dir} cannot be read` };
  }
  // libwebsockets.so, libwebsockets.so.17, libwebsockets.dylib, libwebsockets.19.dylib
  const shared = names.find((n) => /^libwebsockets(\.\d+)*\.(so|dylib)(\.|$)/.test(n));
  if (shared) return { node: false, why: `shared ${path.join(dir, shared)}` };
  if (!names.includes('libwebsockets.a')) return { node: false, why: `no libwebsockets in ${dir}` };
  return { node: true, why: `static ${path.join(dir, 'libwebsockets.a')}` };
}

const r = probe();
const arg = process.argv[2];
if (arg === '--libs') process.stdout.write(r.node ? '\n' : '-lssl -lcrypto\n');
else if (arg === '--explain')
  process.stdout.write(
    `openssl: ${r.node ? "Node's own" : 'the system libssl/libcrypto'}: ${r.why}\n`,
  );
else {
  process.stderr.write('usage: node scripts/openssl-flags.cjs --libs|--explain\n');
  process.exit(2);
}
