// Bookkeeping of a uvu test file: per-test cleanups, the exit watchdog, notes in the output.
//
// Layer 1 of test/support/: imports only wait.mjs (and the CLI's exit watchdog).

import exitWatchdogs from '../../bin/stress/exit-watchdog.js';
import { withTimeout } from './wait.mjs';

const armExitWatchdog = exitWatchdogs.exitWatchdog;

/**
 * A list of cleanup functions run (last first) after each test of `suite`, each
 * with a deadline; a failing cleanup is reported, not thrown.
 */
export function cleanupsAfterEach(suite, ms = 5000) {
  const cleanups = [];
  suite.after.each(async () => {
    while (cleanups.length) {
      const fn = cleanups.pop();
      try {
        await withTimeout(fn(), ms, 'cleanup');
      } catch (err) {
        console.error(`cleanup failed: ${err.message}`);
      }
    }
  });
  return cleanups;
}

/**
 * Fail the test process if it is still alive `ms` after the test run ended:
 * a library that leaves a ref'd handle behind keeps processes alive. Call as
 * `test.after(exitWatchdog)` (registered on the last suite of a file).
 */
export function exitWatchdog(ms) {
  if (typeof ms !== 'number') ms = 5000; // uvu passes its state object to hooks
  armExitWatchdog(
    ms,
    (handles) =>
      `\nFAIL: the test process did not exit by itself ${ms} ms after its tests finished; active handles: [${handles}]\n`,
  );
}

/** Print a line that stands out in the uvu output. */
export function note(msg) {
  process.stdout.write(`\n  [note] ${msg}\n`);
}
