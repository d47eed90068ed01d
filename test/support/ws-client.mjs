// Clients of the `ws` package (an independent implementation) against node-lws servers.
//
// Layer 2 of test/support/: imports wait.mjs and messages.mjs.

import WebSocket from 'ws';
import { nextMessage } from './messages.mjs';
import { DEFAULT_TIMEOUT, withTimeout } from './wait.mjs';

export { WebSocket };

/**
 * Open a `ws` client and resolve once it is open. The client gets:
 *  - `closed`: a promise of `{ code, reason }` (reason as string) for its 'close' event;
 *  - `errors`: an array collecting 'error' events after open (so that a late
 *    socket error cannot crash the test process; tests may assert on it).
 * Rejects on error / unexpected HTTP response / timeout before open.
 */
export async function wsConnect(url, options = {}, { timeout = DEFAULT_TIMEOUT, protocols } = {}) {
  const ws =
    protocols !== undefined ? new WebSocket(url, protocols, options) : new WebSocket(url, options);
  ws.errors = [];
  ws.closed = new Promise((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  const opened = new Promise((resolve, reject) => {
    const onError = (err) => {
      cleanup();
      reject(err);
    };
    const onUnexpected = (_req, res) => {
      cleanup();
      reject(new Error(`unexpected HTTP response ${res.statusCode} from ${url}`));
      res.resume();
      ws.terminate();
    };
    const onOpen = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      ws.off('error', onError);
      ws.off('unexpected-response', onUnexpected);
      ws.off('open', onOpen);
      ws.on('error', (err) => ws.errors.push(err));
    };
    ws.on('error', onError);
    ws.on('unexpected-response', onUnexpected);
    ws.on('open', onOpen);
  });
  try {
    await withTimeout(opened, timeout, `ws client open (${url})`);
  } catch (err) {
    ws.on('error', () => {});
    ws.terminate();
    throw err;
  }
  return ws;
}

/**
 * Send `payload` (string → text frame, Buffer → binary frame) from a ws
 * client and resolve with the reply `{ data, isBinary }`.
 */
export async function echoRoundTrip(ws, payload, ms = DEFAULT_TIMEOUT, label = 'echo reply') {
  const reply = nextMessage(ws, ms, label);
  ws.send(payload, { binary: typeof payload !== 'string' });
  return reply;
}

/**
 * A wsConnect() for a test file: the client is closed after the test through `cleanups` (a
 * cleanupsAfterEach() list), terminated if a clean close fails.
 */
export function wsConnectFor(cleanups) {
  return async (url, options, extra) => {
    const c = await wsConnect(url, options, extra);
    cleanups.push(() => closeClient(c).catch(() => c.terminate()));
    return c;
  };
}

/** Close a ws client (if not closed yet) and wait for its 'close' event. */
export async function closeClient(ws, code = 1000, reason = '', ms = DEFAULT_TIMEOUT) {
  if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
  else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
  return withTimeout(ws.closed, ms, 'ws client close');
}

/**
 * Open a `ws` client that must be refused with an HTTP response; resolves with
 * `{ status, headers, body }` ('unexpected-response'). Fails if it opens or
 * errors without a response.
 */
export function wsExpectReject(url, options = {}, protocols) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const c =
        protocols !== undefined
          ? new WebSocket(url, protocols, options)
          : new WebSocket(url, options);
      c.on('open', () => {
        c.terminate();
        reject(new Error(`ws client to ${url} opened, but a rejection was expected`));
      });
      c.on('unexpected-response', (_req, res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
          resolve({
            status: res.statusCode,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          });
          c.terminate();
        });
      });
      c.on('error', (err) => reject(new Error(`ws client error instead of a response: ${err}`)));
    }),
    DEFAULT_TIMEOUT,
    `rejected upgrade to ${url}`,
  );
}
