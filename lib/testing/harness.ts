import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { GenericConsumer } from '../messaging/consumer.js';
import { Message, type MessageBody } from '../messaging/messages.js';
import { MessageProcessor, type DeliveryEvent, type ProcessorOptions } from '../messaging/processor.js';
import { MicroScheduler } from '../microthreads/scheduler.js';
import { HEADERS } from '../messaging/delivery/context.js';
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
 * A consumer with no broker behind it: deliveries come from the harness, and
 * what the processor does with them (ack, reject, dead letter, delay, reply)
 * is recorded instead of sent. Everything above it is the real processor.
 */
class HarnessConsumer extends GenericConsumer {
  callback: ((msg: ConsumeMessage) => void) | undefined;
  readonly recorded = new Map<number, Recorded>();

  #at(msg: ConsumeMessage): Recorded {
    let r = this.recorded.get(msg.fields.deliveryTag);
    if (!r) this.recorded.set(msg.fields.deliveryTag, (r = {}));
    return r;
  }

  override ready(): Promise<void> {
    return Promise.resolve();
  }
  override async startConsuming(callback: (msg: ConsumeMessage) => void): Promise<void> {
    this.callback = callback;
  }
  override async stopConsuming(): Promise<void> {
    this.callback = undefined;
  }
  override errorChannel(): Promise<ConfirmChannel> {
    // Nothing to declare: dead letters are recorded.
    return Promise.resolve(undefined as unknown as ConfirmChannel);
  }
  override ack(): boolean {
    return true;
  }
  override reject(): boolean {
    return true;
  }
  override async settled(): Promise<void> {}
  override async deadLetter(msg: ConsumeMessage, exchange: string, _err: unknown, attempts: number): Promise<void> {
    this.#at(msg).deadLetter = { exchange, attempts };
  }
  override async delay(msg: ConsumeMessage, ms: number, headers: Record<string, unknown>): Promise<void> {
    this.#at(msg).defer = { ms, headers };
  }
  override queueOf(): string {
    return 'harness';
  }
  override sendReply(msg: ConsumeMessage, content: Buffer): void {
    this.#at(msg).reply = Message.fromBody(this.decode(content)).body as MessageBody<object>;
  }
  override async streamControl(): Promise<void> {
    throw new Error('RPC streams need a broker: test them against one (see docs/testing.md)');
  }
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
  readonly #consumer: HarnessConsumer;
  readonly #scheduler = new MicroScheduler({ name: 'harness' });
  #running: Promise<void> | undefined;
  #nextTag = 1;
  readonly #waiting = new Map<string, (e: DeliveryEvent) => void>();

  private constructor(processor: P) {
    this.processor = processor;
    this.#consumer = processor.consumer as HarnessConsumer;
    processor.observe((e) => {
      const w = e.messageId === undefined ? undefined : this.#waiting.get(e.messageId);
      if (w) {
        this.#waiting.delete(e.messageId!);
        w(e);
      }
    });
  }

  /** Builds the processor from `Cls` and its constructor arguments, with a recording consumer, and runs it. */
  static start<P extends MessageProcessor>(Cls: new (options?: ProcessorOptions) => P, options?: ProcessorOptions): Promise<ProcessorHarness<P>>;
  static start<P extends MessageProcessor, A extends unknown[]>(Cls: new (...args: A) => P, ...args: A): Promise<ProcessorHarness<P>>;
  static async start<P extends MessageProcessor, A extends unknown[]>(Cls: new (...args: A) => P, ...args: A): Promise<ProcessorHarness<P>> {
    const Harnessed = class extends (Cls as unknown as new (...a: A) => MessageProcessor) {
      static consumerClass = HarnessConsumer;
    } as unknown as new (...a: A) => P;
    // Named as the class under test: its fingerprint (and so its describe, its logs) stays its own.
    Object.defineProperty(Harnessed, 'name', { value: Cls.name });
    const h = new ProcessorHarness(new Harnessed(...args));
    await h.processor.ready();
    h.#scheduler.addMicrothread(h.processor);
    h.#running = h.#scheduler.run();
    return h;
  }

  /**
   * Delivers one message (a `Message`, an envelope body, or raw bytes for a
   * malformed one) and resolves once the processor settled it.
   */
  async deliver(message: Message<object> | MessageBody<object> | Buffer | string, d: HarnessDelivery = {}): Promise<HarnessResult> {
    const cb = this.#consumer.callback;
    if (!cb) throw new Error('the harness is closed');
    const body = message instanceof Message ? message.body : message;
    const content = Buffer.isBuffer(body) ? body : typeof body === 'string' ? Buffer.from(body) : (this.#consumer.encoder.encode(body) as Buffer);
    const isRpc = typeof body === 'object' && !Buffer.isBuffer(body) && (body as { category?: unknown }).category === 'rpc';
    const messageId = d.messageId ?? `harness.${this.#nextTag}`;
    const tag = this.#nextTag++;
    const msg = {
      content,
      fields: { deliveryTag: tag, redelivered: d.redelivered ?? false, exchange: d.exchange ?? 'harness', routingKey: d.routingKey ?? '', consumerTag: 'harness' },
      properties: {
        messageId,
        correlationId: d.correlationId ?? (isRpc ? `harness.call.${tag}` : undefined),
        replyTo: d.replyTo ?? (isRpc ? 'harness.reply' : undefined),
        headers: d.headers ?? {},
        contentType: this.#consumer.encoder.contentType,
        timestamp: Math.floor(Date.now() / 1000),
      },
    } as unknown as ConsumeMessage;
    const before = captured().length;
    const done = new Promise<DeliveryEvent>((resolve) => this.#waiting.set(messageId, resolve));
    cb(msg);
    const event = await done;
    // The reply goes out right after the settle: let it.
    await new Promise<void>((r) => setImmediate(r));
    const rec = this.#consumer.recorded.get(tag) ?? {};
    this.#consumer.recorded.delete(tag);
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
