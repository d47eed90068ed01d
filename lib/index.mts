// ESM entry: re-exports the CommonJS build so that `import` and `require`
// share one module instance (and one native context).
import type * as T from './index.js';
import lws from './index.js';

export const { Connection, Server, isValidCloseCode, listen } = lws;
export type Connection = T.Connection;
export type Server = T.Server;
export type {
  AddressInfo,
  BindRetryInfo,
  BindRetryOptions,
  ListenOptions,
  Logger,
  SystemError,
  UpgradeRequest,
  WebSocketData,
} from './index.js';
