import { HandlerTimeout, MalformedMessage } from '../../errors.js';
import type { Yielded } from '../../microthreads/thread.js';
import { badReplyTo } from './replier.js';
import {
  MessageResult,
  MessageResultError,
  MessageResultException,
  type MessageBody,
} from '../../envelope/messages.js';
import { DEFAULT_WINDOW, MAX_WINDOW, STREAM, type StreamKind } from '../../envelope/stream-protocol.js';
import { runIn, type DeliveryScope } from '../../scope/context.js';
import type { Outcome } from './outcome.js';
import type { DispatchContext } from './parts.js';
import { rpcHandler, type Registered } from './registry.js';
import { encodeResult } from './reply.js';
import { checkSchema } from './schema.js';
import { outcomeOf, type Next, type Scoped } from './state.js';
import { TimeLimit, within } from './time-limit.js';

/**
 * Stage: an RPC whose handler streams is served here, for as long as its caller reads: no run's time limit, outbox or
 * retry applies.
 */
export function* stream(d: Scoped, next: Next): Generator<Yielded, Outcome, unknown> {
  if (d.body.category === 'rpc') {
    const h = rpcHandler(d.handlers);
    if (h?.isStream) return yield* dispatchStream(d.parts.dispatch, d.scope, d.body, h);
  }
  return yield* outcomeOf(next(d));
}

const EMPTY = Buffer.alloc(0);
/** How long the server waits without a word from its caller when it does not say (the caller's `_timeout`). */
const DEFAULT_IDLE_MS = 30_000;

function numberIn(headers: Record<string, unknown> | undefined, name: string): number | undefined {
  const n = Number(headers?.[name]);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

type AnyGenerator = Generator<unknown, unknown, undefined> | AsyncGenerator<unknown, unknown, undefined>;

/**
 * Serves an RPC stream (see `stream-protocol.ts`): acks the request, sends
 * `open`, then each value the handler yields as an `item` while the caller has
 * credit, then `end`, or `error` when the handler throws. Stops the handler
 * (its `finally` runs) when the caller cancels, goes silent for its idle
 * time, or the channel goes; and when the processor closes.
 */
export function* dispatchStream(
  ctx: DispatchContext,
  scope: DeliveryScope,
  body: MessageBody<object>,
  h: Registered,
): Generator<Yielded, Outcome, unknown> {
  const msg = scope.msg;
  const log = ctx.log;
  const replyTo = msg.properties.replyTo as string | undefined;
  const id = msg.properties.correlationId as string | undefined;
  const what = `${body.type}/${body.name}`;
  if (!replyTo || !id || badReplyTo(replyTo)) {
    return {
      kind: 'reject',
      why: 'malformed',
      err: new MalformedMessage(
        `stream request ${what} without a usable reply_to and correlation_id: ask with rpcStream_NAME`,
      ),
    };
  }
  const headers = msg.properties.headers as Record<string, unknown> | undefined;
  const window = Math.min(MAX_WINDOW, Math.floor(numberIn(headers, STREAM.window) ?? DEFAULT_WINDOW));
  const idleMs = numberIn(headers, STREAM.idle) ?? DEFAULT_IDLE_MS;
  const encode = (r: MessageResult<unknown>) => encodeResult(ctx, r);
  const stepMs = h.tag.timeoutMs ?? ctx.handlerTimeoutMs;
  try {
    yield ctx.streams.control();
  } catch (err) {
    log.warn({ err, what }, 'cannot serve a stream on this channel; the request goes back to its queue');
    return { kind: 'requeue', reason: 'stream control unavailable' };
  }
  ctx.streams.ack(msg);

  let credit = window;
  let cancelled = false;
  let lastHeard = Date.now();
  // A caller that keeps its connection (and its keepalive) but stops reading grants no credit: after
  // streamStallMs without any, the stream is cancelled and its worker freed.
  let lastCredit = lastHeard;
  const stallMs = ctx.streamStallMs;
  let wake: (() => void) | undefined;
  const unwatch = ctx.streams.watch(id, (hs) => {
    lastHeard = Date.now();
    const kind = hs?.[STREAM.kind] as StreamKind | undefined;
    if (kind === 'credit') {
      credit += numberIn(hs, STREAM.credit) ?? 0;
      lastCredit = lastHeard;
    } else if (kind === 'cancel') cancelled = true;
    const w = wake;
    wake = undefined;
    w?.();
  });
  const onClose = () => wake?.();
  ctx.closing.addEventListener('abort', onClose);
  const send = (kind: StreamKind, content: Buffer = EMPTY) => ctx.streams.send(msg, content, { [STREAM.kind]: kind });
  let gen: AnyGenerator | undefined;
  let finished = false;
  let sent = 0;
  try {
    let value: unknown = h.tag.pass === 'body' ? body : body.content;
    if (h.tag.schema) {
      const limit = new TimeLimit(stepMs, () => new HandlerTimeout(what, stepMs));
      try {
        value = (yield* within(limit, checkSchema(h, body), log, `schema of ${what}`)).value;
      } finally {
        limit.clear();
      }
    }
    gen = runIn(scope, () => h.fn.call(ctx.owner, value) as AnyGenerator, h.isAsync);
    if (!send('open')) return { kind: 'done' };
    for (;;) {
      // Wait for credit, hearing from the caller at least once per idle time, and of credit once per stall time.
      while (
        credit <= 0 &&
        !cancelled &&
        !ctx.closing.aborted &&
        Date.now() - lastHeard <= idleMs &&
        Date.now() - lastCredit <= stallMs
      ) {
        yield new Promise<void>((resolve) => {
          wake = resolve;
          const now = Date.now();
          setTimeout(
            resolve,
            Math.max(1, Math.min(idleMs - (now - lastHeard), stallMs - (now - lastCredit)) + 1),
          ).unref();
        });
      }
      if (cancelled) {
        log.debug({ what, correlationId: id, sent }, 'stream cancelled by its caller');
        break;
      }
      if (ctx.closing.aborted) {
        send('error', encode(new MessageResultException('Closing', 'the server is closing')));
        break;
      }
      if (Date.now() - lastHeard > idleMs) {
        log.warn(
          { what, correlationId: id, sent, idleMs },
          `stream ${what}: nothing heard from its caller for ${idleMs} ms (gone?); stopping it`,
        );
        break;
      }
      if (credit <= 0) {
        log.warn(
          { what, correlationId: id, sent, streamStallMs: stallMs },
          `stream ${what}: its caller took no item for ${stallMs} ms (streamStallMs); cancelling it to free its worker`,
        );
        send(
          'error',
          encode(
            new MessageResultException(
              'StreamStalled',
              `the caller took no item for ${stallMs} ms (the server's streamStallMs): the stream was cancelled`,
            ),
          ),
        );
        break;
      }
      const g = gen;
      const step = runIn(scope, () => g.next(), h.isAsync);
      let r: IteratorResult<unknown>;
      if (step instanceof Promise) {
        // Each step within the handler's time limit: the one implementation of it, as for runs.
        const limit = new TimeLimit(stepMs, () => new HandlerTimeout(what, stepMs));
        try {
          r = (yield limit.wait(step, log, `stream ${what}`)) as IteratorResult<unknown>;
        } finally {
          limit.clear();
        }
      } else r = step as IteratorResult<unknown>;
      if (r.done) {
        finished = true;
        send('end');
        break;
      }
      if (!send('item', encode(new MessageResult(r.value)))) break;
      sent++;
      credit--;
    }
  } catch (err) {
    finished = true;
    const e = err as Error;
    log.error({ err, what, correlationId: id, sent }, `stream ${what} failed after ${sent} items`);
    const result =
      e?.name === 'ValidationError'
        ? new MessageResultError(e.message)
        : new MessageResultException(e?.name ?? 'Error', e?.message ?? String(err));
    send('error', encode(result));
  } finally {
    unwatch();
    ctx.closing.removeEventListener('abort', onClose);
    if (gen && !finished) {
      // Stopped early (cancelled, the caller gone, closing): the handler's finally blocks run.
      const g = gen;
      try {
        const closing = runIn(scope, () => g.return(undefined), h.isAsync);
        if (closing instanceof Promise)
          yield closing.catch((err: unknown) => log.warn({ err, what }, 'stream handler failed while closing'));
      } catch (err) {
        log.warn({ err, what }, 'stream handler failed while closing');
      }
    }
  }
  return { kind: 'done' };
}
