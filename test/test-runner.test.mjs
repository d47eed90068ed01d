// The test runner itself (scripts/run-tests.mjs) on the files in test/fixtures/runner/, each of
// which passes, fails, skips, crashes, hangs or fails to load in its own way: the counts come
// from uvu's suite results (not from the printed text), a skipped test is never counted as
// passed, a crash, a load error, an exception in a hook or a timeout is a failure, and the last
// line is exactly `N passed, N failed`.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnProcess } from './support/proc.mjs';
import { exitWatchdog } from './support/suite.mjs';
import { withTimeout } from './support/wait.mjs';

const HANG_TIMEOUT_MS = 2000;

/** Run the runner on the fixtures (optionally only those matching `filters`). */
async function runRunner(filters = []) {
  const child = spawnProcess(process.execPath, ['scripts/run-tests.mjs', ...filters], {
    env: {
      ...process.env,
      RUN_TESTS_DIR: 'test/fixtures/runner',
      TEST_FILE_TIMEOUT_MS: String(HANG_TIMEOUT_MS),
      FORCE_COLOR: '1', // the counts must not depend on how uvu colours its output
    },
  });
  const { code } = await withTimeout(child.exited, 30000, 'the runner to finish');
  const lines = child.stdoutText.trimEnd().split('\n');
  const rows = {};
  for (const line of lines) {
    const m =
      /^test\/fixtures\/runner\/(\S+)\.test\.mjs\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+(\S+)(.*)$/.exec(
        line,
      );
    if (m)
      rows[m[1]] = {
        passed: Number(m[2]),
        failed: Number(m[3]),
        skipped: Number(m[4]),
        status: m[5],
        note: m[6].trim(),
      };
  }
  return { code, lines, rows, out: child.stdoutText };
}

const all = await runRunner();

test('every fixture gets a row, and the last line is exactly the total', () => {
  assert.equal(Object.keys(all.rows).sort(), [
    'after-throws',
    'before-throws',
    'crash',
    'empty',
    'fail',
    'hang',
    'load-error',
    'pass-skip',
    'tla',
  ]);
  const passed = Object.values(all.rows).reduce((n, r) => n + r.passed, 0);
  const failed = Object.values(all.rows).reduce((n, r) => n + r.failed, 0);
  assert.is(all.lines.at(-1), `${passed} passed, ${failed} failed`);
  assert.is(all.lines.at(-1), '6 passed, 9 failed');
  assert.is(all.code, 1, 'exit code 1 when anything failed');
});

test('passes, skips and .only: skipped tests are reported apart and never count as passed', () => {
  assert.equal(all.rows['pass-skip'], {
    passed: 3,
    failed: 0,
    skipped: 2,
    status: 'ok',
    note: '',
  });
  assert.match(all.out, /\n2 skipped \(not counted as passed\)\n/);
  assert.equal(all.rows.tla, { passed: 1, failed: 0, skipped: 0, status: 'ok', note: '' });
});

test('failed tests are counted per suite and listed by name', () => {
  assert.equal(all.rows.fail, { passed: 1, failed: 3, skipped: 0, status: 'FAIL', note: '' });
  assert.match(all.out, /fail\.test\.mjs: bad "quoted" name — one is not two/);
  assert.match(all.out, /fail\.test\.mjs: throws — boom/);
  assert.match(all.out, /fail\.test\.mjs: named > bad in suite — nope/);
});

test('a crash, a load error, a throwing hook and a hang are failures', () => {
  const r = all.rows;
  assert.is(r.crash.failed, 1, JSON.stringify(r.crash));
  assert.match(r.crash.note, /before its tests finished/);
  assert.is(r['load-error'].failed, 1);
  assert.match(r['load-error'].note, /loading failed: Error: missing peer/);
  assert.is(r['before-throws'].failed, 2);
  assert.match(r['before-throws'].note, /reported no failure/);
  assert.is(r['after-throws'].failed, 1);
  assert.match(r['after-throws'].note, /uvu stopped: Error: teardown failed/);
  assert.equal({ passed: r.hang.passed, failed: r.hang.failed }, { passed: 1, failed: 1 });
  assert.match(r.hang.note, new RegExp(`timed out after ${HANG_TIMEOUT_MS} ms although`));
  assert.equal(r.empty, {
    passed: 0,
    failed: 0,
    skipped: 0,
    status: 'EMPTY',
    note: '(ran no tests)',
  });
});

test('a filter that runs only passing files exits 0; one that matches nothing runs no test', async () => {
  const ok = await runRunner(['pass-skip', 'tla']);
  assert.is(ok.lines.at(-1), '4 passed, 0 failed');
  assert.is(ok.code, 0);
  const none = await runRunner(['no-such-file']);
  assert.is(none.lines.at(-1), '0 passed, 0 failed');
  assert.is(none.code, 1, 'no test ran: exit code 1');
});

test.after(exitWatchdog);
test.run();
