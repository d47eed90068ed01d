// lendMessages: small Buffer messages reach 'message' listeners as views into node-lws's receive
// buffer, valid while the listeners run and detached afterwards; whatever keeps one for later
// (send() and publish() of it, pause(), an async iterator, a WebSocket's send queue) keeps the
// bytes it had. Peers are `ws` clients (an independent implementation).
import { MessageChannel } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { patternBytes } from './support/data.mjs';
import { connectFor, listenFor, nextConnection } from './support/lws.mjs';
import { encodeFrame, OP, rawWsUpgrade } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { captureRejection, waitFor, withTimeout } from './support/wait.mjs';
import { wsConnect } from './support/ws-client.mjs';

const HOST = '127.0.0.1';
const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: HOST, port: 0 });
const connect = connectFor(cleanups);

async function client(server) {
  const ws = await wsConnect(`ws://${HOST}:${server.port}/`);
  cleanups.push(() => ws.terminate());
  return ws;
}

/** Message `i` of `size` bytes: a pattern that differs from one message to the next. */
function message(i, size) {
  const buf = Buffer.from(patternBytes(size, i + 1));
  buf.writeUInt32LE(i, 0);
  return buf;
}

/** A ws client's next `n` messages, as Buffers. */
function collect(ws, n) {
  const got = [];
  return new Promise((resolve) => {
    ws.on('message', (d) => {
      got.push(Buffer.from(d));
      if (got.length === n) resolve(got);
    });
  });
}

test('a lent message has its bytes while the listener runs and reads as empty afterwards; a copy keeps them', async () => {
  const server = await listen({ lendMessages: true });
  const connP = nextConnection(server);
  const ws = await client(server);
  const [conn] = await connP;
  const kept = [];
  const copies = [];
  const inside = [];
  conn.on('message', (d, isBinary) => {
    inside.push([d.length, isBinary, d.readUInt32LE(0)]);
    kept.push(d);
    copies.push(Buffer.from(d));
  });
  const sent = [message(0, 64), message(1, 4096), message(2, 16 * 1024)];
  for (const m of sent) ws.send(m);
  await waitFor(() => kept.length === 3, { label: 'three messages' });
  // A turn later: the batch's call has returned.
  await new Promise((r) => setImmediate(r));
  assert.equal(
    inside,
    sent.map((m, i) => [m.length, true, i]),
    'the listener saw each message whole',
  );
  assert.equal(
    kept.map((d) => d.length),
    [0, 0, 0],
    'the views kept past the listener are detached',
  );
  for (let i = 0; i < 3; i++) assert.ok(copies[i].equals(sent[i]), `copy of message ${i} intact`);
});

test('without lendMessages a kept message keeps its bytes (the default)', async () => {
  const server = await listen();
  const connP = nextConnection(server);
  const ws = await client(server);
  const [conn] = await connP;
  const kept = [];
  conn.on('message', (d) => kept.push(d));
  const sent = [message(0, 64), message(1, 16 * 1024)];
  for (const m of sent) ws.send(m);
  await waitFor(() => kept.length === 2, { label: 'two messages' });
  await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 2; i++) assert.ok(kept[i].equals(sent[i]), `message ${i} intact`);
});

test('messages over 16 KiB are lent too: whole in the listener, detached afterwards', async () => {
  const server = await listen({ lendMessages: true, textAs: 'buffer' });
  const connP = nextConnection(server);
  const ws = await client(server);
  const [conn] = await connP;
  const kept = [];
  const copies = [];
  conn.on('message', (d, isBinary) => {
    kept.push(d);
    copies.push([Buffer.from(d), isBinary]);
  });
  const big = message(7, 16 * 1024 + 1);
  const text = 'é'.repeat(20_000);
  ws.send(big);
  ws.send(text);
  await waitFor(() => kept.length === 2, { label: 'the large messages' });
  await new Promise((r) => setImmediate(r));
  assert.equal(
    kept.map((d) => d.length),
    [0, 0],
    'detached after the listener',
  );
  assert.ok(copies[0][0].equals(big), 'binary copy intact');
  assert.equal([copies[1][0].toString(), copies[1][1]], [text, false], 'text copy intact');
});

test('a batch finished in a later turn (a slow listener) keeps its lent messages whole', async () => {
  // 100 messages in one write, so in one batch; the first listener call takes 20 ms, past the
  // runtime's time slice, so the rest of the batch is dispatched in a later turn of the loop.
  const server = await listen({ lendMessages: true });
  const connP = nextConnection(server);
  const peer = await rawWsUpgrade(server.port);
  cleanups.push(() => peer.socket.destroy());
  const [conn] = await connP;
  const sent = [];
  for (let i = 0; i < 99; i++) sent.push(message(i, 200));
  sent.push(message(99, 20_000)); // lent as its own Buffer, not from the arena
  let laterTurn = false;
  const seen = [];
  conn.on('message', (d) => {
    seen.push({ data: Buffer.from(d), laterTurn });
    if (seen.length === 1) {
      setImmediate(() => {
        laterTurn = true;
      });
      const t = performance.now();
      while (performance.now() - t < 20);
    }
  });
  peer.socket.write(Buffer.concat(sent.map((m) => encodeFrame({ opcode: OP.binary, payload: m }))));
  await waitFor(() => seen.length === 100, { label: '100 messages' });
  assert.ok(seen[99].laterTurn, 'the last messages were dispatched in a later turn');
  for (let i = 0; i < 100; i++) assert.ok(seen[i].data.equals(sent[i]), `message ${i} intact`);
});

test('send() of lent messages from the listener: every echo intact while the receive buffer is reused', async () => {
  // Sizes on both sides of the size from which send() references a Buffer instead of copying it
  // (8 KiB), in the shared receive buffer (up to 16 KiB) and in blocks of their own: a lent one
  // must be copied, or the echo would carry the bytes of later messages.
  const server = await listen({ lendMessages: true });
  server.on('connection', (c) => c.on('message', (d, isBinary) => c.send(d, isBinary)));
  const ws = await client(server);
  const sizes = [100, 8 * 1024, 12 * 1024, 16 * 1024, 20_000, 100_000];
  const n = 400;
  const sent = [];
  for (let i = 0; i < n; i++) sent.push(message(i, sizes[i % sizes.length]));
  const got = collect(ws, n);
  for (const m of sent) ws.send(m);
  const echoes = await withTimeout(got, 20_000, `${n} echoes`);
  for (let i = 0; i < n; i++)
    assert.ok(echoes[i].equals(sent[i]), `echo ${i} (${sent[i].length} B) intact and in order`);
});

test('publish() of lent messages reaches every subscriber intact', async () => {
  const server = await listen({ lendMessages: true });
  const subs = [];
  server.on('connection', (c, req) => {
    if (req.path === '/pub') c.on('message', (d, isBinary) => server.publish('t', d, isBinary));
    else c.subscribe('t');
  });
  for (let i = 0; i < 3; i++) subs.push(await client(server));
  await waitFor(() => server.subscriberCount('t') === 3, { label: 'three subscribers' });
  const pub = await wsConnect(`ws://${HOST}:${server.port}/pub`);
  cleanups.push(() => pub.terminate());
  const n = 200;
  const sent = [];
  for (let i = 0; i < n; i++) sent.push(message(i, [300, 12 * 1024, 40_000][i % 3]));
  const got = subs.map((s) => collect(s, n));
  for (const m of sent) pub.send(m);
  const all = await withTimeout(Promise.all(got), 20_000, 'every subscriber gets every message');
  for (const [k, msgs] of all.entries())
    for (let i = 0; i < n; i++) assert.ok(msgs[i].equals(sent[i]), `subscriber ${k}, message ${i}`);
});

test('messages kept by pause() and by an async iterator are copies with their bytes', async () => {
  const server = await listen({ lendMessages: true, textAs: 'buffer' });
  const connP = nextConnection(server);
  // Raw frames, all in one write: they reach the server in one read, so in one batch.
  const peer = await rawWsUpgrade(server.port);
  cleanups.push(() => peer.socket.destroy());
  const [conn] = await connP;

  // The first message's listener pauses: the rest of its batch waits for resume().
  const first = message(0, 100);
  const paused = [message(1, 2000), message(2, 10_000), Buffer.from('text while paused')];
  const seen = [];
  let inResume = false;
  conn.on('message', (d, isBinary) => {
    seen.push({ data: Buffer.from(d), isBinary, inResume });
    if (seen.length === 1) conn.pause();
  });
  peer.socket.write(
    Buffer.concat([
      ...[first, paused[0], paused[1]].map((m) => encodeFrame({ opcode: OP.binary, payload: m })),
      encodeFrame({ opcode: OP.text, payload: paused[2] }),
    ]),
  );
  await waitFor(() => seen.length === 1, { label: 'the first message' });
  // A turn later the batch's call has returned: a view kept while paused would be detached.
  await new Promise((r) => setImmediate(r));
  assert.is(seen.length, 1, 'nothing else emitted while paused');
  inResume = true;
  conn.resume();
  inResume = false;
  await waitFor(() => seen.length === 4, { label: 'the paused messages after resume()' });
  assert.ok(seen[1].inResume, 'the message after the pause was kept and emitted by resume()');
  for (let i = 0; i < 3; i++)
    assert.ok(seen[i + 1].data.equals(paused[i]), `paused message ${i} intact`);
  assert.equal(
    seen.map((m) => m.isBinary),
    [true, true, true, false],
    'binary and text',
  );
  conn.removeAllListeners('message');

  // An iterator's messages, looked at after the batch's call returned.
  const it = conn[Symbol.asyncIterator]();
  const next0 = it.next(); // starts the iterator: it takes messages from here on
  const iterated = [message(3, 64), message(4, 16 * 1024)];
  let arrived = 0;
  conn.on('message', () => arrived++);
  peer.socket.write(
    Buffer.concat(iterated.map((m) => encodeFrame({ opcode: OP.binary, payload: m }))),
  );
  await waitFor(() => arrived === 2, { label: 'two messages for the iterator' });
  await new Promise((r) => setImmediate(r));
  const values = [await withTimeout(next0, 5000, 'iterated message 0')];
  values.push(await withTimeout(it.next(), 5000, 'iterated message 1'));
  for (const [i, m] of iterated.entries())
    assert.ok(values[i].value.data.equals(m), `iterated message ${i} intact`);
  await it.return();
});

test('a client made with connect({ lendMessages }) lends too; a WebSocket send queue keeps its bytes', async () => {
  const server = await listen();
  server.on('connection', (c) => c.on('message', (d, isBinary) => c.send(d, isBinary)));
  const c = await connect(`ws://${HOST}:${server.port}/`, { lendMessages: true });
  const kept = [];
  const copies = [];
  c.on('message', (d) => {
    kept.push(d);
    copies.push(Buffer.from(d));
  });
  const m = message(5, 3000);
  c.send(m);
  await waitFor(() => kept.length === 1, { label: 'the echo' });
  await new Promise((r) => setImmediate(r));
  assert.is(kept[0].length, 0, 'detached after the listener');
  assert.ok(copies[0].equals(m), 'the copy intact');

  // A WHATWG WebSocket queues sends behind a Blob: a lent message queued there is a copy.
  const target = await listen();
  const got = [];
  target.on('connection', (t) => t.on('message', (d) => got.push(Buffer.from(d))));
  const browser = new lws.WebSocket(`ws://${HOST}:${target.port}/`);
  cleanups.push(() => browser.close());
  await new Promise((r) => browser.addEventListener('open', r, { once: true }));
  const relayed = message(6, 12 * 1024);
  c.once('message', (d) => {
    browser.send(new Blob([Buffer.from('first')]));
    browser.send(d); // queued behind the Blob, read after this listener returned
  });
  c.send(relayed);
  await waitFor(() => got.length === 2, { label: 'the Blob and the relayed message' });
  assert.is(got[0].toString(), 'first');
  assert.ok(got[1].equals(relayed), 'the queued lent message intact');
});

test('postMessage() with a lent message in its transfer list copies it instead of moving it', async () => {
  // Moved to another thread, the memory would outlive the call that lent it.
  const server = await listen({ lendMessages: true });
  const connP = nextConnection(server);
  const ws = await client(server);
  const [conn] = await connP;
  const { port1, port2 } = new MessageChannel();
  cleanups.push(() => port1.close());
  const got = [];
  port2.on('message', (ab) => got.push(Buffer.from(ab)));
  const lengths = [];
  conn.on('message', (d) => {
    // The view's whole ArrayBuffer: for a small message, the receive buffer it shares.
    port1.postMessage(d.buffer, [d.buffer]);
    lengths.push(d.length);
  });
  const small = message(1, 500);
  const large = message(2, 50_000);
  ws.send(small);
  ws.send(large);
  await waitFor(() => got.length === 2, { label: 'two posted messages' });
  assert.equal(lengths, [500, 50_000], 'not moved away while the listener ran');
  const i = got[0].indexOf(small);
  assert.ok(i >= 0, 'the small message is in the copy of its receive buffer');
  assert.ok(got[1].equals(large), 'the copy of the large message intact');
});

test('a lent message a listener hands to a byte stream keeps its bytes: node-lws keeps the block', async () => {
  // Against the contract (copy what you keep), but what it costs must be memory, not a view of
  // memory node-lws reuses or unmaps: a byte stream's enqueue() detaches the ArrayBuffer and
  // makes a new one over the same block, and before 2026-11-28 the block went back to the pool
  // when the call returned (the next message of its size class was received into it; an unmapped
  // one made reading the chunk a SIGSEGV).
  const server = await listen({ lendMessages: true });
  const connP = nextConnection(server);
  const ws = await client(server);
  const [conn] = await connP;
  let ctrl;
  const reader = new ReadableStream({
    type: 'bytes',
    start(c) {
      ctrl = c;
    },
  }).getReader();
  const lengthsAfter = [];
  conn.on('message', (d) => {
    const i = d.readUInt32LE(0);
    if (i === 0) {
      ctrl.enqueue(d);
      lengthsAfter.push(d.length);
    }
    conn.send(Buffer.from([i])); // the call is over (its blocks given back) when this arrives
  });
  const size = 2 * 1024 * 1024;
  const keptBefore = lws.nativeMemory().lentKept;
  const sent = [message(0, size), message(1, size), message(2, size)];
  for (const m of sent) {
    const ack = collect(ws, 1);
    ws.send(m);
    const [a] = await withTimeout(ack, 10_000, 'the acknowledgement');
    ws.removeAllListeners('message');
    assert.is(a[0], m.readUInt32LE(0));
  }
  assert.equal(lengthsAfter, [0], 'enqueue() took the ArrayBuffer along');
  assert.is(lws.nativeMemory().lentKept - keptBefore, size, 'the kept block is counted');
  const { value } = await withTimeout(reader.read(), 5000, 'the chunk');
  assert.is(value.length, size);
  assert.ok(Buffer.from(value.buffer, value.byteOffset, value.length).equals(sent[0]));
});

test("node-lws/ws: lws: { lendMessages } lends to ws-style 'message' listeners; echoes intact", async () => {
  const { WebSocketServer } = await import('../dist/ws/index.mjs');
  const wss = new WebSocketServer({ host: HOST, port: 0, lws: { lendMessages: true } });
  cleanups.push(() => new Promise((r) => wss.close(r)));
  await new Promise((r) => wss.once('listening', r));
  const kept = [];
  wss.on('connection', (w) =>
    w.on('message', (d, isBinary) => {
      kept.push([d, d.length]);
      w.send(d, { binary: isBinary });
    }),
  );
  const ws = await wsConnect(`ws://${HOST}:${wss.address().port}/`);
  cleanups.push(() => ws.terminate());
  const sent = [100, 8 * 1024, 16 * 1024, 100_000].map((n, i) => message(i, n));
  const got = collect(ws, sent.length);
  for (const m of sent) ws.send(m);
  const echoes = await withTimeout(got, 10_000, 'the echoes');
  for (let i = 0; i < sent.length; i++) {
    assert.ok(echoes[i].equals(sent[i]), `echo ${i} (${sent[i].length} B) intact`);
    assert.is(kept[i][1], sent[i].length, 'whole in the listener');
    assert.is(kept[i][0].length, 0, `message ${i} detached once the listener returned`);
  }
});

test('lendMessages is validated', async () => {
  const err = await captureRejection(
    () => lws.listen({ host: HOST, port: 0, lendMessages: 'yes' }),
    5000,
    'bad lendMessages',
  );
  assert.instance(err, TypeError);
  assert.is(err.code, 'ERR_INVALID_ARG_TYPE');
});

test.after(exitWatchdog);
test.run();
