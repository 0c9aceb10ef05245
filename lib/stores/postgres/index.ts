/**
 * postage-ts/postgres: the transactional outbox and inbox on PostgreSQL.
 * `pg` is an optional peer dependency: only this subpath needs it (it takes
 * the application's own `pg.Pool`, and imports nothing of pg itself).
 * See docs/database.md.
 */
export { PostgresStore, type PostgresStoreOptions, type PgPool, type PgClient } from './postgres-store.js';
export type {
  MessageStore,
  StoreClient,
  StoreResult,
  StoreRow,
  StoreTransaction,
  OutboxMessage,
  OutboxTarget,
  StoredOutboxMessage,
  OutboxBacklog,
  SweepVerdict,
} from '../store.js';
export type { OutboxSettings } from '../outbox-relay.js';
