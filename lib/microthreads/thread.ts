/** Returned from `step()` to end the thread. */
export const STOP: unique symbol = Symbol('postage.STOP');
export type Stop = typeof STOP;

/** What a thread's generator yields: nothing (keep going) or a promise to park on. */
export type Yielded = void | undefined | PromiseLike<unknown>;

/** A step may return nothing, `STOP`, or be a generator that yields promises. */
export type StepResult = void | undefined | Stop | Generator<Yielded, unknown, unknown>;

/**
 * Whether `v` is a thenable (Promises/A+: an object or a function with a
 * `then` method): what a thread yields to wait on, and what a handler or a
 * middleware may return. The one test of it in the library. @internal
 */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === 'object' || typeof v === 'function') &&
    v !== null &&
    typeof (v as PromiseLike<unknown>).then === 'function'
  );
}

/**
 * Whether `v` is a generator to drive: `next` and `throw` both (a handler's
 * result that merely has a `next` method, a linked-list node, is a value).
 * The one test of it in the library. @internal
 */
export function isGenerator(v: unknown): v is Generator<Yielded, unknown, unknown> {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Generator).next === 'function' &&
    typeof (v as Generator).throw === 'function'
  );
}

/**
 * A cooperative thread: `create()` once, then `step()` again and again.
 *
 * @example
 * class Counter extends MicroThread {
 *   n = 0;
 *   *step() { this.n++; if (this.n === 3) return STOP; yield sleep(10); }
 * }
 */
export class MicroThread {
  /** Shown in logs; defaults to the class name. */
  name: string = this.constructor.name;
  /** The scheduler this thread was added to, for threads that start others beside them. @internal */
  scheduler: { addMicrothread(thread: MicroThread): void } | undefined;

  /** Runs once, when the thread is added to a scheduler. */
  create(): void {}

  /** Runs again and again; return `STOP` (or throw `StopThread`) to end the thread. */
  step(): StepResult {
    return undefined;
  }

  /** Releases what the thread holds (a processor closes its channel); a stopping scheduler awaits it. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** The generator the scheduler drives: `create()`, yield, then `step()` + yield forever. */
  *main(): Generator<Yielded, void, unknown> {
    this.create();
    yield;
    for (;;) {
      const r = this.step();
      if (r === STOP) return;
      if (r !== undefined && isGenerator(r)) {
        if ((yield* r) === STOP) return;
      }
      yield;
    }
  }
}

/**
 * What kind of component an object is, across copies of the library (an ESM
 * and a CommonJS build in one process, a Nest app compiled to CommonJS under
 * the ESM CLI), where `instanceof` says no: 'thread', or 'processor'.
 */
export const COMPONENT_KIND = Symbol.for('postage-ts.componentKind');
Object.defineProperty(MicroThread.prototype, COMPONENT_KIND, { value: 'thread', writable: true });

/** Whether `v` is a microthread of any copy of postage-ts. */
export function isMicroThread(v: unknown): v is MicroThread {
  return (
    v instanceof MicroThread ||
    (typeof v === 'object' && v !== null && typeof (v as Record<symbol, unknown>)[COMPONENT_KIND] === 'string')
  );
}

/** A thread made from a plain generator function, for one-off tasks. */
export class FunctionThread extends MicroThread {
  readonly #body: () => Generator<Yielded, unknown, unknown>;
  constructor(body: () => Generator<Yielded, unknown, unknown>, name = body.name || 'FunctionThread') {
    super();
    this.#body = body;
    this.name = name;
  }
  override *main(): Generator<Yielded, void, unknown> {
    yield* this.#body();
  }
}
