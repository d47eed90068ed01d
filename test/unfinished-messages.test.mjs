// totalUnfinishedLimit: what incoming messages that are not complete yet may hold together, over
// every connection. Past it the connection holding the most is closed with 1013 (Try Again
// Later); the others go on. nativeMemory().unfinished says what is held.

import crypto from 'node:crypto';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { configure, nativeMemory } from '../dist/index.mjs';
import { listenFor, nextConnection } from './support/lws.mjs';
import { ROOT } from './support/paths.mjs';
import { spawnNode } from './support/proc.mjs';
import { encodeFrame, OP, rawWsUpgrade } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { waitFor } from './support/wait.mjs';

const KiB = 1024;
const MiB = 1024 * KiB;
const DEFAULT_LIMIT = 256 * MiB;

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: '127.0.0.1', port: 0 });

function track(peer) {
  cleanups.push(async () => peer.destroy());
  return peer;
}

/** Sets the limit for one test; the default comes back after it. */
function limitTo(bytes) {
  configure({ totalUnfinishedLimit: bytes });
  cleanups.push(async () => configure({ totalUnfinishedLimit: DEFAULT_LIMIT }));
}

/** A raw client upgraded on `server`, with the server's Connection for it. */
async function rawClient(server) {
  const connected = nextConnection(server);
  const peer = track(await rawWsUpgrade(server.port));
  const [conn] = await connected;
  const client = { peer, conn, messages: [], closeCode: undefined, errors: [] };
  conn.on('message', (data) => client.messages.push(data));
  conn.on('error', (err) => client.errors.push(err)); // a 1013 failure is reported first
  conn.on('close', (code) => {
    client.closeCode = code;
  });
  return client;
}

/** The close code the server's Connection reported. */
const closedWith = (client, label) =>
  waitFor(() => client.closeCode, { label: `${label}: server 'close' event` });

const heldAtLeast = (bytes, label) =>
  waitFor(() => nativeMemory().unfinished >= bytes, {
    label,
    describe: () => `unfinished ${nativeMemory().unfinished}`,
  });

test('past totalUnfinishedLimit the connection holding the most gets 1013; a smaller one completes', async () => {
  limitTo(MiB);
  const server = await listen();
  const a = await rawClient(server);
  const b = await rawClient(server);
  // A: 300 KiB of a 900 KiB message. Its header announces the whole, which is what is held.
  const aFrame = encodeFrame({ opcode: OP.binary, payload: Buffer.alloc(900 * KiB, 1) });
  a.peer.write(aFrame.subarray(0, 300 * KiB));
  await heldAtLeast(900 * KiB, "A's unfinished message counted");
  // B: 100 KiB of a 400 KiB message takes the total past 1 MiB. A holds more: A goes.
  const bPayload = crypto.randomBytes(400 * KiB);
  const bFrame = encodeFrame({ opcode: OP.binary, payload: bPayload });
  b.peer.write(bFrame.subarray(0, 100 * KiB));
  const close = await a.peer.nextFrame(5000, "A's close frame", OP.close);
  assert.is(close.payload.readUInt16BE(0), 1013, 'close code 1013 (Try Again Later)');
  assert.match(close.payload.subarray(2).toString(), /totalUnfinishedLimit/);
  assert.is(await closedWith(a, 'A'), 1013, "the server's 'close' reports 1013");
  assert.equal(
    a.errors.map((e) => [e.code, e.closeCode]),
    [['ERR_WS_TRY_AGAIN_LATER', 1013]],
    "A's 'error' before its 'close'",
  );
  assert.equal(b.errors, []);
  // A's input is given back at once; B's stays counted until it is complete.
  const held = nativeMemory().unfinished;
  assert.ok(held >= 400 * KiB && held < 600 * KiB, `unfinished ${held} after A was dropped`);
  b.peer.write(bFrame.subarray(100 * KiB));
  await waitFor(() => b.messages.length === 1, { label: "B's message delivered" });
  assert.ok(Buffer.from(b.messages[0]).equals(bPayload), "B's message arrived intact");
  await waitFor(() => nativeMemory().unfinished < 20 * KiB, {
    label: 'nothing unfinished once B is delivered',
    describe: () => `unfinished ${nativeMemory().unfinished}`,
  });
  assert.is(a.messages.length, 0);
});

test('a fragmented message counts as it grows, and is the one dropped past the limit', async () => {
  limitTo(MiB);
  const server = await listen();
  const small = await rawClient(server);
  const frag = await rawClient(server);
  // small: 50 KiB of a 200 KiB message.
  const smallPayload = crypto.randomBytes(200 * KiB);
  const smallFrame = encodeFrame({ opcode: OP.binary, payload: smallPayload });
  small.peer.write(smallFrame.subarray(0, 50 * KiB));
  await heldAtLeast(200 * KiB, "small's message counted");
  // frag: fragments of 128 KiB, none final: its buffer grows until the total passes 1 MiB.
  let sent = 0;
  const chunk = Buffer.alloc(128 * KiB, 2);
  const dropped = () => frag.peer.frames.some((f) => f.opcode === OP.close) || frag.peer.isClosed;
  while (sent < 16) {
    frag.peer.write(
      encodeFrame({ opcode: sent ? OP.cont : OP.binary, payload: chunk, fin: false }),
    );
    sent++;
    const expect = 200 * KiB + sent * 128 * KiB;
    await waitFor(() => dropped() || nativeMemory().unfinished >= expect, {
      label: `fragment ${sent} counted, or the connection dropped`,
      describe: () => `unfinished ${nativeMemory().unfinished}`,
    });
    if (dropped()) break;
  }
  const close = await frag.peer.nextFrame(5000, "frag's close frame", OP.close);
  assert.is(close.payload.readUInt16BE(0), 1013);
  assert.ok(sent >= 5 && sent <= 9, `dropped after ${sent} fragments of 128 KiB`);
  assert.is(await closedWith(frag, 'frag'), 1013);
  // The small message is unharmed.
  small.peer.write(smallFrame.subarray(50 * KiB));
  await waitFor(() => small.messages.length === 1, { label: "small's message delivered" });
  assert.ok(Buffer.from(small.messages[0]).equals(smallPayload));
});

test('under the limit nothing is dropped: several large messages at once all arrive', async () => {
  limitTo(4 * MiB);
  const server = await listen();
  const clients = [];
  for (let i = 0; i < 3; i++) clients.push(await rawClient(server));
  const payloads = clients.map(() => crypto.randomBytes(MiB));
  const frames = payloads.map((p) => encodeFrame({ opcode: OP.binary, payload: p }));
  // All three half-sent (3 MiB held together), then finished.
  for (const [i, c] of clients.entries()) c.peer.write(frames[i].subarray(0, 512 * KiB));
  await heldAtLeast(3 * MiB, 'three messages counted');
  for (const [i, c] of clients.entries()) c.peer.write(frames[i].subarray(512 * KiB));
  for (const [i, c] of clients.entries()) {
    await waitFor(() => c.messages.length === 1, { label: `message ${i} delivered` });
    assert.ok(Buffer.from(c.messages[0]).equals(payloads[i]), `message ${i} intact`);
  }
});

test('unless configured, the limit grows to hold two messages of the largest maxPayload in use', async () => {
  // In processes of their own, where configure() has not been called: a server with maxPayload
  // 200 MiB gets two 150 MiB messages announced (300 MiB held, above the 256 MiB default).
  const run = async (...args) => {
    const child = spawnNode([path.join(ROOT, 'test', 'fixtures', 'unfinished-auto.mjs'), ...args]);
    cleanups.push(() => child.stop());
    return JSON.parse(await child.line(() => true, 10_000, 'the fixture’s result'));
  };
  const auto = await run();
  assert.equal(auto.errors, [], 'both kept: the limit is 400 MiB');
  assert.is(auto.unfinished, 300 * MiB);
  const configured = await run('configured');
  assert.is(configured.errors.length, 1, 'an explicit 256 MiB limit is kept as it is');
  assert.match(configured.errors[0], /^ERR_WS_TRY_AGAIN_LATER: .*totalUnfinishedLimit/);
  assert.is(configured.unfinished, 150 * MiB);
});

test('configure({ totalUnfinishedLimit }) refuses what is not an integer of at least 64 KiB', () => {
  for (const bad of [1000, -1, 1.5, '1048576', Number.NaN]) {
    let err;
    try {
      configure({ totalUnfinishedLimit: bad });
    } catch (e) {
      err = e;
    }
    assert.ok(err, `${String(bad)} refused`);
    assert.ok(
      err.code === 'ERR_OUT_OF_RANGE' || err.code === 'ERR_INVALID_ARG_TYPE',
      `${String(bad)}: ${err.code}`,
    );
  }
  configure({ totalUnfinishedLimit: 64 * KiB });
  configure({ totalUnfinishedLimit: DEFAULT_LIMIT });
});

test.after(exitWatchdog);
test.run();
