// socket.io 4 server for bench/run.mjs (the cross-process fan-out rows): prints {"pid","port",...}
// once listening. Usage: node bench/server-sio.mjs --mode fanout [--port P] [--host H]
//   [--redis URL [--redis-subscribers N]]
// (see bench/server-common.mjs). WebSocket transport only (the load client connects to
// /socket.io/?EIO=4&transport=websocket&role=sub|pub, see bench/loadgen.c --proto sio).
// Subscribers join the room TOPIC and get their "hello" event echoed; each "pub" event of the
// publisher goes to the room with io.to(TOPIC).emit('m', data) — to the other server processes
// too through @socket.io/redis-adapter when --redis is given.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { MAX_PAYLOAD, parseArgs, serve, TOPIC } from './server-common.mjs';
import { redisSubscribers } from './server-redis.mjs';

const o = parseArgs();
if (o.mode !== 'fanout') throw new Error('the socket.io bench server only does --mode fanout');
const http = createServer();
const io = new Server(http, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: MAX_PAYLOAD,
  // No Engine.IO pings during a measurement (the load client answers them, but they are not
  // what is measured).
  pingInterval: 600_000,
  pingTimeout: 600_000,
});
let subscribed = Promise.resolve();
const clients = [];
if (o.redis) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url: o.redis });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  clients.push(pub, sub);
  io.adapter(createAdapter(pub, sub));
  // Every server process subscribes its request channel with the room channels.
  subscribed = redisSubscribers(o.redis, 'socket.io-request#/#', o.redisSubscribers);
}
io.on('connection', (socket) => {
  if (socket.handshake.query.role === 'pub') {
    socket.on('pub', (data) => io.to(TOPIC).emit('m', data));
    return;
  }
  socket.join(TOPIC);
  socket.on('hello', (data) => subscribed.then(() => socket.emit('hello', data)));
});
http.listen(o.port, o.host, () =>
  serve(
    {
      port: http.address().port,
      impl: 'socket.io',
      mode: o.mode,
      fanout: o.redis ? 'io.to(room).emit + @socket.io/redis-adapter' : 'io.to(room).emit',
    },
    async () => {
      await new Promise((resolve) => io.close(() => resolve()));
      await Promise.all(clients.map((c) => c.disconnect().catch(() => {})));
    },
  ),
);
