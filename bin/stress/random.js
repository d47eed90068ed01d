'use strict';
// Deterministic randomness: a seeded number generator and seeded byte patterns.
//
// Shared by the stress CLI (port choice, frame payloads) and the test suite (the network fuzz
// test, test data), so that a seed names the same sequence everywhere.

/** mulberry32: a small seeded PRNG; returns a function giving numbers in [0, 1). */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `length` deterministic pseudo-random bytes (xorshift32 seeded with `seed`): the same on every
 * run and in every language that implements the same generator (see the browser and python
 * tests).
 */
function patternBytes(length, seed = 1) {
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

module.exports = { mulberry32, patternBytes };
