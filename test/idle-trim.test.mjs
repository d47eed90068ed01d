// Once a second the service thread gives back the buffers that connections kept after a burst
// (a message's reassembly buffer, a write queue's storage). It visits only the connections that
// read or wrote since its last turn: idle ones cost it nothing, however many there are (it walked
// every connection before, ~2 ms a turn at 19,000 on the service thread, which delayed whatever
// arrived meanwhile). When a burst's worth went back to malloc, the turn has malloc give its free
// pages back to the system. binding.serviceCounters() counts its turns, the connections visited
// and the turns that asked malloc.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { openClients } from './support/lws.mjs';
import { memoryCostPerConnection } from './support/memory-cost.mjs';
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

test('after a burst of large messages the memory goes back to the system (300 connections × 200 KB: < 16 KB each once idle; 87–93 KB before)', async () => {
  // The blocks the pool does not keep go back to malloc, which kept them resident in the
  // service thread's arena (below the small allocations that outlive them): the trim asks it to
  // give its free pages back once a burst's worth was freed.
  const r = await memoryCostPerConnection(false, 200_000);
  assert.ok(r.settled < 16_000, `${Math.round(r.settled)} B per connection, idle again`);
  assert.ok(r.returns >= 1, 'malloc was asked to give the freed blocks back');
});

test.run();
