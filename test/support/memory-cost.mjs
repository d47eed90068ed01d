// What connections cost a node-lws server in memory, measured in a process of its own
// (test/fixtures/memory-cost.mjs) so that memory freed by earlier tests does not hide it.
//
// Layer 2 of test/support/: imports wait.mjs and proc.mjs.
import path from 'node:path';
import * as assert from 'uvu/assert';
import { spawnNode } from './proc.mjs';
import { withTimeout } from './wait.mjs';

const FIXTURE = path.join(import.meta.dirname, '..', 'fixtures', 'memory-cost.mjs');

/**
 * 500 ws clients (offering permessage-deflate) against a server with `perMessageDeflate`: the
 * server's RssAnon per connection while they are idle and after each has sent one compressible
 * message and had its echo. With `receive` (bytes), 300 clients each send one random message of
 * that size to a server that does not answer, and `settled` is the growth per connection once
 * those are collected, the pool has given their blocks back and malloc what it kept of them
 * (malloc's default settings), `returns` the trim turns that asked malloc to.
 */
export async function memoryCostPerConnection(perMessageDeflate, receive = 0) {
  const N = receive ? 300 : 500;
  const args = ['--expose-gc', FIXTURE, String(N), JSON.stringify(perMessageDeflate)];
  if (receive) args.push(String(receive));
  // While the clients are open or talking, large blocks the server frees go back to the
  // system at once: RssAnon then shows what it still holds, not what glibc keeps for reuse
  // until node-lws's next trim.
  const env = receive ? process.env : { ...process.env, MALLOC_MMAP_THRESHOLD_: '65536' };
  const child = spawnNode(args, { env });
  let code;
  try {
    ({ code } = await withTimeout(child.exited, 60_000, 'the memory-cost fixture'));
  } finally {
    await child.stop();
  }
  assert.is(code, 0, `memory-cost exited with ${code}: ${child.stderrText}`);
  const r = JSON.parse(child.stdoutText.trim().split('\n').pop());
  if (receive) assert.is(r.received, N, 'every connection received its message whole');
  else assert.is(r.talked, N, 'every connection had its message echoed');
  return r;
}
