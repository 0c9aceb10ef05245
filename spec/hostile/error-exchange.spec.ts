/**
 * Hostile: the error exchange is deleted under a running processor, then a message fails. Whatever the processor
 * does, the failed message must not vanish: it is either dead-lettered to a declared-again error exchange or left
 * on the broker (requeued or unacked), never acked into nothing.
 */
import { expect } from 'chai';
import { ErrorQueue, MessageHandler, MessageProcessor } from '../../lib/index.js';
import { observed, processorFixture } from '../support/components.js';
import { envelopeBytes } from '../support/envelopes.js';
import { asOperator, publishRaw, queueState } from '../support/topology.js';

describe('Hostile: the error exchange deleted under a processor', function () {
  this.timeout(30_000);
  const f = processorFixture('hx');

  class Failing extends MessageProcessor {
    @MessageHandler('command', 'boom')
    boom() {
      throw new Error('boom');
    }
  }

  for (const [what, body] of [
    ['a failing handler', envelopeBytes('boom')],
    ['an unreadable body', Buffer.from('{not json')],
  ] as const) {
    it(`does not lose ${what}'s message`, async () => {
      const p = new Failing(f.options('k'));
      const { events, settled } = observed(p, 1);
      await f.h.start(p);
      await asOperator((ch) => ch.deleteExchange(f.errors));
      await publishRaw(f.ex.name, 'k', body, { messageId: 'lost-1' });
      await settled();
      await p.close();
      // Where did it go? In the error queue, or still on the work queue.
      const inWork = (await queueState(f.queue)).messages;
      let inErrors = 0;
      const q = await ErrorQueue.open(f.errors, { url: f.url }).catch(() => undefined);
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
