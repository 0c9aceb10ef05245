/** Which bodies are foreign and which routing keys a JSON handler's binding key takes: pure logic, no broker. */
import { expect } from 'chai';
import { isEnvelopeShaped, topicMatcher } from '../../lib/formats/json.js';

describe('topicMatcher', () => {
  it('matches a key without wildcards exactly, * as one word and # as any number of words', () => {
    const cases: Array<[string, string, boolean]> = [
      ['orders.placed', 'orders.placed', true],
      ['orders.placed', 'orders.placed.eu', false],
      ['orders.*', 'orders.placed', true],
      ['orders.*', 'orders', false],
      ['orders.*', 'orders.eu.placed', false],
      ['orders.*.placed', 'orders.eu.placed', true],
      ['orders.#', 'orders', true],
      ['orders.#', 'orders.eu.placed', true],
      ['#.placed', 'placed', true],
      ['#.placed', 'orders.eu.placed', true],
      ['#.placed', 'orders.eu.cancelled', false],
      ['a.#.z', 'a.z', true],
      ['a.#.z', 'a.b.c.z', true],
      ['a.#.#.z', 'a.b.z', true],
      ['#', '', true],
    ];
    for (const [binding, key, expected] of cases)
      expect(topicMatcher(binding)(key), `${binding} ~ ${key}`).to.equal(expected);
  });
});

describe('isEnvelopeShaped', () => {
  it('is true for an object with every envelope key, whatever its version (another version is unreadable)', () => {
    const env = { type: 'command', name: 'x', category: 'message', version: '2', fingerprint: {}, content: {} };
    expect(isEnvelopeShaped(env)).to.equal(true);
    expect(isEnvelopeShaped({ ...env, version: '1' })).to.equal(true);
    expect(isEnvelopeShaped({ version: '2', type: 'order' })).to.equal(false);
    expect(isEnvelopeShaped([env])).to.equal(false);
    expect(isEnvelopeShaped(null)).to.equal(false);
    expect(isEnvelopeShaped('2')).to.equal(false);
  });
});
