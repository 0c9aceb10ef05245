import type { Yielded } from '../../microthreads/thread.js';
import type { Outcome } from './outcome.js';
import type { DeliveryEvent } from './public.js';

export type { DeliveryEvent } from './public.js';
import { outcomeOf, type Next, type RawDelivery } from './state.js';

/** Stage: once the delivery is settled (or settling threw an exit), its observers are told what became of it. */
export function* observe(d: RawDelivery, next: Next<RawDelivery>): Generator<Yielded, Outcome, unknown> {
  try {
    return yield* outcomeOf(next(d));
  } finally {
    if (d.parts.observers.size > 0) tell(d);
  }
}

function tell(d: RawDelivery): void {
  const { body, outcome } = d;
  const event: DeliveryEvent = {
    category: body?.category,
    type: body?.type,
    name: body?.name,
    messageId: d.msg.properties.messageId as string | undefined,
    outcome: outcomeName(outcome),
    error:
      outcome.kind === 'reject' || outcome.kind === 'deadLetter' || outcome.kind === 'defer' ? outcome.err : undefined,
    deferMs: outcome.kind === 'defer' ? outcome.ms : undefined,
    replied: outcome.reply !== undefined,
  };
  for (const l of d.parts.observers) {
    try {
      l(event);
    } catch (err) {
      d.parts.log.warn({ err }, 'a delivery observer failed');
    }
  }
}

function outcomeName(o: Outcome): DeliveryEvent['outcome'] {
  switch (o.kind) {
    case 'ack':
    case 'done':
      return 'acked';
    case 'reject':
      return 'rejected';
    case 'deadLetter':
      return 'dead-lettered';
    case 'defer':
      return 'deferred';
    case 'requeue':
      return 'requeued';
    case 'leave':
      return 'left';
    case 'exit':
      return 'exited';
    case 'restart':
      return 'restarted';
  }
}
