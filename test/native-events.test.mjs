// The event numbers of the batches native code sends (native/batch.h) and the ones
// lib/native.ts dispatches on (Ev) must be the same table.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const require = createRequire(import.meta.url);
const { binding, Ev } = require('../dist/native.js');

test('native event numbers and lib/native.ts Ev agree, name for name', () => {
  const native = binding.eventTypes();
  assert.equal(
    Object.entries(native).sort((a, b) => a[1] - b[1]),
    Object.entries(Ev).sort((a, b) => a[1] - b[1]),
    'native/batch.h kEventNames vs lib/native.ts Ev',
  );
  const numbers = Object.values(Ev);
  assert.is(new Set(numbers).size, numbers.length, 'no number used twice');
});

test.run();
