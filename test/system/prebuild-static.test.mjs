// Prebuilt addon (npm run prebuild -> prebuilds/<platform>-<arch>/*.node): it must not need a
// system libwebsockets, OpenSSL or zlib (it uses Node's own OpenSSL and zlib). Checks the ELF (no
// NEEDED libwebsockets, libssl, libcrypto or libz, no exported lws_* symbol, nothing of lws left
// unresolved, every OpenSSL and zlib symbol defined by the running node), that the dynamic loader
// never even looks for libwebsockets, libssl, libcrypto or libz, and that the `npm pack` tarball
// installs into a temporary folder without building and serves ws:// (with permessage-deflate)
// and wss:// echo there with the library's own client, with the system's libwebsockets, libssl,
// libcrypto and libz hidden where a mount namespace allows.
//
// When prebuilds/ is missing (or older than native/ or binding.gyp), this file runs
// scripts/prebuild.sh first: about 35 s with build/lws-static cached, about 3 min when
// libwebsockets has to be built from Debian's source package (apt-get source) first.
// Linux only (the prebuild is linux-x64 ELF); elsewhere the tests are skipped.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCert } from '../support/certs.mjs';
import { ROOT } from '../support/paths.mjs';

const PLATFORM_DIR = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
const LINUX = process.platform === 'linux';
// Shared libraries the prebuilt addon may need: libc and the C++ runtime, which Node needs too.
// Not OpenSSL or zlib: their symbols are left to the loader, which binds them to those Node
// exports (scripts/node-libs.cjs).
const ALLOWED_NEEDED = new Set([
  'libstdc++.so.6',
  'libm.so.6',
  'libgcc_s.so.1',
  'libc.so.6',
  'libpthread.so.0',
  'libdl.so.2',
  'ld-linux-x86-64.so.2',
]);

const note = (msg) => process.stdout.write(`# ${msg}\n`);

function findAddon() {
  if (!fs.existsSync(PLATFORM_DIR)) return null;
  const f = fs.readdirSync(PLATFORM_DIR).find((n) => n.endsWith('.node'));
  return f ? path.join(PLATFORM_DIR, f) : null;
}

function newestMtime(p) {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;
  for (const e of fs.readdirSync(p)) m = Math.max(m, newestMtime(path.join(p, e)));
  return m;
}

function ensurePrebuild() {
  let addon = findAddon();
  const stale =
    addon &&
    Math.max(newestMtime(path.join(ROOT, 'native')), newestMtime(path.join(ROOT, 'binding.gyp'))) >
      fs.statSync(addon).mtimeMs;
  if (addon && !stale) return addon;
  note(
    addon ? 'prebuild older than native/: npm run prebuild' : 'no prebuild yet: npm run prebuild',
  );
  const t0 = Date.now();
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'prebuild.sh')], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`scripts/prebuild.sh failed (exit ${r.status})`);
  note(`prebuild took ${Math.round((Date.now() - t0) / 1000)} s`);
  addon = findAddon();
  if (!addon) throw new Error(`scripts/prebuild.sh left no .node in ${PLATFORM_DIR}`);
  return addon;
}

const run = (cmd, args, opts = {}) =>
  execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });

let addon = null;
let tmp = null;

test.before(() => {
  if (!LINUX) return;
  addon = ensurePrebuild();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-prebuild-'));
  note(`${path.relative(ROOT, addon)}: ${Math.round(fs.statSync(addon).size / 1024)} KiB`);
});

test.after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const linuxTest = LINUX ? test : test.skip;

linuxTest('no NEEDED libwebsockets, OpenSSL or zlib; only libc/libstdc++', () => {
  const needed = [
    ...run('readelf', ['-d', addon]).matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g),
  ].map((m) => m[1]);
  note(`NEEDED: ${needed.join(' ')}`);
  assert.ok(needed.length > 0, 'readelf -d shows no NEEDED entries at all');
  assert.not.ok(
    needed.some((n) => n.includes('websockets')),
    `NEEDED has libwebsockets: ${needed}`,
  );
  const unexpected = needed.filter((n) => !ALLOWED_NEEDED.has(n));
  assert.equal(unexpected, [], `unexpected shared library dependencies: ${unexpected}`);
  const ldd = run('ldd', [addon]);
  assert.not.ok(/websockets/.test(ldd), `ldd lists libwebsockets:\n${ldd}`);
  assert.not.ok(/not found/.test(ldd), `ldd: a dependency is missing:\n${ldd}`);
});

linuxTest('lws and libev symbols are linked in and hidden', () => {
  const defined = run('nm', ['-D', '--defined-only', addon]);
  const exported = defined.split('\n').filter((l) => / (lws|ev)_/.test(l));
  assert.equal(
    exported.length,
    0,
    `exported lws_* / ev_* symbols:\n${exported.slice(0, 20).join('\n')}`,
  );
  assert.ok(/ napi_register_module_v1$/m.test(defined), 'napi_register_module_v1 not exported');
  const undef = run('nm', ['-D', '--undefined-only', addon])
    .split('\n')
    .filter((l) => /\s(lws|_lws|lejp|lwsac)\w*$/.test(l) || /\sev_\w+$/.test(l));
  assert.equal(undef, [], `lws / libev symbols left for the loader to find:\n${undef.join('\n')}`);
});

// The libraries whose search the loader's trace shows (LD_DEBUG=libs: `find library=NAME`),
// and the trace.
function librariesSearched(args) {
  const r = spawnSync(process.execPath, args, {
    env: { ...process.env, LD_DEBUG: 'libs', LD_PRELOAD: '' },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.is(r.status, 0, `node ${args.join(' ')} failed:\n${r.stderr.slice(-2000)}`);
  return {
    searched: new Set([...r.stderr.matchAll(/find library=(\S+)/g)].map((m) => m[1])),
    trace: r.stderr,
  };
}

linuxTest('the loader never looks for libwebsockets when the addon loads', () => {
  // LD_DEBUG=libs traces every library search of the dynamic loader: with a shared lws the trace
  // would show `find library=libwebsockets.so.17`, whether or not it is installed.
  const { trace } = librariesSearched(['-e', 'require(process.argv[1])', addon]);
  assert.ok(trace.includes(path.basename(addon)), 'LD_DEBUG trace does not show the addon load');
  assert.not.ok(/websockets/.test(trace), 'the loader searched for libwebsockets');
});

linuxTest(
  "OpenSSL and zlib are Node's own: no libssl, libcrypto or libz is looked for, every symbol is node's",
  () => {
    // A node built with a shared OpenSSL or zlib loads them itself before any addon: only what
    // loading the addon adds to a bare node's searches counts.
    const bare = librariesSearched(['-e', '0']);
    const withAddon = librariesSearched(['-e', 'require(process.argv[1])', addon]);
    assert.ok(bare.searched.size > 0, 'the trace shows no search at all');
    assert.ok(withAddon.trace.includes(`calling init: ${addon}`), 'the trace shows no addon load');
    const added = [...withAddon.searched].filter((n) => !bare.searched.has(n));
    note(`libraries the addon makes the loader look for: ${added.join(' ') || 'none'}`);
    const system = added.filter((n) => /libssl|libcrypto|libz\./.test(n));
    assert.equal(system, [], `loading the addon looks for ${system}`);

    // Every OpenSSL and zlib function the addon calls must be one this node defines (official
    // builds link both statically and export them; a shared build defines them in the libs it
    // links).
    const providers = [
      process.execPath,
      ...run('ldd', [process.execPath])
        .split('\n')
        .map((l) => l.match(/=>\s+(\/\S+lib(?:ssl|crypto|z)\.\S*)/)?.[1])
        .filter(Boolean),
    ];
    const defined = new Set();
    for (const p of providers)
      for (const l of run('nm', ['-D', '--defined-only', p]).split('\n')) {
        const f = l.trim().split(/\s+/);
        if (f.length === 3) defined.add(f[2].replace(/@.*/, ''));
      }
    const undefinedSyms = run('nm', ['-D', '--undefined-only', addon])
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[1]?.replace(/@.*/, ''))
      .filter(Boolean);
    const openssl = undefinedSyms.filter((n) =>
      /^(SSL|TLS|EVP|X509|PEM|BIO|ERR|OPENSSL|CRYPTO|RSA|EC|BN|ASN1)_/.test(n),
    );
    const zlib = undefinedSyms.filter((n) => /^(deflate|inflate)/.test(n));
    note(`symbols the addon takes from node: OpenSSL ${openssl.length}, zlib ${zlib.length}`);
    assert.ok(openssl.length >= 50, `only ${openssl.length} OpenSSL symbols: ${openssl}`);
    assert.ok(zlib.length >= 8, `only ${zlib.length} zlib symbols: ${zlib}`);
    const missing = [...openssl, ...zlib].filter((n) => !defined.has(n));
    assert.equal(missing, [], `node does not define: ${missing.join(' ')}`);
  },
);

linuxTest('the context runs on the libev loop compiled in: epoll, no plugin loaded', () => {
  // LD_DEBUG=libs would show a dlopen of libwebsockets-evlib_ev.so (or of libev.so) if the
  // prebuild needed either at run time.
  const script = `
    const b = require(process.argv[1]);
    b.init(() => {}, 3, () => {}, 'auto');
    console.log(JSON.stringify(b.eventLoop()));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['-e', script, addon], {
    env: { ...process.env, LD_DEBUG: 'libs', LD_PRELOAD: '' },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.is(r.status, 0, `the context did not start:\n${r.stderr.slice(-2000)}`);
  assert.equal(JSON.parse(r.stdout.trim()), { loop: 'libev', backend: 'epoll', fallback: null });
  assert.not.ok(/evlib|libev\.so/.test(r.stderr), 'the loader searched for libev or an lws plugin');
});

linuxTest('npm pack tarball installs without building and echoes over ws:// and wss://', () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'dist', 'index.js')), 'dist/ missing: npm run build:ts');
  // --ignore-scripts: `prepare` (tsc) already ran in bootstrap; dist/ is packed as it is.
  const packJson = run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], {
    cwd: ROOT,
  });
  const [info] = JSON.parse(packJson.slice(packJson.indexOf('[')));
  const files = info.files.map((f) => f.path);
  const rel = path.relative(ROOT, addon).split(path.sep).join('/');
  assert.ok(files.includes(rel), `tarball lacks ${rel}`);
  assert.not.ok(
    files.some((f) => f.startsWith('build/')),
    'tarball contains build/',
  );
  const tarball = path.join(tmp, info.filename);

  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({
      name: 'smoke',
      version: '1.0.0',
      private: true,
      allowScripts: { 'node-lws': true },
    }),
  );
  // pkg-config cannot see any libwebsockets here: if the install script did not take the
  // prebuild it would stop with "libwebsockets headers not found" instead of building.
  const noLws = {
    ...process.env,
    PKG_CONFIG_PATH: '',
    PKG_CONFIG_LIBDIR: path.join(tmp, 'no-pkgconfig'),
    npm_config_audit: 'false',
    npm_config_fund: 'false',
  };
  delete noLws.NODE_LWS_FORCE_BUILD; // must take the prebuild path
  const t0 = Date.now();
  const inst = spawnSync(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball],
    { cwd: app, env: noLws, encoding: 'utf8' },
  );
  assert.is(inst.status, 0, `npm install <tarball> failed:\n${inst.stdout}\n${inst.stderr}`);
  note(`npm install <tarball>: ${Date.now() - t0} ms`);
  const pkgDir = path.join(app, 'node_modules', 'node-lws');
  // The install hook itself, run directly (npm may or may not run it, depending on its policy).
  const hook = spawnSync(process.execPath, [path.join(pkgDir, 'scripts', 'install.cjs')], {
    cwd: pkgDir,
    env: noLws,
    encoding: 'utf8',
  });
  assert.is(hook.status, 0, `install.cjs did not take the prebuild:\n${hook.stderr}`);
  assert.not.ok(
    fs.existsSync(path.join(pkgDir, 'build')),
    'the install built from source (build/ exists)',
  );

  const { cert, key } = makeCert(tmp, 'smoke', { ec: true, san: 'IP:127.0.0.1' });
  fs.writeFileSync(path.join(app, 'smoke.mjs'), SMOKE);
  // Where possible (root, unshare), the system libwebsockets is hidden for real: in a private
  // mount namespace every libwebsockets.so* the loader could find is bind-mounted over by
  // /dev/null, so a build that needed it would fail to load. The system itself is untouched.
  // The system's libssl, libcrypto and libz too, unless this node needs them itself (a node built
  // with a shared OpenSSL or zlib): the prebuild uses Node's own.
  const nodeLdd = run('ldd', [process.execPath]);
  const nodeLinksOpenssl = /lib(ssl|crypto)\.so/.test(nodeLdd);
  const nodeLinksZlib = /libz\.so/.test(nodeLdd);
  const hide = [
    ...systemLibFiles(/libwebsockets\.so/),
    ...(nodeLinksOpenssl ? [] : systemLibFiles(/lib(ssl|crypto)\.so/)),
    ...(nodeLinksZlib ? [] : systemLibFiles(/^libz\.so/)),
  ];
  let cmd = process.execPath;
  let args = ['smoke.mjs', cert, key];
  if (hide.length > 0 && canUnshare()) {
    const mounts = hide.map((f) => `mount --bind /dev/null '${f}' &&`).join(' ');
    args = ['-m', 'sh', '-c', `${mounts} exec '${process.execPath}' smoke.mjs '${cert}' '${key}'`];
    cmd = 'unshare';
    note(`smoke test with the system's libraries hidden: ${hide.join(' ')}`);
  } else {
    note(
      'smoke test with the system libwebsockets, OpenSSL and zlib in place (no unshare -m here)',
    );
  }
  const smoke = spawnSync(cmd, args, {
    cwd: app,
    env: { ...process.env, LD_LIBRARY_PATH: '', LD_PRELOAD: '' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.is(smoke.status, 0, `smoke test failed:\n${smoke.stdout}\n${smoke.stderr}`);
  const out = JSON.parse(smoke.stdout.trim().split('\n').pop());
  note(`smoke: ${JSON.stringify(out)}`);
  assert.equal(out.ws, 'hello over ws');
  assert.match(out.wsExtensions, /permessage-deflate/, 'ws:// ran without permessage-deflate');
  assert.equal(out.wss, 'hello over wss');
  assert.ok(
    out.addon.startsWith(path.join(pkgDir, 'prebuilds')),
    `loaded ${out.addon}, not the prebuild`,
  );
  assert.equal(out.lwsMapped, [], 'a libwebsockets shared object is mapped');
  if (!nodeLinksOpenssl) assert.equal(out.sslMapped, [], 'the system libssl/libcrypto is mapped');
  if (!nodeLinksZlib) assert.equal(out.zMapped, [], 'the system libz is mapped');

  // A prebuild that does not load here (here: not an ELF file at all; elsewhere: an older glibc)
  // is not taken: the hook says so and goes on to a source build, which without libwebsockets
  // headers stops with its one line.
  const installed = path.join(pkgDir, path.relative(ROOT, addon));
  fs.writeFileSync(installed, 'not a shared object\n');
  const broken = spawnSync(process.execPath, [path.join(pkgDir, 'scripts', 'install.cjs')], {
    cwd: pkgDir,
    env: noLws,
    encoding: 'utf8',
  });
  assert.is(broken.status, 1, `install.cjs took a prebuild that does not load:\n${broken.stderr}`);
  assert.match(broken.stderr, /prebuilt addon prebuilds\/linux-x64\/\S+ does not load here/);
  assert.match(broken.stderr, /libwebsockets headers not found/);
});

/** Real paths of the shared objects named like `re` that the dynamic loader knows (ldconfig -p). */
function systemLibFiles(re) {
  let out = '';
  try {
    out = run('/sbin/ldconfig', ['-p']);
  } catch {
    return [];
  }
  const files = new Set();
  for (const m of out.matchAll(/^\s*(\S+)\s.*=>\s*(\S+)$/gm)) {
    if (!re.test(m[1])) continue;
    try {
      files.add(fs.realpathSync(m[2]));
      files.add(m[2]);
    } catch {
      /* dangling */
    }
  }
  // Bind-mounting needs real files; the symlink entries resolve to them.
  return [...files].filter((f) => !fs.lstatSync(f).isSymbolicLink() && !/'/.test(f));
}

function canUnshare() {
  return spawnSync('unshare', ['-m', 'true'], { stdio: 'ignore' }).status === 0;
}

// Runs inside the temporary app folder, importing the installed package by name.
const SMOKE = `
import fs from 'node:fs';
import { connect, listen } from 'node-lws';

const [cert, key] = process.argv.slice(2);
const deadline = setTimeout(() => { console.error('smoke: timed out'); process.exit(2); }, 20000);

const extensions = {};
async function echo(scheme, serverOpts, clientOpts, text) {
  const server = await listen({ host: '127.0.0.1', port: 0, ...serverOpts });
  server.on('connection', (conn) => conn.on('message', (data, isBinary) => conn.send(data, isBinary)));
  const client = await connect(scheme + '://127.0.0.1:' + server.port + '/smoke', clientOpts);
  const got = new Promise((resolve) => client.once('message', (data) => resolve(String(data))));
  client.send(text);
  const reply = await got;
  extensions[scheme] = client.extensions;
  const closed = new Promise((resolve) => client.once('close', (code) => resolve(code)));
  client.close(1000, 'done');
  const code = await closed;
  await server.close();
  if (code !== 1000) throw new Error(scheme + ': close code ' + code);
  return reply;
}

// permessage-deflate: zlib, Node's own, compresses and inflates each way.
const deflate = { perMessageDeflate: true };
const ws = await echo('ws', deflate, deflate, 'hello over ws');
const wss = await echo('wss', { tls: { cert, key } }, { tls: { ca: fs.readFileSync(cert) } }, 'hello over wss');
const maps = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n');
const addon = (maps.find((l) => l.endsWith('.node')) || '').split(/\\s+/).pop();
const mapped = (re) => [...new Set(maps.filter((l) => re.test(l)).map((l) => l.split(/\\s+/).pop()))];
const lwsMapped = mapped(/libwebsockets/);
const sslMapped = mapped(/libssl|libcrypto/);
const zMapped = mapped(/\\/libz\\.so/);
clearTimeout(deadline);
console.log(JSON.stringify({ ws, wss, addon, lwsMapped, sslMapped, zMapped, wsExtensions: extensions.ws }));
`;

test.run();
