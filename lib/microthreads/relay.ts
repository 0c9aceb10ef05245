import type { Yielded } from './thread.js';

/**
 * Drives `gen` from inside another generator, as `yield*` would, with hooks
 * around it: `resume` runs each step of it (a handler's inside its delivery's
 * scope), `up` changes what it yields on the way to the scheduler (a wait
 * raced against a time limit), and `after` runs once the scheduler resumes it
 * and may end it by throwing (the time limit passed). However it ends from
 * outside, `gen` is closed through `resume`, so its `finally` blocks run.
 */
export function* relay<T>(
  gen: Generator<Yielded, T, unknown>,
  resume: (step: () => IteratorResult<Yielded, T>) => IteratorResult<Yielded, T>,
  up?: (v: Yielded) => Yielded,
  after?: () => void,
  /** Its first step, when the caller took it already. */
  first?: IteratorResult<Yielded, T>,
): Generator<Yielded, T, unknown> {
  let input: unknown;
  let error: unknown;
  let failed = false;
  let done = false;
  let taken = first;
  try {
    for (;;) {
      const r = taken ?? resume(() => (failed ? gen.throw(error) : gen.next(input)));
      taken = undefined;
      failed = false;
      if (r.done) {
        done = true;
        return r.value;
      }
      try {
        input = yield up ? up(r.value) : r.value;
      } catch (err) {
        error = err;
        failed = true;
      }
      after?.();
    }
  } finally {
    if (!done) resume(() => gen.return(undefined as T));
  }
}

/** Runs a step as it is. */
export const direct = <R>(step: () => R): R => step();
