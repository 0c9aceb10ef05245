import type { ConsumeMessage } from 'amqplib';
import type { Foreign } from '../../formats/foreign.js';
import type { Yielded } from '../../microthreads/thread.js';
import type { MessageBody } from '../messages.js';
import type { DeliveryScope } from './context.js';
import type { Outcome } from './outcome.js';
import type { Read } from './readable.js';
import type { PipelineParts } from './parts.js';
import type { Registered } from './registry.js';

const NONE: Registered[] = [];
const LEAVE: Outcome = Object.freeze({ kind: 'leave' });

/**
 * One delivery on its way through the stages: what each stage learned of it
 * that a later one needs. One class, every field set in the constructor, so
 * the stages only ever see one shape.
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
  /** The current run's answer, encoded (an RPC's result, or a message's reply). */
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

/** The rest of a delivery's way, from the next stage on. */
export type Next = (d: DeliveryState) => Generator<Yielded, Outcome, unknown>;

/**
 * One stage of a delivery's way (`(ctx, next)`, as a middleware): it may act
 * before and after `next`, or return an {@link Outcome} without calling it.
 */
export type Stage = (d: DeliveryState, next: Next) => Generator<Yielded, Outcome, unknown>;

/**
 * A stage that only decides whether the way goes on (the envelope decoded,
 * the delivery limit): an outcome ends it, undefined lets it go on. It does
 * nothing after the rest, so it takes no generator of its own per delivery.
 */
export type Guard = (d: DeliveryState) => Outcome | undefined;

/**
 * One entry of a stage list: a stage, a guard, or a stage taken only while `when()` holds (`otherwise` runs instead).
 */
export type StageEntry =
  | Stage
  | { readonly guard: Guard }
  | { readonly when: () => boolean; readonly stage: Stage; readonly otherwise: (d: DeliveryState) => void };
