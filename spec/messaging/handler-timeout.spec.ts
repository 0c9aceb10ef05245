import { expect } from 'chai';
import amqp from 'amqplib';
import { GenericProducer, HandlerTimeout, MessageHandler, MessageProcessor, MessageResultException, RpcHandler, type MessageSender, type RpcSender } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, unique } from '../support/topology.js';

const never = () => new Promise<never>(() => undefined);

describe('a handler that never finishes', function () {
  this.timeout(20_000);
  const f = exchangeFixture('ht', brokerUrl, unique, deleteTopology);

  async function sender() {
    const exchange = f.ex;
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
      declare message_stuck: MessageSender;
      declare message_fine: MessageSender;
      declare rpc_stuck: RpcSender;
    }
    const p = await Sender.create({ url: f.url });
    f.h.onClose(() => p.close());
    return p;
  }

  it('fails its delivery with HandlerTimeout after handlerTimeoutMs, to the error exchange, and the processor goes on', async () => {
    const errorExchange = unique('ht-errors');
    const fine = deferred();
    const lines: string[] = [];
    class Stuck extends MessageProcessor {
      @MessageHandler('command', 'stuck')
      async stuck() {
        await never();
      }
      @MessageHandler('command', 'fine')
      fine() {
        fine.resolve();
      }
    }
    await f.h.start(new Stuck({ url: f.url, handlerTimeoutMs: 200, errorExchange, logger: makeLogger('error', { write: (l: string) => void lines.push(l) }), eqk: [[f.ex, [[f.queue, 'k']]]] }));
    f.h.onClose(async () => {
      const conn = await amqp.connect(f.url);
      const ch = await conn.createChannel();
      await ch.deleteQueue(errorExchange);
      await ch.deleteExchange(errorExchange);
      await conn.close();
    });
    const p = await sender();
    await p.message_stuck({});
    await p.message_fine({});
    await fine.promise;
    const dead = (await getOne(errorExchange)) as amqp.GetMessage;
    expect(dead.properties.headers?.['x-error-name']).to.equal('HandlerTimeout');
    expect(String(dead.properties.headers?.['x-error-message'])).to.contain('ran longer than 200 ms');
    expect(lines.some((l) => l.includes('"level":50') && l.includes('HandlerTimeout'))).to.equal(true);
  });

  it("closes a generator handler past its decorator's timeoutMs, so its finally runs", async () => {
    const closed = deferred<number>();
    const started = Date.now();
    class Stuck extends MessageProcessor {
      @MessageHandler('command', 'stuck', { timeoutMs: 150 })
      *stuck() {
        try {
          yield never();
        } finally {
          closed.resolve(Date.now() - started);
        }
      }
    }
    await f.h.start(new Stuck({ url: f.url, handlerTimeoutMs: 60_000, logger: makeLogger('silent'), eqk: [[f.ex, [[f.queue, 'k']]]] }));
    await (await sender()).message_stuck({});
    expect(await closed.promise).to.be.within(100, 10_000);
  });

  it('answers an RPC whose handler never finishes with MessageResultException(HandlerTimeout)', async () => {
    class Stuck extends MessageProcessor {
      @RpcHandler('command', 'stuck')
      async stuck() {
        await never();
      }
    }
    await f.h.start(new Stuck({ url: f.url, handlerTimeoutMs: 150, logger: makeLogger('silent'), eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const r = await (await sender()).rpc_stuck({}, { _timeout: 10, _max_retry: 0 });
    expect(r).to.be.instanceOf(MessageResultException);
    expect((r as MessageResultException).value).to.equal(new HandlerTimeout('x', 1).name);
  });

  it('refuses a time limit that is not a positive number', () => {
    expect(() => new MessageProcessor({ handlerTimeoutMs: 0 })).to.throw(TypeError, /handlerTimeoutMs/);
    expect(() => MessageHandler('command', 'x', { timeoutMs: -1 })).to.throw(TypeError, /timeoutMs/);
  });
});
