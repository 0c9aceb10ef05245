/**
 * CloudEvents over AMQP (the CloudEvents AMQP protocol binding 1.0) on a real broker: events in binary and structured
 * mode reach `@CloudEventHandler`, and `_cloudevent` sends one that a raw consumer reads as the binding says.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import {
  CloudEventHandler,
  GenericProducer,
  JsonHandler,
  MessageCommand,
  MessageProcessor,
  type CloudEventAttributes,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { counter, deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, publishRaw, unique } from '../support/topology.js';

const quiet = makeLogger('silent');
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('CloudEventHandler', function () {
  this.timeout(20_000);
  const f = exchangeFixture('ce', 'topic');

  it('takes events in binary mode (cloudEvents_ and the older cloudEvents: headers) and structured mode', async () => {
    const got: Array<{ data: unknown; event: CloudEventAttributes }> = [];
    const three = counter(3);
    class Orders extends MessageProcessor {
      @CloudEventHandler('com.example.order.placed')
      placed(data: unknown, event: CloudEventAttributes) {
        got.push({ data, event });
        three.hit();
      }
    }
    await f.h.start(new Orders({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'events.#']]]] }));
    await publishRaw(f.ex.name, 'events.a', json({ orderId: 'A-1' }), {
      contentType: 'application/json',
      headers: {
        cloudEvents_specversion: '1.0',
        cloudEvents_id: 'e-1',
        cloudEvents_source: '/shop',
        cloudEvents_type: 'com.example.order.placed',
        cloudEvents_subject: 'A-1',
        cloudEvents_traceparent: TRACEPARENT,
      },
    });
    await publishRaw(f.ex.name, 'events.b', json({ orderId: 'A-2' }), {
      contentType: 'application/json',
      headers: {
        'cloudEvents:specversion': '1.0',
        'cloudEvents:id': 'e-2',
        'cloudEvents:source': '/shop',
        'cloudEvents:type': 'com.example.order.placed',
      },
    });
    await publishRaw(
      f.ex.name,
      'events.c',
      json({
        specversion: '1.0',
        id: 'e-3',
        source: '/shop',
        type: 'com.example.order.placed',
        time: '2024-05-01T12:00:00Z',
        datacontenttype: 'application/json',
        data: { orderId: 'A-3' },
      }),
      { contentType: 'application/cloudevents+json; charset=utf-8' },
    );
    await three.done;
    got.sort((a, b) => a.event.id.localeCompare(b.event.id));
    expect(got.map((g) => g.data)).to.deep.equal([{ orderId: 'A-1' }, { orderId: 'A-2' }, { orderId: 'A-3' }]);
    expect(got[0].event).to.deep.include({
      specversion: '1.0',
      id: 'e-1',
      source: '/shop',
      type: 'com.example.order.placed',
      subject: 'A-1',
      datacontenttype: 'application/json',
      traceparent: TRACEPARENT,
    });
    expect(got[1].event).to.include({ id: 'e-2', source: '/shop' });
    expect(got[2].event).to.include({ id: 'e-3', time: '2024-05-01T12:00:00Z' });
    expect(got[2].event).to.not.have.property('data');
  });

  it('runs only the handlers of the event’s type; an event none takes may still be taken as JSON', async () => {
    const seen: string[] = [];
    const two = counter(2);
    class Orders extends MessageProcessor {
      @CloudEventHandler('com.example.order.*')
      order(_data: unknown, event: CloudEventAttributes) {
        seen.push(`order ${event.type}`);
        two.hit();
      }
      @CloudEventHandler('com.example.invoice.sent')
      invoice() {
        seen.push('invoice');
      }
      @JsonHandler('events.#')
      other(body: unknown) {
        seen.push(`json ${JSON.stringify(body)}`);
        two.hit();
      }
    }
    await f.h.start(new Orders({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'events.#']]]] }));
    const ce = (type: string, id: string) => ({
      contentType: 'application/json',
      headers: { cloudEvents_specversion: '1.0', cloudEvents_id: id, cloudEvents_source: '/s', cloudEvents_type: type },
    });
    await publishRaw(f.ex.name, 'events.x', json({ n: 1 }), ce('com.example.order.shipped', 'i-1'));
    await publishRaw(f.ex.name, 'events.x', json({ n: 2 }), ce('com.example.refund.made', 'i-2'));
    await two.done;
    expect(seen).to.deep.equal(['order com.example.order.shipped', 'json {"n":2}']);
  });

  it('sends with _cloudevent an event a raw consumer reads: required attributes, data, traceparent', async () => {
    const sink = unique('ce-sink');
    f.h.onClose(() => deleteTopology([sink]));
    const exchange = f.ex;
    class Shop extends GenericProducer {
      static override eks = [[exchange, 'events.placed'] as const];
      build_message_placed(orderId: string) {
        return new MessageCommand('placed', { orderId });
      }
    }
    const p = await Shop.create({ url: f.url, logger: quiet, fingerprint: { name: 'shop', host: 'h1' } });
    f.h.onClose(() => p.close());
    // The sink queue reads what goes out; the relay below sends one while handling a traced delivery.
    const conn = await amqp.connect(f.url);
    f.h.onClose(() => conn.close());
    const ch = await conn.createChannel();
    await ch.assertQueue(sink, { durable: false });
    await ch.bindQueue(sink, f.ex.name, 'events.placed');

    await p.message_placed('A-1', { _cloudevent: true, _message_id: 'm-1' });
    const plain = (await getOne(sink, 5000)) as amqp.GetMessage;
    expect(plain, 'the event').to.not.equal(false);
    expect(plain.properties.contentType).to.equal('application/json');
    expect(JSON.parse(plain.content.toString())).to.deep.equal({ orderId: 'A-1' });
    const headers = plain.properties.headers!;
    expect(headers).to.include({
      cloudEvents_specversion: '1.0',
      cloudEvents_id: 'm-1',
      cloudEvents_source: 'postage://h1/shop',
      cloudEvents_type: 'placed',
    });
    expect(Number.isNaN(Date.parse(String(headers.cloudEvents_time)))).to.equal(false);

    class Relay extends MessageProcessor {
      @JsonHandler('relay.in')
      relay() {
        return p.message_placed('A-2', { _cloudevent: { type: 'com.example.order.placed', source: '/shop' } });
      }
    }
    const relayQueue = unique('ce-relay');
    f.h.onClose(() => deleteTopology([relayQueue]));
    await f.h.start(new Relay({ url: f.url, logger: quiet, eqk: [[f.ex, [[relayQueue, 'relay.in']]]] }));
    await publishRaw(f.ex.name, 'relay.in', json({}), { headers: { traceparent: TRACEPARENT } });
    const traced = (await getOne(sink, 5000)) as amqp.GetMessage;
    expect(traced, 'the relayed event').to.not.equal(false);
    expect(traced.properties.headers).to.include({
      cloudEvents_type: 'com.example.order.placed',
      cloudEvents_source: '/shop',
      cloudEvents_traceparent: TRACEPARENT,
    });
  });

  it('round-trips: a postage-ts CloudEvent reaches a @CloudEventHandler with the parameters as data', async () => {
    const got = deferred<{ data: unknown; event: CloudEventAttributes }>();
    class Orders extends MessageProcessor {
      @CloudEventHandler('placed')
      placed(data: unknown, event: CloudEventAttributes) {
        got.resolve({ data, event });
      }
    }
    await f.h.start(new Orders({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'events.placed']]]] }));
    const exchange = f.ex;
    class Shop extends GenericProducer {
      static override eks = [[exchange, 'events.placed'] as const];
      declare message_placed: MessageSender;
    }
    const p = await Shop.create({ url: f.url, logger: quiet });
    f.h.onClose(() => p.close());
    await p.message_placed({ orderId: 'A-9' }, { _cloudevent: true });
    const { data, event } = await got.promise;
    expect(data).to.deep.equal({ orderId: 'A-9' });
    expect(event.type).to.equal('placed');
  });

  it('refuses _cloudevent on an RPC, and a _cloudevent that is neither true nor { type?, source? }', async () => {
    const exchange = f.ex;
    class Shop extends GenericProducer {
      static override eks = [[exchange, 'events.placed'] as const];
      declare message_placed: MessageSender;
    }
    const p = await Shop.create({ url: f.url, logger: quiet });
    f.h.onClose(() => p.close());
    const rpc = (p as unknown as { rpc_price: (a: object, o: object) => Promise<unknown> }).rpc_price;
    await rpc({}, { _cloudevent: true }).then(
      () => expect.fail('sent'),
      (err: Error) => expect(err.message).to.match(/_cloudevent is for messages/),
    );
    await p.message_placed({}, { _cloudevent: { kind: 'x' } as never }).then(
      () => expect.fail('sent'),
      (err: Error) => expect(err.message).to.match(/_cloudevent takes type and source, not 'kind'/),
    );
  });
});
