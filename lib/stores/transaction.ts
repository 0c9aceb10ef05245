import { StoreError } from '../errors.js';
import { currentScope } from '../scope/context.js';
import { type HeldSend, holdingTransaction, outgoingOf, runHolding, type SendHolder } from './held.js';
import type { OutboxRelay } from './outbox-relay.js';
import type { MessageStore, StoreClient } from './store.js';

/**
 * A run's client, which refuses queries once its run has ended: a handler
 * past its time limit may still be running, and its connection is back in
 * the pool, maybe in another run's transaction. Everything else is the
 * client's own (a library that takes a node-postgres client takes this one).
 * @internal
 */
export function guardClient(db: StoreClient, what: string): { db: StoreClient; end(): void } {
  let open = true;
  const query = (...args: unknown[]): Promise<unknown> =>
    open
      ? (db.query as (...a: unknown[]) => Promise<unknown>).apply(db, args)
      : Promise.reject(
          new StoreError(
            `${what} has ended (committed, rolled back, or past its time limit): ` +
              'its database client takes no more queries',
            'ended',
          ),
        );
  const release = () => {
    throw new StoreError(`${what}'s client is released by postage-ts when the transaction ends, not by you`, 'ended');
  };
  const guarded = new Proxy(db as object, {
    get(target, prop) {
      if (prop === 'query') return query;
      if (prop === 'release') return release;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as StoreClient;
  return {
    db: guarded,
    end: () => {
      open = false;
    },
  };
}

/**
 * `store.transaction(fn)`: inside a handler of a processor with this store,
 * `fn` joins the run's transaction; inside another `store.transaction()` of
 * it, that one; otherwise a transaction of its own, whose producer sends are
 * written to the outbox and published once it commits (nothing on a rollback).
 * Resolves after the commit and the publishes (a publish that fails is left
 * to the sweeper, and does not fail the call).
 * @internal
 */
export async function runTransaction<T>(
  store: MessageStore,
  relay: () => OutboxRelay,
  fn: (db: StoreClient) => Promise<T> | T,
): Promise<T> {
  const scope = currentScope();
  if (scope?.db && scope.dbOwner === store) return fn(scope.db);
  const outer = holdingTransaction();
  if (outer && outer.owner === store) return fn(outer.db);
  const tx = await store.begin();
  const client = guardClient(tx.db, 'store.transaction()');
  const held: HeldSend[] = [];
  let open = true;
  let ended!: (committed: boolean) => void;
  const outcome = new Promise<boolean>((resolve) => (ended = resolve));
  const holder: SendHolder = {
    owner: store,
    db: client.db,
    hold(send) {
      if (open) {
        held.push(send);
        return Promise.resolve();
      }
      // Made after fn returned (work it left running): too late for the outbox, and was resolved unsent. It goes out
      // at once once the commit is known, and is refused after a rollback, as a handler's late sends are.
      return outcome.then((committed) =>
        committed
          ? send()
          : Promise.reject(
              new StoreError('not sent: the store.transaction() this send was made in has rolled back', 'ended'),
            ),
      );
    },
  };
  let keys: string[];
  let result: T;
  try {
    try {
      result = await runHolding(holder, () => fn(client.db));
    } finally {
      open = false;
    }
    keys = held.length > 0 ? await tx.send(held.map(outgoingOf), 'transaction') : [];
    client.end();
    await tx.commit();
  } catch (err) {
    client.end();
    await tx.rollback().catch(() => undefined);
    ended(false);
    throw err;
  }
  ended(true);
  await relay().relay(keys.map((key, i) => ({ key, send: held[i] })));
  return result;
}
