import { EventEmitter } from 'node:events';
import type { Hup } from '../config.js';
import { AckAndRestart, ExitScheduler, StoreError } from '../errors.js';
import { OutboxRelay } from '../stores/outbox-relay.js';
import { claimPool } from '../stores/pool-tally.js';
import type { MessageStore } from '../stores/store.js';
import { restartProcess } from '../lifecycle/restart.js';
import { closeOnSignal, DEFAULT_DRAIN_MS } from '../lifecycle/signals.js';
import { asPino, componentLogger, type Logger } from '../log.js';
import { COMPONENT_KIND, MicroThread, STOP, type StepResult, type Yielded } from '../microthreads/thread.js';
import type { ConnectionEvent, ConnectionEvents } from '../transport/managed.js';
import type { ConnectionStatus } from '../transport/status.js';
import { GenericConsumer, type ConsumerEvents, type ConsumerOptions } from './consumer.js';
import { consumerInternals } from './consumer-internals.js';
import { DeliveryCounter } from './delivery/deliveries.js';
import { MemoryIdempotencyStore, type IdempotencyStore } from '../stores/idempotency.js';
import { checkDelay } from '../topology/delay.js';
import type { DispatchContext, SettleContext, StoreRuntime } from './delivery/parts.js';
import { PORTS, type DeliveryPorts } from './delivery/ports.js';
import type { DeliveryEvent, MiddlewareContext, ProcessorMiddleware, RetryOptions } from './delivery/public.js';
import type { DeliveryInfo } from '../scope/context.js';
import { DeliveryPipeline } from './delivery/pipeline.js';
import { registryFor, type Registry } from './delivery/registry.js';
import { ack } from './delivery/settle.js';
import { Fingerprint, type FingerprintDict } from '../envelope/fingerprint.js';
import { MessageHandlerFullBody, registerMachinery, RpcHandler } from './handlers.js';
import type { MessageBody } from '../envelope/messages.js';
import { describeProcessor, type ProcessorDescription } from './description.js';
import { constructorOptions, type ComponentOptions, type Positional } from '../component-options.js';
import type { Eqk } from '../topology/topology.js';
import { PARTITION_HEADER, partitionTopology, routeSource, type PartitionedTopology } from '../topology/partitions.js';
import { resolveExchange } from '../topology/exchange.js';
import { OWN_PRESENCE, Presence } from './presence.js';
import { checkPartitionCount, underPartitionLock } from '../topology/partition-count.js';
import { PartitionSpread, type PartitionMove, type SpreadSettings } from './partitions/spread.js';
import type { Replier } from './delivery/ports.js';

export type { DeliveryEvent, RetryOptions, ProcessorMiddleware, MiddlewareContext } from './delivery/public.js';

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
  /**
   * How long a signal waits for the handler in flight before closing anyway (its message goes back to the queue).
   * @default 10000
   */
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
   * `Infinity`: no limit.
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
   * A database for the outbox and the inbox (a `PostgresStore` from
   * `postage-ts/postgres`, a `MemoryStore` from `postage-ts/testing`): each
   * run in one transaction, its client `currentDelivery().db`; the message id
   * recorded in the inbox in it (a message some run committed already is acked
   * without running); what the handlers send written to the outbox table in it
   * and published after the commit. Replaces the in-memory outbox; refused
   * beside `deduplicate`, which the inbox does. See docs/database.md.
   */
  store?: MessageStore;
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
  /**
   * How long (ms) an RPC stream may wait for credit from its caller before it
   * is cancelled: a caller that stops reading without `return()` (an iterator
   * dropped, a consumer stuck) would otherwise hold a worker for as long as its
   * process lives. Its generator's `finally` runs; the caller gets a
   * `StreamError` if it ever reads again.
   * @default 60000
   */
  streamStallMs?: number;
  /**
   * Whether the built-in `quit` and `restart` commands are carried out. Anyone
   * who may publish to the processor's exchange can send them: a component
   * hosted in an application with a life of its own (an HTTP server, a Nest
   * app) turns them off, and they are then logged and acked, nothing more.
   * @default true
   */
  remoteControl?: boolean;
  /**
   * Splits each queue of the eqk into this many partition queues
   * (`QUEUE.p0` …), each with single active consumer, behind a consistent-hash
   * exchange that routes every message of one `_partition_key` to the same
   * partition. Run the component as several replicas: they spread the
   * partitions over themselves (see `rebalance`), the broker keeps one active
   * consumer per partition, and when a replica comes or goes partitions move,
   * each one's unhandled messages first. Per-key order (`orderBy`, by default
   * the partition key) then holds across replicas. Needs RabbitMQ's
   * `rabbitmq_consistent_hash_exchange` plugin. Queues must be named and
   * durable. `ready()` refuses a number that differs from the partitions the
   * broker already has (`PartitionCountMismatch`).
   */
  partitions?: number;
  /**
   * Answer `ping` and `describe` on `presence-exchange` (keys `presence` and
   * `presence@HOST`) and on the fanout addresses of
   * `generic-application-exchange` (`NAME`, `@HOST`, `NAME@HOST`,
   * `PID@HOST`), from a server-named, exclusive, auto-delete queue of the
   * processor's own, so that `postage ping`, `describe NAME`, `graph`,
   * `dashboard` and `errors list` see it. Only those two are answered there:
   * a `quit` or `restart` sent to presence is not acted on (a
   * `GenericApplication` takes them, on its own queue). `false` for a
   * processor that must not be seen or asked.
   * @default true
   */
  presence?: boolean;
  /**
   * With `partitions`: whether the replicas spread the partitions over
   * themselves. They find each other on a fanout exchange `QUEUE.replicas`
   * (a hello, a beat every `heartbeatMs`, a bye) and each consumes its share
   * of a shared, deterministic assignment (⌊N/R⌋ or ⌈N/R⌉ partitions each); a
   * replica not heard for two beats and a half is taken for gone. `false`:
   * every replica consumes every partition and the broker makes the first one
   * active on all of them (hot standbys, no spread).
   * @default true (heartbeatMs 5000)
   * @example rebalance: { heartbeatMs: 2000 }
   */
  rebalance?: boolean | { heartbeatMs?: number };
}

/** A processor's own events, besides its connection's. */
export interface ProcessorEvents extends ConsumerEvents {
  /**
   * A `quit` or `restart` command is about to be carried out, with the sender's fingerprint: a host can shut down its
   * own side.
   */
  remoteCommand: [command: 'quit' | 'restart', from: Partial<FingerprintDict>];
  /** A partitioned processor took up a partition or let one go (`partitions` with `rebalance`). */
  partitionMove: [move: PartitionMove];
}
export type ProcessorEvent = keyof ProcessorEvents;

/** Postage's positional form of a processor. */
const PROCESSOR_FORM: readonly Positional[] = [
  ['fingerprint', 'object'],
  ['eqk', 'array'],
  ['hup', 'object'],
  ['vhost', 'string'],
];

/**
 * Every option, so that a lone object mixing them with a fingerprint's fields is refused (the compiler keeps this
 * complete). @internal
 */
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
  store: true,
  concurrency: true,
  orderBy: true,
  streamStallMs: true,
  remoteControl: true,
  partitions: true,
  exchangeCheckMs: true,
  presence: true,
  rebalance: true,
};

/**
 * A microthread that consumes from its eqk and dispatches each envelope to
 * the `@MessageHandler` / `@RpcHandler` methods and `Handler` classes of its
 * class (inherited ones included).
 *
 * A thin microthread: each delivery goes through a list of small stages
 * (`delivery/pipeline.ts`: decode, telemetry, delivery limit, dedupe, outbox,
 * retry, time limit, schema, middleware, dispatch) to an {@link Outcome} as
 * data, which the settle stage carries out (ack, reject, error exchange, reply).
 */
export class MessageProcessor extends MicroThread {
  static consumerClass: typeof GenericConsumer = GenericConsumer;

  readonly fingerprint: FingerprintDict;
  readonly consumer: GenericConsumer;
  protected readonly log: Logger;
  readonly #registry: Registry;
  /** Every delivery's way from arrival to settle (the hot path, on an object of one class whatever the subclass). */
  readonly #pipeline: DeliveryPipeline;
  readonly #concurrency: number;
  #workersStarted = false;
  #ready: Promise<void> | undefined;
  #isReady = false;
  #forgetSignal: (() => void) | undefined;
  readonly #signals: boolean;
  /** How long a SIGTERM / SIGINT waits for the handler in flight. */
  readonly drainTimeoutMs: number;
  /** Aborted by close(): ends a wait between retries at once. */
  readonly #aborted = new AbortController();
  readonly #errorExchange: string | undefined;
  readonly #remoteControl: boolean;
  /** The processor's own events (remoteCommand); connection events go to the consumer's. */
  readonly #host = new EventEmitter();
  /** What its deliveries depend on: the consumer's, or the harness's. */
  readonly #ports: DeliveryPorts;
  #closing: Promise<void> | undefined;
  /** With `partitions`: the partition queues and the routes into them. */
  readonly #partitioned: PartitionedTopology | undefined;
  /** Its presence queue and what answers there (none with `presence: false`, or for a GenericApplication). */
  readonly #presence: Presence | undefined;
  /** With `partitions`: the partition channels, and (with rebalancing) this replica's share of them. */
  readonly #spread: PartitionSpread | undefined;
  /** With `store`: the store, and the relay and sweeper of its outbox. */
  readonly #store: StoreRuntime | undefined;
  /** With `store`: takes this processor out of its store's pool tally (counted at ready()). */
  #unclaimPool: (() => void) | undefined;

  constructor(options?: ProcessorOptions);
  constructor(fingerprint: Partial<FingerprintDict>, eqk?: Eqk, hup?: Partial<Hup>, vhost?: string);
  constructor(
    ...args:
      | [options?: ProcessorOptions]
      | [fingerprint: Partial<FingerprintDict>, eqk?: Eqk, hup?: Partial<Hup>, vhost?: string]
  ) {
    super();
    const opts = constructorOptions(
      this.constructor.name,
      args,
      PROCESSOR_OPTIONS,
      PROCESSOR_FORM,
      (
        fingerprint: Partial<FingerprintDict> = {},
        eqk?: Eqk,
        hup?: Partial<Hup>,
        vhost?: string,
      ): ProcessorOptions => ({
        fingerprint,
        eqk,
        hup,
        vhost,
      }),
    );
    this.fingerprint = {
      ...new Fingerprint(this.constructor.name, 'processor', { vhost: opts.vhost }).asDict(),
      ...(opts.fingerprint as FingerprintDict),
    };
    this.name = this.fingerprint.name;
    this.log = opts.logger
      ? asPino(opts.logger, { component: 'processor', componentName: this.fingerprint.name })
      : componentLogger('processor', this.fingerprint.name);
    this.#concurrency = opts.concurrency ?? 1;
    if (!(Number.isInteger(this.#concurrency) && this.#concurrency >= 1))
      throw new TypeError(`concurrency must be a whole number of at least 1, not ${String(opts.concurrency)}`);
    if (opts.orderBy !== undefined && typeof opts.orderBy !== 'function')
      throw new TypeError('orderBy must be a function (content, delivery) => key');
    if (opts.partitions !== undefined) {
      if (!opts.eqk || opts.eqk.length === 0)
        throw new TypeError("partitions split the queues of the processor's eqk: give it one");
      this.#partitioned = partitionTopology(opts.eqk, opts.partitions);
    }
    // Partitioned, deliveries are ordered by their partition key unless the processor says otherwise.
    const orderBy = opts.orderBy ?? (this.#partitioned ? byPartitionKey : undefined);
    const prefetch = opts.prefetch ?? (this.#concurrency > 1 ? this.#concurrency * (orderBy ? 4 : 2) : undefined);
    const Consumer = (this.constructor as typeof MessageProcessor).consumerClass;
    this.consumer = new Consumer({
      ...opts,
      // Partitioned, the queues are declared once ready() has checked the partition count against the broker's.
      ...(this.#partitioned ? { eqk: [] } : {}),
      prefetch,
      connectionName:
        opts.connectionName ?? `${this.fingerprint.name}@${this.fingerprint.host}:${this.fingerprint.pid}`,
      logger: this.log,
    });
    this.#signals = opts.handleSignals ?? true;
    this.drainTimeoutMs = opts.drainTimeoutMs ?? DEFAULT_DRAIN_MS;
    this.#registry = registryFor(this.constructor as typeof MessageProcessor);
    const maxDeliveries = opts.maxDeliveries ?? 5;
    if (!(Number.isInteger(maxDeliveries) && maxDeliveries >= 1))
      throw new TypeError(`maxDeliveries must be a whole number of at least 1, not ${String(opts.maxDeliveries)}`);
    if (opts.redeliveryCount !== undefined && opts.redeliveryCount !== 'broker' && opts.redeliveryCount !== 'header')
      throw new TypeError(`redeliveryCount must be 'broker' or 'header', not ${String(opts.redeliveryCount)}`);
    for (const d of opts.retry?.delays ?? []) checkDelay('retry.delays: each delay', d);
    if (opts.store !== undefined) {
      if (typeof opts.store?.begin !== 'function')
        throw new TypeError(
          'store must be a PostgresStore (postage-ts/postgres), a MemoryStore, or the same interface',
        );
      if (opts.deduplicate)
        throw new StoreError(
          "deduplicate cannot go beside store: the store's inbox already drops a message handled before, " +
            "in the run's own transaction (remove deduplicate)",
          'deduplicate',
        );
      this.#store = { store: opts.store, relay: new OutboxRelay(opts.store, this.log, this.fingerprint.name) };
    }
    // Deliveries depend on four small interfaces: the consumer's AMQP ports, unless the class makes its own (the test
    // harness).
    const consumer = this.consumer;
    const inside = consumerInternals(consumer);
    const makePorts = (this.constructor as { [PORTS]?: () => DeliveryPorts })[PORTS];
    const spread = (this.#spread =
      this.#partitioned && !makePorts ? this.#makeSpread(opts, this.#partitioned, consumer) : undefined);
    const ports: DeliveryPorts = (this.#ports = makePorts
      ? makePorts()
      : spread
        ? { ...inside.ports, settler: spread, replier: partitionReplier(inside.ports.replier, spread) }
        : inside.ports);
    const { replier } = ports;
    const settleCtx: SettleContext = {
      settler: ports.settler,
      copies: ports.copies,
      replier,
      log: this.log,
      errorExchange: opts.errorExchange,
      deliveries: new DeliveryCounter(),
      restart: () => this.restart(),
    };
    const dispatch: DispatchContext = {
      owner: this,
      fingerprint: this.fingerprint,
      log: this.log,
      retry: opts.retry,
      errorExchange: opts.errorExchange,
      closing: this.#aborted.signal,
      encodeReply: (r) => replier.encodeReply(r),
      encodeValue: (v) => replier.encodeValue?.(v, this.fingerprint),
      handlerTimeoutMs: opts.handlerTimeoutMs ?? 20 * 60_000,
      streamStallMs: opts.streamStallMs ?? 60_000,
      streams: {
        control: () => replier.streamControl(),
        send: (msg, content, headers) => replier.streamSend(msg, content, headers),
        watch: (id, listener) => replier.watchStream(id, listener),
        ack: (msg) => ack(settleCtx, msg),
      },
    };
    if (!(dispatch.streamStallMs > 0))
      throw new TypeError(`streamStallMs must be a positive number of milliseconds, not ${String(opts.streamStallMs)}`);
    if (!(dispatch.handlerTimeoutMs > 0))
      throw new TypeError(
        `handlerTimeoutMs must be a positive number of milliseconds, not ${String(opts.handlerTimeoutMs)}`,
      );
    this.#errorExchange = opts.errorExchange;
    this.#remoteControl = opts.remoteControl ?? true;
    this.#pipeline = new DeliveryPipeline({
      source: ports.source,
      registry: this.#registry,
      dispatch,
      settle: settleCtx,
      log: this.log,
      component: this.fingerprint.name,
      maxDeliveries,
      countInHeader: opts.redeliveryCount === 'header',
      outbox: this.#store !== undefined || (opts.outbox ?? true),
      store: this.#store,
      dedupe: opts.deduplicate === true ? new MemoryIdempotencyStore() : opts.deduplicate || undefined,
      orderBy,
      middleware: [],
      observers: new Set(),
      unhandled: new Set(),
    });
    // A shared connection that closes closes this processor as its own close() does: drained.
    inside.closeWith(() => this.close());
    // Deliveries waiting in the inbox came on the lost channel: the broker redelivers them.
    const intake = this.#pipeline.intake;
    this.consumer.on('disconnected', () => {
      intake.drop();
      spread?.lost();
    });
    const ownPresence = (this.constructor as { [OWN_PRESENCE]?: boolean })[OWN_PRESENCE] === true;
    if (opts.presence !== false && !ownPresence && !makePorts)
      this.#presence = new Presence(this.consumer, this.fingerprint, this.log, () => this.rpcDescribe());
    if (spread) {
      inside.foreignQueueOf = (msg) => spread.queueOf(msg);
      this.consumer.on('connected', () => {
        spread.restored().catch((err: unknown) => this.log.warn({ err }, 'could not rejoin the replicas'));
      });
    }
  }

  #makeSpread(opts: ProcessorOptions, partitioned: PartitionedTopology, consumer: GenericConsumer): PartitionSpread {
    const r = opts.rebalance ?? true;
    const settings: SpreadSettings = {
      rebalance: r !== false,
      heartbeatMs: (typeof r === 'object' ? r.heartbeatMs : undefined) ?? 5000,
    };
    if (!(settings.heartbeatMs > 0))
      throw new TypeError(
        `rebalance.heartbeatMs must be a positive number of milliseconds, not ${settings.heartbeatMs}`,
      );
    let keylessSaid = false;
    return new PartitionSpread({
      consumer,
      queues: partitioned.partitions,
      settings,
      drainMs: opts.drainTimeoutMs ?? DEFAULT_DRAIN_MS,
      log: this.log,
      fingerprint: this.fingerprint,
      told: (move) => this.#host.emit('partitionMove', move),
      deliver: (msg) => {
        if (
          !keylessSaid &&
          (msg.properties.headers as Record<string, unknown> | undefined)?.[PARTITION_HEADER] === undefined
        ) {
          keylessSaid = true;
          this.log.warn(
            { messageId: msg.properties.messageId, queue: msg.fields.routingKey },
            'a message came without _partition_key: every keyless message goes to one partition (the same one), ' +
              'so one replica handles them all. Send with { _partition_key: key } (said once)',
          );
        }
        this.#pipeline.deliver(msg);
      },
    });
  }

  /**
   * Adds a middleware around the handlers of every delivery, Koa's way:
   * `processor.use(async (ctx, next) => { …; await next(); … })`. It runs
   * inside the delivery's scope, time limit and outbox (`ctx.delivery` is
   * `currentDelivery()`, `ctx.message` the decoded envelope), in the order
   * added; throwing fails the delivery as a failing handler does. Returns the
   * processor, so calls chain.
   */
  use(mw: (ctx: MiddlewareContext, next: () => Promise<void>) => unknown): this {
    this.#pipeline.use(mw as ProcessorMiddleware);
    return this;
  }

  /** Resolves once its exchanges and queues are declared and bound; from then on nothing published to them is lost. */
  ready(): Promise<void> {
    this.#ready ??= (async () => {
      try {
        const { source, copies } = this.#ports;
        if (this.#store) await this.#readyStore();
        await source.ready();
        // The error exchange and its queue exist from the start, not from the first failure.
        if (this.#errorExchange) await copies.declareErrorExchange(this.#errorExchange);
        const pipeline = this.#pipeline;
        const partitioned = this.#partitioned;
        const presence = source === this.consumer ? this.#presence : undefined;
        await presence?.bind();
        const spread = this.#spread;
        if (partitioned && spread) {
          const consumer = this.consumer;
          const model = consumer.connection!;
          const n = partitioned.partitions.values().next().value!.length;
          // One replica at a time checks the broker's count and declares: the next one sees them whole.
          await underPartitionLock(model, [...partitioned.partitions.keys()], async () => {
            for (const queue of partitioned.partitions.keys()) await checkPartitionCount(model, queue, n);
            await consumer.addEqk(partitioned.eqk);
          });
          const inside = consumerInternals(consumer);
          for (const r of partitioned.routes) await inside.exchangeBind(r.hash, r.source, r.key);
          // The partitions are consumed on channels of their own; the consumer's channel declares, and serves presence.
          if (presence)
            await consumer.startConsuming(
              (msg) => void presence.take(msg),
              (queue) => queue === presence.queue,
            );
          await spread.start();
        } else if (presence)
          await source.startConsuming((msg) => {
            if (!presence.take(msg)) pipeline.deliver(msg);
          });
        else await source.startConsuming((msg) => pipeline.deliver(msg));
      } catch (err) {
        // Nothing stays open and nothing reopens: the process can exit, or try again with a new processor.
        this.#unclaimPool?.();
        this.#pipeline.stop();
        await this.#ports.source.close().catch(() => undefined);
        throw err;
      }
      // On SIGTERM / SIGINT: stop taking deliveries, finish the one in flight, ack it, close.
      if (this.#signals) this.#forgetSignal = closeOnSignal(this);
    })();
    return this.#ready;
  }

  /**
   * The store's tables exist, its pool can serve `concurrency` runs plus the
   * relay, and its sweeper runs (where deliveries come from a broker).
   */
  async #readyStore(): Promise<void> {
    const { store, relay } = this.#store!;
    // Counted with every processor started on this store in the process: they share its pool.
    this.#unclaimPool = claimPool(store, this.name, this.#concurrency);
    // A store made with autoMigrate: false leaves its tables to the application (docs/database.md).
    if (store.migratesOnUse !== false) await store.migrate();
    const publishStored = this.#ports.copies.publishStored?.bind(this.#ports.copies);
    if (publishStored) relay.start((m) => publishStored(m));
  }

  /**
   * Events: 'connected' (after a reconnection), 'disconnected' (err), 'blocked' (reason), 'unblocked',
   * 'restoreFailed' (err), and 'remoteCommand' (command, from): a quit or restart about to be carried out.
   */
  on<E extends ProcessorEvent>(event: E, listener: (...args: ProcessorEvents[E]) => void): this {
    if (event === 'remoteCommand' || event === 'partitionMove')
      this.#host.on(event, listener as (...args: unknown[]) => void);
    else this.consumer.on(event as ConnectionEvent, listener as (...args: ConnectionEvents[ConnectionEvent]) => void);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<E extends ProcessorEvent>(event: E, listener: (...args: ProcessorEvents[E]) => void): this {
    if (event === 'remoteCommand' || event === 'partitionMove')
      this.#host.off(event, listener as (...args: unknown[]) => void);
    else this.consumer.off(event as ConnectionEvent, listener as (...args: ConnectionEvents[ConnectionEvent]) => void);
    return this;
  }

  /** Where its connection stands: connecting, ready, reconnecting (attempt, last error), blocked (reason), closed. */
  get status(): ConnectionStatus {
    return this.consumer.status;
  }

  /** Adds bindings at run time. */
  addEqk(eqk: Eqk): Promise<void> {
    return this.consumer.addEqk(eqk);
  }

  override *main(): Generator<Yielded, void, unknown> {
    try {
      // A subclass that steps its own way gets MicroThread's loop; otherwise this one, which touches only the
      // pipeline per delivery: MicroThread's, calling step() on each subclass's own shape, was compiled again
      // for every new processor class, with the whole pipeline inlined in it.
      if (this.step !== OWN_STEP) return yield* super.main();
      this.create();
      yield;
      if ((yield* this.#firstStep()) === STOP) return;
      yield;
      const pipeline = this.#pipeline;
      const intake = pipeline.intake;
      for (;;) {
        if ((yield* pipeline.work()) === STOP) return;
        // The other threads get a turn between deliveries: here when another waits, else as the next work() parks.
        if (intake.waiting > 0) yield;
      }
    } finally {
      // However the thread ends (STOP, ExitScheduler, scheduler.stop()), the channel closes.
      void this.close();
    }
  }

  override step(): Generator<Yielded, unknown, unknown> {
    // Park on ready() only until it has resolved: a promise yielded on every step would cost a round trip through the
    // event loop per message.
    // After that a step is one delivery's own generator, with none wrapped around it.
    return this.#isReady ? this.#pipeline.work() : this.#firstStep();
  }

  *#firstStep(): Generator<Yielded, unknown, unknown> {
    yield this.ready();
    this.#isReady = true;
    this.#startWorkers();
    return yield* this.#pipeline.work();
  }

  /** With `concurrency` N, N - 1 more microthreads beside this one take deliveries from the same intake. */
  #startWorkers(): void {
    if (this.#workersStarted) return;
    this.#workersStarted = true;
    if (this.#concurrency === 1) return;
    const scheduler = this.scheduler;
    if (!scheduler) {
      this.log.warn(
        `concurrency ${this.#concurrency} needs the processor to run on a MicroScheduler; handling one delivery at a ` +
          'time',
      );
      return;
    }
    const pipeline = this.#pipeline;
    for (let i = 1; i < this.#concurrency; i++)
      scheduler.addMicrothread(new DeliveryWorker(() => pipeline.work(), `${this.name}#${i}`));
  }

  /**
   * Calls `listener` after each delivery is settled, with what became of it
   * (for tests and tooling: `received()` in `postage-ts/testing` waits on it).
   * Returns how to stop listening. A listener that throws is logged and ignored.
   */
  observe(listener: (event: DeliveryEvent) => void): () => void {
    return this.#pipeline.observe(listener);
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
    this.#pipeline.stop();
    this.#aborted.abort();
    this.#closing ??= (async () => {
      this.#forgetSignal?.();
      await this.#ready?.catch(() => undefined);
      // A partition's consumer stays until its channel closes: cancelled first, the broker would make another
      // replica active while this one still holds unhandled messages of a key, and hand it that key's later ones first.
      // The others hear the bye now and queue up behind this replica as standbys.
      if (this.#spread) this.#spread.leave();
      else if (!this.#partitioned) await this.#ports.source.stopConsuming();
      else consumerInternals(this.consumer).holdConsumersUntilClose();
      // Waiting workers stop; those in a handler finish it and settle.
      await this.#pipeline.intake.close();
      // What the relay holds goes out before the channel closes (the user's pool is never closed here).
      await this.#store?.relay.stop();
      this.#unclaimPool?.();
      await this.#spread?.close();
      await this.#ports.source.close();
    })();
    return this.#closing;
  }

  /**
   * The current name of its presence queue (server-named, so new after each reconnection), where it answers `ping`
   * and `describe`; undefined with `presence: false` and for a `GenericApplication`, which answers on its own queue.
   */
  get presenceQueue(): string | undefined {
    return this.#presence?.queue;
  }

  /** `await using processor = new P(…)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** With `store`: its outbox's backlog as the last sweep saw it (the NestJS health indicator reads it). @internal */
  get outboxBacklog(): { waiting: number; oldestMs: number; failed: number } | undefined {
    return this.#store?.relay.backlog;
  }

  /** The built-in `describe` RPC: this processor's fingerprint, library version, bindings and handlers. */
  @RpcHandler('command', 'describe', { description: 'what this processor is, where it listens, and what it handles' })
  async rpcDescribe(): Promise<ProcessorDescription> {
    // Where it takes work from: its presence queue is told of apart.
    const presenceQueue = this.presenceQueue;
    const bindings = this.consumer.bindings();
    const d = describeProcessor(
      this.fingerprint,
      presenceQueue === undefined ? bindings : bindings.filter((b) => b.queue !== presenceQueue),
      this.#registry,
      this.#errorExchange,
      this.#concurrency,
    );
    if (presenceQueue !== undefined) d.presence = presenceQueue;
    if (this.#spread) {
      const routes = this.#partitioned?.routes ?? [];
      d.partitions = (await this.#spread.describe(true)).map((p) => ({
        ...p,
        routes: routes
          .filter((r) => r.hash.name === `${p.queue}.partitions`)
          .map((r) => ({ exchange: routeSource(r), type: resolveExchange(r.source).type, key: r.key })),
      }));
    }
    const backlog = this.#store?.relay.backlog;
    if (backlog) d.outbox = { ...backlog };
    return d;
  }

  /**
   * The built-in `quit`: anyone allowed to publish to this processor's
   * exchange can stop it (docs/operations.md says how to restrict that with
   * RabbitMQ permissions). Always logged at warn with the sender's
   * fingerprint, and told to 'remoteCommand' listeners; refused (logged,
   * acked) with `remoteControl: false`.
   */
  @MessageHandlerFullBody('command', 'quit')
  msgQuit(body: MessageBody<object>): void {
    if (this.#remoteCommand('quit', body)) throw new ExitScheduler('quit command received');
  }

  /** The built-in `restart`, as `quit` is guarded and told; then `restart()`. */
  @MessageHandlerFullBody('command', 'restart')
  msgRestart(body: MessageBody<object>): void {
    if (this.#remoteCommand('restart', body)) throw new AckAndRestart('restart command received');
  }

  /** Logs a remote lifecycle command with who sent it, tells the host, and says whether it is carried out. */
  #remoteCommand(command: 'quit' | 'restart', body: MessageBody<object>): boolean {
    const from = (body.fingerprint ?? {}) as Partial<FingerprintDict>;
    const who =
      `${from.name ?? '?'} (${from.type ?? '?'}) ` +
      `pid ${from.pid ?? '?'}@${from.host ?? '?'} user ${from.user ?? '?'}`;
    if (!this.#remoteControl) {
      this.log.warn(
        { command, from },
        `${command} command from ${who} refused: this processor has remoteControl: false`,
      );
      return false;
    }
    this.log.warn(
      { command, from },
      `${command} command from ${who}: ${command === 'quit' ? 'stopping' : 'restarting'}`,
    );
    this.#host.emit('remoteCommand', command, from);
    return true;
  }
}

// Its members are the processor's own: a handler may not take their names (see handlers.ts).
registerMachinery(MessageProcessor, true);

Object.defineProperty(MessageProcessor.prototype, COMPONENT_KIND, { value: 'processor', writable: true });

/** Whether `v` is a processor of any copy of postage-ts (see COMPONENT_KIND). */
export function isProcessor(v: unknown): v is MessageProcessor {
  return (
    v instanceof MessageProcessor ||
    (typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[COMPONENT_KIND] === 'processor')
  );
}

/** Whether `v` is a processor class of any copy of postage-ts. */
export function isProcessorClass(v: unknown): v is typeof MessageProcessor {
  return (
    typeof v === 'function' &&
    (v.prototype instanceof MessageProcessor ||
      (v.prototype as Record<symbol, unknown> | undefined)?.[COMPONENT_KIND] === 'processor')
  );
}

/** The consumer's replier, but for replies to deliveries that came on a partition channel: those go on it. */
function partitionReplier(replier: Replier, spread: PartitionSpread): Replier {
  return {
    encodeReply: (r) => replier.encodeReply(r),
    encodeValue: (v, fingerprint) => replier.encodeValue?.(v, fingerprint),
    sendReply: (msg, content, headers) => spread.sendReply(msg, content, headers),
    streamControl: () => replier.streamControl(),
    streamSend: (msg, content, headers) => replier.streamSend(msg, content, headers),
    watchStream: (id, listener) => replier.watchStream(id, listener),
  };
}

/** A partitioned processor's default ordering key: the partition key the message was sent with. */
function byPartitionKey(_content: unknown, delivery: DeliveryInfo): unknown {
  const k = delivery.headers[PARTITION_HEADER];
  return Buffer.isBuffer(k) ? k.toString('utf8') : k;
}

/**
 * The processor's own step, as the class defined it: one replaced later (a subclass, a spy on the prototype) is called.
 */
const OWN_STEP = MessageProcessor.prototype.step;

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
