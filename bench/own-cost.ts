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
import { Fingerprint, RpcCommand } from '../dist/index.js';
import { postageCaller, rawCaller, startPostageEcho, startRawEcho } from './cases.js';

/** Calls run before timing, and timed. */
const WARM = 20_000;
const TIMED = 20_000;

interface Dispatching {
  consumers: Map<string, unknown>;
  dispatchMessage(fields: object, message: object): void;
}

function dispatching(ch: object): Dispatching {
  const c = ch as Partial<Dispatching>;
  if (typeof c.dispatchMessage !== 'function' || !(c.consumers instanceof Map)) {
    throw new Error(
      'this amqplib release has no Channel#dispatchMessage or #consumers: bench/own-cost.ts cannot hand a channel made-up deliveries',
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
 * µs of a `kind` echo server's own code per request: a request handed to its consumer, to the reply's `publish` (its
 * ack included).
 */
export async function serverOwnCost(kind: 'raw' | 'postage', url: string): Promise<number> {
  const q = `bench.own.${randomBytes(4).toString('hex')}`;
  let channel: amqp.Channel | undefined;
  // The server's channel may consume more than its queue (a processor's presence queue): the consumer of `q` is the
  // one its `consume` answered with.
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
    stop = await (kind === 'raw' ? startRawEcho : startPostageEcho)(url, q, (ch) => (channel = ch));
  } finally {
    proto.consume = consume;
  }
  const ch = dispatching(channel!);
  if (ofQueue === undefined || !ch.consumers.has(ofQueue))
    throw new Error(`no consumer of ${q} on the server's channel (${ch.consumers.size} consumers there)`);
  const consumerTag = ofQueue;
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
  Object.assign(channel!, {
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
