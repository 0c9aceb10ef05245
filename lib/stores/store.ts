/**
 * What a processor with `store` asks of its database, as one small interface:
 * `PostgresStore` implements it over a `pg.Pool`, `MemoryStore` in memory for
 * unit tests; a store for MySQL or SQLite implements the same (docs/database.md).
 */

// The run's client is part of a delivery's scope, which sits below the stores: its types live there.
import type { StoreClient } from '../scope/store-client.js';
export type { StoreClient, StoreResult, StoreRow } from '../scope/store-client.js';

/** One exchange and routing key a message goes to. */
export interface OutboxTarget {
  exchange: string;
  /** The exchange's type, as its producer declared it. */
  type: string;
  routingKey: string;
}

/**
 * A message as the outbox keeps it: everything needed to publish it again,
 * exactly as the first publish would have, from any process. Its message id
 * (and its trace headers) are fixed when it is written, so every publish of
 * it carries the same id and receivers with an inbox take it once.
 */
export interface OutboxMessage {
  messageId: string;
  targets: OutboxTarget[];
  /** AMQP properties (headers included), as JSON: `mandatory` among them. */
  properties: Record<string, unknown>;
  body: Buffer;
  /** `_delay`: published through the broker's delay levels. */
  delayMs: number;
}

/** An outbox row waiting to be published. */
export interface StoredOutboxMessage extends OutboxMessage {
  /** The row's key (a bigserial as text in PostgreSQL). */
  key: string;
  /** Publishes tried so far. */
  attempts: number;
  createdAt: Date;
}

/** What the outbox holds now (`describe`, the dashboard, metrics, health). */
export interface OutboxBacklog {
  /** Rows waiting to be published. */
  waiting: number;
  /** Age of the oldest waiting row, ms (0 when none waits). */
  oldestMs: number;
  /** Rows given up on (the broker refused them past `maxAttempts`): they need an operator. */
  failed: number;
}

/** What a sweep's publish of one row came to. */
export type SweepVerdict =
  | { sent: true }
  /** Not sent: tried again at `retryAt`, or marked failed for good without one. */
  | { sent: false; error: string; retryAt?: Date };

/** One database transaction of a run (or of `store.transaction()`). */
export interface StoreTransaction {
  readonly db: StoreClient;
  /**
   * The inbox: records that `consumer` handled `messageId`, in this transaction.
   * False when it had already (a committed row, whichever replica wrote it):
   * the message is acked without running its handlers.
   */
  receive(consumer: string, messageId: string): Promise<boolean>;
  /** The outbox: writes messages to publish once this transaction commits; their row keys, in order. */
  send(messages: readonly OutboxMessage[], source: string): Promise<string[]>;
  commit(): Promise<void>;
  /** `discard`: the connection may still be busy (a run past its time limit): closed rather than waited for. */
  rollback(options?: { discard?: boolean }): Promise<void>;
}

/** The interface a processor's `store` implements. */
export interface MessageStore {
  /** Starts a transaction on a connection of its own. */
  begin(): Promise<StoreTransaction>;
  /** Creates the store's tables where they are missing (safe when replicas start at once). */
  migrate(): Promise<void>;
  /** Runs `fn` in a transaction; inside a handler, in the run's own. See docs/database.md. */
  transaction<T>(fn: (db: StoreClient) => Promise<T> | T): Promise<T>;
  /** Rows the relay published. */
  markSent(keys: readonly string[]): Promise<void>;
  /** A publish of a row failed: tried again at `retryAt`, or failed for good without one. */
  markUnsent(key: string, error: string, retryAt?: Date): Promise<void>;
  /**
   * Publishes rows left waiting longer than `olderThanMs` (a process died
   * between its commit and its relay), up to `limit`, each taken so that no
   * other sweeper publishes it at the same moment. Resolves with the rows sent.
   * `publish` may be called for the rows at once (in row order), so that their
   * confirms are waited for together while the rows are held.
   */
  sweep(
    options: { olderThanMs: number; limit: number },
    publish: (message: StoredOutboxMessage) => Promise<SweepVerdict>,
  ): Promise<number>;
  backlog(): Promise<OutboxBacklog>;
  /** Removes sent rows and inbox rows older than these. */
  prune(options: { sentOlderThanMs: number; inboxOlderThanMs: number }): Promise<void>;
  /** Connections its pool can open, where it knows (checked against `concurrency` at `ready()`). */
  readonly capacity?: number;
  /** False where the application makes the tables itself (`autoMigrate: false`): `ready()` then does not migrate. */
  readonly migratesOnUse?: boolean;
}

/** Whether an error is PostgreSQL's serialization failure or deadlock: the run is tried again as a new run. */
export function isSerializationFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01';
}
