// native/timers.{h,cc}: the service thread's timer heap, checked on its own.
//
// test/native/timers-check.cc is compiled with native/timers.cc (g++, AddressSanitizer and
// UndefinedBehaviorSanitizer) and run: a seeded random sequence of schedules, reschedules,
// cancels, owner destructions and RunDue() calls against a reference model (size, earliest
// deadline, which timers run and in what order), and callbacks that reschedule themselves,
// cancel another timer or delete their owner.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { withNativeCheck } from './support/native-check.mjs';

const SEED = Number(process.env.TIMERS_SEED ?? Math.floor(Math.random() * 2 ** 31)) >>> 0;

test(`timer heap against a reference model (seed ${SEED})`, async () => {
  await withNativeCheck('timers-check', ['native/timers.cc'], async (exec) => {
    const r = await exec([String(SEED), '60000'], 60000);
    assert.is(r.code, 0, `timers-check (TIMERS_SEED=${SEED}) failed: ${r.stderr}${r.stdout}`);
    assert.match(r.stdout, /^ok randomized: seed \d+, 60000 operations, \d+ timers ran$/m);
    assert.match(r.stdout, /^ok reentrancy: abA$/m);
    assert.match(r.stdout, /^ok owner deleted in its callback$/m);
    assert.match(r.stdout, /^ok move between heaps, heap destructor$/m);
    assert.not.match(r.stderr, /runtime error|AddressSanitizer/);
  });
});

test.run();
