// ESM entry of node-lws/ws: re-exports the CommonJS build (one module instance, one native
// context): `import WebSocket, { WebSocketServer } from 'node-lws/ws'`.
import type * as T from './index.js';
import ws from './index.js';

const mod = ws as unknown as typeof T;
export const { WebSocket, WebSocketServer, Server } = mod;
export type WebSocket = T.WebSocket;
export type WebSocketServer = T.WebSocketServer;
export type Server = T.WebSocketServer;
export type {
  BinaryType,
  ClientOptions,
  Data,
  PerMessageDeflateOptions,
  RawData,
  ResolvedServerOptions,
  ServerOptions,
  VerifyClientCallbackAsync,
  VerifyClientCallbackSync,
  VerifyClientInfo,
  WebSocketServerEvents,
} from './index.js';
export default mod.WebSocket;
