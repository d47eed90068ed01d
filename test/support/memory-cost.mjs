// What connections cost a node-lws server in memory, measured in a process of its own
// (test/fixtures/memory-cost.mjs) so that memory freed by earlier tests does not hide it.
import { spawn } from 'node:child_process';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { onceEvent } from './wait.mjs';

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
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // While the clients are open or talking, large blocks the server frees go back to the
    // system at once: RssAnon then shows what it still holds, not what glibc keeps for reuse
    // until node-lws's next trim.
    env: receive ? process.env : { ...process.env, MALLOC_MMAP_THRESHOLD_: '65536' },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const [code] = await onceEvent(child, 'exit', 60_000, 'the memory-cost fixture');
  assert.is(code, 0, `memory-cost exited with ${code}: ${err}`);
  const r = JSON.parse(out.trim().split('\n').pop());
  if (receive) assert.is(r.received, N, 'every connection received its message whole');
  else assert.is(r.talked, N, 'every connection had its message echoed');
  return r;
}
