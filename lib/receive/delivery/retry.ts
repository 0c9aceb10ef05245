import { backoffMs } from '../../backoff.js';
import {
  AckAndRestart,
  DeferMessage,
  ExitScheduler,
  RejectMessage,
  RequeueMessage,
  ValidationError,
} from '../../errors.js';
import { sleep } from '../../microthreads/effects.js';
import type { Yielded } from '../../microthreads/thread.js';
import { MessageResultError, MessageResultException } from '../../envelope/messages.js';
import { answer } from './dispatch.js';
import { countIn, type DeliveryScope } from '../../scope/context.js';
import type { Outcome } from './outcome.js';
import { RETRY_HEADERS, type RetryOptions } from './parts.js';
import { replyOf } from './reply.js';
import { ended, type Next, type Ran, type Scoped } from './state.js';

/**
 * Stage: turns how a run ended into an {@link Outcome}. A message's failing
 * run is run again (a new run, a new scope) with backoff, up to
 * `retry.attempts`, then goes back to its queue through the broker's delays
 * (`retry.delays`), then to the error exchange or a reject. An RPC runs once:
 * its failure is its caller's answer. Control signals (`RejectMessage`,
 * `RequeueMessage`, `DeferMessage`, `ExitScheduler`, `AckAndRestart`) become
 * their outcomes.
 */
export function retry(d: Scoped, next: Next): Ran {
  if (d.body.category === 'rpc') return runRpc(d, next);
  const attempts = d.parts.dispatch.retry?.attempts ?? 1;
  // With retries, every run needs the body untouched: no handler may take the original.
  d.lastRun = attempts === 1;
  d.answer = undefined;
  let ran: Ran;
  try {
    ran = next(d);
  } catch (err) {
    const judged = failed(d, err, 1, attempts);
    return typeof judged === 'number' ? retrying(d, next, attempts, 1, undefined, judged) : judged;
  }
  return ended(ran) ? ran : retrying(d, next, attempts, 1, ran, 0);
}

/**
 * The runs of a message from `attempt` on, once one waits: `ran` is that run (under way), or, when it failed already,
 * undefined with `wait`, the backoff before the next one.
 */
function* retrying(
  d: Scoped,
  next: Next,
  attempts: number,
  attempt: number,
  ran: Generator<Yielded, Outcome, unknown> | undefined,
  wait: number,
): Generator<Yielded, Outcome, unknown> {
  for (;;) {
    if (ran) {
      try {
        return yield* ran;
      } catch (err) {
        const judged = failed(d, err, attempt, attempts);
        if (typeof judged !== 'number') return judged;
        wait = judged;
      }
    }
    try {
      yield sleep(wait, d.parts.dispatch.closing);
    } catch {
      // Closing: left unsettled, it goes back to the queue.
      return { kind: 'leave' };
    }
    attempt++;
    // A failed run's scope is over (its late sends are refused): the next run has its own.
    d.scope = d.scope.rerun();
    d.answer = undefined;
    try {
      const r = next(d);
      if (ended(r)) return r;
      ran = r;
    } catch (err) {
      ran = undefined;
      const judged = failed(d, err, attempt, attempts);
      if (typeof judged !== 'number') return judged;
      wait = judged;
    }
  }
}

/**
 * What a message's failed run `attempt` (of `attempts` in this process) comes to: its outcome, or the backoff in ms
 * before it runs again.
 */
function failed(d: Scoped, err: unknown, attempt: number, attempts: number): Outcome | number {
  if (err instanceof ExitScheduler) return { kind: 'exit', signal: err };
  if (err instanceof AckAndRestart) return { kind: 'restart', signal: err };
  d.scope.fail(err);
  if (err instanceof RequeueMessage) return { kind: 'requeue', reason: err.message };
  if (err instanceof DeferMessage) return deferred(d, err);
  const ctx = d.parts.dispatch;
  const { msg } = d;
  const body = d.body;
  const permanent = err instanceof RejectMessage || err instanceof ValidationError;
  if (!permanent && attempt < attempts) {
    const wait = retryWaitMs(ctx.retry, attempt - 1);
    ctx.log.warn(
      {
        err,
        messageType: body.type,
        messageName: body.name,
        messageId: msg.properties.messageId,
        attempt,
        nextInMs: wait,
      },
      `handler for ${body.type}/${body.name} failed; running it again`,
    );
    return wait;
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
      headers: {
        [RETRY_HEADERS.retries]: retries + 1,
        [RETRY_HEADERS.attempts]: runs,
        [RETRY_HEADERS.lastError]: `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`,
      },
    };
  }
  if (ctx.errorExchange) return { kind: 'deadLetter', exchange: ctx.errorExchange, err, attempts: runs };
  return { kind: 'reject', why: err instanceof RejectMessage ? 'rejected' : 'failed', err };
}

/** The wait before in-process run number `n + 2` (`n` 0: between the first run and the second). */
function retryWaitMs(retry: RetryOptions | undefined, n: number): number {
  return backoffMs(n, retry?.backoffMs ?? 100, retry?.maxBackoffMs ?? 5000);
}

/**
 * How long a message's runs in this process can take at most, each within
 * `limitMs`: its `retry.attempts` runs and the waits between them (an RPC:
 * one run). What a claim on its message id must outlive.
 */
export function longestRunsMs(d: Scoped, limitMs: number): number {
  if (d.body.category === 'rpc') return limitMs;
  const retry = d.parts.dispatch.retry;
  const attempts = retry?.attempts ?? 1;
  let ms = limitMs * attempts;
  for (let n = 0; n < attempts - 1; n++) ms += retryWaitMs(retry, n);
  return ms;
}

/** An RPC's one run: its failure (or its time limit) is the caller's answer. */
function runRpc(d: Scoped, next: Next): Ran {
  const scope = d.scope;
  d.answer = undefined;
  let ran: Ran;
  try {
    ran = next(d);
  } catch (err) {
    return rpcFailed(d, scope, err);
  }
  return ended(ran) ? ran : rpcAfter(d, scope, ran);
}

function* rpcAfter(
  d: Scoped,
  scope: DeliveryScope,
  ran: Generator<Yielded, Outcome, unknown>,
): Generator<Yielded, Outcome, unknown> {
  try {
    return yield* ran;
  } catch (err) {
    return rpcFailed(d, scope, err);
  }
}

function rpcFailed(d: Scoped, scope: DeliveryScope, err: unknown): Outcome {
  if (err instanceof ExitScheduler || err instanceof AckAndRestart) {
    const reply = replyOf(scope, answer(d, null));
    return err instanceof ExitScheduler
      ? { kind: 'exit', signal: err, reply }
      : { kind: 'restart', signal: err, reply };
  }
  scope.fail(err);
  if (err instanceof RequeueMessage) return { kind: 'requeue', reason: err.message };
  if (err instanceof DeferMessage) return deferred(d, err);
  const e = err as Error;
  const answered = answer(
    d,
    err instanceof ValidationError
      ? new MessageResultError(err.message)
      : new MessageResultException(e?.name ?? 'Error', e?.message ?? String(err)),
  );
  return {
    kind: 'reject',
    why: err instanceof RejectMessage ? 'rejected' : 'failed',
    err,
    reply: replyOf(scope, answered),
  };
}

/** A handler's `DeferMessage`: back to its queue in its delay, with its defers counted. */
function deferred(d: Scoped, signal: DeferMessage): Outcome {
  const deferrals =
    countIn(d.msg.properties.headers as Record<string, unknown> | undefined, RETRY_HEADERS.deferrals) + 1;
  return {
    kind: 'defer',
    ms: signal.delayMs,
    reason: signal.message,
    headers: { [RETRY_HEADERS.deferrals]: deferrals },
  };
}
