'use strict';
// Client transports for node-lws-stress. Both give the interface of node-lws's
// own client (`connect(url, options) -> Promise<transport>`): `send(buf)`
// returning false past the high-water mark, 'message' (data, isBinary),
// 'drain', 'close' (code, reason), 'error', `close(code, reason)`,
// `terminate()`, `pause()`, `resume()`. Connection failures reject with an error carrying `code`.

const { EventEmitter } = require('node:events');

const HIGH_WATER_MARK = 1024 * 1024;

/** node-lws's own client, when this build has it. */
function lwsClient(lws) {
  if (typeof lws.connect !== 'function') return null;
  return { name: 'node-lws', connect: (url, options) => lws.connect(url, options) };
}

/** The `ws` package (a devDependency of node-lws: present in a checkout, not in an install). */
function wsClient() {
  let WebSocket;
  try {
    WebSocket = require('ws');
  } catch (err) {
    const e = new Error(`the 'ws' client needs the ws package (npm install ws): ${err.message}`);
    e.code = 'ERR_WS_MISSING';
    throw e;
  }
  return {
    name: 'ws',
    connect: (url, options = {}) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url, {
          perMessageDeflate: false,
          maxPayload: 256 * 1024 * 1024,
          handshakeTimeout: options.timeoutMs ?? 5000,
        });
        const onError = (err) => {
          cleanup();
          ws.on('error', () => {});
          ws.terminate();
          if (!err.code) err.code = /timed out/i.test(err.message) ? 'ETIMEDOUT' : 'ERR_WS';
          reject(err);
        };
        const onUnexpected = (_req, res) => {
          cleanup();
          ws.on('error', () => {});
          ws.terminate();
          res.resume();
          const err = new Error(`unexpected HTTP response ${res.statusCode}`);
          err.code = 'ERR_UNEXPECTED_RESPONSE';
          reject(err);
        };
        const onOpen = () => {
          cleanup();
          resolve(new WsTransport(ws));
        };
        const cleanup = () => {
          ws.off('error', onError);
          ws.off('unexpected-response', onUnexpected);
          ws.off('open', onOpen);
        };
        ws.on('error', onError);
        ws.on('unexpected-response', onUnexpected);
        ws.on('open', onOpen);
      }),
  };
}

class WsTransport extends EventEmitter {
  #ws;
  #needDrain = false;

  constructor(ws) {
    super();
    this.#ws = ws;
    ws.on('message', (data, isBinary) => this.emit('message', data, isBinary));
    ws.on('close', (code, reason) => this.emit('close', code, reason.toString(), true));
    ws.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    ws._socket?.on('drain', () => {
      if (this.#needDrain) {
        this.#needDrain = false;
        this.emit('drain');
      }
    });
  }

  get isOpen() {
    return this.#ws.readyState === 1;
  }

  get bufferedAmount() {
    return this.#ws.bufferedAmount;
  }

  /** Stops reading (ws pauses its socket); for --slow-clients. */
  pause() {
    this.#ws.pause();
  }

  resume() {
    this.#ws.resume();
  }

  send(data) {
    this.#ws.send(data, { binary: typeof data !== 'string' });
    if (this.#ws.bufferedAmount > HIGH_WATER_MARK) {
      this.#needDrain = true;
      return false;
    }
    return true;
  }

  close(code = 1000, reason = '') {
    this.#ws.close(code, reason);
  }

  terminate() {
    this.#ws.terminate();
  }
}

/**
 * The client called `name` ('node-lws' or 'ws'), or the default: node-lws when
 * its client exists, else ws. Throws a coded error when unavailable.
 */
function loadClient(name, lws) {
  if (name === 'ws') return wsClient();
  const own = lwsClient(lws);
  if (own) return own;
  if (name === 'node-lws') {
    const e = new Error('this build of node-lws has no client (connect) yet; use --client ws');
    e.code = 'ERR_CLIENT_UNAVAILABLE';
    throw e;
  }
  return wsClient();
}

module.exports = { loadClient };
