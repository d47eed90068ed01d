// Debian's tinyproxy as the HTTP CONNECT proxy of the proxy tests: started in the foreground
// with its own config file on a free port below 32768, stopped afterwards. A missing tinyproxy
// fails with the line that installs it.
//
// Layer 2 of test/support/: imports wait.mjs and proc.mjs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnProcess } from './proc.mjs';

export const TINYPROXY = '/usr/bin/tinyproxy';

/**
 * Start tinyproxy. Options: `auth` `{ user, pass }` turns Basic proxy authentication on;
 * `connectPorts` lists the ports CONNECT may reach (tinyproxy's ConnectPort; empty: any);
 * `filter` lists host names it refuses (its Filter file, exact names). Resolves with
 * `{ port, url(withAuth?), connects(), log(), stop() }`: `connects()` counts the tunnels it
 * opened, from its log.
 */
export async function startTinyproxy({ auth, connectPorts = [], filter = [] } = {}) {
  if (!fs.existsSync(TINYPROXY)) {
    throw new Error(
      `${TINYPROXY} not found: install Debian's tinyproxy (apt-get install tinyproxy, or run bash scripts/bootstrap.sh)`,
    );
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-tinyproxy-'));
  let lastError = '';
  // A port below 32768 (outside the kernel's ephemeral range) chosen at random; another one if
  // something holds it.
  for (let attempt = 0; attempt < 8; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const lines = [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 30',
      'LogLevel Info',
      'MaxClients 100',
      'DisableViaHeader Yes',
    ];
    if (auth) lines.push(`BasicAuth ${auth.user} ${auth.pass}`);
    for (const p of connectPorts) lines.push(`ConnectPort ${p}`);
    if (filter.length) {
      const filterFile = path.join(dir, 'filter');
      fs.writeFileSync(
        filterFile,
        `${filter.map((h) => `^${h.replaceAll('.', '\\.')}$`).join('\n')}\n`,
      );
      lines.push(`Filter "${filterFile}"`, 'FilterType ere');
    }
    const conf = path.join(dir, 'tinyproxy.conf');
    fs.writeFileSync(conf, `${lines.join('\n')}\n`);
    const child = spawnProcess(TINYPROXY, ['-d', '-c', conf]);
    try {
      await child.line((l) => l.includes('Accepting connections'), 5000, 'tinyproxy listening');
    } catch (err) {
      lastError = `${err.message}\n${child.stdoutText}${child.stderrText}`;
      await child.stop();
      if (/bind|in use/i.test(child.stdoutText + child.stderrText)) continue; // port taken: another
      break;
    }
    return {
      port,
      /** The proxy URL, with `user:pass@` when asked to and auth is on. */
      url: (withAuth = true) =>
        withAuth && auth
          ? `http://${encodeURIComponent(auth.user)}:${encodeURIComponent(auth.pass)}@127.0.0.1:${port}`
          : `http://127.0.0.1:${port}`,
      connects: () => (child.stdoutText.match(/Established connection to host/g) ?? []).length,
      log: () => child.stdoutText + child.stderrText,
      stop: async () => {
        await child.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new Error(`tinyproxy did not start: ${lastError}`);
}
