// ESM entry of node-lws/redis: the CommonJS build, loaded with require() so that both entry
// points share one module instance. (Not a static import: Node 20 reports a CommonJS module that
// throws while an ES module imports it — here, without the redis package — as uncaught even
// when the import() is caught.)
import { createRequire } from 'node:module';
import type * as T from './redis.js';

const redis: typeof T = createRequire(import.meta.url)('./redis.js');

export const { RedisAdapter, createRedisAdapter } = redis;
export type RedisAdapter = T.RedisAdapter;
export type { RedisAdapterEvents, RedisAdapterOptions, RedisAdapterStats } from './redis.js';
