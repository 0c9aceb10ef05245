import type { ChannelModel, Options } from 'amqplib';
import { componentLogger } from '../log.js';
import { JsonEncoder, type Encoder } from '../envelope/encoder.js';
import { Message, MessageResult, MessageResultError, MessageResultException } from '../envelope/messages.js';
import type { AnyResult, MessageBody } from '../envelope/messages.js';
import type { GenericProducer, Producer, ProducerOptions } from '../send/producer.js';
import { Publisher, unroutableError } from '../send/publisher.js';
import { RpcClient, type RpcCall } from '../send/rpc-client.js';
import { TRANSPORT, type Transport } from '../send/transport.js';
import type { EksEntry } from '../topology/topology.js';

/** One message a test producer sent: where, what (decoded), and its AMQP properties. */
export interface SentMessage {
  exchange: string;
  routingKey: string;
  body: MessageBody<object>;
  properties: Options.Publish & { messageId?: string; headers?: Record<string, unknown> };
  /** `_delay`, when it had one. */
  delayMs?: number;
}

/**
 * A canned RPC answer: a value (a success), a `MessageResult`, or a function of the parameters giving either (a throw
 * is an exception result).
 */
export type CannedAnswer =
  | ((params: Record<string, unknown>, body: MessageBody<object>) => unknown)
  | MessageResult<unknown>
  | string
  | number
  | boolean
  | null
  | unknown[]
  | Record<string, unknown>;

export interface TestProducerOptions extends ProducerOptions {
  /** Answers by RPC name. A name without one answers `MessageResultError('No canned answer…')`. */
  rpc?: Record<string, CannedAnswer>;
  /**
   * Targets no queue takes, as the broker would see them: `true` for every
   * target, or names of exchanges (`'orders'`) and of exchanges with a routing
   * key (`'orders/created'`). A mandatory send (a command, by default) to one
   * rejects with `BrokerError` `UNROUTABLE` and is not recorded, as the broker
   * returns it; held by a processor's outbox, it fails the delivery.
   */
  unroutable?: true | readonly string[];
}

const all: SentMessage[] = [];

/** Every message every test producer sent, in order (the harness takes a delivery's from here). */
export function captured(): readonly SentMessage[] {
  return all;
}

/** Forgets what `captured()` holds. */
export function clearCaptured(): void {
  all.length = 0;
}

/** What one test producer sent, decoded, in its own list and in `captured()`. */
class SendLog {
  constructor(
    readonly encoder: Encoder,
    readonly sent: SentMessage[],
  ) {}

  /** Records one message (once per target) and returns its envelope. */
  record(
    targets: ReadonlyArray<readonly [string, string]>,
    content: Buffer,
    props: Options.Publish,
    delayMs?: number,
  ): MessageBody<object> {
    const body = Message.fromBody(this.encoder.decode(content)).body as MessageBody<object>;
    for (const [exchange, routingKey] of targets) {
      const sent: SentMessage = { exchange, routingKey, body, properties: { ...props } };
      if (delayMs !== undefined) sent.delayMs = delayMs;
      this.sent.push(sent);
      all.push(sent);
    }
    return body;
  }
}

const names = (targets: readonly EksEntry[]) => targets.map(([e, key]) => [e.name, key] as const);

class RecordingPublisher extends Publisher {
  constructor(
    private readonly sends: SendLog,
    private readonly unroutable: true | readonly string[] | undefined,
  ) {
    super(componentLogger('test-producer'), 1, () => undefined);
  }

  #routes([exchange, key]: EksEntry): boolean {
    const u = this.unroutable;
    if (u === undefined) return true;
    return u !== true && !u.includes(exchange.name) && !u.includes(`${exchange.name}/${key}`);
  }
  override get isOpen(): boolean {
    return true;
  }
  override async open(_model: ChannelModel, _exchanges: readonly EksEntry[]): Promise<void> {}
  override async close(): Promise<void> {}
  override publish(
    targets: readonly EksEntry[],
    props: Options.Publish & { messageId: string; mandatory: boolean },
    content: Buffer,
  ): Promise<void> {
    const routed = targets.filter((t) => this.#routes(t));
    if (routed.length > 0) this.sends.record(names(routed), content, props);
    if (props.mandatory && routed.length < targets.length)
      return Promise.reject(unroutableError(targets.filter((t) => !this.#routes(t))));
    return Promise.resolve();
  }
  override async publishDelayed(
    targets: readonly EksEntry[],
    props: Options.Publish & { messageId: string },
    content: Buffer,
    ms: number,
  ): Promise<void> {
    this.sends.record(names(targets), content, props, ms);
  }
}

class CannedRpc extends RpcClient {
  constructor(
    private readonly sends: SendLog,
    private readonly answers: Record<string, CannedAnswer>,
  ) {
    super(componentLogger('test-producer'), sends.encoder, () => undefined);
  }
  override get isOpen(): boolean {
    return true;
  }
  override async open(): Promise<void> {}
  override async close(): Promise<void> {}
  override async call(c: RpcCall): Promise<AnyResult> {
    const body = this.sends.record([[c.target?.[0]?.name ?? '', c.target?.[1] ?? '']], c.content, c.properties);
    const name = String(body.name);
    if (!Object.hasOwn(this.answers, name))
      return new MessageResultError(
        `No canned answer for RPC '${name}': give one in testProducer(…, { rpc: { ${name}: … } })`,
      );
    const answer = this.answers[name];
    try {
      const params = ((body.content as { parameters?: unknown } | undefined)?.parameters ?? {}) as Record<
        string,
        unknown
      >;
      const value =
        typeof answer === 'function'
          ? await (answer as (p: Record<string, unknown>, b: MessageBody<object>) => unknown)(params, body)
          : answer;
      return value instanceof MessageResult ? (value as AnyResult) : new MessageResult(value);
    } catch (err) {
      const e = err as Error;
      return new MessageResultException(e?.name ?? 'Error', e?.message ?? String(err));
    }
  }
}

/**
 * A producer of class `Cls` that needs no broker: what it sends is recorded
 * in `sent` (decoded, with its properties), and its RPCs are answered from
 * `options.rpc`. Typed as the real producer (its builders, its
 * `message_NAME` / `rpc_NAME`), so the code under test takes it as is.
 *
 * @example
 * const images = testProducer(Images, { rpc: { size: () => ({ width: 640 }) } });
 * await images.message_resize({ width: 640 });
 * expect(images.sent[0].body.name).to.equal('resize');
 */
export function testProducer<T extends GenericProducer>(
  Cls: new (options?: ProducerOptions) => T,
  options: TestProducerOptions = {},
): Producer<T> & { readonly sent: SentMessage[] } {
  const sent: SentMessage[] = [];
  const encoder = options.encoder ?? new JsonEncoder();
  const log = new SendLog(encoder, sent);
  const transport: Transport = {
    publisher: new RecordingPublisher(log, options.unroutable),
    rpc: new CannedRpc(log, options.rpc ?? {}),
  };
  const p = new Cls({ ...options, encoder, [TRANSPORT]: transport } as ProducerOptions);
  Object.defineProperty(p, 'sent', { value: sent, enumerable: false });
  return p as Producer<T> & { readonly sent: SentMessage[] };
}
