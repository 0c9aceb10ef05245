import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { DEFAULTS } from '../config.js';
import { BrokerError } from '../errors.js';
import { asPino, componentLogger, type Logger } from '../log.js';
import { openChannel } from '../transport/channels.js';
import { Link } from '../transport/link.js';
import { ExchangeWatch } from '../transport/exchange-watch.js';
import { retrying } from '../backoff.js';
import type { ConnectionEvent, ConnectionEvents } from '../transport/managed.js';
import type { ConnectionStatus } from '../transport/status.js';
import type { AckBatcher } from './acks.js';
import { Bindings } from './bindings.js';
import { ConsumerChannel } from './consumer-channel.js';
import { keepInternals, type ConsumerInternals } from './consumer-internals.js';
import { AmqpPorts } from './delivery/amqp-ports.js';
import type { Encoder } from '../envelope/encoder.js';
import { defaultEncoder } from '../envelope/encryption.js';
import { resolveExchange, type ExchangeLike } from '../topology/exchange.js';
import type { Message } from '../envelope/messages.js';
import type { ComponentOptions } from '../component-options.js';
import { eqkEntries, type Eqk, type QueueFlags, type QueueSpec } from '../topology/topology.js';

export type { ConsumeMessage };

export interface ConsumerOptions extends Omit<ComponentOptions, 'fingerprint'> {
  eqk?: Eqk;
  /** Unacked deliveries the broker may send at once. @default 1 (as Postage) */
  prefetch?: number;
  /**
   * How often (ms) the exchanges it is bound to are checked (a passive declare on a channel of its own). A deleted
   * exchange cancels no consumer, it only takes its bindings with it: the check is how the consumer notices, and it
   * then declares the exchange and binds its queues again. 0 turns the check off.
   * @default 30000
   */
  exchangeCheckMs?: number;
}

/** A consumer's events: its connection's, and its own. */
export interface ConsumerEvents extends ConnectionEvents {
  /**
   * The broker cancelled the consumer of a queue (the queue was deleted): the consumer declares it and its bindings
   * again and consumes it again, with backoff, its status `reconnecting` until then.
   */
  consumerCancelled: [queue: string];
}
export type ConsumerEvent = keyof ConsumerEvents;

/**
 * Declares queues from an eqk table, binds them, and hands deliveries to a callback; acks and rejects them. One
 * channel; the connection is its own unless one is shared. When its own connection is lost it reconnects with backoff,
 * declares its bindings again and resumes consuming; deliveries from the lost channel are never acked on the new one
 * (the broker redelivers them). What settling publishes (dead letters, delayed copies) and RPC replies go through its
 * delivery ports (delivery/amqp-ports.ts).
 */
export class GenericConsumer {
  static eqk: Eqk = [];

  /** Decodes bodies ({@link decode}) and encodes RPC replies. */
  readonly encoder: Encoder;
  /** Unacked deliveries the broker may send at once. */
  readonly prefetch: number;
  /** The (real) queue names this consumer consumes from. */
  readonly queues: string[];
  protected readonly log: Logger;
  readonly #eqk: Eqk;
  readonly #link: Link;
  readonly #bindings: Bindings;
  readonly #internals: ConsumerInternals;
  /** The channel it consumes and settles on now, with its consumers and settles. */
  #current: ConsumerChannel | undefined;
  #ready: Promise<void> | undefined;
  #callback: ((msg: ConsumeMessage) => void) | undefined;
  /** Which of its queues this consumer consumes (a partitioned processor consumes its partitions elsewhere). */
  #only: ((queue: string) => boolean) | undefined;
  /** close() leaves cancelling to the channel's close (see holdConsumersUntilClose). */
  #holdConsumers = false;
  #closed = false;
  /** The connection the channel was last set up on (a restore on the same one follows a channel the broker closed). */
  #restoredOn: ChannelModel | undefined;
  /** Notices an exchange deleted under the consumer (see {@link ConsumerOptions.exchangeCheckMs}). */
  readonly #exchangeWatch: ExchangeWatch;
  /** What closes with a shared connection instead of this consumer alone (its processor). */
  #owner: (() => Promise<void>) | undefined;

  constructor(options: ConsumerOptions = {}) {
    const eqk = options.eqk ?? [];
    this.#eqk = eqk.length > 0 ? eqk : (this.constructor as typeof GenericConsumer).eqk;
    this.prefetch = options.prefetch ?? DEFAULTS.prefetch;
    this.encoder = options.encoder ?? defaultEncoder();
    this.log = options.logger
      ? asPino(options.logger, { component: 'consumer', componentName: this.constructor.name })
      : componentLogger('consumer', this.constructor.name);
    this.#link = new Link(options, this.log, 'consumer', {
      open: (model) => this.#restore(model),
      lost: () => {
        this.#current = undefined;
      },
      isOpen: () => this.#current !== undefined,
      // A shared connection closing closes what is on it: the processor that owns this consumer, drained, or the
      // consumer.
      close: () => (this.#owner ? this.#owner() : this.close()),
    });
    this.#bindings = new Bindings(
      this.log,
      () => this.#link.topology,
      () => this.connection,
    );
    this.queues = this.#bindings.queues;
    const everyMs = options.exchangeCheckMs ?? DEFAULTS.exchangeCheckMs;
    if (!(typeof everyMs === 'number' && everyMs >= 0))
      throw new TypeError(`exchangeCheckMs must be a number of milliseconds (0: no check), not ${String(everyMs)}`);
    this.#exchangeWatch = new ExchangeWatch({
      everyMs,
      names: () => this.#bindings.exchangeNames(),
      model: () => (this.#current ? this.connection : undefined),
      missing: (names) => this.#exchangesMissing(names),
      log: this.log,
    });
    this.#internals = this.#makeInternals();
    keepInternals(this, this.#internals);
  }

  #makeInternals(): ConsumerInternals {
    const ports = new AmqpPorts(this, {
      log: this.log,
      encoder: this.encoder,
      topology: () => this.#link.topology,
      model: () => this.connection,
      channel: () => this.#current?.ch,
      settleOn: (msg) => this.#settleOn(msg),
      queueOf: (msg) => internals.queueOf(msg),
      settled: async () => this.#current?.settled(),
    });
    const internals: ConsumerInternals = {
      ports,
      foreignQueueOf: undefined,
      queueOf: (msg) => {
        const c = this.#current;
        return c && msg.fields.consumerTag !== undefined && c.owns(msg)
          ? c.queueOf(msg)
          : internals.foreignQueueOf?.(msg);
      },
      nameOf: (spec) => this.#bindings.nameOf(spec, this.#current?.ch),
      closeWith: (owner) => {
        this.#owner = owner;
      },
      exchangeBind: async (destination, source, key) => {
        await this.#bindings.route((await this.#channelReady()).ch, { destination, source, key });
      },
      holdConsumersUntilClose: () => {
        this.#holdConsumers = true;
      },
      recoverQueue: (queue, consume, live) => {
        if (this.#closed || !live()) return;
        this.#sayCancelled(queue);
        // The consumer's channel gone meanwhile: its reopen declares everything again, this queue included.
        void this.#recoverQueue(queue, {
          live: () => live() && !this.#closed && this.#current !== undefined,
          again: async () => {
            const c = this.#channelNow();
            await this.#bindings.rebind(c.ch, queue);
            await consume();
            return c === this.#current;
          },
        });
      },
    };
    return internals;
  }

  /** Where its connection stands: connecting, ready, reconnecting, blocked, closed. */
  get status(): ConnectionStatus {
    return this.#link.status;
  }

  /**
   * Connection events: 'connected' (after a reconnection), 'disconnected' (err), 'blocked' (reason), 'unblocked';
   * and 'consumerCancelled' (queue): the broker cancelled the consumer of a queue.
   */
  on<E extends ConsumerEvent>(event: E, listener: (...args: ConsumerEvents[E]) => void): this {
    this.#link.on(event as ConnectionEvent, listener as (...args: ConnectionEvents[ConnectionEvent]) => void);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<E extends ConsumerEvent>(event: E, listener: (...args: ConsumerEvents[E]) => void): this {
    this.#link.off(event as ConnectionEvent, listener as (...args: ConnectionEvents[ConnectionEvent]) => void);
    return this;
  }

  /** Resolves once every exchange and queue is declared and bound. */
  ready(): Promise<void> {
    this.#ready ??= (async () => {
      try {
        await this.#link.connect();
        await this.addEqk(this.#eqk);
        this.#exchangeWatch.start();
      } catch (err) {
        // Refused (an exchange of another type, a queue with other arguments): nothing stays open (on a shared
        // connection, this consumer's channels), nothing reopens.
        await this.close();
        throw err;
      }
    })();
    return this.#ready;
  }

  async #openChannel(model: ChannelModel): Promise<ConsumerChannel> {
    const ch = await openChannel(model);
    ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'consumer channel error'));
    // The broker closed it (a declaration it refused, a queue deleted under us…), or the connection went.
    ch.on('close', () => {
      if (ch === this.#current?.ch && !this.#closed) this.#link.channelLost();
    });
    await ch.prefetch(this.prefetch);
    this.#current = new ConsumerChannel(ch, this.prefetch);
    return this.#current;
  }

  /**
   * On a connection (the first, or after a loss): a new channel, every binding made so far again, consumers back on.
   */
  async #restore(model: ChannelModel): Promise<void> {
    const c = await this.#openChannel(model);
    // Again on the same connection: the broker closed the channel (an exchange deleted under us?): its exchanges are
    // declared anew.
    const again = model === this.#restoredOn;
    this.#restoredOn = model;
    await this.#bindings.replay(c.ch, again);
    for (const q of this.queues) await this.#consume(c, q);
    // Everything is declared and consumed again: a queue whose consumer was cancelled too.
    this.#link.recovered();
  }

  /** The channel it consumes and settles on; throws while it has none (before ready(), or reconnecting). */
  get channel(): Channel {
    return this.#channelNow().ch;
  }

  #channelNow(): ConsumerChannel {
    if (!this.#current)
      throw new BrokerError(
        'consumer has no channel: await consumer.ready() first (or it is reconnecting)',
        'NOT_CONNECTED',
      );
    return this.#current;
  }

  async #channelReady(): Promise<ConsumerChannel> {
    if (!this.#current) await this.ready();
    return this.#channelNow();
  }

  /** Its connection (its own, or the one it shares), while connected. */
  get connection(): ChannelModel | undefined {
    return this.#link.model;
  }

  /** Declares and binds every entry of an eqk table (as {@link queueBind} does each). */
  async addEqk(eqk: Eqk): Promise<void> {
    for (const [exchange, qks] of eqkEntries(eqk)) {
      for (const [queue, key] of qks) await this.queueBind(exchange, queue, key);
    }
  }

  /** Every binding made so far: exchange, routing key, and the queue's real name. */
  bindings(): Array<{ exchange: string; key: string; queue: string }> {
    return this.#bindings.list();
  }

  /** Declares the exchange and queue, binds them with `key`; consumes the queue if consuming already. */
  async queueBind(exchange: ExchangeLike, queue: QueueSpec, key: string, flags?: QueueFlags): Promise<string> {
    const c = await this.#channelReady();
    const name = await this.#bindings.bind(c.ch, { exchange, queue, key, flags });
    if (!c.tags.has(name)) await this.#consume(c, name);
    return name;
  }

  /** Unbinds `queue` from `exchange` for `key`; it is not bound again after a reconnection. */
  async queueUnbind(exchange: ExchangeLike, queue: string, key: string): Promise<void> {
    const exName = resolveExchange(exchange).name;
    await this.channel.unbindQueue(queue, exName, key);
    this.#bindings.unbind(exName, queue, key);
  }

  /**
   * Consumes every queue it has bound, or with `only` just those `only` accepts (the others stay declared and bound,
   * for channels of their own to consume), now and after every reconnection.
   */
  async startConsuming(callback: (msg: ConsumeMessage) => void, only?: (queue: string) => boolean): Promise<void> {
    await this.ready();
    this.#callback = callback;
    this.#only = only;
    const c = this.#channelNow();
    for (const q of this.queues) if (!c.tags.has(q)) await this.#consume(c, q);
  }

  /** Consumes `queue` on `c`, while consuming at all (and `only` takes it). */
  async #consume(c: ConsumerChannel, queue: string): Promise<void> {
    const cb = this.#callback;
    if (!cb || (this.#only && !this.#only(queue))) return;
    await c.consume(queue, cb, (tag) => this.#cancelled(c, queue, tag));
  }

  /**
   * The broker cancelled the consumer of `queue`: said (a warning, 'consumerCancelled'), then the queue and its
   * bindings declared again and consumed again, with backoff, the status `reconnecting` meanwhile. Deliveries of
   * the cancelled consumer still in a handler are settled on the channel as usual (it is still open).
   */
  #cancelled(c: ConsumerChannel, queue: string, tag: string): void {
    if (this.#closed || c !== this.#current || c.tags.get(queue) !== tag) return;
    c.tags.delete(queue);
    this.#sayCancelled(queue);
    // The channel went meanwhile: its reopen declares and consumes everything again, this queue included.
    void this.#recoverQueue(queue, {
      live: () => !this.#closed && c === this.#current,
      again: async () => {
        const names = await this.#bindings.rebind(c.ch, queue);
        if (c !== this.#current) return false;
        for (const q of names) if (!c.tags.has(q)) await this.#consume(c, q);
        return true;
      },
    });
  }

  /** A consumer of `queue` cancelled by the broker: a warning, the status `reconnecting`, `consumerCancelled`. */
  #sayCancelled(queue: string): void {
    const why = new BrokerError(
      `the broker cancelled the consumer of queue '${queue}' (deleted?); declaring it again`,
      'CONSUMER_CANCELLED',
    );
    this.log.warn({ queue }, `the broker cancelled the consumer of queue '${queue}'; declaring it and consuming again`);
    this.#link.troubled(1, why);
    this.#link.emit('consumerCancelled', queue);
  }

  /**
   * Declares `queue` and its bindings again and consumes it (`again`, false when the channel went meanwhile), with
   * backoff (the connection's `reconnect` option), for as long as `live` holds.
   */
  async #recoverQueue(queue: string, { live, again }: { live: () => boolean; again: () => Promise<boolean> }) {
    await retrying(
      async (attempt) => {
        if (!(await again())) return;
        this.#link.recovered();
        this.log.info({ queue, attempts: attempt + 1 }, `queue '${queue}' declared and consumed again`);
      },
      {
        backoff: this.#link.reconnect,
        keepGoing: live,
        // Nobody awaits this loop, and the consumer may be closed meanwhile: its waits must not hold the process.
        unref: true,
        onFailure: (err, attempt, wait) => {
          if (!live()) return;
          this.#link.troubled(attempt + 2, err as Error);
          this.log.warn(
            { queue, attempt: attempt + 1, nextInMs: Math.round(wait), err: (err as Error).message },
            `could not declare queue '${queue}' again; trying again`,
          );
        },
      },
    );
  }

  /** Exchanges deleted under the consumer: declared again (through the connection's topology), and bound again. */
  async #exchangesMissing(names: string[]): Promise<void> {
    const model = this.connection;
    if (!this.#current || !model) return;
    // A channel of its own: a refusal (the exchange declared again by someone else, of another type) closes it, not
    // the channel whose deliveries are in the handlers.
    const ch = await openChannel(model);
    ch.on('error', () => undefined);
    try {
      await this.#bindings.bindAgain(model, ch, new Set(names));
    } finally {
      await ch.close().catch(() => undefined);
    }
    this.log.info({ exchanges: names }, 'exchanges declared and bound again');
  }

  /** Cancels every consumer it started; deliveries in flight can still be settled. */
  async stopConsuming(): Promise<void> {
    this.#callback = undefined;
    await this.#current?.cancelAll();
  }

  /**
   * Stops consuming one queue and forgets it, leaving its bindings alone: how a
   * component leaves a queue it shares with others (unbinding would cut them off too).
   */
  async queueCancel(queue: string): Promise<void> {
    const c = this.#current;
    const tag = c?.tags.get(queue);
    c?.tags.delete(queue);
    this.#bindings.forget(queue);
    if (tag) await this.channel.cancel(tag);
  }

  /** Settles on the channel a delivery came on, or nowhere when that channel is gone (the broker redelivers). */
  #settleOn(msg: ConsumeMessage): AckBatcher | undefined {
    const c = this.#current;
    if (c?.owns(msg)) return c.acks;
    this.log.debug(
      { deliveryTag: msg.fields.deliveryTag },
      'delivery from a lost channel: not settled, the broker redelivers it',
    );
    return undefined;
  }

  /**
   * Acks a delivery. Consecutive acks go to the broker together, at the latest
   * at the end of this event-loop turn. False when the delivery's channel is
   * gone (nothing to ack: the broker delivers it again).
   */
  ack(msg: ConsumeMessage): boolean {
    const acks = this.#settleOn(msg);
    acks?.ack(msg);
    return acks !== undefined;
  }

  /** Rejects a delivery; false when its channel is gone (the broker delivers it again). */
  reject(msg: ConsumeMessage, requeue: boolean): boolean {
    const acks = this.#settleOn(msg);
    acks?.reject(msg, requeue);
    return acks !== undefined;
  }

  /** Decodes a delivery's body with its {@link encoder}. */
  decode(content: Buffer): unknown {
    return this.encoder.decode(content);
  }

  /**
   * Answers an RPC delivery; a bare value is wrapped in `MessageResult`.
   * Throws only when the result cannot be encoded. The reply goes out after
   * every settle made so far, the request's own included when it was settled
   * first (as the processor does): a reply the broker cannot take then costs
   * the connection at most, never a request redelivered forever. A reply
   * whose delivery's channel is gone is dropped: the request was not settled
   * either, so the broker delivers it again and it is answered then.
   */
  rpcReply(msg: ConsumeMessage, result: Message<object> | unknown): void {
    const replier = this.#internals.ports.replier;
    replier.sendReply(msg, replier.encodeReply(result));
  }

  /** `await using consumer = new C(…)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Stops consuming and closes the channel (and the connection, when it is this consumer's own). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#exchangeWatch.stop();
    const c = this.#current;
    c?.acks.flush();
    if (this.#holdConsumers) {
      // The channel's close ends its consumers and returns what they hold, in one step on the broker.
      this.#callback = undefined;
      c?.tags.clear();
    } else await this.stopConsuming();
    this.#current = undefined;
    await c?.ch.close().catch(() => undefined);
    await this.#internals.ports.copies.close();
    await this.#link.close();
  }
}
