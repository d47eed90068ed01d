// What importing node-lws costs a process: Node's modules for TLS, crypto, HTTP, DNS and
// worker_threads load only when a feature needs them (lib/builtins.ts), so a process that runs
// plain servers starts ~2.6 MB smaller and imports node-lws in ~16 ms instead of ~25.
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnNode } from './support/proc.mjs';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'loaded-modules.mjs');

test('importing node-lws, a plain listen() and a ws:// client load no TLS, HTTP, DNS or worker_threads module (the client loads crypto for its key)', async () => {
  const child = spawnNode([FIXTURE]);
  try {
    const line = await child.line(() => true, 15_000, 'the loaded-modules fixture');
    const r = JSON.parse(line);
    assert.equal(r.start, [], `loaded before node-lws: ${r.start}`);
    assert.is(r.echo, 'hello', 'the client had its message echoed');
    assert.equal(r.afterImport, [], 'loaded by the import');
    assert.equal(r.afterListen, [], 'loaded by listen()');
    assert.equal(r.afterClient, ['crypto'], 'loaded by connect() to ws://');
  } finally {
    await child.stop();
  }
});

test.run();
