import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { DEFAULTS } from '../config.js';
import { BrokerError } from '../errors.js';
import { componentLogger, type Logger } from '../log.js';
import { openConnection, type ConnectOptions } from '../transport/connection.js';
import { JsonEncoder, type Encoder } from './encoder.js';
import { resolveExchange, type ExchangeLike } from './exchange.js';
import { MessageResult, type Message } from './messages.js';
import { declareExchange, declareQueue, eqkEntries, type Eqk, type QueueFlags, type QueueSpec } from './topology.js';

export type { ConsumeMessage };

export interface ConsumerOptions extends ConnectOptions {
  eqk?: Eqk;
  /** Share a connection instead of opening one. */
  connection?: ChannelModel;
  /** Unacked deliveries the broker may send at once. @default 1 (as Postage) */
  prefetch?: number;
  encoder?: Encoder;
  logger?: Logger;
}

/**
 * Declares queues from an eqk table, binds them, and hands deliveries to a
 * callback. One channel; the connection is its own unless one is shared.
 */
export class GenericConsumer {
  static eqk: Eqk = [];

  readonly encoder: Encoder;
  readonly prefetch: number;
  /** The (real) queue names this consumer consumes from. */
  readonly queues: string[] = [];
  protected readonly log: Logger;
  #opts: ConsumerOptions;
  #eqk: Eqk;
  #conn: ChannelModel | undefined;
  #ownsConnection: boolean;
  #channel: Channel | undefined;
  #ready: Promise<void> | undefined;
  #tags = new Map<string, string>();
  #callback: ((msg: ConsumeMessage) => void) | undefined;

  constructor(options: ConsumerOptions = {}) {
    this.#opts = options;
    const eqk = options.eqk ?? [];
    this.#eqk = eqk.length > 0 ? eqk : (this.constructor as typeof GenericConsumer).eqk;
    this.#conn = options.connection;
    this.#ownsConnection = !options.connection;
    this.prefetch = options.prefetch ?? DEFAULTS.prefetch;
    this.encoder = options.encoder ?? new JsonEncoder();
    this.log = options.logger ?? componentLogger('consumer', this.constructor.name);
  }

  /** Resolves once every exchange and queue is declared and bound. */
  ready(): Promise<void> {
    this.#ready ??= (async () => {
      this.#conn ??= await openConnection(this.#opts, this.log);
      const ch = await this.#conn.createChannel();
      ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'consumer channel error'));
      await ch.prefetch(this.prefetch);
      this.#channel = ch;
      await this.addEqk(this.#eqk);
    })();
    return this.#ready;
  }

  get channel(): Channel {
    if (!this.#channel) throw new Error('consumer is not ready: await consumer.ready() first');
    return this.#channel;
  }

  get connection(): ChannelModel | undefined {
    return this.#conn;
  }

  async addEqk(eqk: Eqk): Promise<void> {
    for (const [exchange, qks] of eqkEntries(eqk)) {
      for (const [queue, key] of qks) await this.queueBind(exchange, queue, key);
    }
  }

  /** Declares the exchange and queue, binds them with `key`; consumes the queue if consuming already. */
  async queueBind(exchange: ExchangeLike, queue: QueueSpec, key: string, flags?: QueueFlags): Promise<string> {
    const ch = this.#channel ?? (await this.ready(), this.channel);
    const qName = typeof queue === 'string' ? queue : queue.name;
    let exName: string;
    let name: string;
    try {
      exName = await declareExchange(ch, exchange);
      name = await declareQueue(ch, queue, flags);
      if (exName !== '') await ch.bindQueue(name, exName, key);
    } catch (err) {
      throw declareError(err, resolveExchange(exchange).name, qName);
    }
    if (!this.queues.includes(name)) {
      this.queues.push(name);
      if (this.#callback) await this.#consume(name);
    }
    this.log.debug({ exchange: exName, queue: name, key }, 'queue bound');
    return name;
  }

  async queueUnbind(exchange: ExchangeLike, queue: string, key: string): Promise<void> {
    await this.channel.unbindQueue(queue, resolveExchange(exchange).name, key);
  }

  async startConsuming(callback: (msg: ConsumeMessage) => void): Promise<void> {
    await this.ready();
    this.#callback = callback;
    for (const q of this.queues) await this.#consume(q);
  }

  async #consume(queue: string): Promise<void> {
    const cb = this.#callback!;
    const ok = await this.channel.consume(queue, (msg) => {
      if (msg) cb(msg);
    });
    this.#tags.set(queue, ok.consumerTag);
  }

  async stopConsuming(): Promise<void> {
    this.#callback = undefined;
    const tags = [...this.#tags.values()];
    this.#tags.clear();
    for (const t of tags) await this.#channel?.cancel(t).catch(() => undefined);
  }

  /**
   * Stops consuming one queue and forgets it, leaving its bindings alone: how a
   * component leaves a queue it shares with others (unbinding would cut them off too).
   */
  async queueCancel(queue: string): Promise<void> {
    const tag = this.#tags.get(queue);
    this.#tags.delete(queue);
    const i = this.queues.indexOf(queue);
    if (i >= 0) this.queues.splice(i, 1);
    if (tag) await this.channel.cancel(tag);
  }

  ack(msg: ConsumeMessage): void {
    this.channel.ack(msg);
  }

  reject(msg: ConsumeMessage, requeue: boolean): void {
    this.channel.reject(msg, requeue);
  }

  decode(content: Buffer): unknown {
    return this.encoder.decode(content);
  }

  /** Answers an RPC delivery; a bare value is wrapped in `MessageResult`. */
  rpcReply(msg: ConsumeMessage, result: Message<object> | unknown): void {
    const replyTo = msg.properties.replyTo as string | undefined;
    if (!replyTo) {
      this.log.warn({ messageId: msg.properties.messageId, deliveryTag: msg.fields.deliveryTag }, 'RPC has no reply_to; the reply is dropped');
      return;
    }
    const body = isMessage(result) ? result.body : new MessageResult(result).body;
    this.channel.publish('', replyTo, this.encoder.encode(body) as Buffer, {
      correlationId: msg.properties.correlationId,
      contentType: this.encoder.contentType,
    });
  }

  /** Stops consuming and closes the channel (and the connection, when it is this consumer's own). */
  async close(): Promise<void> {
    await this.stopConsuming();
    const ch = this.#channel;
    this.#channel = undefined;
    await ch?.close().catch(() => undefined);
    if (this.#ownsConnection) await this.#conn?.close().catch(() => undefined);
  }
}

/** Turns a broker refusal while declaring into an error that says what to do. */
function declareError(err: unknown, exchange: string, queue: string): BrokerError {
  const e = err as { code?: number; message?: string };
  const said = String(e?.message ?? err).replace(/^.*?with message "(.*)"$/s, '$1');
  if (e?.code === 406) {
    return new BrokerError(
      `cannot declare exchange '${exchange}' / queue '${queue}': ${said}. It exists with other flags or arguments: declare it with the same ones, or delete it first (rabbitmqctl delete_queue / delete_exchange).`,
      'PRECONDITION_FAILED',
      { cause: err, amqpCode: 406 },
    );
  }
  if (e?.code === 404) {
    return new BrokerError(`cannot declare exchange '${exchange}' / queue '${queue}': ${said}. A passive declaration needs it to exist already.`, 'NOT_FOUND', { cause: err, amqpCode: 404 });
  }
  return new BrokerError(`cannot declare exchange '${exchange}' / queue '${queue}': ${said}`, 'DECLARE_FAILED', { cause: err, amqpCode: e?.code });
}

function isMessage(v: unknown): v is Message<object> {
  return typeof v === 'object' && v !== null && 'body' in v && typeof (v as Message<object>).equals === 'function';
}
