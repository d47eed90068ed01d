// Shared by bench/server-lws.mjs and bench/server-ws.mjs: argument parsing and the control
// channel to bench/run.mjs. The server prints one JSON line ({port, pid, ...}) on stdout once
// it listens; on standard input, a line "gc" runs a full GC (node --expose-gc) and answers
// "gc-done {heapUsed, external}"; standard input closing (the bench ended or died) or SIGTERM ends the process, and
// so does a safety timer, so a server never outlives its benchmark.
export function parseArgs(argv = process.argv.slice(2)) {
  const o = { port: 0, host: '127.0.0.1', reusePort: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port') o.port = Number(argv[++i]);
    else if (argv[i] === '--host') o.host = argv[++i];
    else if (argv[i] === '--reuse-port') o.reusePort = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return o;
}

export function serve(info, shutdown) {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ...info })}\n`);
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buf += chunk;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === 'gc') {
        globalThis.gc?.();
        const m = process.memoryUsage();
        process.stdout.write(
          `gc-done ${JSON.stringify({ heapUsed: m.heapUsed, external: m.external })}\n`,
        );
      }
      nl = buf.indexOf('\n');
    }
  });
  const quit = () => {
    Promise.resolve(shutdown?.()).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.stdin.on('end', quit);
  process.on('SIGTERM', quit);
  setTimeout(quit, 30 * 60 * 1000).unref();
}

export const MAX_PAYLOAD = 64 * 1024 * 1024;
