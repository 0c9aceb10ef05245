/**
 * The AsyncAPI 3.0 document of components: what processors say of themselves (`describe`: bindings and handlers,
 * with their schemas as JSON Schema) and what producers send (their eks, builders and contract). Pure: it reads
 * descriptions, never the broker; `postage asyncapi` gathers them from a module or from the running fleet.
 *
 * The shape: a channel per exchange and routing key (`is: routingKey`, what producers publish to) and per queue
 * (`is: queue`, what processors consume); a message per envelope type and name (the Postage envelope around the
 * handler's content schema), per JSON handler (the plain body) and per CloudEvent type (the `cloudEvents_` headers
 * and the data); `receive` operations for handlers and `send` operations for producers, RPCs with a reply on a
 * dynamic channel (the request's `reply_to`).
 */
import type { ProcessorDescription } from '../receive/description.js';

/** What a producer class sends, as `postage asyncapi` reads it off the class. */
export interface ProducerSketch {
  /** The class's name. */
  name: string;
  /** Its eks: where its messages go (all of them), the first where its RPCs go. */
  targets: Array<{ exchange: string; type?: string; durable?: boolean; autoDelete?: boolean; key: string }>;
  /** Its builders' and contract's names, with the JSON Schema of their parameters (and results) where known. */
  sends: Array<{
    kind: 'message' | 'rpc';
    name: string;
    params?: Record<string, unknown>;
    result?: Record<string, unknown>;
    description?: string;
  }>;
}

/** What a document is made of. */
export interface AsyncApiInput {
  title: string;
  version?: string;
  description?: string;
  processors: ProcessorDescription[];
  producers?: ProducerSketch[];
  /** Exchanges' types and flags, where known (a module's eqk and eks; describe does not say). */
  exchanges?: Record<string, { type?: string; durable?: boolean; autoDelete?: boolean }>;
  /** Queues' flags, where known. */
  queues?: Record<string, { durable?: boolean; exclusive?: boolean; autoDelete?: boolean }>;
  /** The broker, as the configuration names it (no credentials). */
  server?: { host: string; protocol: string; pathname?: string };
}

type Json = Record<string, unknown>;

/** The handlers every processor has (quit, restart, describe, ping…): machinery, not the component's API. */
const BUILT_IN = new Set(['quit', 'restart', 'describe', 'ping', 'join_group', 'leave_group']);

/**
 * AsyncAPI ids allow letters, digits, '.', '-' and '_'. A topic key's '#' becomes '__' and its '*' '_', so that
 * `orders.#` and `orders.*` (two handlers, two bindings) keep ids of their own.
 */
const id = (...parts: string[]): string =>
  parts
    .map((p) => p || 'default')
    .join('.')
    .replace(/#/g, '__')
    .replace(/[^\w.-]/g, '_');

/** What a partitioned queue's channel adds to its description. */
function partitionedNote(p: { queue: string; partitions: string[] } | undefined): string {
  if (!p) return '';
  const n = p.partitions.length;
  return (
    `; split into ${n} partitions (${p.partitions[0]} … ${p.partitions[n - 1]}) by the postage-partition-key ` +
    'header: send with _partition_key to keep one key in order'
  );
}

/** The fields of `o` that have a value. */
const defined = (o: object): Json => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

const ref = (to: string): Json => ({ $ref: to });
/** A JSON Pointer segment (`~` and `/` escaped). */
const seg = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** An embedded JSON Schema without its own `$schema` (the document's schema format applies). */
function embedded(schema: Record<string, unknown> | undefined): Json {
  if (!schema) return {};
  const { $schema, ...rest } = schema;
  void $schema;
  return rest;
}

const FINGERPRINT: Json = {
  type: 'object',
  description: 'Who sent the message (Postage fingerprint)',
  properties: Object.fromEntries(['name', 'type', 'pid', 'host', 'user', 'vhost'].map((k) => [k, { type: 'string' }])),
};

const ENVELOPE_HEADERS: Json = {
  type: 'object',
  description: 'AMQP headers postage-ts sets: the conversation a message belongs to and the message that caused it',
  properties: {
    'postage-conversation-id': { type: 'string' },
    'postage-causation-id': { type: 'string' },
    traceparent: { type: 'string', description: 'W3C trace context, where tracing is on' },
  },
};

/** The Postage envelope (version '2') around a content schema. */
function envelope(type: string, name: string, category: 'message' | 'rpc', content: Json): Json {
  return {
    type: 'object',
    required: ['type', 'name', 'category', 'version', 'fingerprint', 'content'],
    properties: {
      type: { const: type },
      name: name === '*' ? { type: 'string' } : { const: name },
      category: { const: category },
      version: { const: '2' },
      fingerprint: ref('#/components/schemas/Fingerprint'),
      content,
      _reserved: { type: 'object' },
    },
  };
}

function resultEnvelope(value: Json): Json {
  return envelope('result', '*', 'message', {
    type: 'object',
    required: ['type', 'value', 'message'],
    properties: {
      type: { enum: ['success', 'error', 'exception'] },
      value: { description: "the handler's result on success, null on error, the exception's name", ...value },
      message: { type: 'string' },
    },
  });
}

function cloudEventHeaders(type: string): Json {
  const typed = /[*#]/.test(type)
    ? { type: 'string', description: `matches ${type}` }
    : { type: 'string', const: type };
  return {
    type: 'object',
    description: 'CloudEvents 1.0 AMQP binding, binary mode (the older cloudEvents: prefix is read too)',
    required: ['cloudEvents_specversion', 'cloudEvents_id', 'cloudEvents_source', 'cloudEvents_type'],
    properties: {
      cloudEvents_specversion: { const: '1.0' },
      cloudEvents_id: { type: 'string' },
      cloudEvents_source: { type: 'string' },
      cloudEvents_type: typed,
      cloudEvents_time: { type: 'string', format: 'date-time' },
      cloudEvents_traceparent: { type: 'string' },
    },
  };
}

/** Builds the document. */
export function asyncApiDocument(input: AsyncApiInput): Json {
  const channels: Record<string, Json> = {};
  const operations: Record<string, Json> = {};
  const messages: Record<string, Json> = {};

  const channelMessages = (cid: string): Json => (channels[cid].messages ??= {}) as Json;
  /** A message on a channel: defined once under components, referred to by the channel. */
  const onChannel = (cid: string, mid: string): Json => {
    channelMessages(cid)[mid] = ref(`#/components/messages/${seg(mid)}`);
    return ref(`#/channels/${seg(cid)}/messages/${seg(mid)}`);
  };
  /** Keeps the first definition of a message, unless a later one knows its payload's schema and the first did not. */
  const define = (mid: string, m: Json, known: boolean): void => {
    const had = messages[mid];
    if (had && (had['x-postage-schema'] === true || !known)) return;
    messages[mid] = { ...m, 'x-postage-schema': known };
  };
  const routing = (
    exchange: string,
    key: string,
    type = input.exchanges?.[exchange]?.type,
    durable = input.exchanges?.[exchange]?.durable,
    autoDelete = input.exchanges?.[exchange]?.autoDelete,
  ): string => {
    const cid = id('route', exchange, key);
    channels[cid] ??= {
      address: key,
      title: `${exchange || '(default exchange)'} / ${key}`,
      bindings: {
        amqp: {
          is: 'routingKey',
          exchange: {
            name: exchange,
            ...(exchange === '' ? { type: 'default' } : type ? { type } : {}),
            ...(durable === undefined ? {} : { durable }),
            ...(autoDelete === undefined ? {} : { autoDelete }),
          },
          bindingVersion: '0.3.0',
        },
      },
    };
    return cid;
  };
  const replies = (): string => {
    channels.replies ??= {
      address: null,
      title: 'RPC replies',
      description: "Where an RPC's result goes: the request's reply_to (RabbitMQ direct reply-to, or a reply queue)",
    };
    return 'replies';
  };
  const reply = (name: string, result: Json, known: boolean): Json => {
    const mid = id('result', name);
    define(
      mid,
      {
        name: mid,
        title: `result of ${name}`,
        contentType: 'application/json',
        payload: resultEnvelope(result),
      },
      known,
    );
    const cid = replies();
    return {
      address: { location: '$message.header#/reply_to', description: "the request's AMQP reply_to property" },
      channel: ref(`#/channels/${cid}`),
      messages: [onChannel(cid, mid)],
    };
  };

  for (const d of input.processors) {
    const who = d.fingerprint.name;
    const queues = new Map<string, Array<{ exchange: string; key: string }>>();
    // A partitioned queue is told of by what its senders send to: its partitions and their hash exchange are the
    // library's wiring.
    const split = new Map((d.partitions ?? []).map((p) => [p.queue, p]));
    const inside = new Set([...split.values()].flatMap((p) => p.partitions));
    const bindings = [
      ...d.bindings.filter((b) => !inside.has(b.queue)),
      ...[...split.values()].flatMap((p) => (p.routes ?? []).map((r) => ({ ...r, queue: p.queue }))),
    ];
    for (const b of bindings) {
      const list = queues.get(b.queue) ?? [];
      list.push({ exchange: b.exchange, key: b.key });
      queues.set(b.queue, list);
    }
    for (const [queue, bound] of queues) {
      const qid = id('queue', queue);
      channels[qid] ??= {
        address: queue,
        title: `queue ${queue}`,
        description: `Consumed by ${who}; bound to ${bound
          .map((b) => `${b.exchange || '(default exchange)'} with key '${b.key}'`)
          .join(', ')}${partitionedNote(split.get(queue))}`,
        bindings: {
          amqp: {
            is: 'queue',
            queue: { name: queue, ...defined(input.queues?.[queue] ?? {}) },
            bindingVersion: '0.3.0',
          },
        },
      };
      for (const h of d.handlers) {
        if (h.type === 'command' && BUILT_IN.has(h.name)) continue;
        const known = h.schema !== undefined;
        let mid: string;
        if (h.type === 'json' && h.category === 'message') {
          mid = id('json', h.name);
          define(
            mid,
            {
              name: mid,
              title: `JSON on ${h.name}`,
              summary: 'Plain JSON (no Postage envelope) whose routing key matches the binding key',
              contentType: 'application/json',
              payload: embedded(h.schema),
            },
            known,
          );
        } else if (h.type === 'cloudevent' && h.category === 'message') {
          mid = id('cloudevent', h.name);
          define(
            mid,
            {
              name: mid,
              title: `CloudEvent ${h.name}`,
              summary: "The event's data; structured mode (application/cloudevents+json) is taken too",
              contentType: 'application/json',
              headers: cloudEventHeaders(h.name),
              payload: embedded(h.schema),
            },
            known,
          );
        } else {
          mid = id(h.type, h.name, ...(h.category === 'rpc' ? ['rpc'] : []));
          define(
            mid,
            {
              name: mid,
              title: `${h.category === 'rpc' ? 'RPC ' : ''}${h.type} ${h.name}`,
              contentType: 'application/json',
              headers: ENVELOPE_HEADERS,
              payload: envelope(h.type, h.name, h.category, h.schema ? embedded(h.schema) : { type: 'object' }),
            },
            known,
          );
        }
        const m = onChannel(qid, mid);
        // What a producer publishes on the routes into this queue reaches these handlers.
        for (const b of bound) onChannel(routing(b.exchange, b.key), mid);
        const op: Json = {
          action: 'receive',
          channel: ref(`#/channels/${seg(qid)}`),
          title: `${who} handles ${h.kind === 'stream' ? 'the stream ' : ''}${h.type} ${h.name}`,
          ...(h.description ? { description: h.description } : {}),
          messages: [m],
        };
        if (h.category === 'rpc') op.reply = reply(h.name, {}, false);
        operations[id('receive', who, queue, mid)] = op;
      }
    }
  }

  for (const p of input.producers ?? []) {
    for (const s of p.sends) {
      const mid = id('command', s.name, ...(s.kind === 'rpc' ? ['rpc'] : []));
      const content: Json = s.params
        ? { type: 'object', required: ['parameters'], properties: { parameters: embedded(s.params) } }
        : { type: 'object' };
      define(
        mid,
        {
          name: mid,
          title: `${s.kind === 'rpc' ? 'RPC ' : ''}command ${s.name}`,
          contentType: 'application/json',
          headers: ENVELOPE_HEADERS,
          payload: envelope('command', s.name, s.kind, content),
        },
        s.params !== undefined,
      );
      // Messages go to every target of the eks; an RPC to the first.
      for (const t of s.kind === 'rpc' ? p.targets.slice(0, 1) : p.targets) {
        const cid = routing(t.exchange, t.key, t.type, t.durable, t.autoDelete);
        const op: Json = {
          action: 'send',
          channel: ref(`#/channels/${seg(cid)}`),
          title: `${p.name} ${s.kind === 'rpc' ? 'calls' : 'sends'} ${s.name}`,
          ...(s.description ? { description: s.description } : {}),
          messages: [onChannel(cid, mid)],
        };
        if (s.kind === 'rpc') op.reply = reply(s.name, embedded(s.result), s.result !== undefined);
        operations[id('send', p.name, t.exchange, t.key, mid)] = op;
      }
    }
  }

  // The marker that chose between definitions is no part of the document.
  for (const m of Object.values(messages)) delete m['x-postage-schema'];
  return {
    asyncapi: '3.0.0',
    info: {
      title: input.title,
      version: input.version ?? '0.0.0',
      ...(input.description ? { description: input.description } : {}),
    },
    ...(input.server
      ? { servers: { rabbitmq: { ...input.server, description: 'RabbitMQ, as the POSTAGE_* configuration names it' } } }
      : {}),
    defaultContentType: 'application/json',
    channels,
    operations,
    components: { schemas: { Fingerprint: FINGERPRINT }, messages },
  };
}

/** A string YAML reads back as itself without quotes. */
const PLAIN = /^[A-Za-z_/$][\w./$ -]*$/;
const RESERVED = /^(true|false|null|yes|no|on|off|y|n|~)$/i;

function scalar(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  // JSON's double-quoted strings are YAML's: one escaping for everything that is not plain.
  return PLAIN.test(s) && !RESERVED.test(s) && !s.endsWith(' ') && !s.includes(' #') ? s : JSON.stringify(s);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * YAML 1.2 for JSON data (objects, arrays, strings, numbers, booleans, null): block style, two spaces, strings quoted
 * where a plain scalar would read otherwise. Small enough to need no dependency.
 */
export function toYaml(value: unknown, indent = ''): string {
  if (isObject(value)) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return `${indent}{}\n`;
    return entries
      .map(([k, v]) => {
        const key = scalar(k);
        if ((isObject(v) && Object.keys(v).length > 0) || (Array.isArray(v) && v.length > 0))
          return `${indent}${key}:\n${toYaml(v, Array.isArray(v) ? indent : `${indent}  `)}`;
        return `${indent}${key}: ${isObject(v) ? '{}' : Array.isArray(v) ? '[]' : scalar(v)}\n`;
      })
      .join('');
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return `${indent}[]\n`;
    return value
      .map((v) => {
        if ((isObject(v) && Object.keys(v).length > 0) || (Array.isArray(v) && v.length > 0)) {
          // The first line after the dash, the rest under it.
          const inner = toYaml(v, `${indent}  `);
          return `${indent}- ${inner.slice(indent.length + 2)}`;
        }
        return `${indent}- ${isObject(v) ? '{}' : Array.isArray(v) ? '[]' : scalar(v)}\n`;
      })
      .join('');
  }
  return `${indent}${scalar(value)}\n`;
}
