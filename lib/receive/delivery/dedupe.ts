import { isThenable } from '../../microthreads/thread.js';
import type { Yielded } from '../../microthreads/thread.js';
import type { IdempotencyClaim, IdempotencyClaimOptions } from '../../stores/idempotency.js';

import type { Outcome } from './outcome.js';
import { succeeded } from './outbox.js';
import { outcomeOf, type Next, type Scoped } from './state.js';
import { longestRunsMs } from './retry.js';
import { runLimitMs, TimeLimit } from './time-limit.js';

const ACK: Outcome = Object.freeze({ kind: 'ack' });

/**
 * How long a message whose id another run holds now waits before it comes
 * back: by then that run has mostly remembered the id (the copy is dropped)
 * or released it (the copy runs).
 */
export const CLAIMED_ELSEWHERE_DEFER_MS = 2_000;

/** What a store that fails to answer a claim counts as: handled here (fail open), with no claim to release. */
const FAIL_OPEN: IdempotencyClaim = Object.freeze({ state: 'claimed', token: '' });

/**
 * Stage (with `deduplicate`): a message whose id this processor handled
 * already is acked without running its handlers; one handled now is
 * remembered once its sends are confirmed. With a store that claims
 * (`claim`), the id is taken before the run, so replicas sharing the store
 * never run it at once, and given back when the run fails. An RPC is always
 * answered.
 */
export function* dedupe(d: Scoped, next: Next): Generator<Yielded, Outcome, unknown> {
  const body = d.body;
  const id = d.scope.messageId ?? d.foreign?.key;
  if (body.category === 'rpc' || id === undefined) return yield* outcomeOf(next(d));
  const key = `${d.parts.component}/${id}`;
  if (typeof d.parts.dedupe?.claim === 'function') return yield* claimed(d, key, id, next);
  if (yield* ask(d, key, 'seen')) return dropped(d, id);
  const outcome = yield* outcomeOf(next(d));
  if (succeeded(outcome)) yield* ask(d, key, 'remember');
  return outcome;
}

/** The claiming way: claim, run, then remember (success) or release (failure). */
function* claimed(d: Scoped, key: string, id: string, next: Next): Generator<Yielded, Outcome, unknown> {
  const claim = yield* ask(d, key, 'claim', undefined, claimOptions(d));
  if (claim.state === 'seen') return dropped(d, id);
  if (claim.state === 'busy')
    return {
      kind: 'defer',
      ms: CLAIMED_ELSEWHERE_DEFER_MS,
      reason: 'is being handled by another run (same message id, claimed in the idempotency store); tried again',
      headers: {},
      quiet: true,
    };
  let outcome: Outcome;
  try {
    outcome = yield* outcomeOf(next(d));
  } catch (err) {
    if (claim.token !== '') yield* ask(d, key, 'release', claim.token);
    throw err;
  }
  if (succeeded(outcome)) yield* ask(d, key, 'remember');
  else if (claim.token !== '') yield* ask(d, key, 'release', claim.token);
  return outcome;
}

/**
 * What the claim is told of the runs it guards: how long they can take at
 * most (the message's time limit, over its runs in this process), so that
 * the store keeps it longer; nothing when they have no time limit.
 */
function claimOptions(d: Scoped): IdempotencyClaimOptions {
  const limit = runLimitMs(d);
  // No limit (handlerTimeoutMs: Infinity): the store's default applies.
  if (!Number.isFinite(limit)) return {};
  return { runMs: longestRunsMs(d, limit) };
}

function dropped(d: Scoped, id: string): Outcome {
  const body = d.body;
  d.parts.log.info(
    { messageType: body.type, messageName: body.name, messageId: id },
    `${body.type}/${body.name} was handled already (same message id); dropped`,
  );
  return ACK;
}

type Asked = { seen: boolean; remember: boolean; claim: IdempotencyClaim; release: boolean };

const FAILED: { [W in keyof Asked]: Asked[W] } = {
  seen: false,
  remember: false,
  claim: FAIL_OPEN,
  release: false,
};

const FAILURE_LINE: { [W in keyof Asked]: string } = {
  seen: 'the idempotency store failed to answer; handling the message',
  claim: 'the idempotency store failed to answer a claim; handling the message',
  remember: 'the idempotency store failed to remember a handled message; a duplicate of it would be handled again',
  release: 'the idempotency store failed to release a claim; the message waits for the claim to expire',
};

/**
 * Asks the idempotency store, within the processor's time limit. A store that
 * fails, or does not answer in time, counts as "not seen" (and a claim as
 * granted): the message is handled twice rather than lost, and the processor
 * goes on.
 */
function* ask<W extends keyof Asked>(
  d: Scoped,
  key: string,
  what: W,
  token?: string,
  claimOptions?: IdempotencyClaimOptions,
): Generator<Yielded, Asked[W], unknown> {
  const { log, dispatch } = d.parts;
  const store = d.parts.dedupe;
  // In the stage list only with a store.
  if (!store) return FAILED[what];
  const ms = dispatch.handlerTimeoutMs;
  const limit = new TimeLimit(ms, () => new Error(`the idempotency store did not answer ${what}() within ${ms} ms`));
  try {
    const r =
      what === 'seen'
        ? store.seen(key)
        : what === 'remember'
          ? store.remember(key)
          : what === 'claim'
            ? store.claim?.(key, claimOptions ?? {})
            : store.release?.(key, token ?? '');
    const v = isThenable(r) ? yield limit.wait(r as PromiseLike<unknown>, log, `idempotency ${what}()`) : r;
    if (what === 'claim') return checkClaim(v) as Asked[W];
    return (what === 'seen' && Boolean(v)) as Asked[W];
  } catch (err) {
    log.warn({ err, key }, FAILURE_LINE[what]);
    return FAILED[what];
  } finally {
    limit.clear();
  }
}

function checkClaim(v: unknown): IdempotencyClaim {
  const state = (v as { state?: unknown } | null)?.state;
  if (state === 'seen' || state === 'busy') return { state };
  if (state === 'claimed') return { state, token: String((v as { token?: unknown }).token ?? '') };
  throw new TypeError(`claim() must resolve to { state: 'claimed' | 'seen' | 'busy' }, not ${JSON.stringify(v)}`);
}
