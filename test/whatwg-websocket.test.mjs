// The WHATWG-style WebSocket class of node-lws (an EventTarget on the same
// client core): readyState transitions, on* handlers and addEventListener,
// MessageEvent data per binaryType, subprotocols, close events, and the
// error + close pair of a refused connection.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { patternBytes, sha256 } from './support/data.mjs';
import { connClosed } from './support/lws.mjs';
import { freePort } from './support/net.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { thrownBy, waitFor, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;

const cleanups = cleanupsAfterEach(test);

/** node-lws server; echoes unless `onMessage` is given. */
async function server(options = {}, onMessage) {
  const srv = await lws.listen({ host: HOST, port: 0, ...options });
  cleanups.push(() => srv.close());
  const conns = [];
  const received = [];
  srv.on('connection', (conn, req) => {
    conns.push(conn);
    conn.request = req;
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => {
      received.push({ data, isBinary });
      if (onMessage) onMessage(conn, data, isBinary);
      else if (conn.isOpen) conn.send(data, isBinary);
    });
  });
  return { srv, conns, received, url: `ws://${HOST}:${srv.port}/w` };
}

function open(url, protocols) {
  const ws = protocols === undefined ? new lws.WebSocket(url) : new lws.WebSocket(url, protocols);
  cleanups.push(async () => {
    if (ws.readyState === lws.WebSocket.CLOSED) return;
    const closed = nextEvent(ws, 'close', 3000);
    if (ws.readyState !== lws.WebSocket.CLOSING) ws.close();
    await closed;
  });
  return ws;
}

/** Next event of `type` on an EventTarget, with a deadline. */
function nextEvent(target, type, ms = 5000) {
  return withTimeout(
    new Promise((resolve) => target.addEventListener(type, resolve, { once: true })),
    ms,
    `'${type}' event`,
  );
}

test('constants, initial state, and readyState CONNECTING → OPEN → CLOSING → CLOSED', async () => {
  assert.is(lws.WebSocket.CONNECTING, 0);
  assert.is(lws.WebSocket.OPEN, 1);
  assert.is(lws.WebSocket.CLOSING, 2);
  assert.is(lws.WebSocket.CLOSED, 3);
  const { url, conns } = await server();
  const ws = open(url);
  assert.instance(ws, EventTarget);
  assert.is(ws.readyState, lws.WebSocket.CONNECTING);
  assert.is(ws.url, url);
  assert.is(ws.binaryType, 'nodebuffer');
  assert.is(ws.bufferedAmount, 0);
  assert.is(ws.protocol, '');
  const seen = [];
  ws.onopen = (ev) => seen.push(['onopen', ev.type, ws.readyState]);
  ws.addEventListener('open', (ev) => seen.push(['listener', ev.type, ws.readyState]));
  const opened = nextEvent(ws, 'open');
  const ev = await opened;
  assert.instance(ev, Event);
  assert.is(ws.readyState, lws.WebSocket.OPEN);
  assert.equal(seen, [
    ['onopen', 'open', 1],
    ['listener', 'open', 1],
  ]);
  await waitFor(() => conns.length === 1, { label: 'server connection' });
  const serverClose = connClosed(conns[0]);
  const closed = nextEvent(ws, 'close');
  ws.close();
  assert.is(ws.readyState, lws.WebSocket.CLOSING);
  const cev = await closed;
  assert.is(ws.readyState, lws.WebSocket.CLOSED);
  assert.is(cev.type, 'close');
  assert.is(cev.code, 1000);
  assert.is(cev.wasClean, true);
  assert.is((await serverClose).code, 1000);
});

test('send() while CONNECTING throws InvalidStateError', async () => {
  const { url } = await server();
  const ws = open(url);
  const error = thrownBy(() => ws.send('too early'), 'send() before open to throw');
  assert.is(error.name, 'InvalidStateError', `${error.name}: ${error.message}`);
  await nextEvent(ws, 'open');
});

test('onmessage and addEventListener both get a MessageEvent; text as string, binary as Buffer by default', async () => {
  const { url } = await server();
  const ws = open(url);
  await nextEvent(ws, 'open');
  const viaProp = [];
  const viaListener = [];
  ws.onmessage = (ev) => viaProp.push(ev);
  const listener = (ev) => viaListener.push(ev);
  ws.addEventListener('message', listener);
  ws.send('héllo ✓');
  ws.send(Buffer.from([1, 2, 3]));
  await waitFor(() => viaProp.length === 2 && viaListener.length === 2, {
    label: 'two messages through both paths',
  });
  assert.instance(viaProp[0], MessageEvent);
  assert.is(viaProp[0].type, 'message');
  assert.is(viaProp[0].data, 'héllo ✓');
  assert.ok(Buffer.isBuffer(viaProp[1].data), "binaryType 'nodebuffer' gives a Buffer");
  assert.equal([...viaProp[1].data], [1, 2, 3]);
  assert.is(viaListener[0], viaProp[0], 'the same event object for both');
  // removeEventListener stops delivery; the onmessage handler keeps going.
  ws.removeEventListener('message', listener);
  ws.send('third');
  await waitFor(() => viaProp.length === 3, { label: 'third message' });
  assert.is(viaProp[2].data, 'third');
  assert.is(viaListener.length, 2);
});

test("binaryType 'arraybuffer' gives ArrayBuffer (1 MiB content intact); sends of every binary type arrive as binary", async () => {
  const { url, received } = await server();
  const ws = open(url);
  ws.binaryType = 'arraybuffer';
  assert.is(ws.binaryType, 'arraybuffer');
  await nextEvent(ws, 'open');
  const big = patternBytes(MiB, 5);
  const inputs = [
    big,
    new Uint8Array([7, 8, 9]).buffer,
    new Uint8Array([10, 11]),
    new DataView(new Uint8Array([12]).buffer),
  ];
  const msgs = [];
  ws.onmessage = (ev) => msgs.push(ev.data);
  for (const d of inputs) ws.send(d);
  await waitFor(() => msgs.length === inputs.length, {
    timeout: 10000,
    label: 'echoes',
    describe: () => `${msgs.length}/${inputs.length}`,
  });
  for (const m of msgs) assert.instance(m, ArrayBuffer);
  assert.is(msgs[0].byteLength, MiB);
  assert.is(sha256(Buffer.from(msgs[0])), sha256(big));
  assert.equal([...new Uint8Array(msgs[1])], [7, 8, 9]);
  assert.equal([...new Uint8Array(msgs[2])], [10, 11]);
  assert.equal([...new Uint8Array(msgs[3])], [12]);
  assert.ok(received.every((r) => r.isBinary));
  // Text stays a string whatever the binaryType.
  ws.send('still text');
  await waitFor(() => msgs.length === 5, { label: 'text echo' });
  assert.is(msgs[4], 'still text');
  // Back to Buffers.
  ws.binaryType = 'nodebuffer';
  ws.send(Buffer.from('buf'));
  await waitFor(() => msgs.length === 6, { label: 'nodebuffer echo' });
  assert.ok(Buffer.isBuffer(msgs[5]));
  assert.is(msgs[5].toString(), 'buf');
});

test("binaryType 'blob': binary messages arrive as Blobs; sent Blobs go out in order with the rest", async () => {
  const { url, received } = await server();
  const ws = open(url);
  ws.binaryType = 'blob';
  assert.is(ws.binaryType, 'blob');
  ws.binaryType = 'fragments'; // unknown values are ignored, as in browsers
  assert.is(ws.binaryType, 'blob');
  await nextEvent(ws, 'open');
  const big = patternBytes(MiB, 8);
  const msgs = [];
  ws.onmessage = (ev) => msgs.push(ev.data);
  // A Blob's bytes are read asynchronously; what is sent after it must not overtake it.
  ws.send(new Blob([big]));
  ws.send('after the big blob');
  ws.send(new Blob(['text in a blob ', new Uint8Array([0xe2, 0x9c, 0x93])]));
  ws.send(new Uint8Array([1, 2, 3]));
  assert.ok(ws.bufferedAmount >= MiB, `bufferedAmount ${ws.bufferedAmount} counts the queued Blob`);
  await waitFor(() => msgs.length === 4, {
    timeout: 10000,
    label: 'echoes',
    describe: () => `${msgs.length}/4`,
  });
  assert.equal(
    received.map((r) => r.isBinary),
    [true, false, true, true],
  );
  assert.is(received[1].data, 'after the big blob');
  assert.instance(msgs[0], Blob);
  assert.is(msgs[0].size, MiB);
  assert.is(sha256(Buffer.from(await msgs[0].arrayBuffer())), sha256(big));
  assert.is(msgs[1], 'after the big blob', 'text stays a string');
  assert.is(await msgs[2].text(), 'text in a blob ✓');
  assert.equal([...new Uint8Array(await msgs[3].arrayBuffer())], [1, 2, 3]);
  await waitFor(() => ws.bufferedAmount === 0, { label: 'bufferedAmount back to 0' });
});

test('extensions: permessage-deflate is offered (as browsers do) and reported when the server accepts it', async () => {
  const deflating = await server({ perMessageDeflate: true });
  const ws = open(deflating.url);
  assert.is(ws.extensions, '', 'nothing before open');
  await nextEvent(ws, 'open');
  assert.match(ws.extensions, /^permessage-deflate/);
  const text = 'compress me '.repeat(2000);
  const got = nextEvent(ws, 'message');
  ws.send(text);
  assert.is((await got).data, text);
  const plain = await server();
  const ws2 = open(plain.url);
  await nextEvent(ws2, 'open');
  assert.is(ws2.extensions, '', 'declined by a server without perMessageDeflate');
  const ws3 = new lws.WebSocket(deflating.url, { perMessageDeflate: false });
  cleanups.push(async () => ws3.close());
  await nextEvent(ws3, 'open');
  assert.is(ws3.extensions, '', 'perMessageDeflate: false offers nothing');
});

test("protocol: offered ['x','acip'] (array) and 'acip' (string) → 'acip'", async () => {
  const { url, conns } = await server({ protocols: ['acip'] });
  const a = open(url, ['x', 'acip']);
  assert.is(a.protocol, '', 'no protocol before open');
  await nextEvent(a, 'open');
  assert.is(a.protocol, 'acip');
  const b = open(url, 'acip');
  await nextEvent(b, 'open');
  assert.is(b.protocol, 'acip');
  await waitFor(() => conns.length === 2, { label: 'two server connections' });
  assert.is(conns[0].request.headers['sec-websocket-protocol'], 'x, acip');
  assert.is(conns[1].request.headers['sec-websocket-protocol'], 'acip');
  assert.is(conns[0].protocol, 'acip');
});

test('close events: server close(4005, reason) and client close(4006, reason) carry code, reason, wasClean', async () => {
  const { url, conns } = await server();
  const ws = open(url);
  await nextEvent(ws, 'open');
  await waitFor(() => conns.length === 1, { label: 'server connection' });
  let onclose;
  ws.onclose = (ev) => {
    onclose = ev;
  };
  const closed = nextEvent(ws, 'close');
  conns[0].close(4005, 'server bye ✓');
  const ev = await closed;
  assert.instance(ev, lws.CloseEvent);
  assert.instance(ev, Event);
  assert.is(ev.code, 4005);
  assert.is(ev.reason, 'server bye ✓');
  assert.is(ev.wasClean, true);
  assert.is(onclose, ev, 'onclose got the same event');
  assert.is(ws.readyState, lws.WebSocket.CLOSED);

  const ws2 = open(url);
  await nextEvent(ws2, 'open');
  await waitFor(() => conns.length === 2, { label: 'second server connection' });
  const serverClose = connClosed(conns[1]);
  const closed2 = nextEvent(ws2, 'close');
  ws2.close(4006, 'client bye');
  assert.equal(await serverClose, { code: 4006, reason: 'client bye', wasClean: true });
  const ev2 = await closed2;
  assert.is(ev2.code, 4006);
  assert.is(ev2.wasClean, true);
});

test("refused connection: 'error' then 'close' (1006, not clean), readyState CLOSED", async () => {
  const port = await freePort(HOST);
  const ws = open(`ws://${HOST}:${port}/`);
  const order = [];
  let onerrorCalled = false;
  ws.onerror = () => {
    onerrorCalled = true;
  };
  ws.addEventListener('error', (ev) => order.push(['error', ev.type, ws.readyState]));
  ws.addEventListener('close', (ev) => order.push(['close', ev.code, ev.wasClean, ws.readyState]));
  const closed = nextEvent(ws, 'close', 3000);
  await closed;
  assert.equal(order, [
    ['error', 'error', 3],
    ['close', 1006, false, 3],
  ]);
  assert.is(onerrorCalled, true);
  assert.is(ws.readyState, lws.WebSocket.CLOSED);
});

test('bufferedAmount is a number that returns to 0 after a large send', async () => {
  const { url, received } = await server({}, () => {});
  const ws = open(url);
  await nextEvent(ws, 'open');
  ws.send(patternBytes(4 * MiB, 8));
  assert.type(ws.bufferedAmount, 'number');
  assert.ok(ws.bufferedAmount >= 0);
  await waitFor(() => received.length === 1, { timeout: 10000, label: '4 MiB at the server' });
  assert.is(sha256(received[0].data), sha256(patternBytes(4 * MiB, 8)));
  await waitFor(() => ws.bufferedAmount === 0, { label: 'bufferedAmount 0' });
});

test.after(exitWatchdog);
test.run();
