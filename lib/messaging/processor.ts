import { spawn } from 'node:child_process';
import type { ConsumeMessage } from 'amqplib';
import { backoffMs } from '../backoff.js';
import type { Hup } from '../config.js';
import { AckAndRestart, DeliveryLimitExceeded, ExitScheduler, MalformedMessage, RejectMessage } from '../errors.js';
import { componentLogger, type Logger } from '../log.js';
import { sleep } from '../microthreads/effects.js';
import { MicroThread, STOP, type StepResult, type Yielded } from '../microthreads/thread.js';
import type { ConnectionEvent, ConnectionEvents } from '../transport/managed.js';
import { closeOnSignal, DEFAULT_DRAIN_MS } from '../transport/shutdown.js';
import { GenericConsumer, type ConsumerOptions } from './consumer.js';
import { DeliveryCounter } from './deliveries.js';
import { Fingerprint, type FingerprintDict } from './fingerprint.js';
import { applyFilters, Handler, isHandlerClass, MessageHandler, SKIP, tagsOf, type HandlerTag } from './handlers.js';
import { constructorForm, type ComponentOptions } from './options.js';
import { Message, MessageResult, MessageResultError, MessageResultException, type MessageBody } from './messages.js';
import type { Eqk } from './topology.js';

export interface RetryOptions {
  /** Handler runs in all, the first included. @default 3 */
  attempts?: number;
  /** Wait before the second run; doubled each time. @default 100 */
  backoffMs?: number;
  /** The longest wait between runs. @default 5000 */
  maxBackoffMs?: number;
}

export interface ProcessorOptions extends ConsumerOptions, ComponentOptions {
  /**
   * Run a failing message's handlers again, with backoff, before giving up.
   * Off by default: as in Postage, a failure rejects the message at once.
   */
  retry?: RetryOptions;
  /**
   * Where failed messages go (a durable fanout exchange, with a queue of the
   * same name bound to it), carrying `x-error-name`, `x-error-message`,
   * `x-original-exchange`, `x-original-routing-key` and `x-attempts` headers.
   * Without it a failed message is rejected, so it dead-letters where its
   * queue has a dead-letter exchange.
   */
  errorExchange?: string;
  /**
   * Close gracefully on SIGTERM / SIGINT: stop taking deliveries, finish the
   * one in flight, ack it, close, then let the signal end the process. Turn it
   * off where the host has its own shutdown (a framework, a process manager)
   * and call `await processor.close()` from there.
   * @default true
   */
  handleSignals?: boolean;
  /** How long a signal waits for the handler in flight before closing anyway (its message goes back to the queue). @default 10000 */
  drainTimeoutMs?: number;
  /**
   * How many times one message may be delivered before it is taken from its
   * handlers: a message that keeps coming back unsettled (its connection drops
   * each time it is handled, or its reply makes the broker close the
   * connection) goes to `errorExchange`, or is rejected (dead-lettered where
   * its queue has a dead-letter exchange), with `DeliveryLimitExceeded`.
   * Counted in this process, and from a quorum queue's `x-delivery-count`.
   * @default 5
   */
  maxDeliveries?: number;
}

interface Registered {
  fn: (...args: unknown[]) => unknown;
  tag: HandlerTag;
  isClass: boolean;
}
type Registry = Map<string, Registered[]>;

/** Every option, so that a lone object mixing them with a fingerprint's fields is refused (the compiler keeps this complete). @internal */
export const PROCESSOR_OPTIONS: Readonly<Record<keyof ProcessorOptions, true>> = {
  fingerprint: true,
  eqk: true,
  url: true,
  hup: true,
  vhost: true,
  connection: true,
  connectionName: true,
  heartbeat: true,
  connectTimeoutMs: true,
  prefetch: true,
  encoder: true,
  logger: true,
  reconnect: true,
  retry: true,
  errorExchange: true,
  handleSignals: true,
  drainTimeoutMs: true,
  maxDeliveries: true,
};

const registries = new WeakMap<object, Registry>();
const noReply = (): void => undefined;
const NONE: Registered[] = [];

/** Collects tagged methods and Handler classes up the class chain, base first; an override replaces its base. */
function registryFor(cls: abstract new (...args: never[]) => unknown): Registry {
  const cached = registries.get(cls);
  if (cached) return cached;
  const chain: Array<{ prototype: object }> = [];
  for (let c: unknown = cls; typeof c === 'function' && c !== MicroThread && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
    chain.unshift(c as { prototype: object });
  }
  const members = new Map<string, { value: unknown; isClass: boolean }>();
  for (const c of chain) {
    for (const key of Object.getOwnPropertyNames(c.prototype)) {
      if (key === 'constructor') continue;
      const d = Object.getOwnPropertyDescriptor(c.prototype, key);
      // A member a subclass declares again counts where the subclass declares it (after its base's).
      members.delete(`p:${key}`);
      if (d && 'value' in d) members.set(`p:${key}`, { value: d.value, isClass: false });
    }
    for (const key of Object.getOwnPropertyNames(c)) {
      const d = Object.getOwnPropertyDescriptor(c, key);
      if (d && 'value' in d && isHandlerClass(d.value)) {
        members.delete(`s:${key}`);
        members.set(`s:${key}`, { value: d.value, isClass: true });
      }
    }
  }
  const reg: Registry = new Map();
  for (const { value, isClass } of members.values()) {
    for (const tag of tagsOf(value) ?? []) {
      const key = `${tag.category}|${tag.type}|${tag.name ?? '*'}`;
      const list = reg.get(key) ?? [];
      list.push({ fn: value as Registered['fn'], tag, isClass });
      reg.set(key, list);
    }
  }
  registries.set(cls, reg);
  return reg;
}

function isGenerator(v: unknown): v is Generator<Yielded, unknown, unknown> {
  return typeof v === 'object' && v !== null && typeof (v as Generator).next === 'function' && typeof (v as Generator).throw === 'function';
}
function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}

/**
 * A microthread that consumes from its eqk and dispatches each envelope to
 * the `@MessageHandler` / `@RpcHandler` methods and `Handler` classes of its
 * class (inherited ones included).
 */
export class MessageProcessor extends MicroThread {
  static consumerClass: typeof GenericConsumer = GenericConsumer;

  readonly fingerprint: FingerprintDict;
  readonly consumer: GenericConsumer;
  protected readonly log: Logger;
  #registry: Registry;
  #inbox: ConsumeMessage[] = [];
  #waiter: ((msg: ConsumeMessage | undefined) => void) | undefined;
  #ready: Promise<void> | undefined;
  #isReady = false;
  #forgetSignal: (() => void) | undefined;
  readonly #retry: RetryOptions | undefined;
  readonly #signals: boolean;
  /** How long a SIGTERM / SIGINT waits for the handler in flight. */
  readonly drainTimeoutMs: number;
  readonly #errorExchange: string | undefined;
  readonly #maxDeliveries: number;
  readonly #deliveries = new DeliveryCounter();
  #stopping = false;
  /** Aborted by close(): ends a wait between retries at once. */
  readonly #aborted = new AbortController();
  #closing: Promise<void> | undefined;
  #busy = false;
  /** Set by close() while a delivery is in flight; called when it is done. */
  #onIdle: (() => void) | undefined;

  constructor(options?: ProcessorOptions);
  constructor(fingerprint: Partial<FingerprintDict>, eqk?: Eqk, hup?: Partial<Hup>, vhost?: string);
  constructor(...args: [options?: ProcessorOptions] | [fingerprint: Partial<FingerprintDict>, eqk?: Eqk, hup?: Partial<Hup>, vhost?: string]) {
    super();
    const [first = {}, eqk, hup, vhost] = args as [object | undefined, Eqk?, Partial<Hup>?, string?];
    const opts: ProcessorOptions =
      constructorForm(args, PROCESSOR_OPTIONS, this.constructor.name) === 'options' ? (first as ProcessorOptions) : { fingerprint: first as Partial<FingerprintDict>, eqk, hup, vhost };
    this.fingerprint = { ...new Fingerprint(this.constructor.name, 'processor', { vhost: opts.vhost }).asDict(), ...(opts.fingerprint as FingerprintDict) };
    this.name = this.fingerprint.name;
    this.log = opts.logger ?? componentLogger('processor', this.fingerprint.name);
    const Consumer = (this.constructor as typeof MessageProcessor).consumerClass;
    this.consumer = new Consumer({ ...opts, connectionName: opts.connectionName ?? `${this.fingerprint.name}@${this.fingerprint.host}:${this.fingerprint.pid}`, logger: this.log });
    this.#signals = opts.handleSignals ?? true;
    this.drainTimeoutMs = opts.drainTimeoutMs ?? DEFAULT_DRAIN_MS;
    this.#registry = registryFor(this.constructor as typeof MessageProcessor);
    this.#retry = opts.retry;
    this.#errorExchange = opts.errorExchange;
    this.#maxDeliveries = opts.maxDeliveries ?? 5;
    if (!(Number.isInteger(this.#maxDeliveries) && this.#maxDeliveries >= 1)) throw new TypeError(`maxDeliveries must be a whole number of at least 1, not ${String(opts.maxDeliveries)}`);
    // Deliveries waiting in the inbox came on the lost channel: the broker redelivers them.
    this.consumer.on('disconnected', () => {
      this.#inbox = [];
    });
  }

  /** Resolves once its exchanges and queues are declared and bound; from then on nothing published to them is lost. */
  ready(): Promise<void> {
    this.#ready ??= (async () => {
      await this.consumer.ready();
      await this.consumer.startConsuming((msg) => this.#deliver(msg));
      // On SIGTERM / SIGINT: stop taking deliveries, finish the one in flight, ack it, close.
      if (this.#signals) this.#forgetSignal = closeOnSignal(this);
    })();
    return this.#ready;
  }

  /** Connection events: 'connected' (after a reconnection), 'disconnected' (err), 'blocked' (reason), 'unblocked'. */
  on<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.consumer.on(event, listener);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.consumer.off(event, listener);
    return this;
  }

  /** Adds bindings at run time. */
  addEqk(eqk: Eqk): Promise<void> {
    return this.consumer.addEqk(eqk);
  }

  #deliver(msg: ConsumeMessage): void {
    const w = this.#waiter;
    if (w) {
      this.#waiter = undefined;
      w(msg);
    } else this.#inbox.push(msg);
  }

  override *main(): Generator<Yielded, void, unknown> {
    try {
      yield* super.main();
    } finally {
      // However the thread ends (STOP, ExitScheduler, scheduler.stop()), the channel closes.
      void this.close();
    }
  }

  override *step(): Generator<Yielded, unknown, unknown> {
    // Park on ready() only until it has resolved: a promise yielded on every step would cost a round trip through the event loop per message.
    if (!this.#isReady) {
      yield this.ready();
      this.#isReady = true;
    }
    // Once closing, take nothing more: what waits in the inbox goes back to the queue with the channel.
    if (this.#stopping) return STOP;
    let msg = this.#inbox.shift();
    if (!msg) {
      msg = (yield new Promise<ConsumeMessage | undefined>((resolve) => (this.#waiter = resolve))) as ConsumeMessage | undefined;
      if (!msg) return STOP;
    }
    this.#busy = true;
    try {
      yield* this.#process(msg);
    } finally {
      this.#busy = false;
      this.#onIdle?.();
    }
    return undefined as StepResult;
  }

  *#process(msg: ConsumeMessage): Generator<Yielded, void, unknown> {
    let body: MessageBody<Record<string, unknown>>;
    try {
      body = Message.fromBody(this.consumer.decode(msg.content)).body as MessageBody<Record<string, unknown>>;
    } catch (err) {
      const reason = err instanceof MalformedMessage ? err.reason : String(err);
      this.log.warn({ messageId: msg.properties.messageId, deliveryTag: msg.fields.deliveryTag, routingKey: msg.fields.routingKey, reason }, 'malformed message rejected');
      this.#reject(msg);
      return;
    }
    if (msg.fields.redelivered) {
      const n = this.#deliveries.count(msg);
      if (n > this.#maxDeliveries) {
        yield* this.#giveUp(msg, body, new DeliveryLimitExceeded(n, this.#maxDeliveries));
        return;
      }
    }
    if (this.log.isLevelEnabled('debug')) this.log.debug({ exchange: msg.fields.exchange, routingKey: msg.fields.routingKey, category: body.category, messageType: body.type, messageName: body.name }, 'delivery');
    const handlers = this.#handlersFor(body);
    if (body.category === 'rpc') yield* this.#rpc(msg, body, handlers);
    else yield* this.#message(msg, body, handlers);
  }

  #handlersFor(body: MessageBody<object>): Registered[] {
    const prefix = `${body.category}|${body.type}|`;
    const exact = this.#registry.get(prefix + body.name) ?? NONE;
    const any = this.#registry.get(`${prefix}*`);
    return any ? [...exact, ...any] : exact;
  }

  /** `last`: no handler runs after this one, so it may have the decoded body itself instead of a copy. */
  *#invoke(h: Registered, body: MessageBody<object>, reply: (r: unknown) => void, last: boolean): Generator<Yielded, { ran: boolean; value: unknown }, unknown> {
    // Each handler (and its filters) gets its own copy, so one cannot change what the next sees;
    // the body was freshly decoded for this delivery, so the last handler can take it without copying.
    const given = h.tag.pass === 'body' ? body : body.content;
    const arg = applyFilters(h.fn, last ? given : structuredClone(given));
    if (arg === SKIP) return { ran: false, value: undefined };
    let r: unknown;
    if (h.isClass) {
      const Cls = h.fn as unknown as new (p: unknown, d: unknown, reply: (r: unknown) => void) => Handler;
      r = new Cls(this, arg, reply).call();
    } else r = h.fn.call(this, arg, reply);
    if (isGenerator(r)) r = yield* r;
    else if (isThenable(r)) r = yield r;
    return { ran: true, value: r };
  }

  *#message(msg: ConsumeMessage, body: MessageBody<object>, handlers: Registered[]): Generator<Yielded, void, unknown> {
    const retry = this.#retry;
    const attempts = retry?.attempts ?? 1;
    for (let attempt = 1; ; attempt++) {
      try {
        // With retries, every run needs the body untouched: no handler may take the original.
        for (let i = 0; i < handlers.length; i++) yield* this.#invoke(handlers[i], body, noReply, attempts === 1 && i === handlers.length - 1);
      } catch (err) {
        const failure = !(err instanceof ExitScheduler || err instanceof AckAndRestart);
        const again = failure && !(err instanceof RejectMessage) && attempt < attempts;
        if (again) {
          const wait = backoffMs(attempt - 1, retry?.backoffMs ?? 100, retry?.maxBackoffMs ?? 5000);
          this.log.warn({ err, messageType: body.type, messageName: body.name, messageId: msg.properties.messageId, attempt, nextInMs: wait }, `handler for ${body.type}/${body.name} failed; running it again`);
          try {
            yield sleep(wait, this.#aborted.signal);
          } catch {
            // Closing: leave it unacked, it goes back to the queue.
            return;
          }
          if (this.#stopping) return;
          continue;
        }
        if (failure && this.#errorExchange) {
          try {
            yield this.consumer.deadLetter(msg, this.#errorExchange, err, attempt);
          } catch (dlErr) {
            // The copy did not reach the error exchange (a lost connection, a refusal): the original must not be
            // acked. Back to its queue (on a lost channel the broker does that by itself) for another try.
            this.log.warn({ err: dlErr, messageType: body.type, messageName: body.name, messageId: msg.properties.messageId }, `could not publish the failed message to ${this.#errorExchange}; it goes back to its queue`);
            this.consumer.reject(msg, true);
            return;
          }
          this.log.error({ err, messageType: body.type, messageName: body.name, messageId: msg.properties.messageId, attempts: attempt }, `handler for ${body.type}/${body.name} failed; message sent to ${this.#errorExchange}`);
          this.#ack(msg);
          return;
        }
        yield* this.#outcome(msg, body, err);
        return;
      }
      this.#ack(msg);
      return;
    }
  }

  /** Acks, and forgets the delivery count of a message that will not come back. */
  #ack(msg: ConsumeMessage): void {
    if (this.consumer.ack(msg)) this.#deliveries.forget(msg);
  }

  /** Rejects without requeue (dead-lettered where the queue has a dead-letter exchange). */
  #reject(msg: ConsumeMessage): void {
    if (this.consumer.reject(msg, false)) this.#deliveries.forget(msg);
  }

  /** A message delivered too often: to the error exchange, or rejected, without running a handler. */
  *#giveUp(msg: ConsumeMessage, body: MessageBody<object>, err: DeliveryLimitExceeded): Generator<Yielded, void, unknown> {
    const about = { messageType: body.type, messageName: body.name, messageId: msg.properties.messageId, correlationId: msg.properties.correlationId, deliveries: err.deliveries };
    let reply: Buffer | undefined;
    if (body.category === 'rpc') reply = this.consumer.encodeReply(new MessageResultException(err.name, err.message).setFingerprint(this.fingerprint));
    if (this.#errorExchange) {
      try {
        yield this.consumer.deadLetter(msg, this.#errorExchange, err, err.deliveries);
        this.log.error(about, `${body.type}/${body.name} ${err.message}; sent to ${this.#errorExchange}`);
        this.#ack(msg);
        if (reply) this.consumer.sendReply(msg, reply);
        return;
      } catch (dlErr) {
        this.log.warn({ ...about, err: dlErr }, `could not publish the message to ${this.#errorExchange}; rejecting it instead`);
      }
    }
    this.log.error(about, `${body.type}/${body.name} ${err.message}; rejected`);
    this.#reject(msg);
    if (reply) this.consumer.sendReply(msg, reply);
  }

  /** An RPC is answered by one handler: the last declared for its (type, name), as Postage runs `handlers[-1]`. */
  *#rpc(msg: ConsumeMessage, body: MessageBody<object>, handlers: Registered[]): Generator<Yielded, void, unknown> {
    // A handler for this very name wins over one for every name of the type.
    const handler = handlers.findLast((h) => h.tag.name !== undefined) ?? handlers.at(-1);
    if (!handler) {
      const content = this.consumer.encodeReply(new MessageResultError(`No handler for RPC '${body.name}' (type '${body.type}') in ${this.fingerprint.name}`));
      this.#ack(msg);
      this.consumer.sendReply(msg, content);
      return;
    }
    // The reply is encoded when given (so a result that cannot be encoded fails the handler) and sent once
    // the request is settled: a reply the broker refuses by closing the connection cannot bring it back.
    let content: Buffer | undefined;
    const reply = (r: unknown) => {
      if (content) return;
      // Replies carry the answering component's fingerprint, as requests carry the caller's.
      const m = r instanceof Message ? r : new MessageResult(r);
      content = this.consumer.encodeReply(m.setFingerprint(this.fingerprint));
    };
    const send = () => this.consumer.sendReply(msg, content!);
    try {
      const { ran, value } = yield* this.#invoke(handler, body, reply, true);
      reply(ran && value !== undefined ? value : null);
    } catch (err) {
      if (!(err instanceof ExitScheduler || err instanceof AckAndRestart)) {
        const e = err as Error;
        reply(new MessageResultException(e?.name ?? 'Error', e?.message ?? String(err)));
      } else reply(null);
      yield* this.#outcome(msg, body, err, send);
      return;
    }
    this.#ack(msg);
    send();
  }

  /** Settles a delivery whose handler threw; `then` (an RPC's reply) runs right after the settle. */
  *#outcome(msg: ConsumeMessage, body: MessageBody<object>, err: unknown, then?: () => void): Generator<Yielded, void, unknown> {
    if (err instanceof RejectMessage) {
      this.log.warn({ messageType: body.type, messageName: body.name, messageId: msg.properties.messageId, reason: err.message }, `handler for ${body.type}/${body.name} rejected the message: ${err.message}`);
      this.#reject(msg);
      then?.();
    } else if (err instanceof ExitScheduler) {
      // The process may exit the moment run() resolves: have the broker's word for the ack first,
      // or the quit is redelivered and stops the next instance of the component too.
      this.#ack(msg);
      then?.();
      yield this.consumer.settled();
      throw err;
    } else if (err instanceof AckAndRestart) {
      this.#ack(msg);
      then?.();
      yield this.consumer.settled();
      this.restart();
    } else {
      this.log.error({ err, messageType: body.type, messageName: body.name, messageId: msg.properties.messageId, deliveryTag: msg.fields.deliveryTag }, `handler for ${body.type}/${body.name} failed; message rejected`);
      this.#reject(msg);
      then?.();
    }
  }

  /** Re-runs this process with the same arguments (override to restart differently). */
  restart(): void {
    this.log.info('restarting');
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
    child.on('exit', (code) => process.exit(code ?? 0));
    void this.close();
  }

  /**
   * Stops consuming, lets the handler in flight finish, closes the channel.
   * Unprocessed deliveries go back to the queue, and so does one waiting
   * between two runs of a retry (the wait ends at once).
   */
  override close(): Promise<void> {
    this.#stopping = true;
    this.#aborted.abort();
    this.#inbox = [];
    this.#closing ??= (async () => {
      this.#forgetSignal?.();
      await this.#ready?.catch(() => undefined);
      await this.consumer.stopConsuming();
      const w = this.#waiter;
      this.#waiter = undefined;
      w?.(undefined);
      if (this.#busy) await new Promise<void>((resolve) => (this.#onIdle = resolve));
      this.#inbox = [];
      await this.consumer.close();
    })();
    return this.#closing;
  }

  /** `await using processor = new P(…)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  @MessageHandler('command', 'quit')
  msgQuit(): void {
    throw new ExitScheduler('quit command received');
  }

  @MessageHandler('command', 'restart')
  msgRestart(): void {
    throw new AckAndRestart('restart command received');
  }
}
