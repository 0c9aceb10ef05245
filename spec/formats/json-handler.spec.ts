/**
 * Plain JSON from systems that know nothing of Postage envelopes (a raw amqplib publisher here), taken by
 * `@JsonHandler` on a real broker.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import {
  GenericProducer,
  JsonHandler,
  MessageHandler,
  MessageProcessor,
  type DeliveryEvent,
  type DeliveryInfo,
  type ExchangeObject,
  type MessageSender,
  type MiddlewareContext,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { Harness, counter, deferred } from '../support/components.js';
import { deleteTopology, getOne, publishRaw, unique } from '../support/topology.js';

const quiet = makeLogger('silent');

/** A hand-made Standard Schema of `{ orderId: string, qty: number }`, as zod or valibot would hand one out. */
const Order: StandardSchemaV1<{ orderId: string; qty: number }> = {
  '~standard': {
    version: 1,
    vendor: 'postage-spec',
    validate(v) {
      const o = v as { orderId?: unknown; qty?: unknown } | null;
      const issues: StandardSchemaV1.Issue[] = [];
      if (typeof o?.orderId !== 'string') issues.push({ message: 'expected a string', path: ['orderId'] });
      if (typeof o?.qty !== 'number') issues.push({ message: 'expected a number', path: ['qty'] });
      return issues.length > 0 ? { issues } : { value: { orderId: o!.orderId as string, qty: o!.qty as number } };
    },
  },
};

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('JsonHandler', function () {
  this.timeout(20_000);
  let url: string;
  let h: Harness;
  let ex: ExchangeObject;
  let queue: string;
  const extra: { queues: string[]; exchanges: string[] } = { queues: [], exchanges: [] };

  before(async () => {
    url = await brokerUrl();
  });
  beforeEach(() => {
    h = new Harness();
    ex = { name: unique('json-ex'), type: 'topic', durable: false };
    queue = unique('json-q');
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, ...extra.queues], [ex.name, ...extra.exchanges]).catch(() => undefined);
    extra.queues = [];
    extra.exchanges = [];
  });

  it('hands a raw publisher’s plain JSON to its routing key’s handler, with the delivery and its headers', async () => {
    const got = deferred<{ body: unknown; delivery: DeliveryInfo }>();
    const envelope = deferred<unknown>();
    class Orders extends MessageProcessor {
      @JsonHandler('orders.placed')
      placed(body: unknown, delivery: DeliveryInfo) {
        got.resolve({ body, delivery });
      }
      // Envelope handlers live in the same processor and still get envelopes.
      @MessageHandler('command', 'audit')
      audit(content: unknown) {
        envelope.resolve(content);
      }
    }
    await h.start(new Orders({ url, logger: quiet, eqk: [[ex, [[queue, 'orders.placed']]]] }));
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 'A-1', qty: 2 }), {
      contentType: 'application/json',
      messageId: 'm-1',
      headers: { 'x-tenant': 'acme' },
    });
    const { body, delivery } = await got.promise;
    expect(body).to.deep.equal({ orderId: 'A-1', qty: 2 });
    expect(delivery.routingKey).to.equal('orders.placed');
    expect(delivery.messageId).to.equal('m-1');
    expect(delivery.headers).to.include({ 'x-tenant': 'acme' });

    const exchange = ex;
    class Auditor extends GenericProducer {
      static override eks = [[exchange, 'orders.placed'] as const];
      declare message_audit: MessageSender;
    }
    const p = await Auditor.create({ url, logger: quiet });
    h.onClose(() => p.close());
    await p.message_audit({ who: 'me' });
    expect(await envelope.promise).to.deep.equal({ parameters: { who: 'me' } });
  });

  it('takes a topic pattern, and runs every JSON handler whose key matches, in declaration order', async () => {
    const seen: string[] = [];
    const both = counter(3);
    class Orders extends MessageProcessor {
      @JsonHandler('orders.*.placed')
      placed(body: { n: number }, d: DeliveryInfo) {
        seen.push(`placed ${body.n} ${d.routingKey}`);
        both.hit();
      }
      @JsonHandler('orders.#')
      any(body: { n: number }, d: DeliveryInfo) {
        seen.push(`any ${body.n} ${d.routingKey}`);
        both.hit();
      }
    }
    await h.start(new Orders({ url, logger: quiet, eqk: [[ex, [[queue, 'orders.#']]]] }));
    await publishRaw(ex.name, 'orders.eu.placed', json({ n: 1 }));
    await publishRaw(ex.name, 'orders.eu.cancelled', json({ n: 2 }));
    await both.done;
    expect(seen).to.deep.equal(['placed 1 orders.eu.placed', 'any 1 orders.eu.placed', 'any 2 orders.eu.cancelled']);
  });

  it('sends a body its schema refuses to the error queue with the issues, unretried and unhandled', async () => {
    const errors = unique('json-errors');
    extra.queues.push(errors);
    extra.exchanges.push(errors);
    let runs = 0;
    const good = deferred<{ orderId: string; qty: number }>();
    class Orders extends MessageProcessor {
      @JsonHandler('orders.placed', { schema: Order })
      placed(order: { orderId: string; qty: number }) {
        runs++;
        good.resolve(order);
      }
    }
    await h.start(
      new Orders({
        url,
        logger: quiet,
        errorExchange: errors,
        retry: { attempts: 3, backoffMs: 1 },
        eqk: [[ex, [[queue, 'orders.placed']]]],
      }),
    );
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 7 }));
    const dead = await getOne(errors, 10_000);
    expect(dead, 'a dead letter').to.not.equal(false);
    const m = dead as amqp.GetMessage;
    const headers = m.properties.headers!;
    expect(headers['x-error-name']).to.equal('ValidationError');
    expect(headers['x-attempts']).to.equal(1);
    expect(JSON.parse(String(headers['x-validation-issues']))).to.deep.equal([
      { message: 'expected a string', path: ['orderId'] },
      { message: 'expected a number', path: ['qty'] },
    ]);
    expect(String(headers['x-error-message'])).to.match(/^json\/orders\.placed failed its schema/);
    // The original body, as it came: an operator can replay it once mended.
    expect(JSON.parse(m.content.toString())).to.deep.equal({ orderId: 7 });
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 'B-2', qty: 1 }));
    expect(await good.promise).to.deep.equal({ orderId: 'B-2', qty: 1 });
    expect(runs).to.equal(1);
  });

  it('answers a JSON request that has reply_to with the handler’s value as plain JSON', async () => {
    class Prices extends MessageProcessor {
      @JsonHandler('prices.quote')
      quote(body: { item: string }) {
        return { item: body.item, price: body.item.length * 10 };
      }
    }
    await h.start(new Prices({ url, logger: quiet, eqk: [[ex, [[queue, 'prices.quote']]]] }));
    const conn = await amqp.connect(url);
    h.onClose(() => conn.close());
    const ch = await conn.createChannel();
    const reply = deferred<amqp.ConsumeMessage>();
    await ch.consume('amq.rabbitmq.reply-to', (msg) => msg && reply.resolve(msg), { noAck: true });
    ch.publish(ex.name, 'prices.quote', json({ item: 'book' }), {
      replyTo: 'amq.rabbitmq.reply-to',
      correlationId: 'c-42',
      contentType: 'application/json',
    });
    const r = await reply.promise;
    expect(r.properties.correlationId).to.equal('c-42');
    expect(JSON.parse(r.content.toString())).to.deep.equal({ item: 'book', price: 40 });
  });

  it('drops a repeat by its message id, or by its idempotencyKey where the publisher set none', async () => {
    const runs: string[] = [];
    const last = deferred();
    class Orders extends MessageProcessor {
      @JsonHandler('orders.placed', { idempotencyKey: (b) => (b as { orderId: string }).orderId })
      placed(body: { orderId: string; last?: boolean }) {
        runs.push(body.orderId);
        if (body.last) last.resolve();
      }
    }
    await h.start(new Orders({ url, logger: quiet, deduplicate: true, eqk: [[ex, [[queue, 'orders.placed']]]] }));
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 'x' }), { messageId: 'id-1' });
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 'y' }), { messageId: 'id-1' });
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 'k' }));
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 'k' }));
    await publishRaw(ex.name, 'orders.placed', json({ orderId: 'z', last: true }));
    await last.promise;
    expect(runs).to.deep.equal(['x', 'k', 'z']);
  });

  it('shows middleware and observers the body as content, type json and the routing key as name', async () => {
    const ctxs: MiddlewareContext[] = [];
    const events: DeliveryEvent[] = [];
    const done = deferred();
    class Orders extends MessageProcessor {
      @JsonHandler('orders.#')
      placed() {}
    }
    const p = new Orders({ url, logger: quiet, eqk: [[ex, [[queue, 'orders.#']]]] });
    p.use(async (ctx, next) => {
      ctxs.push(ctx);
      await next();
    });
    p.observe((e) => {
      events.push(e);
      done.resolve();
    });
    await h.start(p);
    await publishRaw(ex.name, 'orders.eu.placed', json([1, 2, 3]));
    await done.promise;
    expect(ctxs[0].message).to.include({ type: 'json', name: 'orders.eu.placed', category: 'message' });
    expect(ctxs[0].message.content).to.deep.equal([1, 2, 3]);
    expect(ctxs[0].delivery.routingKey).to.equal('orders.eu.placed');
    expect(events[0]).to.include({ type: 'json', name: 'orders.eu.placed', outcome: 'acked' });
  });

  it('does not take a body that is not JSON, nor JSON on a key no handler takes: both are unreadable', async () => {
    const events: DeliveryEvent[] = [];
    const two = counter(3);
    let runs = 0;
    class Orders extends MessageProcessor {
      @JsonHandler('orders.placed')
      placed() {
        runs++;
      }
    }
    const p = new Orders({ url, logger: quiet, eqk: [[ex, [[queue, 'orders.#']]]] });
    p.observe((e) => {
      events.push(e);
      two.hit();
    });
    await h.start(p);
    await publishRaw(ex.name, 'orders.placed', Buffer.from('not json {'));
    await publishRaw(ex.name, 'orders.cancelled', json({ orderId: 'A-1' }));
    // A structured CloudEvent sent as plain JSON: the reason says which content type it needed.
    const event = { specversion: '1.0', type: 'shop.order.refunded', source: '/shop', id: 'e-1', data: {} };
    await publishRaw(ex.name, 'orders.refunded', json(event));
    await two.done;
    expect(runs).to.equal(0);
    for (const e of events) {
      expect(['rejected', 'dead-lettered']).to.include(e.outcome);
      expect((e.error as Error).name).to.equal('MalformedMessage');
    }
    expect((events[1].error as Error).message)
      .to.contain("routing key 'orders.cancelled' that no @JsonHandler takes")
      .and.not.contain('CloudEvent');
    expect((events[2].error as Error).message).to.contain(
      "it looks like a structured CloudEvent (type 'shop.order.refunded'), which must come with the content type " +
        'application/cloudevents+json',
    );
  });

  it('refuses an empty binding key when the class is defined', () => {
    expect(() => JsonHandler('')).to.throw(TypeError, /bindingKey/);
  });
});
