// send() of a large Buffer whose memory the application takes away before it is written: it
// transfers the ArrayBuffer (structuredClone, postMessage, a byte stream) and V8 frees it, or
// shrinks a resizable one. Until 2026-11-28 node-lws kept a reference to every such Buffer and
// wrote from it later; over TLS (encrypted on the service thread) and on connections attached
// to a Node https.Server (copied on the service thread) that read freed memory and crashed the
// process with SIGSEGV. Those connections now copy what they send; on a plain socket only the
// kernel reads the memory, and it fails the write (EFAULT): the connection drops, the process
// lives. Each case runs in a child process (test/fixtures/detached-send.mjs), so that a crash
// fails the test instead of ending the runner.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCert } from './support/certs.mjs';
import { spawnNode } from './support/proc.mjs';

const FIXTURE = fileURLToPath(new URL('./fixtures/detached-send.mjs', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-detached-'));
const { cert, key } = makeCert(dir, 'server');
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs one case; resolves with the child's report after checking that it exited normally. */
async function run(transport, detach) {
  const child = spawnNode([
    '--expose-gc',
    FIXTURE,
    JSON.stringify({ transport, detach, cert, key }),
  ]);
  try {
    const line = await child.line(() => true, 30_000, `the report of ${transport}/${detach}`);
    const { code, signal } = await child.exited;
    assert.is(signal, null, `the child was killed by ${signal}; stderr: ${child.stderrText}`);
    assert.is(code, 0, `the child exited with ${code}; stderr: ${child.stderrText}`);
    return JSON.parse(line);
  } finally {
    await child.stop();
  }
}

const FILL = 4 * 1024 * 1024;
const SIZE = 8 * 1024 * 1024;

for (const transport of ['tls', 'attach-https']) {
  for (const detach of ['transfer', 'shrink']) {
    test(`${transport}: a sent Buffer ${detach === 'transfer' ? 'transferred and freed' : 'shrunk to 0'} right after send() arrives intact`, async () => {
      const r = await run(transport, detach);
      assert.equal(
        r.messages.map((m) => [m.length, m.received, m.intact]),
        [
          [FILL, FILL, true],
          [SIZE, SIZE, true],
        ],
      );
      assert.is(r.reuse, 8, 'the freed memory was allocated again before the client read');
    });
  }
}

for (const detach of ['transfer', 'shrink']) {
  test(`plain socket: a sent Buffer ${detach === 'transfer' ? 'transferred and freed' : 'shrunk to 0'} right after send() may drop the connection, not the process`, async () => {
    const r = await run('plain', detach);
    // The Buffer was referenced, not copied. Here (glibc maps blocks this large and unmaps
    // them when freed; V8 takes a shrunk buffer's pages away) the kernel refuses to read the
    // memory (EFAULT) and the connection drops, with the 4 MiB before it partly written. Had
    // the memory still been mapped, the frame would have gone out with whatever it held.
    const dropped = r.closeCode === 1006 && r.received < FILL + SIZE + 20;
    const written = r.received === FILL + SIZE + 20;
    assert.ok(dropped || written, JSON.stringify(r));
    assert.ok(r.messages.length >= 1 && r.messages[0].length === FILL, JSON.stringify(r));
  });
}

test.run();
