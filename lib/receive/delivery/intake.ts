import type { ConsumeMessage } from 'amqplib';
import { WakeList } from '../../microthreads/wake-list.js';
import type { Read } from './readable.js';

/** A delivery waiting for a worker; `key` is its ordering key (`orderBy`), if it has one. @internal */
export interface Pending {
  readonly msg: ConsumeMessage;
  readonly key?: unknown;
  /** What reading it for its key gave, so that it is not read twice. */
  readonly decoded?: Read;
}

/**
 * The deliveries a processor has received and not started, in arrival order,
 * and the workers waiting for one. A worker takes the first delivery whose
 * key has nothing in flight: deliveries with the same key run one after
 * another in arrival order, different keys (and deliveries without one) at
 * once. Counts what is in flight, so that a close can wait for it.
 *
 * A waiting worker is only woken: it takes a delivery itself once it runs
 * again. A delivery is never handed to a worker that might not run again (a
 * scheduler stopped meanwhile), where it would stay in flight forever.
 * @internal
 */
export class Intake {
  #waiting: Pending[] = [];
  readonly #workers = new WakeList();
  readonly #busyKeys = new Set<unknown>();
  #inFlight = 0;
  #closed = false;
  #idle: (() => void) | undefined;

  /** A delivery arrived: in line, and a waiting worker woken to take it. */
  push(p: Pending): void {
    this.#waiting.push(p);
    this.#workers.wakeOne();
  }

  /** The next delivery that can run now, or undefined; a worker that gets one must call `done` with it. */
  take(): Pending | undefined {
    if (this.#closed) return undefined;
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

  /** Settles when a delivery may have become runnable (or the intake closes): take() again then. */
  wait(): PromiseLike<void> {
    return this.#workers;
  }

  /** Deliveries waiting for a worker. */
  get waiting(): number {
    return this.#waiting.length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A worker finished `p`: its key is free, and a delivery that waited for it may run. */
  done(p: Pending): void {
    this.#inFlight--;
    if (p.key !== undefined) this.#busyKeys.delete(p.key);
    if (this.#inFlight === 0) this.#idle?.();
    if (this.#waiting.length > 0) this.#workers.wakeOne();
  }

  /** Forgets the deliveries not started (they came on a lost channel, or the processor is closing). */
  drop(): void {
    this.#waiting = [];
  }

  /** Takes nothing more, wakes every waiting worker (they stop), and resolves once nothing is in flight. */
  close(): Promise<void> {
    this.#closed = true;
    this.#waiting = [];
    this.#workers.wakeAll();
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
}
