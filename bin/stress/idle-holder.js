'use strict';
// Holds idle WebSocket connections for `node-lws-stress --idle N`, in its own process (forked
// by idle.js) so that the client ends do not count against the measured process's descriptors.
// Each connection is a plain TCP socket that sends one upgrade request, checks the 101 answer
// (status and Sec-WebSocket-Accept) and then stays silent.
//
//   parent -> { type: 'open', host, port, path, count, concurrency, timeoutMs }
//   child  -> { type: 'opened', ok, failed, codes, firstError }
//   parent -> { type: 'status' }  child -> { type: 'status', open, closedEarly }
//   parent -> { type: 'close' }   child closes every socket, answers { type: 'closed' } and exits

const crypto = require('node:crypto');
const net = require('node:net');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function send(m) {
  if (process.connected) process.send(m);
}

const sockets = new Set();
let closing = false;
let closedEarly = 0;

/** One idle WebSocket connection; resolves when it is open, rejects with a coded error. */
function openOne(m) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const accept = crypto
      .createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    const host = m.host.includes(':') ? `[${m.host}]` : m.host;
    const socket = net.connect({ host: m.host, port: m.port });
    let head = '';
    let open = false;
    const fail = (code, message) => {
      socket.destroy();
      const err = new Error(message);
      err.code = code;
      reject(err);
    };
    socket.setTimeout(m.timeoutMs, () => fail('ETIMEDOUT', 'no upgrade answer in time'));
    socket.setEncoding('latin1');
    socket.on('connect', () => {
      socket.write(
        `GET ${m.path} HTTP/1.1\r\nHost: ${host}:${m.port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.on('data', (d) => {
      if (open) return; // idle: nothing is expected, anything is ignored
      head += d;
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16384) fail('ERR_HANDSHAKE', 'answer head too long');
        return;
      }
      const lines = head.slice(0, end).split('\r\n');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0]);
      const got = lines.find((l) => /^sec-websocket-accept:/i.test(l));
      if (status?.[1] !== '101') {
        return fail('ERR_HANDSHAKE', `answer ${JSON.stringify(lines[0])}`);
      }
      if (!got || got.slice(got.indexOf(':') + 1).trim() !== accept) {
        return fail('ERR_HANDSHAKE', 'wrong Sec-WebSocket-Accept');
      }
      open = true;
      socket.setTimeout(0);
      sockets.add(socket);
      resolve();
    });
    socket.on('error', (err) => {
      if (!open) fail(err.code ?? 'ERR_SOCKET', err.message);
    });
    socket.on('close', () => {
      if (!open) return fail('ECONNRESET', 'closed before the upgrade answer');
      sockets.delete(socket);
      if (!closing) closedEarly++;
    });
  });
}

async function openAll(m) {
  let next = 0;
  let ok = 0;
  let failed = 0;
  const codes = {};
  let firstError = null;
  const worker = async () => {
    while (next < m.count) {
      next++;
      try {
        await openOne(m);
        ok++;
      } catch (err) {
        failed++;
        codes[err.code] = (codes[err.code] ?? 0) + 1;
        firstError ??= `${err.code}: ${err.message}`;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(m.concurrency, m.count) }, worker));
  send({ type: 'opened', ok, failed, codes, firstError });
}

if (require.main === module) {
  process.on('SIGINT', () => {}); // the parent decides when to stop
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m) => {
    if (m?.type === 'open') openAll(m);
    else if (m?.type === 'status') send({ type: 'status', open: sockets.size, closedEarly });
    else if (m?.type === 'close') {
      closing = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (process.connected) process.send({ type: 'closed' }, () => process.disconnect());
    }
  });
}
