import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import { BrokerError, MalformedMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { openChannel } from '../transport/channels.js';
import { flushChannelSoon } from '../transport/amqplib-adapter.js';
import type { Encoder } from '../envelope/encoder.js';
import {
  Message,
  MessageResult,
  MessageResultError,
  MessageResultException,
  type AnyResult,
  type MessageBody,
} from '../envelope/messages.js';
import { declareQueue, REPLY_TO, type EksEntry } from '../topology/topology.js';
import { unroutableError } from './publisher.js';
import { StreamCall } from './rpc-stream.js';
import { STREAM } from '../envelope/stream-protocol.js';

export interface ConsumeRpcOptions {
  /** How many replies to wait for. @default 1 */
  resultLen?: number;
  /** Called with each reply body as it arrives. */
  callback?: (body: MessageBody<object>) => void;
  /** Seconds to wait for all replies. @default the producer's rpcTimeout */
  timeout?: number;
}

/** One call: where it went, how it ends. */
export interface RpcCall {
  target: EksEntry;
  content: Buffer;
  /** Milliseconds to wait for a reply before sending again. */
  timeoutMs: number;
  /** How many times it is sent again. */
  maxRetry: number;
  /** Whether a request no queue takes fails the call at once (`UNROUTABLE`). */
  mandatory: boolean;
  /** `'queue'`: a reply queue of its own, for peers that reply without a correlation id. */
  replyTo: 'direct' | 'queue';
  /** The request's other AMQP properties (message id, headers, timestamp…). */
  properties: Options.Publish;
  /** Told the headers of the reply that completes the call. */
  onReply?: (headers: Record<string, unknown>) => void;
}

interface PendingRpc {
  resolve: (r: AnyResult) => void;
  reject: (err: BrokerError) => void;
  readonly ch: Channel;
  readonly call: RpcCall;
  /** The request's properties, the same for every attempt. */
  readonly props: Options.Publish;
  /** Its own reply queue (`replyTo: 'queue'`), whose replies need no correlation id. */
  readonly queue: { name: string; consumerTag: string } | undefined;
  /** Attempts sent again so far. */
  retries: number;
  /** When the attempt on the wire is unanswered (performance.now() ms). */
  due: number;
}

/**
 * Calls RPCs and matches their replies: one plain channel (a request needs no
 * publisher confirm: its reply is the acknowledgement), RabbitMQ's direct
 * reply-to (no queue per call) or a queue per call, retries on timeout, and
 * one rule for how a call ends. What the remote side says resolves it (its
 * result, or `TimeoutError` after the retries); a failure that is not the
 * remote side's rejects with a `BrokerError`: `UNROUTABLE`, `CHANNEL_CLOSED`,
 * `CLOSED`.
 * @internal
 */
export class RpcClient {
  #channel: Channel | undefined;
  readonly #pending = new Map<string, PendingRpc>();
  /** Streams running, by correlation id. */
  /**
   * Streams in flight, held weakly: an iterator its caller dropped is collected, and its server told (see StreamCall).
   */
  readonly #streams = new Map<string, { ref: WeakRef<StreamCall>; target: EksEntry }>();
  readonly #idPrefix = `${process.pid}.${Date.now().toString(36)}.`;
  #nextId = 0;
  /**
   * One timer for every call in flight, set for the earliest attempt that
   * can be due, instead of a timer per call: a call answered in time costs
   * no timer at all, and the sweep finds what is due.
   */
  #timer: NodeJS.Timeout | undefined;
  #timerDue = Infinity;
  readonly #sweep = (): void => this.#sweepDue();

  constructor(
    private readonly log: Logger,
    private readonly encoder: Encoder,
    private readonly onLost: () => void,
  ) {}

  get isOpen(): boolean {
    return this.#channel !== undefined;
  }

  async open(model: ChannelModel): Promise<void> {
    const ch = await openChannel(model);
    ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'producer RPC channel error'));
    ch.on('close', () => {
      if (ch === this.#channel) this.onLost();
    });
    // A request no queue took comes back (it is published mandatory): nobody will answer it.
    ch.on('return', (msg: ConsumeMessage) => {
      const id = msg.properties.correlationId as string | undefined;
      const entry = id === undefined ? undefined : this.#pending.get(id);
      if (entry) this.#fail(id!, unroutableError([entry.call.target]));
      const stream = id === undefined ? undefined : this.#streams.get(id);
      stream?.ref.deref()?.fail(unroutableError([stream.target]));
    });
    // Direct reply-to: replies come back on the channel that published.
    await ch.consume(REPLY_TO, (msg) => msg && this.#onReply(msg), { noAck: true });
    this.#channel = ch;
  }

  /**
   * The channel went away: every call in flight rejects (`CHANNEL_CLOSED`); it is not sent again on the next channel.
   */
  lost(): void {
    this.#failPending('its channel closed before the reply came', 'CHANNEL_CLOSED');
    const ch = this.#channel;
    this.#channel = undefined;
    // When only the other channel died, this one is closed too: open() makes a fresh pair.
    void ch?.close().catch(() => undefined);
  }

  /** Sends a request and resolves with its reply (see the class for how a call ends). */
  call(c: RpcCall): Promise<AnyResult> {
    const ch = this.#channel;
    if (!ch) return Promise.reject(new BrokerError('the RPC channel is not open', 'NOT_CONNECTED'));
    const correlationId = this.#idPrefix + this.#nextId++;
    // Direct reply-to needs no queue: the call starts now, not a promise hop later.
    if (c.replyTo !== 'queue') return this.#start(ch, c, correlationId, undefined);
    return this.#replyQueue(ch, correlationId).then((queue) => this.#start(ch, c, correlationId, queue));
  }

  #start(
    ch: Channel,
    c: RpcCall,
    correlationId: string,
    queue: { name: string; consumerTag: string } | undefined,
  ): Promise<AnyResult> {
    return new Promise<AnyResult>((resolve, reject) => {
      // Every attempt keeps the correlation id (and reply queue), so a late reply to an earlier one still completes the
      // call.
      // Set in place, not copied from an object made for it: one object per call less, and the properties keep the
      // one shape every send's are made in (see sendProperties), which amqplib reads on every publish.
      const props = c.properties;
      props.contentType = this.encoder.contentType;
      props.replyTo = queue?.name ?? REPLY_TO;
      props.correlationId = correlationId;
      props.mandatory = c.mandatory;
      const entry: PendingRpc = { resolve, reject, ch, call: c, props, queue, retries: 0, due: 0 };
      this.#pending.set(correlationId, entry);
      try {
        this.#send(entry);
      } catch (err) {
        // Never on the wire (its channel is closing): the call fails now, and no sweep sends it later.
        this.#pending.delete(correlationId);
        throw err;
      }
      if (entry.due < this.#timerDue) this.#arm(entry.due);
    });
  }

  #send(entry: PendingRpc): void {
    const { ch, call } = entry;
    ch.publish(call.target[0].name, call.target[1], call.content, entry.props);
    // On the wire at the end of this stretch of code, not after whatever else this turn of the event loop runs.
    flushChannelSoon(ch);
    entry.due = performance.now() + call.timeoutMs;
  }

  #arm(due: number): void {
    clearTimeout(this.#timer);
    this.#timerDue = due;
    // Timers fire on the event loop's clock, which can run a little behind: a sweep a hair early finds nothing due and
    // sets the timer again.
    this.#timer = setTimeout(this.#sweep, Math.max(0, due - performance.now()));
    // A call in flight keeps the process alive through its connection; this timer alone never does.
    this.#timer.unref();
  }

  /**
   * Sends again each attempt that is due, or ends its call with a `TimeoutError` after its last; then waits for the
   * next.
   */
  #sweepDue(): void {
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [correlationId, entry] of this.#pending) {
      if (entry.due <= now) {
        const { call } = entry;
        if (entry.retries < call.maxRetry) {
          entry.retries++;
          this.log.debug({ correlationId, attempt: entry.retries }, 'RPC unanswered, sending again');
          try {
            this.#send(entry);
          } catch (err) {
            // Its channel is going (its close fails every call soon anyway): this call fails now, the others are still
            // swept.
            this.#fail(
              correlationId,
              new BrokerError(
                `RPC to ${call.target[0].name}/${call.target[1]} could not be sent again: ${(err as Error).message}`,
                'CHANNEL_CLOSED',
              ),
            );
            continue;
          }
        } else {
          const [exchange, key] = call.target;
          this.#complete(
            correlationId,
            new MessageResultException(
              'TimeoutError',
              `no reply to RPC ${exchange.name}/${key} after ${call.maxRetry + 1} attempts of ` +
                `${call.timeoutMs / 1000} s`,
            ),
          );
          continue;
        }
      }
      if (entry.due < next) next = entry.due;
    }
    if (next < Infinity) this.#arm(next);
  }

  /**
   * Starts an RPC stream: the request goes out (mandatory: no queue, no
   * stream), and the values the server yields come back through the
   * iterator returned (see {@link StreamCall}).
   */
  stream(
    target: EksEntry,
    content: Buffer,
    properties: Options.Publish,
    o: { window: number; idleMs: number },
  ): AsyncIterableIterator<unknown> {
    const ch = this.#channel;
    if (!ch) throw new BrokerError('the RPC channel is not open', 'NOT_CONNECTED');
    const [exchange, key] = target;
    const correlationId = this.#idPrefix + this.#nextId++;
    const call = new StreamCall({
      what: `${exchange.name}/${key}`,
      window: o.window,
      idleMs: o.idleMs,
      send: (to, kind, headers) => {
        try {
          this.#channel?.publish('', to, Buffer.alloc(0), {
            correlationId,
            headers: { [STREAM.kind]: kind, ...headers },
          });
        } catch {
          // The channel is going: the server's idle timeout ends its side.
        }
      },
      decode: (msg) => this.#toResult(msg.content),
      finished: () => {
        this.#streams.delete(correlationId);
      },
    });
    this.#streams.set(correlationId, { ref: new WeakRef(call), target });
    const headers = {
      ...(properties.headers as Record<string, unknown> | undefined),
      [STREAM.window]: o.window,
      [STREAM.idle]: o.idleMs,
    };
    ch.publish(exchange.name, key, content, {
      ...properties,
      headers,
      contentType: this.encoder.contentType,
      replyTo: REPLY_TO,
      correlationId,
      mandatory: true,
    });
    return call;
  }

  /** Sends a request whose replies are collected later (`consumeRpc`); resolves with the reply queue's name. */
  async callQueueOnly(target: EksEntry, content: Buffer, properties: Options.Publish): Promise<string> {
    const ch = this.#channel;
    if (!ch) throw new BrokerError('the RPC channel is not open', 'NOT_CONNECTED');
    const queue = await declareQueue(ch, '', { exclusive: true, autoDelete: true, durable: false });
    ch.publish(target[0].name, target[1], content, {
      ...properties,
      contentType: this.encoder.contentType,
      replyTo: queue,
      correlationId: queue,
    });
    return queue;
  }

  /** A reply queue for one call (exclusive, deleted with its consumer): whatever arrives there is that call's reply. */
  async #replyQueue(ch: Channel, correlationId: string): Promise<{ name: string; consumerTag: string }> {
    const name = await declareQueue(ch, '', { exclusive: true, autoDelete: true, durable: false });
    const { consumerTag } = await ch.consume(name, (msg) => msg && this.#onReply(msg, correlationId), { noAck: true });
    return { name, consumerTag };
  }

  #complete(id: string, result: AnyResult): void {
    this.#release(id)?.resolve(result);
  }

  #fail(id: string, err: BrokerError): void {
    this.#release(id)?.reject(err);
  }

  /** Forgets a pending call once, releasing its reply queue (the sweep finds nothing due for it any more). */
  #release(id: string): PendingRpc | undefined {
    const entry = this.#pending.get(id);
    if (!entry) return undefined;
    this.#pending.delete(id);
    if (entry.queue) void this.#channel?.cancel(entry.queue.consumerTag).catch(() => undefined);
    return entry;
  }

  /**
   * A reply on direct reply-to, or on a call's own queue (`forCall`). A reply
   * without a correlation id (Python Postage sends none) completes the one
   * call in flight, when there is exactly one: it can only be its answer.
   */
  #onReply(msg: ConsumeMessage, forCall?: string): void {
    let id = forCall ?? (msg.properties.correlationId as string | undefined);
    const stream = id === undefined ? undefined : this.#streams.get(id);
    if (stream) {
      stream.ref.deref()?.deliver(msg);
      return;
    }
    if (id === undefined && this.#pending.size === 1) {
      const [only, onlyCall] = this.#pending.entries().next().value as [string, PendingRpc];
      if (!onlyCall.queue) id = only;
    }
    const entry = id === undefined ? undefined : this.#pending.get(id);
    if (id === undefined || !entry) {
      this.log.debug(
        { correlationId: id },
        'reply for no pending RPC (already answered, timed out, or uncorrelated while several calls are in flight)',
      );
      return;
    }
    entry.call.onReply?.((msg.properties.headers ?? {}) as Record<string, unknown>);
    this.#complete(id, this.#toResult(msg.content));
  }

  #toResult(content: Buffer): AnyResult {
    try {
      const m = Message.fromBody(this.encoder.decode(content));
      if (m instanceof MessageResult) return m;
      throw new MalformedMessage(`type "${m.type}" is not a result`);
    } catch (err) {
      const reason = err instanceof MalformedMessage ? err.reason : String(err);
      return new MessageResultError(`Malformed reply (${reason})`);
    }
  }

  #failPending(why: string, code: 'CHANNEL_CLOSED' | 'CLOSED'): void {
    for (const { ref, target } of [...this.#streams.values()]) {
      ref.deref()?.fail(new BrokerError(`RPC stream from ${target[0].name}/${target[1]} lost: ${why}`, code));
    }
    for (const [
      id,
      {
        call: { target },
      },
    ] of [...this.#pending]) {
      this.#fail(
        id,
        new BrokerError(
          `RPC to ${target[0].name}/${target[1]} lost: ${why}. It may or may not have been handled: call again if it ` +
            'is safe to',
          code,
        ),
      );
    }
  }

  /**
   * Collects replies from a reply queue made by `callQueueOnly`: resolves with
   * `resultLen` results, or with those that came before the timeout (a
   * `MessageResultException('TimeoutError', …)` when none did).
   */
  async consume(queue: string, options: ConsumeRpcOptions, defaultTimeoutMs: number): Promise<AnyResult[]> {
    const ch = this.#channel;
    if (!ch) throw new BrokerError('the RPC channel is not open', 'NOT_CONNECTED');
    const resultLen = options.resultLen ?? 1;
    const timeoutMs = options.timeout !== undefined ? options.timeout * 1000 : defaultTimeoutMs;
    const results: AnyResult[] = [];
    let finish!: () => void;
    const done = new Promise<void>((r) => (finish = r));
    const timer = setTimeout(finish, timeoutMs);
    const { consumerTag } = await ch.consume(
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
    await done;
    clearTimeout(timer);
    await ch.cancel(consumerTag).catch(() => undefined);
    if (results.length === 0)
      results.push(new MessageResultException('TimeoutError', `no reply on ${queue} within ${timeoutMs / 1000} s`));
    return results;
  }

  /** Every call in flight rejects with `CLOSED`, every stream is cancelled (its server told); the channel closes. */
  async close(): Promise<void> {
    for (const { ref } of [...this.#streams.values()]) await ref.deref()?.return();
    this.#failPending('the producer was closed', 'CLOSED');
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const ch = this.#channel;
    this.#channel = undefined;
    await ch?.close().catch(() => undefined);
  }
}
