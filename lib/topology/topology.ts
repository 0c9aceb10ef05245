import type { Declaration } from '../transport/topology-registry.js';
import type { Channel } from 'amqplib';
import { BrokerError, TopologyError } from '../errors.js';
import { resolveExchange, type ExchangeLike } from './exchange.js';
import { config } from '../config.js';

/** Queue flags in an eqk entry. Defaults are safe ones: a durable queue that outlives its consumers. */
export interface QueueFlags {
  /** @default true */
  durable?: boolean;
  /** @default false */
  exclusive?: boolean;
  /** @default false */
  autoDelete?: boolean;
  /** `x-…` arguments, e.g. `{ 'x-max-length': 1000 }`. */
  arguments?: Record<string, unknown>;
  /**
   * The queue's type (`x-queue-type`). Quorum queues survive the loss of a
   * node and count deliveries; they, and streams, are durable and cannot be
   * exclusive or auto-delete. @default POSTAGE_QUEUE_TYPE for durable named queues, else the broker's (classic)
   */
  queueType?: QueueType;
  /** One consumer at a time takes the queue's messages, the others standing by (`x-single-active-consumer`). */
  singleActiveConsumer?: boolean;
  /** @deprecated Python Postage's spelling of `autoDelete`, accepted for ported code. */
  auto_delete?: boolean;
}

/** The flags postage-ts knows; any other key is refused, naming the spelling to use. */
/**
 * RabbitMQ's direct reply-to pseudo-queue: consumed (no ack) on a channel, its generated names route answers back to
 * that channel.
 */
export const REPLY_TO = 'amq.rabbitmq.reply-to';

const QUEUE_FLAGS = new Set([
  'durable',
  'exclusive',
  'autoDelete',
  'arguments',
  'auto_delete',
  'queueType',
  'singleActiveConsumer',
]);

export type QueueType = 'classic' | 'quorum' | 'stream';
const QUEUE_TYPES: readonly QueueType[] = ['classic', 'quorum', 'stream'];

/**
 * The arguments a queue is declared with, from its flags (and the configured
 * default type), refusing what its type cannot be before the broker does.
 * @internal
 */
export function queueArguments(
  name: string,
  flags: QueueFlags & { durable: boolean; exclusive: boolean; autoDelete: boolean },
  defaultType: QueueType | undefined,
): Record<string, unknown> | undefined {
  const args: Record<string, unknown> = { ...flags.arguments };
  const given = args['x-queue-type'] as string | undefined;
  if (flags.queueType !== undefined && !QUEUE_TYPES.includes(flags.queueType))
    throw new TopologyError(
      `queue '${name}': queueType '${String(flags.queueType)}' is none of ${QUEUE_TYPES.join(', ')}`,
    );
  if (flags.queueType !== undefined && given !== undefined && given !== flags.queueType)
    throw new TopologyError(
      `queue '${name}': queueType '${flags.queueType}' and arguments x-queue-type '${given}' disagree: keep queueType`,
    );
  // The configured default applies to queues it can apply to: durable, named, neither exclusive nor auto-delete.
  const fits = name !== '' && flags.durable && !flags.exclusive && !flags.autoDelete;
  const type = flags.queueType ?? (given as QueueType | undefined) ?? (fits ? defaultType : undefined);
  if (type === 'quorum' || type === 'stream') {
    const wrong = [
      !flags.durable && 'non-durable',
      flags.exclusive && 'exclusive',
      flags.autoDelete && 'auto-delete',
      name === '' && 'server-named',
    ].filter(Boolean);
    if (wrong.length > 0)
      throw new TopologyError(
        `queue '${name}': a ${type} queue cannot be ${wrong.join(', ')}: drop those flags, or use queueType 'classic'`,
      );
  }
  if (type !== undefined && type !== 'classic') args['x-queue-type'] = type;
  else if (type === 'classic' && given !== undefined) args['x-queue-type'] = 'classic';
  if (flags.singleActiveConsumer) args['x-single-active-consumer'] = true;
  return Object.keys(args).length > 0 ? args : undefined;
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
  | readonly [ExchangeLike, ReadonlyArray<readonly [QueueSpec, string]>]
  | ReadonlyArray<ExchangeLike | ReadonlyArray<ReadonlyArray<QueueSpec>>>
>;

export type EksEntry = readonly [ExchangeLike, string];
export type EqkEntry = readonly [ExchangeLike, ReadonlyArray<readonly [QueueSpec, string]>];

const isExchange = (v: unknown): v is ExchangeLike =>
  typeof v === 'function' ||
  (typeof v === 'object' && v !== null && typeof (v as { name?: unknown }).name === 'string');
const isQueue = (v: unknown): v is QueueSpec =>
  typeof v === 'string' || (typeof v === 'object' && v !== null && typeof (v as { name?: unknown }).name === 'string');

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
    if (e.length !== 2 || !isExchange(ex) || !Array.isArray(qks))
      throw new TopologyError(`eqk entry ${i} must be [Exchange, [[queue, key], …]]`);
    const pairs = qks.map((qk: unknown, j: number) => {
      if (!Array.isArray(qk) || qk.length !== 2 || !isQueue(qk[0]) || typeof qk[1] !== 'string') {
        throw new TopologyError(`eqk entry ${i}, binding ${j} must be [queue, routingKey]`);
      }
      return [qk[0], qk[1]] as const;
    });
    return [ex, pairs] as const;
  });
}

/** The AMQP reply code of a channel error from amqplib, when it has one. @internal */
export function amqpCodeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The broker's own reply text out of an amqplib channel error. @internal */
export function brokerSaid(err: unknown): string {
  return String((err as Error)?.message ?? err).replace(/^.*?with message "(.*)"$/s, '$1');
}

/**
 * A broker refusal while declaring, as one `BrokerError` that says what to
 * do, whoever declared (producer or consumer). @internal
 */
export function declareError(err: unknown, kind: 'exchange' | 'queue', name: string): BrokerError {
  const code = amqpCodeOf(err);
  const said = brokerSaid(err);
  const what = `${kind} '${name}'`;
  if (code === 406) {
    const remove = kind === 'queue' ? `rabbitmqctl delete_queue ${name}` : `rabbitmqadmin delete exchange name=${name}`;
    return new BrokerError(
      `cannot declare ${what}: ${said}. It exists with other flags or arguments: declare it with the same ones, or ` +
        `delete it first (${remove}; add -p VHOST outside the default vhost).`,
      'PRECONDITION_FAILED',
      { cause: err, amqpCode: 406 },
    );
  }
  if (code === 404) {
    return new BrokerError(
      `cannot declare ${what}: ${said}. A passive declaration needs it to exist already: start the component that ` +
        'declares it first.',
      'NOT_FOUND',
      { cause: err, amqpCode: 404 },
    );
  }
  if (code === 403) {
    return new BrokerError(
      `cannot declare ${what}: ${said}. The user may not configure it: grant it with rabbitmqctl set_permissions.`,
      'ACCESS_REFUSED',
      { cause: err, amqpCode: 403 },
    );
  }
  if (/unknown exchange type 'x-consistent-hash'/.test(said)) {
    // A partitioned processor's exchange: the broker routes keys to partitions with a plugin it ships but does not
    // enable.
    return new BrokerError(
      `cannot declare ${what}: ${said}. Partitions route by key with RabbitMQ's consistent-hash exchange, a plugin ` +
        'it ships but does not enable: rabbitmq-plugins enable rabbitmq_consistent_hash_exchange (on every node of a ' +
        'cluster).',
      'DECLARE_FAILED',
      { cause: err, amqpCode: code },
    );
  }
  return new BrokerError(`cannot declare ${what}: ${said}`, 'DECLARE_FAILED', { cause: err, amqpCode: code });
}

export async function declareExchange(ch: Channel, ex: ExchangeLike): Promise<string> {
  const r = resolveExchange(ex);
  // The default exchange ('') cannot be declared.
  if (r.name === '') return r.name;
  try {
    if (r.passive) await ch.checkExchange(r.name);
    else
      await ch.assertExchange(r.name, r.type, { durable: r.durable, autoDelete: r.autoDelete, arguments: r.arguments });
  } catch (err) {
    const e = declareError(err, 'exchange', r.name);
    // Without the plugin, RabbitMQ ends the whole connection (503) and the channel only hears that it ended.
    if (r.type === 'x-consistent-hash' && !/rabbitmq-plugins enable/.test(e.message)) {
      throw new BrokerError(
        `${e.message}. The broker ended the connection on a consistent-hash exchange (a partitioned processor's): ` +
          'most likely it lacks the plugin partitions need, which RabbitMQ ships but does not enable: ' +
          'rabbitmq-plugins enable rabbitmq_consistent_hash_exchange (on every node of a cluster).',
        e.code,
        { cause: err, amqpCode: e.amqpCode },
      );
    }
    throw e;
  }
  return r.name;
}

/**
 * An exchange as the connection's topology registry holds it: keyed by all it is declared with, so a differing
 * redeclaration still reaches the broker (and is refused there).
 */
export function exchangeDeclaration(ex: ExchangeLike): Declaration {
  const r = resolveExchange(ex);
  return {
    key: `exchange ${JSON.stringify([r.name, r.type, r.durable, r.autoDelete, r.passive, r.arguments ?? null])}`,
    declare: (ch) => declareExchange(ch, r).then(() => undefined),
  };
}

/** Declares a queue and returns its real name (server-named when `name` is ''). */
export async function declareQueue(ch: Channel, spec: QueueSpec, extra?: QueueFlags): Promise<string> {
  const name = typeof spec === 'string' ? spec : spec.name;
  const flags = { ...(typeof spec === 'string' ? {} : spec.flags), ...extra };
  for (const key of Object.keys(flags)) {
    if (!QUEUE_FLAGS.has(key)) {
      const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      throw new TopologyError(
        `queue '${name}': unknown flag '${key}'${QUEUE_FLAGS.has(camel) ? `: write it '${camel}'` : ''} (the flags ` +
          'are durable, exclusive, autoDelete, arguments)',
      );
    }
  }
  if (flags.auto_delete !== undefined && flags.autoDelete !== undefined && flags.auto_delete !== flags.autoDelete) {
    throw new TopologyError(
      `queue '${name}' sets both autoDelete and Postage's auto_delete: keep autoDelete, the TypeScript spelling`,
    );
  }
  flags.autoDelete ??= flags.auto_delete;
  const anonymous = name === '';
  const resolved = {
    ...flags,
    durable: flags.durable ?? !anonymous,
    exclusive: flags.exclusive ?? anonymous,
    autoDelete: flags.autoDelete ?? anonymous,
  };
  const args = queueArguments(name, resolved, config().queueType);
  try {
    const ok = await ch.assertQueue(name, {
      durable: resolved.durable,
      exclusive: resolved.exclusive,
      autoDelete: resolved.autoDelete,
      arguments: args,
    });
    return ok.queue;
  } catch (err) {
    throw declareError(err, 'queue', name);
  }
}

/**
 * Headers a failed delivery's copy carries in the error exchange: written where it is dead-lettered (the delivery
 * ports), read where an operator lists and replays the error queue (operations/error-queue.ts).
 */
export const ERROR_HEADERS = Object.freeze({
  /** The error's name (a broker's refusal: its code, UNROUTABLE, NACK…). */
  name: 'x-error-name',
  message: 'x-error-message',
  /** The exchange it was first published to, before any delay or redelivery moved it. */
  originalExchange: 'x-original-exchange',
  originalRoutingKey: 'x-original-routing-key',
  /** Handler runs before it failed for good. */
  attempts: 'x-attempts',
  /** A `ValidationError`'s issues, as JSON. */
  validationIssues: 'x-validation-issues',
  /** When it failed, ISO 8601. */
  failedAt: 'x-failed-at',
  /** How often it was replayed from the error queue. */
  replayed: 'x-replayed',
});

/**
 * An error exchange (durable fanout) and its durable queue of the same name, as the connection's topology holds them:
 * declared before the first failure, and again after a reconnection.
 */
export function errorExchangeDeclaration(exchange: string): Declaration {
  return {
    key: `error exchange ${exchange}`,
    async declare(ch) {
      await ch.assertExchange(exchange, 'fanout', { durable: true });
      await ch.assertQueue(exchange, { durable: true });
      await ch.bindQueue(exchange, exchange, '');
    },
  };
}
