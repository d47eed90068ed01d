#!/usr/bin/env node
// Whether the addon takes OpenSSL and zlib from Node or links the system's, read by binding.gyp.
//
//   node scripts/node-libs.cjs --libs     ->  -lssl -lcrypto -lz, unless the libwebsockets found by
//                                           pkg-config is a static library
//   node scripts/node-libs.cjs --explain  ->  one line saying which and why
//
// Node exports the OpenSSL 3 and the zlib it is built with, for addons (scripts/prebuild.sh checks
// that it defines every symbol the prebuild leaves to the loader). A shared libwebsockets (the
// system's, for source builds) needs the system's libssl.so.3, libcrypto.so.3 and libz.so.1
// whatever the addon does, so the addon links them too. A static one (the prebuild's,
// scripts/build-lws-static.sh, built without zlib) needs nothing more: the addon leaves those
// symbols undefined and the loader binds them to Node's own. The process then has one OpenSSL and
// one zlib, and the prebuild loads where neither is installed. The system's copies would not have
// been used anyway: Node's exported symbols come first in the loader's search, so the OpenSSL and
// zlib calls of the addon and of lws went to Node's already (LD_DEBUG=bindings); the system
// copies were loaded, relocated and initialised for nothing (1.7 MB of RSS for OpenSSL).
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
if (arg === '--libs') process.stdout.write(r.node ? '\n' : '-lssl -lcrypto -lz\n');
else if (arg === '--explain')
  process.stdout.write(
    `openssl, zlib: ${r.node ? "Node's own" : "the system's libssl/libcrypto/libz"}: ${r.why}\n`,
  );
else {
  process.stderr.write('usage: node scripts/node-libs.cjs --libs|--explain\n');
  process.exit(2);
}
