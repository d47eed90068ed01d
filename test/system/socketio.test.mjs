// socket.io 4 and engine.io 6 with node-lws/ws as their WebSocket engine
// (`wsEngine: WebSocketServer`), driven by socket.io-client and engine.io-client over the
// websocket transport alone and over polling upgraded to websocket: events both ways,
// acknowledgements, binary attachments, room broadcast, disconnect reasons.

import http from 'node:http';
import * as engine from 'engine.io';
import { Socket as EngineClient } from 'engine.io-client';
import { Server } from 'socket.io';
import { io as connectClient } from 'socket.io-client';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { patternBytes, sha256 } from '../support/data.mjs';
import { closeHttp, listenHttp } from '../support/http-server.mjs';
import { cleanupsAfterEach, exitWatchdog } from '../support/suite.mjs';
import { DEFAULT_TIMEOUT, withTimeout } from '../support/wait.mjs';

const nodeLwsWs = await import('node-lws/ws');
const { WebSocketServer } = nodeLwsWs;
const cleanups = cleanupsAfterEach(test);

/** Resolves with the arguments of the next `event` (socket.io emitters included). */
function next(emitter, event, ms = DEFAULT_TIMEOUT) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    ms,
    `'${event}' event`,
  );
}

async function ioServer(options = {}) {
  const httpServer = http.createServer();
  const io = new Server(httpServer, { wsEngine: WebSocketServer, ...options });
  const port = await listenHttp(httpServer);
  cleanups.push(async () => {
    io.close();
    await closeHttp(httpServer);
  });
  return { io, port, url: `http://127.0.0.1:${port}` };
}

/** A socket.io client, connected; its server-side socket comes with it. */
async function ioClient(io, url, transports, extra = {}) {
  const serverSide = next(io, 'connection');
  const client = connectClient(url, { transports, forceNew: true, reconnection: false, ...extra });
  cleanups.push(() => client.disconnect());
  await next(client, 'connect');
  if (transports.length > 1 && client.io.engine.transport.name !== 'websocket') {
    await next(client.io.engine, 'upgrade');
  }
  const [socket] = await serverSide;
  return { client, socket };
}

for (const transports of [['websocket'], ['polling', 'websocket']]) {
  const mode = transports.join(' -> ');

  test(`socket.io (${mode}): events both ways, acks, binary attachments`, async () => {
    const { io, url } = await ioServer();
    assert.instance(io.engine.ws, WebSocketServer, 'engine.io uses node-lws/ws');
    const { client, socket } = await ioClient(io, url, transports);
    assert.is(client.io.engine.transport.name, 'websocket');
    await withTimeout(
      (async () => {
        while (socket.conn.transport.name !== 'websocket') await next(socket.conn, 'upgrade');
      })(),
      DEFAULT_TIMEOUT,
      'server-side upgrade',
    );
    assert.instance(
      socket.conn.transport.socket,
      nodeLwsWs.WebSocket,
      'the transport is a node-lws/ws WebSocket',
    );
    assert.is(socket.handshake.address, '127.0.0.1');

    // client -> server, with an ack carrying a result
    socket.on('add', (a, b, ack) => ack(a + b));
    assert.is(await client.timeout(DEFAULT_TIMEOUT).emitWithAck('add', 2, 3), 5);
    // server -> client, with an ack
    client.on('question', (q, ack) => ack(`answer to ${q}`));
    assert.is(
      await socket.timeout(DEFAULT_TIMEOUT).emitWithAck('question', 'life'),
      'answer to life',
    );
    // binary attachments, both ways
    const blob = patternBytes(512 * 1024, 6);
    socket.on('upload', (meta, data, ack) =>
      ack({ name: meta.name, size: data.length, sha: sha256(data) }),
    );
    const receipt = await client
      .timeout(DEFAULT_TIMEOUT)
      .emitWithAck('upload', { name: 'blob.bin' }, blob);
    assert.equal(receipt, { name: 'blob.bin', size: blob.length, sha: sha256(blob) });
    const down = next(client, 'download');
    socket.emit('download', { parts: [Buffer.from('ab'), { inner: Buffer.from([9, 8]) }] });
    const [payload] = await down;
    assert.is(Buffer.from(payload.parts[0]).toString(), 'ab');
    assert.equal([...Buffer.from(payload.parts[1].inner)], [9, 8]);
    // many small events in order
    const seen = [];
    const all = new Promise((resolve) =>
      socket.on('n', (i) => {
        seen.push(i);
        if (seen.length === 500) resolve();
      }),
    );
    for (let i = 0; i < 500; i++) client.emit('n', i);
    await withTimeout(all, DEFAULT_TIMEOUT, '500 events');
    assert.equal(seen, [...Array(500).keys()]);
  });

  test(`socket.io (${mode}): room broadcast and disconnect reasons`, async () => {
    const { io, url } = await ioServer();
    const a = await ioClient(io, url, transports);
    const b = await ioClient(io, url, transports);
    const c = await ioClient(io, url, transports);
    a.socket.join('room');
    b.socket.join('room');
    const got = [];
    for (const [name, x] of [
      ['a', a],
      ['b', b],
      ['c', c],
    ]) {
      x.client.on('news', (msg) => got.push(`${name}:${msg}`));
    }
    const delivered = Promise.all([next(a.client, 'news'), next(b.client, 'news')]);
    io.to('room').emit('news', 'for the room');
    await delivered;
    // c never gets it: a round trip to c after the broadcast shows c's stream is past it.
    c.socket.on('ping-me', (ack) => ack('pong'));
    assert.is(await c.client.timeout(DEFAULT_TIMEOUT).emitWithAck('ping-me'), 'pong');
    assert.equal(got.sort(), ['a:for the room', 'b:for the room']);

    // Disconnect reasons, as socket.io reports them on both ends.
    const aGone = next(a.socket, 'disconnect');
    a.client.disconnect();
    assert.is((await aGone)[0], 'client namespace disconnect');
    const bGone = next(b.client, 'disconnect');
    b.socket.disconnect(true);
    assert.is((await bGone)[0], 'io server disconnect');
    const cGone = next(c.socket, 'disconnect');
    c.client.io.engine.close();
    assert.is((await cGone)[0], 'transport close');
  });
}

test('engine.io 6 attached with wsEngine: polling upgraded to websocket, text and binary', async () => {
  const httpServer = http.createServer();
  const eio = engine.attach(httpServer, { wsEngine: WebSocketServer });
  const port = await listenHttp(httpServer);
  cleanups.push(async () => {
    eio.close();
    await closeHttp(httpServer);
  });
  const connected = next(eio, 'connection');
  const client = new EngineClient(`ws://127.0.0.1:${port}`, {
    transports: ['polling', 'websocket'],
  });
  cleanups.push(() => client.close());
  const [socket] = await connected;
  await next(client, 'upgrade');
  assert.is(client.transport.name, 'websocket');
  socket.on('message', (data) => socket.send(typeof data === 'string' ? `echo ${data}` : data));
  const texts = next(client, 'message');
  client.send('hello');
  assert.is((await texts)[0], 'echo hello');
  const bin = next(client, 'message');
  client.send(Buffer.from([1, 2, 3, 4]));
  assert.equal([...Buffer.from((await bin)[0])], [1, 2, 3, 4]);
  assert.is(socket.transport.name, 'websocket');
  const closed = next(socket, 'close');
  client.close();
  assert.is((await closed)[0], 'transport close');
});

test.after(exitWatchdog);
test.run();
