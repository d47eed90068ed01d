// node-lws/ws: the `ws` package's API on node-lws. CommonJS shape as ws has it: the module is
// the WebSocket class, with WebSocketServer (also as Server) and WebSocket on it, so that both
// `const WebSocket = require('node-lws/ws')` and `const { WebSocketServer } = require(...)` work.
import { WebSocketServer } from './server';
import { WebSocket } from './websocket';

export {
  type ResolvedServerOptions,
  type ServerOptions,
  type VerifyClientCallbackAsync,
  type VerifyClientCallbackSync,
  type VerifyClientInfo,
  WebSocketServer,
  WebSocketServer as Server,
  type WebSocketServerEvents,
} from './server';
export {
  type BinaryType,
  type ClientOptions,
  type Data,
  type RawData,
  WebSocket,
  type WsPerMessageDeflateOptions as PerMessageDeflateOptions,
} from './websocket';
export default WebSocket;

Object.assign(WebSocket, {
  WebSocket,
  WebSocketServer,
  Server: WebSocketServer,
  default: WebSocket,
});
module.exports = WebSocket;
