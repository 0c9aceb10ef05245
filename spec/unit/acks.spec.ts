import { expect } from 'chai';
import sinon from 'sinon';
import type { ConsumeMessage } from 'amqplib';
import { AckBatcher, type SettleChannel } from '../../lib/receive/acks.js';
import { nextTurn } from '../support/components.js';

const tagged = (tag: number) => ({ fields: { deliveryTag: tag } }) as ConsumeMessage;

/** A channel that closed under the batcher: every ack throws, as amqplib's do. */
function closedChannel(): SettleChannel {
  return {
    ack: () => {
      throw new Error('Channel closed');
    },
    reject: () => undefined,
  };
}

describe('AckBatcher', () => {
  function fake() {
    const channel = { ack: sinon.spy(), reject: sinon.spy() };
    return {
      channel,
      calls: () => channel.ack.getCalls().map((c) => [(c.args[0] as ConsumeMessage).fields.deliveryTag, c.args[1]]),
    };
  }

  it('folds consecutive acks into one multiple ack at the end of the turn', async () => {
    const { channel, calls } = fake();
    const b = new AckBatcher(channel, 50);
    for (let t = 1; t <= 10; t++) b.ack(tagged(t));
    expect(calls()).to.deep.equal([]);
    await nextTurn();
    expect(calls()).to.deep.equal([[10, true]]);
  });

  it('sends the batch at once when maxBatch acks are waiting', () => {
    const { calls, channel } = fake();
    const b = new AckBatcher(channel, 4);
    for (let t = 1; t <= 9; t++) b.ack(tagged(t));
    expect(calls()).to.deep.equal([
      [4, true],
      [8, true],
    ]);
  });

  it('acks out of order alone, and never lets a batch cover a delivery not yet settled', async () => {
    const { calls, channel } = fake();
    const b = new AckBatcher(channel, 50);
    // 1 is still in a handler: 2 and 3 cannot join a batch that would cover it.
    b.ack(tagged(2));
    b.ack(tagged(3));
    await nextTurn();
    expect(calls()).to.deep.equal([
      [2, false],
      [3, false],
    ]);
    // 1 settles: the run 1..3 is complete, and 4 batches again.
    b.ack(tagged(1));
    b.ack(tagged(4));
    await nextTurn();
    expect(calls().slice(2)).to.deep.equal([[4, true]]);
  });

  it('sends the waiting acks before a reject', () => {
    const { calls, channel } = fake();
    const b = new AckBatcher(channel, 50);
    b.ack(tagged(1));
    b.ack(tagged(2));
    b.reject(tagged(3), false);
    expect(calls()).to.deep.equal([[2, true]]);
    expect(channel.reject.calledOnceWith(sinon.match.has('fields', { deliveryTag: 3 }), false)).to.equal(true);
    expect(channel.ack.calledBefore(channel.reject)).to.equal(true);
  });

  it('drops its waiting acks quietly when the channel closed meanwhile', async () => {
    const b = new AckBatcher(closedChannel(), 50);
    b.ack(tagged(1));
    // The flush runs in a microtask: a throw there would be an uncaught exception.
    await nextTurn();
    expect(() => b.flush()).not.to.throw();
  });

  it('runs what must follow a settle (an RPC reply) after the batch that carries the settle, or at once when none waits', async () => {
    const order: string[] = [];
    const channel: SettleChannel = {
      ack: (m, all) => order.push(`ack ${m.fields.deliveryTag}${all ? '+' : ''}`),
      reject: (m) => order.push(`reject ${m.fields.deliveryTag}`),
    };
    const b = new AckBatcher(channel, 50);
    b.afterSettled(() => order.push('reply 0'));
    b.ack(tagged(1));
    b.afterSettled(() => order.push('reply 1'));
    b.ack(tagged(2));
    b.afterSettled(() => order.push('reply 2'));
    expect(order).to.deep.equal(['reply 0']);
    await nextTurn();
    expect(order).to.deep.equal(['reply 0', 'ack 2+', 'reply 1', 'reply 2']);
    b.reject(tagged(3), false);
    b.afterSettled(() => order.push('reply 3'));
    expect(order.slice(4)).to.deep.equal(['reject 3', 'reply 3']);
  });

  it('drops what waited for a settle when the channel closed before the settle went out (the request comes back)', async () => {
    const sent: string[] = [];
    const b = new AckBatcher(closedChannel(), 50);
    b.ack(tagged(1));
    b.afterSettled(() => sent.push('reply'));
    await nextTurn();
    expect(sent).to.deep.equal([]);
  });
});
