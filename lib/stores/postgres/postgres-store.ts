import { StoreError } from '../../errors.js';
import { componentLogger } from '../../log.js';
import {
  checkOutboxSettings,
  OutboxRelay,
  type OutboxSettings,
  publishBatch,
  type RelayStep,
} from '../outbox-relay.js';
import type {
  MessageStore,
  OutboxBacklog,
  OutboxMessage,
  OutboxTarget,
  StoreClient,
  StoredOutboxMessage,
  StoreTransaction,
  SweepVerdict,
} from '../store.js';
import { runTransaction } from '../transaction.js';
import { migrations, sql, type Tables, tables } from './sql.js';

/** A connection of a `pg.Pool`, as `PostgresStore` uses it. */
export interface PgClient extends StoreClient {
  release(err?: Error | boolean): void;
}

/** A `pg.Pool`, as `PostgresStore` uses it (the application's own: the store never ends it). */
export interface PgPool {
  connect(): Promise<PgClient>;
  /**
   * pg's pool options: `max` is checked against the processors' `concurrency`; without a
   * `connectionTimeoutMillis` the store waits 10 s at most for a connection.
   */
  readonly options?: { readonly max?: number; readonly connectionTimeoutMillis?: number };
}

export interface PostgresStoreOptions extends OutboxSettings {
  /** The application's `pg.Pool`. Never ended by the store. */
  pool: PgPool;
  /** The PostgreSQL schema of the tables. @default 'public' */
  schema?: string;
  /** What the tables' names start with: `PREFIXoutbox`, `PREFIXinbox`. @default 'postage_' */
  prefix?: string;
  /** Transactions' isolation level. @default 'read committed' */
  isolation?: 'read committed' | 'repeatable read' | 'serializable';
  /**
   * Create the tables on first use when missing. False: call `migrate()`
   * yourself (or run docs/database.md's SQL). @default true
   */
  autoMigrate?: boolean;
  /** @internal */
  onRelay?: (step: RelayStep, keys: readonly string[]) => void | Promise<void>;
}

/**
 * The transactional outbox and inbox on PostgreSQL, over the application's
 * own `pg.Pool`: give it to a processor as `store`, and each delivery runs in
 * one transaction with the handler's writes, its inbox row and its sends;
 * `store.transaction()` does the same for code outside handlers.
 *
 * @example
 * const store = new PostgresStore({ pool: new pg.Pool({ connectionString }) });
 * class Orders extends MessageProcessor {
 *   constructor() { super({ eqk, store }); }
 *   @MessageHandler('command', 'place')
 *   async place(content) {
 *     await currentDelivery()!.db!.query('INSERT INTO orders (item) VALUES ($1)', [content.parameters.item]);
 *     await events.message_order_placed({ item: content.parameters.item }); // written to the outbox
 *   }
 * }
 */
export class PostgresStore implements MessageStore {
  readonly pool: PgPool;
  readonly settings: OutboxSettings;
  /** @internal */
  readonly onRelay: PostgresStoreOptions['onRelay'];
  readonly #t: Tables;
  readonly #begin: string;
  readonly #autoMigrate: boolean;
  #migrated: Promise<void> | undefined;
  #relay: OutboxRelay | undefined;

  constructor(options: PostgresStoreOptions) {
    const {
      pool,
      schema = 'public',
      prefix = 'postage_',
      isolation,
      autoMigrate = true,
      onRelay,
      ...settings
    } = options ?? ({} as PostgresStoreOptions);
    if (!pool || typeof pool.connect !== 'function')
      throw new TypeError('PostgresStore needs { pool }: a pg.Pool (new pg.Pool({ connectionString }))');
    this.pool = pool;
    this.#t = tables(schema, prefix);
    this.#begin = isolation ? `BEGIN ISOLATION LEVEL ${isolationOf(isolation)}` : 'BEGIN';
    this.#autoMigrate = autoMigrate;
    this.onRelay = onRelay;
    checkOutboxSettings(settings);
    this.settings = settings;
  }

  /** Whether the tables are made on first use (`autoMigrate`): a processor's `ready()` migrates only then. */
  get migratesOnUse(): boolean {
    return this.#autoMigrate;
  }

  /** Connections the pool opens at most (pg's default: 10). */
  get capacity(): number {
    return this.pool.options?.max ?? 10;
  }

  /**
   * Creates the tables (and the schema's version table) where missing and
   * applies the migrations they lack, under an advisory lock: replicas that
   * start at once wait for each other. Run once per process on first use.
   */
  migrate(): Promise<void> {
    this.#migrated ??= this.#migrate().catch((err: unknown) => {
      this.#migrated = undefined;
      throw err;
    });
    return this.#migrated;
  }

  async #migrate(): Promise<void> {
    const t = this.#t;
    const c = await this.#connect();
    try {
      await c.query('BEGIN');
      await c.query(sql.lock, [t.lockKey]);
      const all = migrations(t);
      // Tables at the current version need nothing but this read: a role that may only use them (the tables a DBA
      // made with docs/database.md's SQL) migrates too. CREATE … IF NOT EXISTS would not do: PostgreSQL checks the
      // privilege to create before it looks for the object.
      const { rows: found } = await c.query<{ version: boolean; outbox: boolean; inbox: boolean }>(sql.present, [
        t.version,
        t.outbox,
        t.inbox,
      ]);
      let at = 0;
      let recorded = 0;
      if (found[0]?.version) {
        const { rows } = await c.query<{ version: number | null }>(sql.version(t));
        at = recorded = rows[0]?.version ?? 0;
        // Tables dropped by hand under a version that says they exist: made again (the migrations are idempotent).
        if (!found[0].outbox || !found[0].inbox) at = 0;
      } else {
        // Stores with other prefixes may make the same schema at this moment: they share this lock for it (two
        // CREATE SCHEMA IF NOT EXISTS at once fail one of them on pg_namespace's unique index).
        await c.query(sql.lock, [t.schemaLockKey]);
        const { rows: schema } = await c.query<{ present: boolean }>(sql.schemaPresent, [t.schemaName]);
        if (!schema[0]?.present) await c.query(`CREATE SCHEMA IF NOT EXISTS ${t.schema}`);
        await c.query(sql.versionTable(t));
      }
      for (let v = at + 1; v <= all.length; v++) {
        await c.query(all[v - 1]);
        if (v > recorded) await c.query(sql.setVersion(t), [v]);
      }
      await c.query('COMMIT');
      c.release();
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      c.release(err as Error);
      throw err;
    }
  }

  /**
   * `err`, after noting that one of the store's tables was missing (dropped while the process ran): the next use
   * migrates again, so that with `autoMigrate` the store makes them anew instead of failing until a restart.
   */
  #missing(err: unknown): unknown {
    if ((err as { code?: unknown } | null)?.code === UNDEFINED_TABLE) this.#migrated = undefined;
    return err;
  }

  async #connect(): Promise<PgClient> {
    const pending = this.pool.connect();
    let timer: NodeJS.Timeout | undefined;
    try {
      // A pool with no wait limit of its own (pg's default) waits for a free connection for ever: a run (whose time
      // limit starts after its BEGIN), and a close() behind it, would hang in silence while the application holds the
      // connections.
      if (this.pool.options?.connectionTimeoutMillis) return await pending;
      return await Promise.race([
        pending,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new PoolWait()), POOL_WAIT_MS);
        }),
      ]);
    } catch (err) {
      if (err instanceof PoolWait) {
        // The connection that comes free later goes straight back.
        pending.then(
          (c) => c.release(),
          () => undefined,
        );
        throw new StoreError(
          `no connection of the store's pool came free within ${POOL_WAIT_MS} ms (it opens at most ` +
            `${this.capacity}): something else holds them, a client the application did not release, or its own ` +
            "work on the same pool. Release every client, raise the pool's max, or give the store a pool of its own " +
            "(a pool's connectionTimeoutMillis sets this wait)",
          'unavailable',
        );
      }
      throw new StoreError(
        `PostgreSQL did not answer (${(err as Error)?.message ?? String(err)}): the store's pool cannot connect`,
        'unavailable',
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** A connection in a transaction; the tables made first if they are missing. */
  async #open(): Promise<PgClient> {
    if (this.#autoMigrate) await this.migrate();
    const c = await this.#connect();
    try {
      await c.query(this.#begin);
    } catch (err) {
      c.release(err as Error);
      throw err;
    }
    return c;
  }

  async begin(): Promise<StoreTransaction> {
    const c = await this.#open();
    const t = this.#t;
    let open = true;
    const end = async (statement: string | undefined, discard = false): Promise<void> => {
      if (!open) return;
      open = false;
      if (discard || statement === undefined) {
        // Closing the connection rolls the transaction back on the server, whatever the connection was doing.
        c.release(new Error('postage-ts: transaction discarded'));
        return;
      }
      let ended: { command?: string };
      try {
        ended = (await c.query(statement)) as { command?: string };
        c.release();
      } catch (err) {
        c.release(err as Error);
        throw abortedOr(err);
      }
      // A COMMIT of a transaction a failed query aborted ends it as a ROLLBACK, and PostgreSQL reports no error:
      // the caller caught the failure and went on. Nothing it wrote, received or sent in it was kept.
      if (statement === 'COMMIT' && ended?.command === 'ROLLBACK') throw aborted();
    };
    return {
      db: c,
      receive: async (consumer, messageId) => {
        try {
          return (await c.query(sql.receive(t), [consumer, messageId])).rowCount === 1;
        } catch (err) {
          throw this.#missing(err);
        }
      },
      send: async (messages, source) => {
        if (messages.length === 0) return [];
        const values: unknown[] = [];
        for (const m of messages)
          values.push(m.messageId, source, JSON.stringify(m.targets), JSON.stringify(m.properties), m.body, m.delayMs);
        try {
          const { rows } = await c.query<{ seq: string }>(sql.send(t, messages.length), values);
          return rows.map((r) => String(r.seq));
        } catch (err) {
          throw abortedOr(this.#missing(err));
        }
      },
      commit: () => end('COMMIT'),
      rollback: (options) => end('ROLLBACK', options?.discard),
    };
  }

  /**
   * Runs `fn` in a transaction and commits it (rolls back when `fn` throws).
   * Producer sends made inside it are written to the outbox and published
   * after the commit, nothing on a rollback; inside a handler of a processor
   * with this store, `fn` runs in the run's own transaction.
   */
  transaction<T>(fn: (db: StoreClient) => Promise<T> | T): Promise<T> {
    return runTransaction(
      this,
      () => (this.#relay ??= new OutboxRelay(this, componentLogger('store', 'postgres'))),
      fn,
    );
  }

  async #run<T>(fn: (c: PgClient) => Promise<T>): Promise<T> {
    if (this.#autoMigrate) await this.migrate();
    const c = await this.#connect();
    try {
      const r = await fn(c);
      c.release();
      return r;
    } catch (err) {
      c.release(err as Error);
      throw this.#missing(err);
    }
  }

  markSent(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    return this.#run(async (c) => {
      await c.query(sql.markSent(this.#t), [keys]);
    });
  }

  markUnsent(key: string, error: string, retryAt?: Date): Promise<void> {
    return this.#run(async (c) => {
      await c.query(sql.markUnsent(this.#t), [key, error, retryAt ?? null]);
    });
  }

  async sweep(
    options: { olderThanMs: number; limit: number },
    publish: (message: StoredOutboxMessage) => Promise<SweepVerdict>,
  ): Promise<number> {
    const c = await this.#open();
    const t = this.#t;
    try {
      const { rows } = await c.query<DueRow>(sql.due(t), [options.olderThanMs, options.limit]);
      const due = rows.map(stored);
      const verdicts = await publishBatch(due, publish);
      let sent = 0;
      const done: string[] = [];
      for (const [i, v] of verdicts.entries()) {
        if (v.sent) {
          done.push(due[i].key);
          sent++;
        } else await c.query(sql.markUnsent(t), [due[i].key, v.error, v.retryAt ?? null]);
      }
      if (done.length > 0) await c.query(sql.markSent(t), [done]);
      await c.query('COMMIT');
      c.release();
      return sent;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      c.release(err as Error);
      throw this.#missing(err);
    }
  }

  backlog(): Promise<OutboxBacklog> {
    return this.#run(async (c) => {
      const { rows } = await c.query<{ waiting: number; oldest_ms: number; failed: number }>(sql.backlog(this.#t));
      const r = rows[0];
      return { waiting: r?.waiting ?? 0, oldestMs: Math.max(0, Math.round(r?.oldest_ms ?? 0)), failed: r?.failed ?? 0 };
    });
  }

  prune(options: { sentOlderThanMs: number; inboxOlderThanMs: number }): Promise<void> {
    return this.#run(async (c) => {
      // Infinity: kept for good (and no interval PostgreSQL could hold).
      if (Number.isFinite(options.sentOlderThanMs)) await c.query(sql.pruneSent(this.#t), [options.sentOlderThanMs]);
      if (Number.isFinite(options.inboxOlderThanMs)) await c.query(sql.pruneInbox(this.#t), [options.inboxOlderThanMs]);
    });
  }
}

/** How long the store waits for a free connection of a pool that sets no `connectionTimeoutMillis`. */
const POOL_WAIT_MS = 10_000;

class PoolWait extends Error {}

/** PostgreSQL's "relation does not exist". */
const UNDEFINED_TABLE = '42P01';

/** PostgreSQL's "current transaction is aborted, commands ignored until end of transaction block". */
const IN_FAILED_TRANSACTION = '25P02';

/** The error of a transaction that a failed query (caught by the caller, who went on) had aborted. */
function aborted(cause?: unknown): StoreError {
  return new StoreError(
    'the transaction was rolled back, not committed: a query in it failed and the error was caught, which aborts a ' +
      "PostgreSQL transaction (its writes, its inbox row and its outbox rows are gone). Let the query's error " +
      'propagate, or wrap the query in a SAVEPOINT and ROLLBACK TO it',
    'aborted',
    cause === undefined ? undefined : { cause },
  );
}

/** `err`, or the `aborted` StoreError when PostgreSQL refused the statement because the transaction had failed. */
function abortedOr(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code === IN_FAILED_TRANSACTION ? aborted(err) : err;
}

/** A due row as the sweeper publishes it. */
function stored(r: DueRow): StoredOutboxMessage {
  return {
    key: String(r.seq),
    messageId: r.message_id,
    targets: r.targets,
    properties: r.properties,
    body: r.body,
    delayMs: r.delay_ms,
    attempts: r.attempts,
    createdAt: r.created_at,
  };
}

interface DueRow {
  seq: string;
  message_id: string;
  targets: OutboxTarget[];
  properties: OutboxMessage['properties'];
  body: Buffer;
  delay_ms: number;
  attempts: number;
  created_at: Date;
}

function isolationOf(level: string): string {
  const l = level.toUpperCase();
  if (l !== 'READ COMMITTED' && l !== 'REPEATABLE READ' && l !== 'SERIALIZABLE')
    throw new TypeError(`isolation must be 'read committed', 'repeatable read' or 'serializable', not ${level}`);
  return l;
}
