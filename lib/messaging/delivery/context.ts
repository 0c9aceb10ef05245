import { AsyncLocalStorage } from 'node:async_hooks';
import type { ConsumeMessage } from 'amqplib';
import { context as otelContext, type Context } from '@opentelemetry/api';
import type { Yielded } from '../../microthreads/thread.js';

/** The headers postage-ts reads and writes to follow a conversation across components. */
export const HEADERS = Object.freeze({
  /** The id of the first message of the conversation: carried unchanged by every message sent while handling one of it. */
  conversationId: 'postage-conversation-id',
  /** The id of the message whose handling sent this one. */
  causationId: 'postage-causation-id',
});

/** The delivery a handler is handling, as a non-postage consumer would read its AMQP properties. */
export interface DeliveryInfo {
  readonly exchange: string;
  readonly routingKey: string;
  readonly redelivered: boolean;
  /** Deliveries of this message so far, this one included, where the queue counts them (a quorum queue's `x-delivery-count`). */
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
}

/**
 * One delivery in a handler: what it is (read from its properties only when
 * asked), and the trace context its handler runs in. Internal to postage-ts
 * (not exported from the package), but named in its declaration files.
 */
export class DeliveryScope {
  #info: DeliveryInfo | undefined;
  /** Whether sends are held until the handlers succeed (the outbox); false once taken, or where sends go out at once. */
  #holding: boolean;
  /** The held sends, made at the first one: most deliveries send nothing. */
  #held: Array<() => Promise<void>> | undefined;
  constructor(
    readonly msg: ConsumeMessage,
    /** The handler's trace context (its span's), when spans are recorded. */
    readonly trace: Context | undefined,
    holdSends = false,
  ) {
    this.#holding = holdSends;
  }

  /** Whether sends made now are held until the handlers succeed. */
  get holding(): boolean {
    return this.#holding;
  }

  /** Holds a send (already validated and encoded) until the handlers succeed; resolves at once. */
  hold(send: () => Promise<void>): Promise<void> {
    (this.#held ??= []).push(send);
    return Promise.resolve();
  }

  /** Drops what a failed run sent: a retry sends its own. */
  discardHeld(): void {
    if (this.#held) this.#held.length = 0;
  }

  /** The held sends, to publish or to drop; from now on sends go out at once. */
  takeHeld(): ReadonlyArray<() => Promise<void>> {
    const held = this.#held ?? NO_SENDS;
    this.#holding = false;
    this.#held = undefined;
    return held;
  }

  get info(): DeliveryInfo {
    return (this.#info ??= deliveryInfo(this.msg));
  }

  get messageId(): string | undefined {
    return text(this.msg.properties.messageId);
  }

  get conversationId(): string | undefined {
    return text((this.msg.properties.headers as Record<string, unknown> | undefined)?.[HEADERS.conversationId]) ?? this.messageId;
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
 * variable set around each stretch is enough, and costs nothing. Only an async
 * handler's continuations after an `await` need AsyncLocalStorage, which on
 * Node 20 slows every promise in the process once used: it is made, and run,
 * only for async handlers.
 */
let current: DeliveryScope | undefined;
let store: AsyncLocalStorage<DeliveryScope> | undefined;

/** What a delivery's AMQP properties say. @internal */
export function deliveryInfo(msg: ConsumeMessage): DeliveryInfo {
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

/** Whether a function is an `async` one (its continuations need AsyncLocalStorage to keep their delivery). @internal */
export function isAsyncFunction(fn: unknown): boolean {
  return typeof fn === 'function' && fn.constructor?.name === 'AsyncFunction';
}

/**
 * Drives a generator handler, resuming it each time inside its delivery's
 * scope: the scheduler resumes threads from its own loop, where no
 * AsyncLocalStorage context of the handler's survives.
 * @internal
 */
export function* driveIn(scope: DeliveryScope, gen: Generator<Yielded, unknown, unknown>, deadline?: Deadline): Generator<Yielded, unknown, unknown> {
  let input: unknown;
  let error: unknown;
  let failed = false;
  let done = false;
  try {
    for (;;) {
      // Past its time limit, the generator is not resumed: it is closed (its finally blocks run) and the limit is the error.
      if (deadline && Date.now() >= deadline.endAt) throw deadline.error();
      const r = runIn(scope, () => (failed ? gen.throw(error) : gen.next(input)));
      failed = false;
      if (r.done) {
        done = true;
        return r.value;
      }
      const v = r.value;
      try {
        input = yield deadline && isThenable(v) ? withDeadline(v, deadline) : v;
      } catch (err) {
        if (deadline && err === deadline.expired) throw err;
        error = err;
        failed = true;
      }
    }
  } finally {
    // Stopped from outside (a scheduler stopping): the handler's own finally blocks run, in its scope.
    if (!done) runIn(scope, () => gen.return(undefined));
  }
}

/** A handler's time limit: when it ends, and the error its expiry is. @internal */
export class Deadline {
  readonly endAt: number;
  expired: Error | undefined;
  constructor(
    ms: number,
    private readonly make: () => Error,
  ) {
    this.endAt = Date.now() + ms;
  }
  error(): Error {
    return (this.expired ??= this.make());
  }
}

/** @internal */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}

/** `p`, or the deadline's error once it passes (the promise itself cannot be stopped: its result is ignored). @internal */
export function withDeadline<T>(p: PromiseLike<T>, deadline: Deadline): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(deadline.error()), Math.max(0, deadline.endAt - Date.now()));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
