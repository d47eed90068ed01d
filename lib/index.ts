// node-lws: WebSocket servers and clients on libwebsockets, driven from a native service thread.
export type { Adapter, AdapterError, AdapterSink, AdapterStats } from './adapter';
export {
  type ClientEvents,
  type ClientTlsOptions,
  ClientTransport,
  type ConnectOptions,
  connect,
  type ReconnectOptions,
  type UpgradeResponse,
} from './client';
export { configure, type GlobalOptions, type NativeMemory, nativeMemory } from './configure';
export { Connection, type PeerTls, type UpgradeRequest } from './connection';
export type { SystemError } from './errors';
export type { UpgradeError } from './handover';
export type { HeartbeatOptions, PerMessageDeflateOptions, ResponseHeaders } from './options';
export type { Logger } from './runtime';
export {
  type AddressInfo,
  type AttachOptions,
  attach,
  type BindRetryInfo,
  type BindRetryOptions,
  type CreateServerOptions,
  createServer,
  type HandleUpgradeCallback,
  type ListenOptions,
  listen,
  Server,
  type ServerTlsOptions,
  type TlsCertificate,
  type VerifyRequest,
  type VerifyResult,
} from './server';
export {
  type BackpressurePolicy,
  isValidCloseCode,
  type Message,
  type ReadyState,
  type Transport,
  type TransportEvents,
  type TransportStats,
  type WebSocketData,
} from './transport';
export { type BinaryType, CloseEvent, WebSocket, type WebSocketInit } from './websocket';
