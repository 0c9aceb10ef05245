/**
 * The harness is the real dispatcher: the same envelopes, given to a
 * processor through RabbitMQ and through `ProcessorHarness`, end the same way
 * (outcome, the reason's kind, whether a reply went out).
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import {
  DeferMessage,
  EncryptedJsonEncoder,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  RejectMessage,
  RequeueMessage,
  RpcHandler,
  type DeliveryEvent,
  type IdempotencyStore,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { ProcessorHarness, testProducer } from '../../lib/testing/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness } from '../support/components.js';
import { command } from '../support/schema.js';
import { deleteTopology, unique } from '../support/topology.js';

const quiet = makeLogger('silent');
const env = (type: string, name: string, content: unknown, category = 'message') =>
  JSON.stringify({ type, name, category, version: '2', fingerprint: { name: 'eq' }, content, _reserved: {} });

/**
 * Where the `unroutable` handler sends: a real producer to an exchange nothing is bound to, or a test producer told so.
 */
const lost = { name: unique('eq-nowhere'), type: 'direct', durable: false } as const;
class Nowhere extends GenericProducer {
  static override eks = [[lost, 'none'] as const];
  declare message_lost: MessageSender;
}
let nowhere: Nowhere;
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
const hangs: StandardSchemaV1<unknown, unknown> = {
  '~standard': { version: 1, vendor: 'spec', validate: () => never() },
};
/** Never answers for one message id (its case's), and knows nothing of the others. */
const HANGING_ID = 'case-dedupe';
const store: IdempotencyStore = {
  seen: (key) => (key.endsWith(`/${HANGING_ID}`) ? never<boolean>() : false),
  remember() {},
};
const sealed = new EncryptedJsonEncoder({ keys: { k: Buffer.alloc(32, 7) } })
  .encode({
    type: 'command',
    name: 'ok',
    category: 'message',
    version: '2',
    fingerprint: {},
    content: { parameters: {} },
    _reserved: {},
  })
  .toString();

class Mixed extends MessageProcessor {
  @MessageHandler('command', 'ok')
  ok() {}
  @MessageHandler('command', 'refuse')
  refuse() {
    throw new RejectMessage('refused');
  }
  @MessageHandler('command', 'fail')
  fail() {
    throw new TypeError('failed');
  }
  @MessageHandler('command', 'checked', { schema: command({ n: 'number' }) })
  checked() {}
  @MessageHandler('command', 'again')
  again() {
    throw new RequeueMessage('again');
  }
  @MessageHandler('command', 'later')
  later() {
    throw new DeferMessage(60_000);
  }
  @MessageHandler('command', 'answer')
  answer(_c: unknown, reply: (r: unknown) => void) {
    reply('answered');
  }
  @MessageHandler('status')
  anyStatus() {}
  @RpcHandler('command', 'total')
  total(c: { parameters: { a: number; b: number } }) {
    return c.parameters.a + c.parameters.b;
  }
  @RpcHandler('command', 'boom')
  boom() {
    throw new RangeError('boom');
  }
  @MessageHandler('command', 'slow', { timeoutMs: 100 })
  async slow() {
    await new Promise((r) => setTimeout(r, 250));
    // Past its time limit: refused, never published.
    await nowhere.message_lost({}).catch(() => undefined);
  }
  @MessageHandler('command', 'hanging-schema', { schema: hangs, timeoutMs: 100 })
  hangingSchema() {}
  @MessageHandler('command', 'unroutable')
  async unroutable() {
    await nowhere.message_lost({});
  }
}

const CASES: Array<[string, string, { replyTo?: boolean }?]> = [
  ['a handled command', env('command', 'ok', { parameters: {} })],
  ['a command with more fields than it needs', env('command', 'ok', { parameters: { x: 1, y: [1, 2] } })],
  ['a command nobody handles', env('command', 'nobody', { parameters: {} })],
  ['RejectMessage', env('command', 'refuse', { parameters: {} })],
  ['a handler that fails every run', env('command', 'fail', { parameters: {} })],
  ['a content that fails its schema', env('command', 'checked', { parameters: { n: 'one' } })],
  ['a content that passes its schema', env('command', 'checked', { parameters: { n: 1 } })],
  ['RequeueMessage', env('command', 'again', { parameters: {} })],
  ['DeferMessage', env('command', 'later', { parameters: {} })],
  ['an RPC', env('command', 'total', { parameters: { a: 1, b: 2 } }, 'rpc'), { replyTo: true }],
  ['an RPC nobody handles', env('command', 'unknown', { parameters: {} }, 'rpc'), { replyTo: true }],
  ['an RPC whose handler throws', env('command', 'boom', { parameters: {} }, 'rpc'), { replyTo: true }],
  ['a message answered (reply_to)', env('command', 'answer', { parameters: {} }), { replyTo: true }],
  ['a status to a catch-all handler', env('status', 'anything', { value: 3 })],
  [
    'a content with __proto__ keys',
    '{"type":"command","name":"ok","category":"message","version":"2","fingerprint":{},' +
      '"content":{"parameters":{"__proto__":{"polluted":true}}},"_reserved":{}}',
  ],
  [
    'an escaped __proto__ key',
    '{"type":"command","name":"ok","category":"message","version":"2","fingerprint":{},' +
      '"content":{"\\u005f_proto__":{"polluted":true}},"_reserved":{}}',
  ],
  ['a 10 KiB content', env('command', 'ok', { parameters: { data: 'x'.repeat(10 * 1024) } })],
  ['unicode', env('command', 'ok', { parameters: { text: 'héllo 世界 🚀' } })],
  ['malformed JSON', '{"type": "command", '],
  ['a JSON array', '[1, 2, 3]'],
  ['a JSON number', '42'],
  ['an empty body', ''],
  ['an envelope without a type', JSON.stringify({ name: 'ok', category: 'message', content: {} })],
  ['an envelope with an unknown category', env('command', 'ok', {}, 'telepathy')],
  ['a handler past its time limit, sending late', env('command', 'slow', { parameters: {} })],
  ['an idempotency store that never answers', env('command', 'ok', { parameters: {} })],
  ['an async schema that never answers', env('command', 'hanging-schema', { parameters: {} })],
  ['an encrypted message to a component without keys', sealed],
  ['a held send no queue takes', env('command', 'unroutable', { parameters: {} })],
];
/** The cases whose body the processor cannot read (no envelope, or one it cannot open). */
const UNREADABLE = [
  'malformed JSON',
  'a JSON array',
  'a JSON number',
  'an empty body',
  'an envelope without a type',
  'an envelope with an unknown category',
  'an encrypted message to a component without keys',
];
/** The message id a case is sent with (the idempotency case's is the one its store hangs on). */
const idOf = (cases: typeof CASES, i: number) =>
  cases[i][0] === 'an idempotency store that never answers' ? HANGING_ID : `case-${i}`;

interface Seen {
  outcome: DeliveryEvent['outcome'];
  error: string | undefined;
  replied: boolean;
}
const seen = (e: { outcome: DeliveryEvent['outcome']; error: unknown }, replied: boolean): Seen => ({
  outcome: e.outcome,
  error: (e.error as Error | undefined)?.name,
  replied,
});
const options = () => ({
  logger: quiet,
  handleSignals: false,
  errorExchange: unique('eq-errors') as string | undefined,
  maxDeliveries: 2,
  retry: { attempts: 2, backoffMs: 1 },
  deduplicate: store,
  handlerTimeoutMs: 300,
});

/** Runs `cases` through RabbitMQ: how each ended, by message id. */
async function throughBroker(cases: typeof CASES, opts: ReturnType<typeof options>): Promise<Map<string, Seen>> {
  const url = await brokerUrl();
  const ex = { name: unique('eq'), type: 'direct', durable: false } as const;
  const queue = unique('eq-q');
  const h = new Harness();
  const viaBroker = new Map<string, Seen>();
  const all = new Promise<void>((resolve) => {
    const p = new Mixed({ url, ...opts, eqk: [[ex, [[queue, 'k']]]] });
    p.observe((e) => {
      if (e.messageId !== undefined && !viaBroker.has(e.messageId)) viaBroker.set(e.messageId, seen(e, e.replied));
      if (viaBroker.size === cases.length) resolve();
    });
    void h.start(p);
  });
  nowhere = await Nowhere.create({ url });
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange(ex.name, 'direct', { durable: false });
    const { queue: replies } = await ch.assertQueue('', { exclusive: true });
    // The processor's queue is bound once it is ready: wait for it.
    for (
      let i = 0;
      i < 100 &&
      (await ch.checkQueue(queue).then(
        () => false,
        () => true,
      ));
      i++
    )
      await new Promise((r) => setTimeout(r, 20));
    for (const [i, [, body, o]] of cases.entries()) {
      ch.publish(ex.name, 'k', Buffer.from(body), {
        messageId: idOf(cases, i),
        correlationId: `c-${i}`,
        replyTo: o?.replyTo ? replies : undefined,
      });
    }
    await ch.waitForConfirms();
    await all;
  } finally {
    await h.close();
    await conn.close();
    await nowhere.close();
    const made = opts.errorExchange ? [opts.errorExchange] : [];
    await deleteTopology([queue, ...made], [ex.name, ...made, lost.name]).catch(() => undefined);
  }
  return viaBroker;
}

/** Runs `cases` through the harness: how each ended, by message id. */
async function throughHarness(cases: typeof CASES, opts: ReturnType<typeof options>): Promise<Map<string, Seen>> {
  nowhere = testProducer(Nowhere, { unroutable: [lost.name] });
  const harness = await ProcessorHarness.start(Mixed, opts);
  const viaHarness = new Map<string, Seen>();
  try {
    for (const [i, [, body, o]] of cases.entries()) {
      const r = await harness.deliver(body, {
        messageId: idOf(cases, i),
        correlationId: `c-${i}`,
        replyTo: o?.replyTo ? 'replies' : undefined,
      });
      viaHarness.set(idOf(cases, i), seen(r, r.reply !== undefined));
    }
  } finally {
    await harness.close();
  }
  return viaHarness;
}

/** Both ways, side by side, one row per case; each row's two sides must be equal. */
async function compared(cases: typeof CASES, opts: () => ReturnType<typeof options>) {
  const viaBroker = await throughBroker(cases, opts());
  const viaHarness = await throughHarness(cases, opts());
  const table = cases.map(([what], i) => ({
    what,
    broker: viaBroker.get(idOf(cases, i)),
    harness: viaHarness.get(idOf(cases, i)),
  }));
  for (const row of table) expect(row.harness, row.what).to.deep.equal(row.broker);
  return table;
}

describe('ProcessorHarness and the broker', function () {
  this.timeout(60_000);
  const endings: string[] = [];

  it(`end the same ${CASES.length} envelopes the same way`, async () => {
    const table = await compared(CASES, options);
    // And each of the cases where features meet ends as it should (the same way on both sides, checked above).
    const row = (what: string) => table.find((r) => r.what === what)!.broker;
    expect(row('a handler past its time limit, sending late')).to.deep.equal({
      outcome: 'dead-lettered',
      error: 'HandlerTimeout',
      replied: false,
    });
    expect(row('an idempotency store that never answers')).to.deep.equal({
      outcome: 'acked',
      error: undefined,
      replied: false,
    });
    expect(row('an async schema that never answers')).to.deep.equal({
      outcome: 'dead-lettered',
      error: 'HandlerTimeout',
      replied: false,
    });
    // What it cannot read goes to its error exchange whole, to be replayed once the cause is mended.
    for (const what of UNREADABLE)
      expect(row(what), what).to.deep.equal({ outcome: 'dead-lettered', error: 'MalformedMessage', replied: false });
    expect(row('an encrypted message to a component without keys')).to.deep.equal({
      outcome: 'dead-lettered',
      error: 'MalformedMessage',
      replied: false,
    });
    expect(row('a held send no queue takes')).to.deep.equal({
      outcome: 'dead-lettered',
      error: 'BrokerError',
      replied: false,
    });
    endings.push(...table.map((r) => r.broker!.outcome));
  });

  it('end what they cannot read the same way without an error exchange: rejected', async () => {
    const cases = CASES.filter(([what]) => UNREADABLE.includes(what) || what === 'a handled command');
    const table = await compared(cases, () => ({ ...options(), errorExchange: undefined }));
    for (const { what, broker } of table)
      expect(broker, what).to.deep.equal(
        what === 'a handled command'
          ? { outcome: 'acked', error: undefined, replied: false }
          : { outcome: 'rejected', error: 'MalformedMessage', replied: false },
      );
    endings.push(...table.map((r) => r.broker!.outcome));
  });

  // A consumer the broker cancels (its queue deleted) has no counterpart in the harness, which has no broker to
  // cancel it: spec/messaging/consumer-cancel.spec.ts holds that case against the real broker.

  it('cover every kind of ending between them', () => {
    expect(new Set(endings)).to.deep.equal(new Set(['acked', 'rejected', 'dead-lettered', 'requeued', 'deferred']));
  });
});
