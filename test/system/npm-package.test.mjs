// Package checks: both entry points share one module instance (and one native
// context), the types resolve for a consumer under tsc --strict, and the packed
// tarball holds what a user needs and nothing else.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../support/paths.mjs';
import { assertConsumerTypechecks } from '../support/tsc.mjs';

const require = createRequire(import.meta.url);

test('import and require give the same classes and one native context', async () => {
  const esm = await import('node-lws'); // the package imports itself by name
  const cjs = require('node-lws');
  assert.is(esm.listen, cjs.listen);
  assert.is(esm.Server, cjs.Server);
  assert.is(esm.ClientTransport, cjs.ClientTransport);
  // One native context: a server started through one entry point is reached
  // by a client from the other, and both see the same Connection class.
  const server = await esm.listen({ host: '127.0.0.1', port: 0 });
  try {
    const seen = new Promise((resolve) => server.once('connection', (conn) => resolve(conn)));
    const client = await cjs.connect(`ws://127.0.0.1:${server.port}/`);
    const conn = await seen;
    assert.ok(conn instanceof cjs.Connection);
    client.close();
    await new Promise((r) => client.once('close', r));
  } finally {
    await server.close();
  }
});

test('the types resolve for a consumer file under tsc --strict (ESM and CommonJS)', () => {
  assertConsumerTypechecks({
    'consumer.mts': `import { connect, listen, type Connection, type ListenOptions, type Transport } from 'node-lws';
const options: ListenOptions = { port: 0, host: '127.0.0.1', maxPayload: 1 << 20 };
const server = await listen(options);
server.on('connection', (conn: Connection, request) => {
  const t: Transport = conn;
  t.on('message', (data, isBinary) => { if (!isBinary) t.send(data.toString().toUpperCase()); });
  void request.path;
});
const client = await connect(\`ws://127.0.0.1:\${server.port}/\`, { reconnect: { retries: 3 } });
client.on('reconnecting', (attempt: number, delayMs: number, err: Error) => void [attempt, delayMs, err]);
const port: number = server.port;
void port;
await server.close();
`,
    'consumer.cts': `import lws = require('node-lws');
async function main(): Promise<void> {
  const server: lws.Server = await lws.listen({ port: 0 });
  await server.close();
}
void main();
`,
  });
});

test('npm pack holds the build, the native sources and the install scripts, nothing else', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const files = JSON.parse(out)[0].files.map((f) => f.path);
  const must = [
    'package.json',
    'README.md',
    'binding.gyp',
    'CMakeLists.txt',
    'native/sources.txt',
    'native/connection.cc',
    'dist/index.js',
    'dist/index.mjs',
    'dist/index.d.ts',
    'dist/index.d.mts',
    'scripts/install.cjs',
    'scripts/libev-flags.cjs', // binding.gyp and CMakeLists.txt run it (source builds)
    'scripts/node-libs.cjs', // binding.gyp runs it (source builds)
    'bin/node-lws-stress.js',
    'bin/stress/proc-net-tcp.js', // shared with the tests, so it must ship with the CLI
    'bin/stress/flood-receiver.js', // forked by path (--flood)
    'bin/stress/idle-holder.js', // forked by path (--idle)
  ];
  for (const f of must) assert.ok(files.includes(f), `${f} missing from the tarball`);
  const allowed =
    /^(package\.json|README\.md|LICENSE|CHANGELOG\.md|binding\.gyp|CMakeLists\.txt|native\/|dist\/|scripts\/(install\.cjs|libev-flags\.cjs|node-libs\.cjs|bootstrap\.sh)$|bin\/|prebuilds\/)/;
  const extra = files.filter((f) => !allowed.test(f));
  assert.equal(extra, [], `files a user does not need: ${extra.join(', ')}`);
  assert.not.ok(
    files.some((f) => f.startsWith('test/') || f.startsWith('bench/') || f.startsWith('lib/')),
  );
});

test.run();
