import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import type { OutboxMessage } from '../stores/store.js';
import { DEFAULTS } from '../config.js';
import { BrokerError, ValidationError } from '../errors.js';
import { asPino, componentLogger, type Logger } from '../log.js';
import { randomBytes } from 'node:crypto';
import { openChannel } from '../transport/channels.js';
import { flushChannel } from '../transport/amqplib-adapter.js';
import { Link } from '../transport/link.js';
import { ExchangeWatch } from '../transport/exchange-watch.js';
import { backoffMs, jittered } from '../backoff.js';
import type { ConnectionEvent, ConnectionEvents } from '../transport/managed.js';
import type { ConnectionStatus } from '../transport/status.js';
import { AckBatcher } from './acks.js';
import type { Encoder } from './encoder.js';
import { defaultEncoder } from './encryption.js';
import { resolveExchange, type ExchangeLike } from './exchange.js';
import { MessageResult, type Message } from './messages.js';
import type { ComponentOptions } from './options.js';
import { DELAY_DOOR, delayHeaders, originalExchange, sendDelayed, withoutDelay, type DelayPlace } from './delay.js';
import { Publisher, RETURN_MARK } from './send/publisher.js';
import type { Declaration } from '../transport/topology-registry.js';
import {
  amqpCodeOf,
  brokerSaid,
  declareQueue,
  eqkEntries,
  exchangeDeclaration,
  REPLY_TO,
  type EksEntry,
  type Eqk,
  type QueueFlags,
  type QueueSpec,
} from './topology.js';

export type { ConsumeMessage };

const CONSUMER_TAG_PREFIX = `${process.pid}.${randomBytes(4).toString('hex')}`;
let nextConsumerTag = 0;

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

interface Binding {
  exchange: ExchangeLike;
  queue: QueueSpec;
  key: string;
  flags: QueueFlags | undefined;
}

/**
 * Declares queues from an eqk table, binds them, and hands deliveries to a
 * callback. One channel; the connection is its own unless one is shared.
 * When its own connection is lost it reconnects with backoff, declares its
 * bindings again and resumes consuming; deliveries from the lost channel are
 * never acked on the new one (the broker redelivers them).
 */
export class GenericConsumer {
  static eqk: Eqk = [];

  readonly encoder: Encoder;
  readonly prefetch: number;
  /** The (real) queue names this consumer consumes from. */
  readonly queues: string[] = [];
  protected readonly log: Logger;
  #eqk: Eqk;
  readonly #link: Link;
  #channel: Channel | undefined;
  #ready: Promise<void> | undefined;
  #tags = new Map<string, string>();
  #callback: ((msg: ConsumeMessage) => void) | undefined;
  /** Which of its queues this consumer consumes (a partitioned processor consumes its partitions elsewhere). */
  #only: ((queue: string) => boolean) | undefined;
  /** Exchange-to-exchange bindings made (a partitioned processor's way in), replayed after a reconnection. */
  #routes: Array<{ destination: ExchangeLike; source: ExchangeLike; key: string }> = [];
  /** close() leaves cancelling to the channel's close (see holdConsumersUntilClose). */
  #holdConsumers = false;
  /** Every binding made, replayed after a reconnection. */
  #bindings: Binding[] = [];
  /** The name the broker gave each binding's queue (a server-named queue has one only once declared). */
  readonly #queueNames = new WeakMap<Binding, string>();
  /** Server-named queues by the spec object their bindings share, with the channel they were declared on. */
  readonly #serverNamed = new WeakMap<object, { ch: Channel; name: string }>();
  /** Settles deliveries on the current channel, batching acks. */
  #acks: AckBatcher | undefined;
  /**
   * Consumer tags started on the current channel (kept after a cancel, whose
   * deliveries may still be settled). A delivery whose tag is not here came on
   * a lost channel: acks must go to the channel a delivery came on or nowhere.
   */
  #channelTags = new Set<string>();
  #closed = false;
  /** Delayed copies the broker returned (a delay level was missing), by their copy id, until their confirm. */
  readonly #copyPrefix = `${process.pid}.${Date.now().toString(36)}.`;
  #copyCount = 0;
  /**
   * What the consumer publishes itself (dead letters, delayed copies) goes
   * through a publisher of its own, as a producer's sends do: confirms,
   * returns, confirm timeouts, a fresh channel after a nack.
   */
  readonly #copies: Publisher;
  #copiesOn: ChannelModel | undefined;
  /** Error exchanges declared on the current side channel. */
  /** The connection the channel was last set up on (a restore on the same one follows a channel the broker closed). */
  #restoredOn: ChannelModel | undefined;
  /** The channel whose direct reply-to is consumed for stream control (see streamControl). */
  #controlOn: Channel | undefined;
  readonly #streamWatchers = new Map<string, (headers: Record<string, unknown> | undefined) => void>();
  /** Notices an exchange deleted under the consumer (see {@link ConsumerOptions.exchangeCheckMs}). */
  readonly #exchangeWatch: ExchangeWatch;

  constructor(options: ConsumerOptions = {}) {
    const eqk = options.eqk ?? [];
    this.#eqk = eqk.length > 0 ? eqk : (this.constructor as typeof GenericConsumer).eqk;
    this.prefetch = options.prefetch ?? DEFAULTS.prefetch;
    this.encoder = options.encoder ?? defaultEncoder();
    this.log = options.logger
      ? asPino(options.logger, { component: 'consumer', componentName: this.constructor.name })
      : componentLogger('consumer', this.constructor.name);
    this.#copies = new Publisher(this.log, DEFAULTS.confirmTimeoutMs, () => this.#copies.lost());
    this.#link = new Link(options, this.log, 'consumer', {
      open: (model) => this.#restore(model),
      lost: () => {
        this.#channel = undefined;
        this.#tags.clear();
      },
      isOpen: () => this.#channel !== undefined,
      // A shared connection closing closes what is on it: the processor that owns this consumer, drained, or the
      // consumer.
      close: () => (this.#owner ? this.#owner() : this.close()),
    });
    const everyMs = options.exchangeCheckMs ?? DEFAULTS.exchangeCheckMs;
    if (!(typeof everyMs === 'number' && everyMs >= 0))
      throw new TypeError(`exchangeCheckMs must be a number of milliseconds (0: no check), not ${String(everyMs)}`);
    this.#exchangeWatch = new ExchangeWatch({
      everyMs,
      names: () => this.#exchangeNames(),
      model: () => (this.#channel ? this.connection : undefined),
      missing: (names) => this.#exchangesMissing(names),
      log: this.log,
    });
  }

  /**
   * Where a delivery consumed on a channel of someone else's came from (a partitioned processor's partition
   * channels), so that a delay sends it back there. @internal
   */
  foreignQueueOf: ((msg: ConsumeMessage) => string | undefined) | undefined;

  /** What closes with a shared connection instead of this consumer alone (its processor). */
  #owner: (() => Promise<void>) | undefined;

  /** A processor's close, run when the consumer's shared connection closes. @internal */
  closeWith(owner: () => Promise<void>): void {
    this.#owner = owner;
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

  async #openChannel(model: ChannelModel): Promise<Channel> {
    const ch = await openChannel(model);
    ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'consumer channel error'));
    // The broker closed it (a declaration it refused, a queue deleted under us…), or the connection went.
    ch.on('close', () => {
      if (ch === this.#channel && !this.#closed) this.#link.channelLost();
    });
    await ch.prefetch(this.prefetch);
    this.#channel = ch;
    this.#channelTags = new Set();
    // Half the prefetch window: the broker can send the next half while handlers work through the first.
    this.#acks = new AckBatcher(ch, this.prefetch > 0 ? Math.max(1, Math.floor(this.prefetch / 2)) : 256, () =>
      flushChannel(ch),
    );
    return ch;
  }

  /**
   * On a connection (the first, or after a loss): a new channel, every binding made so far again, consumers back on.
   */
  async #restore(model: ChannelModel): Promise<void> {
    const ch = await this.#openChannel(model);
    // Again on the same connection: the broker closed the channel (an exchange deleted under us?): its exchanges are
    // declared anew.
    const again = model === this.#restoredOn;
    this.#restoredOn = model;
    const bindings = this.#bindings;
    this.#bindings = [];
    this.queues.length = 0;
    const routes = this.#routes;
    this.#routes = [];
    try {
      for (const b of bindings) await this.#bind(ch, b, again);
      for (const r of routes) await this.#route(ch, r, again);
    } catch (err) {
      // Every binding stays for the next attempt: a restore that failed halfway must not forget the rest.
      this.#bindings = bindings;
      this.#routes = routes;
      throw err;
    }
    if (this.#callback) for (const q of this.queues) await this.#consume(q);
    // Everything is declared and consumed again: a queue whose consumer was cancelled too.
    this.#link.recovered();
  }

  get channel(): Channel {
    if (!this.#channel)
      throw new BrokerError(
        'consumer has no channel: await consumer.ready() first (or it is reconnecting)',
        'NOT_CONNECTED',
      );
    return this.#channel;
  }

  get connection(): ChannelModel | undefined {
    return this.#link.model;
  }

  async addEqk(eqk: Eqk): Promise<void> {
    for (const [exchange, qks] of eqkEntries(eqk)) {
      for (const [queue, key] of qks) await this.queueBind(exchange, queue, key);
    }
  }

  /** Every binding made so far: exchange, routing key, and the queue's real name. */
  bindings(): Array<{ exchange: string; key: string; queue: string }> {
    return this.#bindings.map((b) => ({
      exchange: resolveExchange(b.exchange).name,
      key: b.key,
      queue: this.#queueNames.get(b) ?? (typeof b.queue === 'string' ? b.queue : b.queue.name),
    }));
  }

  /** Declares the exchange and queue, binds them with `key`; consumes the queue if consuming already. */
  async queueBind(exchange: ExchangeLike, queue: QueueSpec, key: string, flags?: QueueFlags): Promise<string> {
    const ch = this.#channel ?? (await this.ready(), this.channel);
    const name = await this.#bind(ch, { exchange, queue, key, flags });
    if (this.#callback && !this.#tags.has(name)) await this.#consume(name);
    return name;
  }

  async #bind(ch: Channel, b: Binding, force = false): Promise<string> {
    // The exchange is the connection's (others may bind to it too): declared through its topology, once.
    const exName = resolveExchange(b.exchange).name;
    await this.#link.topology.ensure(this.connection!, ch, exchangeDeclaration(b.exchange), force);
    const name = await this.#declareQueue(ch, b);
    if (exName !== '') {
      await ch.bindQueue(name, exName, b.key).catch((err: unknown) => {
        throw new BrokerError(
          `cannot bind queue '${name}' to exchange '${exName}' with key '${b.key}': ${brokerSaid(err)}`,
          'DECLARE_FAILED',
          { cause: err, amqpCode: amqpCodeOf(err) },
        );
      });
    }
    this.#bindings.push(b);
    this.#queueNames.set(b, name);
    if (!this.queues.includes(name)) this.queues.push(name);
    this.log.debug({ exchange: exName, queue: name, key: b.key }, 'queue bound');
    return name;
  }

  /**
   * Bindings given one server-named spec object share one queue: declared once per channel, so a new name after each
   * restore (a server name cannot be declared again by name).
   */
  async #declareQueue(ch: Channel, b: Binding): Promise<string> {
    const spec = b.queue;
    if (typeof spec === 'string' || spec.name !== '') return declareQueue(ch, spec, b.flags);
    const known = this.#serverNamed.get(spec);
    if (known?.ch === ch) return known.name;
    const name = await declareQueue(ch, spec, b.flags);
    this.#serverNamed.set(spec, { ch, name });
    return name;
  }

  /** The name a queue spec has on the current channel (the broker's, for a server-named spec object). @internal */
  nameOf(spec: QueueSpec): string | undefined {
    if (typeof spec === 'string') return spec || undefined;
    if (spec.name !== '') return spec.name;
    const known = this.#serverNamed.get(spec);
    return known && known.ch === this.#channel ? known.name : undefined;
  }

  /**
   * Binds exchange `destination` to `source` with `key` (declaring both
   * through the connection's topology), and again after every reconnection:
   * how a partitioned processor's partitions get what its queue was bound to.
   * @internal
   */
  async exchangeBind(destination: ExchangeLike, source: ExchangeLike, key: string): Promise<void> {
    const ch = this.#channel ?? (await this.ready(), this.channel);
    await this.#route(ch, { destination, source, key });
  }

  async #route(
    ch: Channel,
    r: { destination: ExchangeLike; source: ExchangeLike; key: string },
    force = false,
  ): Promise<void> {
    const topology = this.#link.topology;
    await topology.ensure(this.connection!, ch, exchangeDeclaration(r.source), force);
    await topology.ensure(this.connection!, ch, exchangeDeclaration(r.destination), force);
    const [dest, src] = [resolveExchange(r.destination).name, resolveExchange(r.source).name];
    await ch.bindExchange(dest, src, r.key).catch((err: unknown) => {
      throw new BrokerError(
        `cannot bind exchange '${dest}' to exchange '${src}' with key '${r.key}': ${brokerSaid(err)}`,
        'DECLARE_FAILED',
        { cause: err, amqpCode: amqpCodeOf(err) },
      );
    });
    this.#routes.push(r);
  }

  async queueUnbind(exchange: ExchangeLike, queue: string, key: string): Promise<void> {
    const exName = resolveExchange(exchange).name;
    await this.channel.unbindQueue(queue, exName, key);
    this.#bindings = this.#bindings.filter(
      (b) =>
        !(
          resolveExchange(b.exchange).name === exName &&
          (typeof b.queue === 'string' ? b.queue : b.queue.name) === queue &&
          b.key === key
        ),
    );
  }

  /**
   * Consumes every queue it has bound, or with `only` just those `only` accepts (the others stay declared and bound,
   * for channels of their own to consume), now and after every reconnection.
   */
  async startConsuming(callback: (msg: ConsumeMessage) => void, only?: (queue: string) => boolean): Promise<void> {
    await this.ready();
    this.#callback = callback;
    this.#only = only;
    for (const q of this.queues) if (!this.#tags.has(q)) await this.#consume(q);
  }

  async #consume(queue: string): Promise<void> {
    if (this.#only && !this.#only(queue)) return;
    const cb = this.#callback!;
    const ch = this.channel;
    // Our own tag, known before the first delivery: deliveries can arrive in the same read as consume-ok, before the
    // promise settles.
    const consumerTag = `postage.${CONSUMER_TAG_PREFIX}.${nextConsumerTag++}`;
    this.#channelTags.add(consumerTag);
    await ch.consume(
      queue,
      (msg) => {
        if (msg) cb(msg);
        // amqplib's word for the broker's basic.cancel: the queue was deleted (or its node went).
        else this.#cancelled(ch, queue, consumerTag);
      },
      { consumerTag },
    );
    this.#tags.set(queue, consumerTag);
  }

  /**
   * The broker cancelled the consumer of `queue`: said (a warning, 'consumerCancelled'), then the queue and its
   * bindings declared again and consumed again, with backoff, the status `reconnecting` meanwhile. Deliveries of
   * the cancelled consumer still in a handler are settled on the channel as usual (it is still open).
   */
  #cancelled(ch: Channel, queue: string, tag: string): void {
    if (this.#closed || ch !== this.#channel || this.#tags.get(queue) !== tag) return;
    this.#tags.delete(queue);
    const why = new BrokerError(
      `the broker cancelled the consumer of queue '${queue}' (deleted?); declaring it again`,
      'CONSUMER_CANCELLED',
    );
    this.log.warn({ queue }, `the broker cancelled the consumer of queue '${queue}'; declaring it and consuming again`);
    this.#link.troubled(1, why);
    this.#link.emit('consumerCancelled', queue);
    void this.#recoverQueue(ch, queue, why);
  }

  /** Declares `queue` and its bindings again and consumes it, with backoff, for as long as `ch` is the channel. */
  async #recoverQueue(ch: Channel, queue: string, why: Error): Promise<void> {
    let lastError = why;
    for (let attempt = 0; ; attempt++) {
      // The channel went meanwhile: its reopen declares and consumes everything again, this queue included.
      if (this.#closed || ch !== this.#channel) return;
      try {
        const names = await this.#rebind(ch, queue);
        if (ch !== this.#channel) return;
        if (this.#callback) for (const q of names) if (!this.#tags.has(q)) await this.#consume(q);
        this.#link.recovered();
        this.log.info({ queue, attempts: attempt + 1 }, `queue '${queue}' declared and consumed again`);
        return;
      } catch (err) {
        lastError = err as Error;
      }
      if (this.#closed || ch !== this.#channel) return;
      const wait = jittered(backoffMs(attempt, 100, 10_000), 0.2, 10_000);
      this.#link.troubled(attempt + 2, lastError);
      this.log.warn(
        { queue, attempt: attempt + 1, nextInMs: Math.round(wait), err: lastError.message },
        `could not declare queue '${queue}' again; trying again`,
      );
      await new Promise((r) => setTimeout(r, wait).unref());
    }
  }

  /**
   * Declares `queue` again with every binding it had (a server-named queue gets a new name); resolves to the names.
   * A failure keeps every binding, for the next attempt.
   */
  async #rebind(ch: Channel, queue: string): Promise<string[]> {
    const mine = this.#bindings.filter((b) => this.#queueNames.get(b) === queue);
    this.#bindings = this.#bindings.filter((b) => !mine.includes(b));
    const i = this.queues.indexOf(queue);
    if (i >= 0) this.queues.splice(i, 1);
    const names = new Set<string>();
    try {
      for (const b of mine) names.add(await this.#bind(ch, b));
    } catch (err) {
      for (const b of mine) if (!this.#bindings.includes(b)) this.#bindings.push(b);
      if (!this.queues.includes(queue)) this.queues.push(queue);
      throw err;
    }
    return [...names];
  }

  /** The exchanges its queues and routes are bound to, by name: those it declares (a passive one is another's). */
  *#exchangeNames(): Generator<string> {
    const named = (x: ExchangeLike) => {
      const r = resolveExchange(x);
      return r.passive ? [] : [r.name];
    };
    for (const b of this.#bindings) yield* named(b.exchange);
    for (const r of this.#routes) {
      yield* named(r.source);
      yield* named(r.destination);
    }
  }

  /** Exchanges deleted under the consumer: declared again (through the connection's topology), and bound again. */
  async #exchangesMissing(names: string[]): Promise<void> {
    const model = this.connection;
    if (!this.#channel || !model) return;
    // A channel of its own: a refusal (the exchange declared again by someone else, of another type) closes it, not
    // the channel whose deliveries are in the handlers.
    const ch = await openChannel(model);
    ch.on('error', () => undefined);
    try {
      await this.#bindAgain(model, ch, new Set(names));
    } finally {
      await ch.close().catch(() => undefined);
    }
    this.log.info({ exchanges: names }, 'exchanges declared and bound again');
  }

  async #bindAgain(model: ChannelModel, ch: Channel, gone: Set<string>): Promise<void> {
    const topology = this.#link.topology;
    const declared = new Set<string>();
    const declare = async (x: ExchangeLike) => {
      const name = resolveExchange(x).name;
      if (!gone.has(name) || declared.has(name)) return;
      await topology.ensure(model, ch, exchangeDeclaration(x), true);
      declared.add(name);
    };
    for (const b of this.#bindings) {
      const exName = resolveExchange(b.exchange).name;
      if (!gone.has(exName)) continue;
      await declare(b.exchange);
      await ch.bindQueue(this.#queueNames.get(b)!, exName, b.key);
    }
    for (const r of this.#routes) {
      const [dest, src] = [resolveExchange(r.destination).name, resolveExchange(r.source).name];
      if (!gone.has(dest) && !gone.has(src)) continue;
      await declare(r.source);
      await declare(r.destination);
      await ch.bindExchange(dest, src, r.key);
    }
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
    this.#bindings = this.#bindings.filter((b) => (typeof b.queue === 'string' ? b.queue : b.queue.name) !== queue);
    if (tag) await this.channel.cancel(tag);
  }

  /** Settles on the channel a delivery came on, or nowhere when that channel is gone (the broker redelivers). */
  #settleOn(msg: ConsumeMessage): AckBatcher | undefined {
    const tag = msg.fields.consumerTag as string | undefined;
    // A message from channel.get() has no consumer tag: it can only be from the current channel.
    if (this.#channel && (tag === undefined || this.#channelTags.has(tag))) return this.#acks;
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

  /**
   * Resolves once the broker has processed every ack and reject sent so far:
   * they go out now, followed by a basic.qos (the same prefetch again), and a
   * channel's frames are handled in order, so its qos-ok vouches for them.
   * Without a channel there is nothing to vouch for (unsettled deliveries are redelivered).
   * @internal
   */
  async settled(): Promise<void> {
    const ch = this.#channel;
    if (!ch) return;
    this.#acks?.flush();
    await ch.prefetch(this.prefetch).catch(() => undefined);
  }

  /**
   * Publishes a failed delivery, unchanged, to the error exchange `exchange`
   * (declared durable fanout, with a durable queue of the same name) with
   * the error and where it came from in headers; resolves once the broker
   * confirmed it, so acking the original afterwards loses nothing.
   * @internal
   */
  async deadLetter(msg: ConsumeMessage, exchange: string, err: unknown, attempts: number): Promise<void> {
    await this.declareErrorExchange(exchange);
    const e = err as Error;
    const headers = msg.properties.headers as Record<string, unknown> | undefined;
    await this.#copies.publish(
      [[{ name: exchange, type: 'fanout' }, msg.fields.routingKey]],
      {
        ...msg.properties,
        messageId: msg.properties.messageId as string,
        mandatory: false,
        persistent: true,
        headers: {
          ...withoutDelay(headers),
          // A broker's refusal is named by what it was (UNROUTABLE, NACK…): BrokerError alone says little.
          'x-error-name': err instanceof BrokerError ? err.code : (e?.name ?? 'Error'),
          'x-error-message': e?.message ?? String(err),
          'x-original-exchange': originalExchange(msg.fields, headers),
          'x-original-routing-key': msg.fields.routingKey,
          'x-attempts': attempts,
          'x-failed-at': new Date().toISOString(),
          ...(err instanceof ValidationError ? { 'x-validation-issues': JSON.stringify(err.issues) } : {}),
        },
      },
      msg.content,
      notConnected,
    );
  }

  /**
   * Sends a delivery, unchanged but for `headers`, back to the queue it came
   * from in `ms` through the delay levels (a defer, a delayed retry): to that
   * queue alone, not to its exchange's other queues. Resolves once the broker
   * confirmed the copy, so acking the original afterwards loses nothing.
   * @internal
   */
  async delay(msg: ConsumeMessage, ms: number, headers: Record<string, unknown>): Promise<void> {
    const queue = this.queueOf(msg);
    if (queue === undefined)
      throw new BrokerError(
        'cannot delay a delivery whose channel is gone (the broker delivers it again)',
        'NOT_CONNECTED',
      );
    const { publisher, place } = await this.#copiesPlace();
    const old = msg.properties.headers as Record<string, unknown> | undefined;
    const props = {
      ...msg.properties,
      // A copy keeps its message id; one without gets one, so that its return is told apart from another's.
      messageId: (msg.properties.messageId as string | undefined) ?? `${this.#copyPrefix}${this.#copyCount++}`,
      persistent: true,
      mandatory: true,
      headers: {
        ...withoutDelay(old),
        'x-original-exchange': originalExchange(msg.fields, old),
        ...headers,
        ...delayHeaders(ms, { queue }),
        [RETURN_MARK]: `${this.#copyPrefix}${this.#copyCount++}`,
      },
    };
    const door: EksEntry[] = [[{ name: DELAY_DOOR, type: 'headers' }, msg.fields.routingKey]];
    await sendDelayed(place, { queue }, ms, this.log, () =>
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
   * Publishes a message a store's outbox kept (its sweeper: a process died
   * before its relay did), as its producer would have: same message id and
   * properties, to each of its targets, with confirms. @internal
   */
  async publishStored(m: OutboxMessage): Promise<void> {
    const { publisher } = await this.#copiesPlace();
    const targets: EksEntry[] = m.targets.map((t) => [{ name: t.exchange, type: t.type }, t.routingKey]);
    const props = {
      ...(m.properties as Options.Publish),
      messageId: m.messageId,
      mandatory: m.properties.mandatory === true,
    };
    if (m.delayMs > 0) await publisher.publishDelayed(targets, props, m.body, m.delayMs, notConnected);
    else await publisher.publish(targets, props, m.body, notConnected);
  }

  /** The copies' publisher, open on the current connection, and where delayed copies are declared from. */
  async #copiesPlace(): Promise<{ publisher: Publisher; place: DelayPlace }> {
    const model = this.connection;
    if (!model) throw notConnected();
    const publisher = this.#copies;
    if (!publisher.isOpen || this.#copiesOn !== model) {
      if (publisher.isOpen) publisher.lost();
      await publisher.open(model, [], this.#link.topology);
      this.#copiesOn = model;
    }
    return { publisher, place: { topology: this.#link.topology, model, ch: publisher.channel! } };
  }

  /** The queue a delivery came from, while its channel is the current one. @internal */
  queueOf(msg: ConsumeMessage): string | undefined {
    const tag = msg.fields.consumerTag as string | undefined;
    if (tag === undefined || !this.#channelTags.has(tag)) return this.foreignQueueOf?.(msg);
    for (const [queue, t] of this.#tags) if (t === tag) return queue;
    return undefined;
  }

  /**
   * Declares the error exchange `exchange` (durable fanout) and its queue of
   * the same name, through the connection's topology: at ready(), so that
   * both exist before the first failure, and again after a reconnection.
   * @internal
   */
  async declareErrorExchange(exchange: string): Promise<void> {
    const { place } = await this.#copiesPlace();
    await place.topology.ensure(place.model, place.ch, errorExchangeDeclaration(exchange));
  }

  decode(content: Buffer): unknown {
    return this.encoder.decode(content);
  }

  /** Encodes an RPC result (a bare value is wrapped in `MessageResult`); throws when it cannot be encoded. @internal */
  encodeReply(result: Message<object> | unknown): Buffer {
    const body = isMessage(result) ? result.body : new MessageResult(result).body;
    return this.encoder.encode(body) as Buffer;
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
    this.sendReply(msg, this.encodeReply(result));
  }

  /** {@link rpcReply} for a result already encoded with {@link encodeReply}; `headers` go with it. @internal */
  sendReply(msg: ConsumeMessage, content: Buffer, headers?: Record<string, unknown>): void {
    const replyTo = msg.properties.replyTo as string | undefined;
    if (!replyTo) {
      this.log.warn(replyIds(msg), 'RPC has no reply_to; the reply is dropped');
      return;
    }
    const bad = badReplyTo(replyTo);
    if (bad) {
      this.log.warn({ ...replyIds(msg), replyTo: replyTo.slice(0, 300) }, `RPC reply_to ${bad}; the reply is dropped`);
      return;
    }
    const acks = this.#settleOn(msg);
    const ch = acks && this.#channel;
    if (!ch) return;
    acks.afterSettled(() => {
      try {
        ch.publish('', replyTo, content, {
          correlationId: msg.properties.correlationId,
          contentType: this.encoder.contentType,
          headers,
          timestamp: Math.floor(Date.now() / 1000),
        });
      } catch (err) {
        this.log.debug(
          { err: (err as Error).message, deliveryTag: msg.fields.deliveryTag },
          'reply not sent (the channel closed)',
        );
      }
    });
  }

  /**
   * Makes the current channel ready to serve RPC streams: its direct reply-to
   * is consumed, so that the stream messages it sends carry an address their
   * callers answer to (credit, cancel, keepalive). Once per channel.
   * @internal
   */
  async streamControl(): Promise<void> {
    const ch = this.channel;
    if (this.#controlOn === ch) return;
    this.#controlOn = ch;
    try {
      await ch.consume(
        REPLY_TO,
        (msg) => {
          const id = msg?.properties.correlationId as string | undefined;
          if (msg && id !== undefined)
            this.#streamWatchers.get(id)?.(msg.properties.headers as Record<string, unknown> | undefined);
        },
        { noAck: true },
      );
    } catch (err) {
      this.#controlOn = undefined;
      throw err;
    }
  }

  /** Listens for a stream's control messages (by its correlation id); returns how to stop. @internal */
  watchStream(correlationId: string, listener: (headers: Record<string, unknown> | undefined) => void): () => void {
    this.#streamWatchers.set(correlationId, listener);
    return () => this.#streamWatchers.delete(correlationId);
  }

  /**
   * Sends one stream message to the caller of `msg`, with this channel's
   * direct reply-to as the address to answer; false when the channel it
   * must go on (the request's) is gone.
   * @internal
   */
  streamSend(msg: ConsumeMessage, content: Buffer, headers: Record<string, unknown>): boolean {
    const ch = this.#channel;
    if (!ch || this.#controlOn !== ch) return false;
    try {
      ch.publish('', msg.properties.replyTo as string, content, {
        correlationId: msg.properties.correlationId,
        replyTo: REPLY_TO,
        contentType: this.encoder.contentType,
        headers,
      });
      return true;
    } catch {
      return false;
    }
  }

  /** `await using consumer = new C(…)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Makes `close()` close the channel without cancelling its consumers first
   * (a partitioned processor: see its close). @internal
   */
  holdConsumersUntilClose(): void {
    this.#holdConsumers = true;
  }

  /** Stops consuming and closes the channel (and the connection, when it is this consumer's own). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#exchangeWatch.stop();
    this.#acks?.flush();
    if (this.#holdConsumers) {
      // The channel's close ends its consumers and returns what they hold, in one step on the broker.
      this.#callback = undefined;
      this.#tags.clear();
    } else await this.stopConsuming();
    const ch = this.#channel;
    this.#channel = undefined;
    await ch?.close().catch(() => undefined);
    await this.#copies.close();
    await this.#link.close();
  }
}

/** What a log line about a reply that cannot be sent names. */
function replyIds(msg: ConsumeMessage) {
  return {
    messageId: msg.properties.messageId,
    correlationId: msg.properties.correlationId,
    deliveryTag: msg.fields.deliveryTag,
  };
}

const DIRECT_REPLY_TO = `${REPLY_TO}.`;
/** Base64 segments, as RabbitMQ encodes a direct reply-to address (one or two, depending on its version). */
const DIRECT_REPLY_SUFFIX =
  /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?(?:\.(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)?$/;

/**
 * Why a reply_to cannot be answered, if it cannot. RabbitMQ closes the whole
 * connection (541) on a publish to a direct reply-to name it cannot decode, so
 * names that are not what it hands out are refused here; a queue name longer
 * than AMQP allows could not be sent either.
 * @internal
 */
export function badReplyTo(replyTo: string): string | undefined {
  // A caller sends every call from one channel, so one address recurs: checked once, not per reply.
  if (replyTo === lastGoodReplyTo) return undefined;
  if (Buffer.byteLength(replyTo) > 255) return 'is longer than the 255 bytes AMQP allows';
  if (replyTo.startsWith(DIRECT_REPLY_TO)) {
    const suffix = replyTo.slice(DIRECT_REPLY_TO.length);
    // The pattern allows one dot at most: an empty segment is one at either end.
    if (suffix === '' || !DIRECT_REPLY_SUFFIX.test(suffix) || suffix.startsWith('.') || suffix.endsWith('.'))
      return 'is not a direct reply-to address RabbitMQ hands out';
  }
  lastGoodReplyTo = replyTo;
  return undefined;
}
let lastGoodReplyTo: string | undefined;

/** Publishes on a confirm channel; resolves when the broker confirmed, rejects on a nack or a lost channel. */
/** Why a copy cannot go out: no connection now. */
function notConnected(): BrokerError {
  return new BrokerError('cannot publish: not connected (the broker delivers the message again)', 'NOT_CONNECTED');
}

/** The error exchange and its queue, as the connection's topology holds them. */
function errorExchangeDeclaration(exchange: string): Declaration {
  return {
    key: `error exchange ${exchange}`,
    async declare(ch) {
      await ch.assertExchange(exchange, 'fanout', { durable: true });
      await ch.assertQueue(exchange, { durable: true });
      await ch.bindQueue(exchange, exchange, '');
    },
  };
}

function isMessage(v: unknown): v is Message<object> {
  return typeof v === 'object' && v !== null && 'body' in v && typeof (v as Message<object>).equals === 'function';
}
