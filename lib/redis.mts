// ESM entry of node-lws/redis: re-exports the CommonJS build (one module instance for both).
import type * as T from './redis.js';
import redis from './redis.js';

export const { RedisAdapter, createRedisAdapter } = redis;
export type RedisAdapter = T.RedisAdapter;
export type { RedisAdapterEvents, RedisAdapterOptions, RedisAdapterStats } from './redis.js';
