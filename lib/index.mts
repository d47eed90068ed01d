// ESM entry: re-exports the CommonJS build so that `import` and `require`
// share one module instance (and one native context).
import type * as T from './index.js';
import lws from './index.js';

export const {
  ClientTransport,
  CloseEvent,
  Connection,
  Server,
  WebSocket,
  attach,
  configure,
  connect,
  createServer,
  nativeMemory,
  isValidCloseCode,
  listen,
} = lws;
export type ClientTransport = T.ClientTransport;
export type CloseEvent = T.CloseEvent;
export type Connection = T.Connection;
export type Server = T.Server;
export type WebSocket = T.WebSocket;
export type {
  AddressInfo,
  AttachOptions,
  BackpressurePolicy,
  BinaryType,
  BindRetryInfo,
  BindRetryOptions,
  ClientEvents,
  ConnectOptions,
  CreateServerOptions,
  GlobalOptions,
  HandleUpgradeCallback,
  HeartbeatOptions,
  ListenOptions,
  Logger,
  Message,
  NativeMemory,
  PerMessageDeflateOptions,
  ReadyState,
  ReconnectOptions,
  SystemError,
  Transport,
  TransportEvents,
  TransportStats,
  UpgradeError,
  UpgradeHeaders,
  UpgradeRequest,
  VerifyRequest,
  VerifyResult,
  WebSocketData,
} from './index.js';
