/**
 * Fault: the broker stops while an RPC is in flight.
 * Injected by stopping a private RabbitMQ node (never the shared one).
 * Must hold: the call rejects with a BrokerError CHANNEL_CLOSED at once (a
 * failure that is not the remote side's), long before its timeout; it never hangs.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { BrokerError, GenericProducer, RpcCommand, type ExchangeObject } from '../../lib/index.js';
import { PrivateBroker } from '../support/private-broker.js';

describe('fault: the broker stops during an RPC', function () {
  this.timeout(120_000);
  let broker: PrivateBroker;

  before(async () => {
    broker = await PrivateBroker.start(5700 + Math.floor(Math.random() * 200));
  });
  after(async () => broker?.destroy());

  it('rejects the call in flight with CHANNEL_CLOSED long before its timeout', async () => {
    const ex: ExchangeObject = { name: 'fault-rpc', type: 'direct', durable: false };
    // A queue takes the request and nobody consumes it: the call can only end by timeout or disconnect.
    const raw = await amqp.connect(broker.url);
    const ch = await raw.createChannel();
    await ch.assertExchange(ex.name, 'direct', { durable: false });
    await ch.assertQueue('fault-rpc-requests', { durable: false });
    await ch.bindQueue('fault-rpc-requests', ex.name, 'nobody-answers');
    await raw.close();
    class Caller extends GenericProducer {
      static override eks = [[ex, 'nobody-answers'] as const];
      build_rpc_slow() {
        return new RpcCommand('slow', {});
      }
    }
    const p = await Caller.create({ url: broker.url });
    const started = Date.now();
    const outcome = p.rpc_slow({ _timeout: 60, _max_retry: 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await broker.stop();
    const err = await outcome;
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('CHANNEL_CLOSED');
    expect((err as Error).message).to.contain('RPC to fault-rpc/nobody-answers lost');
    expect(Date.now() - started).to.be.lessThan(30_000);
    await p.close();
  });
});
