import type { ConsumeMessage } from 'amqplib';
import type { Logger } from '../../log.js';
import type { GenericConsumer } from '../consumer.js';
import type { FingerprintDict } from '../fingerprint.js';
import type { IdempotencyStore } from '../idempotency.js';
import type { MessageBody } from '../messages.js';
import type { DeliveryInfo } from './context.js';
import type { DeliveryEvent } from './observe.js';
import type { Registry } from './registry.js';
import type { SettleContext } from './settle.js';

/** How a failing message's handlers run again. */
export interface RetryOptions {
  /** Handler runs in all, the first included. @default 3 */
  attempts?: number;
  /** Wait before the second run; doubled each time. @default 100 */
  backoffMs?: number;
  /** The longest wait between runs. @default 5000 */
  maxBackoffMs?: number;
  /**
   * Retries through the broker after the immediate runs have all failed:
   * the message goes back to its queue after each of these delays (ms) in
   * turn, held by the broker, so a component restarted meanwhile still makes
   * the next one; each comes with `attempts` runs again. After the last, the
   * error exchange (or a reject), with the runs in all (`x-attempts`) and the
   * last error. @default [] (none)
   */
  delays?: readonly number[];
}

/** Headers a delayed retry or a defer carries, read when the copy comes back. */
export const RETRY_HEADERS = Object.freeze({
  /** Delayed retries made so far. */
  retries: 'postage-retries',
  /** Handler runs before this delivery, over every retry. */
  attempts: 'postage-attempts',
  /** The error of the last run, `Name: message`. */
  lastError: 'postage-last-error',
  /** Defers (`DeferMessage`) so far. */
  deferrals: 'postage-deferrals',
});

/** What a processor's middleware is given: the delivery (as `currentDelivery()`) and its decoded envelope. */
export interface MiddlewareContext {
  readonly delivery: DeliveryInfo;
  readonly message: MessageBody<object>;
}

/**
 * A processor middleware (`processor.use`), Koa's convention: runs around
 * the handlers of every delivery, inside its scope, time limit and outbox;
 * `await next()` runs the rest once. Throwing fails the delivery as a failing
 * handler does (retries, then the error exchange or a reject).
 */
export type ProcessorMiddleware = (ctx: MiddlewareContext, next: () => Promise<void>) => unknown;

/** What serving an RPC stream needs of the consumer (the processor gives its consumer's). */
export interface StreamServer {
  /** The channel answers to stream control (its direct reply-to is consumed). */
  control(): Promise<void>;
  send(msg: ConsumeMessage, content: Buffer, headers: Record<string, unknown>): boolean;
  watch(correlationId: string, listener: (headers: Record<string, unknown> | undefined) => void): () => void;
  /** Acks the request now: a stream is not redelivered. */
  ack(msg: ConsumeMessage): void;
}

/** What dispatching needs of the processor that drives it. */
export interface DispatchContext {
  /** `this` for handlers, and the `processor` of `Handler` classes. */
  readonly owner: object;
  readonly fingerprint: FingerprintDict;
  readonly log: Logger;
  readonly retry: RetryOptions | undefined;
  readonly errorExchange: string | undefined;
  /** Aborted when the processor closes: a wait between retries ends, the delivery is left unsettled. */
  readonly closing: AbortSignal;
  /** Encodes an RPC result; throws when it cannot be encoded. */
  encodeReply(result: unknown): Buffer;
  /** How long a run may take, unless its handler's decorator says otherwise. */
  readonly handlerTimeoutMs: number;
  /** How long a stream may wait for credit from its caller before it is cancelled. */
  readonly streamStallMs: number;
  /** What serving an RPC stream needs of the consumer. */
  readonly streams: StreamServer;
}

/** What a processor gives its pipeline, once. */
export interface PipelineParts {
  readonly consumer: GenericConsumer;
  readonly registry: Registry;
  readonly dispatch: DispatchContext;
  readonly settle: SettleContext;
  readonly log: Logger;
  /** The component's name, for spans and deduplication keys. */
  readonly component: string;
  readonly maxDeliveries: number;
  /** `redeliveryCount: 'header'`. */
  readonly countInHeader: boolean;
  readonly outbox: boolean;
  readonly dedupe: IdempotencyStore | undefined;
  readonly orderBy: ((content: unknown, delivery: DeliveryInfo) => unknown) | undefined;
  /** `processor.use()`, in the order added. */
  readonly middleware: ProcessorMiddleware[];
  readonly observers: Set<(event: DeliveryEvent) => void>;
}
