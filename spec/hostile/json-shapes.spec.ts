/**
 * Hostile: plain JSON of every shape (null, numbers, arrays, strings, booleans) beside envelope handlers, a
 * `@JsonHandler('#')` that takes any routing key, and envelopes that are almost right.
 */
import { expect } from 'chai';
import { JsonHandler, MessageHandler, MessageProcessor } from '../../lib/index.js';
import { observed, processorFixture } from '../support/components.js';
import { envelope } from '../support/envelopes.js';
import { publishRaw } from '../support/topology.js';

const pay = (extra: Record<string, unknown> = {}) => envelope({ content: { parameters: { amount: 1 } }, ...extra });

describe('Hostile: JSON shapes beside envelope handlers', function () {
  this.timeout(30_000);
  const f = processorFixture('hj', 'topic');

  it('hands every JSON value to a # JsonHandler and leaves envelopes to the envelope handler', async () => {
    const bodies: unknown[] = [null, 0, -1.5, 'text', true, false, [], [1, 2], {}, { a: 1 }];
    const json: unknown[] = [];
    const envelopes: unknown[] = [];
    class Mixed extends MessageProcessor {
      @JsonHandler('#')
      any(body: unknown) {
        json.push(body);
      }
      @MessageHandler('command', 'pay')
      pay(content: unknown) {
        envelopes.push(content);
      }
    }
    const p = new Mixed(f.options('#'));
    const { events, settled } = observed(p, bodies.length + 1);
    await f.h.start(p);
    for (const [i, b] of bodies.entries())
      await publishRaw(f.ex.name, `k.${i}`, Buffer.from(JSON.stringify(b)), { messageId: `j-${i}` });
    await publishRaw(f.ex.name, 'k.env', Buffer.from(JSON.stringify(pay())), { messageId: 'env-1' });
    await settled();
    expect(envelopes).to.deep.equal([{ parameters: { amount: 1 } }]);
    expect(json).to.deep.equal(bodies);
    expect(events.map((e) => e.outcome)).to.deep.equal(events.map(() => 'acked'));
  });

  it('does not take a broken Postage envelope (another version) as plain JSON', async () => {
    const json: unknown[] = [];
    class Mixed extends MessageProcessor {
      @JsonHandler('#')
      any(body: unknown) {
        json.push(body);
      }
      @MessageHandler('command', 'pay')
      pay() {}
    }
    const p = new Mixed(f.options('#'));
    const { events, settled } = observed(p, 1);
    await f.h.start(p);
    await publishRaw(f.ex.name, 'k', Buffer.from(JSON.stringify(pay({ version: '3' }))), { messageId: 'v3' });
    await settled();
    expect(json, 'a version-3 Postage envelope was handed to the JSON handler as foreign JSON').to.deep.equal([]);
    expect(events[0].outcome).to.equal('dead-lettered');
  });
});
