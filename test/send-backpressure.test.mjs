// Basic backpressure: send() reports when bufferedAmount exceeds the high
// water mark, 'drain' fires once the peer reads again, nothing is lost or
// reordered.

import crypto from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { listenFor, nextConnection } from './support/lws.mjs';
import { collectMessages } from './support/messages.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from './support/suite.mjs';
import { onceEvent, waitFor } from './support/wait.mjs';
import { closeClient, wsConnect } from './support/ws-client.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;

const listen = listenFor(cleanupsAfterEach(test));

async function connectedPair() {
  const server = await listen({ host: HOST, port: 0 });
  const connP = nextConnection(server);
  const ws = await wsConnect(`ws://${HOST}:${server.port}/`);
  const [conn] = await connP;
  return { server, ws, conn };
}

test('small sends return true and bufferedAmount is a non-negative number that returns to 0', async () => {
  const { ws, conn } = await connectedPair();
  assert.type(conn.bufferedAmount, 'number');
  assert.ok(conn.bufferedAmount >= 0);
  const got = collectMessages(ws, 10);
  for (let i = 0; i < 10; i++) assert.is(conn.send(`small ${i}`), true, `send ${i}`);
  assert.type(conn.bufferedAmount, 'number');
  assert.ok(conn.bufferedAmount >= 0, `bufferedAmount ${conn.bufferedAmount}`);
  const msgs = await got;
  assert.equal(
    msgs.map((m) => m.data),
    Array.from({ length: 10 }, (_, i) => `small ${i}`),
  );
  await waitFor(() => conn.bufferedAmount === 0, {
    label: 'bufferedAmount 0 after delivery',
    describe: () => `bufferedAmount=${conn.bufferedAmount}`,
  });
  await closeClient(ws);
});

test('a paused client makes send() return false; after resume, drain fires and 64 x 1 MiB arrive intact and in order', async () => {
  const { ws, conn } = await connectedPair();
  const N = 64;
  const base = crypto.randomBytes(MiB);
  const msgOf = (i) => {
    const b = Buffer.from(base);
    b.writeUInt32BE(i, 0);
    return b;
  };
  ws.pause(); // stop reading: kernel buffers fill, then node-lws has to queue
  const results = [];
  let firstFalse = -1;
  let bufferedAtFalse = 0;
  for (let i = 0; i < N; i++) {
    const r = conn.send(msgOf(i));
    assert.type(r, 'boolean', `send ${i} result`);
    results.push(r);
    if (!r && firstFalse < 0) {
      firstFalse = i;
      bufferedAtFalse = conn.bufferedAmount;
    }
  }
  const drained = onceEvent(conn, 'drain', 20000, "'drain' after the client resumed");
  const bufferedAfterLoop = conn.bufferedAmount;
  note(
    `first send() === false at message ${firstFalse} (bufferedAmount ${bufferedAtFalse}); ${results.filter((r) => !r).length}/${N} returned false; bufferedAmount after loop ${bufferedAfterLoop}`,
  );
  assert.ok(
    firstFalse >= 0,
    `no send() returned false while ${N} MiB were queued to a paused client`,
  );
  assert.ok(
    bufferedAtFalse > 0,
    `bufferedAmount was ${bufferedAtFalse} when send() returned false`,
  );
  assert.ok(
    bufferedAfterLoop > 0,
    `bufferedAmount ${bufferedAfterLoop} right after queueing ${N} MiB to a paused client`,
  );
  const got = collectMessages(ws, N, 30000, `${N} x 1 MiB messages`);
  ws.resume();
  await drained;
  const msgs = await got;
  for (let i = 0; i < N; i++) {
    const m = msgs[i];
    assert.is(m.isBinary, true, `message ${i} binary`);
    assert.is(m.data.length, MiB, `message ${i} length`);
    assert.is(
      m.data.readUInt32BE(0),
      i,
      `message ${i} out of order (got #${m.data.readUInt32BE(0)})`,
    );
    assert.ok(m.data.subarray(4).equals(base.subarray(4)), `message ${i} content corrupted`);
  }
  await waitFor(() => conn.bufferedAmount === 0, {
    label: 'bufferedAmount 0 after everything arrived',
    describe: () => `bufferedAmount=${conn.bufferedAmount}`,
  });
  assert.is(conn.send('after drain'), true, 'send() returns true again once drained');
  const last = await collectMessages(ws, 1);
  assert.is(last[0].data, 'after drain');
  await closeClient(ws);
});

test('a large Buffer is sent without a copy: it arrives intact, and is released once written', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const { ws, conn } = await connectedPair();
  const N = 64;
  const released = new Set();
  const registry = new FinalizationRegistry((i) => released.add(i));
  const got = collectMessages(ws, N, 20_000);
  // In a plain function: a suspended async frame could keep the last Buffer alive itself.
  const sendAll = () => {
    const out = [];
    for (let i = 0; i < N; i++) {
      // All at or above the copy threshold (8 KiB), the smallest exactly at it.
      const buf = crypto.randomBytes([8 * 1024, 16 * 1024, 256 * 1024][i % 3]);
      out.push(crypto.createHash('sha256').update(buf).digest('hex'));
      registry.register(buf, i);
      conn.send(buf);
    }
    return out;
  };
  const digests = sendAll();
  const msgs = await got;
  assert.equal(
    msgs.map((m) => crypto.createHash('sha256').update(m.data).digest('hex')),
    digests,
    'every Buffer arrived intact, in order',
  );
  await waitFor(() => conn.bufferedAmount === 0, { label: 'everything written' });
  // Native code held a reference to each Buffer until it was written: all must go now.
  await waitFor(
    async () => {
      gc();
      await new Promise((r) => setImmediate(r));
      return released.size === N;
    },
    {
      timeout: 10_000,
      interval: 20,
      label: 'every sent Buffer collected',
      describe: () => `${released.size} of ${N}`,
    },
  );
});

test.after(exitWatchdog);
test.run();
