// node-lws/redis as a package subpath: 'node-lws' never loads the redis client (an optional peer
// dependency); 'node-lws/redis' resolves for import and require to one module; without the
// redis package installed it throws ERR_MODULE_NOT_FOUND naming `npm install redis`; and its
// types accept a real node-redis client under tsc --strict.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../support/paths.mjs';
import { assertConsumerTypechecks } from '../support/tsc.mjs';

const require = createRequire(import.meta.url);

/** Runs `code` in a new node process in `cwd`; resolves with its stdout (fails on exit != 0). */
function nodeRun(args, cwd = ROOT) {
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

test("'node-lws' does not load the redis client, through import or require", () => {
  const probe = `const loaded = () => Object.keys(require('node:module')._cache).filter((k) => /node_modules[\\\\/](redis|@redis)[\\\\/]/.test(k));`;
  const cjs = nodeRun([
    '-e',
    `${probe} require('node-lws'); console.log(JSON.stringify(loaded()));`,
  ]);
  assert.is(cjs.code, 0, cjs.stderr);
  assert.equal(JSON.parse(cjs.stdout), []);
  const esm = nodeRun([
    '--input-type=module',
    '-e',
    `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url); ${probe} await import('node-lws'); console.log(JSON.stringify(loaded()));`,
  ]);
  assert.is(esm.code, 0, esm.stderr);
  assert.equal(JSON.parse(esm.stdout), []);
  // And 'node-lws/redis' does load it.
  const withRedis = nodeRun([
    '-e',
    `${probe} require('node-lws/redis'); console.log(JSON.stringify(loaded()));`,
  ]);
  assert.ok(JSON.parse(withRedis.stdout).length > 0, 'node-lws/redis loads redis');
});

test("'node-lws/redis' resolves for import and require to one module", async () => {
  const esm = await import('node-lws/redis');
  const cjs = require('node-lws/redis');
  assert.is(esm.createRedisAdapter, cjs.createRedisAdapter);
  assert.is(esm.RedisAdapter, cjs.RedisAdapter);
  assert.ok(esm.createRedisAdapter({ url: 'redis://127.0.0.1:1' }) instanceof cjs.RedisAdapter);
});

test("without the redis package, 'node-lws/redis' throws ERR_MODULE_NOT_FOUND naming npm install redis", () => {
  // A copy of the package (package.json and dist/) where no redis can be resolved.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-noredis-'));
  try {
    const pkg = path.join(dir, 'node_modules', 'node-lws');
    fs.mkdirSync(pkg, { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
    fs.cpSync(path.join(ROOT, 'dist'), path.join(pkg, 'dist'), { recursive: true });
    let resolved = null;
    try {
      resolved = require.resolve('redis', { paths: [path.join(pkg, 'dist')] });
    } catch {}
    assert.is(resolved, null, `a redis package is reachable from ${dir}: ${resolved}`);
    const cjs = nodeRun(
      [
        '-e',
        "try { require('node-lws/redis') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }",
      ],
      dir,
    );
    const esm = nodeRun(
      [
        '--input-type=module',
        '-e',
        "try { await import('node-lws/redis') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }",
      ],
      dir,
    );
    for (const [how, r] of [
      ['require', cjs],
      ['import', esm],
    ]) {
      assert.is(r.code, 0, `${how}: ${r.stderr}`);
      const err = JSON.parse(r.stdout || '{}');
      assert.is(err.code, 'ERR_MODULE_NOT_FOUND', `${how}: ${r.stdout}`);
      assert.match(err.message, /npm install redis/, `${how}: the message says what to install`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the types accept a node-redis client and options under tsc --strict', () => {
  assertConsumerTypechecks(
    {
      'consumer.mts': `import { listen, type Adapter, type AdapterStats } from 'node-lws';
import { createRedisAdapter, type RedisAdapterOptions } from 'node-lws/redis';
import { createClient } from 'redis';
const options: RedisAdapterOptions = { url: 'redis://127.0.0.1:6379', prefix: 'app:', reconnect: { maxDelayMs: 1000 } };
const a: Adapter = createRedisAdapter(options);
const client = createClient({ url: 'redis://127.0.0.1:6379' });
const b = createRedisAdapter({ client });
b.on('error', (err) => void err.code);
b.on('ready', () => {});
const stats: AdapterStats = b.stats;
void [a, stats, b.stats.echoes, b.connected];
const server = await listen({ port: 0, reusePort: true, adapter: b });
void server.adapter?.stats.dropped;
await server.close();
`,
    },
    { prefix: 'node-lws-redis-types-', links: ['redis', '@redis'] },
  );
});

test.run();
