/**
 * The orders component's own tests, as its authors would write them: handler
 * behaviour through the harness (no broker, milliseconds), and one test of
 * the wiring against a real broker in a vhost of its own.
 */
import { expect } from 'chai';
import {
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  MessageResultError,
  RpcHandler,
  type ProcessorOptions,
} from '../../lib/index.js';
import { ProcessorHarness, received, testProducer, throwawayVhost } from '../../lib/testing/index.js';
import { OrderProcessor, OrdersExchange, Outbound } from './orders.js';

const quiet = { handleSignals: false } satisfies ProcessorOptions;

describe('orders (with the harness)', () => {
  it('prices an order and mails the customer the price', async () => {
    const outbound = testProducer(Outbound, { rpc: { price: (p) => Number(p.quantity) * 12.5 } });
    await using h = await ProcessorHarness.start(OrderProcessor, outbound, quiet);
    const r = await h.deliver(new MessageCommand('order', { customer: 'ada@example.com', item: 'lamp', quantity: 2 }));
    expect(r.outcome).to.equal('acked');
    // The RPC it made, then the mail it sent (held until the handler succeeded).
    expect(r.sent.map((s) => [s.body.name, s.routingKey])).to.deep.equal([
      ['price', 'pricing'],
      ['mail', 'mail'],
    ]);
    expect(r.sent[1].body.content).to.deep.equal({ parameters: { to: 'ada@example.com', text: '2 x lamp: 25 EUR' } });
  });

  it('sends an order it cannot price to the error exchange, and mails nobody', async () => {
    const outbound = testProducer(Outbound, { rpc: { price: new MessageResultError('unknown item') } });
    await using h = await ProcessorHarness.start(OrderProcessor, outbound, quiet);
    const r = await h.deliver(
      new MessageCommand('order', { customer: 'ada@example.com', item: 'unicorn', quantity: 1 }),
    );
    expect(r.outcome).to.equal('dead-lettered');
    expect((r.error as Error).message).to.equal('cannot price unicorn: unknown item');
    expect(r.sent.filter((s) => s.body.name === 'mail')).to.deep.equal([]);
  });

  it('refuses an order without a quantity before it reaches the handler', async () => {
    const outbound = testProducer(Outbound);
    await using h = await ProcessorHarness.start(OrderProcessor, outbound, quiet);
    const r = await h.deliver(new MessageCommand('order', { customer: 'ada@example.com', item: 'lamp' }));
    expect(r.outcome).to.equal('dead-lettered');
    expect((r.error as Error).name).to.equal('ValidationError');
    expect(outbound.sent).to.deep.equal([]);
  });
});

describe('orders (against RabbitMQ)', function () {
  this.timeout(30_000);

  it('is wired to its exchange: an order sent there is handled, priced by the pricing component, and mailed', async () => {
    const vhost = await throwawayVhost();
    class Pricing extends MessageProcessor {
      @RpcHandler('command', 'price')
      price() {
        return 10;
      }
    }
    let mailed: unknown;
    class Mailer extends MessageProcessor {
      @MessageHandler('command', 'mail')
      mail(content: unknown) {
        mailed = content;
      }
    }
    const pricing = new Pricing({ ...quiet, eqk: [[OrdersExchange, [['example-pricing', 'pricing']]]] });
    const mailer = new Mailer({ ...quiet, eqk: [[OrdersExchange, [['example-mail', 'mail']]]] });
    const outbound = await Outbound.create();
    const orders = new OrderProcessor(outbound, quiet);
    const { MicroScheduler } = await import('../../lib/index.js');
    const scheduler = new MicroScheduler();
    try {
      for (const p of [pricing, mailer, orders]) {
        await p.ready();
        scheduler.addMicrothread(p);
      }
      const running = scheduler.run();
      const client = await Outbound.create();
      const handled = received(orders, 'command', 'order');
      const mail = received(mailer, 'command', 'mail');
      await client.forward(
        new MessageCommand('order', { customer: 'bob@example.com', item: 'desk', quantity: 1 }).body,
        { _key: 'order' },
      );
      expect((await handled).outcome).to.equal('acked');
      await mail;
      expect(mailed).to.deep.equal({ parameters: { to: 'bob@example.com', text: '1 x desk: 10 EUR' } });
      await client.close();
      scheduler.stop();
      await running;
    } finally {
      await outbound.close();
      await vhost.release();
    }
  });
});
