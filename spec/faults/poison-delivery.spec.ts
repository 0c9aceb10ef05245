/**
 * Fault: one delivery that brings its connection down every time it is handled.
 * A reply_to RabbitMQ cannot decode makes it close the connection (541) on the
 * reply; a handler can drop its connection (injected here by resetting the
 * socket). Must hold: the request is settled before its reply goes out, so a
 * poison reply costs one reconnection, not a loop; obviously malformed reply-to
 * names are not even tried; a message that keeps coming back unsettled is taken
 * from its handlers after `maxDeliveries`; everything behind it is handled.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import {
  DeliveryLimitExceeded,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MessageResult,
  MessageResultException,
  RpcCommand,
  RpcHandler,
  sleep,
} from '../../lib/index.js';
import { counter, deferred, dropConnection, exchangeFixture } from '../support/components.js';
import { getOne, publishRaw, settledQueue, unique } from '../support/topology.js';

/**
 * Passes every syntax check (base64, two segments), but is no address RabbitMQ made: it closes the connection on a
 * publish to it.
 */
const POISON_REPLY_TO = `amq.rabbitmq.reply-to.${Buffer.from([0x83, 0x68, 0x02, 0x03]).toString('base64')}.AAAA`;

describe('fault: a delivery that brings its connection down every time', function () {
  this.timeout(60_000);
  const f = exchangeFixture('pd');

  async function caller() {
    const exchange = f.ex;
    class Caller extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const c = await Caller.create({ url: f.url });
    f.h.onClose(() => c.close());
    return c;
  }

  function rpcRequest(n: number): Buffer {
    return Buffer.from(JSON.stringify(new RpcCommand('work', { n }).body));
  }

  class Doubler extends MessageProcessor {
    runs = new Map<number, number>();
    @RpcHandler('command', 'work')
    work(content: { parameters: { n: number } }) {
      const n = content.parameters.n;
      this.runs.set(n, (this.runs.get(n) ?? 0) + 1);
      return n * 2;
    }
  }

  it('answers every RPC behind one whose reply_to makes RabbitMQ close the connection, and runs that one once', async () => {
    const worker = new Doubler({
      url: f.url,
      reconnect: { initialMs: 20, maxMs: 100 },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    let drops = 0;
    worker.on('disconnected', () => drops++);
    await f.h.start(worker);
    await publishRaw(f.ex.name, 'k', rpcRequest(-1), { replyTo: POISON_REPLY_TO, correlationId: 'poison' });
    const c = await caller();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) => c.rpc_work({ n }, { _timeout: 2, _max_retry: 5 })),
    );
    expect(results.map((r) => (r as MessageResult).value)).to.deep.equal(Array.from({ length: 20 }, (_, n) => n * 2));
    // The broker did close the connection over the poison reply (else this spec proves nothing), once.
    expect(drops).to.equal(1);
    expect(worker.runs.get(-1)).to.equal(1);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  it('does not even try a reply_to RabbitMQ never hands out: the connection stays up', async () => {
    const worker = new Doubler({ url: f.url, eqk: [[f.ex, [[f.queue, 'k']]]] });
    let drops = 0;
    worker.on('disconnected', () => drops++);
    await f.h.start(worker);
    await publishRaw(f.ex.name, 'k', rpcRequest(-1), {
      replyTo: 'amq.rabbitmq.reply-to.abc.def',
      correlationId: 'bad',
    });
    const c = await caller();
    const r = await c.rpc_work({ n: 4 }, { _timeout: 5, _max_retry: 0 });
    expect(r).to.be.instanceOf(MessageResult);
    expect(worker.runs.get(-1)).to.equal(1);
    expect(drops).to.equal(0);
  });

  it('sends a message that drops its connection every time to the error exchange after maxDeliveries, and handles every one behind it', async () => {
    const errorExchange = unique('pd-errors');
    const good = counter(10);
    class Fragile extends MessageProcessor {
      fatalRuns = 0;
      @MessageHandler('command', 'fatal')
      async fatal() {
        this.fatalRuns++;
        dropConnection(this);
        await sleep(10);
      }
      @MessageHandler('command', 'fine')
      fine() {
        good.hit();
      }
    }
    const worker = new Fragile({
      url: f.url,
      errorExchange,
      maxDeliveries: 3,
      reconnect: { initialMs: 20, maxMs: 100 },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(worker);
    const c = await caller();
    await c.message_fatal({});
    for (let i = 0; i < 10; i++) await c.message_fine({ i });
    await good.done;
    expect(worker.fatalRuns).to.equal(3);
    const dead = await getOne(errorExchange);
    f.h.onClose(async () => {
      const conn = await amqp.connect(f.url);
      const ch = await conn.createChannel();
      await ch.deleteQueue(errorExchange);
      await ch.deleteExchange(errorExchange);
      await conn.close();
    });
    expect(dead && JSON.parse(dead.content.toString()).name).to.equal('fatal');
    if (dead === false) throw new Error('expected a message in the queue, found none');
    expect(dead.properties.headers?.['x-error-name']).to.equal('DeliveryLimitExceeded');
    expect(dead.properties.headers?.['x-attempts']).to.equal(4);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  it('answers an RPC that drops its connection every time with DeliveryLimitExceeded once maxDeliveries is passed', async () => {
    const ran = deferred();
    class Fragile extends MessageProcessor {
      runs = 0;
      @RpcHandler('command', 'work')
      async work() {
        this.runs++;
        ran.resolve();
        dropConnection(this);
        await sleep(10);
        return 'never sent';
      }
    }
    const worker = new Fragile({
      url: f.url,
      maxDeliveries: 2,
      reconnect: { initialMs: 20, maxMs: 100 },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(worker);
    const c = await caller();
    const r = await c.rpc_work({}, { _timeout: 20, _max_retry: 0 });
    await ran.promise;
    expect(r).to.be.instanceOf(MessageResultException);
    expect((r as MessageResultException).value).to.equal(new DeliveryLimitExceeded(3, 2).name);
    expect((r as MessageResultException).message).to.match(/maxDeliveries \(2\)/);
    expect(worker.runs).to.equal(2);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });
});
