/**
 * The real PostgreSQL for the store specs: POSTAGE_TEST_PG_URL (default the
 * machine's, trust auth, database `test`), a schema of the spec's own made
 * and dropped, and waiting on conditions the database gives no event for.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { until as waitUntil } from '../support/wait.js';

export const PG_URL = process.env.POSTAGE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A pool on the spec database; fails at once, with what to do, when PostgreSQL does not answer. */
export async function pgPool(max = 10): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: PG_URL, max, connectionTimeoutMillis: 5000 });
  pool.on('error', () => undefined);
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new Error(
      `PostgreSQL does not answer at ${PG_URL} (${(err as Error).message}): ` +
        'start it (DEVELOPERS.md) or set POSTAGE_TEST_PG_URL',
    );
  }
  return pool;
}

/** A schema name of the spec's own. */
export function uniqueSchema(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

export async function dropSchema(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** Polls `check` until it holds; fails with `what` at the deadline (the database has no event for it). */
export async function until(check: () => Promise<boolean> | boolean, what: string, ms = 15_000): Promise<void> {
  await waitUntil(check, { message: what, timeout: ms, every: 25 });
}
