/**
 * Hostile: structured-mode CloudEvents whose data or version a reader cannot trust: `data_base64` that is not
 * Base64 (Node decodes it leniently, to other bytes or none), `data_base64` that is not a string, both `data` and
 * `data_base64` (the JSON event format says an event must not have both), and a `specversion` other than 1.0 (a
 * 0.3 event carries its Base64 data in `data`, with `datacontentencoding`). Handed to a handler, each would be
 * data the sender did not send; each must go whole to the error exchange with a reason naming what is wrong.
 */
import { expect } from 'chai';
import { CloudEventHandler, ErrorQueue, MessageProcessor } from '../../lib/index.js';
import { observed, processorFixture } from '../support/components.js';
import { publishRaw } from '../support/topology.js';

describe('Hostile: CloudEvents whose data or version cannot be trusted', function () {
  this.timeout(30_000);
  const f = processorFixture('hcs', 'topic');

  it('sends them to the error exchange unhandled, the reason naming the fault, and hands good Base64 over whole', async () => {
    const handled: Array<[string, unknown]> = [];
    class Orders extends MessageProcessor {
      @CloudEventHandler('com.example.order.placed')
      placed(data: unknown, event: { id: string }) {
        handled.push([event.id, data]);
      }
    }
    const event = { specversion: '1.0', source: '/shop', type: 'com.example.order.placed' };
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['data_base64 not Base64', { ...event, data_base64: '!!!***' }, /data_base64.*not Base64/],
      ['data_base64 a number', { ...event, data_base64: 5 }, /data_base64.*not Base64/],
      ['data and data_base64', { ...event, data: 1, data_base64: 'aGk=' }, /both data and data_base64/],
      ["specversion '0.3'", { ...event, specversion: '0.3', data: 'aGk=' }, /specversion '0\.3'.*1\.0/],
    ];
    const good = { ...event, id: 'good', data_base64: Buffer.from('héllo').toString('base64') };
    const p = new Orders(f.options('orders.#'));
    // The cases, the binary 2.0 event and the good one.
    const { events, settled } = observed(p, cases.length + 2);
    await f.h.start(p);
    for (const [i, [, body]] of cases.entries())
      await publishRaw(f.ex.name, 'orders.placed', Buffer.from(JSON.stringify({ ...body, id: `ce-${i}` })), {
        messageId: `ce-${i}`,
        contentType: 'application/cloudevents+json',
      });
    // The binary mode's specversion is checked too.
    await publishRaw(f.ex.name, 'orders.placed', Buffer.from('{}'), {
      messageId: 'binary-2.0',
      contentType: 'application/json',
      headers: {
        cloudEvents_specversion: '2.0',
        cloudEvents_id: 'binary-2.0',
        cloudEvents_source: '/shop',
        cloudEvents_type: 'com.example.order.placed',
      },
    });
    await publishRaw(f.ex.name, 'orders.placed', Buffer.from(JSON.stringify(good)), {
      messageId: 'good',
      contentType: 'application/cloudevents+json',
    });
    await settled();
    expect(handled.map(([id]) => id)).to.deep.equal(['good']);
    expect(Buffer.from(handled[0][1] as Buffer).toString('utf8')).to.equal('héllo');
    expect(events.filter((e) => e.outcome === 'dead-lettered')).to.have.length(cases.length + 1);
    const q = await ErrorQueue.open(f.errors, { url: f.url });
    try {
      const failed = await q.list();
      for (const [i, [what, , reason]] of [
        ...cases,
        ['binary 2.0', {}, /specversion '2\.0'.*1\.0/] as const,
      ].entries()) {
        const m = failed.find((m) => m.id === (i < cases.length ? `ce-${i}` : 'binary-2.0'))!;
        expect(m, what).to.not.equal(undefined);
        expect(m.errorName, what).to.equal('MalformedMessage');
        expect(m.errorMessage, `${what}: the reason given was "${m.errorMessage}"`).to.match(reason);
      }
    } finally {
      await q.close();
    }
  });
});
