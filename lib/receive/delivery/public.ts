/**
 * The delivery path's types that users meet: kept apart from its internals, so that the declaration files a user
 * compiles against name nothing internal.
 */
import type { MessageBody } from '../../envelope/messages.js';
import type { DeliveryInfo } from '../../scope/context.js';

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
