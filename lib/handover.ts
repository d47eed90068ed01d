// server.handleUpgrade(): an upgrade request that Node's HTTP server has parsed, handed over
// to a node-lws server. The request head is rebuilt from the IncomingMessage (method, url,
// rawHeaders) and fed, with the bytes read after it, to the same native handshake a socket
// accepted by listen() goes through, so every admission rule applies unchanged.
//
// Two ways to move the connection:
//  - a plain TCP socket: the native side dup()s its descriptor and Node's handle is destroyed
//    (which closes only Node's copy, without a shutdown): the connection then lives on the
//    service thread exactly like an accepted one;
//  - any other stream (a TLS socket of an https.Server, a Duplex of the application): it stays
//    in JavaScript, which pumps its bytes to native code (binding.wireInput) and writes what
//    native code sends back (WireOut events), acknowledging what the stream took
//    (binding.wireAck) so that the stream's backpressure reaches the native write queue.
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { codedError } from './errors';
import { binding, type ConnHandle, type NativeConnectError, WireCtl } from './native';
import { hasMethods } from './options';
import { type HandoverSink, runtime } from './runtime';

/** Set on a socket once it was handed over: a second handleUpgrade() of it is an error. */
const kHandedOver = Symbol('node-lws.handedOver');

/** An upgrade that did not become a connection. */
export interface UpgradeError extends Error {
  code: string;
  /** The HTTP status node-lws answered the request with (e.g. 404, 403, 503), if any. */
  status?: number;
}

/** The request head as the client sent it (header names and values exactly as received). */
export function requestHead(req: IncomingMessage): Buffer {
  let head = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  head += '\r\n';
  // Node's parser read the head as latin1: this gives the original bytes back.
  return Buffer.from(head, 'latin1');
}

interface TcpHandle {
  fd?: number;
  constructor?: { name?: string };
}

/** A plain TCP socket whose descriptor can move to the service thread as it is. */
function takeableFd(socket: Duplex): number {
  // A TLSSocket (`encrypted`: always true on one) keeps its TLS in Node.
  if (!(socket instanceof Socket) || (socket as { encrypted?: unknown }).encrypted === true)
    return -1;
  const handle = (socket as unknown as { _handle?: TcpHandle | null })._handle;
  if (handle?.constructor?.name !== 'TCP') return -1;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return -1;
  // Bytes Node still has to write would be lost (or overtaken) after the move.
  if (socket.writableLength > 0 || socket.connecting) return -1;
  return fd;
}

/** Bytes Node already read from the socket into its stream buffer, taken out of it. */
function drainReadable(socket: Duplex): Buffer[] {
  const parts: Buffer[] = [];
  while (socket.readableLength > 0) {
    const chunk = socket.read() as Buffer | string | null;
    if (chunk === null) break;
    parts.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
  }
  return parts;
}

export interface HandoverOwner {
  /** The handover ended before the connection opened (refused, timed out, reset). */
  _handoverEnded(h: Handover, err: UpgradeError): void;
}

export type HandoverPath = 'socket' | 'stream';

/** Checks the arguments of handleUpgrade(); throws TypeError / a coded Error. */
export function checkHandover(req: unknown, socket: unknown, head: unknown): void {
  const r = req as IncomingMessage | null;
  if (
    r === null ||
    typeof r !== 'object' ||
    typeof r.method !== 'string' ||
    typeof r.url !== 'string' ||
    !Array.isArray(r.rawHeaders)
  ) {
    throw argType('req', 'an http.IncomingMessage', req);
  }
  if (!hasMethods(socket, ['write', 'on', 'destroy'])) {
    throw argType('socket', 'a stream.Duplex (the socket of the request)', socket);
  }
  if (head !== undefined && !(head instanceof Uint8Array)) {
    throw argType('head', 'a Buffer', head);
  }
  if ((socket as Record<symbol, unknown>)[kHandedOver]) {
    throw codedError(
      'ERR_SOCKET_HANDED_OVER',
      'handleUpgrade() was called twice with the same socket: it belongs to node-lws already',
    );
  }
}

/** The socket cannot carry a WebSocket any more (destroyed, or the client already sent FIN). */
export function socketGone(socket: Duplex): boolean {
  return socket.destroyed || !socket.readable || !socket.writable;
}

export class Handover implements HandoverSink {
  readonly id: number;
  readonly handle: ConnHandle;
  readonly req: IncomingMessage;
  readonly socket: Duplex;
  readonly path: HandoverPath;
  readonly #owner: HandoverOwner;
  #opened = false;
  #ended = false;
  #registered = true;
  /** Pumped streams: bytes the stream took, to acknowledge at the end of this tick. */
  #ackable = 0;
  #ackScheduled = false;
  /** Pumped streams: bytes written while write() said "full", acknowledged at 'drain'. */
  #awaitingDrain = 0;
  #streamDone = false;
  /** Pumped streams: chunks read in this tick, not handed to native code yet. */
  #input: Buffer[] = [];

  /**
   * Hands the connection over (the arguments are checked already). Throws only when native
   * code cannot take it (out of memory, the context stopped).
   */
  constructor(
    owner: HandoverOwner,
    serverId: number,
    req: IncomingMessage,
    socket: Duplex,
    head: Uint8Array | undefined,
  ) {
    this.#owner = owner;
    this.req = req;
    this.socket = socket;
    (socket as unknown as Record<symbol, unknown>)[kHandedOver] = true;
    const parts = [requestHead(req)];
    if (head && head.length > 0) parts.push(Buffer.from(head.buffer, head.byteOffset, head.length));
    // Reading the address caches it on the socket: req.socket.remoteAddress keeps answering
    // after the handle is gone.
    const remoteAddress = (socket as Partial<Socket>).remoteAddress ?? '';
    const remotePort = (socket as Partial<Socket>).remotePort ?? 0;
    let adopted: { handle: ConnHandle; id: number } | undefined;
    const fd = takeableFd(socket);
    if (fd >= 0) {
      parts.push(...drainReadable(socket));
      try {
        adopted = binding.adopt(serverId, fd, Buffer.concat(parts), remoteAddress, remotePort);
      } catch (err) {
        // No descriptor left for the dup (EMFILE): the stream path needs none.
        if ((err as { syscall?: string }).syscall !== 'dup') throw err;
      }
    }
    if (adopted) {
      this.path = 'socket';
      // Closes Node's descriptor only: the connection lives on in the dup.
      socket.destroy();
    } else {
      this.path = 'stream';
      adopted = binding.adopt(serverId, -1, Buffer.concat(parts), remoteAddress, remotePort);
    }
    this.handle = adopted.handle;
    this.id = adopted.id;
    runtime.handovers.set(this.id, this);
    runtime.ref();
    if (this.path === 'stream') this.#pump();
  }

  /** The connection is open: a moved socket needs nothing more from here. */
  opened(): void {
    this.#opened = true;
    if (this.path === 'socket') this.#unregister();
  }

  #unregister(): void {
    if (!this.#registered) return;
    this.#registered = false;
    runtime.handovers.delete(this.id);
    runtime.unref();
  }

  // ---- the pumped stream ----------------------------------------------------------------

  #pump(): void {
    const s = this.socket as Duplex & Partial<Socket>;
    s.setTimeout?.(0);
    s.setNoDelay?.(true);
    s.on('data', this.#onData);
    s.on('end', this.#onEnd);
    s.on('close', this.#onEnd);
    s.on('error', this.#onError);
    s.on('drain', this.#onDrain);
    s.resume();
  }

  // The chunks of one read of the stream (a TLS socket emits a 'data' per 16 KiB record)
  // go to native code as one batch, at the end of the tick.
  #onData = (chunk: Buffer | string): void => {
    this.#input.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
    if (this.#input.length === 1) process.nextTick(this.#flushInput);
  };

  #flushInput = (): void => {
    const chunks = this.#input;
    if (chunks.length === 0) return;
    this.#input = [];
    binding.wireInput(this.handle, chunks.length === 1 ? chunks[0] : chunks);
  };

  #onEnd = (): void => {
    if (this.#streamDone) return;
    this.#streamDone = true;
    this.#flushInput();
    binding.wireInput(this.handle, null);
  };

  // An error on the stream (a reset) ends it; the connection reports the close.
  #onError = (): void => {
    this.#onEnd();
  };

  #onDrain = (): void => {
    const n = this.#awaitingDrain;
    this.#awaitingDrain = 0;
    if (n > 0) binding.wireAck(this.handle, n);
  };

  #ackLater(n: number): void {
    this.#ackable += n;
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    process.nextTick(() => {
      this.#ackScheduled = false;
      const bytes = this.#ackable;
      this.#ackable = 0;
      if (bytes > 0) binding.wireAck(this.handle, bytes);
    });
  }

  /** @internal */ _onWireOut(data: Buffer): void {
    const s = this.socket;
    if (s.destroyed || !s.writable) {
      this.#onEnd();
      return;
    }
    // Once write() said "full", everything written until 'drain' is acknowledged at 'drain'.
    const full = !s.write(data);
    if (full || this.#awaitingDrain > 0) this.#awaitingDrain += data.length;
    else this.#ackLater(data.length);
  }

  /** @internal */ _onWireCtl(op: number): void {
    const s = this.socket;
    switch (op) {
      case WireCtl.Pause:
        s.pause();
        return;
      case WireCtl.Resume:
        if (!s.destroyed) s.resume();
        return;
      case WireCtl.End:
        s.end();
        return;
      case WireCtl.Destroy:
        this.#streamDone = true;
        s.off('data', this.#onData);
        s.off('end', this.#onEnd);
        s.off('close', this.#onEnd);
        s.off('drain', this.#onDrain);
        // The 'error' listener stays: an error after this must not crash the process.
        s.destroy();
        // A connection that never opened still reports how it ended (HandoverEnd follows).
        if (this.#opened || this.#ended) this.#unregister();
        return;
    }
  }

  /** @internal */ _onHandoverEnd(detail: NativeConnectError): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.path === 'socket' || this.#streamDone) this.#unregister();
    const err = codedError(detail.code, detail.message) as UpgradeError;
    if (detail.status) err.status = detail.status;
    this.#owner._handoverEnded(this, err);
  }
}

function argType(name: string, expected: string, actual: unknown): TypeError {
  const err = new TypeError(
    `The "${name}" argument must be ${expected}. Received ${actual === null ? 'null' : typeof actual}`,
  ) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}
