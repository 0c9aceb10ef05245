/**
 * What an operator deletes under a running processor comes back. The fault:
 * the queue (the broker cancels its consumer) or the exchange (its bindings
 * go with it, and no consumer is cancelled), deleted through a connection of
 * the spec's own, as `rabbitmqctl` or the management UI would. What must hold:
 * the processor says so, declares and binds again, and handles what is sent
 * after; a handler in flight at the time finishes without crashing anything.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import {
  connect,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type ConnectionStatus,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { deferred, Harness } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';

const quiet = makeLogger('silent');

/** Polls `ok` until it holds, or fails with `what` after `ms` (the broker has no event for these). */
async function until(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs `work` on a channel of the spec's own (an operator's). */
async function asOperator(url: string, work: (ch: amqp.Channel) => Promise<unknown>): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    await work(ch);
    await ch.close();
  } finally {
    await conn.close();
  }
}

describe('A processor whose queue or exchange is deleted under it', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  let ex: { name: string; type: 'direct'; durable: false };
  let queue: string;

  before(async () => {
    url = await brokerUrl();
  });
  beforeEach(() => {
    h = new Harness();
    ex = { name: unique('cancel-ex'), type: 'direct', durable: false };
    queue = unique('cancel-q');
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue], [ex.name]).catch(() => undefined);
  });

  class Orders extends MessageProcessor {
    handled: string[] = [];
    gate: Promise<void> | undefined;
    started = deferred();
    @MessageHandler('command', 'place')
    async place(content: { parameters: { id: string } }) {
      this.started.resolve();
      if (this.gate) await this.gate;
      this.handled.push(content.parameters.id);
    }
  }

  async function producer() {
    const target = ex;
    class Shop extends GenericProducer {
      static override eks = [[target, 'k'] as const];
      declare message_place: MessageSender;
    }
    const p = await Shop.create({ url });
    h.onClose(() => p.close());
    return p;
  }

  it('consumes its queue again after the broker cancels its consumer: said, reconnecting, then ready', async () => {
    const conn = await connect({ url });
    h.onClose(() => conn.close());
    const p = new Orders({ connection: conn, logger: quiet, handleSignals: false, eqk: [[ex, [[queue, 'k']]]] });
    const said = deferred<{ queue: string; status: ConnectionStatus }>();
    p.on('consumerCancelled', (q) => said.resolve({ queue: q, status: p.status }));
    await h.start(p);
    const shop = await producer();
    await shop.message_place({ id: 'before' });
    await until(() => p.handled.length === 1, 'the first order handled');

    await asOperator(url, (ch) => ch.deleteQueue(queue));
    const { queue: cancelled, status } = await said.promise;
    expect(cancelled).to.equal(queue);
    expect(status.state).to.equal('reconnecting');
    expect((status as { lastError: Error }).lastError.message).to.contain(queue);
    // The shared connection itself is fine, and says so.
    expect(conn.status.state).to.equal('ready');
    await until(() => p.status.state === 'ready', 'the processor ready again');

    await shop.message_place({ id: 'after' });
    await until(() => p.handled.length === 2, 'the order sent after handled');
    expect(p.handled).to.deep.equal(['before', 'after']);
  });

  it('binds again an exchange deleted under it, after its next exchange check', async () => {
    const lines: string[] = [];
    const logger = makeLogger('info', { write: (l: string) => void lines.push(l) });
    const p = new Orders({ url, logger, handleSignals: false, exchangeCheckMs: 100, eqk: [[ex, [[queue, 'k']]]] });
    await h.start(p);
    await asOperator(url, (ch) => ch.deleteExchange(ex.name));
    await until(() => lines.some((l) => l.includes('exchanges declared and bound again')), 'the exchange bound again');
    expect(lines.some((l) => l.includes(`'${ex.name}' deleted under this component`))).to.equal(true);
    // Sends route again: to the processor's queue, not UNROUTABLE.
    await (await producer()).message_place({ id: 'routed' });
    await until(() => p.handled.length === 1, 'the order sent after handled');
  });

  it('finishes a handler in flight when its queue is deleted, without crashing, and goes on', async () => {
    const escaped: unknown[] = [];
    const onEscape = (err: unknown) => escaped.push(err);
    process.on('unhandledRejection', onEscape);
    process.on('uncaughtException', onEscape);
    try {
      const p = new Orders({ url, logger: quiet, handleSignals: false, eqk: [[ex, [[queue, 'k']]]] });
      const gate = deferred();
      p.gate = gate.promise;
      const cancelled = deferred<string>();
      p.on('consumerCancelled', (q) => cancelled.resolve(q));
      await h.start(p);
      const shop = await producer();
      await shop.message_place({ id: 'in-flight' });
      await p.started.promise;
      await asOperator(url, (ch) => ch.deleteQueue(queue));
      await cancelled.promise;
      gate.resolve();
      await until(() => p.handled.includes('in-flight'), 'the handler in flight done');
      await until(() => p.status.state === 'ready', 'the processor ready again');
      p.gate = undefined;
      await shop.message_place({ id: 'next' });
      await until(() => p.handled.includes('next'), 'the next order handled');
      expect(escaped).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', onEscape);
      process.off('uncaughtException', onEscape);
    }
  });
});
