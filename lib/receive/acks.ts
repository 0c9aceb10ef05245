import type { ConsumeMessage } from 'amqplib';
import { microtask } from '../microthreads/microtask.js';

/** What the batcher needs of a channel (an amqplib Channel fits). */
export interface SettleChannel {
  ack(msg: ConsumeMessage, allUpTo?: boolean): void;
  reject(msg: ConsumeMessage, requeue?: boolean): void;
}

/**
 * Settles the deliveries of one channel, folding runs of acks into one
 * `basic.ack` with `multiple` set.
 *
 * A multiple ack settles every delivery up to its tag, so it is only sent
 * for a tag when every lower tag on the channel has been settled through
 * this batcher: a delivery still in a handler, or one a user holds, is never
 * acked by someone else's batch. Anything out of that order goes out alone
 * at once. A batch goes out when `maxBatch` acks are waiting, before any
 * reject, on `flush()`, and otherwise at the end of the current turn of the
 * event loop (a microtask), so an ack is never held across I/O.
 *
 * Delaying an ack can only cause a redelivery, never a loss: the broker
 * keeps the message until the ack arrives.
 * @internal
 */
export class AckBatcher {
  /** Every tag up to this one is settled. Tags start at 1 on a new channel. */
  #settledThrough = 0;
  /** Tags settled ahead of the contiguous run. */
  readonly #early = new Set<number>();
  /** The newest contiguous ack not sent yet; acking it with `multiple` covers the run. */
  #pending: ConsumeMessage | undefined;
  #waiting = 0;
  /** Sends that must follow the acks waiting in #pending (see afterSettled). */
  #after: Array<() => void> = [];
  #scheduled = false;
  readonly #flushSoon = () => {
    this.#scheduled = false;
    this.flush();
  };

  constructor(
    readonly channel: SettleChannel,
    readonly maxBatch: number,
    /** Puts what was just settled (and sent after it) on the wire now. */
    private readonly flushed: () => void = () => undefined,
  ) {}

  ack(msg: ConsumeMessage): void {
    const tag = msg.fields.deliveryTag;
    if (tag !== this.#settledThrough + 1) {
      this.flush();
      this.channel.ack(msg, false);
      this.#settle(tag);
      return;
    }
    this.#settle(tag);
    this.#pending = msg;
    if (++this.#waiting >= this.maxBatch) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      microtask(this.#flushSoon);
    }
  }

  reject(msg: ConsumeMessage, requeue: boolean): void {
    this.flush();
    this.channel.reject(msg, requeue);
    this.#settle(msg.fields.deliveryTag);
  }

  /**
   * Runs `send` once every settle made so far has gone to the channel: at once
   * when none is waiting, else right after the batch that carries them. An RPC
   * reply goes out this way, after its request's ack, so a reply the broker
   * cannot take (it closes the connection for a malformed direct reply-to
   * name) cannot bring its request back.
   */
  afterSettled(send: () => void): void {
    if (this.#pending) this.#after.push(send);
    else send();
  }

  /** Sends the waiting acks now, then what waited for them. */
  flush(): void {
    const msg = this.#pending;
    if (!msg) return;
    this.#pending = undefined;
    this.#waiting = 0;
    const after = this.#after;
    if (after.length > 0) this.#after = [];
    try {
      this.channel.ack(msg, true);
    } catch {
      // The channel closed meanwhile (this may run in a microtask, where a throw
      // would crash the process): its unacked deliveries go back to their queues,
      // and what waited for the ack is dropped with them (the requests come back).
      return;
    }
    for (const send of after) send();
    this.flushed();
  }

  #settle(tag: number): void {
    if (tag === this.#settledThrough + 1) {
      this.#settledThrough = tag;
      const early = this.#early;
      if (early.size > 0) {
        while (early.delete(this.#settledThrough + 1)) this.#settledThrough++;
      }
    } else if (tag > this.#settledThrough) this.#early.add(tag);
  }
}
