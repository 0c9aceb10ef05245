import type { ConsumeMessage } from 'amqplib';
import type { OutboxMessage } from '../../stores/store.js';
import type { FingerprintDict } from '../../envelope/fingerprint.js';

/**
 * The small interfaces a processor's deliveries depend on, instead of the
 * whole `GenericConsumer`: where they come from, how they are settled, the
 * confirmed copies settling may publish, and how answers go back. On a broker
 * the consumer is the source and settles, and `AmqpPorts` (amqp-ports.ts)
 * publishes the copies and the answers on its connection; `ProcessorHarness`
 * implements all four with records, no broker behind.
 */

/**
 * Where deliveries come from: bindings declared, consuming started and stopped, bodies decoded. (Not the inbox: that
 * is a store's table of messages handled, nor the intake: that is where deliveries wait for a worker.)
 */
export interface DeliverySource {
  ready(): Promise<void>;
  startConsuming(callback: (msg: ConsumeMessage) => void): Promise<void>;
  stopConsuming(): Promise<void>;
  close(): Promise<void>;
  decode(content: Buffer): unknown;
}

/** How a delivery is settled; false when its channel is gone (the broker delivers it again). */
export interface Settler {
  ack(msg: ConsumeMessage): boolean;
  reject(msg: ConsumeMessage, requeue: boolean): boolean;
  /** Resolves once the broker has processed every settle sent so far. */
  settled(): Promise<void>;
}

/** Copies a delivery's settling publishes, each confirmed by the broker before the original is acked. */
export interface ConfirmedCopies {
  /** Declares the error exchange (and its queue) before the first failure. */
  declareErrorExchange(exchange: string): Promise<void>;
  deadLetter(msg: ConsumeMessage, exchange: string, err: unknown, attempts: number): Promise<void>;
  delay(msg: ConsumeMessage, ms: number, headers: Record<string, unknown>): Promise<void>;
  /** Publishes a stored outbox message with confirms (the outbox sweeper); absent where nothing can (the harness). */
  publishStored?(message: OutboxMessage): Promise<void>;
}

/** How answers go back: RPC replies, and an RPC stream's messages and control. */
export interface Replier {
  /** Encodes a result; throws when it cannot be encoded. */
  encodeReply(result: unknown): Buffer;
  /** `encodeReply` of a bare value's result with `fingerprint`, where it can be done the quick way; else undefined. */
  encodeValue?(value: unknown, fingerprint: FingerprintDict): Buffer | undefined;
  sendReply(msg: ConsumeMessage, content: Buffer, headers?: Record<string, unknown>): void;
  /** The channel answers to stream control (its direct reply-to is consumed). */
  streamControl(): Promise<void>;
  streamSend(msg: ConsumeMessage, content: Buffer, headers: Record<string, unknown>): boolean;
  watchStream(correlationId: string, listener: (headers: Record<string, unknown> | undefined) => void): () => void;
}

export interface DeliveryPorts {
  readonly source: DeliverySource;
  readonly settler: Settler;
  readonly copies: ConfirmedCopies;
  readonly replier: Replier;
}

/** A processor class whose static `[PORTS]` makes its ports gets those instead of its consumer's (the test harness). */
export const PORTS = Symbol('postage.deliveryPorts');
