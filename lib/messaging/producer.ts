import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { DEFAULTS } from '../config.js';
import { BrokerError, MalformedMessage, TopologyError } from '../errors.js';
import { componentLogger, type Logger } from '../log.js';
import { EventEmitter } from 'node:events';
import { openChannel } from '../transport/channels.js';
import { Deadlines } from '../transport/deadlines.js';
import { ManagedConnection, reopenSoon, type ConnectionEvent, type ConnectionEvents } from '../transport/managed.js';
import { JsonEncoder, type Encoder } from './encoder.js';
import { resolveExchange } from './exchange.js';
import { Fingerprint, type FingerprintDict } from './fingerprint.js';
import {
  Message,
  MessageCommand,
  MessageResult,
  MessageResultError,
  MessageResultException,
  RpcCommand,
  type AnyResult,
  type MessageBody,
} from './messages.js';
import type { ComponentOptions } from './options.js';
import { declareExchange, declareQueue, eksEntries, type Eks, type EksEntry } from './topology.js';

/** The trailing options object of `message_NAME` / `rpc_NAME`: every key starts with `_`. */
export interface SendOptions {
  /** Routing key on the default (first) exchange. */
  _key?: string;
  /** Exchanges and keys to send to instead of the producer's eks (`_key` is then ignored). */
  _eks?: Eks;
  /** Seconds to wait for an RPC reply before sending again. @default 30 */
  _timeout?: number;
  /** How many times an unanswered RPC is sent again. @default 4 */
  _max_retry?: number;
  /** Return the reply queue's name instead of waiting (collect with `consumeRpc`). */
  _queue_only?: boolean;
  /**
   * Whether a message no queue takes is an error (`UNROUTABLE`). By default
   * commands and RPCs must reach a queue, while statuses, results and other
   * events are publish/subscribe: nobody listening is fine.
   * @default the producer's `mandatory`, else true for commands only
   */
  _mandatory?: boolean;
}

/** Every send option there is; anything else starting with `_` is a typo. */
const SEND_OPTIONS: ReadonlySet<string> = new Set(['_key', '_eks', '_timeout', '_max_retry', '_queue_only', '_mandatory'] satisfies Array<keyof SendOptions>);

export interface ProducerOptions extends ComponentOptions {
  /**
   * What `message_NAME` does while the connection is down: `'fail'` rejects at
   * once with `NOT_CONNECTED`; `'buffer'` holds the send until the connection is
   * back (kept in memory: lost if the process dies). @default 'fail'
   */
  whileDisconnected?: 'fail' | 'buffer';
  /**
   * Where RPC replies come back. `'direct'`: RabbitMQ's direct reply-to, no
   * queue per call, replies matched by correlation id. `'queue'`: a reply
   * queue per call, as Python Postage does, for components that reply
   * without a correlation id (Python Postage's `rpc_reply`).
   * @default the class's static `replyTo`, 'direct'
   */
  replyTo?: 'direct' | 'queue';
  /**
   * How long `message_NAME` waits for the broker's confirm before rejecting
   * with `CONFIRM_TIMEOUT`. A connection can die without a word (a network
   * that drops packets): the heartbeat notices within two to three intervals,
   * and meanwhile no send waits longer than this. The clock stops while the
   * broker blocks the connection (a memory or disk alarm). A timed-out message
   * may still have been delivered: send it again (handlers are idempotent).
   * @default 15000
   */
  confirmTimeoutMs?: number;
}

export interface ConsumeRpcOptions {
  /** How many replies to wait for. @default 1 */
  resultLen?: number;
  /** Called with each reply body as it arrives. */
  callback?: (body: MessageBody<object>) => void;
  /** Seconds to wait for all replies. @default the producer's rpcTimeout */
  timeout?: number;
}

type MessageMethods<T> = {
  [K in keyof T as K extends `build_message_${infer N}` ? `message_${N}` : never]: T[K] extends (...args: infer A) => unknown
    ? (...args: [...A, SendOptions?]) => Promise<void>
    : never;
};
type RpcMethods<T> = {
  [K in keyof T as K extends `build_rpc_${infer N}` ? `rpc_${N}` : never]: T[K] extends (...args: infer A) => unknown
    ? {
        (...args: [...A, SendOptions & { _queue_only: true }]): Promise<string>;
        (...args: [...A, SendOptions?]): Promise<AnyResult>;
      }
    : never;
};
/** A `message_NAME` for a name without a builder: sends `MessageCommand(NAME, params)`. */
export type MessageSender = (params?: Record<string, unknown>, options?: SendOptions) => Promise<void>;
/** An `rpc_NAME` for a name without a builder: calls `RpcCommand(NAME, params)`. */
export interface RpcSender {
  (params: Record<string, unknown> | undefined, options: SendOptions & { _queue_only: true }): Promise<string>;
  (params?: Record<string, unknown>, options?: SendOptions): Promise<AnyResult>;
}
/** Every name, for producers that declare no builder at all (a bare `GenericProducer`, as in Postage). */
interface FallbackMethods {
  [name: `message_${string}`]: MessageSender;
  [name: `rpc_${string}`]: RpcSender;
}
type BuilderNames<T> = { [K in keyof T]: K extends `build_message_${string}` | `build_rpc_${string}` ? K : never }[keyof T];

/**
 * A producer with its generated `message_NAME` / `rpc_NAME` methods, typed
 * from its builders. Where a producer declares builders, a name it does not
 * declare is a compile error (a typo is caught there, not at run time); a name
 * without a builder is declared with `declare message_NAME: MessageSender` (or
 * `RpcSender`). A producer with no builder at all takes every name.
 */
export type Producer<T> = T & MessageMethods<T> & RpcMethods<T> & ([BuilderNames<T>] extends [never] ? FallbackMethods : unknown);

function isSendOptions(v: unknown): v is SendOptions {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Message) return false;
  const keys = Object.keys(v);
  return keys.length > 0 && keys.every((k) => k.startsWith('_'));
}

/**
 * Takes the trailing send options off `args`. `payloads` is how many leading
 * arguments may be payloads (a builder's parameters; one for a name without a
 * builder). Past them, an object of `_` keys is options, and a key that is no
 * option is an error. Where a payload may stand, it is options only when every
 * key is a send option; one with none (a MongoDB `{ _id: 42 }`) is the payload,
 * and one with both is refused rather than half dropped.
 */
function takeSendOptions(args: unknown[], payloads: number): SendOptions {
  const last = args[args.length - 1];
  if (args.length === 0 || !isSendOptions(last)) return {};
  const keys = Object.keys(last);
  const unknown = keys.filter((k) => !SEND_OPTIONS.has(k));
  const list = (ks: string[]) => ks.map((k) => `'${k}'`).join(', ');
  if (args.length > payloads) {
    if (unknown.length > 0) throw new TypeError(`unknown send option${unknown.length > 1 ? 's' : ''} ${list(unknown)}: the options are ${[...SEND_OPTIONS].join(', ')}`);
  } else if (unknown.length === keys.length) {
    return {};
  } else if (unknown.length > 0) {
    throw new TypeError(
      `an argument mixes send options (${list(keys.filter((k) => SEND_OPTIONS.has(k)))}) with keys that are none (${list(unknown)}): ` +
        `if it is the payload, pass the options after it; if it is options, the options are ${[...SEND_OPTIONS].join(', ')}`,
    );
  }
  args.pop();
  return last;
}

interface PendingRpc {
  resolve: (r: AnyResult) => void;
  reject: (err: BrokerError) => void;
  /** Where it went, for the error when no queue takes it. */
  target: EksEntry;
  timer: NodeJS.Timeout | undefined;
  /** Its own reply queue (`replyTo: 'queue'`), whose replies need no correlation id. */
  queue?: { name: string; consumerTag: string };
}

const REPLY_TO = 'amq.rabbitmq.reply-to';

/** One error for every target of a send that no queue took. */
function unroutableError(missed: readonly EksEntry[]): BrokerError {
  const unroutable = missed.map(([e, key]) => ({ exchange: e.name, key }));
  const list = unroutable.map((t) => `exchange '${t.exchange}' with key '${t.key}'`).join(', ');
  return new BrokerError(
    `no queue is bound to ${list}: the broker returned the message${missed.length > 1 ? ' for each of these' : ''}. Start the component that consumes it, or check the exchange and key.`,
    'UNROUTABLE',
    { unroutable },
  );
}

/**
 * Sends Postage envelopes. Subclass it, declare `static eks` and
 * `build_message_NAME` / `build_rpc_NAME` methods, then `await Sub.create()`.
 */
export class GenericProducer {
  static eks: Eks = [];
  /** Seconds an RPC waits for its reply before being sent again. */
  static rpcTimeout: number = DEFAULTS.rpcTimeout;
  /** How many times an unanswered RPC is sent again. */
  static maxRetry: number = DEFAULTS.maxRetry;
  /**
   * Whether a message no queue takes is an error (`UNROUTABLE`) for every send
   * of this producer. Unset: commands and RPCs must reach a queue, other
   * messages (statuses, results, events) need not. `_mandatory` on a send wins.
   */
  static mandatory: boolean | undefined = undefined;
  /** Where RPC replies come back: see {@link ProducerOptions.replyTo}. */
  static replyTo: 'direct' | 'queue' = 'direct';

  readonly fingerprint: FingerprintDict;
  readonly encoder: Encoder;
  eks: Eks;
  rpcTimeout: number;
  maxRetry: number;
  protected readonly log: Logger;
  #opts: ProducerOptions;
  #shared: ChannelModel | undefined;
  #managed: ManagedConnection | undefined;
  readonly #events = new EventEmitter();
  /** Why the broker last closed the confirm channel, for the sends it took down. */
  #channelError: Error | undefined;
  #closed = false;
  #renewing = false;
  #renewedAt = 0;
  readonly #whileDisconnected: 'fail' | 'buffer';
  /** Sends waiting for the connection to come back (whileDisconnected: 'buffer'). */
  #held: Array<() => void> = [];
  #channel: ConfirmChannel | undefined;
  #rpcChannel: Channel | undefined;
  /** The eks, checked once at connect. */
  #eks: EksEntry[] | undefined;
  #pending = new Map<string, PendingRpc>();
  #nextId = 0;
  #nextMessage = 0;
  /** `messageId|exchange|key` of messages the broker returned, until their confirm arrives. */
  #returned = new Set<string>();
  #idPrefix = `${process.pid}.${Date.now().toString(36)}.`;
  /** Bounds the wait for each confirm. */
  readonly #confirms: Deadlines;

  constructor(options: ProducerOptions = {}) {
    const cls = this.constructor as typeof GenericProducer;
    this.#opts = options;
    this.eks = cls.eks;
    this.rpcTimeout = cls.rpcTimeout;
    this.maxRetry = cls.maxRetry;
    this.fingerprint = { ...new Fingerprint(this.constructor.name, 'producer', { vhost: options.vhost }).asDict(), ...(options.fingerprint as FingerprintDict) };
    this.encoder = options.encoder ?? new JsonEncoder();
    this.#shared = options.connection;
    this.#whileDisconnected = options.whileDisconnected ?? 'fail';
    this.log = options.logger ?? componentLogger('producer', this.fingerprint.name);
    const confirmMs = options.confirmTimeoutMs ?? DEFAULTS.confirmTimeoutMs;
    if (!(confirmMs > 0)) throw new TypeError(`confirmTimeoutMs must be a positive number of milliseconds, not ${String(options.confirmTimeoutMs)}`);
    this.#confirms = new Deadlines(confirmMs);
    // No confirm comes while the broker blocks publishing; that wait is the alarm's, not a fault.
    this.#events.on('blocked', () => this.#confirms.pause());
    this.#events.on('unblocked', () => this.#confirms.resume());
  }

  static {
    // Names found nowhere on the instance or its classes become message_/rpc_
    // senders. A proxy at the top of the prototype chain sees only those misses,
    // and `this` stays the real instance (private fields keep working).
    const fallback = new Proxy(Object.prototype, {
      get(target, prop, receiver: GenericProducer) {
        if (typeof prop === 'string') {
          if (prop.startsWith('message_')) return (...args: unknown[]) => receiver.#send(prop.slice(8), 'message', args);
          if (prop.startsWith('rpc_')) return (...args: unknown[]) => receiver.#send(prop.slice(4), 'rpc', args);
        }
        return Reflect.get(target, prop, receiver);
      },
    });
    Object.setPrototypeOf(this.prototype, fallback);
  }

  /** Builds a producer, connects it and declares its eks. */
  static async create<T extends GenericProducer>(this: new (options?: ProducerOptions) => T, options: ProducerOptions = {}): Promise<Producer<T>> {
    const p = new this(options);
    await p.connect();
    return p as Producer<T>;
  }

  /** Connects (once) and declares the eks exchanges. */
  async connect(): Promise<void> {
    if (this.#channel) return;
    let model = this.#shared;
    if (!model) {
      const managed = new ManagedConnection({ ...this.#opts, connectionName: this.#opts.connectionName ?? `${this.fingerprint.name}@${this.fingerprint.host}:${this.fingerprint.pid}` }, this.log);
      this.#managed = managed;
      model = await managed.connect();
      managed.serve(
        this.#events,
        () => {
          // Sends fail fast until the connection is back; RPCs in flight already resolved through their channel's close.
          this.#channel = undefined;
          this.#rpcChannel = undefined;
        },
        (m) => this.#restore(m),
      );
    }
    await this.#openChannels(model);
  }

  /** Channels back (after a reconnection or a closed channel), then the sends held meanwhile go out. */
  async #restore(model: ChannelModel): Promise<void> {
    await this.#openChannels(model);
    this.#flushHeld();
  }

  #flushHeld(): void {
    const held = this.#held;
    this.#held = [];
    for (const send of held) send();
  }

  /** Connection events: 'connected' (after a reconnection), 'disconnected' (err), 'blocked' (reason), 'unblocked'. */
  on<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.#events.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  async #openConfirmChannel(model: ChannelModel): Promise<ConfirmChannel> {
    const ch = await openChannel(model, true);
    ch.on('error', (err: Error) => {
      this.#channelError = err;
      this.log.warn({ err: err.message }, 'producer channel error');
    });
    ch.on('close', () => this.#channelLost(ch));
    ch.on('return', (msg: ConsumeMessage) => {
      const id = msg.properties.messageId as string | undefined;
      if (id) this.#returned.add(`${id}|${msg.fields.exchange}|${msg.fields.routingKey}`);
    });
    this.#eks = eksEntries(this.eks);
    for (const [exchange] of this.#eks) await declareExchange(ch, exchange);
    return ch;
  }

  async #openChannels(model: ChannelModel): Promise<void> {
    const ch = await this.#openConfirmChannel(model);
    // RPCs get a plain channel: a request needs no publisher confirm (its reply
    // is the acknowledgement), and a confirm per call would cost every round trip.
    // Direct reply-to: no queue per RPC; replies come back on the channel that published.
    const rpc = await openChannel(model);
    rpc.on('error', (err: Error) => this.log.warn({ err: err.message }, 'producer RPC channel error'));
    rpc.on('close', () => this.#channelLost(rpc));
    // A request no queue took comes back (it is published mandatory): nobody will answer it.
    rpc.on('return', (msg: ConsumeMessage) => {
      const id = msg.properties.correlationId as string | undefined;
      const entry = id === undefined ? undefined : this.#pending.get(id);
      if (entry) this.#fail(id!, unroutableError([entry.target]));
    });
    await rpc.consume(REPLY_TO, (msg) => msg && this.#onReply(msg), { noAck: true });
    this.#channel = ch;
    this.#rpcChannel = rpc;
    this.#channelError = undefined;
  }

  get connection(): ChannelModel | undefined {
    return this.#shared ?? this.#managed?.model;
  }

  /**
   * One of the two channels closed. RPCs in flight reject with CHANNEL_CLOSED;
   * if the connection lives on (the broker closed the channel, e.g. for a publish
   * to a missing exchange), both channels are opened again.
   */
  #channelLost(which: Channel): void {
    // A channel retired on purpose (see #renewAfterNack) takes nothing down with it.
    if (which !== this.#channel && which !== this.#rpcChannel) return;
    this.#failPending('its channel closed before the reply came');
    const [ch, rpc] = [this.#channel, this.#rpcChannel];
    this.#channel = undefined;
    this.#rpcChannel = undefined;
    for (const other of [ch, rpc]) if (other && other !== which) void other.close().catch(() => undefined);
    if (this.#closed) return;
    reopenSoon({
      model: () => this.connection,
      settled: () => this.#channel !== undefined || this.#closed,
      restore: (m) => this.#restore(m),
      events: this.#events,
      log: this.log,
      what: 'producer',
    });
  }

  /**
   * After a nack, publishing goes on on a fresh confirm channel. A broker
   * channel can stay wedged after a quorum queue's leader dies (RabbitMQ 3.10
   * nacked every later publish on it for minutes while the queue, under its
   * new leader, took publishes from any new channel); a nack for a legitimate
   * reason (a full queue with reject-publish) costs one channel at most once a second.
   */
  #renewAfterNack(old: ConfirmChannel): void {
    const model = this.connection;
    if (old !== this.#channel || this.#renewing || !model || this.#closed || Date.now() - this.#renewedAt < 1000) return;
    this.#renewing = true;
    this.#renewedAt = Date.now();
    this.#openConfirmChannel(model).then(
      (ch) => {
        this.#renewing = false;
        if (this.#channel !== old || this.#closed) {
          void ch.close().catch(() => undefined);
          return;
        }
        this.#channel = ch;
        this.log.warn('the broker nacked a message; publishing goes on on a new channel');
        // Confirms still due on the old channel arrive before its close-ok.
        void old.close().catch(() => undefined);
      },
      (err) => {
        this.#renewing = false;
        this.log.warn({ err: (err as Error).message }, 'could not open a new channel after a nack; keeping the old one');
      },
    );
  }

  #rpcChannelOrThrow(): Channel {
    this.#channelOrThrow();
    return this.#rpcChannel!;
  }

  #channelOrThrow(): ConfirmChannel {
    if (!this.#channel) {
      throw new BrokerError(
        this.#managed ? 'producer is not connected to RabbitMQ (reconnecting): send again once it is back' : 'producer is not connected: use `await Producer.create()` or `await producer.connect()`',
        'NOT_CONNECTED',
      );
    }
    return this.#channel;
  }

  #targets(opts: SendOptions): EksEntry[] {
    if (opts._eks) return eksEntries(opts._eks);
    const own = this.#eks ?? eksEntries(this.eks);
    if (opts._key !== undefined) {
      if (own.length === 0) throw new TopologyError('_key needs a default exchange: declare static eks');
      return [[own[0][0], opts._key]];
    }
    return own;
  }

  #build(name: string, category: 'message' | 'rpc', args: unknown[]): { msg: Message<object>; opts: SendOptions } {
    const builder = (this as unknown as Record<string, unknown>)[`build_${category}_${name}`];
    const opts = takeSendOptions(args, typeof builder === 'function' ? builder.length : 1);
    let msg: Message<object>;
    if (typeof builder === 'function') msg = builder.apply(this, args) as Message<object>;
    else {
      const params = (args[0] ?? {}) as Record<string, unknown>;
      msg = category === 'rpc' ? new RpcCommand(name, params) : new MessageCommand(name, params);
    }
    msg.setFingerprint(this.fingerprint);
    return { msg, opts };
  }

  #send(name: string, category: 'message' | 'rpc', args: unknown[]): Promise<unknown> {
    try {
      const { msg, opts } = this.#build(name, category, args);
      return category === 'rpc' ? this.#rpc(msg.body, opts) : this.#publishAll(msg.body, opts);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Publishes persistently to every target and resolves when the broker confirmed them all. */
  #publishAll(body: object, opts: SendOptions): Promise<void> {
    if (!this.#channel && this.#managed && this.#whileDisconnected === 'buffer' && !this.#closed) {
      // Held until the connection is back, then sent in order; the promise settles with that send.
      return new Promise<void>((resolve, reject) => this.#held.push(() => this.#publishAll(body, opts).then(resolve, reject)));
    }
    let ch: ConfirmChannel;
    try {
      ch = this.#channelOrThrow();
    } catch (err) {
      return Promise.reject(err);
    }
    const content = this.encoder.encode(body) as Buffer;
    const targets = this.#targets(opts);
    if (this.log.isLevelEnabled('debug')) this.log.debug({ targets: targets.map(([e, k]) => `${resolveExchange(e).name}/${k}`), body }, 'publish');
    // One id per message, whatever its targets: consumers log it, and returns are matched by it.
    const messageId = this.#idPrefix + 'm' + this.#nextMessage++;
    // Mandatory: a message no queue takes comes back (basic.return, always before its confirm) instead of vanishing.
    // Commands must reach a queue; other messages (statuses, results, events) are publish/subscribe.
    const mandatory = opts._mandatory ?? (this.constructor as typeof GenericProducer).mandatory ?? (body as { type?: unknown }).type === 'command';
    const props = { persistent: true, mandatory, messageId, contentType: this.encoder.contentType };
    // One target (the usual case) needs one promise, not one per target plus Promise.all.
    if (targets.length === 1) {
      return new Promise<void>((resolve, reject) =>
        this.#publishOne(ch, targets[0], content, props, (routed) => (routed ? resolve() : reject(unroutableError([targets[0]]))), reject),
      );
    }
    return Promise.all(targets.map((t) => new Promise<boolean>((resolve, reject) => this.#publishOne(ch, t, content, props, resolve, reject)))).then((routed) => {
      const missed = targets.filter((_, i) => !routed[i]);
      if (missed.length > 0) throw unroutableError(missed);
    });
  }

  /** Publishes to one target; `done(false)` when the broker returned it (no queue took it). */
  #publishOne(ch: ConfirmChannel, [exchange, key]: EksEntry, content: Buffer, props: Options.Publish & { messageId: string }, done: (routed: boolean) => void, reject: (err: Error) => void): void {
    // An Exchange class and a plain exchange object both carry their name in `name`.
    const exName = exchange.name;
    let timedOut = false;
    const wait = this.#confirms.start(() => {
      timedOut = true;
      const s = this.#confirms.ms / 1000;
      reject(
        new BrokerError(
          `no confirm from the broker for a message to ${exName}/${key} within ${s} s: the connection may be dead (its heartbeat will tell). The message may or may not have arrived: send it again (or raise confirmTimeoutMs)`,
          'CONFIRM_TIMEOUT',
        ),
      );
    });
    ch.publish(exName, key, content, props, (err) => {
      if (timedOut) return;
      this.#confirms.end(wait);
      if (err) {
        const closed = this.#channelError;
        reject(
          closed
            ? new BrokerError(`the broker closed the channel before confirming a message to ${exName}/${key}: ${closed.message}`, 'CHANNEL_CLOSED', { cause: closed })
            : new BrokerError(`the broker refused a message to ${exName}/${key} (nack): send it again`, 'NACK', { cause: err }),
        );
        if (!closed) this.#renewAfterNack(ch);
      } else done(!(this.#returned.size > 0 && this.#returned.delete(`${props.messageId}|${exName}|${key}`)));
    });
  }

  /** Sends a plain `Message(args, kwds)`. The last argument may be send options. */
  message(...args: unknown[]): Promise<void> {
    let opts: SendOptions;
    try {
      opts = takeSendOptions(args, 2);
    } catch (err) {
      return Promise.reject(err);
    }
    const [positional, kwds] = args as [unknown[] | undefined, Record<string, unknown> | undefined];
    const msg = new Message(positional, kwds).setFingerprint(this.fingerprint);
    return this.#publishAll(msg.body, opts);
  }

  /** Sends an already built body unchanged. */
  forward(body: object, opts: SendOptions = {}): Promise<void> {
    try {
      takeSendOptions([opts], 0);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#publishAll(body, opts);
  }

  #rpc(body: object, opts: SendOptions): Promise<AnyResult | string> {
    const ch = this.#rpcChannelOrThrow();
    const [exchange, key] = this.#targets(opts)[0];
    const exName = resolveExchange(exchange).name;
    const content = this.encoder.encode(body) as Buffer;
    if (opts._queue_only) {
      return declareQueue(ch, '', { exclusive: true, autoDelete: true, durable: false }).then((queue) => {
        ch.publish(exName, key, content, { contentType: this.encoder.contentType, replyTo: queue, correlationId: queue });
        return queue;
      });
    }
    const timeoutMs = (opts._timeout ?? this.rpcTimeout) * 1000;
    const maxRetry = opts._max_retry ?? this.maxRetry;
    const correlationId = this.#idPrefix + this.#nextId++;
    // As for commands: an RPC no queue takes fails at once instead of waiting out its timeout and retries.
    const mandatory = opts._mandatory ?? (this.constructor as typeof GenericProducer).mandatory ?? true;
    const ownQueue = (this.#opts.replyTo ?? (this.constructor as typeof GenericProducer).replyTo) === 'queue';
    return (ownQueue ? this.#replyQueue(ch, correlationId) : Promise.resolve(undefined)).then(
      (queue) =>
        new Promise<AnyResult>((resolve, reject) => {
          let attempt = 0;
          const entry: PendingRpc = { resolve, reject, timer: undefined, queue, target: [exchange, key] };
          const send = () => {
            // Every attempt keeps the correlation id (and reply queue), so a late reply to an earlier one still completes the call.
            ch.publish(exName, key, content, { contentType: this.encoder.contentType, replyTo: queue?.name ?? REPLY_TO, correlationId, mandatory });
            entry.timer = setTimeout(() => {
              if (attempt < maxRetry) {
                attempt++;
                this.log.debug({ correlationId, attempt }, 'RPC unanswered, sending again');
                send();
              } else {
                this.#settle(correlationId, new MessageResultException('TimeoutError', `no reply to RPC ${exName}/${key} after ${maxRetry + 1} attempts of ${timeoutMs / 1000} s`));
              }
            }, timeoutMs);
          };
          this.#pending.set(correlationId, entry);
          send();
        }),
    );
  }

  /** A reply queue for one call (exclusive, deleted with its consumer): whatever arrives there is that call's reply. */
  async #replyQueue(ch: Channel, correlationId: string): Promise<{ name: string; consumerTag: string }> {
    const name = await declareQueue(ch, '', { exclusive: true, autoDelete: true, durable: false });
    const { consumerTag } = await ch.consume(name, (msg) => msg && this.#onReply(msg, correlationId), { noAck: true });
    return { name, consumerTag };
  }

  /** Resolves a pending call once, releasing its timer and reply queue. */
  #settle(id: string, result: AnyResult): void {
    this.#release(id)?.resolve(result);
  }

  /** Ends a call for a failure that is not the remote side's (unroutable, disconnected, closed): it rejects. */
  #fail(id: string, err: BrokerError): void {
    this.#release(id)?.reject(err);
  }

  /** Forgets a pending call once, releasing its timer and reply queue. */
  #release(id: string): PendingRpc | undefined {
    const entry = this.#pending.get(id);
    if (!entry) return undefined;
    this.#pending.delete(id);
    clearTimeout(entry.timer);
    if (entry.queue) void this.#rpcChannel?.cancel(entry.queue.consumerTag).catch(() => undefined);
    return entry;
  }

  /**
   * A reply on direct reply-to, or on a call's own queue (`forCall`). A reply
   * without a correlation id (Python Postage sends none) completes the one
   * call in flight, when there is exactly one: it can only be its answer.
   */
  #onReply(msg: ConsumeMessage, forCall?: string): void {
    let id = forCall ?? (msg.properties.correlationId as string | undefined);
    if (id === undefined && this.#pending.size === 1) {
      const [only, entry] = this.#pending.entries().next().value as [string, PendingRpc];
      if (!entry.queue) id = only;
    }
    if (id === undefined || !this.#pending.has(id)) {
      this.log.debug({ correlationId: id }, 'reply for no pending RPC (already answered, timed out, or uncorrelated while several calls are in flight)');
      return;
    }
    this.#settle(id, this.#toResult(msg.content));
  }

  #toResult(content: Buffer): AnyResult {
    let body: unknown;
    try {
      body = this.encoder.decode(content);
      const m = Message.fromBody(body);
      if (m instanceof MessageResult) return m;
      throw new MalformedMessage(`type "${m.type}" is not a result`);
    } catch (err) {
      const reason = err instanceof MalformedMessage ? err.reason : String(err);
      return new MessageResultError(`Malformed reply (${reason})`);
    }
  }

  #failPending(why: string, code: 'CHANNEL_CLOSED' | 'CLOSED' = 'CHANNEL_CLOSED'): void {
    for (const [id, { target }] of [...this.#pending]) {
      this.#fail(id, new BrokerError(`RPC to ${target[0].name}/${target[1]} lost: ${why}. It may or may not have been handled: call again if it is safe to`, code));
    }
  }

  /**
   * Collects replies from a reply queue made by `_queue_only`: resolves with
   * `resultLen` results, or with those that came before the timeout (a
   * `MessageResultException('TimeoutError', …)` when none did).
   */
  async consumeRpc(queue: string, options: ConsumeRpcOptions = {}): Promise<AnyResult[]> {
    const ch = this.#rpcChannelOrThrow();
    const resultLen = options.resultLen ?? 1;
    const timeoutMs = (options.timeout ?? this.rpcTimeout) * 1000;
    const results: AnyResult[] = [];
    let tag: string | undefined;
    let finish!: () => void;
    const done = new Promise<void>((r) => (finish = r));
    const timer = setTimeout(finish, timeoutMs);
    const ok = await ch.consume(
      queue,
      (msg) => {
        if (!msg || results.length >= resultLen) return;
        const r = this.#toResult(msg.content);
        results.push(r);
        options.callback?.(r.body);
        if (results.length >= resultLen) finish();
      },
      { noAck: true },
    );
    tag = ok.consumerTag;
    await done;
    clearTimeout(timer);
    await ch.cancel(tag).catch(() => undefined);
    if (results.length === 0) results.push(new MessageResultException('TimeoutError', `no reply on ${queue} within ${timeoutMs / 1000} s`));
    return results;
  }

  /** `await using producer = await P.create(…)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Closes the channel (and the connection, when it is this producer's own). Pending RPCs reject with `CLOSED`. */
  async close(): Promise<void> {
    this.#closed = true;
    const held = this.#held;
    this.#held = [];
    // Held sends fail now: channelOrThrow rejects them with NOT_CONNECTED.
    for (const send of held) send();
    this.#failPending('the producer was closed', 'CLOSED');
    const ch = this.#channel;
    const rpc = this.#rpcChannel;
    this.#channel = undefined;
    this.#rpcChannel = undefined;
    await rpc?.close().catch(() => undefined);
    await ch?.close().catch(() => undefined);
    await this.#managed?.close();
  }
}

