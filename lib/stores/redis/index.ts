/**
 * postage-ts/redis: an idempotency store in Redis for `deduplicate`, shared by
 * replicas. The client (node-redis, `redis` on npm) is an optional peer
 * dependency: the application makes and connects it, and this subpath imports
 * nothing of it. See docs/database.md.
 */
export { RedisIdempotencyStore, type RedisIdempotencyOptions, type RedisCommander } from './redis-store.js';
export type { IdempotencyStore, IdempotencyClaim, IdempotencyClaimOptions } from '../idempotency.js';
