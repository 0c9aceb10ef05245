import { AmqpCopies } from './copies.js';
import type { ConsumerLine } from './consumer-line.js';
import type { DeliveryPorts, DeliverySource, Settler } from './ports.js';
import { AmqpReplier } from './replier.js';

/**
 * The four delivery ports on a broker: the consumer is the source and settles (bindings, consuming, acks are its
 * job); copies and replies go out on its connection through ports of their own.
 */
export class AmqpPorts implements DeliveryPorts {
  readonly source: DeliverySource;
  readonly settler: Settler;
  readonly copies: AmqpCopies;
  readonly replier: AmqpReplier;

  constructor(consumer: DeliverySource & Pick<Settler, 'ack' | 'reject'>, line: ConsumerLine) {
    this.source = consumer;
    this.settler = {
      ack: (msg) => consumer.ack(msg),
      reject: (msg, requeue) => consumer.reject(msg, requeue),
      settled: () => line.settled(),
    };
    this.copies = new AmqpCopies(line);
    this.replier = new AmqpReplier(line);
  }
}
