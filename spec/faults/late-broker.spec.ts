/**
 * Fault: a component starts before its broker (containers, process managers).
 * A private node is started 5 s after the component. Must hold: the
 * component keeps trying, warning at each attempt, connects once the broker
 * answers and handles messages; without a broker it fails with UNREACHABLE
 * once waitForBrokerMs has passed.
 */
import { expect } from 'chai';
import {
  BrokerError,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred } from '../support/components.js';
import { PrivateBroker } from '../support/private-broker.js';

describe('fault: a component starts before its broker', function () {
  this.timeout(120_000);
  let broker: PrivateBroker | undefined;
  after(async () => broker?.destroy());

  it('keeps trying while no broker answers, then connects and handles messages once one does', async () => {
    const port = 5700 + Math.floor(Math.random() * 200);
    const url = `amqp://guest:guest@127.0.0.1:${port}/%2F`;
    const ex: ExchangeObject = { name: 'late', type: 'direct', durable: false };
    const got = deferred<number>();
    const warnings: string[] = [];
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'hello')
      hello(content: { parameters: { n: number } }) {
        got.resolve(content.parameters.n);
      }
    }
    const sink = new Sink({
      url,
      waitForBrokerMs: 90_000,
      reconnect: { initialMs: 250, maxMs: 1000 },
      handleSignals: false,
      logger: makeLogger('warn', { write: (l: string) => void warnings.push(l) }),
      eqk: [[ex, [['late-q', 'k']]]],
    });
    const started = Date.now();
    const ready = sink.ready();
    await new Promise((r) => setTimeout(r, 5000));
    broker = await PrivateBroker.start(port);
    await ready;
    expect(Date.now() - started).to.be.at.least(5000);
    expect(warnings.some((l) => l.includes('no broker answers yet; trying again') && l.includes('nextInMs'))).to.equal(
      true,
    );
    const s = new MicroScheduler();
    s.addMicrothread(sink);
    const running = s.run();
    class Sender extends GenericProducer {
      static override eks = [[ex, 'k'] as const];
      declare message_hello: MessageSender;
    }
    const p = await Sender.create({ url });
    await p.message_hello({ n: 5 });
    expect(await got.promise).to.equal(5);
    await p.close();
    await s.stop();
    await running;
  });

  it('fails with UNREACHABLE once waitForBrokerMs has passed with no broker', async () => {
    const port = 5900 + Math.floor(Math.random() * 90);
    const started = Date.now();
    const err = await GenericProducer.create({
      url: `amqp://guest:guest@127.0.0.1:${port}/%2F`,
      waitForBrokerMs: 1500,
      logger: makeLogger('silent'),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('UNREACHABLE');
    expect(Date.now() - started).to.be.within(500, 10_000);
  });
});
