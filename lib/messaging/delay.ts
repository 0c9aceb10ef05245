import type { Channel } from 'amqplib';
import { BrokerError } from '../errors.js';
import { amqpCodeOf, brokerSaid } from './topology.js';

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
 */
export const DELAY_LEVELS = 32;
/** The longest delay: 2^32 - 1 ms, about 49.7 days. */
export const MAX_DELAY_MS = 2 ** DELAY_LEVELS - 1;
/** Where a delayed message is published: the top level. */
export const DELAY_ENTRY = level(DELAY_LEVELS - 1);
/** Where a delayed message leaves the levels for its destination. */
export const DELAY_EXIT = 'postage.delay';

export const DELAY_HEADERS = Object.freeze({
  /** The exchange a delayed message goes to when it is due. */
  exchange: 'postage-delay-exchange',
  /** The queue a deferred or retried message goes back to when it is due. */
  queue: 'postage-delay-queue',
  bit: (i: number) => `postage-delay-${i}`,
});

function level(i: number): string {
  return `postage.delay.${i}`;
}

/** Checks a `_delay` (or a defer's): a whole number of milliseconds, 0 to {@link MAX_DELAY_MS}. */
export function checkDelay(what: string, ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0 || ms > MAX_DELAY_MS) {
    throw new TypeError(`${what} must be a whole number of milliseconds from 0 to ${MAX_DELAY_MS} (about 49.7 days), not ${JSON.stringify(ms) ?? String(ms)}`);
  }
  return ms;
}

export type DelayTarget = { exchange: string } | { queue: string };

/** The headers that carry a message through the levels (one per bit set in `ms`) and then to `to`. */
export function delayHeaders(ms: number, to: DelayTarget): Record<string, string> {
  const headers: Record<string, string> = 'exchange' in to ? { [DELAY_HEADERS.exchange]: to.exchange } : { [DELAY_HEADERS.queue]: to.queue };
  for (let i = 0; i < DELAY_LEVELS; i++) if (Math.floor(ms / 2 ** i) % 2 === 1) headers[DELAY_HEADERS.bit(i)] = '1';
  return headers;
}

/** A delivered message's headers without what a past delay left on them: its bits, its target, and the levels' dead-lettering records. */
export function withoutDelay(headers: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (k.startsWith('postage-delay-')) continue;
    if (k === 'x-death' && Array.isArray(v)) {
      const kept = v.filter((d: unknown) => !String((d as { queue?: unknown } | null)?.queue ?? '').startsWith('postage.delay.'));
      if (kept.length > 0) out[k] = kept;
      continue;
    }
    if (k.startsWith('x-first-death-') && String(headers?.['x-first-death-queue'] ?? '').startsWith('postage.delay.')) continue;
    out[k] = v;
  }
  return out;
}

/** The exchange a delivered message was published to, before any delay or redelivery moved it. */
export function originalExchange(fields: { exchange: string }, headers: Record<string, unknown> | undefined): string {
  const h = headers ?? {};
  const v = h['x-original-exchange'] ?? h[DELAY_HEADERS.exchange];
  return typeof v === 'string' ? v : fields.exchange;
}

const declared = new WeakMap<Channel, Promise<void>>();
const bound = new WeakMap<Channel, Map<string, Promise<void>>>();

/** Declares the levels on `ch`'s connection (once per channel; they are durable, so once per broker in effect). */
export function declareDelays(ch: Channel): Promise<void> {
  let done = declared.get(ch);
  if (!done) {
    done = (async () => {
      await ch.assertExchange(DELAY_EXIT, 'headers', { durable: true });
      for (let i = 0; i < DELAY_LEVELS; i++) {
        const below = i === 0 ? DELAY_EXIT : level(i - 1);
        await ch.assertExchange(level(i), 'headers', { durable: true, alternateExchange: below });
        await ch.assertQueue(level(i), { durable: true, arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 2 ** i, 'x-dead-letter-exchange': below } });
        await ch.bindQueue(level(i), level(i), '', { 'x-match': 'all', [DELAY_HEADERS.bit(i)]: '1' });
      }
    })().catch((err: unknown) => {
      declared.delete(ch);
      throw new BrokerError(`cannot declare the delay exchanges and queues (postage.delay.*): ${brokerSaid(err)}. If they exist with other arguments, delete them (they hold delayed messages)`, 'DECLARE_FAILED', {
        cause: err,
        amqpCode: amqpCodeOf(err),
      });
    });
    declared.set(ch, done);
  }
  return done;
}

/** Lets delayed messages reach `to` (an exchange, or one queue) when due: declares the levels, then binds the exit to it. */
export function delayTo(ch: Channel, to: DelayTarget): Promise<void> {
  const key = 'exchange' in to ? `e:${to.exchange}` : `q:${to.queue}`;
  let perChannel = bound.get(ch);
  if (!perChannel) bound.set(ch, (perChannel = new Map()));
  let done = perChannel.get(key);
  if (!done) {
    const map = perChannel;
    done = (async () => {
      await declareDelays(ch);
      const args = { 'x-match': 'all', ...delayHeaders(0, to) };
      if ('exchange' in to) await ch.bindExchange(to.exchange, DELAY_EXIT, '', args);
      else await ch.bindQueue(to.queue, DELAY_EXIT, '', args);
    })().catch((err: unknown) => {
      map.delete(key);
      if (err instanceof BrokerError) throw err;
      const what = 'exchange' in to ? `exchange '${to.exchange}'` : `queue '${to.queue}'`;
      throw new BrokerError(`cannot route delayed messages to ${what}: ${brokerSaid(err)}`, 'DECLARE_FAILED', { cause: err, amqpCode: amqpCodeOf(err) });
    });
    perChannel.set(key, done);
  }
  return done;
}
