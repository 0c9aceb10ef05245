/**
 * Faults: the broker restarts while it holds delayed messages, on a private
 * RabbitMQ node. Must hold: the broker, not the sender, holds them (the sender
 * is gone before the restart), and each still arrives, no sooner than its delay:
 * one that fell due while the node was down arrives once it is back, one still
 * due afterwards arrives on time.
 */
import { expect } from 'chai';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred } from '../support/components.js';
import { PrivateBroker } from '../support/private-broker.js';

describe('fault: a broker restart while it holds delayed messages', function () {
  this.timeout(180_000);
  let broker: PrivateBroker;

  before(async () => {
    broker = await PrivateBroker.start(5700 + Math.floor(Math.random() * 200));
  });
  after(async () => broker?.destroy());

  it('delivers every delayed message after the restart, none before its delay', async () => {
    const exchange = { name: 'delay-restart', type: 'direct', durable: true } as const;
    const eqk = [[exchange, [['delay-restart-q', 'k']]]] as const;
    const quiet = makeLogger('silent');
    class Late extends MessageProcessor {
      readonly got = new Map<number, number>();
      readonly all = deferred();
      @MessageHandler('command', 'job')
      job(c: { parameters: { n: number } }) {
        this.got.set(c.parameters.n, Date.now());
        if (this.got.size === 2) this.all.resolve();
      }
    }
    // The queue exists (durable) before the sends, as it would in production.
    const declare = new Late({ url: broker.url, logger: quiet, handleSignals: false, eqk });
    await declare.consumer.ready();
    await declare.close();

    class Sender extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
      declare message_job: MessageSender;
    }
    const p = await Sender.create({ url: broker.url, logger: quiet });
    const sent = Date.now();
    // One falls due while the node is down (a restart takes several seconds), one well after it is back.
    await p.message_job({ n: 1 }, { _delay: 1500 });
    await p.message_job({ n: 2 }, { _delay: 25_000 });
    await p.close();

    await broker.stop();
    await broker.start();

    const late = new Late({ url: broker.url, logger: quiet, handleSignals: false, eqk });
    await late.ready();
    const scheduler = new MicroScheduler({ name: 'delay-restart' });
    scheduler.addMicrothread(late);
    const running = scheduler.run();
    try {
      await late.all.promise;
    } finally {
      scheduler.stop();
      await running;
      await late.close();
    }
    expect(late.got.get(1)! - sent).to.be.at.least(1500);
    expect(late.got.get(2)! - sent).to.be.at.least(25_000);
  });
});
