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
   */
  claim?(key: string): IdempotencyClaim | PromiseLike<IdempotencyClaim>;
  /** Gives up a claim `claim` made, only if it is still that claim (`token`): the run failed. */
  release?(key: string, token: string): void | PromiseLike<void>;
}

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
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #max: number;
  readonly #ttlMs: number;
  /** Key to expiry, in insertion order: the oldest first. */
  readonly #keys = new Map<string, number>();

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

  remember(key: string): void {
    const now = Date.now();
    this.#keys.delete(key);
    this.#keys.set(key, now + this.#ttlMs);
    // One TTL for all, so a Map's insertion order is expiry order: drop from the front until within bounds.
    for (const [k, until] of this.#keys) {
      if (this.#keys.size <= this.#max && until > now) break;
      this.#keys.delete(k);
    }
  }

  get size(): number {
    return this.#keys.size;
  }
}
