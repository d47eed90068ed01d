// Process-wide settings of the native core (one per Node environment).
import { invalidArgType } from './errors';
import { binding } from './native';
import { optInt } from './options';
import { DEFAULT_TOTAL_SEND_LIMIT, DEFAULT_TOTAL_UNFINISHED_LIMIT, runtime } from './runtime';

export interface GlobalOptions {
  /**
   * Bound on the bytes of received events (messages, pings, connection requests) that
   * JavaScript has not consumed yet, over every connection of this thread (default 64 MiB).
   * Above it node-lws stops reading every socket and accepting new ones; it resumes at half.
   */
  totalReceiveLimit?: number;
  /**
   * Bound on the bytes held for incoming messages that are not complete yet (the reassembly
   * buffers, and compressed bytes waiting to be inflated), over every connection of this thread
   * (default 256 MiB, or twice the largest `maxPayload` of a server or client started, if that is
   * more). Past it the connection holding the most is closed with 1013 (Try Again Later) until
   * the rest fits: peers that each send most of a large message cannot make the process hold
   * `maxPayload` per connection. Set, it is kept as it is: keep it above the largest `maxPayload`.
   */
  totalUnfinishedLimit?: number;
  /**
   * Bound on the bytes held to send over every connection of this thread: copies of messages,
   * Buffers sent without a copy and published frames, each counted once however many
   * connections it is queued for (default 256 MiB, or twice the largest finite `maxBackpressure`
   * of a server or client started, if that is more). Past it, a message for a connection that
   * already holds at least its share (the limit divided by the open connections) and at least
   * its `highWaterMark` meets that connection's `backpressurePolicy`: dropped, or the connection
   * closed with 1008 after its queue is dropped. So an application that ignores `send()`'s
   * `false` cannot grow without bound when peers stop reading, and connections that keep up are
   * not touched. Set, it is kept as it is.
   */
  totalSendLimit?: number;
}

export const DEFAULT_TOTAL_RECEIVE_LIMIT = 64 * 1024 * 1024;

/** Changes process-wide settings; options left out keep their value. */
export function configure(options: GlobalOptions): void {
  if (options === null || typeof options !== 'object')
    throw invalidArgType('options', 'an object', options);
  const o = options as Record<string, unknown>;
  if (o.totalReceiveLimit !== undefined) {
    runtime.setReceiveLimit(
      optInt(o, 'totalReceiveLimit', DEFAULT_TOTAL_RECEIVE_LIMIT, 64 * 1024, 2 ** 45),
    );
  }
  if (o.totalUnfinishedLimit !== undefined) {
    runtime.setUnfinishedLimit(
      optInt(o, 'totalUnfinishedLimit', DEFAULT_TOTAL_UNFINISHED_LIMIT, 64 * 1024, 2 ** 45),
    );
  }
  if (o.totalSendLimit !== undefined) {
    runtime.setSendLimit(optInt(o, 'totalSendLimit', DEFAULT_TOTAL_SEND_LIMIT, 64 * 1024, 2 ** 45));
  }
}

export interface NativeMemory {
  /** Bytes of received events JavaScript has not consumed yet (bounded by totalReceiveLimit). */
  receivePending: number;
  /** Bytes held for incoming messages not complete yet (bounded by totalUnfinishedLimit). */
  unfinished: number;
  /**
   * Bytes held to send over every connection, each piece of storage counted once (bounded by
   * totalSendLimit).
   */
  sending: number;
  /** Bytes of free frame and message buffers kept for reuse. */
  pooled: number;
  /**
   * Server connections whose JavaScript object holds a handle to the native one: the open ones
   * (a closed one gives its handle back as soon as JavaScript hears that it closed).
   */
  handles: number;
  /**
   * Bytes of lent messages (lendMessages) kept for good because a listener let JavaScript take
   * their memory along (a byte stream's enqueue()) instead of copying what it kept.
   */
  lentKept: number;
}

/** What the native core holds now, beside what V8 reports. */
export function nativeMemory(): NativeMemory {
  return binding.memoryStats();
}
