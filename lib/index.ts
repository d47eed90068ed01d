// node-lws: WebSocket servers on libwebsockets, driven from a native service thread.
export {
  Connection,
  isValidCloseCode,
  type UpgradeRequest,
  type WebSocketData,
} from './connection';
export type { SystemError } from './errors';
export type { Logger } from './runtime';
export {
  type AddressInfo,
  type BindRetryInfo,
  type BindRetryOptions,
  type ListenOptions,
  listen,
  Server,
} from './server';
