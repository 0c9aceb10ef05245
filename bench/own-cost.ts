/**
 * What each half of an RPC costs in code, with the socket taken out: a
 * caller's request is answered by a reply made up in this process, and a
 * server is handed made-up requests, on a real amqplib channel of a real
 * connection. No broker and no other process in the figure, only the code:
 * CPU time of this process per call (not wall time, which a machine shared
 * with other processes stretches at random). amqplib's framing is left out
 * on both sides.
 *
 * Leans on amqplib's channel internals (`dispatchMessage`, `consumers`),
 * checked before use: a release that renames them fails this case with a
 * message, not a wrong figure.
 */
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import {
  Fingerprint,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  RpcCommand,
  type ExchangeObject,
} from '../dist/index.js';
import { postageCaller, rawCaller, startPostageEcho, startRawEcho } from './cases.js';

/** Calls run before timing, and timed (BENCH_OWN_WARM, BENCH_OWN_CALLS: fewer under valgrind, which is slow). */
const WARM = Number(process.env.BENCH_OWN_WARM ?? 20_000);
const TIMED = Number(process.env.BENCH_OWN_CALLS ?? 20_000);

interface Dispatching {
  consumers: Map<string, unknown>;
  dispatchMessage(fields: object, message: object): void;
}

function dispatching(ch: object): Dispatching {
  const c = ch as Partial<Dispatching>;
  if (typeof c.dispatchMessage !== 'function' || !(c.consumers instanceof Map)) {
    throw new Error(
      'this amqplib release has no Channel#dispatchMessage or #consumers: bench/own-cost.ts cannot hand a channel ' +
        'made-up deliveries',
    );
  }
  return c as Dispatching;
}

const oneConsumer = (ch: Dispatching): string => {
  if (ch.consumers.size !== 1) throw new Error(`expected one consumer on the channel, found ${ch.consumers.size}`);
  return ch.consumers.keys().next().value as string;
};

/** The reply the bench's echo servers send, made once: the caller's half is timed, not a server's. */
const reply = Buffer.from(
  JSON.stringify({
    type: 'result',
    name: 'none',
    category: 'message',
    version: '2',
    fingerprint: new Fingerprint('bench-server', 'raw').asDict(),
    content: { type: 'success', value: 'hi', message: '' },
    _reserved: {},
  }),
);

/** A turn of the event loop, as the bytes of a reply or a request would take to come. */
const later = (fn: () => void) => setImmediate(fn);

/**
 * µs of this process's CPU (user + system, every thread) per call: with no socket in the way the calls only compute,
 * and CPU time, unlike wall time, does not grow while other processes hold the machine's cores.
 */
async function time(n: number, one: () => Promise<unknown>): Promise<number> {
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) await one();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / n;
}

/**
 * µs of a `kind` caller's own code per call: the request leaves through amqplib's `publish`, the reply comes back
 * through its consumer.
 */
export async function callerOwnCost(kind: 'raw' | 'postage', url: string): Promise<number> {
  const q = `bench.own.${randomBytes(4).toString('hex')}`;
  // The prototype every channel publishes through (a confirm channel's publish calls it too).
  const probe = await amqp.connect(url);
  const proto = Object.getPrototypeOf(await probe.createChannel()) as Pick<amqp.Channel, 'publish'>;
  await probe.close();
  const publish = proto.publish;
  // The caller publishes to `q` on one channel: it and its reply consumer are looked up on its first call, not timed on
  // every one.
  let to: { ch: Dispatching; consumerTag: string } | undefined;
  proto.publish = function (
    this: amqp.Channel,
    exchange: string,
    key: string,
    content: Buffer,
    options?: amqp.Options.Publish,
  ) {
    if (key !== q) return publish.call(this, exchange, key, content, options);
    if (!to) {
      const found = dispatching(this);
      to = { ch: found, consumerTag: oneConsumer(found) };
    }
    const { ch, consumerTag } = to;
    const correlationId = options?.correlationId;
    later(() =>
      ch.dispatchMessage(
        { consumerTag },
        {
          fields: { consumerTag, deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'caller' },
          properties: { correlationId, headers: {} },
          content: reply,
        },
      ),
    );
    return true;
  };
  const caller = await (kind === 'raw' ? rawCaller : postageCaller)(url, q);
  try {
    await time(WARM, caller.one);
    return await time(TIMED, caller.one);
  } finally {
    proto.publish = publish;
    await caller.close();
  }
}

/**
 * Starts a server on `q` and finds its consumer of `q` on its channel: the channel may consume more than `q` (a
 * processor's presence queue), so the consumer is the one its `consume` of `q` answered with.
 */
async function consumerOf(
  url: string,
  q: string,
  start: (onChannel: (ch: amqp.Channel) => void) => Promise<() => Promise<void>>,
): Promise<{ channel: amqp.Channel; ch: Dispatching; consumerTag: string; stop: () => Promise<void> }> {
  let channel: amqp.Channel | undefined;
  const probe = await amqp.connect(url);
  const proto = Object.getPrototypeOf(await probe.createChannel()) as Pick<amqp.Channel, 'consume'>;
  await probe.close();
  const consume = proto.consume;
  let ofQueue: string | undefined;
  proto.consume = async function (this: amqp.Channel, queue, onMessage, options) {
    const ok = await consume.call(this, queue, onMessage, options);
    if (queue === q) ofQueue = ok.consumerTag;
    return ok;
  };
  let stop: () => Promise<void>;
  try {
    stop = await start((c) => (channel = c));
  } finally {
    proto.consume = consume;
  }
  const ch = dispatching(channel!);
  if (ofQueue === undefined || !ch.consumers.has(ofQueue))
    throw new Error(`no consumer of ${q} on the server's channel (${ch.consumers.size} consumers there)`);
  return { channel: channel!, ch, consumerTag: ofQueue, stop };
}

/**
 * µs of a `kind` echo server's own code per request: a request handed to its consumer, to the reply's `publish` (its
 * ack included).
 */
export async function serverOwnCost(kind: 'raw' | 'postage', url: string): Promise<number> {
  const q = `bench.own.${randomBytes(4).toString('hex')}`;
  const { channel, ch, consumerTag, stop } = await consumerOf(url, q, (onChannel) =>
    (kind === 'raw' ? startRawEcho : startPostageEcho)(url, q, onChannel),
  );
  // As the bench's postage-ts caller sends it.
  const content = Buffer.from(
    JSON.stringify(
      new RpcCommand('echo', { text: 'hi' }).setFingerprint(new Fingerprint('bench-client', 'producer').asDict()).body,
    ),
  );
  const replyTo = 'amq.rabbitmq.reply-to.g1h2AA5yZXRAdm0AAAAAAAAAAQ==.AAECAwQFBgcICQoLDA0ODw==';
  let tag = 0;
  let answered: () => void = () => undefined;
  // Neither reaches the broker: its tags are made up, and the replies have nowhere to go.
  Object.assign(channel, {
    ack: () => undefined,
    publish: () => {
      answered();
      return true;
    },
  });
  const one = () =>
    new Promise<void>((resolve) => {
      answered = resolve;
      const deliveryTag = ++tag;
      const fields = { consumerTag, deliveryTag, redelivered: false, exchange: '', routingKey: q };
      const properties = {
        replyTo,
        correlationId: String(deliveryTag),
        messageId: `own.${deliveryTag}`,
        timestamp: 1,
        contentType: 'application/json',
        headers: {},
      };
      later(() => ch.dispatchMessage(fields, { fields, properties, content }));
    });
  try {
    await time(WARM, one);
    return await time(TIMED, one);
  } finally {
    await stop();
  }
}

class Drain extends MessageProcessor {
  @MessageHandler('command', 'payload')
  payload(): void {}
}

/**
 * µs of a `kind` consumer's own code per delivery at prefetch 1 (a processor with its defaults; raw amqplib parsing
 * each body and acking it): a delivery handed to its consumer, to its ack; the next comes a turn after that ack, as it
 * would from the broker.
 */
export async function consumerOwnCost(kind: 'raw' | 'postage', url: string): Promise<number> {
  const q = `bench.own.${randomBytes(4).toString('hex')}`;
  const { channel, ch, consumerTag, stop } = await consumerOf(url, q, async (onChannel) => {
    if (kind === 'raw') {
      const conn = await amqp.connect(url, { noDelay: true });
      const sub = await conn.createChannel();
      await sub.assertQueue(q, { exclusive: true, durable: false });
      await sub.prefetch(1);
      await sub.consume(q, (m) => {
        if (!m) return;
        JSON.parse(m.content.toString());
        sub.ack(m);
      });
      onChannel(sub);
      return () => conn.close();
    }
    const ex: ExchangeObject = { name: '', type: 'direct' };
    const proc = new Drain({
      url,
      handleSignals: false,
      eqk: [[ex, [[{ name: q, flags: { exclusive: true, durable: false } }, q]]]],
    });
    await proc.ready();
    onChannel(proc.consumer.channel);
    const s = new MicroScheduler();
    s.addMicrothread(proc);
    const running = s.run();
    return async () => {
      s.stop();
      await running;
      await proc.close();
    };
  });
  const content = Buffer.from(
    JSON.stringify(
      new MessageCommand('payload', { text: 'x'.repeat(100) }).setFingerprint(
        new Fingerprint('bench-client', 'producer').asDict(),
      ).body,
    ),
  );
  let tag = 0;
  let acked: () => void = () => undefined;
  // Its tags are made up: no ack reaches the broker.
  Object.assign(channel, { ack: () => acked() });
  const one = () =>
    new Promise<void>((resolve) => {
      acked = resolve;
      const deliveryTag = ++tag;
      const fields = { consumerTag, deliveryTag, redelivered: false, exchange: '', routingKey: q };
      const properties = {
        messageId: `own.${deliveryTag}`,
        timestamp: 1,
        contentType: 'application/json',
        deliveryMode: 2,
        headers: {},
      };
      later(() => ch.dispatchMessage(fields, { fields, properties, content }));
    });
  try {
    await time(WARM, one);
    return await time(TIMED, one);
  } finally {
    await stop();
  }
}
