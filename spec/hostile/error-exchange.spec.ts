/**
 * Hostile: the error exchange is deleted under a running processor, then a message fails. Whatever the processor
 * does, the failed message must not vanish: it is either dead-lettered to a declared-again error exchange or left
 * on the broker (requeued or unacked), never acked into nothing.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { ErrorQueue, MessageHandler, MessageProcessor, type DeliveryEvent } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { counter, Harness } from '../support/components.js';
import { deleteTopology, publishRaw, queueState, unique } from '../support/topology.js';

const envelope = (name: string) =>
  Buffer.from(
    JSON.stringify({
      type: 'command',
      name,
      category: 'message',
      version: '2',
      fingerprint: { name: 'hostile' },
      content: { parameters: {} },
      _reserved: {},
    }),
  );

describe('Hostile: the error exchange deleted under a processor', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  const ex = { name: unique('hx-ex'), type: 'direct' as const, durable: false };
  const queue = unique('hx-q');
  const errors = unique('hx-errors');

  before(async () => {
    url = await brokerUrl();
  });
  beforeEach(() => {
    h = new Harness();
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, errors], [ex.name, errors]).catch(() => undefined);
  });

  class Failing extends MessageProcessor {
    @MessageHandler('command', 'boom')
    boom() {
      throw new Error('boom');
    }
  }

  for (const [what, body] of [
    ['a failing handler', envelope('boom')],
    ['an unreadable body', Buffer.from('{not json')],
  ] as const) {
    it(`does not lose ${what}'s message`, async () => {
      const settled = counter(1);
      const events: DeliveryEvent[] = [];
      const p = new Failing({
        url,
        handleSignals: false,
        logger: makeLogger('silent'),
        eqk: [[ex, [[queue, 'k']]]],
        errorExchange: errors,
      });
      p.observe((e) => {
        events.push(e);
        settled.hit();
      });
      await h.start(p);
      const conn = await amqp.connect(url);
      try {
        const ch = await conn.createChannel();
        await ch.deleteExchange(errors);
        await ch.close();
      } finally {
        await conn.close();
      }
      await publishRaw(ex.name, 'k', body, { messageId: 'lost-1' });
      await settled.done;
      await p.close();
      // Where did it go? In the error queue, or still on the work queue.
      const inWork = (await queueState(queue)).messages;
      let inErrors = 0;
      const q = await ErrorQueue.open(errors, { url }).catch(() => undefined);
      if (q) {
        try {
          inErrors = (await q.list()).length;
        } finally {
          await q.close();
        }
      }
      expect({ outcome: events[0].outcome, inWork, inErrors }).to.satisfy(
        (s: { inWork: number; inErrors: number }) => s.inWork + s.inErrors === 1,
        `the message vanished: ${JSON.stringify({ outcome: events[0].outcome, inWork, inErrors })}`,
      );
    });
  }
});
