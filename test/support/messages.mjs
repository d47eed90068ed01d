// Messages of any endpoint that emits 'message' (data, isBinary) and 'close': a `ws` client,
// a node-lws client transport or server-side Connection.
//
// Layer 1 of test/support/: imports only wait.mjs.

import { DEFAULT_TIMEOUT, withTimeout } from './wait.mjs';

/**
 * The next `count` messages of `endpoint` in arrival order, each as `{ data, isBinary }` (text
 * as a string, binary as a Buffer); fails if it closes first or at the deadline.
 */
export function collectMessages(
  endpoint,
  count,
  ms = DEFAULT_TIMEOUT,
  label = `${count} messages`,
) {
  const got = [];
  return withTimeout(
    new Promise((resolve, reject) => {
      if (count === 0) return resolve(got);
      const onMessage = (data, isBinary) => {
        got.push(asMessage(data, isBinary));
        if (got.length === count) {
          cleanup();
          resolve(got);
        }
      };
      const onClose = (code, reason) => {
        cleanup();
        reject(
          new Error(`closed (${code} ${reason}) after ${got.length}/${count} messages: ${label}`),
        );
      };
      const cleanup = () => {
        endpoint.off('message', onMessage);
        endpoint.off('close', onClose);
      };
      endpoint.on('message', onMessage);
      endpoint.on('close', onClose);
    }),
    ms,
    label,
  ).catch((err) => {
    err.message += ` [received ${got.length}/${count}]`;
    throw err;
  });
}

function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * The next message `{ data, isBinary }` of `endpoint` (text as a string, binary as a Buffer);
 * fails if it closes first or at the deadline.
 */
export async function nextMessage(endpoint, ms = DEFAULT_TIMEOUT, label = 'message') {
  const [m] = await collectMessages(endpoint, 1, ms, label);
  return m;
}

/** One 'message' event as `{ data, isBinary }`: text as a string, binary as a Buffer. */
function asMessage(data, isBinary) {
  const buf = toBuffer(data);
  return { data: isBinary ? buf : buf.toString('utf8'), isBinary };
}
