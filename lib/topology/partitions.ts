import { TopologyError } from '../errors.js';
import type { ExchangeObject } from './exchange.js';
import { eqkEntries, type Eqk, type QueueSpec } from './topology.js';
import { resolveExchange, type ExchangeLike } from './exchange.js';

/** The header a send's `_partition_key` travels in; the partitions' consistent-hash exchange hashes on it. */
export const PARTITION_HEADER = 'postage-partition-key';

/** The broker plugin partitions need, and how to enable it. */
export const PARTITION_PLUGIN = 'rabbitmq_consistent_hash_exchange';

/**
 * An exchange-to-exchange binding a partitioned processor makes: what its queue was bound to, now routed to its
 * partitions.
 */
export interface PartitionRoute {
  source: ExchangeLike;
  key: string;
  /** The consistent-hash exchange in front of the partitions. */
  hash: ExchangeObject;
}

/** A processor's partitioned topology: what it consumes, and the routes into it. */
export interface PartitionedTopology {
  eqk: Eqk;
  routes: PartitionRoute[];
  /** Partition queue names, per original queue. */
  partitions: Map<string, string[]>;
}

/** Most partitions a queue may be split into: each is a queue with a consumer per replica. */
export const MAX_PARTITIONS = 256;

/**
 * Splits each queue of an eqk into `n` partition queues, `QUEUE.p0` …, each
 * with single active consumer, behind a consistent-hash exchange
 * `QUEUE.partitions` that hashes on {@link PARTITION_HEADER}; the exchange the
 * queue was bound to is bound to that exchange instead, with the same key.
 * The broker routes a key to one partition and keeps one active consumer per
 * partition across every replica: nothing here elects or assigns.
 */
export function partitionTopology(eqk: Eqk, n: number): PartitionedTopology {
  if (!(Number.isInteger(n) && n >= 1 && n <= MAX_PARTITIONS))
    throw new TypeError(`partitions must be a whole number from 1 to ${MAX_PARTITIONS}, not ${String(n)}`);
  const byQueue = new Map<string, { spec: QueueSpec; hash: ExchangeObject; names: string[] }>();
  const routes: PartitionRoute[] = [];
  for (const [exchange, qks] of eqkEntries(eqk)) {
    for (const [queue, key] of qks) {
      const name = typeof queue === 'string' ? queue : queue.name;
      const flags = typeof queue === 'string' ? {} : (queue.flags ?? {});
      if (name === '')
        throw new TopologyError(
          'a partitioned processor needs named queues: its replicas share them (a server-named queue is one ' +
            "replica's own)",
        );
      if (flags.exclusive || flags.autoDelete || flags.durable === false)
        throw new TopologyError(
          `queue '${name}': partitions are shared by every replica and outlive each one: they cannot be exclusive, ` +
            'auto-delete or non-durable',
        );
      let q = byQueue.get(name);
      if (!q) {
        q = {
          spec: queue,
          hash: {
            name: `${name}.partitions`,
            type: 'x-consistent-hash',
            durable: true,
            arguments: { 'hash-header': PARTITION_HEADER },
          },
          names: Array.from({ length: n }, (_, i) => `${name}.p${i}`),
        };
        byQueue.set(name, q);
      }
      routes.push({ source: exchange, key, hash: q.hash });
    }
  }
  const out: Array<[ExchangeObject, Array<[QueueSpec, string]>]> = [];
  const partitions = new Map<string, string[]>();
  for (const [name, q] of byQueue) {
    const flags = typeof q.spec === 'string' ? {} : (q.spec.flags ?? {});
    // Weight 1 each: the hash ring splits keys evenly over the partitions.
    out.push([
      q.hash,
      q.names.map((p): [QueueSpec, string] => [
        { name: p, flags: { ...flags, arguments: { ...flags.arguments, 'x-single-active-consumer': true } } },
        '1',
      ]),
    ]);
    partitions.set(name, q.names);
  }
  return { eqk: out as unknown as Eqk, routes, partitions };
}

/** The name of an exchange as a route names it. */
export function routeSource(r: PartitionRoute): string {
  return resolveExchange(r.source).name;
}
