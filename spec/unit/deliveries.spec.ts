import { expect } from 'chai';
import type { ConsumeMessage } from 'amqplib';
import { badReplyTo } from '../../lib/receive/delivery/replier.js';
import { DeliveryCounter } from '../../lib/receive/delivery/deliveries.js';

function redelivery(o: {
  redelivered?: boolean;
  messageId?: string;
  content?: string;
  headers?: Record<string, unknown>;
}): ConsumeMessage {
  return {
    fields: { redelivered: o.redelivered ?? false, routingKey: 'k', deliveryTag: 1, exchange: 'x', consumerTag: 't' },
    properties: { messageId: o.messageId, headers: o.headers ?? {} },
    content: Buffer.from(o.content ?? '{}'),
  } as unknown as ConsumeMessage;
}

describe('DeliveryCounter', () => {
  it('numbers the deliveries of one message: 1 for the first, then one more for every redelivery', () => {
    const c = new DeliveryCounter();
    expect(c.count(redelivery({ messageId: 'a' }))).to.equal(1);
    expect(c.count(redelivery({ messageId: 'a', redelivered: true }))).to.equal(2);
    expect(c.count(redelivery({ messageId: 'a', redelivered: true }))).to.equal(3);
    expect(c.count(redelivery({ messageId: 'b', redelivered: true }))).to.equal(2);
  });

  it('tells messages without an id apart by what they carry', () => {
    const c = new DeliveryCounter();
    expect(c.count(redelivery({ content: 'one', redelivered: true }))).to.equal(2);
    expect(c.count(redelivery({ content: 'one', redelivered: true }))).to.equal(3);
    expect(c.count(redelivery({ content: 'two', redelivered: true }))).to.equal(2);
  });

  it('starts over for a message once it was settled', () => {
    const c = new DeliveryCounter();
    c.count(redelivery({ messageId: 'a', redelivered: true }));
    c.forget(redelivery({ messageId: 'a', redelivered: true }));
    expect(c.count(redelivery({ messageId: 'a', redelivered: true }))).to.equal(2);
  });

  it("believes a quorum queue's x-delivery-count when it says more", () => {
    const c = new DeliveryCounter();
    expect(c.count(redelivery({ messageId: 'q', redelivered: true, headers: { 'x-delivery-count': 6 } }))).to.equal(7);
    expect(
      c.count(redelivery({ messageId: 'r', redelivered: true, headers: { 'x-delivery-count': 'junk' } })),
    ).to.equal(2);
  });
});

describe('badReplyTo', () => {
  it('takes queue names and the direct reply-to addresses RabbitMQ hands out', () => {
    expect(badReplyTo('my-replies')).to.equal(undefined);
    expect(badReplyTo('amq.gen-JzTY20BRgKO-HjmUJj0wLg')).to.equal(undefined);
    expect(
      badReplyTo('amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAADXwAAAABrBn5n.ks6W22LXEr8/W8lonzHN9A=='),
    ).to.equal(undefined);
    expect(badReplyTo('amq.rabbitmq.reply-to.g1h2AA5yZXBseUA2ODc4MTMzNAAAcEoAAAAAaS8eQg==')).to.equal(undefined);
  });

  it('refuses direct reply-to names RabbitMQ would close the connection for, and names too long to send', () => {
    for (const name of [
      'amq.rabbitmq.reply-to.abc.def',
      'amq.rabbitmq.reply-to.',
      'amq.rabbitmq.reply-to.a$b',
      'amq.rabbitmq.reply-to.AAAA..AAAA',
      'amq.rabbitmq.reply-to.AAAA.BBBB.CCCC',
    ]) {
      expect(badReplyTo(name), name).to.match(/direct reply-to/);
    }
    expect(badReplyTo('q'.repeat(256))).to.match(/255 bytes/);
  });
});
