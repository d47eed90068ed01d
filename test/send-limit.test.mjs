// totalSendLimit: what node-lws holds to send, over every connection, each piece of storage
// counted once (a copied message, a Buffer sent without a copy however many connections it is
// queued for, a published frame). Past it, a message for a connection that holds at least its
// share of the limit meets that connection's backpressurePolicy, so an application that ignores
// send()'s false cannot grow without bound while peers stop reading; connections that keep up
// are not touched. nativeMemory().sending says what is held.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { configure, nativeMemory } from '../dist/index.mjs';
import { listenFor, nextConnection } from './support/lws.mjs';
import { OP, rawWsUpgrade, stalledWsClient } from './support/raw-ws.mjs';
import { cleanupsAfterEach } from './support/suite.mjs';
import { waitFor } from './support/wait.mjs';

const KiB = 1024;
const MiB = 1024 * KiB;
const DEFAULT_LIMIT = 256 * MiB;

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: '127.0.0.1', port: 0, closeTimeoutMs: 1000 });

/** Sets the limit for one test; the default comes back after it. */
function limitTo(bytes) {
  configure({ totalSendLimit: bytes });
  cleanups.push(async () => configure({ totalSendLimit: DEFAULT_LIMIT }));
}

/** A client that never reads (its socket paused), with the server's Connection for it. */
async function stalled(server) {
  const connected = nextConnection(server);
  const peer = await stalledWsClient(server.port);
  cleanups.push(async () => peer.destroy());
  const [conn] = await connected;
  conn.on('error', () => {});
  return { peer, conn };
}

/** Under `limit`, a server made with `options` and `n` clients of it that never read. */
async function stalledClients(limit, n, options) {
  limitTo(limit);
  const server = await listen(options);
  const slow = [];
  for (let i = 0; i < n; i++) slow.push(await stalled(server));
  return { server, slow };
}

/**
 * The server has closed their connections: the stalled clients read again, and after what the
 * kernel buffered each gets the close frame. Resolves with their codes and reasons.
 */
function closeFramesOf(clients) {
  return Promise.all(
    clients.map(async (c) => {
      c.peer.socket.resume();
      const f = await c.peer.nextFrame(5000, 'the close frame', OP.close);
      return { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString() };
    }),
  );
}

const sendingIsZero = (label) =>
  waitFor(() => nativeMemory().sending === 0, {
    label,
    timeout: 10_000,
    describe: () => `sending ${nativeMemory().sending}`,
  });

const turn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * Once the stalled clients' bufferedAmounts add up to more than `limit` (the kernel's socket
 * buffers full), `sending` is at most `storage` (and at least `atLeast`): what they share is
 * counted once. Returns what `sending` read.
 */
async function countedOnce(slow, limit, storage, atLeast = 0) {
  const sum = () => slow.reduce((n, c) => n + c.conn.bufferedAmount, 0);
  await waitFor(() => sum() > limit, {
    label: 'the bufferedAmounts add up to more than the limit',
    describe: () => `sum ${sum()}`,
  });
  const held = nativeMemory().sending;
  assert.ok(held <= storage, `sending ${held}: each piece of storage counted once`);
  assert.ok(held >= atLeast, `sending ${held}: what the stalled connections hold`);
  return held;
}

/** None of the stalled clients was refused anything; then they go, and so does what they held. */
async function noneRefused(slow) {
  for (const c of slow) {
    assert.is(c.conn.readyState, 'open');
    assert.is(c.conn.stats.dropped, 0);
  }
  for (const c of slow) c.peer.destroy();
  await sendingIsZero('the Buffers let go when the connections close');
}

test('past totalSendLimit the connections that stopped reading are closed with 1008 and give back what they held; a reader gets every message', async () => {
  const limit = 4 * MiB;
  const { slow } = await stalledClients(limit, 4, {});
  // The limit is the thread's, over every server: the reader is on a second one, whose
  // highWaterMark (below which the limit never refuses a message) leaves room for the moments
  // it is behind by a few messages.
  const other = await listen({ highWaterMark: 16 * MiB });
  const connected = nextConnection(other);
  const reader = await rawWsUpgrade(other.port);
  cleanups.push(async () => reader.destroy());
  const [readerConn] = await connected;

  const rounds = 300;
  let peak = 0;
  for (let round = 0; round < rounds; round++) {
    // A new 64 KiB message per connection and round, as an application that ignores send()'s
    // false would send: Buffers (sent without a copy) and strings (copied) in turn.
    for (const c of slow) {
      if (c.conn.readyState !== 'open') continue;
      c.conn.send(round % 2 ? Buffer.alloc(64 * KiB, round) : 'x'.repeat(64 * KiB));
    }
    readerConn.send(Buffer.alloc(64 * KiB, round));
    // What the stalled connections hold: the total less what the reader holds (its own
    // highWaterMark bounds that).
    const sample = () => nativeMemory().sending - readerConn.bufferedAmount;
    peak = Math.max(peak, sample());
    await turn();
    peak = Math.max(peak, sample());
  }
  for (const c of slow) assert.is(c.conn.readyState, 'closing', 'a stalled connection refused');
  for (const close of await closeFramesOf(slow)) {
    assert.is(close.code, 1008, 'closed with 1008 (Policy Violation)');
    assert.match(close.reason, /totalSendLimit/);
  }
  // About twice the limit at most (connections under their share hold the other half), plus
  // the messages of one round.
  assert.ok(peak <= 2 * limit + 5 * 64 * KiB, `sending peaked at ${peak}`);
  assert.ok(peak >= limit - 4 * 64 * KiB, `the limit was reached (peak ${peak})`);
  // The reader kept up: never refused, every message intact and in order.
  assert.is(readerConn.readyState, 'open', 'the reader is still open');
  assert.is(readerConn.stats.dropped, 0);
  for (let round = 0; round < rounds; round++) {
    const f = await reader.nextFrame(5000, `reader message ${round}`, OP.binary);
    assert.is(f.payload.length, 64 * KiB);
    assert.ok(
      f.payload.every((b) => b === (round & 255)),
      `reader message ${round} intact`,
    );
  }
  await sendingIsZero('everything given back');
});

test('one Buffer sent to many stalled connections is counted once, so none of them is refused', async () => {
  const limit = 32 * MiB;
  const { slow } = await stalledClients(limit, 8, { maxBackpressure: Number.POSITIVE_INFINITY });
  const buffers = Array.from({ length: 16 }, (_, i) => Buffer.alloc(MiB, i));
  for (const b of buffers) for (const c of slow) c.conn.send(b);
  // 16 MiB of storage: under the limit, though the connections' bufferedAmounts add up to
  // more than the limit once the kernel's socket buffers are full.
  await countedOnce(slow, limit, 16 * MiB, 8 * MiB);
  // One more message to each: still under the limit, so queued.
  for (const c of slow) assert.is(c.conn.send('one more'), false, 'queued above highWaterMark');
  await turn();
  await noneRefused(slow);
});

test('three Buffers sent in turn (a variant per connection) are counted once each', async () => {
  const limit = 24 * MiB;
  const { slow } = await stalledClients(limit, 9, {
    maxBackpressure: Number.POSITIVE_INFINITY,
  });
  // Each round makes three new 1 MiB variants; connection i gets variant i % 3, so the sends
  // alternate between the three.
  for (let round = 0; round < 7; round++) {
    const variants = [0, 1, 2].map((v) => Buffer.alloc(MiB, round * 3 + v));
    for (const [i, c] of slow.entries()) c.conn.send(variants[i % 3]);
  }
  await countedOnce(slow, limit, 21 * MiB);
  await noneRefused(slow);
});

test('a published frame is counted once however many subscribers hold it', async () => {
  const limit = 32 * MiB;
  limitTo(limit);
  const server = await listen({ maxBackpressure: Number.POSITIVE_INFINITY });
  const slow = [];
  for (let i = 0; i < 8; i++) {
    const c = await stalled(server);
    c.conn.subscribe('video');
    slow.push(c);
  }
  for (let i = 0; i < 16; i++) assert.is(server.publish('video', Buffer.alloc(MiB, i)), 8);
  await countedOnce(slow, limit, 16 * MiB + 64 * KiB, 8 * MiB);
  // Over the limit: the subscribers holding their share are refused a frame that would add to it.
  limitTo(4 * MiB);
  assert.is(server.publish('video', Buffer.alloc(MiB, 16)), 8);
  // The service thread closes them (JavaScript hears of it with 'close'), dropping their queues.
  await waitFor(() => nativeMemory().sending < 8 * MiB, {
    label: 'the queued frames given back',
    describe: () => `sending ${nativeMemory().sending}`,
  });
  for (const close of await closeFramesOf(slow)) {
    assert.is(close.code, 1008);
    assert.match(close.reason, /totalSendLimit/);
  }
  await sendingIsZero('the frames freed with the last subscriber holding them');
});

test("with backpressurePolicy 'drop' the messages past the limit are dropped and the connections stay open", async () => {
  const limit = 2 * MiB;
  limitTo(limit);
  // A highWaterMark under the share (limit / 4): the share is what bounds each connection.
  const server = await listen({ backpressurePolicy: 'drop', highWaterMark: 256 * KiB });
  const slow = [];
  for (let i = 0; i < 4; i++) slow.push(await stalled(server));
  let peak = 0;
  for (let round = 0; round < 200; round++) {
    for (const c of slow) c.conn.send('y'.repeat(64 * KiB));
    peak = Math.max(peak, nativeMemory().sending);
    await turn();
  }
  // 200 rounds would queue 50 MiB; the total stays near the limit (the service thread's
  // accounting of what it wrote reaches the total once per turn of its loop).
  assert.ok(peak <= 2 * limit, `sending peaked at ${peak}`);
  for (const c of slow) {
    assert.is(c.conn.readyState, 'open');
    assert.ok(c.conn.stats.dropped > 0, 'messages dropped');
    assert.is(c.conn.stats.messagesOut + c.conn.stats.dropped, 200);
  }
  for (const c of slow) c.peer.destroy();
  await sendingIsZero('given back when they close');
});

test('configure({ totalSendLimit }) is validated', () => {
  for (const bad of [0, 1024, -1, 1.5, '1']) {
    assert.throws(
      () => configure({ totalSendLimit: bad }),
      (e) => e.code === 'ERR_OUT_OF_RANGE' || e.code === 'ERR_INVALID_ARG_TYPE',
      `totalSendLimit ${bad}`,
    );
  }
});

test.run();
