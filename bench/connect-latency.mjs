// Client connect latency (TCP + upgrade) to a local node-lws server, and the
// time to an ECONNREFUSED rejection. Usage: node bench/connect-latency.mjs [n]
import net from 'node:net';
import { connect, listen } from '../dist/index.mjs';

const n = Number(process.argv[2] ?? 500);
const q = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];

const server = await listen({ host: '127.0.0.1', port: 0 });
const open = [];
for (let i = 0; i < n; i++) {
  const t = performance.now();
  const c = await connect(`ws://127.0.0.1:${server.port}/`);
  open.push(performance.now() - t);
  c.terminate();
}
open.sort((a, b) => a - b);

const probe = net.createServer();
await new Promise((r) => probe.listen(0, '127.0.0.1', r));
const port = probe.address().port;
await new Promise((r) => probe.close(r));
const refused = [];
for (let i = 0; i < Math.min(n, 200); i++) {
  const t = performance.now();
  try {
    await connect(`ws://127.0.0.1:${port}/`);
  } catch (err) {
    if (err.code !== 'ECONNREFUSED') throw err;
  }
  refused.push(performance.now() - t);
}
refused.sort((a, b) => a - b);
console.log(
  `connect (TCP + upgrade): median ${q(open, 0.5).toFixed(3)} ms, p99 ${q(open, 0.99).toFixed(3)} ms over ${n}`,
);
console.log(
  `ECONNREFUSED: median ${q(refused, 0.5).toFixed(3)} ms, max ${refused[refused.length - 1].toFixed(3)} ms over ${refused.length}`,
);
await server.close();
