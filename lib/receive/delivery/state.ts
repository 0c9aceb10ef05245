import type { ConsumeMessage } from 'amqplib';
import type { CloudEventAttributes } from '../../formats/cloudevents.js';
import type { Yielded } from '../../microthreads/thread.js';
import type { MessageBody } from '../../envelope/messages.js';
import type { DeliveryScope } from '../../scope/context.js';
import type { Outcome } from './outcome.js';
import type { Read } from './readable.js';
import type { PipelineParts } from './parts.js';
import type { Registered } from './registry.js';

const NONE: Registered[] = [];
const LEAVE: Outcome = Object.freeze({ kind: 'leave' });

/** What a delivery without an envelope was taken as. @internal */
export interface Foreign {
  readonly format: 'json' | 'cloudevent';
  /** A CloudEvent's attributes. */
  readonly attributes: CloudEventAttributes | undefined;
  /** What dedupe keys it by when it carries no message id (the handler's `idempotencyKey`). */
  readonly key: string | undefined;
}

/**
 * One delivery on its way through the stages: what each stage learned of it
 * that a later one needs. One object of one class from arrival to settle, so
 * the stages only ever see one shape; what a stage may read of it is said by
 * the view it is given: {@link RawDelivery} before decode, {@link Decoded}
 * after it, {@link Scoped} once its run has a scope (typed stage connectors,
 * as NServiceBus's `IBehavior<TFrom, TTo>`).
 */
export class DeliveryState {
  /** The decoded envelope (the decode stage). */
  body: MessageBody<object> | undefined = undefined;
  /** What a delivery without an envelope was taken as (JSON, a CloudEvent), by its foreign handlers. */
  foreign: Foreign | undefined = undefined;
  /** Its handlers, looked up once (the decode stage). */
  handlers: Registered[] = NONE;
  /** The current run's scope: a retry gets a new one. */
  scope: DeliveryScope | undefined = undefined;
  /** What each handler with a schema gets (the schema stage), and whether the schema made a new value. */
  inputs: Map<Registered, { value: unknown; fresh: boolean }> | undefined = undefined;
  /** The current run's answer, encoded (an RPC's result, or a message's reply), once a handler gave one. */
  answer: Buffer | undefined = undefined;
  /** No run comes after this one: its last handler may take the decoded body itself instead of a copy. */
  lastRun = true;
  /** What became of it, once known (read by the observers, also when settling throws an exit). */
  outcome: Outcome = LEAVE;

  constructor(
    readonly parts: PipelineParts,
    readonly msg: ConsumeMessage,
    /** Read ahead (to find its ordering key): its envelope, or why it cannot be read. */
    readonly decoded: Read | undefined,
  ) {}
}

/**
 * A delivery as it arrived: what the stages before decode see (the observers, the settle). Its `body` and `scope`
 * are there only if a later stage made them, which an outer stage can tell once the rest has returned.
 */
export type RawDelivery = DeliveryState;

/** A delivery whose envelope is read (or taken by a foreign handler) and whose handlers are looked up. */
export interface Decoded extends DeliveryState {
  readonly body: MessageBody<object>;
}

/** A decoded delivery whose run has a scope: what every stage from the delivery limit to the handlers sees. */
export interface Scoped extends Decoded {
  scope: DeliveryScope;
}

/** Whether the decode stage (or a foreign format) has read `d`. */
export function isDecoded(d: DeliveryState): d is Decoded {
  return d.body !== undefined;
}

/**
 * What the rest of a delivery's way gave: its {@link Outcome} when it ended within the call (a handler that returned
 * at once, as most do), or the generator that ends it (something waits), to be run at once. A delivery that never waits
 * then costs plain calls only: no generator per stage, and no trip through the scheduler.
 */
export type Ran = Outcome | Generator<Yielded, Outcome, unknown>;

/** Whether the way ended within the call. */
export function ended(r: Ran): r is Outcome {
  return (r as Outcome).kind !== undefined;
}

/** The outcome of `r`, for a stage that is a generator itself: `yield* outcomeOf(next(d))`. */
export function* outcomeOf(r: Ran): Generator<Yielded, Outcome, unknown> {
  return ended(r) ? r : yield* r;
}

/** The rest of a delivery's way, from the next stage on, for a delivery seen as `D`. */
export type Next<D extends DeliveryState = Scoped> = (d: D) => Ran;

/**
 * One stage of a delivery's way (`(ctx, next)`, as a middleware): it may act
 * before and after `next`, or return an {@link Outcome} without calling it.
 * A stage that may end within the call is a plain function returning {@link Ran}; one that always waits may be a
 * generator (`yield* outcomeOf(next(d))`).
 */
export type Stage<D extends DeliveryState = Scoped> = (d: D, next: Next<D>) => Ran;

/**
 * A stage that only decides whether the way goes on (the delivery limit): an
 * outcome ends it, undefined lets it go on. It does nothing after the rest,
 * so it takes no generator of its own per delivery.
 */
export type Guard<D extends DeliveryState = Scoped> = (d: D) => Outcome | undefined;

/**
 * A guard that moves a delivery on to its next view (decode: raw to decoded): an outcome ends the way, the delivery
 * seen as `To` goes on.
 */
export type Connector<From extends DeliveryState, To extends From> = (d: From) => Outcome | To;

/**
 * A stage that moves a delivery on to its next view, with work around the rest (the scope, opened inside the
 * telemetry's span): it may act before and after `next`, or end the way.
 */
export type ConnectorStage<From extends DeliveryState, To extends From> = (d: From, next: Next<To>) => Ran;

/** One entry of a stage list: a stage, or a guard. */
export type StageEntry<D extends DeliveryState = Scoped> = Stage<D> | { readonly guard: Guard<D> };

/** A connector stage taken only while `when()` holds; `otherwise` moves the delivery on instead. */
export interface ConnectorWhen<From extends DeliveryState, To extends From> {
  readonly when: () => boolean;
  readonly stage: ConnectorStage<From, To>;
  readonly otherwise: (d: From) => To;
}
