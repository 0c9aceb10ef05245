import type { ConsumeMessage } from 'amqplib';
import type { Logger } from '../log.js';
import type { GenericConsumer } from './consumer.js';
import { consumerInternals } from './consumer-internals.js';
import { Exchange } from '../topology/exchange.js';
import type { FingerprintDict } from '../envelope/fingerprint.js';
import type { MessageBody } from '../envelope/messages.js';
import type { QueueSpec } from '../topology/topology.js';

/** Where components send each other commands, addressed by Postage's standard keys. */
export class GenericApplicationExchange extends Exchange {
  static override name = 'generic-application-exchange';
  static override type = 'direct';
}

/** Where pings and discovery go: `presence` and `presence@HOST`. */
export class PresenceExchange extends Exchange {
  static override name = 'presence-exchange';
  static override type = 'direct';
}

/**
 * Set (true) on a processor class that answers on presence through queues of its own (GenericApplication's `pid@host`
 * queue): the processor then adds no presence queue. @internal
 */
export const OWN_PRESENCE = Symbol.for('postage-ts.ownPresence');

/**
 * The keys a processor's presence queue is bound with: `presence` and `presence@H` on `presence-exchange`, and on
 * `generic-application-exchange` the fanout addresses `postage ping ADDRESS` and `postage describe ADDRESS` use
 * (`N`, `@H`, `N@H`, `P@H`). Not the round-robin ones: those need a queue shared by every replica.
 */
function presenceKeys(f: FingerprintDict): Array<[typeof Exchange, string]> {
  return [
    [PresenceExchange, 'presence'],
    [PresenceExchange, `presence@${f.host}`],
    [GenericApplicationExchange, f.name],
    [GenericApplicationExchange, `@${f.host}`],
    [GenericApplicationExchange, `${f.name}@${f.host}`],
    [GenericApplicationExchange, `${f.pid}@${f.host}`],
  ];
}

/**
 * A processor's presence: one server-named, exclusive, auto-delete queue of
 * its own (several processors in one process each have one, where a
 * `pid@host` name would collide), bound with {@link presenceKeys} on the
 * processor's consumer, so that it is declared again after a reconnection
 * with the rest of its topology and goes when its consumer is cancelled. Its
 * deliveries never reach the delivery pipeline: `ping` and `describe` are
 * answered here, and anything else (a `quit`, a `restart`) is acked and not
 * acted on. The work queue and its consumer are untouched.
 * @internal
 */
export class Presence {
  /** One spec object for every key: the consumer declares one queue for all of them (a new one per channel). */
  readonly #queue: QueueSpec = { name: '', flags: { durable: false, exclusive: true, autoDelete: true } };
  readonly #keys: Array<[typeof Exchange, string]>;
  /** The routing keys bound, to recognise a presence delivery that came on a lost channel. */
  readonly #routingKeys: Set<string>;

  constructor(
    private readonly consumer: GenericConsumer,
    private readonly fingerprint: FingerprintDict,
    private readonly log: Logger,
    private readonly describe: () => unknown,
  ) {
    this.#keys = presenceKeys(fingerprint);
    this.#routingKeys = new Set(this.#keys.map(([, k]) => k));
  }

  /** The presence queue's name on the current channel (a new one after each reconnection). */
  get queue(): string | undefined {
    return consumerInternals(this.consumer).nameOf(this.#queue);
  }

  /** Declares the queue and binds it; the consumer consumes it with its other queues. */
  async bind(): Promise<void> {
    for (const [exchange, key] of this.#keys) await this.consumer.queueBind(exchange, this.#queue, key);
  }

  /** Whether `msg` is a presence delivery, taken (answered or dropped) here; false leaves it to the pipeline. */
  take(msg: ConsumeMessage): boolean {
    const exchange = msg.fields.exchange;
    if (exchange !== PresenceExchange.name && exchange !== GenericApplicationExchange.name) return false;
    const from = consumerInternals(this.consumer).queueOf(msg);
    // Came on a lost channel: it cannot be settled anyway, and a presence `quit` must never reach the handlers.
    if (from === undefined) return this.#routingKeys.has(msg.fields.routingKey);
    if (from !== this.queue) return false;
    this.#answer(msg);
    return true;
  }

  #answer(msg: ConsumeMessage): void {
    let body: Partial<MessageBody<object>>;
    try {
      body = this.consumer.decode(msg.content) as Partial<MessageBody<object>>;
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'unreadable message on presence dropped');
      this.consumer.reject(msg, false);
      return;
    }
    this.consumer.ack(msg);
    const asked = body?.type === 'command' && body.category === 'rpc' ? body.name : undefined;
    if (asked === 'ping' || asked === 'describe') {
      // describe may ask the broker (a partitioned processor counts what waits in each partition).
      Promise.resolve(asked === 'ping' ? this.fingerprint : this.describe())
        .then((answer) => this.consumer.rpcReply(msg, answer))
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, `cannot answer ${asked} on presence`));
      return;
    }
    const name = body?.name;
    if (name === 'quit' || name === 'restart')
      this.log.warn(
        { command: name, from: body?.fingerprint },
        `${name} on presence is not acted on: only a GenericApplication takes quit and restart there; ` +
          "send it to this processor's own exchange",
      );
    else this.log.debug({ type: body?.type, name }, 'presence message other than ping or describe ignored');
  }
}
