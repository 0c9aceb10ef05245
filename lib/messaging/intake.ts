import type { ConsumeMessage } from 'amqplib';

/** A delivery waiting for a worker; `key` is its ordering key (`orderBy`), if it has one. @internal */
export interface Pending {
  readonly msg: ConsumeMessage;
  readonly key?: unknown;
  /** What decoding it for its key gave, so that it is not decoded twice. */
  readonly decoded?: { body: unknown } | { err: unknown };
}

/**
 * The deliveries a processor has received and not started, in arrival order,
 * and the workers waiting for one. A worker takes the first delivery whose
 * key has nothing in flight: deliveries with the same key run one after
 * another in arrival order, different keys (and deliveries without one) at
 * once. Counts what is in flight, so that a close can wait for it.
 * @internal
 */
export class Intake {
  #waiting: Pending[] = [];
  readonly #workers: Array<(p: Pending | undefined) => void> = [];
  readonly #busyKeys = new Set<unknown>();
  #inFlight = 0;
  #idle: (() => void) | undefined;

  get inFlight(): number {
    return this.#inFlight;
  }

  /** A delivery arrived: to a waiting worker if it can run now, else in line. */
  push(p: Pending): void {
    this.#waiting.push(p);
    this.#hand();
  }

  /** The next delivery that can run now, or undefined; a worker that gets one must call `done` with it. */
  take(): Pending | undefined {
    const w = this.#waiting;
    if (this.#busyKeys.size === 0) return this.#start(w.shift());
    for (let i = 0; i < w.length; i++) {
      const p = w[i];
      if (p.key === undefined || !this.#busyKeys.has(p.key)) {
        w.splice(i, 1);
        return this.#start(p);
      }
    }
    return undefined;
  }

  /** Waits for a delivery that can run; undefined when the intake is closing. */
  next(): Pending | PromiseLike<Pending | undefined> {
    return this.take() ?? new Promise<Pending | undefined>((resolve) => this.#workers.push(resolve));
  }

  /** A worker finished `p`: its key is free, and a delivery that waited for it may run. */
  done(p: Pending): void {
    this.#inFlight--;
    if (p.key !== undefined) this.#busyKeys.delete(p.key);
    if (this.#inFlight === 0) this.#idle?.();
    this.#hand();
  }

  /** Forgets the deliveries not started (they came on a lost channel, or the processor is closing). */
  drop(): void {
    this.#waiting = [];
  }

  /** Sends every waiting worker away (they stop), and resolves once nothing is in flight. */
  close(): Promise<void> {
    this.#waiting = [];
    for (const w of this.#workers.splice(0)) w(undefined);
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => (this.#idle = resolve));
  }

  #start(p: Pending | undefined): Pending | undefined {
    if (p) {
      this.#inFlight++;
      if (p.key !== undefined) this.#busyKeys.add(p.key);
    }
    return p;
  }

  #hand(): void {
    while (this.#workers.length > 0) {
      const p = this.take();
      if (!p) return;
      this.#workers.shift()!(p);
    }
  }
}
