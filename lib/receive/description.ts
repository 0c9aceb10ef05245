import type { StandardJSONSchemaV1 } from '@standard-schema/spec';
import { VERSION } from '../version.js';
import type { Registry } from './delivery/registry.js';
import type { FingerprintDict } from '../envelope/fingerprint.js';
import type { PartitionsDescription } from './partitions/spread.js';

/** One handler, as `describe` tells of it. */
export interface HandlerDescription {
  kind: 'message' | 'rpc' | 'stream';
  category: 'message' | 'rpc';
  type: string;
  /** `*` for a handler of every name of its type. */
  name: string;
  description?: string;
  /** The content's JSON Schema, where its schema library can produce one. */
  schema?: Record<string, unknown>;
}

/** What a processor says of itself when asked `describe`. */
export interface ProcessorDescription {
  fingerprint: FingerprintDict;
  library: { name: 'postage-ts'; version: string };
  /** Where it takes messages from: exchange, routing key, queue (its presence queue apart). */
  bindings: Array<{ exchange: string; key: string; queue: string }>;
  handlers: HandlerDescription[];
  /**
   * The queue it answers `ping` and `describe` on (`presence-exchange`, and the fanout addresses of
   * `generic-application-exchange`), where it has one of its own: a plain processor's, unless `presence: false`.
   */
  presence?: string;
  /** The queue its failed messages go to (its `errorExchange`), where it has one: what `postage errors list` reads. */
  errorQueue?: string;
  /** Deliveries it handles at once. */
  concurrency?: number;
  /**
   * With `partitions`: each queue's partition queues, those this replica
   * consumes (`activeHere`), every replica it knows of with the partitions
   * each one has (none: idle), and how many messages wait in each partition.
   */
  partitions?: PartitionsDescription[];
  /**
   * With `store`: its outbox's backlog as the last sweep saw it (rows waiting,
   * age of the oldest in ms, rows failed for good).
   */
  outbox?: { waiting: number; oldestMs: number; failed: number };
}

/** The JSON Schema of a schema's input, if its library implements Standard JSON Schema; undefined when it cannot. */
function jsonSchemaOf(schema: unknown): Record<string, unknown> | undefined {
  const converter = (schema as Partial<StandardJSONSchemaV1> | undefined)?.['~standard']?.jsonSchema;
  if (typeof converter?.input !== 'function') return undefined;
  try {
    return converter.input({ target: 'draft-2020-12' });
  } catch {
    return undefined;
  }
}

/** @internal */
export function describeProcessor(
  fingerprint: FingerprintDict,
  bindings: ProcessorDescription['bindings'],
  registry: Registry,
  errorQueue?: string,
  concurrency?: number,
): ProcessorDescription {
  const handlers: HandlerDescription[] = [];
  for (const list of registry.values()) {
    for (const h of list) {
      const d: HandlerDescription = {
        kind: h.tag.category === 'message' ? 'message' : h.isStream ? 'stream' : 'rpc',
        category: h.tag.category,
        type: h.tag.type,
        name: h.tag.name ?? '*',
      };
      if (h.tag.description !== undefined) d.description = h.tag.description;
      const schema = jsonSchemaOf(h.tag.schema);
      if (schema) d.schema = schema;
      handlers.push(d);
    }
  }
  return {
    fingerprint,
    library: { name: 'postage-ts', version: VERSION },
    bindings,
    handlers,
    ...(errorQueue ? { errorQueue } : {}),
    ...(concurrency ? { concurrency } : {}),
  };
}
