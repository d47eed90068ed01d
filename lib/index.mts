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
  Adapter,
  AdapterError,
  AdapterSink,
  AdapterStats,
  AddressInfo,
  AttachOptions,
  BackpressurePolicy,
  BinaryType,
  BindRetryInfo,
  BindRetryOptions,
  ClientEvents,
  ClientTlsOptions,
  ConnectOptions,
  CreateServerOptions,
  GlobalOptions,
  HandleUpgradeCallback,
  HeartbeatOptions,
  ListenOptions,
  Logger,
  Message,
  NativeMemory,
  PeerTls,
  PerMessageDeflateOptions,
  ReadyState,
  ReconnectOptions,
  ResponseHeaders,
  ServerTlsOptions,
  SystemError,
  TlsCertificate,
  Transport,
  TransportEvents,
  TransportStats,
  UpgradeError,
  UpgradeRequest,
  UpgradeResponse,
  VerifyRequest,
  VerifyResult,
  WebSocketData,
  WebSocketInit,
} from './index.js';
