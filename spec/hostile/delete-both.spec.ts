/**
 * Hostile: an operator deletes the queue and its exchange together (one after the other, in either order) under a
 * running processor. It must come back: queue, exchange and binding declared again, status ready, new messages
 * handled.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { MessageHandler, MessageProcessor } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { exchangeFixture } from '../support/components.js';
import { envelopeBytes } from '../support/envelopes.js';
import { asOperator, publishRaw } from '../support/topology.js';
import { until } from '../support/wait.js';

const envelope = (id: string) => envelopeBytes('place', { id });

/** Publishes with mandatory and says whether the broker routed it (an unroutable one comes back as basic.return). */
async function routed(url: string, exchange: string, key: string, body: Buffer): Promise<boolean> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    let returned = false;
    ch.on('return', () => {
      returned = true;
    });
    try {
      ch.publish(exchange, key, body, { mandatory: true });
      await ch.waitForConfirms();
    } catch {
      return false;
    }
    return !returned;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe('Hostile: queue and exchange deleted together', function () {
  this.timeout(60_000);
  const f = exchangeFixture('hd');

  class Orders extends MessageProcessor {
    handled: string[] = [];
    @MessageHandler('command', 'place')
    place(content: { parameters: { id: string } }) {
      this.handled.push(content.parameters.id);
    }
  }

  for (const order of ['queue first', 'exchange first'] as const) {
    it(`comes back, bound and consuming, when both are deleted (${order})`, async () => {
      const { url, ex, queue } = f;
      const p = new Orders({
        url,
        handleSignals: false,
        logger: makeLogger('silent'),
        eqk: [[ex, [[queue, 'k']]]],
        exchangeCheckMs: 500,
      });
      await f.h.start(p);
      await publishRaw(ex.name, 'k', envelope('before'));
      await until(() => p.handled.includes('before'), { message: 'the first order handled' });
      await asOperator(async (ch) => {
        if (order === 'queue first') {
          await ch.deleteQueue(queue);
          await ch.deleteExchange(ex.name);
        } else {
          await ch.deleteExchange(ex.name);
          await ch.deleteQueue(queue);
        }
      });
      await until(() => routed(url, ex.name, 'k', envelope('after')), {
        timeout: 20_000,
        message: () => `exchange and binding back (status ${p.status.state})`,
        every: 250,
      });
      await until(() => p.handled.includes('after'), {
        timeout: 10_000,
        message: () => `the order sent after handled (status ${p.status.state})`,
      });
      expect(p.status.state).to.equal('ready');
    });
  }
});
