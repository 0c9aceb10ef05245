import type { ConsumeMessage } from 'amqplib';
import type { AmqpPorts } from './delivery/amqp-ports.js';
import type { ExchangeLike } from '../topology/exchange.js';
import type { QueueSpec } from '../topology/topology.js';

/**
 * What the library's own parts reach of a consumer beyond its public members: its delivery ports on the broker, and
 * what a processor, its presence queue and its partitions ask of it. Reached with {@link consumerInternals}, which the
 * package does not export (nor this module), so that the class shows only what it documents.
 */
export interface ConsumerInternals {
  /** The consumer as source and settler of deliveries, with the copies and replies that go out on its connection. */
  readonly ports: AmqpPorts;
  /**
   * Where a delivery consumed on a channel of someone else's came from (a partitioned processor's partition
   * channels), so that a delay sends it back there.
   */
  foreignQueueOf: ((msg: ConsumeMessage) => string | undefined) | undefined;
  /** The queue a delivery came from, while its channel is the current one (or a partition's). */
  queueOf(msg: ConsumeMessage): string | undefined;
  /** The name a queue spec has on the current channel (the broker's, for a server-named spec object). */
  nameOf(spec: QueueSpec): string | undefined;
  /** Makes a processor's close run when the consumer's shared connection closes, instead of the consumer's own. */
  closeWith(owner: () => Promise<void>): void;
  /**
   * Binds exchange `destination` to `source` with `key`, now and after every reconnection: how a partitioned
   * processor's partitions get what its queue was bound to.
   */
  exchangeBind(destination: ExchangeLike, source: ExchangeLike, key: string): Promise<void>;
  /** Makes `close()` close the channel without cancelling its consumers first (a partitioned processor's close). */
  holdConsumersUntilClose(): void;
  /**
   * The broker cancelled a consumer of `queue` on a channel of someone else's (a partition's): said as for the
   * consumer's own queues (a warning, `consumerCancelled`, the status `reconnecting`), then the queue and its bindings
   * declared again on the consumer's channel and `consume` called, with backoff, while `live()` holds.
   */
  recoverQueue(queue: string, consume: () => Promise<void>, live: () => boolean): void;
}

// Keyed by any object, not by GenericConsumer: the consumer imports this module, and this one stays below it.
const kept = new WeakMap<object, ConsumerInternals>();

/** What the library's own parts reach of `consumer` (see {@link ConsumerInternals}). */
export function consumerInternals(consumer: object): ConsumerInternals {
  const internals = kept.get(consumer);
  if (!internals) throw new TypeError('not a GenericConsumer (or one still being constructed)');
  return internals;
}

/** Called once by each consumer's constructor. */
export function keepInternals(consumer: object, internals: ConsumerInternals): void {
  kept.set(consumer, internals);
}
