/**
 * The store types an application programs against, one list for both doors: the main entry (`postage-ts`) and
 * `postage-ts/postgres` re-export it whole, so a type added here reaches both.
 */
export type {
  MessageStore,
  StoreClient,
  StoreResult,
  StoreRow,
  StoreTransaction,
  OutboxMessage,
  OutboxTarget,
  StoredOutboxMessage,
  OutboxBacklog,
  SweepVerdict,
} from './store.js';
export type { OutboxSettings } from './outbox-relay.js';
