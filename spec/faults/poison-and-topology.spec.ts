/**
 * Faults on the shared broker: a flood of poison messages among good ones; a
 * dead first broker host; quorum queues. Must hold: every good message is
 * handled, every poison one dead-letters, nothing is lost.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { GenericProducer, MessageHandler, MessageProcessor, type ExchangeObject } from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness, counter, deferred } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('fault: poison, hosts and quorum queues', function () {
  this.timeout(60_000);
  let url: string;
  let h: Harness;
  const queues: string[] = [];
  const exchanges: string[] = [];
  beforeEach(async () => {
    url = await brokerUrl();
    h = new Harness();
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology(queues.splice(0), exchanges.splice(0));
  });

  it('handles 10,000 good messages and dead-letters 1,000 poison ones mixed among them', async () => {
    const queue = unique('flood');
    const dlx = unique('flood-dlx');
    const dlq = unique('flood-dlq');
    queues.push(queue, dlq);
    exchanges.push(dlx);
    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange(dlx, 'fanout', { durable: false });
    await ch.assertQueue(dlq);
    await ch.bindQueue(dlq, dlx, '');
    const good = counter(10_000);
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'good')
      ok() {
        good.hit();
      }
    }
    await h.start(
      new Sink({
        url,
        prefetch: 100,
        eqk: [
          [
            { name: '', type: 'direct' },
            [[{ name: queue, flags: { arguments: { 'x-dead-letter-exchange': dlx } } }, queue]],
          ],
        ],
      }),
    );
    const goodBody = Buffer.from(
      JSON.stringify({
        type: 'command',
        name: 'good',
        category: 'message',
        version: '2',
        fingerprint: {},
        content: { parameters: {} },
        _reserved: {},
      }),
    );
    const poison = [
      Buffer.from('not json'),
      Buffer.from('[1,2]'),
      Buffer.from('{"version":"1"}'),
      Buffer.from('{"__proto__":{"x":1}}'),
    ];
    for (let i = 0; i < 11_000; i++) {
      ch.sendToQueue(queue, i % 11 === 10 ? poison[i % poison.length] : goodBody, { persistent: true });
      if (i % 1000 === 999) await ch.waitForConfirms();
    }
    await ch.waitForConfirms();
    await good.done;
    let dead = (await ch.checkQueue(dlq)).messageCount;
    const deadline = Date.now() + 10_000;
    while (dead < 1000 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      dead = (await ch.checkQueue(dlq)).messageCount;
    }
    await conn.close();
    expect(good.count()).to.equal(10_000);
    expect(dead).to.equal(1000);
  });

  it('connects to the first broker host that answers', async () => {
    const ex: ExchangeObject = { name: unique('hosts'), type: 'direct', durable: false, autoDelete: true };
    class P extends GenericProducer {
      static override eks = [[ex, 'k'] as const];
    }
    // Port 1 refuses at once: the producer moves on to the next URL.
    const p = await P.create({ url: `amqp://guest:guest@127.0.0.1:1/%2F,${url}` });
    expect(p.connection).to.not.equal(undefined);
    await p.close();
  });

  it('consumes from a quorum queue declared through eqk flags', async () => {
    const queue = unique('quorum');
    queues.push(queue);
    const got = deferred<unknown>();
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'q')
      q(content: unknown) {
        got.resolve(content);
      }
    }
    await h.start(
      new Sink({
        url,
        eqk: [
          [
            { name: '', type: 'direct' },
            [[{ name: queue, flags: { arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 3 } } }, queue]],
          ],
        ],
      }),
    );
    class P extends GenericProducer {
      static override eks = [[{ name: '', type: 'direct' }, queue] as const];
    }
    const p = await P.create({ url });
    h.onClose(() => p.close());
    await p.message_q({ a: 1 });
    expect(await got.promise).to.deep.equal({ parameters: { a: 1 } });
  });
});
