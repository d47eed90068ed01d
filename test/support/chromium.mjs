// Headless Debian Chromium, driven by the playwright-core devDependency (no browser download).
//
// Layer 2 of test/support/: imports only wait.mjs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withTimeout } from './wait.mjs';

/** Debian's Chromium, driven by the playwright-core devDependency (no browser download). */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Headless Chromium with a fresh profile directory, launched with the flags this
 * closed network needs. Returns { context, page, close() }; close() also removes
 * the profile. Fails with a clear message when Chromium or playwright-core is missing.
 */
export async function launchChromium({ viewport, ignoreHTTPSErrors = false } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} not found: install Debian's chromium package (apt-get install chromium, or run bash scripts/bootstrap.sh)`,
    );
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    throw new Error(
      `playwright-core is not installed (${err.message}); run \`npm install\` (it is a devDependency) or \`bash scripts/bootstrap.sh\``,
    );
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-chromium-'));
  let context;
  try {
    context = await withTimeout(
      chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        ignoreHTTPSErrors,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
        ...(viewport ? { viewport } : {}),
        timeout: 30000,
      }),
      35000,
      'chromium launch',
    );
  } catch (err) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw new Error(`could not launch ${CHROMIUM} headless: ${err.message}`);
  }
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    close: async () => {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Load `url` in a fresh headless Chromium and resolve with what the page's `window.__result`
 * promise resolves to (the page runs its own checks and reports them there). The browser is
 * closed afterwards, also on failure.
 */
export async function chromiumPageResult(url, { ignoreHTTPSErrors = false, ms = 15000 } = {}) {
  const browser = await launchChromium({ ignoreHTTPSErrors });
  try {
    await browser.page.goto(url, { timeout: ms });
    return await withTimeout(
      browser.page.evaluate(() => window.__result),
      ms,
      `window.__result of ${url}`,
    );
  } finally {
    await browser.close();
  }
}
