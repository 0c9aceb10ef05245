import { isThenable } from '../../microthreads/thread.js';
import type { Yielded } from '../../microthreads/thread.js';
import { runIn, type DeliveryScope } from '../../scope/context.js';
import { answer } from './dispatch.js';
import type { Outcome } from './outcome.js';
import { compose } from '../../compose.js';
import type { MiddlewareContext } from './parts.js';
import { replyOf } from './reply.js';
import { outcomeOf, type Next, type Scoped } from './state.js';

/**
 * Stage (once `processor.use()` added one): the user's middleware, in the
 * order added, around the handlers; inside the run's scope (so
 * `currentDelivery()` and sends work as in a handler), its time limit and its
 * outbox. A middleware that returns without calling `next()` ends the
 * delivery as handled without running its handlers (an RPC is answered with
 * null, as when a filter skips its handler).
 */
export function* middleware(d: Scoped, next: Next): Generator<Yielded, Outcome, unknown> {
  const scope = d.scope;
  let outcome: Outcome | undefined;
  const ctx: MiddlewareContext = { delivery: scope.info, message: d.body };
  const inner = async (): Promise<void> => {
    outcome = await drive(outcomeOf(next(d)), scope);
  };
  yield runIn(scope, () => compose(d.parts.middleware, ctx, inner, 'middleware', d.parts.log), true);
  if (outcome !== undefined) return outcome;
  if (d.body.category !== 'rpc') return { kind: 'ack' };
  return { kind: 'ack', reply: replyOf(scope, answer(d, null)) };
}

/**
 * Runs the rest of a delivery's way (generators that yield promises, as the
 * scheduler runs them) from inside an async middleware, to a promise. Once
 * the run has failed (its time limit passed while a middleware awaited), it
 * is not resumed but closed, so a generator handler's `finally` runs.
 */
function drive<T>(gen: Generator<Yielded, T, unknown>, scope: DeliveryScope): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const step = (ok: boolean, input: unknown): void => {
      if (scope.failed) {
        try {
          gen.return(undefined as T);
        } catch {
          // Its finally failed: the run is over anyway.
        }
        reject(scope.failure);
        return;
      }
      let r: IteratorResult<Yielded, T>;
      try {
        r = ok ? gen.next(input) : gen.throw(input);
      } catch (err) {
        reject(err);
        return;
      }
      if (r.done) resolve(r.value);
      else if (isThenable(r.value))
        r.value.then(
          (v) => step(true, v),
          (e: unknown) => step(false, e),
        );
      // A bare yield lets the other threads (and I/O) run first, as the scheduler would.
      else setImmediate(step, true, undefined);
    };
    step(true, undefined);
  });
}
