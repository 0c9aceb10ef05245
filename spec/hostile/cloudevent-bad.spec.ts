/**
 * Hostile: CloudEvents that miss a required attribute, or carry one of the wrong kind, sent to a processor with a
 * `@CloudEventHandler` for their type. They cannot be handled; what matters is that they reach the error exchange
 * whole and that the reason says what is wrong with the event (not only that no JSON handler took it).
 */
import { expect } from 'chai';
import { CloudEventHandler, ErrorQueue, MessageProcessor } from '../../lib/index.js';
import { observed, processorFixture } from '../support/components.js';
import { publishRaw } from '../support/topology.js';

describe('Hostile: CloudEvents with bad attributes', function () {
  this.timeout(30_000);
  const f = processorFixture('hb', 'topic');

  it('sends them to the error exchange with a reason that names the attribute at fault', async () => {
    const handled: unknown[] = [];
    class Orders extends MessageProcessor {
      @CloudEventHandler('com.example.order.placed')
      placed(data: unknown) {
        handled.push(data);
      }
    }
    const base = {
      cloudEvents_specversion: '1.0',
      cloudEvents_id: 'e-1',
      cloudEvents_source: '/shop',
      cloudEvents_type: 'com.example.order.placed',
    };
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['no id', { ...base, cloudEvents_id: undefined }, /\bid\b/],
      ['an empty source', { ...base, cloudEvents_source: '' }, /source/],
      ['a numeric specversion', { ...base, cloudEvents_specversion: 1 }, /specversion/],
    ];
    const p = new Orders(f.options('orders.#'));
    const { events, settled } = observed(p, cases.length);
    await f.h.start(p);
    for (const [i, [, headers]] of cases.entries()) {
      const clean = Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined));
      await publishRaw(f.ex.name, 'orders.placed', Buffer.from('{"orderId":"A-1"}'), {
        messageId: `ce-${i}`,
        contentType: 'application/json',
        headers: clean,
      });
    }
    await settled();
    expect(handled).to.deep.equal([]);
    expect(events.map((e) => e.outcome)).to.deep.equal(cases.map(() => 'dead-lettered'));
    const q = await ErrorQueue.open(f.errors, { url: f.url });
    try {
      const failed = await q.list();
      for (const [i, [what, , reason]] of cases.entries()) {
        const m = failed.find((f) => f.id === `ce-${i}`)!;
        expect(m.errorName, what).to.equal('MalformedMessage');
        expect(m.errorMessage, `${what}: the reason given was "${m.errorMessage}"`).to.match(reason);
      }
    } finally {
      await q.close();
    }
  });
});
