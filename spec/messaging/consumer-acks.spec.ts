import { expect } from 'chai';
import sinon from 'sinon';
import amqp from 'amqplib';
import { GenericConsumer, type ConsumeMessage, type ExchangeObject } from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { counter, nextTurn } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('GenericConsumer acks', () => {
  let url: string;
  let ex: ExchangeObject;
  let queue: string;

  beforeEach(async () => {
    url = await brokerUrl();
    ex = { name: unique('ex'), type: 'direct', durable: false };
    queue = unique('q');
  });
  afterEach(async () => deleteTopology([queue], [ex.name]));

  async function publish(n: number): Promise<void> {
    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    for (let i = 1; i <= n; i++) ch.publish(ex.name, 'a', Buffer.from(String(i)));
    await ch.waitForConfirms();
    await conn.close();
  }

  async function messagesLeft(): Promise<number> {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    const ok = await ch.checkQueue(queue);
    await conn.close();
    return ok.messageCount;
  }

  it('settles a run of deliveries with a few multiple acks, and the broker forgets every one', async () => {
    const c = new GenericConsumer({ url, eqk: [[ex, [[queue, 'a']]]], prefetch: 100 });
    await c.ready();
    await publish(60);
    const acks = sinon.spy(c.channel, 'ack');
    const all = counter(60);
    await c.startConsuming((m) => {
      c.ack(m);
      all.hit();
    });
    await all.done;
    await nextTurn();
    expect(acks.callCount).to.be.greaterThan(0).and.lessThan(60);
    expect(acks.getCalls().every((call) => call.args[1] === true)).to.equal(true);
    // Closing would requeue anything the broker still held unacked.
    await c.close();
    expect(await messagesLeft()).to.equal(0);
  });

  it('never acks a delivery it holds with a later batch: it goes back to the queue when the consumer closes', async () => {
    const c = new GenericConsumer({ url, eqk: [[ex, [[queue, 'a']]]], prefetch: 100 });
    await c.ready();
    await publish(5);
    let held: ConsumeMessage | undefined;
    const all = counter(5);
    await c.startConsuming((m) => {
      if (m.content.toString() === '1') held = m;
      else c.ack(m);
      all.hit();
    });
    await all.done;
    await nextTurn();
    expect(held).to.not.equal(undefined);
    await c.close();
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    const back = await ch.get(queue, { noAck: true });
    const more = await ch.get(queue, { noAck: true });
    await conn.close();
    if (back === false) throw new Error('expected a message in the queue, found none');
    expect(back.content.toString()).to.equal('1');
    expect(more).to.equal(false);
  });

  it('accepts acks in any order without a channel error', async () => {
    const c = new GenericConsumer({ url, eqk: [[ex, [[queue, 'a']]]], prefetch: 100 });
    const lost: unknown[] = [];
    c.on('disconnected', (e) => lost.push(e));
    await c.ready();
    await publish(20);
    const got: ConsumeMessage[] = [];
    const all = counter(20);
    await c.startConsuming((m) => {
      got.push(m);
      all.hit();
    });
    await all.done;
    // Evens first, then odds from the top down.
    for (const m of got.filter((_, i) => i % 2 === 1)) c.ack(m);
    for (const m of got.filter((_, i) => i % 2 === 0).reverse()) c.ack(m);
    await nextTurn();
    // A ping on the channel: a channel error from a bad ack would have closed it by the time this answers.
    await c.channel.checkQueue(queue);
    await c.close();
    expect(lost).to.deep.equal([]);
    expect(await messagesLeft()).to.equal(0);
  });
});
