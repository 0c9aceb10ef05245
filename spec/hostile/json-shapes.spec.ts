/**
 * Hostile: plain JSON of every shape (null, numbers, arrays, strings, booleans) beside envelope handlers, a
 * `@JsonHandler('#')` that takes any routing key, and envelopes that are almost right.
 */
import { expect } from 'chai';
import { JsonHandler, MessageHandler, MessageProcessor, type DeliveryEvent } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { counter, Harness } from '../support/components.js';
import { deleteTopology, publishRaw, unique } from '../support/topology.js';

const envelope = (extra: Record<string, unknown> = {}) => ({
  type: 'command',
  name: 'pay',
  category: 'message',
  version: '2',
  fingerprint: { name: 'hostile' },
  content: { parameters: { amount: 1 } },
  _reserved: {},
  ...extra,
});

describe('Hostile: JSON shapes beside envelope handlers', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  const ex = { name: unique('hj-ex'), type: 'topic' as const, durable: false };
  const queue = unique('hj-q');
  const errors = unique('hj-errors');

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

  it('hands every JSON value to a # JsonHandler and leaves envelopes to the envelope handler', async () => {
    const bodies: unknown[] = [null, 0, -1.5, 'text', true, false, [], [1, 2], {}, { a: 1 }];
    const settled = counter(bodies.length + 1);
    const events: DeliveryEvent[] = [];
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
    const p = new Mixed({
      url,
      handleSignals: false,
      logger: makeLogger('silent'),
      eqk: [[ex, [[queue, '#']]]],
      errorExchange: errors,
    });
    p.observe((e) => {
      events.push(e);
      settled.hit();
    });
    await h.start(p);
    for (const [i, b] of bodies.entries())
      await publishRaw(ex.name, `k.${i}`, Buffer.from(JSON.stringify(b)), { messageId: `j-${i}` });
    await publishRaw(ex.name, 'k.env', Buffer.from(JSON.stringify(envelope())), { messageId: 'env-1' });
    await settled.done;
    expect(envelopes).to.deep.equal([{ parameters: { amount: 1 } }]);
    expect(json).to.deep.equal(bodies);
    expect(events.map((e) => e.outcome)).to.deep.equal(events.map(() => 'acked'));
  });

  it('does not take a broken Postage envelope (another version) as plain JSON', async () => {
    const settled = counter(1);
    const events: DeliveryEvent[] = [];
    const json: unknown[] = [];
    class Mixed extends MessageProcessor {
      @JsonHandler('#')
      any(body: unknown) {
        json.push(body);
      }
      @MessageHandler('command', 'pay')
      pay() {}
    }
    const p = new Mixed({
      url,
      handleSignals: false,
      logger: makeLogger('silent'),
      eqk: [[ex, [[queue, '#']]]],
      errorExchange: errors,
    });
    p.observe((e) => {
      events.push(e);
      settled.hit();
    });
    await h.start(p);
    await publishRaw(ex.name, 'k', Buffer.from(JSON.stringify(envelope({ version: '3' }))), { messageId: 'v3' });
    await settled.done;
    expect(json, 'a version-3 Postage envelope was handed to the JSON handler as foreign JSON').to.deep.equal([]);
    expect(events[0].outcome).to.equal('dead-lettered');
  });
});
