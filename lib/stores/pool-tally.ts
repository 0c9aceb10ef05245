import { StoreError } from '../errors.js';
import type { MessageStore } from './store.js';

/** One processor's share of a store's pool: its concurrent runs plus its outbox relay. */
interface Claim {
  readonly who: string;
  readonly concurrency: number;
}

/**
 * The processors started on each store in this process. Each holds a run's
 * connection per unit of `concurrency` and one for its relay and sweeper, all
 * from the same pool: checking a processor alone would accept two whose sum
 * the pool cannot serve, and their runs would then wait on each other's
 * connections (up to the store's wait for a connection, 10 s unless the pool
 * sets its own: a run's time limit starts after its BEGIN). Kept beside the store, not on it, so
 * that a store someone else wrote is counted too.
 */
const tallies = new WeakMap<MessageStore, Set<Claim>>();

/** Connections a claim holds at most: one per concurrent run, one for its relay. */
const needOf = (c: Claim): number => c.concurrency + 1;

/**
 * Counts a processor in its store's tally, or throws a `StoreError` (`reason:
 * 'pool'`) when the pool cannot serve it beside those counted already. Returns
 * how to take it out again (its close, or a ready() that failed).
 * @internal
 */
export function claimPool(store: MessageStore, who: string, concurrency: number): () => void {
  const claim: Claim = { who, concurrency };
  const claims = tallies.get(store) ?? new Set<Claim>();
  tallies.set(store, claims);
  const capacity = store.capacity;
  if (capacity !== undefined) {
    const others = [...claims];
    const need = [...others, claim].reduce((n, c) => n + needOf(c), 0);
    if (capacity < need) {
      const each = (c: Claim) => `${c.who} ${needOf(c)} (concurrency ${c.concurrency} + its relay)`;
      throw new StoreError(
        others.length === 0
          ? `the store's pool opens at most ${capacity} connection(s), and this processor needs ${need}: ` +
              `one per concurrent run (concurrency ${concurrency}) plus one for the outbox relay. ` +
              "Raise the pool's max, or lower concurrency"
          : `the store's pool opens at most ${capacity} connection(s), and the processors started on it in this ` +
              `process need ${need}: ${[...others, claim].map(each).join(', ')}. ` +
              `Raise the pool's max to ${need}, lower their concurrency, or give each its own pool and store`,
        'pool',
      );
    }
  }
  claims.add(claim);
  let held = true;
  return () => {
    if (held) claims.delete(claim);
    held = false;
  };
}
