import type { ConsumeMessage } from 'amqplib';
import { DeliveryLimitExceeded, MalformedMessage, ValidationError } from '../../errors.js';
import type { Yielded } from '../../microthreads/thread.js';
import type { SettleContext } from './parts.js';
import type { MessageBody } from '../../envelope/messages.js';
import type { Outcome } from './outcome.js';
import { ended, type Next, type Ran, type RawDelivery } from './state.js';

/** What a log line about a delivery names. */
function about(msg: ConsumeMessage, body: MessageBody<object> | undefined) {
  return {
    messageType: body?.type,
    messageName: body?.name,
    messageId: msg.properties.messageId,
    deliveryTag: msg.fields.deliveryTag,
  };
}

function what(body: MessageBody<object> | undefined): string {
  return `${body?.type}/${body?.name}`;
}

/** An RPC's reply (or a message's answer), once its request is settled. */
function sendReply(ctx: SettleContext, msg: ConsumeMessage, outcome: Outcome): void {
  if (outcome.reply) ctx.replier.sendReply(msg, outcome.reply.content, outcome.reply.headers);
}

/** Stage: the rest decides the delivery's {@link Outcome}; this carries it out. */
export function settleStage(d: RawDelivery, next: Next<RawDelivery>): Ran {
  // Whether what is left (and the scope's release with it) went to a generator.
  let handedOn = false;
  try {
    const ran = next(d);
    if (!ended(ran)) {
      handedOn = true;
      return settleAfter(d, ran);
    }
    d.outcome = ran;
    const waiting = settle(d.parts.settle, d.msg, d.body, ran);
    if (!waiting) return ran;
    handedOn = true;
    return settleWaiting(d, waiting, ran);
  } finally {
    // Settled (or left): the run's scope stops listening to the processor's close.
    if (!handedOn) d.scope?.release();
  }
}

function* settleAfter(d: RawDelivery, ran: Generator<Yielded, Outcome, unknown>): Generator<Yielded, Outcome, unknown> {
  try {
    const outcome = (d.outcome = yield* ran);
    const waiting = settle(d.parts.settle, d.msg, d.body, outcome);
    if (waiting) yield* waiting;
    return outcome;
  } finally {
    d.scope?.release();
  }
}

function* settleWaiting(
  d: RawDelivery,
  waiting: Generator<Yielded, void, unknown>,
  outcome: Outcome,
): Generator<Yielded, Outcome, unknown> {
  try {
    yield* waiting;
    return outcome;
  } finally {
    d.scope?.release();
  }
}

/**
 * Carries out an {@link Outcome}: settles the delivery, logs why, then sends
 * the RPC reply (after the settle, so that a reply the broker refuses by
 * closing the connection cannot bring its request back). Most outcomes are
 * carried out at once; one that must wait for the broker first (a defer, a
 * dead-letter, an exit or a restart) is returned as a generator to run. An
 * exit is thrown on once the broker confirmed the ack.
 */
export function settle(
  ctx: SettleContext,
  msg: ConsumeMessage,
  body: MessageBody<object> | undefined,
  outcome: Outcome,
): Generator<Yielded, void, unknown> | undefined {
  switch (outcome.kind) {
    case 'ack':
      ack(ctx, msg);
      break;
    case 'leave':
    case 'done':
      return undefined;
    case 'requeue':
      // Not forgotten by the delivery count: a message requeued forever still meets maxDeliveries.
      ctx.log.info(
        { ...about(msg, body), reason: outcome.reason },
        `handler for ${what(body)} requeued the message: ${outcome.reason}`,
      );
      ctx.settler.reject(msg, true);
      return undefined;
    case 'reject': {
      const err = outcome.err;
      if (outcome.unreadable) sayUnreadable(ctx, msg, outcome.unreadable, undefined);
      else if (outcome.why === 'malformed') {
        const reason = err instanceof MalformedMessage ? err.reason : String(err);
        ctx.log.warn({ ...about(msg, body), routingKey: msg.fields.routingKey, reason }, 'malformed message rejected');
      } else if (outcome.why === 'rejected') {
        ctx.log.warn(
          { ...about(msg, body), reason: (err as Error).message },
          `handler for ${what(body)} rejected the message: ${(err as Error).message}`,
        );
      } else if (outcome.why === 'limit') {
        ctx.log.error(
          { ...about(msg, body), correlationId: msg.properties.correlationId },
          `${what(body)} ${(err as Error).message}; rejected`,
        );
      } else {
        if (err instanceof ValidationError) invalid(ctx, msg, body, err, 'rejected');
        else ctx.log.error({ ...about(msg, body), err }, `handler for ${what(body)} failed; message rejected`);
      }
      reject(ctx, msg);
      break;
    }
    default:
      return settleAfterBroker(ctx, msg, body, outcome);
  }
  sendReply(ctx, msg, outcome);
  return undefined;
}

/** The outcomes that wait for the broker before the delivery is settled. */
function* settleAfterBroker(
  ctx: SettleContext,
  msg: ConsumeMessage,
  body: MessageBody<object> | undefined,
  outcome: Extract<Outcome, { kind: 'defer' | 'deadLetter' | 'exit' | 'restart' }>,
): Generator<Yielded, void, unknown> {
  switch (outcome.kind) {
    case 'defer': {
      const { ms, reason, headers, err } = outcome;
      try {
        yield ctx.copies.delay(msg, ms, headers);
      } catch (delayErr) {
        // No copy is held by the broker: the original must not be acked. Back to its queue, now.
        ctx.log.warn(
          { ...about(msg, body), err: delayErr },
          `could not send ${what(body)} back to its queue in ${ms} ms; it goes back now`,
        );
        ctx.settler.reject(msg, true);
        return;
      }
      if (outcome.quiet) ctx.log.debug({ ...about(msg, body), reason }, `${what(body)} ${reason}`);
      else if (err !== undefined)
        ctx.log.warn(
          { ...about(msg, body), err, retryInMs: ms },
          `handler for ${what(body)} failed; ${reason} in ${ms} ms, held by the broker`,
        );
      else
        ctx.log.info(
          { ...about(msg, body), reason, deferMs: ms },
          `handler for ${what(body)} deferred the message for ${ms} ms: ${reason}`,
        );
      ack(ctx, msg);
      return;
    }
    case 'deadLetter': {
      const { exchange, err, attempts } = outcome;
      const limit = err instanceof DeliveryLimitExceeded;
      try {
        yield ctx.copies.deadLetter(msg, exchange, err, attempts);
      } catch (dlErr) {
        if (limit) {
          // Back to its queue would only bring it here again: rejected (dead-lettered where its queue has a dead-letter
          // exchange).
          ctx.log.warn(
            { ...about(msg, body), err: dlErr },
            `could not publish the message to ${exchange}; rejecting it instead`,
          );
          ctx.log.error(about(msg, body), `${what(body)} ${(err as Error).message}; rejected`);
          reject(ctx, msg);
          sendReply(ctx, msg, outcome);
          return;
        }
        // The copy did not reach the error exchange (a lost connection, a refusal): the original must not be
        // acked. Back to its queue (on a lost channel the broker does that by itself) for another try.
        ctx.log.warn(
          { ...about(msg, body), err: dlErr },
          `could not publish the failed message to ${exchange}; it goes back to its queue`,
        );
        ctx.settler.reject(msg, true);
        return;
      }
      if (outcome.unreadable) sayUnreadable(ctx, msg, outcome.unreadable, exchange);
      else if (limit)
        ctx.log.error(
          { ...about(msg, body), correlationId: msg.properties.correlationId },
          `${what(body)} ${(err as Error).message}; sent to ${exchange}`,
        );
      else if (err instanceof ValidationError) invalid(ctx, msg, body, err, `sent to ${exchange}`);
      else
        ctx.log.error(
          { ...about(msg, body), err, attempts },
          `handler for ${what(body)} failed; message sent to ${exchange}`,
        );
      ack(ctx, msg);
      sendReply(ctx, msg, outcome);
      return;
    }
    case 'exit':
    case 'restart':
      ack(ctx, msg);
      sendReply(ctx, msg, outcome);
      // The process may exit (or restart) the moment this returns: have the broker's word for the ack first,
      // or the quit is redelivered and stops the next instance of the component too.
      yield ctx.settler.settled();
      if (outcome.kind === 'exit') throw outcome.signal;
      ctx.restart();
      return;
  }
}

/** Per processor (its settle context), each cause of unreadable messages: when it was last said, and since then. */
const unreadableSaid = new WeakMap<SettleContext, Map<string, { until: number; more: number; bytes: number }>>();
/** How long one cause of unreadable messages is said once (with a count after). */
const UNREADABLE_QUIET_MS = 60_000;

/**
 * An unreadable message, logged with its message id, size and reason: where it went (the error exchange, at warn),
 * or (at error) that it was rejected, gone unless its queue has a dead-letter exchange. Once per cause and minute: a
 * flood of one cause is one line, then one with how many more came in that minute.
 */
function sayUnreadable(
  ctx: SettleContext,
  msg: ConsumeMessage,
  u: { cause: string; reason: string },
  sentTo: string | undefined,
): void {
  let causes = unreadableSaid.get(ctx);
  if (!causes) unreadableSaid.set(ctx, (causes = new Map()));
  const key = `${sentTo ?? ''}|${u.cause}`;
  const said = causes.get(key);
  const now = Date.now();
  if (said && now < said.until) {
    said.more++;
    said.bytes += msg.content.length;
    return;
  }
  const then = sentTo
    ? `sent to ${sentTo}: postage errors replay sends it back once its cause is mended`
    : 'rejected: without an error exchange it is gone, unless its queue has a dead-letter exchange';
  const fields = {
    messageId: msg.properties.messageId,
    deliveryTag: msg.fields.deliveryTag,
    exchange: msg.fields.exchange,
    routingKey: msg.fields.routingKey,
    size: msg.content.length,
    cause: u.cause,
    reason: u.reason,
  };
  const line = `malformed message ${sentTo ? `sent to ${sentTo}` : 'rejected'} (${u.cause}): ${u.reason}; ${then}`;
  if (sentTo) ctx.log.warn(fields, line);
  else ctx.log.error(fields, line);
  const entry = { until: now + UNREADABLE_QUIET_MS, more: 0, bytes: 0 };
  causes.set(key, entry);
  // The count of the quiet minute is said when it ends, not only when the next one comes (it may never come).
  setTimeout(() => {
    if (causes.get(key) !== entry || entry.more === 0) return;
    const summary = { cause: u.cause, count: entry.more, bytes: entry.bytes, perMs: UNREADABLE_QUIET_MS };
    const more = `${entry.more} more malformed messages (${u.cause}) ${sentTo ? `sent to ${sentTo}` : 'rejected'}`;
    if (sentTo) ctx.log.warn(summary, `${more} in the last minute`);
    else ctx.log.error(summary, `${more} in the last minute, gone`);
  }, UNREADABLE_QUIET_MS).unref();
}

/**
 * A content its schema refused is the sender's mistake, not this component's
 * failure: a warning with the issues, and no stack (which would name only
 * postage-ts's own files).
 */
function invalid(
  ctx: SettleContext,
  msg: ConsumeMessage,
  body: MessageBody<object> | undefined,
  err: ValidationError,
  then: string,
): void {
  const issues = err.issues.map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message));
  ctx.log.warn(
    { ...about(msg, body), issues: err.issues },
    `${what(body)} does not match its handler's schema (${issues.join('; ')}); message ${then}`,
  );
}

/**
 * Acks, and forgets the delivery count of a message that will not come back (a stream acks its request this way too).
 */
export function ack(ctx: SettleContext, msg: ConsumeMessage): void {
  if (ctx.settler.ack(msg)) ctx.deliveries.forget(msg);
}

/** Rejects without requeue (dead-lettered where the queue has a dead-letter exchange). */
function reject(ctx: SettleContext, msg: ConsumeMessage): void {
  if (ctx.settler.reject(msg, false)) ctx.deliveries.forget(msg);
}
