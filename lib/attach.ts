// attach(): one 'upgrade' listener per Node HTTP server, routing upgrade requests by path to
// the node-lws servers attached to it. A request none of them takes stays with the HTTP
// server: another 'upgrade' listener may take it, and when there is none it goes to the
// 'request' handlers as an ordinary request (as Node itself does when nothing listens for
// 'upgrade'), so the application answers it (Express / Fastify: 404 for an unknown path).
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { nodeHttp } from './builtins';
import type { Server } from './server';

interface Route {
  server: Server;
  /** undefined: every path no other route claims. */
  path: string | undefined;
}

class UpgradeRouter {
  readonly routes: Route[] = [];

  constructor(readonly http: HttpServer) {}

  readonly listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    const route =
      this.routes.find((r) => r.path === pathname) ?? this.routes.find((r) => r.path === undefined);
    if (route) {
      route.server.handleUpgrade(req, socket, head);
      return;
    }
    // Another 'upgrade' listener may want it; else the application answers it.
    if (this.http.listenerCount('upgrade') > 1) return;
    answerAsRequest(this.http, req, socket);
  };
}

const routers = new WeakMap<HttpServer, UpgradeRouter>();

export function attachRouter(http: HttpServer, server: Server, path: string | undefined): void {
  let router = routers.get(http);
  if (!router) {
    router = new UpgradeRouter(http);
    routers.set(http, router);
    http.on('upgrade', router.listener);
  }
  router.routes.push({ server, path });
}

export function detachRouter(http: HttpServer, server: Server): void {
  const router = routers.get(http);
  if (!router) return;
  const i = router.routes.findIndex((r) => r.server === server);
  if (i !== -1) router.routes.splice(i, 1);
  if (router.routes.length === 0) {
    http.off('upgrade', router.listener);
    routers.delete(http);
  }
}

/** Hands an upgrade request nobody takes to the HTTP server's 'request' handlers. */
function answerAsRequest(http: HttpServer, req: IncomingMessage, socket: Duplex): void {
  socket.on('error', () => socket.destroy());
  if (http.listenerCount('request') === 0) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    socket.once('finish', () => socket.destroy());
    return;
  }
  const res = new (nodeHttp().ServerResponse)(req);
  res.shouldKeepAlive = false; // the socket carries nothing after this response
  res.assignSocket(socket as unknown as Parameters<ServerResponse['assignSocket']>[0]);
  res.once('finish', () => {
    res.detachSocket(socket as unknown as Parameters<ServerResponse['detachSocket']>[0]);
    socket.end();
    socket.once('finish', () => socket.destroy());
  });
  http.emit('request', req, res);
}
