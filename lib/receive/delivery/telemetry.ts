import type { Attributes, Context, Span } from '@opentelemetry/api';
import type { Yielded } from '../../microthreads/thread.js';
import { instruments, type Instruments } from '../../telemetry/metrics.js';
import { ATTR, endSpan, extractContext, startProcessSpan, tracingOn, trace } from '../../telemetry/tracing.js';
import { DeliveryScope } from '../../scope/context.js';
import type { Outcome } from './outcome.js';
import { outcomeOf, type Decoded, type Next, type Scoped } from './state.js';

/**
 * Whether spans or metrics are recorded now (an SDK may be registered at any time): the telemetry stage is taken only
 * then.
 */
export function telemetryOn(): boolean {
  return tracingOn() || instruments() !== undefined;
}

/** The first run's scope, in the span's context where one is recorded. */
export function openScope(d: Decoded, trace?: Context): Scoped {
  // Set in place, not with Object.assign, which makes and copies an object per delivery.
  const scoped = d as Scoped;
  scoped.scope = new DeliveryScope(d.msg, trace, d.parts.outbox, d.parts.dispatch.closing);
  return scoped;
}

/**
 * Stage (while spans or metrics are recorded): the delivery's span (the
 * child of its sender's) and its metrics, around the rest; and its first
 * run's scope, made here because it runs in the span's context.
 */
export function* telemetry(d: Decoded, next: Next<Scoped>): Generator<Yielded, Outcome, unknown> {
  const { msg, parts } = d;
  const body = d.body;
  let span: Span | undefined;
  let ctx: Context | undefined;
  if (tracingOn()) {
    const sender = extractContext(msg.properties.headers as Record<string, unknown> | undefined);
    span = startProcessSpan(sender, msg.fields.exchange, {
      [ATTR.messageId]: String(msg.properties.messageId ?? ''),
      [ATTR.bodySize]: msg.content.length,
      [ATTR.routingKey]: msg.fields.routingKey,
      [ATTR.messageType]: body.type,
      [ATTR.messageName]: body.name,
      [ATTR.component]: parts.component,
    });
    ctx = trace.setSpan(sender, span);
  }
  const scoped = openScope(d, ctx);
  if (span) span.setAttribute(ATTR.conversationId, scoped.scope.conversationId ?? '');
  const counters = instruments();
  if (!counters && !span) return yield* outcomeOf(next(scoped));
  const labels = counters ? { [ATTR.destination]: msg.fields.exchange, [ATTR.messageName]: body.name } : undefined;
  if (counters) counters.inFlight.add(1, labels);
  const started = counters ? performance.now() : 0;
  let outcome: Outcome = d.outcome;
  try {
    outcome = yield* outcomeOf(next(scoped));
    counters?.handlerDuration.record((performance.now() - started) / 1000, labels);
    return outcome;
  } finally {
    if (counters && labels) {
      counters.inFlight.add(-1, labels);
      countOutcome(counters, outcome, labels);
    }
    if (span) endSpan(span, failureOf(outcome));
  }
}

/** The error a span records for an outcome, if it is a failure. */
function failureOf(outcome: Outcome): unknown {
  if (outcome.kind === 'deadLetter' || outcome.kind === 'defer') return outcome.err;
  if (outcome.kind === 'reject' && outcome.why !== 'rejected') return outcome.err ?? new Error(outcome.why);
  return undefined;
}

/**
 * One count per delivery: handled, failed (its handlers threw), or rejected (malformed, RejectMessage, delivered too
 * often).
 */
function countOutcome(metrics: Instruments, outcome: Outcome, labels: Attributes): void {
  if (outcome.kind === 'ack' || outcome.kind === 'done' || outcome.kind === 'exit' || outcome.kind === 'restart')
    metrics.handled.add(1, labels);
  else if (outcome.kind === 'deadLetter' || (outcome.kind === 'reject' && outcome.why === 'failed'))
    metrics.failed.add(1, labels);
  else if (outcome.kind === 'reject') metrics.rejected.add(1, labels);
}
