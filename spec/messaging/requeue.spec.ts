import { expect } from 'chai';
import { currentDelivery, MessageHandler, MessageProcessor, RequeueMessage, RpcHandler } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { settledQueue, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

describe('RequeueMessage', function () {
  this.timeout(20_000);
  const f = exchangeFixture('rq');

  it('puts the message back in its queue: it comes again, redelivered, with no retry and no error exchange', async () => {
    const runs: boolean[] = [];
    const done = deferred();
    class Picky extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        runs.push(currentDelivery()!.redelivered);
        if (runs.length < 3) throw new RequeueMessage('not yet');
        done.resolve();
      }
    }
    await f.h.start(
      new Picky({
        url: f.url,
        retry: { attempts: 5, backoffMs: 10 },
        errorExchange: unique('rq-never'),
        logger: makeLogger('silent'),
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    await (await f.producer()).message_job({});
    await done.promise;
    expect(runs).to.deep.equal([false, true, true]);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  it('stops a message requeued forever at maxDeliveries', async () => {
    let runs = 0;
    class Stubborn extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        runs++;
        throw new RequeueMessage('never');
      }
    }
    await f.h.start(
      new Stubborn({ url: f.url, maxDeliveries: 4, logger: makeLogger('silent'), eqk: [[f.ex, [[f.queue, 'k']]]] }),
    );
    await (await f.producer()).message_job({});
    await until(() => runs >= 4, { timeout: 10_000, message: () => `4 runs (${runs} so far)` });
    // Rejected at the limit, not left unsettled: the broker holds nothing for it, ready or unacked.
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
    expect(runs).to.equal(4);
  });

  it('answers a requeued RPC when it is handled again', async () => {
    let runs = 0;
    class Later extends MessageProcessor {
      @RpcHandler('command', 'ask')
      ask() {
        if (++runs === 1) throw new RequeueMessage('busy');
        return 'now';
      }
    }
    await f.h.start(new Later({ url: f.url, logger: makeLogger('silent'), eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const r = await (await f.producer()).rpc_ask({}, { _timeout: 10, _max_retry: 0 });
    expect(r.ok).to.equal(true);
    expect(r.body.content.value).to.equal('now');
    expect(runs).to.equal(2);
  });
});
