import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Encoder } from '../../envelope/encoder.js';
import type { Logger } from '../../log.js';
import type { TopologyRegistry } from '../../transport/topology-registry.js';
import type { AckBatcher } from '../acks.js';

/**
 * What the AMQP ports need of the consumer whose deliveries they answer and copy: its channel and connection as they
 * are now (each may go and come back), and the settles of the channel a delivery came on. The consumer hands this
 * over once, at construction; nothing else reaches those.
 */
export interface ConsumerLine {
  readonly log: Logger;
  readonly encoder: Encoder;
  /** The connection's topology (declared once per connection, replayed after a reconnection). */
  topology(): TopologyRegistry;
  /** The connection, while there is one. */
  model(): ChannelModel | undefined;
  /** The channel deliveries come on, while it is open. */
  channel(): Channel | undefined;
  /** The settles of the channel `msg` came on, or undefined where that channel is gone (the broker redelivers). */
  settleOn(msg: ConsumeMessage): AckBatcher | undefined;
  /** The queue a delivery came from, while its channel is open. */
  queueOf(msg: ConsumeMessage): string | undefined;
  /** Resolves once the broker has processed every settle sent so far on the channel. */
  settled(): Promise<void>;
}
