/**
 * Fault: the broker stops while an RPC is in flight.
 * Injected by stopping a private RabbitMQ node (never the shared one).
 * Must hold: the call resolves to MessageResultException('DisconnectError')
 * at once, long before its timeout; it never hangs.
 */
import { expect } from 'chai';
import { GenericProducer, MessageResultException, RpcCommand, type ExchangeObject } from '../../lib/index.js';
import { PrivateBroker } from '../support/private-broker.js';

describe('fault: the broker stops during an RPC', function () {
  this.timeout(120_000);
  let broker: PrivateBroker;

  before(async () => {
    broker = await PrivateBroker.start(5700 + Math.floor(Math.random() * 200));
  });
  after(async () => broker?.destroy());

  it('resolves the call in flight to a DisconnectError long before its timeout', async () => {
    const ex: ExchangeObject = { name: 'fault-rpc', type: 'direct', durable: false };
    class Caller extends GenericProducer {
      static override eks = [[ex, 'nobody-answers'] as const];
      build_rpc_slow() {
        return new RpcCommand('slow', {});
      }
    }
    const p = await Caller.create({ url: broker.url });
    // Nothing is bound for the request, so nobody answers: the call can only end by timeout or disconnect.
    const started = Date.now();
    const call = p.rpc_slow({ _timeout: 60, _max_retry: 0 });
    await broker.stop();
    const r = await call;
    expect(r).to.be.instanceOf(MessageResultException);
    expect(r.body.content.value).to.equal('DisconnectError');
    expect(Date.now() - started).to.be.lessThan(30_000);
    await p.close();
  });
});
