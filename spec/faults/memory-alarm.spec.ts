/**
 * Fault: a memory alarm blocks publishers. Injected with
 * `rabbitmqctl set_vm_memory_high_watermark 0.0001` on a private node, then
 * released. Must hold: the producer reports 'blocked' then 'unblocked', its
 * sends wait (they do not fail or vanish, nor time out: the alarm outlasts
 * their confirm timeout) and every one is consumed.
 */
import { expect } from 'chai';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
} from '../../lib/index.js';
import { counter, deferred } from '../support/components.js';
import { within } from '../support/wait.js';
import { PrivateBroker } from '../support/private-broker.js';

describe('fault: a memory alarm blocks publishers', function () {
  this.timeout(120_000);
  let broker: PrivateBroker;
  before(async () => {
    broker = await PrivateBroker.start(5700 + Math.floor(Math.random() * 200));
  });
  after(async () => broker?.destroy());

  it("reports 'blocked', holds the sends, then delivers every one after the alarm clears", async () => {
    const ex: ExchangeObject = { name: 'alarm', type: 'direct' };
    const got = counter(50);
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'm')
      m() {
        got.hit();
      }
    }
    class Source extends GenericProducer {
      static override eks = [[ex, 'm'] as const];
    }
    const sink = new Sink({ url: broker.url, eqk: [[ex, [['alarm-q', 'm']]]], prefetch: 50 });
    await sink.ready();
    const s = new MicroScheduler();
    s.addMicrothread(sink);
    const running = s.run();
    const p = await Source.create({ url: broker.url, confirmTimeoutMs: 500 });
    const blocked = deferred();
    const unblocked = deferred();
    const events: string[] = [];
    p.on('blocked', () => {
      events.push('blocked');
      blocked.resolve();
    });
    p.on('unblocked', () => {
      events.push('unblocked');
      unblocked.resolve();
    });

    await broker.ctl('set_vm_memory_high_watermark', '0.0001');
    // The broker blocks a connection when it next publishes.
    const sends = Array.from({ length: 50 }, (_, i) => p.message_m({ i }));
    await within(blocked.promise, { timeout: 20_000, message: 'the connection blocked' });
    // Held while blocked: the sends settle only after the broker unblocks the connection (a later event, no sleep).
    const allSettled = Promise.allSettled(sends).then(() => events.push('sends settled'));

    await broker.ctl('set_vm_memory_high_watermark', '0.4');
    await within(unblocked.promise, { timeout: 20_000, message: 'the connection unblocked' });
    await Promise.all(sends);
    await allSettled;
    await within(got.done, { timeout: 20_000, message: () => `all 50 messages handled (${got.count()})` });
    expect(events).to.deep.equal(['blocked', 'unblocked', 'sends settled']);
    s.stop();
    await running;
    await sink.close();
    await p.close();
  });
});
