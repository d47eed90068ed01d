// Test data: deterministic byte patterns and digests.
//
// Layer 0 of test/support/: imports nothing from the suite.

import crypto from 'node:crypto';

export function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

/**
 * `length` deterministic pseudo-random bytes (xorshift32 seeded with `seed`):
 * the same on every run and in every language that implements the same
 * generator (see the browser and python tests).
 */
export function patternBytes(length, seed = 1) {
  const words = Math.ceil(length / 4);
  const u32 = new Uint32Array(words);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    u32[i] = x;
  }
  return Buffer.from(u32.buffer, 0, length);
}
