// Process-wide settings of the native core (one per Node environment).
import { invalidArgType } from './errors';
import { binding } from './native';
import { optInt } from './options';
import { runtime } from './runtime';

export interface GlobalOptions {
  /**
   * Bound on the bytes of received events (messages, pings, connection requests) that
   * JavaScript has not consumed yet, over every connection of this thread (default 64 MiB).
   * Above it node-lws stops reading every socket and accepting new ones; it resumes at half.
   */
  totalReceiveLimit?: number;
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
}

export interface NativeMemory {
  /** Bytes of received events JavaScript has not consumed yet (bounded by totalReceiveLimit). */
  receivePending: number;
  /** Bytes of free frame and message buffers kept for reuse. */
  pooled: number;
  /**
   * Server connections whose JavaScript object holds a handle to the native one: the open ones
   * (a closed one gives its handle back as soon as JavaScript hears that it closed).
   */
  handles: number;
}

/** What the native core holds now, beside what V8 reports. */
export function nativeMemory(): NativeMemory {
  return binding.memoryStats();
}
