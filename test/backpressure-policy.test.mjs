// Backpressure that protects memory: a client that stops reading while the
// server sends it 1 GiB must not grow the server's memory past a small multiple
// of maxBackpressure, and must not slow down the other clients.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { nextConnection } from './support/lws.mjs';
import { stalledWsClient } from './support/raw-ws.mjs';
import { note } from './support/suite.mjs';
import { captureRejection, onceEvent, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;

test("'drop' policy: 1 GiB to a stalled client stays within maxBackpressure; other clients keep their latency", async () => {
  const maxBackpressure = 8 * MiB;
  const server = await lws.listen({
    host: HOST,
    port: 0,
    maxBackpressure,
    backpressurePolicy: 'drop',
  });
  server.on('connection', (conn) => conn.on('message', (d, b) => conn.send(d, b)));
  try {
    const connP = nextConnection(server);
    const stalled = await stalledWsClient(server.port);
    const [slow] = await connP;

    const control = await lws.connect(`ws://${HOST}:${server.port}/`);
    const chunk = Buffer.alloc(MiB, 0x5a); // one buffer, sent 1,024 times
    const rss0 = process.memoryUsage().rss;
    let rssMax = rss0;
    let maxBuffered = 0;
    let falseReturns = 0;
    const latencies = [];

    for (let i = 0; i < 1024; i++) {
      if (!slow.send(chunk)) falseReturns++;
      maxBuffered = Math.max(maxBuffered, slow.bufferedAmount);
      if (i % 32 === 31) {
        // The control client round-trips a message between bursts.
        const t0 = performance.now();
        const reply = new Promise((resolve) => control.once('message', resolve));
        control.send(`ping ${i}`);
        assert.is(await withTimeout(reply, 5000, 'control echo'), `ping ${i}`);
        latencies.push(performance.now() - t0);
        rssMax = Math.max(rssMax, process.memoryUsage().rss);
      }
    }
    const growth = (rssMax - rss0) / MiB;
    latencies.sort((a, b) => a - b);
    const worst = latencies[latencies.length - 1];
    note(
      `sent 1 GiB: ${slow.stats.messagesOut} queued, ${slow.stats.dropped} dropped, ` +
        `max bufferedAmount ${(maxBuffered / MiB).toFixed(1)} MiB, RSS growth ${growth.toFixed(1)} MiB, ` +
        `control round trip median ${latencies[latencies.length >> 1].toFixed(2)} ms, max ${worst.toFixed(2)} ms`,
    );
    assert.ok(maxBuffered <= maxBackpressure, `bufferedAmount ${maxBuffered} over the bound`);
    assert.is(slow.stats.messagesOut + slow.stats.dropped, 1024);
    assert.ok(slow.stats.dropped >= 1000, `only ${slow.stats.dropped} of 1024 dropped`);
    assert.ok(falseReturns >= slow.stats.dropped, 'every dropped send returned false');
    assert.ok(slow.isOpen, "'drop' keeps the connection open");
    // A small multiple of maxBackpressure (the queue itself plus allocator slack).
    assert.ok(growth < 4 * (maxBackpressure / MiB), `RSS grew ${growth.toFixed(1)} MiB`);
    assert.ok(worst < 1000, `control client stalled for ${worst.toFixed(0)} ms`);

    control.close();
    stalled.destroy();
  } finally {
    await server.close();
  }
});

test("'close' policy: going past maxBackpressure closes the connection (1008 sent, 1006 seen when the peer never reads)", async () => {
  const server = await lws.listen({
    host: HOST,
    port: 0,
    maxBackpressure: 4 * MiB,
    closeTimeoutMs: 300,
  });
  try {
    const connP = nextConnection(server);
    const stalled = await stalledWsClient(server.port);
    const [slow] = await connP;
    const closed = onceEvent(slow, 'close', 5000, "stalled connection's close");
    const chunk = Buffer.alloc(MiB, 1);
    let sent = 0;
    while (slow.isOpen && sent < 64) {
      slow.send(chunk);
      sent++;
    }
    assert.is(slow.isOpen, false, 'send past maxBackpressure starts the close');
    assert.ok(sent <= 16, `${sent} MiB accepted before the close`);
    const [code, , wasClean] = await closed;
    assert.is(code, 1006, 'the stalled peer never answered the close frame');
    assert.is(wasClean, false);
    assert.throws(() => slow.send('x'), /closed|closing/);
    stalled.destroy();
  } finally {
    await server.close();
  }
});

test('maxBackpressure options are validated', async () => {
  const policy = await captureRejection(
    () => lws.listen({ host: HOST, backpressurePolicy: 'spill' }),
    5000,
    "backpressurePolicy 'spill' to be refused",
  );
  assert.instance(policy, TypeError);
  assert.is(policy.code, 'ERR_INVALID_ARG_VALUE');
  const negative = await captureRejection(
    () => lws.listen({ host: HOST, maxBackpressure: -1 }),
    5000,
    'maxBackpressure -1 to be refused',
  );
  assert.instance(negative, RangeError);
});

test.run();
