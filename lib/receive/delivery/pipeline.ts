import type { ConsumeMessage } from 'amqplib';
import { STOP, type StepResult, type Yielded } from '../../microthreads/thread.js';
import { Intake } from './intake.js';
import { decode, deliveryLimit } from './admission.js';
import { deliveryInfo } from '../../scope/context.js';
import { dedupe } from './dedupe.js';
import { dispatch } from './dispatch.js';
import { middleware } from './middleware.js';
import { observe, type DeliveryEvent } from './observe.js';
import { outbox, transactional } from './outbox.js';
import type { PipelineParts, ProcessorMiddleware } from './parts.js';
import { retry } from './retry.js';
import { schema } from './schema.js';
import { settleStage } from './settle.js';
import {
  DeliveryState,
  ended,
  type Connector,
  type ConnectorWhen,
  type Decoded,
  type Next,
  type RawDelivery,
  type Scoped,
  type StageEntry,
} from './state.js';
import { read } from './readable.js';
import { stream } from './stream.js';
import { openScope, telemetry, telemetryOn } from './telemetry.js';
import { timeLimit } from './time-limit.js';

export type { DeliveryEvent } from './observe.js';

/**
 * A delivery's way from arrival to settle, outermost first: each stage may
 * act before and after the rest (`next`), or end the way with an outcome.
 * Registered here and nowhere else. A stage a processor does not use
 * (no idempotency store, no outbox, no schema, no middleware) is left out
 * of its list, so it costs nothing per delivery. The way has three parts,
 * each with the view of the delivery its stages are given: as it arrived,
 * decoded, and in its run's scope; two connectors lead from one to the next,
 * so that no stage can be listed where what it reads is not there yet.
 */
function wayFor(parts: PipelineParts, has: { schema: boolean; streams: boolean }): Way {
  return {
    // As it arrived (RawDelivery):
    arrived: present<RawDelivery>([
      parts.observers.size > 0 && observe, // tell observers what became of it (after the settle)
      settleStage, //   carry out the outcome: ack, reject, dead letter, defer, reply
    ]),
    decode, // → Decoded: the envelope and its handlers, or a reject as malformed
    // → Scoped: span, metrics; the first run's scope
    scope: { when: telemetryOn, stage: telemetry, otherwise: openScope },
    // In its run's scope (Scoped):
    run: present<Scoped>([
      { guard: deliveryLimit }, // too many deliveries: error exchange or reject
      has.streams && stream, //              an RPC stream is served here, for as long as its caller reads
      parts.dedupe !== undefined && dedupe, // a message handled already is acked
      parts.outbox && !parts.store && outbox, // the run's sends, confirmed before the ack
      retry, //         failures to outcomes: runs again, delayed retries, error exchange
      parts.store !== undefined && transactional, // with a store: each run one transaction (inbox, writes, outbox)
      timeLimit, //     the run's time limit, over all that follows
      has.schema && schema, //                each handler's content checked
      parts.middleware.length > 0 && middleware, // processor.use()
    ]),
    last: dispatch, // the handlers
  };
}

/** A delivery's way: its three parts and the connectors between them (see {@link wayFor}). */
interface Way {
  readonly arrived: StageEntry<RawDelivery>[];
  readonly decode: Connector<RawDelivery, Decoded>;
  readonly scope: ConnectorWhen<Decoded, Scoped>;
  readonly run: StageEntry<Scoped>[];
  readonly last: Next<Scoped>;
}

/** The stages a processor uses (an entry it does not use is `false`). */
function present<D extends DeliveryState>(stages: Array<StageEntry<D> | false>): StageEntry<D>[] {
  return stages.filter((s): s is StageEntry<D> => s !== false);
}

/** Chains stages so that each one's `next` is the rest; made once per pipeline, not per delivery. */
function chain<D extends DeliveryState>(stages: readonly StageEntry<D>[], last: Next<D>): Next<D> {
  let next = last;
  for (let i = stages.length - 1; i >= 0; i--) {
    const e = stages[i];
    const rest = next;
    if (typeof e === 'function') next = (d) => e(d, rest);
    else {
      const guard = e.guard;
      next = (d) => {
        const outcome = guard(d);
        return outcome === undefined ? rest(d) : outcome;
      };
    }
  }
  return next;
}

/** The whole way, from arrival: each part chained, joined by the connectors. */
function build(way: Way): Next<RawDelivery> {
  const run = chain(way.run, way.last);
  const { when, stage, otherwise } = way.scope;
  const scoped: Next<Decoded> = (d) => (when() ? stage(d, run) : run(otherwise(d)));
  const decode = way.decode;
  return chain(way.arrived, (d) => {
    const got = decode(d);
    return got instanceof DeliveryState ? scoped(got) : got;
  });
}

/** A stage list entry's name, for docs and specs. */
function nameOf(e: StageEntry<RawDelivery> | StageEntry<Scoped>): string {
  return typeof e === 'function' ? e.name : e.guard.name;
}

/** A way's stages by name, outermost first. */
function namesOf(way: Way): string[] {
  return [...way.arrived.map(nameOf), way.decode.name, way.scope.stage.name, ...way.run.map(nameOf), way.last.name];
}

/**
 * One processor's deliveries, from arrival to settle: the intake they wait
 * in, and the stages each goes through.
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
  /** What the processor's handlers need: a schema stage, a stream stage. */
  readonly #has: { schema: boolean; streams: boolean };
  #run: Next<RawDelivery>;
  #stopping = false;

  constructor(parts: PipelineParts) {
    this.#parts = parts;
    const has = { schema: false, streams: false };
    for (const list of parts.registry.values()) {
      for (const h of list) {
        if (h.tag.schema) has.schema = true;
        if (h.isStream) has.streams = true;
      }
    }
    this.#has = has;
    this.#run = build(wayFor(parts, has));
  }

  /** The stage list of this pipeline, by name, outermost first (docs and specs read it). */
  get stages(): string[] {
    return namesOf(wayFor(this.#parts, this.#has));
  }

  /** Adds a user middleware (the stage list then includes it). */
  use(mw: ProcessorMiddleware): void {
    if (typeof mw !== 'function')
      throw new TypeError(`processor.use() takes a function (ctx, next) => …, not ${typeof mw}`);
    this.#parts.middleware.push(mw);
    this.#run = build(wayFor(this.#parts, this.#has));
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
    // The key needs the content: read now, once (a delivery that cannot be read has no key, and goes where the decode
    // stage sends it when its turn comes).
    const got = read(this.#parts.source, msg.content);
    if ('err' in got) {
      this.intake.push({ msg, decoded: got });
      return;
    }
    const body = got.body;
    let key: unknown;
    try {
      key = orderBy(body.content, deliveryInfo(msg));
    } catch (err) {
      this.#parts.log.warn(
        { err, messageId: msg.properties.messageId },
        'orderBy failed; the delivery is handled unordered',
      );
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
      const ran = this.#run(new DeliveryState(this.#parts, p.msg, p.decoded));
      if (!ended(ran)) yield* ran;
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
    const observers = this.#parts.observers;
    const first = observers.size === 0;
    observers.add(listener);
    // The observe stage is in the list only while somebody listens.
    if (first) this.#run = build(wayFor(this.#parts, this.#has));
    return () => {
      observers.delete(listener);
      if (observers.size === 0) this.#run = build(wayFor(this.#parts, this.#has));
    };
  }
}
