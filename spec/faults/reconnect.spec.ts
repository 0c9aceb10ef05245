/**
 * Faults: the connections drop mid-stream (`rabbitmqctl close_all_connections`)
 * and the broker restarts mid-stream (stop, then start the node), on a
 * private RabbitMQ node. Must hold: producer and processor reconnect by
 * themselves, and every message the broker confirmed is consumed at least once.
 */
import { expect } from 'chai';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
} from '../../lib/index.js';
import { PrivateBroker } from '../support/private-broker.js';
import { streamThroughFault } from '../support/stream.js';

const N = 300;

describe('fault: connections lost mid-stream', function () {
  this.timeout(180_000);
  let broker: PrivateBroker;

  before(async () => {
    broker = await PrivateBroker.start(5700 + Math.floor(Math.random() * 200));
  });
  after(async () => broker?.destroy());

  function stream(fault: () => Promise<void>) {
    return streamThroughFault({
      url: broker.url,
      exchange: { name: 'fault-stream', type: 'direct' },
      queue: 'fault-stream-q',
      n: N,
      prefetch: 20,
      fault,
    });
  }

  /** Every message was confirmed and every confirmed one received, and both ends said they lost and regained it. */
  function expectAllThroughBothReconnected(r: Awaited<ReturnType<typeof stream>>): void {
    expect(r.confirmed.size).to.equal(N);
    expect([...r.confirmed].filter((id) => !r.received.has(id))).to.deep.equal([]);
    expect(r.events).to.include.members([
      'producer disconnected',
      'producer connected',
      'sink disconnected',
      'sink connected',
    ]);
  }

  it('reconnects after close_all_connections and consumes every confirmed message', async () => {
    const r = await stream(() => broker.ctl('close_all_connections', 'spec fault').then(() => undefined));
    expectAllThroughBothReconnected(r);
  });

  it("holds sends while disconnected with whileDisconnected: 'buffer', fails them fast by default", async () => {
    const ex: ExchangeObject = { name: 'fault-buffer', type: 'direct' };
    const got: number[] = [];
    let wake: (() => void) | undefined;
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'item')
      item(content: { parameters: { id: number } }) {
        got.push(content.parameters.id);
        wake?.();
      }
    }
    class Source extends GenericProducer {
      static override eks = [[ex, 'item'] as const];
    }
    const reconnect = { initialMs: 50, maxMs: 500 };
    const sink = new Sink({ url: broker.url, reconnect, eqk: [[ex, [['fault-buffer-q', 'item']]]] });
    await sink.ready();
    const s = new MicroScheduler();
    s.addMicrothread(sink);
    const running = s.run();
    const buffering = await Source.create({ url: broker.url, reconnect, whileDisconnected: 'buffer' });
    const failing = await Source.create({ url: broker.url, reconnect });
    const down = new Promise<void>((r) => buffering.on('disconnected', () => r()));
    await broker.stop();
    await down;
    const held = buffering.message_item({ id: 1 });
    let failed: unknown;
    await failing.message_item({ id: 2 }).catch((e) => (failed = e));
    expect((failed as { code?: string }).code).to.equal('NOT_CONNECTED');
    await broker.start();
    await held;
    const deadline = Date.now() + 30_000;
    while (!got.includes(1) && Date.now() < deadline) await new Promise<void>((r) => ((wake = r), setTimeout(r, 200)));
    expect(got).to.include(1);
    s.stop();
    await running;
    await sink.close();
    await buffering.close();
    await failing.close();
  });

  it('reconnects after a broker restart and consumes every confirmed message', async () => {
    const r = await stream(async () => {
      await broker.stop();
      await broker.start();
    });
    expectAllThroughBothReconnected(r);
  });
});
