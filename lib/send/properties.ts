import type { Options } from 'amqplib';
import { HEADERS, type DeliveryScope } from '../scope/context.js';
import type { SendOptions } from './send-options.js';
import { PARTITION_HEADER } from '../topology/partitions.js';

/** A send's AMQP properties, with the fields the send path sets after they are made. @internal */
export type SendProperties = Options.Publish & {
  messageId: string;
  headers?: Record<string, unknown>;
  mandatory: boolean;
  persistent: boolean;
};

/** AMQP short strings (message ids, types, header names) hold at most 255 bytes. */
const SHORTSTR = 255;

function shortstr(what: string, v: unknown): string {
  if (typeof v !== 'string' || v === '' || Buffer.byteLength(v) > SHORTSTR)
    throw new TypeError(`${what} must be a non-empty string of at most ${SHORTSTR} bytes, not ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `a string of ${Buffer.byteLength(v)} bytes`;
  if (typeof v === 'bigint') return `the bigint ${v}n`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return 'a symbol';
  return JSON.stringify(v) ?? String(v);
}

/** Refuses a header value AMQP cannot carry, naming where it is. */
function checkHeaderValue(path: string, v: unknown, depth = 0): void {
  if (depth > 32) throw new TypeError(`_headers: ${path} is nested more than 32 levels deep`);
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || Buffer.isBuffer(v)) return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v))
      throw new TypeError(`_headers: ${path} is ${v}, which AMQP cannot carry: use a finite number or a string`);
    return;
  }
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) checkHeaderValue(`${path}[${i}]`, x, depth + 1);
    return;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const [k, x] of Object.entries(v)) {
      if (Buffer.byteLength(k) > SHORTSTR)
        throw new TypeError(`_headers: a key in ${path} is longer than ${SHORTSTR} bytes`);
      checkHeaderValue(`${path}.${k}`, x, depth + 1);
    }
    return;
  }
  throw new TypeError(
    `_headers: ${path} is ${describe(v)}, which AMQP cannot carry: use a string, a number, a boolean, null, a ` +
      'Buffer, or arrays and plain objects of those',
  );
}

/**
 * The AMQP properties of one send, from its options and the delivery being
 * handled (if any): the user's headers, the conversation (its id carried on,
 * the handled message as the cause), a timestamp, and the typed properties.
 * Throws a `TypeError` naming the option for a value AMQP cannot carry.
 * @internal
 */
export function sendProperties(
  opts: SendOptions,
  scope: DeliveryScope | undefined,
  messageId: string,
  rpc: boolean,
): SendProperties {
  const id = opts._message_id === undefined ? messageId : shortstr('_message_id', opts._message_id);
  // Every send's properties start with one shape, the fields set later included: amqplib reads them per publish,
  // and one shape keeps that read fast (a copy with more fields, or fields added one by one, made it several).
  const props: SendProperties = {
    messageId: id,
    timestamp: Math.floor(Date.now() / 1000),
    // Messages are persistent; an RPC request is not (its caller waits for it, and a broker restart ends that wait
    // anyway).
    persistent: !rpc,
    mandatory: false,
    contentType: undefined,
    headers: undefined,
    // Set on an RPC request (and by _correlation_id): present from the start, so requests and messages share a shape.
    correlationId: undefined,
    replyTo: undefined,
  };
  let headers: Record<string, unknown> | undefined;
  if (opts._headers !== undefined) {
    headers = {};
    if (typeof opts._headers !== 'object' || opts._headers === null || Array.isArray(opts._headers))
      throw new TypeError(`_headers must be an object of header names to values, not ${describe(opts._headers)}`);
    for (const [k, v] of Object.entries(opts._headers)) {
      if (k === '' || Buffer.byteLength(k) > SHORTSTR)
        throw new TypeError(`_headers: a header name must be 1 to ${SHORTSTR} bytes long`);
      checkHeaderValue(k, v);
      headers[k] = v;
    }
  }
  if (opts._partition_key !== undefined) {
    const k = opts._partition_key;
    if (!((typeof k === 'string' && k !== '') || (typeof k === 'number' && Number.isFinite(k))))
      throw new TypeError(`_partition_key must be a non-empty string or a finite number, not ${describe(k)}`);
    headers ??= {};
    headers[PARTITION_HEADER] = String(k);
  }
  // A message sent while handling another carries the conversation on, and names that message as its cause.
  // One sent outside a handler starts a conversation: its own id is the conversation's (no header needed).
  if (scope) {
    headers ??= {};
    const conversation = scope.conversationId;
    if (conversation !== undefined) headers[HEADERS.conversationId] ??= conversation;
    const cause = scope.messageId;
    if (cause !== undefined) headers[HEADERS.causationId] ??= cause;
  }
  if (headers) props.headers = headers;
  if (rpc && opts._cloudevent)
    throw new TypeError(
      '_cloudevent is for messages: an RPC caller waits for a Postage result, and a CloudEvent carries no envelope',
    );
  if (opts._correlation_id !== undefined) {
    if (rpc)
      throw new TypeError('_correlation_id cannot be set on an RPC: its correlation id is how its reply is matched');
    props.correlationId = shortstr('_correlation_id', opts._correlation_id);
  }
  if (opts._type !== undefined) props.type = shortstr('_type', opts._type);
  if (opts._priority !== undefined) {
    if (!Number.isInteger(opts._priority) || opts._priority < 0 || opts._priority > 255)
      throw new TypeError(
        `_priority must be a whole number from 0 to 255 (RabbitMQ uses up to the queue's x-max-priority), not ` +
          `${describe(opts._priority)}`,
      );
    props.priority = opts._priority;
  }
  if (opts._expiration !== undefined) {
    if (!Number.isInteger(opts._expiration) || opts._expiration < 0)
      throw new TypeError(
        `_expiration must be a whole number of milliseconds, 0 or more, not ${describe(opts._expiration)}`,
      );
    props.expiration = String(opts._expiration);
  }
  return props;
}
