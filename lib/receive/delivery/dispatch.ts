import { isThenable } from '../../microthreads/thread.js';
import { foreignArgument } from './foreign.js';
import { plainReply } from '../../formats/json.js';
import { isGenerator, type Yielded } from '../../microthreads/thread.js';
import { applyFilters, SKIP, type Handler } from '../handlers.js';
import { Message, MessageResult, MessageResultError } from '../../envelope/messages.js';
import { driveIn, runIn, type DeliveryScope } from '../../scope/context.js';
import type { Outcome } from './outcome.js';
import type { DispatchContext } from './parts.js';
import { namesHandled, rpcHandler, type Registered } from './registry.js';
import { encodeResult, replyOf } from './reply.js';
import type { Ran, Scoped } from './state.js';

const ACK: Outcome = Object.freeze({ kind: 'ack' });

/**
 * Gives the run its answer, once: `r` (a `Message`, or a bare value wrapped
 * in `MessageResult`) with the processor's fingerprint, encoded now, so that
 * a result that cannot be encoded (a BigInt, a cycle) fails the handler.
 * Later answers of the same run are ignored.
 */
export function answer(d: Scoped, r: unknown): Buffer {
  if (d.answer) return d.answer;
  const ctx = d.parts.dispatch;
  if (!(r instanceof Message)) {
    const quick = ctx.encodeValue?.(r);
    if (quick) return (d.answer = quick);
  }
  return (d.answer = encodeResult(ctx, r instanceof Message ? r : new MessageResult(r)));
}

/**
 * The last stage: the handlers. A message's all run, in order (a failure
 * throws, for the retry stage to judge); an RPC's one answers; a success is
 * acked, with the answer when there is one. Handlers that return at once end
 * it within the call; the first that waits (a generator, a promise) hands the
 * rest to a generator.
 */
export function dispatch(d: Scoped): Ran {
  const body = d.body;
  if (body.category === 'rpc') {
    const handler = rpcHandler(d.handlers);
    if (!handler) return noRpcHandler(d);
    const r = call(d, handler, (v: unknown) => answer(d, v), true);
    if (r === SKIP) return answered(d, null);
    if (waits(r)) return rpcWaiting(d, r);
    return answered(d, r);
  }
  const handlers = d.handlers;
  if (handlers.length === 0) unhandled(d);
  // A plain message that carries reply_to can be answered too (PikaBus's bus.Reply): the first answer of a successful
  // run goes out after the ack. A foreign request's answer is plain JSON: the first value a handler returns.
  const replyTo = d.msg.properties.replyTo;
  const foreign = d.foreign !== undefined;
  const reply = !replyTo ? noReply : foreign ? (r: unknown) => answerPlain(d, r) : (r: unknown) => answer(d, r);
  for (let i = 0; i < handlers.length; i++) {
    const r = call(d, handlers[i], reply, d.lastRun && i === handlers.length - 1);
    if (waits(r)) return messageWaiting(d, reply, i, r);
    if (foreign && replyTo && r !== SKIP && r !== undefined) answerPlain(d, r);
  }
  return messageDone(d);
}

/** An RPC's answer (null when its handler returned nothing, or was skipped), with the ack. */
function answered(d: Scoped, value: unknown): Outcome {
  return { kind: 'ack', reply: replyOf(d.scope, answer(d, value !== undefined ? value : null)) };
}

function noRpcHandler(d: Scoped): Outcome {
  const body = d.body;
  const ctx = d.parts.dispatch;
  return {
    kind: 'ack',
    reply: replyOf(
      d.scope,
      encodeResult(
        ctx,
        new MessageResultError(`No handler for RPC '${body.name}' (type '${body.type}') in ${ctx.fingerprint.name}`),
      ),
    ),
  };
}

function* rpcWaiting(d: Scoped, r: Waiting): Generator<Yielded, Outcome, unknown> {
  return answered(d, yield* finish(d, r));
}

/** A message's handlers from `i` on, once handler `i` waits (`r`, what it returned). */
function* messageWaiting(
  d: Scoped,
  reply: (r: unknown) => void,
  i: number,
  r: Waiting,
): Generator<Yielded, Outcome, unknown> {
  const handlers = d.handlers;
  const replyTo = d.msg.properties.replyTo;
  const foreign = d.foreign !== undefined;
  let value = yield* finish(d, r);
  for (;;) {
    if (foreign && replyTo && value !== undefined) answerPlain(d, value);
    if (++i >= handlers.length) break;
    const next = call(d, handlers[i], reply, d.lastRun && i === handlers.length - 1);
    value = next === SKIP ? undefined : waits(next) ? yield* finish(d, next) : next;
  }
  return messageDone(d);
}

/** A message's run is over: acked, with the answer when there is one. */
function messageDone(d: Scoped): Outcome {
  // Its caller waits for an answer whatever the handlers returned: null when none returned a value.
  if (d.foreign !== undefined && d.msg.properties.replyTo) answerPlain(d, null);
  return d.answer ? { kind: 'ack', reply: replyOf(d.scope, d.answer) } : ACK;
}

const noReply = (): void => undefined;

/** A foreign request's answer, once: the value as plain JSON, no envelope (its caller is no Postage component). */
function answerPlain(d: Scoped, r: unknown): void {
  if (!d.answer) d.answer = plainReply(r);
}

/**
 * A message no handler takes is acked (as in Postage), and said once per
 * name per processor at warn, with the names it does handle: a typo in a
 * command name ('gret' for 'greet') shows in the logs instead of vanishing.
 */
function unhandled(d: Scoped): void {
  const body = d.body;
  const { parts } = d;
  const key = `${body.category}|${body.type}|${body.name}`;
  if (parts.unhandled.has(key)) return;
  parts.unhandled.add(key);
  const known = namesHandled(parts.registry, body.category, body.type).filter((n) => n !== body.name);
  const handles =
    known.length > 0 ? `It handles ${body.type}/${known.join(', ')}` : `It handles no ${body.type} at all`;
  parts.log.warn(
    { messageType: body.type, messageName: body.name, handles: known },
    `no handler takes ${body.type}/${body.name} in ${parts.dispatch.fingerprint.name}: ` +
      `acked and dropped (said once per name). ${handles}`,
  );
}

/** What a handler returned that is not its value yet. */
type Waiting = Generator<Yielded, unknown, unknown> | PromiseLike<unknown>;

function waits(r: unknown): r is Waiting {
  return isGenerator(r) || isThenable(r);
}

/** The value of a handler that waits: a generator driven in its run's scope, a promise awaited. */
function* finish(d: Scoped, r: Waiting): Generator<Yielded, unknown, unknown> {
  return isGenerator(r) ? yield* driveIn(d.scope, r) : yield r;
}

/**
 * Calls one handler (its filters first) inside its run's scope, so that
 * `currentDelivery()` and the trace context are right in it, across `await`
 * and `yield`: what it returned (a generator or a promise is for
 * {@link finish}), or `SKIP` when a filter skipped it. `last`: nothing runs
 * after it, so it may have the decoded body itself instead of a copy. Its
 * time limit is the run's (the time-limit stage).
 */
function call(d: Scoped, h: Registered, reply: (r: unknown) => void, last: boolean): unknown {
  const body = d.body;
  const scope: DeliveryScope = d.scope;
  const ctx: DispatchContext = d.parts.dispatch;
  // Each handler (and its filters) gets its own copy, so one cannot change what the next sees;
  // the body was freshly decoded for this delivery, so the last handler can take it without copying.
  let given: unknown = h.tag.pass === 'body' ? body : body.content;
  const checked = h.tag.schema ? d.inputs?.get(h) : undefined;
  if (checked) {
    given = checked.value;
    if (checked.fresh) last = true;
  }
  return runIn(
    scope,
    () => {
      const arg = applyFilters(h.fn, last ? given : structuredClone(given));
      if (arg === SKIP) return SKIP;
      if (h.isClass) {
        const Cls = h.fn as unknown as new (p: unknown, d: unknown, reply: (r: unknown) => void) => Handler;
        return new Cls(ctx.owner, arg, reply).call();
      }
      // A JSON handler gets the delivery after the body, a CloudEvent handler the event's attributes after the data.
      return h.fn.call(ctx.owner, arg, h.tag.format ? foreignArgument(d) : reply);
    },
    h.isAsync,
  );
}
