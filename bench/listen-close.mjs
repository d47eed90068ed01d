// Listen/close latency: median and p99 of `await listen()` and `await server.close()`
// on port 0, with no clients, and with one connected ws client at close time.
// Usage: node bench/listen-close.mjs [cycles]
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { listen } from '../dist/index.mjs';

const cycles = Number(process.argv[2] ?? 500);

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p99: q(0.99) };
}

async function run(withClient) {
  const listenMs = [];
  const closeMs = [];
  for (let i = 0; i < cycles; i++) {
    let t = performance.now();
    const server = await listen({ host: '127.0.0.1', port: 0 });
    listenMs.push(performance.now() - t);
    let ws;
    if (withClient) {
      ws = new WebSocket(`ws://127.0.0.1:${server.port}/`);
      await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
    }
    t = performance.now();
    await server.close();
    closeMs.push(performance.now() - t);
    if (ws)
      await new Promise((resolve) =>
        ws.readyState === WebSocket.CLOSED ? resolve() : ws.once('close', resolve),
      );
  }
  return { listen: stats(listenMs), close: stats(closeMs) };
}

const fmt = (s) => `median ${s.median.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`;
await run(false); // warm-up: creates the native context and its service thread
const idle = await run(false);
const busy = await run(true);
console.log(`listen (no clients):    ${fmt(idle.listen)}`);
console.log(`close  (no clients):    ${fmt(idle.close)}`);
console.log(`close  (1 ws client):   ${fmt(busy.close)}`);
console.log(
  `listen+close (no clients) median: ${(idle.listen.median + idle.close.median).toFixed(3)} ms over ${cycles} cycles`,
);
