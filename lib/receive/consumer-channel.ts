import type { Channel, ConsumeMessage } from 'amqplib';
import { randomBytes } from 'node:crypto';
import { flushChannel } from '../transport/amqplib-adapter.js';
import { AckBatcher } from './acks.js';

const CONSUMER_TAG_PREFIX = `${process.pid}.${randomBytes(4).toString('hex')}`;
let nextConsumerTag = 0;

/**
 * One channel a consumer consumes and settles on: its consumers, by queue, and its settles. A consumer takes a new one
 * after every reconnection, and a delivery is settled on the channel it came on or nowhere (the broker redelivers it).
 */
export class ConsumerChannel {
  /** The consumer tag of each queue consumed here. */
  readonly tags = new Map<string, string>();
  /** Settles deliveries of this channel, batching acks. */
  readonly acks: AckBatcher;
  /** Every consumer tag started here (kept after a cancel, whose deliveries may still be settled). */
  readonly #started = new Set<string>();

  constructor(
    readonly ch: Channel,
    readonly prefetch: number,
  ) {
    // Half the prefetch window: the broker can send the next half while handlers work through the first.
    this.acks = new AckBatcher(ch, prefetch > 0 ? Math.max(1, Math.floor(prefetch / 2)) : 256, () => flushChannel(ch));
  }

  /** Whether `msg` came on this channel (one from channel.get() has no consumer tag: it can only be from here). */
  owns(msg: ConsumeMessage): boolean {
    const tag = msg.fields.consumerTag as string | undefined;
    return tag === undefined || this.#started.has(tag);
  }

  /** The queue a delivery of this channel came from. */
  queueOf(msg: ConsumeMessage): string | undefined {
    const tag = msg.fields.consumerTag as string | undefined;
    for (const [queue, t] of this.tags) if (t === tag) return queue;
    return undefined;
  }

  /** Consumes `queue`: each delivery to `deliver`, and `cancelled` when the broker cancels the consumer. */
  async consume(
    queue: string,
    deliver: (msg: ConsumeMessage) => void,
    cancelled: (tag: string) => void,
  ): Promise<void> {
    // Our own tag, known before the first delivery: deliveries can arrive in the same read as consume-ok, before the
    // promise settles.
    const consumerTag = `postage.${CONSUMER_TAG_PREFIX}.${nextConsumerTag++}`;
    this.#started.add(consumerTag);
    await this.ch.consume(
      queue,
      (msg) => {
        if (msg) deliver(msg);
        // amqplib's word for the broker's basic.cancel: the queue was deleted (or its node went).
        else cancelled(consumerTag);
      },
      { consumerTag },
    );
    this.tags.set(queue, consumerTag);
  }

  /** Cancels every consumer; deliveries in flight can still be settled. */
  async cancelAll(): Promise<void> {
    const tags = [...this.tags.values()];
    this.tags.clear();
    for (const t of tags) await this.ch.cancel(t).catch(() => undefined);
  }

  /**
   * Resolves once the broker has processed every ack and reject sent so far: they go out now, followed by a
   * basic.qos (the same prefetch again), and a channel's frames are handled in order, so its qos-ok vouches for them.
   */
  async settled(): Promise<void> {
    this.acks.flush();
    await this.ch.prefetch(this.prefetch).catch(() => undefined);
  }
}
