import type { Channel } from 'amqplib';
import { TopologyError } from '../errors.js';
import { resolveExchange, type ExchangeLike } from './exchange.js';

/** Queue flags in an eqk entry. Defaults are safe ones: a durable queue that outlives its consumers. */
export interface QueueFlags {
  /** @default true */
  durable?: boolean;
  /** @default false */
  exclusive?: boolean;
  /** @default false */
  autoDelete?: boolean;
  /** `x-…` arguments, e.g. `{ 'x-queue-type': 'quorum' }`. */
  arguments?: Record<string, unknown>;
}

/** A queue in an eqk: a name, or a name with flags. `''` asks the broker for a fresh exclusive queue. */
export type QueueSpec = string | { name: string; flags?: QueueFlags };

/**
 * Producer side: `[[Exchange, routingKey], …]`; the first entry is the default (RPC) exchange.
 * Typed loosely so that `static eks = [[PingExchange, 'ping']]` compiles without `as const`;
 * the shape is checked when the producer connects.
 */
export type Eks = ReadonlyArray<readonly [ExchangeLike, string] | ReadonlyArray<ExchangeLike | string>>;

/** Consumer side: `[[Exchange, [[queue, key], …]], …]`, loosely typed as `Eks` is, checked on use. */
export type Eqk = ReadonlyArray<
  readonly [ExchangeLike, ReadonlyArray<readonly [QueueSpec, string]>] | ReadonlyArray<ExchangeLike | ReadonlyArray<ReadonlyArray<QueueSpec>>>
>;

export type EksEntry = readonly [ExchangeLike, string];
export type EqkEntry = readonly [ExchangeLike, ReadonlyArray<readonly [QueueSpec, string]>];

const isExchange = (v: unknown): v is ExchangeLike =>
  typeof v === 'function' || (typeof v === 'object' && v !== null && typeof (v as { name?: unknown }).name === 'string');
const isQueue = (v: unknown): v is QueueSpec => typeof v === 'string' || (typeof v === 'object' && v !== null && typeof (v as { name?: unknown }).name === 'string');

/** Checks an eks table and returns its entries; a wrong shape throws naming the entry. */
export function eksEntries(eks: Eks): EksEntry[] {
  return eks.map((e, i) => {
    if (e.length !== 2 || !isExchange(e[0]) || typeof e[1] !== 'string') {
      throw new TopologyError(`eks entry ${i} must be [Exchange, routingKey]`);
    }
    return [e[0], e[1]] as const;
  });
}

/** Checks an eqk table and returns its entries; a wrong shape throws naming the entry. */
export function eqkEntries(eqk: Eqk): EqkEntry[] {
  return eqk.map((e, i) => {
    const [ex, qks] = e as readonly unknown[];
    if (e.length !== 2 || !isExchange(ex) || !Array.isArray(qks)) throw new TopologyError(`eqk entry ${i} must be [Exchange, [[queue, key], …]]`);
    const pairs = qks.map((qk: unknown, j: number) => {
      if (!Array.isArray(qk) || qk.length !== 2 || !isQueue(qk[0]) || typeof qk[1] !== 'string') {
        throw new TopologyError(`eqk entry ${i}, binding ${j} must be [queue, routingKey]`);
      }
      return [qk[0], qk[1]] as const;
    });
    return [ex, pairs] as const;
  });
}

export async function declareExchange(ch: Channel, ex: ExchangeLike): Promise<string> {
  const r = resolveExchange(ex);
  // The default exchange ('') cannot be declared.
  if (r.name === '') return r.name;
  if (r.passive) await ch.checkExchange(r.name);
  else await ch.assertExchange(r.name, r.type, { durable: r.durable, autoDelete: r.autoDelete, arguments: r.arguments });
  return r.name;
}

/** Declares a queue and returns its real name (server-named when `name` is ''). */
export async function declareQueue(ch: Channel, spec: QueueSpec, extra?: QueueFlags): Promise<string> {
  const name = typeof spec === 'string' ? spec : spec.name;
  const flags = { ...(typeof spec === 'string' ? {} : spec.flags), ...extra };
  const anonymous = name === '';
  const ok = await ch.assertQueue(name, {
    durable: flags.durable ?? !anonymous,
    exclusive: flags.exclusive ?? anonymous,
    autoDelete: flags.autoDelete ?? anonymous,
    arguments: flags.arguments,
  });
  return ok.queue;
}
