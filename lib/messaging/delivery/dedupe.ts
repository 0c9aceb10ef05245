import type { Yielded } from '../../microthreads/thread.js';
import { isThenable } from './context.js';
import type { Outcome } from './outcome.js';
import { succeeded } from './outbox.js';
import type { Next, Scoped } from './state.js';
import { TimeLimit } from './time-limit.js';

const ACK: Outcome = Object.freeze({ kind: 'ack' });

/**
 * Stage (with `deduplicate`): a message whose id this processor handled
 * already is acked without running its handlers; one handled now is
 * remembered once its sends are confirmed. An RPC is always answered.
 */
export function* dedupe(d: Scoped, next: Next): Generator<Yielded, Outcome, unknown> {
  const body = d.body;
  const id = d.scope.messageId ?? d.foreign?.key;
  if (body.category === 'rpc' || id === undefined) return yield* next(d);
  const key = `${d.parts.component}/${id}`;
  if (yield* ask(d, key, 'seen')) {
    d.parts.log.info(
      { messageType: body.type, messageName: body.name, messageId: id },
      `${body.type}/${body.name} was handled already (same message id); dropped`,
    );
    return ACK;
  }
  const outcome = yield* next(d);
  if (succeeded(outcome)) yield* ask(d, key, 'remember');
  return outcome;
}

/**
 * Asks the idempotency store, within the processor's time limit. A store that
 * fails, or does not answer in time, counts as "not seen": the message is
 * handled twice rather than lost, and the processor goes on.
 */
function* ask(d: Scoped, key: string, what: 'seen' | 'remember'): Generator<Yielded, boolean, unknown> {
  const { log, dispatch } = d.parts;
  const store = d.parts.dedupe;
  // In the stage list only with a store.
  if (!store) return false;
  const ms = dispatch.handlerTimeoutMs;
  const limit = new TimeLimit(ms, () => new Error(`the idempotency store did not answer ${what}() within ${ms} ms`));
  try {
    const r = what === 'seen' ? store.seen(key) : store.remember(key);
    return (
      Boolean(isThenable(r) ? yield limit.wait(r as PromiseLike<unknown>, log, `idempotency ${what}()`) : r) &&
      what === 'seen'
    );
  } catch (err) {
    if (what === 'seen') log.warn({ err, key }, 'the idempotency store failed to answer; handling the message');
    else
      log.warn(
        { err, key },
        'the idempotency store failed to remember a handled message; a duplicate of it would be handled again',
      );
    return false;
  } finally {
    limit.clear();
  }
}
