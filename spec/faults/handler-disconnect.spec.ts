/**
 * Fault: a processor's connection drops while its handlers run. Injected by
 * resetting the processor's socket (as a network failure would) while 200
 * RPCs, or 60 failing messages bound for the error exchange, are in flight
 * with prefetch 50. Must hold: the processor thread survives, reconnects and
 * consumes again; every RPC is answered; every failed message reaches the
 * error exchange; nothing is stranded in the queue.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MessageResult,
  RpcHandler,
  sleep,
} from '../../lib/index.js';
import { counter, dropConnection, exchangeFixture } from '../support/components.js';
import { settledQueue, unique } from '../support/topology.js';

describe('fault: the connection drops while handlers run', function () {
  this.timeout(60_000);
  const f = exchangeFixture('hd');

  it('answers every RPC of a stream that loses the connection mid-way, and keeps consuming', async () => {
    const N = 200;
    const answered = counter(30);
    class Worker extends MessageProcessor {
      @RpcHandler('command', 'work')
      async work(content: { parameters: { n: number } }) {
        await sleep(2);
        answered.hit();
        return content.parameters.n * 2;
      }
    }
    const worker = new Worker({
      url: f.url,
      prefetch: 50,
      reconnect: { initialMs: 50, maxMs: 200 },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    const back = new Promise<void>((r) => worker.on('connected', () => r()));
    await f.h.start(worker);
    const exchange = f.ex;
    class Caller extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const caller = await Caller.create({ url: f.url });
    f.h.onClose(() => caller.close());
    const calls = Array.from({ length: N }, (_, n) => caller.rpc_work({ n }, { _timeout: 2, _max_retry: 5 }));
    await answered.done;
    dropConnection(worker);
    await back;
    const results = await Promise.all(calls);
    const wrong = results
      .map((r, n) => (r instanceof MessageResult && r.body.content.value === n * 2 ? undefined : n))
      .filter((n) => n !== undefined);
    expect(wrong).to.deep.equal([]);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  it('sends every failing message to the error exchange across the drop, and strands none', async () => {
    const N = 60;
    const errorExchange = unique('hd-errors');
    const tried = counter(10);
    class Failing extends MessageProcessor {
      @MessageHandler('command', 'doomed')
      async doomed() {
        await sleep(2);
        tried.hit();
        throw new Error('always fails');
      }
    }
    const worker = new Failing({
      url: f.url,
      prefetch: 50,
      errorExchange,
      reconnect: { initialMs: 50, maxMs: 200 },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    const back = new Promise<void>((r) => worker.on('connected', () => r()));
    await f.h.start(worker);
    const exchange = f.ex;
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const sender = await Sender.create({ url: f.url });
    f.h.onClose(() => sender.close());
    await Promise.all(Array.from({ length: N }, (_, n) => sender.message_doomed({ n })));
    await tried.done;
    dropConnection(worker);
    await back;
    // The broker has no "f.queue drained" event: poll its depth with a deadline.
    const ids = new Set<number>();
    const conn = await amqp.connect(f.url);
    f.h.onClose(() => conn.close());
    const ch = await conn.createChannel();
    const deadline = Date.now() + 20_000;
    while (ids.size < N && Date.now() < deadline) {
      const m = await ch.get(errorExchange, { noAck: true });
      if (m) ids.add(JSON.parse(m.content.toString()).content.parameters.n);
      else await sleep(20);
    }
    await ch.deleteQueue(errorExchange);
    await ch.deleteExchange(errorExchange);
    expect(ids.size).to.equal(N);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });
});
