import type { ConsumeMessage } from 'amqplib';
import type { Logger } from '../../log.js';
import type { DeliverySource } from './ports.js';
import type { OutboxRelay } from '../../stores/outbox-relay.js';
import type { MessageStore } from '../../stores/store.js';
import type { FingerprintDict } from '../../envelope/fingerprint.js';
import type { IdempotencyStore } from '../../stores/idempotency.js';
import type { DeliveryInfo } from '../../scope/context.js';

export type { DeliveryEvent, MiddlewareContext, ProcessorMiddleware, RetryOptions } from './public.js';
import type { DeliveryEvent, ProcessorMiddleware, RetryOptions } from './public.js';
import type { Registry } from './registry.js';
import type { DeliveryCounter } from './deliveries.js';
import type { ConfirmedCopies, Replier, Settler } from './ports.js';

/** What a processor with `store` gives its pipeline: the store, and the relay that publishes its outbox. @internal */
export interface StoreRuntime {
  readonly store: MessageStore;
  readonly relay: OutboxRelay;
}

/** Headers a delayed retry or a defer carries, read when the copy comes back. */
export const RETRY_HEADERS = Object.freeze({
  /** Delayed retries made so far. */
  retries: 'postage-retries',
  /** Handler runs before this delivery, over every retry. */
  attempts: 'postage-attempts',
  /** The error of the last run, `Name: message`. */
  lastError: 'postage-last-error',
  /** Defers (`DeferMessage`) so far. */
  deferrals: 'postage-deferrals',
});

/** What settling needs of the processor that drives it. */
export interface SettleContext {
  readonly settler: Settler;
  readonly copies: ConfirmedCopies;
  readonly replier: Replier;
  readonly log: Logger;
  readonly errorExchange: string | undefined;
  readonly deliveries: DeliveryCounter;
  /** Runs after an `AckAndRestart` was acked and confirmed. */
  restart(): void;
}

/** What serving an RPC stream needs of the consumer (the processor gives its consumer's). */
export interface StreamServer {
  /** The channel answers to stream control (its direct reply-to is consumed). */
  control(): Promise<void>;
  send(msg: ConsumeMessage, content: Buffer, headers: Record<string, unknown>): boolean;
  watch(correlationId: string, listener: (headers: Record<string, unknown> | undefined) => void): () => void;
  /** Acks the request now: a stream is not redelivered. */
  ack(msg: ConsumeMessage): void;
}

/** What dispatching needs of the processor that drives it. */
export interface DispatchContext {
  /** `this` for handlers, and the `processor` of `Handler` classes. */
  readonly owner: object;
  readonly fingerprint: FingerprintDict;
  readonly log: Logger;
  readonly retry: RetryOptions | undefined;
  readonly errorExchange: string | undefined;
  /** Aborted when the processor closes: a wait between retries ends, the delivery is left unsettled. */
  readonly closing: AbortSignal;
  /** Encodes an RPC result; throws when it cannot be encoded. */
  encodeReply(result: unknown): Buffer;
  /**
   * A bare value's `MessageResult` with this processor's fingerprint, encoded the quick way where the encoder allows
   * (the same bytes as `encodeReply`); undefined where it does not, and `encodeReply` is used.
   */
  encodeValue?(value: unknown): Buffer | undefined;
  /** How long a run may take, unless its handler's decorator says otherwise. */
  readonly handlerTimeoutMs: number;
  /** How long a stream may wait for credit from its caller before it is cancelled. */
  readonly streamStallMs: number;
  /** What serving an RPC stream needs of the consumer. */
  readonly streams: StreamServer;
}

/** What a processor gives its pipeline, once. */
export interface PipelineParts {
  /** Where deliveries come from (its decoder reads their bodies). */
  readonly source: DeliverySource;
  readonly registry: Registry;
  readonly dispatch: DispatchContext;
  readonly settle: SettleContext;
  readonly log: Logger;
  /** The component's name, for spans and deduplication keys. */
  readonly component: string;
  readonly maxDeliveries: number;
  /** `redeliveryCount: 'header'`. */
  readonly countInHeader: boolean;
  /** Whether runs hold their sends (true with a store, whose stage writes them to its outbox table). */
  readonly outbox: boolean;
  /** With `store`: the database outbox and inbox, and its relay. */
  readonly store: StoreRuntime | undefined;
  readonly dedupe: IdempotencyStore | undefined;
  readonly orderBy: ((content: unknown, delivery: DeliveryInfo) => unknown) | undefined;
  /** `processor.use()`, in the order added. */
  readonly middleware: ProcessorMiddleware[];
  readonly observers: Set<(event: DeliveryEvent) => void>;
  /** The `category|type|name` of messages no handler took, said once each. */
  readonly unhandled: Set<string>;
}
