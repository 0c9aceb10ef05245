import type { ChannelModel } from 'amqplib';
import { openChannel } from './channels.js';

/**
 * An exchange's type, which AMQP has no method to read: redeclaring it as a
 * topic exchange (on a channel of its own, which a refusal closes) succeeds
 * for a topic one and is refused, naming the current type, for any other.
 * Undefined where the exchange does not exist.
 * @internal
 */
export async function exchangeType(conn: ChannelModel, exchange: string): Promise<string | undefined> {
  const probe = await openChannel(conn);
  probe.on('error', () => undefined);
  try {
    try {
      await probe.checkExchange(exchange);
    } catch {
      return undefined;
    }
    await probe.assertExchange(exchange, 'topic', { durable: true });
    return 'topic';
  } catch (err) {
    // "inequivalent arg 'type' … received 'topic' but current is 'direct'" (a plugin's type is quoted twice:
    // "current is ''x-consistent-hash''"); a refusal for another field means the type matched.
    const m = /arg 'type'.*current is '+([^']+)'/.exec(String((err as Error).message));
    return m ? m[1] : 'topic';
  } finally {
    await probe.close().catch(() => undefined);
  }
}

/**
 * Exchange types that give every queue bound to them a copy of what they route (a watching queue bound beside a
 * component's takes nothing from it). A consistent-hash (or random, or modulus-hash) exchange routes each message
 * to one of its queues: a queue bound there is one more destination, and takes its share.
 * @internal
 */
export const COPYING_EXCHANGE_TYPES: ReadonlySet<string> = new Set(['direct', 'topic', 'fanout', 'headers']);
