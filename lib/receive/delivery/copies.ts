import type { ChannelModel, ConsumeMessage, Options } from 'amqplib';
import { DEFAULTS } from '../../config.js';
import { BrokerError, ValidationError } from '../../errors.js';
import type { OutboxMessage } from '../../stores/store.js';
import {
  DELAY_DOOR,
  delayHeaders,
  originalExchange,
  sendDelayed,
  withoutDelay,
  type DelayPlace,
} from '../../topology/delay.js';
import { Publisher, RETURN_MARK } from '../../send/publisher.js';
import { ERROR_HEADERS, errorExchangeDeclaration, type EksEntry } from '../../topology/topology.js';
import type { ConsumerLine } from './consumer-line.js';
import type { ConfirmedCopies } from './ports.js';

/**
 * The copies a consumer's deliveries publish while settling (dead letters, delayed copies, an outbox's stored
 * messages), each confirmed by the broker before the original is acked. They go through a publisher of their own, as
 * a producer's sends do: confirms, returns, confirm timeouts, a fresh channel after a nack.
 */
export class AmqpCopies implements ConfirmedCopies {
  readonly #line: ConsumerLine;
  readonly #publisher: Publisher;
  /** The connection the publisher was opened on. */
  #openOn: ChannelModel | undefined;
  /** Copy ids, so that a returned copy is told apart from another (a delay level was missing). */
  readonly #copyPrefix = `${process.pid}.${Date.now().toString(36)}.`;
  #copyCount = 0;

  constructor(line: ConsumerLine) {
    this.#line = line;
    this.#publisher = new Publisher(line.log, DEFAULTS.confirmTimeoutMs, () => this.#publisher.lost());
  }

  /**
   * Declares the error exchange `exchange` (durable fanout) and its queue of the same name, through the connection's
   * topology: at ready(), so that both exist before the first failure, and again after a reconnection.
   */
  async declareErrorExchange(exchange: string): Promise<void> {
    const { place } = await this.#place();
    await place.topology.ensure(place.model, place.ch, errorExchangeDeclaration(exchange));
  }

  /**
   * Publishes a failed delivery, unchanged, to the error exchange `exchange` with the error and where it came from in
   * headers ({@link ERROR_HEADERS}); resolves once the broker confirmed it, so acking the original afterwards loses
   * nothing.
   */
  async deadLetter(msg: ConsumeMessage, exchange: string, err: unknown, attempts: number): Promise<void> {
    await this.declareErrorExchange(exchange);
    const e = err as Error;
    const headers = msg.properties.headers as Record<string, unknown> | undefined;
    await this.#publisher.publish(
      [[{ name: exchange, type: 'fanout' }, msg.fields.routingKey]],
      {
        ...msg.properties,
        messageId: msg.properties.messageId as string,
        mandatory: false,
        persistent: true,
        headers: {
          ...withoutDelay(headers),
          // A broker's refusal is named by what it was (UNROUTABLE, NACK…): BrokerError alone says little.
          [ERROR_HEADERS.name]: err instanceof BrokerError ? err.code : (e?.name ?? 'Error'),
          [ERROR_HEADERS.message]: e?.message ?? String(err),
          [ERROR_HEADERS.originalExchange]: originalExchange(msg.fields, headers),
          [ERROR_HEADERS.originalRoutingKey]: msg.fields.routingKey,
          [ERROR_HEADERS.attempts]: attempts,
          [ERROR_HEADERS.failedAt]: new Date().toISOString(),
          ...(err instanceof ValidationError ? { [ERROR_HEADERS.validationIssues]: JSON.stringify(err.issues) } : {}),
        },
      },
      msg.content,
      notConnected,
    );
  }

  /**
   * Sends a delivery, unchanged but for `headers`, back to the queue it came from in `ms` through the delay levels (a
   * defer, a delayed retry): to that queue alone, not to its exchange's other queues. Resolves once the broker
   * confirmed the copy, so acking the original afterwards loses nothing.
   */
  async delay(msg: ConsumeMessage, ms: number, headers: Record<string, unknown>): Promise<void> {
    const queue = this.#line.queueOf(msg);
    if (queue === undefined)
      throw new BrokerError(
        'cannot delay a delivery whose channel is gone (the broker delivers it again)',
        'NOT_CONNECTED',
      );
    const { publisher, place } = await this.#place();
    const old = msg.properties.headers as Record<string, unknown> | undefined;
    const props = {
      ...msg.properties,
      // A copy keeps its message id; one without gets one, so that its return is told apart from another's.
      messageId: (msg.properties.messageId as string | undefined) ?? `${this.#copyPrefix}${this.#copyCount++}`,
      persistent: true,
      mandatory: true,
      headers: {
        ...withoutDelay(old),
        [ERROR_HEADERS.originalExchange]: originalExchange(msg.fields, old),
        ...headers,
        ...delayHeaders(ms, { queue }),
        [RETURN_MARK]: `${this.#copyPrefix}${this.#copyCount++}`,
      },
    };
    const door: EksEntry[] = [[{ name: DELAY_DOOR, type: 'headers' }, msg.fields.routingKey]];
    await sendDelayed(place, { queue }, ms, this.#line.log, () =>
      publisher.publish(door, props, msg.content, notConnected).then(
        () => true,
        (err: unknown) => {
          if (err instanceof BrokerError && err.code === 'UNROUTABLE') return false;
          throw err;
        },
      ),
    );
  }

  /**
   * Publishes a message a store's outbox kept (its sweeper: a process died before its relay did), as its producer
   * would have: same message id and properties, to each of its targets, with confirms.
   */
  async publishStored(m: OutboxMessage): Promise<void> {
    const { publisher } = await this.#place();
    const targets: EksEntry[] = m.targets.map((t) => [{ name: t.exchange, type: t.type }, t.routingKey]);
    const props = {
      ...(m.properties as Options.Publish),
      messageId: m.messageId,
      mandatory: m.properties.mandatory === true,
    };
    if (m.delayMs > 0) await publisher.publishDelayed(targets, props, m.body, m.delayMs, notConnected);
    else await publisher.publish(targets, props, m.body, notConnected);
  }

  /** Closes the publisher's channel (with its consumer). */
  close(): Promise<void> {
    return this.#publisher.close();
  }

  /** The publisher, open on the current connection, and where delayed copies are declared from. */
  async #place(): Promise<{ publisher: Publisher; place: DelayPlace }> {
    const model = this.#line.model();
    if (!model) throw notConnected();
    const publisher = this.#publisher;
    const topology = this.#line.topology();
    if (!publisher.isOpen || this.#openOn !== model) {
      if (publisher.isOpen) publisher.lost();
      await publisher.open(model, [], topology);
      this.#openOn = model;
    }
    const ch = publisher.channel;
    if (!ch) throw notConnected();
    return { publisher, place: { topology, model, ch } };
  }
}

/** Why a copy cannot go out: no connection now. */
function notConnected(): BrokerError {
  return new BrokerError('cannot publish: not connected (the broker delivers the message again)', 'NOT_CONNECTED');
}
