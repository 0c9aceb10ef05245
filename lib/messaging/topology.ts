import type { Channel } from 'amqplib';
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

/** Producer side: `[[Exchange, routingKey], …]`; the first entry is the default (RPC) exchange. */
export type Eks = ReadonlyArray<readonly [ExchangeLike, string]>;

/** Consumer side: `[[Exchange, [[queue, key], …]], …]`. */
export type Eqk = ReadonlyArray<readonly [ExchangeLike, ReadonlyArray<readonly [QueueSpec, string]>]>;

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
