/** `postage watch`: the envelopes that pass on an exchange, one JSON line each. */
import type { ConsumeMessage } from 'amqplib';
import { deliveryInfo } from '../scope/context.js';
import { JsonEncoder } from '../envelope/encoder.js';
import { openChannel } from '../transport/channels.js';
import { openConnection } from '../transport/connection.js';
import { COPYING_EXCHANGE_TYPES, exchangeType } from '../transport/exchange-type.js';
import type { Command, Values } from './command.js';
import { UsageError } from './usage.js';

export const watchCommand: Command = {
  name: 'watch',
  synopsis: 'watch EXCHANGE [KEY]',
  summary: 'print the envelopes that pass on EXCHANGE',
  help: `usage: postage watch EXCHANGE [KEY] [--count N] [--envelope]

Binds a temporary queue to EXCHANGE with KEY (default '#', which matches
everything on a topic exchange; give the key for a direct exchange) and prints
each message as one JSON line: where it went (routingKey), its message id,
conversation and causation ids, correlation id, type, timestamp and headers,
and its envelope (--envelope: the envelope alone). Stops after --count
messages, or on Ctrl-C.`,
  options: { count: { type: 'string' }, envelope: { type: 'boolean' } },
  run: ({ args, values }) => watch(args, values),
};

async function watch(args: string[], values: Values): Promise<number> {
  const [exchange, key = '#'] = args;
  if (!exchange) throw new UsageError('watch needs EXCHANGE [KEY]');
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (!(count > 0)) throw new UsageError(`--count must be a positive number, not '${values.count}'`);
  const conn = await openConnection({ connectionName: 'postage-cli watch' });
  const ch = await openChannel(conn);
  let channelError: Error | undefined;
  ch.on('error', (e: Error) => (channelError = e));
  const decoder = new JsonEncoder();
  try {
    await ch.checkExchange(exchange).catch(() => {
      throw new UsageError(`exchange '${exchange}' does not exist on this broker`);
    });
    const type = await exchangeType(conn, exchange);
    // A consistent-hash exchange (a partitioned processor's QUEUE.partitions) routes each message to one queue: the
    // watching queue would be one more, and take messages from the others.
    if (type !== undefined && !COPYING_EXCHANGE_TYPES.has(type)) {
      throw new UsageError(
        `exchange '${exchange}' is ${type}: it routes each message to one of its queues, so watching it would take ` +
          'messages from them. Watch the exchange that routes to it instead',
      );
    }
    // '#' is a topic pattern: on a direct exchange it is a key like any other, and the watch would stay silent.
    if (args[1] === undefined && type === 'direct') {
      throw new UsageError(
        `exchange '${exchange}' is direct: the default key '#' would only match messages sent with the key '#', ` +
          `so nothing would show. Give the key to watch: postage watch ${exchange} KEY`,
      );
    }
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    await ch.bindQueue(queue, exchange, key);
    console.error(`watching ${exchange} with key '${key}' (Ctrl-C to stop)`);
    let seen = 0;
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      void ch.consume(
        queue,
        (m) => {
          if (!m) return resolve();
          let envelope: unknown;
          try {
            envelope = decoder.decode(m.content);
          } catch {
            envelope = { undecodable: m.content.toString('base64') };
          }
          console.log(JSON.stringify(values.envelope ? envelope : { ...described(m), envelope }));
          if (++seen >= count) resolve();
        },
        { noAck: true },
      );
    });
    return 0;
  } finally {
    if (!channelError) await ch.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
}

/**
 * What `watch` shows of a message besides its envelope: its AMQP properties, as a handler's currentDelivery() has them.
 */
function described(m: ConsumeMessage): Record<string, unknown> {
  const d = deliveryInfo(m);
  const headers = Object.fromEntries(
    Object.entries(d.headers).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : v]),
  );
  return {
    routingKey: d.routingKey,
    messageId: d.messageId,
    conversationId: d.conversationId,
    causationId: d.causationId,
    correlationId: d.correlationId,
    type: d.type,
    timestamp: d.timestamp?.toISOString(),
    headers,
  };
}
