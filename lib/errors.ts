/**
 * Every error postage-ts throws on purpose lives here, so users can
 * `instanceof`-check one import and operators can grep one `code`.
 */

/** What a `BrokerError`'s `code` can be: each names one way talking to the broker went wrong. */
export type BrokerErrorCode =
  | 'ACCESS_REFUSED'
  | 'VHOST_REFUSED'
  | 'UNREACHABLE'
  | 'TLS'
  | 'CONNECT_FAILED'
  | 'NOT_CONNECTED'
  | 'CHANNEL_CLOSED'
  | 'CONSUMER_CANCELLED'
  | 'CHANNELS_EXHAUSTED'
  | 'CLOSED'
  | 'NACK'
  | 'UNROUTABLE'
  | 'CONFIRM_TIMEOUT'
  | 'UNCONFIRMED'
  | 'PRECONDITION_FAILED'
  | 'NOT_FOUND'
  | 'RESOURCE_LOCKED'
  | 'DECLARE_FAILED'
  | 'BROKER_ERROR';

/** What a `PostageError`'s `code` can be. */
export type PostageErrorCode =
  | BrokerErrorCode
  | 'POSTAGE_ERROR'
  | 'CONFIG_ERROR'
  | 'MALFORMED_MESSAGE'
  | 'DELIVERY_LIMIT'
  | 'HANDLER_TIMEOUT'
  | 'TOPOLOGY_ERROR'
  | 'USAGE'
  | 'VALIDATION'
  | 'STREAM'
  | 'SEND_AFTER_FAILURE'
  | 'STORE';

/** The root of every postage-ts failure: a stable `code` plus the usual `cause`. */
export class PostageError extends Error {
  readonly code: PostageErrorCode;
  constructor(message: string, code: PostageErrorCode = 'POSTAGE_ERROR', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PostageError';
    this.code = code;
  }
}

/** What a `ControlSignal`'s `code` can be. */
export type ControlSignalCode =
  | 'STOP_THREAD'
  | 'EXIT_SCHEDULER'
  | 'REJECT_MESSAGE'
  | 'REQUEUE_MESSAGE'
  | 'DEFER_MESSAGE'
  | 'ACK_AND_RESTART'
  | 'FILTER_ERROR';

/**
 * The root of the signals a thread, handler or filter throws to steer what
 * happens next (stop, exit, reject, restart, skip). They are thrown, so they
 * unwind like errors, but they are not failures: `instanceof PostageError`
 * is false for them, and nothing logs them as errors.
 */
export class ControlSignal extends Error {
  readonly code: ControlSignalCode;
  constructor(message: string, code: ControlSignalCode) {
    super(message);
    this.name = 'ControlSignal';
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
export class StopThread extends ControlSignal {
  constructor(message = 'thread stopped') {
    super(message, 'STOP_THREAD');
    this.name = 'StopThread';
  }
}

/** Thrown anywhere in a step: the scheduler finishes the round, then stops. */
export class ExitScheduler extends ControlSignal {
  constructor(message = 'scheduler exit requested') {
    super(message, 'EXIT_SCHEDULER');
    this.name = 'ExitScheduler';
  }
}

/** Thrown by a handler: the delivery is rejected without requeue. */
export class RejectMessage extends ControlSignal {
  constructor(message = 'message rejected by a handler') {
    super(message, 'REJECT_MESSAGE');
    this.name = 'RejectMessage';
  }
}

/**
 * Thrown by a handler: the delivery goes back to its queue (no retries, no
 * error exchange) to be delivered again, to this component or another. It
 * comes back redelivered and counts as a delivery: `maxDeliveries` still
 * stops a message requeued forever. An RPC requeued gets no reply; it is
 * answered when handled again.
 */
export class RequeueMessage extends ControlSignal {
  constructor(message = 'message requeued by a handler') {
    super(message, 'REQUEUE_MESSAGE');
    this.name = 'RequeueMessage';
  }
}

/**
 * Thrown by a handler: the message comes back to its queue (this queue only)
 * after `delayMs`, held by the broker (PikaBus's defer): it survives a restart
 * of the component or of the broker. The delivery is acked once the broker
 * has the delayed copy, so the copy is a new message to the broker: the
 * delivery count (`maxDeliveries`) starts again, and its
 * `postage-deferrals` header counts the defers so far. An RPC deferred gets
 * no reply now; it is answered when handled again.
 */
export class DeferMessage extends ControlSignal {
  readonly delayMs: number;
  constructor(delayMs: number, message = `message deferred by a handler for ${delayMs} ms`) {
    // The delay levels hold up to 2^32 - 1 ms (lib/topology/delay.ts).
    if (typeof delayMs !== 'number' || !Number.isInteger(delayMs) || delayMs < 0 || delayMs > 2 ** 32 - 1) {
      throw new TypeError(
        `DeferMessage needs a whole number of milliseconds from 0 to ${2 ** 32 - 1} (about 49.7 days), not ` +
          `${String(delayMs)}`,
      );
    }
    super(message, 'DEFER_MESSAGE');
    this.name = 'DeferMessage';
    this.delayMs = delayMs;
  }
}

/** Thrown by a handler: the delivery is acked, then the component restarts. */
export class AckAndRestart extends ControlSignal {
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
    super(
      `delivered ${deliveries} times, more than maxDeliveries (${limit}): each time it was not settled before its ` +
        'connection or process went down',
      'DELIVERY_LIMIT',
    );
    this.name = 'DeliveryLimitExceeded';
    this.deliveries = deliveries;
  }
}

/**
 * A handler ran past its time limit (`handlerTimeoutMs`, or the decorator's
 * `timeoutMs`): its delivery fails as any failed handler's does (retries,
 * then the error exchange or a reject), and the processor goes on.
 */
export class HandlerTimeout extends PostageError {
  readonly timeoutMs: number;
  constructor(what: string, timeoutMs: number) {
    super(
      `handler for ${what} ran longer than ${timeoutMs} ms: its delivery failed (a promise it awaits never ` +
        `settled?). Raise handlerTimeoutMs, or the handler's timeoutMs, if it needs longer`,
      'HANDLER_TIMEOUT',
    );
    this.name = 'HandlerTimeout';
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A handler decorator was put on a method (or a static `Handler` field) named
 * like a member of the processor machinery (`MicroThread`, `MessageProcessor`,
 * `GenericApplication`: `step`, `main`, `ready`, `close`, `use`…): the handler
 * would replace the member the processor itself calls. Thrown when the class
 * is defined, or at the latest when it is constructed; the message names the
 * method and suggests another name. The built-in handlers (`rpcDescribe`,
 * `msgQuit`, `msgRestart`, `rpcPing`…) are handlers, not machinery: they may
 * be overridden.
 */
export class ReservedHandlerName extends PostageError {
  /** The method (or static field) the decorator was put on. */
  readonly member: string;
  /** The class whose member it would replace, as `MicroThread.step`. */
  readonly shadows: string;
  /** A name the handler could take instead. */
  readonly suggestion: string;
  constructor(member: string, shadows: string, suggestion: string) {
    super(
      `a handler named '${member}' would replace ${shadows}, which the processor itself runs: ` +
        `name the method otherwise (for example '${suggestion}'); the messages it handles stay the same`,
      'USAGE',
    );
    this.name = 'ReservedHandlerName';
    this.member = member;
    this.shadows = shadows;
    this.suggestion = suggestion;
  }
}

/** Thrown by a `@MessageFilter` function: the handler it guards is skipped. */
export class FilterError extends ControlSignal {
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
  declare readonly code: BrokerErrorCode;
  constructor(
    message: string,
    code: BrokerErrorCode = 'BROKER_ERROR',
    options?: { cause?: unknown; amqpCode?: number; unroutable?: readonly SendTarget[] },
  ) {
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

/** One way a content failed its handler's schema: what is wrong, and where (`['parameters', 'width']`). */
export interface ValidationIssue {
  readonly message: string;
  readonly path: readonly string[];
}

/**
 * A content failed its handler's schema: the handler never ran. Not retried
 * (the same content fails the same way): a message goes to the error
 * exchange with `x-validation-issues`, an RPC caller gets a `MessageResultError`.
 */
export class ValidationError extends PostageError {
  readonly issues: readonly ValidationIssue[];
  constructor(what: string, issues: readonly ValidationIssue[]) {
    super(
      `${what} failed its schema: ` +
        `${issues.map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ')}`,
      'VALIDATION',
    );
    this.name = 'ValidationError';
    this.issues = issues;
  }
}

/**
 * An RPC stream ended without its end: the server's handler failed
 * (`reason: 'remote'`, with the remote error's `remoteName`), nothing came
 * within the idle timeout (a server gone mid-stream: `'idle'`), or the server
 * answered with one result where a stream was asked for (`'not-a-stream'`).
 */
export class StreamError extends PostageError {
  readonly reason: 'remote' | 'idle' | 'not-a-stream';
  readonly remoteName: string | undefined;
  constructor(message: string, reason: 'remote' | 'idle' | 'not-a-stream', remoteName?: string) {
    super(message, 'STREAM');
    this.name = 'StreamError';
    this.reason = reason;
    this.remoteName = remoteName;
  }
}

/**
 * A partitioned processor's `partitions` differs from the number of partition queues its queue already has on the
 * broker: keys would hash to other partitions, and their order would break. Refused at `ready()`.
 */
export class PartitionCountMismatch extends TopologyError {
  constructor(
    readonly queue: string,
    /** What the processor was given. */
    readonly expected: number,
    /** What the broker has. */
    readonly found: number,
  ) {
    super(
      `queue '${queue}' has ${found} partitions on the broker but this processor has partitions: ${expected}. ` +
        'Keys would hash to other partitions and lose their order. To change the number: stop the senders, ' +
        `let the replicas drain ${queue}.p0 … ${queue}.p${found - 1}, stop them, delete those queues and ` +
        `${queue}.partitions, then start the replicas with the new number (docs/scaling.md).`,
    );
    this.name = 'PartitionCountMismatch';
  }
}

/**
 * A processor's `store` (the database outbox and inbox) cannot work as asked:
 * `reason` says which way. `'deduplicate'`: `deduplicate` given beside
 * `store`, whose inbox does the same in the run's transaction; `'pool'`: the
 * pool cannot serve `concurrency` runs plus the relay of every processor
 * started on the store in the process; `'ended'`: a run's
 * client used after its run ended; `'unavailable'`: the database did not answer;
 * `'aborted'`: the transaction could not commit because a query in it had
 * failed (and the caller caught the error and went on): PostgreSQL rolled it back.
 */
export class StoreError extends PostageError {
  readonly reason: 'deduplicate' | 'pool' | 'ended' | 'unavailable' | 'aborted';
  constructor(message: string, reason: StoreError['reason'], options?: { cause?: unknown }) {
    super(message, 'STORE', options);
    this.name = 'StoreError';
    this.reason = reason;
  }
}
