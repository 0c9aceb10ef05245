import type { ConsumeMessage } from 'amqplib';
import type { Hup } from '../config.js';
import { AckAndRestart, DeliveryLimitExceeded, ExitScheduler } from '../errors.js';
import { restartProcess } from '../lifecycle/restart.js';
import { closeOnSignal, DEFAULT_DRAIN_MS } from '../lifecycle/signals.js';
import { componentLogger, type Logger } from '../log.js';
import { MicroThread, STOP, type StepResult, type Yielded } from '../microthreads/thread.js';
import type { ConnectionEvent, ConnectionEvents } from '../transport/managed.js';
import { GenericConsumer, type ConsumerOptions } from './consumer.js';
import { DeliveryCounter, DELIVERIES_HEADER, deliveriesBefore, queueCounts } from './deliveries.js';
import { MemoryIdempotencyStore, type IdempotencyStore } from './idempotency.js';
import { sendHeld, succeeded } from './delivery/outbox.js';
import { checkDelay } from './delay.js';
import { dispatchMessage, dispatchRpc, overLimit, type DispatchContext, type RetryOptions } from './delivery/dispatch.js';
import type { Outcome } from './delivery/outcome.js';
import { deliveryInfo, DeliveryScope, isThenable, type DeliveryInfo } from './delivery/context.js';
import { Intake, type Pending } from './intake.js';
import { instruments, type Instruments } from '../telemetry/metrics.js';
import { ATTR, endSpan, extractContext, startProcessSpan, tracingOn, trace } from '../telemetry/tracing.js';
import type { Attributes, Context, Span } from '@opentelemetry/api';
import { handlersFor, registryFor, type Registry } from './delivery/registry.js';
import { ack, settle, type SettleContext } from './delivery/settle.js';
import { Fingerprint, type FingerprintDict } from './fingerprint.js';
import { MessageHandler, RpcHandler } from './handlers.js';
import { describeProcessor, type ProcessorDescription } from './describe.js';
import { Message, type MessageBody } from './messages.js';
import { constructorForm, type ComponentOptions } from './options.js';
import type { Eqk } from './topology.js';

export type { RetryOptions } from './delivery/dispatch.js';

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
  /**
   * Where the delivery count of `maxDeliveries` survives a crash of the
   * process. `'broker'`: a quorum queue's `x-delivery-count` (a classic
   * queue keeps none, so there a message that crashes its process each time
   * is counted within one process only). `'header'`: on a queue that keeps
   * no count, a redelivered message goes back to its queue at once as a copy
   * with the count in a `postage-deliveries` header, and the copy is handled:
   * crash loops stop on classic queues too, at the price of a publish per
   * redelivery and of the redelivered message's place in the queue.
   * @default 'broker'
   */
  redeliveryCount?: 'broker' | 'header';
  /**
   * How long a handler may run (ms) before its delivery fails with
   * `HandlerTimeout` (retries, then the error exchange or a reject) and the
   * processor goes on; a generator handler is closed, so its `finally` runs.
   * Below RabbitMQ's own `consumer_timeout` (30 min by default), which would
   * close the channel instead. A decorator's `timeoutMs` wins for its handler.
   * @default 1200000 (20 minutes)
   */
  handlerTimeoutMs?: number;
  /**
   * Hold what handlers send (`message_NAME`, `message`, `forward` on any
   * producer) until they succeed, publish it, have the broker confirm it,
   * and only then ack the delivery; drop it when they fail (a retry sends its
   * own). A send that cannot be published sends the delivery back to its
   * queue. At least once: a crash between those publishes and the ack repeats
   * both (`deduplicate` drops the repeat). RPC calls are never held (their
   * answer is awaited), nor is a send with `_outbox: false`.
   * @default true
   */
  outbox?: boolean;
  /**
   * Drop a message (not an RPC) whose message id this processor has already
   * handled: acked without running its handlers. `true` remembers ids in
   * memory ({@link MemoryIdempotencyStore}); give an {@link IdempotencyStore}
   * to share them between replicas and restarts. An RPC is always answered:
   * its caller asks again only when the answer was lost.
   * @default false
   */
  deduplicate?: boolean | IdempotencyStore;
  /**
   * Deliveries handled at once, each in its own microthread on the
   * processor's scheduler, so that async and generator handlers interleave.
   * Acks stay exact (a batched ack never covers a delivery still in a
   * handler), a close drains all of them, retries and the error exchange work
   * per delivery. The prefetch follows unless set: twice it, so that a
   * worker done with one delivery finds the next already here (four times
   * with `orderBy`, so that deliveries of other keys get past a busy one).
   * @default 1 (as Postage: one at a time, in order)
   */
  concurrency?: number;
  /**
   * A delivery's ordering key: deliveries with the same key are handled one
   * after another, in the order they arrived; different keys at once (up to
   * `concurrency`). Per customer or per order sequencing without a queue per
   * key. `undefined` (or a function that throws, logged) leaves a delivery
   * unordered. Order holds among the deliveries of one processor: replicas of
   * a component need single active consumer for it.
   */
  orderBy?: (content: unknown, delivery: DeliveryInfo) => unknown;
}

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
  redeliveryCount: true,
  handlerTimeoutMs: true,
  waitForBrokerMs: true,
  tls: true,
  outbox: true,
  deduplicate: true,
  concurrency: true,
  orderBy: true,
};

/**
 * A microthread that consumes from its eqk and dispatches each envelope to
 * the `@MessageHandler` / `@RpcHandler` methods and `Handler` classes of its
 * class (inherited ones included).
 *
 * It drives each delivery through a pipeline of small stages, each in its own
 * module: decode, the delivery limit, dispatch (registry, handlers, retries:
 * `delivery/dispatch.ts`) to an {@link Outcome} as data, then settle
 * (`delivery/settle.ts`: ack, reject, error exchange, reply).
 */
export class MessageProcessor extends MicroThread {
  static consumerClass: typeof GenericConsumer = GenericConsumer;

  readonly fingerprint: FingerprintDict;
  readonly consumer: GenericConsumer;
  protected readonly log: Logger;
  #registry: Registry;
  readonly #intake = new Intake();
  readonly #concurrency: number;
  readonly #orderBy: ProcessorOptions['orderBy'];
  #workersStarted = false;
  #ready: Promise<void> | undefined;
  #isReady = false;
  #forgetSignal: (() => void) | undefined;
  readonly #signals: boolean;
  /** How long a SIGTERM / SIGINT waits for the handler in flight. */
  readonly drainTimeoutMs: number;
  readonly #maxDeliveries: number;
  readonly #countInHeader: boolean;
  readonly #deliveries = new DeliveryCounter();
  readonly #outbox: boolean;
  readonly #dedupe: IdempotencyStore | undefined;
  /** Aborted by close(): ends a wait between retries at once. */
  readonly #aborted = new AbortController();
  readonly #dispatch: DispatchContext;
  readonly #settle: SettleContext;
  #stopping = false;
  #closing: Promise<void> | undefined;

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
    this.#concurrency = opts.concurrency ?? 1;
    if (!(Number.isInteger(this.#concurrency) && this.#concurrency >= 1)) throw new TypeError(`concurrency must be a whole number of at least 1, not ${String(opts.concurrency)}`);
    if (opts.orderBy !== undefined && typeof opts.orderBy !== 'function') throw new TypeError('orderBy must be a function (content, delivery) => key');
    this.#orderBy = opts.orderBy;
    const prefetch = opts.prefetch ?? (this.#concurrency > 1 ? this.#concurrency * (opts.orderBy ? 4 : 2) : undefined);
    const Consumer = (this.constructor as typeof MessageProcessor).consumerClass;
    this.consumer = new Consumer({ ...opts, prefetch, connectionName: opts.connectionName ?? `${this.fingerprint.name}@${this.fingerprint.host}:${this.fingerprint.pid}`, logger: this.log });
    this.#signals = opts.handleSignals ?? true;
    this.drainTimeoutMs = opts.drainTimeoutMs ?? DEFAULT_DRAIN_MS;
    this.#registry = registryFor(this.constructor as typeof MessageProcessor);
    this.#maxDeliveries = opts.maxDeliveries ?? 5;
    if (!(Number.isInteger(this.#maxDeliveries) && this.#maxDeliveries >= 1)) throw new TypeError(`maxDeliveries must be a whole number of at least 1, not ${String(opts.maxDeliveries)}`);
    if (opts.redeliveryCount !== undefined && opts.redeliveryCount !== 'broker' && opts.redeliveryCount !== 'header') throw new TypeError(`redeliveryCount must be 'broker' or 'header', not ${String(opts.redeliveryCount)}`);
    this.#countInHeader = opts.redeliveryCount === 'header';
    for (const d of opts.retry?.delays ?? []) checkDelay('retry.delays: each delay', d);
    this.#outbox = opts.outbox ?? true;
    this.#dedupe = opts.deduplicate === true ? new MemoryIdempotencyStore() : opts.deduplicate || undefined;
    const consumer = this.consumer;
    this.#dispatch = {
      owner: this,
      fingerprint: this.fingerprint,
      log: this.log,
      retry: opts.retry,
      errorExchange: opts.errorExchange,
      closing: this.#aborted.signal,
      encodeReply: (r) => consumer.encodeReply(r),
      handlerTimeoutMs: opts.handlerTimeoutMs ?? 20 * 60_000,
      streams: {
        control: () => consumer.streamControl(),
        send: (msg, content, headers) => consumer.streamSend(msg, content, headers),
        watch: (id, listener) => consumer.watchStream(id, listener),
        ack: (msg) => ack(this.#settle, msg),
      },
    };
    if (!(this.#dispatch.handlerTimeoutMs > 0)) throw new TypeError(`handlerTimeoutMs must be a positive number of milliseconds, not ${String(opts.handlerTimeoutMs)}`);
    this.#settle = { consumer, log: this.log, errorExchange: opts.errorExchange, deliveries: this.#deliveries, restart: () => this.restart() };
    // Deliveries waiting in the inbox came on the lost channel: the broker redelivers them.
    this.consumer.on('disconnected', () => this.#intake.drop());
  }

  /** Resolves once its exchanges and queues are declared and bound; from then on nothing published to them is lost. */
  ready(): Promise<void> {
    this.#ready ??= (async () => {
      await this.consumer.ready();
      // The error exchange and its queue exist from the start, not from the first failure.
      if (this.#dispatch.errorExchange) await this.consumer.errorChannel(this.#dispatch.errorExchange);
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
    const orderBy = this.#orderBy;
    if (!orderBy) {
      this.#intake.push({ msg });
      return;
    }
    // The key needs the content: decoded now, once (a delivery that cannot be decoded has no key, and is rejected when its turn comes).
    let body: MessageBody<object>;
    try {
      body = this.#decode(msg);
    } catch (err) {
      this.#intake.push({ msg, decoded: { err } });
      return;
    }
    let key: unknown;
    try {
      key = orderBy(body.content, deliveryInfo(msg));
    } catch (err) {
      this.log.warn({ err, messageId: msg.properties.messageId }, 'orderBy failed; the delivery is handled unordered');
    }
    this.#intake.push({ msg, key, decoded: { body } });
  }

  /** A delivery's envelope, decoded; throws for a delivery that does not hold one (it is rejected as malformed). */
  #decode(msg: ConsumeMessage): MessageBody<object> {
    return Message.fromBody(this.consumer.decode(msg.content)).body as MessageBody<object>;
  }

  override *main(): Generator<Yielded, void, unknown> {
    try {
      yield* super.main();
    } finally {
      // However the thread ends (STOP, ExitScheduler, scheduler.stop()), the channel closes.
      void this.close();
    }
  }

  override step(): Generator<Yielded, unknown, unknown> {
    // Park on ready() only until it has resolved: a promise yielded on every step would cost a round trip through the event loop per message.
    // After that a step is one delivery's own generator, with none wrapped around it.
    return this.#isReady ? this.#work() : this.#firstStep();
  }

  *#firstStep(): Generator<Yielded, unknown, unknown> {
    yield this.ready();
    this.#isReady = true;
    this.#startWorkers();
    return yield* this.#work();
  }

  /** With `concurrency` N, N - 1 more microthreads beside this one take deliveries from the same intake. */
  #startWorkers(): void {
    if (this.#workersStarted) return;
    this.#workersStarted = true;
    if (this.#concurrency === 1) return;
    const scheduler = this.scheduler;
    if (!scheduler) {
      this.log.warn(`concurrency ${this.#concurrency} needs the processor to run on a MicroScheduler; handling one delivery at a time`);
      return;
    }
    for (let i = 1; i < this.#concurrency; i++) scheduler.addMicrothread(new DeliveryWorker(() => this.#work(), `${this.name}#${i}`));
  }

  /** One delivery, whichever worker runs it: the next that can run, or a wait for one. */
  *#work(): Generator<Yielded, StepResult, unknown> {
    // Once closing, take nothing more: what waits in the intake goes back to the queue with the channel.
    if (this.#stopping) return STOP;
    let p = this.#intake.take();
    while (!p) {
      yield this.#intake.wait();
      if (this.#stopping || this.#intake.closed) return STOP;
      p = this.#intake.take();
    }
    try {
      yield* this.#process(p.msg, p.decoded);
    } finally {
      this.#intake.done(p);
    }
    return undefined;
  }

  /** One delivery, stage by stage: decode, the delivery limit, dispatch to an outcome, settle. */
  *#process(msg: ConsumeMessage, decoded?: Pending['decoded']): Generator<Yielded, void, unknown> {
    let body: MessageBody<object>;
    try {
      if (decoded && 'err' in decoded) throw decoded.err;
      body = decoded ? (decoded.body as MessageBody<object>) : this.#decode(msg);
    } catch (err) {
      const outcome: Outcome = { kind: 'reject', why: 'malformed', err };
      const waiting = settle(this.#settle, msg, undefined, outcome);
      if (waiting) yield* waiting;
      if (this.#observers.size > 0) this.#tell(msg, undefined, outcome);
      return;
    }
    const tracing = tracingOn();
    const counters = instruments();
    let span: Span | undefined;
    let ctx: Context | undefined;
    if (tracing) {
      // The handler's span is the child of the sender's, whose context the message carries in its headers.
      const sender = extractContext(msg.properties.headers as Record<string, unknown> | undefined);
      span = startProcessSpan(sender, msg.fields.exchange, {
        [ATTR.messageId]: String(msg.properties.messageId ?? ''),
        [ATTR.bodySize]: msg.content.length,
        [ATTR.routingKey]: msg.fields.routingKey,
        [ATTR.messageType]: body.type,
        [ATTR.messageName]: body.name,
        [ATTR.component]: this.fingerprint.name,
      });
      ctx = trace.setSpan(sender, span);
    }
    const scope = new DeliveryScope(msg, ctx, this.#outbox);
    if (span) span.setAttribute(ATTR.conversationId, scope.conversationId ?? '');
    const labels = counters ? { [ATTR.destination]: msg.fields.exchange, [ATTR.messageName]: body.name } : undefined;
    if (counters) counters.inFlight.add(1, labels);
    const started = counters ? performance.now() : 0;
    let outcome: Outcome = { kind: 'leave' };
    try {
      const redelivered = msg.fields.redelivered;
      const n = Math.max(redelivered ? this.#deliveries.count(msg) : 1, deliveriesBefore(msg) + (redelivered ? 2 : 1));
      if (n > this.#maxDeliveries) outcome = overLimit(this.#dispatch, scope, body, new DeliveryLimitExceeded(n, this.#maxDeliveries));
      else if (redelivered && this.#countInHeader && !queueCounts(msg)) {
        // A classic queue forgets how often it delivered a message; a process that crashed on it forgot too.
        // The count goes in a header of a copy, back in the queue at once; the copy is handled instead.
        outcome = { kind: 'defer', ms: 0, reason: `redelivered (delivery ${n}): counted in a header`, headers: { [DELIVERIES_HEADER]: n - 1 }, quiet: true };
      } else {
        if (this.log.isLevelEnabled('debug')) this.log.debug({ exchange: msg.fields.exchange, routingKey: msg.fields.routingKey, category: body.category, messageType: body.type, messageName: body.name, messageId: scope.messageId, conversationId: scope.conversationId }, 'delivery');
        const key = this.#dedupe && body.category !== 'rpc' && scope.messageId !== undefined ? `${this.fingerprint.name}/${scope.messageId}` : undefined;
        if (key !== undefined && (yield* this.#seen(key))) {
          this.log.info({ messageType: body.type, messageName: body.name, messageId: scope.messageId }, `${body.type}/${body.name} was handled already (same message id); dropped`);
          outcome = { kind: 'ack' };
        } else {
          const handlers = handlersFor(this.#registry, body);
          outcome = body.category === 'rpc' ? yield* dispatchRpc(this.#dispatch, scope, body, handlers) : yield* dispatchMessage(this.#dispatch, scope, msg, body, handlers);
          // What the handlers sent goes out, confirmed, before the ack; a failed delivery's sends are dropped.
          const held = scope.takeHeld();
          if (held.length > 0 && succeeded(outcome)) outcome = yield* sendHeld(held, outcome, this.log, { messageType: body.type, messageName: body.name, messageId: scope.messageId });
          if (key !== undefined && succeeded(outcome)) yield* this.#remember(key);
        }
      }
      counters?.handlerDuration.record((performance.now() - started) / 1000, labels);
      try {
        const waiting = settle(this.#settle, msg, body, outcome);
        if (waiting) yield* waiting;
      } finally {
        // Also when settling ends in an exit or a restart (thrown once the broker confirmed the ack).
        if (this.#observers.size > 0) this.#tell(msg, body, outcome);
      }
    } finally {
      if (counters) {
        counters.inFlight.add(-1, labels);
        countOutcome(counters, outcome, labels!);
      }
      if (span) endSpan(span, failureOf(outcome));
    }
  }

  /** Whether the idempotency store has `key`; a store that fails counts as "no" (handled twice rather than lost). */
  *#seen(key: string): Generator<Yielded, boolean, unknown> {
    try {
      const r = this.#dedupe!.seen(key);
      return Boolean(isThenable(r) ? yield r : r);
    } catch (err) {
      this.log.warn({ err, key }, 'the idempotency store failed to answer; handling the message');
      return false;
    }
  }

  *#remember(key: string): Generator<Yielded, void, unknown> {
    try {
      const r = this.#dedupe!.remember(key);
      if (isThenable(r)) yield r;
    } catch (err) {
      this.log.warn({ err, key }, 'the idempotency store failed to remember a handled message; a duplicate of it would be handled again');
    }
  }

  readonly #observers = new Set<(event: DeliveryEvent) => void>();

  /**
   * Calls `listener` after each delivery is settled, with what became of it
   * (for tests and tooling: `received()` in `postage-ts/testing` waits on it).
   * Returns how to stop listening. A listener that throws is logged and ignored.
   */
  observe(listener: (event: DeliveryEvent) => void): () => void {
    this.#observers.add(listener);
    return () => this.#observers.delete(listener);
  }

  #tell(msg: ConsumeMessage, body: MessageBody<object> | undefined, outcome: Outcome): void {
    const event: DeliveryEvent = {
      category: body?.category,
      type: body?.type,
      name: body?.name,
      messageId: msg.properties.messageId as string | undefined,
      outcome: outcomeName(outcome),
      error: outcome.kind === 'reject' || outcome.kind === 'deadLetter' || outcome.kind === 'defer' ? outcome.err : undefined,
      deferMs: outcome.kind === 'defer' ? outcome.ms : undefined,
      replied: outcome.reply !== undefined,
    };
    for (const l of this.#observers) {
      try {
        l(event);
      } catch (err) {
        this.log.warn({ err }, 'a delivery observer failed');
      }
    }
  }

  /** Re-runs this process with the same arguments (override to restart differently). */
  restart(): void {
    restartProcess(this.log, this);
  }

  /**
   * Stops consuming, lets the handler in flight finish, closes the channel.
   * Unprocessed deliveries go back to the queue, and so does one waiting
   * between two runs of a retry (the wait ends at once).
   */
  override close(): Promise<void> {
    this.#stopping = true;
    this.#aborted.abort();
    this.#intake.drop();
    this.#closing ??= (async () => {
      this.#forgetSignal?.();
      await this.#ready?.catch(() => undefined);
      await this.consumer.stopConsuming();
      // Waiting workers stop; those in a handler finish it and settle.
      await this.#intake.close();
      await this.consumer.close();
    })();
    return this.#closing;
  }

  /** `await using processor = new P(…)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The built-in `describe` RPC: this processor's fingerprint, library version, bindings and handlers. */
  @RpcHandler('command', 'describe', { description: 'what this processor is, where it listens, and what it handles' })
  rpcDescribe(): ProcessorDescription {
    return describeProcessor(this.fingerprint, this.consumer.bindings(), this.#registry);
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

/** One more worker of a processor with `concurrency` above 1: it takes deliveries from the processor's intake. */
class DeliveryWorker extends MicroThread {
  constructor(
    private readonly work: () => Generator<Yielded, StepResult, unknown>,
    name: string,
  ) {
    super();
    this.name = name;
  }

  override step(): StepResult {
    return this.work();
  }
}

/** What became of a delivery, as `observe()` tells it. */
export interface DeliveryEvent {
  category: string | undefined;
  type: string | undefined;
  name: string | undefined;
  messageId: string | undefined;
  /**
   * acked (handled, or a stream served), rejected (malformed, `RejectMessage`, failed without an
   * error exchange, over `maxDeliveries`), dead-lettered (to the error exchange), deferred
   * (`DeferMessage`, a delayed retry), requeued (`RequeueMessage`, a send that failed), left
   * (unsettled: the processor was closing), exited / restarted (quit, restart).
   */
  outcome: 'acked' | 'rejected' | 'dead-lettered' | 'deferred' | 'requeued' | 'left' | 'exited' | 'restarted';
  /** Why, for a failure, a reject, a retry. */
  error: unknown;
  deferMs: number | undefined;
  /** Whether a reply went to its reply_to. */
  replied: boolean;
}

function outcomeName(o: Outcome): DeliveryEvent['outcome'] {
  switch (o.kind) {
    case 'ack':
    case 'done':
      return 'acked';
    case 'reject':
      return 'rejected';
    case 'deadLetter':
      return 'dead-lettered';
    case 'defer':
      return 'deferred';
    case 'requeue':
      return 'requeued';
    case 'leave':
      return 'left';
    case 'exit':
      return 'exited';
    case 'restart':
      return 'restarted';
  }
}

/** The error a span records for an outcome, if it is a failure. */
function failureOf(outcome: Outcome): unknown {
  if (outcome.kind === 'deadLetter' || outcome.kind === 'defer') return outcome.err;
  if (outcome.kind === 'reject' && outcome.why !== 'rejected') return outcome.err ?? new Error(outcome.why);
  return undefined;
}

/** One count per delivery: handled, failed (its handlers threw), or rejected (malformed, RejectMessage, delivered too often). */
function countOutcome(metrics: Instruments, outcome: Outcome, labels: Attributes): void {
  if (outcome.kind === 'ack' || outcome.kind === 'done' || outcome.kind === 'exit' || outcome.kind === 'restart') metrics.handled.add(1, labels);
  else if (outcome.kind === 'deadLetter' || (outcome.kind === 'reject' && outcome.why === 'failed')) metrics.failed.add(1, labels);
  else if (outcome.kind === 'reject') metrics.rejected.add(1, labels);
}
