/**
 * CloudEvents over AMQP (the CloudEvents AMQP protocol binding, 1.0), on RabbitMQ's AMQP 0-9-1: the binding's
 * application properties are AMQP headers here. Binary mode: the attributes in headers prefixed `cloudEvents_` (or
 * the older `cloudEvents:`), `datacontenttype` in the content-type property, the body the data as it is. Structured
 * mode: content type `application/cloudevents+json`, the whole event in the body.
 */
import type { FingerprintDict } from '../envelope/fingerprint.js';

/** A CloudEvent's attributes, as a `@CloudEventHandler` gets them beside the data. */
export interface CloudEventAttributes {
  readonly specversion: string;
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly datacontenttype?: string;
  readonly dataschema?: string;
  readonly subject?: string;
  /** RFC 3339, as the event said it (an AMQP timestamp is turned into one). */
  readonly time?: string;
  /** Extension attributes, `traceparent` among them, by their lower-case names. */
  readonly [extension: string]: unknown;
}

/** The header prefixes of binary mode: the binding's since 1.0.2, and the one it had before (still sent by many). */
export const CE_PREFIX = 'cloudEvents_';
const OLD_PREFIX = 'cloudEvents:';
/** The content type of structured mode (JSON event format). */
export const STRUCTURED = 'application/cloudevents+json';
const REQUIRED = ['specversion', 'id', 'source', 'type'] as const;

/** An AMQP header or JSON value as an attribute's string (AMQP timestamps in seconds, byte strings as UTF-8). */
function attributeValue(name: string, v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v instanceof Date) return v.toISOString();
  if (name === 'time' && typeof v === 'number' && Number.isFinite(v)) return new Date(v * 1000).toISOString();
  return v;
}

/** Whether every required attribute is a non-empty string. */
function complete(attrs: Record<string, unknown>): attrs is Record<string, unknown> & CloudEventAttributes {
  for (const k of REQUIRED) if (typeof attrs[k] !== 'string' || attrs[k] === '') return false;
  return true;
}

/** A content type without its parameters, lower case. */
function mediaType(contentType: unknown): string {
  return typeof contentType === 'string' ? contentType.split(';')[0].trim().toLowerCase() : '';
}

function isJsonType(t: string): boolean {
  return t === 'application/json' || t === 'text/json' || t.endsWith('+json');
}

/** What was read of a delivery: `UNREAD` when its body is not JSON (or could not be decoded). @internal */
export const UNREAD: unique symbol = Symbol('postage.unread');

/**
 * The CloudEvent a delivery carries, in either mode, with its data; undefined when it carries none (or one without
 * its required attributes). `parsed` is the body as JSON, or UNREAD.
 * @internal
 */
/**
 * What is wrong with a delivery that means to be a CloudEvent (structured mode, or `cloudEvents_` headers) but that
 * `readCloudEvent` refuses: the first required attribute missing, empty or not a string. Undefined when it does not
 * mean to be one. The unreadable reason an operator reads in the error queue.
 * @internal
 */
export function cloudEventFault(
  properties: { headers?: unknown; contentType?: unknown },
  parsed: unknown,
): string | undefined {
  let get: (k: string) => unknown;
  let structured: Record<string, unknown> | undefined;
  if (mediaType(properties.contentType) === STRUCTURED) {
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      return 'a structured CloudEvent whose body is not a JSON object';
    const o = (structured = parsed as Record<string, unknown>);
    get = (k) => (Object.hasOwn(o, k) ? o[k] : undefined);
  } else {
    const h = properties.headers as Record<string, unknown> | undefined;
    if (!h || !Object.keys(h).some((k) => k.startsWith(CE_PREFIX) || k.startsWith(OLD_PREFIX))) return undefined;
    get = (k) => h[CE_PREFIX + k] ?? h[OLD_PREFIX + k];
  }
  for (const k of REQUIRED) {
    const v = get(k);
    if (v === undefined) return `a CloudEvent without its required attribute '${k}'`;
    if (typeof v !== 'string') return `a CloudEvent whose attribute '${k}' is a ${typeof v}, not a string`;
    if (v === '') return `a CloudEvent whose attribute '${k}' is empty`;
  }
  return versionFault(get('specversion')) ?? (structured ? dataFault(structured) : undefined);
}

/** The only version this reader knows: another one's attributes and data may mean something else (0.3's Base64). */
const SPECVERSION = '1.0';

function versionFault(v: unknown): string | undefined {
  return v === SPECVERSION
    ? undefined
    : `a CloudEvent of specversion '${String(v)}': this reader knows ${SPECVERSION} only`;
}

/** Base64 as RFC 4648 has it, its padding optional. */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** What is wrong with a structured event's data: Node would decode bad Base64 to other bytes, without a word. */
function dataFault(o: Record<string, unknown>): string | undefined {
  if (!Object.hasOwn(o, 'data_base64')) return undefined;
  if (Object.hasOwn(o, 'data')) return 'a structured CloudEvent with both data and data_base64';
  const b = o.data_base64;
  if (typeof b !== 'string' || !BASE64.test(b) || b.replace(/=+$/, '').length % 4 === 1)
    return `a structured CloudEvent whose data_base64 is not Base64 (${typeof b === 'string' ? 'a string with other characters' : `a ${b === null ? 'null' : typeof b}`})`;
  return undefined;
}

export function readCloudEvent(
  properties: { headers?: unknown; contentType?: unknown },
  content: Buffer,
  parsed: unknown,
): { attributes: CloudEventAttributes; data: unknown } | undefined {
  const media = mediaType(properties.contentType);
  if (media === STRUCTURED) {
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    // No prototype: a '__proto__' key in the body is an attribute like any other.
    const attrs: Record<string, unknown> = Object.create(null);
    let data: unknown;
    for (const [k, v] of Object.entries(parsed)) {
      if (k === 'data') data = v;
      else if (k === 'data_base64') data = typeof v === 'string' ? Buffer.from(v, 'base64') : v;
      else attrs[k] = attributeValue(k, v);
    }
    if (!complete(attrs) || versionFault(attrs.specversion) || dataFault(parsed as Record<string, unknown>))
      return undefined;
    return { attributes: Object.freeze(attrs), data };
  }
  const headers = properties.headers as Record<string, unknown> | undefined;
  if (!headers) return undefined;
  let attrs: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(headers)) {
    const prefix = k.startsWith(CE_PREFIX) ? CE_PREFIX : k.startsWith(OLD_PREFIX) ? OLD_PREFIX : undefined;
    if (prefix === undefined) continue;
    const name = k.slice(prefix.length).toLowerCase();
    (attrs ??= Object.create(null) as Record<string, unknown>)[name] ??= attributeValue(name, v);
  }
  if (!attrs) return undefined;
  if (media !== '') attrs.datacontenttype = properties.contentType;
  if (!complete(attrs) || versionFault(attrs.specversion)) return undefined;
  let data: unknown;
  if (content.length === 0) data = undefined;
  else if (isJsonType(media) || media === '') {
    // JSON data that does not parse is no event a handler can take (unreadable); untyped data that is not JSON is
    // handed over as the bytes it is.
    if (parsed !== UNREAD) data = parsed;
    else if (media === '') data = content;
    else return undefined;
  } else if (media.startsWith('text/')) data = content.toString('utf8');
  else data = content;
  return { attributes: Object.freeze(attrs), data };
}

/** What `_cloudevent` may say: `true`, or the event's `type` and `source` instead of those derived. */
export type CloudEventSendOption = boolean | { type?: string; source?: string };

/** The source of the CloudEvents a component sends: its host and name, from its fingerprint. @internal */
export function sourceOf(fp: FingerprintDict): string {
  return `postage://${encodeURIComponent(fp.host ?? 'localhost')}/${encodeURIComponent(fp.name)}`;
}

function optionText(what: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '' || Buffer.byteLength(v) > 65_535)
    throw new TypeError(`_cloudevent.${what} must be a non-empty string, not ${JSON.stringify(v) ?? String(v)}`);
  return v;
}

/**
 * Turns a send into a binary-mode CloudEvent: its properties get the `cloudEvents_` attributes (`id` the message
 * id, `source` from the fingerprint, `type` given or the message's name) and the data's content type; the body
 * returned is the message's parameters (or its content) as JSON, with no envelope around it.
 * @internal
 */
export function asCloudEvent(
  body: object,
  option: Exclude<CloudEventSendOption, false>,
  props: { messageId: string; headers?: Record<string, unknown>; contentType?: string },
  fp: FingerprintDict,
): Buffer {
  if (option !== true && (typeof option !== 'object' || option === null || Array.isArray(option)))
    throw new TypeError(`_cloudevent must be true or { type?, source? }, not ${JSON.stringify(option)}`);
  const given = option === true ? {} : option;
  for (const k of Object.keys(given))
    if (k !== 'type' && k !== 'source') throw new TypeError(`_cloudevent takes type and source, not '${k}'`);
  const envelope = body as { name?: unknown; content?: unknown };
  const content = envelope.content as { parameters?: unknown } | undefined;
  const data =
    typeof content === 'object' && content !== null && 'parameters' in content ? content.parameters : content;
  const headers = (props.headers ??= {});
  headers[`${CE_PREFIX}specversion`] = '1.0';
  headers[`${CE_PREFIX}id`] = props.messageId;
  headers[`${CE_PREFIX}source`] = optionText('source', given.source) ?? sourceOf(fp);
  const type = optionText('type', given.type) ?? (typeof envelope.name === 'string' ? envelope.name : undefined);
  if (type === undefined || type === '')
    throw new TypeError('_cloudevent: this message has no name to make its type of: give { type }');
  headers[`${CE_PREFIX}type`] = type;
  headers[`${CE_PREFIX}time`] = new Date().toISOString();
  props.contentType = 'application/json';
  return Buffer.from(JSON.stringify(data === undefined ? null : data));
}

/**
 * A CloudEvent's trace context goes in its `traceparent` (and `tracestate`) extension attributes too (the
 * CloudEvents distributed tracing extension), once the send's own trace headers are known.
 * @internal
 */
export function carryTrace(headers: Record<string, unknown>): void {
  if (typeof headers.traceparent === 'string') headers[`${CE_PREFIX}traceparent`] ??= headers.traceparent;
  if (typeof headers.tracestate === 'string') headers[`${CE_PREFIX}tracestate`] ??= headers.tracestate;
}
