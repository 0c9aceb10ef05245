import { componentLogger } from '../log.js';
import { checkOutboxSettings, OutboxRelay, type OutboxSettings, publishBatch, type RelayStep } from './outbox-relay.js';
import type {
  MessageStore,
  OutboxBacklog,
  OutboxMessage,
  StoreClient,
  StoreResult,
  StoredOutboxMessage,
  StoreTransaction,
  SweepVerdict,
} from './store.js';
import { runTransaction } from './transaction.js';

/** A statement a handler ran through `db.query()` on a {@link MemoryStore}, as committed. */
export interface MemoryStatement {
  text: string;
  values: readonly unknown[];
}

/** An outbox row of a {@link MemoryStore}. */
export interface MemoryOutboxRow extends StoredOutboxMessage {
  source: string;
  sentAt: Date | undefined;
  failedAt: Date | undefined;
  lastError: string | undefined;
  nextAttemptAt: Date;
}

export interface MemoryStoreOptions extends OutboxSettings {
  /**
   * What `db.query()` answers in a run (it runs no SQL): called with each
   * statement, its result is the query's; what it throws, the query rejects
   * with (a `{ code: '40001' }` plays a serialization failure). Default: no rows.
   */
  answer?: (text: string, values: readonly unknown[]) => StoreResult;
  /** @internal */
  onRelay?: (step: RelayStep, keys: readonly string[]) => void | Promise<void>;
}

/**
 * A store with `PostgresStore`'s interface, in memory, for unit tests (the
 * harness, specs without a database): runs are transactions whose inbox rows,
 * outbox rows and `db.query()` statements are kept on commit and dropped on
 * rollback. It runs no SQL: `statements` lists what committed runs asked,
 * `outbox` what they sent. Two runs of one message id at once: the second
 * waits for the first, as PostgreSQL's unique key makes it, then sees its row.
 */
export class MemoryStore implements MessageStore {
  /** Statements of committed transactions, in commit order. */
  readonly statements: MemoryStatement[] = [];
  /** Every outbox row, sent or not. */
  readonly outbox: MemoryOutboxRow[] = [];
  /** `consumer/messageId` of every message an inbox has recorded. */
  readonly inbox = new Set<string>();
  /** When each inbox entry was committed, for `inboxRetentionMs`. */
  readonly #received = new Map<string, number>();
  readonly settings: OutboxSettings;
  /** @internal */
  readonly onRelay: MemoryStoreOptions['onRelay'];
  readonly #answer: MemoryStoreOptions['answer'];
  /** Inbox rows written by transactions still open: the next writer of one waits for its end. */
  readonly #claims = new Map<string, Promise<void>>();
  #seq = 0;
  #relay: OutboxRelay | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    const { answer, onRelay, ...settings } = options;
    this.#answer = answer;
    this.onRelay = onRelay;
    checkOutboxSettings(settings);
    this.settings = settings;
  }

  migrate(): Promise<void> {
    return Promise.resolve();
  }

  async begin(): Promise<StoreTransaction> {
    const statements: MemoryStatement[] = [];
    const rows: MemoryOutboxRow[] = [];
    const claimed: string[] = [];
    let end!: () => void;
    const ended = new Promise<void>((resolve) => {
      end = resolve;
    });
    let open = true;
    const answer = this.#answer;
    const db: StoreClient = {
      query: <R extends object>(text: string, values: readonly unknown[] = []) => {
        if (!open) return Promise.reject(new Error('the transaction has ended'));
        try {
          const r = (answer?.(text, values) ?? { rows: [], rowCount: 0 }) as StoreResult<R>;
          statements.push({ text, values });
          return Promise.resolve(r);
        } catch (err) {
          return Promise.reject(err);
        }
      },
    };
    const finish = (commit: boolean) => {
      if (!open) return;
      open = false;
      if (commit) {
        this.statements.push(...statements);
        this.outbox.push(...rows);
        const now = Date.now();
        for (const k of claimed) {
          this.inbox.add(k);
          this.#received.set(k, now);
        }
      }
      for (const k of claimed) this.#claims.delete(k);
      end();
    };
    return {
      db,
      receive: async (consumer, messageId) => {
        const k = `${consumer}/${messageId}`;
        for (let other = this.#claims.get(k); other; other = this.#claims.get(k)) await other;
        if (this.inbox.has(k)) return false;
        this.#claims.set(k, ended);
        claimed.push(k);
        return true;
      },
      send: (messages, source) => {
        const keys = messages.map((m) => {
          const key = String(++this.#seq);
          rows.push({
            ...copyOf(m),
            key,
            attempts: 0,
            createdAt: new Date(),
            source,
            sentAt: undefined,
            failedAt: undefined,
            lastError: undefined,
            nextAttemptAt: new Date(),
          });
          return key;
        });
        return Promise.resolve(keys);
      },
      commit: () => {
        finish(true);
        return Promise.resolve();
      },
      rollback: () => {
        finish(false);
        return Promise.resolve();
      },
    };
  }

  transaction<T>(fn: (db: StoreClient) => Promise<T> | T): Promise<T> {
    return runTransaction(this, () => (this.#relay ??= new OutboxRelay(this, componentLogger('store', 'memory'))), fn);
  }

  /** Outbox rows not yet sent (nor failed). */
  get waiting(): MemoryOutboxRow[] {
    return this.outbox.filter((r) => !r.sentAt && !r.failedAt);
  }

  markSent(keys: readonly string[]): Promise<void> {
    const now = new Date();
    for (const r of this.outbox) if (keys.includes(r.key)) r.sentAt ??= now;
    return Promise.resolve();
  }

  markUnsent(key: string, error: string, retryAt?: Date): Promise<void> {
    const r = this.outbox.find((x) => x.key === key);
    if (r && !r.sentAt) {
      r.attempts++;
      r.lastError = error;
      if (retryAt) r.nextAttemptAt = retryAt;
      else r.failedAt = new Date();
    }
    return Promise.resolve();
  }

  async sweep(
    options: { olderThanMs: number; limit: number },
    publish: (message: StoredOutboxMessage) => Promise<SweepVerdict>,
  ): Promise<number> {
    const now = Date.now();
    const due = this.waiting
      .filter((r) => now - r.createdAt.getTime() >= options.olderThanMs && r.nextAttemptAt.getTime() <= now)
      .slice(0, options.limit);
    let sent = 0;
    const verdicts = await publishBatch(due, publish);
    for (const [i, r] of due.entries()) {
      const v = verdicts[i];
      if (v.sent) {
        r.sentAt = new Date();
        sent++;
      } else await this.markUnsent(r.key, v.error, v.retryAt);
    }
    return sent;
  }

  backlog(): Promise<OutboxBacklog> {
    const waiting = this.waiting;
    const oldest = waiting.reduce((t, r) => Math.min(t, r.createdAt.getTime()), Date.now());
    return Promise.resolve({
      waiting: waiting.length,
      oldestMs: Date.now() - oldest,
      failed: this.outbox.filter((r) => r.failedAt).length,
    });
  }

  prune(options: { sentOlderThanMs: number; inboxOlderThanMs: number }): Promise<void> {
    const before = Date.now() - options.sentOlderThanMs;
    for (let i = this.outbox.length - 1; i >= 0; i--) {
      const sentAt = this.outbox[i].sentAt;
      if (sentAt && sentAt.getTime() < before) this.outbox.splice(i, 1);
    }
    const received = Date.now() - options.inboxOlderThanMs;
    for (const [k, at] of this.#received)
      if (at < received || !this.inbox.has(k)) {
        this.#received.delete(k);
        this.inbox.delete(k);
      }
    return Promise.resolve();
  }
}

function copyOf(m: OutboxMessage): OutboxMessage {
  return {
    messageId: m.messageId,
    targets: m.targets.map((t) => ({ ...t })),
    properties: structuredClone(m.properties),
    body: Buffer.from(m.body),
    delayMs: m.delayMs,
  };
}
