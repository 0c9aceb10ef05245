import type { ConsumeMessage } from 'amqplib';
import { HandlerTimeout, MalformedMessage } from '../../errors.js';
import type { Yielded } from '../../microthreads/thread.js';
import { badReplyTo } from '../consumer.js';
import { MessageResult, MessageResultError, MessageResultException, type MessageBody } from '../messages.js';
import { DEFAULT_WINDOW, MAX_WINDOW, STREAM, type StreamKind } from '../stream-protocol.js';
import { Deadline, runIn, withDeadline, type DeliveryScope } from './context.js';
import type { DispatchContext } from './dispatch.js';
import { contentFor } from './dispatch.js';
import type { Outcome } from './outcome.js';
import type { Registered } from './registry.js';

/** What serving an RPC stream needs of the consumer (the processor gives its consumer's). */
export interface StreamServer {
  /** The channel answers to stream control (its direct reply-to is consumed). */
  control(): Promise<void>;
  send(msg: ConsumeMessage, content: Buffer, headers: Record<string, unknown>): boolean;
  watch(correlationId: string, listener: (headers: Record<string, unknown> | undefined) => void): () => void;
  /** Acks the request now: a stream is not redelivered. */
  ack(msg: ConsumeMessage): void;
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
export function* dispatchStream(ctx: DispatchContext, scope: DeliveryScope, body: MessageBody<object>, h: Registered): Generator<Yielded, Outcome, unknown> {
  const msg = scope.msg;
  const log = ctx.log;
  const replyTo = msg.properties.replyTo as string | undefined;
  const id = msg.properties.correlationId as string | undefined;
  const what = `${body.type}/${body.name}`;
  if (!replyTo || !id || badReplyTo(replyTo)) {
    return { kind: 'reject', why: 'malformed', err: new MalformedMessage(`stream request ${what} without a usable reply_to and correlation_id: ask with rpcStream_NAME`) };
  }
  const headers = msg.properties.headers as Record<string, unknown> | undefined;
  const window = Math.min(MAX_WINDOW, Math.floor(numberIn(headers, STREAM.window) ?? DEFAULT_WINDOW));
  const idleMs = numberIn(headers, STREAM.idle) ?? DEFAULT_IDLE_MS;
  const encode = (r: MessageResult<unknown>) => ctx.encodeReply(r.setFingerprint(ctx.fingerprint));
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
  let wake: (() => void) | undefined;
  const unwatch = ctx.streams.watch(id, (hs) => {
    lastHeard = Date.now();
    const kind = hs?.[STREAM.kind] as StreamKind | undefined;
    if (kind === 'credit') credit += numberIn(hs, STREAM.credit) ?? 0;
    else if (kind === 'cancel') cancelled = true;
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
    const { value } = yield* contentFor(h, body);
    gen = runIn(scope, () => h.fn.call(ctx.owner, value) as AnyGenerator, h.isAsync);
    if (!send('open')) return { kind: 'done' };
    for (;;) {
      // Wait for credit, hearing from the caller at least once per idle time.
      while (credit <= 0 && !cancelled && !ctx.closing.aborted && Date.now() - lastHeard <= idleMs) {
        yield new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, Math.max(1, idleMs - (Date.now() - lastHeard) + 1)).unref();
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
        log.warn({ what, correlationId: id, sent, idleMs }, `stream ${what}: nothing heard from its caller for ${idleMs} ms (gone?); stopping it`);
        break;
      }
      const g = gen;
      const step = runIn(scope, () => g.next(), h.isAsync);
      const ms = h.tag.timeoutMs ?? ctx.handlerTimeoutMs;
      const r = (step instanceof Promise ? yield withDeadline(step, new Deadline(ms, () => new HandlerTimeout(what, ms))) : step) as IteratorResult<unknown>;
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
    const result = e?.name === 'ValidationError' ? new MessageResultError(e.message) : new MessageResultException(e?.name ?? 'Error', e?.message ?? String(err));
    send('error', encode(result));
  } finally {
    unwatch();
    ctx.closing.removeEventListener('abort', onClose);
    if (gen && !finished) {
      // Stopped early (cancelled, the caller gone, closing): the handler's finally blocks run.
      const g = gen;
      try {
        const closing = runIn(scope, () => g.return(undefined), h.isAsync);
        if (closing instanceof Promise) yield closing.catch((err: unknown) => log.warn({ err, what }, 'stream handler failed while closing'));
      } catch (err) {
        log.warn({ err, what }, 'stream handler failed while closing');
      }
    }
  }
  return { kind: 'done' };
}
