import { ExitScheduler, StopThread } from '../errors.js';
import { componentLogger, type Logger } from '../log.js';
import { isThenable, MicroThread, type Yielded } from './thread.js';
import { microtask } from './microtask.js';
import { WakeList } from './wake-list.js';

export interface MicroSchedulerOptions {
  /** End `run()` when no threads are left. @default false */
  autoquit?: boolean;
  /** Shown in logs. @default 'MicroScheduler' */
  name?: string;
  /** Longest stretch of steps (ms) before Node's I/O gets a turn. @default 10 */
  sliceMs?: number;
  /** Called instead of logging when a thread throws; the thread is dropped either way. */
  onThreadError?: (thread: MicroThread, error: unknown) => void;
  logger?: Logger;
}

interface Entry {
  thread: MicroThread;
  gen: Generator<Yielded, void, unknown>;
  value: unknown;
  error: unknown;
  hasError: boolean;
  dead: boolean;
  parked: boolean;
  /** Its wake-ups from a park, made once: a thread parks on every delivery it waits for. */
  onValue: (value: unknown) => void;
  onError: (error: unknown) => void;
}

const CHECK_EVERY = 4096;

/**
 * A round-robin scheduler for {@link MicroThread}s on Node's event loop.
 * Threads that yield a promise are parked until it settles; the others run
 * in rounds, and every `sliceMs` the loop hands control back to Node.
 */
export class MicroScheduler extends MicroThread {
  readonly autoquit: boolean;
  /** Steps taken so far (for benchmarks and metrics). */
  steps = 0;
  readonly #sliceMs: number;
  readonly #onThreadError: MicroSchedulerOptions['onThreadError'];
  readonly #log: Logger;
  #ready: Entry[] = [];
  /** Every live thread, ready or parked, in the order they were added. */
  readonly #threads = new Set<Entry>();
  #stopped = false;
  /** Every thread's close(), from the moment the scheduler stopped. */
  #closed: Promise<void> | undefined;
  #exitRequested = false;
  /** Where the scheduler waits while every thread is parked (run(), or the scheduler this one is a thread of). */
  readonly #idle = new WakeList();

  constructor(options: MicroSchedulerOptions = {}) {
    super();
    this.autoquit = options.autoquit ?? false;
    this.name = options.name ?? 'MicroScheduler';
    this.#sliceMs = options.sliceMs ?? 10;
    this.#onThreadError = options.onThreadError;
    this.#log = options.logger ?? componentLogger('scheduler', this.name);
  }

  /** Threads still alive (ready or parked). */
  get size(): number {
    return this.#threads.size;
  }

  /** Adds a thread and runs its `create()` at once. */
  addMicrothread(thread: MicroThread): void {
    thread.scheduler = this;
    const entry: Entry = {
      thread,
      gen: thread.main(),
      value: undefined,
      error: undefined,
      hasError: false,
      dead: false,
      parked: false,
      onValue: (value) => this.#unpark(entry, value, undefined, false),
      onError: (error) => this.#unpark(entry, undefined, error, true),
    };
    this.#threads.add(entry);
    // The first resume runs create() up to main()'s first yield.
    if (this.#resume(entry)) {
      this.#ready.push(entry);
      this.#wakeUp();
    }
  }

  /**
   * Ends the scheduler from outside: every thread is returned (newest first)
   * so its `finally` blocks run, then closed. Resolves once every one has
   * closed (a processor: its handler in flight done, its channel closed);
   * `run()` resolves only then too.
   */
  stop(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#stopped = true;
    const all = [...this.#threads].reverse();
    this.#ready = [];
    this.#threads.clear();
    const closing: Array<Promise<void>> = [];
    for (const e of all) {
      e.dead = true;
      try {
        e.gen.return(undefined);
      } catch (err) {
        this.#log.warn({ thread: e.thread.name, err }, 'thread failed while stopping');
      }
      closing.push(this.#close(e.thread));
    }
    this.#closed = Promise.all(closing).then(() => undefined);
    this.#wakeUp();
    return this.#closed;
  }

  async #close(thread: MicroThread): Promise<void> {
    try {
      await thread.close();
    } catch (err) {
      this.#log.warn({ thread: thread.name, err }, 'thread failed to close');
    }
  }

  /** The scheduler as a generator: one round per resume, so it can be a thread of another scheduler. */
  override *main(): Generator<Yielded, void, unknown> {
    try {
      for (;;) {
        if (this.#stopped) return;
        if (this.#ready.length === 0) {
          // Nothing ready: every live thread is parked.
          if (this.#threads.size === 0 && this.autoquit) return;
          yield this.#idle;
          continue;
        }
        this.#round();
        if (this.#exitRequested) return;
        yield;
      }
    } finally {
      void this.stop();
    }
  }

  /** Drives `main()` on the event loop until the scheduler stops. */
  run(): Promise<void> {
    // Callbacks, not awaits: a scheduler waits for work once per delivery, and an await is garbage each time.
    return new Promise<void>((resolve, reject) => {
      const gen = this.main();
      let since = performance.now();
      let budget = CHECK_EVERY;
      const pump = (): void => {
        try {
          for (;;) {
            const before = this.steps;
            const r = gen.next();
            if (r.done) {
              this.#closed!.then(resolve, reject);
              return;
            }
            if (r.value !== undefined) {
              r.value.then(resume, reject);
              return;
            }
            budget -= this.steps - before;
            if (budget <= 0) {
              budget = CHECK_EVERY;
              if (performance.now() - since >= this.#sliceMs) {
                setImmediate(resumeNow);
                return;
              }
            }
          }
        } catch (err) {
          reject(err);
        }
      };
      const resumeNow = (): void => {
        since = performance.now();
        pump();
      };
      // Woken from inside whatever unparked a thread (a delivery's callback, addMicrothread): run after it, as an await
      // would.
      const resume = (): void => microtask(resumeNow);
      pump();
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** As a thread of another scheduler: stopping the outer one stops this one and its threads. */
  override close(): Promise<void> {
    return this.stop();
  }

  #wakeUp(): void {
    this.#idle.wakeOne();
  }

  #round(): void {
    const q = this.#ready;
    const n = q.length;
    let w = 0;
    for (let i = 0; i < n; i++) {
      const e = q[i];
      if (this.#resume(e)) q[w++] = e;
    }
    this.steps += n;
    // Threads added during the round queue behind the survivors.
    const len = q.length;
    for (let j = n; j < len; j++) q[w++] = q[j];
    // Popped, not cut with \`length = w\`: cutting to 0 drops the array's storage, and the next push allocates it
    // again.
    while (q.length > w) q.pop();
  }

  /** Resumes a thread once; true when it stays ready. */
  #resume(e: Entry): boolean {
    let r: IteratorResult<Yielded, void>;
    try {
      if (e.hasError) {
        const err = e.error;
        e.hasError = false;
        e.error = undefined;
        r = e.gen.throw(err);
      } else {
        const v = e.value;
        e.value = undefined;
        r = e.gen.next(v);
      }
    } catch (err) {
      e.dead = true;
      this.#threads.delete(e);
      this.#failed(e.thread, err);
      return false;
    }
    if (r.done) {
      e.dead = true;
      this.#threads.delete(e);
      return false;
    }
    const y = r.value;
    if (y !== undefined && isThenable(y)) {
      this.#park(e, y);
      return false;
    }
    return true;
  }

  #park(e: Entry, p: PromiseLike<unknown>): void {
    e.parked = true;
    p.then(e.onValue, e.onError);
  }

  #unpark(e: Entry, value: unknown, error: unknown, hasError: boolean): void {
    if (e.dead || !e.parked) return;
    e.parked = false;
    e.value = value;
    e.error = error;
    e.hasError = hasError;
    this.#ready.push(e);
    this.#wakeUp();
  }

  #failed(thread: MicroThread, err: unknown): void {
    // By code, not class: a thread from another copy of the library (a CommonJS component under the ESM CLI) throws its
    // own.
    if (err instanceof StopThread || signalled(err, 'STOP_THREAD')) {
      this.#log.debug({ thread: thread.name }, 'thread stopped');
    } else if (err instanceof ExitScheduler || signalled(err, 'EXIT_SCHEDULER')) {
      this.#log.debug({ thread: thread.name }, 'thread asked the scheduler to exit');
      this.#exitRequested = true;
    } else if (this.#onThreadError) {
      this.#onThreadError(thread, err);
    } else {
      this.#log.error({ thread: thread.name, err }, `microthread ${thread.name} failed and was dropped`);
    }
  }
}

/** Whether `err` is a postage-ts control signal with this code, from whichever copy of the library threw it. */
function signalled(err: unknown, code: 'STOP_THREAD' | 'EXIT_SCHEDULER'): boolean {
  return err instanceof Error && (err as { code?: unknown }).code === code;
}
