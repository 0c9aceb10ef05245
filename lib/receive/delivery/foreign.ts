/**
 * Deliveries that hold no Postage envelope, for the processor's `@JsonHandler`s and `@CloudEventHandler`s: which
 * handlers take one, and the delivery as the rest of the way sees it. The pipeline's stages read `d.body`; a foreign
 * delivery gets one made here (`type` 'json' or 'cloudevent', `name` its routing key or event type, `content` its
 * body or data), so retries, the error exchange, dedupe, the outbox, time limits, schemas, middleware and telemetry
 * treat it as they treat an envelope, with no branch of their own.
 */
import { MalformedMessage } from '../../errors.js';
import { deliveryInfo } from '../../scope/context.js';
import type { Registered, Registry } from './registry.js';
import type { Foreign, RawDelivery, Scoped } from './state.js';
import type { MessageBody } from '../../envelope/messages.js';
import { cloudEventFault, readCloudEvent, UNREAD, type CloudEventAttributes } from '../../formats/cloudevents.js';
import { isEnvelopeShaped, topicMatcher } from '../../formats/json.js';

interface Entry {
  readonly h: Registered;
  readonly matches: (key: string) => boolean;
}

interface ForeignIndex {
  readonly json: readonly Entry[];
  readonly cloud: readonly Entry[];
  /** Handlers by routing key (JSON) and by event type (CloudEvents), found once per key. */
  readonly byKey: Map<string, Registered[]>;
  readonly byType: Map<string, Registered[]>;
}

/** Routing keys and event types remembered per processor class: beyond this, lookups are not cached. */
const CACHE_LIMIT = 1024;
const NONE: Registered[] = [];
const indexes = new WeakMap<Registry, ForeignIndex | null>();

/** A processor's foreign handlers, in declaration order; null when it has none (the common case, one lookup). */
function indexOf(reg: Registry): ForeignIndex | null {
  let idx = indexes.get(reg);
  if (idx !== undefined) return idx;
  const json: Entry[] = [];
  const cloud: Entry[] = [];
  for (const list of reg.values()) {
    for (const h of list) {
      const f = h.tag.format;
      if (f === undefined) continue;
      (f === 'json' ? json : cloud).push({ h, matches: topicMatcher(h.tag.name ?? '#') });
    }
  }
  idx = json.length + cloud.length === 0 ? null : { json, cloud, byKey: new Map(), byType: new Map() };
  indexes.set(reg, idx);
  return idx;
}

function matching(entries: readonly Entry[], cache: Map<string, Registered[]>, key: string): Registered[] {
  const known = cache.get(key);
  if (known) return known;
  const found: Registered[] = [];
  for (const e of entries) if (e.matches(key)) found.push(e.h);
  const list = found.length > 0 ? found : NONE;
  if (cache.size < CACHE_LIMIT) cache.set(key, list);
  return list;
}

/** Whether a processor has handlers of foreign bodies at all. @internal */
export function takesForeign(reg: Registry): boolean {
  return indexOf(reg) !== null;
}

/**
 * Admission of a delivery that holds no envelope: taken when a CloudEvent handler takes its event type, else when a
 * JSON handler takes its routing key and its body is JSON that is not an envelope. Then `d.body`, `d.handlers` and
 * `d.foreign` are set and undefined is returned; otherwise the error that makes it unreadable (`err`, the envelope's
 * own, or one that says no handler takes it). `parsed` is the body as the inbox decoded it, or UNREAD.
 * @internal
 */
export function admitForeign(d: RawDelivery, parsed: unknown, err: unknown): unknown {
  const idx = indexOf(d.parts.registry);
  if (!idx) return err;
  const { msg } = d;
  if (parsed === UNREAD && !(err instanceof MalformedMessage && err.reason.startsWith('body is not valid JSON'))) {
    // Decoded ahead (an ordering key) or refused before parsing: read it again here.
    try {
      parsed = d.parts.source.decode(msg.content);
    } catch {
      parsed = UNREAD;
    }
  }
  if (idx.cloud.length > 0) {
    const event = readCloudEvent(msg.properties, msg.content, parsed);
    if (event) {
      const handlers = matching(idx.cloud, idx.byType, event.attributes.type);
      if (handlers.length > 0) {
        admit(d, 'cloudevent', event.attributes.type, event.data, handlers, event.attributes, undefined);
        return undefined;
      }
    } else {
      // Meant as a CloudEvent and not one: the reason names the attribute at fault, not the JSON handlers' keys.
      const fault = cloudEventFault(msg.properties, parsed);
      if (fault !== undefined) return new MalformedMessage(fault, { cause: err });
    }
  }
  if (parsed === UNREAD || isEnvelopeShaped(parsed)) return err;
  const key = msg.fields.routingKey;
  const handlers = idx.json.length > 0 ? matching(idx.json, idx.byKey, key) : NONE;
  if (handlers.length === 0)
    return new MalformedMessage(
      `plain JSON on routing key '${key}' that no @JsonHandler takes (nor is it a Postage envelope)` +
        structuredEventHint(parsed),
      { cause: err },
    );
  admit(d, 'json', key, parsed, handlers, undefined, idempotencyKey(d, handlers, parsed));
  return undefined;
}

/** What to do about a body that looks like a structured CloudEvent but came without its content type. */
function structuredEventHint(parsed: unknown): string {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return '';
  const o = parsed as Record<string, unknown>;
  if (typeof o.specversion !== 'string' || typeof o.type !== 'string') return '';
  return (
    `: it looks like a structured CloudEvent (type '${o.type}'), which must come with the content type ` +
    'application/cloudevents+json to be read as one'
  );
}

function admit(
  d: RawDelivery,
  format: Foreign['format'],
  name: string,
  content: unknown,
  handlers: Registered[],
  attributes: CloudEventAttributes | undefined,
  key: string | undefined,
): void {
  // The envelope the stages see: a message (retried, dead-lettered and deduplicated as messages are), named after its
  // key or event type; a request with reply_to is answered with the handler's value as plain JSON (see dispatch).
  d.body = {
    type: format,
    name,
    category: 'message',
    version: '2',
    fingerprint: {},
    content,
    _reserved: {},
  } as unknown as MessageBody<object>;
  d.handlers = handlers;
  d.foreign = { format, attributes, key };
}

/** The dedupe key of a message without a message id: the first of its handlers' `idempotencyKey` that gives one. */
function idempotencyKey(d: RawDelivery, handlers: Registered[], body: unknown): string | undefined {
  if (d.msg.properties.messageId) return undefined;
  for (const h of handlers) {
    const fn = h.tag.idempotencyKey;
    if (!fn) continue;
    try {
      const k = fn(body, deliveryInfo(d.msg));
      if (typeof k === 'string' && k !== '') return k;
    } catch (err) {
      d.parts.log.warn({ err }, 'idempotencyKey failed; the message is handled without deduplication');
    }
  }
  return undefined;
}

/** What a foreign handler gets after its body or data: the delivery (JSON), or the event's attributes. @internal */
export function foreignArgument(d: Scoped): unknown {
  const f = d.foreign;
  return f?.format === 'cloudevent' ? f.attributes : d.scope.info;
}
