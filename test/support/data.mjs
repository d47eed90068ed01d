// Test data: deterministic byte patterns and digests.
//
// Layer 0 of test/support/: imports nothing from the suite (the generator is the stress CLI's).

import crypto from 'node:crypto';
import random from '../../bin/stress/random.js';

export function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

/**
 * `length` deterministic pseudo-random bytes (xorshift32 seeded with `seed`, default 1): the
 * stress CLI's generator (bin/stress/random.js), the same in the browser and python tests.
 */
export const patternBytes = random.patternBytes;
