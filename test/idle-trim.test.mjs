// Once a second the service thread gives back the buffers that connections kept after a burst
// (a message's reassembly buffer, a write queue's storage). It visits only the connections that
// read or wrote since its last turn: idle ones cost it nothing, however many there are (it walked
// every connection before, ~2 ms a turn at 19,000 on the service thread, which delayed whatever
// arrived meanwhile). binding.serviceCounters() counts its turns and the connections visited.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { openClients } from './support/lws.mjs';
import { waitFor, withTimeout } from './support/wait.mjs';

const require = createRequire(import.meta.url);
const { binding } = require('../dist/native.js');

const HOST = '127.0.0.1';
const N = 1000; // clients in this process: 2,000 native connections on its service thread

/** Waits until the trim has run `turns` more times, and returns the counters then. */
async function afterTurns(turns) {
  const target = binding.serviceCounters().trimRuns + turns;
  await waitFor(() => binding.serviceCounters().trimRuns >= target, {
    timeout: 2000 * turns + 3000,
    label: `${turns} more turns of the trim`,
    describe: () => JSON.stringify(binding.serviceCounters()),
  });
  return binding.serviceCounters();
}

test('the trim visits the connections that read or wrote since its last turn, no others', async () => {
  const server = await lws.listen({ host: HOST, port: 0 });
  let clients = [];
  try {
    const opened = await openClients(server, N);
    clients = opened.clients;
    const { conns } = opened;
    // New connections are visited once (they start on its list), then left alone while idle.
    const settled = await afterTurns(2);
    const idle = await afterTurns(2);
    assert.is(idle.trimVisits - settled.trimVisits, 0, 'idle connections visited');
    assert.ok(
      settled.trimVisits >= 2 * N,
      `the new connections were visited once (${settled.trimVisits})`,
    );

    // One client sends a message: its connection wrote and the server's read, so the next turns
    // visit those two (a write split over two turns may be seen twice), and then neither again.
    const got = new Promise((r) => conns[0].once('message', (d) => r(d.length)));
    const before = binding.serviceCounters();
    clients[0].send(Buffer.alloc(100 * 1024, 7));
    assert.is(await withTimeout(got, 5000, 'the message'), 100 * 1024);
    const after = await afterTurns(2);
    const visited = after.trimVisits - before.trimVisits;
    assert.ok(visited >= 2 && visited <= 4, `visited after one message: ${visited}`);
    const later = await afterTurns(2);
    assert.is(later.trimVisits - after.trimVisits, 0, 'visited once they were idle again');
  } finally {
    for (const c of clients) c.terminate();
    await server.close();
  }
});

test.run();
