/**
 * What an operator deletes under a running processor comes back. The fault:
 * the queue (the broker cancels its consumer) or the exchange (its bindings
 * go with it, and no consumer is cancelled), deleted through a connection of
 * the spec's own, as `rabbitmqctl` or the management UI would. What must hold:
 * the processor says so, declares and binds again, and handles what is sent
 * after; a handler in flight at the time finishes without crashing anything.
 */
import { expect } from 'chai';
import { connect, MessageHandler, MessageProcessor, type ConnectionStatus } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { asOperator } from '../support/topology.js';
import { until, within } from '../support/wait.js';

const quiet = makeLogger('silent');

describe('A processor whose queue or exchange is deleted under it', function () {
  this.timeout(30_000);
  const f = exchangeFixture('cancel');

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

  it('consumes its queue again after the broker cancels its consumer: said, reconnecting, then ready', async () => {
    const conn = await connect({ url: f.url });
    f.h.onClose(() => conn.close());
    const p = new Orders({ connection: conn, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]] });
    const said = deferred<{ queue: string; status: ConnectionStatus }>();
    p.on('consumerCancelled', (q) => said.resolve({ queue: q, status: p.status }));
    await f.h.start(p);
    const shop = await f.producer();
    await shop.message_place({ id: 'before' });
    await until(() => p.handled.length === 1, { timeout: 10_000, message: 'the first order handled' });

    await asOperator((ch) => ch.deleteQueue(f.queue));
    const { queue: cancelled, status } = await within(said.promise, {
      timeout: 10_000,
      message: 'consumerCancelled said',
    });
    expect(cancelled).to.equal(f.queue);
    expect(status.state).to.equal('reconnecting');
    expect((status as { lastError: Error }).lastError.message).to.contain(f.queue);
    // The shared connection itself is fine, and says so.
    expect(conn.status.state).to.equal('ready');
    await until(() => p.status.state === 'ready', { timeout: 10_000, message: 'the processor ready again' });

    await shop.message_place({ id: 'after' });
    await until(() => p.handled.length === 2, { timeout: 10_000, message: 'the order sent after handled' });
    expect(p.handled).to.deep.equal(['before', 'after']);
  });

  it('binds again an exchange deleted under it, after its next exchange check', async () => {
    const lines: string[] = [];
    const logger = makeLogger('info', { write: (l: string) => void lines.push(l) });
    const p = new Orders({
      url: f.url,
      logger,
      handleSignals: false,
      exchangeCheckMs: 100,
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(p);
    await asOperator((ch) => ch.deleteExchange(f.ex.name));
    await until(() => lines.some((l) => l.includes('exchanges declared and bound again')), {
      timeout: 10_000,
      message: 'the exchange bound again',
    });
    expect(lines.some((l) => l.includes(`'${f.ex.name}' deleted under this component`))).to.equal(true);
    // Sends route again: to the processor's queue, not UNROUTABLE.
    await (await f.producer()).message_place({ id: 'routed' });
    await until(() => p.handled.length === 1, { timeout: 10_000, message: 'the order sent after handled' });
  });

  it('finishes a handler in flight when its queue is deleted, without crashing, and goes on', async () => {
    const escaped: unknown[] = [];
    const onEscape = (err: unknown) => escaped.push(err);
    process.on('unhandledRejection', onEscape);
    process.on('uncaughtException', onEscape);
    try {
      const p = new Orders({ url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]] });
      const gate = deferred();
      p.gate = gate.promise;
      const cancelled = deferred<string>();
      p.on('consumerCancelled', (q) => cancelled.resolve(q));
      await f.h.start(p);
      const shop = await f.producer();
      await shop.message_place({ id: 'in-flight' });
      await within(p.started.promise, { timeout: 10_000, message: 'the handler started' });
      await asOperator((ch) => ch.deleteQueue(f.queue));
      await within(cancelled.promise, { timeout: 10_000, message: 'consumerCancelled said' });
      gate.resolve();
      await until(() => p.handled.includes('in-flight'), { timeout: 10_000, message: 'the handler in flight done' });
      await until(() => p.status.state === 'ready', { timeout: 10_000, message: 'the processor ready again' });
      p.gate = undefined;
      await shop.message_place({ id: 'next' });
      await until(() => p.handled.includes('next'), { timeout: 10_000, message: 'the next order handled' });
      expect(escaped).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', onEscape);
      process.off('uncaughtException', onEscape);
    }
  });
});
