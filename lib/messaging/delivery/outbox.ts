import type { Logger } from '../../log.js';
import type { Yielded } from '../../microthreads/thread.js';
import type { Outcome } from './outcome.js';

/** Outcomes after which what the handlers sent goes out: they succeeded (an exit or a restart acks too). */
export function succeeded(outcome: Outcome): boolean {
  return outcome.kind === 'ack' || outcome.kind === 'done' || outcome.kind === 'exit' || outcome.kind === 'restart';
}

/**
 * Publishes the sends a successful delivery's handlers made (its outbox) and
 * waits for the broker to confirm them all, so that the delivery is acked
 * only after them. When one fails, the delivery goes back to its queue
 * instead (handled again, counted toward `maxDeliveries`): the sends that did
 * go out will go out again, which is why receivers drop duplicates by
 * message id.
 */
export function* sendHeld(held: ReadonlyArray<() => Promise<void>>, outcome: Outcome, log: Logger, about: Record<string, unknown>): Generator<Yielded, Outcome, unknown> {
  try {
    yield Promise.all(held.map((send) => send()));
    return outcome;
  } catch (err) {
    log.error({ ...about, err, sends: held.length }, `a message its handler sent could not be published; the delivery goes back to its queue to be handled again`);
    return { kind: 'requeue', reason: `a send failed: ${(err as Error)?.message ?? String(err)}` };
  }
}
