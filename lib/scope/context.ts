import { AsyncLocalStorage } from 'node:async_hooks';
import type { ConsumeMessage } from 'amqplib';
import { context as otelContext, type Context } from '@opentelemetry/api';
import type { Yielded } from '../microthreads/thread.js';
import type { StoreClient } from './store-client.js';
import { relay } from '../microthreads/relay.js';

/** The headers postage-ts reads and writes to follow a conversation across components. */
export const HEADERS = Object.freeze({
  /**
   * The id of the first message of the conversation: carried unchanged by every message sent while handling one of it.
   */
  conversationId: 'postage-conversation-id',
  /** The id of the message whose handling sent this one. */
  causationId: 'postage-causation-id',
});

/** The delivery a handler is handling, as a non-postage consumer would read its AMQP properties. */
export interface DeliveryInfo {
  readonly exchange: string;
  readonly routingKey: string;
  readonly redelivered: boolean;
  /**
   * Deliveries of this message so far, this one included, where the queue counts them (a quorum queue's
   * `x-delivery-count`).
   */
  readonly deliveryCount: number | undefined;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly replyTo: string | undefined;
  readonly type: string | undefined;
  readonly timestamp: Date | undefined;
  readonly priority: number | undefined;
  readonly expiration: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  /** The conversation it belongs to (its own message id when it started one). */
  readonly conversationId: string | undefined;
  /** The message whose handling sent it, when one did. */
  readonly causationId: string | undefined;
  /**
   * Aborted when this run of the handler passes its time limit, fails (and
   * will be retried or given up), or the processor closes: hand it to
   * `fetch`, a database client, a `setTimeout` from `node:timers/promises`.
   */
  readonly signal: AbortSignal;
  /**
   * With a processor's `store`: the run's database transaction, pg's
   * `query(text, values)`; the handler's own writes go through it, so they
   * commit (with the inbox row and the outbox's sends) or roll back together.
   * Undefined without a store, and outside a run.
   */
  readonly db: StoreClient | undefined;
}

/**
 * One run of one delivery: everything done on its behalf (idempotency,
 * schema, middleware, its handlers, their sends and reply) happens inside it.
 * A retry is a new run, so a new scope: what the failed run still does later
 * cannot reach the next one. Internal to postage-ts (not exported from the
 * package), but named in its declaration files.
 */
export class DeliveryScope {
  #info: DeliveryInfo | undefined;
  /**
   * Whether sends are held until the handlers succeed (the outbox); false once taken, or where sends go out at once.
   */
  #holding: boolean;
  /** The held sends, made at the first one: most deliveries send nothing. */
  #held: Array<() => Promise<void>> | undefined;
  /** Why the run ended without success (its failure, its time limit), once it has. */
  #ended: unknown = undefined;
  #failed = false;
  /** Made when somebody asks for the signal: most handlers never do. */
  #controller: AbortController | undefined;
  #onClosing: (() => void) | undefined;
  /** With a processor's `store`: the run's transaction client, and the store it belongs to. */
  db: StoreClient | undefined = undefined;
  dbOwner: object | undefined = undefined;
  constructor(
    readonly msg: ConsumeMessage,
    /** The handler's trace context (its span's), when spans are recorded. */
    readonly trace: Context | undefined,
    /** Whether the processor holds its handlers' sends (its outbox). */
    readonly holdsSends = false,
    /** The processor's: aborted when it closes. */
    readonly closing?: AbortSignal,
  ) {
    this.#holding = holdsSends;
  }

  /** The next run of the same delivery (a retry): its own sends, its own signal. */
  rerun(): DeliveryScope {
    return new DeliveryScope(this.msg, this.trace, this.holdsSends, this.closing);
  }

  /** Whether sends made now are held until the handlers succeed. */
  get holding(): boolean {
    return this.#holding;
  }

  /** Whether this run failed or passed its time limit: what it sends from now on is refused. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Why the run failed (its error, or the HandlerTimeout of its time limit). */
  get failure(): unknown {
    return this.#ended;
  }

  /** Aborted when the run passes its time limit, fails, or the processor closes. */
  get signal(): AbortSignal {
    let c = this.#controller;
    if (!c) {
      c = this.#controller = new AbortController();
      const closing = this.closing;
      if (this.#failed) c.abort(this.#ended);
      else if (closing?.aborted) c.abort(closing.reason);
      else if (closing) {
        const ctl = c;
        this.#onClosing = () => ctl.abort(closing.reason);
        closing.addEventListener('abort', this.#onClosing, { once: true });
      }
    }
    return c.signal;
  }

  /**
   * The run has failed (or timed out): its held sends are dropped, its later
   * sends refused, its signal aborted. The first reason stays.
   */
  fail(reason: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#ended = reason;
    if (this.#held) this.#held.length = 0;
    this.#holding = false;
    this.#controller?.abort(reason);
    this.release();
  }

  /** The delivery is settled: the scope stops listening to its processor's close. */
  release(): void {
    if (this.#onClosing) {
      this.closing?.removeEventListener('abort', this.#onClosing);
      this.#onClosing = undefined;
    }
  }

  /** Holds a send (already validated and encoded) until the handlers succeed; resolves at once. */
  hold(send: () => Promise<void>): Promise<void> {
    (this.#held ??= []).push(send);
    return Promise.resolve();
  }

  /**
   * The held sends, to publish; from now on sends go out at once (work the handler left running after it succeeded).
   */
  takeHeld(): ReadonlyArray<() => Promise<void>> {
    const held = this.#held ?? NO_SENDS;
    this.#holding = false;
    this.#held = undefined;
    return held;
  }

  get info(): DeliveryInfo {
    return (this.#info ??= deliveryInfo(this.msg, this));
  }

  get messageId(): string | undefined {
    return text(this.msg.properties.messageId);
  }

  get conversationId(): string | undefined {
    return (
      text((this.msg.properties.headers as Record<string, unknown> | undefined)?.[HEADERS.conversationId]) ??
      this.messageId
    );
  }

  get headers(): Readonly<Record<string, unknown>> | undefined {
    return this.msg.properties.headers as Record<string, unknown> | undefined;
  }
}

const NO_SENDS: ReadonlyArray<() => Promise<void>> = Object.freeze([]);

/** A count a header carries (retries, defers, deliveries): a whole number above 0, else 0. @internal */
export function countIn(headers: Record<string, unknown> | undefined, name: string): number {
  const n = Number(headers?.[name]);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * The scope of the handler running now. Handlers run in synchronous stretches
 * driven by the scheduler (a plain call, each resume of a generator), so a
 * variable set around each stretch is enough, and costs nothing. A handler's
 * continuations after an `await` need AsyncLocalStorage, which on Node 20
 * slows every promise in the process once used: it is made on the first
 * handler that may return a promise (any but a generator), and run for those.
 */
let current: DeliveryScope | undefined;
let store: AsyncLocalStorage<DeliveryScope> | undefined;

/** The signal of a delivery read outside a run (an `orderBy` key): never aborted. */
const NEVER = new AbortController().signal;

/** What a delivery's AMQP properties say (with its run's signal, when it is read inside one). @internal */
export function deliveryInfo(msg: ConsumeMessage, scope?: DeliveryScope): DeliveryInfo {
  const p = msg.properties;
  const headers = (p.headers ?? {}) as Record<string, unknown>;
  const count = Number(headers['x-delivery-count']);
  const ts = typeof p.timestamp === 'number' ? new Date(p.timestamp * 1000) : undefined;
  return Object.freeze({
    exchange: msg.fields.exchange,
    routingKey: msg.fields.routingKey,
    redelivered: msg.fields.redelivered,
    deliveryCount: Number.isInteger(count) && count >= 0 ? count + 1 : undefined,
    messageId: text(p.messageId),
    correlationId: text(p.correlationId),
    replyTo: text(p.replyTo),
    type: text(p.type),
    timestamp: ts,
    priority: typeof p.priority === 'number' ? p.priority : undefined,
    expiration: p.expiration === undefined || p.expiration === null ? undefined : String(p.expiration),
    headers: Object.freeze({ ...headers }),
    conversationId: text(headers[HEADERS.conversationId]) ?? text(p.messageId),
    causationId: text(headers[HEADERS.causationId]),
    get signal(): AbortSignal {
      return scope ? scope.signal : NEVER;
    },
    get db(): StoreClient | undefined {
      return scope?.db;
    },
  });
}

/**
 * The delivery the calling handler is handling, or undefined outside one.
 * Right in every handler kind (plain, async, generator, `Handler` classes,
 * RPC handlers), across `await` and `yield`, and when several deliveries are
 * handled at once: each handler sees its own.
 *
 * @example
 * @MessageHandler('command', 'resize')
 * resize(content) { const d = currentDelivery(); log.info({ id: d?.messageId, tries: d?.deliveryCount }); }
 */
export function currentDelivery(): DeliveryInfo | undefined {
  return currentScope()?.info;
}

/** The scope of the delivery being handled, for sends made from it. @internal */
export function currentScope(): DeliveryScope | undefined {
  return current ?? store?.getStore();
}

/**
 * Runs `fn` as part of handling a delivery (and inside its trace context).
 * `async`: `fn` starts an async handler, whose continuations keep the scope.
 * @internal
 */
export function runIn<T>(scope: DeliveryScope, fn: () => T, async = false): T {
  const ctx = scope.trace;
  const inTrace = ctx === undefined ? fn : () => otelContext.with(ctx, fn);
  const prev = current;
  current = scope;
  try {
    return async ? (store ??= new AsyncLocalStorage()).run(scope, inTrace) : inTrace();
  } finally {
    current = prev;
  }
}

/**
 * Drives a generator handler, resuming it each time inside its delivery's
 * scope: the scheduler resumes threads from its own loop, where no
 * AsyncLocalStorage context of the handler's survives. Its time limit is its
 * run's (see `time-limit.ts`), which closes it from outside.
 * @internal
 */
export function driveIn(
  scope: DeliveryScope,
  gen: Generator<Yielded, unknown, unknown>,
): Generator<Yielded, unknown, unknown> {
  return relay(gen, (step) => runIn(scope, step));
}
