import { AckAndRestart, BrokerError, ExitScheduler, HandlerTimeout, StoreError } from '../../errors.js';
import { type HeldSend, outgoingOf } from '../../stores/held.js';
import { isSerializationFailure, type StoreTransaction } from '../../stores/store.js';
import { guardClient } from '../../stores/transaction.js';
import type { Yielded } from '../../microthreads/thread.js';
import { MessageResultException } from '../../envelope/messages.js';
import type { Outcome } from './outcome.js';
import { encodeResult, replyOf } from './reply.js';
import { ended, outcomeOf, type Next, type Ran, type Scoped } from './state.js';

const ACK: Outcome = Object.freeze({ kind: 'ack' });

/** Outcomes after which what the handlers sent goes out: they succeeded (an exit or a restart acks too). */
export function succeeded(outcome: Outcome): boolean {
  return outcome.kind === 'ack' || outcome.kind === 'done' || outcome.kind === 'exit' || outcome.kind === 'restart';
}

/**
 * Stage (with `outbox`): what the successful run's handlers sent is
 * published, and confirmed by the broker, before the delivery is acked; a
 * failed run's sends were dropped with its scope.
 *
 * When a send fails the delivery goes back to its queue instead (handled
 * again, counted toward `maxDeliveries`): the sends that did go out will go
 * out again, which is why receivers drop duplicates by message id. A send no
 * queue takes (`UNROUTABLE`) would fail the same way every time: the delivery
 * fails at once, to the error exchange (or a reject) with that error.
 */
export function outbox(d: Scoped, next: Next): Ran {
  const ran = next(d);
  return ended(ran) ? sendHeld(d, ran) : outboxAfter(d, ran);
}

function* outboxAfter(d: Scoped, ran: Generator<Yielded, Outcome, unknown>): Generator<Yielded, Outcome, unknown> {
  return yield* outcomeOf(sendHeld(d, yield* ran));
}

/** The run's outcome, once what it sent is out: at once when it sent nothing (or failed). */
function sendHeld(d: Scoped, outcome: Outcome): Ran {
  // From now on the run's sends (work its handler left running) go out at once.
  const held = d.scope.takeHeld();
  if (held.length === 0 || !succeeded(outcome)) return outcome;
  return confirmHeld(d, outcome, held);
}

function* confirmHeld(
  d: Scoped,
  outcome: Outcome,
  held: ReadonlyArray<() => Promise<void>>,
): Generator<Yielded, Outcome, unknown> {
  const body = d.body;
  try {
    yield Promise.all(held.map((send) => send()));
    return outcome;
  } catch (err) {
    const { log, dispatch } = d.parts;
    const about = { messageType: body.type, messageName: body.name, messageId: d.scope.messageId, sends: held.length };
    if (err instanceof BrokerError && err.code === 'UNROUTABLE') {
      log.error(
        { ...about, err },
        `a message the handler for ${body.type}/${body.name} sent reaches no queue: ${err.message}; the delivery fails`,
      );
      const reply = outcome.reply
        ? replyOf(d.scope, encodeResult(dispatch, new MessageResultException(err.code, err.message)))
        : undefined;
      return dispatch.errorExchange
        ? { kind: 'deadLetter', exchange: dispatch.errorExchange, err, attempts: 1, reply }
        : { kind: 'reject', why: 'failed', err, reply };
    }
    log.error(
      { ...about, err },
      `a message its handler sent could not be published; the delivery goes back to its queue to be handled again`,
    );
    return { kind: 'requeue', reason: `a send failed: ${(err as Error)?.message ?? String(err)}` };
  }
}

/** Serialization failures (40001) and deadlocks run again as new runs, this many runs in all. */
const SERIALIZATION_RUNS = 5;
/** A database that does not answer: the delivery comes back through the broker's delays after this long. */
const UNAVAILABLE_DEFER_MS = 5_000;

/**
 * Stage (with `store`): each run in one database transaction. The inbox row
 * (the message id, for this processor) is written first: a message some run
 * committed already is acked without running its handlers. The handlers'
 * writes go through `currentDelivery().db`; what they send is held, then
 * written to the outbox in the same transaction. A run that succeeds commits,
 * the delivery is acked, and the relay publishes the run's outbox rows with
 * confirms and marks them sent; a run that fails or passes its time limit
 * rolls back (its writes, its inbox row and its sends vanish together) and
 * goes on to retries as any failed run. Sits inside the retry stage, so that
 * a retry is a new transaction.
 */
export function* transactional(d: Scoped, next: Next): Generator<Yielded, Outcome, unknown> {
  const runtime = d.parts.store;
  // In the stage list only with a store.
  if (!runtime) return yield* outcomeOf(next(d));
  const { store, relay } = runtime;
  const { log, component } = d.parts;
  const body = d.body;
  for (let run = 1; ; run++) {
    const scope = d.scope;
    const id = scope.messageId;
    let tx: StoreTransaction;
    try {
      tx = (yield store.begin()) as StoreTransaction;
    } catch (err) {
      return unavailable(d, err);
    }
    const client = guardClient(tx.db, `the run of ${body.type}/${body.name}`);
    scope.db = client.db;
    scope.dbOwner = store;
    let stage: 'inbox' | 'run' | 'commit' = 'inbox';
    try {
      if (body.category !== 'rpc' && id !== undefined && !((yield tx.receive(component, id)) as boolean)) {
        client.end();
        yield tx.rollback();
        log.info(
          { messageType: body.type, messageName: body.name, messageId: id },
          `${body.type}/${body.name} was handled already (its message id is in the inbox); dropped`,
        );
        return ACK;
      }
      stage = 'run';
      // The run's outcome, or the exit or restart it asked for.
      let ran: Outcome | ExitScheduler | AckAndRestart;
      try {
        ran = yield* outcomeOf(next(d));
      } catch (err) {
        // Exit and restart ack the delivery: what the run did commits.
        if (!(err instanceof ExitScheduler || err instanceof AckAndRestart)) throw err;
        ran = err;
      }
      stage = 'commit';
      const held = scope.takeHeld() as readonly HeldSend[];
      const keys = held.length > 0 ? ((yield tx.send(held.map(outgoingOf), component)) as string[]) : [];
      client.end();
      yield tx.commit();
      void relay.relay(keys.map((key, i) => ({ key, send: held[i] })));
      if (ran instanceof ExitScheduler || ran instanceof AckAndRestart) throw ran;
      return ran;
    } catch (err) {
      if (err instanceof ExitScheduler || err instanceof AckAndRestart) throw err;
      client.end();
      // A run past its time limit may still be in a query: its connection is closed rather than waited for.
      yield tx
        .rollback({ discard: err instanceof HandlerTimeout })
        .catch((e: unknown) => log.debug({ err: e }, 'rollback failed (the transaction is gone with its connection)'));
      if (isSerializationFailure(err) && run < SERIALIZATION_RUNS) {
        log.info(
          { messageType: body.type, messageName: body.name, messageId: id, run, code: (err as { code?: string }).code },
          `the run of ${body.type}/${body.name} met a serialization failure; running it again`,
        );
        scope.fail(err);
        d.scope = scope.rerun();
        d.answer = undefined;
        continue;
      }
      // The database failed us, not the handler: the message comes back later instead of counting as a failure.
      // A transaction the handler's own failed query aborted (it caught the error and went on) is the handler's
      // failure: it goes to retries and the error exchange, not back every few seconds for ever.
      if (stage !== 'run' && !abortedByHandler(err)) return unavailable(d, err);
      throw err;
    } finally {
      scope.db = undefined;
    }
  }
}

function abortedByHandler(err: unknown): boolean {
  return err instanceof StoreError && err.reason === 'aborted';
}

function unavailable(d: Scoped, err: unknown): Outcome {
  const body = d.body;
  d.parts.log.warn(
    { err, messageType: body.type, messageName: body.name, messageId: d.scope.messageId },
    `the store failed around the run of ${body.type}/${body.name}; ` +
      `the message comes back in ${UNAVAILABLE_DEFER_MS} ms`,
  );
  d.scope.fail(err);
  return {
    kind: 'defer',
    ms: UNAVAILABLE_DEFER_MS,
    reason: 'the store did not answer',
    headers: {},
    err,
  };
}
