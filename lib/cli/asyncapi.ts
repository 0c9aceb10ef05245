/**
 * `postage asyncapi [MODULE] [--format yaml|json]`: the AsyncAPI 3.0 document of a component module, read off its
 * exports without a broker, or of the running fleet through `describe` when no module is given.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { StandardJSONSchemaV1 } from '@standard-schema/spec';
import { brokerUrls, loadConfig } from '../config.js';
import { isContract, isTypeOnly, type ContractEntry } from '../envelope/contract.js';
import { resolveExchange, type ExchangeLike } from '../topology/exchange.js';
import type { ProcessorDescription } from '../receive/description.js';
import { isProcessor, isProcessorClass, MessageProcessor } from '../receive/processor.js';
import { GenericProducer } from '../send/producer.js';
import { GenericConsumer, type ConsumerOptions } from '../receive/consumer.js';
import { eksEntries, eqkEntries, type Eqk } from '../topology/topology.js';
import { asyncApiDocument, toYaml, type AsyncApiInput, type ProducerSketch } from '../operations/asyncapi-document.js';
import { ComponentDirectory, whyNoneAnswered } from '../operations/directory.js';
import { load } from './run.js';
import { UsageError } from './usage.js';

export const ASYNCAPI_HELP = `usage: postage asyncapi [MODULE] [--format yaml|json] [--timeout SECONDS]

Prints the AsyncAPI 3.0 document of MODULE's components: the processors it
exports (instances, and classes built with no arguments) and its exported
producer classes (their eks, builders and contract), read without connecting
to a broker. Without MODULE, of the running fleet: every component that
answers describe on 'presence' within --timeout seconds (default 2); producers
are not seen there. Channels are exchanges with routing keys and queues;
operations are receive (handlers) and send (producers), RPCs with their reply;
payloads are JSON Schema where a handler's or contract's schema gives one,
inside the Postage envelope, or plain JSON and CloudEvents headers for
@JsonHandler and @CloudEventHandler. YAML by default, --format json for JSON.
Exits 1 when no component answers, 2 when MODULE exports none.`;

/** The JSON Schema of a schema's input (draft-07, AsyncAPI's), where its library can give one. */
function jsonSchemaOf(schema: unknown): Record<string, unknown> | undefined {
  if (schema === undefined || isTypeOnly(schema)) return undefined;
  const converter = (schema as Partial<StandardJSONSchemaV1>)['~standard']?.jsonSchema;
  if (typeof converter?.input !== 'function') return undefined;
  try {
    return converter.input({ target: 'draft-07' });
  } catch {
    return undefined;
  }
}

/** What a producer class sends: its eks, its builders' names, its contract's names with their schemas. */
function sketch(cls: typeof GenericProducer): ProducerSketch {
  const targets = eksEntries(cls.eks).map(([ex, key]) => {
    const e = resolveExchange(ex as ExchangeLike);
    return { exchange: e.name, type: e.type, durable: e.durable, autoDelete: e.autoDelete, key };
  });
  const sends: ProducerSketch['sends'] = [];
  const seen = new Set<string>();
  const contract = (cls as { contract?: unknown }).contract;
  if (isContract(contract)) {
    for (const [name, entry] of Object.entries(contract as Record<string, ContractEntry>)) {
      seen.add(`${entry.kind}:${name}`);
      sends.push({
        kind: entry.kind,
        name,
        params: jsonSchemaOf(entry.params),
        result: jsonSchemaOf(entry.result),
        description: entry.description,
      });
    }
  }
  for (let proto = cls.prototype; proto && proto !== GenericProducer.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      const m = /^build_(message|rpc)_(.+)$/.exec(key);
      if (!m || seen.has(`${m[1]}:${m[2]}`)) continue;
      seen.add(`${m[1]}:${m[2]}`);
      sends.push({ kind: m[1] as 'message' | 'rpc', name: m[2] });
    }
  }
  return { name: cls.name, targets, sends };
}

/** Exchanges and queues as the module's eqk and eks declare them (types, flags): what describe does not say. */
const declared: Pick<Required<AsyncApiInput>, 'exchanges' | 'queues'> = { exchanges: {}, queues: {} };

/**
 * The consumer processors get while a module is read: it keeps the eqk it was given and tells it as its bindings,
 * so `describe` reads the topology the processor would declare, without a broker.
 */
class PlanningConsumer extends GenericConsumer {
  readonly #planned: Array<{ exchange: string; key: string; queue: string }> = [];
  constructor(options: ConsumerOptions = {}) {
    super(options);
    const eqk: Eqk = options.eqk?.length ? options.eqk : (this.constructor as typeof GenericConsumer).eqk;
    for (const [ex, qks] of eqkEntries(eqk)) {
      const e = resolveExchange(ex);
      declared.exchanges[e.name] = { type: e.type, durable: e.durable, autoDelete: e.autoDelete };
      for (const [q, key] of qks) {
        const name = typeof q === 'string' ? q : q.name;
        const queue = name === '' ? '(server-named)' : name;
        if (typeof q !== 'string' && q.flags)
          declared.queues[queue] = {
            durable: q.flags.durable,
            exclusive: q.flags.exclusive,
            autoDelete: q.flags.autoDelete,
          };
        this.#planned.push({ exchange: e.name, key, queue });
      }
    }
  }
  override bindings(): Array<{ exchange: string; key: string; queue: string }> {
    return this.#planned.map((b) => ({ ...b }));
  }
}

/** What a module exports: its processors described (no broker: describe reads the instance), its producer classes. */
async function fromModule(
  path: string,
): Promise<Pick<AsyncApiInput, 'processors' | 'producers' | 'exchanges' | 'queues'>> {
  // Processors built while the module loads (its exported instances) get a consumer that only plans.
  MessageProcessor.consumerClass = PlanningConsumer;
  const mod = await load(path);
  const cjs = typeof mod.default === 'object' && mod.default !== null ? (mod.default as Record<string, unknown>) : {};
  const processors = new Set<MessageProcessor>();
  const producers = new Set<typeof GenericProducer>();
  for (const [name, v] of Object.entries({ ...cjs, ...mod })) {
    if (isProcessor(v)) processors.add(v);
    else if (isProcessorClass(v)) {
      try {
        processors.add(new (v as new () => MessageProcessor)());
      } catch (err) {
        throw new UsageError(
          `${path}: export '${name}' is a processor class that cannot be built without arguments ` +
            `(${(err as Error).message}): export an instance instead`,
        );
      }
    } else if (typeof v === 'function' && v.prototype instanceof GenericProducer)
      producers.add(v as typeof GenericProducer);
  }
  if (processors.size === 0 && producers.size === 0)
    throw new UsageError(`${path} exports no processor and no producer class to describe`);
  const described: ProcessorDescription[] = [];
  for (const p of processors) {
    const d = await p.rpcDescribe();
    // A partitioned processor's consumer declares its partitions, not the eqk: the routes say what it was bound to.
    for (const r of (d.partitions ?? []).flatMap((q) => q.routes ?? []))
      declared.exchanges[r.exchange] ??= { type: r.type };
    described.push(d);
  }
  return { processors: described, producers: [...producers].map(sketch), ...declared };
}

/** The broker as the configuration names it, without credentials. */
function server(): AsyncApiInput['server'] {
  try {
    const u = new URL(brokerUrls(loadConfig())[0]);
    return { host: u.host, protocol: u.protocol.replace(/:$/, ''), pathname: u.pathname || '/' };
  } catch {
    return undefined;
  }
}

/** The version in the current directory's package.json, as the document's. */
function packageVersion(): string | undefined {
  const file = resolve('package.json');
  if (!existsSync(file)) return undefined;
  try {
    const v = (JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown }).version;
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

export async function asyncapi(
  args: string[],
  values: Record<string, string | boolean | undefined>,
  seconds: (v: string | undefined, fallback: number, flag: string) => number,
): Promise<number> {
  const format = (values.format as string | undefined) ?? 'yaml';
  if (format !== 'yaml' && format !== 'json') throw new UsageError(`--format must be yaml or json, not '${format}'`);
  if (args.length > 1) throw new UsageError('asyncapi takes at most one MODULE');
  const path = args[0];
  let input: AsyncApiInput;
  if (path !== undefined) {
    input = {
      title: `${basename(path).replace(/\.[cm]?[jt]s$/, '')} (postage-ts components)`,
      description: `The components ${path} exports, as postage-ts reads them.`,
      version: packageVersion(),
      server: server(),
      ...(await fromModule(path)),
    };
  } else {
    const timeout = seconds(values.timeout as string | undefined, 2, 'timeout');
    const directory = await ComponentDirectory.open({ waitForBrokerMs: 0 });
    let found: ProcessorDescription[];
    try {
      found = await directory.describeAll(timeout);
    } finally {
      await directory.close();
    }
    if (found.length === 0) {
      console.error(`no component answered describe on presence within ${timeout} s: ${whyNoneAnswered()}`);
      return 1;
    }
    input = {
      title: 'postage-ts fleet',
      description: `The ${found.length} component${found.length === 1 ? '' : 's'} that answered describe.`,
      version: packageVersion(),
      server: server(),
      processors: found,
    };
  }
  const doc = asyncApiDocument(input);
  process.stdout.write(format === 'json' ? `${JSON.stringify(doc, null, 2)}\n` : toYaml(doc));
  return 0;
}
