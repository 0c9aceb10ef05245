/** One wait a {@link Deadlines} watches: the waiting object itself (no wrapper or closure per wait). */
export interface Wait {
  /** Set by {@link Deadlines.start}. */
  since: number;
  /** Runs if it is still waiting after the bound. */
  expire(): void;
}

/**
 * Bounds many waits of the same length (sends waiting for their confirm) with
 * one timer instead of one per wait: waits are kept in the order they began,
 * so a sweep stops at the first one that still has time. Paused while the
 * broker blocks the connection (a memory or disk alarm: nothing is confirmed
 * until it clears, and that is not a fault); on resume every wait starts over.
 * @internal
 */
export class Deadlines {
  readonly #waits = new Set<Wait>();
  #timer: NodeJS.Timeout | undefined;
  #paused = false;

  constructor(readonly ms: number) {}

  /** Starts a wait; its `expire()` runs if it is still waiting after `ms`. */
  start(w: Wait): void {
    w.since = Date.now();
    this.#waits.add(w);
    if (!this.#timer && !this.#paused) this.#arm();
  }

  /** The wait ended in time. */
  end(w: Wait): void {
    this.#waits.delete(w);
  }

  pause(): void {
    this.#paused = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const now = Date.now();
    for (const w of this.#waits) w.since = now;
    if (this.#waits.size > 0) this.#arm();
  }

  #arm(): void {
    // A quarter of the bound: a wait expires at most 25 % late.
    this.#timer = setInterval(() => this.#sweep(), Math.max(10, this.ms / 4));
    this.#timer.unref();
  }

  #sweep(): void {
    const due = Date.now() - this.ms;
    for (const w of this.#waits) {
      if (w.since > due) break;
      this.#waits.delete(w);
      w.expire();
    }
    if (this.#waits.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
