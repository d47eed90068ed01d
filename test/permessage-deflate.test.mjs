// permessage-deflate (RFC 7692): negotiation and round trips against ws and
// node-lws itself; a decompression bomb is refused with 1009 (Chromium:
// system/chromium.test.mjs); what an idle connection with the extension costs.
import crypto from 'node:crypto';
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket, { WebSocketServer } from 'ws';
import * as lws from '../dist/index.mjs';
import { memoryCostPerConnection } from './support/memory-cost.mjs';
import { onceEvent, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const TEXT = 'media frame metadata, repeated '.repeat(4000); // ~124 KB, very compressible

async function echoServer(options) {
  const server = await lws.listen({ host: HOST, port: 0, ...options });
  server.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
  return server;
}

function wsRoundTrip(ws, data) {
  const reply = new Promise((r) => ws.once('message', (d, b) => r([d, b])));
  ws.send(data);
  return withTimeout(reply, 10000, 'ws echo');
}

function lwsRoundTrip(t, data) {
  const reply = new Promise((r) => t.once('message', (d, b) => r([d, b])));
  t.send(data);
  return withTimeout(reply, 10000, 'node-lws echo');
}

/** Bytes on the wire for one echo through a TCP proxy: proves compression happened. */
async function countingProxy(targetPort) {
  const counts = { up: 0, down: 0 };
  const proxy = net.createServer((a) => {
    const b = net.connect(targetPort, HOST);
    a.on('data', (d) => {
      counts.up += d.length;
      b.write(d);
    });
    b.on('data', (d) => {
      counts.down += d.length;
      a.write(d);
    });
    a.on('close', () => b.destroy());
    b.on('close', () => a.destroy());
    a.on('error', () => {});
    b.on('error', () => {});
  });
  await new Promise((r) => proxy.listen(0, HOST, r));
  return { proxy, counts, port: proxy.address().port };
}

test('off by default: a ws client offer is declined', async () => {
  const server = await echoServer({});
  try {
    const ws = new WebSocket(`ws://${HOST}:${server.port}/`, { perMessageDeflate: true });
    await onceEvent(ws, 'open');
    assert.is(ws.extensions, '');
    assert.equal((await wsRoundTrip(ws, 'plain'))[0].toString(), 'plain');
    ws.close();
  } finally {
    await server.close();
  }
});

test('ws client ↔ node-lws server: negotiated, compressed on the wire both ways, content intact', async () => {
  const server = await echoServer({ perMessageDeflate: { threshold: 64 } });
  const { proxy, counts, port } = await countingProxy(server.port);
  try {
    const ws = new WebSocket(`ws://${HOST}:${port}/`, { perMessageDeflate: { threshold: 64 } });
    await onceEvent(ws, 'open');
    assert.match(ws.extensions, /permessage-deflate/);
    const before = { ...counts };
    const [d, b] = await wsRoundTrip(ws, TEXT);
    assert.is(b, false);
    assert.is(d.toString(), TEXT);
    const up = counts.up - before.up;
    const down = counts.down - before.down;
    assert.ok(up < TEXT.length / 10, `client->server ${up} bytes for ${TEXT.length}`);
    assert.ok(down < TEXT.length / 10, `server->client ${down} bytes for ${TEXT.length}`);
    const random = crypto.randomBytes(1 << 20); // incompressible, still intact
    const [r] = await wsRoundTrip(ws, random);
    assert.ok(Buffer.compare(r, random) === 0);
    for (let i = 0; i < 200; i++) {
      // context takeover across many messages
      const msg = `message ${i} ${'x'.repeat(i)}`;
      assert.is((await wsRoundTrip(ws, msg))[0].toString(), msg);
    }
    ws.close();
    await onceEvent(ws, 'close');
  } finally {
    proxy.close();
    await server.close();
  }
});

test('no-context-takeover and window-bit parameters negotiate and work', async () => {
  const server = await echoServer({
    perMessageDeflate: {
      threshold: 0,
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
    },
  });
  try {
    const ws = new WebSocket(`ws://${HOST}:${server.port}/`, {
      perMessageDeflate: { clientMaxWindowBits: 12, threshold: 0 },
    });
    const upgraded = onceEvent(ws, 'upgrade');
    const opened = onceEvent(ws, 'open');
    const [res] = await upgraded;
    await opened;
    const accepted = res.headers['sec-websocket-extensions'];
    assert.match(accepted, /server_no_context_takeover/);
    assert.match(accepted, /client_no_context_takeover/);
    assert.match(accepted, /server_max_window_bits=10/);
    assert.match(accepted, /client_max_window_bits=12/);
    for (let i = 0; i < 20; i++) {
      const msg = `${TEXT.slice(0, 1000 + i * 97)}#${i}`;
      assert.is((await wsRoundTrip(ws, msg))[0].toString(), msg);
    }
    ws.close();
  } finally {
    await server.close();
  }
});

test('node-lws client ↔ ws server with permessage-deflate, and node-lws ↔ node-lws', async () => {
  const wss = new WebSocketServer({ host: HOST, port: 0, perMessageDeflate: { threshold: 0 } });
  await onceEvent(wss, 'listening');
  wss.on('connection', (w) => w.on('message', (d, b) => w.send(d, { binary: b })));
  const server = await echoServer({ perMessageDeflate: true });
  try {
    for (const port of [wss.address().port, server.port]) {
      const c = await lws.connect(`ws://${HOST}:${port}/`, {
        perMessageDeflate: { threshold: 16 },
      });
      assert.equal(await lwsRoundTrip(c, TEXT), [TEXT, false]);
      const big = crypto.randomBytes(2 << 20);
      const [d, b] = await lwsRoundTrip(c, big);
      assert.ok(b && d.equals(big));
      assert.equal(await lwsRoundTrip(c, 'tiny'), ['tiny', false]);
      c.close();
      await onceEvent(c, 'close');
    }
  } finally {
    wss.close();
    await server.close();
  }
});

test('a decompression bomb (64 MiB of zeros in a ~64 KiB frame) is refused with 1009', async () => {
  const server = await lws.listen({
    host: HOST,
    port: 0,
    perMessageDeflate: true,
    maxPayload: 1 << 20,
  });
  try {
    const connP = onceEvent(server, 'connection');
    const ws = new WebSocket(`ws://${HOST}:${server.port}/`, {
      perMessageDeflate: { threshold: 0 },
    });
    await onceEvent(ws, 'open');
    const [conn] = await connP;
    // Not events.once(): it would also listen for 'error', which node-lws
    // emits (ERR_WS_MESSAGE_TOO_BIG) only to those who listen.
    const serverClose = withTimeout(
      new Promise((r) => conn.once('close', (...a) => r(a))),
      5000,
      'server close',
    );
    const serverError = new Promise((r) => conn.once('error', r));
    const clientClose = onceEvent(ws, 'close', 5000, 'client close');
    const rss0 = process.memoryUsage().rss;
    ws.send(Buffer.alloc(64 << 20));
    const [code] = await clientClose;
    assert.is(code, 1009);
    assert.is((await serverClose)[0], 1009);
    const err = await withTimeout(serverError, 1000, 'server error event');
    assert.is(err.code, 'ERR_WS_MESSAGE_TOO_BIG');
    const growth = (process.memoryUsage().rss - rss0) / (1 << 20);
    assert.ok(
      growth < 200,
      `RSS grew ${growth.toFixed(0)} MiB (ws itself holds the 64 MiB message)`,
    );
  } finally {
    await server.close();
  }
});

test('an idle connection with permessage-deflate agreed holds no zlib stream (500 clients: < 24 KB each; 208 KB before)', async () => {
  const { idle } = await memoryCostPerConnection(true);
  assert.ok(idle < 24 * 1024, `${Math.round(idle)} B per idle connection`);
});

test('serverNoContextTakeover: connections compress with the listener’s shared stream (< 64 KB each after a message each way; 236 KB with a stream of their own)', async () => {
  const { idle, used } = await memoryCostPerConnection({ serverNoContextTakeover: true });
  assert.ok(idle < 24 * 1024, `${Math.round(idle)} B per idle connection`);
  assert.ok(used < 64 * 1024, `${Math.round(used)} B per connection after a message each way`);
});

test('a connection that received a 200 KB compressed message gives back its input buffer once idle (< 80 KB each, 140 KB before); with clientNoContextTakeover its inflate stream too, and malloc gives the memory back (< 16 KB; 130–210 KB before)', async () => {
  const bytes = 200_000; // random: it stays ~200 KB compressed
  // The inflate stream and its 32 KiB window stay: the peer keeps its context.
  const kept = await memoryCostPerConnection(true, bytes);
  assert.ok(kept.settled < 80_000, `${Math.round(kept.settled)} B per connection, idle again`);
  const reset = await memoryCostPerConnection({ clientNoContextTakeover: true }, bytes);
  assert.ok(reset.settled < 16_000, `${Math.round(reset.settled)} B per connection, idle again`);
  assert.ok(reset.returns >= 1, 'malloc was asked to give the freed streams back');
});

test.run();
