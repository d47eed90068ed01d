// A message handed to JavaScript as an external Buffer (over 16 KiB) is counted once as external
// memory: V8 counts every ArrayBuffer's backing store itself, and node-lws reporting it again made
// V8 start mark-compacts for memory that scavenges had already given back (README, Design: "A
// message Buffer handed over without a copy is counted once").
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const SIZE = 1024 * 1024;
const COUNT = 1024; // 1 GiB through the server, each message dropped by its handler at once

test(`${COUNT} messages of 1 MiB, each dropped at once: V8 runs no mark-compact for them`, async () => {
  const server = await lws.listen({ host: HOST, port: 0, maxPayload: 2 * SIZE });
  let received = 0;
  let intact = 0;
  const done = new Promise((resolve) =>
    server.on('connection', (c) =>
      c.on('message', (d) => {
        received++;
        if (d.length === SIZE && d[0] === received % 251 && d[SIZE - 1] === received % 251)
          intact++;
        if (received === COUNT) resolve();
      }),
    ),
  );
  const client = await lws.connect(`ws://${HOST}:${server.port}/`);
  const majors = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors.push(e.duration);
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    const payload = Buffer.alloc(SIZE);
    for (let i = 1; i <= COUNT; i++) {
      payload[0] = payload[SIZE - 1] = i % 251;
      if (!client.send(payload, true)) await new Promise((r) => client.once('drain', r));
    }
    await withTimeout(done, 60000, `${COUNT} messages`);
    await new Promise((r) => setImmediate(r)); // the observer's entries arrive after the GC
  } finally {
    obs.disconnect();
    client.terminate();
    await server.close();
  }
  assert.is(received, COUNT);
  assert.is(intact, COUNT, 'every message arrived whole');
  // Counted twice, this load ran 28-29 mark-compacts here; counted once, none.
  assert.ok(majors.length <= 2, `${majors.length} mark-compacts while 1 GiB passed through`);
});

test.run();
