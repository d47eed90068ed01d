// Listen+close cycle time, in process, for bench/run.mjs: one JSON line on stdout.
//   node-lws: `await listen({ host: '127.0.0.1', port: 0 })` then `await server.close()`
//   ws:       `new WebSocketServer({ host: '127.0.0.1', port: 0 })`, 'listening', then close(cb)
// Usage: node bench/cycle.mjs --impl lws|ws [--cycles N]   (N after 50 warm-up cycles)
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const impl = arg('--impl', 'lws');
const cycles = Number(arg('--cycles', 500));

let cycle;
if (impl === 'lws') {
  const { listen } = await import('../dist/index.mjs');
  cycle = async () => {
    const t0 = performance.now();
    const server = await listen({ host: '127.0.0.1', port: 0 });
    const t1 = performance.now();
    await server.close();
    return [t1 - t0, performance.now() - t1];
  };
} else if (impl === 'ws') {
  const { WebSocketServer } = await import('ws');
  cycle = async () => {
    const t0 = performance.now();
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    const t1 = performance.now();
    await new Promise((resolve) => wss.close(resolve));
    return [t1 - t0, performance.now() - t1];
  };
} else {
  throw new Error(`unknown --impl ${impl}`);
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
for (let i = 0; i < 50; i++) await cycle(); // warm-up (node-lws: creates the native context)
const total = [];
const lis = [];
const clo = [];
for (let i = 0; i < cycles; i++) {
  const [l, c] = await cycle();
  lis.push(l);
  clo.push(c);
  total.push(l + c);
}
console.log(
  JSON.stringify({
    impl,
    cycles,
    median_ms: q(total, 0.5),
    p99_ms: q(total, 0.99),
    listen_median_ms: q(lis, 0.5),
    close_median_ms: q(clo, 0.5),
  }),
);
