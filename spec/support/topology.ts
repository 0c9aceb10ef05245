/** Unique names per spec, and a cleaner that deletes what a spec declared on the shared broker. */
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import { brokerUrl, queueCounts, type QueueCounts } from './broker.js';
import { until } from './wait.js';

export function unique(prefix: string): string {
  return `spec.${prefix}.${randomBytes(4).toString('hex')}`;
}

export async function deleteTopology(queues: string[], exchanges: string[] = []): Promise<void> {
  await asOperator(async (ch) => {
    for (const q of queues) await ch.deleteQueue(q);
    for (const e of exchanges) await ch.deleteExchange(e);
  });
}

/** Does `work` on a channel of a connection of its own, as an operator (or another program) would, then closes both. */
export async function asOperator(work: (ch: amqp.Channel) => Promise<unknown>, url?: string): Promise<void> {
  const conn = await amqp.connect(url ?? (await brokerUrl()));
  try {
    const ch = await conn.createChannel();
    await work(ch);
    await ch.close();
  } finally {
    await conn.close();
  }
}

/** Publishes raw bytes, as any other AMQP client (or Python Postage) would. */
export async function publishRaw(
  exchange: string,
  key: string,
  content: Buffer,
  props: amqp.Options.Publish = {},
): Promise<void> {
  const conn = await amqp.connect(await brokerUrl());
  try {
    const ch = await conn.createConfirmChannel();
    ch.publish(exchange, key, content, props);
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

/**
 * Reads one message from a queue, polling until the deadline (the broker has
 * no "message arrived" event for basic.get); a queue that does not exist yet
 * counts as empty.
 */
export async function getOne(queue: string, deadlineMs = 5000): Promise<amqp.GetMessage | false> {
  const conn = await amqp.connect(await brokerUrl());
  try {
    const end = Date.now() + deadlineMs;
    let ch: amqp.Channel | undefined;
    for (;;) {
      if (!ch) {
        ch = await conn.createChannel();
        // A get on a missing queue closes the channel (404): take a new one and look again.
        ch.on('error', () => undefined);
      }
      const m = await ch.get(queue, { noAck: true }).catch(() => ((ch = undefined), false as const));
      if (m || Date.now() > end) return m;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await conn.close();
  }
}

/**
 * Takes from `queue` what waits in it ahead of a fence message published to it now (straight to the queue, by the
 * default exchange), and resolves to those messages. For a negative check ("nothing else was sent there"): it waits
 * for a later positive event, the fence, instead of a fixed time, and whatever reached the queue before this call
 * comes out ahead of the fence. Rejects with {@link WaitTimeout} if the fence is not back by `timeout`.
 */
export async function aheadOfFence(queue: string, timeout = 10_000): Promise<amqp.GetMessage[]> {
  const fence = unique('fence');
  const conn = await amqp.connect(await brokerUrl());
  try {
    const ch = await conn.createConfirmChannel();
    ch.sendToQueue(queue, Buffer.from('fence'), { messageId: fence });
    await ch.waitForConfirms();
    const ahead: amqp.GetMessage[] = [];
    await until(
      async () => {
        const m = await ch.get(queue, { noAck: true });
        if (m && m.properties.messageId === fence) return true;
        if (m) ahead.push(m);
        return false;
      },
      { timeout, every: 10, message: `the fence back from ${queue} (${ahead.length} message(s) ahead of it)` },
    );
    return ahead;
  } finally {
    await conn.close();
  }
}

/**
 * How many consumers a queue has and how many messages wait in it (ready ones only: a delivery a consumer holds
 * unacked is not counted, so this cannot prove an ack; {@link settledQueue} can).
 */
export async function queueState(queue: string): Promise<{ consumers: number; messages: number }> {
  const conn = await amqp.connect(await brokerUrl());
  try {
    const ok = await (await conn.createChannel()).checkQueue(queue);
    return { consumers: ok.consumerCount, messages: ok.messageCount };
  } finally {
    await conn.close();
  }
}

/**
 * The state of a queue once everything delivered from it was settled: waits (bounded) until the broker counts
 * no message ready and none unacked, then resolves to its counts, or, at the deadline, to the counts it last saw,
 * so `expect(await settledQueue(q)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 })` fails showing them.
 * Proves an ack or a reject, which {@link queueState} cannot: it counts only what is ready.
 */
export async function settledQueue(
  queue: string,
  { timeout = 10_000, url }: { timeout?: number; url?: string } = {},
): Promise<QueueCounts | undefined> {
  const end = Date.now() + timeout;
  for (;;) {
    const counts = await queueCounts(queue, url);
    if ((counts && counts.ready === 0 && counts.unacked === 0) || Date.now() >= end) return counts;
    await new Promise((r) => setTimeout(r, 100));
  }
}
