// Worker-thread side of test/workers.test.mjs (not a test file itself).
//
// Each worker imports node-lws, which starts the worker's own native context (its own lws
// context and service thread). The parent drives it with messages { id, cmd, ... } and gets
// { id, ok, ... } or { id, error } back; unsolicited { event, ... } messages report closes.
//
// Commands:
//   listen                       -> { port }: an echo server ("w:" + text, binary as is)
//   connect { port, payload }    -> { reply }: a node-lws client; round-trips payload, stays open
//   flood { ms }                 -> {}: every open client sends a message every `ms` (until exit)
//   stats                        -> { servers, clients, serverConns }
//   closeAll                     -> {}: closes every client and server gracefully
//   finish                       -> {}: closeAll, then closes parentPort so the worker ends
//   exit { code }                -> process.exit(code) inside the worker (no reply)
import { once } from 'node:events';
import { parentPort, workerData } from 'node:worker_threads';

const lws = await import(workerData.dist);

const servers = [];
const clients = [];
const serverConns = new Set();
let floodTimer = null;

function post(msg) {
  try {
    parentPort.postMessage(msg);
  } catch {}
}

function deadline(p, ms, label) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`worker: timed out after ${ms} ms: ${label}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

const handlers = {
  async listen() {
    const server = await lws.listen({ host: '127.0.0.1', port: 0 });
    server.on('connection', (conn) => {
      serverConns.add(conn);
      conn.on('error', () => {});
      conn.on('close', () => serverConns.delete(conn));
      conn.on('message', (data, isBinary) => {
        if (!conn.isOpen) return;
        conn.send(isBinary ? data : `w:${data}`, isBinary);
      });
    });
    servers.push(server);
    return { port: server.port };
  },

  async connect({ port, payload }) {
    const client = await lws.connect(`ws://127.0.0.1:${port}/from-worker`);
    client.on('error', () => {});
    clients.push(client);
    client.on('close', (code, reason, wasClean) => {
      const i = clients.indexOf(client);
      if (i >= 0) clients.splice(i, 1);
      post({ event: 'client-close', port, code, reason, wasClean });
    });
    const reply = once(client, 'message');
    client.send(payload);
    const [data] = await deadline(reply, 5000, 'echo reply in worker');
    return { reply: typeof data === 'string' ? data : Buffer.from(data).toString('hex') };
  },

  async flood({ ms = 1 }) {
    let n = 0;
    floodTimer = setInterval(() => {
      for (const c of clients) if (c.isOpen) c.send(`flood ${n++} ${'y'.repeat(n % 300)}`);
    }, ms);
    return {};
  },

  async stats() {
    return { servers: servers.length, clients: clients.length, serverConns: serverConns.size };
  },

  async closeAll() {
    if (floodTimer) clearInterval(floodTimer);
    const closing = clients.map((c) => (c.isOpen ? once(c, 'close') : null)).filter(Boolean);
    for (const c of clients) if (c.isOpen) c.close(1000, 'worker done');
    await deadline(Promise.all(closing), 5000, 'worker clients closed');
    await deadline(Promise.all(servers.map((s) => s.close())), 5000, 'worker servers closed');
    servers.length = 0;
    return {};
  },

  // closeAll, then let the worker end by itself (nothing of node-lws may keep it alive).
  async finish() {
    await handlers.closeAll();
    setImmediate(() => parentPort.close());
    return {};
  },

  exit({ code = 0 }) {
    process.exit(code);
  },
};

parentPort.on('message', async (msg) => {
  const fn = handlers[msg.cmd];
  if (!fn) {
    post({ id: msg.id, error: `unknown command ${msg.cmd}` });
    return;
  }
  try {
    const result = await fn(msg);
    post({ id: msg.id, ok: true, ...result });
  } catch (err) {
    post({ id: msg.id, error: String(err?.stack ?? err) });
  }
});

post({ event: 'ready' });
