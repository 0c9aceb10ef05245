import type { ConsumeMessage } from 'amqplib';
import type { Attributes, Context, Span } from '@opentelemetry/api';
import { DeliveryLimitExceeded } from '../../errors.js';
import type { Logger } from '../../log.js';
import { STOP, type StepResult, type Yielded } from '../../microthreads/thread.js';
import { instruments, type Instruments } from '../../telemetry/metrics.js';
import { ATTR, endSpan, extractContext, startProcessSpan, tracingOn, trace } from '../../telemetry/tracing.js';
import type { GenericConsumer } from '../consumer.js';
import { DELIVERIES_HEADER, deliveriesBefore, queueCounts } from '../deliveries.js';
import type { IdempotencyStore } from '../idempotency.js';
import { Intake, type Pending } from '../intake.js';
import { Message, type MessageBody } from '../messages.js';
import { deliveryInfo, DeliveryScope, isThenable, type DeliveryInfo } from './context.js';
import { dispatchMessage, dispatchRpc, overLimit, type DispatchContext } from './dispatch.js';
import { sendHeld, succeeded } from './outbox.js';
import type { Outcome } from './outcome.js';
import { handlersFor, type Registry } from './registry.js';
import { settle, type SettleContext } from './settle.js';

/** What a processor gives its pipeline, once. @internal */
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
}

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

/**
 * One processor's deliveries, from arrival to settle: the intake they wait
 * in, and the stages each goes through (decode, the delivery limit, dispatch
 * to an {@link Outcome}, the outbox, settle).
 *
 * Kept apart from the processor so that the processor stays a thin
 * microthread, and so that this path, run once per delivery, only ever sees
 * objects of this one class: on the user's processor subclasses, each with
 * a shape of its own, V8 recompiled the whole path for every new class it met.
 * @internal
 */
export class DeliveryPipeline {
  readonly intake = new Intake();
  readonly #parts: PipelineParts;
  readonly #observers = new Set<(event: DeliveryEvent) => void>();
  #stopping = false;

  constructor(parts: PipelineParts) {
    this.#parts = parts;
  }

  /** Takes nothing more: what waits in the intake goes back to the queue with the channel. */
  stop(): void {
    this.#stopping = true;
    this.intake.drop();
  }

  /** A delivery arrived: in line for a worker (with its ordering key, when the processor orders by one). */
  deliver(msg: ConsumeMessage): void {
    const orderBy = this.#parts.orderBy;
    if (!orderBy) {
      this.intake.push({ msg });
      return;
    }
    // The key needs the content: decoded now, once (a delivery that cannot be decoded has no key, and is rejected when its turn comes).
    let body: MessageBody<object>;
    try {
      body = this.#decode(msg);
    } catch (err) {
      this.intake.push({ msg, decoded: { err } });
      return;
    }
    let key: unknown;
    try {
      key = orderBy(body.content, deliveryInfo(msg));
    } catch (err) {
      this.#parts.log.warn({ err, messageId: msg.properties.messageId }, 'orderBy failed; the delivery is handled unordered');
    }
    this.intake.push({ msg, key, decoded: { body } });
  }

  /** One delivery, whichever worker runs it: the next that can run, or a wait for one. */
  *work(): Generator<Yielded, StepResult, unknown> {
    // Once closing, take nothing more: what waits in the intake goes back to the queue with the channel.
    if (this.#stopping) return STOP;
    const intake = this.intake;
    let p = intake.take();
    while (!p) {
      yield intake.wait();
      if (this.#stopping || intake.closed) return STOP;
      p = intake.take();
    }
    try {
      yield* this.#process(p.msg, p.decoded);
    } finally {
      intake.done(p);
    }
    return undefined;
  }

  /**
   * Calls `listener` after each delivery is settled, with what became of it.
   * Returns how to stop listening. A listener that throws is logged and ignored.
   */
  observe(listener: (event: DeliveryEvent) => void): () => void {
    this.#observers.add(listener);
    return () => this.#observers.delete(listener);
  }

  /** A delivery's envelope, decoded; throws for a delivery that does not hold one (it is rejected as malformed). */
  #decode(msg: ConsumeMessage): MessageBody<object> {
    return Message.fromBody(this.#parts.consumer.decode(msg.content)).body as MessageBody<object>;
  }

  /** One delivery, stage by stage: decode, the delivery limit, dispatch to an outcome, settle. */
  *#process(msg: ConsumeMessage, decoded?: Pending['decoded']): Generator<Yielded, void, unknown> {
    const parts = this.#parts;
    let body: MessageBody<object>;
    try {
      if (decoded && 'err' in decoded) throw decoded.err;
      body = decoded ? (decoded.body as MessageBody<object>) : this.#decode(msg);
    } catch (err) {
      const outcome: Outcome = { kind: 'reject', why: 'malformed', err };
      const waiting = settle(parts.settle, msg, undefined, outcome);
      if (waiting) yield* waiting;
      if (this.#observers.size > 0) this.#tell(msg, undefined, outcome);
      return;
    }
    const counters = instruments();
    let span: Span | undefined;
    let ctx: Context | undefined;
    if (tracingOn()) {
      // The handler's span is the child of the sender's, whose context the message carries in its headers.
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
    const scope = new DeliveryScope(msg, ctx, parts.outbox);
    if (span) span.setAttribute(ATTR.conversationId, scope.conversationId ?? '');
    const labels = counters ? { [ATTR.destination]: msg.fields.exchange, [ATTR.messageName]: body.name } : undefined;
    if (counters) counters.inFlight.add(1, labels);
    const started = counters ? performance.now() : 0;
    let outcome: Outcome = { kind: 'leave' };
    try {
      const redelivered = msg.fields.redelivered;
      const n = Math.max(redelivered ? parts.settle.deliveries.count(msg) : 1, deliveriesBefore(msg) + (redelivered ? 2 : 1));
      if (n > parts.maxDeliveries) outcome = overLimit(parts.dispatch, scope, body, new DeliveryLimitExceeded(n, parts.maxDeliveries));
      else if (redelivered && parts.countInHeader && !queueCounts(msg)) {
        // A classic queue forgets how often it delivered a message; a process that crashed on it forgot too.
        // The count goes in a header of a copy, back in the queue at once; the copy is handled instead.
        outcome = { kind: 'defer', ms: 0, reason: `redelivered (delivery ${n}): counted in a header`, headers: { [DELIVERIES_HEADER]: n - 1 }, quiet: true };
      } else {
        const log = parts.log;
        if (log.isLevelEnabled('debug')) log.debug({ exchange: msg.fields.exchange, routingKey: msg.fields.routingKey, category: body.category, messageType: body.type, messageName: body.name, messageId: scope.messageId, conversationId: scope.conversationId }, 'delivery');
        const key = parts.dedupe && body.category !== 'rpc' && scope.messageId !== undefined ? `${parts.component}/${scope.messageId}` : undefined;
        if (key !== undefined && (yield* this.#seen(key))) {
          log.info({ messageType: body.type, messageName: body.name, messageId: scope.messageId }, `${body.type}/${body.name} was handled already (same message id); dropped`);
          outcome = { kind: 'ack' };
        } else {
          const handlers = handlersFor(parts.registry, body);
          outcome = body.category === 'rpc' ? yield* dispatchRpc(parts.dispatch, scope, body, handlers) : yield* dispatchMessage(parts.dispatch, scope, msg, body, handlers);
          // What the handlers sent goes out, confirmed, before the ack; a failed delivery's sends are dropped.
          const held = scope.takeHeld();
          if (held.length > 0 && succeeded(outcome)) outcome = yield* sendHeld(held, outcome, log, { messageType: body.type, messageName: body.name, messageId: scope.messageId });
          if (key !== undefined && succeeded(outcome)) yield* this.#remember(key);
        }
      }
      counters?.handlerDuration.record((performance.now() - started) / 1000, labels);
      try {
        const waiting = settle(parts.settle, msg, body, outcome);
        if (waiting) yield* waiting;
      } finally {
        // Also when settling ends in an exit or a restart (thrown once the broker confirmed the ack).
        if (this.#observers.size > 0) this.#tell(msg, body, outcome);
      }
    } finally {
      if (counters) {
        counters.inFlight.add(-1, labels);
        countOutcome(counters, outcome, labels!);
      }
      if (span) endSpan(span, failureOf(outcome));
    }
  }

  /** Whether the idempotency store has `key`; a store that fails counts as "no" (handled twice rather than lost). */
  *#seen(key: string): Generator<Yielded, boolean, unknown> {
    try {
      const r = this.#parts.dedupe!.seen(key);
      return Boolean(isThenable(r) ? yield r : r);
    } catch (err) {
      this.#parts.log.warn({ err, key }, 'the idempotency store failed to answer; handling the message');
      return false;
    }
  }

  *#remember(key: string): Generator<Yielded, void, unknown> {
    try {
      const r = this.#parts.dedupe!.remember(key);
      if (isThenable(r)) yield r;
    } catch (err) {
      this.#parts.log.warn({ err, key }, 'the idempotency store failed to remember a handled message; a duplicate of it would be handled again');
    }
  }

  #tell(msg: ConsumeMessage, body: MessageBody<object> | undefined, outcome: Outcome): void {
    const event: DeliveryEvent = {
      category: body?.category,
      type: body?.type,
      name: body?.name,
      messageId: msg.properties.messageId as string | undefined,
      outcome: outcomeName(outcome),
      error: outcome.kind === 'reject' || outcome.kind === 'deadLetter' || outcome.kind === 'defer' ? outcome.err : undefined,
      deferMs: outcome.kind === 'defer' ? outcome.ms : undefined,
      replied: outcome.reply !== undefined,
    };
    for (const l of this.#observers) {
      try {
        l(event);
      } catch (err) {
        this.#parts.log.warn({ err }, 'a delivery observer failed');
      }
    }
  }
}

function outcomeName(o: Outcome): DeliveryEvent['outcome'] {
  switch (o.kind) {
    case 'ack':
    case 'done':
      return 'acked';
    case 'reject':
      return 'rejected';
    case 'deadLetter':
      return 'dead-lettered';
    case 'defer':
      return 'deferred';
    case 'requeue':
      return 'requeued';
    case 'leave':
      return 'left';
    case 'exit':
      return 'exited';
    case 'restart':
      return 'restarted';
  }
}

/** The error a span records for an outcome, if it is a failure. */
function failureOf(outcome: Outcome): unknown {
  if (outcome.kind === 'deadLetter' || outcome.kind === 'defer') return outcome.err;
  if (outcome.kind === 'reject' && outcome.why !== 'rejected') return outcome.err ?? new Error(outcome.why);
  return undefined;
}

/** One count per delivery: handled, failed (its handlers threw), or rejected (malformed, RejectMessage, delivered too often). */
function countOutcome(metrics: Instruments, outcome: Outcome, labels: Attributes): void {
  if (outcome.kind === 'ack' || outcome.kind === 'done' || outcome.kind === 'exit' || outcome.kind === 'restart') metrics.handled.add(1, labels);
  else if (outcome.kind === 'deadLetter' || (outcome.kind === 'reject' && outcome.why === 'failed')) metrics.failed.add(1, labels);
  else if (outcome.kind === 'reject') metrics.rejected.add(1, labels);
}
