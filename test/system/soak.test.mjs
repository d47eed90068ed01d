// Short soak (the full one is `node scripts/soak.mjs`): 1,000 listen/close cycles with
// traffic and 200 client connect/disconnect cycles in this process, then the process's open
// fds and threads must be exactly back at their post-warm-up baseline and RSS must not have
// grown by more than a few MiB from the second quarter of the run to the last.
//
// Env: SOAK_CYCLES, SOAK_CLIENTS (defaults 1000 / 200), SOAK_RSS_MIB (default 16).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../../dist/index.mjs';
import { runSoak } from '../../scripts/soak.mjs';
import { exitWatchdog } from '../support/suite.mjs';

const CYCLES = Number(process.env.SOAK_CYCLES ?? 1000);
const CLIENTS = Number(process.env.SOAK_CLIENTS ?? 200);
const RSS_MIB = Number(process.env.SOAK_RSS_MIB ?? 16);
const MiB = 1024 * 1024;

test(`soak: ${CYCLES} listen/close cycles + ${CLIENTS} client cycles`, async () => {
  const r = await runSoak({ cycles: CYCLES, clients: CLIENTS, rssToleranceMiB: RSS_MIB, lib: lws });
  for (const p of r.phases) {
    process.stdout.write(
      `\n  [note] ${p.name}: ${p.cycles} cycles in ${p.seconds.toFixed(1)} s (${p.cyclesPerSecond.toFixed(0)}/s), ` +
        `RSS Q2 ${(p.rssQ2 / MiB).toFixed(1)} -> Q4 ${(p.rssQ4 / MiB).toFixed(1)} MiB, ` +
        `fds ${p.baselineFds}->${p.finalFds}, threads ${p.baselineThreads}->${p.finalThreads}\n`,
    );
  }
  assert.is(r.phases.length, (CYCLES > 0) + (CLIENTS > 0));
  for (const p of r.phases) {
    const ctx = p.fdDiff ? ` (baseline: ${p.fdDiff.baseline}; end: ${p.fdDiff.final})` : '';
    assert.is(p.finalFds, p.baselineFds, `${p.name}: fds back to baseline${ctx}`);
    assert.is(p.finalThreads, p.baselineThreads, `${p.name}: threads back to baseline`);
    assert.ok(
      p.rssGrowth < RSS_MIB * MiB,
      `${p.name}: RSS grew ${(p.rssGrowth / MiB).toFixed(1)} MiB (limit ${RSS_MIB} MiB)`,
    );
    assert.ok(p.ok, `${p.name}: ${p.problems.join('; ')}`);
  }
});

test.after(exitWatchdog);
test.run();
