import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type AnyLogger, asPino, componentLogger, type Logger } from '../../log.js';
import {
  CLAIM_MARGIN_MS,
  CLAIM_TTL_MS,
  type IdempotencyClaim,
  type IdempotencyClaimOptions,
  type IdempotencyStore,
} from '../idempotency.js';

/**
 * The one method of a Redis client the store uses: node-redis's
 * `client.sendCommand(args)` (v4 and v5), so a client of either version is
 * given as it is. Another client fits behind a one-line adapter, ioredis's:
 * `{ sendCommand: (args) => redis.call(args[0], ...args.slice(1)) }`.
 */
export interface RedisCommander {
  sendCommand(args: string[]): Promise<unknown>;
}

export interface RedisIdempotencyOptions {
  /** A connected node-redis client; never closed by the store. */
  client: RedisCommander;
  /** What every key starts with; the rest is `<processor name>/<message id>`. @default 'postage:seen:' */
  prefix?: string;
  /** How long a handled message id is remembered (ms): longer than a duplicate can take to arrive. @default 86400000 */
  ttlMs?: number;
  /**
   * How long a run's claim on a message id lasts past the longest its runs
   * can take (ms). The processor tells the store that length: its time
   * limit (`handlerTimeoutMs`, or the handlers' `timeoutMs`) times the runs
   * in the process (`retry.attempts`), plus the waits between them. The
   * margin covers what comes after the last run, still under the claim: the
   * sends' confirms (15 s at most by default) and the store's own commands.
   * A claim that expires mid-run lets another replica run the message too;
   * one whose process died holds a copy of the message back until it
   * expires (a shorter time limit shortens that wait). @default 20000
   */
  claimMarginMs?: number;
  /**
   * How long a claim lasts (ms) when the processor gives no time limit (a
   * `handlerTimeoutMs` of `Infinity`), or the store is used by code that
   * says nothing of its runs: keep it above the longest run. @default 60000
   */
  claimTtlMs?: number;
  /** How long a command may take before Redis counts as not answering (the message is handled). @default 1000 */
  timeoutMs?: number;
  /** Where it logs that Redis stopped (once per outage) and came back. @default postage-ts's logger */
  logger?: AnyLogger;
}

const DONE = 'done';
/** Deletes a claim only while it is still the caller's (a claim that expired may be another run's by now). */
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

class Unanswered extends Error {}

/**
 * An idempotency store in Redis, for `deduplicate`, shared by every replica
 * that uses the same Redis and prefix: a message id one replica handled is
 * dropped by all. A run claims its message id first (`SET key claim NX PX`),
 * so two replicas given the same id at the same moment never both run it;
 * a run that fails gives the claim back (only if still its own), one that
 * succeeds leaves the id remembered for `ttlMs`.
 *
 * A Redis that fails or does not answer within `timeoutMs` counts as "not
 * seen": the message is handled (twice rather than lost), and the store logs
 * once when Redis stops answering and once when it is back.
 *
 * @example
 * import { createClient } from 'redis';
 * const client = createClient({ url: 'redis://127.0.0.1:6379' });
 * client.on('error', () => {}); // node-redis throws an unhandled 'error' otherwise; the store logs outages
 * await client.connect();
 * new Orders({ deduplicate: new RedisIdempotencyStore({ client }) });
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  readonly prefix: string;
  readonly ttlMs: number;
  readonly claimTtlMs: number;
  readonly claimMarginMs: number;
  readonly timeoutMs: number;
  readonly #client: RedisCommander;
  readonly #owner = `${hostname()}:${process.pid}:`;
  readonly #log: Logger;
  #down = false;

  constructor(options: RedisIdempotencyOptions) {
    const {
      client,
      prefix = 'postage:seen:',
      ttlMs = 86_400_000,
      claimTtlMs = CLAIM_TTL_MS,
      claimMarginMs = CLAIM_MARGIN_MS,
      timeoutMs = 1_000,
    } = options ?? ({} as RedisIdempotencyOptions);
    if (!client || typeof client.sendCommand !== 'function')
      throw new TypeError(
        'RedisIdempotencyStore needs { client }: a connected node-redis client (createClient(), then connect())',
      );
    for (const [name, v] of [
      ['ttlMs', ttlMs],
      ['claimTtlMs', claimTtlMs],
      ['claimMarginMs', claimMarginMs],
      ['timeoutMs', timeoutMs],
    ] as const)
      if (!(Number.isInteger(v) && v > 0))
        throw new TypeError(`${name} must be a positive whole number of milliseconds, not ${String(v)}`);
    this.#client = client;
    this.prefix = prefix;
    this.ttlMs = ttlMs;
    this.claimTtlMs = claimTtlMs;
    this.claimMarginMs = claimMarginMs;
    this.timeoutMs = timeoutMs;
    this.#log = options.logger ? asPino(options.logger, { component: 'store' }) : componentLogger('store', 'redis');
  }

  /** Whether Redis failed its last command (an outage is logged once, when it starts). */
  get down(): boolean {
    return this.#down;
  }

  async seen(key: string): Promise<boolean> {
    return (await this.#send(['GET', this.prefix + key], null)) === DONE;
  }

  async remember(key: string): Promise<void> {
    await this.#send(['SET', this.prefix + key, DONE, 'PX', String(this.ttlMs)], null);
  }

  /**
   * How long a claim lasts (ms) for runs that take `runMs` at most: that and
   * `claimMarginMs`, or `claimTtlMs` when they have no time limit.
   */
  claimTtlFor(options: IdempotencyClaimOptions = {}): number {
    const runMs = options.runMs;
    if (runMs === undefined || !(Number.isFinite(runMs) && runMs >= 0)) return this.claimTtlMs;
    // Capped: past 2^53 String() may write an exponent (1e+300), or Redis finds the expiry out of range; either way
    // it refuses the SET, and every claim would fail open. 2^53 ms is some 285,000 years.
    return Math.min(Math.ceil(runMs) + this.claimMarginMs, Number.MAX_SAFE_INTEGER);
  }

  async claim(key: string, options?: IdempotencyClaimOptions): Promise<IdempotencyClaim> {
    const token = `claim:${this.#owner}${randomUUID()}`;
    const k = this.prefix + key;
    const ttl = String(this.claimTtlFor(options));
    const took = await this.#send(['SET', k, token, 'NX', 'PX', ttl], undefined);
    // Fail open: a Redis that does not answer lets the run go on. The claim keeps its token all the same: a client
    // that queues commands while it reconnects (node-redis does) sends the SET once Redis is back, and only a release
    // with that token (queued behind it) takes it away again, rather than its TTL holding the message back.
    if (took === undefined) return { state: 'claimed', token };
    if (took !== null) return { state: 'claimed', token };
    const holder = await this.#send(['GET', k], undefined);
    if (holder === undefined) return { state: 'claimed', token };
    // Released or expired between the two commands: the copy comes back later and claims it then.
    return holder === DONE ? { state: 'seen' } : { state: 'busy' };
  }

  async release(key: string, token: string): Promise<void> {
    if (!token) return;
    await this.#send(['EVAL', RELEASE, '1', this.prefix + key, token], null);
  }

  /** One command within `timeoutMs`; `fallback` when Redis fails or does not answer (the outage logged once). */
  async #send<F>(args: string[], fallback: F): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = await Promise.race([
        this.#client.sendCommand(args),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Unanswered(`Redis did not answer ${args[0]} within ${this.timeoutMs} ms`)),
            this.timeoutMs,
          );
        }),
      ]);
      if (this.#down) {
        this.#down = false;
        this.#log.info('Redis answers again: replicas share what they have handled again');
      }
      return r;
    } catch (err) {
      if (!this.#down) {
        this.#down = true;
        this.#log.warn(
          { err },
          'Redis does not answer: messages are handled without the shared dedupe (a duplicate may run again) ' +
            'until it does',
        );
      }
      return fallback;
    } finally {
      clearTimeout(timer);
    }
  }
}
