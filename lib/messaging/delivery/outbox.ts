import { BrokerError } from '../../errors.js';
import type { Yielded } from '../../microthreads/thread.js';
import { MessageResultException } from '../messages.js';
import type { Outcome } from './outcome.js';
import { encodeResult, replyOf } from './reply.js';
import type { DeliveryState, Next } from './state.js';

/** Outcomes after which what the handlers sent goes out: they succeeded (an exit or a restart acks too). */
export function succeeded(outcome: Outcome): boolean {
  return outcome.kind === 'ack' || outcome.kind === 'done' || outcome.kind === 'exit' || outcome.kind === 'restart';
}

/**
 * Stage (with `outbox`): what the successful run's handlers sent is
 * published, and confirmed by the broker, before the delivery is acked; a
 * failed run's sends were dropped with its scope.
 *
 * When a send fails the delivery goes back to its queue instead (handled
 * again, counted toward `maxDeliveries`): the sends that did go out will go
 * out again, which is why receivers drop duplicates by message id. A send no
 * queue takes (`UNROUTABLE`) would fail the same way every time: the delivery
 * fails at once, to the error exchange (or a reject) with that error.
 */
export function* outbox(d: DeliveryState, next: Next): Generator<Yielded, Outcome, unknown> {
  const outcome = yield* next(d);
  // From now on the run's sends (work its handler left running) go out at once.
  const held = d.scope!.takeHeld();
  if (held.length === 0 || !succeeded(outcome)) return outcome;
  const body = d.body!;
  try {
    yield Promise.all(held.map((send) => send()));
    return outcome;
  } catch (err) {
    const { log, dispatch } = d.parts;
    const about = { messageType: body.type, messageName: body.name, messageId: d.scope!.messageId, sends: held.length };
    if (err instanceof BrokerError && err.code === 'UNROUTABLE') {
      log.error(
        { ...about, err },
        `a message the handler for ${body.type}/${body.name} sent reaches no queue: ${err.message}; the delivery fails`,
      );
      const reply = outcome.reply
        ? replyOf(d.scope!, encodeResult(dispatch, new MessageResultException(err.code, err.message)))
        : undefined;
      return dispatch.errorExchange
        ? { kind: 'deadLetter', err, attempts: 1, reply }
        : { kind: 'reject', why: 'failed', err, reply };
    }
    log.error(
      { ...about, err },
      `a message its handler sent could not be published; the delivery goes back to its queue to be handled again`,
    );
    return { kind: 'requeue', reason: `a send failed: ${(err as Error)?.message ?? String(err)}` };
  }
}
