/**
 * A message a processor cannot read (not JSON, empty, another version, JSON
 * that is no envelope, a sealed content without its key, too large) reaches
 * no handler. Where the processor has an error exchange it goes there whole,
 * for `postage errors` to show and replay once the cause is mended; without
 * one it is rejected (dead-lettered where the queue has a dead-letter
 * exchange), and said at error once per cause.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import {
  EncryptedJsonEncoder,
  ErrorQueue,
  JsonEncoder,
  MessageHandler,
  MessageProcessor,
  type DeliveryEvent,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { counter, deferred, Harness } from '../support/components.js';
import { envelope as anEnvelope } from '../support/envelopes.js';
import { deleteTopology, getOne, publishRaw, unique } from '../support/topology.js';

const key = randomBytes(32);
const envelope = (extra: Record<string, unknown> = {}) =>
  anEnvelope({ content: { parameters: { amount: 10 } }, ...extra });
const sealed = new EncryptedJsonEncoder({ keys: { k1: key } }).encode(envelope());

/** Each way a body cannot be read, with the cause it is grouped by and what its reason says. */
const UNREADABLE: Array<[string, Buffer, string, RegExp]> = [
  ['invalid JSON', Buffer.from('{"type": "command", '), 'not JSON', /not valid JSON/],
  ['an empty body', Buffer.alloc(0), 'empty body', /empty/],
  ['a wrong version', Buffer.from(JSON.stringify(envelope({ version: '3' }))), 'unsupported version', /version "3"/],
  ['plain JSON from another system', Buffer.from('{"orderId": 7, "total": 12.5}'), 'not an envelope', /version/],
  ['a sealed content without keys', sealed, 'encryption', /encrypted \(\$encrypted\)/],
  [
    'a body over the size limit',
    Buffer.from(JSON.stringify(envelope({ pad: 'x'.repeat(2048) }))),
    'too large',
    /over the limit of 1024/,
  ],
];

/** A logger whose JSON lines a spec reads. */
function lines() {
  const all: Array<Record<string, unknown>> = [];
  const logger = makeLogger('warn', { write: (l: string) => void all.push(JSON.parse(l) as Record<string, unknown>) });
  return { logger, all, about: (re: RegExp) => all.filter((l) => re.test(String(l.msg))) };
}

describe('Unreadable messages', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  let ex: { name: string; type: 'direct'; durable: false };
  let queue: string;
  let errors: string;
  const extraQueues: string[] = [];

  before(async () => {
    url = await brokerUrl();
  });
  beforeEach(() => {
    h = new Harness();
    ex = { name: unique('unread-ex'), type: 'direct', durable: false };
    queue = unique('unread-q');
    errors = unique('unread-errors');
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, errors, ...extraQueues.splice(0)], [ex.name, errors]).catch(() => undefined);
  });

  class Payments extends MessageProcessor {
    handled: unknown[] = [];
    @MessageHandler('command', 'pay')
    pay(content: unknown) {
      this.handled.push(content);
    }
  }

  /** Starts a Payments on the spec's queue; resolves `settled` after `n` deliveries. */
  async function payments(n: number, options: Record<string, unknown> = {}) {
    const settled = counter(n);
    const events: DeliveryEvent[] = [];
    const p = new Payments({
      url,
      handleSignals: false,
      logger: makeLogger('silent'),
      eqk: [[ex, [[queue, 'k']]]],
      ...options,
    });
    p.observe((e) => {
      events.push(e);
      settled.hit();
    });
    await h.start(p);
    return { p, settled, events };
  }

  it('go whole to the error exchange, with x-error-name MalformedMessage, the reason, the origin', async () => {
    const { p, settled, events } = await payments(UNREADABLE.length, {
      errorExchange: errors,
      encoder: new JsonEncoder({ maxBytes: 1024 }),
    });
    for (const [i, [, body]] of UNREADABLE.entries())
      await publishRaw(ex.name, 'k', body, {
        messageId: `m-${i}`,
        contentType: 'application/json',
        correlationId: `c-${i}`,
        headers: { tenant: 'acme' },
      });
    await settled.done;
    expect(events.map((e) => e.outcome)).to.deep.equal(UNREADABLE.map(() => 'dead-lettered'));
    expect(p.handled).to.deep.equal([]);
    const q = await ErrorQueue.open(errors, { url });
    try {
      const failed = await q.list();
      expect(failed.map((m) => m.id)).to.have.members(UNREADABLE.map((_, i) => `m-${i}`));
      for (const [i, [what, body, , reason]] of UNREADABLE.entries()) {
        const m = failed.find((f) => f.id === `m-${i}`)!;
        expect(m.content.equals(body), what).to.equal(true);
        expect(m.errorName, what).to.equal('MalformedMessage');
        expect(m.errorMessage, what).to.match(reason);
        expect(m.originalExchange, what).to.equal(ex.name);
        expect(m.originalRoutingKey, what).to.equal('k');
        expect(m.failedAt, what).to.be.instanceOf(Date);
        expect(m.attempts, what).to.equal(0);
        expect(m.headers.tenant, what).to.equal('acme');
        expect(m.properties, what).to.include({ contentType: 'application/json', correlationId: `c-${i}` });
      }
    } finally {
      await q.close();
    }
  });

  it('are sent back unchanged by a replay once the cause is mended: a key deployed, the message handled', async () => {
    const keyless = await payments(1, { errorExchange: errors });
    await publishRaw(ex.name, 'k', sealed, { messageId: 'sealed-1' });
    await keyless.settled.done;
    expect(keyless.events[0].outcome).to.equal('dead-lettered');
    await keyless.p.close();
    // The key is deployed: a new instance of the component, with it.
    const handled = deferred<unknown>();
    const withKey = new Payments({
      url,
      handleSignals: false,
      logger: makeLogger('silent'),
      eqk: [[ex, [[queue, 'k']]]],
      errorExchange: errors,
      encoder: new EncryptedJsonEncoder({ keys: { k1: key } }),
    });
    withKey.observe((e) => {
      if (e.outcome === 'acked') handled.resolve(withKey.handled[0]);
    });
    await h.start(withKey);
    const q = await ErrorQueue.open(errors, { url });
    try {
      const report = await q.replay({ all: true });
      expect(report.replayed.map((m) => m.id)).to.deep.equal(['sealed-1']);
    } finally {
      await q.close();
    }
    expect(await handled.promise).to.deep.equal({ parameters: { amount: 10 } });
  });

  it('without an error exchange, are dead-lettered by the queue, said at error with id, size, reason', async () => {
    const dlx = unique('unread-dlx');
    extraQueues.push(dlx);
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      await ch.assertQueue(dlx, { durable: false });
      await ch.assertQueue(queue, {
        durable: true,
        arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dlx },
      });
      await ch.close();
    } finally {
      await conn.close();
    }
    const log = lines();
    const { settled, events } = await payments(1, {
      logger: log.logger,
      eqk: [
        [
          ex,
          [
            [
              {
                name: queue,
                flags: { durable: true, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dlx } },
              },
              'k',
            ],
          ],
        ],
      ],
    });
    const body = Buffer.from('not json at all');
    await publishRaw(ex.name, 'k', body, { messageId: 'lost-1' });
    await settled.done;
    expect(events[0]).to.include({ outcome: 'rejected' });
    expect((events[0].error as Error).name).to.equal('MalformedMessage');
    const [line] = log.about(/malformed message rejected/);
    expect(line, 'a log line for the rejection').to.be.an('object');
    expect(line).to.include({ level: 50, messageId: 'lost-1', size: body.length, cause: 'not JSON' });
    expect(String(line.reason)).to.match(/not valid JSON/);
    expect(String(line.msg)).to.match(/without an error exchange it is gone/);
    const dead = await getOne(dlx);
    expect(dead, 'the message in the dead-letter queue').to.not.equal(false);
    expect((dead as amqp.GetMessage).content.equals(body)).to.equal(true);
  });

  it('say a flood of one cause once, and each other cause once', async () => {
    const log = lines();
    const n = 30;
    const { settled } = await payments(n + 1, { logger: log.logger });
    for (let i = 0; i < n; i++) await publishRaw(ex.name, 'k', Buffer.from(`{broken ${i}`), { messageId: `f-${i}` });
    await publishRaw(ex.name, 'k', Buffer.from('[1, 2]'), { messageId: 'other' });
    await settled.done;
    const said = log.about(/malformed message rejected/);
    expect(said.map((l) => l.cause)).to.deep.equal(['not JSON', 'not an envelope']);
    expect(said[0].messageId).to.equal('f-0');
  });
});
