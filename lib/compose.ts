import { PostageError } from './errors.js';
import type { Logger } from './log.js';

/**
 * Runs middleware Koa's way: each gets a `next` that runs the rest once, in
 * the order given; the last `next` is `inner`. Shared by a processor's
 * middleware and a producer's.
 *
 * The whole is settled by what the rest did, not by when a middleware
 * returned: a middleware that calls `next()` without awaiting it is waited
 * for until the rest has finished, and a failure of the rest fails the whole
 * even if the middleware caught it (its delivery or send is never settled
 * as done while its handlers or its publish still run, or after they
 * failed). What a middleware throws, or returns rejected, fails it too.
 *
 * No rejection escapes as an unhandledRejection: the promise `next()`
 * returns is marked handled (the whole still sees its failure), and a
 * `next()` called twice, or after its middleware returned, runs nothing,
 * is logged at error naming the middleware, and returns a promise rejected
 * and already handled.
 */
export function compose<C>(
  list: ReadonlyArray<(ctx: C, next: () => Promise<void>) => unknown>,
  ctx: C,
  inner: () => Promise<void>,
  what: string,
  log: Logger,
): Promise<void> {
  const at = (i: number): Promise<void> => {
    if (i === list.length) return inner();
    const mw = list[i];
    let rest: Promise<void> | undefined;
    let returned = false;
    const next = (): Promise<void> => {
      if (returned || rest) {
        const label = `${what} #${i + 1} (${mw.name || 'anonymous'})`;
        const why = returned ? 'after it returned' : 'more than once';
        log.error(
          { middleware: label },
          `${label} called next() ${why}: nothing ran; await next() once, before returning`,
        );
        return handled(Promise.reject(new PostageError(`${label} called next() ${why}`, 'USAGE')));
      }
      rest = handled(invoke(() => at(i + 1)));
      return rest;
    };
    return invoke(() => mw(ctx, next)).then(
      () => {
        returned = true;
        return rest;
      },
      async (err: unknown) => {
        returned = true;
        // The rest runs to its end before the failure is told: nothing of this delivery outlives its outcome.
        await rest?.catch(() => undefined);
        throw err;
      },
    );
  };
  return at(0);
}

/** Calls `fn` and gives what it returns (or throws) as a promise. */
function invoke(fn: () => unknown): Promise<void> {
  try {
    return Promise.resolve(fn()).then(() => undefined);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Marks a promise handled (no unhandledRejection) and gives it back unchanged: its readers still see its outcome. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}
