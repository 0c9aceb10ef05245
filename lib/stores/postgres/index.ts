/**
 * postage-ts/postgres: the transactional outbox and inbox on PostgreSQL.
 * `pg` is an optional peer dependency: only this subpath needs it (it takes
 * the application's own `pg.Pool`, and imports nothing of pg itself).
 * See docs/database.md.
 */
export { PostgresStore, type PostgresStoreOptions, type PgPool, type PgClient } from './postgres-store.js';
export type * from '../public.js';
