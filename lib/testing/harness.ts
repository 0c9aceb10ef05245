import type { ConsumeMessage } from 'amqplib';
import { GenericConsumer } from '../receive/consumer.js';
import { resolveExchange, type ExchangeLike } from '../topology/exchange.js';
import { eqkEntries, type Eqk, type QueueFlags, type QueueSpec } from '../topology/topology.js';
import {
  PORTS,
  type ConfirmedCopies,
  type DeliveryPorts,
  type DeliverySource,
  type Replier,
  type Settler,
} from '../receive/delivery/ports.js';
import type { Encoder } from '../envelope/encoder.js';
import { defaultEncoder } from '../envelope/encryption.js';
import { Message, MessageResult, type MessageBody } from '../envelope/messages.js';
import type { MessageProcessor, DeliveryEvent, ProcessorOptions } from '../receive/processor.js';
import { MicroScheduler } from '../microthreads/scheduler.js';
import { HEADERS } from '../scope/context.js';
import { captured, type SentMessage } from './producers.js';

/** What a delivery handed to a harness carries besides its envelope. */
export interface HarnessDelivery {
  /** AMQP headers (a quorum queue's `x-delivery-count`, a conversation id…). */
  headers?: Record<string, unknown>;
  /** Makes a message answerable, as an RPC's reply_to does. @default set for RPCs */
  replyTo?: string;
  correlationId?: string;
  /** @default a fresh id per delivery */
  messageId?: string;
  redelivered?: boolean;
  exchange?: string;
  routingKey?: string;
}

/** What became of one delivery in a harness. */
export interface HarnessResult {
  /** As `MessageProcessor.observe()` tells it: acked, rejected, dead-lettered, deferred, requeued… */
  outcome: DeliveryEvent['outcome'];
  /** Why, for a failure, a reject, a retry, a defer. */
  error: unknown;
  /** A deferral's (or delayed retry's) delay and the headers of the copy that comes back. */
  deferMs: number | undefined;
  deferHeaders: Record<string, unknown> | undefined;
  /** Where it was dead-lettered to, with the headers the error exchange gets. */
  deadLetter: { exchange: string; attempts: number } | undefined;
  /** The reply (an RPC's result, or a message's answer), decoded. */
  reply: MessageBody<object> | undefined;
  /** What its handlers sent through producers made with `testProducer()`, with their properties. */
  sent: SentMessage[];
}

interface Recorded {
  deadLetter?: { exchange: string; attempts: number };
  defer?: { ms: number; headers: Record<string, unknown> };
  reply?: MessageBody<object>;
}

/**
 * What a processor's deliveries depend on (delivery/ports.ts), with no broker
 * behind: deliveries come from the harness, and what the processor does with
 * them (ack, reject, dead letter, delay, reply) is recorded instead of sent.
 * Everything above it is the real processor.
 */
class HarnessPorts implements DeliveryPorts, DeliverySource, Settler, ConfirmedCopies, Replier {
  readonly source = this;
  readonly settler = this;
  readonly copies = this;
  readonly replier = this;
  callback: ((msg: ConsumeMessage) => void) | undefined;
  readonly recorded = new Map<number, Recorded>();
  /** The delivery settled last: its observers are told right after, so it is the one an event is about. */
  lastSettled: number | undefined;

  constructor(readonly encoder: Encoder) {}

  #at(msg: ConsumeMessage): Recorded {
    let r = this.recorded.get(msg.fields.deliveryTag);
    if (!r) this.recorded.set(msg.fields.deliveryTag, (r = {}));
    return r;
  }

  // DeliverySource
  async ready(): Promise<void> {}
  async startConsuming(callback: (msg: ConsumeMessage) => void): Promise<void> {
    this.callback = callback;
  }
  async stopConsuming(): Promise<void> {
    this.callback = undefined;
  }
  async close(): Promise<void> {}
  decode(content: Buffer): unknown {
    return this.encoder.decode(content);
  }

  // Settler
  ack(msg: ConsumeMessage): boolean {
    this.lastSettled = msg.fields.deliveryTag;
    return true;
  }
  reject(msg: ConsumeMessage): boolean {
    this.lastSettled = msg.fields.deliveryTag;
    return true;
  }
  async settled(): Promise<void> {}

  // ConfirmedCopies: recorded (nothing to declare)
  async declareErrorExchange(): Promise<void> {}
  async deadLetter(msg: ConsumeMessage, exchange: string, _err: unknown, attempts: number): Promise<void> {
    this.#at(msg).deadLetter = { exchange, attempts };
  }
  async delay(msg: ConsumeMessage, ms: number, headers: Record<string, unknown>): Promise<void> {
    this.#at(msg).defer = { ms, headers };
  }

  // Replier
  encodeReply(result: unknown): Buffer {
    return this.encoder.encode(result instanceof Message ? result.body : new MessageResult(result).body) as Buffer;
  }
  sendReply(msg: ConsumeMessage, content: Buffer): void {
    this.#at(msg).reply = Message.fromBody(this.decode(content)).body as MessageBody<object>;
  }
  async streamControl(): Promise<void> {
    throw new Error('RPC streams need a broker: test them against one (see docs/testing.md)');
  }
  streamSend(): boolean {
    return false;
  }
  watchStream(): () => void {
    return () => undefined;
  }
}

/**
 * The consumer a harnessed processor holds instead of its own: what a
 * processor (or a subclass the library ships, `GenericApplication` joining
 * groups) asks of its consumer beyond its deliveries (declaring and binding
 * its queues, consuming, cancelling, closing) is recorded here and never
 * reaches a broker, so its connection is never opened. Its deliveries go
 * through {@link HarnessPorts}.
 */
class HarnessConsumer extends GenericConsumer {
  readonly #bound: Array<{ exchange: string; key: string; queue: string }> = [];
  #serverNamed = 0;

  override ready(): Promise<void> {
    return Promise.resolve();
  }
  override async addEqk(eqk: Eqk): Promise<void> {
    for (const [exchange, qks] of eqkEntries(eqk))
      for (const [queue, key] of qks) await this.queueBind(exchange, queue, key);
  }
  override bindings(): Array<{ exchange: string; key: string; queue: string }> {
    return this.#bound.map((b) => ({ ...b }));
  }
  override async queueBind(
    exchange: ExchangeLike,
    queue: QueueSpec,
    key: string,
    _flags?: QueueFlags,
  ): Promise<string> {
    const given = typeof queue === 'string' ? queue : queue.name;
    // A server-named queue gets a name as the broker would give one.
    const name = given === '' ? `amq.gen-harness.${++this.#serverNamed}` : given;
    this.#bound.push({ exchange: resolveExchange(exchange).name, key, queue: name });
    if (!this.queues.includes(name)) this.queues.push(name);
    return name;
  }
  override async queueUnbind(exchange: ExchangeLike, queue: string, key: string): Promise<void> {
    const ex = resolveExchange(exchange).name;
    const i = this.#bound.findIndex((b) => b.exchange === ex && b.queue === queue && b.key === key);
    if (i >= 0) this.#bound.splice(i, 1);
  }
  override async queueCancel(queue: string): Promise<void> {
    const i = this.queues.indexOf(queue);
    if (i >= 0) this.queues.splice(i, 1);
  }
  override async startConsuming(): Promise<void> {}
  override async stopConsuming(): Promise<void> {}
  override async close(): Promise<void> {}
}

/**
 * Runs a processor class without a broker: `deliver()` hands it an envelope
 * and resolves with what became of it. The processor is the real one (its
 * decorators, filters, schemas, retries, outbox, concurrency, generator
 * handlers); only its consumer is replaced, by one that records instead of
 * talking to RabbitMQ.
 *
 * @example
 * const h = await ProcessorHarness.start(Thumbnailer, { handleSignals: false });
 * const r = await h.deliver(new MessageCommand('resize', { width: 640 }));
 * expect(r.outcome).to.equal('acked');
 * await h.close();
 */
export class ProcessorHarness<P extends MessageProcessor> {
  readonly processor: P;
  readonly #ports: HarnessPorts;
  readonly #scheduler = new MicroScheduler({ name: 'harness' });
  #running: Promise<void> | undefined;
  #nextTag = 1;
  /**
   * deliver() calls waiting for their event, by delivery tag: two deliveries of one message id (a copy given while
   * the first runs, as deduplicate meets it) each get their own.
   */
  readonly #waiting = new Map<number, { messageId: string; resolve: (e: DeliveryEvent) => void }>();

  private constructor(processor: P, ports: HarnessPorts) {
    this.processor = processor;
    this.#ports = ports;
    processor.observe((e) => {
      const settled = ports.lastSettled;
      ports.lastSettled = undefined;
      let tag = settled !== undefined && this.#waiting.get(settled)?.messageId === e.messageId ? settled : undefined;
      // Ended without a settle (the processor closing): the oldest delivery of that id.
      if (tag === undefined)
        for (const [t, w] of this.#waiting)
          if (w.messageId === e.messageId) {
            tag = t;
            break;
          }
      if (tag === undefined) return;
      const w = this.#waiting.get(tag)!;
      this.#waiting.delete(tag);
      w.resolve(e);
    });
  }

  /** Builds the processor from `Cls` and its constructor arguments, with a recording consumer, and runs it. */
  static start<P extends MessageProcessor>(
    Cls: new (options?: ProcessorOptions) => P,
    options?: ProcessorOptions,
  ): Promise<ProcessorHarness<P>>;
  static start<P extends MessageProcessor, A extends unknown[]>(
    Cls: new (...args: A) => P,
    ...args: A
  ): Promise<ProcessorHarness<P>>;
  static async start<P extends MessageProcessor, A extends unknown[]>(
    Cls: new (...args: A) => P,
    ...args: A
  ): Promise<ProcessorHarness<P>> {
    let ports: HarnessPorts | undefined;
    const Harnessed = class extends (Cls as unknown as new (...a: A) => MessageProcessor) {
      // The processor's deliveries depend on these instead of its consumer (which never connects).
      static [PORTS] = (): DeliveryPorts => (ports = new HarnessPorts(encoderOf(args)));
      // And what it asks of its consumer besides (its topology, a GenericApplication's groups) is recorded.
      static consumerClass = HarnessConsumer;
    } as unknown as new (
      ...a: A
    ) => P;
    // Named as the class under test: its fingerprint (and so its describe, its logs) stays its own.
    Object.defineProperty(Harnessed, 'name', { value: Cls.name });
    const processor = new Harnessed(...args);
    const h = new ProcessorHarness(processor, ports!);
    await h.processor.ready();
    h.#scheduler.addMicrothread(h.processor);
    h.#running = h.#scheduler.run();
    return h;
  }

  /**
   * Delivers one message (a `Message`, an envelope body, or raw bytes for a
   * malformed one) and resolves once the processor settled it.
   */
  async deliver(
    message: Message<object> | MessageBody<object> | Buffer | string,
    d: HarnessDelivery = {},
  ): Promise<HarnessResult> {
    const cb = this.#ports.callback;
    if (!cb) throw new Error('the harness is closed');
    const body = message instanceof Message ? message.body : message;
    const content = Buffer.isBuffer(body)
      ? body
      : typeof body === 'string'
        ? Buffer.from(body)
        : (this.#ports.encoder.encode(body) as Buffer);
    const isRpc =
      typeof body === 'object' && !Buffer.isBuffer(body) && (body as { category?: unknown }).category === 'rpc';
    const messageId = d.messageId ?? `harness.${this.#nextTag}`;
    const tag = this.#nextTag++;
    const msg = {
      content,
      fields: {
        deliveryTag: tag,
        redelivered: d.redelivered ?? false,
        exchange: d.exchange ?? 'harness',
        routingKey: d.routingKey ?? '',
        consumerTag: 'harness',
      },
      properties: {
        messageId,
        correlationId: d.correlationId ?? (isRpc ? `harness.call.${tag}` : undefined),
        replyTo: d.replyTo ?? (isRpc ? 'harness.reply' : undefined),
        headers: d.headers ?? {},
        contentType: this.#ports.encoder.contentType,
        timestamp: Math.floor(Date.now() / 1000),
      },
    } as unknown as ConsumeMessage;
    const before = captured().length;
    const done = new Promise<DeliveryEvent>((resolve) => this.#waiting.set(tag, { messageId, resolve }));
    cb(msg);
    const event = await done;
    // The reply goes out right after the settle: let it.
    await new Promise<void>((r) => setImmediate(r));
    const rec = this.#ports.recorded.get(tag) ?? {};
    this.#ports.recorded.delete(tag);
    return {
      outcome: event.outcome,
      error: event.error,
      deferMs: rec.defer?.ms,
      deferHeaders: rec.defer?.headers,
      deadLetter: rec.deadLetter,
      reply: rec.reply,
      sent: captured()
        .slice(before)
        .filter((s) => s.properties.headers?.[HEADERS.causationId] === messageId),
    };
  }

  /** Stops the processor (a handler in flight finishes first). */
  async close(): Promise<void> {
    await this.processor.close();
    void this.#scheduler.stop();
    await this.#running;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The encoder a harnessed processor was given (in its options form), else the one components use by default. */
function encoderOf(args: unknown[]): Encoder {
  const first = args[0] as { encoder?: Encoder } | undefined;
  return args.length === 1 && first?.encoder ? first.encoder : defaultEncoder();
}
