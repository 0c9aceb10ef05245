import type { CloudEventSendOption } from '../formats/cloudevents.js';
import { Message } from '../envelope/messages.js';
import type { Eks } from '../topology/topology.js';

/** The trailing options object of `message_NAME` / `rpc_NAME`: every key starts with `_`. */
export interface SendOptions {
  /** Routing key on the default (first) exchange. */
  _key?: string;
  /** Exchanges and keys to send to instead of the producer's eks (`_key` is then ignored). */
  _eks?: Eks;
  /** Seconds to wait for an RPC reply before sending again. @default 30 */
  _timeout?: number;
  /** How many times an unanswered RPC is sent again. @default 4 */
  _max_retry?: number;
  /** Return the reply queue's name instead of waiting (collect with `consumeRpc`). */
  _queue_only?: boolean;
  /**
   * Whether a message no queue takes is an error (`UNROUTABLE`). By default
   * commands and RPCs must reach a queue, while statuses, results and other
   * events are publish/subscribe: nobody listening is fine.
   * @default the producer's `mandatory`, else true for commands and RPCs only
   */
  _mandatory?: boolean;
  /** AMQP headers to send (values: strings, numbers, booleans, null, Buffers, arrays and plain objects of those). */
  _headers?: Record<string, unknown>;
  /** Milliseconds the message may wait in a queue before the broker drops (or dead-letters) it: AMQP `expiration`. */
  _expiration?: number;
  /** AMQP `priority`, 0 to 255 (a queue honours it up to its `x-max-priority`). */
  _priority?: number;
  /** AMQP `correlation-id` (messages only: an RPC's is how its reply is matched). */
  _correlation_id?: string;
  /** AMQP `message-id`; one is made when not given (it must be unique: returns are matched by it). */
  _message_id?: string;
  /** AMQP `type`. */
  _type?: string;
  /**
   * Milliseconds the broker holds the message before routing it (up to about
   * 49.7 days). The broker holds it, not the sender: it arrives even if the
   * sender exits, and across a broker restart; never early, and late by a few
   * ms per bit set in the delay. The send resolves once the broker has it;
   * whether a queue takes it is known only when it is due (a delayed send is
   * never `UNROUTABLE`). Not with `_expiration`, nor to the default exchange.
   */
  _delay?: number;
  /**
   * Inside a handler, send now instead of with the handler's outcome: by
   * default a processor holds what its handlers send until they succeed
   * (and drops it when they fail). `false` sends at once, whatever happens next.
   * @default true
   */
  _outbox?: boolean;
  /** `rpcStream_NAME`: how many items the server may send before the caller takes them. @default 64 */
  _window?: number;
  /**
   * Which key the message belongs to, for a partitioned processor
   * (`partitions`): the broker routes every message of one key to the same
   * partition, where one replica at a time handles them, in order. A string or
   * a finite number (sent as its string). A message without one goes to one
   * partition, the same for every keyless message.
   */
  _partition_key?: string | number;
  /**
   * Sends the message as a CloudEvent (the CloudEvents AMQP binding, binary mode), for consumers that read
   * CloudEvents and no Postage envelopes: the body is the message's parameters as plain JSON, and the attributes
   * travel in `cloudEvents_` headers: `id` the message id, `source` the sender's (`postage://HOST/NAME`), `type`
   * the one given or the message's name, `time` now, and `traceparent` when the send has one. Messages only.
   * @example await producer.message_placed({ id: 7 }, { _cloudevent: { type: 'com.example.order.placed' } })
   */
  _cloudevent?: CloudEventSendOption;
}

/** Every send option there is; anything else starting with `_` is a typo. */
const SEND_OPTIONS: ReadonlySet<string> = new Set(
  Object.keys({
    _key: true,
    _eks: true,
    _timeout: true,
    _max_retry: true,
    _queue_only: true,
    _mandatory: true,
    _headers: true,
    _expiration: true,
    _priority: true,
    _correlation_id: true,
    _message_id: true,
    _type: true,
    _delay: true,
    _outbox: true,
    _window: true,
    _partition_key: true,
    _cloudevent: true,
  } satisfies Record<keyof SendOptions, true>),
);

/**
 * What a trailing argument's keys make it: `'options'` when every key is a
 * send option, `'underscored'` when every key starts with `_` but some are
 * not options, undefined for anything else (not a plain object, no keys, a
 * key without `_`). One pass, no array of keys: this runs on every send.
 */
function optionsKind(v: unknown): 'options' | 'underscored' | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Message) return undefined;
  let keys = 0;
  let known = true;
  for (const k in v) {
    if (!Object.hasOwn(v, k)) continue;
    if (k.charCodeAt(0) !== 95 /* _ */) return undefined;
    keys++;
    if (known && !SEND_OPTIONS.has(k)) known = false;
  }
  if (keys === 0) return undefined;
  return known ? 'options' : 'underscored';
}

/**
 * Takes the trailing send options off `args`. `payloads` is how many leading
 * arguments may be payloads (a builder's parameters; one for a name without a
 * builder). Past them, an object of `_` keys is options, and a key that is no
 * option is an error. Where a payload may stand, it is options only when every
 * key is a send option; one with none (a MongoDB `{ _id: 42 }`) is the payload,
 * and one with both is refused rather than half dropped.
 * @internal
 */
export function takeSendOptions(args: unknown[], payloads: number): SendOptions {
  const last = args[args.length - 1];
  const kind = args.length === 0 ? undefined : optionsKind(last);
  if (kind === undefined) return {};
  if (kind === 'options') {
    args.pop();
    return last as SendOptions;
  }
  // Some keys are no send option: past the payloads a typo, where a payload may stand the payload itself, or both
  // mixed.
  const keys = Object.keys(last as object);
  const unknown = keys.filter((k) => !SEND_OPTIONS.has(k));
  const list = (ks: string[]) => ks.map((k) => `'${k}'`).join(', ');
  if (args.length > payloads)
    throw new TypeError(
      `unknown send option${unknown.length > 1 ? 's' : ''} ${list(unknown)}: the options are ` +
        `${[...SEND_OPTIONS].join(', ')}`,
    );
  if (unknown.length === keys.length) return {};
  throw new TypeError(
    `an argument mixes send options (${list(keys.filter((k) => SEND_OPTIONS.has(k)))}) with keys that are none ` +
      `(${list(unknown)}): ` +
      'if it is the payload, pass the options after it; if it is options, the options are ' +
      `${[...SEND_OPTIONS].join(', ')}`,
  );
}
