import type { ChannelModel } from 'amqplib';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { DEFAULTS } from '../config.js';
import { BrokerError, PostageError, TopologyError } from '../errors.js';
import { asPino, componentLogger, type Logger } from '../log.js';
import { Link } from '../transport/link.js';
import type { ConnectionEvent, ConnectionEvents } from '../transport/managed.js';
import type { ConnectionStatus } from '../transport/status.js';
import type { Encoder } from '../envelope/encoder.js';
import { defaultEncoder, EncryptedJsonEncoder } from '../envelope/encryption.js';
import { Fingerprint, type FingerprintDict } from '../envelope/fingerprint.js';
import { Message, MessageCommand, MessageResultError, RpcCommand, type AnyResult } from '../envelope/messages.js';
import type { ComponentOptions } from '../component-options.js';
import { takeSendOptions, type SendOptions } from './send-options.js';
import { checkDelay } from '../topology/delay.js';
import { assertJsonable } from './jsonable.js';
import { compose } from '../compose.js';
import { DEFAULT_WINDOW, MAX_WINDOW } from '../envelope/stream-protocol.js';
import { sendProperties } from './properties.js';
import { asCloudEvent, carryTrace, CE_PREFIX } from '../formats/cloudevents.js';
import { currentScope, HEADERS, type DeliveryScope } from '../scope/context.js';
import { instruments } from '../telemetry/metrics.js';
import {
  activeContext,
  ATTR,
  endSpan,
  extractContext,
  injectContext,
  passTraceOn,
  startPublishSpan,
  startRpcSpan,
  tracingOn,
  trace,
} from '../telemetry/tracing.js';
import type { Attributes } from '@opentelemetry/api';
import { Publisher } from './publisher.js';
import { TRANSPORT, type Transport } from './transport.js';
import { RpcClient, type ConsumeRpcOptions } from './rpc-client.js';
import { eksEntries, type Eks, type EksEntry } from '../topology/topology.js';
import { type HeldSend, holdingTransaction } from '../stores/held.js';
import type { OutboxMessage } from '../stores/store.js';
import type { ContractBrand, ContractSenders } from './contract-senders.js';

export type { SendOptions } from './send-options.js';

const CE_SPECVERSION = `${CE_PREFIX}specversion`;

/** A send on its way through a producer's middleware (`producer.use`). */
export interface OutgoingSend {
  /** What is sent: a message, an RPC call, or an RPC stream's request. */
  readonly kind: 'message' | 'rpc' | 'stream';
  /** The first target's exchange and routing key (a send to several targets goes to each). */
  readonly exchange: string;
  readonly routingKey: string;
  /** The envelope, as it will be encoded. */
  readonly message: Readonly<Record<string, unknown>>;
  /** AMQP headers to send: the send's `_headers`, writable until `next()` is called. */
  headers: Record<string, unknown>;
}

/**
 * A producer middleware (`producer.use`), Koa's convention: runs around every
 * send of the producer (messages, RPCs, streams); `await next()` sends, once.
 * For an RPC, `next()` resolves when the answer came. A middleware that
 * returns without calling `next()` drops the send: a message resolves without
 * being sent, an RPC to a `MessageResultError`, a stream ends empty.
 */
export type ProducerMiddleware = (send: OutgoingSend, next: () => Promise<void>) => unknown;
export type { ConsumeRpcOptions } from './rpc-client.js';

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

/** Each builder `build_${From}_NAME` of `T` as a sender `${To}_NAME`: its arguments, then send options, giving `R`. */
type Senders<T, From extends string, To extends string, R> = {
  [K in keyof T as K extends `build_${From}_${infer N}` ? `${To}_${N}` : never]: T[K] extends (
    ...args: infer A
  ) => unknown
    ? (...args: [...A, SendOptions?]) => R
    : never;
};
type MessageMethods<T> = Senders<T, 'message', 'message', Promise<void>>;
type RpcMethods<T> = {
  [K in keyof T as K extends `build_rpc_${infer N}` ? `rpc_${N}` : never]: T[K] extends (...args: infer A) => unknown
    ? {
        (...args: [...A, SendOptions & { _queue_only: true }]): Promise<string>;
        (...args: [...A, SendOptions?]): Promise<AnyResult>;
      }
    : never;
};
/**
 * A `message_NAME` for a name without a builder: sends `MessageCommand(NAME, params)`.
 * `P` types the parameters: `MessageSender<ParamsOf<typeof Resize>>` shares a handler's schema.
 */
export type MessageSender<P extends object = Record<string, unknown>> = (
  params?: P,
  options?: SendOptions,
) => Promise<void>;
/** An `rpc_NAME` for a name without a builder: calls `RpcCommand(NAME, params)`. */
export interface RpcSender<P extends object = Record<string, unknown>> {
  (params: P | undefined, options: SendOptions & { _queue_only: true }): Promise<string>;
  (params?: P, options?: SendOptions): Promise<AnyResult>;
}
/**
 * The parameters a command's schema describes, for a sender: a command's
 * content is `{ parameters }`, so a handler's schema of it types
 * `message_NAME`'s argument as its `parameters`.
 */
export type ParamsOf<S extends StandardSchemaV1> =
  StandardSchemaV1.InferInput<S> extends { parameters: infer P extends object }
    ? P
    : StandardSchemaV1.InferInput<S> extends object
      ? StandardSchemaV1.InferInput<S>
      : never;
/**
 * An `rpcStream_NAME`: calls `RpcCommand(NAME, params)` on a streaming
 * handler and iterates what it yields (`for await`). `_timeout` is the idle
 * time between items (seconds), `_window` how many items the server may send ahead.
 */
export type StreamSender<P extends object = Record<string, unknown>> = (
  params?: P,
  options?: SendOptions,
) => AsyncIterableIterator<unknown>;
type StreamMethods<T> = Senders<T, 'rpc', 'rpcStream', AsyncIterableIterator<unknown>>;
/** Every name, for producers that declare no builder at all (a bare `GenericProducer`, as in Postage). */
interface FallbackMethods {
  [name: `message_${string}`]: MessageSender;
  [name: `rpc_${string}`]: RpcSender;
  [name: `rpcStream_${string}`]: StreamSender;
}
type BuilderNames<T> = {
  [K in keyof T]: K extends `build_message_${string}` | `build_rpc_${string}` ? K : never;
}[keyof T];

/**
 * A producer with its generated `message_NAME` / `rpc_NAME` methods, typed
 * from its builders. Where a producer declares builders, a name it does not
 * declare is a compile error (a typo is caught there, not at run time); a name
 * without a builder is declared with `declare message_NAME: MessageSender` (or
 * `RpcSender`). A producer with no builder at all takes every name, unless it
 * is typed from a contract (`ContractProducer`): then it takes the contract's.
 */
export type Producer<T> = T &
  MessageMethods<T> &
  RpcMethods<T> &
  StreamMethods<T> &
  ContractMethods<T> &
  ([BuilderNames<T>] extends [never] ? ('~contract' extends keyof T ? unknown : FallbackMethods) : unknown);
/** A producer typed from a contract (`ContractProducer`): its names' senders, and no others. */
type ContractMethods<T> = T extends ContractBrand<infer C> ? ContractSenders<C> : unknown;

/**
 * Sends Postage envelopes. Subclass it, declare `static eks` and
 * `build_message_NAME` / `build_rpc_NAME` methods, then `await Sub.create()`.
 *
 * A send is built here (builder or fallback, fingerprint, options), then
 * handed to the {@link Publisher} (confirms, returns, nacks) or the
 * {@link RpcClient} (replies, timeouts, retries); the {@link Link} owns the
 * connection and both channels' life.
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
  readonly #replyTo: 'direct' | 'queue';
  readonly #whileDisconnected: 'fail' | 'buffer';
  /** Sends waiting for the connection to come back (whileDisconnected: 'buffer'). */
  #held: Array<() => void> = [];
  /** The eks, checked once at connect. */
  #eks: EksEntry[] | undefined;
  readonly #link: Link;
  readonly #idPrefix = `${process.pid}.${Date.now().toString(36)}.`;
  #nextId = 0;
  readonly #publisher: Publisher;
  readonly #rpc: RpcClient;
  /** `use()`, in the order added; undefined until the first, so sends without middleware pay nothing. */
  #middleware: ProducerMiddleware[] | undefined;

  constructor(options: ProducerOptions = {}) {
    const cls = this.constructor as typeof GenericProducer;
    this.eks = cls.eks;
    this.rpcTimeout = cls.rpcTimeout;
    this.maxRetry = cls.maxRetry;
    this.fingerprint = {
      ...new Fingerprint(this.constructor.name, 'producer', { vhost: options.vhost }).asDict(),
      ...(options.fingerprint as FingerprintDict),
    };
    this.encoder = options.encoder ?? defaultEncoder();
    this.#whileDisconnected = options.whileDisconnected ?? 'fail';
    this.#replyTo = options.replyTo ?? cls.replyTo;
    this.log = options.logger
      ? asPino(options.logger, { component: 'producer', componentName: this.fingerprint.name })
      : componentLogger('producer', this.fingerprint.name);
    const confirmMs = options.confirmTimeoutMs ?? DEFAULTS.confirmTimeoutMs;
    if (!(confirmMs > 0))
      throw new TypeError(
        `confirmTimeoutMs must be a positive number of milliseconds, not ${String(options.confirmTimeoutMs)}`,
      );
    const lost = () => this.#link.channelLost();
    // Tests put a recording transport here (postage-ts/testing): no broker, the rest of the producer as it is.
    const transport = (options as { [TRANSPORT]?: Transport })[TRANSPORT];
    this.#publisher = transport?.publisher ?? new Publisher(this.log, confirmMs, lost);
    this.#rpc = transport?.rpc ?? new RpcClient(this.log, this.encoder, lost);
    this.#link = new Link(
      {
        ...options,
        connectionName:
          options.connectionName ?? `${this.fingerprint.name}@${this.fingerprint.host}:${this.fingerprint.pid}`,
      },
      this.log,
      'producer',
      {
        open: (model) => this.#open(model),
        lost: () => {
          this.#publisher.lost();
          this.#rpc.lost();
        },
        isOpen: () => this.#publisher.isOpen && this.#rpc.isOpen,
        close: () => this.close(),
      },
    );
    this.#link.on('blocked', () => this.#publisher.pause());
    this.#link.on('unblocked', () => this.#publisher.resume());
  }

  static {
    // Names found nowhere on the instance or its classes become message_/rpc_
    // senders. A proxy at the top of the prototype chain sees only those misses,
    // and `this` stays the real instance (private fields keep working).
    const fallback = new Proxy(Object.prototype, {
      get(target, prop, receiver: GenericProducer) {
        if (typeof prop === 'string') {
          if (prop.startsWith('message_'))
            return (...args: unknown[]) => receiver.#send(prop.slice(8), 'message', args);
          if (prop.startsWith('rpc_')) return (...args: unknown[]) => receiver.#send(prop.slice(4), 'rpc', args);
          if (prop.startsWith('rpcStream_')) return (...args: unknown[]) => receiver.#stream(prop.slice(10), args);
        }
        return Reflect.get(target, prop, receiver);
      },
    });
    Object.setPrototypeOf(this.prototype, fallback);
  }

  /** Builds a producer, connects it and declares its eks. */
  static async create<T extends GenericProducer>(
    this: new (
      options?: ProducerOptions,
    ) => T,
    options: ProducerOptions = {},
  ): Promise<Producer<T>> {
    const p = new this(options);
    try {
      await p.connect();
    } catch (err) {
      // Refused (a wrong password, an exchange redeclared with another type): nothing stays open, so the process can
      // exit.
      await p.close().catch(() => undefined);
      throw err;
    }
    return p as Producer<T>;
  }

  /** Connects (once) and declares the eks exchanges. */
  async connect(): Promise<void> {
    if (this.#publisher.isOpen) return;
    this.#connecting = true;
    await this.#link.connect();
  }

  /** Whether connect() (or create()) was ever called: a send before it is a mistake to name, not a lost connection. */
  #connecting = false;

  /** Both channels on a connection (the first, or after a loss), then the sends held meanwhile go out. */
  async #open(model: ChannelModel): Promise<void> {
    this.#eks = eksEntries(this.eks);
    await this.#publisher.open(model, this.#eks, this.#link.topology);
    await this.#rpc.open(model);
    const held = this.#held;
    this.#held = [];
    for (const send of held) send();
  }

  /** Connection events: 'connected' (after a reconnection), 'disconnected' (err), 'blocked' (reason), 'unblocked'. */
  on<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.#link.on(event, listener);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.#link.off(event, listener);
    return this;
  }

  get connection(): ChannelModel | undefined {
    return this.#link.model;
  }

  /** Where its connection stands: connecting, ready, reconnecting (attempt, last error), blocked (reason), closed. */
  get status(): ConnectionStatus {
    return this.#link.status;
  }

  #notConnected = (): BrokerError =>
    new BrokerError(
      !this.#connecting
        ? `${this.constructor.name} was never connected: build it with \`await ${this.constructor.name}.create()\` ` +
            '(or call `await producer.connect()` after new)'
        : this.#link.recovers
          ? 'producer is not connected to RabbitMQ (reconnecting): send again once it is back'
          : 'producer is not connected: use `await Producer.create()` or `await producer.connect()`',
      'NOT_CONNECTED',
    );

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
    assertJsonable(msg.body.content, '');
    return { msg, opts };
  }

  /**
   * Adds a middleware around every send of this producer, Koa's way:
   * `producer.use(async (send, next) => { send.headers['x-tenant'] = 't1'; await next(); })`.
   * In the order added; returns the producer, so calls chain.
   */
  use(mw: ProducerMiddleware): this {
    if (typeof mw !== 'function')
      throw new TypeError(`producer.use() takes a function (send, next) => …, not ${typeof mw}`);
    (this.#middleware ??= []).push(mw);
    return this;
  }

  #send(name: string, category: 'message' | 'rpc', args: unknown[]): Promise<unknown> {
    try {
      const { msg, opts } = this.#build(name, category, args);
      const scope = currentScope();
      const rpc = category === 'rpc';
      // Without middleware, no closure around the send: one per send was measurable on the caller's path.
      if (!this.#middleware) return rpc ? this.#call(msg.body, opts, scope) : this.#publish(msg.body, opts, scope);
      const core = (o: SendOptions): Promise<unknown> =>
        rpc ? this.#call(msg.body, o, scope) : this.#publish(msg.body, o, scope);
      const dropped = () =>
        rpc
          ? new MessageResultError(`RPC '${name}' not sent: a producer middleware returned without calling next()`)
          : undefined;
      return this.#around(category, msg.body, opts, scope, core, dropped);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Runs a send through the producer's middleware; the innermost `next` is
   * `core`, given the options with the headers the middleware set.
   * `dropped`: what the send resolves to when a middleware did not call `next`.
   */
  #around<R>(
    kind: OutgoingSend['kind'],
    body: object,
    opts: SendOptions,
    scope: DeliveryScope | undefined,
    core: (opts: SendOptions) => Promise<R>,
    dropped: () => R,
  ): Promise<R> {
    const list = this.#middleware!;
    refuseAfterFailure(scope);
    const [target] = this.#targets(opts);
    const send: OutgoingSend = {
      kind,
      exchange: target?.[0].name ?? '',
      routingKey: target?.[1] ?? '',
      message: body as Record<string, unknown>,
      headers: { ...opts._headers },
    };
    let sent = false;
    let result: R | undefined;
    const inner = (): Promise<void> => {
      sent = true;
      return core(Object.keys(send.headers).length > 0 ? { ...opts, _headers: send.headers } : opts).then((r) => {
        result = r;
      });
    };
    return compose(list, send, inner, 'producer middleware', this.log).then(() => (sent ? (result as R) : dropped()));
  }

  /**
   * Publishes persistently to every target and resolves when the broker
   * confirmed them all; a bad option rejects. Inside a handler whose
   * processor holds sends (its outbox), the send is validated and encoded
   * now, held, and resolves at once: it goes out when the handler succeeded.
   */
  #publish(body: object, opts: SendOptions, scope: DeliveryScope | undefined = currentScope()): Promise<void> {
    try {
      refuseAfterFailure(scope);
      const send = this.#prepare(body, opts, scope);
      if (opts._outbox === false) return send();
      // Inside store.transaction(): held by it, written to its outbox, published after its commit.
      const tx = holdingTransaction();
      if (tx) return tx.hold(send);
      return scope?.holding ? scope.hold(send) : send();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Validates and encodes a send now (its properties read the delivery being handled); the function returned publishes
   * it.
   */
  #prepare(body: object, opts: SendOptions, scope: DeliveryScope | undefined): HeldSend {
    const delay = opts._delay === undefined ? 0 : checkDelay('_delay', opts._delay);
    if (delay > 0 && opts._expiration !== undefined)
      throw new TypeError('_delay and _expiration cannot go together: the expiration would end the delay early');
    const targets = this.#targets(opts);
    const props = sendProperties(opts, scope, this.#newId(), false);
    // A CloudEvent's body is its data as plain JSON, no envelope, its attributes in headers (lib/formats).
    if (opts._cloudevent && this.encoder instanceof EncryptedJsonEncoder)
      throw new TypeError(
        "_cloudevent sends the data as plain JSON, which would bypass this producer's encryption: " +
          'send it as an envelope, or from a producer without EncryptedJsonEncoder',
      );
    const content = opts._cloudevent
      ? asCloudEvent(body, opts._cloudevent, props, this.fingerprint)
      : (this.encoder.encode(body) as Buffer);
    // Mandatory: a message no queue takes comes back (basic.return, always before its confirm) instead of vanishing.
    // Commands must reach a queue; other messages (statuses, results, events) are publish/subscribe.
    props.mandatory =
      opts._mandatory ??
      (this.constructor as typeof GenericProducer).mandatory ??
      (body as { type?: unknown }).type === 'command';
    props.contentType ??= this.encoder.contentType;
    const send: HeldSend = (): Promise<void> => {
      if (
        !this.#publisher.isOpen &&
        this.#link.recovers &&
        this.#whileDisconnected === 'buffer' &&
        !this.#link.closed
      ) {
        // Held until the connection is back, then sent in order; the promise settles with that send.
        return new Promise<void>((resolve, reject) => this.#held.push(() => send().then(resolve, reject)));
      }
      if (!this.#publisher.isOpen) return Promise.reject(this.#notConnected());
      if (this.log.isLevelEnabled('debug'))
        this.log.debug(
          { targets: targets.map(([e, k]) => `${e.name}/${k}`), messageId: props.messageId, body },
          'publish',
        );
      const tracing = tracingOn();
      const counters = instruments();
      if (!tracing) {
        // No SDK: no span, only the trace headers of the delivery being handled passed on.
        if (scope) passTraceOn(props, scope);
        if (!counters) return this.#publishOrResend(targets, props, content, delay);
      }
      const [exchange, key] = targets[0] ?? [{ name: '' }, ''];
      const parent = scope?.trace ?? activeContext();
      const span = tracing
        ? startPublishSpan(parent, exchange.name, {
            ...sendAttributes(body, props, content, key),
            [ATTR.component]: this.fingerprint.name,
          })
        : undefined;
      if (span) injectContext(trace.setSpan(parent, span), (props.headers ??= {}), scope?.headers);
      return this.#publishOrResend(targets, props, content, delay).then(
        () => {
          if (span) endSpan(span);
          counters?.sent.add(targets.length, {
            [ATTR.destination]: exchange.name,
            [ATTR.messageName]: String((body as { name?: unknown }).name ?? ''),
          });
        },
        (err: unknown) => {
          if (span) endSpan(span, err);
          throw err;
        },
      );
    };
    // What a database outbox writes of it (only asked there): the same id and properties a publish now would use,
    // with the trace context of the run (its span, where spans are recorded; else the delivery's trace headers), so
    // that a sweeper's later publish is a child of the run's span as the relay's is.
    send.outgoing = (): OutboxMessage => {
      const headers = { ...props.headers };
      if (tracingOn()) injectContext(scope?.trace ?? activeContext(), headers, scope?.headers);
      else if (scope) passTraceOn({ headers }, scope);
      return {
        messageId: props.messageId,
        targets: targets.map(([e, key]) => ({ exchange: e.name, type: e.type ?? 'direct', routingKey: key })),
        properties: { ...props, headers },
        body: content,
        delayMs: delay,
      };
    };
    return send;
  }

  /**
   * Publishes; with `whileDisconnected: 'buffer'`, a send whose confirm was
   * lost with its connection (`UNCONFIRMED`) is held and published again on
   * the next one, same message id, instead of failing: at least once, and
   * receivers can drop the duplicate by its id.
   */
  #publishOrResend(
    targets: EksEntry[],
    props: Parameters<Publisher['publish']>[1],
    content: Buffer,
    delay = 0,
  ): Promise<void> {
    if (props.headers?.[CE_SPECVERSION] !== undefined) carryTrace(props.headers);
    const sent =
      delay > 0
        ? this.#publisher.publishDelayed(targets, props, content, delay, this.#notConnected)
        : this.#publisher.publish(targets, props, content, this.#notConnected);
    if (this.#whileDisconnected !== 'buffer') return sent;
    return sent.catch((err: unknown) => {
      if (!(err instanceof BrokerError && err.code === 'UNCONFIRMED') || this.#link.closed) throw err;
      this.log.debug({ messageId: props.messageId }, 'confirm lost with the connection; sending again on the next one');
      return new Promise<void>((resolve, reject) => {
        const again = () => this.#publishOrResend(targets, props, content, delay).then(resolve, reject);
        if (this.#publisher.isOpen) again();
        else this.#held.push(again);
      });
    });
  }

  /** A message id: unique in this process, and across processes by its pid and start time. */
  #newId(): string {
    return this.#idPrefix + this.#nextId++;
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
    try {
      assertJsonable(msg.body.content, '');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#sendBody(msg.body, opts);
  }

  /** Sends an already built body unchanged. */
  forward(body: object, opts: SendOptions = {}): Promise<void> {
    try {
      takeSendOptions([opts], 0);
      assertJsonable(body, '');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#sendBody(body, opts);
  }

  /** `message()` and `forward()`: a built body, through the middleware when there is any. */
  #sendBody(body: object, opts: SendOptions): Promise<void> {
    if (!this.#middleware) return this.#publish(body, opts);
    const scope = currentScope();
    try {
      return this.#around(
        'message',
        body,
        opts,
        scope,
        (o) => this.#publish(body, o, scope),
        () => undefined,
      );
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #call(body: object, opts: SendOptions, scope: DeliveryScope | undefined): Promise<AnyResult | string> {
    refuseAfterFailure(scope);
    if (!this.#rpc.isOpen) return Promise.reject(this.#notConnected());
    const target = this.#targets(opts)[0];
    const content = this.encoder.encode(body) as Buffer;
    const props = sendProperties(opts, scope, this.#newId(), true);
    const parent = scope?.trace ?? activeContext();
    const span = tracingOn()
      ? startRpcSpan(parent, target[0].name, {
          ...sendAttributes(body, props, content, target[1]),
          [ATTR.component]: this.fingerprint.name,
        })
      : undefined;
    if (span) injectContext(trace.setSpan(parent, span), (props.headers ??= {}), scope?.headers);
    else if (scope) passTraceOn(props, scope);
    const counters = instruments();
    const started = counters ? performance.now() : 0;
    const call = opts._queue_only
      ? this.#rpc.callQueueOnly(target, content, props)
      : this.#rpc.call({
          target,
          content,
          properties: props,
          timeoutMs: (opts._timeout ?? this.rpcTimeout) * 1000,
          maxRetry: opts._max_retry ?? this.maxRetry,
          // As for commands: an RPC no queue takes fails at once instead of waiting out its timeout and retries.
          mandatory: opts._mandatory ?? (this.constructor as typeof GenericProducer).mandatory ?? true,
          replyTo: this.#replyTo,
          // The call's span links the span that answered it (the reply carries its trace context).
          onReply: span
            ? (headers) => {
                const answered = trace.getSpanContext(extractContext(headers));
                if (answered && span.isRecording()) span.addLink({ context: answered });
              }
            : undefined,
        });
    if (!span && !counters) return call;
    return call.then(
      (r) => {
        if (span)
          endSpan(
            span,
            typeof r === 'object' && !r.ok
              ? new Error(String(r.body.content.message || r.body.content.value))
              : undefined,
          );
        if (typeof r === 'object')
          counters?.rpcDuration.record((performance.now() - started) / 1000, {
            [ATTR.destination]: target[0].name,
            [ATTR.messageName]: String((body as { name?: unknown }).name ?? ''),
          });
        return r;
      },
      (err: unknown) => {
        if (span) endSpan(span, err);
        throw err;
      },
    );
  }

  /** Starts an RPC stream (`rpcStream_NAME`); a send that cannot start fails the iteration's first step. */
  #stream(name: string, args: unknown[]): AsyncIterableIterator<unknown> {
    try {
      const { msg, opts } = this.#build(name, 'rpc', args);
      const scope = currentScope();
      if (!this.#middleware) return this.#startStream(msg.body, opts, scope);
      // The middleware is async, the iterator is returned now: it starts once the middleware let it.
      let started: AsyncIterableIterator<unknown> | undefined;
      const ready = this.#around(
        'stream',
        msg.body,
        opts,
        scope,
        (o) => {
          started = this.#startStream(msg.body, o, scope);
          return Promise.resolve();
        },
        () => undefined,
      );
      return lateIterator(ready.then(() => started));
    } catch (err) {
      return failedIterator(err);
    }
  }

  #startStream(body: object, opts: SendOptions, scope: DeliveryScope | undefined): AsyncIterableIterator<unknown> {
    try {
      refuseAfterFailure(scope);
      if (!this.#rpc.isOpen) throw this.#notConnected();
      const window = opts._window ?? DEFAULT_WINDOW;
      if (!Number.isInteger(window) || window < 1 || window > MAX_WINDOW)
        throw new TypeError(`_window must be a whole number from 1 to ${MAX_WINDOW}, not ${String(opts._window)}`);
      const target = this.#targets(opts)[0];
      const content = this.encoder.encode(body) as Buffer;
      const props = sendProperties(opts, scope, this.#newId(), true);
      if (scope) passTraceOn(props, scope);
      return this.#rpc.stream(target, content, props, { window, idleMs: (opts._timeout ?? this.rpcTimeout) * 1000 });
    } catch (err) {
      return failedIterator(err);
    }
  }

  /**
   * Collects replies from a reply queue made by `_queue_only`: resolves with
   * `resultLen` results, or with those that came before the timeout (a
   * `MessageResultException('TimeoutError', …)` when none did).
   */
  async consumeRpc(queue: string, options: ConsumeRpcOptions = {}): Promise<AnyResult[]> {
    if (!this.#rpc.isOpen) throw this.#notConnected();
    return this.#rpc.consume(queue, options, this.rpcTimeout * 1000);
  }

  /** `await using producer = await P.create(…)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Closes the channels (and the connection, when it is this producer's own). Pending RPCs reject with `CLOSED`. */
  async close(): Promise<void> {
    await this.#rpc.close();
    await this.#publisher.close();
    await this.#link.close();
    const held = this.#held;
    this.#held = [];
    // Held sends fail now: without a channel they reject with NOT_CONNECTED.
    for (const send of held) send();
  }
}

/**
 * A run that failed or passed its time limit sends nothing more: what its
 * handler still does later is ignored, and a retry sends its own.
 */
function refuseAfterFailure(scope: DeliveryScope | undefined): void {
  if (!scope?.failed) return;
  const why = scope.failure as Error | undefined;
  throw new PostageError(
    `not sent: the handler run this send comes from has ended (${why?.name ?? 'Error'}: ` +
      `${why?.message ?? String(why)}), so what it does now is dropped. Work meant to outlive its delivery must not ` +
      'run inside the handler: hand it to a microthread of your own (see "Work that outlives a delivery" in ' +
      'docs/processors.md)',
    'SEND_AFTER_FAILURE',
    { cause: why },
  );
}

/** An iterator whose every step fails with `err` (a stream that could not start). */
function failedIterator(err: unknown): AsyncIterableIterator<unknown> {
  const failed: AsyncIterableIterator<unknown> = {
    next: () => Promise.reject(err),
    return: () => Promise.resolve({ done: true, value: undefined }),
    [Symbol.asyncIterator]: () => failed,
  };
  return failed;
}

/** An iterator over one that is made later (after a producer middleware); none made: it ends empty. */
function lateIterator(made: Promise<AsyncIterableIterator<unknown> | undefined>): AsyncIterableIterator<unknown> {
  const it: AsyncIterableIterator<unknown> = {
    next: () => made.then((inner) => (inner ? inner.next() : { done: true as const, value: undefined })),
    return: () =>
      made.then(
        (inner) => (inner?.return ? inner.return() : { done: true as const, value: undefined }),
        () => ({ done: true as const, value: undefined }),
      ),
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

/** What a send's spans say of it. */
function sendAttributes(
  body: object,
  props: { messageId: string; headers?: Record<string, unknown> },
  content: Buffer,
  key: string,
): Attributes {
  const b = body as { type?: unknown; name?: unknown };
  return {
    [ATTR.messageId]: props.messageId,
    [ATTR.conversationId]: String(props.headers?.[HEADERS.conversationId] ?? props.messageId),
    [ATTR.bodySize]: content.length,
    [ATTR.routingKey]: key,
    [ATTR.messageType]: String(b.type ?? ''),
    [ATTR.messageName]: String(b.name ?? ''),
  };
}
