import { backoffMs } from '../backoff.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import { observeOutbox } from '../telemetry/metrics.js';
import {
  ATTR,
  endSpan,
  extractContext,
  injectContext,
  startPublishSpan,
  trace,
  tracingOn,
} from '../telemetry/tracing.js';
import type { MessageStore, OutboxBacklog, StoredOutboxMessage, SweepVerdict } from './store.js';

/** How the outbox's rows are published, retried, and kept. */
export interface OutboxSettings {
  /**
   * A row still waiting this long after it was written is the sweeper's: the
   * process that wrote it died (or lost the broker) before its relay published it.
   * @default 10000
   */
  sweepAfterMs?: number;
  /** How often each processor with the store sweeps. @default 2000 */
  sweepEveryMs?: number;
  /**
   * Publishes tried for a row the broker will not take (unroutable) before it
   * is marked failed and reported instead of retried forever; other failures
   * (the broker away) are retried, with backoff, for as long as they last.
   * @default 10
   */
  maxAttempts?: number;
  /** How long sent outbox rows are kept before they are removed. @default 3600000 (an hour) */
  sentRetentionMs?: number;
  /**
   * How long inbox rows (message ids handled) are kept: a duplicate that
   * arrives later than this is handled again. @default 604800000 (7 days)
   */
  inboxRetentionMs?: number;
}

export const OUTBOX_DEFAULTS: Readonly<Required<OutboxSettings>> = Object.freeze({
  sweepAfterMs: 10_000,
  sweepEveryMs: 2_000,
  maxAttempts: 10,
  sentRetentionMs: 3_600_000,
  inboxRetentionMs: 7 * 24 * 3_600_000,
});

/** The longest delay a Node timer takes (a longer one fires after 1 ms, which would sweep without pause). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Refuses outbox settings a store cannot use, when the store is made rather than at each sweep: a NaN or
 * overlong `sweepEveryMs` swept without pause (a timer fires such a delay after 1 ms), and a NaN or infinite
 * time in the SQL made PostgreSQL refuse the statement ("interval out of range") at every pass. Retentions may be
 * `Infinity` (kept for good). @internal
 */
export function checkOutboxSettings(settings: OutboxSettings): void {
  const bad = (name: string, v: unknown, what: string) => new TypeError(`${name} must be ${what}, not ${String(v)}`);
  const { sweepAfterMs, sweepEveryMs, maxAttempts, sentRetentionMs, inboxRetentionMs } = settings;
  if (sweepAfterMs !== undefined && !(Number.isFinite(sweepAfterMs) && sweepAfterMs >= 0))
    throw bad('sweepAfterMs', sweepAfterMs, 'a finite number of milliseconds, 0 or more');
  if (sweepEveryMs !== undefined && !(sweepEveryMs > 0 && sweepEveryMs <= MAX_TIMER_MS))
    throw bad('sweepEveryMs', sweepEveryMs, `a number of milliseconds above 0, at most ${MAX_TIMER_MS}`);
  if (maxAttempts !== undefined && !(Number.isInteger(maxAttempts) && maxAttempts >= 1))
    throw bad('maxAttempts', maxAttempts, 'a whole number of at least 1');
  for (const [name, v] of [
    ['sentRetentionMs', sentRetentionMs],
    ['inboxRetentionMs', inboxRetentionMs],
  ] as const)
    if (v !== undefined && !(v > 0)) throw bad(name, v, 'a number of milliseconds above 0 (Infinity: kept for good)');
}

/** Where the relay is in publishing rows, for a test to stop a process at an exact point. @internal */
export type RelayStep = 'committed' | 'published';

/** A store with its settings and its test hook, as the stores of postage-ts are. @internal */
interface Configured {
  readonly settings?: OutboxSettings;
  readonly onRelay?: (step: RelayStep, keys: readonly string[]) => void | Promise<void>;
}

/** A row just committed, and the send that publishes it. @internal */
export interface RelayItem {
  key: string;
  send: () => Promise<void>;
}

/**
 * Publishes a sweep's rows and waits for their confirms together: the rows' locks and a pool connection are held
 * for about one round trip to the broker, not one per row. The first goes alone, so that it opens the channel
 * where that is needed and the rest do not race to open it; the others are published in row order at once (the
 * channel keeps the order of publishes begun in order).
 * @internal
 */
export async function publishBatch(
  due: readonly StoredOutboxMessage[],
  publish: (message: StoredOutboxMessage) => Promise<SweepVerdict>,
): Promise<SweepVerdict[]> {
  if (due.length === 0) return [];
  const first = await publish(due[0]);
  return [first, ...(await Promise.all(due.slice(1).map(publish)))];
}

/** How long until a row whose publish failed `attempts` times is tried again. */
function retryAt(attempts: number): Date {
  return new Date(Date.now() + backoffMs(Math.max(0, attempts - 1), 1_000, 60_000));
}

/**
 * Publishes a store's outbox rows: the relay, right after a commit, through
 * the sends that made them (same message id, the run's trace); the sweeper,
 * every `sweepEveryMs`, rows a dead process left, through `publishRow`. Both
 * mark what the broker confirmed as sent. Never closes the store's pool.
 * @internal
 */
export class OutboxRelay {
  readonly settings: Readonly<Required<OutboxSettings>>;
  /** Relays in flight: `drain()` waits for them. */
  readonly #pending = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #stopped = false;
  #sweeps = 0;
  #unobserve: (() => void) | undefined;
  /** The last backlog a sweep saw. */
  backlog: OutboxBacklog | undefined;
  /** Rows the sweeper published (left behind by a process that died). */
  swept = 0;

  constructor(
    readonly store: MessageStore,
    readonly log: Logger,
    /** Whose outbox it is (the processor's name): the backlog gauges' `postage.component`. */
    readonly component = 'store',
  ) {
    this.settings = { ...OUTBOX_DEFAULTS, ...(store as Configured).settings };
  }

  /** Publishes rows just committed and marks them sent; resolves when done (failures are logged, the rows kept). */
  relay(items: readonly RelayItem[]): Promise<void> {
    if (items.length === 0) return Promise.resolve();
    const p = this.#relay(items).catch((err: unknown) =>
      this.log.warn({ err }, 'the outbox relay failed; the sweeper publishes what it left'),
    );
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
    return p;
  }

  async #relay(items: readonly RelayItem[]): Promise<void> {
    const hook = (this.store as Configured).onRelay;
    const keys = items.map((i) => i.key);
    if (hook) await hook('committed', keys);
    const results = await Promise.allSettled(items.map((i) => i.send()));
    const sent = keys.filter((_, i) => results[i].status === 'fulfilled');
    if (hook && sent.length > 0) await hook('published', sent);
    if (sent.length > 0) await this.store.markSent(sent);
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      const err = r.reason as Error;
      this.log.warn(
        { err, outboxKey: keys[i] },
        `an outbox message could not be published (${err?.message ?? String(err)}); it is tried again later`,
      );
      await this.store.markUnsent(keys[i], `${err?.name ?? 'Error'}: ${err?.message ?? String(err)}`, retryAt(1));
    }
  }

  /** Resolves once every relay in flight is done. */
  async drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
    if (this.#sweeping) await this.#sweeping;
  }

  /** Sweeps every `sweepEveryMs` until `stop()`, publishing rows through `publishRow`. */
  start(publishRow: (m: StoredOutboxMessage) => Promise<void>): void {
    if (this.#timer || this.#stopped) return;
    this.#unobserve = observeOutbox(this.component, () => this.backlog);
    const tick = () => {
      this.#sweeping = this.sweepOnce(publishRow).finally(() => {
        this.#sweeping = undefined;
        if (!this.#stopped) this.#timer = setTimeout(tick, this.settings.sweepEveryMs).unref();
      });
    };
    this.#timer = setTimeout(tick, 0).unref();
  }

  /** One pass: rows left behind published, the backlog read, old rows pruned now and then. */
  async sweepOnce(publishRow: (m: StoredOutboxMessage) => Promise<void>): Promise<void> {
    const { sweepAfterMs, maxAttempts, sentRetentionMs, inboxRetentionMs } = this.settings;
    try {
      const n = await this.store.sweep({ olderThanMs: sweepAfterMs, limit: 100 }, async (m): Promise<SweepVerdict> => {
        try {
          await publishTraced(m, this.component, publishRow);
          return { sent: true };
        } catch (err) {
          const e = err as Error;
          const error = `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`;
          const refused = err instanceof BrokerError && err.code === 'UNROUTABLE';
          if (refused && m.attempts + 1 >= maxAttempts) {
            this.log.error(
              { err, messageId: m.messageId, outboxKey: m.key, attempts: m.attempts + 1 },
              `an outbox message no queue takes was tried ${m.attempts + 1} times; ` +
                'marked failed (it stays in the table)',
            );
            return { sent: false, error };
          }
          return { sent: false, error, retryAt: retryAt(m.attempts + 1) };
        }
      });
      if (n > 0) {
        this.swept += n;
        this.log.info({ rows: n }, `the outbox sweeper published ${n} message(s) a stopped process had left`);
      }
      this.backlog = await this.store.backlog();
      if (this.#sweeps++ % 30 === 0)
        await this.store.prune({ sentOlderThanMs: sentRetentionMs, inboxOlderThanMs: inboxRetentionMs });
    } catch (err) {
      this.log.warn({ err }, 'the outbox sweeper could not reach the store; it tries again');
    }
  }

  /** Stops sweeping; the relays in flight finish (`drain()`). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unobserve?.();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.drain();
  }
}

/**
 * The sweeper's publish of a row, in the trace the row stored when it was
 * written (the run's span, or the caller's of a `store.transaction()`): its
 * span is that span's child, as the relay's publish would have been, and the
 * message carries the new span on to its receivers.
 */
async function publishTraced(
  m: StoredOutboxMessage,
  component: string,
  publishRow: (m: StoredOutboxMessage) => Promise<void>,
): Promise<void> {
  if (!tracingOn()) return publishRow(m);
  const headers: Record<string, unknown> = { ...(m.properties.headers as Record<string, unknown> | undefined) };
  const parent = extractContext(headers);
  const first = m.targets[0];
  const span = startPublishSpan(parent, first?.exchange ?? '', {
    [ATTR.messageId]: m.messageId,
    [ATTR.bodySize]: m.body.length,
    [ATTR.routingKey]: first?.routingKey ?? '',
    [ATTR.component]: component,
  });
  injectContext(trace.setSpan(parent, span), headers);
  try {
    await publishRow({ ...m, properties: { ...m.properties, headers } });
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
  endSpan(span);
}
