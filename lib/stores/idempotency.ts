/**
 * Where a processor remembers the messages it has handled, to drop a
 * duplicate by its message id (a send published again after a lost confirm,
 * an outbox sent again after a crash between publish and ack). Keys are
 * `<processor name>/<message id>`, so processors sharing a store keep apart.
 * Methods may return promises (a Redis or SQL store).
 */
export interface IdempotencyStore {
  /** Whether `key` was remembered (and has not expired). */
  seen(key: string): boolean | PromiseLike<boolean>;
  /** Remembers `key`: its delivery was handled, and what it sent was confirmed; its ack comes next. */
  remember(key: string): void | PromiseLike<void>;
  /**
   * Optional: takes `key` for one run, atomically, so that two replicas given
   * the same message id at once do not both run its handlers (`seen` then
   * `remember` leaves a gap between them). A store with `claim` is asked
   * `claim` instead of `seen`; after the run, `remember(key)` when it
   * succeeded, `release(key, token)` when it failed (so a retry runs it).
   * A claim should outlive the runs it guards (`options.runMs`) and then
   * expire, so that a process that dies holding it does not hold it forever.
   */
  claim?(key: string, options?: IdempotencyClaimOptions): IdempotencyClaim | PromiseLike<IdempotencyClaim>;
  /** Gives up a claim `claim` made, only if it is still that claim (`token`): the run failed. */
  release?(key: string, token: string): void | PromiseLike<void>;
}

/** What a processor tells `claim` of the runs the claim guards. */
export interface IdempotencyClaimOptions {
  /**
   * How long they can take at most (ms): the message's time limit (the
   * processor's `handlerTimeoutMs`, or its handlers' `timeoutMs`) times its
   * runs in the process (`retry.attempts`), plus the waits between them.
   * Absent when they have no time limit. The claim should last longer: its
   * sends are confirmed, and the store told, after the last run.
   */
  runMs?: number;
}

/**
 * How long a claim lasts past the runs it guards (`runMs`), by default:
 * the sends' confirms (15 s at most by default) and the store's own round
 * trips come after the last run, still under the claim.
 */
export const CLAIM_MARGIN_MS = 20_000;
/** How long a claim lasts, by default, when the processor gives no `runMs` (no time limit). */
export const CLAIM_TTL_MS = 60_000;

/**
 * What `claim` found: `claimed`, this run has the key (run the handlers);
 * `seen`, a run handled it already (ack, do not run); `busy`, another run
 * holds it now (the message comes back later, when that run has succeeded
 * or given it up).
 */
export type IdempotencyClaim = { state: 'claimed'; token: string } | { state: 'seen' } | { state: 'busy' };

export interface MemoryIdempotencyOptions {
  /** Keys kept at most; the oldest go first. @default 100000 */
  max?: number;
  /** How long a key is kept (ms): longer than a duplicate can take to arrive. @default 86400000 (a day) */
  ttlMs?: number;
}

/**
 * An {@link IdempotencyStore} in this process's memory: it forgets on
 * restart, and replicas do not share it. Enough for the duplicates a
 * reconnection makes; use a shared store for the rest.
 *
 * It claims as the shared stores do: a copy of a message that arrives while
 * a run of the same id is in flight (a redelivery beside `concurrency` > 1)
 * finds the id `busy` and comes back later, instead of running beside it.
 * A claim lasts `runMs` + {@link CLAIM_MARGIN_MS} (else {@link CLAIM_TTL_MS}):
 * a run ends with `remember` or `release`, but a run stopped from outside
 * (its processor closed mid-run) does neither, and its copy must not wait forever.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #max: number;
  readonly #ttlMs: number;
  /** Key to expiry, in insertion order: the oldest first. */
  readonly #keys = new Map<string, number>();
  /** Keys claimed by runs in flight: their token and the claim's expiry. */
  readonly #claims = new Map<string, { token: string; until: number }>();
  #tokens = 0;

  constructor(options: MemoryIdempotencyOptions = {}) {
    this.#max = options.max ?? 100_000;
    this.#ttlMs = options.ttlMs ?? 86_400_000;
    if (!(Number.isInteger(this.#max) && this.#max >= 1))
      throw new TypeError(`max must be a whole number of at least 1, not ${String(options.max)}`);
    if (!(this.#ttlMs > 0))
      throw new TypeError(`ttlMs must be a positive number of milliseconds, not ${String(options.ttlMs)}`);
  }

  seen(key: string): boolean {
    const until = this.#keys.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#keys.delete(key);
    return false;
  }

  claim(key: string, options: IdempotencyClaimOptions = {}): IdempotencyClaim {
    if (this.seen(key)) return { state: 'seen' };
    const now = Date.now();
    const held = this.#claims.get(key);
    if (held && held.until > now) return { state: 'busy' };
    const runMs = options.runMs;
    const ttl = runMs !== undefined && Number.isFinite(runMs) ? runMs + CLAIM_MARGIN_MS : CLAIM_TTL_MS;
    const token = String(++this.#tokens);
    this.#claims.set(key, { token, until: now + ttl });
    return { state: 'claimed', token };
  }

  release(key: string, token: string): void {
    if (this.#claims.get(key)?.token === token) this.#claims.delete(key);
  }

  remember(key: string): void {
    const now = Date.now();
    this.#claims.delete(key);
    this.#keys.delete(key);
    this.#keys.set(key, now + this.#ttlMs);
    // One TTL for all, so a Map's insertion order is expiry order: drop from the front until within bounds.
    for (const [k, until] of this.#keys) {
      if (this.#keys.size <= this.#max && until > now) break;
      this.#keys.delete(k);
    }
  }

  /** Ids remembered (handled). */
  get size(): number {
    return this.#keys.size;
  }

  /** Ids claimed by runs in flight now. */
  get claimed(): number {
    const now = Date.now();
    for (const [k, c] of this.#claims) if (c.until <= now) this.#claims.delete(k);
    return this.#claims.size;
  }
}
