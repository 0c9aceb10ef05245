import type { ConsumeMessage } from 'amqplib';
import { backoffMs } from '../../backoff.js';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { AckAndRestart, DeferMessage, DeliveryLimitExceeded, ExitScheduler, HandlerTimeout, RejectMessage, RequeueMessage, ValidationError, type ValidationIssue } from '../../errors.js';
import type { Logger } from '../../log.js';
import { sleep } from '../../microthreads/effects.js';
import type { Yielded } from '../../microthreads/thread.js';
import type { FingerprintDict } from '../fingerprint.js';
import { applyFilters, SKIP, type Handler } from '../handlers.js';
import { Message, MessageResult, MessageResultError, MessageResultException, type MessageBody } from '../messages.js';
import { injectContext, passTraceOn } from '../../telemetry/tracing.js';
import { countIn, Deadline, driveIn, HEADERS, isThenable, runIn, withDeadline, type DeliveryScope } from './context.js';
import type { Outcome, Reply } from './outcome.js';
import { rpcHandler, type Registered } from './registry.js';
import { dispatchStream, type StreamServer } from './stream.js';

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
  /** How long a handler may run, unless its decorator says otherwise. */
  readonly handlerTimeoutMs: number;
  /** What serving an RPC stream needs of the consumer. */
  readonly streams: StreamServer;
}

const noReply = (): void => undefined;

/** A Standard Schema issue as postage-ts reports it: a message and a path of strings. */
function issueOf(issue: StandardSchemaV1.Issue): ValidationIssue {
  const path = (issue.path ?? []).map((seg) => String(typeof seg === 'object' && seg !== null ? seg.key : seg));
  return { message: issue.message, path };
}

function isGenerator(v: unknown): v is Generator<Yielded, unknown, unknown> {
  return typeof v === 'object' && v !== null && typeof (v as Generator).next === 'function' && typeof (v as Generator).throw === 'function';
}

/**
 * Runs one handler (its filters first) inside its delivery's scope, so that
 * `currentDelivery()` and the trace context are right in it, across `await`
 * and `yield`. `last`: no handler runs after it, so it may have the decoded
 * body itself instead of a copy.
 */
function* invoke(ctx: DispatchContext, scope: DeliveryScope, h: Registered, body: MessageBody<object>, reply: (r: unknown) => void, last: boolean): Generator<Yielded, { ran: boolean; value: unknown }, unknown> {
  // Each handler (and its filters) gets its own copy, so one cannot change what the next sees;
  // the body was freshly decoded for this delivery, so the last handler can take it without copying.
  // Most handlers have no schema: no generator for them.
  let given: unknown = h.tag.pass === 'body' ? body : body.content;
  if (h.tag.schema) {
    const checked = yield* contentFor(h, body);
    given = checked.value;
    if (checked.fresh) last = true;
  }
  let r = runIn(
    scope,
    () => {
      const arg = applyFilters(h.fn, last ? given : structuredClone(given));
      if (arg === SKIP) return SKIP;
      if (h.isClass) {
        const Cls = h.fn as unknown as new (p: unknown, d: unknown, reply: (r: unknown) => void) => Handler;
        return new Cls(ctx.owner, arg, reply).call();
      }
      return h.fn.call(ctx.owner, arg, reply);
    },
    h.isAsync,
  );
  if (r === SKIP) return { ran: false, value: undefined };
  if (isGenerator(r) || isThenable(r)) {
    // A handler whose promise never settles must not wedge its component: past its time limit, it has failed.
    const ms = h.tag.timeoutMs ?? ctx.handlerTimeoutMs;
    const deadline = new Deadline(ms, () => new HandlerTimeout(`${body.type}/${body.name}`, ms));
    if (isGenerator(r)) r = yield* driveIn(scope, r, deadline);
    else r = yield withDeadline(r, deadline);
  }
  return { ran: true, value: r };
}

/**
 * What a handler is given: the content (or the whole body), passed through
 * its schema when it has one; `fresh` when the schema made a new value.
 * @internal
 */
export function* contentFor(h: Registered, body: MessageBody<object>): Generator<Yielded, { value: unknown; fresh: boolean }, unknown> {
  const given: unknown = h.tag.pass === 'body' ? body : body.content;
  if (!h.tag.schema) return { value: given, fresh: false };
  // The handler gets what its schema returns (a transform's output), or never runs.
  let checked = h.tag.schema['~standard'].validate(given);
  if (isThenable(checked)) checked = (yield checked) as Awaited<typeof checked>;
  if (checked.issues) throw new ValidationError(`${body.type}/${body.name}`, checked.issues.map(issueOf));
  return { value: checked.value, fresh: checked.value !== given };
}

/** A message (not an RPC): every handler runs, in order, with retries; the outcome follows from how the last run ended. */
export function* dispatchMessage(ctx: DispatchContext, scope: DeliveryScope, msg: ConsumeMessage, body: MessageBody<object>, handlers: Registered[]): Generator<Yielded, Outcome, unknown> {
  const attempts = ctx.retry?.attempts ?? 1;
  // A plain message that carries reply_to can be answered too (PikaBus's bus.Reply): the first answer of a successful run goes out after the ack.
  let content: Buffer | undefined;
  const reply = msg.properties.replyTo
    ? (r: unknown) => {
        if (content) return;
        const m = r instanceof Message ? r : new MessageResult(r);
        content = ctx.encodeReply(m.setFingerprint(ctx.fingerprint));
      }
    : noReply;
  for (let attempt = 1; ; attempt++) {
    try {
      content = undefined;
      // A failed run's sends are dropped: this run sends its own.
      scope.discardHeld();
      // With retries, every run needs the body untouched: no handler may take the original.
      for (let i = 0; i < handlers.length; i++) yield* invoke(ctx, scope, handlers[i], body, reply, attempts === 1 && i === handlers.length - 1);
      return content ? { kind: 'ack', reply: replyOf(scope, content) } : { kind: 'ack' };
    } catch (err) {
      if (err instanceof ExitScheduler) return { kind: 'exit', signal: err };
      if (err instanceof AckAndRestart) return { kind: 'restart', signal: err };
      if (err instanceof RequeueMessage) return { kind: 'requeue', reason: err.message };
      if (err instanceof DeferMessage) return deferred(msg, err);
      const permanent = err instanceof RejectMessage || err instanceof ValidationError;
      if (!permanent && attempt < attempts) {
        const wait = backoffMs(attempt - 1, ctx.retry?.backoffMs ?? 100, ctx.retry?.maxBackoffMs ?? 5000);
        ctx.log.warn({ err, messageType: body.type, messageName: body.name, messageId: msg.properties.messageId, attempt, nextInMs: wait }, `handler for ${body.type}/${body.name} failed; running it again`);
        try {
          yield sleep(wait, ctx.closing);
        } catch {
          // Closing: left unsettled, it goes back to the queue.
          return { kind: 'leave' };
        }
        continue;
      }
      const headers = msg.properties.headers as Record<string, unknown> | undefined;
      const runs = countIn(headers, RETRY_HEADERS.attempts) + attempt;
      const retries = countIn(headers, RETRY_HEADERS.retries);
      const delays = ctx.retry?.delays ?? [];
      if (!permanent && retries < delays.length) {
        const e = err as Error;
        return {
          kind: 'defer',
          ms: delays[retries],
          reason: `retry ${retries + 1} of ${delays.length}`,
          err,
          headers: { [RETRY_HEADERS.retries]: retries + 1, [RETRY_HEADERS.attempts]: runs, [RETRY_HEADERS.lastError]: `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}` },
        };
      }
      if (ctx.errorExchange) return { kind: 'deadLetter', err, attempts: runs };
      return { kind: 'reject', why: err instanceof RejectMessage ? 'rejected' : 'failed', err };
    }
  }
}

/** A handler's `DeferMessage`: back to its queue in its delay, with its defers counted. */
function deferred(msg: ConsumeMessage, signal: DeferMessage): Outcome {
  const deferrals = countIn(msg.properties.headers as Record<string, unknown> | undefined, RETRY_HEADERS.deferrals) + 1;
  return { kind: 'defer', ms: signal.delayMs, reason: signal.message, headers: { [RETRY_HEADERS.deferrals]: deferrals } };
}

/** An RPC: one handler answers (see {@link rpcHandler}); its result, or its failure, is the reply. */
export function* dispatchRpc(ctx: DispatchContext, scope: DeliveryScope, body: MessageBody<object>, handlers: Registered[]): Generator<Yielded, Outcome, unknown> {
  const handler = rpcHandler(handlers);
  if (handler?.isStream) return yield* dispatchStream(ctx, scope, body, handler);
  if (!handler) return { kind: 'ack', reply: replyOf(scope, ctx.encodeReply(new MessageResultError(`No handler for RPC '${body.name}' (type '${body.type}') in ${ctx.fingerprint.name}`))) };
  // Encoded when given, so that a result that cannot be encoded (a BigInt, a cycle) fails the handler.
  let content: Buffer | undefined;
  const reply = (r: unknown) => {
    if (content) return;
    // Replies carry the answering component's fingerprint, as requests carry the caller's.
    const m = r instanceof Message ? r : new MessageResult(r);
    content = ctx.encodeReply(m.setFingerprint(ctx.fingerprint));
  };
  try {
    const { ran, value } = yield* invoke(ctx, scope, handler, body, reply, true);
    reply(ran && value !== undefined ? value : null);
    return { kind: 'ack', reply: replyOf(scope, content!) };
  } catch (err) {
    if (err instanceof RequeueMessage) return { kind: 'requeue', reason: err.message };
    if (err instanceof DeferMessage) return deferred(scope.msg, err);
    if (err instanceof ExitScheduler || err instanceof AckAndRestart) {
      reply(null);
      const r = replyOf(scope, content!);
      return err instanceof ExitScheduler ? { kind: 'exit', signal: err, reply: r } : { kind: 'restart', signal: err, reply: r };
    }
    const e = err as Error;
    reply(err instanceof ValidationError ? new MessageResultError(err.message) : new MessageResultException(e?.name ?? 'Error', e?.message ?? String(err)));
    return { kind: 'reject', why: err instanceof RejectMessage ? 'rejected' : 'failed', err, reply: replyOf(scope, content!) };
  }
}

/**
 * A reply carries its request's correlation id (always), the handler's trace
 * context, and, when the request belongs to a conversation that began
 * elsewhere, that conversation with the request as its cause. A plain call
 * gets a reply without headers: encoding them costs every round trip.
 */
function replyOf(scope: DeliveryScope, content: Buffer): Reply {
  const reply: Reply = { content };
  const incoming = scope.headers;
  if (incoming?.[HEADERS.conversationId] !== undefined) {
    const headers = (reply.headers ??= {});
    headers[HEADERS.conversationId] = scope.conversationId;
    if (scope.messageId !== undefined) headers[HEADERS.causationId] = scope.messageId;
  }
  if (scope.trace) injectContext(scope.trace, (reply.headers ??= {}));
  else passTraceOn(reply, scope);
  return reply;
}

/** A delivery that came back too often: no handler runs; it goes to the error exchange, or is rejected, and an RPC caller is told. */
export function overLimit(ctx: DispatchContext, scope: DeliveryScope, body: MessageBody<object>, err: DeliveryLimitExceeded): Outcome {
  const reply = body.category === 'rpc' ? replyOf(scope, ctx.encodeReply(new MessageResultException(err.name, err.message).setFingerprint(ctx.fingerprint))) : undefined;
  return ctx.errorExchange ? { kind: 'deadLetter', err, attempts: err.deliveries, reply } : { kind: 'reject', why: 'limit', err, reply };
}
