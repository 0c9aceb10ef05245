import { createHash } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { countIn } from '../../scope/context.js';

/** How many redelivered messages are remembered at most; the oldest are forgotten first. */
const REMEMBERED = 10_000;

/**
 * Counts how often one message has been delivered to this process, so that a
 * message that keeps coming back unsettled (its connection drops, or its reply
 * closes the connection, each time) can be taken out of the loop.
 *
 * Only redelivered messages are remembered, and a message is forgotten once it
 * is settled. A quorum queue's `x-delivery-count` header, where there is one,
 * counts deliveries to every consumer, and wins when it says more.
 * @internal
 */
export class DeliveryCounter {
  readonly #seen = new Map<string, number>();

  /** This delivery's number: 1 for a first delivery, 2 for the first redelivery… */
  count(msg: ConsumeMessage): number {
    if (!msg.fields.redelivered) return 1;
    const key = keyOf(msg);
    // A redelivery this process did not see the first delivery of counts as the second.
    const n = (this.#seen.get(key) ?? 1) + 1;
    this.#seen.delete(key);
    this.#seen.set(key, n);
    if (this.#seen.size > REMEMBERED) this.#seen.delete(this.#seen.keys().next().value as string);
    const header = Number((msg.properties.headers as Record<string, unknown> | undefined)?.['x-delivery-count']);
    return Number.isInteger(header) && header + 1 > n ? header + 1 : n;
  }

  /** The delivery was settled: its message will not come back. */
  forget(msg: ConsumeMessage): void {
    if (msg.fields.redelivered && this.#seen.size > 0) this.#seen.delete(keyOf(msg));
  }
}

/** A message's identity across deliveries: its id, else a digest of what makes it that message. */
function keyOf(msg: ConsumeMessage): string {
  const id = msg.properties.messageId as string | undefined;
  if (id) return `id:${id}`;
  return createHash('sha1')
    .update(String(msg.properties.correlationId ?? ''))
    .update('\0')
    .update(msg.fields.routingKey)
    .update('\0')
    .update(msg.content)
    .digest('base64');
}

/**
 * The header a copy carries with the deliveries its message had before it was made (`redeliveryCount: 'header'`).
 * @internal
 */
export const DELIVERIES_HEADER = 'postage-deliveries';

/** Deliveries before this copy, from its header (0 without one). @internal */
export function deliveriesBefore(msg: ConsumeMessage): number {
  return countIn(msg.properties.headers as Record<string, unknown> | undefined, DELIVERIES_HEADER);
}

/** Whether the queue counts deliveries itself (a quorum queue's `x-delivery-count`). @internal */
export function queueCounts(msg: ConsumeMessage): boolean {
  return (msg.properties.headers as Record<string, unknown> | undefined)?.['x-delivery-count'] !== undefined;
}
