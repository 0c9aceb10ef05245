import { AsyncLocalStorage } from 'node:async_hooks';
import type { OutboxMessage, StoreClient } from './store.js';

/**
 * A send a producer made ready and handed to whoever holds sends (a run's
 * outbox, a `store.transaction()`): calling it publishes; `outgoing` is what a
 * database outbox writes of it, the same message id and properties.
 */
export type HeldSend = (() => Promise<void>) & { outgoing?: () => OutboxMessage };

/** A `store.transaction()` outside a handler: producer sends made inside it are held by it. @internal */
export interface SendHolder {
  readonly owner: object;
  readonly db: StoreClient;
  hold(send: HeldSend): Promise<void>;
}

/** Made at the first `store.transaction()`: on Node 20 an AsyncLocalStorage in use slows every promise. */
let holders: AsyncLocalStorage<SendHolder> | undefined;

/** The `store.transaction()` the caller runs inside, if any. @internal */
export function holdingTransaction(): SendHolder | undefined {
  return holders?.getStore();
}

/** Runs `fn` (and what it awaits) inside `holder`. @internal */
export function runHolding<T>(holder: SendHolder, fn: () => T): T {
  holders ??= new AsyncLocalStorage();
  return holders.run(holder, fn);
}

/** What the outbox writes of a held send; a send made by no producer of postage-ts cannot be written. @internal */
export function outgoingOf(send: HeldSend): OutboxMessage {
  if (!send.outgoing) throw new TypeError('a held send has no outbox record: it was not made by a GenericProducer');
  return send.outgoing();
}
