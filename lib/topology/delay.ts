import type { Channel, ChannelModel } from 'amqplib';
import type { Declaration, TopologyRegistry } from '../transport/topology-registry.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import { amqpCodeOf, brokerSaid, ERROR_HEADERS } from './topology.js';

/**
 * Delayed delivery on a stock RabbitMQ, held by the broker and not by any
 * process (NServiceBus's scheme, with headers where it uses routing keys, so
 * that a message keeps its own routing key).
 *
 * Level `i` is a durable headers exchange `postage.delay.i` and a durable
 * queue of the same name whose messages live 2^i ms, then are dead-lettered
 * to level `i - 1`. A message carries a header `postage-delay-i` for each bit
 * set in its delay; the exchange of a level routes it into the level's queue
 * when its bit is set, and, through its alternate exchange, straight on to
 * the level below when not. Past level 0, `postage.delay` sends it by a
 * header to where it was going: an exchange (with its routing key unchanged)
 * or one queue (a retry or a defer, which must not reach the other queues
 * of its exchange again).
 *
 * Each level's queue has one TTL, so it is first in, first out by expiry: a
 * message is never early, and late by the few milliseconds each set bit's
 * hop through the broker takes.
 *
 * A message enters the levels straight into the queue of its delay's highest
 * bit, through `amq.headers` (RabbitMQ's own headers exchange, which nobody can
 * delete), published mandatory: a level queue an operator deleted shows as a
 * returned message, never as a channel error or a message routed past it
 * (early). Then the levels are declared again and the message sent again. The
 * levels below are declared again at most a second after a delayed send finds
 * them unchecked for longer (see {@link RECHECK_MS}).
 */
export const DELAY_LEVELS = 32;
/** The longest delay: 2^32 - 1 ms, about 49.7 days. */
export const MAX_DELAY_MS = 2 ** DELAY_LEVELS - 1;
/**
 * Where a delayed message is published: RabbitMQ's own headers exchange, which cannot be deleted, bound to each level's
 * queue by its entry header.
 */
export const DELAY_DOOR = 'amq.headers';
/**
 * How often (ms) the levels are declared again while delayed messages go through them: an operator may have deleted
 * one.
 */
export const RECHECK_MS = 1000;
/** Where a delayed message leaves the levels for its destination. */
export const DELAY_EXIT = 'postage.delay';

export const DELAY_HEADERS = Object.freeze({
  /** The exchange a delayed message goes to when it is due. */
  exchange: 'postage-delay-exchange',
  /** The queue a deferred or retried message goes back to when it is due. */
  queue: 'postage-delay-queue',
  bit: (i: number) => `postage-delay-${i}`,
  /** The level a message enters at: its delay's highest bit. */
  entry: 'postage-delay-entry',
});

function level(i: number): string {
  return `postage.delay.${i}`;
}

/** Checks a `_delay` (or a defer's): a whole number of milliseconds, 0 to {@link MAX_DELAY_MS}. */
export function checkDelay(what: string, ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0 || ms > MAX_DELAY_MS) {
    throw new TypeError(
      `${what} must be a whole number of milliseconds from 0 to ${MAX_DELAY_MS} (about 49.7 days), not ` +
        `${typeof ms === 'number' || typeof ms === 'bigint' ? String(ms) : (JSON.stringify(ms) ?? String(ms))}`,
    );
  }
  return ms;
}

export type DelayTarget = { exchange: string } | { queue: string };

/**
 * The headers that carry a message into the levels (at its highest bit), through them (one per bit set in `ms`), and
 * then to `to`.
 */
export function delayHeaders(ms: number, to: DelayTarget): Record<string, string> {
  const headers = targetHeader(to);
  let top = -1;
  for (let i = 0; i < DELAY_LEVELS; i++) {
    if (Math.floor(ms / 2 ** i) % 2 === 1) {
      headers[DELAY_HEADERS.bit(i)] = '1';
      top = i;
    }
  }
  // No delay at all (a redelivery counted in a header): straight to the exit, and on to its target.
  headers[DELAY_HEADERS.entry] = top >= 0 ? String(top) : EXIT_ENTRY;
  return headers;
}

const EXIT_ENTRY = 'exit';

/** The header the exit routes a due message by. */
function targetHeader(to: DelayTarget): Record<string, string> {
  return 'exchange' in to ? { [DELAY_HEADERS.exchange]: to.exchange } : { [DELAY_HEADERS.queue]: to.queue };
}

/** Where a delay enters: the level queue of its highest bit (the exit for none). */
export function entryQueue(ms: number): string {
  return ms >= 1 ? level(Math.floor(Math.log2(ms))) : DELAY_EXIT;
}

/**
 * A delivered message's headers without what a past delay left on them: its bits, its target, and the levels'
 * dead-lettering records.
 */
export function withoutDelay(headers: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (k.startsWith('postage-delay-')) continue;
    if (k === 'x-death' && Array.isArray(v)) {
      const kept = v.filter(
        (d: unknown) => !String((d as { queue?: unknown } | null)?.queue ?? '').startsWith('postage.delay.'),
      );
      if (kept.length > 0) out[k] = kept;
      continue;
    }
    if (k.startsWith('x-first-death-') && String(headers?.['x-first-death-queue'] ?? '').startsWith('postage.delay.'))
      continue;
    out[k] = v;
  }
  return out;
}

/** The exchange a delivered message was published to, before any delay or redelivery moved it. */
export function originalExchange(fields: { exchange: string }, headers: Record<string, unknown> | undefined): string {
  const h = headers ?? {};
  const v = h[ERROR_HEADERS.originalExchange] ?? h[DELAY_HEADERS.exchange];
  return typeof v === 'string' ? v : fields.exchange;
}

/** Where delayed messages are declared and sent from: a channel on a connection, and that connection's topology. */
export interface DelayPlace {
  readonly topology: TopologyRegistry;
  readonly model: ChannelModel;
  readonly ch: Channel;
}

/**
 * The levels, as the connection's topology holds them: declared once per connection, again when older than {@link
 * RECHECK_MS} (an operator may have deleted one).
 */
const LEVELS: Declaration = {
  key: 'delay levels',
  maxAgeMs: RECHECK_MS,
  async declare(ch) {
    try {
      await ch.assertExchange(DELAY_EXIT, 'headers', { durable: true });
      await ch.bindExchange(DELAY_EXIT, DELAY_DOOR, '', { 'x-match': 'all', [DELAY_HEADERS.entry]: EXIT_ENTRY });
      for (let i = 0; i < DELAY_LEVELS; i++) {
        const below = i === 0 ? DELAY_EXIT : level(i - 1);
        await ch.assertExchange(level(i), 'headers', { durable: true, alternateExchange: below });
        await ch.assertQueue(level(i), {
          durable: true,
          arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 2 ** i, 'x-dead-letter-exchange': below },
        });
        await ch.bindQueue(level(i), level(i), '', { 'x-match': 'all', [DELAY_HEADERS.bit(i)]: '1' });
        await ch.bindQueue(level(i), DELAY_DOOR, '', { 'x-match': 'all', [DELAY_HEADERS.entry]: String(i) });
      }
    } catch (err) {
      throw new BrokerError(
        `cannot declare the delay exchanges and queues (postage.delay.*): ${brokerSaid(err)}. If they exist with ` +
          'other arguments, delete them (they hold delayed messages)',
        'DECLARE_FAILED',
        {
          cause: err,
          amqpCode: amqpCodeOf(err),
        },
      );
    }
  },
};

/** The route from the exit to `to`, as the connection's topology holds it (declared again with the levels). */
function routeTo(to: DelayTarget): Declaration {
  return {
    key: 'exchange' in to ? `delay route to exchange ${to.exchange}` : `delay route to queue ${to.queue}`,
    maxAgeMs: RECHECK_MS,
    async declare(ch) {
      const args = { 'x-match': 'all', ...targetHeader(to) };
      try {
        if ('exchange' in to) await ch.bindExchange(to.exchange, DELAY_EXIT, '', args);
        else await ch.bindQueue(to.queue, DELAY_EXIT, '', args);
      } catch (err) {
        const what = 'exchange' in to ? `exchange '${to.exchange}'` : `queue '${to.queue}'`;
        throw new BrokerError(`cannot route delayed messages to ${what}: ${brokerSaid(err)}`, 'DECLARE_FAILED', {
          cause: err,
          amqpCode: amqpCodeOf(err),
        });
      }
    },
  };
}

/**
 * Lets delayed messages reach `to` (an exchange, or one queue) when due: the levels, then the exit's route to it;
 * `force` declares both anew.
 */
export async function delayTo(place: DelayPlace, to: DelayTarget, force = false): Promise<void> {
  await place.topology.ensure(place.model, place.ch, LEVELS, force);
  await place.topology.ensure(place.model, place.ch, routeTo(to), force);
}

/**
 * Sends a message into the levels toward `to`: `publish` publishes it
 * (mandatory, to {@link DELAY_DOOR}) and resolves to whether a queue took it.
 * Returned, a level is missing: the levels are declared again and it is sent
 * once more, so a delayed message is never early and never silently lost.
 */
export async function sendDelayed(
  place: DelayPlace,
  to: DelayTarget,
  ms: number,
  log: Logger,
  publish: () => Promise<boolean>,
): Promise<void> {
  await delayTo(place, to);
  if (await publish()) return;
  log.warn(
    { level: entryQueue(ms), delayMs: ms },
    `delay level ${entryQueue(ms)} is missing (deleted?): declaring the delay levels again and sending the message ` +
      'again',
  );
  await delayTo(place, to, true);
  if (await publish()) return;
  throw new BrokerError(
    `delay level ${entryQueue(ms)} took no message even after the levels were declared again: check the ` +
      `postage.delay.* queues and the bindings of ${DELAY_DOOR}`,
    'UNROUTABLE',
  );
}
