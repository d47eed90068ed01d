// RFC 6455 conformance of node-lws, checked byte by byte.
//
// Server side: a node-lws echo server is driven by a raw TCP client (net.connect)
// that writes hand-built frames and parses every byte the server sends back.
// Client side (mirrored): connect() from node-lws talks to a raw TCP server
// (net.createServer) that performs the HTTP 101 handshake itself, computes
// Sec-WebSocket-Accept, and then sends hand-built frames.
//
// Every check asserts exact content: the close frame's opcode and code (and the
// mask bit / masking key on client frames), the HTTP status line and headers,
// or the echoed bytes and the frame header that carried them. After every
// failure the TCP connection must be closed within a deadline shorter than
// closeTimeoutMs, so a close that only happens because a timer ran out fails.

import crypto from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { listenFor, nextConnection } from './support/lws.mjs';
import { rawTcpConnect } from './support/net.mjs';
import {
  acceptFor,
  closePayload,
  describeFrame,
  encodeFrame as frame,
  OP,
  OP_NAME,
  RawWsPeer,
  rawHttpExchange,
  rawWsServer,
  rawWsUpgrade,
  upgradeRequest,
} from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { onceEvent, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
/** Deadline for one frame / one event. */
const T = 5000;
/** Deadline for the TCP close after a failure or a finished closing handshake (< closeTimeoutMs). */
const TCP_CLOSE_MS = 2500;
/** closeTimeoutMs given to every node-lws endpoint: longer than TCP_CLOSE_MS on purpose. */
const CLOSE_TIMEOUT_MS = 8000;

// ---------------------------------------------------------------------------
// Bookkeeping: everything a test opens is closed after it.
// ---------------------------------------------------------------------------

const cleanups = cleanupsAfterEach(test);

/** node-lws servers with closeTimeoutMs CLOSE_TIMEOUT_MS, closed after the test. */
const listen = listenFor(cleanups, { host: HOST, port: 0, closeTimeoutMs: CLOSE_TIMEOUT_MS });

/** Destroy the raw peer's socket after the test. */
function track(peer) {
  cleanups.push(async () => peer.destroy());
  return peer;
}

// ---------------------------------------------------------------------------
// Raw client against a node-lws server
// ---------------------------------------------------------------------------

async function connectTcp(port) {
  const socket = await rawTcpConnect(port, HOST, T);
  cleanups.push(async () => socket.destroy());
  return socket;
}

/** A raw client after a successful upgrade (the 101 and its Accept are asserted). */
async function rawClient(port, path = '/') {
  return track(await rawWsUpgrade(port, { host: HOST, path, ms: T }));
}

/** Send a raw HTTP request; resolve { head, body, peer } once the server has closed TCP. */
async function rawHttp(port, request) {
  const r = await rawHttpExchange(port, request, {
    host: HOST,
    ms: T,
    bodyMs: TCP_CLOSE_MS,
    keep: true,
  });
  track(r.peer);
  return r;
}

/** A node-lws server that echoes every message the way the brief says. */
async function echoServer(options = {}) {
  const server = await listen(options);
  const conns = [];
  server.on('connection', (conn) => {
    conns.push(conn);
    conn.errors = [];
    conn.on('error', (err) => conn.errors.push(err));
    conn.on('message', (d, b) => {
      if (conn.isOpen) conn.send(d, b);
    });
  });
  return { server, conns };
}

/** A raw client connected to a fresh echo server, with the server-side Connection. */
async function serverPair(options) {
  const { server } = await echoServer(options);
  const connP = nextConnection(server);
  const peer = await rawClient(server.port);
  const [conn] = await connP;
  return { server, conn, peer };
}

function connClose(conn, ms = T) {
  return withTimeout(
    new Promise((resolve) => {
      if (conn.readyState === 'closed') resolve(null);
      conn.once('close', (code, reason, wasClean) => resolve({ code, reason, wasClean }));
    }),
    ms,
    "node-lws 'close' event",
  );
}

/**
 * The next frame must be a close frame with `code` (masked iff `masked`);
 * returns { code, reason, frame }.
 */
async function expectClose(peer, code, { masked, label = `close ${code}` } = {}) {
  const f = await peer.nextFrame(T, label);
  assert.is(
    f.opcode,
    OP.close,
    `expected a close frame with code ${code}, got ${describeFrame(f)}`,
  );
  assert.ok(f.fin, 'close frame has FIN set');
  assert.is(f.rsv, 0, 'close frame RSV bits');
  if (masked !== undefined)
    assert.is(f.masked, masked, `close frame mask bit (expected masked=${masked})`);
  assert.ok(
    f.payload.length >= 2,
    `close frame must carry a code, got payload ${f.payload.toString('hex')}`,
  );
  const got = f.payload.readUInt16BE(0);
  assert.is(
    got,
    code,
    `close code: expected ${code}, got ${got} (reason ${JSON.stringify(f.payload.subarray(2).toString())})`,
  );
  return { code: got, reason: f.payload.subarray(2).toString('utf8'), frame: f };
}

/** Send `frames` from a raw client and expect the server to fail the connection with `code`. */
async function serverFailsWith(frames, code, options) {
  const { conn, peer } = await serverPair(options);
  const closedP = connClose(conn);
  for (const f of frames) peer.write(f);
  await expectClose(peer, code, { masked: false });
  await peer.assertTcpClosed(`by the server after close ${code}`, TCP_CLOSE_MS);
  const ev = await closedP;
  assert.ok(ev, "Connection 'close' event");
  assert.is(ev.code, code, `Connection 'close' code (reason ${JSON.stringify(ev.reason)})`);
  return { conn, peer };
}

// ---------------------------------------------------------------------------
// Raw server for a node-lws client
// ---------------------------------------------------------------------------

/**
 * A raw server that performs the upgrade itself (see rawWsServer). `respond(head, key)` returns
 * the response text (default: a correct 101); `url` is its ws:// URL on /raw.
 */
async function rawServer({ respond } = {}) {
  const rs = await rawWsServer({ host: HOST, respond });
  cleanups.push(() => rs.close());
  return { ...rs, url: rs.url('/raw') };
}

/** connect() with cleanup; errors collected on client.errors. */
async function lwsConnect(url, options = {}) {
  const client = await lws.connect(url, { closeTimeoutMs: CLOSE_TIMEOUT_MS, ...options });
  cleanups.push(async () => {
    if (client.readyState !== 'closed') client.terminate();
  });
  client.errors = [];
  client.on('error', (err) => client.errors.push(err));
  return client;
}

/** A node-lws client connected to a fresh raw server; `echo` makes it echo messages. */
async function clientPair({ echo = false, connectOptions } = {}) {
  const rs = await rawServer();
  const clientP = lwsConnect(rs.url, connectOptions);
  clientP.catch(() => {});
  const peer = await rs.nextPeer();
  const client = await withTimeout(clientP, T, 'connect()');
  if (echo)
    client.on('message', (d, b) => {
      if (client.isOpen) client.send(d, b);
    });
  return { rs, peer, client };
}

/** Send `frames` from the raw server; the node-lws client must fail with a masked close `code`. */
async function clientFailsWith(frames, code, connectOptions) {
  const { peer, client } = await clientPair({ connectOptions });
  const closedP = connClose(client);
  for (const f of frames) peer.write(f);
  await expectClose(peer, code, { masked: true });
  await peer.assertTcpClosed(`after the client's close ${code}`, TCP_CLOSE_MS);
  const ev = await closedP;
  assert.ok(ev, "client 'close' event");
  assert.is(ev.code, code, `client 'close' code (reason ${JSON.stringify(ev.reason)})`);
  return { peer, client };
}

/** Server frames (unmasked) for the client-side checks. */
const sframe = (opts) => frame({ mask: false, ...opts });

// ---------------------------------------------------------------------------
// Payload helpers
// ---------------------------------------------------------------------------

/** Exactly `n` bytes of valid UTF-8 with 1-, 2-, 3- and 4-byte characters. */
function utf8Bytes(n) {
  const unit = Buffer.from('aé€😀', 'utf8'); // 1 + 2 + 3 + 4 = 10 bytes
  const b = Buffer.alloc(n, 'z');
  const whole = Math.floor(n / unit.length);
  for (let i = 0; i < whole; i++) unit.copy(b, i * unit.length);
  return b;
}

function binaryBytes(n) {
  const b = Buffer.allocUnsafe(n);
  let x = 0x12345678;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * `data` as binary fragments cut at `cuts` (0 first, data.length last), with a ping carrying
 * pings[i] after every fragment but the last; `make` builds the frames (frame or sframe).
 */
function fragmentsWithPings(make, data, cuts, pings) {
  const bufs = [];
  const last = cuts.length - 2;
  for (let i = 0; i <= last; i++) {
    bufs.push(
      make({
        opcode: i === 0 ? OP.binary : OP.cont,
        payload: data.subarray(cuts[i], cuts[i + 1]),
        fin: i === last,
      }),
    );
    if (i < last) bufs.push(make({ opcode: OP.ping, payload: pings[i] }));
  }
  return Buffer.concat(bufs);
}

const expectedEncoding = (n) => (n < 126 ? 7 : n <= 0xffff ? 16 : 64);

function assertFrameCarries(f, { opcode, payload, masked, label }) {
  assert.is(
    f.opcode,
    opcode,
    `${label}: opcode (expected ${OP_NAME[opcode]}, got ${describeFrame(f)})`,
  );
  assert.ok(f.fin, `${label}: FIN`);
  assert.is(f.rsv, 0, `${label}: RSV bits`);
  assert.is(f.masked, masked, `${label}: mask bit`);
  assert.is(f.length, payload.length, `${label}: payload length`);
  assert.is(
    f.lengthEncoding,
    expectedEncoding(payload.length),
    `${label}: minimal length encoding (7-bit / 16-bit / 64-bit)`,
  );
  assert.is(
    f.headerLength,
    (payload.length < 126 ? 2 : payload.length <= 0xffff ? 4 : 10) + (masked ? 4 : 0),
    `${label}: header length`,
  );
  assert.ok(
    f.payload.equals(payload),
    `${label}: payload content differs (first difference at ${firstDiff(f.payload, payload)})`,
  );
}

function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * The next frames must be one pong per ping payload (each carrying its ping's
 * payload, masked iff `masked`), and they must come in the order of the pings.
 * The two properties are asserted separately so a failure says which one broke.
 */
// Pings sent back to back: RFC 6455 5.5.3 lets an endpoint answer only the most
// recent of the pings it has not answered yet (node-lws keeps at most one pong
// pending, so a ping flood cannot queue without bound). What arrives must be
// pongs carrying ping payloads in the order of the pings, ending with the last.
async function expectPongs(peer, payloads, masked) {
  const got = [];
  let last = -1;
  while (last < payloads.length - 1) {
    const f = await peer.nextFrame(T, `pong for ping ${payloads.length} of ${payloads.length}`);
    assert.is(
      f.opcode,
      OP.pong,
      `frame after the pings (got ${JSON.stringify(got)} so far): expected a pong, got ${describeFrame(f)}`,
    );
    assert.ok(f.fin, 'pong FIN');
    assert.is(f.rsv, 0, 'pong RSV');
    assert.is(f.masked, masked, 'pong mask bit');
    const payload = f.payload.toString('latin1');
    got.push(payload);
    const index = payloads.indexOf(payload, last + 1);
    assert.ok(
      index > last,
      `pongs must answer the pings in their order: sent pings ${JSON.stringify(payloads)}, pongs arrived ${JSON.stringify(got)}`,
    );
    last = index;
  }
}

const INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000];

// ===========================================================================
// SERVER SIDE (raw client → node-lws server)
// ===========================================================================

// ---- fragmentation and interleaved pings ---------------------------------------

test('server: fragmented text (3 fragments) with pings between fragments → one echo, a pong per ping', async () => {
  const { peer } = await serverPair();
  const parts = ['Hello, ', 'wörld ', '— fragmented ✓'];
  const pings = ['p1', Buffer.from([0, 1, 2, 0xff])];
  peer.send({ opcode: OP.text, payload: parts[0], fin: false });
  peer.send({ opcode: OP.ping, payload: pings[0] });
  const pong1 = await peer.nextFrame(T, 'pong 1 (while the message is open)');
  assertFrameCarries(pong1, {
    opcode: OP.pong,
    payload: Buffer.from(pings[0]),
    masked: false,
    label: 'pong 1',
  });
  peer.send({ opcode: OP.cont, payload: parts[1], fin: false });
  peer.send({ opcode: OP.ping, payload: pings[1] });
  const pong2 = await peer.nextFrame(T, 'pong 2 (while the message is open)');
  assertFrameCarries(pong2, { opcode: OP.pong, payload: pings[1], masked: false, label: 'pong 2' });
  peer.send({ opcode: OP.cont, payload: parts[2], fin: true });
  const echo = await peer.nextFrame(T, 'echo of the fragmented text');
  assertFrameCarries(echo, {
    opcode: OP.text,
    payload: Buffer.from(parts.join('')),
    masked: false,
    label: 'echo',
  });
});

test('server: fragmented binary (4 fragments, one write, pings interleaved) → pongs in order, then one echo', async () => {
  const { peer } = await serverPair();
  const data = binaryBytes(3000);
  const cuts = [0, 1, 1000, 2999, 3000];
  const pingPayloads = ['a', 'bb', 'ccc'];
  peer.write(fragmentsWithPings(frame, data, cuts, pingPayloads));
  await expectPongs(peer, pingPayloads, false);
  const echo = await peer.nextFrame(T, 'echo of the fragmented binary');
  assertFrameCarries(echo, { opcode: OP.binary, payload: data, masked: false, label: 'echo' });
});

test('server: fragments with empty first and last parts are reassembled (text)', async () => {
  const { peer } = await serverPair();
  peer.write(
    Buffer.concat([
      frame({ opcode: OP.text, payload: '', fin: false }),
      frame({ opcode: OP.cont, payload: 'middle', fin: false }),
      frame({ opcode: OP.cont, payload: '', fin: true }),
    ]),
  );
  const echo = await peer.nextFrame(T, 'echo');
  assertFrameCarries(echo, {
    opcode: OP.text,
    payload: Buffer.from('middle'),
    masked: false,
    label: 'echo',
  });
});

// ---- ping / pong -------------------------------------------------------------------

test("server: conn.ping(data) reaches the raw client; its pong fires 'pong'; a raw ping fires 'ping' and gets a pong", async () => {
  const { conn, peer } = await serverPair();
  conn.ping('hello');
  const ping = await peer.nextFrame(T, 'ping from conn.ping()');
  assertFrameCarries(ping, {
    opcode: OP.ping,
    payload: Buffer.from('hello'),
    masked: false,
    label: 'ping',
  });

  const pongEv = onceEvent(conn, 'pong', T, "Connection 'pong'");
  peer.send({ opcode: OP.pong, payload: ping.payload });
  const [pongData] = await pongEv;
  assert.ok(Buffer.isBuffer(pongData), "'pong' data is a Buffer");
  assert.is(pongData.toString(), 'hello', "'pong' data");

  const pingEv = onceEvent(conn, 'ping', T, "Connection 'ping'");
  peer.send({ opcode: OP.ping, payload: 'from-raw' });
  const [pingData] = await pingEv;
  assert.is(Buffer.from(pingData).toString(), 'from-raw', "'ping' data");
  const pong = await peer.nextFrame(T, 'pong for the raw ping');
  assertFrameCarries(pong, {
    opcode: OP.pong,
    payload: Buffer.from('from-raw'),
    masked: false,
    label: 'pong',
  });

  // Empty payloads both ways.
  conn.ping();
  const empty = await peer.nextFrame(T, 'empty ping');
  assertFrameCarries(empty, {
    opcode: OP.ping,
    payload: Buffer.alloc(0),
    masked: false,
    label: 'empty ping',
  });
  peer.send({ opcode: OP.ping });
  const emptyPong = await peer.nextFrame(T, 'pong for an empty ping');
  assertFrameCarries(emptyPong, {
    opcode: OP.pong,
    payload: Buffer.alloc(0),
    masked: false,
    label: 'empty pong',
  });
});

// ---- closing handshake ---------------------------------------------------------------

test("server: raw close(4000,'bye') → server echoes close 4000 'bye', then closes TCP; 'close' (4000,'bye',true)", async () => {
  const { conn, peer } = await serverPair();
  const closedP = connClose(conn);
  peer.send({ opcode: OP.close, payload: closePayload(4000, 'bye') });
  const { reason } = await expectClose(peer, 4000, { masked: false });
  assert.is(reason, 'bye', 'echoed close reason');
  await peer.assertTcpClosed('by the server after the closing handshake', TCP_CLOSE_MS);
  assert.ok(peer.ended, 'the server closed TCP with a FIN (socket saw end)');
  assert.is(peer.error, null, `no socket error (got ${peer.error?.code})`);
  assert.is(peer.frames.length, 0, 'nothing after the close frame');
  const ev = await closedP;
  assert.equal(ev, { code: 4000, reason: 'bye', wasClean: true }, "Connection 'close' event");
});

test("server: conn.close(4001,'x') → raw client sees close 4001 'x', replies, TCP closes; 'close' (4001,'x',true)", async () => {
  const { conn, peer } = await serverPair();
  const closedP = connClose(conn);
  conn.close(4001, 'x');
  const { reason } = await expectClose(peer, 4001, { masked: false });
  assert.is(reason, 'x', 'close reason');
  assert.is(peer.isClosed, false, 'TCP still open until the raw client replies');
  peer.send({ opcode: OP.close, payload: closePayload(4001, 'x') });
  await peer.assertTcpClosed('by the server after the reply', TCP_CLOSE_MS);
  assert.ok(peer.ended, 'the server closed TCP with a FIN');
  const ev = await closedP;
  assert.equal(ev, { code: 4001, reason: 'x', wasClean: true }, "Connection 'close' event");
});

test("server: raw close with no payload → empty close echoed, TCP closed, 'close' code 1005", async () => {
  const { conn, peer } = await serverPair();
  const closedP = connClose(conn);
  peer.send({ opcode: OP.close });
  const f = await peer.nextFrame(T, 'close reply');
  assert.is(f.opcode, OP.close, describeFrame(f));
  assert.is(f.payload.length, 0, `reply to an empty close is empty (got ${describeFrame(f)})`);
  await peer.assertTcpClosed('by the server', TCP_CLOSE_MS);
  const ev = await closedP;
  assert.is(ev.code, 1005, "Connection 'close' code");
  assert.is(ev.wasClean, true, "Connection 'close' wasClean");
});

for (const code of [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999]) {
  test(`server: valid close code ${code} from the client is echoed`, async () => {
    const { peer } = await serverPair();
    peer.send({ opcode: OP.close, payload: closePayload(code, 'ok') });
    const { reason } = await expectClose(peer, code, { masked: false });
    assert.is(reason, 'ok');
    await peer.assertTcpClosed('by the server', TCP_CLOSE_MS);
  });
}

// ---- invalid close frames ------------------------------------------------------------

for (const code of INVALID_CLOSE_CODES) {
  test(`server: invalid close code ${code} from the client → close 1002`, async () => {
    await serverFailsWith([frame({ opcode: OP.close, payload: closePayload(code) })], 1002);
  });
}

test('server: close frame with a 1-byte payload → close 1002', async () => {
  await serverFailsWith([frame({ opcode: OP.close, payload: Buffer.from([0x03]) })], 1002);
});

test('server: close reason of invalid UTF-8 → close 1002', async () => {
  const bad = Buffer.concat([Buffer.from('ok '), Buffer.from([0xc3, 0x28])]);
  await serverFailsWith([frame({ opcode: OP.close, payload: closePayload(1000, bad) })], 1002);
});

// ---- UTF-8 ---------------------------------------------------------------------------------

const INVALID_UTF8 = {
  'bad continuation (C3 28)': [0xc3, 0x28],
  'overlong (C0 AF)': [0xc0, 0xaf],
  'surrogate (ED A0 80)': [0xed, 0xa0, 0x80],
  'above U+10FFFF (F4 90 80 80)': [0xf4, 0x90, 0x80, 0x80],
  'byte FF': [0xff],
  'truncated at the end (F0 9F 98)': [0xf0, 0x9f, 0x98],
};
for (const [name, bytes] of Object.entries(INVALID_UTF8)) {
  test(`server: invalid UTF-8 in a text message, ${name} → close 1007`, async () => {
    const payload = Buffer.concat([Buffer.from('abc'), Buffer.from(bytes)]);
    await serverFailsWith([frame({ opcode: OP.text, payload })], 1007);
  });
}

test('server: invalid UTF-8 split across fragments (F0 9F | 41) → close 1007', async () => {
  await serverFailsWith(
    [
      frame({ opcode: OP.text, payload: Buffer.from([0x61, 0xf0, 0x9f]), fin: false }),
      frame({ opcode: OP.cont, payload: Buffer.from([0x41, 0x42]), fin: true }),
    ],
    1007,
  );
});

test('server: invalid UTF-8 in a non-final fragment fails fast (1007 before the message ends)', async () => {
  // The message never completes: the verdict must come from the bytes seen so far.
  await serverFailsWith(
    [
      frame({ opcode: OP.text, payload: Buffer.from([0x61, 0xf0, 0x9f]), fin: false }),
      frame({ opcode: OP.cont, payload: Buffer.from([0x28]), fin: false }),
    ],
    1007,
  );
});

test('server: text message ending inside a multibyte character (split fragments) → close 1007', async () => {
  await serverFailsWith(
    [
      frame({ opcode: OP.text, payload: Buffer.from([0x61, 0xe2]), fin: false }),
      frame({ opcode: OP.cont, payload: Buffer.from([0x82]), fin: true }),
    ],
    1007,
  );
});

test('server: VALID multibyte characters split across fragments are accepted and echoed', async () => {
  const { peer } = await serverPair();
  const whole = Buffer.from('a€b😀c', 'utf8'); // 61 | E2 82 AC | 62 | F0 9F 98 80 | 63
  const cuts = [0, 2, 3, 6, 8, whole.length]; // cuts inside € and inside 😀
  const frames = [];
  for (let i = 0; i < cuts.length - 1; i++)
    frames.push(
      frame({
        opcode: i === 0 ? OP.text : OP.cont,
        payload: whole.subarray(cuts[i], cuts[i + 1]),
        fin: i === cuts.length - 2,
      }),
    );
  peer.write(Buffer.concat(frames));
  const echo = await peer.nextFrame(T, 'echo of the split multibyte text');
  assertFrameCarries(echo, { opcode: OP.text, payload: whole, masked: false, label: 'echo' });
});

// Payloads of 64 KiB and more are read from the socket straight into the message once their
// frame header is parsed, in chunks that cut multibyte characters and the 4-byte mask period
// anywhere; these check that path end to end.

test('server: 3 MiB text of multibyte characters in one frame is echoed intact', async () => {
  const { peer } = await serverPair();
  const whole = Buffer.from('a€b😀c'.repeat(300_000), 'utf8'); // 3.3 MB, characters of 1–4 bytes
  peer.write(frame({ opcode: OP.text, payload: whole }));
  const echo = await peer.nextFrame(3 * T, 'echo of the 3 MiB text');
  assertFrameCarries(echo, { opcode: OP.text, payload: whole, masked: false, label: 'echo' });
});

test('server: invalid UTF-8 2 MiB into a large text frame → close 1007', async () => {
  const payload = Buffer.alloc(3 * MiB, 0x61);
  payload[2 * MiB + 5] = 0xff;
  await serverFailsWith([frame({ opcode: OP.text, payload })], 1007);
});

test('server: large binary fragments (300 KiB, 1 B, 700 KiB) with pings between → pongs, then one echo', async () => {
  const { peer } = await serverPair();
  const data = binaryBytes(1000 * 1024 + 1);
  const cuts = [0, 300 * 1024, 300 * 1024 + 1, data.length];
  peer.write(fragmentsWithPings(frame, data, cuts, ['p0', 'p1']));
  await expectPongs(peer, ['p0', 'p1'], false);
  const echo = await peer.nextFrame(3 * T, 'echo of the fragmented 1000 KiB binary');
  assertFrameCarries(echo, { opcode: OP.binary, payload: data, masked: false, label: 'echo' });
});

test('client: 3 MiB text of multibyte characters from the server (unmasked) arrives intact', async () => {
  const { peer, client } = await clientPair();
  const whole = 'x😀€y'.repeat(300_000);
  const got = onceEvent(client, 'message', 3 * T, '3 MiB text message');
  peer.write(sframe({ opcode: OP.text, payload: Buffer.from(whole, 'utf8') }));
  const [data, isBinary] = await got;
  assert.is(isBinary, false, 'a text message');
  assert.ok(data === whole, `the text arrives intact (${data.length} of ${whole.length} chars)`);
});

// ---- HTTP upgrade --------------------------------------------------------------------------

async function expectHttpRejection(request, statuses, label) {
  const { server } = await echoServer();
  let connections = 0;
  server.on('connection', () => connections++);
  const { head, body, peer } = await rawHttp(server.port, request(server.port));
  assert.ok(
    statuses.includes(head.status),
    `${label}: expected HTTP ${statuses.join(' or ')}, got status line ${JSON.stringify(head.startLine)}`,
  );
  assert.match(head.startLine, /^HTTP\/1\.1 \d{3} \S/, 'status line shape');
  await peer.assertTcpClosed(`after HTTP ${head.status}`, TCP_CLOSE_MS);
  assert.is(connections, 0, "no 'connection' event for a rejected upgrade");
  return { head, body };
}

test('server: a well-formed upgrade gets exactly 101 with the right Accept and no extension', async () => {
  const { server } = await echoServer();
  const key = crypto.randomBytes(16).toString('base64');
  const socket = await connectTcp(server.port);
  const peer = new RawWsPeer(socket);
  socket.write(
    upgradeRequest(server.port, {
      key,
      extra: 'Sec-WebSocket-Extensions: permessage-deflate\r\n',
    }),
  );
  const head = await peer.waitHead();
  assert.is(head.startLine, 'HTTP/1.1 101 Switching Protocols');
  assert.is(head.headers.upgrade?.toLowerCase(), 'websocket');
  assert.is(head.headers.connection?.toLowerCase(), 'upgrade');
  assert.is(head.headers['sec-websocket-accept'], acceptFor(key));
  assert.is(head.headers['sec-websocket-extensions'], undefined, 'permessage-deflate is declined');
});

test('server: Sec-WebSocket-Version: 99 → HTTP 426 with Sec-WebSocket-Version: 13', async () => {
  const { head } = await expectHttpRejection(
    (p) => upgradeRequest(p, { version: '99' }),
    [426],
    'version 99',
  );
  assert.is(head.headers['sec-websocket-version'], '13', 'Sec-WebSocket-Version header of the 426');
});

test('server: missing Sec-WebSocket-Key → HTTP 400', async () => {
  await expectHttpRejection(
    (p) => upgradeRequest(p, { omit: ['Sec-WebSocket-Key'] }),
    [400],
    'no key',
  );
});

for (const [name, key] of [
  ['15 bytes', crypto.randomBytes(15).toString('base64')],
  ['17 bytes', crypto.randomBytes(17).toString('base64')],
  ['not base64', '!!!!!!!!!!!!!!!!!!!!!!=='],
  ['plain word', 'dGhlIHNhbXBsZSBub25jZQ'],
]) {
  test(`server: malformed Sec-WebSocket-Key (${name}) → HTTP 400`, async () => {
    await expectHttpRejection((p) => upgradeRequest(p, { key }), [400], `key ${name}`);
  });
}

test('server: POST upgrade → HTTP 400 or 405', async () => {
  await expectHttpRejection((p) => upgradeRequest(p, { method: 'POST' }), [400, 405], 'POST');
});

test('server: missing Upgrade header → HTTP 426', async () => {
  await expectHttpRejection((p) => upgradeRequest(p, { omit: ['Upgrade'] }), [426], 'no Upgrade');
});

test('server: plain HTTP GET without upgrade → a 4xx, not 101, and TCP closed', async () => {
  const { head } = await expectHttpRejection(
    (p) => `GET / HTTP/1.1\r\nHost: ${HOST}:${p}\r\nAccept: text/html\r\n\r\n`,
    [400, 404, 405, 426],
    'plain GET',
  );
  assert.is.not(head.status, 101);
});

// ---- framing errors -----------------------------------------------------------------------

for (const [name, rsv] of [
  ['RSV1', 4],
  ['RSV2', 2],
  ['RSV3', 1],
]) {
  test(`server: ${name} set on a text frame → close 1002`, async () => {
    await serverFailsWith([frame({ opcode: OP.text, payload: 'hi', rsv })], 1002);
  });
}

for (const op of [0x3, 0xb]) {
  test(`server: unknown opcode 0x${op.toString(16)} → close 1002`, async () => {
    await serverFailsWith([frame({ opcode: op, payload: 'x' })], 1002);
  });
}

test('server: an unmasked client frame → close 1002', async () => {
  await serverFailsWith([frame({ opcode: OP.text, payload: 'hi', mask: false })], 1002);
});

test('server: continuation frame with no message started → close 1002', async () => {
  await serverFailsWith([frame({ opcode: OP.cont, payload: 'x', fin: true })], 1002);
});

test('server: new text frame while a fragmented message is open → close 1002', async () => {
  await serverFailsWith(
    [
      frame({ opcode: OP.text, payload: 'part', fin: false }),
      frame({ opcode: OP.text, payload: 'again', fin: true }),
    ],
    1002,
  );
});

test('server: ping with a 126-byte payload → close 1002', async () => {
  await serverFailsWith([frame({ opcode: OP.ping, payload: Buffer.alloc(126, 0x70) })], 1002);
});

test('server: fragmented ping (FIN=0) → close 1002', async () => {
  await serverFailsWith([frame({ opcode: OP.ping, payload: 'p', fin: false })], 1002);
});

// ---- maxPayload ------------------------------------------------------------------------

test('server: maxPayload 1024, header announcing 1 MiB + 16 bytes of payload → close 1009 without the rest', async () => {
  const { peer } = await serverFailsWith(
    [frame({ opcode: OP.binary, payload: Buffer.alloc(16, 1), announce: MiB })],
    1009,
    { maxPayload: 1024 },
  );
  assert.ok(peer.isClosed);
});

test('server: maxPayload 1024 — 1024 bytes echoed, fragments adding up to 1025 → close 1009', async () => {
  const { peer } = await serverPair({ maxPayload: 1024 });
  const ok = binaryBytes(1024);
  peer.send({ opcode: OP.binary, payload: ok });
  assertFrameCarries(await peer.nextFrame(T, 'echo of 1024 bytes'), {
    opcode: OP.binary,
    payload: ok,
    masked: false,
    label: '1024-byte echo',
  });
  peer.send({ opcode: OP.binary, payload: Buffer.alloc(600), fin: false });
  peer.send({ opcode: OP.cont, payload: Buffer.alloc(425), fin: true });
  await expectClose(peer, 1009, { masked: false });
  await peer.assertTcpClosed('after close 1009', TCP_CLOSE_MS);
});

// ---- payload lengths ------------------------------------------------------------------

const SIZES = [0, 125, 126, 65535, 65536, 16 * MiB];
for (const size of SIZES) {
  for (const kind of ['text', 'binary']) {
    test(`server: ${kind} payload of ${size} bytes round-trips with minimal length encoding`, async () => {
      const { peer } = await serverPair();
      const payload = kind === 'text' ? utf8Bytes(size) : binaryBytes(size);
      const opcode = kind === 'text' ? OP.text : OP.binary;
      peer.send({ opcode, payload });
      const f = await peer.nextFrame(size > MiB ? 15000 : T, `echo of ${size} bytes`);
      assertFrameCarries(f, { opcode, payload, masked: false, label: `${kind} ${size}` });
    });
  }
}

// ===========================================================================
// CLIENT SIDE (node-lws connect() → raw server)
// ===========================================================================

test('client: the upgrade request is well-formed (GET, HTTP/1.1, Upgrade, Connection, version 13, 16-byte key)', async () => {
  const rs = await rawServer();
  const clientP = lwsConnect(rs.url);
  const peer = await rs.nextPeer();
  await withTimeout(clientP, T, 'connect()');
  const h = peer.head;
  assert.is(h.method, 'GET');
  assert.is(h.target, '/raw');
  assert.is(h.version, 'HTTP/1.1');
  assert.ok(
    /(^|,)\s*websocket\s*(,|$)/i.test(h.headers.upgrade ?? ''),
    `Upgrade: ${h.headers.upgrade}`,
  );
  assert.ok(
    /(^|,)\s*upgrade\s*(,|$)/i.test(h.headers.connection ?? ''),
    `Connection: ${h.headers.connection}`,
  );
  assert.is(h.headers['sec-websocket-version'], '13');
  assert.is(
    Buffer.from(h.headers['sec-websocket-key'] ?? '', 'base64').length,
    16,
    'key decodes to 16 bytes',
  );
  assert.is(h.headers.host, `${HOST}:${rs.port}`);
});

test('client: every frame is masked, each with a fresh masking key, content intact', async () => {
  const { peer, client } = await clientPair();
  const sent = [];
  for (let i = 0; i < 8; i++) {
    const m = `message ${i} ✓`;
    sent.push({ opcode: OP.text, payload: Buffer.from(m) });
    client.send(m);
  }
  const bin = binaryBytes(300);
  client.send(bin);
  sent.push({ opcode: OP.binary, payload: bin });
  client.ping('pp');
  sent.push({ opcode: OP.ping, payload: Buffer.from('pp') });
  const keys = [];
  for (const [i, s] of sent.entries()) {
    const f = await peer.nextFrame(T, `client frame ${i}`);
    assertFrameCarries(f, { ...s, masked: true, label: `client frame ${i}` });
    keys.push(f.maskKey.toString('hex'));
  }
  client.close(1000, 'bye');
  const c = await expectClose(peer, 1000, { masked: true });
  keys.push(c.frame.maskKey.toString('hex'));
  assert.is(
    new Set(keys).size,
    keys.length,
    `masking keys must be fresh per frame, got ${keys.join(' ')}`,
  );
  assert.ok(
    keys.some((k) => k !== '00000000'),
    'masking keys are not all zero',
  );
});

test('client: fragmented text and binary with pings interleaved → whole messages, masked pongs with the same payloads', async () => {
  const { peer, client } = await clientPair();
  const pings = [];
  client.on('ping', (d) => pings.push(Buffer.from(d).toString()));
  const messages = [];
  client.on('message', (d, b) => messages.push({ d, b }));
  const text = ['Frag', 'mént', 'ed ✓'];
  peer.write(sframe({ opcode: OP.text, payload: text[0], fin: false }));
  peer.write(sframe({ opcode: OP.ping, payload: 'q1' }));
  assertFrameCarries(await peer.nextFrame(T, 'pong q1'), {
    opcode: OP.pong,
    payload: Buffer.from('q1'),
    masked: true,
    label: 'pong q1',
  });
  peer.write(sframe({ opcode: OP.cont, payload: text[1], fin: false }));
  peer.write(sframe({ opcode: OP.ping, payload: 'q2' }));
  assertFrameCarries(await peer.nextFrame(T, 'pong q2'), {
    opcode: OP.pong,
    payload: Buffer.from('q2'),
    masked: true,
    label: 'pong q2',
  });
  const msgP = onceEvent(client, 'message', T, "client 'message' (text)");
  peer.write(sframe({ opcode: OP.cont, payload: text[2], fin: true }));
  const [d1, b1] = await msgP;
  assert.is(d1, text.join(''), 'reassembled text');
  assert.is(b1, false);

  const data = binaryBytes(5000);
  const cuts = [0, 100, 2000, 4999, 5000];
  const binP = onceEvent(client, 'message', T, "client 'message' (binary)");
  peer.write(fragmentsWithPings(sframe, data, cuts, ['r0', 'r1', 'r2']));
  await expectPongs(peer, ['r0', 'r1', 'r2'], true);
  const [d2, b2] = await binP;
  assert.is(b2, true);
  assert.ok(Buffer.isBuffer(d2) && d2.equals(data), 'reassembled binary');
  assert.equal(pings, ['q1', 'q2', 'r0', 'r1', 'r2'], "client 'ping' events");
  assert.is(messages.length, 2, 'exactly two messages');
});

test("client: client.ping(data) reaches the raw server masked; its pong fires 'pong'", async () => {
  const { peer, client } = await clientPair();
  client.ping('abc');
  const f = await peer.nextFrame(T, 'ping');
  assertFrameCarries(f, {
    opcode: OP.ping,
    payload: Buffer.from('abc'),
    masked: true,
    label: 'ping',
  });
  const pongP = onceEvent(client, 'pong', T, "client 'pong'");
  peer.write(sframe({ opcode: OP.pong, payload: 'abc' }));
  const [d] = await pongP;
  assert.is(Buffer.from(d).toString(), 'abc');
});

test("client: raw server close(4000,'bye') → client replies masked close 4000 'bye', waits for the server's TCP close; 'close' (4000,'bye',true)", async () => {
  const { peer, client } = await clientPair();
  const closedP = connClose(client);
  peer.write(sframe({ opcode: OP.close, payload: closePayload(4000, 'bye') }));
  const { reason } = await expectClose(peer, 4000, { masked: true });
  assert.is(reason, 'bye');
  assert.is(peer.ended, false, 'the client must not close TCP first (RFC 6455 7.1.1)');
  peer.socket.end();
  const ev = await closedP;
  assert.equal(ev, { code: 4000, reason: 'bye', wasClean: true }, "client 'close' event");
  await peer.assertTcpClosed('after the server ended it', TCP_CLOSE_MS);
});

test("client: client.close(4001,'x') → raw server sees masked close 4001 'x', replies; 'close' (4001,'x',true)", async () => {
  const { peer, client } = await clientPair();
  const closedP = connClose(client);
  client.close(4001, 'x');
  const { reason } = await expectClose(peer, 4001, { masked: true });
  assert.is(reason, 'x');
  peer.write(sframe({ opcode: OP.close, payload: closePayload(4001, 'x') }));
  peer.socket.end();
  const ev = await closedP;
  assert.equal(ev, { code: 4001, reason: 'x', wasClean: true }, "client 'close' event");
  await peer.assertTcpClosed('after the closing handshake', TCP_CLOSE_MS);
});

test('client: a masked frame from the server → masked close 1002', async () => {
  await clientFailsWith([frame({ opcode: OP.text, payload: 'hi', mask: true })], 1002);
});

for (const [name, rsv] of [
  ['RSV1', 4],
  ['RSV2', 2],
  ['RSV3', 1],
]) {
  test(`client: ${name} set on a server frame → masked close 1002`, async () => {
    await clientFailsWith([sframe({ opcode: OP.text, payload: 'hi', rsv })], 1002);
  });
}

for (const op of [0x3, 0xb]) {
  test(`client: unknown opcode 0x${op.toString(16)} from the server → masked close 1002`, async () => {
    await clientFailsWith([sframe({ opcode: op, payload: 'x' })], 1002);
  });
}

test('client: 126-byte ping from the server → masked close 1002', async () => {
  await clientFailsWith([sframe({ opcode: OP.ping, payload: Buffer.alloc(126, 0x70) })], 1002);
});

test('client: fragmented ping from the server → masked close 1002', async () => {
  await clientFailsWith([sframe({ opcode: OP.ping, payload: 'p', fin: false })], 1002);
});

test('client: continuation with no message started → masked close 1002', async () => {
  await clientFailsWith([sframe({ opcode: OP.cont, payload: 'x' })], 1002);
});

test('client: new text frame while a fragmented message is open → masked close 1002', async () => {
  await clientFailsWith(
    [
      sframe({ opcode: OP.text, payload: 'a', fin: false }),
      sframe({ opcode: OP.text, payload: 'b' }),
    ],
    1002,
  );
});

test('client: invalid UTF-8 text from the server → masked close 1007', async () => {
  await clientFailsWith(
    [sframe({ opcode: OP.text, payload: Buffer.from([0x61, 0xc3, 0x28]) })],
    1007,
  );
});

test('client: invalid UTF-8 split across server fragments → masked close 1007', async () => {
  await clientFailsWith(
    [
      sframe({ opcode: OP.text, payload: Buffer.from([0x61, 0xf0, 0x9f]), fin: false }),
      sframe({ opcode: OP.cont, payload: Buffer.from([0x41]), fin: true }),
    ],
    1007,
  );
});

test('client: VALID multibyte characters split across server fragments are delivered', async () => {
  const { peer, client } = await clientPair();
  const whole = Buffer.from('a€b😀c', 'utf8');
  const cuts = [0, 2, 3, 6, 8, whole.length];
  const bufs = [];
  for (let i = 0; i < cuts.length - 1; i++)
    bufs.push(
      sframe({
        opcode: i === 0 ? OP.text : OP.cont,
        payload: whole.subarray(cuts[i], cuts[i + 1]),
        fin: i === cuts.length - 2,
      }),
    );
  const msgP = onceEvent(client, 'message', T, "client 'message'");
  peer.write(Buffer.concat(bufs));
  const [d, b] = await msgP;
  assert.is(d, 'a€b😀c');
  assert.is(b, false);
});

for (const code of INVALID_CLOSE_CODES) {
  test(`client: invalid close code ${code} from the server → masked close 1002`, async () => {
    await clientFailsWith([sframe({ opcode: OP.close, payload: closePayload(code) })], 1002);
  });
}

test('client: 1-byte close payload from the server → masked close 1002', async () => {
  await clientFailsWith([sframe({ opcode: OP.close, payload: Buffer.from([3]) })], 1002);
});

test('client: close reason of invalid UTF-8 from the server → masked close 1002', async () => {
  await clientFailsWith(
    [sframe({ opcode: OP.close, payload: closePayload(1000, Buffer.from([0xc3, 0x28])) })],
    1002,
  );
});

test('client: maxPayload 1024, server header announcing 1 MiB + 16 bytes → masked close 1009 without the rest', async () => {
  await clientFailsWith(
    [sframe({ opcode: OP.binary, payload: Buffer.alloc(16, 1), announce: MiB })],
    1009,
    { maxPayload: 1024 },
  );
});

for (const size of SIZES) {
  for (const kind of ['text', 'binary']) {
    test(`client: ${kind} payload of ${size} bytes round-trips (masked, minimal length encoding)`, async () => {
      const { peer } = await clientPair({ echo: true });
      const payload = kind === 'text' ? utf8Bytes(size) : binaryBytes(size);
      const opcode = kind === 'text' ? OP.text : OP.binary;
      peer.write(sframe({ opcode, payload }));
      const f = await peer.nextFrame(size > MiB ? 15000 : T, `client echo of ${size} bytes`);
      assertFrameCarries(f, { opcode, payload, masked: true, label: `${kind} ${size}` });
    });
  }
}

// ---- client handshake failures --------------------------------------------------------

async function expectConnectError(respond, check) {
  const rs = await rawServer({ respond });
  const clientP = lws.connect(rs.url, { timeoutMs: 8000 });
  clientP.then(
    (c) => cleanups.push(async () => c.terminate()),
    () => {},
  );
  const peer = await rs.nextPeer();
  let err;
  try {
    const c = await withTimeout(clientP, T, 'connect() to settle');
    assert.unreachable(`connect() resolved (readyState ${c.readyState}) instead of rejecting`);
  } catch (e) {
    if (e instanceof assert.Assertion) throw e;
    err = e;
  }
  check(err);
  await peer.assertTcpClosed('by the client after the handshake failure', TCP_CLOSE_MS);
}

test('client: 101 with a wrong Sec-WebSocket-Accept → connect() rejects ERR_HANDSHAKE, TCP closed', async () => {
  await expectConnectError(
    () =>
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor('wrong')}\r\n\r\n`,
    (err) => assert.is(err.code, 'ERR_HANDSHAKE', `error code (message: ${err.message})`),
  );
});

test('client: HTTP 403 → connect() rejects ERR_HANDSHAKE with status 403, TCP closed', async () => {
  await expectConnectError(
    () => 'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nno\n',
    (err) => {
      assert.is(err.code, 'ERR_HANDSHAKE', `error code (message: ${err.message})`);
      assert.is(err.status, 403, 'err.status');
    },
  );
});

test('client: 101 without Upgrade: websocket → connect() rejects ERR_HANDSHAKE', async () => {
  await expectConnectError(
    (_h, key) =>
      `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
    (err) => assert.is(err.code, 'ERR_HANDSHAKE', `error code (message: ${err.message})`),
  );
});

test.after(exitWatchdog);
test.run();
