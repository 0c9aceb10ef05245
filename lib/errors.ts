/**
 * Every error postage-ts throws on purpose lives here, so users can
 * `instanceof`-check one import and operators can grep one `code`.
 */

/** The root of every postage-ts error: a stable `code` plus the usual `cause`. */
export class PostageError extends Error {
  readonly code: string;
  constructor(message: string, code = 'POSTAGE_ERROR', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PostageError';
    this.code = code;
  }
}

/** A `POSTAGE_*` variable (or the equivalent option) holds a value that cannot be used. */
export class ConfigError extends PostageError {
  readonly variable: string;
  constructor(variable: string, message: string, options?: { cause?: unknown }) {
    super(message, 'CONFIG_ERROR', options);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

/** A received body is not a valid version-2 Postage envelope; `reason` says why. */
export class MalformedMessage extends PostageError {
  readonly reason: string;
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`Malformed message: ${reason}`, 'MALFORMED_MESSAGE', options);
    this.name = 'MalformedMessage';
    this.reason = reason;
  }
}

/** Thrown inside a microthread to end that thread alone. */
export class StopThread extends PostageError {
  constructor(message = 'thread stopped') {
    super(message, 'STOP_THREAD');
    this.name = 'StopThread';
  }
}

/** Thrown anywhere in a step: the scheduler finishes the round, then stops. */
export class ExitScheduler extends PostageError {
  constructor(message = 'scheduler exit requested') {
    super(message, 'EXIT_SCHEDULER');
    this.name = 'ExitScheduler';
  }
}

/** Thrown by a handler: the delivery is rejected without requeue. */
export class RejectMessage extends PostageError {
  constructor(message = 'message rejected by a handler') {
    super(message, 'REJECT_MESSAGE');
    this.name = 'RejectMessage';
  }
}

/** Thrown by a handler: the delivery is acked, then the component restarts. */
export class AckAndRestart extends PostageError {
  constructor(message = 'ack and restart requested') {
    super(message, 'ACK_AND_RESTART');
    this.name = 'AckAndRestart';
  }
}

/**
 * Why a delivery was taken from its handlers: it came back more often than the
 * processor's `maxDeliveries` allows (each time its connection or process went
 * down before it was settled), so it is dead-lettered instead of run again.
 */
export class DeliveryLimitExceeded extends PostageError {
  readonly deliveries: number;
  constructor(deliveries: number, limit: number) {
    super(`delivered ${deliveries} times, more than maxDeliveries (${limit}): each time it was not settled before its connection or process went down`, 'DELIVERY_LIMIT');
    this.name = 'DeliveryLimitExceeded';
    this.deliveries = deliveries;
  }
}

/** Thrown by a `@MessageFilter` function: the handler it guards is skipped. */
export class FilterError extends PostageError {
  constructor(message = 'message filtered out') {
    super(message, 'FILTER_ERROR');
    this.name = 'FilterError';
  }
}

/** An (exchange, routing key) pair a message was sent to. */
export interface SendTarget {
  exchange: string;
  key: string;
}

/** Talking to the broker failed (connect, declare, publish). `amqpCode` is the AMQP reply code when there is one. */
export class BrokerError extends PostageError {
  readonly amqpCode: number | undefined;
  /** With code `UNROUTABLE`: every target that had no queue (the others got the message). */
  readonly unroutable: readonly SendTarget[];
  constructor(message: string, code = 'BROKER_ERROR', options?: { cause?: unknown; amqpCode?: number; unroutable?: readonly SendTarget[] }) {
    super(message, code, options);
    this.name = 'BrokerError';
    this.amqpCode = options?.amqpCode;
    this.unroutable = options?.unroutable ?? [];
  }
}

/** An eks or eqk table does not have the shape postage expects. */
export class TopologyError extends PostageError {
  constructor(message: string) {
    super(message, 'TOPOLOGY_ERROR');
    this.name = 'TopologyError';
  }
}
