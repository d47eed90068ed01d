// Small batches reach JavaScript through two buffers the runtime keeps (native/context.h,
// DeliveryWindows): the next batch overwrites them. Every message a handler keeps must still be
// its own bytes afterwards, whichever path its batch took (window, or ArrayBuffers of its own
// once its arena exceeds 8 KiB or a lendMessages connection has a message in it), and a slow
// handler that defers the rest of a batch must not lose it either.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { withTimeout } from './support/wait.mjs';

const require = createRequire(import.meta.url);
const { binding } = require('../dist/native.js');
const HOST = '127.0.0.1';

/** Message `i` of stream `tag`: distinct printable ASCII (valid as text too), `size` long (>= 12). */
function msg(tag, i, size) {
  const b = Buffer.alloc(size);
  b.write(`${tag}:${String(i).padStart(8, '0')}:`.slice(0, 12), 0, 'latin1');
  for (let k = 12; k < size; k++) b[k] = 32 + ((i * 31 + k * 7 + tag) % 95);
  return b;
}

/** A server that keeps every message and acknowledges each with its index. */
async function keepingServer(opts = {}) {
  const server = await lws.listen({ host: HOST, port: 0, ...opts });
  const kept = [];
  server.on('connection', (c) =>
    c.on('message', (d, isBinary) => {
      kept.push({ d, isBinary, copy: Buffer.from(d) }); // the copy: as it was during the call
      c.send(d.subarray(0, 12), true);
    }),
  );
  return { server, kept };
}

/** A client whose acknowledgements can be awaited by count. */
async function ackingClient(port) {
  const client = await lws.connect(`ws://${HOST}:${port}/`);
  let acks = 0;
  const waiters = [];
  client.on('message', () => {
    acks++;
    for (const w of waiters.splice(0)) w();
  });
  const until = async (n) => {
    while (acks < n) await new Promise((r) => waiters.push(r));
  };
  return { client, until };
}

/**
 * A server that keeps every message, every `slowEvery`-th handler call taking longer than the
 * runtime's 4 ms slice (so that the rest of its batch is deferred), and a wait for a count.
 */
async function slowKeepingServer(slowEvery) {
  const server = await lws.listen({ host: HOST, port: 0 });
  const kept = [];
  const waiters = [];
  const until = async (n) => {
    while (kept.length < n) await new Promise((r) => waiters.push(r));
  };
  server.on('connection', (c) =>
    c.on('message', (d) => {
      if (kept.length % slowEvery === 0) {
        const end = performance.now() + 6; // longer than the 4 ms slice
        while (performance.now() < end);
      }
      kept.push(d);
      for (const w of waiters.splice(0)) w();
    }),
  );
  return { server, kept, until };
}

test('one message per batch, then bursts across the 8 KiB window: every kept message intact', async () => {
  const { server, kept } = await keepingServer({ textAs: 'buffer' });
  const { client, until } = await ackingClient(server.port);
  const sent = [];
  try {
    // One at a time (a batch each): every one lands at the window's start.
    for (let i = 0; i < 300; i++) {
      const m = msg(1, i, 12 + (i % 5) * 16);
      sent.push(m);
      client.send(m, true);
      await withTimeout(until(sent.length), 5000, `ack ${i}`);
    }
    // Bursts: small messages share batches; 3 KiB ones push a batch's arena past 8 KiB.
    for (let r = 0; r < 20; r++) {
      for (let j = 0; j < 20; j++) {
        const size = j % 4 === 3 ? 3 * 1024 : 40 + j;
        const m = msg(2, r * 20 + j, size);
        sent.push(m);
        client.send(m, r % 2 === 0 || j % 2 === 0);
      }
      await withTimeout(until(sent.length), 5000, `burst ${r}`);
    }
  } finally {
    client.terminate();
    await server.close();
  }
  assert.is(kept.length, sent.length);
  for (let i = 0; i < sent.length; i++)
    assert.ok(kept[i].d.equals(sent[i]), `message ${i} is its own bytes after later batches`);
});

test('a lendMessages server and a default one in the same batches', async () => {
  const plain = await keepingServer({ textAs: 'buffer' });
  const lent = await keepingServer({ textAs: 'buffer', lendMessages: true });
  const a = await ackingClient(plain.server.port);
  const b = await ackingClient(lent.server.port);
  const sentA = [];
  const sentB = [];
  try {
    for (let r = 0; r < 50; r++) {
      for (let j = 0; j < 4; j++) {
        const ma = msg(3, r * 4 + j, 24 + j);
        const mb = msg(4, r * 4 + j, 24 + j);
        sentA.push(ma);
        sentB.push(mb);
        a.client.send(ma, true);
        b.client.send(mb, true);
      }
      await withTimeout(
        Promise.all([a.until(sentA.length), b.until(sentB.length)]),
        5000,
        `round ${r}`,
      );
    }
  } finally {
    a.client.terminate();
    b.client.terminate();
    await plain.server.close();
    await lent.server.close();
  }
  assert.is(plain.kept.length, sentA.length);
  for (let i = 0; i < sentA.length; i++) assert.ok(plain.kept[i].d.equals(sentA[i]), `plain ${i}`);
  // Lent messages are taken back after their call (empty now); the copies made in it are whole.
  assert.is(lent.kept.length, sentB.length);
  for (let i = 0; i < sentB.length; i++) {
    assert.ok(lent.kept[i].copy.equals(sentB[i]), `lent ${i} was its own bytes during the call`);
    assert.is(lent.kept[i].d.length, 0, `lent ${i} is detached after the call`);
  }
});

test('a handler slower than a slice: the rest of a small batch is deferred intact', async () => {
  const { server, kept, until } = await slowKeepingServer(50);
  // Bursts of 200 small messages, and every 50th message slower than a slice: a batch holds more
  // records than the runtime dispatches between two looks at the clock (64), so batches whose
  // bytes are in the window are deferred (whole, behind a waiting one, or their rest) and the
  // draining of them stops for a turn in which the next burst's batch is written into the window.
  // Checked to fail when defer() keeps the window or a view of the records instead of copies.
  const N = 2000;
  const BURST = 200;
  const client = await lws.connect(`ws://${HOST}:${server.port}/`);
  const sent = [];
  try {
    // Bursts in turns of their own: batches that arrive while earlier ones wait, deferred.
    for (let i = 0; i < N; i++) {
      const m = msg(5, i, 12 + (i % 9));
      sent.push(m);
      client.send(m, true);
      if (i % BURST === BURST - 1) await new Promise((r) => setImmediate(r));
    }
    await withTimeout(until(N), 10000, `${N} messages`);
    // A later batch at the window's start must not change what was deferred or kept.
    client.send(msg(6, 0, 64), true);
    await withTimeout(until(N + 1), 5000, 'the late message');
  } finally {
    client.terminate();
    await server.close();
  }
  for (let i = 0; i < N; i++)
    assert.ok(kept[i].equals(sent[i]), `message ${i} intact and in order`);
  assert.ok(kept[N].equals(msg(6, 0, 64)));
});

test('arenas over the window: ArrayBuffers over their chunks are reused, kept messages intact', async () => {
  // A batch whose arena is over 8 KiB goes over as ArrayBuffers over its 64 KiB chunks, made once
  // per chunk and kept (DeliveryWindows::chunks), not made and detached for every batch: the
  // pool hands the same chunks out again, so the next batches find them. What a handler keeps is
  // a copy, and so is what a slow handler defers (every 40th message here is slower than a slice):
  // the chunk's next batch must change neither.
  const { server, kept, until } = await slowKeepingServer(40);
  const before = binding.serviceCounters();
  const client = await lws.connect(`ws://${HOST}:${server.port}/`);
  const sent = [];
  try {
    for (let i = 0; i < 1200; i++) {
      const m = msg(7, i, 9 * 1024 + ((i * 977) % (12 * 1024)));
      sent.push(m);
      client.send(m, true);
      if (i % 60 === 59) await withTimeout(until(sent.length), 10000, `burst to ${i}`);
    }
  } finally {
    client.terminate();
    await server.close();
  }
  assert.is(kept.length, sent.length);
  for (let i = 0; i < sent.length; i++)
    assert.ok(kept[i].equals(sent[i]), `message ${i} intact after later batches`);
  const after = binding.serviceCounters();
  const made = after.chunkViewsMade - before.chunkViewsMade;
  const reused = after.chunkViewsReused - before.chunkViewsReused;
  // Each message is over the window: every batch went over as chunks, and most found theirs kept.
  assert.ok(made + reused >= 100, `batches over chunks: ${made} made, ${reused} reused`);
  assert.ok(made <= 64, `at most the cache's 64 made: ${made}`);
  assert.ok(reused >= 4 * made, `chunks reused: ${made} made, ${reused} reused`);
});

test('more chunks at once than the cache keeps: batches push out only what they do not use', async () => {
  // The main thread blocked while ~8 MB arrive: the batches waiting hold ~130 chunks, more than
  // the 64 ArrayBuffers kept, so delivering them pushes kept ones out (detached); the smaller
  // bursts after it find some of their chunks kept and make the others. Run against a build
  // whose batches could push out one they had taken, it failed (a detached ArrayBuffer reached
  // the runtime) in 3 of 9 runs: which chunk the pool hands out next is not the test's to choose
  // (test/message-order.test.mjs failed so in 2 of 3).
  const server = await lws.listen({ host: HOST, port: 0, receiveHighWaterMark: 64 * 1024 * 1024 });
  const before = binding.serviceCounters();
  const kept = [];
  const waiters = [];
  const until = async (n) => {
    while (kept.length < n) await new Promise((r) => waiters.push(r));
  };
  // Echoed back: the clients' messages and the server's share batches (one context).
  server.on('connection', (c) => c.on('message', (d) => c.send(d, true)));
  const clients = await Promise.all(
    [0, 1, 2, 3].map(async () => {
      const c = await lws.connect(`ws://${HOST}:${server.port}/`, {
        receiveHighWaterMark: 64 * 1024 * 1024,
      });
      c.on('message', (d) => {
        kept.push(d);
        for (const w of waiters.splice(0)) w();
      });
      return c;
    }),
  );
  const sent = [];
  try {
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 800; i++) {
        const m = msg(8, sent.length, 9 * 1024 + ((sent.length * 389) % (3 * 1024)));
        sent.push(m);
        clients[i % 4].send(m, true);
      }
      const end = performance.now() + 400; // the service thread reads and batches meanwhile
      while (performance.now() < end);
      await withTimeout(until(sent.length), 20000, `round ${round}`);
      // Then bursts of a few chunks each: their batches find some chunks kept and make others.
      for (let burst = 0; burst < 40; burst++) {
        for (let i = 0; i < 40; i++) {
          const m = msg(8, sent.length, 1024 + ((sent.length * 7919) % (40 * 1024)));
          sent.push(m);
          clients[i % 4].send(m, true);
        }
        await withTimeout(until(sent.length), 10000, `round ${round}, burst ${burst}`);
      }
    }
  } finally {
    for (const c of clients) c.terminate();
    await server.close();
  }
  assert.is(kept.length, sent.length);
  const key = (b) => b.subarray(0, 12).toString('latin1');
  const bySeq = new Map(kept.map((d) => [key(d), d]));
  for (let i = 0; i < sent.length; i++)
    assert.ok(bySeq.get(key(sent[i]))?.equals(sent[i]), `message ${i} intact`);
  const after = binding.serviceCounters();
  const made = after.chunkViewsMade - before.chunkViewsMade;
  assert.ok(made > 64, `more chunks than the cache keeps: ${made} made`);
});

test.run();
