import { isThenable } from '../../microthreads/thread.js';
import { HandlerTimeout } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Yielded } from '../../microthreads/thread.js';

import { direct, relay } from '../../microthreads/relay.js';
import type { Outcome } from './outcome.js';
import { rpcHandler } from './registry.js';
import { ended, type Next, type Ran, type Scoped } from './state.js';

/** The longest delay a Node timer takes (a longer one fires after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * How long something run on a delivery's behalf may take: a whole run
 * (idempotency store, schema, middleware, handlers) or one step of a stream.
 * The one implementation of a time limit in the delivery path.
 *
 * One timer per limit, made at the first wait (a run that never waits on a
 * promise costs no timer), cleared by {@link clear}. Waits are sequential
 * (a run is one generator), so one slot holds the wait to fail at expiry.
 */
export class TimeLimit {
  readonly endAt: number;
  #error: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reject: ((err: Error) => void) | undefined;
  #done = false;

  constructor(
    ms: number,
    private readonly make: () => Error,
    /** Told once, when the limit passes (the run's scope fails, its signal aborts). */
    private readonly onExpire?: (err: Error) => void,
  ) {
    this.endAt = Date.now() + ms;
  }

  /** The limit's error, once it passed (made once). */
  get error(): Error {
    return (this.#error ??= this.make());
  }

  get passed(): boolean {
    return this.#error !== undefined || Date.now() >= this.endAt;
  }

  /** Runs the expiry now, if the time is up (a wait that never came to a timer). */
  #expire(): void {
    if (this.#done) return;
    this.#done = true;
    const err = this.error;
    this.onExpire?.(err);
    const reject = this.#reject;
    this.#reject = undefined;
    reject?.(err);
  }

  /**
   * `p`, or this limit's error once it passes. `p` itself cannot be stopped:
   * when it settles later, a failure of it is logged at debug (never an
   * unhandled rejection) and its value ignored.
   */
  wait<T>(p: PromiseLike<T>, log: Logger, about: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.passed) {
        this.#expire();
        reject(this.error);
        abandon(p, log, about);
        return;
      }
      this.#reject = reject;
      if (!this.#timer) this.#arm();
      p.then(
        (v) => {
          if (this.#reject === reject) this.#reject = undefined;
          resolve(v);
        },
        (e: unknown) => {
          if (this.#reject === reject) this.#reject = undefined;
          if (this.#error !== undefined) log.debug({ err: e, about }, `${about}: failed after its time limit; ignored`);
          reject(e);
        },
      );
    });
  }

  /**
   * The timer of the expiry. A limit of `Infinity` (no limit) has none; one
   * past what a timer holds (2^31 - 1 ms) waits in steps, since Node fires a
   * longer timer after 1 ms.
   */
  #arm(): void {
    const left = this.endAt - Date.now();
    if (left === Number.POSITIVE_INFINITY) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (Date.now() < this.endAt) this.#arm();
        else this.#expire();
      },
      Math.min(MAX_TIMER_MS, Math.max(0, left)),
    );
  }

  /** The run ended: no expiry from now on. */
  clear(): void {
    this.#done = true;
    this.#reject = undefined;
    if (this.#timer) clearTimeout(this.#timer);
  }

  /** Expires now, whatever the clock says (the run's failure is known already). */
  expireNow(): void {
    this.#expire();
  }
}

function abandon(p: PromiseLike<unknown>, log: Logger, about: string): void {
  p.then(undefined, (e: unknown) => log.debug({ err: e, about }, `${about}: failed after its time limit; ignored`));
}

/**
 * Drives `gen` (a run, or part of one; `first`: its first step, taken already) under `limit`: each promise it waits
 * on races the limit, and it is not resumed once the limit passed. At expiry
 * it is closed from outside (`return()`, so every `finally` on the way runs,
 * a generator handler's included) and the limit's error is thrown: a handler
 * cannot catch its own time limit and go on.
 */
export function within<T>(
  limit: TimeLimit,
  gen: Generator<Yielded, T, unknown>,
  log: Logger,
  about: string,
  first?: IteratorResult<Yielded, T>,
): Generator<Yielded, T, unknown> {
  return relay(
    gen,
    direct,
    (v) => (isThenable(v) ? limit.wait(v, log, about) : v),
    () => {
      if (!limit.passed) return;
      limit.expireNow();
      throw limit.error;
    },
    first,
  );
}

/**
 * A run's time limit for `d` (ms): the longest of its handlers' limits (an
 * RPC's: its handler's), where a handler without `timeoutMs` has the
 * processor's `handlerTimeoutMs`: a quick handler's short limit must not cut
 * short a sibling that never asked for one.
 */
export function runLimitMs(d: Scoped): number {
  const processorMs = d.parts.dispatch.handlerTimeoutMs;
  if (d.body.category === 'rpc') return rpcHandler(d.handlers)?.tag.timeoutMs ?? processorMs;
  let ms: number | undefined;
  for (const h of d.handlers) {
    const own = h.tag.timeoutMs ?? processorMs;
    if (ms === undefined || own > ms) ms = own;
  }
  return ms ?? processorMs;
}

/**
 * Stage: the run's time limit, around everything done in the run (schema,
 * middleware, handlers). At expiry the run's scope fails (its signal aborts,
 * its sends are refused) and the run ends with `HandlerTimeout`. The limit is
 * {@link runLimitMs}'s.
 */
export function timeLimit(d: Scoped, next: Next): Ran {
  const started = Date.now();
  const run = next(d);
  // Most runs never wait (a plain handler): they end in the call, or in the first step, and need no timer, no limit
  // object. Only a run that waits is driven under the limit, counted from its start.
  if (ended(run)) return run;
  const first = run.next();
  if (first.done) return first.value;
  const body = d.body;
  const ctx = d.parts.dispatch;
  const limitMs = runLimitMs(d);
  const scope = d.scope;
  const what = `${body.type}/${body.name}`;
  const limit = new TimeLimit(
    limitMs - (Date.now() - started),
    () => new HandlerTimeout(what, limitMs),
    (err) => scope.fail(err),
  );
  return limited(limit, within(limit, run, ctx.log, `handler for ${what}`, first));
}

function* limited(limit: TimeLimit, run: Generator<Yielded, Outcome, unknown>): Generator<Yielded, Outcome, unknown> {
  try {
    return yield* run;
  } finally {
    limit.clear();
  }
}
