'use strict';
// The last check of a process that should end by itself: if it is still alive a while after its
// work is done, something (a library's handle) still holds the event loop.
//
// Shared by the stress CLI (after a run) and the test suite (after a test file).

/**
 * After `ms`, unless the process has exited by then, write `message(handles)` to stderr
 * (`handles`: the names of the still-active handles, or '?') and exit with 1. The timer itself
 * does not hold the event loop.
 */
function exitWatchdog(ms, message) {
  const t = setTimeout(() => {
    const handles =
      typeof process._getActiveHandles === 'function'
        ? process
            ._getActiveHandles()
            .map((h) => h?.constructor?.name ?? typeof h)
            .join(', ')
        : '?';
    process.stderr.write(message(handles));
    process.exit(1);
  }, ms);
  t.unref();
}

module.exports = { exitWatchdog };
