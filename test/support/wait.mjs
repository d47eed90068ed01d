// Waiting with a deadline. Nothing in the tests sleeps for a fixed time: every wait is on an
// event or a poll with a deadline, and a missed deadline is a failure (a rejected promise whose
// message names what was being waited for).
//
// Layer 0 of test/support/: imports nothing from the suite.

import { once } from 'node:events';

/** Default deadline for a single wait in the tests. */
export const DEFAULT_TIMEOUT = 5000;

/**
 * Resolve/reject like `promise`, but reject with a descriptive Error if it has
 * not settled within `ms` milliseconds.
 */
export function withTimeout(promise, ms = DEFAULT_TIMEOUT, label = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for: ${label}`));
    }, ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** `events.once` with a deadline. Resolves to the array of event arguments. */
export function onceEvent(emitter, event, ms = DEFAULT_TIMEOUT, label) {
  return withTimeout(once(emitter, event), ms, label ?? `'${event}' event`);
}

/**
 * Poll `predicate` (sync or async) until it returns a truthy value, and return
 * that value. Fails with `label` (and `describe()` output, if given) when the
 * deadline passes.
 */
export async function waitFor(
  predicate,
  { timeout = DEFAULT_TIMEOUT, interval = 5, label = 'condition', describe } = {},
) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() >= deadline) {
      const extra = describe ? ` (${describe()})` : '';
      throw new Error(`timed out after ${timeout} ms waiting for: ${label}${extra}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * Run `fn` and return the error it throws or the reason its promise rejects.
 * Fails if it neither throws nor rejects (within `ms`). A synchronous throw and
 * an asynchronous rejection are both accepted (listen() is async, but an
 * implementation may validate its arguments before creating the promise).
 */
export async function captureRejection(fn, ms = DEFAULT_TIMEOUT, label = 'rejection') {
  let p;
  try {
    p = fn();
  } catch (err) {
    return err;
  }
  let value;
  try {
    value = await withTimeout(p, ms, label);
  } catch (err) {
    return err;
  }
  // Clean up if it unexpectedly succeeded with a server.
  if (value && typeof value.close === 'function') {
    try {
      await value.close();
    } catch {
      /* ignore */
    }
  }
  throw new Error(`expected ${label}, but it resolved to ${describeValue(value)}`);
}

function describeValue(v) {
  if (v && typeof v === 'object')
    return `${v.constructor?.name ?? 'object'}${'port' in v ? ` (port ${v.port})` : ''}`;
  return String(v);
}

/**
 * Run `fn` and return the error it throws synchronously; fails with `label` if it does not
 * throw (the counterpart of captureRejection() for synchronous calls).
 */
export function thrownBy(fn, label = 'a throw') {
  let value;
  try {
    value = fn();
  } catch (err) {
    return err;
  }
  throw new Error(`expected ${label}, but it returned ${describeValue(value)}`);
}

/** Milliseconds since `t0` (a performance.now() value), rounded to 0.1 ms. */
export function msSince(t0) {
  return Math.round((performance.now() - t0) * 10) / 10;
}
