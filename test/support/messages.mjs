// Messages of any endpoint that emits 'message' (data, isBinary) and 'close': a `ws` client,
// a node-lws client transport or server-side Connection.
//
// Layer 1 of test/support/: imports only wait.mjs.

import { DEFAULT_TIMEOUT, withTimeout } from './wait.mjs';

/**
 * Resolve with the next message `{ data, isBinary }` a ws client receives;
 * text is returned as a string, binary as a Buffer.
 */
export function nextMessage(ws, ms = DEFAULT_TIMEOUT, label = 'ws client message') {
  return withTimeout(
    new Promise((resolve, reject) => {
      const onMessage = (data, isBinary) => {
        cleanup();
        resolve({ data: isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'), isBinary });
      };
      const onClose = (code, reason) => {
        cleanup();
        reject(new Error(`ws client closed (${code} ${reason}) while waiting for: ${label}`));
      };
      const cleanup = () => {
        ws.off('message', onMessage);
        ws.off('close', onClose);
      };
      ws.on('message', onMessage);
      ws.on('close', onClose);
    }),
    ms,
    label,
  );
}

/**
 * Collect the next `count` messages of a ws client (in arrival order), as
 * `{ data, isBinary }` like nextMessage().
 */
export function collectMessages(
  ws,
  count,
  ms = DEFAULT_TIMEOUT,
  label = `${count} ws client messages`,
) {
  const got = [];
  return withTimeout(
    new Promise((resolve, reject) => {
      if (count === 0) return resolve(got);
      const onMessage = (data, isBinary) => {
        got.push({ data: isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'), isBinary });
        if (got.length === count) {
          cleanup();
          resolve(got);
        }
      };
      const onClose = (code, reason) => {
        cleanup();
        reject(
          new Error(
            `ws client closed (${code} ${reason}) after ${got.length}/${count} messages: ${label}`,
          ),
        );
      };
      const cleanup = () => {
        ws.off('message', onMessage);
        ws.off('close', onClose);
      };
      ws.on('message', onMessage);
      ws.on('close', onClose);
    }),
    ms,
    `${label} (got ${got.length})`,
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
